//! Zoho Books and Inventory through the release binary, against the fake Zoho's Books and
//! Inventory APIs over TLS: classification, organization ids (required, foreign, repeated,
//! narrowed per client), the per-organization window, Zoho's own 429, and the one refresh and
//! replay after a 401 with code 57.

mod common;

use common::{client, RunningProxy, Zoho};
use serde_json::Value;
use std::time::Duration;
use zoho_auth_proxy::sandbox::FinanceProduct;

const ALLOW: &[&str] = &[
    "ZohoBooks.invoices.ALL",
    "ZohoBooks.settings.READ",
    "ZohoInventory.items.READ",
    "ZohoInventory.settings.READ",
    "ZohoCRM.modules.leads.READ",
];

/// A GET through the proxy: status, JSON body, and `Retry-After` in seconds.
async fn get(proxy: &RunningProxy, path: &str) -> (u16, Value, Option<u64>) {
    let resp = client()
        .get(proxy.url(path))
        .send()
        .await
        .expect("proxy answers");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body, retry_after)
}

/// The status of a GET through the proxy.
async fn status_of(proxy: &RunningProxy, path: &str) -> u16 {
    get(proxy, path).await.0
}

/// The `code` of a GET's JSON answer through the proxy.
async fn code_of(proxy: &RunningProxy, path: &str) -> Value {
    get(proxy, path).await.1["code"].clone()
}

fn books_requests(zoho: &Zoho) -> usize {
    zoho.control()
        .crm_requests()
        .iter()
        .filter(|r| {
            r.path_and_query.starts_with("/books/") || r.path_and_query.starts_with("/inventory/")
        })
        .count()
}

#[tokio::test]
async fn books_and_inventory_are_classified_and_forwarded_with_the_token() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &zoho.config(ALLOW, "")).await;

    let (status, body, _) = get(&proxy, "/books/v3/invoices?organization_id=60001").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["code"], 0);
    assert!(body["invoices"].is_array(), "{body}");
    // Books GET /items needs settings; Inventory GET /items needs items.
    assert_eq!(
        status_of(&proxy, "/books/v3/items?organization_id=60001").await,
        200
    );
    assert_eq!(
        status_of(&proxy, "/inventory/v1/items?organization_id=60001").await,
        200
    );
    let (status, body, _) = get(&proxy, "/books/v3/bills?organization_id=60001").await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "PROXY_SCOPE_DENIED");
    assert_eq!(body["details"]["missing"][0], "ZohoBooks.bills.READ");
    let (status, body, _) = get(&proxy, "/books/v3/nonsense/1/2?organization_id=60001").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("PROXY_UNKNOWN_OPERATION"))
    );

    // Creating goes through with the body, and the token is the proxy's.
    let resp = client()
        .post(proxy.url("/books/v3/invoices?organization_id=60001"))
        .json(&serde_json::json!({"customer_id": "1", "line_items": []}))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 201);
    let sent = zoho.control().crm_requests();
    let last = sent.last().expect("a request reached the stand-in");
    assert_eq!(
        last.path_and_query,
        "/books/v3/invoices?organization_id=60001"
    );
    let auth = last.header_str("authorization").unwrap_or_default();
    assert!(auth.starts_with("Zoho-oauthtoken "), "{auth}");
    // Nothing refused above reached the stand-in: invoices, two item lists, the POST.
    assert_eq!(books_requests(&zoho), 4);
    // No CRM credits for Books.
    let status = proxy.status_json().await;
    assert_eq!(
        status["credits"]["accounts"][0]["used_in_window"], 0,
        "{status}"
    );
    proxy.assert_no_secrets(&[]);
}

