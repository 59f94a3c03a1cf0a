//! The proxy's own calls to the API (the daily `org` and `__apis` reads): their spending, shown
//! apart under the client label [`PROXY_CLIENT`] and never refused by a budget, and the cost
//! table Zoho's `__apis` answer puts in force per account.
//!
//! Must not: make the calls (the discovery task does) or parse Zoho's answer (`policy` does).

use super::{lock, Credits};
use crate::policy::ZohoCosts;
use serde_json::{json, Value};
use std::sync::Arc;

/// The client label of the proxy's own spending in the ledger, `/status` and the metrics (never
/// a valid client name).
pub const PROXY_CLIENT: &str = "(proxy)";

/// The costs in force for one account.
#[derive(Debug, Default)]
pub enum CostsInForce {
    /// The built-in table (CREDITS.md §1): Zoho's has not been read yet.
    #[default]
    Builtin,
    /// The built-in table, because Zoho's could not be read or used (why, naming the fix).
    BuiltinBecause(String),
    /// Zoho's `__apis` table, read at `fetched_unix_ms`; the built-in table prices the rest.
    Zoho {
        /// The lookup.
        table: ZohoCosts,
        /// When it was read (Unix ms).
        fetched_unix_ms: u64,
    },
}

impl CostsInForce {
    /// The table to price with, if Zoho's is in force.
    pub fn table(&self) -> Option<&ZohoCosts> {
        match self {
            CostsInForce::Zoho { table, .. } => Some(table),
            _ => None,
        }
    }

    /// The `costs` object of an account in `/status`.
    pub fn status_json(&self) -> Value {
        match self {
            CostsInForce::Builtin => json!({ "source": "builtin" }),
            CostsInForce::BuiltinBecause(note) => json!({ "source": "builtin", "note": note }),
            CostsInForce::Zoho {
                table,
                fetched_unix_ms,
            } => json!({
                "source": "zoho",
                "fetched_unix_ms": fetched_unix_ms,
                "operations": table.covered(),
            }),
        }
    }
}

impl Credits {
    /// Charges `credits` of the proxy's own call for `account` to the [`PROXY_CLIENT`] ledger and
    /// metrics. No budget applies and none is charged: budgets govern the clients.
    pub fn record_own(&self, account: &str, credits: u64) {
        let now = (self.clock)();
        lock(&self.clients)
            .entry(PROXY_CLIENT.to_string())
            .or_default()
            .add(now, credits);
        *lock(&self.clients_dirty) = true;
        self.metrics.used(account, PROXY_CLIENT, credits);
        self.dirty.notify_one();
    }

    /// How long Zoho's 429 back-off for `account` still runs (the proxy's own calls wait too).
    pub fn zoho_backoff(&self, account: &str) -> Option<std::time::Duration> {
        let now = (self.clock)();
        lock(&self.account(account)?.state).backoff.remaining(now)
    }

    /// Zoho answered one of the proxy's own calls for `account` with 429 (`retry_after` if it
    /// said): client requests wait out the same back-off, as after a client's 429.
    pub fn own_throttled(&self, account: &str, retry_after: Option<std::time::Duration>) {
        let Some(acc) = self.account(account) else {
            return;
        };
        let now = (self.clock)();
        lock(&acc.state).backoff.throttled(now, retry_after);
        self.metrics.zoho_throttled(account);
    }

    /// Puts Zoho's table in force for `account` (read at `fetched_unix_ms`). A table that
    /// prices nothing leaves the built-in one in force.
    pub fn install_zoho_costs(&self, account: &str, table: ZohoCosts, fetched_unix_ms: u64) {
        let Some(acc) = self.account(account) else {
            return;
        };
        let next = if table.covered() == 0 {
            CostsInForce::BuiltinBecause("Zoho's __apis answer named no credits".into())
        } else {
            CostsInForce::Zoho {
                table,
                fetched_unix_ms,
            }
        };
        acc.costs.store(Arc::new(next));
    }

    /// Records why Zoho's table could not be read for `account`. A table read before stays in
    /// force (Zoho's costs rarely change); otherwise the built-in one, with `note`.
    pub fn zoho_costs_unavailable(&self, account: &str, note: String) {
        let Some(acc) = self.account(account) else {
            return;
        };
        if acc.costs.load().table().is_none() {
            acc.costs
                .store(Arc::new(CostsInForce::BuiltinBecause(note)));
        }
    }
}
