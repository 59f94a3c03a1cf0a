//! Shared state: the live-reloadable snapshot (policies, limits, routing) behind one `ArcSwap`,
//! the per-account token handles and upstream clients, and the metrics.
//!
//! A request loads the snapshot once and uses it to the end, so a reload never changes the rules
//! under a request in flight.

use crate::config::{AccountConfig, ClientType, Config, Limits, ListenAddr, Routing};
use crate::metrics::{AccountLabel, AccountMeter, Metrics};
use crate::policy::Policy;
use crate::token::TokenHandle;
use crate::upstream::slots::Slots;
use crate::upstream::Upstream;
use arc_swap::ArcSwap;
use std::sync::Arc;
use tokio::sync::Semaphore;

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
    /// Its metadata cache (kept across reloads).
    pub cache: Arc<crate::cache::AccountCache>,
}

/// Everything a reload may change, swapped as one.
pub struct Runtime {
    /// Accounts in config order (the first serves the main listener).
    pub accounts: Vec<AccountRuntime>,
    /// Limits.
    pub limits: Limits,
    /// Routing mode.
    pub routing: Routing,
    /// Zoho's concurrency limits: the upstream and heavy-group slots (kept across reloads that
    /// leave their limits alone).
    pub slots: Slots,
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
    /// Credit ledgers, budgets and Zoho's back-off (kept across reloads).
    pub credits: Arc<crate::credits::Credits>,
    /// The metadata caches of every account (kept across reloads).
    pub caches: Arc<crate::cache::Caches>,
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
    /// The token service's metrics (its gauges are set from the handles before `/metrics`).
    pub token_metrics: crate::token::TokenMetrics,
}

impl AppState {
    /// Builds a runtime snapshot from a config, reusing token handles and upstream clients. No
    /// side effects: the callers apply the config's credit settings to `credits` and its cache
    /// settings to `caches`.
    pub fn build_runtime(
        config: Arc<Config>,
        tokens: &[Arc<TokenHandle>],
        clients: &[Upstream],
        previous: Option<&Runtime>,
        workers: usize,
        credits: Arc<crate::credits::Credits>,
        caches: Arc<crate::cache::Caches>,
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
                    cache: caches.account(&a.name),
                },
            )
            .collect();
        let slots = Slots::new(&config.limits, workers, previous.map(|p| &p.slots));
        Runtime {
            accounts,
            limits: config.limits.clone(),
            routing: config.routing,
            slots,
            workers,
            access: crate::access::Gate::new(&config.access),
            unrouted: AccountMeter::new(AccountLabel(UNROUTED_LABEL.into())),
            unrouted_clients: client_meters(&config, UNROUTED_LABEL),
            config,
            credits,
            caches,
        }
    }
}
