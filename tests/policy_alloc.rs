//! The hot path allocates nothing: `Policy::evaluate` for body-less requests (allowed, denied,
//! unknown, not-CRM and rejected-by-path alike) is measured with a counting global allocator.

use std::alloc::System;

use http::{Method, Uri};
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use zoho_auth_proxy::policy::{Evaluation, Policy, PolicyMode};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const REQUESTS: &[(&str, &str)] = &[
    ("GET", "/crm/v8/Leads?fields=Last_Name,Email&per_page=2"),
    ("HEAD", "/crm/v8/LEADS/4150868000000224005"),
    ("GET", "/crm/v8/Contacts"),
    ("PUT", "/crm/v8/Leads/1/Contacts/2"),
    ("GET", "/crm/v8/Leads/search?word=x"),
    ("GET", "/crm/v8/settings/fields?module=Leads&"),
    ("GET", "/crm/v8/users?type=CurrentUser"),
    ("POST", "/crm/v8/Deals/1/actions/send_mail"),
    ("GET", "/crm/v8/settings/data_sharing/rules/1"),
    ("GET", "/crm/bulk/v8/read/1/result"),
    ("GET", "/crm/v8/Foo/1/bar/baz/qux"),
    ("GET", "/oauth/v2/token"),
    ("GET", "/crm/v8/My_Module/1/Notes"),
];

#[test]
fn evaluate_does_not_allocate_for_body_less_requests() {
    let allow: Vec<String> = ["ZohoCRM.modules.leads.READ", "ZohoCRM.settings.ALL"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let map = vec![("My_Module".to_string(), "custom".to_string())];
    let policy = Policy::new(&allow, &map, PolicyMode::Enforce).expect("valid policy");
    let requests: Vec<(Method, Uri)> = REQUESTS
        .iter()
        .map(|(m, t)| {
            (
                Method::from_bytes(m.as_bytes()).expect("token"),
                t.parse().expect("uri parses"),
            )
        })
        .collect();
    // Warm-up: one-time tables (`OnceLock`) are built on first use, not per request.
    for (method, uri) in &requests {
        let _ = policy.evaluate(method, uri);
    }

    // The counter is process-wide and the test harness's own thread may allocate now and then
    // (more so on a loaded machine), so measure several rounds and keep the quietest: an
    // allocation inside `evaluate` would show up in every round.
    let mut allowed = 0;
    let mut quietest: Option<stats_alloc::Stats> = None;
    for _ in 0..10 {
        let region = Region::new(GLOBAL);
        for _ in 0..100 {
            for (method, uri) in &requests {
                if let Evaluation::Allowed { .. } = policy.evaluate(method, uri) {
                    allowed += 1;
                }
            }
        }
        let stats = region.change();
        if quietest.is_none_or(|q| {
            stats.allocations + stats.reallocations < q.allocations + q.reallocations
        }) {
            quietest = Some(stats);
        }
    }
    let stats = quietest.expect("ten rounds measured");
    assert_eq!(
        stats.allocations, 0,
        "evaluate allocated on the hot path in every round: {stats:?}"
    );
    assert_eq!(
        stats.reallocations, 0,
        "evaluate reallocated on the hot path in every round: {stats:?}"
    );
    assert!(allowed > 0, "the measured loop includes allowed requests");
}
