//! The credit metrics, registered by the credits service itself in the registry the wiring hands it.
//!
//! Labels are account names, client names and budget names (`account NAME`, `client NAME`):
//! all from the config, never from a request.

use crate::metrics::AccountLabel;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountClient {
    account: AccountLabel,
    client: AccountLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountOnly {
    account: AccountLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClientOnly {
    client: AccountLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetOnly {
    budget: AccountLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refusal {
    account: AccountLabel,
    reason: &'static str,
}

/// One account's cached series.
#[derive(Debug)]
pub(super) struct AccountMeters {
    pub anonymous_used: Counter,
    pub window: Gauge,
    /// Created when the account first has a limit.
    pub budget_left: std::sync::OnceLock<Gauge>,
}

/// Counters and gauges of the credit accounting (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct CreditMetrics {
    used: Family<AccountClient, Counter>,
    refunded: Family<AccountClient, Counter>,
    window: Family<AccountOnly, Gauge>,
    client_window: Family<ClientOnly, Gauge>,
    remaining: Family<AccountOnly, Gauge>,
    budget_left: Family<BudgetOnly, Gauge>,
    throttled: Family<AccountOnly, Counter>,
    refusals: Family<Refusal, Counter>,
}

fn label(text: &str) -> AccountLabel {
    AccountLabel(text.into())
}

impl CreditMetrics {
    /// Registers the credit metrics in `registry` (prefix `zoho_proxy`).
    pub fn register(registry: &mut Registry) -> CreditMetrics {
        let m = CreditMetrics::default();
        registry.register(
            "credits_used",
            "Estimated Zoho API credits charged, by account and client",
            m.used.clone(),
        );
        registry.register(
            "credits_refunded",
            "Estimated credits given back because the request never reached Zoho",
            m.refunded.clone(),
        );
        registry.register(
            "credits_used_in_window",
            "Estimated credits spent in the rolling 24 hours, by account (fleet-wide in fleet mode)",
            m.window.clone(),
        );
        registry.register(
            "client_credits_used_in_window",
            "Estimated credits spent in the rolling 24 hours, by client",
            m.client_window.clone(),
        );
        registry.register(
            "zoho_credits_remaining",
            "Zoho's own X-API-CREDITS-REMAINING when last seen (Zoho sends it once half the credits are used)",
            m.remaining.clone(),
        );
        registry.register(
            "credits_budget_left",
            "Credits left in a budget (`account NAME` or `client NAME`) over the rolling 24 hours",
            m.budget_left.clone(),
        );
        registry.register(
            "zoho_throttled",
            "429 TOO_MANY_REQUESTS answers from Zoho, by account",
            m.throttled.clone(),
        );
        registry.register(
            "credits_refusals",
            "Requests refused before forwarding, by reason (credits_exhausted, zoho_throttled)",
            m.refusals.clone(),
        );
        m
    }

    /// The series a request of `account` touches, looked up once (hot path: no label
    /// allocation per request for anonymous traffic).
    pub(super) fn account_meters(&self, account: &str) -> AccountMeters {
        AccountMeters {
            anonymous_used: self
                .used
                .get_or_create(&AccountClient {
                    account: label(account),
                    client: label(super::ANONYMOUS),
                })
                .clone(),
            window: self
                .window
                .get_or_create(&AccountOnly {
                    account: label(account),
                })
                .clone(),
            budget_left: std::sync::OnceLock::new(),
        }
    }

    pub(super) fn used(&self, account: &str, client: &str, credits: u64) {
        let labels = AccountClient {
            account: label(account),
            client: label(client),
        };
        self.used.get_or_create(&labels).inc_by(credits);
    }

    pub(super) fn refunded(&self, account: &str, client: &str, credits: u64) {
        let labels = AccountClient {
            account: label(account),
            client: label(client),
        };
        self.refunded.get_or_create(&labels).inc_by(credits);
    }

    pub(super) fn budget_gauge(&self, budget: &str) -> Gauge {
        self.budget_left
            .get_or_create(&BudgetOnly {
                budget: label(budget),
            })
            .clone()
    }

    pub(super) fn client_used_in_window(&self, client: &str, used: u64) {
        self.client_window
            .get_or_create(&ClientOnly {
                client: label(client),
            })
            .set(i64::try_from(used).unwrap_or(i64::MAX));
    }

    pub(super) fn zoho_remaining(&self, account: &str, remaining: u64) {
        self.remaining
            .get_or_create(&AccountOnly {
                account: label(account),
            })
            .set(i64::try_from(remaining).unwrap_or(i64::MAX));
    }

    pub(super) fn budget_left(&self, budget: &str, left: u64) {
        self.budget_left
            .get_or_create(&BudgetOnly {
                budget: label(budget),
            })
            .set(i64::try_from(left).unwrap_or(i64::MAX));
    }

    pub(super) fn zoho_throttled(&self, account: &str) {
        self.throttled
            .get_or_create(&AccountOnly {
                account: label(account),
            })
            .inc();
    }

    pub(super) fn refused(&self, account: &str, reason: &'static str) {
        self.refusals
            .get_or_create(&Refusal {
                account: label(account),
                reason,
            })
            .inc();
    }
}
