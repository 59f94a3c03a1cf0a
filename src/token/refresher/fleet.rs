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
//! Must not: touch Redis outside the refresher task (requests only read the token cell), mint
//! without the lease while Redis is reachable, or log a token.

use super::{backoff, plan, Plan, PlanInput, Refresher, TOKEN_REQUEST_TIMEOUT};
use crate::config::{RedisDownPolicy, TokenConfig};
use crate::token::budget::MintBudget;
use crate::token::client::{Grant, Minted, TokenError};
use crate::token::redis_store::{
    Lease, LeaseValue, Namespace, RedisStore, SharedBackoff, SharedToken,
};
use crate::token::store::fingerprint;
use crate::token::{refresh_margin, AccessToken, TokenState};
use crate::util::clock::now_unix_ms;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Token requests a replica may make per 10 minutes on its own while Redis is down
/// (`when_redis_down: mint_locally`), whatever `token.mint_budget` says.
pub const LOCAL_MINT_BUDGET: u32 = 2;

/// Shortest lease accepted (a shorter `token.lease` is raised to it): a few Redis round trips.
const MIN_LEASE: Duration = Duration::from_millis(250);
/// Longest pause between two attempts to reach a Redis that is down.
const REDIS_RETRY_CAP: Duration = Duration::from_secs(30);
/// Rejected tokens remembered (never adopted again).
const REJECTED_KEPT: usize = 8;

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

/// How often a healthy Redis is looked at when nothing else happens.
pub(super) fn health_interval(lease: Duration) -> Duration {
    (lease / 3).clamp(Duration::from_secs(1), Duration::from_secs(5))
}

/// Pause before the `failures`-th attempt to reach Redis again.
pub(super) fn redis_retry(failures: u32, jitter: f64) -> Duration {
    backoff(failures, jitter).min(REDIS_RETRY_CAP)
}

