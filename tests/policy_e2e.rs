//! The scope policy through the running proxy: denied and malformed requests never reach the
//! upstream, allowed ones arrive byte-identical in path, report mode forwards and counts, and
//! `explain` / `check` print the decision.

mod common;

use common::*;
use std::time::Duration;

const ALLOW: &[&str] = &[
    "ZohoCRM.modules.leads.READ",
    "ZohoCRM.coql.READ",
    "ZohoCRM.composite_requests.CUSTOM",
];

/// (method, target, body, expected status; 0 = forwarded, whatever the fake answers)
const CASES: &[(&str, &str, &str, u16)] = &[
    ("GET", "/crm/v8/Leads", "", 200),
    ("GET", "/crm/v8/leads", "", 200),
    ("GET", "/crm/v8/LEADS", "", 200),
    ("HEAD", "/crm/v8/Leads", "", 0),
    ("GET", "/crm/v2.1/Leads", "", 200),
    ("GET", "/crm/v8/Contacts", "", 403),
    ("GET", "/crm/v8/CONTACTS", "", 403),
    (
        "POST",
        "/crm/v8/Leads",
        "{\"data\":[{\"Last_Name\":\"x\"}]}",
        403,
    ),
    ("DELETE", "/crm/v8/Leads/554023000000235011", "", 403),
    ("GET", "/crm/v8/Leads/554023000000235011/Contacts", "", 403),
    ("GET", "/crm/v8/LeadsX", "", 403),
    ("GET", "/oauth/v2/token", "", 403),
    ("GET", "/", "", 403),
    ("GET", "/crm/v8/Leads/../Contacts", "", 400),
    ("GET", "/crm/v8/Leads/%2e%2e/Contacts", "", 400),
    ("GET", "/crm/v8//Leads", "", 400),
    ("GET", "/crm/v8/Le%61ds", "", 400),
    ("GET", "/crm/v8/Leads;x=1", "", 400),
    ("GET", "/crm/v8/Leads?_method=DELETE", "", 400),
    (
        "POST",
        "/crm/v8/coql",
        "{\"select_query\":\"select Last_Name from Leads where Last_Name is not null\"}",
        200,
    ),
    (
        "POST",
        "/crm/v8/coql",
        "{\"select_query\":\"select Email from Contacts where id is not null\"}",
        403,
    ),
    ("POST", "/crm/v8/coql", "{not json", 400),
    (
        "POST",
        "/crm/v8/__composite_requests",
        "{\"__composite_requests\":[{\"method\":\"DELETE\",\"uri\":\"/crm/v8/Contacts/1\"}]}",
        403,
    ),
    ("TRACE", "/crm/v8/Leads", "", 405),
    ("OPTIONS", "/crm/v8/Leads", "", 405),
];

#[tokio::test]
async fn decisions_through_the_proxy_and_nothing_denied_reaches_zoho() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(ALLOW, "")).await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await);
    for (method, target, body, expected) in CASES {
        zoho.control().clear_crm_requests();
        let request = format!(
            "{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let response = raw(proxy.proxy, request.as_bytes(), Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&response);
        let status: u16 = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if *expected != 0 {
            assert_eq!(status, *expected, "{method} {target}: {text}");
        }
        let seen = zoho.control().crm_requests();
        if *expected == 200 || *expected == 0 {
            assert_eq!(seen.len(), 1, "{method} {target}: forwarded once");
            let path = seen[0].path_and_query.split('?').next().unwrap_or("");
            let sent = target.split('?').next().unwrap_or("");
            assert_eq!(path, sent, "{method} {target}: forwarded byte-identical");
        } else {
            assert!(
                seen.is_empty(),
                "{method} {target}: a refused request never reaches Zoho"
            );
            assert!(
                text.contains("x-zoho-proxy-error"),
                "{method} {target}: marked as the proxy's answer"
            );
        }
    }
}

#[tokio::test]
async fn report_mode_forwards_what_enforce_would_deny_and_counts_it() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(
        zoho.dir.path(),
        &zoho.config(ALLOW, "policy:\n  mode: report\n"),
    )
    .await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await);
    let r = client()
        .get(proxy.url("/crm/v8/Contacts"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200, "forwarded in report mode");
    // Raw bytes: an HTTP client library would normalise the dot segments away.
    let response = raw(
        proxy.proxy,
        b"GET /crm/v8/Leads/%2e%2e/Contacts HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(
        response.starts_with(b"HTTP/1.1 400"),
        "malformed requests are refused in every mode"
    );
    assert!(
        proxy.logs().contains("report mode"),
        "the would-be denial is logged"
    );
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains("decision=\"reported\""),
        "counted as reported:\n{metrics}"
    );
}

#[test]
fn explain_and_check_print_the_decision() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("proxy.yaml");
    std::fs::write(
        &path,
        "zoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow:\n  - ZohoCRM.modules.ALL\n  - ZohoCRM.coql.READ\n",
    )
    .expect("write");
    let out = std::process::Command::new(binary())
        .args(["explain", "--config"])
        .arg(&path)
        .args(["GET", "/crm/v8/Leads/1/Contacts"])
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "explain exits 0: {text}");
    assert!(
        text.contains("ZohoCRM.modules.contacts.READ") && text.contains("ZohoCRM.modules.ALL"),
        "names the scope and the entry: {text}"
    );
    let body = dir.path().join("coql.json");
    std::fs::write(
        &body,
        r#"{"select_query":"select Name from Deals where id is not null"}"#,
    )
    .expect("write");
    let out = std::process::Command::new(binary())
        .args(["explain", "--config"])
        .arg(&path)
        .args(["POST", "/crm/v8/coql", "--body"])
        .arg(&body)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("ZohoCRM.modules.deals.READ") && text.contains("ZohoCRM.coql.READ"),
        "COQL needs both: {text}"
    );
    let out = std::process::Command::new(binary())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("ZohoCRM.modules.ALL"),
        "check prints the policy: {text}"
    );
    assert!(
        !text.contains(": \"s\"") && !text.contains(": \"r\""),
        "check hides secrets: {text}"
    );
}
