//! Zoho API credits: what each request costs ([`cost`]), the rolling 24-hour ledgers per account
//! and per client ([`ledger`]), the budgets that refuse a request before it is forwarded, the
//! back-off after Zoho's own 429 ([`backoff`], kept in `util/backoff.rs` as `quota/` uses it
//! too), the heavy-call and bulk-download limits ([`slots`]), and the persistence of all of it
//! through the token store's backends (a file next to the token file, or the fleet's Redis:
//! `persist.rs`, `redis.rs`).
//!
//! The proxy calls [`Credits::admit`] once per request before taking its upstream slot and
//! [`Credits::on_response`] when Zoho's response head arrives. Budgets come in as data
//! ([`CreditSettings`]): per account from `credits.daily_limit`, per client from a list of
//! `(client name, credits per day)` built by whoever knows the clients.
//!
//! Must not: parse HTTP itself (the proxy passes method, canonical target, body bytes it holds
//! and the response head), decide policy, or mint tokens.

pub mod ledger;
mod metrics;
mod own;
mod persist;
mod redis;
mod refusal;
mod settle;
mod status;

/// The 429 back-off, shared with `quota/` (it lives in `util`).
pub use crate::util::backoff;
pub use ledger::download_wait;
pub use metrics::CreditMetrics;
pub use own::{CostsInForce, PROXY_CLIENT};
pub use refusal::Refusal;
pub use settle::Charge;
pub use status::explain;

use crate::config::{Config, CreditsConfig, StoreConfig};
use crate::policy::{cost, BodyView, Cost, CostOverrides};
use crate::store::redis::RedisClient;
use crate::util::backoff::Backoff;
use crate::util::FastMap;
use arc_swap::ArcSwap;
use ledger::{retry_after_secs, Ledger};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::Notify;
use tracing::warn;

/// The client label of requests from no identified client (the requester checks' own label).
pub use crate::config::ANONYMOUS;
/// Zoho's remaining-credits header (sent once half the credits are used: CREDITS.md, S).
pub const REMAINING_HEADER: &str = "x-api-credits-remaining";
/// Bulk-read result downloads allowed per minute per account (CREDITS.md §5, Z).
pub const DOWNLOADS_PER_MINUTE: usize = 10;

/// The budgets and cost overrides in force (swapped as one on reload).
#[derive(Clone, Debug, Default)]
pub struct CreditSettings {
    /// Per account: `credits.daily_limit` (`None`: count only) and `credits.costs`.
    pub accounts: FastMap<String, CreditsConfig>,
    /// Per client name: credits per rolling day (`clients[].credits_per_day`).
    pub clients: FastMap<String, u64>,
}

impl CreditSettings {
    /// The settings of `config`, with the per-client budgets `clients` (name, credits per day).
    pub fn from_config(config: &Config, clients: &[(String, u64)]) -> CreditSettings {
        CreditSettings {
            accounts: config
                .accounts
                .iter()
                .map(|a| (a.name.clone(), a.credits.clone()))
                .collect(),
            clients: clients.iter().cloned().collect(),
        }
    }
}

/// The per-client budgets of a config: `(client name, clients[].credits_per_day)`.
pub fn client_budgets(config: &Config) -> Vec<(String, u64)> {
    config
        .access
        .clients
        .iter()
        .filter_map(|c| Some((c.name.clone(), c.credits_per_day?)))
        .collect()
}

/// Where an account's ledger lives besides memory.
enum Backend {
    /// Nowhere (`token.store` unset).
    Memory,
    /// A JSON file beside the token file, written atomically by the writer task.
    File(PathBuf),
    /// The fleet's Redis: one count for all replicas.
    Redis(redis::RedisLedger),
}

/// One account's credit state.
struct AccountCredits {
    name: Arc<str>,
    state: Mutex<AccountState>,
    backend: Backend,
    meters: metrics::AccountMeters,
    /// The cost table in force (Zoho's `__apis`, or the built-in one).
    costs: ArcSwap<CostsInForce>,
}

