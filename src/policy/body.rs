//! Scopes that depend on a request body: COQL queries, bulk read and write jobs, composite
//! requests.
//!
//! Owns strict JSON parsing (duplicate keys and case-variant keys are refused, since Zoho's parser
//! might pick a different one than ours), the COQL tokeniser, and the walk over composite
//! sub-requests, each classified by the same canonicaliser and table as a top-level request.
//! Anything it cannot understand is a 400: it never guesses in the permissive direction.

use std::fmt;

use http::StatusCode;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::canonical::{
    check_path, check_query, is_override_name, method_override_rejection, Verb,
};
use super::modules::ModuleMap;
use super::required::{Required, Unclassified};
use super::routes::BodyKind;
use super::scope::{Operation, Scope, Service};
use super::{Policy, Rejection, Step};

/// Body cap for COQL and bulk job bodies.
pub(crate) const SMALL_BODY: usize = 64 * 1024;
/// Body cap for composite requests (up to five sub-requests with record payloads).
pub(crate) const COMPOSITE_BODY: usize = 1024 * 1024;
/// Zoho accepts 1..=5 sub-requests.
const MAX_SUB_REQUESTS: usize = 5;

pub(crate) fn bad_body(message: impl Into<String>) -> Rejection {
    Rejection {
        status: StatusCode::BAD_REQUEST,
        code: "PROXY_BAD_BODY",
        message: message.into(),
    }
}

/// A JSON value parsed with duplicate object keys refused.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate key `{}`",
                    super::scope::sanitize(&key)
                )));
            }
            let Strict(value) = map.next_value()?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Parses a body as one JSON object, refusing duplicate keys anywhere.
pub(crate) fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Rejection> {
    let Strict(value) = serde_json::from_slice::<Strict>(body)
        .map_err(|e| bad_body(format!("the body is not valid JSON: {e}")))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(bad_body("the body must be a JSON object")),
    }
}

/// Looks up `key` exactly, refusing a key that differs from it only in letter case (another
/// parser might honour that one instead).
fn get_exact<'v>(
    object: &'v Map<String, Value>,
    key: &str,
) -> Result<Option<&'v Value>, Rejection> {
    for k in object.keys() {
        if k != key && k.eq_ignore_ascii_case(key) {
            return Err(bad_body(format!(
                "the body has a key `{}` that differs from `{key}` only in letter case; use `{key}`",
                super::scope::sanitize(k)
            )));
        }
    }
    Ok(object.get(key))
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
        BodyKind::Coql => coql(&policy.modules, object, out),
        BodyKind::BulkRead => bulk_read(&policy.modules, object, out),
        BodyKind::BulkWrite => bulk_write(&policy.modules, object, out),
        BodyKind::Composite if top_level => composite(policy, object, out),
        BodyKind::Composite => Err(bad_body(
            "a composite request cannot contain another composite request",
        )),
    }
}

// ---- COQL -------------------------------------------------------------------------------------

#[derive(Debug, PartialEq)]
enum Tok<'q> {
    Word(&'q str),
    Str,
    Num,
    Punct,
}

fn tokenize(query: &str) -> Result<Vec<Tok<'_>>, Rejection> {
    let b = query.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'\'' {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(bad_body("the COQL query has an unterminated string literal")),
                    Some(b'\\') => {
                        return Err(bad_body(
                            "the COQL query escapes with a backslash; the proxy cannot tell where such a string \
                             ends: write a quote inside a string as ''",
                        ))
                    }
                    Some(b'\'') if b.get(i + 1) == Some(&b'\'') => i += 2,
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
            out.push(Tok::Str);
        } else if c == b'"' || c == b'`' {
            return Err(bad_body(
                "the COQL query uses double quotes or backticks; write module and field API names unquoted and \
                 values in single quotes",
            ));
        } else if (c == b'-' && next == Some(b'-'))
            || (c == b'/' && next == Some(b'*'))
            || c == b'#'
        {
            return Err(bad_body("the COQL query contains a comment; remove it"));
        } else if c == b';' {
            return Err(bad_body(
                "the COQL query contains `;`; send exactly one query",
            ));
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' {
            let start = i;
            while i < b.len()
                && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.' | b'$'))
            {
                i += 1;
            }
            out.push(Tok::Word(&query[start..i]));
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            out.push(Tok::Num);
        } else if !c.is_ascii() || c.is_ascii_control() {
            return Err(bad_body(
                "the COQL query contains a control or non-ASCII character outside a string literal",
            ));
        } else {
            out.push(Tok::Punct);
            i += 1;
        }
    }
    Ok(out)
}

