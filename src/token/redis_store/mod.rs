//! Fleet mode's shared token store. One Redis holds, per refresh token, the current access token
//! (value, wall-clock expiry, lifetime, api_domain), the fleet-wide mint log, a shared back-off
//! record and the minting lease, and announces each new token on a pub/sub channel.
//!
//! Owns the key layout, the Lua scripts and the command connection (dropped and made again after
//! an I/O error or `READONLY`), and a timeout on every call. How Redis is reached (one primary,
//! Sentinel, Cluster) is `connection.rs` and `sentinel.rs`; the pub/sub listeners ("new token",
//! `+switch-master`) are `notices.rs`. Must not: decide when to mint or what to adopt (the
//! refresher's fleet code, `refresher/fleet/`, does); run on the request path; show a token, the
//! refresh token or a Redis password in an error, a log line or `Debug` output.
//!
//! Every command and script of one refresh token names only keys of its namespace, so on a
//! Redis Cluster each stays in one slot. Where Redis has replicas (Sentinel, Cluster) the lease,
//! the mint-log entry and the shared token are written with `WAIT` for one replica's
//! acknowledgement (bounded, see [`REPLICA_WAIT_MS`]), so a failover does not lose
//! them.
//!
//! Keys, all under one hash tag so they share a cluster slot
//! (`zoho-auth-proxy:{<client_id>:<first 16 hex of SHA-256(refresh token)>}:…`):
//!
//! | key | type | holds | expires |
//! |---|---|---|---|
//! | `…:token` | hash | `access_token`, `expires_at_ms`, `lifetime_ms`, `api_domain`, `minted_by`, `minted_at_ms` | with the token |
//! | `…:mints` | sorted set | one member per token request, score = Unix ms | 10 min after the last |
//! | `…:backoff` | string (JSON) | `until_unix_ms`, `state`, `message`, `failures` of the last failed request | 10 min after `until` |
//! | `…:lease` | string | the random value of the replica allowed to mint | `token.lease`, renewed while minting |
//! | `…:updated` | channel | `token` after each new token | |

mod notices;

use super::budget::WINDOW;
use super::store::{fingerprint, Loaded, StoredState, STORE_VERSION};
use super::TokenState;
use crate::config::{RedisTopology, SecretValue};
use crate::store::redis::{RedisClient, REPLICA_ACKS, REPLICA_WAIT_MS};
use crate::util::clock::now_unix_ms;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::store::redis::REDIS_TIMEOUT;

const KEY_PREFIX: &str = "zoho-auth-proxy";

/// Deletes the lease only if it still holds our value.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Extends the lease only if it still holds our value.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0";

/// Stores a new token only while the caller holds the lease; clears the back-off record and
/// announces the token. KEYS: lease, token, backoff. ARGV: lease value, token TTL ms, channel,
/// then field/value pairs.
const PUBLISH: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], unpack(ARGV, 4))
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('DEL', KEYS[3])
redis.call('PUBLISH', ARGV[3], 'token')
return 1";

/// The keys of one refresh token's shared state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    base: String,
}

impl Namespace {
    /// The namespace of `refresh_token` for `client_id`. Only a hash prefix of the refresh token
    /// appears in key names.
    pub fn new(client_id: &str, refresh_token: &str) -> Namespace {
        let hash = fingerprint(refresh_token);
        Namespace {
            base: format!("{KEY_PREFIX}:{{{client_id}:{}}}", &hash[..16]),
        }
    }

    fn key(&self, what: &str) -> String {
        format!("{}:{what}", self.base)
    }

    /// The channel announcing new tokens.
    pub fn channel(&self) -> String {
        self.key("updated")
    }
}

/// The token the fleet shares.
pub struct SharedToken {
    /// The access token.
    pub access_token: SecretString,
    /// Wall-clock expiry (Unix ms).
    pub expires_at_unix_ms: u64,
    /// Lifetime as issued.
    pub lifetime: Duration,
    /// The API host it was issued for (re-validated by every reader).
    pub api_domain: Option<String>,
    /// Which replica minted it (for logs).
    pub minted_by: String,
}