#[derive(Default)]
struct AccountState {
    ledger: Ledger,
    backoff: Backoff,
    /// Zoho's last `X-API-CREDITS-REMAINING` and when it came (Unix ms).
    zoho_remaining: Option<(u64, u64)>,
    /// Fleet mode: the fleet-wide use last reported by Redis.
    shared_used: Option<u64>,
    /// Start times (Unix ms) of recent bulk-read result downloads.
    downloads: VecDeque<u64>,
    dirty: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The credits runtime: every account's ledger and back-off, the client ledgers, the settings.
pub struct Credits {
    settings: ArcSwap<CreditSettings>,
    accounts: Vec<Arc<AccountCredits>>,
    clients: Mutex<FastMap<String, Ledger>>,
    /// Where the client ledgers are persisted (beside the first file-backed account's token).
    clients_file: Option<PathBuf>,
    clients_dirty: Mutex<bool>,
    /// Wakes the writer task.
    dirty: Notify,
    metrics: CreditMetrics,
    clock: Clock,
}

/// Unix ms now (tests pass their own).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

impl std::fmt::Debug for Credits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credits")
            .field("accounts", &self.accounts.len())
            .finish_non_exhaustive()
    }
}

/// A Redis store for each fleet-mode account, by name (from the refreshers).
pub type SharedStores = HashMap<String, Arc<RedisClient>>;

impl Credits {
    /// The runtime of `config`'s accounts. `redis`: the fleet stores of Redis-backed accounts.
    pub fn new(
        config: &Config,
        settings: CreditSettings,
        redis: &SharedStores,
        metrics: CreditMetrics,
    ) -> Credits {
        Credits::with_clock(
            config,
            settings,
            redis,
            metrics,
            Arc::new(crate::util::clock::now_unix_ms),
        )
    }

    /// As [`Credits::new`], with a clock (Unix ms) for tests.
    pub fn with_clock(
        config: &Config,
        settings: CreditSettings,
        redis: &SharedStores,
        metrics: CreditMetrics,
        clock: Clock,
    ) -> Credits {
        let mut clients_file = None;
        let accounts = config
            .accounts
            .iter()
            .map(|a| {
                let backend = match (&a.token.store, redis.get(&a.name)) {
                    (StoreConfig::Redis { .. }, Some(store)) => Backend::Redis(
                        redis::RedisLedger::new(store.clone(), &a.client_id, &a.name),
                    ),
                    (StoreConfig::File(path), _) => {
                        clients_file.get_or_insert_with(|| persist::clients_path(path));
                        Backend::File(persist::account_path(path))
                    }
                    _ => Backend::Memory,
                };
                Arc::new(AccountCredits {
                    name: a.name.as_str().into(),
                    state: Mutex::new(AccountState::default()),
                    backend,
                    meters: metrics.account_meters(&a.name),
                    costs: ArcSwap::default(),
                })
            })
            .collect();
        Credits {
            settings: ArcSwap::from_pointee(settings),
            accounts,
            clients: Mutex::new(FastMap::default()),
            clients_file,
            clients_dirty: Mutex::new(false),
            dirty: Notify::new(),
            metrics,
            clock,
        }
    }

    /// Replaces budgets and cost overrides (reload). Ledgers are kept.
    pub fn apply(&self, settings: CreditSettings) {
        self.settings.store(Arc::new(settings));
    }

    fn account(&self, name: &str) -> Option<&Arc<AccountCredits>> {
        self.accounts.iter().find(|a| &*a.name == name)
    }

    /// Prices a request for `account`: its `credits.costs`, then Zoho's table where it is in
    /// force, then the built-in one.
    pub fn price(
        &self,
        account: &str,
        method: &str,
        path: &str,
        query: Option<&str>,
        body: BodyView<'_>,
    ) -> Cost {
        let settings = self.settings.load();
        let empty = CostOverrides::default();
        let costs = settings.accounts.get(account).map_or(&empty, |a| &a.costs);
        let zoho = self.account(account).map(|a| a.costs.load());
        let table = zoho.as_ref().and_then(|z| z.table());
        cost::cost_from(method, path, query, body, costs, table)
    }

