//! The metadata cache (issue 38): hits answered with Zoho's own status, body and content headers
//! and `Cache-Status`, spending no credit, slot or token; the requester checks and the policy
//! first; writes, `POST /cache/purge` and the console button purge; the TTL, `no-cache`, `0s`,
//! non-200 and oversize answers; reloadable settings; Zoho's Node SDK started five times.
//!
//! Real sockets against the in-process fake Zoho; every wait is a bounded poll.

mod common;

use common::*;
use std::time::Duration;

const FIELDS: &str = "/crm/v8/settings/fields?module=Leads";
const WAIT: Duration = Duration::from_secs(10);
const KEY_FULL: &str = "full-key-0123456789abcdef0123456789abcdef";
const KEY_NARROW: &str = "narrow-key-0123456789abcdef0123456789abcd";

/// One answer, read whole.
struct Answer {
    status: u16,
    cache_status: String,
    content_type: String,
    body: bytes::Bytes,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let r = req.send().await.expect("request");
    let header = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let (cache_status, content_type) = (header("cache-status"), header("content-type"));
    let status = r.status().as_u16();
    let body = r.bytes().await.expect("body");
    Answer {
        status,
        cache_status,
        content_type,
        body,
    }
}

async fn get(proxy: &RunningProxy, path: &str) -> Answer {
    send(client().get(proxy.url(path))).await
}

/// How many `GET`s of `path_and_query` the fake Zoho received.
fn seen(zoho: &Zoho, path_and_query: &str) -> usize {
    zoho.control()
        .crm_requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path_and_query == path_and_query)
        .count()
}

/// The cache figures of the first account in `/status`.
async fn cache_status(proxy: &RunningProxy) -> serde_json::Value {
    proxy.status_json().await["cache"][0].clone()
}

/// Waits until the first account's cache holds `entries` entries.
async fn wait_entries(proxy: &RunningProxy, entries: u64) {
    let held = poll_until(WAIT, || async {
        cache_status(proxy).await["entries"].as_u64() == Some(entries)
    })
    .await;
    assert!(
        held,
        "the cache holds {entries} entries: {}",
        cache_status(proxy).await
    );
}

/// The value of the metric line starting with `series` (0 when absent).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

async fn start(allow: &[&str], extra: &str) -> (Zoho, RunningProxy) {
    let zoho = Zoho::start().await;
    let config = zoho.config(allow, extra);
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &config).await;
    (zoho, proxy)
}

#[tokio::test]
async fn a_hit_is_zohos_answer_with_cache_status_and_spends_no_credit_or_token() {
    let allow = ["ZohoCRM.settings.fields.READ", "ZohoCRM.modules.leads.READ"];
    let (zoho, proxy) = start(&allow, "").await;
    let miss = get(&proxy, FIELDS).await;
    assert_eq!(miss.status, 200, "the miss is Zoho's answer");
    assert_eq!(
        miss.cache_status, "zoho-auth-proxy; fwd=miss; stored",
        "a stored miss says so"
    );
    wait_entries(&proxy, 1).await;
    let before = proxy.metrics_text().await;
    let tokens_before = zoho.control().token_requests();
    // Zoho would now refuse the proxy's token: a request that reached it would be refused or
    // would need a new token.
    zoho.control().revoke_all_access_tokens();
    for round in 0..3 {
        let hit = get(&proxy, FIELDS).await;
        assert_eq!(hit.status, 200, "hit {round}: Zoho's status");
        assert_eq!(
            hit.body, miss.body,
            "hit {round}: Zoho's body, byte for byte"
        );
        assert_eq!(
            hit.content_type, miss.content_type,
            "hit {round}: Zoho's Content-Type"
        );
        let ttl: u64 = hit
            .cache_status
            .strip_prefix("zoho-auth-proxy; hit; ttl=")
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("hit {round}: Cache-Status `{}`", hit.cache_status));
        assert!((1..=300).contains(&ttl), "hit {round}: ttl {ttl} within 5m");
    }
    let head = send(client().head(proxy.url(FIELDS))).await;
    assert!(
        head.status == 200 && head.cache_status.contains("hit") && head.body.is_empty(),
        "HEAD is answered from the GET's entry, without a body"
    );
    assert_eq!(seen(&zoho, FIELDS), 1, "Zoho saw settings/fields once");
    assert_eq!(
        zoho.control().token_requests(),
        tokens_before,
        "no token was minted or refreshed for a hit"
    );
    let after = proxy.metrics_text().await;
    let used = "zoho_proxy_credits_used_total{account=\"default\",client=\"(anonymous)\"}";
    assert_eq!(
        metric(&after, used),
        metric(&before, used),
        "hits spend no credit:\n{after}"
    );
    let series = |name: &str| format!("zoho_proxy_{name}{{account=\"default\"}}");
    assert_eq!(metric(&after, &series("cache_hits_total")), 4.0, "hits");
    assert_eq!(metric(&after, &series("cache_misses_total")), 1.0, "misses");
    assert_eq!(metric(&after, &series("credits_saved_total")), 4.0, "saved");
    assert!(metric(&after, &series("cache_bytes")) > 0.0, "bytes held");
    let status = cache_status(&proxy).await;
    assert_eq!(
        (
            status["hits"].as_u64(),
            status["misses"].as_u64(),
            status["credits_saved"].as_u64()
        ),
        (Some(4), Some(1), Some(4)),
        "/status shows hits, misses and credits saved: {status}"
    );
    // Access lines are written in batches: wait for the line (bounded).
    let logged = proxy
        .wait_for_output(WAIT, |t| {
            t.lines()
                .any(|l| l.contains("access") && l.contains("credits=0") && l.contains("cache=hit"))
        })
        .await;
    assert!(
        logged,
        "the access line of a hit says cache=hit, credits=0:\n{}",
        proxy.logs()
    );
}

