//! Tests of the fake Zoho itself (`zoho_auth_proxy::sandbox`), over real loopback TLS with a
//! client that trusts only the test CA.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use zoho_auth_proxy::sandbox::{download_sha256, FakeZoho, FakeZohoOptions, TestCa, TokenBehavior};

const DEADLINE: Duration = Duration::from_secs(10);

fn client(ca: &TestCa) -> Client {
    Client::builder()
        .use_preconfigured_tls(ca.client_config())
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap_or_else(|e| panic!("building the test client: {e}"))
}

fn http1_client(ca: &TestCa) -> Client {
    let mut tls = ca.client_config();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Client::builder()
        .use_preconfigured_tls(tls)
        .http1_only()
        .no_proxy()
        .build()
        .unwrap_or_else(|e| panic!("building the http1 test client: {e}"))
}

async fn start(opts: FakeZohoOptions, ca: &TestCa) -> FakeZoho {
    FakeZoho::start(opts, ca)
        .await
        .unwrap_or_else(|e| panic!("starting the fake: {e}"))
}

/// POSTs an urlencoded token request and returns (status, body text).
async fn token_form(c: &Client, fake: &FakeZoho, form: &[(&str, &str)]) -> (StatusCode, String) {
    let resp = c
        .post(format!("{}/oauth/v2/token", fake.accounts_url()))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(url_encode(form))
        .send()
        .await
        .unwrap_or_else(|e| panic!("token request failed: {e}"));
    let status = resp.status();
    (status, resp.text().await.unwrap_or_default())
}

fn url_encode(form: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish()
}

fn parse(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body}"))
}

/// A successful refresh; returns the access token.
async fn refresh(c: &Client, fake: &FakeZoho) -> String {
    let o = fake.options();
    let (status, body) = token_form(
        c,
        fake,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &o.client_id),
            ("client_secret", &o.client_secret),
            ("refresh_token", o.refresh_token()),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "refresh answers 200: {body}");
    parse(&body)["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("refresh response has access_token: {body}"))
        .to_owned()
}

