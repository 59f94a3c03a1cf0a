//! The fleet backend of the quota: one window, one daily count and one back-off per product's
//! organization in Redis for all replicas, checked and reserved atomically by one Lua script per
//! request, so N replicas with a limit of 10 a minute forward exactly 10 between them.
//!
//! Keys, all under one hash tag so one script may touch them in a cluster. `<product>` is
//! `books` or `inventory`, `<org>` the organization id; both are key suffixes only, never
//! script text:
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `zoho-auth-proxy:{quota}:window:<product>:<org>` | sorted set | one member per admitted request (`<time>:<seq>`), scored by its time in Unix ms (reservations in the future) | 60 s after the newest |
//! | `zoho-auth-proxy:{quota}:daily:<product>:<org>` | hash | minute → calls | 25 h after the last call |
//! | `zoho-auth-proxy:{quota}:throttle:<product>:<org>` | string | set while Zoho's back-off runs | with the back-off |
//! | `zoho-auth-proxy:{quota}:seq` | integer | the counter that makes window members unique | never |
//!
//! Uses the fleet store's connection and error handling ([`RedisClient::run_script`]); must not
//! show the Redis password (errors come from the store, which never does).

use super::window::{daily_retry_after_ms, day_start, minute_of, WINDOW_MS};
use crate::store::redis::hot::FailureWindow;
use crate::store::redis::RedisClient;
use std::sync::Arc;
use std::time::Duration;

const PREFIX: &str = "zoho-auth-proxy:{quota}";
/// Daily keys outlive their window by an hour.
const DAILY_TTL_MS: u64 = 25 * 3_600_000;

/// KEYS: window, daily, throttle, seq. ARGV: now ms, window limit (-1: none), longest wait ms,
/// daily limit (-1: none), minute, first minute of the day window, daily TTL ms, window ms,
/// queue cap. Returns `{0, at ms, window used, daily used}` (admitted: go at `at`),
/// `{1, wait ms}` (window full), `{2, daily used, buckets…}` (daily budget used up; buckets
/// flattened minute, calls) or `{3, ms left}` (Zoho's back-off).
const ADMIT: &str = r"
local pttl = redis.call('PTTL', KEYS[3])
if pttl > 0 then return {3, pttl} end
local now = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local maxwait = tonumber(ARGV[3])
local dlimit = tonumber(ARGV[4])
local start = tonumber(ARGV[6])
local span = tonumber(ARGV[8])
local flat = redis.call('HGETALL', KEYS[2])
local dused, kept = 0, {}
for i = 1, #flat, 2 do
  local m, c = tonumber(flat[i]), tonumber(flat[i + 1])
  if m < start then
    redis.call('HDEL', KEYS[2], flat[i])
  else
    dused = dused + c
    kept[#kept + 1] = {m, c}
  end
end
if dlimit >= 0 and dused + 1 > dlimit then
  table.sort(kept, function(a, b) return a[1] < b[1] end)
  local out = {2, dused}
  for _, b in ipairs(kept) do out[#out + 1] = b[1]; out[#out + 1] = b[2] end
  return out
end
local at, used = now, 0
if limit >= 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - span)
  local n = redis.call('ZCARD', KEYS[1])
  if n >= limit then
    if limit == 0 then return {1, span} end
    local free = redis.call('ZRANGE', KEYS[1], n - limit, n - limit, 'WITHSCORES')
    local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
    at = math.max(tonumber(free[2]) + span, tonumber(last[2]), now)
    if at - now > maxwait then return {1, at - now} end
    if at > now and redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf') >= tonumber(ARGV[9]) then
      return {1, at - now}
    end
  end
  local seq = redis.call('INCR', KEYS[4])
  redis.call('ZADD', KEYS[1], at, string.format('%d:%d', at, seq))
  redis.call('PEXPIRE', KEYS[1], at - now + span)
  used = n + 1
end
redis.call('HINCRBY', KEYS[2], ARGV[5], 1)
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return {0, at, used, dused + 1}";

/// KEYS: throttle. ARGV: back-off ms. Sets it unless a longer one runs.
const THROTTLE: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1";

/// What the fleet's script said.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// Reserved: go at `at_ms`; the fleet-wide counts after this request.
    Admitted {
        at_ms: u64,
        window_used: u64,
        daily_used: u64,
    },
    /// The window is full for longer than the request may wait.
    RateLimited { wait_ms: u64 },
    /// The daily budget is used up; when one call fits again.
    DailyExhausted { retry_after_ms: u64 },
    /// Zoho's back-off, announced by some replica, still runs.
    Throttled { remaining_ms: u64 },
    /// Redis failed moments ago: not tried (the caller counts locally).
    Skipped,
    /// Redis failed now (the caller counts locally). `first`: this failure started the
    /// local-counting period (the one to log; concurrent requests fail together).
    Unavailable { error: String, first: bool },
}

/// What one request asks of the fleet's script.
pub(super) struct Ask<'a> {
    pub product: &'static str,
    pub organization: &'a str,
    pub now_ms: u64,
    pub limit: Option<u32>,
    pub max_wait_ms: u64,
    pub daily_limit: Option<u64>,
}

/// The quota's keys in one fleet store.
pub(super) struct RedisQuota {
    store: Arc<RedisClient>,
    /// When Redis is tried again after a failure.
    down: FailureWindow,
    admit: redis::Script,
    throttle: redis::Script,
}

