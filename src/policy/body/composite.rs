//! Composite requests: 1 to 5 sub-requests, each checked (path, query, method overrides,
//! headers) and classified like a top-level request; a composite inside a composite is refused.

use http::StatusCode;
use serde_json::{Map, Value};

use super::{add_value_scopes, bad_body, get_exact};
use crate::policy::canonical::{
    check_path, check_query, is_override_name, method_override_rejection, Verb,
};
use crate::policy::required::{Required, Unclassified};
use crate::policy::{Policy, Rejection, Step};

/// Zoho accepts 1..=5 sub-requests.
const MAX_SUB_REQUESTS: usize = 5;

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

pub(super) fn composite(
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
                crate::policy::scope::sanitize(key),
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
                        crate::policy::scope::sanitize(key)
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