/// Renews the lease every third of its length; returns (why) when it can no longer be renewed.
async fn keep_lease(
    store: Arc<RedisStore>,
    ns: Namespace,
    value: LeaseValue,
    lease: Duration,
) -> String {
    loop {
        tokio::time::sleep(lease / 3).await;
        match store.renew(&ns, &value, lease).await {
            Ok(true) => {}
            Ok(false) => return "the lease expired and another replica may hold it".to_string(),
            Err(e) => return e,
        }
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
                if let Some(t) = shared.filter(|t| self.adoptable(t)) {
                    self.refresh_budget(&store, &ns).await;
                    self.adopt(t);
                }
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
        if let Some(t) = shared.filter(|t| self.adoptable(t)) {
            // Budget first: once the token is installed the replica reports ready.
            self.refresh_budget(&store, ns).await;
            if self.adopt(t) {
                return Ok(Step::Done);
            }
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

    /// Holding the lease: look again, check the fleet's back-off and budget, mint, share.
    async fn mint_under_lease(
        &mut self,
        store: &Arc<RedisStore>,
        ns: &Namespace,
        value: &LeaseValue,
        lease: Duration,
    ) -> Result<(), String> {
        // Between our look and SET NX another replica may have shared a token.
        if let Some(t) = store.token(ns).await?.filter(|t| self.adoptable(t)) {
            self.refresh_budget(store, ns).await;
            if self.adopt(t) {
                return Ok(());
            }
        }
        let prior = store.backoff(ns).await?;
        if let Some(b) = prior.clone().filter(|b| b.until_unix_ms > now_unix_ms()) {
            self.follow_backoff(b);
            return Ok(());
        }
        let now_ms = now_unix_ms();
        self.budget = MintBudget::new(
            self.account.token.mint_budget,
            store.mint_log(ns, now_ms).await?,
        );
        if self.hold_for_budget(now_ms, " across all replicas") {
            self.publish_budget();
            return Ok(());
        }
        store.record_mints(ns, &[now_ms]).await?;
        self.budget.record(now_ms);
        self.publish_budget();
        self.failures = self.failures.max(prior.map_or(0, |b| b.failures));
        let replica = self
            .fleet
            .as_ref()
            .map(|f| f.replica.clone())
            .unwrap_or_default();
        info!(account = %self.account.name, replica = %replica, "holding the fleet lease; requesting a new access token");

        let result = {
            let renewal = keep_lease(store.clone(), ns.clone(), value.clone(), lease);
            let request = self.send_refresh();
            tokio::pin!(renewal, request);
            let mut renewing = true;
            loop {
                tokio::select! {
                    r = &mut request => break r,
                    why = &mut renewal, if renewing => {
                        renewing = false;
                        warn!(account = %self.account.name, "could not renew the fleet lease while minting: {why}");
                    }
                }
            }
        };
        match result {
            Ok(minted) => {
                if self.accept(minted, false, None).await {
                    self.share_token(store, ns, value, replica).await?;
                } else {
                    self.share_failure(store, ns).await?;
                }
            }
            Err(e) => {
                self.fail(e).await;
                self.share_failure(store, ns).await?;
            }
        }
        Ok(())
    }

    /// Publishes the token just accepted.
    async fn share_token(
        &mut self,
        store: &RedisStore,
        ns: &Namespace,
        value: &LeaseValue,
        replica: String,
    ) -> Result<(), String> {
        let (Some(access_token), Some(expires_at_unix_ms)) = (
            self.state.access_token.clone(),
            self.state.expires_at_unix_ms,
        ) else {
            return Ok(());
        };
        let shared = SharedToken {
            access_token: SecretString::from(access_token),
            expires_at_unix_ms,
            lifetime: self
                .state
                .lifetime_secs
                .map(Duration::from_secs_f64)
                .unwrap_or(Duration::from_secs(3600)),
            api_domain: self.state.api_domain.clone(),
            minted_by: replica,
        };
        if !store.publish(ns, value, &shared).await? {
            warn!(
                account = %self.account.name,
                "the fleet lease expired before the new token could be shared; this replica uses it, another replica may mint one (raise token.lease if this repeats)"
            );
        }
        Ok(())
    }

    /// Reloads the fleet-wide mint log, so status and metrics show the budget left fleet-wide.
    async fn refresh_budget(&mut self, store: &RedisStore, ns: &Namespace) {
        let now_ms = now_unix_ms();
        match store.mint_log(ns, now_ms).await {
            Ok(log) => {
                self.budget = MintBudget::new(self.account.token.mint_budget, log);
                self.publish_budget();
            }
            Err(e) => {
                debug!(account = %self.account.name, "could not read the fleet's mint log: {e}")
            }
        }
    }

    /// Tells the fleet the token request failed and until when nobody should retry.
    async fn share_failure(&mut self, store: &RedisStore, ns: &Namespace) -> Result<(), String> {
        let status = self.handle.status();
        let record = SharedBackoff {
            until_unix_ms: status.next_attempt_unix_ms.unwrap_or_else(now_unix_ms),
            state: status.state,
            message: status
                .last_error
                .unwrap_or_else(|| "the token request failed".to_string()),
            failures: self.failures,
        };
        store.set_backoff(ns, &record).await
    }

    /// Another replica's token request failed: wait as long as it was told to.
    fn follow_backoff(&mut self, b: SharedBackoff) {
        let delay = Duration::from_millis(b.until_unix_ms.saturating_sub(now_unix_ms()));
        if self.last_error_label != Some("fleet-backoff") {
            info!(
                account = %self.account.name,
                wait_s = delay.as_secs(),
                "the fleet's last token request failed ({}); not requesting one before the fleet's back-off ends",
                b.message
            );
            self.last_error_label = Some("fleet-backoff");
        }
        self.failures = b.failures;
        self.wait(delay, b.state, b.message);
    }

    /// Redis is down and the token is due: refuse, or mint locally within the small budget.
    async fn when_redis_down(&mut self) {
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
                if self.last_error_label != Some("redis") {
                    warn!(account = %self.account.name, "the token is due but Redis is unreachable; not minting until it is back (token.when_redis_down: refuse)");
                    self.last_error_label = Some("redis");
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
                    if self.last_error_label != Some("local-budget") {
                        warn!(account = %self.account.name, "{message}");
                        self.last_error_label = Some("local-budget");
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
    pub(super) fn redis_down(&mut self, error: String) {
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
    async fn redis_up(&mut self, ns: &Namespace) {
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

    /// Remembers the current token as rejected if Zoho rejected it, so it is never adopted again.
    fn note_rejection(&mut self) {
        let Some(current) = self.handle.current() else {
            return;
        };
        if current.generation > self.handle.invalidated() || current.generation != self.generation {
            return;
        }
        let (Some(f), Some(value)) = (self.fleet.as_mut(), self.state.access_token.as_deref())
        else {
            return;
        };
        let fp = fingerprint(value);
        if !f.rejected.contains(&fp) {
            if f.rejected.len() == REJECTED_KEPT {
                f.rejected.pop_front();
            }
            f.rejected.push_back(fp);
        }
    }

    /// Whether the shared token should replace ours: not ours, never rejected, not itself due,
    /// and (if ours is still good) later-expiring.
    fn adoptable(&self, t: &SharedToken) -> bool {
        let fp = fingerprint(t.access_token.expose_secret());
        if self.state.access_token.as_deref().map(fingerprint).as_ref() == Some(&fp) {
            return false;
        }
        if self
            .fleet
            .as_ref()
            .is_some_and(|f| f.rejected.contains(&fp))
        {
            return false;
        }
        let remaining = Duration::from_millis(t.expires_at_unix_ms.saturating_sub(now_unix_ms()));
        if remaining <= refresh_margin(t.lifetime) {
            return false;
        }
        let ours_good = self.handle.current().is_some_and(|c| {
            c.generation > self.handle.invalidated() && c.usable_at(Instant::now())
        });
        !ours_good || t.expires_at_unix_ms > self.state.expires_at_unix_ms.unwrap_or(0)
    }

    /// Installs the fleet's token; `false` if it cannot be used.
    fn adopt(&mut self, t: SharedToken) -> bool {
        let remaining = Duration::from_millis(t.expires_at_unix_ms.saturating_sub(now_unix_ms()));
        let api = self.api_base(t.api_domain.as_deref(), true);
        let value = t.access_token.expose_secret();
        let Some(token) = AccessToken::new(
            value,
            self.generation + 1,
            t.lifetime,
            remaining,
            api.clone(),
        ) else {
            warn!(account = %self.account.name, "the token in Redis cannot be sent as a header; ignoring it");
            if let Some(f) = self.fleet.as_mut() {
                f.rejected.push_back(fingerprint(value));
            }
            return false;
        };
        self.generation += 1;
        self.state.access_token = Some(value.to_string());
        self.state.expires_at_unix_ms = Some(t.expires_at_unix_ms);
        self.state.lifetime_secs = Some(t.lifetime.as_secs_f64());
        self.state.api_domain = Some(api.origin());
        self.state.throttled_until_unix_ms = None;
        self.handle.install(token);
        self.failures = 0;
        self.not_before = None;
        if self.last_error_label.take().is_some() {
            info!(account = %self.account.name, "token service recovered");
        }
        info!(
            account = %self.account.name,
            expires_in_s = remaining.as_secs(),
            minted_by = %t.minted_by,
            "using the fleet's access token from Redis; no token request needed"
        );
        self.set_ready(&api);
        let now = now_unix_ms();
        self.handle
            .update_status(|s| s.last_refresh_unix_ms = Some(now));
        true
    }

    /// Whether the current token needs replacing now (none, rejected, or inside the margin).
    fn token_due(&self) -> bool {
        let input = PlanInput {
            now: Instant::now(),
            token: self
                .handle
                .current()
                .map(|t| (t.expires_at, t.lifetime, t.generation)),
            invalidated: self.handle.invalidated(),
            not_before: None,
            can_mint: true,
        };
        plan(input) == Plan::MintNow
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
        self.client
            .request(
                &self.accounts_url(),
                &self.account.client_id,
                &secrets.client_secret,
                Grant::Refresh(&rt),
            )
            .await
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