impl std::fmt::Debug for SharedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedToken")
            .field("access_token", &crate::util::REDACTED)
            .field("expires_at_unix_ms", &self.expires_at_unix_ms)
            .field("lifetime", &self.lifetime)
            .field("api_domain", &self.api_domain)
            .field("minted_by", &self.minted_by)
            .finish()
    }
}

/// Why the last token request failed and until when nobody in the fleet should retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedBackoff {
    /// No token request before then (Unix ms).
    pub until_unix_ms: u64,
    /// The state replicas report meanwhile.
    pub state: TokenState,
    /// The error, secret-free.
    pub message: String,
    /// Consecutive transient failures so far, fleet-wide (the next back-off grows from it).
    pub failures: u32,
}

/// The random value that proves a replica holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseValue(String);

/// Outcome of [`RedisStore::try_lease`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lease {
    /// This replica may mint until the lease expires (renew it while minting).
    Acquired(LeaseValue),
    /// Another replica holds it for about this long.
    HeldByOther(Duration),
}

/// A Redis shared by the replicas of a fleet.
pub struct RedisStore {
    redis: Arc<RedisClient>,
    client_id: String,
    release: redis::Script,
    renew: redis::Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the client: its connection info holds the password.
        f.debug_struct("RedisStore")
            .field("url", &self.redis.url())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store at `url` (no password in it) deployed as `topology`; no I/O yet. `password` is
    /// the data nodes', `sentinel_password` the sentinels' own.
    pub fn new(
        url: &str,
        topology: &RedisTopology,
        password: Option<&SecretValue>,
        sentinel_password: Option<&SecretValue>,
        client_id: &str,
    ) -> Result<RedisStore, String> {
        Ok(RedisStore {
            redis: Arc::new(RedisClient::new(
                url,
                topology,
                password,
                sentinel_password,
            )?),
            client_id: client_id.to_string(),
            release: redis::Script::new(RELEASE),
            renew: redis::Script::new(RENEW),
        })
    }

    /// The configured URL (never has a password).
    pub fn url(&self) -> &str {
        self.redis.url()
    }

    /// The connection to Redis, for the other ledgers kept there (the credit ledgers).
    pub fn client(&self) -> Arc<RedisClient> {
        self.redis.clone()
    }

    /// The namespace of `refresh_token`.
    pub fn namespace(&self, refresh_token: &str) -> Namespace {
        Namespace::new(&self.client_id, refresh_token)
    }

    /// The shared state as a [`StoredState`] (token and mint log), for the start-up restore.
    pub async fn load(&self, ns: &Namespace, refresh_token_sha256: String) -> Loaded {
        let token = match self.token(ns).await {
            Ok(t) => t,
            Err(e) => return Loaded::Unavailable(e),
        };
        let mints = match self.mint_log(ns, now_unix_ms()).await {
            Ok(m) => m,
            Err(e) => return Loaded::Unavailable(e),
        };
        let mut state = StoredState {
            version: STORE_VERSION,
            client_id: self.client_id.clone(),
            refresh_token_sha256: Some(refresh_token_sha256),
            mints_unix_ms: mints,
            ..Default::default()
        };
        if let Some(t) = token {
            state.access_token = Some(t.access_token.expose_secret().to_string());
            state.expires_at_unix_ms = Some(t.expires_at_unix_ms);
            state.lifetime_secs = Some(t.lifetime.as_secs_f64());
            state.api_domain = t.api_domain;
        }
        Loaded::State(Box::new(state))
    }

