//! The console's Books and Inventory section: per product and organization, the requests in the
//! current 60-second window against its limit, the calls of the rolling 24 hours against the
//! daily budget, Zoho's back-off and the refusals since start.

use super::html::esc;
use crate::state::Runtime;

/// The section's HTML (empty until a Books or Inventory request was seen).
pub(super) fn section(runtime: &Runtime) -> String {
    let rows = runtime.quotas.snapshot();
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "<h3>Books and Inventory, per organization</h3>\n<table>\n<thead><tr><th>Product</th><th>Organization</th><th>Last 60 s</th><th>Last 24 hours</th><th>Zoho's back-off</th><th>Refused (window / daily / Zoho)</th></tr></thead>\n<tbody>\n",
    );
    for r in rows {
        let window = match r.window_limit {
            Some(limit) => format!("{} of {limit}", r.window_used),
            None => format!("{} (no limit)", r.window_used),
        };
        let daily = match r.daily_limit {
            Some(limit) => format!("{} of {limit}", r.daily_used),
            None => format!("{} (no budget)", r.daily_used),
        };
        let backoff = r
            .backoff_remaining_secs
            .map_or_else(|| "none".to_string(), |s| format!("{s} s left"));
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {} / {}</td></tr>\n",
            esc(r.product),
            esc(&r.organization),
            esc(&window),
            esc(&daily),
            esc(&backoff),
            r.refused_rate_limited,
            r.refused_daily_calls,
            r.refused_zoho_throttled,
        ));
    }
    out.push_str("</tbody>\n</table>\n");
    out
}
