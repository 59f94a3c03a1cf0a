//! Shared state: the live-reloadable snapshot (policies, limits, routing) behind one `ArcSwap`,
//! the per-account token handles and upstream clients, and the metrics.
//!
//! A request loads the snapshot once and uses it to the end, so a reload never changes the rules
//! under a request in flight.

use crate::config::{AccountConfig, ClientType, Config, Limits, ListenAddr, Routing};
use crate::metrics::{AccountLabel, AccountMeter, Metrics};
use crate::policy::Policy;
use crate::proxy::upstream::Upstream;
use crate::token::TokenHandle;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One account as requests see it.
pub struct AccountRuntime {
    /// Position in the config's `accounts` (0 in the single-account form).
    pub index: usize,
    /// Name.
    pub name: Arc<str>,
    /// Metrics label and cached series of anonymous requests.
    pub label: AccountMeter,
    /// The same for each configured client, in `clients:` order.
    pub client_meters: Vec<AccountMeter>,
    /// Self or server-based.
    pub client_type: ClientType,
    /// Allowlist and classifier.
    pub policy: Arc<Policy>,
    /// Current token.
    pub token: Arc<TokenHandle>,
    /// Pooled clients to the API host (one per worker).
    pub upstream: Upstream,
}

/// Everything a reload may change, swapped as one.
pub struct Runtime {
    /// Accounts in config order (the first serves the main listener).
    pub accounts: Vec<AccountRuntime>,
    /// Limits.
    pub limits: Limits,
    /// Routing mode.
    pub routing: Routing,
    /// Upstream slots (`None` = unlimited).
    pub upstream_slots: Option<Arc<UpstreamSlots>>,
    /// Data-plane workers running (fixed at start).
    pub workers: usize,
    /// Who may use the proxy.
    pub access: crate::access::Gate,
    /// Metrics of requests refused before an account was picked (account label `(none)`, never
    /// a valid account name), anonymous ones. Built once per snapshot, not per refusal.
    pub unrouted: AccountMeter,
    /// The same per configured client, in `clients:` order.
    pub unrouted_clients: Vec<AccountMeter>,
    /// The config this snapshot came from.
    pub config: Arc<Config>,
    /// Heavy-group slots (`limits.heavy_concurrency`; `None` = unlimited).
    pub heavy_slots: Option<Arc<Semaphore>>,
    /// Credit ledgers, budgets and Zoho's back-off (kept across reloads).
    pub credits: Arc<crate::credits::Credits>,
}

impl AccountRuntime {
    /// The metrics of requests from `client` (`None`: anonymous).
    pub fn meter(&self, client: Option<usize>) -> &AccountMeter {
        meter_of(&self.label, &self.client_meters, client)
    }
}

fn meter_of<'m>(
    anonymous: &'m AccountMeter,
    clients: &'m [AccountMeter],
    client: Option<usize>,
) -> &'m AccountMeter {
    client.and_then(|i| clients.get(i)).unwrap_or(anonymous)
}

/// One meter per configured client for the account label `account`, in `clients:` order.
fn client_meters(config: &Config, account: &str) -> Vec<AccountMeter> {
    config
        .access
        .clients
        .iter()
        .map(|c| {
            AccountMeter::for_client(
                AccountLabel(account.into()),
                AccountLabel(c.name.as_str().into()),
            )
        })
        .collect()
}

/// Metrics label of requests refused before an account was picked (never a valid account name).
pub const UNROUTED_LABEL: &str = "(none)";

impl Runtime {
    /// The metrics of requests from `client` refused before an account was picked.
    pub fn unrouted_meter(&self, client: Option<usize>) -> &AccountMeter {
        meter_of(&self.unrouted, &self.unrouted_clients, client)
    }

    /// The account named `name`.
    pub fn account(&self, name: &str) -> Option<&AccountRuntime> {
        self.accounts.iter().find(|a| &*a.name == name)
    }

    /// Known account names, comma-separated.
    pub fn account_names(&self) -> String {
        self.accounts
            .iter()
            .map(|a| &*a.name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `limits.upstream_concurrency`, shared out among the data-plane workers.
///
/// The shares add up to the limit, so the cap holds exactly. A request takes a slot from its own
/// worker's share, or borrows a free one from another share; it queues only when every slot is
/// taken, and then on its own worker's share, so it is woken by a request finishing on its own
/// thread. With one queue for all workers, most hand-overs woke a request on another thread (at
/// 256 connections and 25 slots that cost a third of the throughput). Connections are dealt to
/// workers in turn, which keeps the queues evenly fed. With fewer slots than workers, one shared
/// pool is used.
#[derive(Debug)]
pub struct UpstreamSlots {
    shares: Vec<Arc<Semaphore>>,
}

impl UpstreamSlots {
    /// `limit` slots (at least one) for `workers` workers.
    pub fn new(limit: usize, workers: usize) -> UpstreamSlots {
        let limit = limit.max(1);
        let parts = if workers > 1 && limit >= workers {
            workers
        } else {
            1
        };
        let shares = (0..parts)
            .map(|i| {
                Arc::new(Semaphore::new(
                    limit / parts + usize::from(i < limit % parts),
                ))
            })
            .collect();
        UpstreamSlots { shares }
    }

    fn own(&self) -> usize {
        crate::workers::current().unwrap_or(0) % self.shares.len()
    }

    /// A free slot, if there is one: from the calling worker's share, else from another share.
    /// Never ahead of requests already queued on a share.
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        let own = self.own();
        let n = self.shares.len();
        (0..n)
            .map(|k| (own + k) % n)
            .find_map(|i| self.shares[i].clone().try_acquire_owned().ok())
    }

    /// Waits for a slot of the calling worker's share (after [`try_acquire`](Self::try_acquire)
    /// found none).
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.shares[self.own()].clone().acquire_owned().await.ok()
    }
}

/// Which listener a connection came in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenerRole {
    /// The main listener (first account, or header routing).
    Main,
    /// An account's own listener.
    Account(Arc<str>),
}

