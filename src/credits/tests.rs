//! The budget logic, driven through its inputs: a config, a client map built directly (as the
//! lead will build it from `clients[].credits_per_day`) and an injected clock.

use super::*;
use crate::config::Config;
use crate::policy::CostedOp;
use http::{HeaderMap, StatusCode};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const YAML: &str = "listen: 127.0.0.1:8080
zoho:
  client_id: 1000.ID
  client_secret: CS-CANARY
  refresh_token: RT-CANARY
allow:
  - ZohoCRM.modules.ALL
credits:
  daily_limit: 20
";

struct Fixture {
    credits: Arc<Credits>,
    now: Arc<AtomicU64>,
}

fn fixture(yaml: &str, clients: &[(&str, u64)]) -> Fixture {
    let config = Config::from_yaml_str_with(yaml, &|_| None, Path::new("/tmp")).expect("valid");
    let clients: Vec<(String, u64)> = clients.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    let now = Arc::new(AtomicU64::new(1_000 * ledger::MINUTE_MS));
    let clock = now.clone();
    let credits = Arc::new(Credits::with_clock(
        &config,
        CreditSettings::from_config(&config, &clients),
        &SharedStores::new(),
        CreditMetrics::default(),
        Arc::new(move || clock.load(Ordering::SeqCst)),
    ));
    Fixture { credits, now }
}

fn get(f: &Fixture) -> Cost {
    f.credits
        .price("default", "GET", "/crm/v8/Leads", None, BodyView::None)
}

fn convert(f: &Fixture) -> Cost {
    f.credits.price(
        "default",
        "POST",
        "/crm/v8/Leads/1/actions/convert",
        None,
        BodyView::None,
    )
}

/// Admits and settles (the request reached Zoho).
async fn spend(f: &Fixture, client: Option<&str>, cost: Cost) -> Result<(), Refusal> {
    let mut charge = f.credits.admit("default", client, cost).await?;
    f.credits
        .on_response(&mut charge, StatusCode::OK, &HeaderMap::new())
        .await;
    Ok(())
}

/// The acceptance scenario for a client with `credits_per_day: 12`: 10 GETs, a Convert Lead
/// (5) refused naming the client budget, 2 more GETs, then refusals.
#[tokio::test]
async fn a_client_budget_of_12_admits_exactly_12_credits() {
    let f = fixture(YAML, &[("sync", 12)]);
    for i in 0..10 {
        spend(&f, Some("sync"), get(&f))
            .await
            .unwrap_or_else(|e| panic!("GET {i}: {e}"));
    }
    match spend(&f, Some("sync"), convert(&f)).await {
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
            assert!(
                retry_after > 23 * 3600,
                "the credits come back a day later: {retry_after}"
            );
        }
        other => panic!("convert should be refused, got {:?}", other.err()),
    }
    spend(&f, Some("sync"), get(&f)).await.expect("11th credit");
    spend(&f, Some("sync"), get(&f)).await.expect("12th credit");
    assert!(matches!(
        spend(&f, Some("sync"), get(&f)).await,
        Err(Refusal::CreditsExhausted { .. })
    ));
    // Another client, and anonymous requests, only meet the account budget (20).
    spend(&f, Some("other"), get(&f))
        .await
        .expect("other client");
    spend(&f, None, get(&f)).await.expect("anonymous");
    let status = f.credits.status_json();
    assert_eq!(status["accounts"][0]["used_in_window"], 14);
    let sync = status["clients"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["client"] == "sync"))
        .expect("sync listed");
    assert_eq!(
        (sync["used_in_window"].as_u64(), sync["left"].as_u64()),
        (Some(12), Some(0))
    );
}

#[tokio::test]
async fn the_account_budget_refuses_and_names_itself_then_recovers_after_a_day() {
    let f = fixture(YAML, &[]);
    for _ in 0..4 {
        spend(&f, None, convert(&f)).await.expect("4 × 5 = 20");
    }
    let Err(Refusal::CreditsExhausted {
        budget,
        retry_after,
        ..
    }) = spend(&f, None, get(&f)).await
    else {
        panic!("the 21st credit is refused");
    };
    assert_eq!(budget, "account default");
    f.now.fetch_add(retry_after * 1000, Ordering::SeqCst);
    spend(&f, None, get(&f))
        .await
        .expect("after Retry-After the credits are back");
}