async fn crm_get(c: &Client, fake: &FakeZoho, path: &str, token: &str) -> reqwest::Response {
    c.get(format!("{}{path}", fake.api_url()))
        .header(AUTHORIZATION, format!("Zoho-oauthtoken {token}"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path} failed: {e}"))
}

fn is_zoho_token(t: &str) -> bool {
    let parts: Vec<&str> = t.split('.').collect();
    parts.len() == 3
        && parts[0] == "1000"
        && parts[1..]
            .iter()
            .all(|p| p.len() == 32 && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[tokio::test]
async fn refresh_success_has_zoho_shape() {
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    let c = client(&ca);
    let o = fake.options();
    let resp = c
        .post(format!("{}/oauth/v2/token", fake.accounts_url()))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(url_encode(&[
            ("grant_type", "refresh_token"),
            ("client_id", &o.client_id),
            ("client_secret", &o.client_secret),
            ("refresh_token", o.refresh_token()),
        ]))
        .send()
        .await
        .unwrap_or_else(|e| panic!("token request: {e}"));
    assert_eq!(resp.status(), StatusCode::OK, "refresh status is 200");
    assert_eq!(
        resp.headers().get(CONTENT_TYPE).map(|v| v.as_bytes()),
        Some(&b"application/json;charset=UTF-8"[..]),
        "token response content type is Zoho's"
    );
    let body = parse(&resp.text().await.unwrap_or_default());
    let token = body["access_token"].as_str().unwrap_or_default();
    assert!(
        is_zoho_token(token),
        "access token looks like 1000.<32hex>.<32hex>: {token}"
    );
    assert_eq!(
        body["api_domain"],
        json!(fake.api_url()),
        "api_domain defaults to the fake's API url"
    );
    assert_eq!(body["token_type"], "Bearer", "token_type is Bearer");
    assert_eq!(
        body["expires_in"], 3600,
        "expires_in defaults to 3600 seconds"
    );
    assert!(
        body.get("refresh_token").is_none(),
        "refresh responses carry no refresh_token"
    );
    assert_eq!(
        fake.control().token_requests(),
        1,
        "one token request counted"
    );
    assert_eq!(fake.control().mints(), 1, "one token minted");
    assert_eq!(
        fake.control().live_tokens(),
        vec![token.to_owned()],
        "minted token is live"
    );
    let seen = fake.control().accounts_requests();
    assert_eq!(seen.len(), 1, "accounts server recorded the request");
    assert_eq!(
        seen[0].path_and_query, "/oauth/v2/token",
        "credentials were not in the URL"
    );
    let body = String::from_utf8_lossy(&seen[0].body_prefix).into_owned();
    assert!(
        body.contains("grant_type=refresh_token"),
        "recorded body prefix holds the form: {body}"
    );
}

#[tokio::test]
async fn debug_output_never_shows_secrets() {
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    let c = client(&ca);
    let token = refresh(&c, &fake).await;
    let o = fake.options();
    let printed = format!("{fake:?} {:?} {o:?} {ca:?}", fake.control());
    for secret in [o.client_secret.as_str(), o.refresh_token(), token.as_str()] {
        assert!(
            !printed.contains(secret),
            "Debug output must not contain a secret: {printed}"
        );
    }
}

#[tokio::test]
async fn token_errors_are_200_with_error_codes() {
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    let c = client(&ca);
    let o = fake.options().clone();
    let cases: &[(&str, &str, &str, &str)] = &[
        (
            "1000.WRONG",
            &o.client_secret,
            o.refresh_token(),
            "invalid_client",
        ),
        (
            &o.client_id,
            "wrong-secret",
            o.refresh_token(),
            "invalid_client_secret",
        ),
        (
            &o.client_id,
            &o.client_secret,
            "1000.unknown.refresh",
            "invalid_code",
        ),
    ];
    for (cid, secret, rt, want) in cases {
        let (status, body) = token_form(
            &c,
            &fake,
            &[
                ("grant_type", "refresh_token"),
                ("client_id", cid),
                ("client_secret", secret),
                ("refresh_token", rt),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "error {want} is sent with HTTP 200");
        assert_eq!(
            parse(&body),
            json!({ "error": want }),
            "error body for case {want}"
        );
    }
    assert_eq!(fake.control().mints(), 0, "no error case minted a token");
    assert_eq!(fake.control().token_requests(), 3, "every request counted");
}

#[tokio::test]
async fn grant_code_is_single_use_via_multipart_and_query() {
    let ca = TestCa::new();
    let opts = FakeZohoOptions {
        grant_codes: vec!["1000.code.one".into(), "1000.code.two".into()],
        ..FakeZohoOptions::default()
    };
    let fake = start(opts, &ca).await;
    let c = client(&ca);
    let o = fake.options().clone();
    let boundary = "XfakeBoundary42";
    let mut body = String::new();
    for (k, v) in [
        ("grant_type", "authorization_code"),
        ("client_id", o.client_id.as_str()),
        ("client_secret", o.client_secret.as_str()),
        ("code", "1000.code.one"),
    ] {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let send_multipart = || {
        c.post(format!("{}/oauth/v2/token", fake.accounts_url()))
            .header(
                CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body.clone())
            .send()
    };
    let first = parse(
        &send_multipart()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_default(),
    );
    let rt = first["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        is_zoho_token(&rt),
        "code exchange returns a refresh token: {first}"
    );
    assert!(
        first["scope"].is_string(),
        "code exchange reports scope: {first}"
    );
    let again = parse(
        &send_multipart()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_default(),
    );
    assert_eq!(
        again,
        json!({"error":"invalid_code"}),
        "a used code answers invalid_code"
    );

    // Parameters in the query string (Zoho's documented form) work too.
    let query = url_encode(&[
        ("grant_type", "authorization_code"),
        ("client_id", &o.client_id),
        ("client_secret", &o.client_secret),
        ("code", "1000.code.two"),
    ]);
    let resp = c
        .post(format!("{}/oauth/v2/token?{query}", fake.accounts_url()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let second = parse(&resp.text().await.unwrap_or_default());
    assert!(
        second["access_token"].is_string(),
        "query-string code exchange works: {second}"
    );

    // The refresh token issued by the exchange is valid.
    let (_, body) = token_form(
        &c,
        &fake,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &o.client_id),
            ("client_secret", &o.client_secret),
            ("refresh_token", &rt),
        ],
    )
    .await;
    assert!(
        parse(&body)["access_token"].is_string(),
        "new refresh token mints: {body}"
    );
}

#[tokio::test]
async fn throttle_after_mint_limit_with_configured_status() {
    let ca = TestCa::new();
    let opts = FakeZohoOptions {
        mint_limit: 3,
        throttle_status: 400,
        ..FakeZohoOptions::default()
    };
    let fake = start(opts, &ca).await;
    let c = client(&ca);
    for _ in 0..3 {
        refresh(&c, &fake).await;
    }
    let o = fake.options();
    let (status, body) = token_form(
        &c,
        &fake,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &o.client_id),
            ("client_secret", &o.client_secret),
            ("refresh_token", o.refresh_token()),
        ],
    )
    .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "throttle uses throttle_status 400"
    );
    let v = parse(&body);
    assert_eq!(v["error"], "Access Denied", "throttle error text: {body}");
    assert_eq!(v["status"], "failure", "throttle status field: {body}");
    assert_eq!(fake.control().mints(), 3, "throttled request did not mint");
    assert_eq!(
        fake.control().token_requests(),
        4,
        "throttled request was counted"
    );
}

#[tokio::test]
async fn minting_beyond_live_cap_evicts_oldest_on_crm() {
    let ca = TestCa::new();
    let opts = FakeZohoOptions {
        live_token_cap: 2,
        ..FakeZohoOptions::default()
    };
    let fake = start(opts, &ca).await;
    let c = client(&ca);
    let t1 = refresh(&c, &fake).await;
    let t2 = refresh(&c, &fake).await;
    let t3 = refresh(&c, &fake).await;
    let r1 = crm_get(&c, &fake, "/crm/v8/org", &t1).await;
    assert_eq!(
        r1.status(),
        StatusCode::UNAUTHORIZED,
        "evicted oldest token is refused"
    );
    assert_eq!(
        parse(&r1.text().await.unwrap_or_default())["code"],
        "INVALID_TOKEN",
        "evicted token gives INVALID_TOKEN"
    );
    for t in [&t2, &t3] {
        let r = crm_get(&c, &fake, "/crm/v8/org", t).await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "tokens within the cap are accepted"
        );
    }
}

#[tokio::test]
async fn revoke_endpoint_and_control_revocations() {
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    let c = client(&ca);
    let token = refresh(&c, &fake).await;

    fake.control().revoke_all_access_tokens();
    let r = crm_get(&c, &fake, "/crm/v8/org", &token).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "server-side revoke kills access tokens"
    );
    let token = refresh(&c, &fake).await;

    let rt = fake.options().refresh_token().to_owned();
    let resp = c
        .post(format!(
            "{}/oauth/v2/token/revoke?token={rt}",
            fake.accounts_url()
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "revoking a known refresh token is 200"
    );
    assert_eq!(
        parse(&resp.text().await.unwrap_or_default()),
        json!({"status":"success"}),
        "revoke success body"
    );
    let r = crm_get(&c, &fake, "/crm/v8/org", &token).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "revoking the RT kills its access tokens"
    );
    let o = fake.options();
    let (_, body) = token_form(
        &c,
        &fake,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", &o.client_id),
            ("client_secret", &o.client_secret),
            ("refresh_token", &rt),
        ],
    )
    .await;
    assert_eq!(
        parse(&body),
        json!({"error":"invalid_code"}),
        "revoked RT answers invalid_code"
    );
    let resp = c
        .post(format!("{}/oauth/v2/token/revoke", fake.accounts_url()))
        .body(url_encode(&[("token", "1000.not.known")]))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        resp.status(),
        StatusCode::BAD_REQUEST,
        "revoking an unknown token is 400"
    );
}

