//! Fleet mode, holding the lease: look again, follow the fleet's back-off and budget, mint while
//! renewing the lease, then share the token (or the failure) with the other replicas.
//!
//! Must not: mint or share without holding the lease, share a token this replica could not
//! install, or keep the lease after the request (the caller releases it).

use super::Refresher;
use crate::token::budget::MintBudget;
use crate::token::client::{Minted, TokenError};
use crate::token::redis_store::{LeaseValue, Namespace, RedisStore, SharedBackoff, SharedToken};
use crate::util::clock::now_unix_ms;
use secrecy::SecretString;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// Renews the lease every third of its length; returns (why) when it can no longer be renewed.
async fn keep_lease(
    store: Arc<RedisStore>,
    ns: Namespace,
    value: LeaseValue,
    lease: Duration,
) -> String {
    loop {
        tokio::time::sleep(lease / 3).await;
        match store.renew(&ns, &value, lease).await {
            Ok(true) => {}
            Ok(false) => return "the lease expired and another replica may hold it".to_string(),
            Err(e) => return e,
        }
    }
}

impl Refresher {
    /// Holding the lease: look again, check the fleet's back-off and budget, mint, share.
    pub(super) async fn mint_under_lease(
        &mut self,
        store: &Arc<RedisStore>,
        ns: &Namespace,
        value: &LeaseValue,
        lease: Duration,
    ) -> Result<(), String> {
        // Between our look and SET NX another replica may have shared a token.
        let shared = store.token(ns).await?;
        if self.adopt_if_newer(store, ns, shared).await {
            return Ok(());
        }
        let prior = store.backoff(ns).await?;
        if let Some(b) = prior.clone().filter(|b| b.until_unix_ms > now_unix_ms()) {
            self.follow_backoff(b);
            return Ok(());
        }
        let now_ms = now_unix_ms();
        self.budget = MintBudget::new(
            self.account.token.mint_budget,
            store.mint_log(ns, now_ms).await?,
        );
        if self.hold_for_budget(now_ms, " across all replicas") {
            self.publish_budget();
            return Ok(());
        }
        store.record_mints(ns, &[now_ms]).await?;
        self.budget.record(now_ms);
        self.publish_budget();
        self.failures = self.failures.max(prior.map_or(0, |b| b.failures));
        let replica = self
            .fleet
            .as_ref()
            .map(|f| f.replica.clone())
            .unwrap_or_default();
        info!(account = %self.account.name, replica = %replica, "holding the fleet lease; requesting a new access token");

        match self.send_refresh_renewing(store, ns, value, lease).await {
            Ok(minted) => {
                if self.accept(minted, false, None).await {
                    self.share_token(store, ns, value, replica).await?;
                } else {
                    self.share_failure(store, ns).await?;
                }
            }
            Err(e) => {
                self.fail(e).await;
                self.share_failure(store, ns).await?;
            }
        }
        Ok(())
    }

    /// Publishes the token just accepted.
    async fn share_token(
        &mut self,
        store: &RedisStore,
        ns: &Namespace,
        value: &LeaseValue,
        replica: String,
    ) -> Result<(), String> {
        let (Some(access_token), Some(expires_at_unix_ms)) = (
            self.state.access_token.clone(),
            self.state.expires_at_unix_ms,
        ) else {
            return Ok(());
        };
        let shared = SharedToken {
            access_token: SecretString::from(access_token),
            expires_at_unix_ms,
            lifetime: self.state.lifetime(),
            api_domain: self.state.api_domain.clone(),
            minted_by: replica,
        };
        if !store.publish(ns, value, &shared).await? {
            warn!(
                account = %self.account.name,
                "the fleet lease expired before the new token could be shared; this replica uses it, another replica may mint one (raise token.lease if this repeats)"
            );
        }
        Ok(())
    }

    /// Reloads the fleet-wide mint log, so status and metrics show the budget left fleet-wide.
    pub(super) async fn refresh_budget(&mut self, store: &RedisStore, ns: &Namespace) {
        let now_ms = now_unix_ms();
        match store.mint_log(ns, now_ms).await {
            Ok(log) => {
                self.budget = MintBudget::new(self.account.token.mint_budget, log);
                self.publish_budget();
            }
            Err(e) => {
                debug!(account = %self.account.name, "could not read the fleet's mint log: {e}")
            }
        }
    }

    /// Tells the fleet the token request failed and until when nobody should retry.
    async fn share_failure(&mut self, store: &RedisStore, ns: &Namespace) -> Result<(), String> {
        let status = self.handle.status();
        let record = SharedBackoff {
            until_unix_ms: status.next_attempt_unix_ms.unwrap_or_else(now_unix_ms),
            state: status.state,
            message: status
                .last_error
                .unwrap_or_else(|| "the token request failed".to_string()),
            failures: self.failures,
        };
        store.set_backoff(ns, &record).await
    }

    /// Another replica's token request failed: wait as long as it was told to.
    pub(super) fn follow_backoff(&mut self, b: SharedBackoff) {
        let delay = Duration::from_millis(b.until_unix_ms.saturating_sub(now_unix_ms()));
        if self.first_time("fleet-backoff") {
            info!(
                account = %self.account.name,
                wait_s = delay.as_secs(),
                "the fleet's last token request failed ({}); not requesting one before the fleet's back-off ends",
                b.message
            );
        }
        self.failures = b.failures;
        self.wait(delay, b.state, b.message);
    }

    /// The refresh-token request, renewing the lease meanwhile (a failed renewal is logged; the
    /// request goes on).
    async fn send_refresh_renewing(
        &self,
        store: &Arc<RedisStore>,
        ns: &Namespace,
        value: &LeaseValue,
        lease: Duration,
    ) -> Result<Minted, TokenError> {
        let renewal = keep_lease(store.clone(), ns.clone(), value.clone(), lease);
        let request = self.send_refresh();
        tokio::pin!(renewal, request);
        let mut renewing = true;
        loop {
            tokio::select! {
                r = &mut request => break r,
                why = &mut renewal, if renewing => {
                    renewing = false;
                    warn!(account = %self.account.name, "could not renew the fleet lease while minting: {why}");
                }
            }
        }
    }
}
