//! What one request costs in Zoho API credits, and whether it belongs to Zoho's "heavy" group.
//!
//! Pure and table-driven: the request's method, its canonical target (as the policy checked it,
//! located with the policy's own [`locate`](crate::policy::locate)) and, when the proxy holds it,
//! the body. The numbers are CREDITS.md §1; every one of them can be replaced through
//! `credits.costs:` (operation name → credits) without a release.
//!
//! Must not: read sockets or bodies itself (the proxy passes what it already holds), or decide
//! whether a request is allowed.

use super::{locate, Area, Located};
use serde_json::Value;
use std::collections::HashMap;

/// The operations whose cost differs from the default, by the name `credits.costs:` uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CostedOp {
    /// Anything not listed: 1 credit.
    Default,
    /// `POST /crm/{v}/Leads/{id}/actions/convert`: 5.
    ConvertLead,
    /// `POST /crm/{v}/{module}/actions/mass_convert`: 200.
    MassConvert,
    /// `POST /crm/{v}/{module}/{id}/actions/send_mail`: 20.
    SendMail,
    /// `POST /crm/{v}/{module}/{id}/actions/merge`: 50.
    Merge,
    /// Insert / update / upsert records: 1 per 10 records, rounded up (at most 10).
    RecordsWrite,
    /// Add / remove tags on many records: 1 per 50 records, rounded up (at most 10).
    TagsWrite,
    /// `POST /crm/{v}/coql`: 1 (LIMIT up to 200), 2 (up to 1,000), 3 (up to 2,000).
    Coql,
    /// `GET /crm/{v}/{module}?cvid=…`: 3.
    CvidListing,
    /// `GET /crm/{v}/{module}/deleted`: 2.
    DeletedIds,
    /// `GET /crm/{v}/{module}/search`: 1 (heavy group).
    Search,
    /// `POST /crm/bulk/{v}/read`: 50.
    BulkReadCreate,
    /// `POST /crm/bulk/{v}/write`: 500.
    BulkWriteCreate,
    /// `GET /crm/bulk/{v}/read/{id}/result`: 1 (UNCONFIRMED), at most 10 a minute.
    BulkReadResult,
    /// `POST /crm/{v}/__composite_requests`: 1, or 2 with `rollback_on_fail: true`.
    Composite,
    /// `POST /crm/{v}/settings/modules`: 500.
    CreateModule,
    /// `GET /crm/{v}/{module}?sort_by=…`: 1 (UNCONFIRMED: one source says 3).
    SortByListing,
    /// `POST /crm/{v}/{module}/actions/mass_update`: 1 (UNCONFIRMED: not listed by Zoho).
    MassUpdate,
    /// `GET /crm/bulk/{v}/read|write/{id}`: 1 (UNCONFIRMED: not listed by Zoho).
    BulkJobStatus,
}

impl CostedOp {
    /// Every operation, for config validation and docs.
    pub const ALL: [CostedOp; 19] = [
        CostedOp::Default,
        CostedOp::ConvertLead,
        CostedOp::MassConvert,
        CostedOp::SendMail,
        CostedOp::Merge,
        CostedOp::RecordsWrite,
        CostedOp::TagsWrite,
        CostedOp::Coql,
        CostedOp::CvidListing,
        CostedOp::DeletedIds,
        CostedOp::Search,
        CostedOp::BulkReadCreate,
        CostedOp::BulkWriteCreate,
        CostedOp::BulkReadResult,
        CostedOp::Composite,
        CostedOp::CreateModule,
        CostedOp::SortByListing,
        CostedOp::MassUpdate,
        CostedOp::BulkJobStatus,
    ];

    /// The name used by `credits.costs:`, `explain` and `/status`.
    pub fn name(self) -> &'static str {
        match self {
            CostedOp::Default => "default",
            CostedOp::ConvertLead => "convert_lead",
            CostedOp::MassConvert => "mass_convert",
            CostedOp::SendMail => "send_mail",
            CostedOp::Merge => "merge",
            CostedOp::RecordsWrite => "records_write",
            CostedOp::TagsWrite => "tags_write",
            CostedOp::Coql => "coql",
            CostedOp::CvidListing => "cvid_listing",
            CostedOp::DeletedIds => "deleted_ids",
            CostedOp::Search => "search",
            CostedOp::BulkReadCreate => "bulk_read_create",
            CostedOp::BulkWriteCreate => "bulk_write_create",
            CostedOp::BulkReadResult => "bulk_read_result",
            CostedOp::Composite => "composite",
            CostedOp::CreateModule => "create_module",
            CostedOp::SortByListing => "sort_by_listing",
            CostedOp::MassUpdate => "mass_update",
            CostedOp::BulkJobStatus => "bulk_job_status",
        }
    }

    /// The operation named `name`.
    pub fn from_name(name: &str) -> Option<CostedOp> {
        CostedOp::ALL.into_iter().find(|op| op.name() == name)
    }
}

