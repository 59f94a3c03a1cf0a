//! Prometheus metrics: one registry, counters and gauges updated by the proxy, the refresher,
//! the server and reload, rendered in text format by the admin listener. A service with metrics
//! of its own registers them in this registry itself ([`Metrics::registry_mut`]); this module
//! names no service.
//!
//! Labels are static strings or account names; never a path, token or secret.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::fmt::Write;
use std::sync::{Arc, OnceLock};

/// An account name as a label value (cheap to clone).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct AccountLabel(pub Arc<str>);

impl EncodeLabelValue for AccountLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

/// The request decisions counted, in the order of [`AccountMeter`]'s cells.
const DECISIONS: [&str; 5] = ["allowed", "denied", "invalid", "reported", "refused"];
/// Method labels × decisions × status classes: one cell each.
const METER_CELLS: usize = 8 * DECISIONS.len() * 5;

/// One account's (and one client's) request metrics with the label lookups done once: each series a request
/// touches is looked up in its family (hashing the labels under a lock) on first use only, then
/// reached through a cell. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AccountMeter {
    label: AccountLabel,
    client: AccountLabel,
    cells: Arc<MeterCells>,
}

#[derive(Debug)]
struct MeterCells {
    latency: OnceLock<Histogram>,
    requests: [OnceLock<Counter>; METER_CELLS],
}

impl AccountMeter {
    /// A meter for anonymous requests to the account named by `label`.
    pub fn new(label: AccountLabel) -> AccountMeter {
        AccountMeter::for_client(label, AccountLabel(crate::config::ANONYMOUS.into()))
    }

    /// A meter for the requests of client `client` to the account named by `label`.
    pub fn for_client(label: AccountLabel, client: AccountLabel) -> AccountMeter {
        AccountMeter {
            label,
            client,
            cells: Arc::new(MeterCells {
                latency: OnceLock::new(),
                requests: std::array::from_fn(|_| OnceLock::new()),
            }),
        }
    }

    /// The account label.
    pub fn label(&self) -> &AccountLabel {
        &self.label
    }

    /// The client label (`(anonymous)` without `clients:`).
    pub fn client(&self) -> &AccountLabel {
        &self.client
    }

    /// The identified client's name, `None` for anonymous requests.
    pub fn identified_client(&self) -> Option<&str> {
        Some(&*self.client.0).filter(|c| *c != crate::config::ANONYMOUS)
    }
}

fn method_index(label: &str) -> usize {
    match label {
        "GET" => 0,
        "HEAD" => 1,
        "POST" => 2,
        "PUT" => 3,
        "PATCH" => 4,
        "DELETE" => 5,
        "OPTIONS" => 6,
        _ => 7,
    }
}

