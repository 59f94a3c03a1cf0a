//! The operator console on the admin listener (issue 15): the page and its headers, the
//! Authorize form and its CSRF token, escaping of client-controlled paths, the recent
//! decisions and observed scopes (also in `/status`), `/explain` (HTML and JSON, nothing
//! forwarded), the `admin.auth` credential, JSON-only output with `log.format: json`, and the
//! access log of responses without a body. One real-browser run (headless Chromium through
//! chromium-driver and WebDriver) clicks Authorize and saves a screenshot (`target/console.png`;
//! with `UPDATE_SCREENSHOT=1` also the README's `docs/console.png`).
//!
//! Real binary, real sockets, the in-process fake Zoho.

mod common;

use common::*;
use std::time::Duration;

const READY: Duration = Duration::from_secs(20);

/// Two accounts: `own` (self client, ready) and `globex` (server-based, never authorized).
fn config(zoho: &Zoho, admin: &str, redirect_uri: &str, extra: &str) -> String {
    let account = |name: &str, credentials: &str, allow: &str| {
        format!(
            "  - name: {name}\n    data_center: us\n    accounts_url: {acc}\n    api_url: {api}\n    client_id: {CLIENT_ID}\n    \
             client_secret: ${{TEST_CLIENT_SECRET}}\n{credentials}    ca_file: {ca}\n    allow: [{allow}]\n",
            acc = zoho.fake.accounts_url(),
            api = zoho.fake.api_url(),
            ca = zoho.ca_file.display(),
        )
    };
    let store = zoho.dir.path().join("token.json");
    format!(
        "listen: 127.0.0.1:0\nadmin:\n  listen: {admin}\nrouting: header\nlimits:\n  token_wait: 1s\ntoken:\n  store: {}\n{extra}accounts:\n{}{}",
        store.display(),
        account("own", "    refresh_token: ${TEST_REFRESH_TOKEN}\n", "ZohoCRM.modules.leads.READ"),
        account(
            "globex",
            &format!("    client_type: server\n    redirect_uri: {redirect_uri}\n"),
            "ZohoCRM.modules.leads.ALL"
        ),
    )
}

const REDIRECT: &str = "http://127.0.0.1:9/oauth/callback";

async fn start(extra: &str) -> (Zoho, RunningProxy) {
    let zoho = Zoho::start().await;
    let text = config(&zoho, "127.0.0.1:0", REDIRECT, extra);
    let proxy = RunningProxy::spawn(zoho.dir.path(), &text).await;
    assert!(proxy.wait_ready(READY).await, "ready: {}", proxy.logs());
    (zoho, proxy)
}

async fn page(
    proxy: &RunningProxy,
    path: &str,
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
    let r = client()
        .get(proxy.admin_url(path))
        .send()
        .await
        .expect("admin GET");
    let status = r.status();
    let headers = r.headers().clone();
    (status, headers, r.text().await.unwrap_or_default())
}

/// The CSRF token of the first Authorize form on the console.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf\" value=\"")
        .unwrap_or_else(|| panic!("an Authorize form with a CSRF token:\n{html}"));
    let rest = &html[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').expect("end of the token")].to_string()
}

fn assert_page_headers(headers: &reqwest::header::HeaderMap, what: &str) {
    let h = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert!(
        h("content-type").starts_with("text/html"),
        "{what}: HTML: {headers:?}"
    );
    let csp = h("content-security-policy");
    assert!(
        csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{what}: strict CSP that forbids framing: {csp}"
    );
    assert_eq!(h("x-content-type-options"), "nosniff", "{what}: nosniff");
    assert_eq!(h("referrer-policy"), "no-referrer", "{what}: no referrer");
    assert_eq!(h("cache-control"), "no-store", "{what}: not cached");
}