#[tokio::test]
async fn crm_checks_authorization_and_records_everything() {
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    let c = client(&ca);
    let token = refresh(&c, &fake).await;
    let url = format!("{}/crm/v8/Leads", fake.api_url());

    let r = c.get(&url).send().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "no header is 401");
    assert_eq!(
        parse(&r.text().await.unwrap_or_default())["code"],
        "AUTHENTICATION_FAILURE",
        "no header code"
    );

    let cases: &[(&str, &[&str])] = &[
        ("unknown token", &["Zoho-oauthtoken 1000.bad.bad"]),
        ("Bearer scheme", &[]),
        ("two headers", &[]),
    ];
    for (name, _) in cases {
        let mut h = HeaderMap::new();
        match *name {
            "unknown token" => {
                h.insert(
                    AUTHORIZATION,
                    HeaderValue::from_static("Zoho-oauthtoken 1000.bad.bad"),
                );
            }
            "Bearer scheme" => {
                h.insert(
                    AUTHORIZATION,
                    HeaderValue::from_str(&format!("Bearer {token}"))
                        .unwrap_or_else(|e| panic!("{e}")),
                );
            }
            _ => {
                let v = HeaderValue::from_str(&format!("Zoho-oauthtoken {token}"))
                    .unwrap_or_else(|e| panic!("{e}"));
                h.append(AUTHORIZATION, v.clone());
                h.append(AUTHORIZATION, v);
            }
        }
        let r = c
            .get(&url)
            .headers(h)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{name} is 401");
        assert_eq!(
            parse(&r.text().await.unwrap_or_default())["code"],
            "INVALID_TOKEN",
            "{name} gives INVALID_TOKEN"
        );
    }
    let r = crm_get(&c, &fake, "/crm/v8/Leads?__fake=echo", "1000.bad.bad").await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "a bad token is refused before __fake switches"
    );

    let ok = crm_get(&c, &fake, "/crm/v8/Leads", &token).await;
    assert_eq!(ok.status(), StatusCode::OK, "live token passes");
    let recorded = fake.control().crm_requests();
    assert_eq!(
        recorded.len(),
        6,
        "every request, rejected or not, is recorded"
    );
    assert_eq!(
        recorded[0].header_count("authorization"),
        0,
        "first request had no auth header"
    );
    assert_eq!(
        recorded[3].header_count("authorization"),
        2,
        "duplicate auth headers recorded"
    );
    assert_eq!(recorded[5].path_and_query, "/crm/v8/Leads", "path recorded");
    assert!(
        recorded.iter().all(|r| r.body_complete),
        "bodies read to the end"
    );
    fake.control().clear_crm_requests();
    assert!(
        fake.control().crm_requests().is_empty(),
        "clear forgets requests"
    );
}

