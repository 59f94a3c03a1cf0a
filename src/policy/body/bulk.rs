//! Bulk jobs: the module a bulk read reads (and the lookups it follows), the modules a bulk
//! write writes and how.

use serde_json::{Map, Value};

use super::{bad_body, get_exact, module_scope, modules_read, USER_LOOKUPS};
use crate::policy::modules::ModuleMap;
use crate::policy::required::Required;
use crate::policy::scope::{Operation, Scope, Service};
use crate::policy::Rejection;

fn module_name<'v>(value: Option<&'v Value>, what: &str) -> Result<&'v str, Rejection> {
    match value {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Object(m)) => match get_exact(m, "api_name")? {
            Some(Value::String(s)) => Ok(s),
            _ => Err(bad_body(format!(
                "{what} must name the module by `api_name`"
            ))),
        },
        _ => Err(bad_body(format!(
            "{what} is missing: name the module by `api_name`"
        ))),
    }
}

/// Whether a bulk field reference reads through a lookup into another module.
fn is_lookup_field(name: &str) -> bool {
    match name.split_once('.') {
        Some((head, _)) => !USER_LOOKUPS.iter().any(|u| u.eq_ignore_ascii_case(head)),
        None => false,
    }
}

fn has_lookup_field(value: &Value, key: Option<&str>) -> bool {
    match value {
        Value::String(s) => {
            matches!(key, Some("api_name" | "field" | "fields")) && is_lookup_field(s)
        }
        Value::Array(items) => items.iter().any(|v| has_lookup_field(v, key)),
        Value::Object(m) => m.iter().any(|(k, v)| has_lookup_field(v, Some(k.as_str()))),
        _ => false,
    }
}

pub(super) fn bulk_read(
    map: &ModuleMap,
    object: &Map<String, Value>,
    out: &mut Required,
) -> Result<(), Rejection> {
    let Some(Value::Object(query)) = get_exact(object, "query")? else {
        return Err(bad_body("a bulk read job needs a `query` object"));
    };
    let name = module_name(get_exact(query, "module")?, "`query.module`")?;
    out.push(Scope::from_parts(
        Service::Crm,
        "bulk",
        None,
        Operation::Read,
    ));
    out.push(module_scope(map, name, Operation::Read, "`query.module`")?);
    let lookup = query
        .iter()
        .filter(|(k, _)| k.as_str() != "module")
        .any(|(k, v)| has_lookup_field(v, Some(k.as_str())));
    if lookup {
        out.push(modules_read(Operation::Read));
    }
    Ok(())
}

pub(super) fn bulk_write(
    map: &ModuleMap,
    object: &Map<String, Value>,
    out: &mut Required,
) -> Result<(), Rejection> {
    let ops: &[Operation] = match get_exact(object, "operation")? {
        Some(Value::String(s)) if s == "insert" => &[Operation::Create],
        Some(Value::String(s)) if s == "update" => &[Operation::Update],
        Some(Value::String(s)) if s == "upsert" => &[Operation::Create, Operation::Update],
        _ => {
            return Err(bad_body(
                "a bulk write job needs `operation`: \"insert\", \"update\" or \"upsert\"",
            ))
        }
    };
    let resources = match get_exact(object, "resource")? {
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => {
            return Err(bad_body(
                "a bulk write job needs a non-empty `resource` array",
            ))
        }
    };
    out.push(Scope::from_parts(
        Service::Crm,
        "bulk",
        None,
        Operation::Create,
    ));
    for resource in resources {
        let Value::Object(resource) = resource else {
            return Err(bad_body("each `resource` entry must be an object"));
        };
        let name = module_name(get_exact(resource, "module")?, "`resource[].module`")?;
        for op in ops {
            out.push(module_scope(map, name, *op, "`resource[].module`")?);
        }
    }
    Ok(())
}