#[tokio::test]
async fn the_console_lists_both_accounts_with_their_states_and_no_secret() {
    let (zoho, proxy) = start("").await;
    // One request so a token is live (and must not appear anywhere).
    let r = client()
        .get(proxy.url("/crm/v8/Leads"))
        .header("X-Zoho-Account", "own")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "own serves");

    let (status, headers, html) = page(&proxy, "/").await;
    assert_eq!(status, 200, "GET / is the console: {html}");
    assert_page_headers(&headers, "console");
    assert!(
        html.contains("id=\"account-own\" data-state=\"ready\""),
        "own is listed as ready:\n{html}"
    );
    assert!(
        html.contains("id=\"account-globex\" data-state=\"not_authorized\""),
        "globex is listed as not authorized:\n{html}"
    );
    assert!(
        html.contains("action=\"/oauth/start\"")
            && html.contains("id=\"authorize-globex\">Authorize<"),
        "globex has an Authorize button posting to /oauth/start:\n{html}"
    );
    assert!(
        !html.contains("id=\"authorize-own\""),
        "a self client has no Authorize button"
    );
    for text in [
        "ZohoCRM.modules.leads.ALL",
        "<td>server</td>",
        "<td>self</td>",
        "<td>us</td>",
        // The one GET above cost one credit on `own`, with no budget configured.
        "API credits (rolling 24 hours, estimated)",
        "<tr><td>own</td><td>1</td><td>none (counting only)</td>",
    ] {
        assert!(html.contains(text), "the console shows {text}:\n{html}");
    }
    assert!(
        !html.contains("<script"),
        "no script on the page (CSP and no JavaScript needed)"
    );
    for secret in [CLIENT_SECRET, REFRESH_TOKEN, CLIENT_ID] {
        assert!(!html.contains(secret), "the page never shows {secret}");
    }
    for token in zoho.control().live_tokens() {
        assert!(
            !html.contains(&token),
            "the page never shows an access token"
        );
    }

    let (status, headers, css) = page(&proxy, "/console.css").await;
    assert_eq!(
        status, 200,
        "the stylesheet is served by the admin listener"
    );
    assert!(
        headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/css")),
        "as CSS"
    );
    assert!(css.contains("table"), "a real stylesheet");
    let head = client()
        .head(proxy.admin_url("/"))
        .send()
        .await
        .expect("HEAD /");
    assert_eq!(head.status(), 200, "HEAD / answers too");
    proxy.assert_no_secrets(&zoho.control().live_tokens());
}

#[tokio::test]
async fn authorize_is_a_post_that_needs_the_pages_csrf_token() {
    let (zoho, proxy) = start("").await;
    let (_, _, html) = page(&proxy, "/").await;
    let token = csrf_of(&html);
    let post = |form: Vec<(&'static str, String)>| {
        let url = proxy.admin_url("/oauth/start");
        async move {
            client()
                .post(url)
                .form(&form)
                .send()
                .await
                .expect("POST /oauth/start")
        }
    };
    let cases: Vec<(&str, Vec<(&'static str, String)>)> = vec![
        ("no token", vec![("account", "globex".into())]),
        (
            "empty token",
            vec![("account", "globex".into()), ("csrf", String::new())],
        ),
        (
            "forged token",
            vec![
                ("account", "globex".into()),
                (
                    "csrf",
                    format!("{}.{}.{}", 1, "0".repeat(32), "0".repeat(64)),
                ),
            ],
        ),
        (
            "tampered token",
            vec![
                ("account", "globex".into()),
                ("csrf", token.replacen('.', "0.", 1)),
            ],
        ),
    ];
    for (name, form) in cases {
        let r = post(form).await;
        assert_eq!(r.status(), 403, "{name}: refused");
        assert!(
            r.headers().get("location").is_none(),
            "{name}: no redirect to Zoho"
        );
    }
    let r = post(vec![("account", "globex".into()), ("csrf", token.clone())]).await;
    assert_eq!(r.status(), 303, "the console's form redirects to Zoho");
    let location = r
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        location.starts_with(&format!("{}/oauth/v2/auth?", zoho.fake.accounts_url())),
        "to the account's accounts server: {location}"
    );
    assert!(location.contains("state="), "with a state: {location}");
    let r = post(vec![("account", "own".into()), ("csrf", token)]).await;
    assert_eq!(
        r.status(),
        400,
        "a self client cannot start the browser flow"
    );

    // The operator may still type the URL.
    let typed = client()
        .get(proxy.admin_url("/oauth/start?account=globex"))
        .send()
        .await
        .expect("GET /oauth/start");
    assert_eq!(typed.status(), 302, "a typed GET /oauth/start still works");
    let head = client()
        .head(proxy.admin_url("/oauth/start?account=globex"))
        .send()
        .await
        .expect("HEAD /oauth/start");
    assert_eq!(
        head.status(),
        405,
        "a HEAD (prefetcher, link scanner) starts nothing"
    );
    let put = client()
        .put(proxy.admin_url("/"))
        .send()
        .await
        .expect("PUT /");
    assert_eq!(put.status(), 405, "the console answers GET only");
}

