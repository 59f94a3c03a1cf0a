//! Token lifecycle: persistence across restarts, grant-token bootstrap, reactive refresh after a
//! revoke (one shared mint, one replay), the mint budget and Zoho's throttle.

mod common;

use common::*;
use std::time::Duration;

const ALLOW: &[&str] = &["ZohoCRM.modules.leads.ALL"];

fn store_yaml(zoho: &Zoho) -> String {
    // The store's folder must exist at start (token.store is checked then).
    std::fs::create_dir_all(zoho.dir.path().join("state")).expect("create the store folder");
    format!(
        "token:\n  store: {}\n",
        zoho.dir.path().join("state/token.json").display()
    )
}

#[tokio::test]
async fn five_restarts_mint_nothing_and_the_store_is_private() {
    let zoho = Zoho::start().await;
    let config = zoho.config(ALLOW, &store_yaml(&zoho));
    for round in 0..6 {
        let mut proxy = RunningProxy::spawn(zoho.dir.path(), &config).await;
        assert!(
            proxy.wait_ready(Duration::from_secs(10)).await,
            "round {round} ready"
        );
        let r = client()
            .get(proxy.url("/crm/v8/Leads"))
            .send()
            .await
            .expect("send");
        assert!(r.status().is_success(), "round {round}: {}", r.status());
        proxy.signal("TERM");
        assert!(
            proxy
                .wait_exit(Duration::from_secs(10))
                .await
                .is_some_and(|s| s.success()),
            "round {round}: clean exit"
        );
        proxy.assert_no_secrets(&zoho.control().live_tokens());
    }
    assert_eq!(
        zoho.control().mints(),
        1,
        "one mint for the first start, none for five restarts"
    );
    let path = zoho.dir.path().join("state/token.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&path).expect("store").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "store is 0600");
}

#[tokio::test]
async fn a_corrupt_store_is_set_aside_not_overwritten() {
    let zoho = Zoho::start().await;
    let dir = zoho.dir.path().join("state");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("token.json"), b"{ this is not json").expect("write");
    let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(ALLOW, &store_yaml(&zoho))).await;
    assert!(
        proxy.wait_ready(Duration::from_secs(10)).await,
        "starts anyway"
    );
    assert!(
        proxy.logs().contains("not a valid token store"),
        "reports the corrupt store: {}",
        proxy.logs()
    );
    let aside = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().contains(".corrupt-"));
    assert!(aside, "the corrupt file is kept beside");
}

#[tokio::test]
async fn a_grant_token_is_exchanged_once_and_never_again() {
    let grant = "1000.GRANTCANARY0001.abcdef";
    let zoho = Zoho::start_with(FakeZohoOptions {
        grant_codes: vec![grant.into()],
        refresh_tokens: vec![],
        ..options()
    })
    .await;
    let config = zoho.config(ALLOW, &store_yaml(&zoho)).replace(
        "  refresh_token: ${TEST_REFRESH_TOKEN}\n",
        &format!("  grant_token: {grant}\n"),
    );
    for round in 0..3 {
        let mut proxy = RunningProxy::spawn(zoho.dir.path(), &config).await;
        assert!(
            proxy.wait_ready(Duration::from_secs(10)).await,
            "round {round}: ready: {}",
            proxy.logs()
        );
        let r = client()
            .get(proxy.url("/crm/v8/Leads"))
            .send()
            .await
            .expect("send");
        assert!(r.status().is_success(), "round {round}");
        proxy.signal("TERM");
        proxy.wait_exit(Duration::from_secs(10)).await;
        assert!(
            !proxy.logs().contains("GRANTCANARY"),
            "grant token never logged"
        );
    }
    let exchanges = zoho
        .control()
        .accounts_requests()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body_prefix).contains("authorization_code"))
        .count();
    assert_eq!(exchanges, 1, "the grant token was exchanged exactly once");
    assert_eq!(
        zoho.control().token_requests(),
        1,
        "restarts use the stored token"
    );
}

