//! Shared state: the live-reloadable snapshot (policies, limits, routing) behind one `ArcSwap`,
//! the per-account token handles and upstream clients, and the metrics.
//!
//! A request loads the snapshot once and uses it to the end, so a reload never changes the rules
//! under a request in flight.

use crate::config::{AccountConfig, ClientType, Config, Limits, ListenAddr, Routing};
use crate::metrics::{AccountLabel, AccountMeter, Metrics};
use crate::policy::Policy;
use crate::token::TokenHandle;
use crate::upstream::slots::{AutoLimit, LimitSource, Slots};
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
    /// Books and Inventory request windows per organization (kept across reloads).
    pub quotas: Arc<crate::quota::Quotas>,
    /// What the proxy's own calls learned from Zoho (kept across reloads).
    pub discovered: Arc<Discovered>,
}

/// The services every snapshot shares, kept across reloads: each is handed the new config's
/// settings by whoever builds the snapshot.
#[derive(Clone)]
pub struct Services {
    /// Credit ledgers, budgets and Zoho's back-off.
    pub credits: Arc<crate::credits::Credits>,
    /// The metadata caches.
    pub caches: Arc<crate::cache::Caches>,
    /// Books and Inventory request windows per organization.
    pub quotas: Arc<crate::quota::Quotas>,
}

impl Services {
    /// Hands every service `config`'s settings (start and reload).
    pub fn apply(&self, config: &Config) {
        self.credits
            .apply(crate::credits::CreditSettings::from_config(
                config,
                &crate::credits::client_budgets(config),
            ));
        self.caches.apply(config);
        self.quotas.apply(quota_settings(config));
    }
}

/// The per-organization limits of `config`'s accounts, as the quota service takes them.
pub fn quota_settings(config: &Config) -> crate::quota::QuotaSettings {
    crate::quota::QuotaSettings {
        accounts: config
            .accounts
            .iter()
            .map(|a| (a.name.clone(), a.org_limits.clone()))
            .collect(),
        queue_timeout: config.limits.upstream_queue_timeout,
    }
}

/// What one account's org read found (`/status`, the console).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OrgReport {
    /// The account whose token read it.
    pub account: String,
    /// The edition as Zoho named it (`license_details.paid_type`), when read.
    pub edition: Option<String>,
    /// The limit that edition allows (the fallback when unknown).
    pub limit: u32,
    /// When it was read or failed (Unix ms).
    pub at_unix_ms: u64,
    /// Why the fallback applies, naming the fix; `None` when the edition is known.
    pub problem: Option<String>,
}

/// What the proxy learned from Zoho with its own calls: the org reads behind
/// `limits.upstream_concurrency: auto`. One per process, carried from snapshot to snapshot.
#[derive(Debug, Default)]
pub struct Discovered {
    /// The latest read of each account (config order; empty until the first read ends).
    orgs: ArcSwap<Vec<OrgReport>>,
}

impl Discovered {
    /// Records `report` (replacing the account's previous one).
    pub fn record(&self, report: OrgReport) {
        self.orgs.rcu(|reports| {
            let mut next: Vec<OrgReport> = reports
                .iter()
                .filter(|r| r.account != report.account)
                .cloned()
                .collect();
            next.push(report.clone());
            next
        });
    }

    /// Every account's latest read.
    pub fn orgs(&self) -> Arc<Vec<OrgReport>> {
        self.orgs.load_full()
    }

    /// What `auto` gives: the smallest limit among the accounts read (the slots are shared by
    /// every account), the fallback until one is read.
    pub fn auto_limit(&self) -> AutoLimit {
        let orgs = self.orgs.load();
        orgs.iter()
            .min_by_key(|r| r.limit)
            .map_or_else(AutoLimit::default, |r| AutoLimit {
                limit: r.limit,
                source: match (&r.edition, &r.problem) {
                    (Some(edition), None) => LimitSource::Org(edition.as_str().into()),
                    _ => LimitSource::Fallback,
                },
            })
    }
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
    /// side effects: the callers apply the config's settings to the services
    /// ([`Services::apply`]).
    pub fn build_runtime(
        config: Arc<Config>,
        tokens: &[Arc<TokenHandle>],
        clients: &[Upstream],
        previous: Option<&Runtime>,
        workers: usize,
        services: Services,
    ) -> Runtime {
        let Services {
            credits,
            caches,
            quotas,
        } = services;
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
        let discovered = previous.map_or_else(Arc::default, |p| p.discovered.clone());
        let slots = Slots::new(
            &config.limits,
            &discovered.auto_limit(),
            workers,
            previous.map(|p| &p.slots),
        );
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
            quotas,
            discovered,
        }
    }
}

impl Runtime {
    /// The same snapshot rebuilt (new slots where the limit `auto` gives changed; requests in
    /// flight keep the permits of the old ones). No side effects.
    pub fn rebuilt(&self) -> Runtime {
        let tokens: Vec<_> = self.accounts.iter().map(|a| a.token.clone()).collect();
        let clients: Vec<_> = self.accounts.iter().map(|a| a.upstream.clone()).collect();
        AppState::build_runtime(
            self.config.clone(),
            &tokens,
            &clients,
            Some(self),
            self.workers,
            self.services(),
        )
    }

    /// The services this snapshot shares.
    pub fn services(&self) -> Services {
        Services {
            credits: self.credits.clone(),
            caches: self.caches.clone(),
            quotas: self.quotas.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(account: &str, edition: Option<&str>, limit: u32) -> OrgReport {
        OrgReport {
            account: account.into(),
            edition: edition.map(str::to_owned),
            limit,
            at_unix_ms: 0,
            problem: edition.is_none().then(|| "no scope".to_string()),
        }
    }

    #[test]
    fn auto_takes_the_smallest_read_and_the_fallback_before_any() {
        let d = Discovered::default();
        assert_eq!(d.auto_limit(), AutoLimit::default(), "nothing read yet");
        d.record(report("a", Some("enterprise"), 20));
        assert_eq!(
            d.auto_limit(),
            AutoLimit {
                limit: 20,
                source: LimitSource::Org("enterprise".into())
            }
        );
        d.record(report("b", Some("professional"), 15));
        assert_eq!(
            d.auto_limit().limit,
            15,
            "the slots are shared: the smallest"
        );
        d.record(report("b", None, 10));
        assert_eq!(
            d.auto_limit(),
            AutoLimit::default(),
            "an account without the scope falls back"
        );
        d.record(report("b", Some("ultimate"), 25));
        assert_eq!(d.orgs().len(), 2, "a new read replaces the account's last");
        assert_eq!(d.auto_limit().limit, 20);
    }
}