impl std::fmt::Debug for RedisQuota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQuota")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn key(kind: &str, product: &str, organization: &str) -> String {
    format!("{PREFIX}:{kind}:{product}:{organization}")
}

impl RedisQuota {
    pub(super) fn new(store: Arc<RedisClient>) -> RedisQuota {
        RedisQuota {
            store,
            down: FailureWindow::default(),
            admit: redis::Script::new(ADMIT),
            throttle: redis::Script::new(THROTTLE),
        }
    }

    /// Checks the back-off, the daily budget and the window and reserves a slot, atomically
    /// (fleet-wide). A failure starts the local-counting period.
    pub(super) async fn admit(&self, ask: Ask<'_>) -> Admission {
        let now_ms = ask.now_ms;
        match self.try_admit(ask).await {
            Ok(a) => a,
            Err(error) => Admission::Unavailable {
                error,
                first: self.down.failed(now_ms),
            },
        }
    }

    async fn try_admit(&self, ask: Ask<'_>) -> Result<Admission, String> {
        let now_ms = ask.now_ms;
        if self.down.skipping(now_ms) {
            return Ok(Admission::Skipped);
        }
        let mut inv = self.admit.prepare_invoke();
        inv.key(key("window", ask.product, ask.organization))
            .key(key("daily", ask.product, ask.organization))
            .key(key("throttle", ask.product, ask.organization))
            .key(format!("{PREFIX}:seq"))
            .arg(now_ms)
            .arg(ask.limit.map_or(-1, i64::from))
            .arg(ask.max_wait_ms)
            .arg(
                ask.daily_limit
                    .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX)),
            )
            .arg(minute_of(now_ms))
            .arg(day_start(now_ms))
            .arg(DAILY_TTL_MS)
            .arg(WINDOW_MS)
            .arg(super::window::MAX_QUEUED);
        let reply: Vec<i64> = self.store.run_script_hot(&inv).await?;
        decode(&reply, now_ms, ask.daily_limit.unwrap_or(0))
    }

    /// Announces Zoho's back-off to the fleet.
    pub(super) async fn throttle(
        &self,
        product: &'static str,
        organization: &str,
        now_ms: u64,
        delay: Duration,
    ) -> Result<(), String> {
        if self.down.skipping(now_ms) {
            return Ok(());
        }
        let mut inv = self.throttle.prepare_invoke();
        inv.key(key("throttle", product, organization))
            .arg(delay.as_millis().max(1) as u64);
        self.store
            .run_script_hot::<i64>(&inv)
            .await
            .map(|_| ())
            .inspect_err(|_| {
                self.down.failed(now_ms);
            })
    }
}

fn decode(reply: &[i64], now_ms: u64, daily_limit: u64) -> Result<Admission, String> {
    let n = |i: usize| reply.get(i).map(|v| u64::try_from(*v).unwrap_or(0));
    match reply.first() {
        Some(0) => Ok(Admission::Admitted {
            at_ms: n(1).unwrap_or(now_ms).max(now_ms),
            window_used: n(2).unwrap_or(0),
            daily_used: n(3).unwrap_or(0),
        }),
        Some(1) => Ok(Admission::RateLimited {
            wait_ms: n(1).unwrap_or(WINDOW_MS).max(1),
        }),
        Some(2) => {
            let buckets: Vec<(u64, u64)> = reply[2..]
                .chunks_exact(2)
                .map(|p| {
                    (
                        u64::try_from(p[0]).unwrap_or(0),
                        u64::try_from(p[1]).unwrap_or(0),
                    )
                })
                .collect();
            Ok(Admission::DailyExhausted {
                retry_after_ms: daily_retry_after_ms(buckets.iter().copied(), now_ms, daily_limit),
            })
        }
        Some(3) => Ok(Admission::Throttled {
            remaining_ms: n(1).unwrap_or(1).max(1),
        }),
        _ => Err("unexpected reply from the quota script".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::window::{DAY_MINUTES, MINUTE_MS};
    use super::*;

    #[test]
    fn replies_decode() {
        let now = 100 * MINUTE_MS;
        assert_eq!(
            decode(&[0, now as i64 + 5, 3, 7], now, 0),
            Ok(Admission::Admitted {
                at_ms: now + 5,
                window_used: 3,
                daily_used: 7
            })
        );
        assert_eq!(
            decode(&[1, 1500], now, 0),
            Ok(Admission::RateLimited { wait_ms: 1500 })
        );
        assert_eq!(
            decode(&[3, 900], now, 0),
            Ok(Admission::Throttled { remaining_ms: 900 })
        );
        assert_eq!(
            decode(&[2, 5, 99, 4, 100, 1], now, 5),
            Ok(Admission::DailyExhausted {
                retry_after_ms: (99 + DAY_MINUTES) * MINUTE_MS - now
            }),
            "the oldest bucket's return frees a call"
        );
        assert!(decode(&[], now, 0).is_err(), "an empty reply is an error");
        assert!(decode(&[9], now, 0).is_err(), "an unknown code is an error");
    }

    #[test]
    fn keys_share_one_hash_tag_and_keep_the_org_as_a_suffix() {
        let k = key("window", "books", "org{x}:1");
        assert_eq!(k, "zoho-auth-proxy:{quota}:window:books:org{x}:1");
        assert!(
            k.starts_with("zoho-auth-proxy:{quota}:"),
            "the first braces are the hash tag, so an org cannot move the key to another slot"
        );
    }
}
