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
use tokio::sync::Semaphore;

/// One account as requests see it.
pub struct AccountRuntime {
    /// Name.
    pub name: Arc<str>,
    /// Metrics label and cached series.
    pub label: AccountMeter,
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
    pub upstream_slots: Option<Arc<Semaphore>>,
    /// The config this snapshot came from.
    pub config: Arc<Config>,
}

impl Runtime {
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
}

impl AppState {
    /// Builds a runtime snapshot from a config, reusing token handles and upstream clients.
    pub fn build_runtime(
        config: Arc<Config>,
        tokens: &[Arc<TokenHandle>],
        clients: &[Upstream],
        previous: Option<&Runtime>,
    ) -> Runtime {
        let accounts = config
            .accounts
            .iter()
            .zip(tokens.iter().zip(clients.iter()))
            .map(
                |(a, (token, upstream)): (&AccountConfig, _)| AccountRuntime {
                    name: a.name.as_str().into(),
                    label: AccountMeter::new(AccountLabel(a.name.as_str().into())),
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
            _ => (limit > 0).then(|| Arc::new(Semaphore::new(limit as usize))),
        };
        Runtime {
            accounts,
            limits: config.limits.clone(),
            routing: config.routing,
            upstream_slots,
            config,
        }
    }
}