#[tokio::test]
async fn report_traffic_fills_decisions_observed_scopes_and_status_escaped() {
    let (zoho, proxy) = start("policy:\n  mode: report\n").await;
    let c = client();
    let send = |path: &'static str| {
        let c = c.clone();
        let url = proxy.url(path);
        async move {
            c.get(url)
                .header("X-Zoho-Account", "own")
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    for path in [
        "/crm/v8/Leads",
        "/crm/v8/Contacts?fields=Last_Name&secret_marker=QUERYCANARY",
        "/crm/v8/Deals/123",
        "/crm/v8/settings/fields?module=Leads",
    ] {
        let status = send(path).await;
        assert!(
            (200..300).contains(&status),
            "{path}: forwarded in report mode: {status}"
        );
    }
    // A client-controlled path with markup in its module segment, and an unknown path with it.
    let evil = [
        "/crm/v8/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        "/crm/v8/%3Cscript%3Ex%3C%2Fscript%3E/123",
    ];
    for path in evil {
        let status = c
            .get(proxy.url(path))
            .header("X-Zoho-Account", "own")
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0);
        assert!(status != 0, "{path}: answered");
    }
    // Sent raw, the markup never reaches the proxy: the HTTP parser refuses it.
    let request = "GET /crm/v8/<script>alert(1)</script> HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Zoho-Account: own\r\nConnection: close\r\n\r\n";
    let answer = raw(proxy.proxy, request.as_bytes(), Duration::from_secs(10)).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "raw markup in a path is a 400: {}",
        String::from_utf8_lossy(&answer)
    );

    let status = proxy.status_json().await;
    let own = status["accounts"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["name"] == "own"))
        .cloned()
        .expect("own in /status");
    let observed: Vec<&str> = own["observed_scopes"]
        .as_array()
        .expect("observed_scopes list")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for scope in [
        "ZohoCRM.modules.leads.READ",
        "ZohoCRM.modules.contacts.READ",
        "ZohoCRM.modules.deals.READ",
        "ZohoCRM.settings.fields.READ",
    ] {
        assert!(observed.contains(&scope), "/status observed {scope}: {own}");
    }
    let suggested: Vec<&str> = own["suggested_allow"]
        .as_array()
        .expect("suggested_allow")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(
        suggested.contains(&"ZohoCRM.modules.contacts.READ")
            && suggested.contains(&"ZohoCRM.settings.fields.READ")
            && !suggested
                .iter()
                .any(|s| *s == "ZohoCRM.modules.ALL" || *s == "ZohoCRM.settings.ALL"),
        "the suggested list covers the traffic without group scopes: {suggested:?}"
    );
    assert_eq!(
        status["accounts"][1]["observed_scopes"],
        serde_json::json!([]),
        "globex saw no traffic"
    );

    let (_, headers, html) = page(&proxy, "/").await;
    assert_page_headers(&headers, "console after traffic");
    assert!(
        html.contains("<td class=\"outcome-reported\">reported</td>"),
        "reported requests are listed:\n{html}"
    );
    assert!(
        html.contains("/crm/v8/Contacts</td>") && html.contains("/crm/v8/Deals/123</td>"),
        "their paths:\n{html}"
    );
    assert!(
        !html.contains("QUERYCANARY") && !html.contains("?fields="),
        "never a query string"
    );
    assert!(
        !html.contains("<script>"),
        "a client's markup is escaped, never rendered:\n{html}"
    );
    assert!(
        html.contains("- ZohoCRM.modules.contacts.READ\n")
            && html.contains("- ZohoCRM.settings.fields.READ\n"),
        "the allow list to paste is a YAML block:\n{html}"
    );
    assert!(
        html.contains("accounts:\n  - name: own\n    allow:\n"),
        "under the account's entry (several accounts):\n{html}"
    );
    proxy.assert_no_secrets(&zoho.control().live_tokens());
}

