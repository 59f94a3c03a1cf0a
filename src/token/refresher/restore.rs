//! Start-up restore: reads the account's store (file or Redis) once, takes over what it holds
//! (the refresh token the proxy obtained, the mint log, Zoho's throttle) and reuses a stored
//! access token that is still valid, so a restart mints nothing.
//!
//! Must not: ask Zoho for anything, write the store, or reuse a token that belongs to another
//! refresh token than the one in use (the stored token and mint log are dropped then).

use super::Refresher;
use crate::token::budget::MintBudget;
use crate::token::store::{fingerprint, Loaded, Store};
use crate::token::AccessToken;
use crate::util::clock::now_unix_ms;
use secrecy::ExposeSecret;
use std::time::{Duration, Instant};
use tracing::{error, info, warn};

impl Refresher {
    /// Restores the stored state; installs a stored token that is still valid. Runs once:
    /// [`Refresher::run`] skips it when the caller already restored.
    pub async fn restore(&mut self) {
        if std::mem::replace(&mut self.restored, true) {
            return;
        }
        self.restore_stored().await;
        if !self.can_mint() {
            // Say "not authorized" before the first request or readiness probe can ask.
            self.explain_idle();
        }
    }

    /// Loads the store and takes over its state (nothing when it is empty, set aside or down).
    async fn restore_stored(&mut self) {
        if let Store::File(f) = &self.store {
            if let Some(w) = f.permission_warning() {
                warn!(account = %self.account.name, "{w}");
            }
        }
        let refresh_token = self.refresh_token();
        let stored = match self
            .store
            .load(
                &self.account.client_id,
                refresh_token.as_ref().map(|rt| rt.expose_secret()),
            )
            .await
        {
            Loaded::Empty => return,
            Loaded::SetAside(message) => {
                error!(account = %self.account.name, "{message}");
                return;
            }
            Loaded::Unavailable(message) => {
                self.redis_down(message);
                return;
            }
            Loaded::State(s) => *s,
        };
        self.state = stored;
        self.state.client_id = self.account.client_id.clone();
        let current_rt = self
            .refresh_token()
            .map(|rt| fingerprint(rt.expose_secret()));
        if current_rt.is_some() && current_rt != self.state.refresh_token_sha256 {
            // A new refresh token: the stored access token and mint log belong to the old one.
            self.state.access_token = None;
            self.state.mints_unix_ms.clear();
            self.state.throttled_until_unix_ms = None;
            self.state.refresh_token_sha256 = current_rt;
        }
        self.budget = MintBudget::new(
            self.account.token.mint_budget,
            self.state.mints_unix_ms.clone(),
        );
        let now_ms = now_unix_ms();
        if let Some(until) = self.state.throttled_until_unix_ms.filter(|&t| t > now_ms) {
            self.not_before = Some(Instant::now() + Duration::from_millis(until - now_ms));
        }
        self.reuse_stored_token(now_ms);
        self.publish_budget();
    }

    /// Puts the stored access token in the handle if it is still usable (no token request).
    fn reuse_stored_token(&mut self, now_ms: u64) {
        let (Some(value), Some(expires)) = (
            self.state.access_token.clone(),
            self.state.expires_at_unix_ms,
        ) else {
            return;
        };
        let remaining = Duration::from_millis(expires.saturating_sub(now_ms));
        let lifetime = self.state.lifetime();
        let api = self.api_base(self.state.api_domain.as_deref(), false);
        if remaining.is_zero() {
            return;
        }
        let Some(token) = AccessToken::new(
            &value,
            self.generation + 1,
            lifetime,
            remaining,
            api.clone(),
        ) else {
            return;
        };
        if token.usable_at(Instant::now()) {
            self.generation += 1;
            info!(
                account = %self.account.name,
                expires_in_s = remaining.as_secs(),
                "reusing the stored access token; no token request needed"
            );
            self.handle.install(token);
            self.set_ready(&api);
        }
    }
}