#[tokio::test]
async fn a_hit_needs_no_upstream_slot() {
    let allow = ["ZohoCRM.settings.fields.READ", "ZohoCRM.modules.leads.READ"];
    let limits = "limits:\n  upstream_concurrency: 1\n  upstream_queue_timeout: 1s\n";
    let (zoho, proxy) = start(&allow, limits).await;
    get(&proxy, FIELDS).await;
    wait_entries(&proxy, 1).await;
    // A slow call takes the only slot.
    let slow = tokio::spawn(
        client()
            .get(proxy.url("/crm/v8/Leads?__fake=delay_ms=3000"))
            .send(),
    );
    let held = poll_until(WAIT, || async { zoho.control().in_flight().0 == 1 }).await;
    assert!(held, "the slow call is in flight at Zoho");
    let hit = get(&proxy, FIELDS).await;
    assert_eq!(
        hit.status, 200,
        "the hit is answered while the slot is taken"
    );
    assert!(hit.cache_status.contains("hit"), "from the cache");
    let miss = get(&proxy, "/crm/v8/settings/fields?module=Deals").await;
    assert_eq!(miss.status, 503, "a miss waits for the slot, and gives up");
    let slow = slow.await.expect("join").expect("the slow call");
    assert_eq!(slow.status(), 200, "the slow call ends");
}

#[tokio::test]
async fn a_client_without_the_scope_gets_403_while_the_cache_holds_the_entry() {
    let clients = format!(
        "clients:\n  - name: full\n    key: {KEY_FULL}\n  - name: narrow\n    key: {KEY_NARROW}\n    allow: [ZohoCRM.modules.leads.READ]\n"
    );
    let allow = ["ZohoCRM.settings.fields.READ", "ZohoCRM.modules.leads.READ"];
    let (zoho, proxy) = start(&allow, &clients).await;
    let as_client = |key: &str| client().get(proxy.url(FIELDS)).bearer_auth(key);
    let full = send(as_client(KEY_FULL)).await;
    assert_eq!(full.status, 200, "the full client reads the fields");
    wait_entries(&proxy, 1).await;
    assert!(
        send(as_client(KEY_FULL)).await.cache_status.contains("hit"),
        "the entry is held"
    );
    let narrow = send(as_client(KEY_NARROW)).await;
    assert_eq!(narrow.status, 403, "the narrow client is refused");
    assert_ne!(narrow.body, full.body, "and gets no cached copy");
    assert!(
        narrow.cache_status.is_empty(),
        "no Cache-Status on a refusal"
    );
    let anonymous = get(&proxy, FIELDS).await;
    assert_eq!(
        anonymous.status, 401,
        "no key: the requester checks refuse first"
    );
    assert_eq!(seen(&zoho, FIELDS), 1, "Zoho saw the fields once");
}

