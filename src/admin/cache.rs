//! `POST /cache/purge`: empties the metadata cache of one account (`?account=NAME`, or the
//! console form's `account` field) or of all, and the console's cache table with its Purge
//! buttons.
//!
//! A form post (the console's button) must carry the page's CSRF token bound to
//! [`PURGE_ACTION`], as the Authorize button does; a plain `POST` (scripts, `curl`) is answered
//! in JSON. Both pass the admin credential check first. Must not: forward anything to Zoho.

use super::html::{self, esc};
use super::{json_response, param, Admin};
use crate::state::Runtime;
use crate::web::body::ProxyBody;
use http::{Response, StatusCode};
use serde_json::json;
use tracing::{info, warn};

/// The form action of the console's Purge buttons (and what their CSRF tokens are bound to).
pub const PURGE_ACTION: &str = "/cache/purge";

impl Admin {
    /// `POST /cache/purge?account=NAME` from a script: JSON.
    pub(super) fn cache_purge(&self, query: &str) -> Response<ProxyBody> {
        let account = param(query.as_bytes(), "account").filter(|a| !a.is_empty());
        match self.purge(account.as_deref()) {
            Some(purged) => {
                json_response(StatusCode::OK, json!({"status": "ok", "purged": purged}))
            }
            None => json_response(
                StatusCode::NOT_FOUND,
                json!({"code": "PROXY_UNKNOWN_ACCOUNT", "message": format!("no account of that name; use one of: {}", self.state.runtime.load().account_names()), "status": "error"}),
            ),
        }
    }

    /// The console's Purge button: a form with the page's CSRF token.
    pub(super) fn cache_purge_form(&self, form: &[u8]) -> Response<ProxyBody> {
        let token = param(form, "csrf").unwrap_or_default();
        let now_s = crate::util::clock::now_unix_ms() / 1000;
        if !self.csrf.verify(PURGE_ACTION, &token, now_s) {
            warn!("console cache purge refused: missing or invalid CSRF token");
            return html::message(
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form's token is missing, expired or not from this proxy. Reload the console and press the button again.",
            );
        }
        let account = param(form, "account").filter(|a| !a.is_empty());
        match self.purge(account.as_deref()) {
            Some(purged) => {
                let dropped: u64 = purged.iter().filter_map(|p| p["entries"].as_u64()).sum();
                html::message(
                    StatusCode::OK,
                    "Cache purged",
                    &format!("{dropped} cached metadata answers dropped. The next requests fetch them from Zoho again."),
                )
            }
            None => html::message(
                StatusCode::BAD_REQUEST,
                "Unknown account",
                "No account of that name: reload the console.",
            ),
        }
    }

    /// Purges and logs; `None` for an unknown account.
    fn purge(&self, account: Option<&str>) -> Option<Vec<serde_json::Value>> {
        let runtime = self.state.runtime.load();
        let purged = runtime.caches.purge(account)?;
        let list: Vec<_> = purged
            .iter()
            .map(|(name, entries)| json!({"account": &**name, "entries": entries}))
            .collect();
        info!(
            account = account.unwrap_or("(all)"),
            "metadata cache purged by the operator"
        );
        Some(list)
    }
}

/// The console's cache table: per account hits, misses, credits saved and what is held, with a
/// Purge button each (and one for all).
pub(super) fn cache_section(runtime: &Runtime, csrf: &str) -> String {
    let status = runtime.caches.status_json();
    let num = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let button = |account: &str, label: &str, id: &str| {
        format!(
            "<form method=\"post\" action=\"{PURGE_ACTION}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><input type=\"hidden\" name=\"account\" value=\"{account}\"><button type=\"submit\" id=\"{id}\">{label}</button></form>",
            csrf = esc(csrf),
            account = esc(account),
            id = esc(id),
        )
    };
    let mut out = String::from(
        "<h3 id=\"cache\">Metadata cache (this replica)</h3>\n<table>\n<thead><tr><th>Account</th><th>Hits</th><th>Misses</th><th>Credits saved</th><th>Entries</th><th>Bytes</th><th>TTL</th><th></th></tr></thead>\n<tbody>\n",
    );
    for a in status.as_array().into_iter().flatten() {
        let name = a["account"].as_str().unwrap_or("");
        let ttl = a["metadata_ttl_s"].as_f64().unwrap_or(0.0);
        let ttl = if ttl == 0.0 {
            "off".to_string()
        } else {
            html::duration_text(ttl as u64)
        };
        out.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            esc(name),
            num(&a["hits"]),
            num(&a["misses"]),
            num(&a["credits_saved"]),
            num(&a["entries"]),
            num(&a["bytes"]),
            esc(&ttl),
            button(name, "Purge", &format!("purge-{name}")),
        ));
    }
    out.push_str("</tbody>\n</table>\n");
    out.push_str(&button("", "Purge all accounts", "purge-all"));
    out
}
