//! The admin listener: the probes (`/healthz`, `/readyz`, `/metrics`), `/status`, the operator
//! console (`/`), `/explain`, `/cache/purge`, and the browser authorization endpoints `/oauth/start` and
//! `/oauth/callback` for server-based accounts.
//!
//! Never shows a token, secret, authorization code or client key, and never forwards anything
//! to Zoho. The proxied listener never serves these paths. Requester checks (Host, browser
//! markers) happen in front of this, at listener level; this module checks the optional admin
//! credential (`admin.auth`) and the console forms' CSRF tokens.

mod auth;
pub mod authorize;
mod cache;
mod concurrency;
mod console;
mod explain;
pub mod html;
pub mod oauth;
mod oauth_routes;
mod organizations;
mod probes;
mod status;

use self::html::Csrf;
use self::oauth::{html_page, OAuthFlows};
use crate::state::AppState;
use crate::web::body::{collect_capped, full, Collected, ProxyBody};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// The admin listener's service: the requester checks for the whole listener (so a route added
/// later is covered too), then the admin's handlers; every answer is hardened against being read
/// or framed by a page.
pub async fn service(
    admin: Admin,
    transport: crate::access::Transport,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let checked = admin.state.runtime.load().access.check_admin(
        transport,
        req.method(),
        req.uri(),
        req.version(),
        req.headers(),
    );
    let mut response = match checked {
        Ok(()) => admin.handle(req).await?,
        Err(refusal) => {
            admin.state.metrics.refused("admin", refusal.rule);
            admin.state.observed.record_refusal(
                refusal.code,
                refusal.rule,
                req.method().as_str(),
                req.uri().path(),
            );
            tracing::debug!(
                rule = refusal.rule,
                code = refusal.code,
                path = %crate::util::log_safe(req.uri().path()),
                "admin request refused by the requester checks"
            );
            refusal.into_response()
        }
    };
    let headers = response.headers_mut();
    crate::web::headers::harden(headers);
    if !headers.contains_key(header::CACHE_CONTROL) {
        crate::web::headers::no_store(headers);
    }
    Ok(response)
}

/// Largest form or explain body the admin listener reads.
const MAX_FORM_BODY: u64 = 256 * 1024;

/// Admin-side state.
#[derive(Clone)]
pub struct Admin {
    /// Shared proxy state.
    pub state: AppState,
    /// Pending browser authorizations.
    pub oauth: Arc<OAuthFlows>,
    /// Process start.
    pub started: Instant,
    /// Cancelled when a shutdown signal arrives: `/readyz` then answers 503 (also during
    /// `shutdown.delay`, while connections are still accepted) so traffic moves elsewhere.
    pub shutting_down: CancellationToken,
    /// The console forms' CSRF tokens.
    pub csrf: Arc<Csrf>,
}

/// The admin routes and the methods each answers (for `405` and `Allow`).
const ROUTES: &[(&str, &str)] = &[
    ("/", "GET, HEAD"),
    (html::STYLESHEET_PATH, "GET, HEAD"),
    ("/healthz", "GET, HEAD"),
    ("/readyz", "GET, HEAD"),
    ("/metrics", "GET, HEAD"),
    ("/status", "GET, HEAD"),
    ("/explain", "GET, HEAD, POST"),
    ("/oauth/start", "GET, POST"),
    ("/oauth/callback", "GET"),
    (cache::PURGE_ACTION, "POST"),
];

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<ProxyBody> {
    crate::web::error::document(status, &value)
}

/// Headers of every OAuth response: not cached, not framed, and no `Referer` carrying the
/// callback's code to anything the page might load.
fn oauth_headers(r: &mut Response<ProxyBody>) {
    html::page_headers(
        r.headers_mut(),
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
    );
}

fn html_response(status: StatusCode, title: &str, message: &str) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from(html_page(title, message))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    oauth_headers(&mut r);
    r
}

/// Whether the client asked for JSON (`Accept: application/json`).
fn wants_json(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("application/json"))
}

