//! One Redis as the fleet's durable store, reached as one primary, through Sentinel or as a
//! Cluster (`connection.rs`, `sentinel.rs`): the command connection (dropped and made again after
//! an I/O error, `READONLY` or a failover), a timeout on every call, and errors that never show
//! a password. Knows no key layout: the token store (`token/redis_store`) and the credit ledgers
//! (`credits/redis.rs`) own theirs.

pub mod connection;
pub mod hot;
pub mod sentinel;

use crate::config::{RedisTopology, SecretValue};
use connection::Conn;
pub use connection::{Backend, REPLICA_ACKS, REPLICA_WAIT_MS};
use redis::{FromRedisValue, RedisError};
use std::sync::Mutex;
use std::time::Duration;
use tracing::debug;

/// Time allowed for one Redis call, connecting included.
pub const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// A connection to the fleet's Redis, made on first use and again after a failure.
pub struct RedisClient {
    url: String,
    backend: Backend,
    conn: Mutex<Option<Conn>>,
}

impl std::fmt::Debug for RedisClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the backend: its connection info holds the password.
        f.debug_struct("RedisClient")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl RedisClient {
    /// A client of the Redis at `url` (no password in it) deployed as `topology`; no I/O yet.
    /// `password` is the data nodes', `sentinel_password` the sentinels' own.
    pub fn new(
        url: &str,
        topology: &RedisTopology,
        password: Option<&SecretValue>,
        sentinel_password: Option<&SecretValue>,
    ) -> Result<RedisClient, String> {
        Ok(RedisClient {
            url: url.to_string(),
            backend: Backend::new(url, topology, password, sentinel_password)?,
            conn: Mutex::new(None),
        })
    }

    /// The configured URL (never has a password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// How Redis is reached (for the pub/sub and Sentinel listeners).
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The command connection, and whether it was already made (it may be stale: a failover
    /// or a restart since closes it, which the first command notices).
    async fn connection(&self) -> Result<(Conn, bool), String> {
        if let Some(c) = self.conn.lock().ok().and_then(|g| g.clone()) {
            return Ok((c, true));
        }
        let conn = self.backend.connect(&self.url).await?;
        if let Ok(mut g) = self.conn.lock() {
            *g = Some(conn.clone());
        }
        Ok((conn, false))
    }

    pub fn forget_connection(&self) {
        if let Ok(mut g) = self.conn.lock() {
            *g = None;
        }
    }

    pub async fn query<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, String> {
        let mut last = String::new();
        for attempt in 0..2 {
            let (mut conn, cached) = self.connection().await?;
            let result = tokio::time::timeout(REDIS_TIMEOUT, cmd.query_async::<T>(&mut conn)).await;
            match self.outcome(result) {
                Ok(v) => return Ok(v),
                Err((e, stale)) if stale && cached && attempt == 0 => self.retrying(e, &mut last),
                Err((e, _)) => return Err(e),
            }
        }
        Err(last)
    }

    pub async fn query_pipe<T: FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, String> {
        // A WAIT for a replica adds at most its timeout.
        let limit = REDIS_TIMEOUT + Duration::from_millis(REPLICA_WAIT_MS);
        let mut last = String::new();
        for attempt in 0..2 {
            let (mut conn, cached) = self.connection().await?;
            let result = tokio::time::timeout(limit, pipe.query_async::<T>(&mut conn)).await;
            match self.outcome(result) {
                Ok(v) => return Ok(v),
                Err((e, stale)) if stale && cached && attempt == 0 => self.retrying(e, &mut last),
                Err((e, _)) => return Err(e),
            }
        }
        Err(last)
    }

    pub async fn run_script<T: FromRedisValue>(
        &self,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T, String> {
        let mut last = String::new();
        for attempt in 0..2 {
            let (mut conn, cached) = self.connection().await?;
            let result =
                tokio::time::timeout(REDIS_TIMEOUT, inv.invoke_async::<T>(&mut conn)).await;
            match self.outcome(result) {
                Ok(v) => return Ok(v),
                Err((e, stale)) if stale && cached && attempt == 0 => self.retrying(e, &mut last),
                Err((e, _)) => return Err(e),
            }
        }
        Err(last)
    }

    /// A call failed on a connection made earlier: once, on a new one (after a failover that
    /// one reaches the new primary). Calls are safe to repeat: a repeated `SET NX` finds the
    /// lease taken (it expires), a repeated mint-log entry overcounts (never under).
    fn retrying(&self, error: String, last: &mut String) {
        debug!(url = %self.url, "Redis call failed on an older connection; once more on a new one: {error}");
        *last = error;
    }

    /// The result, or a secret-free error and whether the connection was dropped for it.
    fn outcome<T>(
        &self,
        result: Result<Result<T, RedisError>, tokio::time::error::Elapsed>,
    ) -> Result<T, (String, bool)> {
        match result {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let reconnect = connection::needs_reconnect(&e);
                if reconnect {
                    self.forget_connection();
                }
                Err((connection::describe(&self.url, &e), reconnect))
            }
            Err(_) => {
                self.forget_connection();
                Err((connection::timed_out(&self.url), false))
            }
        }
    }
}