#[tokio::test]
async fn organization_ids_are_required_listed_single_and_narrowed_per_client() {
    let zoho = Zoho::start().await;
    let key_a = "a".repeat(40);
    let key_b = "b".repeat(40);
    let extra = format!(
        "organizations: [60001, \"60002\"]\nclients:\n  - name: all\n    key: {key_a}\n  - name: narrow\n    key: {key_b}\n    organizations: [60002]\n"
    );
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &zoho.config(ALLOW, &extra)).await;
    let send = |key: &str, path: &str| {
        let req = client()
            .get(proxy.url(path))
            .header("X-Zoho-Proxy-Key", key.to_string());
        async move {
            let resp = req.send().await.expect("answers");
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            (status, body["code"].as_str().map(str::to_string), body)
        }
    };
    let before = books_requests(&zoho);
    let (status, code, body) = send(&key_a, "/books/v3/invoices").await;
    assert_eq!(
        (status, code.as_deref()),
        (400, Some("PROXY_ORGANIZATION_REQUIRED")),
        "{body}"
    );
    let (status, code, body) = send(&key_a, "/books/v3/invoices?organization_id=70000").await;
    assert_eq!(
        (status, code.as_deref()),
        (403, Some("PROXY_ORGANIZATION_NOT_ALLOWED"))
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("70000") && message.contains("organizations"),
        "{message}"
    );
    let (status, code, _) = send(
        &key_a,
        "/books/v3/invoices?organization_id=60001&organization_id=60002",
    )
    .await;
    assert_eq!((status, code.as_deref()), (400, Some("PROXY_BAD_QUERY")));
    let (status, code, _) = send(
        &key_a,
        "/books/v3/invoices?organization_id=60001&organization%5Fid=70000",
    )
    .await;
    assert_eq!((status, code.as_deref()), (400, Some("PROXY_BAD_QUERY")));
    assert_eq!(
        books_requests(&zoho),
        before,
        "no refused request reached the stand-in"
    );

    assert_eq!(
        send(&key_a, "/books/v3/invoices?organization_id=60001")
            .await
            .0,
        200
    );
    assert_eq!(send(&key_a, "/books/v3/organizations").await.0, 200);
    let (status, code, _) = send(&key_b, "/books/v3/invoices?organization_id=60001").await;
    assert_eq!(
        (status, code.as_deref()),
        (403, Some("PROXY_ORGANIZATION_NOT_ALLOWED"))
    );
    assert_eq!(
        send(&key_b, "/books/v3/invoices?organization_id=60002")
            .await
            .0,
        200
    );
    assert_eq!(send(&key_b, "/inventory/v1/organizations").await.0, 200);
    assert_eq!(books_requests(&zoho), before + 4);

    let status = proxy.status_json().await;
    assert_eq!(
        status["accounts"][0]["organizations"],
        serde_json::json!(["60001", "60002"])
    );
}

#[tokio::test]
async fn without_organizations_any_id_goes_and_the_log_and_status_say_so() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &zoho.config(ALLOW, "")).await;
    assert_eq!(
        status_of(&proxy, "/books/v3/invoices?organization_id=60002").await,
        200
    );
    let status = proxy.status_json().await;
    let text = status["accounts"][0]["organizations"]
        .as_str()
        .unwrap_or_default();
    assert!(text.starts_with("any"), "{status}");
    assert!(
        proxy
            .wait_for_output(Duration::from_secs(5), |o| o
                .contains("organizations: none set"))
            .await,
        "{}",
        proxy.logs()
    );
}

