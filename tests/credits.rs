//! API credits against the real binary and the fake Zoho: account budgets refused before
//! forwarding, persistence across a restart, Zoho's 429 back-off, Zoho's remaining figure,
//! the heavy-call cap, and one fleet-wide count through a real `redis-server`.
//!
//! The per-client scenarios (`clients[].credits_per_day`) come with the client identities of
//! issue 13; the budget logic itself is unit-tested in `src/credits/tests.rs`.

mod common;

use common::*;
use futures_util::future::join_all;
use std::time::{Duration, Instant};

const LEADS: &[&str] = &["ZohoCRM.modules.leads.ALL", "ZohoCRM.coql.READ"];
const GET: &str = "/crm/v8/Leads";

async fn start(zoho: &Zoho, extra: &str) -> RunningProxy {
    let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(LEADS, extra)).await;
    assert!(
        proxy.wait_ready(Duration::from_secs(10)).await,
        "ready; output:\n{}",
        proxy.logs()
    );
    proxy
}

/// Status, proxy error code, Retry-After and JSON body of one GET.
async fn get(
    proxy: &RunningProxy,
    path: &str,
) -> (u16, Option<String>, Option<u64>, serde_json::Value) {
    answer(client().get(proxy.url(path))).await
}

/// Sends `req` and reads status, proxy error code, Retry-After and the JSON body.
async fn answer(
    req: reqwest::RequestBuilder,
) -> (u16, Option<String>, Option<u64>, serde_json::Value) {
    let resp = req.send().await.expect("response");
    let status = resp.status().as_u16();
    let code = resp
        .headers()
        .get("x-zoho-proxy-error")
        .map(|v| v.to_str().unwrap_or("").to_string());
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = resp.json().await.unwrap_or(serde_json::Value::Null);
    (status, code, retry, body)
}

#[tokio::test]
async fn an_account_daily_limit_of_5_forwards_exactly_5() {
    let zoho = Zoho::start().await;
    let proxy = start(&zoho, "credits:\n  daily_limit: 5\n").await;
    let mut forwarded = 0;
    for i in 0..8 {
        let (status, code, retry, body) = get(&proxy, GET).await;
        if i < 5 {
            assert_eq!(status, 200, "request {i} fits the budget: {body}");
            forwarded += 1;
            continue;
        }
        assert_eq!(status, 429, "request {i} is over the budget");
        assert_eq!(code.as_deref(), Some("PROXY_CREDITS_EXHAUSTED"));
        let retry = retry.expect("Retry-After on a budget refusal");
        assert!(
            (23 * 3600..=24 * 3600).contains(&retry),
            "the credits come back about a day later: {retry}"
        );
        let d = &body["details"];
        assert_eq!(
            (
                d["budget"].as_str(),
                d["limit"].as_u64(),
                d["used"].as_u64(),
                d["cost"].as_u64()
            ),
            (Some("account default"), Some(5), Some(5), Some(1)),
            "the body names the budget: {body}"
        );
    }
    assert_eq!(forwarded, 5);
    assert_eq!(
        zoho.control().crm_requests().len(),
        5,
        "exactly 5 reached Zoho"
    );
    let metrics = proxy.metrics_text().await;
    for needle in [
        r#"zoho_proxy_credits_used_total{account="default",client="(anonymous)"} 5"#,
        r#"zoho_proxy_credits_budget_left{budget="account default"} 0"#,
        r#"zoho_proxy_credits_refusals_total{account="default",reason="credits_exhausted"} 3"#,
    ] {
        assert!(metrics.contains(needle), "missing {needle} in\n{metrics}");
    }
    let status = proxy.status_json().await;
    let account = &status["credits"]["accounts"][0];
    assert_eq!(
        (
            account["used_in_window"].as_u64(),
            account["daily_limit"].as_u64()
        ),
        (Some(5), Some(5)),
        "{status}"
    );
    // Access lines are written in batches (up to 10 ms after the request): wait for it.
    assert!(
        proxy
            .wait_for_output(Duration::from_secs(5), |t| t.contains("credits=1"))
            .await,
        "the access log has the credits field:\n{}",
        proxy.logs()
    );
}

