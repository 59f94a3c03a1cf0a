//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/status`, and the browser
//! authorization endpoints `/oauth/start` and `/oauth/callback` for server-based accounts.
//!
//! Never shows a token or secret. The proxied listener never serves these paths.

pub mod authorize;
pub mod oauth;

use self::oauth::{html_page, CallbackError, OAuthFlows};
use crate::proxy::body::{full, ProxyBody};
use crate::state::AppState;
use crate::token::{Command, TokenState};
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

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
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from(
        serde_json::to_vec_pretty(&value).unwrap_or_default(),
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Headers of every OAuth response: not cached, not framed, and no `Referer` carrying the
/// callback's code to anything the page might load.
fn oauth_headers(r: &mut Response<ProxyBody>) {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
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

impl Admin {
    /// The admin service function.
    pub async fn handle(self, req: Request<Incoming>) -> Result<Response<ProxyBody>, Infallible> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Ok(json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                json!({"code": "PROXY_METHOD_NOT_ALLOWED", "message": "the admin listener answers GET only", "status": "error"}),
            ));
        }
        let query = req.uri().query().unwrap_or("").to_string();
        if req.uri().path() == "/oauth/callback" && req.method() != Method::GET {
            // A HEAD (link scanners, prefetchers) must not consume the state or the code.
            let mut r = html_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "the callback answers GET only",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET"));
            return Ok(r);
        }
        Ok(match req.uri().path() {
            "/healthz" => json_response(StatusCode::OK, json!({"status": "ok"})),
            "/readyz" => self.readyz(&query),
            "/metrics" => self.metrics(),
            "/status" => self.status(),
            "/oauth/start" => self.oauth_start(&query),
            "/oauth/callback" => self.oauth_callback(&query).await,
            _ => json_response(
                StatusCode::NOT_FOUND,
                json!({"code": "PROXY_NOT_FOUND", "message": "admin endpoints: /healthz /readyz /metrics /status /oauth/start /oauth/callback", "status": "error"}),
            ),
        })
    }

    fn readyz(&self, query: &str) -> Response<ProxyBody> {
        if self.shutting_down.is_cancelled() {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "shutting_down", "reasons": [{"reason": "a shutdown signal was received; finishing in-flight requests"}]}),
            );
        }
        let runtime = self.state.runtime.load();
        let only = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "account")
            .map(|(_, v)| v.into_owned());
        let mut reasons = Vec::new();
        let mut waiting = Vec::new();
        // An account nobody has authorized yet does not make the whole proxy unready: the other
        // accounts serve, and the browser flow may need traffic to reach this instance. It is
        // listed, and `/readyz?account=NAME` reports it as not ready.
        for a in runtime
            .accounts
            .iter()
            .filter(|a| only.as_deref().is_none_or(|n| *a.name == *n))
        {
            if let Err(reason) = a.token.ready() {
                if a.token.status().state == TokenState::NotAuthorized {
                    if only.is_none() {
                        waiting.push(a.name.to_string());
                        continue;
                    }
                    let start = runtime
                        .config
                        .account(&a.name)
                        .map(|c| c.authorize_start_url(&self.state.admin_listen))
                        .unwrap_or_default();
                    reasons.push(json!({"account": &*a.name, "reason": format!("not authorized yet: open {start} in a browser; {reason}")}));
                } else {
                    reasons.push(json!({"account": &*a.name, "reason": reason}));
                }
            }
        }
        if only.is_some() && runtime.account(only.as_deref().unwrap_or("")).is_none() {
            return json_response(
                StatusCode::NOT_FOUND,
                json!({"status": "error", "message": "unknown account"}),
            );
        }
        if reasons.is_empty() {
            json_response(
                StatusCode::OK,
                json!({"status": "ready", "awaiting_authorization": waiting}),
            )
        } else {
            json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"status": "not_ready", "reasons": reasons}),
            )
        }
    }

    fn metrics(&self) -> Response<ProxyBody> {
        let runtime = self.state.runtime.load();
        for a in &runtime.accounts {
            let status = a.token.status();
            self.state.metrics.set_token_gauges(
                &a.name,
                a.token.seconds_left(),
                status.mint_budget_left,
                a.token.ready().is_ok(),
            );
        }
        let mut r = Response::new(full(Bytes::from(self.state.metrics.render())));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        r
    }

    fn status(&self) -> Response<ProxyBody> {
        let runtime = self.state.runtime.load();
        let now = crate::token::store::now_unix_ms();
        let accounts: Vec<_> = runtime
            .accounts
            .iter()
            .map(|a| {
                let status = a.token.status();
                let config = runtime.config.account(&a.name);
                let authorize = (status.state == TokenState::NotAuthorized)
                    .then(|| config.map(|c| c.authorize_start_url(&self.state.admin_listen)))
                    .flatten();
                json!({
                    "name": &*a.name,
                    "client_type": a.client_type,
                    "listen": config.and_then(|c| c.listen.as_ref()).map(|l| l.to_string()),
                    "data_center": config.map(|c| c.data_center.code()),
                    "api_host": status.api_host,
                    "ready": a.token.ready().is_ok(),
                    "authorize": authorize,
                    "token": {
                        "state": status.state,
                        "expires_in_s": a.token.seconds_left().floor(),
                        "last_refresh_unix_ms": status.last_refresh_unix_ms,
                        "last_refresh_ago_s": status.last_refresh_unix_ms.map(|t| now.saturating_sub(t) / 1000),
                        "last_error": status.last_error,
                        "next_attempt_in_s": status.next_attempt_unix_ms.map(|t| t.saturating_sub(now).div_ceil(1000)),
                        "mint_budget_left": status.mint_budget_left,
                        "mint_budget": status.mint_budget,
                        "store_error": status.store_error,
                    },
                    "policy": a.policy.summary(),
                })
            })
            .collect();
        json_response(
            StatusCode::OK,
            json!({
                "version": env!("CARGO_PKG_VERSION"),
                "uptime_s": self.started.elapsed().as_secs(),
                "listen": runtime.config.listen.to_string(),
                "routing": runtime.config.routing,
                "accounts": accounts,
            }),
        )
    }

    fn oauth_start(&self, query: &str) -> Response<ProxyBody> {
        let runtime = self.state.runtime.load();
        let name = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "account")
            .map(|(_, v)| v.into_owned());
        let Some(account) = name.as_deref().and_then(|n| runtime.config.account(n)) else {
            return html_response(
                StatusCode::BAD_REQUEST,
                "Unknown account",
                &format!(
                    "Use /oauth/start?account=NAME with one of: {}",
                    runtime.account_names()
                ),
            );
        };
        match self.oauth.start(account) {
            Ok(url) => {
                let Ok(location) = HeaderValue::from_str(url.as_str()) else {
                    return html_response(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Cannot authorize this account",
                        "the authorize URL is not a valid header value",
                    );
                };
                info!(account = %account.name, accounts_server = %account.accounts_url.origin().ascii_serialization(), "browser authorization started");
                let mut r = Response::new(full(Bytes::new()));
                *r.status_mut() = StatusCode::FOUND;
                r.headers_mut().insert(header::LOCATION, location);
                oauth_headers(&mut r);
                r
            }
            Err(message) => html_response(
                StatusCode::BAD_REQUEST,
                "Cannot authorize this account",
                &message,
            ),
        }
    }

    async fn oauth_callback(&self, query: &str) -> Response<ProxyBody> {
        let runtime = self.state.runtime.load_full();
        let callback = match self.oauth.callback(query, &runtime.config.accounts) {
            Ok(c) => c,
            Err(
                e @ (CallbackError::UnknownState
                | CallbackError::ExpiredState
                | CallbackError::BadParameter(_)),
            ) => {
                warn!("OAuth callback refused: {e}");
                return html_response(
                    StatusCode::BAD_REQUEST,
                    "Authorization refused",
                    &e.to_string(),
                );
            }
            Err(e @ CallbackError::Denied(_)) => {
                warn!("OAuth callback: {e}");
                return html_response(
                    StatusCode::BAD_REQUEST,
                    "Authorization not granted",
                    &e.to_string(),
                );
            }
        };
        info!(
            account = %callback.account,
            location = callback.location.as_deref().unwrap_or("-"),
            accounts_server = %callback.accounts_url.origin().ascii_serialization(),
            "OAuth callback accepted; exchanging the code"
        );
        let Some(account) = runtime.account(&callback.account) else {
            return html_response(
                StatusCode::BAD_REQUEST,
                "Unknown account",
                "the account is no longer configured",
            );
        };
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let command = Command::Authorize {
            code: callback.code,
            accounts_url: callback.accounts_url,
            reply,
        };
        if let Err(e) = account.token.command(command).await {
            return html_response(StatusCode::SERVICE_UNAVAILABLE, "Authorization failed", &e);
        }
        match tokio::time::timeout(Duration::from_secs(30), outcome).await {
            Ok(Ok(Ok(()))) => html_response(
                StatusCode::OK,
                "Authorized",
                &format!("Account `{}` is authorized. The proxy now serves it; you can close this window.", account.name),
            ),
            Ok(Ok(Err(message))) => {
                warn!(account = %account.name, "authorization failed: {message}");
                html_response(StatusCode::BAD_GATEWAY, "Authorization failed", &message)
            }
            _ => html_response(StatusCode::GATEWAY_TIMEOUT, "Authorization failed", "the token exchange did not finish in time"),
        }
    }
}