#[tokio::test]
async fn crm_records_routes() {
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    let c = client(&ca);
    let token = refresh(&c, &fake).await;
    let auth = format!("Zoho-oauthtoken {token}");

    let r = crm_get(
        &c,
        &fake,
        "/crm/v8/Leads?fields=Last_Name,Email&per_page=2",
        &token,
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK, "list Leads");
    let v = parse(&r.text().await.unwrap_or_default());
    assert_eq!(v["info"]["per_page"], 2, "info.per_page echoes the request");
    assert_eq!(
        v["data"].as_array().map(Vec::len),
        Some(2),
        "two records on the page"
    );

    let r = c
        .post(format!("{}/crm/v8/Contacts", fake.api_url()))
        .header(AUTHORIZATION, &auth)
        .body(r#"{"data":[{"Last_Name":"Created"}]}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(r.status(), StatusCode::CREATED, "create is 201");
    let v = parse(&r.text().await.unwrap_or_default());
    let id = v["data"][0]["details"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let r = crm_get(&c, &fake, &format!("/crm/v8/Contacts/{id}"), &token).await;
    assert_eq!(
        parse(&r.text().await.unwrap_or_default())["data"][0]["Last_Name"],
        "Created",
        "created record readable"
    );

    let r = c
        .post(format!("{}/crm/v8/coql", fake.api_url()))
        .header(AUTHORIZATION, &auth)
        .body(r#"{"select_query":"select Last_Name from Leads where Last_Name = 'Smith'"}"#)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        parse(&r.text().await.unwrap_or_default())["data"][0]["Last_Name"],
        "Smith",
        "coql finds Smith"
    );

    let cases: &[(&str, u16, &str)] = &[
        ("/crm/v8/Nonexistent", 400, "INVALID_MODULE"),
        ("/crm/v8/Leads/1/2/3", 404, "INVALID_URL_PATTERN"),
        ("/nothing/here", 404, "INVALID_URL_PATTERN"),
    ];
    for (path, status, code) in cases {
        let r = crm_get(&c, &fake, path, &token).await;
        assert_eq!(r.status().as_u16(), *status, "status for {path}");
        assert_eq!(
            parse(&r.text().await.unwrap_or_default())["code"],
            *code,
            "code for {path}"
        );
    }
    let r = crm_get(
        &c,
        &fake,
        "/crm/v8/Leads/search?email=nobody@nowhere.example",
        &token,
    )
    .await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT, "no match is 204");
    assert!(
        r.bytes().await.unwrap_or_default().is_empty(),
        "204 has an empty body"
    );
    let r = crm_get(&c, &fake, "/crm/v8/users?type=CurrentUser", &token).await;
    assert!(
        parse(&r.text().await.unwrap_or_default())["users"][0]["email"].is_string(),
        "current user has an email"
    );
}

#[tokio::test]
async fn download_streams_generated_bytes_with_length() {
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    let c = client(&ca);
    let token = refresh(&c, &fake).await;
    for (switch, length) in [("download", Some(3_000_000u64)), ("download_chunked", None)] {
        let r = crm_get(
            &c,
            &fake,
            &format!("/crm/v8/Leads?__fake={switch}&bytes=3000000"),
            &token,
        )
        .await;
        assert_eq!(r.status(), StatusCode::OK, "{switch} status");
        assert_eq!(r.content_length(), length, "{switch} content length");
        let body = r
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{switch} body: {e}"));
        assert_eq!(body.len(), 3_000_000, "{switch} sends all bytes");
        let mut hasher = sha2_hex(&body);
        assert_eq!(
            std::mem::take(&mut hasher),
            download_sha256(3_000_000),
            "{switch} content matches the pattern"
        );
        assert!(
            body.iter()
                .enumerate()
                .take(1000)
                .all(|(i, b)| usize::from(*b) == i % 251),
            "{switch} byte i is i % 251"
        );
    }
}

fn sha2_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn reset_aborts_the_body_on_h1_and_h2() {
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    for (name, c) in [("h2", client(&ca)), ("http/1.1", http1_client(&ca))] {
        let token = refresh(&c, &fake).await;
        let r = crm_get(&c, &fake, "/crm/v8/Leads?__fake=reset&after=1000", &token).await;
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "{name}: reset sends headers first"
        );
        let body = r.bytes().await;
        assert!(
            body.is_err(),
            "{name}: reading a reset body fails: {body:?}"
        );
    }
}

