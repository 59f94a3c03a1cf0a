//! How the store reaches the fleet's Redis: one primary at a stable address, the primary the
//! sentinels name, or a Redis Cluster. Owns connecting (with timeouts), the command connection
//! type, the pub/sub connection of each topology and the secret-free description of a failure.
//!
//! Must not: know the key layout or the scripts (`mod.rs`), cache a sentinel's answer across a
//! reconnection (a failover moves the primary), or show a password in a message.

use super::sentinel::Sentinel;
use super::REDIS_TIMEOUT;
use crate::config::{RedisNode, RedisTopology, SecretValue};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, PubSub};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, Value};

/// Replicas a write waits for (`WAIT`) where Redis is deployed with replicas, and how long at
/// most: a failover then loses nothing acknowledged (see the README's failover bound). Not
/// waiting longer keeps a fleet whose replica is gone able to mint.
pub const REPLICA_ACKS: u32 = 1;
/// The longest wait for the replica's acknowledgement, in milliseconds.
pub const REPLICA_WAIT_MS: u64 = 250;

/// The fleet's Redis, as configured.
pub enum Backend {
    /// One primary at a stable address.
    Single(redis::Client),
    /// The primary the sentinels name, looked up on every (re)connection.
    Sentinel(Sentinel),
    /// A Redis Cluster; the client follows `MOVED`/`ASK` and refreshes its slot map.
    Cluster {
        client: ClusterClient,
        /// One client per seed node, for the notice subscription (cluster pub/sub reaches
        /// every node).
        seeds: Vec<redis::Client>,
    },
}