/// `credits.costs:`: fixed costs that replace the built-in rule of an operation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CostOverrides(pub HashMap<CostedOp, u64>);

/// The body as far as the proxy holds it.
#[derive(Clone, Copy, Debug)]
pub enum BodyView<'b> {
    /// No body, or an empty one.
    None,
    /// The whole body (read for the policy, or small enough to be kept for a replay).
    Whole(&'b [u8]),
    /// A body too large to hold: it streams, so record counts are unknown (worst case charged).
    Streaming,
}

/// What a request costs and how it weighs on Zoho's concurrency limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cost {
    /// Which rule priced it.
    pub op: CostedOp,
    /// Estimated credits.
    pub credits: u64,
    /// Slots of the edition pool (`limits.upstream_concurrency`) it takes: 5 for a composite.
    pub slots: u32,
    /// Slots of the heavy group (`limits.heavy_concurrency`) it takes: 0 for ordinary calls.
    pub heavy: u32,
}

impl Cost {
    /// Whether it is a bulk-read result download (limited to 10 a minute per account).
    pub fn is_bulk_download(&self) -> bool {
        self.op == CostedOp::BulkReadResult
    }
}

/// Records per write call Zoho accepts at most (the worst case of a streamed write body).
const MAX_WRITE_RECORDS: u64 = 100;
/// Record ids per tag call at most.
const MAX_TAG_RECORDS: u64 = 500;
/// COQL's LIMIT when none is written.
const COQL_DEFAULT_LIMIT: u64 = 200;

/// Prices one request with the built-in table. `path` and `query` are the canonical target the
/// policy checked.
pub fn cost(
    method: &str,
    path: &str,
    query: Option<&str>,
    body: BodyView<'_>,
    overrides: &CostOverrides,
) -> Cost {
    cost_from(method, path, query, body, overrides, None)
}

/// Prices one request: Zoho's own figure where its `__apis` table names one (`zoho`), refined
/// from the request where the built-in table already is (record counts, tag ids, COQL's
/// LIMIT, composite rollback: the built-in count kept within Zoho's min and max), the built-in
/// table elsewhere; `credits.costs:` (`overrides`) wins over both.
pub fn cost_from(
    method: &str,
    path: &str,
    query: Option<&str>,
    body: BodyView<'_>,
    overrides: &CostOverrides,
    zoho: Option<&super::ZohoCosts>,
) -> Cost {
    let (op, builtin, heavy_subs) = price(method, path, query, body);
    let credits = match zoho.and_then(|z| z.lookup(method, path)) {
        Some(range) if refined(op) => builtin.clamp(range.min, range.max),
        Some(range) => range.max,
        None => builtin,
    };
    let credits = overrides.0.get(&op).copied().unwrap_or(credits);
    let records = || match body {
        BodyView::Whole(b) => record_count(b).unwrap_or(0),
        BodyView::Streaming => MAX_WRITE_RECORDS,
        BodyView::None => 0,
    };
    let heavy = match op {
        CostedOp::Coql
        | CostedOp::ConvertLead
        | CostedOp::SendMail
        | CostedOp::Search
        | CostedOp::BulkReadCreate
        | CostedOp::BulkWriteCreate
        | CostedOp::MassConvert => 1,
        // The composite's own slot, plus one for each heavy sub-request (CREDITS.md §3.1).
        CostedOp::Composite => 1 + heavy_subs,
        CostedOp::RecordsWrite if records() > 10 => 1,
        _ => 0,
    };
    let slots = if op == CostedOp::Composite { 5 } else { 1 };
    Cost {
        op,
        credits,
        slots,
        heavy,
    }
}

