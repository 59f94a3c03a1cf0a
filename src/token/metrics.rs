//! The token service's metrics, registered by the service itself in the registry the wiring hands
//! it: token requests by result, and per account the seconds left on the token, the mint budget
//! left and readiness (set from the token handles right before `/metrics` renders).
//!
//! Labels are account names (from the config) and static result labels; never a token.

use crate::metrics::AccountLabel;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountOnly {
    account: AccountLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    account: AccountLabel,
    result: &'static str,
}

/// The token metrics (cheap to clone: the families are shared).
#[derive(Clone, Debug, Default)]
pub struct TokenMetrics {
    refreshes: Family<RefreshLabels, Counter>,
    expiry: Family<AccountOnly, Gauge<f64, AtomicU64>>,
    budget_left: Family<AccountOnly, Gauge>,
    ready: Family<AccountOnly, Gauge>,
}

impl TokenMetrics {
    /// Registers the token metrics in `registry`.
    pub fn register(registry: &mut Registry) -> TokenMetrics {
        let m = TokenMetrics::default();
        registry.register(
            "token_refreshes",
            "Token requests to Zoho Accounts by result",
            m.refreshes.clone(),
        );
        registry.register(
            "token_expiry_seconds",
            "Seconds until the current access token expires",
            m.expiry.clone(),
        );
        registry.register(
            "mint_budget_left",
            "Token requests left in the current 10-minute window",
            m.budget_left.clone(),
        );
        registry.register(
            "token_ready",
            "1 when the account has a usable token with margin left",
            m.ready.clone(),
        );
        m
    }

    /// Counts a token request outcome (`ok` or an error label).
    pub fn token_refresh(&self, account: &str, result: &'static str) {
        self.refreshes
            .get_or_create(&RefreshLabels {
                account: AccountLabel(account.into()),
                result,
            })
            .inc();
    }

    /// Sets the per-account token gauges (called right before rendering).
    pub fn set_token_gauges(&self, account: &str, expiry_secs: f64, budget_left: u32, ready: bool) {
        let labels = AccountOnly {
            account: AccountLabel(account.into()),
        };
        self.expiry.get_or_create(&labels).set(expiry_secs);
        self.budget_left
            .get_or_create(&labels)
            .set(i64::from(budget_left));
        self.ready.get_or_create(&labels).set(i64::from(ready));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_metrics_render_with_their_labels() {
        let mut registry = Registry::with_prefix("zoho_proxy");
        let m = TokenMetrics::register(&mut registry);
        m.token_refresh("default", "ok");
        m.set_token_gauges("default", 12.5, 7, true);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
        for needle in [
            r#"zoho_proxy_token_refreshes_total{account="default",result="ok"} 1"#,
            r#"zoho_proxy_mint_budget_left{account="default"} 7"#,
            r#"zoho_proxy_token_expiry_seconds{account="default"} 12.5"#,
            r#"zoho_proxy_token_ready{account="default"} 1"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