#[tokio::test]
async fn explain_answers_html_and_json_and_forwards_nothing() {
    let (zoho, proxy) = start("").await;
    zoho.control().clear_crm_requests();
    let c = client();
    let r = c
        .get(proxy.admin_url("/explain?method=GET&path=/crm/v8/Leads/123/Contacts&account=own"))
        .header("Accept", "application/json")
        .send()
        .await
        .expect("GET /explain (JSON)");
    assert_eq!(r.status(), 200, "explain answers 200");
    let v: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(v["decision"], "denied", "denied: {v}");
    assert_eq!(v["account"], "own", "for the named account: {v}");
    assert_eq!(
        v["missing"],
        serde_json::json!(["ZohoCRM.modules.contacts.READ"]),
        "naming the missing scope: {v}"
    );

    let (status, headers, html) = page(
        &proxy,
        "/explain?method=GET&path=/crm/v8/Leads/123/Contacts",
    )
    .await;
    assert_eq!(status, 200, "HTML by default");
    assert_page_headers(&headers, "explain");
    assert!(
        html.contains("class=\"decision-denied\">denied<")
            && html.contains("ZohoCRM.modules.contacts.READ"),
        "the page names the denied scope:\n{html}"
    );

    // The console's form: a POST with the body to decide on (COQL reads Contacts).
    let r = c
        .post(proxy.admin_url("/explain"))
        .form(&[
            ("account", "own"),
            ("method", "POST"),
            ("path", "/crm/v8/coql"),
            (
                "body",
                r#"{"select_query":"select Last_Name from Contacts where id is not null"}"#,
            ),
        ])
        .send()
        .await
        .expect("POST /explain (form)");
    assert_eq!(r.status(), 200, "form answered");
    let html = r.text().await.unwrap_or_default();
    assert!(
        html.contains("ZohoCRM.modules.contacts.READ"),
        "the body was decided on:\n{html}"
    );
    // A tool's POST: the body raw, method and path in the query.
    let r = c
        .post(proxy.admin_url("/explain?method=POST&path=/crm/v8/coql"))
        .header("Accept", "application/json")
        .body(r#"{"select_query":"select Last_Name from Leads where id is not null"}"#)
        .send()
        .await
        .expect("POST /explain (raw)");
    let v: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(
        v["missing"],
        serde_json::json!(["ZohoCRM.coql.READ"]),
        "COQL on Leads needs coql.READ besides leads.READ, decided on the body: {v}"
    );

    // Without the body it depends on, the answer says where to give it.
    let r = c
        .get(proxy.admin_url("/explain?method=POST&path=/crm/v8/coql"))
        .header("Accept", "application/json")
        .send()
        .await
        .expect("GET /explain (no body)");
    let v: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(v["decision"], "needs_body", "COQL needs its body: {v}");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("Body field")),
        "the hint fits the web form: {v}"
    );

    // Markup in the explained path is escaped.
    let (_, _, html) = page(
        &proxy,
        "/explain?method=GET&path=/crm/v8/%3Cscript%3Ex%3C/script%3E",
    )
    .await;
    assert!(
        !html.contains("<script>") && html.contains("&lt;script&gt;"),
        "the path is shown back escaped:\n{html}"
    );
    let (status, _, _) = page(&proxy, "/explain?method=GET").await;
    assert_eq!(status, 400, "a path is required");
    let (status, _, _) = page(
        &proxy,
        "/explain?method=GET&path=/crm/v8/Leads&account=nope",
    )
    .await;
    assert_eq!(status, 404, "unknown account");

    assert!(
        zoho.control().crm_requests().is_empty(),
        "explain never reaches Zoho: {:?}",
        zoho.control().crm_requests().len()
    );
}