fn status_index(class: &str) -> usize {
    match class {
        "1xx" => 0,
        "2xx" => 1,
        "3xx" => 2,
        "4xx" => 3,
        _ => 4,
    }
}

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Account.
    pub account: AccountLabel,
    /// Client identity (`(anonymous)` without `clients:`).
    pub client: AccountLabel,
    /// HTTP method (or OTHER).
    pub method: &'static str,
    /// allowed, denied, invalid, reported, refused.
    pub decision: &'static str,
    /// 2xx..5xx.
    pub status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AccountOnly {
    account: AccountLabel,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultOnly {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerOnly {
    listener: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    listener: &'static str,
    rule: &'static str,
}

/// All metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    upstream_latency: Family<AccountOnly, Histogram>,
    reloads: Family<ResultOnly, Counter>,
    in_flight: Gauge,
    connections: Family<ListenerOnly, Gauge>,
    shed: Counter,
    refusals: Family<RefusalLabels, Counter>,
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
        let reloads = Family::<ResultOnly, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            reloads.clone(),
        );
        // Both series exist from the start, so `increase()` and alerts see the first failure.
        for result in ["ok", "error"] {
            let _ = reloads.get_or_create(&ResultOnly { result });
        }
        let in_flight = Gauge::default();
        registry.register(
            "requests_in_flight",
            "Requests being handled",
            in_flight.clone(),
        );
        let connections = Family::<ListenerOnly, Gauge>::default();
        registry.register(
            "open_connections",
            "Open client connections by listener (proxy, account, admin); max_connections caps proxy + account",
            connections.clone(),
        );
        let shed = Counter::default();
        registry.register(
            "connections_shed",
            "Client connections closed because max_connections was reached",
            shed.clone(),
        );
        let refusals = Family::<RefusalLabels, Counter>::default();
        registry.register(
            "requester_refusals",
            "Requests refused before any policy or token work, by listener (proxy, account, admin) and rule (host, browser, request_header, client, content_type; peer: a Unix-socket connection outside unix.allowed_uids, closed unread)",
            refusals.clone(),
        );
        Metrics {
            registry,
            requests,
            upstream_latency,
            reloads,
            in_flight,
            connections,
            shed,
            refusals,
        }
    }

    /// Counts a finished request.
    pub fn request(
        &self,
        account: &AccountMeter,
        method: &http::Method,
        decision: &'static str,
        status: http::StatusCode,
    ) {
        let (method, status_class) = (method_label(method), status_class(status));
        let labels = || RequestLabels {
            account: account.label.clone(),
            client: account.client.clone(),
            method,
            decision,
            status_class,
        };
        let cell = DECISIONS
            .iter()
            .position(|d| *d == decision)
            .map(|d| (method_index(method) * DECISIONS.len() + d) * 5 + status_index(status_class));
        match cell.and_then(|i| account.cells.requests.get(i)) {
            Some(cell) => cell
                .get_or_init(|| self.requests.get_or_create(&labels()).clone())
                .inc(),
            None => self.requests.get_or_create(&labels()).inc(),
        };
    }

    /// Records an upstream round trip.
    pub fn upstream_latency(&self, account: &AccountMeter, seconds: f64) {
        account
            .cells
            .latency
            .get_or_init(|| {
                self.upstream_latency
                    .get_or_create(&AccountOnly {
                        account: account.label.clone(),
                    })
                    .clone()
            })
            .observe(seconds);
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

    /// Open connection gauge of one listener kind (`proxy`, `account` or `admin`).
    pub fn connections(&self, listener: &'static str) -> Gauge {
        self.connections
            .get_or_create(&ListenerOnly { listener })
            .clone()
    }

    /// Counts a request the requester checks refused.
    pub fn refused(&self, listener: &'static str, rule: &'static str) {
        self.refusals
            .get_or_create(&RefusalLabels { listener, rule })
            .inc();
    }

    /// Counts a shed connection.
    pub fn shed(&self) {
        self.shed.inc();
    }

    /// The registry, for a service to register its own metrics in before serving starts
    /// (the credit metrics: `credits/metrics.rs`).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
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
        let a = AccountMeter::new(AccountLabel("default".into()));
        m.request(&a, &http::Method::GET, "allowed", http::StatusCode::OK);
        let text = m.render();
        let needle = r#"zoho_proxy_requests_total{account="default",client="(anonymous)",method="GET",decision="allowed",status_class="2xx"} 1"#;
        assert!(text.contains(needle), "missing {needle} in\n{text}");
    }

    /// Each combination of labels counts in its own series, through the cells or without them,
    /// and a second meter for the same account (after a reload) adds to the same series.
    #[test]
    fn meter_cells_count_each_series_once() {
        let m = Metrics::new();
        let a = AccountMeter::new(AccountLabel("crm".into()));
        for _ in 0..3 {
            m.request(&a, &http::Method::GET, "allowed", http::StatusCode::OK);
        }
        m.request(
            &a,
            &http::Method::POST,
            "denied",
            http::StatusCode::FORBIDDEN,
        );
        m.request(
            &a,
            &http::Method::GET,
            "allowed",
            http::StatusCode::BAD_GATEWAY,
        );
        m.request(&a, &http::Method::GET, "unlisted", http::StatusCode::OK);
        let again = AccountMeter::new(AccountLabel("crm".into()));
        m.request(&again, &http::Method::GET, "allowed", http::StatusCode::OK);
        m.upstream_latency(&a, 0.5);
        m.upstream_latency(&again, 0.25);
        let text = m.render();
        for needle in [
            r#"zoho_proxy_requests_total{account="crm",client="(anonymous)",method="GET",decision="allowed",status_class="2xx"} 4"#,
            r#"zoho_proxy_requests_total{account="crm",client="(anonymous)",method="POST",decision="denied",status_class="4xx"} 1"#,
            r#"zoho_proxy_requests_total{account="crm",client="(anonymous)",method="GET",decision="allowed",status_class="5xx"} 1"#,
            r#"zoho_proxy_requests_total{account="crm",client="(anonymous)",method="GET",decision="unlisted",status_class="2xx"} 1"#,
            r#"zoho_proxy_upstream_latency_seconds_count{account="crm"} 2"#,
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