#[tokio::test]
async fn echo_shows_duplicate_headers_and_versions() {
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    for (c, version) in [(client(&ca), "HTTP/2.0"), (http1_client(&ca), "HTTP/1.1")] {
        let token = refresh(&c, &fake).await;
        fake.control().clear_crm_requests();
        let mut h = HeaderMap::new();
        h.append("x-dup", HeaderValue::from_static("one"));
        h.append("x-dup", HeaderValue::from_static("two"));
        let r = c
            .post(format!("{}/crm/v8/Leads?__fake=echo", fake.api_url()))
            .header(AUTHORIZATION, format!("Zoho-oauthtoken {token}"))
            .headers(h)
            .body("hello")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let v = parse(&r.text().await.unwrap_or_default());
        let dups: Vec<&Value> = v["headers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|h| h[0] == "x-dup")
                    .map(|h| &h[1])
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(
            dups,
            vec!["one", "two"],
            "{version}: echo keeps both x-dup values in order"
        );
        assert_eq!(
            v["version"], version,
            "{version}: echo reports the protocol"
        );
        assert_eq!(v["body_len"], 5, "{version}: echo reports the body length");
        assert_eq!(
            v["body_sha256"],
            sha2_hex(b"hello"),
            "{version}: echo reports the body hash"
        );
        let rec = fake.control().crm_requests();
        assert_eq!(rec.len(), 1, "{version}: one request recorded");
        assert_eq!(
            rec[0].header_count("x-dup"),
            2,
            "{version}: record keeps duplicates"
        );
        assert_eq!(rec[0].version, version, "{version}: record has the version");
        assert_eq!(
            rec[0].body_prefix, b"hello",
            "{version}: record has the body prefix"
        );
    }
}

#[tokio::test]
async fn upload_hashes_a_streamed_body() {
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    let c = client(&ca);
    let token = refresh(&c, &fake).await;
    let data: Vec<u8> = (0..5_000_000u32).map(|i| (i % 7) as u8).collect();
    let chunks: Vec<Result<http_body::Frame<bytes::Bytes>, std::io::Error>> = data
        .chunks(100_000)
        .map(|c| Ok(http_body::Frame::data(bytes::Bytes::copy_from_slice(c))))
        .collect();
    let r = c
        .put(format!("{}/crm/v8/Leads?__fake=upload", fake.api_url()))
        .header(AUTHORIZATION, format!("Zoho-oauthtoken {token}"))
        .body(reqwest::Body::wrap(http_body_util::StreamBody::new(
            futures_util::stream::iter(chunks),
        )))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let v = parse(&r.text().await.unwrap_or_default());
    assert_eq!(v["received"], 5_000_000, "upload counts every byte");
    assert_eq!(v["sha256"], sha2_hex(&data), "upload hash matches");
    let rec = fake.control().crm_requests();
    assert_eq!(rec[0].body_len, 5_000_000, "record has the body length");
    assert_eq!(
        rec[0].body_prefix.len(),
        64 * 1024,
        "record keeps a 64 KiB prefix"
    );
}

#[tokio::test]
async fn status_redirect_cookie_and_scope_switches() {
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    let c = client(&ca);
    let token = refresh(&c, &fake).await;
    let cases: &[(&str, u16, Option<&str>)] = &[
        ("__fake=status&status=503", 503, Some("INTERNAL_ERROR")),
        ("__fake=status=429", 429, Some("TOO_MANY_REQUESTS")),
        ("__fake=invalid_token", 401, Some("INVALID_TOKEN")),
        ("__fake=scope_mismatch", 401, Some("OAUTH_SCOPE_MISMATCH")),
        ("__fake=no_such_switch", 400, Some("INVALID_FAKE_SWITCH")),
        ("__fake=delay_ms", 400, Some("INVALID_FAKE_SWITCH")),
        ("__fake=download", 400, Some("INVALID_FAKE_SWITCH")),
        (
            "__fake=echo&__fake=upload",
            400,
            Some("INVALID_FAKE_SWITCH"),
        ),
        ("__fake=status&status=502&html=1", 502, None),
    ];
    for (q, status, code) in cases {
        let r = crm_get(&c, &fake, &format!("/crm/v8/Leads?{q}"), &token).await;
        assert_eq!(r.status().as_u16(), *status, "status for {q}");
        let text = r.text().await.unwrap_or_default();
        match code {
            Some(code) => assert_eq!(parse(&text)["code"], *code, "code for {q}"),
            None => assert!(text.contains("<html>"), "html body for {q}: {text}"),
        }
    }
    let r = crm_get(
        &c,
        &fake,
        "/crm/v8/Leads?__fake=redirect&status=307&location=https://elsewhere.example/x",
        &token,
    )
    .await;
    assert_eq!(r.status().as_u16(), 307, "redirect status");
    assert_eq!(
        r.headers().get("location").map(|v| v.as_bytes()),
        Some(&b"https://elsewhere.example/x"[..]),
        "redirect location"
    );
    let r = crm_get(
        &c,
        &fake,
        "/crm/v8/Leads?__fake=set_cookie&__fake=delay_ms=10",
        &token,
    )
    .await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "set_cookie+delay still answers the list"
    );
    assert_eq!(
        r.headers().get_all("set-cookie").iter().count(),
        2,
        "two Set-Cookie headers"
    );
    assert!(
        parse(&r.text().await.unwrap_or_default())["data"].is_array(),
        "normal list body"
    );
}

