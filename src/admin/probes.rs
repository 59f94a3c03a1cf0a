//! The probes: `/readyz` (per account, and the shutdown) and `/metrics` (`/healthz` is a
//! constant in the router).

use super::{json_response, Admin};
use crate::token::TokenState;
use crate::web::body::{full, ProxyBody};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use serde_json::json;

impl Admin {
    pub(super) fn readyz(&self, query: &str) -> Response<ProxyBody> {
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

    pub(super) fn metrics(&self) -> Response<ProxyBody> {
        let runtime = self.state.runtime.load();
        for a in &runtime.accounts {
            let status = a.token.status();
            self.state.token_metrics.set_token_gauges(
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
}