const COQL_KEYWORDS: &[&str] = &[
    "select", "from", "where", "order", "group", "by", "limit", "offset", "join", "inner", "left",
    "right", "outer", "on", "as", "and", "or", "not", "in", "like", "between", "is", "null",
    "having", "asc", "desc",
];

fn is_keyword(word: &str) -> bool {
    COQL_KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// The modules a COQL query reads: every identifier after FROM or JOIN. A dotted field reference
/// (`Account_Name.Account_Name`) reads another module through a lookup whose target the query
/// does not name, so it needs `ZohoCRM.modules.READ` (every module) unless it starts with the
/// queried module, one of its aliases, or a user lookup (`Owner`, `Created_By`, `Modified_By`).
pub(crate) fn coql_modules(query: &str) -> Result<(Vec<&str>, bool), Rejection> {
    let tokens = tokenize(query)?;
    match tokens.first() {
        Some(Tok::Word(w)) if w.eq_ignore_ascii_case("select") => {}
        _ => return Err(bad_body("the COQL query must start with SELECT")),
    }
    let mut modules: Vec<&str> = Vec::new();
    let mut aliases: Vec<&str> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if let Tok::Word(w) = tokens[i] {
            if w.eq_ignore_ascii_case("from") || w.eq_ignore_ascii_case("join") {
                let Some(Tok::Word(module)) = tokens.get(i + 1) else {
                    return Err(bad_body("FROM must be followed by a module API name"));
                };
                if module.contains('.') || is_keyword(module) {
                    return Err(bad_body("FROM must be followed by a module API name"));
                }
                modules.push(module);
                // `FROM Leads AS l` or `FROM Leads l`
                match (tokens.get(i + 2), tokens.get(i + 3)) {
                    (Some(Tok::Word(a)), Some(Tok::Word(alias)))
                        if a.eq_ignore_ascii_case("as") =>
                    {
                        aliases.push(alias);
                    }
                    (Some(Tok::Word(alias)), _) if !is_keyword(alias) && !alias.contains('.') => {
                        aliases.push(alias);
                    }
                    _ => {}
                }
                i += 2;
                continue;
            }
        }
        i += 1;
    }
    if modules.is_empty() {
        return Err(bad_body(
            "the COQL query has no FROM clause naming a module",
        ));
    }
    let lookup = tokens.iter().any(|t| match t {
        Tok::Word(w) => match w.split_once('.') {
            Some((head, _)) => {
                let own = |list: &[&str]| list.iter().any(|m| m.eq_ignore_ascii_case(head));
                !own(&modules) && !own(&aliases) && !own(USER_LOOKUPS)
            }
            None => false,
        },
        _ => false,
    });
    Ok((modules, lookup))
}

fn coql(map: &ModuleMap, object: &Map<String, Value>, out: &mut Required) -> Result<(), Rejection> {
    let query = match get_exact(object, "select_query")? {
        Some(Value::String(q)) => q,
        Some(_) => return Err(bad_body("`select_query` must be a string")),
        None => return Err(bad_body("the body has no `select_query`")),
    };
    let (modules, lookup) = coql_modules(query)?;
    out.push(Scope::from_parts(
        Service::Crm,
        "coql",
        None,
        Operation::Read,
    ));
    for module in modules {
        out.push(module_scope(
            map,
            module,
            Operation::Read,
            "the module after FROM",
        )?);
    }
    if lookup {
        out.push(modules_read(Operation::Read));
    }
    Ok(())
}

// ---- bulk -------------------------------------------------------------------------------------

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