    /// The shared token, if there is one that has not expired.
    pub async fn token(&self, ns: &Namespace) -> Result<Option<SharedToken>, String> {
        let fields: HashMap<String, String> = self
            .redis
            .query(redis::cmd("HGETALL").arg(ns.key("token")))
            .await?;
        let number = |k: &str| fields.get(k).and_then(|v| v.parse::<u64>().ok());
        let (Some(value), Some(expires), Some(lifetime_ms)) = (
            fields.get("access_token"),
            number("expires_at_ms"),
            number("lifetime_ms"),
        ) else {
            return Ok(None);
        };
        if expires <= now_unix_ms() || value.is_empty() {
            return Ok(None);
        }
        Ok(Some(SharedToken {
            access_token: SecretString::from(value.clone()),
            expires_at_unix_ms: expires,
            lifetime: Duration::from_millis(lifetime_ms),
            api_domain: fields.get("api_domain").filter(|d| !d.is_empty()).cloned(),
            minted_by: fields.get("minted_by").cloned().unwrap_or_default(),
        }))
    }

    /// The shared back-off record, if any (it may already be over: see `until_unix_ms`).
    pub async fn backoff(&self, ns: &Namespace) -> Result<Option<SharedBackoff>, String> {
        let raw: Option<String> = self
            .redis
            .query(redis::cmd("GET").arg(ns.key("backoff")))
            .await?;
        Ok(raw.and_then(|r| serde_json::from_str(&r).ok()))
    }

    /// Records a failed token request for the whole fleet.
    pub async fn set_backoff(&self, ns: &Namespace, backoff: &SharedBackoff) -> Result<(), String> {
        let json = serde_json::to_string(backoff)
            .map_err(|e| format!("cannot encode the back-off record: {e}"))?;
        let ttl = backoff.until_unix_ms.saturating_sub(now_unix_ms()) + WINDOW.as_millis() as u64;
        self.redis
            .query::<()>(
                redis::cmd("SET")
                    .arg(ns.key("backoff"))
                    .arg(json)
                    .arg("PX")
                    .arg(ttl),
            )
            .await
    }

    /// Token requests of the last 10 minutes (Unix ms, oldest first), fleet-wide.
    pub async fn mint_log(&self, ns: &Namespace, now_ms: u64) -> Result<Vec<u64>, String> {
        let key = ns.key("mints");
        let cutoff = now_ms.saturating_sub(WINDOW.as_millis() as u64);
        let mut pipe = redis::pipe();
        pipe.cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(cutoff)
            .ignore();
        pipe.cmd("ZRANGE")
            .arg(&key)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES");
        let (entries,): (Vec<(String, f64)>,) = self.redis.query_pipe(&pipe).await?;
        let mut times: Vec<u64> = entries
            .into_iter()
            .map(|(_, score)| score.max(0.0) as u64)
            .collect();
        times.sort_unstable();
        Ok(times)
    }

