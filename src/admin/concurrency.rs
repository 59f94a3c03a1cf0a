//! What `/status` and the console show of the proxy's own reads: the upstream limit in force and
//! where it came from (`config`, `org:<edition>`, `fallback` with the fix), each account's org
//! read, and the source of the credit costs. Must not: change anything.

use super::html::{esc, utc};
use crate::state::Runtime;
use crate::upstream::slots::{LimitSource, FALLBACK_FIX};
use serde_json::{json, Value};

/// The `concurrency` object of `/status`.
pub(super) fn status_json(runtime: &Runtime) -> Value {
    let slots = &runtime.slots;
    let limits = &runtime.limits;
    let auto = limits.upstream_concurrency.fixed().is_none();
    let heavy = match (slots.heavy_limit, slots.upstream_limit) {
        (0, upstream) => upstream,
        (heavy, 0) => heavy,
        (heavy, upstream) => heavy.min(upstream),
    };
    json!({
        "setting": limits.upstream_concurrency,
        "upstream_limit": slots.upstream_limit,
        "source": slots.source.to_string(),
        "replicas": limits.upstream_replicas,
        "heavy_limit": heavy,
        "fix": (auto && slots.source == LimitSource::Fallback).then_some(FALLBACK_FIX),
        "orgs": *runtime.discovered.orgs(),
    })
}

/// The console's section: the limit in force, each org read, the costs in force per account.
pub(super) fn section(runtime: &Runtime) -> String {
    let status = status_json(runtime);
    let mut out = format!(
        "<h3>Zoho concurrency</h3>\n<p>Requests in flight to Zoho at most: <strong>{}</strong> (source <code>{}</code>; setting <code>{}</code>; heavy calls {}).</p>\n",
        status["upstream_limit"],
        esc(status["source"].as_str().unwrap_or("")),
        esc(&status["setting"].to_string()),
        status["heavy_limit"],
    );
    if let Some(fix) = status["fix"].as_str() {
        out.push_str(&format!(
            "<p class=\"warn\">The fallback is in force: {}.</p>\n",
            esc(fix)
        ));
    }
    out.push_str("<table>\n<thead><tr><th>Account</th><th>Edition</th><th>Limit</th><th>Read</th><th>Problem</th><th>Credit costs</th></tr></thead>\n<tbody>\n");
    let credits = runtime.credits.status_json();
    for a in &runtime.accounts {
        let org = runtime
            .discovered
            .orgs()
            .iter()
            .find(|r| *r.account == *a.name)
            .cloned();
        let costs = credits["accounts"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["account"].as_str() == Some(&a.name))
            .map(|c| costs_text(&c["costs"]))
            .unwrap_or_default();
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(&a.name),
            esc(org
                .as_ref()
                .and_then(|o| o.edition.as_deref())
                .unwrap_or("-")),
            org.as_ref()
                .map_or("-".to_string(), |o| o.limit.to_string()),
            org.as_ref()
                .map_or("not yet".to_string(), |o| utc(o.at_unix_ms)),
            esc(org
                .as_ref()
                .and_then(|o| o.problem.as_deref())
                .unwrap_or("")),
            esc(&costs),
        ));
    }
    out.push_str("</tbody>\n</table>\n");
    out
}

/// `zoho (N operations, read …)` or `builtin[: note]`.
fn costs_text(costs: &Value) -> String {
    match costs["source"].as_str() {
        Some("zoho") => format!(
            "zoho ({} operations, read {})",
            costs["operations"],
            costs["fetched_unix_ms"]
                .as_u64()
                .map_or_else(String::new, utc)
        ),
        _ => match costs["note"].as_str() {
            Some(note) => format!("builtin: {note}"),
            None => "builtin".to_string(),
        },
    }
}
