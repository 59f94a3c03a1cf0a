//! Header hygiene in both directions.
//!
//! Requests: hop-by-hop headers, every header named in `Connection`, the client's credentials,
//! forwarding/trust headers, method overrides, framing and `Host` are dropped *before* the
//! proxy's own `Authorization` is set, so `Connection: Authorization` cannot remove the token.
//! Responses: hop-by-hop headers and `Set-Cookie` are dropped; everything else passes unchanged.

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONNECTION, CONTENT_LENGTH};

/// Request headers never forwarded (lower-case).
const REQUEST_DROP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
    "expect",
    "host",
    "content-length",
    "authorization",
    "proxy-authorization",
    "proxy-authenticate",
    "cookie",
    "forwarded",
    "x-real-ip",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-zoho-account",
    // The requester checks' own headers (crate::access): the SSRF marker and client keys.
    "x-zoho-proxy-request",
    "x-zoho-proxy-key",
    // Books/Inventory read the organization from these too (reported, unconfirmed): only the
    // checked `organization_id` of the query may choose it.
    "x-com-zoho-books-organizationid",
    "x-com-zoho-inventory-organizationid",
];

/// Response headers never returned (lower-case).
const RESPONSE_DROP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "set-cookie",
];

/// The tokens of the `Connection` header(s), lower-cased (borrowed when already lower-case).
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = Cow<'_, str>> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| match t.bytes().any(|b| b.is_ascii_uppercase()) {
            true => Cow::Owned(t.to_ascii_lowercase()),
            false => Cow::Borrowed(t),
        })
}

/// Names listed in the `Connection` header(s).
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    connection_tokens(headers).map(Cow::into_owned).collect()
}

fn dropped_request_header(name: &HeaderName, listed: &[String]) -> bool {
    // Some servers and frameworks read `X_Forwarded_For` as `X-Forwarded-For` (CGI-style
    // `HTTP_X_FORWARDED_FOR`), so underscore spellings of a dropped name are dropped too:
    // `Content_Length`, `X_HTTP_Method_Override`, `Proxy_Authorization`, ...
    let hyphenated;
    let n = if name.as_str().contains('_') {
        hyphenated = name.as_str().replace('_', "-");
        hyphenated.as_str()
    } else {
        name.as_str()
    };
    REQUEST_DROP.contains(&n)
        || n.starts_with("x-forwarded-")
        || n.starts_with("proxy-")
        || n.starts_with("sec-fetch-")
        || listed.iter().any(|l| l == n || l.replace('_', "-") == n)
}

/// The headers to send upstream: the client's, cleaned, plus the proxy's `Authorization` and,
/// when the body length is known, `Content-Length`.
pub fn upstream_request_headers(
    client: &HeaderMap,
    authorization: HeaderValue,
    content_length: Option<u64>,
) -> HeaderMap {
    let listed = connection_listed(client);
    let mut out = HeaderMap::with_capacity(client.len() + 2);
    for (name, value) in client {
        if !dropped_request_header(name, &listed) {
            out.append(name.clone(), value.clone());
        }
    }
    // Set after the removal above, so nothing the client listed can remove it.
    out.insert(AUTHORIZATION, authorization);
    if let Some(len) = content_length {
        out.insert(CONTENT_LENGTH, HeaderValue::from(len));
    }
    out
}

fn dropped_response_header(name: &str) -> bool {
    RESPONSE_DROP.contains(&name) || name.starts_with("access-control-")
}

