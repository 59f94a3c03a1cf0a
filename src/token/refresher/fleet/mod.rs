//! Fleet mode for the refresher: many replicas share one refresh token through Redis, and one
//! of them at a time mints for all.
//!
//! When this replica's token is due (ahead of expiry, or rejected by Zoho) it first looks in
//! Redis: a newer token another replica minted is adopted, with no token request. Otherwise it
//! takes the fleet's lease (`SET NX PX`, random value), looks again under the lease, checks the
//! fleet-wide mint budget and back-off record, mints, shares the token (only while it still holds
//! the lease, renewed meanwhile) and releases the lease (compare and delete). Replicas that find
//! the lease taken wait for the holder's token (pub/sub notice, or polling) and never mint; if
//! the holder dies its lease expires and the next replica takes over.
//!
//! When Redis is unreachable the cached token keeps being served until it expires, readiness
//! fails naming Redis, and the store is probed again with backoff. What happens once the token is
//! due is `token.when_redis_down`: `refuse` (no token request until Redis is back) or
//! `mint_locally` (at most [`LOCAL_MINT_BUDGET`] token requests per 10 minutes per replica,
//! added to the fleet's mint log once Redis is back).
//!
//! This module owns the fleet's state and the coordination loop: look, adopt, follow the
//! fleet's back-off, mint under the lease or wait for its holder. Beside it: `lease.rs` (minting
//! under the lease and sharing the outcome), `adopt.rs` (taking another replica's token) and
//! `outage.rs` (Redis down and back).
//!
//! Must not: touch Redis outside the refresher task (requests only read the token cell), mint
//! without the lease while Redis is reachable, or log a token.

mod adopt;
mod lease;
mod outage;

use super::{plan, Plan, Refresher, TOKEN_REQUEST_TIMEOUT};
use crate::config::{RedisDownPolicy, TokenConfig};
use crate::token::budget::MintBudget;
use crate::token::client::{Grant, Minted, TokenError};
use crate::token::redis_store::{Lease, Namespace, RedisStore};
use crate::util::clock::now_unix_ms;
use outage::{health_interval, LOCAL_MINT_BUDGET};
use secrecy::ExposeSecret;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Shortest lease accepted (a shorter `token.lease` is raised to it): a few Redis round trips.
const MIN_LEASE: Duration = Duration::from_millis(250);

/// What one coordination step achieved.
enum Step {
    /// This replica has a token, or knows why not and when to try again.
    Done,
    /// The lease holder finished or vanished: look again.
    Again,
}

/// Fleet-mode state of one account's refresher.
pub(super) struct Fleet {
    store: Arc<RedisStore>,
    /// Woken by Redis notices (new token, connection change).
    wake: Arc<Notify>,
    lease: Duration,
    when_down: RedisDownPolicy,
    /// This replica in logs and in the shared token's `minted_by`.
    replica: String,
    down_since: Option<Instant>,
    redis_failures: u32,
    next_probe: Instant,
    /// Waiting for Redis (when_redis_down: refuse) rather than for Zoho.
    blocked_on_redis: bool,
    /// Fingerprints of tokens Zoho rejected.
    rejected: VecDeque<String>,
    local_budget: MintBudget,
    /// Token requests made while Redis was down, not yet in the shared log.
    unsynced_mints: Vec<u64>,
}

impl Fleet {
    /// Fleet state over `store`, with `token`'s lease, Redis-down policy and budget (no I/O).
    pub(super) fn new(store: Arc<RedisStore>, token: &TokenConfig) -> Fleet {
        let lease = token.lease.max(MIN_LEASE);
        let replica = std::env::var("HOSTNAME")
            .ok()
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 64
                    && h.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
            })
            .map(|h| format!("{h}/{}", std::process::id()))
            .unwrap_or_else(|| format!("pid-{}", std::process::id()));
        Fleet {
            store,
            wake: Arc::new(Notify::new()),
            lease,
            when_down: token.when_redis_down,
            replica,
            down_since: None,
            redis_failures: 0,
            next_probe: Instant::now() + health_interval(lease),
            blocked_on_redis: false,
            rejected: VecDeque::new(),
            local_budget: MintBudget::new(LOCAL_MINT_BUDGET.min(token.mint_budget), Vec::new()),
            unsynced_mints: Vec::new(),
        }
    }

    /// The notice listener, to run beside the refresher loop.
    pub(super) fn watcher(
        &self,
        cancel: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        self.store.clone().watch(self.wake.clone(), cancel)
    }
}

