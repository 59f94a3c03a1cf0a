//! The proxy's own calls against the real binary and the fake Zoho: `limits.upstream_concurrency:
//! auto` sized from the org's edition (Standard 10, Professional 15 at the stand-in, however many
//! clients ask at once), the fallback of 10 without `ZohoCRM.org.READ`, a configured number that
//! wins, the org read as the proxy's own call (its `User-Agent`, past an allow list and a budget,
//! its spending under `(proxy)`), and credit costs from Zoho's `__apis`.

mod common;

use common::*;
use futures_util::future::join_all;
use serde_json::Value;
use std::time::Duration;

const LEADS: &[&str] = &["ZohoCRM.modules.leads.ALL"];
const WAIT: Duration = Duration::from_secs(15);

async fn start(zoho: &Zoho, extra: &str) -> RunningProxy {
    let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(LEADS, extra)).await;
    assert!(
        proxy.wait_ready(WAIT).await,
        "ready; output:\n{}",
        proxy.logs()
    );
    proxy
}

/// The status of a client's GET of `path` through the proxy.
async fn get_status(proxy: &RunningProxy, path: &str) -> u16 {
    client()
        .get(proxy.url(path))
        .send()
        .await
        .expect("response")
        .status()
        .as_u16()
}

/// Polls `/status` until `check` holds; returns the last status either way.
async fn status_until(proxy: &RunningProxy, check: impl Fn(&Value) -> bool) -> (bool, Value) {
    let end = std::time::Instant::now() + WAIT;
    loop {
        let status = proxy.status_json().await;
        if check(&status) {
            return (true, status);
        }
        if std::time::Instant::now() >= end {
            return (false, status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a proxy in front of an org of `edition`, waits for the limit to come from it, then
/// sends 40 slow GETs at once; returns the most requests the stand-in saw in flight.
async fn peak_for(edition: &str, limit: u64) -> usize {
    let zoho = Zoho::start().await;
    zoho.control().set_edition(Some(edition), None);
    let proxy = start(&zoho, "").await;
    let source = format!("org:{edition}");
    let (ok, status) =
        status_until(&proxy, |s| s["concurrency"]["source"] == source.as_str()).await;
    assert!(ok, "the edition sizes the limit: {status}");
    assert_eq!(status["concurrency"]["upstream_limit"], limit, "{status}");
    assert_eq!(status["concurrency"]["setting"], "auto", "{status}");
    assert_eq!(
        status["concurrency"]["heavy_limit"],
        limit.min(10),
        "the heavy cap is min(10, limit): {status}"
    );
    let c = client();
    let all =
        join_all((0..40).map(|_| c.get(proxy.url("/crm/v8/Leads?__fake=delay_ms=300")).send()))
            .await;
    for r in all {
        let r = r.expect("response");
        assert_eq!(r.status(), 200, "queued, never refused");
    }
    assert_eq!(zoho.control().throttled_answers(), 0);
    zoho.control().max_in_flight().0
}

#[tokio::test]
async fn a_standard_org_never_has_more_than_ten_requests_in_flight() {
    assert_eq!(
        peak_for("Standard", 10).await,
        10,
        "40 concurrent requests: at most 10 at Zoho, and the limit was reached"
    );
}

#[tokio::test]
async fn a_professional_org_never_has_more_than_fifteen_requests_in_flight() {
    assert_eq!(
        peak_for("professional", 15).await,
        15,
        "40 concurrent requests: at most 15 at Zoho, and the limit was reached"
    );
}

#[tokio::test]
async fn without_org_read_the_fallback_of_ten_shows_with_its_fix_and_a_warning() {
    let zoho = Zoho::start().await;
    zoho.control().deny_scope("ZohoCRM.org.READ");
    let proxy = start(&zoho, "").await;
    let (ok, status) = status_until(&proxy, |s| {
        s["concurrency"]["orgs"][0]["problem"].is_string()
    })
    .await;
    assert!(ok, "the org read ended: {status}");
    let c = &status["concurrency"];
    assert_eq!(
        (c["source"].as_str(), c["upstream_limit"].as_u64()),
        (Some("fallback"), Some(10)),
        "{status}"
    );
    let fix = c["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains("grant ZohoCRM.org.READ") && fix.contains("limits.upstream_concurrency"),
        "{status}"
    );
    assert!(
        c["orgs"][0]["problem"]
            .as_str()
            .is_some_and(|p| p.contains("lacks ZohoCRM.org.READ")),
        "{status}"
    );
    assert!(
        zoho.control()
            .own_requests()
            .iter()
            .any(|r| r.path_and_query == "/crm/v8/org"),
        "the org was asked"
    );
    assert!(
        proxy
            .wait_for_output(WAIT, |t| t.contains("WARN")
                && t.contains("lacks ZohoCRM.org.READ")
                && t.contains("grant ZohoCRM.org.READ"))
            .await,
        "a warning names the fix:\n{}",
        proxy.logs()
    );
    let console = proxy.admin_text("/").await;
    assert!(
        console.contains("fallback") && console.contains("grant ZohoCRM.org.READ"),
        "the console names the fix"
    );
}

#[tokio::test]
async fn a_configured_number_wins_and_the_org_is_not_read() {
    let zoho = Zoho::start().await;
    zoho.control().set_edition(Some("standard"), None);
    let proxy = start(&zoho, "limits:\n  upstream_concurrency: 7\n").await;
    // The daily __apis read runs whatever the limit: once it is in, the org read would be too.
    assert!(
        poll_until(WAIT, || async {
            zoho.control()
                .own_requests()
                .iter()
                .any(|r| r.path_and_query.ends_with("/__apis"))
        })
        .await,
        "the __apis read happened"
    );
    let status = proxy.status_json().await;
    let c = &status["concurrency"];
    assert_eq!(
        (
            c["source"].as_str(),
            c["upstream_limit"].as_u64(),
            c["setting"].as_u64()
        ),
        (Some("config"), Some(7), Some(7)),
        "{status}"
    );
    assert!(c["fix"].is_null(), "{status}");
    assert!(
        !zoho
            .control()
            .own_requests()
            .iter()
            .any(|r| r.path_and_query.ends_with("/org")),
        "a configured number needs no org read"
    );
}

#[tokio::test]
async fn the_org_read_is_the_proxys_own_call_past_the_allow_list_and_budget() {
    let zoho = Zoho::start().await;
    zoho.control().set_edition(Some("enterprise"), None);
    // The allow list lacks ZohoCRM.org.READ, and the budget is one credit.
    let proxy = start(&zoho, "credits:\n  daily_limit: 1\n").await;
    let (ok, status) =
        status_until(&proxy, |s| s["concurrency"]["source"] == "org:enterprise").await;
    assert!(ok, "the org read went out: {status}");
    let own = zoho.control().own_requests();
    let org = own
        .iter()
        .find(|r| r.path_and_query == "/crm/v8/org")
        .expect("the org call reached Zoho");
    assert_eq!(
        org.header_str("user-agent"),
        Some(concat!("zoho-auth-proxy/", env!("CARGO_PKG_VERSION"))),
    );
    assert!(
        org.header_str("authorization")
            .is_some_and(|a| a.starts_with("Zoho-oauthtoken ")),
        "with the account's token"
    );
    // A client asking for the same is refused by the allow list.
    let refused = client()
        .get(proxy.url("/crm/v8/org"))
        .send()
        .await
        .expect("response");
    assert_eq!(
        refused.status(),
        403,
        "the allow list still applies to clients"
    );
    // The proxy's own spending is apart, and the client's budget is whole.
    let (ok, status) = status_until(&proxy, |s| {
        s["credits"]["clients"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["client"] == "(proxy)" && c["used_in_window"].as_u64() >= Some(1))
    })
    .await;
    assert!(ok, "the ledger shows the proxy's own spending: {status}");
    assert_eq!(
        status["credits"]["accounts"][0]["used_in_window"], 0,
        "no budget charged: {status}"
    );
    assert_eq!(
        get_status(&proxy, "/crm/v8/Leads").await,
        200,
        "the client's one credit is left"
    );
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains(r#"zoho_proxy_credits_used_total{account="default",client="(proxy)"}"#),
        "metrics show the proxy's spending apart:\n{metrics}"
    );
}

#[tokio::test]
async fn zohos_costs_price_a_leads_get_at_two_credits() {
    let zoho = Zoho::start().await;
    zoho.control()
        .set_api_costs(&[("GET", "/crm/{version}/Leads", 2)]);
    let proxy = start(&zoho, "").await;
    let (ok, status) = status_until(&proxy, |s| {
        s["credits"]["accounts"][0]["costs"]["source"] == "zoho"
    })
    .await;
    assert!(ok, "Zoho's costs are in force: {status}");
    let costs = &status["credits"]["accounts"][0]["costs"];
    assert_eq!(costs["operations"], 1, "{status}");
    assert!(costs["fetched_unix_ms"].as_u64().is_some(), "{status}");
    for i in 0..3 {
        assert_eq!(get_status(&proxy, "/crm/v8/Leads").await, 200, "GET {i}");
    }
    let status = proxy.status_json().await;
    assert_eq!(
        status["credits"]["accounts"][0]["used_in_window"], 6,
        "2 credits per GET: {status}"
    );
    assert!(
        proxy
            .wait_for_output(WAIT, |t| t.contains("credits=2"))
            .await,
        "the access log has the price:\n{}",
        proxy.logs()
    );
}

#[tokio::test]
async fn without_apis_read_the_costs_stay_built_in() {
    let zoho = Zoho::start().await;
    zoho.control()
        .set_api_costs(&[("GET", "/crm/{version}/Leads", 2)]);
    zoho.control().deny_scope("ZohoCRM.apis.READ");
    let proxy = start(&zoho, "").await;
    let (ok, status) = status_until(&proxy, |s| {
        s["credits"]["accounts"][0]["costs"]["note"].is_string()
    })
    .await;
    assert!(ok, "the __apis read ended: {status}");
    let costs = &status["credits"]["accounts"][0]["costs"];
    assert_eq!(costs["source"], "builtin", "{status}");
    assert!(
        costs["note"]
            .as_str()
            .is_some_and(|n| n.contains("ZohoCRM.apis.READ")),
        "{status}"
    );
    assert_eq!(get_status(&proxy, "/crm/v8/Leads").await, 200);
    let status = proxy.status_json().await;
    assert_eq!(
        status["credits"]["accounts"][0]["used_in_window"], 1,
        "the built-in 1 credit: {status}"
    );
}

#[tokio::test]
async fn a_reload_to_a_number_and_back_to_auto_keeps_the_edition_read() {
    let zoho = Zoho::start().await;
    zoho.control().set_edition(Some("standard"), None);
    let proxy = start(&zoho, "").await;
    let (ok, status) = status_until(&proxy, |s| s["concurrency"]["source"] == "org:standard").await;
    assert!(ok, "{status}");
    let write = |extra: &str| {
        std::fs::write(&proxy.config_path, zoho.config(LEADS, extra)).expect("write config");
        proxy.signal("HUP");
    };
    write("limits:\n  upstream_concurrency: 25\n");
    let (ok, status) = status_until(&proxy, |s| {
        s["concurrency"]["source"] == "config" && s["concurrency"]["upstream_limit"] == 25
    })
    .await;
    assert!(ok, "the number wins after a reload: {status}");
    write("");
    let (ok, status) = status_until(&proxy, |s| {
        s["concurrency"]["source"] == "org:standard" && s["concurrency"]["upstream_limit"] == 10
    })
    .await;
    assert!(ok, "back to auto: the edition already read: {status}");
    let org_reads = zoho
        .control()
        .own_requests()
        .iter()
        .filter(|r| r.path_and_query.ends_with("/org"))
        .count();
    assert_eq!(org_reads, 1, "the org is read once a day, not per reload");
}
