//! The fake Zoho Accounts server: `POST /oauth/v2/token`, `POST /oauth/v2/token/revoke` and the
//! auto-approving consent page `GET /oauth/v2/auth`.
//!
//! Owns: request parsing (query string, urlencoded and multipart bodies) and the exact response
//! shapes of REFERENCE.md "Mock server contract" 1–5. Must not: keep token state itself (that is
//! `ledger.rs`) or answer CRM paths.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, CONTENT_TYPE, LOCATION, SERVER};
use http::request::Parts;
use http::{Method, Request};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::time::Instant;

use super::control::{lock, Shared, TokenBehavior};
use super::http::{empty, html, json, raw_json, response, Resp};
use super::ledger::{Grant, MintOutcome, Minted};
use super::recorder::{drain, record_start, Captured};

/// Token requests are tiny; anything larger is refused rather than buffered.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Zoho's throttle body (REFERENCE §1, "Access Denied").
pub(crate) const THROTTLE_BODY: &str = r#"{"error_description":"You have made too many requests continuously. Please try again after some time.","error":"Access Denied","status":"failure"}"#;

/// Routes one accounts-server request (recorded first, body read up to 64 KiB).
pub(crate) async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Resp {
    let (parts, body) = req.into_parts();
    let seq = record_start(&shared, &shared.accounts_log, &parts);
    let path = parts.uri.path();
    let is_token = parts.method == Method::POST && path == "/oauth/v2/token";
    if is_token {
        // Counted on arrival, whatever happens next (even if the body never completes).
        shared.token_requests.fetch_add(1, Ordering::SeqCst);
        shared.notify();
    }
    let captured = drain(&shared, &shared.accounts_log, seq, body, MAX_FORM_BYTES).await;
    let mut resp = match (&parts.method, path) {
        (&Method::POST, "/oauth/v2/token") => token(&shared, &parts, &captured).await,
        (&Method::POST, "/oauth/v2/token/revoke") => revoke(&shared, &parts, &captured),
        (&Method::GET, "/oauth/v2/auth") => authorize(&shared, &parts),
        (_, "/oauth/v2/token" | "/oauth/v2/token/revoke" | "/oauth/v2/auth") => {
            html(405, "Method Not Allowed")
        }
        _ => html(404, "Not Found"),
    };
    resp.headers_mut()
        .insert(SERVER, HeaderValue::from_static("ZGS"));
    resp
}

/// `POST /oauth/v2/token`.
async fn token(shared: &Shared, parts: &Parts, captured: &Captured) -> Resp {
    let behavior = {
        let mut knobs = lock(&shared.knobs);
        knobs
            .queued
            .pop_front()
            .unwrap_or_else(|| knobs.behavior.clone())
    };
    match behavior {
        TokenBehavior::Normal => {}
        TokenBehavior::DelayMs(ms) => {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                () = shared.cancel.cancelled() => return html(503, "Shutting Down"),
            }
        }
        TokenBehavior::Error(code) => return json(200, &serde_json::json!({ "error": code })),
        TokenBehavior::AccessDenied => {
            let status = lock(&shared.knobs).throttle_status;
            return raw_json(status, THROTTLE_BODY.to_owned());
        }
        TokenBehavior::Html(status) => return html(status, "Error"),
        TokenBehavior::Raw { status, body } => return raw_json(status, body),
        TokenBehavior::Hang => {
            shared.cancel.cancelled().await;
            return html(503, "Shutting Down");
        }
    }
    let params = match read_params(parts, captured) {
        Ok(p) => p,
        Err(status) => return html(status, "Bad Request"),
    };
    let get = |k: &str| params.get(k).map(String::as_str);
    let grant = match get("grant_type") {
        Some("refresh_token") => Grant::Refresh {
            refresh_token: get("refresh_token").unwrap_or_default().to_owned(),
        },
        Some("authorization_code") => Grant::Code {
            code: get("code").unwrap_or_default().to_owned(),
            redirect_uri: get("redirect_uri").map(str::to_owned),
        },
        _ => {
            let known = lock(&shared.ledger).knows_client(get("client_id").unwrap_or_default());
            let error = if known {
                "unsupported_grant_type"
            } else {
                "invalid_client"
            };
            return json(200, &serde_json::json!({ "error": error }));
        }
    };
    let (expires_in, throttle_status) = {
        let knobs = lock(&shared.knobs);
        (knobs.expires_in.clone(), knobs.throttle_status)
    };
    let lifetime = shared.lifetime_for(&expires_in);
    let outcome = lock(&shared.ledger).mint(
        get("client_id"),
        get("client_secret"),
        grant,
        lifetime,
        Instant::now(),
    );
    shared.notify();
    match outcome {
        MintOutcome::Minted(minted) => raw_json(200, success_body(shared, &minted, &expires_in)),
        MintOutcome::Error(code) => json(200, &serde_json::json!({ "error": code })),
        MintOutcome::Throttled => raw_json(throttle_status, THROTTLE_BODY.to_owned()),
    }
}

