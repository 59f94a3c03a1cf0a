//! The fleet backend of the credit ledgers: one count in Redis for all replicas, checked and
//! charged atomically by one Lua script per request, so N replicas with `daily_limit: 9` forward
//! exactly 9 between them. Zoho's 429 back-off is shared the same way.
//!
//! Keys, all under one hash tag so one script may touch them in a cluster:
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `zoho-auth-proxy:{credits}:account:<client_id>:<account>` | hash | minute → credits | 25 h after the last charge |
//! | `zoho-auth-proxy:{credits}:client:<client name>` | hash | minute → credits | 25 h after the last charge |
//! | `zoho-auth-proxy:{credits}:throttle:<client_id>:<account>` | string | set while Zoho's back-off runs | with the back-off |
//!
//! Uses the fleet store's connection, error handling and hot-path timeout
//! ([`RedisClient::run_script_hot`], `store::redis::hot`); must not
//! show the Redis password (errors come from the store, which never does).

use super::ledger::{minute_of, retry_after_ms, window_start};
use crate::store::redis::hot::FailureWindow;
use crate::store::redis::RedisClient;
use std::sync::Arc;
use std::time::Duration;

const PREFIX: &str = "zoho-auth-proxy:{credits}";
/// Ledger keys outlive the window by an hour.
const LEDGER_TTL_MS: u64 = 25 * 3_600_000;

/// KEYS: account ledger, client ledger, throttle. ARGV: minute, window start, cost, account
/// limit (-1: none), client limit (-1: none), 1 to charge the client ledger, ledger TTL ms.
/// Returns `{0, account used, client used}` (admitted and charged), `{1|2, used, buckets…}`
/// (refused by the account | client budget; buckets flattened minute, credits) or
/// `{3, ms left}` (Zoho's back-off).
const ADMIT: &str = r"
local pttl = redis.call('PTTL', KEYS[3])
if pttl > 0 then return {3, pttl} end
local start = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local function load(key)
  local flat = redis.call('HGETALL', key)
  local used, kept = 0, {}
  for i = 1, #flat, 2 do
    local m, c = tonumber(flat[i]), tonumber(flat[i + 1])
    if m < start then
      redis.call('HDEL', key, flat[i])
    else
      used = used + c
      kept[#kept + 1] = {m, c}
    end
  end
  table.sort(kept, function(a, b) return a[1] < b[1] end)
  return used, kept
end
local function refused(code, used, kept)
  local out = {code, used}
  for _, b in ipairs(kept) do out[#out + 1] = b[1]; out[#out + 1] = b[2] end
  return out
end
local aused, akept = load(KEYS[1])
local alimit = tonumber(ARGV[4])
if alimit >= 0 and aused + cost > alimit then return refused(1, aused, akept) end
local cused = 0
if ARGV[6] == '1' then
  local ckept
  cused, ckept = load(KEYS[2])
  local climit = tonumber(ARGV[5])
  if climit >= 0 and cused + cost > climit then return refused(2, cused, ckept) end
end
if cost > 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], cost)
  redis.call('PEXPIRE', KEYS[1], ARGV[7])
  if ARGV[6] == '1' then
    redis.call('HINCRBY', KEYS[2], ARGV[1], cost)
    redis.call('PEXPIRE', KEYS[2], ARGV[7])
  end
end
return {0, aused + cost, cused + cost}";

/// KEYS: account ledger, client ledger. ARGV: minute, credits, 1 to refund the client too.
/// Gives a charge back.
const REFUND: &str = r"
local n = 1
if ARGV[3] == '1' then n = 2 end
for i = 1, n do
  local left = redis.call('HINCRBY', KEYS[i], ARGV[1], -tonumber(ARGV[2]))
  if left <= 0 then redis.call('HDEL', KEYS[i], ARGV[1]) end
end
return 1";

/// KEYS: throttle. ARGV: back-off ms. Sets it unless a longer one runs.
const THROTTLE: &str = r"
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], '1', 'PX', ARGV[1])
end
return 1";

/// What the fleet ledger said.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Admission {
    /// Charged; the fleet-wide use now (client: when a client ledger was charged).
    Admitted {
        account_used: u64,
        client_used: Option<u64>,
    },
    /// Refused by a budget: which, its use, and when enough rolls off.
    Refused {
        client: bool,
        used: u64,
        retry_after_ms: u64,
    },
    /// Zoho's back-off, announced by some replica, still runs.
    Throttled { remaining_ms: u64 },
    /// Redis failed moments ago: not tried (the caller counts locally).
    Skipped,
}

/// One account's keys in the fleet's Redis.
#[derive(Clone)]
pub(super) struct RedisLedger {
    store: Arc<RedisClient>,
    account_key: String,
    throttle_key: String,
    /// When Redis is tried again after a failure.
    down: Arc<FailureWindow>,
    scripts: Arc<Scripts>,
}

/// The scripts, hashed once.
struct Scripts {
    admit: redis::Script,
    refund: redis::Script,
    throttle: redis::Script,
}