#[tokio::test]
async fn slow_body_and_stall_deliver_partial_data() {
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    let c = client(&ca);
    let token = refresh(&c, &fake).await;
    let r = crm_get(
        &c,
        &fake,
        "/crm/v8/Leads?__fake=slow_body=3&ms=5&chunk_bytes=4",
        &token,
    )
    .await;
    let body = r.bytes().await.unwrap_or_else(|e| panic!("slow body: {e}"));
    assert_eq!(
        body.as_ref(),
        &[0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11][..],
        "slow body sends 3 chunks of 4 pattern bytes"
    );

    let mut r = crm_get(&c, &fake, "/crm/v8/Leads?__fake=stall&after=10", &token).await;
    assert_eq!(
        r.content_length(),
        Some(20),
        "stall declares twice the bytes it sends"
    );
    let first = r
        .chunk()
        .await
        .unwrap_or_else(|e| panic!("stall first chunk: {e}"));
    assert_eq!(first.map(|b| b.len()), Some(10), "stall sends its N bytes");
    let more = tokio::time::timeout(Duration::from_millis(200), r.chunk()).await;
    assert!(more.is_err(), "stall sends nothing more");
    drop(r);
    fake.shutdown().await;
}

#[tokio::test]
async fn hang_is_released_by_shutdown() {
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    let c = client(&ca);
    let token = refresh(&c, &fake).await;
    let url = format!("{}/crm/v8/Leads?__fake=hang", fake.api_url());
    let pending = tokio::spawn({
        let c = c.clone();
        async move {
            c.get(url)
                .header(AUTHORIZATION, format!("Zoho-oauthtoken {token}"))
                .send()
                .await
                .map(|r| r.status())
        }
    });
    assert!(
        fake.control().wait_for_crm_requests(1, DEADLINE).await,
        "hang request arrived"
    );
    assert!(!pending.is_finished(), "hung request has no answer yet");
    fake.shutdown().await;
    let outcome = tokio::time::timeout(DEADLINE, pending).await;
    assert!(outcome.is_ok(), "shutdown releases the hung request");
}

