//! Property tests: no spelling variant of a path gets a broader decision than its canonical form.
//!
//! Each case takes a canonical request (every v8 operation plus a few extra shapes), applies one
//! to three mutations (letter case, percent-encoding of any byte, dot segments, doubled slashes,
//! backslashes, `;` parameters, trailing `/`, non-ASCII, encoded `/`, fragments, method-override
//! query parameters, lower-case method) and checks the invariant:
//!
//! > the variant is rejected, or it gets exactly the decision, required scopes and missing scopes
//! > of its canonical form, and the target it returns is byte-identical to the variant's path.
//!
//! A second property feeds arbitrary bytes as request targets and checks that anything not
//! rejected is canonical by an independent definition. This is what CI runs in place of the
//! cargo-fuzz target (`fuzz/fuzz_targets/classify.rs`), which checks the same invariants.

use std::sync::OnceLock;

use http::{Method, Uri};
use proptest::prelude::*;
use zoho_auth_proxy::policy::{Evaluation, Policy, PolicyMode};

mod policy_support;
use policy_support::invariants;

fn corpus() -> &'static [(String, String)] {
    static CORPUS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    CORPUS.get_or_init(policy_support::corpus)
}

fn policy() -> &'static Policy {
    static POLICY: OnceLock<Policy> = OnceLock::new();
    POLICY.get_or_init(build_policy)
}