#[tokio::test]
async fn admin_auth_guards_everything_but_the_probes_and_the_callback() {
    let zoho = Zoho::start().await;
    let password = zoho.dir.path().join("admin-password");
    std::fs::write(&password, "correct horse\n").expect("write password");
    let text = config(&zoho, "127.0.0.1:0", REDIRECT, "").replace(
        "admin:\n  listen: 127.0.0.1:0\n",
        &format!(
            "admin:\n  listen: 127.0.0.1:0\n  auth:\n    username: ops\n    password_file: {}\n",
            password.display()
        ),
    );
    let proxy = RunningProxy::spawn(zoho.dir.path(), &text).await;
    let c = client();
    let status = |path: &'static str, creds: Option<(&'static str, &'static str)>| {
        let c = c.clone();
        let url = proxy.admin_url(path);
        async move {
            let mut req = c.get(url);
            if let Some((u, p)) = creds {
                req = req.basic_auth(u, Some(p));
            }
            let r = req.send().await.expect("admin request");
            (
                r.status().as_u16(),
                r.headers().get("www-authenticate").is_some(),
            )
        }
    };
    assert_eq!(
        status("/", None).await,
        (401, true),
        "console needs the credential"
    );
    assert_eq!(status("/status", None).await.0, 401, "status too");
    assert_eq!(
        status("/explain?path=/crm/v8/Leads", None).await.0,
        401,
        "explain too"
    );
    assert_eq!(
        status("/", Some(("ops", "wrong"))).await.0,
        401,
        "a wrong password is refused"
    );
    assert_eq!(
        status("/", Some(("admin", "correct horse"))).await.0,
        401,
        "the user name counts"
    );
    assert_eq!(
        status("/", Some(("ops", "correct horse"))).await.0,
        200,
        "the right credential opens the console"
    );
    assert_eq!(status("/healthz", None).await.0, 200, "probes are exempt");
    assert_eq!(status("/metrics", None).await.0, 200, "metrics are exempt");
    assert!(
        matches!(status("/readyz", None).await.0, 200 | 503),
        "readiness is exempt"
    );
    assert_eq!(
        status("/oauth/callback?state=nope&code=x", None).await.0,
        400,
        "the OAuth callback is exempt (and refuses the unknown state)"
    );
    assert!(
        !proxy.logs().contains("correct horse"),
        "the password is never logged"
    );

    // Bad values exit 2 naming the key.
    let cases = [
        ("  auth:\n    username: ops\n", "admin.auth.password_file"),
        (
            "  auth:\n    password_file: /nonexistent/admin-password\n",
            "admin.auth.password_file",
        ),
        (
            &*format!(
                "  auth:\n    password_file: {}\n    exempt: [/]\n",
                password.display()
            ),
            "admin.auth.exempt[0]",
        ),
        (
            &*format!(
                "  auth:\n    username: 'a:b'\n    password_file: {}\n",
                password.display()
            ),
            "admin.auth.username",
        ),
    ];
    for (section, key) in cases {
        let bad = config(&zoho, "127.0.0.1:0", REDIRECT, "").replace(
            "admin:\n  listen: 127.0.0.1:0\n",
            &format!("admin:\n  listen: 127.0.0.1:0\n{section}"),
        );
        let path = zoho.dir.path().join("bad.yaml");
        std::fs::write(&path, bad).expect("write");
        let out = std::process::Command::new(binary())
            .arg("--config")
            .arg(&path)
            .arg("check")
            .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
            .env("TEST_REFRESH_TOKEN", REFRESH_TOKEN)
            .output()
            .expect("run check");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{key}: exit 2: {stderr}");
        assert!(stderr.contains(key), "the error names {key}: {stderr}");
    }
}