/// State shared by every connection.
#[derive(Clone)]
pub struct AppState {
    /// The live snapshot.
    pub runtime: Arc<ArcSwap<Runtime>>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Where the admin listener is (for messages that point people at it).
    pub admin_listen: Arc<ListenAddr>,
    /// Client connection slots (`limits.max_connections`).
    pub connection_slots: Arc<Semaphore>,
    /// Scopes the traffic needed and the recent denied or reported requests (for the console).
    pub observed: Arc<crate::observed::Observations>,
}

impl AppState {
    /// Builds a runtime snapshot from a config, reusing token handles and upstream clients.
    pub fn build_runtime(
        config: Arc<Config>,
        tokens: &[Arc<TokenHandle>],
        clients: &[Upstream],
        previous: Option<&Runtime>,
        workers: usize,
        credits: Arc<crate::credits::Credits>,
    ) -> Runtime {
        let accounts = config
            .accounts
            .iter()
            .zip(tokens.iter().zip(clients.iter()))
            .enumerate()
            .map(
                |(index, (a, (token, upstream))): (usize, (&AccountConfig, _))| AccountRuntime {
                    index,
                    name: a.name.as_str().into(),
                    label: AccountMeter::new(AccountLabel(a.name.as_str().into())),
                    client_meters: client_meters(&config, &a.name),
                    client_type: a.client_type,
                    policy: a.policy.clone(),
                    token: token.clone(),
                    upstream: upstream.clone(),
                },
            )
            .collect();
        let limit = config.limits.upstream_concurrency;
        let upstream_slots = match previous {
            Some(p) if p.limits.upstream_concurrency == limit => p.upstream_slots.clone(),
            _ => (limit > 0).then(|| Arc::new(UpstreamSlots::new(limit as usize, workers))),
        };
        let heavy = config.limits.heavy_concurrency;
        let heavy_slots = match previous {
            Some(p) if p.limits.heavy_concurrency == heavy => p.heavy_slots.clone(),
            _ => (heavy > 0).then(|| Arc::new(Semaphore::new(heavy as usize))),
        };
        credits.apply(crate::credits::CreditSettings::from_config(
            &config,
            &crate::credits::client_budgets(&config),
        ));
        Runtime {
            accounts,
            limits: config.limits.clone(),
            routing: config.routing,
            upstream_slots,
            workers,
            access: crate::access::Gate::new(&config.access),
            unrouted: AccountMeter::new(AccountLabel(UNROUTED_LABEL.into())),
            unrouted_clients: client_meters(&config, UNROUTED_LABEL),
            config,
            heavy_slots,
            credits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_slots_split_the_limit_exactly_and_lend_free_slots() {
        for (limit, workers, shares) in [
            (25, 2, vec![13, 12]),
            (5, 4, vec![2, 1, 1, 1]),
            (3, 4, vec![3]),
            (1, 1, vec![1]),
            (10, 1, vec![10]),
        ] {
            let slots = UpstreamSlots::new(limit, workers);
            let got: Vec<usize> = slots.shares.iter().map(|s| s.available_permits()).collect();
            assert_eq!(got, shares, "limit {limit}, {workers} workers");
            let available = |s: &UpstreamSlots| -> usize {
                s.shares.iter().map(|p| p.available_permits()).sum()
            };
            assert_eq!(available(&slots), limit);
            // Off the data plane, requests use share 0 and borrow from the others: exactly
            // `limit` slots are handed out, then none.
            let held: Vec<_> = (0..limit).map_while(|_| slots.try_acquire()).collect();
            assert_eq!(held.len(), limit, "every slot can be taken");
            assert!(slots.try_acquire().is_none(), "never more than the limit");
            drop(held);
            assert_eq!(available(&slots), limit, "slots return to their shares");
        }
    }

    #[tokio::test]
    async fn a_queued_request_gets_the_next_slot_of_its_share() {
        let slots = Arc::new(UpstreamSlots::new(1, 1));
        let first = slots.try_acquire().expect("free slot");
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire().await.is_some() })
        };
        tokio::task::yield_now().await;
        assert!(
            slots.try_acquire().is_none(),
            "a new request does not jump the queue"
        );
        drop(first);
        assert!(
            waiter.await.expect("joined"),
            "the queued request got the slot"
        );
    }
}
