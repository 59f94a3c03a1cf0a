//! The store's listeners: "new token" notices (pattern subscription on the channels of this
//! client's namespaces) and, with Sentinel, failover announcements (`+switch-master`). Each wakes
//! the refresher; both reconnect with backoff and stop on cancellation.
//!
//! Must not: run commands on the fleet's keys (`mod.rs` does), or block the refresher: they only
//! notify it.

use super::{RedisStore, KEY_PREFIX, REDIS_TIMEOUT};
use futures_util::StreamExt;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

const PUBSUB_RETRY_CAP: Duration = Duration::from_secs(30);

impl RedisStore {
    /// Listens for "new token" notices of this client's namespaces and for connection changes
    /// (with Sentinel, also for failovers), and wakes `wake` on each; reconnects with backoff.
    /// Runs until cancelled.
    pub async fn watch(self: Arc<Self>, wake: Arc<Notify>, cancel: CancellationToken) {
        let switched = Arc::new(Notify::new());
        tokio::join!(
            self.clone()
                .watch_notices(wake.clone(), switched.clone(), cancel.clone()),
            self.watch_failovers(wake, switched, cancel),
        );
    }

    async fn watch_notices(
        self: Arc<Self>,
        wake: Arc<Notify>,
        switched: Arc<Notify>,
        cancel: CancellationToken,
    ) {
        let pattern = format!(
            "{KEY_PREFIX}:{{{}:*}}:updated",
            glob_escape(&self.client_id)
        );
        let mut failures: u32 = 0;
        let mut attempt: u32 = 0;
        loop {
            let connected = async {
                let mut pubsub = self
                    .redis
                    .backend()
                    .pubsub(self.redis.url(), attempt)
                    .await?;
                tokio::time::timeout(REDIS_TIMEOUT, pubsub.psubscribe(&pattern))
                    .await
                    .map_err(|_| "timed out".to_string())?
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(pubsub)
            };
            let outcome = tokio::select! {
                r = connected => r,
                _ = cancel.cancelled() => return,
            };
            attempt = attempt.wrapping_add(1);
            match outcome {
                Ok(pubsub) => {
                    failures = 0;
                    // A (re)connection may follow an outage: let the refresher look at once.
                    wake.notify_one();
                    let mut messages = pubsub.into_on_message();
                    loop {
                        tokio::select! {
                            m = messages.next() => match m {
                                Some(_) => wake.notify_one(),
                                None => break,
                            },
                            // Subscribed to the old primary: follow the new one.
                            _ = switched.notified() => break,
                            _ = cancel.cancelled() => return,
                        }
                    }
                    debug!(url = %self.redis.url(), "Redis notification connection closed");
                    wake.notify_one();
                }
                Err(e) => {
                    debug!(url = %self.redis.url(), "Redis notification connection failed: {e}");
                    failures = failures.saturating_add(1);
                }
            }
            let delay = Duration::from_millis(250)
                .saturating_mul(1u32 << failures.min(8))
                .min(PUBSUB_RETRY_CAP)
                .mul_f64(0.5 + 0.5 * rand::thread_rng().gen::<f64>());
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = switched.notified() => {}
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// Sentinel only: follows `+switch-master` of our master name, dropping the command
    /// connection (the next call asks the sentinels again) and waking the refresher and the
    /// notice listener. Returns at once for other topologies.
    async fn watch_failovers(
        self: Arc<Self>,
        wake: Arc<Notify>,
        switched: Arc<Notify>,
        cancel: CancellationToken,
    ) {
        let Some(sentinel) = self.redis.backend().sentinel() else {
            return;
        };
        let mut failures: u32 = 0;
        let mut attempt: u32 = 0;
        loop {
            let outcome = tokio::select! {
                r = sentinel.failover_events(attempt) => r,
                _ = cancel.cancelled() => return,
            };
            attempt = attempt.wrapping_add(1);
            match outcome {
                Ok(pubsub) => {
                    failures = 0;
                    let mut messages = pubsub.into_on_message();
                    loop {
                        tokio::select! {
                            m = messages.next() => match m {
                                Some(msg) => {
                                    let payload: String = msg.get_payload().unwrap_or_default();
                                    let mut words = payload.split(' ');
                                    if words.next() != Some(sentinel.master()) {
                                        continue;
                                    }
                                    let new_primary: Vec<&str> = words.skip(2).collect();
                                    info!(url = %self.redis.url(), new_primary = %new_primary.join(":"), "Redis Sentinel reports a failover; following the new primary");
                                    self.redis.forget_connection();
                                    switched.notify_one();
                                    wake.notify_one();
                                }
                                None => break,
                            },
                            _ = cancel.cancelled() => return,
                        }
                    }
                    debug!(url = %self.redis.url(), "Redis Sentinel event connection closed");
                }
                Err(e) => {
                    debug!(url = %self.redis.url(), "Redis Sentinel event connection failed: {e}");
                    failures = failures.saturating_add(1);
                }
            }
            // Another sentinel is tried at once; the whole list again with backoff.
            let delay = Duration::from_millis(100)
                .saturating_mul(1u32 << failures.min(6))
                .min(PUBSUB_RETRY_CAP / 6);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = cancel.cancelled() => return,
            }
        }
    }
}

/// Escapes Redis glob characters.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(glob_escape("1000.a*b?[c]\\"), "1000.a\\*b\\?\\[c\\]\\\\");
    }
}