/// A command connection to whichever node serves the fleet's keys.
#[derive(Clone)]
pub(super) enum Conn {
    /// One node (a single Redis, or Sentinel's current primary).
    Node(Box<ConnectionManager>),
    /// The cluster, routed by key slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Node(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Node(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Node(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The settings of a connection to one data node.
pub(super) fn manager_config() -> ConnectionManagerConfig {
    ConnectionManagerConfig::new()
        .set_connection_timeout(REDIS_TIMEOUT)
        .set_response_timeout(REDIS_TIMEOUT)
        .set_number_of_retries(1)
        .set_max_delay(500)
}

/// Who the proxy is on a node: a Redis ACL user name (from the URL; `None` is the default user)
/// and the password.
#[derive(Clone)]
pub(super) struct NodeAuth {
    pub(super) username: Option<String>,
    pub(super) password: Option<SecretValue>,
}

impl NodeAuth {
    pub(super) fn new(username: Option<&str>, password: Option<&SecretValue>) -> NodeAuth {
        NodeAuth {
            username: username.map(str::to_string),
            password: password.cloned(),
        }
    }
}

/// A node's connection info: address, TLS, database, user and password.
pub(super) fn node_info(
    node: &RedisNode,
    tls: bool,
    db: i64,
    auth: &NodeAuth,
) -> Result<redis::ConnectionInfo, String> {
    let scheme = if tls { "rediss" } else { "redis" };
    let mut info = format!("{scheme}://{node}/{db}")
        .as_str()
        .into_connection_info()
        .map_err(|e| format!("{node} is not a usable Redis address: {e}"))?;
    info.redis.username = auth.username.clone();
    info.redis.password = auth.password.as_ref().map(|p| p.expose().to_string());
    Ok(info)
}

impl Backend {
    /// The backend of `url`; no I/O yet.
    pub(super) fn new(
        url: &str,
        topology: &RedisTopology,
        password: Option<&SecretValue>,
        sentinel_password: Option<&SecretValue>,
    ) -> Result<Backend, String> {
        match topology {
            RedisTopology::Single => {
                let mut info = url
                    .into_connection_info()
                    .map_err(|e| format!("token.store: not a usable Redis URL ({url}): {e}"))?;
                if let Some(p) = password {
                    info.redis.password = Some(p.expose().to_string());
                }
                let client = redis::Client::open(info)
                    .map_err(|e| format!("token.store: cannot use Redis at {url}: {e}"))?;
                Ok(Backend::Single(client))
            }
            RedisTopology::Sentinel {
                sentinels,
                master,
                db,
                tls,
                username,
            } => Ok(Backend::Sentinel(Sentinel::new(
                url,
                sentinels,
                master,
                *db,
                *tls,
                NodeAuth::new(username.as_deref(), password),
                sentinel_password,
            )?)),
            RedisTopology::Cluster {
                seeds,
                tls,
                username,
            } => {
                let auth = NodeAuth::new(username.as_deref(), password);
                let infos = seeds
                    .iter()
                    .map(|n| node_info(n, *tls, 0, &auth))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("token.store: {e}"))?;
                let clients = infos
                    .iter()
                    .cloned()
                    .map(redis::Client::open)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("token.store: cannot use Redis at {url}: {e}"))?;
                let mut builder = ClusterClient::builder(infos)
                    .connection_timeout(REDIS_TIMEOUT)
                    .response_timeout(REDIS_TIMEOUT)
                    // Redirections and a slot-map refresh fit in one call's time; a node that
                    // is down fails the call, and the refresher probes again with backoff.
                    .retries(3)
                    .min_retry_wait(50)
                    .max_retry_wait(500);
                // Also for the nodes discovered from the seeds.
                if let Some(u) = &auth.username {
                    builder = builder.username(u.clone());
                }
                if let Some(p) = &auth.password {
                    builder = builder.password(p.expose().to_string());
                }
                let client = builder
                    .build()
                    .map_err(|e| format!("token.store: cannot use Redis at {url}: {e}"))?;
                Ok(Backend::Cluster {
                    client,
                    seeds: clients,
                })
            }
        }
    }

    /// Whether Redis is deployed with replicas a failover promotes (Sentinel, Cluster): writes
    /// that must survive a failover then wait for a replica's acknowledgement.
    pub fn replicated(&self) -> bool {
        !matches!(self, Backend::Single(_))
    }

    /// A new command connection (for Sentinel: to the primary the sentinels name now).
    pub(super) async fn connect(&self, url: &str) -> Result<Conn, String> {
        match self {
            Backend::Single(client) => {
                match tokio::time::timeout(
                    REDIS_TIMEOUT * 2,
                    ConnectionManager::new_with_config(client.clone(), manager_config()),
                )
                .await
                {
                    Ok(Ok(m)) => Ok(Conn::Node(Box::new(m))),
                    Ok(Err(e)) => Err(describe(url, &e)),
                    Err(_) => Err(timed_out(url)),
                }
            }
            Backend::Sentinel(s) => s.connect_primary().await.map(|m| Conn::Node(Box::new(m))),
            Backend::Cluster { client, .. } => {
                match tokio::time::timeout(REDIS_TIMEOUT * 2, client.get_async_connection()).await {
                    Ok(Ok(c)) => Ok(Conn::Cluster(c)),
                    Ok(Err(e)) => Err(describe(url, &e)),
                    Err(_) => Err(timed_out(url)),
                }
            }
        }
    }

    /// A pub/sub connection for "new token" notices; `attempt` rotates through the cluster's
    /// seed nodes.
    pub async fn pubsub(&self, url: &str, attempt: u32) -> Result<PubSub, String> {
        let client = match self {
            Backend::Single(client) => client.clone(),
            Backend::Sentinel(s) => s.primary_client().await?,
            Backend::Cluster { seeds, .. } => {
                let i = attempt as usize % seeds.len().max(1);
                match seeds.get(i) {
                    Some(c) => c.clone(),
                    None => return Err(format!("Redis at {url}: no seed node")),
                }
            }
        };
        match tokio::time::timeout(REDIS_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(describe(url, &e)),
            Err(_) => Err(timed_out(url)),
        }
    }

    /// The sentinels, if this is Sentinel.
    pub fn sentinel(&self) -> Option<&Sentinel> {
        match self {
            Backend::Sentinel(s) => Some(s),
            _ => None,
        }
    }
}

/// Whether the connection should be dropped and made again after `e`: I/O trouble, or a node
/// that is no longer the primary (`READONLY` after a failover: Sentinel names the new one).
pub(super) fn needs_reconnect(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_unrecoverable_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.code() == Some("READONLY")
}

pub(super) fn timed_out(url: &str) -> String {
    format!(
        "Redis at {url} did not answer within {} s",
        REDIS_TIMEOUT.as_secs()
    )
}

/// A secret-free description naming Redis and its URL.
pub(super) fn describe(url: &str, e: &RedisError) -> String {
    let auth = e.kind() == redis::ErrorKind::AuthenticationFailed
        || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"));
    if auth {
        format!("Redis at {url}: authentication failed ({e}); check token.redis_password and, for a Redis ACL user, the user name in token.store")
    } else if e.kind() == redis::ErrorKind::ClusterDown || e.code() == Some("CLUSTERDOWN") {
        format!(
            "Redis at {url}: the cluster is down ({e}): a hash slot is served by no node, or too few primaries are reachable; `redis-cli --cluster check` shows which"
        )
    } else if e.code() == Some("READONLY") {
        format!("Redis at {url}: the node is a replica now ({e}); reconnecting to the primary")
    } else if e.is_io_error()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_timeout()
    {
        format!("Redis at {url} is unreachable: {e}")
    } else {
        format!("Redis at {url}: {e}")
    }
}
