//! Redis on a request's path (the credit ledger, the Books/Inventory windows): a script must
//! answer within [`HOT_TIMEOUT`], and after a failure the caller counts on its own for
//! [`RETRY_AFTER_FAILURE_MS`] before Redis is tried again, so an outage neither stops traffic nor
//! slows every request down.

use super::RedisClient;
use redis::FromRedisValue;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The longest a request waits for Redis before its caller counts locally.
pub const HOT_TIMEOUT: Duration = Duration::from_secs(1);
/// After a failure, callers count locally this long before Redis is tried again.
pub const RETRY_AFTER_FAILURE_MS: u64 = 5_000;

/// When Redis may be tried again after a failure (Unix ms).
#[derive(Debug, Default)]
pub struct FailureWindow {
    until_ms: AtomicU64,
}

impl FailureWindow {
    /// Whether Redis is being skipped at `now_ms`.
    pub fn skipping(&self, now_ms: u64) -> bool {
        now_ms < self.until_ms.load(Ordering::Relaxed)
    }

    /// Starts (or extends) the skipping period; true when none ran before (log it once).
    pub fn failed(&self, now_ms: u64) -> bool {
        let before = self
            .until_ms
            .fetch_max(now_ms + RETRY_AFTER_FAILURE_MS, Ordering::Relaxed);
        before <= now_ms
    }
}

impl RedisClient {
    /// [`RedisClient::run_script`] within [`HOT_TIMEOUT`].
    pub async fn run_script_hot<T: FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, String> {
        match tokio::time::timeout(HOT_TIMEOUT, self.run_script(inv)).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "Redis did not answer within {} ms",
                HOT_TIMEOUT.as_millis()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_skips_redis_for_a_while_and_is_reported_once() {
        let w = FailureWindow::default();
        assert!(!w.skipping(1_000));
        assert!(w.failed(1_000), "the first failure starts the period");
        assert!(w.skipping(1_000 + RETRY_AFTER_FAILURE_MS - 1));
        assert!(!w.failed(2_000), "a failure inside the period extends it");
        assert!(w.skipping(2_000 + RETRY_AFTER_FAILURE_MS - 1));
        assert!(!w.skipping(2_000 + RETRY_AFTER_FAILURE_MS));
        assert!(w.failed(2_000 + RETRY_AFTER_FAILURE_MS));
    }
}
