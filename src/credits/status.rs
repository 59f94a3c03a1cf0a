//! What the credits runtime shows: the `credits` object of `/status` and the cost line of
//! `explain`. Must not change any state.

use super::ledger::retry_after_secs;
use super::{lock, Backend, Credits};
use crate::policy::{cost, BodyView};
use serde_json::{json, Value};

impl Credits {
    /// `/status` part: per account and per client, used in the window, limits, Zoho's last
    /// remaining figure with its time, the active back-off.
    pub fn status_json(&self) -> Value {
        let now = (self.clock)();
        let settings = self.settings.load();
        let accounts: Vec<Value> = self
            .accounts
            .iter()
            .map(|a| {
                let mut state = lock(&a.state);
                let local = state.ledger.used(now);
                let used = state.shared_used.unwrap_or(local);
                let limit = settings.accounts.get(&*a.name).and_then(|s| s.daily_limit);
                json!({
                    "account": &*a.name,
                    "used_in_window": used,
                    "used_by_this_replica": local,
                    "daily_limit": limit,
                    "left": limit.map(|l| l.saturating_sub(used)),
                    "costs": a.costs.load().status_json(),
                    "store": match &a.backend {
                        Backend::Memory => "memory",
                        Backend::File(_) => "file",
                        Backend::Redis(_) => "redis",
                    },
                    "zoho_remaining": state.zoho_remaining.map(|(r, _)| r),
                    "zoho_remaining_unix_ms": state.zoho_remaining.map(|(_, t)| t),
                    "zoho_remaining_age_s": state.zoho_remaining.map(|(_, t)| now.saturating_sub(t) / 1000),
                    "backoff": state.backoff.remaining(now).map(|d| json!({
                        "retry_after_s": retry_after_secs(d.as_millis() as u64),
                        "until_unix_ms": state.backoff.until_ms(),
                        "consecutive_429": state.backoff.consecutive(),
                    })),
                })
            })
            .collect();
        let mut clients: Vec<Value> = Vec::new();
        let mut ledgers = lock(&self.clients);
        let mut names: Vec<String> = ledgers.keys().cloned().collect();
        for name in settings.clients.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names.sort();
        for name in names {
            let used = ledgers.get_mut(&name).map_or(0, |l| l.used(now));
            let limit = settings.clients.get(&name).copied();
            clients.push(json!({
                "client": name,
                "used_in_window": used,
                "credits_per_day": limit,
                "left": limit.map(|l| l.saturating_sub(used)),
            }));
        }
        json!({ "window_hours": 24, "accounts": accounts, "clients": clients })
    }
}

/// For `explain`: the estimated cost of a request and the concurrency it takes, one line.
pub fn explain(
    account: &crate::config::AccountConfig,
    method: &http::Method,
    uri: &http::Uri,
    body: Option<&[u8]>,
) -> String {
    if let Some(product) = crate::policy::products::table_product(uri.path()) {
        let window = match account.org_limits.per_minute(product.name) {
            Some(n) => format!(
                "{n} requests a minute per organization (limits.requests_per_minute.{})",
                product.name
            ),
            None => format!(
                "no request window (limits.requests_per_minute.{} is 0)",
                product.name
            ),
        };
        return format!(
            "  credits: none ({} spends no CRM credits); {window}",
            product.title
        );
    }
    let view = body
        .filter(|b| !b.is_empty())
        .map_or(BodyView::None, BodyView::Whole);
    let c = cost::cost(
        method.as_str(),
        uri.path(),
        uri.query(),
        view,
        &account.credits.costs,
    );
    let overridden = account.credits.costs.0.contains_key(&c.op);
    let heavy = match c.heavy {
        0 => "not heavy".to_string(),
        n => format!(
            "heavy ({n} slot{} of limits.heavy_concurrency)",
            if n == 1 { "" } else { "s" }
        ),
    };
    format!(
        "  credits: {} ({}{}); {}; {} slot{} of limits.upstream_concurrency",
        c.credits,
        c.op.name(),
        if overridden {
            ", set by credits.costs"
        } else {
            ""
        },
        heavy,
        c.slots,
        if c.slots == 1 { "" } else { "s" },
    )
}
