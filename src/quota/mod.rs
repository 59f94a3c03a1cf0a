//! Zoho Books' and Zoho Inventory's per-organization request limits: the 60-second window of
//! requests per organization (exact and first come, first served: a request waits for a slot up
//! to `queue_timeout`, else is refused), the daily call budget over a rolling 24 hours, and the
//! back-off after Zoho's own 429 for that organization. Zoho counts per organization, whichever
//! account or token calls, so all state is per (product, organization); the limits used are the
//! requesting account's. In fleet mode (an account with a Redis store) the window, the daily count
//! and the back-off are shared through Redis (`redis.rs`); when Redis fails, this replica counts
//! on its own for a few seconds and tries again.
//!
//! The proxy calls [`Quotas::admit`] before forwarding a Books or Inventory request and
//! [`Quotas::on_response`] when Zoho's response head arrives; CRM requests never come here.
//! Settings come in as plain data ([`QuotaSettings`]).
//!
//! Must not: parse HTTP, know the proxy's error type (it has its own, [`Refusal`]), or validate
//! organization ids (the caller does; here they are only map keys, key suffixes and labels).

mod admit;
mod metrics;
mod redis;
mod refusal;
mod state;
mod window;

pub use metrics::{MAX_LABELLED_ORGS, OTHER};
pub use refusal::Refusal;

use crate::config::OrgLimits;
use crate::store::redis::RedisClient;
use crate::util::backoff::parse_retry_after;
use crate::util::FastMap;
use admit::Ask;
use arc_swap::ArcSwap;
use metrics::QuotaMetrics;
use prometheus_client::registry::Registry;
use serde::Serialize;
use state::{lock, org, State};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::warn;
use window::retry_after_secs;

/// Organizations tracked per product before idle ones (nothing in either window, no back-off)
/// are dropped.
pub const MAX_TRACKED_ORGS: usize = 10_000;

/// The limits in force (swapped as one on reload; counts are kept).
#[derive(Clone, Debug, Default)]
pub struct QuotaSettings {
    /// Per account name: its `limits.requests_per_minute` and `limits.daily_calls` (a product
    /// not listed, or with 0 requests a minute, has no window).
    pub accounts: FastMap<String, OrgLimits>,
    /// How long a request may wait for a slot of its organization's window.
    pub queue_timeout: Duration,
}

/// A request the quota let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// How long it waited for its slot (zero when the window had room).
    pub waited: Duration,
}

/// One (product, organization) for `/status` and the console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgUsage {
    /// `books` or `inventory`.
    pub product: &'static str,
    /// The organization id.
    pub organization: String,
    /// Requests in the current 60 s window, waiting ones included (fleet-wide in fleet mode, as
    /// of this replica's last admission).
    pub window_used: u64,
    /// The window's limit last applied (the requesting account's).
    pub window_limit: Option<u32>,
    /// Calls in the rolling 24 hours (fleet-wide in fleet mode, as of the last admission).
    pub daily_used: u64,
    /// The daily budget last applied.
    pub daily_limit: Option<u64>,
    /// Seconds left of Zoho's back-off, if one runs.
    pub backoff_remaining_secs: Option<u64>,
    /// Refusals since start: window full.
    pub refused_rate_limited: u64,
    /// Refusals since start: daily budget used up.
    pub refused_daily_calls: u64,
    /// Refusals since start: Zoho's back-off.
    pub refused_zoho_throttled: u64,
}

/// Unix ms now (tests pass their own).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The quota runtime: every organization's window, daily count and back-off, and the settings.
pub struct Quotas {
    settings: ArcSwap<QuotaSettings>,
    state: Mutex<State>,
    /// Fleet stores by account name.
    fleet: FastMap<String, Arc<redis::RedisQuota>>,
    metrics: QuotaMetrics,
    clock: Clock,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas")
            .field("fleet_accounts", &self.fleet.len())
            .finish_non_exhaustive()
    }
}

impl Quotas {
    /// The runtime for `settings`; `redis`: the fleet stores of Redis-backed accounts, by name
    /// (as `credits::SharedStores`). Registers its metrics in `registry`.
    pub fn new(
        settings: QuotaSettings,
        redis: &HashMap<String, Arc<RedisClient>>,
        registry: &mut Registry,
    ) -> Quotas {
        Quotas::with_clock(
            settings,
            redis,
            registry,
            Arc::new(crate::util::clock::now_unix_ms),
        )
    }

    /// As [`Quotas::new`], with a clock (Unix ms) for tests.
    pub fn with_clock(
        settings: QuotaSettings,
        redis: &HashMap<String, Arc<RedisClient>>,
        registry: &mut Registry,
        clock: Clock,
    ) -> Quotas {
        // One script state per store, shared by the accounts on it (the failure window too).
        let mut by_store: Vec<(Arc<RedisClient>, Arc<redis::RedisQuota>)> = Vec::new();
        let fleet = redis
            .iter()
            .map(|(name, store)| {
                let shared = match by_store.iter().find(|(s, _)| Arc::ptr_eq(s, store)) {
                    Some((_, q)) => q.clone(),
                    None => {
                        let q = Arc::new(redis::RedisQuota::new(store.clone()));
                        by_store.push((store.clone(), q.clone()));
                        q
                    }
                };
                (name.clone(), shared)
            })
            .collect();
        Quotas {
            settings: ArcSwap::from_pointee(settings),
            state: Mutex::new(State::default()),
            fleet,
            metrics: QuotaMetrics::register(registry),
            clock,
        }
    }