#[tokio::test]
async fn a_charge_that_never_reached_zoho_is_given_back() {
    let f = fixture(YAML, &[]);
    let charge = f
        .credits
        .admit("default", None, convert(&f))
        .await
        .expect("fits");
    drop(charge);
    assert_eq!(f.credits.status_json()["accounts"][0]["used_in_window"], 0);
}

/// Every forwarded request's future holds `admit`'s and `on_response`'s, and hyper moves that
/// future once per request: Redis's futures (kilobytes) are boxed, so in local mode these stay
/// small.
#[tokio::test]
async fn the_credit_gates_futures_stay_small_because_redis_calls_are_boxed() {
    let f = fixture(YAML, &[]);
    let admit = f.credits.admit("default", None, get(&f));
    let admit_size = std::mem::size_of_val(&admit);
    let mut charge = admit.await.expect("fits");
    let headers = HeaderMap::new();
    let settle = f.credits.on_response(&mut charge, StatusCode::OK, &headers);
    let settle_size = std::mem::size_of_val(&settle);
    settle.await;
    assert!(
        admit_size < 1024,
        "Credits::admit's future is {admit_size} bytes"
    );
    assert!(
        settle_size < 1024,
        "Credits::on_response's future is {settle_size} bytes"
    );
}

#[tokio::test]
async fn zohos_429_stops_forwarding_for_the_back_off_and_a_success_resets_it() {
    let f = fixture(YAML, &[]);
    let mut charge = f
        .credits
        .admit("default", None, get(&f))
        .await
        .expect("fits");
    let mut headers = HeaderMap::new();
    headers.insert(REMAINING_HEADER, http::HeaderValue::from_static("4"));
    f.credits
        .on_response(&mut charge, StatusCode::TOO_MANY_REQUESTS, &headers)
        .await;
    match f.credits.admit("default", None, get(&f)).await {
        Err(Refusal::ZohoThrottled { retry_after, .. }) => assert_eq!(retry_after, 1),
        other => panic!("expected the back-off, got {:?}", other.err()),
    }
    let status = f.credits.status_json();
    assert_eq!(status["accounts"][0]["zoho_remaining"], 4);
    assert!(status["accounts"][0]["backoff"].is_object());
    f.now.fetch_add(1_000, Ordering::SeqCst);
    spend(&f, None, get(&f)).await.expect("back-off over");
    assert!(f.credits.status_json()["accounts"][0]["backoff"].is_null());
}

#[test]
fn bulk_downloads_are_spaced_ten_a_minute() {
    let mut starts = VecDeque::new();
    for i in 0..10 {
        assert_eq!(
            download_wait(&mut starts, 1_000 + i),
            Duration::ZERO,
            "download {i}"
        );
    }
    assert_eq!(
        download_wait(&mut starts, 5_000),
        Duration::from_millis(56_000),
        "the 11th waits until the first is a minute old"
    );
    assert_eq!(
        download_wait(&mut starts, 5_000),
        Duration::from_millis(56_001)
    );
    assert_eq!(download_wait(&mut starts, 70_000), Duration::ZERO);
}

#[test]
fn config_keys() {
    let c = Config::from_yaml_str_with(
        &format!("{YAML}  costs:\n    convert_lead: 6\n"),
        &|_| None,
        Path::new("/tmp"),
    )
    .expect("valid");
    assert_eq!(c.accounts[0].credits.daily_limit, Some(20));
    assert_eq!(
        c.accounts[0].credits.costs.0.get(&CostedOp::ConvertLead),
        Some(&6)
    );
    assert_eq!(c.limits.heavy_concurrency, 10);
    let bad = Config::from_yaml_str_with(
        &format!("{YAML}  costs:\n    convert: 6\n"),
        &|_| None,
        Path::new("/tmp"),
    )
    .expect_err("unknown operation");
    assert_eq!(bad.key, "credits.costs.convert");
    let zero = Config::from_yaml_str_with(
        &YAML.replace("daily_limit: 20", "daily_limit: 0"),
        &|_| None,
        Path::new("/tmp"),
    )
    .expect_err("zero limit");
    assert_eq!(zero.key, "credits.daily_limit");
}