#[tokio::test]
async fn json_log_format_makes_every_output_line_json() {
    let zoho = Zoho::start().await;
    let text = zoho.config(&["ZohoCRM.modules.leads.READ"], "log:\n  format: json\n");
    let mut proxy = RunningProxy::spawn(zoho.dir.path(), &text).await;
    assert!(proxy.wait_ready(READY).await, "ready: {}", proxy.logs());
    let r = client()
        .get(proxy.url("/crm/v8/Leads"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200, "serves");
    let (status, _, _) = page(&proxy, "/").await;
    assert_eq!(status, 200, "console");
    proxy.signal("TERM");
    assert_eq!(
        proxy
            .wait_exit(Duration::from_secs(10))
            .await
            .and_then(|s| s.code()),
        Some(0),
        "clean exit"
    );
    let logs = proxy.logs();
    let mut announced = 0;
    for line in logs.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("every line is JSON ({e}): {line}\n{logs}"));
        if v["message"] == "listening" {
            announced += 1;
            assert!(v["address"].is_string() && v["role"].is_string(), "{line}");
        }
    }
    assert_eq!(announced, 2, "one announcement per listener:\n{logs}");

    // A config error at start is JSON too when the file asks for JSON, and names the key.
    let bad = text.replace("listen: 127.0.0.1:0\nadmin", "listen: nowhere\nadmin");
    let path = zoho.dir.path().join("bad.yaml");
    std::fs::write(&path, bad).expect("write");
    let out = run_to_exit(&path);
    assert_eq!(out.status.code(), Some(2), "bad config exits 2");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr.lines().next().unwrap_or_default();
    let v: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("JSON error ({e}): {stderr}"));
    assert_eq!(v["key"], "listen", "names the key: {v}");
    assert_eq!(v["level"], "ERROR", "an error event: {v}");
    assert!(out.stdout.is_empty(), "nothing on stdout");
}

#[tokio::test]
async fn responses_without_a_body_are_logged_complete() {
    let zoho = Zoho::start().await;
    let text = zoho.config(&["ZohoCRM.modules.leads.READ"], "");
    let proxy = RunningProxy::spawn(zoho.dir.path(), &text).await;
    assert!(proxy.wait_ready(READY).await, "ready: {}", proxy.logs());
    let c = client();
    let empty = c
        .get(proxy.url("/crm/v8/Leads?page=99"))
        .send()
        .await
        .expect("empty page");
    assert_eq!(empty.status(), 204, "an empty list is 204");
    let not_modified = c
        .get(proxy.url("/crm/v8/Leads?__fake=status&status=304"))
        .send()
        .await
        .expect("304");
    assert_eq!(not_modified.status(), 304, "304 passes through");
    let head = c
        .head(proxy.url("/crm/v8/Leads"))
        .send()
        .await
        .expect("HEAD");
    // Whatever the fake answers to HEAD, the answer has no body.
    let head_status = head.status().as_u16().to_string();
    let access = |status: &str, method: &str| {
        let status = status.to_string();
        let method = method.to_string();
        move |t: &str| {
            t.lines().any(|l| {
                l.contains("access")
                    && l.contains(&format!("status={status}"))
                    && l.contains(&format!("method={method}"))
            })
        }
    };
    for (status, method) in [
        ("204", "GET"),
        ("304", "GET"),
        (head_status.as_str(), "HEAD"),
    ] {
        assert!(
            proxy
                .wait_for_output(Duration::from_secs(10), access(status, method))
                .await,
            "an access line for {method} {status}:\n{}",
            proxy.logs()
        );
    }
    let logs = proxy.logs();
    for (status, method) in [
        ("204", "GET"),
        ("304", "GET"),
        (head_status.as_str(), "HEAD"),
    ] {
        let line = logs
            .lines()
            .find(|l| {
                l.contains("access")
                    && l.contains(&format!("status={status}"))
                    && l.contains(&format!("method={method}"))
            })
            .unwrap_or_default();
        assert!(
            line.contains("complete=true"),
            "{method} answered {status} has no body by definition and is complete: {line}"
        );
    }
}