#[tokio::test]
async fn the_spent_budget_survives_a_crash_and_a_restart() {
    let zoho = Zoho::start().await;
    let store = zoho.dir.path().join("token.json");
    let extra = format!(
        "token:\n  store: {}\ncredits:\n  daily_limit: 3\n",
        store.display()
    );
    let mut proxy = start(&zoho, &extra).await;
    for i in 0..3 {
        assert_eq!(get(&proxy, GET).await.0, 200, "request {i}");
    }
    // Wait for the ledger file to hold all three, then kill -9: no graceful flush.
    let ledger = zoho.dir.path().join("token.credits.json");
    let written = poll_until(Duration::from_secs(5), || async {
        std::fs::read_to_string(&ledger)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| {
                v["buckets"]
                    .as_array()
                    .map(|b| b.iter().filter_map(|p| p[1].as_u64()).sum::<u64>())
            })
            == Some(3)
    })
    .await;
    assert!(
        written,
        "the ledger file {} holds 3 credits",
        ledger.display()
    );
    proxy.signal("KILL");
    assert!(proxy.wait_exit(Duration::from_secs(10)).await.is_some());

    let proxy = start(&zoho, &extra).await;
    let (status, code, retry, _) = get(&proxy, GET).await;
    assert_eq!(
        (status, code.as_deref()),
        (429, Some("PROXY_CREDITS_EXHAUSTED")),
        "the restarted proxy remembers the spent budget"
    );
    assert!(retry.is_some());
    assert_eq!(
        zoho.control().crm_requests().len(),
        3,
        "nothing more reached Zoho"
    );
}

#[tokio::test]
async fn three_seconds_of_zoho_429s_let_at_most_4_requests_through_then_traffic_recovers() {
    let zoho = Zoho::start().await;
    let proxy = start(&zoho, "").await;
    assert_eq!(get(&proxy, GET).await.0, 200, "before the throttle");
    zoho.control().throttle_for(Duration::from_secs(3), None);
    let began = Instant::now();
    let mut passed_through = 0;
    let mut local = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    while zoho.control().throttled_now() {
        tick.tick().await;
        let (status, code, retry, body) = get(&proxy, GET).await;
        match code.as_deref() {
            Some("PROXY_ZOHO_THROTTLED") => {
                assert_eq!(status, 429);
                assert!(
                    retry.is_some_and(|r| r >= 1),
                    "local refusals carry Retry-After"
                );
                local += 1;
            }
            // The window ended between the loop's check and the fake's answer: Zoho recovered.
            None if status == 200 => {
                assert!(
                    !zoho.control().throttled_now(),
                    "a 200 only once Zoho's throttle is over: {body}"
                );
                break;
            }
            None => {
                assert_eq!(status, 429, "Zoho's own 429 passes through: {body}");
                assert_eq!(body["code"], "TOO_MANY_REQUESTS", "unchanged");
                passed_through += 1;
            }
            Some(other) => panic!("unexpected {other}"),
        }
    }
    let throttled = zoho.control().throttled_answers();
    assert!(
        throttled <= 4,
        "{throttled} requests reached Zoho in {:?} of 429s",
        began.elapsed()
    );
    assert_eq!(passed_through, throttled);
    assert!(local > 10, "the rest were refused locally ({local})");
    let recovered = poll_until(Duration::from_secs(30), || async {
        get(&proxy, GET).await.0 == 200
    })
    .await;
    assert!(recovered, "traffic recovers once Zoho does");
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains(&format!(
            r#"zoho_proxy_zoho_throttled_total{{account="default"}} {throttled}"#
        )),
        "{metrics}"
    );
}

#[tokio::test]
async fn zohos_remaining_figure_is_a_gauge_and_in_status() {
    let zoho = Zoho::start().await;
    let proxy = start(&zoho, "").await;
    zoho.control().set_credits_remaining_header(Some(4));
    assert_eq!(get(&proxy, GET).await.0, 200);
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains(r#"zoho_proxy_zoho_credits_remaining{account="default"} 4"#),
        "{metrics}"
    );
    let status = proxy.status_json().await;
    let account = &status["credits"]["accounts"][0];
    assert_eq!(account["zoho_remaining"], 4, "{status}");
    assert!(
        account["zoho_remaining_unix_ms"].as_u64().is_some(),
        "with its time"
    );
}

