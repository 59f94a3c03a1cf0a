//! The fake Zoho's Books v3 and Inventory v1 APIs (`zoho_auth_proxy::sandbox`, `books/`), over
//! real loopback TLS with a client that trusts only the test CA: organizations, records, the
//! `organization_id` gate, code-57 token failures and the per-organization limit.

mod common;

use std::time::Duration;

use common::{tls_client, Zoho, CLIENT_ID, CLIENT_SECRET, REFRESH_TOKEN};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use zoho_auth_proxy::sandbox::FinanceProduct;

const CODE57: &str = r#"{"code":57,"message":"You are not authorized to perform this operation"}"#;

/// A fake, a client trusting its CA and a live access token.
async fn setup() -> (Zoho, Client, String) {
    let zoho = Zoho::start().await;
    let client = tls_client(&zoho.ca);
    let resp = client
        .post(format!("{}/oauth/v2/token", zoho.fake.accounts_url()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", REFRESH_TOKEN),
        ])
        .send()
        .await
        .expect("token request");
    let body: Value = resp.json().await.expect("token JSON");
    let token = body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("a token: {body}"))
        .to_owned();
    (zoho, client, token)
}

/// Sends `method path` to the API server with `token` (if any); returns (status, body text).
async fn call(
    zoho: &Zoho,
    client: &Client,
    token: Option<&str>,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    let mut req = client.request(method, format!("{}{path}", zoho.fake.api_url()));
    if let Some(t) = token {
        req = req.header(AUTHORIZATION, format!("Zoho-oauthtoken {t}"));
    }
    if let Some(b) = body {
        req = req
            .header(CONTENT_TYPE, "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("API request");
    let status = resp.status();
    (status, resp.text().await.expect("body"))
}

async fn get(zoho: &Zoho, client: &Client, token: &str, path: &str) -> (StatusCode, String) {
    call(zoho, client, Some(token), reqwest::Method::GET, path, None).await
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

fn org(id: &str, name: &str, default: bool) -> Value {
    json!({
        "organization_id": id,
        "name": name,
        "contact_name": "Fake Owner",
        "email": "owner@example.com",
        "is_default_org": default,
        "is_org_active": true,
        "currency_code": "USD",
        "time_zone": "Etc/UTC",
        "language_code": "en",
        "fiscal_year_start_month": 0,
    })
}

#[tokio::test]
async fn organizations_are_listed_without_an_organization_id() {
    let (zoho, client, token) = setup().await;
    let want = json!({
        "code": 0,
        "message": "success",
        "organizations": [org("60001", "Acme", true), org("60002", "Globex", false)],
    });
    for prefix in ["/books/v3", "/inventory/v1"] {
        let (status, body) = get(&zoho, &client, &token, &format!("{prefix}/organizations")).await;
        assert_eq!(status, StatusCode::OK, "{prefix}: {body}");
        assert_eq!(parse(&body), want, "{prefix} lists the default orgs");
    }
    zoho.control()
        .set_organizations(&[("111", "Acme"), ("222", "Globex")]);
    let (status, body) = get(&zoho, &client, &token, "/books/v3/organizations/222").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        parse(&body),
        json!({"code": 0, "message": "success", "organization": org("222", "Globex", false)}),
    );
    let (status, body) = get(&zoho, &client, &token, "/books/v3/organizations/60001").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a replaced org is gone");
    assert_eq!(
        body,
        r#"{"code":6041,"message":"This user is not associated with the organization"}"#
    );
    assert_eq!(
        zoho.control()
            .org_request_count(FinanceProduct::Books, "222"),
        1,
        "the path's org is counted"
    );
}

#[tokio::test]
async fn an_invoice_is_created_and_read_back_in_its_org_only() {
    let (zoho, client, token) = setup().await;
    let post = |path: &'static str, body: Value| {
        call(
            &zoho,
            &client,
            Some(&token),
            reqwest::Method::POST,
            path,
            Some(body),
        )
    };
    let (status, body) = post(
        "/books/v3/contacts?organization_id=60001",
        json!({"contact_name": "Ann"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let contact = parse(&body);
    assert_eq!(contact["code"], 0);
    assert_eq!(contact["message"], "The contact has been added.");
    let customer_id = contact["contact"]["contact_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a contact_id: {body}"))
        .to_owned();

    let (status, body) = post(
        "/books/v3/invoices?organization_id=60001",
        json!({"customer_id": customer_id, "line_items": [{"name": "Bolt", "rate": 2, "quantity": 3}]}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let created = parse(&body);
    assert_eq!(created["code"], 0);
    assert_eq!(created["message"], "The invoice has been created.");
    let invoice = &created["invoice"];
    let id = invoice["invoice_id"]
        .as_str()
        .unwrap_or_else(|| panic!("an invoice_id: {body}"))
        .to_owned();
    assert_eq!(invoice["customer_id"], customer_id.as_str());
    assert_eq!(invoice["customer_name"], "Ann");
    assert_eq!(invoice["invoice_number"], "INV-000001");
    assert_eq!(invoice["status"], "draft");
    assert_eq!(invoice["line_items"][0]["name"], "Bolt");

    let (status, body) = get(
        &zoho,
        &client,
        &token,
        &format!("/books/v3/invoices/{id}?organization_id=60001"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        parse(&body),
        json!({"code": 0, "message": "success", "invoice": invoice}),
        "the same record comes back"
    );
    let (status, body) = get(
        &zoho,
        &client,
        &token,
        "/books/v3/invoices?organization_id=60001",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(parse(&body)["invoices"], json!([invoice]), "listed");

    for other in [
        format!("/books/v3/invoices/{id}?organization_id=60002"),
        format!("/inventory/v1/invoices/{id}?organization_id=60001"),
    ] {
        let (status, body) = get(&zoho, &client, &token, &other).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{other}: {body}");
        assert_eq!(body, r#"{"code":1002,"message":"Invoice does not exist."}"#);
    }

    let (status, body) = call(
        &zoho,
        &client,
        Some(&token),
        reqwest::Method::PUT,
        &format!("/books/v3/invoices/{id}?organization_id=60001"),
        Some(json!({"status": "sent"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(parse(&body)["invoice"]["status"], "sent");
    let (status, body) = call(
        &zoho,
        &client,
        Some(&token),
        reqwest::Method::DELETE,
        &format!("/books/v3/invoices/{id}?organization_id=60001"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        r#"{"code":0,"message":"The invoice has been deleted."}"#
    );
    let paths: Vec<String> = zoho
        .control()
        .crm_requests()
        .into_iter()
        .map(|r| r.path_and_query)
        .collect();
    assert!(
        paths.contains(&format!("/books/v3/invoices/{id}?organization_id=60001")),
        "Books requests are recorded with the others: {paths:?}"
    );
}

#[tokio::test]
async fn the_organization_id_is_required_and_must_be_known() {
    let (zoho, client, token) = setup().await;
    for path in [
        "/books/v3/invoices",
        "/inventory/v1/items/1",
        "/books/v3/contacts?organization_id=",
    ] {
        let (status, body) = get(&zoho, &client, &token, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(
            body, r#"{"code":2,"message":"organization_id is required"}"#,
            "{path}"
        );
    }
    for path in [
        "/books/v3/invoices?organization_id=999",
        "/inventory/v1/organizations/999",
    ] {
        let (status, body) = get(&zoho, &client, &token, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(
            body, r#"{"code":6041,"message":"This user is not associated with the organization"}"#,
            "{path}"
        );
    }
    let (status, body) = get(
        &zoho,
        &client,
        &token,
        "/books/v3/estimates?organization_id=60001",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "an unserved path");
    assert_eq!(body, r#"{"code":5,"message":"Invalid URL Passed"}"#);
}

#[tokio::test]
async fn bad_tokens_and_forced_failures_answer_401_code_57() {
    let (zoho, client, token) = setup().await;
    let path = "/books/v3/invoices?organization_id=60001";
    let get_with =
        |t: Option<&'static str>| call(&zoho, &client, t, reqwest::Method::GET, path, None);
    for (what, t) in [("no token", None), ("a dead token", Some("1000.dead.beef"))] {
        let (status, body) = get_with(t).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(body, CODE57, "{what}");
    }
    let (status, body) = get(
        &zoho,
        &client,
        &token,
        "/inventory/v1/items?organization_id=60001&__fake=invalid_token",
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::UNAUTHORIZED, CODE57),
        "the switch"
    );

    let control = zoho.control();
    control.fail_next_with_code57(2);
    for n in 1..=2 {
        let (status, body) = get(&zoho, &client, &token, path).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::UNAUTHORIZED, CODE57),
            "forced {n}"
        );
    }
    assert_eq!(control.code57_pending(), 0, "both used up");
    assert!(control.is_live(&token), "the token itself stays live");
    let (status, body) = get(&zoho, &client, &token, path).await;
    assert_eq!(status, StatusCode::OK, "the third passes: {body}");
    assert_eq!(
        parse(&body),
        json!({"code": 0, "message": "success", "invoices": [],
               "page_context": {"page": 1, "per_page": 200, "has_more_page": false}}),
    );
    assert_eq!(
        control.org_request_count(FinanceProduct::Books, "60001"),
        5,
        "refused requests reached the fake too"
    );
}

#[tokio::test]
async fn over_the_per_minute_limit_an_org_gets_429_code_45() {
    let (zoho, client, token) = setup().await;
    let control = zoho.control();
    control.set_books_rate_limit(Some(3));
    let path = "/books/v3/items?organization_id=60001";
    for n in 1..=3 {
        let (status, body) = get(&zoho, &client, &token, path).await;
        assert_eq!(status, StatusCode::OK, "request {n}: {body}");
    }
    let resp = client
        .get(format!("{}{path}", zoho.fake.api_url()))
        .header(AUTHORIZATION, format!("Zoho-oauthtoken {token}"))
        .send()
        .await
        .expect("fourth request");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().get(RETRY_AFTER).is_none(), "no Retry-After");
    assert_eq!(
        resp.text().await.expect("body"),
        r#"{"code":45,"message":"Request Limit Exceeded"}"#
    );
    for other in [
        "/books/v3/items?organization_id=60002",
        "/inventory/v1/items?organization_id=60001",
        "/books/v3/organizations",
    ] {
        let (status, body) = get(&zoho, &client, &token, other).await;
        assert_eq!(status, StatusCode::OK, "{other} has its own budget: {body}");
    }
    assert_eq!(control.org_request_count(FinanceProduct::Books, "60001"), 4);
    assert_eq!(control.org_request_count(FinanceProduct::Books, "60002"), 1);
    assert_eq!(
        control.org_request_count(FinanceProduct::Inventory, "60001"),
        1
    );
    assert_eq!(
        control.org_request_count(FinanceProduct::Inventory, "60002"),
        0
    );
    control.set_books_rate_limit(None);
    let (status, _) = get(&zoho, &client, &token, path).await;
    assert_eq!(status, StatusCode::OK, "unlimited again");
}

#[tokio::test]
async fn fault_switches_work_on_books_paths() {
    let (zoho, client, token) = setup().await;
    let (status, body) = get(
        &zoho,
        &client,
        &token,
        "/books/v3/invoices?organization_id=60001&__fake=status=500",
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, r#"{"code":1000,"message":"Internal error"}"#);
    let (status, body) = get(
        &zoho,
        &client,
        &token,
        "/inventory/v1/items?organization_id=60001&__fake=echo",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(parse(&body)["path"], "/inventory/v1/items");
    let started = tokio::time::Instant::now();
    let (status, _) = get(
        &zoho,
        &client,
        &token,
        "/books/v3/organizations?__fake=delay_ms=150",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "delayed, then answered normally"
    );
}

#[tokio::test]
async fn the_proxys_own_calls_are_logged_apart_and_not_refused() {
    let (zoho, client, token) = setup().await;
    let control = zoho.control();
    control.set_books_rate_limit(Some(1));
    control.fail_next_with_code57(1);
    let path = "/books/v3/contacts?organization_id=60001";
    for n in 1..=2 {
        let resp = client
            .get(format!("{}{path}", zoho.fake.api_url()))
            .header(AUTHORIZATION, format!("Zoho-oauthtoken {token}"))
            .header(reqwest::header::USER_AGENT, "zoho-auth-proxy/0.1.0")
            .send()
            .await
            .expect("own call");
        assert_eq!(resp.status(), StatusCode::OK, "own call {n}");
    }
    assert_eq!(
        control.code57_pending(),
        1,
        "own calls leave the forced failure"
    );
    let (status, body) = get(&zoho, &client, &token, path).await;
    assert_eq!((status, body.as_str()), (StatusCode::UNAUTHORIZED, CODE57));
    let (status, _) = get(&zoho, &client, &token, path).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the first client request within the limit"
    );
    let (status, _) = get(&zoho, &client, &token, path).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the second is over it"
    );
    assert_eq!(control.own_requests().len(), 2, "own calls logged apart");
    assert_eq!(control.crm_requests().len(), 3, "client requests only");
    assert_eq!(
        control.org_request_count(FinanceProduct::Books, "60001"),
        5,
        "every arrival counts"
    );
}
