//! Scopes that depend on a request body: COQL queries, bulk read and write jobs, composite
//! requests.
//!
//! The strict JSON reader (`json.rs`: duplicate keys and case-variant keys are refused, since
//! Zoho's parser might pick a different one than ours) and one file per Zoho rule: COQL
//! (`coql.rs`: the tokeniser and the modules a query reads), bulk jobs (`bulk.rs`) and composite
//! requests (`composite.rs`: each sub-request classified by the same canonicaliser and table as
//! a top-level request). Anything it cannot understand is a 400: it never guesses in the
//! permissive direction.

mod bulk;
mod composite;
mod coql;
mod json;

use json::get_exact;
pub(crate) use json::parse_object;

use http::StatusCode;
use serde_json::{Map, Value};

use super::modules::ModuleMap;
use super::required::Required;
use super::routes::BodyKind;
use super::scope::{Operation, Scope, Service};
use super::{Policy, Rejection};

/// Body cap for COQL and bulk job bodies.
pub(crate) const SMALL_BODY: usize = 64 * 1024;
/// Body cap for composite requests (up to five sub-requests with record payloads).
pub(crate) const COMPOSITE_BODY: usize = 1024 * 1024;

pub(crate) fn bad_body(message: impl Into<String>) -> Rejection {
    Rejection {
        status: StatusCode::BAD_REQUEST,
        code: "PROXY_BAD_BODY",
        message: message.into(),
    }
}

fn modules_read(op: Operation) -> Scope {
    Scope::from_parts(Service::Crm, "modules", None, op)
}

fn module_scope(
    map: &ModuleMap,
    name: &str,
    op: Operation,
    what: &str,
) -> Result<Scope, Rejection> {
    match map.resolve(name) {
        Some(scope) => Ok(Scope::from_parts(Service::Crm, "modules", Some(scope), op)),
        None => Err(bad_body(format!(
            "{what} `{}` is not a module API name (letters, digits and `_`, starting with a letter)",
            super::scope::sanitize(name)
        ))),
    }
}

/// Lookup fields that point at users, not at another module's records.
const USER_LOOKUPS: &[&str] = &["Owner", "Created_By", "Modified_By"];

/// Adds the scopes a body adds for `kind` to `out`.
pub(crate) fn add_body_scopes(
    policy: &Policy,
    kind: BodyKind,
    body: &[u8],
    out: &mut Required,
) -> Result<(), Rejection> {
    let object = parse_object(body)?;
    add_value_scopes(policy, kind, &object, out, true)
}

fn add_value_scopes(
    policy: &Policy,
    kind: BodyKind,
    object: &Map<String, Value>,
    out: &mut Required,
    top_level: bool,
) -> Result<(), Rejection> {
    match kind {
        BodyKind::Coql => coql::coql(&policy.modules, object, out),
        BodyKind::BulkRead => bulk::bulk_read(&policy.modules, object, out),
        BodyKind::BulkWrite => bulk::bulk_write(&policy.modules, object, out),
        BodyKind::Composite if top_level => composite::composite(policy, object, out),
        BodyKind::Composite => Err(bad_body(
            "a composite request cannot contain another composite request",
        )),
    }
}

#[cfg(test)]
mod tests;
