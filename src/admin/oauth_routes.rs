//! The HTTP side of the browser authorization flow: `/oauth/start` (a GET the operator types,
//! or the console's POST carrying its CSRF token) and `/oauth/callback`. The states and the
//! callback's checks are in [`super::oauth`].

use super::oauth::CallbackError;
use super::{html_response, oauth_headers, param, Admin};
use crate::token::Command;
use crate::web::body::{full, ProxyBody};
use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use std::time::Duration;
use tracing::{info, warn};

impl Admin {
    /// `GET /oauth/start?account=NAME`, typed by the operator: 302 to Zoho.
    pub(super) fn oauth_start(&self, query: &str) -> Response<ProxyBody> {
        self.start_flow(
            param(query.as_bytes(), "account").as_deref(),
            StatusCode::FOUND,
        )
    }

    /// `POST /oauth/start` from the console's Authorize button: `account` and the page's
    /// `csrf` token as form fields; 303 to Zoho. Refused (403, no state created) without a
    /// valid token.
    pub(super) fn oauth_start_form(&self, form: &[u8]) -> Response<ProxyBody> {
        let token = param(form, "csrf").unwrap_or_default();
        if !self.csrf.verify(
            super::console::AUTHORIZE_ACTION,
            &token,
            crate::util::clock::now_unix_ms() / 1000,
        ) {
            warn!("console authorize refused: missing or invalid CSRF token");
            return super::html::message(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form's token is missing, expired or not from this proxy. Reload the console and press the button again.",
            );
        }
        self.start_flow(param(form, "account").as_deref(), StatusCode::SEE_OTHER)
    }

    fn start_flow(&self, name: Option<&str>, redirect: StatusCode) -> Response<ProxyBody> {
        let runtime = self.state.runtime.load();
        let Some(account) = name.and_then(|n| runtime.config.account(n)) else {
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
                *r.status_mut() = redirect;
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

    pub(super) async fn oauth_callback(&self, query: &str) -> Response<ProxyBody> {
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