#[tokio::test]
async fn token_behaviors_apply_in_order() {
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    let c = client(&ca);
    let o = fake.options().clone();
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", o.client_id.as_str()),
        ("client_secret", o.client_secret.as_str()),
        ("refresh_token", o.refresh_token()),
    ];
    fake.control().queue_token_behaviors([
        TokenBehavior::Error("invalid_client".into()),
        TokenBehavior::Html(502),
        TokenBehavior::Raw {
            status: 200,
            body: r#"{"access_token":"a\r\nb"}"#.into(),
        },
        TokenBehavior::AccessDenied,
        TokenBehavior::DelayMs(5),
    ]);
    let (s, b) = token_form(&c, &fake, &form).await;
    assert_eq!(
        (s.as_u16(), parse(&b)),
        (200, json!({"error":"invalid_client"})),
        "Error behaviour"
    );
    let (s, b) = token_form(&c, &fake, &form).await;
    assert!(
        s.as_u16() == 502 && b.contains("<html>"),
        "Html behaviour: {s} {b}"
    );
    let (s, b) = token_form(&c, &fake, &form).await;
    assert_eq!(
        (s.as_u16(), b.as_str()),
        (200, r#"{"access_token":"a\r\nb"}"#),
        "Raw behaviour"
    );
    let (_, b) = token_form(&c, &fake, &form).await;
    assert_eq!(
        parse(&b)["error"],
        "Access Denied",
        "AccessDenied behaviour"
    );
    let (_, b) = token_form(&c, &fake, &form).await;
    assert!(
        parse(&b)["access_token"].is_string(),
        "DelayMs answers normally"
    );
    assert_eq!(fake.control().mints(), 1, "only the delayed request minted");

    fake.control().set_expires_in(Value::Null);
    let (_, b) = token_form(&c, &fake, &form).await;
    assert!(
        parse(&b).get("expires_in").is_none(),
        "Null omits expires_in: {b}"
    );
    fake.control().set_expires_in(json!("3600"));
    let (_, b) = token_form(&c, &fake, &form).await;
    assert_eq!(
        parse(&b)["expires_in"],
        "3600",
        "string expires_in is sent verbatim"
    );

    fake.control().set_api_domain("https://www.zohoapis.eu");
    let (_, b) = token_form(&c, &fake, &form).await;
    assert_eq!(
        parse(&b)["api_domain"],
        "https://www.zohoapis.eu",
        "set_api_domain changes later responses"
    );

    fake.control().set_token_behavior(TokenBehavior::Hang);
    let hung = tokio::time::timeout(Duration::from_millis(300), token_form(&c, &fake, &form)).await;
    assert!(hung.is_err(), "Hang never answers");
    assert!(
        fake.control().wait_for_token_requests(9, DEADLINE).await,
        "hung request was counted"
    );
}

#[tokio::test]
async fn consent_page_redirects_with_code_bound_to_redirect_uri() {
    let ca = TestCa::new();
    let opts = FakeZohoOptions {
        location: "eu".into(),
        ..FakeZohoOptions::default()
    };
    let fake = start(opts, &ca).await;
    let c = client(&ca);
    let o = fake.options().clone();
    let auth_query = url_encode(&[
        ("scope", "ZohoCRM.modules.ALL,ZohoCRM.settings.ALL"),
        ("client_id", &o.client_id),
        ("response_type", "code"),
        ("access_type", "offline"),
        ("prompt", "consent"),
        ("redirect_uri", "http://localhost:9999/callback"),
        ("state", "xyz"),
    ]);
    let r = c
        .get(format!(
            "{}/oauth/v2/auth?{auth_query}",
            fake.accounts_url()
        ))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        r.status(),
        StatusCode::FOUND,
        "consent auto-approves with 302"
    );
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let loc = url::Url::parse(location).unwrap_or_else(|e| panic!("location {location}: {e}"));
    assert_eq!(loc.path(), "/callback", "redirects to redirect_uri");
    let q: std::collections::HashMap<String, String> = loc.query_pairs().into_owned().collect();
    assert_eq!(
        q.get("state").map(String::as_str),
        Some("xyz"),
        "state echoed"
    );
    assert_eq!(
        q.get("location").map(String::as_str),
        Some("eu"),
        "location is opts.location"
    );
    assert_eq!(
        q.get("accounts-server"),
        Some(&fake.accounts_url()),
        "accounts-server is this fake"
    );
    let code = q.get("code").cloned().unwrap_or_default();
    assert_eq!(
        fake.control().issued_auth_codes(),
        vec![code.clone()],
        "control lists the issued code"
    );

    let exchange = |redirect: &'static str| {
        let code = code.clone();
        let o = o.clone();
        let c = c.clone();
        let url = format!("{}/oauth/v2/token", fake.accounts_url());
        async move {
            let body = url_encode(&[
                ("grant_type", "authorization_code"),
                ("client_id", &o.client_id),
                ("client_secret", &o.client_secret),
                ("code", &code),
                ("redirect_uri", redirect),
            ]);
            let r = c
                .post(url)
                .body(body)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            parse(&r.text().await.unwrap_or_default())
        }
    };
    assert_eq!(
        exchange("http://localhost:9999/other").await,
        json!({"error":"invalid_redirect_uri"}),
        "mismatched redirect_uri refused"
    );
    let ok = exchange("http://localhost:9999/callback").await;
    assert!(
        ok["refresh_token"].is_string(),
        "offline consent yields a refresh token: {ok}"
    );
    assert_eq!(
        ok["scope"], "ZohoCRM.modules.ALL ZohoCRM.settings.ALL",
        "scopes become space-separated"
    );

    let bad = c
        .get(format!("{}/oauth/v2/auth?client_id=1000.NOPE&scope=x&response_type=code&redirect_uri=http://l/cb", fake.accounts_url()))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        bad.status(),
        StatusCode::BAD_REQUEST,
        "unknown client on consent page is 400"
    );
}