/// Operations whose built-in price is computed from the request, not fixed.
fn refined(op: CostedOp) -> bool {
    matches!(
        op,
        CostedOp::RecordsWrite | CostedOp::TagsWrite | CostedOp::Coql | CostedOp::Composite
    )
}

/// The built-in rule: operation, credits and (composite only) heavy sub-requests.
fn price(
    method: &str,
    path: &str,
    query: Option<&str>,
    body: BodyView<'_>,
) -> (CostedOp, u64, u32) {
    let default = (CostedOp::Default, 1, 0);
    let Ok(Located::Crm(area, segments)) = locate(path) else {
        return default;
    };
    let s = segments.as_slice();
    let write = matches!(method, "POST" | "PUT" | "PATCH");
    match (area, method, s) {
        (Area::Bulk, "POST", ["read"]) => (CostedOp::BulkReadCreate, 50, 0),
        (Area::Bulk, "POST", ["write"]) => (CostedOp::BulkWriteCreate, 500, 0),
        (Area::Bulk, "GET" | "HEAD", ["read", _, "result"]) => (CostedOp::BulkReadResult, 1, 0),
        (Area::Bulk, "GET" | "HEAD", ["read" | "write", _]) => (CostedOp::BulkJobStatus, 1, 0),
        (Area::Crm, "POST", [_, "actions", "mass_update"]) => (CostedOp::MassUpdate, 1, 0),
        (Area::Crm, "POST", ["coql"]) => (CostedOp::Coql, coql_credits(body), 0),
        (Area::Crm, "POST", ["__composite_requests"]) => composite(body),
        (Area::Crm, "POST", ["settings", "modules"]) => (CostedOp::CreateModule, 500, 0),
        (Area::Crm, "POST", [_, _, "actions", "convert"]) => (CostedOp::ConvertLead, 5, 0),
        (Area::Crm, "POST", [_, "actions", "mass_convert"]) => (CostedOp::MassConvert, 200, 0),
        (Area::Crm, "POST", [_, _, "actions", "send_mail"]) => (CostedOp::SendMail, 20, 0),
        (Area::Crm, "POST", [_, _, "actions", "merge"]) => (CostedOp::Merge, 50, 0),
        (Area::Crm, "POST", [_, "actions", "add_tags" | "remove_tags"]) => {
            let n = query
                .and_then(|q| query_value(q, "ids"))
                .map(|ids| ids.split(',').filter(|i| !i.is_empty()).count() as u64)
                .or_else(|| match body {
                    BodyView::Whole(b) => record_count(b),
                    BodyView::Streaming => Some(MAX_TAG_RECORDS),
                    BodyView::None => None,
                })
                .unwrap_or(0);
            (CostedOp::TagsWrite, per(n, 50), 0)
        }
        (Area::Crm, "GET" | "HEAD", [_, "deleted"]) => (CostedOp::DeletedIds, 2, 0),
        (Area::Crm, "GET" | "HEAD", [_, "search"]) => (CostedOp::Search, 1, 0),
        (Area::Crm, "GET" | "HEAD", [module])
            if !module.starts_with("__")
                && query.is_some_and(|q| query_value(q, "cvid").is_some()) =>
        {
            (CostedOp::CvidListing, 3, 0)
        }
        (Area::Crm, "GET" | "HEAD", [module])
            if !module.starts_with("__")
                && query.is_some_and(|q| query_value(q, "sort_by").is_some()) =>
        {
            (CostedOp::SortByListing, 1, 0)
        }
        (Area::Crm, _, [module] | [module, "upsert"] | [module, _])
            if write
                && is_module_word(module)
                && !matches!(s, [_, "actions" | "search" | "deleted"]) =>
        {
            let n = match body {
                BodyView::Whole(b) => record_count(b).unwrap_or(0),
                BodyView::Streaming => MAX_WRITE_RECORDS,
                BodyView::None => 0,
            };
            (CostedOp::RecordsWrite, per(n, 10), 0)
        }
        _ => default,
    }
}

/// Record writes are `/{module}`, `/{module}/upsert` or `/{module}/{id}`; fixed top-level
/// words (`settings`, `users`, `org`, `__…`) are not modules.
fn is_module_word(word: &str) -> bool {
    !word.starts_with("__")
        && !matches!(
            word,
            "settings" | "users" | "org" | "coql" | "files" | "upload" | "functions" | "actions"
        )
}