#[tokio::test]
async fn an_expired_grant_token_says_how_to_fix_it() {
    let zoho = Zoho::start_with(FakeZohoOptions {
        grant_codes: vec![],
        refresh_tokens: vec![],
        ..options()
    })
    .await;
    let config = zoho.config(ALLOW, &store_yaml(&zoho)).replace(
        "  refresh_token: ${TEST_REFRESH_TOKEN}\n",
        "  grant_token: 1000.used.code\n",
    );
    let proxy = RunningProxy::spawn(zoho.dir.path(), &config).await;
    let said = proxy
        .wait_for_output(Duration::from_secs(10), |t| t.contains("invalid_code"))
        .await;
    assert!(said, "logs invalid_code");
    let logs = proxy.logs();
    assert!(
        logs.contains("expired") && logs.contains("API console"),
        "explains: {logs}"
    );
    let r = client()
        .get(proxy.url("/crm/v8/Leads"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 503);
}

#[tokio::test]
async fn after_a_revoke_concurrent_requests_share_one_mint_and_all_succeed() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(ALLOW, "")).await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await);
    assert_eq!(zoho.control().mints(), 1);
    zoho.control().revoke_all_access_tokens();
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let c = c.clone();
        let get = proxy.url("/crm/v8/Leads/554023000000235011");
        let post = proxy.url("/crm/v8/Leads");
        tasks.push(tokio::spawn(async move {
            let r = if i % 2 == 0 {
                c.get(get).send().await
            } else {
                c.post(post)
                    .header("content-type", "application/json")
                    .body(r#"{"data":[{"Last_Name":"Replay"}]}"#)
                    .send()
                    .await
            };
            r.map(|r| r.status().as_u16()).unwrap_or(0)
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    assert!(
        statuses.iter().all(|s| (200..300).contains(s)),
        "all succeed after the revoke: {statuses:?}"
    );
    assert_eq!(zoho.control().mints(), 2, "exactly one mint for the revoke");
    let created = zoho
        .control()
        .crm_requests()
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.header_str("authorization").is_some_and(|a| {
                    zoho.control()
                        .is_live(a.trim_start_matches("Zoho-oauthtoken "))
                })
        })
        .count();
    assert_eq!(
        created, 10,
        "each POST was replayed once with the new token"
    );
    proxy.assert_no_secrets(&zoho.control().live_tokens());
}

#[tokio::test]
async fn a_large_post_after_a_revoke_gets_the_401_promptly() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(ALLOW, "")).await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await);
    zoho.control().revoke_all_access_tokens();
    let started = std::time::Instant::now();
    let r = client()
        .post(proxy.url("/crm/v8/Leads?__fake=upload"))
        .body(vec![b'x'; 5 << 20])
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status(),
        401,
        "a body over limits.replay_body cannot be replayed: Zoho's 401 passes through"
    );
    assert!(
        r.headers().get("x-zoho-proxy-error").is_none(),
        "it is Zoho's answer"
    );
    assert!(started.elapsed() < Duration::from_secs(5), "promptly");
    // The 401 still triggered a refresh, so the next request works.
    let ok = poll_until(Duration::from_secs(5), || async {
        client()
            .get(proxy.url("/crm/v8/Leads"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
    })
    .await;
    assert!(ok, "the next request succeeds with a new token");
    assert_eq!(zoho.control().mints(), 2);
}

#[tokio::test]
async fn scope_mismatch_and_a_second_401_pass_through_without_extra_mints() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(ALLOW, "")).await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await);
    let r = client()
        .get(proxy.url("/crm/v8/Leads?__fake=scope_mismatch"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        v["code"], "OAUTH_SCOPE_MISMATCH",
        "passed through unchanged"
    );
    assert_eq!(zoho.control().mints(), 1, "no refresh for a scope mismatch");
    let r = client()
        .get(proxy.url("/crm/v8/Leads?__fake=invalid_token"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401, "a second INVALID_TOKEN goes to the client");
    assert_eq!(
        zoho.control().mints(),
        2,
        "one refresh, one replay, then the 401 passes"
    );
    let hits = zoho
        .control()
        .crm_requests()
        .iter()
        .filter(|r| r.path_and_query.contains("invalid_token"))
        .count();
    assert_eq!(hits, 2, "sent once and replayed once");
}

#[tokio::test]
async fn after_zoho_throttles_the_proxy_waits_out_the_window() {
    let zoho = Zoho::start_with(FakeZohoOptions {
        mint_limit: 3,
        expires_in: 2,
        ..options()
    })
    .await;
    let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(ALLOW, "")).await;
    // Three mints succeed (about 1.8 s apart), the fourth request is throttled.
    let throttled = proxy
        .wait_for_output(Duration::from_secs(20), |t| t.contains("Access Denied"))
        .await;
    assert!(throttled, "the throttle was hit: {}", proxy.logs());
    let calls_at_throttle = zoho.control().token_requests();
    let served = poll_until(Duration::from_secs(5), || async {
        client()
            .get(proxy.url("/crm/v8/Leads"))
            .send()
            .await
            .map(|r| r.status() == 503 && r.headers().contains_key("retry-after"))
            .unwrap_or(false)
    })
    .await;
    assert!(
        served,
        "once the token expires requests get 503 with Retry-After"
    );
    let r = client()
        .get(proxy.url("/crm/v8/Leads"))
        .send()
        .await
        .expect("send");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        retry > 60,
        "Retry-After points past the throttle window, got {retry}"
    );
    // Let several would-be refresh times pass: no further token calls.
    let more = zoho
        .control()
        .wait_for_token_requests(calls_at_throttle + 2, Duration::from_secs(6))
        .await;
    assert!(!more, "at most one more token call after Access Denied");
    let status: serde_json::Value = proxy.status_json().await;
    assert_eq!(status["accounts"][0]["token"]["state"], "throttled");
}

#[tokio::test]
async fn the_mint_budget_holds_even_when_tokens_die_fast() {
    let zoho = Zoho::start_with(FakeZohoOptions {
        expires_in: 1,
        ..options()
    })
    .await;
    let proxy = RunningProxy::spawn(
        zoho.dir.path(),
        &zoho.config(ALLOW, "token:\n  mint_budget: 4\n"),
    )
    .await;
    let spent = proxy
        .wait_for_output(Duration::from_secs(20), |t| t.contains("mint budget spent"))
        .await;
    assert!(spent, "the budget is reported when spent");
    assert!(
        !zoho
            .control()
            .wait_for_token_requests(5, Duration::from_secs(3))
            .await,
        "never more than the budget"
    );
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains("zoho_proxy_mint_budget_left{account=\"default\"} 0"),
        "budget left shows 0:\n{metrics}"
    );
}

#[tokio::test]
async fn odd_expires_in_values_never_cause_a_refresh_loop() {
    for value in [
        serde_json::json!(0),
        serde_json::json!(-5),
        serde_json::json!("3600"),
        serde_json::json!(999_999_999),
        serde_json::Value::Null,
    ] {
        let zoho = Zoho::start().await;
        zoho.control().set_expires_in(value.clone());
        let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(ALLOW, "")).await;
        let _ = proxy.wait_ready(Duration::from_secs(5)).await;
        let more = zoho
            .control()
            .wait_for_token_requests(9, Duration::from_secs(4))
            .await;
        assert!(
            !more,
            "expires_in {value}: bounded token requests ({})",
            zoho.control().token_requests()
        );
    }
}