    /// Replaces the limits (reload). Counts, reservations and back-offs are kept.
    pub fn apply(&self, settings: QuotaSettings) {
        self.settings.store(Arc::new(settings));
    }

    /// Before forwarding a request of `product` for `organization` through `account`. Waits
    /// (bounded by `queue_timeout`) when the window is full but a slot frees in time; refuses
    /// while Zoho's back-off runs, when the daily budget is used up, or when the wait would be
    /// longer. A product the account does not limit is admitted at once and not counted, unless
    /// Zoho's back-off for the organization runs (as this replica knows it).
    ///
    /// A waiting request dropped before its slot (the client went away) still holds the slot
    /// until it ages out: the window errs towards fewer requests, never more.
    pub async fn admit(
        &self,
        account: &str,
        product: &'static str,
        organization: &str,
    ) -> Result<Admitted, Refusal> {
        let settings = self.settings.load();
        let limits = settings
            .accounts
            .get(account)
            .map_or((None, None), |a| (a.per_minute(product), a.daily(product)));
        if limits == (None, None) {
            drop(settings);
            // Not counted, but Zoho's back-off for the organization (as this replica knows it)
            // still holds.
            return match self.known_backoff(account, product, organization) {
                None => Ok(Admitted {
                    waited: Duration::ZERO,
                }),
                Some(refusal) => Err(refusal),
            };
        }
        let max_wait_ms = u64::try_from(settings.queue_timeout.as_millis()).unwrap_or(u64::MAX);
        drop(settings);
        let now = (self.clock)();
        let ask = Ask {
            account,
            product,
            organization,
            now,
            limits,
            max_wait_ms,
        };
        let at_ms = match self.fleet.get(account) {
            Some(fleet) => self.admit_fleet(fleet, ask).await?,
            None => self.admit_local(ask)?,
        };
        let waited = Duration::from_millis(at_ms.saturating_sub(now));
        if !waited.is_zero() {
            tokio::time::sleep(waited).await;
        }
        Ok(Admitted { waited })
    }

    /// The refusal while Zoho's back-off runs for an organization already tracked (counted).
    fn known_backoff(
        &self,
        account: &str,
        product: &'static str,
        organization: &str,
    ) -> Option<Refusal> {
        let now = (self.clock)();
        let mut guard = lock(&self.state);
        let State {
            products, accounts, ..
        } = &mut *guard;
        let o = products
            .iter_mut()
            .find(|(p, _)| *p == product)?
            .1
            .get_mut(organization)?;
        let wait = o.backoff.remaining(now)?;
        let refusal = Refusal::ZohoThrottled {
            product,
            organization: organization.to_string(),
            retry_after_secs: retry_after_secs(wait.as_millis() as u64),
        };
        Some(self.refuse(accounts, o, account, product, refusal))
    }

    /// When Zoho's response head arrives for a request admitted for `organization`: a 429
    /// starts or extends its back-off (Zoho's `Retry-After` in seconds if sent, else 1 s
    /// doubling to 60 s) and, in fleet mode, announces it to the other replicas; anything else
    /// resets the doubling. Awaits only for a 429 in fleet mode (one Redis call).
    pub async fn on_response(
        &self,
        account: &str,
        product: &'static str,
        organization: &str,
        status: u16,
        retry_after: Option<&[u8]>,
    ) {
        let now = (self.clock)();
        let delay = {
            let mut state = lock(&self.state);
            if status != 429 {
                // Only organizations already tracked: a success makes no state.
                if let Some(o) = state
                    .products
                    .iter_mut()
                    .find(|(p, _)| *p == product)
                    .and_then(|(_, orgs)| orgs.get_mut(organization))
                {
                    o.backoff.succeeded();
                }
                return;
            }
            let (o, _) = org(&mut state, &self.metrics, product, organization, now);
            o.backoff
                .throttled(now, retry_after.and_then(parse_retry_after))
        };
        warn!(account = %account, product, organization = %crate::util::log_safe(organization), backoff_ms = delay.as_millis() as u64, "Zoho answered 429: forwarding nothing for this organization during the back-off");
        if let Some(fleet) = self.fleet.get(account) {
            // Boxed, as in `admit`: only a 429 in fleet mode gets here.
            if let Err(e) = Box::pin(fleet.throttle(product, organization, now, delay)).await {
                warn!(account = %account, "quota: cannot share Zoho's back-off through Redis: {e}");
            }
        }
    }

    /// One row per (product, organization) tracked, by product then organization id.
    pub fn snapshot(&self) -> Vec<OrgUsage> {
        let now = (self.clock)();
        let mut state = lock(&self.state);
        let mut rows = Vec::new();
        for (product, orgs) in state.products.iter_mut() {
            for (id, o) in orgs.iter_mut() {
                rows.push(OrgUsage {
                    product,
                    organization: id.to_string(),
                    window_used: o.window_used(now),
                    window_limit: o.limits.0,
                    daily_used: o.daily_used(now),
                    daily_limit: o.limits.1,
                    backoff_remaining_secs: o
                        .backoff
                        .remaining(now)
                        .map(|d| retry_after_secs(d.as_millis() as u64)),
                    refused_rate_limited: o.refused[0],
                    refused_daily_calls: o.refused[1],
                    refused_zoho_throttled: o.refused[2],
                });
            }
        }
        rows.sort_by(|a, b| (a.product, &a.organization).cmp(&(b.product, &b.organization)));
        rows
    }
}

#[cfg(test)]
mod tests;