fn client_key(client: &str) -> String {
    format!("{PREFIX}:client:{client}")
}

impl RedisLedger {
    pub(super) fn new(store: Arc<RedisClient>, client_id: &str, account: &str) -> RedisLedger {
        RedisLedger {
            store,
            account_key: format!("{PREFIX}:account:{client_id}:{account}"),
            throttle_key: format!("{PREFIX}:throttle:{client_id}:{account}"),
            down: Arc::default(),
            scripts: Arc::new(Scripts {
                admit: redis::Script::new(ADMIT),
                refund: redis::Script::new(REFUND),
                throttle: redis::Script::new(THROTTLE),
            }),
        }
    }

    /// Checks both budgets and charges `cost` atomically (fleet-wide).
    pub(super) async fn admit(
        &self,
        now_ms: u64,
        cost: u64,
        account_limit: Option<u64>,
        client: Option<&str>,
        client_limit: Option<u64>,
    ) -> Result<Admission, String> {
        if self.down.skipping(now_ms) {
            return Ok(Admission::Skipped);
        }
        let limit = |l: Option<u64>| l.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let mut inv = self.scripts.admit.prepare_invoke();
        inv.key(&self.account_key)
            .key(client.map_or_else(|| client_key(""), client_key))
            .key(&self.throttle_key)
            .arg(minute_of(now_ms))
            .arg(window_start(now_ms))
            .arg(cost)
            .arg(limit(account_limit))
            .arg(limit(client_limit))
            .arg(if client.is_some() { "1" } else { "0" })
            .arg(LEDGER_TTL_MS);
        let reply: Vec<i64> = self.store.run_script_hot(&inv).await.inspect_err(|_| {
            self.down.failed(now_ms);
        })?;
        decode(&reply, now_ms, cost, account_limit, client_limit)
    }

    /// Gives back a charge made at `at_ms`.
    pub(super) async fn refund(
        &self,
        at_ms: u64,
        credits: u64,
        client: Option<&str>,
    ) -> Result<(), String> {
        let mut inv = self.scripts.refund.prepare_invoke();
        inv.key(&self.account_key)
            .key(client.map_or_else(|| client_key(""), client_key))
            .arg(minute_of(at_ms))
            .arg(credits)
            .arg(if client.is_some() { "1" } else { "0" });
        let _: i64 = self.store.run_script(&inv).await?;
        Ok(())
    }

    /// Announces Zoho's back-off to the fleet.
    pub(super) async fn throttle(&self, now_ms: u64, delay: Duration) -> Result<(), String> {
        if self.down.skipping(now_ms) {
            return Ok(());
        }
        let mut inv = self.scripts.throttle.prepare_invoke();
        inv.key(&self.throttle_key)
            .arg(delay.as_millis().max(1) as u64);
        self.store.run_script_hot::<i64>(&inv).await.map(|_| ())
    }
}

fn decode(
    reply: &[i64],
    now_ms: u64,
    cost: u64,
    account_limit: Option<u64>,
    client_limit: Option<u64>,
) -> Result<Admission, String> {
    let n = |i: usize| reply.get(i).map(|v| u64::try_from(*v).unwrap_or(0));
    match reply.first() {
        Some(0) => Ok(Admission::Admitted {
            account_used: n(1).unwrap_or(0),
            client_used: client_limit.and(n(2)),
        }),
        Some(3) => Ok(Admission::Throttled {
            remaining_ms: n(1).unwrap_or(1),
        }),
        Some(code @ (1 | 2)) => {
            let client = *code == 2;
            let limit = if client { client_limit } else { account_limit }.unwrap_or(0);
            let buckets: Vec<(u64, u64)> = reply[2..]
                .chunks_exact(2)
                .map(|p| {
                    (
                        u64::try_from(p[0]).unwrap_or(0),
                        u64::try_from(p[1]).unwrap_or(0),
                    )
                })
                .collect();
            Ok(Admission::Refused {
                client,
                used: n(1).unwrap_or(0),
                retry_after_ms: retry_after_ms(buckets.iter().copied(), now_ms, cost, limit),
            })
        }
        _ => Err("unexpected reply from the credit script".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::ledger::MINUTE_MS;
    use super::*;

    #[test]
    fn replies_decode() {
        let now = 100 * MINUTE_MS;
        assert_eq!(
            decode(&[0, 7, 3], now, 1, Some(9), Some(12)),
            Ok(Admission::Admitted {
                account_used: 7,
                client_used: Some(3)
            })
        );
        assert_eq!(
            decode(&[3, 1500], now, 1, None, None),
            Ok(Admission::Throttled { remaining_ms: 1500 })
        );
        let refused = decode(&[1, 9, 99, 9], now, 1, Some(9), None).expect("decodes");
        assert_eq!(
            refused,
            Admission::Refused {
                client: false,
                used: 9,
                retry_after_ms: (99 + 1440) * MINUTE_MS - now,
            }
        );
        assert!(decode(&[], now, 1, None, None).is_err());
    }
}