/// `ceil(n / per)`, at least 1, at most 10.
fn per(n: u64, per: u64) -> u64 {
    n.div_ceil(per).clamp(1, 10)
}

/// The number of records in a `{"data": [...]}` body.
fn record_count(body: &[u8]) -> Option<u64> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.get("data")?.as_array().map(|a| a.len() as u64)
}

/// The first value of `name` in a query string (undecoded; only commas and digits matter).
fn query_value<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// COQL by its LIMIT: 1–200 → 1, 201–1,000 → 2, more → 3. No LIMIT means 200.
fn coql_credits(body: BodyView<'_>) -> u64 {
    let limit = match body {
        BodyView::Whole(b) => serde_json::from_slice::<Value>(b)
            .ok()
            .and_then(|v| v.get("select_query")?.as_str().map(coql_limit))
            .unwrap_or(COQL_DEFAULT_LIMIT),
        // A COQL body is always read for the policy; if not, charge the worst case.
        _ => 2000,
    };
    match limit {
        0..=200 => 1,
        201..=1000 => 2,
        _ => 3,
    }
}

/// The row limit of a COQL query: `LIMIT n`, `LIMIT offset, n` or `LIMIT n OFFSET m`.
pub fn coql_limit(query: &str) -> u64 {
    let lower = query.to_ascii_lowercase();
    let Some(at) = lower.rmatch_indices("limit").map(|(i, _)| i).find(|&i| {
        let before = lower[..i].chars().next_back();
        let after = lower[i + 5..].chars().next();
        before.is_none_or(char::is_whitespace) && after.is_some_and(char::is_whitespace)
    }) else {
        return COQL_DEFAULT_LIMIT;
    };
    let tail = &lower[at + 5..];
    let number = |text: &str| -> (Option<u64>, usize) {
        let start = text.len() - text.trim_start().len();
        let digits = text[start..].bytes().take_while(u8::is_ascii_digit).count();
        (text[start..start + digits].parse().ok(), start + digits)
    };
    let (first, used) = number(tail);
    let rest = tail[used..].trim_start();
    match (first, rest.strip_prefix(',')) {
        (Some(_), Some(after)) => number(after).0.unwrap_or(COQL_DEFAULT_LIMIT),
        (Some(n), None) => n,
        (None, _) => COQL_DEFAULT_LIMIT,
    }
}