/// The success body, keys in Zoho's order; `expires_in: null` omits the field.
fn success_body(shared: &Shared, minted: &Minted, expires_in: &Value) -> String {
    let mut fields: Vec<(&str, Value)> =
        vec![("access_token", Value::from(minted.access_token.as_str()))];
    if let Some(rt) = &minted.refresh_token {
        fields.push(("refresh_token", Value::from(rt.as_str())));
    }
    if let Some(scope) = &minted.scope {
        fields.push(("scope", Value::from(scope.as_str())));
    }
    fields.push(("api_domain", Value::from(lock(&shared.api_domain).as_str())));
    fields.push(("token_type", Value::from("Bearer")));
    if !expires_in.is_null() {
        fields.push(("expires_in", expires_in.clone()));
    }
    let inner: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{}", Value::from(*k), v))
        .collect();
    format!("{{{}}}", inner.join(","))
}

/// `POST /oauth/v2/token/revoke?token=RT` (or `token` in the body).
fn revoke(shared: &Shared, parts: &Parts, captured: &Captured) -> Resp {
    let params = match read_params(parts, captured) {
        Ok(p) => p,
        Err(status) => return html(status, "Bad Request"),
    };
    let token = params.get("token").map(String::as_str).unwrap_or_default();
    let revoked = lock(&shared.ledger).revoke_refresh(token);
    shared.notify();
    if revoked {
        json(200, &serde_json::json!({ "status": "success" }))
    } else {
        json(
            400,
            &serde_json::json!({ "status": "failure", "error": "invalid_token" }),
        )
    }
}

/// `GET /oauth/v2/auth`: validates the request and auto-approves with a 302 to `redirect_uri`.
fn authorize(shared: &Shared, parts: &Parts) -> Resp {
    let params: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let known_client = get("client_id").is_some_and(|id| lock(&shared.ledger).knows_client(id));
    if !known_client {
        return html(400, "Invalid Client");
    }
    let (Some(scope), Some("code"), Some(redirect_uri)) =
        (get("scope"), get("response_type"), get("redirect_uri"))
    else {
        return html(400, "Invalid Request");
    };
    let offline = match get("access_type") {
        None | Some("online") => false,
        Some("offline") => true,
        Some(_) => return html(400, "Invalid Request"),
    };
    let Ok(mut target) = url::Url::parse(redirect_uri) else {
        return html(400, "Invalid Redirect Uri");
    };
    if !matches!(target.scheme(), "http" | "https") {
        return html(400, "Invalid Redirect Uri");
    }
    let scope = scope
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let code = lock(&shared.ledger).issue_web_code(redirect_uri, &scope, offline, Instant::now());
    lock(&shared.issued_codes).push(code.clone());
    shared.notify();
    {
        let mut q = target.query_pairs_mut();
        q.append_pair("code", &code)
            .append_pair("location", &shared.location)
            .append_pair("accounts-server", &shared.accounts_url);
        if let Some(state) = params.get("state") {
            q.append_pair("state", state);
        }
    }
    let Ok(location) = HeaderValue::from_str(target.as_str()) else {
        return html(400, "Invalid Redirect Uri");
    };
    let mut resp = response(302, empty());
    resp.headers_mut().insert(LOCATION, location);
    resp
}

