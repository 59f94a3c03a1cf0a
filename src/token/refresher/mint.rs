//! Minting: one token request when the plan says so (if Zoho's throttle and the mint budget
//! allow it), installing what comes back, persisting it, and what a failure means for the next
//! attempt (back-off, a permanent refusal, Zoho's throttle).
//!
//! [`Refresher::install`] is the one place a new access token goes into the handle, the stored
//! state and the status: a local mint, a mint under the fleet's lease and a token adopted from the
//! fleet all go through it.
//!
//! Must not: mint in fleet mode without the lease (`attempt` hands fleet mode to `fleet/`), write
//! the store in fleet mode (the shared state is written under the lease), or log a token.

use super::{backoff, Refresher};
use crate::config::ClientType;
use crate::token::budget::WINDOW;
use crate::token::client::{FailureClass, Grant, Minted, TokenError};
use crate::token::store::fingerprint;
use crate::token::{AccessToken, TokenState};
use crate::util::clock::now_unix_ms;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use std::time::{Duration, Instant};
use tracing::{debug, error, info, warn};

/// Pause after a permanent failure (refused client secret or refresh token), jittered ±20 %.
const PERMANENT_RETRY: Duration = Duration::from_secs(300);

/// Where a new access token came from; decides how its arrival is logged.
pub(super) enum Origin<'a> {
    /// This replica minted it.
    Minted,
    /// Another replica minted it and shared it through Redis.
    Fleet {
        /// The replica that minted it.
        minted_by: &'a str,
    },
}

/// A new access token, as Zoho or the fleet handed it over.
pub(super) struct NewToken<'a> {
    /// The token.
    pub(super) value: &'a str,
    /// Its lifetime as issued.
    pub(super) lifetime: Duration,
    /// How long it is still valid.
    pub(super) remaining: Duration,
    /// Its wall-clock expiry (Unix ms).
    pub(super) expires_at_unix_ms: u64,
    /// The `api_domain` that came with it (checked by [`Refresher::api_base`]).
    pub(super) api_domain: Option<&'a str>,
    /// Where it came from.
    pub(super) origin: Origin<'a>,
}

impl<'a> NewToken<'a> {
    /// A token Zoho just minted for this replica: valid for its whole lifetime from now.
    fn minted(minted: &'a Minted) -> NewToken<'a> {
        NewToken {
            value: minted.access_token.expose_secret(),
            lifetime: minted.lifetime,
            remaining: minted.lifetime,
            expires_at_unix_ms: now_unix_ms() + minted.lifetime.as_millis() as u64,
            api_domain: minted.api_domain.as_deref(),
            origin: Origin::Minted,
        }
    }
}

impl Refresher {
    /// One token request, if the throttle and the budget allow it.
    pub(super) async fn attempt(&mut self) {
        if self.fleet.is_some() {
            return self.attempt_fleet().await;
        }
        let now_ms = now_unix_ms();
        if self.held_back(now_ms) {
            return;
        }
        let grant_code = if self.refresh_token().is_none() {
            self.pending_grant()
        } else {
            None
        };
        let refresh_token = self.refresh_token();
        let secrets = self.handle.secrets();
        self.budget.record(now_ms);
        if let Some(code) = &grant_code {
            // Never send the same grant token twice, even if we crash mid-exchange.
            self.state.exchanged_grant_sha256 = Some(fingerprint(code.expose_secret()));
        }
        self.persist().await;
        self.publish_budget();

        self.handle.set_minting(true);
        let accounts_url = self.accounts_url();
        let result = match (&grant_code, &refresh_token) {
            (Some(code), _) => {
                info!(account = %self.account.name, "exchanging the grant token for a refresh token (once)");
                let grant = Grant::Code {
                    code,
                    redirect_uri: None,
                };
                self.request(&accounts_url, &secrets.client_secret, grant)
                    .await
            }
            (None, Some(rt)) => {
                debug!(account = %self.account.name, "requesting an access token");
                self.request(&accounts_url, &secrets.client_secret, Grant::Refresh(rt))
                    .await
            }
            (None, None) => Err(TokenError::Other("no refresh token".to_string())),
        };
        match result {
            Ok(minted) => {
                self.accept(minted, grant_code.is_some(), None).await;
            }
            Err(e) => self.fail(e).await,
        }
        self.handle.set_minting(false);
    }

    /// Whether Zoho's throttle or the spent mint budget holds the attempt back (then the status
    /// says until when).
    fn held_back(&mut self, now_ms: u64) -> bool {
        if let Some(until) = self.state.throttled_until_unix_ms.filter(|&t| t > now_ms) {
            let delay = Duration::from_millis(until - now_ms);
            self.wait(
                delay,
                TokenState::Throttled,
                TokenError::Throttled.to_string(),
            );
            return true;
        }
        self.hold_for_budget(now_ms, "")
    }

    /// One request to the accounts server at `accounts_url`.
    pub(super) async fn request(
        &self,
        accounts_url: &url::Url,
        client_secret: &SecretString,
        grant: Grant<'_>,
    ) -> Result<Minted, TokenError> {
        self.client
            .request(accounts_url, &self.account.client_id, client_secret, grant)
            .await
    }

    /// Installs a freshly minted token and persists it; `false` if the token was unusable.
    pub(super) async fn accept(
        &mut self,
        minted: Minted,
        from_code: bool,
        accounts_url: Option<url::Url>,
    ) -> bool {
        if from_code {
            self.keep_refresh_token(&minted, accounts_url);
        }
        if !self.install(NewToken::minted(&minted)) {
            self.fail(TokenError::UnusableToken).await;
            return false;
        }
        self.state.refresh_token_sha256 = self
            .refresh_token()
            .map(|rt| fingerprint(rt.expose_secret()));
        self.metrics.token_refresh(&self.account.name, "ok");
        self.persist().await;
        self.publish_budget();
        true
    }