/// Removes hop-by-hop headers (and those named in `Connection`), `Set-Cookie` and every CORS
/// header (`Access-Control-*`: the proxy never lets a page read a response) from a response, and
/// adds [`harden`]'s headers plus `Content-Security-Policy: sandbox` (an HTML attachment opened
/// by navigation renders in an opaque origin).
pub fn clean_response_headers(headers: &mut HeaderMap) {
    // Room for the three added below at once (one grow at most).
    headers.reserve(3);
    crate::web::headers::harden(headers);
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    // Most responses carry none of them or only `Connection: keep-alive` (HTTP/2 forbids the
    // hop-by-hop ones): find the names present in one pass over the map's names (no allocation
    // when there are none), then remove just those by their parsed name, instead of parsing and
    // hashing every listed name for each response.
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|n| dropped_response_header(n.as_str()))
        .cloned()
        .collect();
    if doomed.is_empty() {
        return;
    }
    // Names the `Connection` header lists beyond the ones dropped anyway (`keep-alive`, `close`
    // and the like name nothing else, so the usual value allocates nothing).
    let listed: Vec<String> = connection_tokens(headers)
        // Never strip framing-relevant Content-Length through a Connection trick.
        .filter(|t| !matches!(&**t, "close" | "content-length") && !dropped_response_header(t))
        .map(Cow::into_owned)
        .collect();
    for name in &doomed {
        headers.remove(name);
    }
    for name in &listed {
        headers.remove(name.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        h
    }

    #[test]
    fn client_credentials_hop_by_hop_and_listed_headers_never_pass() {
        let client = map(&[
            ("authorization", "Zoho-oauthtoken ATTACKER"),
            ("authorization", "Bearer x"),
            ("connection", "keep-alive, Authorization, X-Custom"),
            ("x-custom", "1"),
            ("cookie", "a=b"),
            ("x-forwarded-for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-http-method-override", "DELETE"),
            ("transfer-encoding", "chunked"),
            ("content-length", "5"),
            ("host", "evil.example"),
            ("expect", "100-continue"),
            ("proxy-authorization", "Basic x"),
            ("x_forwarded_for", "1.2.3.4"),
            ("x_http_method_override", "DELETE"),
            ("content_length", "9"),
            ("transfer_encoding", "chunked"),
            ("proxy_authorization", "Basic x"),
            ("x-custom_header", "kept"),
            ("upgrade", "websocket"),
            ("accept", "application/json"),
            ("if-modified-since", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("X-com-zoho-books-organizationid", "70000"),
            ("x_com_zoho_inventory_organizationid", "70000"),
        ]);
        let mut token = HeaderValue::from_static("Zoho-oauthtoken GOOD");
        token.set_sensitive(true);
        let out = upstream_request_headers(&client, token, Some(5));
        let auth: Vec<_> = out.get_all(AUTHORIZATION).iter().collect();
        assert_eq!(
            auth,
            vec!["Zoho-oauthtoken GOOD"],
            "exactly one Authorization, the proxy's"
        );
        for gone in [
            "connection",
            "x-custom",
            "cookie",
            "x-forwarded-for",
            "forwarded",
            "x-http-method-override",
            "transfer-encoding",
            "host",
            "expect",
            "proxy-authorization",
            "upgrade",
            "x_forwarded_for",
            "x_http_method_override",
            "content_length",
            "transfer_encoding",
            "proxy_authorization",
            "x-com-zoho-books-organizationid",
            "x_com_zoho_inventory_organizationid",
        ] {
            assert!(!out.contains_key(gone), "{gone} must not be forwarded");
        }
        assert_eq!(
            out["x-custom_header"], "kept",
            "other underscore names pass"
        );
        assert_eq!(
            out.get_all(CONTENT_LENGTH).iter().count(),
            1,
            "one Content-Length"
        );
        assert_eq!(out["accept"], "application/json", "ordinary headers pass");
        assert!(
            out.contains_key("if-modified-since"),
            "conditional headers pass"
        );
    }

    #[test]
    fn response_hop_by_hop_and_cookies_are_removed() {
        let mut h = map(&[
            ("connection", "close, X-Foo, Content-Length,, Keep-Alive"),
            ("x-foo", "1"),
            ("content-length", "2"),
            ("keep-alive", "timeout=5"),
            ("set-cookie", "zsession=1"),
            ("content-type", "application/json"),
            ("x-api-credits-remaining", "10"),
        ]);
        clean_response_headers(&mut h);
        assert!(
            !h.contains_key("connection")
                && !h.contains_key("x-foo")
                && !h.contains_key("keep-alive")
        );
        assert!(
            !h.contains_key("set-cookie"),
            "cookies are not shared with local clients"
        );
        assert_eq!(h["x-api-credits-remaining"], "10", "Zoho headers pass");
        assert_eq!(h["content-length"], "2", "framing is never removed by name");
        assert_eq!(h["content-security-policy"], "sandbox");
    }
}
