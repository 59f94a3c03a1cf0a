//! Requester refusals on the operator console (issue 37): a request refused for its Host, as a
//! browser request, for a missing client key or for its content type is listed among the
//! recent decisions with its code and rule, and counted per code; a served request is not.
//!
//! Real binary, real sockets, the in-process fake Zoho.

mod common;

use common::*;
use std::time::Duration;

const KEY: &str = "console-key-0123456789abcdef0123456789abcdef";
const LEAD: &str = r#"{"data":[{"Last_Name":"x"}]}"#;

/// One raw POST of a lead with these header lines; returns the status.
async fn post(proxy: &RunningProxy, headers: &[&str]) -> u16 {
    let mut text = "POST /crm/v8/Leads HTTP/1.1\r\n".to_string();
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    text.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{LEAD}",
        LEAD.len()
    ));
    let answer = raw(proxy.proxy, text.as_bytes(), Duration::from_secs(10)).await;
    String::from_utf8_lossy(&answer)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn requester_refusals_are_listed_with_code_and_rule_and_counted() {
    let extra = format!(
        "strict_content_type: true\nclients:\n  - name: app\n    key: {KEY}\n    allow: [ZohoCRM.modules.leads.ALL]\n"
    );
    let (zoho, proxy) = start_proxy(&["ZohoCRM.modules.leads.ALL"], &extra).await;
    let html = proxy.admin_text("/").await;
    assert!(
        html.contains("id=\"no-refusals\""),
        "no refusal before any request:\n{html}"
    );

    let key = format!("X-Zoho-Proxy-Key: {KEY}");
    let json = "Content-Type: application/json";
    let cases: &[(&[&str], u16, &str, &str)] = &[
        (
            &["Host: attacker.example", &key, json],
            403,
            "PROXY_HOST_NOT_ALLOWED",
            "host",
        ),
        (
            &[
                "Host: localhost",
                "Origin: https://evil.example",
                &key,
                json,
            ],
            403,
            "PROXY_BROWSER_REQUEST",
            "browser",
        ),
        (
            &["Host: localhost", json],
            401,
            "PROXY_CLIENT_UNAUTHENTICATED",
            "client",
        ),
        (
            &["Host: localhost", &key, "Content-Type: text/plain"],
            415,
            "PROXY_CONTENT_TYPE_NOT_ALLOWED",
            "content_type",
        ),
    ];
    for (headers, status, code, _) in cases {
        assert_eq!(post(&proxy, headers).await, *status, "{code}: {headers:?}");
    }
    // The host refusal twice, and one served request that must not be listed.
    assert_eq!(
        post(&proxy, cases[0].0).await,
        403,
        "the Host refusal again"
    );
    assert_eq!(
        post(&proxy, &["Host: localhost", &key, json]).await,
        201,
        "a well-formed request is served"
    );

    let html = proxy.admin_text("/").await;
    for (_, _, code, rule) in cases {
        assert!(
            html.contains(&format!("{code} (rule {rule})")),
            "{code} is among the recent decisions with its rule:\n{html}"
        );
        let count = if *code == "PROXY_HOST_NOT_ALLOWED" {
            2
        } else {
            1
        };
        assert!(
            html.contains(&format!(
                "<tr id=\"refusals-{code}\"><td class=\"mono\">{code}</td><td>{rule}</td><td class=\"count\">{count}</td></tr>"
            )),
            "{code} is counted {count} time(s):\n{html}"
        );
    }
    assert_eq!(
        html.matches("<td class=\"outcome-refused\">refused</td>")
            .count(),
        5,
        "five refusals listed, the served request not:\n{html}"
    );
    assert!(
        !html.contains(KEY) && !html.contains("attacker.example") && !html.contains("evil.example"),
        "no key, Host or Origin value on the page:\n{html}"
    );
    proxy.assert_no_secrets(&zoho.control().live_tokens());
}

/// A request the admin listener's own requester checks refuse (a foreign Host, as DNS rebinding
/// would send) is listed on the console too.
#[tokio::test]
async fn admin_listener_refusals_are_listed_too() {
    let (zoho, proxy) = start_proxy(&["ZohoCRM.modules.leads.ALL"], "").await;
    let text = "GET /status HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n";
    let answer = raw(proxy.admin, text.as_bytes(), Duration::from_secs(10)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 403"),
        "the admin listener refuses a foreign Host: {answer}"
    );
    let html = proxy.admin_text("/").await;
    assert!(
        html.contains("PROXY_HOST_NOT_ALLOWED (rule host)"),
        "the admin listener's refusal is among the recent decisions:\n{html}"
    );
    assert!(
        !html.contains("attacker.example"),
        "no Host value on the page:\n{html}"
    );
    proxy.assert_no_secrets(&zoho.control().live_tokens());
}