/// Query parameters merged with body parameters (urlencoded or multipart; body wins).
/// `Err(status)` for a body that is too large, incomplete or malformed.
fn read_params(parts: &Parts, captured: &Captured) -> Result<HashMap<String, String>, u16> {
    let mut params: HashMap<String, String> = parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let Some(buf) = captured.content.as_deref() else {
        return Err(if captured.len as usize > MAX_FORM_BYTES {
            413
        } else {
            400
        });
    };
    let content_type = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime == "multipart/form-data" {
        let boundary = multipart_boundary(content_type).ok_or(400u16)?;
        params.extend(parse_multipart(buf, &boundary).ok_or(400u16)?);
    } else if !buf.is_empty() {
        // Zoho accepts form bodies whatever the declared type (clients often omit it).
        params.extend(url::form_urlencoded::parse(buf).into_owned());
    }
    Ok(params)
}

/// The `boundary` parameter of a multipart content type.
fn multipart_boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|p| {
        let (k, v) = p.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| v.trim().trim_matches('"').to_owned())
    })
}

/// Text fields of a `multipart/form-data` body; `None` when malformed.
fn parse_multipart(body: &[u8], boundary: &str) -> Option<Vec<(String, String)>> {
    let delimiter = format!("--{boundary}");
    let text = String::from_utf8_lossy(body);
    let mut fields = Vec::new();
    let mut sections = text.split(delimiter.as_str());
    // Anything before the first delimiter is preamble.
    sections.next()?;
    for section in sections {
        if section.starts_with("--") {
            return Some(fields);
        }
        let section = section.strip_prefix("\r\n")?;
        let (head, value) = section.split_once("\r\n\r\n")?;
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let name = head.split("\r\n").find_map(|line| {
            let (hname, hval) = line.split_once(':')?;
            if !hname.trim().eq_ignore_ascii_case("content-disposition") {
                return None;
            }
            hval.split(';').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k.trim() == "name").then(|| v.trim().trim_matches('"').to_owned())
            })
        })?;
        fields.push((name, value.to_owned()));
    }
    // No closing delimiter.
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_fields_parse() {
        let body = "--XyZ\r\nContent-Disposition: form-data; name=\"client_id\"\r\n\r\n1000.A\r\n\
                    --XyZ\r\nContent-Disposition: form-data; name=\"grant_type\"\r\n\r\nrefresh_token\r\n--XyZ--\r\n";
        let got = parse_multipart(body.as_bytes(), "XyZ");
        assert_eq!(
            got,
            Some(vec![
                ("client_id".to_owned(), "1000.A".to_owned()),
                ("grant_type".to_owned(), "refresh_token".to_owned())
            ]),
            "two multipart fields are extracted in order"
        );
        assert_eq!(
            parse_multipart(b"--XyZ\r\nbroken", "XyZ"),
            None,
            "malformed part is rejected"
        );
    }

    #[test]
    fn boundary_is_found_quoted_or_not() {
        const CASES: &[(&str, Option<&str>)] = &[
            ("multipart/form-data; boundary=abc", Some("abc")),
            ("multipart/form-data; boundary=\"a b\"", Some("a b")),
            ("multipart/form-data; charset=utf-8; Boundary=x", Some("x")),
            ("multipart/form-data", None),
        ];
        for (ct, want) in CASES {
            assert_eq!(multipart_boundary(ct).as_deref(), *want, "boundary of {ct}");
        }
    }
}
