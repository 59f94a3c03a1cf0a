//! The admin listener: `/healthz`, `/readyz`, `/metrics`, `/status`, and the browser
//! authorization endpoints `/oauth/start` and `/oauth/callback` for server-based accounts.
//!
//! Never shows a token or secret. The proxied listener never serves these paths.

use crate::oauth::{html_page, CallbackError, OAuthFlows};
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

/// Admin-side state.
#[derive(Clone)]
pub struct Admin {
    /// Shared proxy state.
    pub state: AppState,
    /// Pending browser authorizations.
    pub oauth: Arc<OAuthFlows>,
    /// Process start.
    pub started: Instant,
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

fn html_response(status: StatusCode, title: &str, message: &str) -> Response<ProxyBody> {
    let mut r = Response::new(full(Bytes::from(html_page(title, message))));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
        let runtime = self.state.runtime.load();
        let only = url::form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "account")
            .map(|(_, v)| v.into_owned());
        let mut reasons = Vec::new();
        let mut waiting = Vec::new();
        for a in runtime
            .accounts
            .iter()
            .filter(|a| only.as_deref().is_none_or(|n| *a.name == *n))
        {
            if let Err(reason) = a.token.ready() {
                if a.token.status().state == TokenState::NotAuthorized && only.is_none() {
                    waiting.push(a.name.to_string());
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
                json!({
                    "name": &*a.name,
                    "client_type": a.client_type,
                    "data_center": config.map(|c| c.data_center.code()),
                    "api_host": status.api_host,
                    "ready": a.token.ready().is_ok(),
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
                let mut r = Response::new(full(Bytes::new()));
                *r.status_mut() = StatusCode::FOUND;
                if let Ok(v) = HeaderValue::from_str(url.as_str()) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                r.headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
                return html_response(
                    StatusCode::BAD_REQUEST,
                    "Authorization refused",
                    &e.to_string(),
                );
            }
            Err(e @ CallbackError::Denied(_)) => {
                return html_response(
                    StatusCode::BAD_REQUEST,
                    "Authorization not granted",
                    &e.to_string(),
                );
            }
        };
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
            Ok(Ok(Err(message))) => html_response(StatusCode::BAD_GATEWAY, "Authorization failed", &message),
            _ => html_response(StatusCode::GATEWAY_TIMEOUT, "Authorization failed", "the token exchange did not finish in time"),
        }
    }
}
