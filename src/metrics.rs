//! Prometheus metrics: one registry, counters and gauges updated by the proxy, the refresher,
//! the server and reload, rendered in text format by the admin listener.
//!
//! Labels are static strings or account names; never a path, token or secret.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::fmt::Write;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

/// An account name as a label value (cheap to clone).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct AccountLabel(pub Arc<str>);

impl EncodeLabelValue for AccountLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Account.
    pub account: AccountLabel,
    /// HTTP method (or OTHER).
    pub method: &'static str,
    /// allowed, denied, invalid, reported.
    pub decision: &'static str,
    /// 2xx..5xx.
    pub status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountOnly {
    account: AccountLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefreshLabels {
    account: AccountLabel,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultOnly {
    result: &'static str,
}

/// All metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    upstream_latency: Family<AccountOnly, Histogram>,
    refreshes: Family<RefreshLabels, Counter>,
    expiry: Family<AccountOnly, Gauge<f64, AtomicU64>>,
    budget_left: Family<AccountOnly, Gauge>,
    ready: Family<AccountOnly, Gauge>,
    reloads: Family<ResultOnly, Counter>,
    in_flight: Gauge,
    connections: Gauge,
    shed: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// The static label for a method.
pub fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::HEAD => "HEAD",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// The static label for a status class.
pub fn status_class(status: http::StatusCode) -> &'static str {
    match status.as_u16() {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("zoho_proxy");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "Requests by account, method, policy decision and status class",
            requests.clone(),
        );
        let upstream_latency = Family::<AccountOnly, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
        });
        registry.register(
            "upstream_latency_seconds",
            "Time from forwarding a request to Zoho's response headers",
            upstream_latency.clone(),
        );
        let refreshes = Family::<RefreshLabels, Counter>::default();
        registry.register(
            "token_refreshes",
            "Token requests to Zoho Accounts by result",
            refreshes.clone(),
        );
        let expiry = Family::<AccountOnly, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "token_expiry_seconds",
            "Seconds until the current access token expires",
            expiry.clone(),
        );
        let budget_left = Family::<AccountOnly, Gauge>::default();
        registry.register(
            "mint_budget_left",
            "Token requests left in the current 10-minute window",
            budget_left.clone(),
        );
        let ready = Family::<AccountOnly, Gauge>::default();
        registry.register(
            "token_ready",
            "1 when the account has a usable token with margin left",
            ready.clone(),
        );
        let reloads = Family::<ResultOnly, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            reloads.clone(),
        );
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being handled",
            in_flight.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "open_connections",
            "Open client connections",
            connections.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "connections_shed",
            "Client connections closed because max_connections was reached",
            shed.clone(),
        );
        Metrics {
            registry,
            requests,
            upstream_latency,
            refreshes,
            expiry,
            budget_left,
            ready,
            reloads,
            in_flight,
            connections,
            shed,
        }
    }

    /// Counts a finished request.
    pub fn request(
        &self,
        account: &AccountLabel,
        method: &http::Method,
        decision: &'static str,
        status: http::StatusCode,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                account: account.clone(),
                method: method_label(method),
                decision,
                status_class: status_class(status),
            })
            .inc();
    }

    /// Records an upstream round trip.
    pub fn upstream_latency(&self, account: &AccountLabel, seconds: f64) {
        self.upstream_latency
            .get_or_create(&AccountOnly {
                account: account.clone(),
            })
            .observe(seconds);
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

    /// Counts a config reload (`ok` or `error`).
    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&ResultOnly {
                result: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// In-flight request gauge.
    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    /// Open connection gauge.
    pub fn connections(&self) -> &Gauge {
        &self.connections
    }

    /// Counts a shed connection.
    pub fn shed(&self) {
        self.shed.inc();
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

    /// Renders the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
            let _ = writeln!(out, "# metrics encoding failed");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_labels() {
        let m = Metrics::new();
        let a = AccountLabel("default".into());
        m.request(&a, &http::Method::GET, "allowed", http::StatusCode::OK);
        m.token_refresh("default", "ok");
        m.set_token_gauges("default", 12.5, 7, true);
        let text = m.render();
        for needle in [
            r#"zoho_proxy_requests_total{account="default",method="GET",decision="allowed",status_class="2xx"} 1"#,
            r#"zoho_proxy_token_refreshes_total{account="default",result="ok"} 1"#,
            r#"zoho_proxy_mint_budget_left{account="default"} 7"#,
            r#"zoho_proxy_token_expiry_seconds{account="default"} 12.5"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