fn build_policy() -> Policy {
    let allow: Vec<String> = [
        "ZohoCRM.modules.leads.READ",
        "ZohoCRM.modules.custom.ALL",
        "ZohoCRM.settings.fields.READ",
        "ZohoCRM.users.READ",
        "ZohoCRM.coql.READ",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Policy::new(&allow, &[], PolicyMode::Enforce).expect("valid test policy")
}

/// A comparable summary of a decision (without the target).
#[derive(Debug, PartialEq, Eq)]
enum Summary {
    Allowed(Vec<String>),
    Denied(Vec<String>, Vec<String>, Option<&'static str>),
    NeedsBody(String, Vec<String>),
    Rejected,
}

fn summarize(e: &Evaluation<'_>) -> Summary {
    match e {
        Evaluation::Allowed { required, .. } => Summary::Allowed(required.to_strings()),
        Evaluation::Denied {
            required, missing, ..
        } => Summary::Denied(
            required.to_strings(),
            missing.to_strings(),
            e.error_code().map(|(_, c)| c),
        ),
        Evaluation::NeedsBody { pending, .. } => Summary::NeedsBody(
            format!("{:?}", pending.kind()),
            pending.base_required().to_strings(),
        ),
        Evaluation::Rejected(_) => Summary::Rejected,
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipCase(usize),
    UpperAll,
    LowerAll,
    PercentEncode(usize, bool),
    DotSegment(usize),
    DotDotSegment(usize),
    EncodedDots(usize),
    DoubleSlash(usize),
    Backslash(usize),
    Semicolon(usize),
    TrailingSlash,
    TrailingDot,
    NonAscii(usize, char),
    EncodedSlash(usize),
    Fragment,
    OverrideQuery(usize),
    LowerMethod,
}

/// Decodes a cheap generated tuple into a mutation (plain tuples keep generation fast in debug
/// builds; the weights favour letter-case changes, the subtlest variant).
fn mutation((kind, at, flag): (u8, usize, bool)) -> Mutation {
    const NON_ASCII: [char; 4] = ['é', 'Ｌ', '\u{212a}', 'ı'];
    match kind % 20 {
        0..=3 => Mutation::FlipCase(at),
        4 => Mutation::UpperAll,
        5 => Mutation::LowerAll,
        6 | 7 => Mutation::PercentEncode(at, flag),
        8 => Mutation::DotSegment(at),
        9 => Mutation::DotDotSegment(at),
        10 => Mutation::EncodedDots(at),
        11 => Mutation::DoubleSlash(at),
        12 => Mutation::Backslash(at),
        13 => Mutation::Semicolon(at),
        14 => {
            if flag {
                Mutation::TrailingSlash
            } else {
                Mutation::TrailingDot
            }
        }
        15 => Mutation::NonAscii(at, NON_ASCII[at % NON_ASCII.len()]),
        16 => Mutation::EncodedSlash(at),
        17 => Mutation::Fragment,
        18 => Mutation::OverrideQuery(at),
        _ => Mutation::LowerMethod,
    }
}

/// Byte offsets of `/` in the path (segment boundaries).
fn slashes(path: &str) -> Vec<usize> {
    path.match_indices('/').map(|(i, _)| i).collect()
}

fn apply(method: &mut String, path: &mut String, query: &mut Option<String>, m: &Mutation) {
    let n = path.len().max(1);
    match *m {
        Mutation::FlipCase(i) => {
            let i = i % n;
            if let Some(c) = path.get(i..).and_then(|rest| rest.chars().next()) {
                if c.is_ascii_alphabetic() {
                    let flipped = if c.is_ascii_uppercase() {
                        c.to_ascii_lowercase()
                    } else {
                        c.to_ascii_uppercase()
                    };
                    path.replace_range(i..i + 1, &flipped.to_string());
                }
            }
        }
        Mutation::UpperAll => *path = path.to_ascii_uppercase(),
        Mutation::LowerAll => *path = path.to_ascii_lowercase(),
        Mutation::PercentEncode(i, upper) => {
            let i = i % n;
            if i < path.len() && path.as_bytes()[i].is_ascii() {
                let b = path.as_bytes()[i];
                let enc = if upper {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                };
                path.replace_range(i..i + 1, &enc);
            }
        }
        Mutation::DotSegment(i) | Mutation::DotDotSegment(i) | Mutation::EncodedDots(i) => {
            let s = slashes(path);
            let at = s[i % s.len()];
            let ins = match m {
                Mutation::DotSegment(_) => "/.",
                Mutation::DotDotSegment(_) => "/x/..",
                _ => "/%2e%2e",
            };
            path.insert_str(at, ins);
        }
        Mutation::DoubleSlash(i) => {
            let s = slashes(path);
            path.insert(s[i % s.len()], '/');
        }
        Mutation::Backslash(i) => {
            let s = slashes(path);
            let at = s[i % s.len()];
            path.replace_range(at..at + 1, "\\");
        }
        Mutation::Semicolon(i) => {
            let s = slashes(path);
            let at = s[i % s.len()];
            path.insert_str(at, ";x=1");
        }
        Mutation::TrailingSlash => path.push('/'),
        Mutation::TrailingDot => path.push_str("/."),
        Mutation::NonAscii(i, c) => {
            let mut i = i % n;
            while !path.is_char_boundary(i) {
                i -= 1;
            }
            path.insert(i, c);
        }
        Mutation::EncodedSlash(i) => {
            let s = slashes(path);
            let at = s[i % s.len()];
            path.replace_range(at..at + 1, "%2F");
        }
        Mutation::Fragment => path.push_str("#/../Contacts"),
        Mutation::OverrideQuery(i) => {
            const NAMES: &[&str] = &[
                "_method=DELETE",
                "X-HTTP-Method-Override=DELETE",
                "x-http-method=PUT",
                "X-Method-Override=POST",
                "%5Fmethod=DELETE",
                "%255Fmethod=DELETE",
                "_METHOD=delete",
                "x_http_method_override=DELETE",
            ];
            let p = NAMES[i % NAMES.len()];
            *query = Some(match query.take() {
                Some(q) => format!("{q}&{p}"),
                None => p.to_string(),
            });
        }
        Mutation::LowerMethod => *method = method.to_ascii_lowercase(),
    }
}

/// (decision, returned (path, query), the parsed request target)
type Observed = (Summary, Option<(String, Option<String>)>, Uri);

fn evaluate_summary(policy: &Policy, method: &str, target: &str) -> Option<Observed> {
    let method = Method::from_bytes(method.as_bytes()).ok()?;
    let uri: Uri = target.parse().ok()?;
    let e = policy.evaluate(&method, &uri);
    let target = e
        .target()
        .map(|t| (t.path.to_string(), t.query.map(str::to_string)));
    Some((summarize(&e), target, uri))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn variants_never_get_a_broader_decision(
        index in any::<usize>(),
        raw_mutations in prop::collection::vec(any::<(u8, usize, bool)>(), 1..=3),
    ) {
        let mutations: Vec<Mutation> = raw_mutations.into_iter().map(mutation).collect();
        let corpus = corpus();
        let policy = policy();
        let (base_method, base_path) = &corpus[index % corpus.len()];
        let (canonical, _, _) = evaluate_summary(policy, base_method, base_path)
            .expect("corpus entries parse");

        let mut method = base_method.clone();
        let mut path = base_path.clone();
        let mut query = None;
        for m in &mutations {
            apply(&mut method, &mut path, &mut query, m);
        }
        let target = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };
        // A target that `http::Uri` refuses never reaches the proxy (hyper answers 400 itself).
        let Some((variant, returned, uri)) = evaluate_summary(policy, &method, &target) else {
            return Ok(());
        };
        if variant == Summary::Rejected {
            return Ok(());
        }
        prop_assert_eq!(
            &variant, &canonical,
            "variant {} {} of {} {} (mutations {:?}) got a different decision",
            method, target, base_method, base_path, mutations
        );
        let (returned_path, returned_query) = returned.expect("a non-rejected evaluation has a target");
        prop_assert_eq!(returned_path.as_str(), uri.path(), "target path is the request's path, byte for byte");
        prop_assert_eq!(returned_query.as_deref(), uri.query(), "query forwarded unchanged");
    }

    #[test]
    fn arbitrary_targets_are_rejected_or_canonical(
        raw in prop::collection::vec(any::<u8>(), 0..40),
        method_index in any::<usize>(),
    ) {
        // Map random bytes onto an alphabet weighted towards CRM path characters, with the
        // dangerous punctuation and arbitrary bytes mixed in.
        const FRIENDLY: &[u8] = b"/crmv8LeadsContacts_.-0123456789settingsactions";
        const DANGEROUS: &[u8] = b"%;\\:@,=+!$'()*~?#&";
        const METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "get", "OPTIONS", "TRACE"];
        let raw: Vec<u8> = raw
            .iter()
            .enumerate()
            .map(|(i, b)| match b % 11 {
                0..=7 => FRIENDLY[(*b as usize + i) % FRIENDLY.len()],
                8 | 9 => DANGEROUS[(*b as usize + i) % DANGEROUS.len()],
                _ => b.wrapping_mul(31),
            })
            .collect();
        let method = METHODS[method_index % METHODS.len()];
        let policy = policy();
        let mut text = String::from("/");
        text.push_str(&String::from_utf8_lossy(&raw));
        let method = Method::from_bytes(method.as_bytes()).expect("listed methods are tokens");
        let verdict = invariants::check_request(policy, &method, &text);
        prop_assert_eq!(verdict, Ok(()), "policy invariant");
    }

}

proptest! {
    // Regex-generated bodies are slower to produce in debug builds: fewer cases.
    #![proptest_config(ProptestConfig { cases: 2_000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bodies_never_panic_or_drop_base_scopes(
        kind in prop::sample::select(vec!["coql", "bulk_read", "bulk_write", "composite"]),
        body in prop_oneof![
            ".{0,80}",
            r#"\{"select_query":"select [A-Za-z_.,' ]{0,30} from [A-Za-z_]{1,12}( where [a-z =']{0,20})?"\}"#,
            r#"\{"__composite_requests":\[\{"method":"(GET|DELETE|get)","uri":"/crm/v8/[A-Za-z_./%]{0,20}"\}\]\}"#,
            r#"\{"query":\{"module":\{"api_name":"[A-Za-z_]{0,12}"\}\}\}"#,
        ],
    ) {
        let input = format!("BODY {kind}\n{body}");
        let verdict = invariants::check_input(policy(), input.as_bytes());
        prop_assert_eq!(verdict, Ok(()), "policy invariant");
    }
}

