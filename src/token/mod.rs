//! Access tokens: the current token of each account, how it is obtained, refreshed, persisted
//! and budgeted.
//!
//! Requests only ever `load()` the current token from an `ArcSwap` (no lock, no wait); the
//! refresher task of the account is the only minter (single flight). Knows nothing about
//! requests beyond "this token was rejected".

pub mod budget;
pub mod client;
pub mod metrics;
pub mod redis_store;
pub mod refresher;
pub mod store;

use arc_swap::{ArcSwap, ArcSwapOption};
use http::HeaderValue;
use secrecy::SecretString;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, oneshot, watch, Notify};

pub use metrics::TokenMetrics;
pub use refresher::Refresher;

/// Where to send requests: scheme and authority of the API host (`https://www.zohoapis.com`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiBase {
    /// `https` (or `http` for a loopback stand-in).
    pub scheme: http::uri::Scheme,
    /// Host and port.
    pub authority: http::uri::Authority,
}

impl ApiBase {
    /// From a base URL already checked by config or the api_domain rules.
    pub fn from_url(url: &url::Url) -> Option<ApiBase> {
        let scheme = match url.scheme() {
            "https" => http::uri::Scheme::HTTPS,
            "http" => http::uri::Scheme::HTTP,
            _ => return None,
        };
        let host = url.host_str()?;
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        Some(ApiBase {
            scheme,
            authority: authority.parse().ok()?,
        })
    }

    /// `https://host[:port]`.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }
}

/// A usable access token.
pub struct AccessToken {
    header: HeaderValue,
    /// Increases with every token the account gets.
    pub generation: u64,
    /// Monotonic expiry.
    pub expires_at: Instant,
    /// Lifetime as issued.
    pub lifetime: Duration,
    /// Wall-clock expiry (for status and the store).
    pub expires_at_wall: SystemTime,
    /// Where this token may be sent.
    pub api: ApiBase,
}

impl std::fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessToken")
            .field("value", &crate::util::REDACTED)
            .field("generation", &self.generation)
            .field("expires_at", &self.expires_at)
            .field("api", &self.api)
            .finish()
    }
}

impl AccessToken {
    /// Builds a token; fails if the value cannot be a header value.
    pub fn new(
        value: &str,
        generation: u64,
        lifetime: Duration,
        remaining: Duration,
        api: ApiBase,
    ) -> Option<AccessToken> {
        let mut header = HeaderValue::from_str(&format!("Zoho-oauthtoken {value}")).ok()?;
        header.set_sensitive(true);
        Some(AccessToken {
            header,
            generation,
            expires_at: Instant::now() + remaining,
            lifetime,
            expires_at_wall: SystemTime::now() + remaining,
            api,
        })
    }

    /// The `Authorization` header value (marked sensitive). The one place the token leaves.
    pub fn authorization(&self) -> HeaderValue {
        self.header.clone()
    }

    /// Time left at `now`.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.expires_at.saturating_duration_since(now)
    }

    /// A token is no longer sent this close to its expiry.
    pub fn usable_at(&self, now: Instant) -> bool {
        self.remaining(now) > safety_margin(self.lifetime)
    }
}

/// When to refresh ahead of expiry: a tenth of the lifetime, between 500 ms and 5 minutes.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    (lifetime / 10).clamp(Duration::from_millis(500), Duration::from_secs(300))
}

/// Below this much life left a token is not sent any more (requests get 503 instead).
pub fn safety_margin(lifetime: Duration) -> Duration {
    (lifetime / 20).min(Duration::from_secs(2))
}

/// Coarse state of an account's token, for readiness and status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// No token yet, first attempt pending.
    Starting,
    /// A token is available.
    Ready,
    /// Last attempt failed transiently; retrying with backoff.
    Backoff,
    /// Zoho throttled us, or our own mint budget is spent.
    Throttled,
    /// Needs a person: wrong client, revoked refresh token.
    Failed,
    /// A server-based account nobody has authorized yet.
    NotAuthorized,
}

/// Observable token state (never a token).
#[derive(Debug, Clone, Serialize)]
pub struct TokenStatus {
    /// Coarse state.
    pub state: TokenState,
    /// When the last token was obtained (Unix ms).
    pub last_refresh_unix_ms: Option<u64>,
    /// Last error, secret-free.
    pub last_error: Option<String>,
    /// When the next attempt may happen (Unix ms), if waiting.
    pub next_attempt_unix_ms: Option<u64>,
    /// Token requests left in the current 10-minute window.
    pub mint_budget_left: u32,
    /// The configured budget.
    pub mint_budget: u32,
    /// API host in use.
    pub api_host: String,
    /// Fleet mode: the shared store's health (None outside fleet mode).
    pub store_error: Option<String>,
}

