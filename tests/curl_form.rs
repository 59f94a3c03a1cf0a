//! Issue 37's acceptance case with the real curl: `curl -d` sends JSON as
//! `application/x-www-form-urlencoded`, as Zoho's own examples do. From a program it is forwarded
//! and answered 201; the same request with `Origin` (a browser page's) is refused with 403 and
//! never reaches Zoho.
//!
//! Real binary, real curl, the in-process fake Zoho.

mod common;

use common::*;

const BODY: &str = r#"{"data":[{"Last_Name":"X"}]}"#;

/// Runs curl with `args` against `url`; returns the status code it reports.
async fn curl(url: &str, args: &[&str]) -> u16 {
    let out = tokio::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .args(args)
        .arg(url)
        .output()
        .await
        .expect("curl runs");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

#[tokio::test]
async fn curl_d_is_forwarded_and_the_same_with_origin_is_refused_unforwarded() {
    let (zoho, proxy) = start_proxy(&["ZohoCRM.modules.leads.ALL"], "").await;
    let fake = zoho.control();
    fake.clear_crm_requests();
    let url = proxy.url("/crm/v8/Leads");

    assert_eq!(
        curl(&url, &["-d", BODY]).await,
        201,
        "curl -d is forwarded and the lead created"
    );
    let seen = fake.crm_requests();
    assert_eq!(seen.len(), 1, "one request reached Zoho");
    assert_eq!(
        seen[0].body_prefix,
        BODY.as_bytes(),
        "with the body curl sent"
    );
    assert_eq!(
        seen[0].header("content-type"),
        Some(&b"application/x-www-form-urlencoded"[..]),
        "and curl's Content-Type"
    );

    fake.clear_crm_requests();
    assert_eq!(
        curl(&url, &["-d", BODY, "-H", "Origin: https://evil.example"]).await,
        403,
        "the same from a browser page is refused"
    );
    assert!(
        fake.crm_requests().is_empty(),
        "the refused request never reached Zoho"
    );
}