#[tokio::test]
async fn the_fake_sends_the_remaining_header_from_half_used() {
    let zoho = Zoho::start().await;
    let proxy = start(&zoho, "").await;
    zoho.control().set_credit_limit(Some(4));
    let remaining = |resp: &reqwest::Response| {
        resp.headers()
            .get("x-api-credits-remaining")
            .map(|v| v.to_str().unwrap_or("").to_string())
    };
    let first = client().get(proxy.url(GET)).send().await.expect("first");
    assert_eq!(remaining(&first), None, "1 of 4 used: no header yet");
    let second = client().get(proxy.url(GET)).send().await.expect("second");
    assert_eq!(remaining(&second).as_deref(), Some("2"), "half used");
    let _ = client().get(proxy.url(GET)).send().await.expect("third");
    let _ = client().get(proxy.url(GET)).send().await.expect("fourth");
    let fifth = client().get(proxy.url(GET)).send().await.expect("fifth");
    assert_eq!(fifth.status(), 429, "credits spent: Zoho's 429");
}

#[tokio::test]
async fn heavy_concurrency_caps_coql_without_holding_ordinary_gets() {
    let zoho = Zoho::start().await;
    let proxy = start(&zoho, "limits:\n  heavy_concurrency: 2\n").await;
    let c = client();
    let coql = (0..8).map(|_| {
        c.post(proxy.url("/crm/v8/coql?__fake=delay_ms=400"))
            .header("content-type", "application/json")
            .body(r#"{"select_query":"select Last_Name from Leads where Last_Name is not null limit 10"}"#)
            .send()
    });
    let gets = (0..6).map(|_| c.get(proxy.url("/crm/v8/Leads?__fake=delay_ms=400")).send());
    let (coql, gets) = tokio::join!(join_all(coql), join_all(gets));
    for r in coql.into_iter().chain(gets) {
        let r = r.expect("response");
        assert!(
            r.headers().get("x-zoho-proxy-error").is_none(),
            "no local refusal: {}",
            r.status()
        );
    }
    let (all, heavy) = zoho.control().max_in_flight();
    assert_eq!(
        heavy, 2,
        "never more than 2 COQL in flight at Zoho, and the cap was reached"
    );
    assert!(
        all >= 5,
        "ordinary GETs ran beside the heavy calls (peak {all} in flight)"
    );
}

#[tokio::test]
async fn a_reload_changes_the_budget_and_keeps_the_count() {
    let zoho = Zoho::start().await;
    let proxy = start(&zoho, "credits:\n  daily_limit: 2\n").await;
    for i in 0..2 {
        assert_eq!(get(&proxy, GET).await.0, 200, "request {i}");
    }
    assert_eq!(
        get(&proxy, GET).await.1.as_deref(),
        Some("PROXY_CREDITS_EXHAUSTED")
    );
    // A broken credits section is refused and the old budget stays.
    let broken = zoho.config(LEADS, "credits:\n  daily_limit: 0\n");
    std::fs::write(&proxy.config_path, broken).expect("write");
    proxy.signal("HUP");
    let refused = proxy
        .wait_for_output(Duration::from_secs(5), |t| {
            t.contains("credits.daily_limit")
        })
        .await;
    assert!(refused, "the bad reload names the key:\n{}", proxy.logs());
    assert_eq!(
        get(&proxy, GET).await.1.as_deref(),
        Some("PROXY_CREDITS_EXHAUSTED")
    );
    std::fs::write(
        &proxy.config_path,
        zoho.config(LEADS, "credits:\n  daily_limit: 3\n"),
    )
    .expect("write");
    proxy.signal("HUP");
    let raised = poll_until(Duration::from_secs(5), || async {
        get(&proxy, GET).await.0 == 200
    })
    .await;
    assert!(
        raised,
        "the raised budget applies, counting the 2 already spent"
    );
    assert_eq!(
        get(&proxy, GET).await.1.as_deref(),
        Some("PROXY_CREDITS_EXHAUSTED")
    );
    assert_eq!(zoho.control().crm_requests().len(), 3);
}

#[tokio::test]
async fn upstream_concurrency_keeps_the_fake_zohos_concurrency_limit_unreached() {
    let zoho = Zoho::start().await;
    let proxy = start(&zoho, "limits:\n  upstream_concurrency: 2\n").await;
    zoho.control().set_concurrency_limit(Some(2));
    let c = client();
    let all =
        join_all((0..6).map(|_| c.get(proxy.url("/crm/v8/Leads?__fake=delay_ms=200")).send()))
            .await;
    for r in all {
        assert_eq!(
            r.expect("response").status(),
            200,
            "queued, never over Zoho's limit"
        );
    }
    assert_eq!(zoho.control().throttled_answers(), 0);
    assert_eq!(zoho.control().max_in_flight().0, 2);
    // Without the proxy's cap the fake answers 429 over its limit (the control works).
    let direct = tls_client(&zoho.ca);
    let token = zoho.control().live_tokens().pop().expect("a live token");
    let url = format!("{}/crm/v8/Leads?__fake=delay_ms=300", zoho.fake.api_url());
    let statuses = join_all((0..3).map(|_| {
        direct
            .get(&url)
            .header("authorization", format!("Zoho-oauthtoken {token}"))
            .send()
    }))
    .await;
    let too_many = statuses
        .into_iter()
        .filter(|r| r.as_ref().map(|r| r.status() == 429).unwrap_or(false))
        .count();
    assert_eq!(
        too_many, 1,
        "the third concurrent call is over the fake's limit"
    );
}

// ---- fleet -------------------------------------------------------------------------------------

async fn start_fleet(zoho: &Zoho, port: u16, extra: &str, n: usize) -> Vec<RunningProxy> {
    let config = zoho.config(
        LEADS,
        &format!("token:\n  store: redis://127.0.0.1:{port}/0\n{extra}"),
    );
    let path = zoho.dir.path().join("fleet.yaml");
    std::fs::write(&path, config).expect("write config");
    let fleet = join_all((0..n).map(|_| RunningProxy::spawn_file(&path, &[]))).await;
    for p in &fleet {
        assert!(
            p.wait_ready(Duration::from_secs(15)).await,
            "ready:\n{}",
            p.logs()
        );
    }
    fleet
}

#[tokio::test]
async fn three_redis_backed_replicas_with_daily_limit_9_forward_exactly_9_of_15() {
    let Some((_redis, port, _dir)) = start_redis().await else {
        return;
    };
    let zoho = Zoho::start().await;
    let fleet = start_fleet(&zoho, port, "credits:\n  daily_limit: 9\n", 3).await;
    let results = join_all((0..15).map(|i| get(&fleet[i % 3], GET))).await;
    let ok = results.iter().filter(|r| r.0 == 200).count();
    let refused = results
        .iter()
        .filter(|r| r.1.as_deref() == Some("PROXY_CREDITS_EXHAUSTED") && r.2.is_some())
        .count();
    assert_eq!((ok, refused), (9, 6), "{results:?}");
    assert_eq!(
        zoho.control().crm_requests().len(),
        9,
        "exactly 9 reached Zoho"
    );
    let status = fleet[0].status_json().await;
    assert_eq!(status["credits"]["accounts"][0]["store"], "redis");
}

#[tokio::test]
async fn one_replicas_zoho_429_quiets_the_whole_fleet() {
    let Some((_redis, port, _dir)) = start_redis().await else {
        return;
    };
    let zoho = Zoho::start().await;
    let fleet = start_fleet(&zoho, port, "", 2).await;
    zoho.control()
        .throttle_for(Duration::from_secs(30), Some(30));
    let (status, code, _, _) = get(&fleet[0], GET).await;
    assert_eq!((status, code), (429, None), "Zoho's own 429 passes through");
    // The back-off is announced through Redis in the background: poll the other replica.
    let quiet = poll_until(Duration::from_secs(5), || async {
        get(&fleet[1], GET).await.1.as_deref() == Some("PROXY_ZOHO_THROTTLED")
    })
    .await;
    assert!(
        quiet,
        "the other replica refuses locally during Zoho's back-off"
    );
    assert_eq!(
        zoho.control().throttled_answers(),
        1,
        "only one request reached Zoho"
    );
}

/// The per-client budget through the fleet ledger, driven through the library with the client
/// map built directly (as `clients[].credits_per_day` will fill it): three "replicas" (three
/// runtimes on one Redis) share one client budget of 12.
#[tokio::test]
async fn a_client_budget_of_12_is_shared_by_three_runtimes_through_redis() {
    use std::sync::Arc;
    use zoho_auth_proxy::credits::Refusal;
    use zoho_auth_proxy::credits::{CreditMetrics, CreditSettings, Credits};
    use zoho_auth_proxy::policy::BodyView;
    let Some((_redis, port, _dir)) = start_redis().await else {
        return;
    };
    let url = format!("redis://127.0.0.1:{port}/0");
    let yaml = format!(
        "zoho:\n  client_id: 1000.ID\n  client_secret: s\n  refresh_token: r\nallow:\n  - ZohoCRM.modules.ALL\ntoken:\n  store: {url}\n"
    );
    let config = zoho_auth_proxy::config::Config::from_yaml_str(&yaml).expect("valid");
    let replicas: Vec<Arc<Credits>> = (0..3)
        .map(|_| {
            let store = Arc::new(
                zoho_auth_proxy::store::redis::RedisClient::new(
                    &url,
                    &zoho_auth_proxy::config::RedisTopology::Single,
                    None,
                    None,
                )
                .expect("store"),
            );
            let stores = [("default".to_string(), store)].into_iter().collect();
            let clients = [("sync".to_string(), 12u64)];
            Arc::new(Credits::new(
                &config,
                CreditSettings::from_config(&config, &clients),
                &stores,
                CreditMetrics::default(),
            ))
        })
        .collect();
    let get = |c: &Credits| c.price("default", "GET", "/crm/v8/Leads", None, BodyView::None);
    let mut kept = Vec::new();
    for i in 0..10 {
        let r = &replicas[i % 3];
        kept.push(
            r.admit("default", Some("sync"), get(r))
                .await
                .expect("GET fits"),
        );
    }
    let convert = replicas[1].price(
        "default",
        "POST",
        "/crm/v8/Leads/1/actions/convert",
        None,
        BodyView::None,
    );
    match replicas[1].admit("default", Some("sync"), convert).await {
        Err(Refusal::CreditsExhausted {
            budget,
            limit,
            used,
            cost,
            retry_after,
        }) => {
            assert_eq!(
                (budget.as_str(), limit, used, cost),
                ("client sync", 12, 10, 5)
            );
            assert!(retry_after > 23 * 3600, "{retry_after}");
        }
        other => panic!(
            "convert refused by the client budget, got {:?}",
            other.err()
        ),
    }
    for r in &replicas[..2] {
        kept.push(
            r.admit("default", Some("sync"), get(r))
                .await
                .expect("11th, 12th"),
        );
    }
    let r = &replicas[2];
    assert!(matches!(
        r.admit("default", Some("sync"), get(r)).await,
        Err(Refusal::CreditsExhausted { .. })
    ));
    // Another client is only held by the (unlimited) account budget.
    assert!(r.admit("default", Some("other"), get(r)).await.is_ok());
    drop(kept);
}

#[test]
fn explain_prints_the_cost() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("proxy.yaml");
    std::fs::write(
        &path,
        "zoho:\n  client_id: a\n  client_secret: s\n  refresh_token: r\nallow:\n  - ZohoCRM.modules.ALL\ncredits:\n  costs:\n    send_mail: 25\n",
    )
    .expect("write");
    let run = |target: &str| {
        let out = std::process::Command::new(binary())
            .args(["explain", "--config"])
            .arg(&path)
            .args(["POST", target])
            .output()
            .expect("run");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let convert = run("/crm/v8/Leads/1/actions/convert");
    assert!(convert.contains("credits: 5 (convert_lead)"), "{convert}");
    assert!(convert.contains("heavy"), "{convert}");
    let mail = run("/crm/v8/Leads/1/actions/send_mail");
    assert!(
        mail.contains("credits: 25 (send_mail, set by credits.costs)"),
        "{mail}"
    );
}

const SYNC_KEY: &str = "sync-key-0123456789abcdef0123456789abcdef";

/// Status and proxy error code of one request by the `sync` client.
async fn as_sync(
    proxy: &RunningProxy,
    method: reqwest::Method,
    path: &str,
) -> (u16, Option<String>, Option<u64>, serde_json::Value) {
    let mut req = client()
        .request(method.clone(), proxy.url(path))
        .header("X-Zoho-Proxy-Key", SYNC_KEY);
    if method == reqwest::Method::POST {
        req = req
            .header("Content-Type", "application/json")
            .body(r#"{"data":[{"overwrite":true}]}"#);
    }
    answer(req).await
}

#[tokio::test]
async fn a_client_with_credits_per_day_12_gets_exactly_12_credits_across_a_restart() {
    let zoho = Zoho::start().await;
    let store = zoho.dir.path().join("token.json");
    let extra = format!(
        "token:\n  store: {}\nclients:\n  - name: sync\n    key: {SYNC_KEY}\n    credits_per_day: 12\n",
        store.display()
    );
    let mut proxy = start(&zoho, &extra).await;
    zoho.control().clear_crm_requests();
    for i in 0..10 {
        let (status, _, _, body) = as_sync(&proxy, reqwest::Method::GET, GET).await;
        assert_eq!(status, 200, "GET {i} fits sync's budget: {body}");
    }
    // Convert Lead costs 5: 10 + 5 > 12, refused before forwarding.
    let (status, code, retry, body) = as_sync(
        &proxy,
        reqwest::Method::POST,
        "/crm/v8/Leads/554023000000235011/actions/convert",
    )
    .await;
    assert_eq!(
        (status, code.as_deref()),
        (429, Some("PROXY_CREDITS_EXHAUSTED")),
        "{body}"
    );
    assert!(retry.is_some_and(|r| r > 0), "Retry-After on the refusal");
    assert_eq!(
        body["details"]["budget"], "client sync",
        "the body names the client budget: {body}"
    );
    assert_eq!(body["details"]["limit"], 12);
    assert_eq!(body["details"]["used"], 10);
    assert_eq!(body["details"]["cost"], 5);
    for i in 0..2 {
        let (status, _, _, body) = as_sync(&proxy, reqwest::Method::GET, GET).await;
        assert_eq!(status, 200, "GET {} still fits: {body}", 10 + i);
    }
    let (status, code, retry, _) = as_sync(&proxy, reqwest::Method::GET, GET).await;
    assert_eq!(
        (status, code.as_deref()),
        (429, Some("PROXY_CREDITS_EXHAUSTED")),
        "the 13th credit is refused"
    );
    assert!(retry.is_some());
    assert_eq!(
        zoho.control().crm_requests().len(),
        12,
        "exactly 12 calls reached Zoho"
    );
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains(r#"zoho_proxy_credits_used_total{account="default",client="sync"} 12"#),
        "credits counted per client:\n{metrics}"
    );

    proxy.signal("TERM");
    assert!(
        proxy.wait_exit(Duration::from_secs(20)).await.is_some(),
        "stops"
    );
    let proxy = start(&zoho, &extra).await;
    let (status, code, _, _) = as_sync(&proxy, reqwest::Method::GET, GET).await;
    assert_eq!(
        (status, code.as_deref()),
        (429, Some("PROXY_CREDITS_EXHAUSTED")),
        "the spent client budget survives a restart"
    );
    assert_eq!(
        zoho.control().crm_requests().len(),
        12,
        "nothing more reached Zoho"
    );
}