#[tokio::test]
async fn expired_certificate_is_refused_by_a_verifying_client() {
    let ca = TestCa::new();
    let expired = ca.expired_server_config(&["127.0.0.1"]);
    let fake = FakeZoho::start_with_tls(
        FakeZohoOptions::default(),
        ca.server_config(&["127.0.0.1"]),
        expired,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let c = client(&ca);
    let err = c.get(format!("{}/crm/v8/org", fake.api_url())).send().await;
    assert!(
        err.is_err(),
        "expired API certificate must fail the handshake"
    );
    assert_eq!(
        fake.control().crm_requests().len(),
        0,
        "no request got through"
    );
    refresh(&c, &fake).await; // the accounts server's valid cert still works
}

#[tokio::test]
async fn other_ca_is_refused() {
    let ca = TestCa::new();
    let other = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    let r = client(&other)
        .get(format!("{}/crm/v8/org", fake.api_url()))
        .send()
        .await;
    assert!(r.is_err(), "a client trusting another CA cannot connect");
    assert!(
        ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"),
        "cert_pem is PEM"
    );
}

/// Resident set size of this process in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn large_bodies_stream_without_growing_memory() {
    const SIZE: u64 = 64 * 1024 * 1024;
    let ca = TestCa::new();
    let fake = start(FakeZohoOptions::default(), &ca).await;
    let c = client(&ca);
    let token = refresh(&c, &fake).await;
    let before = rss_kib();

    let mut r = crm_get(
        &c,
        &fake,
        &format!("/crm/v8/Leads?__fake=download&bytes={SIZE}"),
        &token,
    )
    .await;
    let mut got = 0u64;
    while let Some(chunk) = r
        .chunk()
        .await
        .unwrap_or_else(|e| panic!("download chunk: {e}"))
    {
        got += chunk.len() as u64;
    }
    assert_eq!(got, SIZE, "whole download received");

    let chunk = bytes::Bytes::from(vec![7u8; 1024 * 1024]);
    let frames = futures_util::stream::iter(
        (0..SIZE / (1024 * 1024))
            .map(move |_| Ok::<_, std::io::Error>(http_body::Frame::data(chunk.clone()))),
    );
    let r = c
        .post(format!("{}/crm/v8/Leads?__fake=upload", fake.api_url()))
        .header(AUTHORIZATION, format!("Zoho-oauthtoken {token}"))
        .body(reqwest::Body::wrap(http_body_util::StreamBody::new(frames)))
        .send()
        .await
        .unwrap_or_else(|e| panic!("upload: {e}"));
    assert_eq!(
        parse(&r.text().await.unwrap_or_default())["received"],
        SIZE,
        "whole upload received"
    );

    let grown_mib = rss_kib().saturating_sub(before) / 1024;
    assert!(
        grown_mib < 48,
        "streaming 2 x 128 MiB grew RSS by {grown_mib} MiB (must not buffer)"
    );
}

#[test]
fn handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<TestCa>();
    assert_send_sync::<FakeZoho>();
    assert_send_sync::<zoho_auth_proxy::sandbox::FakeControl>();
    assert_send_sync::<FakeZohoOptions>();
}