    /// Adds token requests (Unix ms) to the fleet-wide log.
    pub async fn record_mints(&self, ns: &Namespace, times: &[u64]) -> Result<(), String> {
        if times.is_empty() {
            return Ok(());
        }
        let key = ns.key("mints");
        let mut pipe = redis::pipe();
        for &t in times {
            let member = format!("{t}:{:016x}", rand::thread_rng().gen::<u64>());
            pipe.cmd("ZADD").arg(&key).arg(t).arg(member).ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(WINDOW.as_millis() as u64)
            .ignore();
        self.replicate(&mut pipe);
        self.redis.query_pipe::<()>(&pipe).await
    }

    /// Ends a pipeline of writes that must survive a failover with `WAIT` for a replica, where
    /// Redis has replicas. On one connection (one cluster node: the pipeline goes to its first
    /// key's slot), so it covers exactly these writes.
    fn replicate(&self, pipe: &mut redis::Pipeline) {
        if self.redis.backend().replicated() {
            pipe.cmd("WAIT")
                .arg(REPLICA_ACKS)
                .arg(REPLICA_WAIT_MS)
                .ignore();
        }
    }

    /// Tries to become the fleet's minter for `lease` (`SET NX PX` with a random value).
    pub async fn try_lease(&self, ns: &Namespace, lease: Duration) -> Result<Lease, String> {
        let value = format!("{:032x}", rand::thread_rng().gen::<u128>());
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(ns.key("lease"))
            .arg(&value)
            .arg("NX")
            .arg("PX")
            .arg(lease.as_millis() as u64);
        self.replicate(&mut pipe);
        let (set,): (Option<String>,) = self.redis.query_pipe(&pipe).await?;
        if set.is_some() {
            return Ok(Lease::Acquired(LeaseValue(value)));
        }
        Ok(Lease::HeldByOther(
            self.lease_ttl(ns).await?.unwrap_or(Duration::ZERO),
        ))
    }

    /// Time left on the lease, `None` if nobody holds it.
    pub async fn lease_ttl(&self, ns: &Namespace) -> Result<Option<Duration>, String> {
        let ms: i64 = self
            .redis
            .query(redis::cmd("PTTL").arg(ns.key("lease")))
            .await?;
        Ok(match ms {
            -2 => None,
            -1 => {
                // No expiry: not set by a replica (someone SET it by hand). Give it one, so it
                // cannot block the fleet for ever.
                let key = ns.key("lease");
                let ms = REDIS_TIMEOUT.as_millis() as u64 * 5;
                self.redis
                    .query::<()>(redis::cmd("PEXPIRE").arg(key).arg(ms))
                    .await?;
                Some(Duration::from_millis(ms))
            }
            ms => Some(Duration::from_millis(ms.max(0) as u64)),
        })
    }

    /// Extends our lease to `lease` from now; `false` if it is no longer ours.
    pub async fn renew(
        &self,
        ns: &Namespace,
        value: &LeaseValue,
        lease: Duration,
    ) -> Result<bool, String> {
        let mut inv = self.renew.key(ns.key("lease"));
        inv.arg(&value.0).arg(lease.as_millis() as u64);
        let n: i64 = self.redis.run_script(&inv).await?;
        Ok(n == 1)
    }

    /// Gives the lease back if it is still ours (compare and delete).
    pub async fn release(&self, ns: &Namespace, value: &LeaseValue) -> Result<bool, String> {
        let mut inv = self.release.key(ns.key("lease"));
        inv.arg(&value.0);
        let n: i64 = self.redis.run_script(&inv).await?;
        Ok(n == 1)
    }

    /// Shares a new token, only while `value` still holds the lease; `false` if it no longer does.
    pub async fn publish(
        &self,
        ns: &Namespace,
        value: &LeaseValue,
        token: &SharedToken,
    ) -> Result<bool, String> {
        let ttl = token
            .expires_at_unix_ms
            .saturating_sub(now_unix_ms())
            .max(1);
        // EVAL, not EVALSHA: in a pipeline (for the WAIT) there is no NOSCRIPT fallback, and a
        // newly promoted primary has an empty script cache.
        let mut pipe = redis::pipe();
        pipe.cmd("EVAL")
            .arg(PUBLISH)
            .arg(3)
            .arg(ns.key("lease"))
            .arg(ns.key("token"))
            .arg(ns.key("backoff"))
            .arg(&value.0)
            .arg(ttl)
            .arg(ns.channel())
            .arg("access_token")
            .arg(token.access_token.expose_secret())
            .arg("expires_at_ms")
            .arg(token.expires_at_unix_ms)
            .arg("lifetime_ms")
            .arg(token.lifetime.as_millis() as u64)
            .arg("api_domain")
            .arg(token.api_domain.as_deref().unwrap_or(""))
            .arg("minted_by")
            .arg(&token.minted_by)
            .arg("minted_at_ms")
            .arg(now_unix_ms());
        self.replicate(&mut pipe);
        let (n,): (i64,) = self.redis.query_pipe(&pipe).await?;
        Ok(n == 1)
    }
}

#[cfg(test)]
mod tests;