#[tokio::test]
async fn a_burst_to_one_organization_is_held_to_its_window_and_others_go_on() {
    let zoho = Zoho::start().await;
    let extra = "limits:\n  requests_per_minute: {books: 10}\n  upstream_queue_timeout: 2s\n";
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &zoho.config(ALLOW, extra)).await;
    let burst = (0..30).map(|_| get(&proxy, "/books/v3/invoices?organization_id=60001"));
    let answers = futures_util::future::join_all(burst).await;
    let ok = answers.iter().filter(|(s, ..)| *s == 200).count();
    let limited: Vec<_> = answers.iter().filter(|(s, ..)| *s == 429).collect();
    assert_eq!(
        ok,
        10,
        "{:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    assert_eq!(limited.len(), 20);
    for (_, body, retry_after) in &limited {
        assert_eq!(body["code"], "PROXY_RATE_LIMITED", "{body}");
        assert_eq!(body["details"]["organization"], "60001");
        let secs = retry_after.unwrap_or(0);
        assert!((1..=60).contains(&secs), "Retry-After {retry_after:?}");
    }
    assert_eq!(
        zoho.control()
            .org_request_count(FinanceProduct::Books, "60001"),
        10
    );
    // Another organization, and Inventory, are not held back.
    assert_eq!(
        status_of(&proxy, "/books/v3/invoices?organization_id=60002").await,
        200
    );
    assert_eq!(
        status_of(&proxy, "/inventory/v1/items?organization_id=60001").await,
        200
    );
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains(r#"zoho_proxy_org_refused_total{account="default",product="books",organization="60001",reason="rate_limited"} 20"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"zoho_proxy_org_requests_total{account="default",product="books",organization="60001"} 10"#));
    let console = proxy.admin_text("/").await;
    assert!(
        console.contains("Books and Inventory, per organization") && console.contains("10 of 10"),
        "{console}"
    );
}

#[tokio::test]
async fn zohos_own_429_holds_back_that_organization_only() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &zoho.config(ALLOW, "")).await;
    zoho.control().set_books_rate_limit(Some(2));
    assert_eq!(
        status_of(&proxy, "/books/v3/invoices?organization_id=60001").await,
        200
    );
    assert_eq!(
        status_of(&proxy, "/books/v3/invoices?organization_id=60001").await,
        200
    );
    let (status, body, _) = get(&proxy, "/books/v3/invoices?organization_id=60001").await;
    assert_eq!(
        (status, body["code"].as_i64()),
        (429, Some(45)),
        "Zoho's own 429 passes through"
    );
    let reached = zoho
        .control()
        .org_request_count(FinanceProduct::Books, "60001");
    let (status, body, retry_after) = get(&proxy, "/books/v3/invoices?organization_id=60001").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("PROXY_ZOHO_THROTTLED")),
        "{body}"
    );
    assert!(retry_after.is_some());
    assert_eq!(
        zoho.control()
            .org_request_count(FinanceProduct::Books, "60001"),
        reached
    );
    assert_eq!(
        status_of(&proxy, "/books/v3/invoices?organization_id=60002").await,
        200
    );
    assert_eq!(status_of(&proxy, "/crm/v8/Leads").await, 200);
}

#[tokio::test]
async fn a_401_with_code_57_costs_one_mint_and_the_request_succeeds() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &zoho.config(ALLOW, "")).await;
    assert_eq!(
        status_of(&proxy, "/books/v3/invoices?organization_id=60001").await,
        200
    );
    let mints = zoho.control().mints();
    zoho.control().fail_next_with_code57(1);
    let (status, body, _) = get(&proxy, "/books/v3/invoices?organization_id=60001").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(zoho.control().mints(), mints + 1);
    // The same on Inventory.
    zoho.control().fail_next_with_code57(1);
    let resp = client()
        .get(proxy.url("/inventory/v1/items?organization_id=60001"))
        .send()
        .await
        .expect("answers");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(zoho.control().mints(), mints + 2);
    let logged = proxy
        .wait_for_output(Duration::from_secs(5), |o| {
            o.contains("replaying once with a new token")
        })
        .await;
    assert!(logged, "{}", proxy.logs());
}

#[tokio::test]
async fn report_mode_explain_and_the_suggested_allow_list_know_the_products() {
    let zoho = Zoho::start().await;
    let extra = "policy:\n  mode: report\norganizations: [60001]\n";
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &zoho.config(ALLOW, extra)).await;
    // A scope the list lacks is reported and forwarded; an organization it lacks is not.
    let (status, body, _) = get(&proxy, "/books/v3/contacts?organization_id=60001").await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = get(&proxy, "/books/v3/contacts?organization_id=60002").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("PROXY_ORGANIZATION_NOT_ALLOWED"))
    );
    assert_eq!(
        status_of(&proxy, "/inventory/v1/items?organization_id=60001").await,
        200
    );
    let status = proxy.status_json().await;
    let suggested: Vec<String> = status["accounts"][0]["suggested_allow"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        suggested.contains(&"ZohoBooks.contacts.READ".to_string())
            && suggested.contains(&"ZohoInventory.items.READ".to_string()),
        "{suggested:?}"
    );
    let explained: Value =
        client()
            .get(proxy.admin_url(
                "/explain?method=GET&path=%2Fbooks%2Fv3%2Fitems%3Forganization_id%3D60001",
            ))
            .header("Accept", "application/json")
            .send()
            .await
            .expect("answers")
            .json()
            .await
            .expect("json");
    assert!(
        explained.to_string().contains("ZohoBooks.settings.READ"),
        "{explained}"
    );
    let output = std::process::Command::new(common::binary())
        .args(["explain", "--config"])
        .arg(&proxy.config_path)
        .args(["GET", "/inventory/v1/items?organization_id=60001"])
        .env("TEST_CLIENT_SECRET", "x")
        .env("TEST_REFRESH_TOKEN", "y")
        .output()
        .expect("explain runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("ZohoInventory.items.READ") && text.contains("spends no CRM credits"),
        "{text}"
    );
}