/// Whether the request body is an HTML form.
fn is_form(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// One parameter of a query string or form body (the first occurrence).
fn param(encoded: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(encoded)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl Admin {
    /// The admin side of a running proxy.
    pub fn new(state: AppState, started: Instant, shutting_down: CancellationToken) -> Admin {
        Admin {
            state,
            oauth: Arc::default(),
            started,
            shutting_down,
            csrf: Arc::default(),
        }
    }

    /// The admin service function.
    pub async fn handle(self, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        let runtime = self.state.runtime.load_full();
        let path = req.uri().path().to_string();
        if let Some(refused) = auth::check(runtime.config.admin_auth.as_ref(), &path, req.headers())
        {
            return Ok(refused);
        }
        let query = req.uri().query().unwrap_or("").to_string();
        let get = req.method() == Method::GET || req.method() == Method::HEAD;
        let post = req.method() == Method::POST;
        Ok(match path.as_str() {
            "/oauth/callback" if req.method() == Method::GET => self.oauth_callback(&query).await,
            "/oauth/callback" => {
                // A HEAD (link scanners, prefetchers) must not consume the state or the code.
                let mut r = html_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Method not allowed",
                    "the callback answers GET only",
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET"));
                r
            }
            "/" if get => self.console(),
            html::STYLESHEET_PATH if get => html::stylesheet(),
            "/healthz" if get => json_response(StatusCode::OK, json!({"status": "ok"})),
            "/readyz" if get => self.readyz(&query),
            "/metrics" if get => self.metrics(),
            "/status" if get => self.status(),
            "/explain" if get => self.explain(query.as_bytes(), None, req.headers()),
            "/explain" if post => {
                // A form (the console) carries method, path and body as fields; anything else
                // is the body to explain, with method and path in the query.
                let (parts, body) = req.into_parts();
                match self.read_body(body).await {
                    Ok(form) if is_form(&parts.headers) => {
                        let body = param(&form, "body")
                            .filter(|b| !b.trim().is_empty())
                            .map(String::into_bytes);
                        self.explain(&form, body.as_deref(), &parts.headers)
                    }
                    Ok(bytes) => self.explain(query.as_bytes(), Some(&bytes), &parts.headers),
                    Err(r) => r,
                }
            }
            // Not HEAD: a prefetcher or link scanner must not create authorization states.
            "/oauth/start" if req.method() == Method::GET => self.oauth_start(&query),
            "/oauth/start" if post => {
                let (_, body) = req.into_parts();
                match self.read_body(body).await {
                    Ok(form) => self.oauth_start_form(&form),
                    Err(r) => r,
                }
            }
            cache::PURGE_ACTION if post => {
                // The console's button posts a form (CSRF-checked); a script posts nothing.
                let (parts, body) = req.into_parts();
                match self.read_body(body).await {
                    Ok(form) if is_form(&parts.headers) => self.cache_purge_form(&form),
                    Ok(_) => self.cache_purge(&query),
                    Err(r) => r,
                }
            }
            other => match ROUTES.iter().find(|(p, _)| *p == other) {
                Some((_, allow)) => {
                    let mut r = json_response(
                        StatusCode::METHOD_NOT_ALLOWED,
                        json!({"code": "PROXY_METHOD_NOT_ALLOWED", "message": format!("{other} answers {allow} only"), "status": "error"}),
                    );
                    r.headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static(allow));
                    r
                }
                None => json_response(
                    StatusCode::NOT_FOUND,
                    json!({"code": "PROXY_NOT_FOUND", "message": "admin endpoints: / /explain /healthz /readyz /metrics /status /oauth/start /oauth/callback /cache/purge", "status": "error"}),
                ),
            },
        })
    }

    /// Reads a small request body (forms, explain bodies).
    async fn read_body(&self, body: Incoming) -> Result<Bytes, Response<ProxyBody>> {
        let idle = self.state.runtime.load().limits.body_idle_timeout;
        match collect_capped(body, MAX_FORM_BODY, idle).await {
            Ok(Collected::Complete(bytes)) => Ok(bytes),
            Ok(Collected::Exceeded(..)) => Err(json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"code": "PROXY_BODY_TOO_LARGE", "message": format!("the admin listener reads bodies of at most {MAX_FORM_BODY} bytes"), "status": "error"}),
            )),
            Err(_) => Err(json_response(
                StatusCode::BAD_REQUEST,
                json!({"code": "PROXY_BAD_BODY", "message": "the request body could not be read", "status": "error"}),
            )),
        }
    }
}
