//! Redis Sentinel: which node is the primary now. Asks the sentinels in turn
//! (`SENTINEL get-master-addr-by-name`), connects to the address named and checks with `ROLE`
//! that the node agrees it is the primary (right after a failover a sentinel may still name the
//! old one). Listens on a sentinel for `+switch-master`, so a failover is followed within a
//! round trip rather than at the next failed command.
//!
//! Resolved by hand rather than with the redis crate's `sentinel` module: that one caches
//! connections behind `&mut self`, has no per-sentinel timeout and reports every failure as
//! "couldn't determine master", where readiness must say whether the sentinels are unreachable
//! or do not know the master name.
//!
//! Must not: remember the primary across reconnections, or show either password.

use super::connection::{describe, manager_config, node_info, timed_out, NodeAuth};
use super::REDIS_TIMEOUT;
use crate::config::{RedisNode, SecretValue};
use redis::aio::{ConnectionManager, PubSub};
use redis::AsyncConnectionConfig;
use std::time::Duration;

/// Time allowed for one sentinel's answer (the next sentinel is asked after it).
const SENTINEL_TIMEOUT: Duration = Duration::from_secs(1);

/// The sentinels of one master name and how to reach the data nodes they name.
pub struct Sentinel {
    url: String,
    master: String,
    sentinels: Vec<(RedisNode, redis::Client)>,
    db: i64,
    tls: bool,
    /// The data nodes' user and password.
    auth: NodeAuth,
}

impl Sentinel {
    /// No I/O yet.
    pub(super) fn new(
        url: &str,
        sentinels: &[RedisNode],
        master: &str,
        db: i64,
        tls: bool,
        auth: NodeAuth,
        sentinel_password: Option<&SecretValue>,
    ) -> Result<Sentinel, String> {
        // The sentinels are asked as their default user, with their own password.
        let sentinel_auth = NodeAuth::new(None, sentinel_password);
        let sentinels = sentinels
            .iter()
            .map(|n| {
                let info = node_info(n, false, 0, &sentinel_auth)
                    .map_err(|e| format!("token.store: {e}"))?;
                let client = redis::Client::open(info)
                    .map_err(|e| format!("token.store: cannot use the sentinel {n}: {e}"))?;
                Ok((n.clone(), client))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Sentinel {
            url: url.to_string(),
            master: master.to_string(),
            sentinels,
            db,
            tls,
            auth,
        })
    }

    /// The master name the sentinels monitor.
    pub fn master(&self) -> &str {
        &self.master
    }

    /// The primary's address, from the first sentinel that knows it.
    async fn primary(&self) -> Result<RedisNode, String> {
        let mut unknown = 0;
        let mut failed = Vec::new();
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(SENTINEL_TIMEOUT)
            .set_response_timeout(SENTINEL_TIMEOUT);
        for (node, client) in &self.sentinels {
            let asked = async {
                let mut conn = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(&self.master)
                    .query_async::<Option<(String, u16)>>(&mut conn)
                    .await
            };
            match tokio::time::timeout(SENTINEL_TIMEOUT * 2, asked).await {
                Ok(Ok(Some((host, port)))) => return Ok(RedisNode { host, port }),
                Ok(Ok(None)) => unknown += 1,
                Ok(Err(e)) => failed.push(format!("{node}: {}", short(&e))),
                Err(_) => failed.push(format!("{node}: no answer")),
            }
        }
        let unreachable = if failed.is_empty() {
            String::new()
        } else {
            format!("; unreachable: {}", failed.join(", "))
        };
        if unknown > 0 {
            Err(format!(
                "Redis at {}: {unknown} of {} sentinels answered and none knows a master named `{}`; check MASTER_NAME in token.store (the name of the sentinels' `sentinel monitor` line){unreachable}",
                self.url,
                self.sentinels.len(),
                self.master
            ))
        } else {
            Err(format!(
                "Redis at {}: no sentinel answered ({}); the fleet's Redis is unavailable",
                self.url,
                failed.join(", ")
            ))
        }
    }

    /// A client for the primary the sentinels name now.
    pub(super) async fn primary_client(&self) -> Result<redis::Client, String> {
        let primary = self.primary().await?;
        let info = node_info(&primary, self.tls, self.db, &self.auth)
            .map_err(|e| format!("Redis at {}: {e}", self.url))?;
        redis::Client::open(info).map_err(|e| describe(&self.url, &e))
    }

    /// A command connection to the primary, checked with `ROLE`.
    pub(super) async fn connect_primary(&self) -> Result<ConnectionManager, String> {
        let client = self.primary_client().await?;
        let connected = async {
            let mut manager = ConnectionManager::new_with_config(client, manager_config()).await?;
            let role: Vec<redis::Value> = redis::cmd("ROLE").query_async(&mut manager).await?;
            let role = role
                .first()
                .and_then(|v| redis::from_redis_value::<String>(v).ok())
                .unwrap_or_default();
            Ok::<_, redis::RedisError>((manager, role))
        };
        match tokio::time::timeout(REDIS_TIMEOUT * 2, connected).await {
            Ok(Ok((manager, role))) if role == "master" => Ok(manager),
            Ok(Ok((_, role))) => Err(format!(
                "Redis at {}: the node the sentinels name as primary of `{}` reports role `{role}` (a failover is under way); asking again",
                self.url, self.master
            )),
            Ok(Err(e)) => Err(describe(&self.url, &e)),
            Err(_) => Err(timed_out(&self.url)),
        }
    }

    /// A subscription to `+switch-master` on the `attempt`-th sentinel (in turn).
    pub async fn failover_events(&self, attempt: u32) -> Result<PubSub, String> {
        let n = self.sentinels.len().max(1);
        let Some((node, client)) = self.sentinels.get(attempt as usize % n) else {
            return Err("no sentinel configured".to_string());
        };
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe("+switch-master").await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(REDIS_TIMEOUT, subscribed).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(format!("sentinel {node}: {}", short(&e))),
            Err(_) => Err(format!("sentinel {node}: no answer")),
        }
    }
}

/// A sentinel's error, secret-free, with a hint for a failed authentication.
fn short(e: &redis::RedisError) -> String {
    let auth = e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"));
    if auth {
        format!("authentication failed ({e}); check token.sentinel_password_file")
    } else {
        e.to_string()
    }
}