    /// The one install of a new access token: the handle gets it (requests use it from now on),
    /// the stored state records it, back-off and throttle end, the status says ready. `false`
    /// (and nothing changed) if the token cannot be sent as a header. Persisting is the caller's
    /// ([`Refresher::accept`]; the fleet's token is already stored in Redis).
    pub(super) fn install(&mut self, new: NewToken<'_>) -> bool {
        let api = self.api_base(new.api_domain, true);
        let Some(token) = AccessToken::new(
            new.value,
            self.generation + 1,
            new.lifetime,
            new.remaining,
            api.clone(),
        ) else {
            return false;
        };
        self.generation += 1;
        self.state
            .record_access_token(new.value, new.expires_at_unix_ms, new.lifetime);
        self.state.api_domain = Some(api.origin());
        self.state.throttled_until_unix_ms = None;
        self.handle.install(token);
        self.failures = 0;
        self.not_before = None;
        if self.last_error_label.take().is_some() {
            info!(account = %self.account.name, "token service recovered");
        }
        match new.origin {
            Origin::Minted => info!(
                account = %self.account.name,
                expires_in_s = new.remaining.as_secs(),
                api_host = %api.origin(),
                "new access token"
            ),
            Origin::Fleet { minted_by } => info!(
                account = %self.account.name,
                expires_in_s = new.remaining.as_secs(),
                minted_by = %minted_by,
                "using the fleet's access token from Redis; no token request needed"
            ),
        }
        self.set_ready(&api);
        let now = now_unix_ms();
        self.handle
            .update_status(|s| s.last_refresh_unix_ms = Some(now));
        true
    }

    /// A failed token request: logs it (once per kind), counts it and holds the next attempt
    /// back as its class says.
    pub(super) async fn fail(&mut self, e: TokenError) {
        self.metrics.token_refresh(&self.account.name, e.label());
        let label = e.label();
        if self.first_time(label) {
            match e.class() {
                FailureClass::Transient => {
                    warn!(account = %self.account.name, "token request failed: {e}")
                }
                _ => error!(account = %self.account.name, "token request failed: {e}"),
            }
        } else {
            debug!(account = %self.account.name, "token request failed again: {e}");
        }
        let message = e.to_string();
        match e.class() {
            FailureClass::Transient => {
                self.failures = self.failures.saturating_add(1);
                let delay = backoff(self.failures, rand::thread_rng().gen());
                self.wait(delay, TokenState::Backoff, message);
            }
            FailureClass::Permanent => {
                let jitter: f64 = rand::thread_rng().gen();
                // A server-based account whose refresh token is gone needs its owner to
                // authorize again: say so (requests then get the authorization instructions).
                let state = if self.account.client_type == ClientType::Server
                    && e == TokenError::RefreshTokenRejected
                {
                    TokenState::NotAuthorized
                } else {
                    TokenState::Failed
                };
                self.wait(PERMANENT_RETRY.mul_f64(0.8 + 0.4 * jitter), state, message);
            }
            FailureClass::Throttled => {
                self.state.throttled_until_unix_ms =
                    Some(now_unix_ms() + WINDOW.as_millis() as u64);
                self.wait(WINDOW, TokenState::Throttled, message);
                self.persist().await;
            }
        }
    }

    /// Whether an error labelled `label` is new (not the last one), and makes it the last one:
    /// an error that repeats is logged once, and at debug level after that.
    pub(super) fn first_time(&mut self, label: &'static str) -> bool {
        if self.last_error_label == Some(label) {
            return false;
        }
        self.last_error_label = Some(label);
        true
    }

    /// Holds attempts back for `delay`, with `state` and `error` in the status.
    pub(super) fn wait(&mut self, delay: Duration, state: TokenState, error: String) {
        self.not_before = Some(Instant::now() + delay);
        let next = now_unix_ms() + delay.as_millis() as u64;
        self.handle.update_status(|s| {
            s.state = state;
            s.last_error = Some(error);
            s.next_attempt_unix_ms = Some(next);
        });
        self.handle.wake_waiters();
    }

    /// Saves the state to the file store (outside fleet mode), with the mint log; a failed save
    /// shows in the status.
    pub(super) async fn persist(&mut self) {
        if self.fleet.is_some() {
            // The shared state is written under the lease only (fleet/), and the store's health
            // is the fleet code's to report.
            return;
        }
        self.state.mints_unix_ms = self.budget.log().to_vec();
        if let Err(e) = self.store.save(&self.state).await {
            warn!(account = %self.account.name, "{e}");
            self.handle.update_status(|s| s.store_error = Some(e));
        } else {
            self.handle.update_status(|s| s.store_error = None);
        }
    }

    /// When the mint budget is spent: logs once, waits until a slot frees, returns true.
    /// `scope` qualifies the message (" across all replicas" in fleet mode).
    pub(super) fn hold_for_budget(&mut self, now_ms: u64, scope: &str) -> bool {
        let Some(delay) = self.budget.wait(now_ms) else {
            return false;
        };
        let message = format!(
            "mint budget spent: {} token requests in the last 10 minutes{scope} (token.mint_budget); next one in {} s",
            self.account.token.mint_budget,
            delay.as_secs().max(1)
        );
        if self.first_time("budget") {
            warn!(account = %self.account.name, "{message}");
        }
        self.wait(delay, TokenState::Throttled, message);
        true
    }
}