    /// The gate before forwarding: refuses while Zoho's back-off runs or when the request's cost
    /// does not fit a budget (account, then client); otherwise charges it to the ledgers and,
    /// for a bulk-read result download over 10 a minute, waits for its turn.
    pub async fn admit(
        self: &Arc<Self>,
        account: &str,
        client: Option<&str>,
        cost: Cost,
    ) -> Result<Charge, Refusal> {
        let Some(acc) = self.account(account).cloned() else {
            return Err(Refusal::UnknownAccount {
                name: account.to_string(),
            });
        };
        let client_name = client.unwrap_or(ANONYMOUS);
        let settings = self.settings.load_full();
        let account_limit = settings.accounts.get(account).and_then(|a| a.daily_limit);
        let client_limit = client.and_then(|c| settings.clients.get(c).copied());
        let now = (self.clock)();

        // The account's credits used in the window, after this request.
        let used = match &acc.backend {
            Backend::Redis(shared) => {
                if let Some(wait) = lock(&acc.state).backoff.remaining(now) {
                    return Err(self.throttled(account, wait));
                }
                // Boxed: Redis's futures are large, and inline they would be copied with every
                // request's future in local mode too. A Redis round trip dwarfs the allocation.
                match Box::pin(shared.admit(now, cost.credits, account_limit, client, client_limit))
                    .await
                {
                    Ok(redis::Admission::Admitted {
                        account_used,
                        client_used,
                    }) => {
                        let mut state = lock(&acc.state);
                        state.shared_used = Some(account_used);
                        state.ledger.add(now, cost.credits);
                        drop(state);
                        if let Some(c) = client {
                            self.client_ledger_add(c, now, cost.credits);
                        }
                        if let Some(used) = client_used {
                            self.metrics.client_used_in_window(client_name, used);
                        }
                        account_used
                    }
                    Ok(redis::Admission::Throttled { remaining_ms }) => {
                        lock(&acc.state).backoff.adopt(now + remaining_ms);
                        self.metrics.refused(account, "zoho_throttled");
                        return Err(Refusal::ZohoThrottled {
                            account: account.to_string(),
                            retry_after: retry_after_secs(remaining_ms),
                        });
                    }
                    Ok(redis::Admission::Refused {
                        client: is_client,
                        used,
                        retry_after_ms,
                    }) => {
                        let (budget, limit) = if is_client {
                            (format!("client {client_name}"), client_limit.unwrap_or(0))
                        } else {
                            lock(&acc.state).shared_used = Some(used);
                            (format!("account {account}"), account_limit.unwrap_or(0))
                        };
                        self.metrics.refused(account, "credits_exhausted");
                        return Err(Refusal::CreditsExhausted {
                            budget,
                            limit,
                            used,
                            cost: cost.credits,
                            retry_after: retry_after_secs(retry_after_ms),
                        });
                    }
                    Ok(redis::Admission::Skipped) => {
                        self.admit_local(&acc, client, cost, now, account_limit, client_limit)?
                    }
                    Err(e) => {
                        // Counting must not stop traffic: fall back to this replica's own view
                        // (for a few seconds, then Redis is tried again).
                        warn!(account = %account, "credits: the fleet ledger is unavailable, counting locally: {e}");
                        self.admit_local(&acc, client, cost, now, account_limit, client_limit)?
                    }
                }
            }
            Backend::Memory | Backend::File(_) => {
                self.admit_local(&acc, client, cost, now, account_limit, client_limit)?
            }
        };
        match client {
            None => {
                acc.meters.anonymous_used.inc_by(cost.credits);
            }
            Some(c) => self.metrics.used(account, c, cost.credits),
        };
        self.publish_budgets(&acc, client, &settings, now, used);
        if !matches!(acc.backend, Backend::Memory) {
            self.dirty.notify_one();
        }

        if cost.is_bulk_download() {
            let wait = {
                let mut state = lock(&acc.state);
                download_wait(&mut state.downloads, now)
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        Ok(Charge {
            cost,
            account: acc,
            client: client.map(Arc::from),
            now_ms: now,
            settled: false,
            credits: self.clone(),
        })
    }

    /// The refusal while Zoho's back-off for `account` runs.
    fn throttled(&self, account: &str, wait: std::time::Duration) -> Refusal {
        self.metrics.refused(account, "zoho_throttled");
        Refusal::ZohoThrottled {
            account: account.to_string(),
            retry_after: retry_after_secs(wait.as_millis() as u64),
        }
    }

    /// Checks Zoho's back-off and charges this replica's own ledgers; returns the account's
    /// credits used in the window. The account's lock is taken once: anonymous requests touch
    /// only the account's ledger.
    fn admit_local(
        &self,
        acc: &AccountCredits,
        client: Option<&str>,
        cost: Cost,
        now: u64,
        account_limit: Option<u64>,
        client_limit: Option<u64>,
    ) -> Result<u64, Refusal> {
        let mut state = lock(&acc.state);
        if let Some(wait) = state.backoff.remaining(now) {
            return Err(self.throttled(&acc.name, wait));
        }
        if let Some(limit) = account_limit {
            if let Err(wait) = state.ledger.check(now, cost.credits, limit) {
                let used = state.ledger.used(now);
                self.metrics.refused(&acc.name, "credits_exhausted");
                return Err(Refusal::CreditsExhausted {
                    budget: format!("account {}", acc.name),
                    limit,
                    used,
                    cost: cost.credits,
                    retry_after: retry_after_secs(wait),
                });
            }
        }
        if let Some(c) = client {
            let mut clients = lock(&self.clients);
            let ledger = match clients.get_mut(c) {
                Some(ledger) => ledger,
                None => clients.entry(c.to_string()).or_default(),
            };
            if let Some(limit) = client_limit {
                if let Err(wait) = ledger.check(now, cost.credits, limit) {
                    let used = ledger.used(now);
                    self.metrics.refused(&acc.name, "credits_exhausted");
                    return Err(Refusal::CreditsExhausted {
                        budget: format!("client {c}"),
                        limit,
                        used,
                        cost: cost.credits,
                        retry_after: retry_after_secs(wait),
                    });
                }
            }
            ledger.add(now, cost.credits);
            *lock(&self.clients_dirty) = true;
        }
        state.ledger.add(now, cost.credits);
        state.dirty = true;
        Ok(state.shared_used.unwrap_or_else(|| state.ledger.used(now)))
    }

    fn client_ledger_add(&self, client: &str, now: u64, credits: u64) {
        lock(&self.clients)
            .entry(client.to_string())
            .or_default()
            .add(now, credits);
    }

    fn publish_budgets(
        &self,
        acc: &AccountCredits,
        client: Option<&str>,
        settings: &CreditSettings,
        now: u64,
        used: u64,
    ) {
        acc.meters
            .window
            .set(i64::try_from(used).unwrap_or(i64::MAX));
        if let Some(limit) = settings
            .accounts
            .get(&*acc.name)
            .and_then(|a| a.daily_limit)
        {
            let left = limit.saturating_sub(used);
            acc.meters
                .budget_left
                .get_or_init(|| self.metrics.budget_gauge(&format!("account {}", acc.name)))
                .set(i64::try_from(left).unwrap_or(i64::MAX));
        }
        if let Some(c) = client {
            if let Some(limit) = settings.clients.get(c) {
                let used = lock(&self.clients).get_mut(c).map_or(0, |l| l.used(now));
                self.metrics
                    .budget_left(&format!("client {c}"), limit.saturating_sub(used));
            }
        }
    }
}

#[cfg(test)]
mod tests;