#[tokio::test]
async fn writes_the_admin_purge_and_no_cache_refresh_the_entries() {
    let allow = ["ZohoCRM.settings.ALL", "ZohoCRM.modules.leads.READ"];
    let (zoho, proxy) = start(&allow, "").await;
    let fill = || async {
        let a = get(&proxy, FIELDS).await;
        assert_eq!(
            a.cache_status, "zoho-auth-proxy; fwd=miss; stored",
            "a miss"
        );
        wait_entries(&proxy, 1).await;
    };
    fill().await;
    // A write under settings/ (whatever Zoho answers) purges.
    let put = send(client().put(proxy.url(FIELDS)).body("{}")).await;
    assert!(
        put.cache_status.is_empty(),
        "a write is not cached: {}",
        put.cache_status
    );
    wait_entries(&proxy, 0).await;
    fill().await;
    // The admin purge, for one account, then an unknown one, then all.
    let purge = |query: &'static str| {
        let url = proxy.admin_url(&format!("/cache/purge{query}"));
        async move { client().post(url).send().await.expect("purge") }
    };
    let r = purge("?account=default").await;
    assert_eq!(r.status(), 200, "purge one account");
    let json: serde_json::Value = r.json().await.expect("JSON answer");
    assert_eq!(json["purged"][0]["entries"], 1, "one entry purged: {json}");
    wait_entries(&proxy, 0).await;
    fill().await;
    assert_eq!(
        purge("?account=nope").await.status(),
        404,
        "unknown account"
    );
    assert_eq!(cache_status(&proxy).await["entries"], 1, "nothing purged");
    assert_eq!(purge("").await.status(), 200, "purge all");
    wait_entries(&proxy, 0).await;
    fill().await;
    // Cache-Control: no-cache goes to Zoho and refreshes the entry.
    let fresh = send(
        client()
            .get(proxy.url(FIELDS))
            .header("cache-control", "no-cache"),
    )
    .await;
    assert_eq!(
        fresh.cache_status, "zoho-auth-proxy; fwd=request; stored",
        "no-cache refreshes"
    );
    assert_eq!(
        seen(&zoho, FIELDS),
        5,
        "four fills and the refresh reached Zoho"
    );
    let hit = get(&proxy, FIELDS).await;
    assert!(
        hit.cache_status.contains("hit"),
        "the refreshed entry serves"
    );
    assert_eq!(seen(&zoho, FIELDS), 5, "served from the cache");
}

#[tokio::test]
async fn after_the_ttl_the_entry_is_fetched_again() {
    let allow = ["ZohoCRM.settings.fields.READ"];
    let (zoho, proxy) = start(&allow, "cache:\n  metadata_ttl: 1s\n").await;
    get(&proxy, FIELDS).await;
    wait_entries(&proxy, 1).await;
    let hit = get(&proxy, FIELDS).await;
    assert!(hit.cache_status.contains("hit"), "a hit within the TTL");
    let refetched = poll_until(WAIT, || async {
        get(&proxy, FIELDS).await.cache_status == "zoho-auth-proxy; fwd=miss; stored"
    })
    .await;
    assert!(refetched, "after the TTL the entry is fetched again");
    assert_eq!(seen(&zoho, FIELDS), 2, "Zoho saw the fields twice");
}

#[tokio::test]
async fn zero_ttl_non_200_and_oversize_answers_are_not_stored() {
    let allow = ["ZohoCRM.settings.ALL", "ZohoCRM.org.READ"];
    let (zoho, proxy) = start(&allow, "cache:\n  metadata_ttl: 0s\n").await;
    for _ in 0..2 {
        let a = get(&proxy, FIELDS).await;
        assert!(
            a.status == 200 && a.cache_status.is_empty(),
            "off: plain forwarding"
        );
    }
    assert_eq!(seen(&zoho, FIELDS), 2, "off: each request reaches Zoho");
    drop(proxy);

    // 1 KiB: entries up to 128 bytes; the fields answer is larger, the org's too.
    let config = zoho.config(&allow, "cache:\n  max_bytes: 1KiB\n");
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &config).await;
    zoho.control().clear_crm_requests();
    for _ in 0..2 {
        let a = get(&proxy, FIELDS).await;
        assert!(a.body.len() > 128, "the test needs a larger answer");
        assert_eq!(
            a.cache_status, "zoho-auth-proxy; fwd=miss",
            "over the cap: not stored"
        );
    }
    // A non-200 (no module: 400) is not stored.
    for _ in 0..2 {
        let a = get(&proxy, "/crm/v8/settings/fields").await;
        assert_eq!(a.status, 400, "Zoho's 400");
        assert_eq!(
            a.cache_status, "zoho-auth-proxy; fwd=miss",
            "a 400 is not stored"
        );
    }
    assert_eq!(seen(&zoho, FIELDS), 2, "oversize: both reached Zoho");
    assert_eq!(
        seen(&zoho, "/crm/v8/settings/fields"),
        2,
        "400: both reached Zoho"
    );
    assert_eq!(cache_status(&proxy).await["entries"], 0, "nothing held");
}

