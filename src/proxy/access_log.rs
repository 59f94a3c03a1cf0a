//! The access log: what one line says about a request (account, client, method, path, decision,
//! scope, status, timings, credits, bytes, cache), and the request counter beside it. The strings are
//! built only while the access log is on, since this runs for every request.

use http::{Method, StatusCode};
use std::time::Instant;
use tracing::info;

/// What the access log line says about a request.
pub(super) struct Access {
    /// Whether the access log is enabled: the strings below are only built when it is.
    pub(super) log: bool,
    pub(super) account: crate::metrics::AccountMeter,
    pub(super) method: Method,
    pub(super) path: String,
    pub(super) decision: &'static str,
    pub(super) scope: String,
    pub(super) started: Instant,
    pub(super) upstream_ms: Option<u64>,
    /// Estimated Zoho API credits of the request (0 when refused before pricing).
    pub(super) credits: u64,
    /// What the metadata cache did (`hit`, `miss`, `refresh`); empty (left out of the line)
    /// for a request it does not concern.
    pub(super) cache: &'static str,
    /// The Books/Inventory organization the request acted on; empty (left out) otherwise.
    pub(super) organization: String,
}

impl Access {
    /// A string for the log line, built only when the access log is on (hot path).
    pub(super) fn text(&self, build: impl FnOnce() -> String) -> String {
        if self.log {
            build()
        } else {
            String::new()
        }
    }

    pub(super) fn log(
        &self,
        status: StatusCode,
        bytes: u64,
        complete: bool,
        metrics: &crate::metrics::Metrics,
    ) {
        metrics.request(&self.account, &self.method, self.decision, status);
        if !crate::logging::access_enabled() {
            return;
        }
        use crate::logging::line::Value;
        let total_ms = self.started.elapsed().as_millis() as u64;
        let fields = [
            ("account", Value::Display(&self.account.label().0)),
            ("client", Value::Display(&self.account.client().0)),
            ("method", Value::Display(self.method.as_str())),
            ("path", Value::Display(&self.path)),
            ("decision", Value::Str(self.decision)),
            ("scope", Value::Display(&self.scope)),
            ("status", Value::U64(u64::from(status.as_u16()))),
            (
                "upstream_ms",
                self.upstream_ms.map_or(Value::None, Value::U64),
            ),
            ("credits", Value::U64(self.credits)),
            ("total_ms", Value::U64(total_ms)),
            ("bytes", Value::U64(bytes)),
            ("complete", Value::Bool(complete)),
            (
                "cache",
                match self.cache {
                    "" => Value::None,
                    c => Value::Display(c),
                },
            ),
            (
                "organization",
                match self.organization.as_str() {
                    "" => Value::None,
                    o => Value::Display(o),
                },
            ),
        ];
        if crate::logging::line::write("access", &fields) {
            return;
        }
        info!(
            target: "access",
            account = %self.account.label().0,
            client = %self.account.client().0,
            method = %self.method,
            path = %self.path,
            decision = self.decision,
            scope = %self.scope,
            status = status.as_u16(),
            upstream_ms = self.upstream_ms,
            credits = self.credits,
            total_ms,
            bytes,
            complete,
            cache = (!self.cache.is_empty()).then_some(tracing::field::display(self.cache)),
            organization = (!self.organization.is_empty())
                .then_some(tracing::field::display(&self.organization)),
        );
    }
}