#[tokio::test]
async fn file_backed_ledgers_of_accounts_and_clients_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let yaml = format!(
        "{YAML}token:\n  store: {}\n",
        dir.path().join("token.json").display()
    );
    let first = fixture(&yaml, &[("sync", 12)]);
    for _ in 0..2 {
        spend(&first, Some("sync"), convert(&first))
            .await
            .expect("fits");
    }
    first.credits.flush().await;
    assert!(dir.path().join("token.credits.json").is_file());
    assert!(dir.path().join("token.clients-credits.json").is_file());

    let second = fixture(&yaml, &[("sync", 12)]);
    second.credits.restore().await;
    let status = second.credits.status_json();
    assert_eq!(status["accounts"][0]["used_in_window"], 10, "{status}");
    assert_eq!(status["accounts"][0]["store"], "file");
    match spend(&second, Some("sync"), convert(&second)).await {
        Err(Refusal::CreditsExhausted { budget, used, .. }) => {
            assert_eq!(
                (budget.as_str(), used),
                ("client sync", 10),
                "the client's 10 were restored"
            );
        }
        other => panic!(
            "refused by the restored client budget, got {:?}",
            other.err()
        ),
    }
}

#[tokio::test]
async fn the_proxys_own_spending_is_apart_and_its_429_quiets_the_clients() {
    let f = fixture(YAML, &[]);
    f.credits.record_own("default", 2);
    let status = f.credits.status_json();
    assert_eq!(
        status["accounts"][0]["used_in_window"], 0,
        "no budget charged"
    );
    let proxy = status["clients"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["client"] == PROXY_CLIENT))
        .cloned()
        .unwrap_or_default();
    assert_eq!(proxy["used_in_window"], 2, "shown apart: {status}");
    f.credits
        .own_throttled("default", Some(Duration::from_secs(5)));
    assert!(f.credits.zoho_backoff("default").is_some());
    assert!(
        matches!(
            f.credits.admit("default", None, get(&f)).await,
            Err(Refusal::ZohoThrottled { .. })
        ),
        "a 429 to the proxy's own call quiets the clients too"
    );
}

#[test]
fn zohos_costs_price_until_a_new_read_and_an_empty_table_keeps_the_built_in_one() {
    let f = fixture(YAML, &[]);
    assert_eq!(get(&f).credits, 1);
    let table = br#"{"__apis":[{"path":"/crm/v8/Leads","operation_types":[{"method":"GET","max_credits":2}]}]}"#;
    let zoho = crate::policy::ZohoCosts::parse(table).expect("table");
    f.credits.install_zoho_costs("default", zoho, 42);
    assert_eq!(get(&f).credits, 2, "Zoho's figure");
    assert_eq!(
        convert(&f).credits,
        5,
        "what Zoho does not list stays built in"
    );
    f.credits
        .zoho_costs_unavailable("default", "a passing failure".into());
    assert_eq!(get(&f).credits, 2, "a failed read keeps the table in force");
    let status = f.credits.status_json();
    assert_eq!(
        status["accounts"][0]["costs"],
        serde_json::json!({"source": "zoho", "fetched_unix_ms": 42, "operations": 1})
    );
    let empty = crate::policy::ZohoCosts::parse(br#"{"__apis":[]}"#).expect("empty");
    f.credits.install_zoho_costs("default", empty, 43);
    assert_eq!(
        get(&f).credits,
        1,
        "a table that prices nothing is not used"
    );
    assert_eq!(
        f.credits.status_json()["accounts"][0]["costs"]["source"],
        "builtin"
    );
}