/// Secrets that live reload may rotate.
pub struct Secrets {
    /// Client secret.
    pub client_secret: SecretString,
    /// Configured refresh token, if any.
    pub refresh_token: Option<SecretString>,
}

/// A command for the refresher task.
pub enum Command {
    /// Exchange a browser authorization code (server-based clients).
    Authorize {
        /// The code from the callback.
        code: SecretString,
        /// The accounts server the user's data center uses (`accounts-server` parameter).
        accounts_url: url::Url,
        /// Where to report the outcome.
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// The per-account token handle shared by requests, admin and the refresher.
pub struct TokenHandle {
    /// Account name.
    pub account: String,
    current: ArcSwapOption<AccessToken>,
    generation: watch::Sender<u64>,
    invalidated: AtomicU64,
    minting: AtomicBool,
    /// Fleet mode: the shared store is unreachable (not ready, whatever the token).
    store_down: AtomicBool,
    kick: Notify,
    status: Mutex<TokenStatus>,
    secrets: ArcSwap<Secrets>,
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for TokenHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenHandle")
            .field("account", &self.account)
            .finish()
    }
}

impl TokenHandle {
    /// A handle with no token yet, and the receiving end of its command channel.
    pub fn new(
        account: &str,
        secrets: Secrets,
        mint_budget: u32,
        api_host: String,
    ) -> (Arc<TokenHandle>, mpsc::Receiver<Command>) {
        let (commands, rx) = mpsc::channel(4);
        let handle = TokenHandle {
            account: account.to_string(),
            current: ArcSwapOption::empty(),
            generation: watch::channel(0).0,
            invalidated: AtomicU64::new(0),
            minting: AtomicBool::new(false),
            store_down: AtomicBool::new(false),
            kick: Notify::new(),
            status: Mutex::new(TokenStatus {
                state: TokenState::Starting,
                last_refresh_unix_ms: None,
                last_error: None,
                next_attempt_unix_ms: None,
                mint_budget_left: mint_budget,
                mint_budget,
                api_host,
                store_error: None,
            }),
            secrets: ArcSwap::from_pointee(secrets),
            commands,
        };
        (Arc::new(handle), rx)
    }

    /// The current token if it may still be sent and has not been reported rejected.
    pub fn usable(&self) -> Option<Arc<AccessToken>> {
        let token = self.current.load_full()?;
        let rejected = token.generation <= self.invalidated.load(Ordering::Acquire);
        (!rejected && token.usable_at(Instant::now())).then_some(token)
    }

    /// The current token, or — only while a mint is in flight — waits up to `max` for it.
    pub async fn usable_or_wait(&self, max: Duration) -> Option<Arc<AccessToken>> {
        if let Some(t) = self.usable() {
            return Some(t);
        }
        if !self.refresh_pending() {
            return None;
        }
        let mut rx = self.generation.subscribe();
        let _ = tokio::time::timeout(max, async {
            while self.refresh_pending() && self.usable().is_none() {
                if rx.changed().await.is_err() {
                    break;
                }
            }
        })
        .await;
        self.usable()
    }

    /// Whether a new token is on its way: a mint is in flight, or the current token was reported
    /// rejected and the refresher has not yet started (or deferred) its replacement. Requests
    /// arriving in that gap wait for the new token instead of failing with 503.
    fn refresh_pending(&self) -> bool {
        if self.minting.load(Ordering::Acquire) {
            return true;
        }
        let rejected = self
            .current
            .load()
            .as_ref()
            .is_some_and(|t| t.generation <= self.invalidated.load(Ordering::Acquire));
        let deferred = self
            .status()
            .next_attempt_unix_ms
            .is_some_and(|t| t > crate::util::clock::now_unix_ms());
        rejected && !deferred
    }

    /// Wakes requests waiting in [`TokenHandle::usable_or_wait`] so they re-check (the refresher
    /// calls it when it defers an attempt).
    pub(crate) fn wake_waiters(&self) {
        self.generation.send_modify(|_| {});
    }