#[test]
fn catalogue_bypass_variants_are_rejected_or_equal() {
    // Security catalogue A1-A19 against an allowlist of Leads only.
    let allow = vec!["ZohoCRM.modules.leads.READ".to_string()];
    let policy = Policy::new(&allow, &[], PolicyMode::Enforce).expect("valid");
    const CASES: &[(&str, &str, &str)] = &[
        // (method, target, expected: "rejected" | "denied" | "allowed")
        ("GET", "/crm/v7/Leads/../Contacts", "rejected"),
        ("GET", "/crm/v7/Leads/%2e%2e/Contacts", "rejected"),
        ("GET", "/crm/v7/Leads/%2E%2E/Contacts", "rejected"),
        ("GET", "/crm/v7/Leads/.%2e/Contacts", "rejected"),
        ("GET", "/crm/v7/Leads/%2e./Contacts", "rejected"),
        ("GET", "/crm/v7/Leads%2F..%2FContacts", "rejected"),
        ("GET", "/crm/v7/Leads%5C..%5CContacts", "rejected"),
        ("GET", "/crm/v7/Leads%252F..%252FContacts", "rejected"),
        ("GET", "/crm/v7/%254Ceads", "rejected"),
        ("GET", "/crm/v7/Leads\\..\\Contacts", "rejected"),
        ("GET", "/crm/v7//Leads", "rejected"),
        ("GET", "//crm/v7/Leads", "rejected"),
        ("GET", "/crm//v7/Leads", "rejected"),
        ("GET", "/crm/v7/Leads/", "rejected"),
        ("GET", "/crm/v7/Leads/.", "rejected"),
        ("GET", "/.", "rejected"),
        ("GET", "/crm/v7/LeadsX", "denied"),
        ("GET", "/crm/v7/Leads_Archive", "denied"),
        ("GET", "/crm/v7/Leads.json", "denied"),
        ("GET", "/crm/v7/Leads%20", "rejected"),
        ("GET", "/crm/v7/Leads/123/Contacts", "denied"),
        ("GET", "/crm/v7/leads", "allowed"),
        ("GET", "/crm/v7/LEADS", "allowed"),
        ("GET", "/crm/v7/lEaDs", "allowed"),
        ("GET", "/crm/v7/CONTACTS", "denied"),
        ("GET", "/CRM/v7/Leads", "rejected"),
        ("GET", "/crm/V7/Leads", "rejected"),
        ("GET", "/crm/v7/Le%61ds", "rejected"),
        ("GET", "/crm/v7/%4Ceads", "rejected"),
        ("GET", "/crm/v7/Leads;x=1", "rejected"),
        ("GET", "/crm/v7/Leads;/../Contacts", "rejected"),
        ("GET", "/crm/v7/..;/v7/Contacts", "rejected"),
        ("GET", "/crm/v7/Contacts#/../Leads", "denied"),
        ("GET", "/crm/v7/Leads#/../Contacts", "allowed"),
        ("GET", "/crm/v7/Leads%23", "rejected"),
        ("GET", "/crm/v7/Leads%C0%AF..%C0%AFContacts", "rejected"),
        ("GET", "/crm/v7/Leads%C0%AE%C0%AE", "rejected"),
        ("GET", "/crm/v7/%EF%BC%AC%20eads", "rejected"),
        ("GET", "/crm/v7/Leads%00", "rejected"),
        ("GET", "/crm/v7/Leads%0d%0aX:1", "rejected"),
        ("GET", "/crm/v7/Leads%09", "rejected"),
        ("GET", "/crm/v7/Leads%3F/../../Contacts", "rejected"),
        ("GET", "http://evil.example/crm/v7/Leads", "rejected"),
        ("GET", "https://www.zohoapis.eu/crm/v7/Leads", "rejected"),
        ("GET", "http://user@127.0.0.1:9999/crm/v7/Leads", "rejected"),
        ("GET", "http://evil.example", "rejected"),
        ("GET", "evil.example:443", "rejected"),
        ("OPTIONS", "*", "rejected"),
        ("GET", "*", "rejected"),
        ("GET", "/books/v3/invoices", "denied"),
        ("GET", "/crm/bulk/v7/read", "denied"),
        ("GET", "/oauth/v2/token", "denied"),
        ("GET", "/crm/v2.1/Leads", "allowed"),
        ("GET", "/crm/v8/Leads", "allowed"),
        ("GET", "/crm/v7/Leads?_method=DELETE", "rejected"),
        (
            "GET",
            "/crm/v7/Leads?x-http-method-override=DELETE",
            "rejected",
        ),
        (
            "GET",
            "/crm/v7/Leads?fields=Last_Name&page=1&per_page=2&ids=1,2",
            "allowed",
        ),
        ("HEAD", "/crm/v7/Leads", "allowed"),
        ("HEAD", "/crm/v7/Contacts", "denied"),
        ("get", "/crm/v7/Leads", "rejected"),
        ("FOO", "/crm/v7/Leads", "rejected"),
        ("PROPFIND", "/crm/v7/Leads", "rejected"),
        ("MOVE", "/crm/v7/Leads", "rejected"),
        ("TRACE", "/crm/v7/Leads", "rejected"),
        ("CONNECT", "/crm/v7/Leads", "rejected"),
        ("OPTIONS", "/crm/v7/Leads", "rejected"),
        ("POST", "/crm/v7/Leads/actions/mass_delete", "denied"),
    ];
    for (method, target, expected) in CASES {
        let method = Method::from_bytes(method.as_bytes()).expect("token");
        let Ok(uri) = target.parse::<Uri>() else {
            assert_eq!(
                *expected, "rejected",
                "case {target}: http::Uri refuses it, hyper answers 400"
            );
            continue;
        };
        let e = policy.evaluate(&method, &uri);
        let got = match e {
            Evaluation::Allowed { .. } => "allowed",
            Evaluation::Denied { .. } => "denied",
            Evaluation::Rejected(_) => "rejected",
            Evaluation::NeedsBody { .. } => "needs_body",
        };
        assert_eq!(got, *expected, "case {method} {target}");
        if let Some(t) = e.target() {
            assert_eq!(
                t.path,
                uri.path(),
                "case {target}: forwarded path is the checked path"
            );
        }
    }
}

#[test]
fn fuzz_seed_corpus_satisfies_the_invariants() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("fuzz/seeds exists") {
        let path = entry.expect("readable dir entry").path();
        let data = std::fs::read(&path).expect("readable seed");
        if let Err(violation) = invariants::check_input(policy(), &data) {
            panic!("seed {}: {violation}", path.display());
        }
        count += 1;
    }
    assert!(
        count >= 40,
        "the seed corpus holds the catalogue cases ({count} found)"
    );
}