fn bulk_read(
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

fn bulk_write(
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

// ---- composite --------------------------------------------------------------------------------

const SUB_REQUEST_KEYS: &[&str] = &[
    "sub_request_id",
    "method",
    "uri",
    "params",
    "body",
    "headers",
];
const FORBIDDEN_SUB_HEADERS: &[&str] = &[
    "authorization",
    "x-crm-org",
    "host",
    "cookie",
    "proxy-authorization",
];

fn composite(
    policy: &Policy,
    object: &Map<String, Value>,
    out: &mut Required,
) -> Result<(), Rejection> {
    let subs = match get_exact(object, "__composite_requests")? {
        Some(Value::Array(items)) => items,
        _ => {
            return Err(bad_body(
                "a composite request needs a `__composite_requests` array",
            ))
        }
    };
    if subs.is_empty() || subs.len() > MAX_SUB_REQUESTS {
        return Err(bad_body(format!(
            "a composite request carries 1 to {MAX_SUB_REQUESTS} sub-requests, this one has {}",
            subs.len()
        )));
    }
    for (n, sub) in subs.iter().enumerate() {
        sub_request(policy, n + 1, sub, out)?;
    }
    Ok(())
}

fn prefixed(n: usize, mut rejection: Rejection) -> Rejection {
    rejection.message = format!("sub-request {n}: {}", rejection.message);
    rejection
}

fn sub_request(
    policy: &Policy,
    n: usize,
    sub: &Value,
    out: &mut Required,
) -> Result<(), Rejection> {
    let Value::Object(sub) = sub else {
        return Err(bad_body(format!("sub-request {n} must be an object")));
    };
    for key in sub.keys() {
        if !SUB_REQUEST_KEYS.contains(&key.as_str()) {
            return Err(bad_body(format!(
                "sub-request {n} has an unknown key `{}`; allowed: {}",
                super::scope::sanitize(key),
                SUB_REQUEST_KEYS.join(", ")
            )));
        }
    }
    let verb = match sub.get("method") {
        Some(Value::String(m)) => Verb::from_str_exact(m).ok_or_else(|| {
            bad_body(format!(
                "sub-request {n}: method must be GET, POST, PUT, PATCH or DELETE (upper case)"
            ))
        })?,
        _ => return Err(bad_body(format!("sub-request {n} needs a `method` string"))),
    };
    let uri = match sub.get("uri") {
        Some(Value::String(u)) => u.as_str(),
        _ => return Err(bad_body(format!("sub-request {n} needs a `uri` string"))),
    };
    if uri.contains('#') {
        return Err(bad_body(format!(
            "sub-request {n}: the uri must not contain `#`"
        )));
    }
    let (path, query) = match uri.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (uri, None),
    };
    check_path(path).map_err(|r| prefixed(n, r))?;
    if let Some(q) = query {
        check_query(q).map_err(|r| prefixed(n, r))?;
    }
    match sub.get("params") {
        None | Some(Value::Null) => {}
        Some(Value::Object(params)) => {
            if params.keys().any(|k| is_override_name(k.as_bytes())) {
                return Err(prefixed(n, method_override_rejection("`params`")));
            }
        }
        Some(_) => {
            return Err(bad_body(format!(
                "sub-request {n}: `params` must be an object"
            )))
        }
    }
    match sub.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(headers)) => {
            for key in headers.keys() {
                if is_override_name(key.as_bytes()) {
                    return Err(prefixed(n, method_override_rejection("`headers`")));
                }
                if FORBIDDEN_SUB_HEADERS
                    .iter()
                    .any(|h| h.eq_ignore_ascii_case(key))
                {
                    return Err(bad_body(format!(
                        "sub-request {n}: header `{}` is not allowed inside a composite request",
                        super::scope::sanitize(key)
                    )));
                }
            }
        }
        Some(_) => {
            return Err(bad_body(format!(
                "sub-request {n}: `headers` must be an object"
            )))
        }
    }

    let shown = format!("{} {}", verb.as_str(), path);
    match policy.classify_path(verb, path, query) {
        Step::Reject(r) => Err(prefixed(n, r)),
        Step::Unclassified(Unclassified::NotCrm) => Err(Rejection {
            status: StatusCode::FORBIDDEN,
            code: "PROXY_NOT_CRM",
            message: format!("sub-request {n}: {shown} is outside the Zoho CRM API; it is denied"),
        }),
        Step::Unclassified(Unclassified::UnknownOperation) => Err(Rejection {
            status: StatusCode::FORBIDDEN,
            code: "PROXY_UNKNOWN_OPERATION",
            message: format!(
                "sub-request {n}: {shown} is not a Zoho CRM API operation this proxy knows; it is denied by default"
            ),
        }),
        Step::Scopes(required, None) => {
            out.extend_from(&required);
            Ok(())
        }
        Step::Scopes(required, Some(kind)) => {
            let body = match sub.get("body") {
                Some(Value::Object(b)) => b,
                _ => {
                    return Err(bad_body(format!(
                        "sub-request {n}: {shown} needs a JSON object `body` to be classified"
                    )))
                }
            };
            out.extend_from(&required);
            add_value_scopes(policy, kind, body, out, false).map_err(|r| prefixed(n, r))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::routes::method_op as op_of;

    /// (query, Ok((modules, lookup)) | Err(substring))
    #[allow(clippy::type_complexity)]
    const COQL_CASES: &[(&str, Result<(&[&str], bool), &str>)] = &[
        (
            "select Last_Name from Leads where id is not null",
            Ok((&["Leads"], false)),
        ),
        ("SELECT Email FROM Contacts", Ok((&["Contacts"], false))),
        (
            "select a from Leads where b = 'x from Contacts'",
            Ok((&["Leads"], false)),
        ),
        (
            "select a from Leads where b = 'it''s from Contacts'",
            Ok((&["Leads"], false)),
        ),
        (
            "select Account_Name.Account_Name from Contacts",
            Ok((&["Contacts"], true)),
        ),
        (
            "select Owner.name, Created_By.email from Leads",
            Ok((&["Leads"], false)),
        ),
        (
            "select l.Last_Name from Leads as l",
            Ok((&["Leads"], false)),
        ),
        (
            "select a from Leads join Contacts on x = y",
            Ok((&["Leads", "Contacts"], false)),
        ),
        (
            "select a from Leads where id in (select b from Deals)",
            Ok((&["Leads", "Deals"], false)),
        ),
        (
            "select a from Leads where b = 'x\\' from Contacts'",
            Err("backslash"),
        ),
        ("select a from Leads where b = 'open", Err("unterminated")),
        ("select a from Leads -- from Contacts", Err("comment")),
        ("select a from Leads; select b from Contacts", Err("`;`")),
        ("select a where b = 1", Err("no FROM")),
        ("delete from Leads", Err("start with SELECT")),
        ("select a from \"Contacts\"", Err("double quotes")),
        ("select a from where", Err("FROM must be followed")),
    ];

    #[test]
    fn coql_table() {
        for (query, expected) in COQL_CASES {
            match (expected, coql_modules(query)) {
                (Ok((mods, lookup)), Ok((got, got_lookup))) => {
                    assert_eq!(&got[..], *mods, "case {query:?}: modules");
                    assert_eq!(got_lookup, *lookup, "case {query:?}: lookup traversal");
                }
                (Err(needle), Err(r)) => assert!(
                    r.message.contains(needle),
                    "case {query:?}: message {:?} should contain {needle:?}",
                    r.message
                ),
                (exp, got) => panic!("case {query:?}: expected {exp:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn duplicate_and_case_variant_keys_are_refused() {
        let dup =
            br#"{"select_query":"select a from Leads","select_query":"select a from Contacts"}"#;
        let err = parse_object(dup).expect_err("duplicate keys are refused");
        assert!(
            err.message.contains("duplicate key"),
            "message names the duplicate: {}",
            err.message
        );
        let escaped = br#"{"select_query":"select a from Leads","select\u005fquery":"select a from Contacts"}"#;
        assert!(
            parse_object(escaped).is_err(),
            "a key spelled with an escape is still a duplicate"
        );
        let variant =
            br#"{"select_query":"select a from Leads","SELECT_QUERY":"select a from Contacts"}"#;
        let object = parse_object(variant).expect("distinct keys parse");
        let err = get_exact(&object, "select_query").expect_err("case-variant key is refused");
        assert!(
            err.message.contains("letter case"),
            "message explains the case clash: {}",
            err.message
        );
    }

    #[test]
    fn method_ops_match_the_table_convention() {
        assert_eq!(
            op_of(Verb::Head),
            Operation::Read,
            "HEAD needs what GET needs"
        );
        assert_eq!(op_of(Verb::Patch), Operation::Update, "PATCH updates");
    }
}
