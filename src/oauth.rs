//! The browser authorization flow for server-based clients: the authorize URL with a random,
//! single-use `state` that expires in 10 minutes, and the checks on Zoho's callback.
//!
//! The code exchange itself is done by the account's refresher (the only token minter).

use crate::config::{AccountConfig, ClientType, DataCenter};
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a `state` stays valid.
pub const STATE_TTL: Duration = Duration::from_secs(600);
/// Outstanding states kept at most (older ones are dropped first).
const MAX_PENDING: usize = 1024;

/// Why a callback was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// No `state`, or one this proxy never issued (or already used).
    #[error("unknown or already used state: start again from /oauth/start")]
    UnknownState,
    /// The state is older than 10 minutes.
    #[error("the authorization took longer than 10 minutes: start again from /oauth/start")]
    ExpiredState,
    /// A parameter is missing or malformed.
    #[error("{0}")]
    BadParameter(String),
    /// Zoho reported an error (e.g. the person denied access).
    #[error("Zoho reported: {0}")]
    Denied(String),
}

struct Pending {
    account: String,
    created: Instant,
}

/// Outstanding authorization requests.
#[derive(Default)]
pub struct OAuthFlows {
    pending: Mutex<HashMap<String, Pending>>,
}

/// A validated callback.
#[derive(Debug)]
pub struct Callback {
    /// Account the state was issued for.
    pub account: String,
    /// Authorization code (secret).
    pub code: secrecy::SecretString,
    /// Accounts server to exchange the code at.
    pub accounts_url: url::Url,
}

impl OAuthFlows {
    /// Builds the authorize URL for `account` and remembers its state.
    pub fn start(&self, account: &AccountConfig) -> Result<url::Url, String> {
        if account.client_type != ClientType::Server {
            return Err(format!(
                "account `{}` is a self client; only client_type: server accounts authorize in a browser",
                account.name
            ));
        }
        let redirect_uri = account
            .redirect_uri
            .as_ref()
            .ok_or_else(|| format!("account `{}` has no redirect_uri", account.name))?;
        let mut bytes = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut bytes);
        let state: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        {
            let mut pending = self
                .pending
                .lock()
                .map_err(|_| "state store poisoned".to_string())?;
            pending.retain(|_, p| p.created.elapsed() < STATE_TTL);
            if pending.len() >= MAX_PENDING {
                if let Some(oldest) = pending
                    .iter()
                    .min_by_key(|(_, p)| p.created)
                    .map(|(k, _)| k.clone())
                {
                    pending.remove(&oldest);
                }
            }
            pending.insert(
                state.clone(),
                Pending {
                    account: account.name.clone(),
                    created: Instant::now(),
                },
            );
        }
        Ok(authorize_url(account, redirect_uri.as_str(), &state))
    }

    /// Checks a callback's query: the state (single use, 10 minutes), the code, and the accounts
    /// server (a known Zoho accounts server, or the account's configured one).
    pub fn callback(
        &self,
        query: &str,
        accounts: &[AccountConfig],
    ) -> Result<Callback, CallbackError> {
        let params: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let state = params.get("state").ok_or(CallbackError::UnknownState)?;
        let pending = {
            let mut map = self
                .pending
                .lock()
                .map_err(|_| CallbackError::UnknownState)?;
            map.remove(state).ok_or(CallbackError::UnknownState)?
        };
        if pending.created.elapsed() >= STATE_TTL {
            return Err(CallbackError::ExpiredState);
        }
        if let Some(error) = params.get("error") {
            return Err(CallbackError::Denied(crate::proxy::log_safe(error)));
        }
        let code = params
            .get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| CallbackError::BadParameter("the callback has no code".into()))?;
        let account = accounts
            .iter()
            .find(|a| a.name == pending.account)
            .ok_or_else(|| {
                CallbackError::BadParameter("the account no longer exists in the config".into())
            })?;
        let accounts_url = match params.get("accounts-server") {
            None => account.accounts_url.clone(),
            Some(server) => {
                let url = url::Url::parse(server).map_err(|_| {
                    CallbackError::BadParameter("accounts-server is not a URL".into())
                })?;
                let configured = url.origin() == account.accounts_url.origin();
                if !configured && DataCenter::from_accounts_url(url.as_str()).is_none() {
                    // Never send the client secret to a server named by a query parameter unless
                    // it is one of Zoho's accounts servers.
                    return Err(CallbackError::BadParameter(format!(
                        "accounts-server {} is not a Zoho accounts server",
                        crate::proxy::log_safe(server)
                    )));
                }
                url
            }
        };
        Ok(Callback {
            account: account.name.clone(),
            code: secrecy::SecretString::from(code.clone()),
            accounts_url,
        })
    }
}

/// `{accounts}/oauth/v2/auth?...` for an account.
pub fn authorize_url(account: &AccountConfig, redirect_uri: &str, state: &str) -> url::Url {
    let mut url = account.accounts_url.clone();
    url.set_path("/oauth/v2/auth");
    url.query_pairs_mut()
        .append_pair("scope", &account.scopes.join(","))
        .append_pair("client_id", &account.client_id)
        .append_pair("response_type", "code")
        .append_pair("access_type", "offline")
        .append_pair("prompt", "consent")
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("state", state);
    url
}

/// A small HTML page for the person in the browser.
pub fn html_page(title: &str, message: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>{t}</h1><p>{m}</p></body></html>",
        t = esc(title),
        m = esc(message)
    )
}