#[tokio::test]
async fn a_reload_changes_organizations_and_windows_and_a_broken_one_keeps_them() {
    let zoho = Zoho::start().await;
    let first = "organizations: [60001]\nlimits:\n  requests_per_minute: {books: 2}\n";
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &zoho.config(ALLOW, first)).await;
    let second_org = "/books/v3/invoices?organization_id=60002";
    assert_eq!(
        code_of(&proxy, second_org).await,
        "PROXY_ORGANIZATION_NOT_ALLOWED"
    );
    for _ in 0..2 {
        assert_eq!(
            status_of(&proxy, "/books/v3/invoices?organization_id=60001").await,
            200
        );
    }
    assert_eq!(
        code_of(&proxy, "/books/v3/invoices?organization_id=60001").await,
        "PROXY_RATE_LIMITED"
    );
    // A broken list is refused, naming its key, and the old one stays.
    std::fs::write(
        &proxy.config_path,
        zoho.config(ALLOW, "organizations: [\"60 002\"]\n"),
    )
    .expect("write");
    proxy.signal("HUP");
    let refused = proxy
        .wait_for_output(Duration::from_secs(5), |t| t.contains("organizations[0]"))
        .await;
    assert!(refused, "{}", proxy.logs());
    assert_eq!(
        code_of(&proxy, second_org).await,
        "PROXY_ORGANIZATION_NOT_ALLOWED"
    );
    // A good one applies; the window keeps its count and takes the new limit.
    let next = "organizations: [60001, 60002]\nlimits:\n  requests_per_minute: {books: 3}\n";
    std::fs::write(&proxy.config_path, zoho.config(ALLOW, next)).expect("write");
    proxy.signal("HUP");
    let applied = common::poll_until(Duration::from_secs(5), || async {
        status_of(&proxy, second_org).await == 200
    })
    .await;
    assert!(applied, "{}", proxy.logs());
    assert_eq!(
        status_of(&proxy, "/books/v3/invoices?organization_id=60001").await,
        200
    );
    assert_eq!(
        code_of(&proxy, "/books/v3/invoices?organization_id=60001").await,
        "PROXY_RATE_LIMITED"
    );
}

#[tokio::test]
async fn a_daily_budget_per_organization_refuses_with_retry_after() {
    let zoho = Zoho::start().await;
    let extra = "limits:\n  daily_calls: {inventory: 2}\n";
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &zoho.config(ALLOW, extra)).await;
    let items = "/inventory/v1/items?organization_id=60001";
    for _ in 0..2 {
        assert_eq!(status_of(&proxy, items).await, 200);
    }
    let (status, body, retry_after) = get(&proxy, items).await;
    assert_eq!(status, 429);
    assert_eq!(body["code"], "PROXY_DAILY_CALLS_EXHAUSTED", "{body}");
    assert_eq!(body["details"]["limit"], 2);
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.contains("limits.daily_calls.inventory")));
    let secs = retry_after.unwrap_or(0);
    assert!(
        secs > 60 && secs <= 24 * 3600,
        "Retry-After {retry_after:?}"
    );
    assert_eq!(
        zoho.control()
            .org_request_count(FinanceProduct::Inventory, "60001"),
        2
    );
    // Another organization, and Books, have budgets of their own (Books has none here).
    assert_eq!(
        status_of(&proxy, "/inventory/v1/items?organization_id=60002").await,
        200
    );
    assert_eq!(
        status_of(&proxy, "/books/v3/items?organization_id=60001").await,
        200
    );
}
