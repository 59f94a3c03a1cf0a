//! Coverage of every operation in Zoho's published CRM v8 OpenAPI (422 rows of
//! `tests/data/crm-v8-operations.tsv`): each is classified and compared with the reviewed
//! expectation in `tests/data/crm-v8-expected.tsv`.

use std::collections::BTreeSet;

use http::{Method, Uri};
use zoho_auth_proxy::policy::{Evaluation, Policy, PolicyMode};

mod policy_support;
use policy_support::{fill, sample_body};

use policy_support::OPERATIONS;
const EXPECTED: &str = include_str!("data/crm-v8-expected.tsv");

/// The classification of one operation: the sorted required scopes, or a refusal code.
fn classify(policy: &Policy, method: &str, template: &str) -> String {
    let method = Method::from_bytes(method.as_bytes()).expect("spec method is a token");
    let target = fill(template);
    let uri: Uri = target.parse().expect("filled spec path parses");
    let first = policy.evaluate(&method, &uri);
    let evaluation = match &first {
        Evaluation::NeedsBody { pending, .. } => {
            let body = sample_body(pending.kind());
            let e = policy.evaluate_body(pending, body.as_bytes());
            return describe(&e, &method);
        }
        e => e.clone(),
    };
    describe(&evaluation, &method)
}

fn describe(e: &Evaluation<'_>, method: &Method) -> String {
    match e.required() {
        Some(r) if r.unclassified_reason().is_none() => {
            let set: BTreeSet<String> = r.to_strings().into_iter().collect();
            set.into_iter().collect::<Vec<_>>().join(" ")
        }
        _ => e
            .error_code()
            .map(|(_, c)| c.to_string())
            .unwrap_or_else(|| {
                format!(
                    "UNEXPECTED {}",
                    e.denial_message(method).unwrap_or_default()
                )
            }),
    }
}

fn policy() -> Policy {
    // Allow nothing relevant: only the classification matters here.
    Policy::new(&["ZohoCRM.org.READ".to_string()], &[], PolicyMode::Enforce).expect("valid policy")
}

fn operations() -> Vec<(String, String)> {
    OPERATIONS
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .skip(1)
        .map(|l| {
            let mut cols = l.split('\t');
            let method = cols.next().expect("method column").to_string();
            let path = cols.next().expect("path column").to_string();
            (method, path)
        })
        .collect()
}

/// (method, path template, expected) rows; the same method + path may appear twice in the spec.
fn expectations() -> Vec<(String, String, String)> {
    EXPECTED
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut cols = l.split('\t');
            let method = cols.next().expect("method").to_string();
            let path = cols.next().expect("path").to_string();
            let expected = cols.next().expect("expected scopes").to_string();
            (method, path, expected)
        })
        .collect()
}

#[test]
fn every_v8_operation_is_classified_as_reviewed() {
    let policy = policy();
    let ops = operations();
    assert_eq!(ops.len(), 422, "the spec file holds 422 operations");
    let expected = expectations();
    let mut mismatches = Vec::new();
    let mut unknown = Vec::new();
    for (method, path) in &ops {
        let got = classify(&policy, method, path);
        let want = expected
            .iter()
            .find(|(m, p, _)| m == method && p == path)
            .map(|(_, _, e)| e.as_str());
        match want {
            None => mismatches.push(format!(
                "{method} {path}: no reviewed expectation (got {got})"
            )),
            Some(want) if want != got => {
                mismatches.push(format!("{method} {path}: expected {want}, got {got}"))
            }
            Some(_) => {}
        }
        if got.starts_with("PROXY_") && !path.starts_with("/{download_url}") {
            unknown.push(format!("{method} {path}: {got}"));
        }
    }
    let matched = ops.len() - mismatches.len();
    let ratio = matched as f64 / ops.len() as f64;
    assert!(
        ratio >= 0.98,
        "only {matched}/{} operations match the reviewed expectation:\n{}",
        ops.len(),
        mismatches.join("\n")
    );
    assert!(
        mismatches.is_empty(),
        "mismatches against the reviewed expectation:\n{}",
        mismatches.join("\n")
    );
    assert!(
        unknown.is_empty(),
        "CRM operations that fall to unknown:\n{}",
        unknown.join("\n")
    );
}

/// Prints a draft expectation file: `cargo test --test policy_operations -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_draft_expectations() {
    let policy = policy();
    let mut seen = BTreeSet::new();
    for (method, path) in operations() {
        if seen.insert((method.clone(), path.clone())) {
            println!("{method}\t{path}\t{}", classify(&policy, &method, &path));
        }
    }
}
