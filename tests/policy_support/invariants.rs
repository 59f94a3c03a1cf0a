//! The policy invariants shared by the property tests (`tests/policy_variants.rs`) and the
//! cargo-fuzz target (`fuzz/fuzz_targets/classify.rs`, which includes this file by path).
//!
//! Input format used by both: UTF-8 (lossy) text; the first line is the method (or
//! `BODY <kind>` to fuzz a body: `coql`, `bulk_read`, `bulk_write`, `composite`), the rest is
//! the request target (or the body).

use http::{Method, Uri};
use zoho_auth_proxy::policy::{Evaluation, Policy, PolicyMode};

/// The allowlist the invariants run against: broad enough that most paths are decided.
pub fn fuzz_policy() -> Policy {
    let allow: Vec<String> = [
        "ZohoCRM.modules.leads.READ",
        "ZohoCRM.modules.custom.ALL",
        "ZohoCRM.settings.fields.READ",
        "ZohoCRM.users.READ",
        "ZohoCRM.coql.READ",
        "ZohoCRM.bulk.READ",
        "ZohoCRM.composite_requests.CUSTOM",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Policy::new(&allow, &[], PolicyMode::Enforce).expect("valid fuzz policy")
}

/// A comparable summary of a decision, without the target.
pub fn summary(e: &Evaluation<'_>) -> String {
    match e {
        Evaluation::Allowed { required, .. } => format!("allowed {required}"),
        Evaluation::Denied {
            required, missing, ..
        } => {
            format!("denied {required} missing {missing} {:?}", e.error_code())
        }
        Evaluation::NeedsBody { pending, .. } => {
            format!("needs {:?} {}", pending.kind(), pending.base_required())
        }
        Evaluation::Rejected(r) => format!("rejected {}", r.code),
    }
}

/// An independent definition of a canonical path.
pub fn is_canonical(path: &str) -> bool {
    if path == "/" {
        return true;
    }
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    rest.split('/').all(|seg| {
        !seg.is_empty()
            && !seg.chars().all(|c| c == '.')
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    })
}

const CLASSIFIED: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"];

/// Checks one request. `Err` describes the violated invariant.
pub fn check_request(policy: &Policy, method: &Method, target: &str) -> Result<(), String> {
    let Ok(uri) = target.parse::<Uri>() else {
        // hyper never hands the proxy a target `http::Uri` refuses.
        return Ok(());
    };
    let e = policy.evaluate(method, &uri);
    let Some(t) = e.target() else {
        return Ok(());
    };
    if t.path != uri.path() || t.query != uri.query() {
        return Err(format!("target {t} differs from the request's {uri}"));
    }
    if !is_canonical(t.path) {
        return Err(format!("non-canonical path {:?} was not rejected", t.path));
    }
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(format!(
            "absolute or authority-form target {uri} was not rejected"
        ));
    }
    if !CLASSIFIED.contains(&method.as_str()) {
        return Err(format!("method {method} was classified"));
    }
    if let Some(q) = t.query {
        let lower = q.to_ascii_lowercase();
        if lower
            .split(['&', ';'])
            .any(|p| p.split('=').next() == Some("_method"))
        {
            return Err(format!("method-override query {q:?} was not rejected"));
        }
    }
    // Letter case: the all-lower-case spelling of the path is rejected or decided identically.
    let lower_path = t.path.to_ascii_lowercase();
    if lower_path != t.path {
        let lower_target = match t.query {
            Some(q) => format!("{lower_path}?{q}"),
            None => lower_path,
        };
        if let Ok(lower_uri) = lower_target.parse::<Uri>() {
            let lower = policy.evaluate(method, &lower_uri);
            if !matches!(lower, Evaluation::Rejected(_)) && summary(&lower) != summary(&e) {
                return Err(format!(
                    "{method} {lower_target} got `{}` but {method} {uri} got `{}`",
                    summary(&lower),
                    summary(&e)
                ));
            }
        }
    }
    Ok(())
}

/// Runs one fuzz input (see the module doc for the format).
pub fn check_input(policy: &Policy, data: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(data);
    let (head, rest) = text.split_once('\n').unwrap_or((&text, ""));
    if let Some(kind) = head.strip_prefix("BODY ") {
        let path = match kind.trim() {
            "coql" => "/crm/v8/coql",
            "bulk_read" => "/crm/bulk/v8/read",
            "bulk_write" => "/crm/bulk/v8/write",
            _ => "/crm/v8/__composite_requests",
        };
        let uri: Uri = path.parse().map_err(|e| format!("{e}"))?;
        let Evaluation::NeedsBody { pending, .. } = policy.evaluate(&Method::POST, &uri) else {
            return Err(format!("POST {path} did not ask for a body"));
        };
        let e = policy.evaluate_body(&pending, rest.as_bytes());
        if let Evaluation::Allowed { required, .. } | Evaluation::Denied { required, .. } = &e {
            for scope in pending.base_required() {
                if !required.contains(scope) && required.unclassified_reason().is_none() {
                    return Err(format!("body decision dropped the base scope {scope}"));
                }
            }
        }
        if matches!(e, Evaluation::NeedsBody { .. }) {
            return Err("evaluate_body asked for a body again".to_string());
        }
        return Ok(());
    }
    let Ok(method) = Method::from_bytes(head.trim_end_matches('\r').as_bytes()) else {
        return Ok(());
    };
    check_request(policy, &method, rest)
}