#[tokio::test]
async fn the_settings_reload_and_a_bad_value_exits_2_naming_the_key() {
    let allow = ["ZohoCRM.settings.fields.READ"];
    let (zoho, proxy) = start(&allow, "cache:\n  metadata_ttl: 0s\n").await;
    let config = zoho.config(&allow, "cache:\n  metadata_ttl: 5m\n  max_bytes: 1MiB\n");
    std::fs::write(&proxy.config_path, config).expect("rewrite config");
    let reloaded = poll_until(WAIT, || async {
        cache_status(&proxy).await["metadata_ttl_s"].as_f64() == Some(300.0)
    })
    .await;
    assert!(
        reloaded,
        "the new TTL is in force: {}",
        cache_status(&proxy).await
    );
    assert_eq!(
        cache_status(&proxy).await["max_bytes"],
        1 << 20,
        "and the new size"
    );
    get(&proxy, FIELDS).await;
    wait_entries(&proxy, 1).await;
    assert!(
        get(&proxy, FIELDS).await.cache_status.contains("hit"),
        "now cached"
    );

    for (extra, key) in [
        ("cache:\n  metadata_ttl: soon\n", "cache.metadata_ttl"),
        ("cache:\n  max_bytes: lots\n", "cache.max_bytes"),
        ("cache:\n  ttl: 5m\n", "ttl"),
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("proxy.yaml");
        std::fs::write(&path, zoho.config(&allow, extra)).expect("config");
        let out = run_to_exit(&path);
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra}: exit 2: {text}");
        assert!(text.contains(key), "{extra}: names {key}: {text}");
    }
}

/// The CSRF token of the console's Purge forms.
fn purge_token(html: &str) -> String {
    let form = html
        .find("action=\"/cache/purge\"")
        .unwrap_or_else(|| panic!("a Purge form:\n{html}"));
    let rest = &html[form..];
    let at = rest.find("name=\"csrf\" value=\"").expect("its CSRF field");
    let rest = &rest[at + "name=\"csrf\" value=\"".len()..];
    rest[..rest.find('"').expect("end of the token")].to_string()
}

#[tokio::test]
async fn the_console_button_purges_with_its_csrf_token_only() {
    let (zoho, proxy) = start(&["ZohoCRM.settings.fields.READ"], "").await;
    get(&proxy, FIELDS).await;
    wait_entries(&proxy, 1).await;
    let html = proxy.admin_text("/").await;
    assert!(
        html.contains("id=\"purge-default\""),
        "a Purge button:\n{html}"
    );
    assert!(
        html.contains("Credits saved"),
        "the cache figures are shown"
    );
    let token = purge_token(&html);
    let post = |form: Vec<(&'static str, String)>| {
        let url = proxy.admin_url("/cache/purge");
        async move { client().post(url).form(&form).send().await.expect("POST") }
    };
    for (name, form) in [
        ("no token", vec![("account", "default".to_string())]),
        (
            "tampered",
            vec![
                ("account", "default".to_string()),
                ("csrf", token.replacen('.', "0.", 1)),
            ],
        ),
    ] {
        assert_eq!(post(form).await.status(), 403, "{name}: refused");
        assert_eq!(
            cache_status(&proxy).await["entries"],
            1,
            "{name}: nothing purged"
        );
    }
    let r = post(vec![("account", "default".into()), ("csrf", token)]).await;
    assert_eq!(r.status(), 200, "the page's token purges");
    wait_entries(&proxy, 0).await;
    assert_eq!(seen(&zoho, FIELDS), 1, "the purge itself calls nothing");
}

#[tokio::test]
async fn zohos_node_sdk_started_five_times_fetches_the_fields_once() {
    let Some(sdk) = node_sdk() else {
        eprintln!("\n*** SKIPPED zohos_node_sdk_started_five_times_fetches_the_fields_once: Zoho's Node SDK is not installed (.ci/run: npm install --prefix target/node-sdk @zohocrm/nodejs-sdk-8.0) ***\n");
        return;
    };
    let allow = ["ZohoCRM.modules.leads.READ", "ZohoCRM.settings.fields.READ"];
    let clients = format!("clients:\n  - name: node-sdk\n    key: {KEY_FULL}\n");
    let (zoho, proxy) = start(&allow, &clients).await;
    let mut results = Vec::new();
    for run in 0..5 {
        // A fresh resource folder each time, as a container or a cron job starts the SDK.
        let resources = tempfile::tempdir().expect("SDK resource dir");
        let (result, output) = run_node_sdk(&sdk, &proxy, KEY_FULL, resources.path()).await;
        assert_eq!(
            result["status"],
            200,
            "run {run}: {output}\n{}",
            proxy.logs()
        );
        results.push(result);
        // The next start must find the entry (stored once the answer was complete).
        wait_entries(&proxy, 1).await;
    }
    assert!(
        results.windows(2).all(|w| w[0] == w[1]),
        "the SDK's results are identical: {results:?}"
    );
    let requests = zoho.control().crm_requests();
    let count = |path: &str| {
        requests
            .iter()
            .filter(|r| r.path_and_query.split('?').next() == Some(path))
            .count()
    };
    assert_eq!(count("/crm/v8/settings/fields"), 1, "the fields once");
    assert_eq!(count("/crm/v8/Leads"), 5, "the records five times");
}
