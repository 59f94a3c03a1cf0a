//! The browser authorization flow for server-based clients: the authorize URL with a random,
//! single-use `state` that expires in 10 minutes, and the checks on Zoho's callback (state,
//! code, and the `accounts-server` the code must be exchanged at).
//!
//! Owns the pending states only. Must not exchange the code or touch tokens: the account's
//! refresher does that (it is the only token minter). Time is a parameter of the `*_at` methods
//! so the expiry is unit-tested without waiting.

use crate::config::{AccountConfig, ClientType};
use rand::RngCore;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a `state` stays valid.
pub const STATE_TTL: Duration = Duration::from_secs(600);
/// Outstanding states kept at most (the oldest is dropped first).
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

/// Outstanding authorization requests (state → account, issue time).
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
    /// Accounts server to exchange the code at (a bare origin, see
    /// [`AccountConfig::accepted_accounts_server`]).
    pub accounts_url: url::Url,
    /// The data-center code Zoho reported in `location=` (sanitised), if any.
    pub location: Option<String>,
}

impl OAuthFlows {
    /// Builds the authorize URL for `account` and remembers its state.
    pub fn start(&self, account: &AccountConfig) -> Result<url::Url, String> {
        self.start_at(account, Instant::now())
    }

    /// [`OAuthFlows::start`] at a given time.
    pub fn start_at(&self, account: &AccountConfig, now: Instant) -> Result<url::Url, String> {
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
            pending.retain(|_, p| now.saturating_duration_since(p.created) < STATE_TTL);
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
                    created: now,
                },
            );
        }
        Ok(authorize_url(account, redirect_uri.as_str(), &state))
    }

    /// Checks a callback's query: the state (single use, 10 minutes), the code, and the accounts
    /// server (one of Zoho's, or the account's configured one).
    pub fn callback(
        &self,
        query: &str,
        accounts: &[AccountConfig],
    ) -> Result<Callback, CallbackError> {
        self.callback_at(query, accounts, Instant::now())
    }

    /// [`OAuthFlows::callback`] at a given time. The state is consumed by any callback that
    /// names it, whether or not the rest checks out.
    pub fn callback_at(
        &self,
        query: &str,
        accounts: &[AccountConfig],
        now: Instant,
    ) -> Result<Callback, CallbackError> {
        let mut params: HashMap<String, String> = HashMap::new();
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if params
                .insert(key.clone().into_owned(), value.into_owned())
                .is_some()
                && matches!(
                    &*key,
                    "state" | "code" | "accounts-server" | "location" | "error"
                )
            {
                return Err(CallbackError::BadParameter(format!(
                    "the callback repeats `{key}`"
                )));
            }
        }
        let state = params.get("state").ok_or(CallbackError::UnknownState)?;
        let pending = {
            let mut map = self
                .pending
                .lock()
                .map_err(|_| CallbackError::UnknownState)?;
            map.remove(state).ok_or(CallbackError::UnknownState)?
        };
        if now.saturating_duration_since(pending.created) >= STATE_TTL {
            return Err(CallbackError::ExpiredState);
        }
        if let Some(error) = params.get("error") {
            return Err(CallbackError::Denied(crate::util::log_safe(error)));
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
            Some(server) => url::Url::parse(server)
                .ok()
                .and_then(|url| account.accepted_accounts_server(&url))
                .ok_or_else(|| {
                    // Never send the client secret to a server named by a query parameter unless
                    // it is one of Zoho's accounts servers (or the configured one).
                    CallbackError::BadParameter(format!(
                        "accounts-server {} is not a Zoho accounts server nor this account's accounts_url; the code was not exchanged",
                        crate::util::log_safe(server)
                    ))
                })?,
        };
        let location = params.get("location").map(|l| crate::util::log_safe(l));
        Ok(Callback {
            account: account.name.clone(),
            code: secrecy::SecretString::from(code.clone()),
            accounts_url,
            location,
        })
    }

    /// States issued and not yet used or expired at `now` (for tests and status).
    pub fn pending_at(&self, now: Instant) -> usize {
        self.pending
            .lock()
            .map(|p| {
                p.values()
                    .filter(|p| now.saturating_duration_since(p.created) < STATE_TTL)
                    .count()
            })
            .unwrap_or(0)
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

/// A small HTML page for the person in the browser (title and message are escaped).
pub fn html_page(title: &str, message: &str) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
            .replace('\'', "&#39;")
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body style=\"font-family:sans-serif;max-width:40em;margin:3em auto\"><h1>{t}</h1><p>{m}</p></body></html>",
        t = esc(title),
        m = esc(message)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use secrecy::ExposeSecret;

    const YAML: &str = "accounts:
  - name: globex
    client_type: server
    data_center: us
    accounts_url: https://127.0.0.1:4443
    client_id: 1000.CID
    client_secret: s
    redirect_uri: http://127.0.0.1:9901/oauth/callback
    token:
      store: /tmp/never-written.json
    allow: [ZohoCRM.modules.leads.READ, ZohoCRM.modules.contacts.ALL]
  - name: own
    client_id: 1000.CID
    client_secret: s
    refresh_token: r
    allow: [ZohoCRM.modules.leads.READ]
";

    fn accounts() -> Vec<AccountConfig> {
        Config::from_yaml_str(YAML)
            .expect("test config is valid")
            .accounts
    }

    fn state_of(url: &url::Url) -> String {
        url.query_pairs()
            .find(|(k, _)| k == "state")
            .map(|(_, v)| v.into_owned())
            .expect("state in the URL")
    }

    fn query(state: &str, extra: &str) -> String {
        format!("state={state}&code=1000.code&location=eu{extra}")
    }

    #[test]
    fn the_authorize_url_carries_every_parameter_zoho_needs() {
        let accounts = accounts();
        let url = OAuthFlows::default()
            .start(&accounts[0])
            .expect("server account starts");
        assert_eq!(
            url.origin().ascii_serialization(),
            "https://127.0.0.1:4443",
            "configured accounts server"
        );
        assert_eq!(url.path(), "/oauth/v2/auth", "authorize endpoint");
        let q: HashMap<String, String> = url.query_pairs().into_owned().collect();
        let expect = [
            (
                "scope",
                "ZohoCRM.modules.leads.READ,ZohoCRM.modules.contacts.ALL",
            ),
            ("client_id", "1000.CID"),
            ("response_type", "code"),
            ("access_type", "offline"),
            ("prompt", "consent"),
            ("redirect_uri", "http://127.0.0.1:9901/oauth/callback"),
        ];
        for (k, v) in expect {
            assert_eq!(
                q.get(k).map(String::as_str),
                Some(v),
                "authorize URL parameter {k}"
            );
        }
        assert_eq!(
            q.get("state").map(String::len),
            Some(48),
            "state is 24 random bytes in hex"
        );
        let second = OAuthFlows::default().start(&accounts[0]).expect("starts");
        assert_ne!(state_of(&url), state_of(&second), "states are random");
        assert!(
            OAuthFlows::default().start(&accounts[1]).is_err(),
            "a self client cannot start the browser flow"
        );
    }

    #[test]
    fn a_state_is_single_use_and_expires_after_ten_minutes() {
        let accounts = accounts();
        let flows = OAuthFlows::default();
        let t0 = Instant::now();
        let s1 = state_of(&flows.start_at(&accounts[0], t0).expect("start"));
        let s2 = state_of(&flows.start_at(&accounts[0], t0).expect("start"));
        let s3 = state_of(&flows.start_at(&accounts[0], t0).expect("start"));
        assert_eq!(flows.pending_at(t0), 3, "three outstanding states");

        let cases: &[(&str, String, Duration, Result<(), CallbackError>)] = &[
            (
                "forged state",
                query("00ff", ""),
                Duration::ZERO,
                Err(CallbackError::UnknownState),
            ),
            (
                "no state",
                "code=1000.code".to_string(),
                Duration::ZERO,
                Err(CallbackError::UnknownState),
            ),
            (
                "fresh state just before 10 min",
                query(&s1, ""),
                STATE_TTL - Duration::from_millis(1),
                Ok(()),
            ),
            (
                "the same state again",
                query(&s1, ""),
                Duration::from_secs(1),
                Err(CallbackError::UnknownState),
            ),
            (
                "state at exactly 10 min",
                query(&s2, ""),
                STATE_TTL,
                Err(CallbackError::ExpiredState),
            ),
            (
                "expired state is gone afterwards",
                query(&s2, ""),
                Duration::ZERO,
                Err(CallbackError::UnknownState),
            ),
            (
                "state long expired",
                query(&s3, ""),
                STATE_TTL * 3,
                Err(CallbackError::ExpiredState),
            ),
        ];
        for (name, q, after, expected) in cases {
            let got = flows.callback_at(q, &accounts, t0 + *after).map(|_| ());
            assert_eq!(&got, expected, "{name}");
        }
        assert_eq!(flows.pending_at(t0), 0, "every state was consumed");
    }

    #[test]
    fn expired_states_are_purged_when_new_flows_start() {
        let accounts = accounts();
        let flows = OAuthFlows::default();
        let t0 = Instant::now();
        flows.start_at(&accounts[0], t0).expect("start");
        flows.start_at(&accounts[0], t0 + STATE_TTL).expect("start");
        assert_eq!(
            flows.pending.lock().map(|p| p.len()).unwrap_or(0),
            1,
            "the expired state was dropped"
        );
    }

    #[test]
    fn the_accounts_server_must_be_zoho_or_the_configured_one() {
        let accounts = accounts();
        let cases: &[(&str, Option<&str>)] = &[
            ("", Some("https://127.0.0.1:4443/")),
            ("&accounts-server=https%3A%2F%2F127.0.0.1%3A4443", Some("https://127.0.0.1:4443/")),
            ("&accounts-server=https%3A%2F%2Faccounts.zoho.eu", Some("https://accounts.zoho.eu/")),
            ("&accounts-server=https%3A%2F%2Faccounts.zoho.com.au%2F", Some("https://accounts.zoho.com.au/")),
            ("&accounts-server=https%3A%2F%2Faccounts.zohocloud.ca", Some("https://accounts.zohocloud.ca/")),
            ("&accounts-server=https%3A%2F%2Fevil.example", None),
            ("&accounts-server=https%3A%2F%2F127.0.0.1%3A4444", None),
            ("&accounts-server=http%3A%2F%2F127.0.0.1%3A4443", None),
            ("&accounts-server=http%3A%2F%2Faccounts.zoho.eu", None),
            ("&accounts-server=https%3A%2F%2Faccounts.zoho.eu.evil.example", None),
            ("&accounts-server=https%3A%2F%2Fx%40accounts.zoho.eu", None),
            ("&accounts-server=https%3A%2F%2Faccounts.zoho.eu%2Foauth%2Fv2%2Ftoken", None),
            ("&accounts-server=https%3A%2F%2Faccounts.zoho.eu%3Fx%3D1", None),
            ("&accounts-server=https%3A%2F%2Faccounts.zoho.eu:8443", None),
            ("&accounts-server=not%20a%20url", None),
            ("&accounts-server=https%3A%2F%2Faccounts.zoho.eu&accounts-server=https%3A%2F%2Fevil.example", None),
        ];
        for (extra, expected) in cases {
            let flows = OAuthFlows::default();
            let state = state_of(&flows.start(&accounts[0]).expect("start"));
            let got = flows.callback(&query(&state, extra), &accounts);
            match (expected, got) {
                (Some(want), Ok(cb)) => {
                    assert_eq!(
                        cb.accounts_url.as_str(),
                        *want,
                        "accounts server for `{extra}`"
                    );
                    assert_eq!(cb.account, "globex", "account for `{extra}`");
                    assert_eq!(cb.code.expose_secret(), "1000.code", "code for `{extra}`");
                    assert_eq!(cb.location.as_deref(), Some("eu"), "location for `{extra}`");
                }
                (None, Err(CallbackError::BadParameter(_))) => {}
                (want, got) => panic!("`{extra}`: expected {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn zoho_errors_and_missing_codes_are_reported_and_consume_the_state() {
        let accounts = accounts();
        let flows = OAuthFlows::default();
        let s1 = state_of(&flows.start(&accounts[0]).expect("start"));
        let denied = flows.callback(&format!("state={s1}&error=access_denied"), &accounts);
        assert_eq!(
            denied.map(|_| ()),
            Err(CallbackError::Denied("access_denied".into())),
            "denial reported"
        );
        let again = flows.callback(&query(&s1, ""), &accounts);
        assert_eq!(
            again.map(|_| ()),
            Err(CallbackError::UnknownState),
            "a denied state cannot be reused"
        );
        let s2 = state_of(&flows.start(&accounts[0]).expect("start"));
        let no_code = flows.callback(&format!("state={s2}"), &accounts);
        assert!(
            matches!(no_code, Err(CallbackError::BadParameter(_))),
            "missing code refused: {no_code:?}"
        );
    }

    #[test]
    fn pages_escape_what_they_show() {
        let page = html_page("A <b>", "x\"'&<script>");
        assert!(!page.contains("<script>"), "markup escaped: {page}");
        assert!(
            page.contains("&lt;script&gt;") && page.contains("&#39;"),
            "entities used: {page}"
        );
    }
}
