//! Fleet mode while Redis is unreachable: the cached token is served until it expires, readiness
//! names Redis, the store is probed again with backoff, and once the token is due
//! `token.when_redis_down` decides: `refuse`, or `mint_locally` within [`LOCAL_MINT_BUDGET`].
//! When Redis is back, the local token requests join the fleet's mint log.
//!
//! Must not: mint beyond the local budget, or mint at all under `refuse`.

use super::Refresher;
use crate::config::RedisDownPolicy;
use crate::token::redis_store::Namespace;
use crate::token::refresher::backoff;
use crate::token::TokenState;
use crate::util::clock::now_unix_ms;
use rand::Rng;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Token requests a replica may make per 10 minutes on its own while Redis is down
/// (`when_redis_down: mint_locally`), whatever `token.mint_budget` says.
pub const LOCAL_MINT_BUDGET: u32 = 2;

/// Longest pause between two attempts to reach a Redis that is down.
const REDIS_RETRY_CAP: Duration = Duration::from_secs(30);

/// How often a healthy Redis is looked at when nothing else happens.
pub(super) fn health_interval(lease: Duration) -> Duration {
    (lease / 3).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// Pause before the `failures`-th attempt to reach Redis again.
fn redis_retry(failures: u32, jitter: f64) -> Duration {
    backoff(failures, jitter).min(REDIS_RETRY_CAP)
}

impl Refresher {
    /// Redis is down and the token is due: refuse, or mint locally within the small budget.
    pub(super) async fn when_redis_down(&mut self) {
        let Some(f) = self.fleet.as_mut() else { return };
        let error = self
            .handle
            .status()
            .store_error
            .unwrap_or_else(|| "Redis is unreachable".to_string());
        match f.when_down {
            RedisDownPolicy::Refuse => {
                f.blocked_on_redis = true;
                let delay = f
                    .next_probe
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(100));
                let message = format!("no token request while the shared token store is down (token.when_redis_down: refuse): {error}");
                if self.first_time("redis") {
                    warn!(account = %self.account.name, "the token is due but Redis is unreachable; not minting until it is back (token.when_redis_down: refuse)");
                }
                self.wait(delay, TokenState::Backoff, message);
            }
            RedisDownPolicy::MintLocally => {
                let now_ms = now_unix_ms();
                let allowed = f.local_budget.budget();
                if let Some(delay) = f.local_budget.wait(now_ms) {
                    let message = format!(
                        "the shared token store is down and this replica's own budget ({allowed} token requests per 10 minutes, token.when_redis_down: mint_locally) is spent; next one in {} s: {error}",
                        delay.as_secs().max(1)
                    );
                    if self.first_time("local-budget") {
                        warn!(account = %self.account.name, "{message}");
                    }
                    self.wait(delay, TokenState::Throttled, message);
                    return;
                }
                f.local_budget.record(now_ms);
                f.unsynced_mints.push(now_ms);
                let left = f.local_budget.left(now_ms);
                warn!(
                    account = %self.account.name,
                    left,
                    "Redis is unreachable: requesting a token without the fleet (token.when_redis_down: mint_locally)"
                );
                self.budget.record(now_ms);
                self.publish_budget();
                match self.send_refresh().await {
                    Ok(minted) => {
                        self.accept(minted, false, None).await;
                    }
                    Err(e) => self.fail(e).await,
                }
            }
        }
    }

    /// Records a Redis failure: not ready (naming Redis), probe again with backoff.
    pub(in crate::token::refresher) fn redis_down(&mut self, error: String) {
        let Some(f) = self.fleet.as_mut() else { return };
        f.redis_failures = f.redis_failures.saturating_add(1);
        f.next_probe = Instant::now() + redis_retry(f.redis_failures, rand::thread_rng().gen());
        if f.down_since.is_none() {
            f.down_since = Some(Instant::now());
            let then = match f.when_down {
                RedisDownPolicy::Refuse => "then refusing requests until Redis is back (token.when_redis_down: refuse)",
                RedisDownPolicy::MintLocally => "then minting locally, at most 2 per 10 minutes (token.when_redis_down: mint_locally)",
            };
            warn!(account = %self.account.name, "{error}; serving the cached token until it expires, {then}; reconnecting with backoff");
        } else {
            debug!(account = %self.account.name, "Redis still unavailable: {error}");
        }
        self.handle.set_store_health(Some(error));
    }

    /// Records a successful Redis call: ready again, local mints added to the shared log.
    pub(super) async fn redis_up(&mut self, ns: &Namespace) {
        let Some(f) = self.fleet.as_mut() else { return };
        f.redis_failures = 0;
        f.next_probe = Instant::now() + health_interval(f.lease);
        if let Some(since) = f.down_since.take() {
            info!(account = %self.account.name, url = %f.store.url(), down_s = since.elapsed().as_secs(), "Redis is reachable again");
            self.handle.set_store_health(None);
        }
        if f.blocked_on_redis {
            f.blocked_on_redis = false;
            self.not_before = None;
        }
        if !f.unsynced_mints.is_empty() {
            let store = f.store.clone();
            let times = std::mem::take(&mut f.unsynced_mints);
            if let Err(e) = store.record_mints(ns, &times).await {
                debug!(account = %self.account.name, "could not add local token requests to the fleet's log yet: {e}");
                if let Some(f) = self.fleet.as_mut() {
                    f.unsynced_mints.extend(times);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_scale_with_the_lease_and_retries_are_capped() {
        let s = Duration::from_secs;
        assert_eq!(
            health_interval(s(15)),
            s(5),
            "default lease: a look every 5 s"
        );
        assert_eq!(health_interval(s(2)), s(1), "never more than once a second");
        assert_eq!(health_interval(s(600)), s(5), "never less than every 5 s");
        assert_eq!(
            redis_retry(1, 1.0),
            s(1),
            "first retry after about a second"
        );
        assert_eq!(redis_retry(20, 1.0), REDIS_RETRY_CAP, "capped");
    }
}