fn in_path(names: &[&str]) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    names
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// chromium-driver on a loopback port, stopped when dropped.
struct Driver {
    _child: tokio::process::Child,
    url: String,
}

/// Starts chromium-driver on a free port. The port is only free when it is picked: another test's
/// listener may take it before the driver binds (the driver then exits), so the driver counts as
/// up only when its own `/status` answers, and a lost port is picked again.
async fn start_driver(driver: &std::path::Path) -> Driver {
    for _ in 0..5 {
        let port = free_port();
        let mut child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        // Until the driver answers its own /status, or exits (its port was taken).
        let settled = poll_until(Duration::from_secs(20), || {
            let exited = child.try_wait().ok().flatten().is_some();
            let status = status.clone();
            async move { exited || driver_status(&status).await }
        })
        .await;
        let alive = child.try_wait().ok().flatten().is_none();
        if settled && alive && driver_status(&status).await {
            return Driver { _child: child, url };
        }
        let _ = child.kill().await;
    }
    panic!("chromedriver did not start on any of 5 ports");
}

/// Whether `status` is a WebDriver's `/status` (not some other listener on that port).
async fn driver_status(status: &str) -> bool {
    match client().get(status).send().await {
        Ok(r) => r
            .json::<serde_json::Value>()
            .await
            .is_ok_and(|v| v["value"]["ready"].is_boolean()),
        Err(_) => false,
    }
}

async fn attr(c: &fantoccini::Client, css: &str, name: &str) -> Option<String> {
    match c.find(fantoccini::Locator::Css(css)).await {
        Ok(e) => e.attr(name).await.ok().flatten(),
        Err(_) => None,
    }
}