impl Refresher {
    /// A future that completes when the fleet code should look at Redis (a notice, or the next
    /// probe time). Never completes outside fleet mode.
    pub(super) fn fleet_wake(&self) -> impl Future<Output = ()> + Send + 'static {
        let fleet = self.fleet.as_ref().map(|f| (f.wake.clone(), f.next_probe));
        async move {
            match fleet {
                Some((wake, at)) => {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep_until(at.into()) => {}
                    }
                }
                None => std::future::pending().await,
            }
        }
    }

    /// [`Refresher::on_fleet_wake`], abandoned on shutdown (a hung Redis must not delay it).
    pub(super) async fn fleet_probe(
        &mut self,
        cancel: &CancellationToken,
    ) -> std::ops::ControlFlow<()> {
        tokio::select! {
            _ = self.on_fleet_wake() => std::ops::ControlFlow::Continue(()),
            _ = cancel.cancelled() => std::ops::ControlFlow::Break(()),
        }
    }

    /// Probe: checks Redis is reachable and adopts a newer shared token (e.g. one minted after a
    /// revoke another replica noticed first).
    async fn on_fleet_wake(&mut self) {
        let (Some(store), Some(ns)) = (
            self.fleet.as_ref().map(|f| f.store.clone()),
            self.namespace(),
        ) else {
            return;
        };
        match store.token(&ns).await {
            Ok(shared) => {
                self.redis_up(&ns).await;
                self.adopt_if_newer(&store, &ns, shared).await;
            }
            Err(e) => self.redis_down(e),
        }
    }

    /// The token is due: obtain one through the fleet.
    pub(super) async fn attempt_fleet(&mut self) {
        self.note_rejection();
        let Some(ns) = self.namespace() else { return };
        let Some(lease) = self.fleet.as_ref().map(|f| f.lease) else {
            return;
        };
        self.handle.set_minting(true);
        // Known down and not yet time to look again: the probe (fleet_wake) does the looking.
        let known_down = self
            .fleet
            .as_ref()
            .is_some_and(|f| f.down_since.is_some() && Instant::now() < f.next_probe);
        let give_up = Instant::now() + lease * 2 + TOKEN_REQUEST_TIMEOUT;
        loop {
            if known_down {
                self.when_redis_down().await;
                break;
            }
            match self.fleet_step(&ns, give_up).await {
                Ok(Step::Done) => break,
                Ok(Step::Again) if Instant::now() < give_up => continue,
                Ok(Step::Again) => {
                    debug!(account = %self.account.name, "no fleet token yet; looking again shortly");
                    break;
                }
                Err(e) => {
                    self.redis_down(e);
                    // Redis may have failed after this replica got its token (e.g. while sharing it).
                    if self.token_due() {
                        self.when_redis_down().await;
                    }
                    break;
                }
            }
        }
        self.handle.set_minting(false);
    }

    /// One pass: adopt, follow the fleet's back-off, mint under the lease, or wait for the holder.
    /// `Err` is a Redis failure.
    async fn fleet_step(&mut self, ns: &Namespace, give_up: Instant) -> Result<Step, String> {
        let Some((store, lease)) = self.fleet.as_ref().map(|f| (f.store.clone(), f.lease)) else {
            return Ok(Step::Done);
        };
        let shared = store.token(ns).await?;
        self.redis_up(ns).await;
        if self.adopt_if_newer(&store, ns, shared).await {
            return Ok(Step::Done);
        }
        if let Some(b) = store
            .backoff(ns)
            .await?
            .filter(|b| b.until_unix_ms > now_unix_ms())
        {
            self.follow_backoff(b);
            return Ok(Step::Done);
        }
        match store.try_lease(ns, lease).await? {
            Lease::Acquired(value) => {
                let outcome = self.mint_under_lease(&store, ns, &value, lease).await;
                if let Err(e) = store.release(ns, &value).await {
                    debug!(account = %self.account.name, "could not release the fleet lease (it expires by itself): {e}");
                }
                outcome.map(|()| Step::Done)
            }
            Lease::HeldByOther(ttl) => {
                debug!(account = %self.account.name, lease_ms = ttl.as_millis() as u64, "another replica is minting; waiting for its token");
                self.wait_for_holder(&store, ns, lease, give_up).await?;
                Ok(Step::Again)
            }
        }
    }

    /// Waits until Redis has a token this replica would adopt, or nobody holds the lease any more.
    async fn wait_for_holder(
        &mut self,
        store: &RedisStore,
        ns: &Namespace,
        lease: Duration,
        give_up: Instant,
    ) -> Result<(), String> {
        let Some(wake) = self.fleet.as_ref().map(|f| f.wake.clone()) else {
            return Ok(());
        };
        let poll = (lease / 8).clamp(Duration::from_millis(50), Duration::from_millis(250));
        while Instant::now() < give_up {
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
            if store.token(ns).await?.is_some_and(|t| self.adoptable(&t)) {
                return Ok(());
            }
            if store.lease_ttl(ns).await?.is_none() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Whether the current token needs replacing now (none, rejected, or inside the margin).
    fn token_due(&self) -> bool {
        plan(self.plan_input(None, true)) == Plan::MintNow
    }

    /// The namespace of the refresh token in use.
    fn namespace(&self) -> Option<Namespace> {
        let f = self.fleet.as_ref()?;
        let rt = self.refresh_token()?;
        Some(f.store.namespace(rt.expose_secret()))
    }

    /// One refresh-token request to Zoho Accounts.
    async fn send_refresh(&self) -> Result<Minted, TokenError> {
        let Some(rt) = self.refresh_token() else {
            return Err(TokenError::Other("no refresh token".to_string()));
        };
        let secrets = self.handle.secrets();
        self.request(
            &self.accounts_url(),
            &secrets.client_secret,
            Grant::Refresh(&rt),
        )
        .await
    }
}
