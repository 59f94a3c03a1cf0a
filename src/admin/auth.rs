//! The admin listener's opt-in credential (`admin.auth`): HTTP Basic, which every browser can
//! use, checked against the password file. `/oauth/callback` and the configured exempt paths
//! (probes and scrapers) are served without it.

use super::json_response;
use crate::config::AdminAuth;
use crate::web::body::ProxyBody;
use base64::Engine;
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use secrecy::ExposeSecret;
use serde_json::json;
use sha2::{Digest, Sha256};

/// `None` when the request may proceed; else the `401` to send.
pub fn check(
    auth: Option<&AdminAuth>,
    path: &str,
    headers: &HeaderMap,
) -> Option<Response<ProxyBody>> {
    let auth = auth?;
    if path == "/oauth/callback" || auth.exempt.iter().any(|p| p == path) {
        return None;
    }
    if headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .any(|v| credential_matches(auth, v.as_bytes()))
    {
        return None;
    }
    let mut r = json_response(
        StatusCode::UNAUTHORIZED,
        json!({"code": "PROXY_ADMIN_AUTH_REQUIRED", "message": "the admin listener needs the credential of admin.auth (HTTP Basic)", "status": "error"}),
    );
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"zoho-auth-proxy admin\", charset=\"UTF-8\""),
    );
    Some(r)
}

fn credential_matches(auth: &AdminAuth, value: &[u8]) -> bool {
    let Some(encoded) = value
        .strip_prefix(b"Basic ")
        .or_else(|| value.strip_prefix(b"basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim_ascii()) else {
        return false;
    };
    let mut expected = auth.username.as_bytes().to_vec();
    expected.push(b':');
    expected.extend_from_slice(auth.password.value.expose_secret().as_bytes());
    // Compare digests: equal length, no early exit on the first differing byte.
    super::html::constant_time_eq(&Sha256::digest(&decoded), &Sha256::digest(&expected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretValue;

    #[test]
    fn basic_credentials_are_checked_and_exempt_paths_pass() {
        let auth = AdminAuth {
            username: "ops".into(),
            password: SecretValue {
                value: "s3cret".to_string().into(),
                file: None,
            },
            exempt: vec!["/healthz".into()],
        };
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let cases: &[(&str, Option<String>, bool)] = &[
            ("/", Some(format!("Basic {}", b64("ops:s3cret"))), true),
            ("/", Some(format!("Basic {}", b64("ops:wrong"))), false),
            ("/", Some(format!("Basic {}", b64("other:s3cret"))), false),
            ("/", Some("Bearer s3cret".into()), false),
            ("/", Some("Basic !!!".into()), false),
            ("/", None, false),
            ("/status", None, false),
            ("/healthz", None, true),
            ("/metrics", None, false),
            ("/oauth/callback", None, true),
        ];
        for (path, header, allowed) in cases {
            let mut headers = HeaderMap::new();
            if let Some(h) = header {
                headers.insert(
                    header::AUTHORIZATION,
                    HeaderValue::from_str(h).expect("header"),
                );
            }
            let refused = check(Some(&auth), path, &headers);
            assert_eq!(refused.is_none(), *allowed, "{path} with {header:?}");
            if let Some(r) = refused {
                assert_eq!(r.status(), 401, "{path}: 401");
                assert!(
                    r.headers().contains_key(header::WWW_AUTHENTICATE),
                    "{path}: challenge"
                );
            }
        }
        assert!(
            check(None, "/", &HeaderMap::new()).is_none(),
            "off by default"
        );
    }
}