#[tokio::test]
async fn headless_chromium_authorizes_from_the_console_and_explains() {
    let (Some(browser), Some(driver)) = (
        in_path(&["chromium", "chromium-browser", "google-chrome"]),
        in_path(&["chromedriver", "chromium-driver"]),
    ) else {
        eprintln!("\n*** SKIPPED headless_chromium_authorizes_from_the_console_and_explains: no chromium or chromedriver in PATH (apt-get install chromium chromium-driver) ***\n");
        return;
    };
    let zoho = Zoho::start().await;
    // The browser follows Zoho's redirect to the registered URI: the admin listener's real
    // address.
    let admin = format!("127.0.0.1:{}", free_port());
    let text = config(
        &zoho,
        &admin,
        &format!("http://{admin}/oauth/callback"),
        "policy:\n  mode: report\n",
    );
    let proxy = RunningProxy::spawn(zoho.dir.path(), &text).await;
    assert!(proxy.wait_ready(READY).await, "ready: {}", proxy.logs());
    // Some report-mode traffic, so the console has decisions and observed scopes to show.
    for path in [
        "/crm/v8/Leads",
        "/crm/v8/Contacts?fields=Last_Name",
        "/crm/v8/Deals/123",
        "/crm/v8/settings/fields?module=Leads",
    ] {
        let r = client()
            .get(proxy.url(path))
            .header("X-Zoho-Account", "own")
            .send()
            .await
            .expect("request");
        assert!(
            r.status().is_success(),
            "{path} forwarded (report mode): {}",
            r.status()
        );
    }

    let driver = start_driver(&driver).await;
    let profile = tempfile::tempdir().expect("browser profile");
    let mut caps = serde_json::Map::new();
    caps.insert("acceptInsecureCerts".into(), serde_json::json!(true));
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": browser.display().to_string(),
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--ignore-certificate-errors", "--window-size=1400,1500",
                "--no-proxy-server",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    let c =
        fantoccini::ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .expect("a WebDriver session");
    let console = format!("http://{admin}/");
    c.goto(&console).await.expect("open the console");
    assert_eq!(
        attr(&c, "#account-own", "data-state").await.as_deref(),
        Some("ready"),
        "the self client's row says ready"
    );
    assert_eq!(
        attr(&c, "#account-globex", "data-state").await.as_deref(),
        Some("not_authorized"),
        "the server account's row says not authorized"
    );
    let rows = c
        .find_all(fantoccini::Locator::Css("tr.account"))
        .await
        .expect("account rows");
    assert_eq!(rows.len(), 2, "both accounts are listed");
    let source = c.source().await.unwrap_or_default();
    for secret in [CLIENT_SECRET, REFRESH_TOKEN] {
        assert!(!source.contains(secret), "no secret in the rendered page");
    }

    // Authorize globex: the form posts to /oauth/start, the fake Zoho approves and redirects
    // to the callback, which exchanges the code.
    let before = zoho.control().token_requests();
    c.find(fantoccini::Locator::Id("authorize-globex"))
        .await
        .expect("the Authorize button")
        .click()
        .await
        .expect("click Authorize");
    let heading = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(fantoccini::Locator::Css("h1"))
        .await;
    let heading = match heading {
        Ok(h) => h,
        Err(e) => {
            let url = c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            let source = c.source().await.unwrap_or_default();
            panic!(
                "a page after the consent: {e:?}\nat {url}:\n{source}\nproxy:\n{}",
                proxy.logs()
            );
        }
    };
    let mut title = heading.text().await.unwrap_or_default();
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while title != "Authorized" && std::time::Instant::now() < end {
        let h1 = c
            .wait()
            .at_most(Duration::from_secs(5))
            .for_element(fantoccini::Locator::Css("h1"))
            .await;
        title = match h1 {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
    }
    assert_eq!(
        title,
        "Authorized",
        "the browser ends on the Authorized page (at {:?}); proxy:\n{}",
        c.current_url().await.ok(),
        proxy.logs()
    );
    assert!(
        zoho.control().token_requests() > before,
        "the code was exchanged"
    );
    c.goto(&console).await.expect("back to the console");
    assert_eq!(
        attr(&c, "#account-globex", "data-state").await.as_deref(),
        Some("ready"),
        "globex is ready after the browser flow"
    );
    assert_eq!(
        c.find(fantoccini::Locator::Id("authorize-globex"))
            .await
            .expect("button")
            .text()
            .await
            .unwrap_or_default(),
        "Re-authorize",
        "and offers re-authorization"
    );

    // The explain form.
    let path = c
        .find(fantoccini::Locator::Id("explain-path"))
        .await
        .expect("explain path field");
    path.clear().await.expect("clear");
    path.send_keys("/crm/v8/Leads/123/Contacts")
        .await
        .expect("type a path");
    let crm_before = zoho.control().crm_requests().len();
    c.find(fantoccini::Locator::Id("explain-submit"))
        .await
        .expect("Explain button")
        .click()
        .await
        .expect("submit");
    let decision = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(fantoccini::Locator::Id("explain-decision"))
        .await
        .expect("an explanation");
    assert_eq!(
        decision.text().await.unwrap_or_default(),
        "denied",
        "contacts are not allowed for own"
    );
    assert!(
        c.source()
            .await
            .unwrap_or_default()
            .contains("ZohoCRM.modules.contacts.READ"),
        "naming the scope"
    );
    assert_eq!(
        zoho.control().crm_requests().len(),
        crm_before,
        "explain forwarded nothing"
    );

    c.goto(&console).await.expect("console for the screenshot");
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(fantoccini::Locator::Id("explain-form"))
        .await
        .expect("page rendered");
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    // Every run saves target/console.png; `UPDATE_SCREENSHOT=1` also refreshes the README's
    // docs/console.png (so an ordinary test run leaves the work tree clean).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut outs = vec![root.join("target/console.png")];
    if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        outs.push(root.join("docs/console.png"));
    }
    for out in outs {
        std::fs::create_dir_all(out.parent().expect("a parent folder")).expect("create the folder");
        std::fs::write(&out, &png).expect("save the screenshot");
    }
    c.close().await.expect("close the session");
    proxy.assert_no_secrets(&zoho.control().live_tokens());
}