    /// Reports that Zoho rejected the token of `generation` (401 INVALID_TOKEN) and waits up to
    /// `max` for a newer one. Concurrent reports of the same generation share one mint; if a newer
    /// token already exists nothing is minted.
    pub async fn reject(&self, generation: u64, max: Duration) -> Option<Arc<AccessToken>> {
        let mut rx = self.generation.subscribe();
        let newer = |h: &TokenHandle| {
            h.current
                .load()
                .as_ref()
                .is_some_and(|t| t.generation > generation)
        };
        if !newer(self) {
            self.invalidated.fetch_max(generation, Ordering::AcqRel);
            self.kick.notify_one();
            let _ = tokio::time::timeout(max, async {
                while !newer(self) {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            })
            .await;
        }
        self.usable().filter(|t| t.generation > generation)
    }

    /// Seconds of life left of the current token (negative when none / expired), for metrics.
    pub fn seconds_left(&self) -> f64 {
        match self.current.load().as_ref() {
            Some(t) if t.generation > self.invalidated.load(Ordering::Acquire) => {
                t.remaining(Instant::now()).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// Ready: a usable token with more than the refresh margin left, and (fleet mode) a
    /// reachable shared store.
    pub fn ready(&self) -> Result<(), String> {
        let now = Instant::now();
        if self.store_down.load(Ordering::Acquire) {
            let serving = if self.usable().is_some() {
                "serving the cached token until it expires"
            } else {
                "no valid access token"
            };
            return Err(self.reason(&format!("the shared token store is unavailable; {serving}")));
        }
        match self.usable() {
            Some(t) if t.remaining(now) > refresh_margin(t.lifetime) => Ok(()),
            Some(_) => {
                Err(self.reason("the token is about to expire and has not been refreshed yet"))
            }
            None => Err(self.reason("no valid access token")),
        }
    }

    fn reason(&self, base: &str) -> String {
        let status = self.status();
        let mut text = base.to_string();
        if let Some(e) = status.store_error {
            text.push_str(&format!("; token store: {e}"));
        }
        if let Some(e) = status.last_error {
            text.push_str(&format!("; last error: {e}"));
        }
        text
    }

    /// A snapshot of the status.
    pub fn status(&self) -> TokenStatus {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Seconds a client should wait before retrying (for `Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        let status = self.status();
        let now = crate::util::clock::now_unix_ms();
        status
            .next_attempt_unix_ms
            .map(|t| t.saturating_sub(now).div_ceil(1000))
            .unwrap_or(1)
            .clamp(1, 600)
    }

    /// Rotated secrets (live reload).
    pub fn set_secrets(&self, secrets: Secrets) {
        self.secrets.store(Arc::new(secrets));
        self.kick.notify_one();
    }

    /// Sends a command to the refresher.
    pub async fn command(&self, command: Command) -> Result<(), String> {
        self.commands
            .send(command)
            .await
            .map_err(|_| "the token refresher has stopped".to_string())
    }

    // --- used by the refresher only ---

    pub(crate) fn install(&self, token: AccessToken) {
        let generation = token.generation;
        self.current.store(Some(Arc::new(token)));
        self.generation.send_replace(generation);
    }

    pub(crate) fn set_minting(&self, on: bool) {
        self.minting.store(on, Ordering::Release);
        if !on {
            // Wake waiters so they see the outcome (success or failure).
            self.generation.send_modify(|_| {});
        }
    }

    pub(crate) fn invalidated(&self) -> u64 {
        self.invalidated.load(Ordering::Acquire)
    }

    pub(crate) fn current(&self) -> Option<Arc<AccessToken>> {
        self.current.load_full()
    }

    pub(crate) fn secrets(&self) -> Arc<Secrets> {
        self.secrets.load_full()
    }

    pub(crate) fn kicked(&self) -> tokio::sync::futures::Notified<'_> {
        self.kick.notified()
    }

    /// Fleet mode: records whether the shared store is reachable (`None`) or why not. While it is
    /// not, readiness fails with that reason; requests keep using the cached token.
    pub(crate) fn set_store_health(&self, error: Option<String>) {
        self.store_down.store(error.is_some(), Ordering::Release);
        self.update_status(|s| s.store_error = error);
    }

    pub(crate) fn update_status(&self, f: impl FnOnce(&mut TokenStatus)) {
        match self.status.lock() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }
}

#[cfg(test)]
mod tests;