/// Composite: 2 with `rollback_on_fail: true` (1 if rolled back: the worst case is charged),
/// else 1; the heavy sub-requests are counted for the heavy group.
fn composite(body: BodyView<'_>) -> (CostedOp, u64, u32) {
    let BodyView::Whole(b) = body else {
        return (CostedOp::Composite, 2, 0);
    };
    let Ok(v) = serde_json::from_slice::<Value>(b) else {
        return (CostedOp::Composite, 1, 0);
    };
    let credits = if v.get("rollback_on_fail") == Some(&Value::Bool(true)) {
        2
    } else {
        1
    };
    let heavy = v
        .get("__composite_requests")
        .and_then(Value::as_array)
        .map(|subs| {
            subs.iter()
                .filter(|sub| {
                    let method = sub.get("method").and_then(Value::as_str).unwrap_or("");
                    let uri = sub.get("uri").and_then(Value::as_str).unwrap_or("");
                    let (path, query) = match uri.split_once('?') {
                        Some((p, q)) => (p, Some(q)),
                        None => (uri, None),
                    };
                    let body = sub
                        .get("body")
                        .map(|b| serde_json::to_vec(b).unwrap_or_default());
                    let view = body.as_deref().map_or(BodyView::None, BodyView::Whole);
                    path.starts_with('/')
                        && cost(method, path, query, view, &CostOverrides::default()).heavy > 0
                })
                .count() as u32
        })
        .unwrap_or(0);
    (CostedOp::Composite, credits, heavy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (row of the table, method, target, body, expected credits, heavy slots).
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        u64,
        u32,
    );

    /// CREDITS.md §1.1, row by row (copied here so `cargo test` needs nothing outside the repo).
    const CASES: &[Case] = &[
        ("any call not listed", "GET", "/crm/v8/org", None, 1, 0),
        ("Get Users", "GET", "/crm/v8/users?type=AllUsers", None, 1, 0),
        ("Get Roles", "GET", "/crm/v8/settings/roles", None, 1, 0),
        ("Get Profiles", "GET", "/crm/v8/settings/profiles", None, 1, 0),
        ("Get list of modules", "GET", "/crm/v8/settings/modules", None, 1, 0),
        ("Get field metadata", "GET", "/crm/v8/settings/fields?module=Leads", None, 1, 0),
        ("Get Records (list)", "GET", "/crm/v8/Leads?fields=Last_Name", None, 1, 0),
        ("Get Records (by id)", "GET", "/crm/v8/Leads/4150868000000224005", None, 1, 0),
        ("Get Records with cvid", "GET", "/crm/v8/Leads?cvid=4150868000000087501&fields=Last_Name", None, 3, 0),
        ("Get IDs of deleted records", "GET", "/crm/v8/Leads/deleted?type=all", None, 2, 0),
        ("Get Related Records (default)", "GET", "/crm/v8/Leads/4150868000000224005/Notes", None, 1, 0),
        ("Search Records", "GET", "/crm/v8/Leads/search?email=a@example.com", None, 1, 1),
        ("COQL LIMIT 1-200", "POST", "/crm/v8/coql", Some(r#"{"select_query":"select Last_Name from Leads where Last_Name is not null limit 200"}"#), 1, 1),
        ("COQL without LIMIT (200)", "POST", "/crm/v8/coql", Some(r#"{"select_query":"select Last_Name from Leads where Last_Name is not null"}"#), 1, 1),
        ("COQL LIMIT 201-1,000", "POST", "/crm/v8/coql", Some(r#"{"select_query":"select Last_Name from Leads where Last_Name is not null limit 201"}"#), 2, 1),
        ("COQL LIMIT 1,000", "POST", "/crm/v8/coql", Some(r#"{"select_query":"select Last_Name from Leads where Last_Name is not null LIMIT 1000"}"#), 2, 1),
        ("COQL LIMIT 1,001-2,000", "POST", "/crm/v8/coql", Some(r#"{"select_query":"select Last_Name from Leads where Last_Name is not null limit 2000"}"#), 3, 1),
        ("COQL LIMIT offset, n", "POST", "/crm/v8/coql", Some(r#"{"select_query":"select Last_Name from Leads where Last_Name is not null limit 5000, 1500"}"#), 3, 1),
        ("COQL LIMIT n OFFSET m", "POST", "/crm/v8/coql", Some(r#"{"select_query":"select Last_Name from Leads where Last_Name is not null limit 300 offset 2000"}"#), 2, 1),
        ("Insert 1 record", "POST", "/crm/v8/Leads", Some(r#"{"data":[{"Last_Name":"a"}]}"#), 1, 0),
        ("Insert 10 records", "POST", "/crm/v8/Leads", Some(TEN), 1, 0),
        ("Insert 11 records (heavy)", "POST", "/crm/v8/Leads", Some(ELEVEN), 2, 1),
        ("Update records", "PUT", "/crm/v8/Leads", Some(ELEVEN), 2, 1),
        ("Update one record by id", "PUT", "/crm/v8/Leads/4150868000000224005", Some(r#"{"data":[{"Last_Name":"b"}]}"#), 1, 0),
        ("Upsert records", "POST", "/crm/v8/Leads/upsert", Some(TEN), 1, 0),
        ("Insert 100 records (cap 10)", "POST", "/crm/v8/Leads", Some(HUNDRED), 10, 1),
        ("Add tags, 51 ids", "POST", "/crm/v8/Leads/actions/add_tags?ids=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32,33,34,35,36,37,38,39,40,41,42,43,44,45,46,47,48,49,50,51&tag_names=x", None, 2, 0),
        ("Remove tags, 3 ids", "POST", "/crm/v8/Leads/actions/remove_tags?ids=1,2,3&tag_names=x", None, 1, 0),
        ("Mass update (not listed: default)", "POST", "/crm/v8/Leads/actions/mass_update", Some(r#"{"data":[{"Lead_Status":"x"}],"ids":["1"]}"#), 1, 0),
        ("Convert Lead", "POST", "/crm/v8/Leads/4150868000000224005/actions/convert", Some(r#"{"data":[{}]}"#), 5, 1),
        ("Mass convert leads", "POST", "/crm/v8/Leads/actions/mass_convert", Some(r#"{"ids":["1"]}"#), 200, 1),
        ("Send Mail", "POST", "/crm/v8/Leads/4150868000000224005/actions/send_mail", Some(r#"{"data":[{}]}"#), 20, 1),
        ("Merge records", "POST", "/crm/v8/Leads/4150868000000224005/actions/merge", Some(r#"{"merge":[]}"#), 50, 0),
        ("Upload attachment (default)", "POST", "/crm/v8/Leads/4150868000000224005/Attachments", None, 1, 0),
        ("Composite, rollback_on_fail false", "POST", "/crm/v8/__composite_requests", Some(r#"{"rollback_on_fail":false,"__composite_requests":[{"method":"GET","uri":"/crm/v8/Leads"}]}"#), 1, 1),
        ("Composite, rollback_on_fail true", "POST", "/crm/v8/__composite_requests", Some(r#"{"rollback_on_fail":true,"__composite_requests":[{"method":"GET","uri":"/crm/v8/Leads"}]}"#), 2, 1),
        ("Composite with a COQL sub-request", "POST", "/crm/v8/__composite_requests", Some(r#"{"__composite_requests":[{"method":"POST","uri":"/crm/v8/coql","body":{"select_query":"select id from Leads limit 10"}}]}"#), 1, 2),
        ("Bulk Read: create job", "POST", "/crm/bulk/v8/read", Some(r#"{"query":{"module":{"api_name":"Leads"}}}"#), 50, 1),
        ("Bulk Write: create job", "POST", "/crm/bulk/v8/write", Some(r#"{"resource":[]}"#), 500, 1),
        ("Bulk read job status (assume 1)", "GET", "/crm/bulk/v8/read/4150868000000624001", None, 1, 0),
        ("Bulk write job status (assume 1)", "GET", "/crm/bulk/v8/write/4150868000000624001", None, 1, 0),
        ("Get Records with sort_by (UNCONFIRMED 3: 1 here)", "GET", "/crm/v8/Leads?sort_by=Created_Time", None, 1, 0),
        ("Bulk read result download (assume 1)", "GET", "/crm/bulk/v8/read/4150868000000624001/result", None, 1, 0),
        ("Create custom module", "POST", "/crm/v8/settings/modules", Some(r#"{"modules":[]}"#), 500, 0),
        ("Outside the CRM API", "GET", "/books/v3/invoices", None, 1, 0),
    ];

    const TEN: &str = r#"{"data":[{},{},{},{},{},{},{},{},{},{}]}"#;
    const ELEVEN: &str = r#"{"data":[{},{},{},{},{},{},{},{},{},{},{}]}"#;
    const HUNDRED: &str = concat!(
        r#"{"data":[{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},"#,
        r#"{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},"#,
        r#"{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},"#,
        r#"{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}]}"#
    );

    #[test]
    fn credits_md_rows() {
        for (row, method, target, body, credits, heavy) in CASES {
            let (path, query) = match target.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (*target, None),
            };
            let view = body.map_or(BodyView::None, |b| BodyView::Whole(b.as_bytes()));
            let got = cost(method, path, query, view, &CostOverrides::default());
            assert_eq!(
                got.credits, *credits,
                "credits of `{row}` ({method} {target})"
            );
            assert_eq!(
                got.heavy, *heavy,
                "heavy slots of `{row}` ({method} {target})"
            );
        }
    }

    #[test]
    fn composite_takes_five_edition_slots() {
        let body = br#"{"__composite_requests":[{"method":"GET","uri":"/crm/v8/Leads"}]}"#;
        let c = cost(
            "POST",
            "/crm/v8/__composite_requests",
            None,
            BodyView::Whole(body),
            &CostOverrides::default(),
        );
        assert_eq!((c.slots, c.heavy), (5, 1));
        let get = cost(
            "GET",
            "/crm/v8/Leads",
            None,
            BodyView::None,
            &CostOverrides::default(),
        );
        assert_eq!((get.slots, get.heavy), (1, 0));
    }

    #[test]
    fn a_streamed_write_is_charged_the_worst_case() {
        let c = cost(
            "POST",
            "/crm/v8/Leads",
            None,
            BodyView::Streaming,
            &CostOverrides::default(),
        );
        assert_eq!((c.op, c.credits, c.heavy), (CostedOp::RecordsWrite, 10, 1));
    }

    #[test]
    fn overrides_replace_the_built_in_rule() {
        let mut o = CostOverrides::default();
        o.0.insert(CostedOp::ConvertLead, 7);
        o.0.insert(CostedOp::Default, 2);
        let convert = cost(
            "POST",
            "/crm/v8/Leads/1/actions/convert",
            None,
            BodyView::None,
            &o,
        );
        assert_eq!(convert.credits, 7);
        assert_eq!(
            cost("GET", "/crm/v8/org", None, BodyView::None, &o).credits,
            2
        );
        assert_eq!(
            cost("GET", "/crm/v8/Leads/deleted", None, BodyView::None, &o).credits,
            2,
            "other operations keep their rule"
        );
        // An UNCONFIRMED number corrected from config: `sort_by` listings at 3.
        o.0.insert(CostedOp::SortByListing, 3);
        assert_eq!(
            cost(
                "GET",
                "/crm/v8/Leads",
                Some("sort_by=Created_Time"),
                BodyView::None,
                &o
            )
            .credits,
            3
        );
    }

    /// (case, method, target, body, credits with Zoho's table below).
    const WITH_ZOHO: &[(&str, &str, &str, Option<&str>, u64)] = &[
        ("a GET Zoho prices at 2", "GET", "/crm/v8/Leads", None, 2),
        (
            "another version, same template",
            "GET",
            "/crm/v2/Leads",
            None,
            2,
        ),
        (
            "not in Zoho's table: built-in",
            "GET",
            "/crm/v8/Leads/deleted",
            None,
            2,
        ),
        (
            "a write of 11 records stays refined (2), within 1..=10",
            "POST",
            "/crm/v8/Leads",
            Some(ELEVEN),
            2,
        ),
        (
            "a write of 100 records is capped by Zoho's max 5",
            "POST",
            "/crm/v8/Leads",
            Some(HUNDRED),
            5,
        ),
        (
            "COQL LIMIT 10 is raised to Zoho's min 2",
            "POST",
            "/crm/v8/coql",
            Some(r#"{"select_query":"select id from Leads limit 10"}"#),
            2,
        ),
        (
            "COQL LIMIT 2000 stays 3",
            "POST",
            "/crm/v8/coql",
            Some(r#"{"select_query":"select id from Leads limit 2000"}"#),
            3,
        ),
        (
            "send mail at Zoho's 25",
            "POST",
            "/crm/v8/Quotes/1/actions/send_mail",
            None,
            25,
        ),
    ];

    #[test]
    fn zoho_prices_where_it_names_a_cost_and_the_request_refines_it() {
        let table = br#"{"__apis":[
            {"path":"/crm/v8/Leads","operation_types":[{"method":"GET","max_credits":2,"min_credits":2},{"method":"POST","max_credits":5,"min_credits":1}]},
            {"path":"/crm/v8/coql","operation_types":[{"method":"POST","max_credits":3,"min_credits":2}]},
            {"path":"/crm/v8/{{module}}/{{id}}/actions/send_mail","operation_types":[{"method":"POST","max_credits":25,"min_credits":25}]}]}"#;
        let zoho = crate::policy::ZohoCosts::parse(table).expect("table");
        for (case, method, target, body, credits) in WITH_ZOHO {
            let (path, query) = target
                .split_once('?')
                .map_or((*target, None), |(p, q)| (p, Some(q)));
            let view = body.map_or(BodyView::None, |b| BodyView::Whole(b.as_bytes()));
            let got = cost_from(
                method,
                path,
                query,
                view,
                &CostOverrides::default(),
                Some(&zoho),
            );
            assert_eq!(got.credits, *credits, "{case}: {method} {target}");
        }
        let mut o = CostOverrides::default();
        o.0.insert(CostedOp::Default, 7);
        let got = cost_from(
            "GET",
            "/crm/v8/Leads",
            None,
            BodyView::None,
            &o,
            Some(&zoho),
        );
        assert_eq!(got.credits, 7, "credits.costs wins over Zoho's table");
    }

    #[test]
    fn operation_names_round_trip() {
        for op in CostedOp::ALL {
            assert_eq!(CostedOp::from_name(op.name()), Some(op), "{op:?}");
        }
        assert_eq!(CostedOp::from_name("Convert_Lead"), None);
    }
}
