//! Running as a Kubernetes sidecar (issue 5): admin probes, status and metrics; logs (levels,
//! JSON, no secrets at trace level); graceful shutdown; live reload (SIGHUP, file changes,
//! rotated secret files); Unix socket and non-loopback listeners; request limits; and the shipped
//! Kubernetes ConfigMaps against the real config parser.
//!
//! Real binary, real sockets, real TLS (the fake Zoho). No sleeps to synchronise: every wait is a
//! poll with a bounded deadline, a readiness line in the output, or a counter of the fake.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LEADS_READ: &[&str] = &["ZohoCRM.modules.leads.READ"];
const LEADS_ALL: &[&str] = &["ZohoCRM.modules.leads.ALL"];
const A_LEAD: &str = "/crm/v8/Leads/554023000000235011";

// ------------------------------------------------------------------------------------------------
// Helpers.

/// One Prometheus/OpenMetrics sample: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the text exposition format (enough of it for our own output: no escapes in labels).
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let body = rest.trim_end_matches('}');
                let labels = body
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                    .collect();
                (n.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// The sum of the samples named `name` whose labels include all of `labels`; `None` when no
/// sample matches (the series does not exist).
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matching: Vec<f64> = samples(text)
        .into_iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    (!matching.is_empty()).then(|| matching.iter().sum())
}

async fn scrape(proxy: &RunningProxy) -> String {
    let r = client()
        .get(proxy.admin_url("/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(r.status(), 200, "/metrics answers 200");
    r.text().await.expect("metrics text")
}

/// Runs curl (never through an HTTP proxy) and returns (status, body).
async fn curl(args: &[&str]) -> (u16, String) {
    let out = tokio::process::Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "20",
            "-w",
            "\n%{http_code}",
        ])
        .args(args)
        .output()
        .await
        .expect("curl runs (the acceptance suite uses curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Replaces a file the way Kubernetes and editors do: write a sibling, then rename over it.
fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over the file");
}

/// Status of a GET through the proxy.
async fn status_of(c: &reqwest::Client, url: &str) -> u16 {
    c.get(url)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Reads from `s` until the peer closes (returns true) or `deadline` passes (false).
async fn closed_within(s: &mut TcpStream, deadline: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let end = Instant::now() + deadline;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

/// Sends a request head (and optional body bytes) on a fresh connection and reads the response
/// head and what follows until `deadline`.
async fn raw_response(addr: std::net::SocketAddr, bytes: &[u8], deadline: Duration) -> String {
    String::from_utf8_lossy(&raw(addr, bytes, deadline).await).into_owned()
}

fn status_line_code(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------------------------
// 1. Admin listener: probes, status, metrics.

#[tokio::test]
async fn probes_status_and_metrics_answer_as_documented_and_count_requests() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(LEADS_READ, "")).await;
    assert!(
        proxy.wait_ready(Duration::from_secs(10)).await,
        "the proxy becomes ready: {}",
        proxy.logs()
    );

    let (code, body) = curl(&[&proxy.admin_url("/healthz")]).await;
    assert_eq!(code, 200, "curl /healthz is 200 while the process works");
    let v: serde_json::Value = serde_json::from_str(&body).expect("/healthz is JSON");
    assert_eq!(v["status"], "ok", "/healthz says ok");
    let (code, body) = curl(&[&proxy.admin_url("/readyz")]).await;
    assert_eq!(code, 200, "curl /readyz is 200 with a fresh token");
    let v: serde_json::Value = serde_json::from_str(&body).expect("/readyz is JSON");
    assert_eq!(v["status"], "ready", "/readyz says ready");

    // /status: token state, data center, API host, policy and version; no secret.
    let (code, body) = curl(&[&proxy.admin_url("/status")]).await;
    assert_eq!(code, 200, "curl /status is 200");
    let status: serde_json::Value = serde_json::from_str(&body).expect("/status is JSON");
    assert_eq!(
        status["version"],
        env!("CARGO_PKG_VERSION"),
        "/status names the version"
    );
    let account = &status["accounts"][0];
    assert_eq!(account["name"], "default", "/status lists the account");
    assert_eq!(
        account["data_center"], "us",
        "/status names the data center"
    );
    assert_eq!(
        account["api_host"]
            .as_str()
            .map(|h| h.trim_end_matches('/')),
        Some(zoho.fake.api_url().trim_end_matches('/')),
        "/status names the API host in use"
    );
    assert_eq!(
        account["token"]["state"], "ready",
        "/status shows the token state"
    );
    assert!(
        account["token"]["expires_in_s"].as_f64().unwrap_or(0.0) > 3000.0,
        "/status shows expires_in_s: {account}"
    );
    assert!(
        account["token"]["last_refresh_unix_ms"].as_u64().is_some(),
        "/status shows the last refresh: {account}"
    );
    assert!(
        account["token"]["last_error"].is_null(),
        "/status shows no last error: {account}"
    );
    assert_eq!(
        account["policy"]["allow"][0], "ZohoCRM.modules.leads.READ",
        "/status summarises the policy: {account}"
    );
    for secret in [CLIENT_SECRET, REFRESH_TOKEN] {
        assert!(!body.contains(secret), "/status never shows a secret");
    }
    for token in zoho.control().live_tokens() {
        assert!(
            !body.contains(&token),
            "/status never shows an access token"
        );
    }

    // Traffic: 3 allowed GETs, 2 denied GETs, 1 denied POST, 1 invalid (non-canonical) GET.
    let c = client();
    for _ in 0..3 {
        assert_eq!(
            status_of(&c, &proxy.url(A_LEAD)).await,
            200,
            "an allowed GET is forwarded"
        );
    }
    for _ in 0..2 {
        assert_eq!(
            status_of(&c, &proxy.url("/crm/v8/Contacts")).await,
            403,
            "Contacts is denied"
        );
    }
    let r = c
        .post(proxy.url("/crm/v8/Leads"))
        .body(r#"{"data":[]}"#)
        .send()
        .await
        .expect("POST");
    assert_eq!(
        r.status(),
        403,
        "a POST needs leads.CREATE, which is not allowed"
    );
    let invalid = raw_response(
        proxy.proxy,
        b"GET /crm/v8/Leads/../Deals HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        status_line_code(&invalid),
        400,
        "a dot segment is rejected: {invalid}"
    );

    // A request in flight shows in the gauges.
    let slow = {
        let c = c.clone();
        let url = proxy.url("/crm/v8/Leads?__fake=delay_ms=1500");
        tokio::spawn(async move { status_of(&c, &url).await })
    };
    assert!(
        zoho.control()
            .wait_for_crm_requests(4, Duration::from_secs(5))
            .await,
        "the slow request reached Zoho"
    );
    let text = scrape(&proxy).await;
    assert_eq!(
        metric(&text, "zoho_proxy_requests_in_flight", &[]),
        Some(1.0),
        "one request in flight:\n{text}"
    );
    assert!(
        metric(
            &text,
            "zoho_proxy_open_connections",
            &[("listener", "proxy")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "open proxy connections counted:\n{text}"
    );
    assert!(
        metric(
            &text,
            "zoho_proxy_open_connections",
            &[("listener", "admin")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "open admin connections counted apart (this scrape):\n{text}"
    );
    assert_eq!(
        slow.await.expect("slow task"),
        200,
        "the slow request completes"
    );

    let text = scrape(&proxy).await;
    let req = |method: &str, decision: &str, class: &str| {
        metric(
            &text,
            "zoho_proxy_requests_total",
            &[
                ("account", "default"),
                ("method", method),
                ("decision", decision),
                ("status_class", class),
            ],
        )
    };
    assert_eq!(
        req("GET", "allowed", "2xx"),
        Some(4.0),
        "allowed GETs counted by method, decision and status class:\n{text}"
    );
    assert_eq!(
        req("GET", "denied", "4xx"),
        Some(2.0),
        "denied GETs counted:\n{text}"
    );
    assert_eq!(
        req("POST", "denied", "4xx"),
        Some(1.0),
        "denied POST counted:\n{text}"
    );
    assert_eq!(
        req("GET", "invalid", "4xx"),
        Some(1.0),
        "invalid requests counted:\n{text}"
    );
    assert_eq!(
        metric(
            &text,
            "zoho_proxy_upstream_latency_seconds_count",
            &[("account", "default")]
        ),
        Some(4.0),
        "the upstream latency histogram saw the 4 forwarded requests:\n{text}"
    );
    assert!(
        metric(
            &text,
            "zoho_proxy_upstream_latency_seconds_bucket",
            &[("le", "+Inf")]
        )
        .is_some(),
        "the latency histogram has buckets:\n{text}"
    );
    assert!(
        metric(&text, "zoho_proxy_upstream_latency_seconds_sum", &[]).unwrap_or(0.0) >= 1.4,
        "the latency sum includes the 1.5 s request:\n{text}"
    );
    assert_eq!(
        metric(
            &text,
            "zoho_proxy_token_refreshes_total",
            &[("account", "default"), ("result", "ok")]
        ),
        Some(1.0),
        "one successful token refresh by result:\n{text}"
    );
    assert!(
        metric(
            &text,
            "zoho_proxy_token_expiry_seconds",
            &[("account", "default")]
        )
        .unwrap_or(0.0)
            > 3000.0,
        "seconds until token expiry:\n{text}"
    );
    assert_eq!(
        metric(
            &text,
            "zoho_proxy_mint_budget_left",
            &[("account", "default")]
        ),
        Some(7.0),
        "mint budget left (8 - 1):\n{text}"
    );
    assert_eq!(
        metric(
            &text,
            "zoho_proxy_config_reloads_total",
            &[("result", "ok")]
        ),
        Some(0.0),
        "reloads by result exist (ok):\n{text}"
    );
    assert_eq!(
        metric(
            &text,
            "zoho_proxy_config_reloads_total",
            &[("result", "error")]
        ),
        Some(0.0),
        "reloads by result exist (error):\n{text}"
    );
    assert_eq!(
        metric(&text, "zoho_proxy_requests_in_flight", &[]),
        Some(0.0),
        "nothing in flight any more:\n{text}"
    );
    assert!(
        metric(&text, "zoho_proxy_open_connections", &[]).is_some(),
        "open connections gauge:\n{text}"
    );

    // The proxied listener never serves the admin paths.
    let before = zoho.control().crm_requests().len();
    for path in ["/healthz", "/readyz", "/metrics", "/status"] {
        let r = c
            .get(proxy.url(path))
            .send()
            .await
            .expect("admin path on the proxy listener");
        assert_ne!(
            r.status(),
            200,
            "{path} is not served by the proxy listener"
        );
        assert!(
            r.headers().contains_key("x-zoho-proxy-error"),
            "{path}: the refusal is the proxy's own"
        );
    }
    assert_eq!(
        zoho.control().crm_requests().len(),
        before,
        "admin paths are not forwarded to Zoho"
    );
}

#[tokio::test]
async fn readyz_is_503_with_a_json_reason_until_a_token_is_held() {
    let zoho = Zoho::start().await;
    // Three failed token requests: the retries come 0.5-1 s, 1-2 s and 2-4 s apart, so the proxy
    // stays unready for at least 3.5 s, long enough to ask it even on a loaded machine.
    zoho.control().queue_token_behaviors([
        TokenBehavior::Html(500),
        TokenBehavior::Html(500),
        TokenBehavior::Html(500),
    ]);
    let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(LEADS_READ, "")).await;
    let (code, _) = curl(&[&proxy.admin_url("/healthz")]).await;
    assert_eq!(code, 200, "/healthz is 200 even without a token");
    let (code, body) = curl(&[&proxy.admin_url("/readyz")]).await;
    assert_eq!(code, 503, "/readyz is 503 without a token: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("/readyz 503 is JSON");
    assert_eq!(v["status"], "not_ready", "/readyz says not_ready: {v}");
    let reason = v["reasons"][0]["reason"].as_str().unwrap_or("");
    assert!(!reason.is_empty(), "/readyz gives a reason: {v}");
    assert_eq!(
        v["reasons"][0]["account"], "default",
        "/readyz names the account: {v}"
    );
    assert!(
        proxy.wait_ready(Duration::from_secs(15)).await,
        "ready once a token request succeeds: {}",
        proxy.logs()
    );
    let text = scrape(&proxy).await;
    assert!(
        metric(
            &text,
            "zoho_proxy_token_refreshes_total",
            &[("result", "ok")]
        ) == Some(1.0)
            && metric(&text, "zoho_proxy_token_refreshes_total", &[]).unwrap_or(0.0) >= 4.0,
        "refreshes are counted by result (3 failures, 1 success):\n{text}"
    );
}

// ------------------------------------------------------------------------------------------------
// 2. Graceful shutdown.

#[tokio::test]
async fn sigterm_finishes_the_request_in_flight_refuses_new_connections_and_exits_0() {
    let zoho = Zoho::start().await;
    let mut proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(LEADS_READ, "")).await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");
    let in_flight = {
        let url = proxy.url("/crm/v8/Leads?__fake=delay_ms=3000");
        tokio::spawn(async move {
            let r = client()
                .get(url)
                .send()
                .await
                .expect("in-flight request is answered");
            let status = r.status().as_u16();
            (status, r.text().await.unwrap_or_default(), Instant::now())
        })
    };
    assert!(
        zoho.control()
            .wait_for_crm_requests(1, Duration::from_secs(5))
            .await,
        "the 3 s request reached Zoho"
    );
    let signalled = Instant::now();
    proxy.signal("TERM");
    let (addr, admin) = (proxy.proxy, proxy.admin);
    let refused = poll_until(Duration::from_secs(2), || async move {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(
        refused,
        "new connections are refused right after SIGTERM: {}",
        proxy.logs()
    );
    eprintln!(
        "measured: connections refused {:?} after SIGTERM",
        signalled.elapsed()
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "refused within 2 s of the signal"
    );
    assert!(
        TcpStream::connect(admin).await.is_err(),
        "the admin listener is closed too"
    );
    let (status, body, finished) = in_flight.await.expect("in-flight task");
    assert_eq!(status, 200, "the request in flight gets its 200: {body}");
    assert!(
        body.contains("\"data\""),
        "with Zoho's complete body: {body}"
    );
    let exit = proxy
        .wait_exit(Duration::from_secs(15))
        .await
        .expect("the proxy exits");
    let exited = Instant::now();
    assert_eq!(
        exit.code(),
        Some(0),
        "exit status 0 after a clean drain: {}",
        proxy.logs()
    );
    assert!(
        exited >= finished,
        "the proxy exited only after the in-flight response was delivered"
    );
    assert!(
        signalled.elapsed() < Duration::from_secs(10),
        "the drain took about the request's remaining time"
    );
}

#[tokio::test]
async fn shutdown_delay_keeps_accepting_and_reports_unready_before_draining() {
    let zoho = Zoho::start().await;
    let mut proxy = RunningProxy::spawn(
        zoho.dir.path(),
        &zoho.config(LEADS_READ, "shutdown:\n  delay: 2s\n  grace: 5s\n"),
    )
    .await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");
    let signalled = Instant::now();
    proxy.signal("TERM");
    assert!(
        proxy
            .wait_for_output(Duration::from_secs(5), |t| t.contains("still accepting"))
            .await,
        "the delay is announced: {}",
        proxy.logs()
    );
    // During the delay: new connections are served, readiness reports the shutdown.
    let fresh = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    assert_eq!(
        status_of(&fresh, &proxy.url(A_LEAD)).await,
        200,
        "a new connection is served during shutdown.delay"
    );
    let r = fresh
        .get(proxy.admin_url("/readyz"))
        .send()
        .await
        .expect("readyz during the delay");
    assert_eq!(
        r.status(),
        503,
        "/readyz turns 503 as soon as the signal arrives"
    );
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["status"], "shutting_down", "/readyz says why: {v}");
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "(the checks above ran inside the delay)"
    );
    let addr = proxy.proxy;
    let refused = poll_until(Duration::from_secs(6), || async move {
        TcpStream::connect(addr).await.is_err()
    })
    .await;
    let refused_after = signalled.elapsed();
    assert!(refused, "connections are refused once the delay is over");
    assert!(
        refused_after >= Duration::from_millis(1900),
        "accepting lasted shutdown.delay (2 s), got {refused_after:?}"
    );
    let exit = proxy
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits");
    assert_eq!(exit.code(), Some(0), "exit 0 after delay and drain");
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let zoho = Zoho::start().await;
    let mut proxy = RunningProxy::spawn(
        zoho.dir.path(),
        &zoho.config(LEADS_READ, "shutdown:\n  grace: 30s\n"),
    )
    .await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");
    let url = proxy.url("/crm/v8/Leads?__fake=delay_ms=20000");
    let in_flight =
        tokio::spawn(async move { client().get(url).send().await.map(|r| r.status().as_u16()) });
    assert!(
        zoho.control()
            .wait_for_crm_requests(1, Duration::from_secs(5))
            .await,
        "the long request reached Zoho"
    );
    proxy.signal("TERM");
    assert!(
        proxy
            .wait_for_output(Duration::from_secs(5), |t| t.contains("shutting down"))
            .await,
        "the first signal starts the drain: {}",
        proxy.logs()
    );
    let second = Instant::now();
    proxy.signal("INT");
    let exit = proxy.wait_exit(Duration::from_secs(5)).await;
    assert!(
        exit.is_some(),
        "the second signal ends the process without waiting for the drain"
    );
    assert!(
        second.elapsed() < Duration::from_secs(3),
        "exited at once, took {:?}",
        second.elapsed()
    );
    assert_ne!(
        exit.and_then(|e| e.code()),
        Some(0),
        "an abandoned drain is not a clean exit"
    );
    assert!(
        !matches!(in_flight.await.expect("task"), Ok(200)),
        "the abandoned 20 s request did not complete"
    );
}

// ------------------------------------------------------------------------------------------------
// 3. Live reload.

#[tokio::test]
async fn sighup_reloads_policy_keeps_the_old_one_on_errors_and_file_changes_apply_without_a_signal()
{
    let zoho = Zoho::start().await;
    let leads_only = zoho.config(LEADS_READ, "");
    let contacts_only = zoho.config(&["ZohoCRM.modules.contacts.READ"], "");
    let proxy = RunningProxy::spawn(zoho.dir.path(), &leads_only).await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");
    let c = client();
    let (leads, contacts) = (proxy.url(A_LEAD), proxy.url("/crm/v8/Contacts"));
    assert_eq!(
        status_of(&c, &contacts).await,
        403,
        "Contacts denied at first"
    );

    // A broken file: the old policy keeps serving, the failure is logged and counted.
    write_atomic(&proxy.config_path, "listen: [\nallow: {\n");
    proxy.signal("HUP");
    assert!(
        proxy
            .wait_for_output(Duration::from_secs(5), |t| t
                .contains("keeping the previous configuration"))
            .await,
        "a failed reload says it keeps the old config: {}",
        proxy.logs()
    );
    assert_eq!(
        status_of(&c, &leads).await,
        200,
        "the old policy still allows Leads"
    );
    assert_eq!(
        status_of(&c, &contacts).await,
        403,
        "the old policy still denies Contacts"
    );
    let text = scrape(&proxy).await;
    assert!(
        metric(
            &text,
            "zoho_proxy_config_reloads_total",
            &[("result", "error")]
        )
        .unwrap_or(0.0)
            >= 1.0,
        "the failed reload is counted:\n{text}"
    );

    // A request in flight keeps the snapshot it started with.
    let in_flight = {
        let c = c.clone();
        let url = proxy.url("/crm/v8/Leads?__fake=delay_ms=1500");
        tokio::spawn(async move { status_of(&c, &url).await })
    };
    let seen = zoho.control().crm_requests().len() + 1;
    assert!(
        zoho.control()
            .wait_for_crm_requests(seen, Duration::from_secs(5))
            .await,
        "the slow request is in flight"
    );

    // A valid file + SIGHUP: the new decision applies within 1 s.
    write_atomic(&proxy.config_path, &contacts_only);
    let signalled = Instant::now();
    proxy.signal("HUP");
    let applied = poll_until(Duration::from_secs(1), || async {
        status_of(&c, &contacts).await == 200
    })
    .await;
    eprintln!(
        "measured: SIGHUP reload applied after {:?}",
        signalled.elapsed()
    );
    assert!(
        applied,
        "Contacts allowed within 1 s of SIGHUP (took {:?}): {}",
        signalled.elapsed(),
        proxy.logs()
    );
    assert_eq!(
        status_of(&c, &leads).await,
        403,
        "Leads denied by the new policy"
    );
    assert_eq!(
        in_flight.await.expect("task"),
        200,
        "the request in flight finished under the old policy"
    );

    // A file change without a signal applies within 2 s.
    write_atomic(&proxy.config_path, &leads_only);
    let changed = Instant::now();
    let applied = poll_until(Duration::from_secs(2), || async {
        status_of(&c, &contacts).await == 403
    })
    .await;
    eprintln!(
        "measured: file change applied after {:?}",
        changed.elapsed()
    );
    assert!(
        applied,
        "the file change applied within 2 s (took {:?}): {}",
        changed.elapsed(),
        proxy.logs()
    );
    assert_eq!(status_of(&c, &leads).await, 200, "Leads allowed again");
    assert!(
        proxy
            .logs()
            .contains("configuration reloaded (file change)"),
        "the watcher did it, not a signal"
    );
    let text = scrape(&proxy).await;
    assert!(
        metric(
            &text,
            "zoho_proxy_config_reloads_total",
            &[("result", "ok")]
        )
        .unwrap_or(0.0)
            >= 2.0,
        "successful reloads are counted:\n{text}"
    );
}

#[tokio::test]
async fn reload_changes_the_log_level_and_names_settings_that_need_a_restart() {
    let zoho = Zoho::start().await;
    let quiet = zoho.config(LEADS_READ, "log:\n  level: warn\n");
    let proxy = RunningProxy::spawn(zoho.dir.path(), &quiet).await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");
    let c = client();
    assert_eq!(
        status_of(&c, &proxy.url("/crm/v8/Leads/554023000000235012")).await,
        200,
        "request at warn level"
    );

    let loud = zoho
        .config(LEADS_READ, "log:\n  level: info\n")
        .replace("listen: 127.0.0.1:0\nadmin", "listen: 127.0.0.1:1\nadmin");
    write_atomic(&proxy.config_path, &loud);
    proxy.signal("HUP");
    assert!(
        proxy
            .wait_for_output(Duration::from_secs(5), |t| t
                .contains("configuration reloaded"))
            .await,
        "the reload is logged once the level is info: {}",
        proxy.logs()
    );
    assert!(
        proxy
            .logs()
            .contains("listen changed; this takes effect only after a restart"),
        "a listen change is reported as needing a restart: {}",
        proxy.logs()
    );
    assert_eq!(
        status_of(&c, &proxy.url("/crm/v8/Leads/554023000000235013")).await,
        200,
        "request at info level"
    );
    assert!(
        proxy
            .wait_for_output(Duration::from_secs(5), |t| t.contains("554023000000235013"))
            .await,
        "the access line appears at info: {}",
        proxy.logs()
    );
    assert!(
        !proxy.logs().contains("554023000000235012"),
        "no access line was written at warn"
    );
    assert_eq!(
        status_of(&c, &proxy.url(A_LEAD)).await,
        200,
        "the old listener keeps serving after the listen change"
    );
}

/// A Kubernetes-style secret volume: `dir/..data -> ..<version>`, `dir/<key> -> ..data/<key>`.
struct SecretVolume {
    dir: PathBuf,
    version: u32,
}

impl SecretVolume {
    fn new(dir: PathBuf, files: &[(&str, &str)]) -> SecretVolume {
        std::fs::create_dir_all(&dir).expect("secret dir");
        let mut v = SecretVolume { dir, version: 0 };
        v.swap(files);
        for (key, _) in files {
            std::os::unix::fs::symlink(format!("..data/{key}"), v.dir.join(key))
                .expect("key symlink");
        }
        v
    }

    /// Writes a new version and flips `..data` to it with one rename, like the kubelet.
    fn swap(&mut self, files: &[(&str, &str)]) {
        self.version += 1;
        let name = format!("..2026_11_28_{:02}", self.version);
        let version_dir = self.dir.join(&name);
        std::fs::create_dir(&version_dir).expect("version dir");
        for (key, value) in files {
            std::fs::write(version_dir.join(key), format!("{value}\n")).expect("secret file");
        }
        let tmp = self.dir.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).expect("..data_tmp");
        std::fs::rename(&tmp, self.dir.join("..data")).expect("swap ..data");
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }
}

#[tokio::test]
async fn rotated_secret_files_are_used_by_the_next_token_request() {
    const NEW_REFRESH_TOKEN: &str = "1000.RTCANARY2fedcba9876543210.fedcba9876543210";
    const NEW_CLIENT_SECRET: &str = "CS-CANARY-rotated-fedcba987654";
    let zoho = Zoho::start().await;
    zoho.control().add_refresh_token(NEW_REFRESH_TOKEN);
    let (mut volume, config) = secret_file_config(&zoho);
    let proxy = RunningProxy::spawn(zoho.dir.path(), &config).await;
    assert!(
        proxy.wait_ready(Duration::from_secs(10)).await,
        "ready with secrets from files: {}",
        proxy.logs()
    );
    let c = client();
    let last_token_request = || {
        let requests = zoho.control().accounts_requests();
        let r = requests.last().expect("a token request was made");
        String::from_utf8_lossy(&r.body_prefix).into_owned() + r.path_and_query.as_str()
    };
    assert!(
        last_token_request().contains("RTCANARY0123456789"),
        "the first token request used the first refresh token"
    );

    // Rotate the refresh token (as Kubernetes updates a mounted Secret), revoke the old one.
    volume.swap(&[
        ("client_secret", CLIENT_SECRET),
        ("refresh_token", NEW_REFRESH_TOKEN),
    ]);
    assert!(
        proxy
            .wait_for_output(Duration::from_secs(5), |t| t
                .contains("credentials changed"))
            .await,
        "the rotation is noticed without a signal: {}",
        proxy.logs()
    );
    let mut seen_tokens = zoho.control().live_tokens();
    zoho.control().revoke_refresh_token(REFRESH_TOKEN);
    zoho.control().revoke_all_access_tokens();
    let before = zoho.control().token_requests();
    assert_eq!(
        status_of(&c, &proxy.url(A_LEAD)).await,
        200,
        "after INVALID_TOKEN the proxy refreshes with the rotated token and replays"
    );
    assert!(
        zoho.control().token_requests() > before,
        "a new token request was made"
    );
    let used = last_token_request();
    assert!(
        used.contains("RTCANARY2fedcba"),
        "the next token request used the rotated refresh token"
    );
    assert!(!used.contains("RTCANARY0123456789"), "and not the old one");

    // Rotate the client secret too: the next token request carries the new one.
    volume.swap(&[
        ("client_secret", NEW_CLIENT_SECRET),
        ("refresh_token", NEW_REFRESH_TOKEN),
    ]);
    let noticed = proxy
        .wait_for_output(Duration::from_secs(5), |t| {
            t.matches("credentials changed").count() >= 2
        })
        .await;
    assert!(
        noticed,
        "the client secret rotation is noticed: {}",
        proxy.logs()
    );
    seen_tokens.extend(zoho.control().live_tokens());
    zoho.control().revoke_all_access_tokens();
    let before = zoho.control().token_requests();
    let _ = status_of(&c, &proxy.url(A_LEAD)).await;
    assert!(
        zoho.control().token_requests() > before,
        "a new token request was made"
    );
    assert!(
        last_token_request().contains("CS-CANARY-rotated"),
        "the next token request used the rotated client secret"
    );
    seen_tokens.extend(zoho.control().live_tokens());
    proxy.assert_no_secrets(&seen_tokens);
    assert!(
        !proxy.logs().contains("RTCANARY2") && !proxy.logs().contains("rotated-fedcba"),
        "rotated secrets never logged"
    );
}

// ------------------------------------------------------------------------------------------------
// 4. Listeners.

#[tokio::test]
async fn a_unix_socket_listener_works_with_curl_and_has_mode_0660() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let zoho = Zoho::start().await;
    let socket = zoho.dir.path().join("proxy.sock");
    let config = zoho.config(LEADS_READ, "").replacen(
        "listen: 127.0.0.1:0\n",
        &format!("listen: unix:{}\n", socket.display()),
        1,
    );
    let mut proxy = RunningProxy::spawn(zoho.dir.path(), &config).await;
    assert_eq!(
        proxy.proxy_listen,
        format!("unix:{}", socket.display()),
        "the listener is announced as unix:PATH"
    );
    let meta = std::fs::symlink_metadata(&socket).expect("the socket file exists");
    assert!(meta.file_type().is_socket(), "it is a socket");
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o660,
        "created with mode 0660"
    );
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");

    let sock = socket.display().to_string();
    let (code, body) = curl(&["--unix-socket", &sock, &format!("http://localhost{A_LEAD}")]).await;
    assert_eq!(code, 200, "curl --unix-socket gets 200: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("Zoho's JSON through the socket");
    assert_eq!(
        v["data"][0]["id"], "554023000000235011",
        "the record came through"
    );
    let (code, _) = curl(&["--unix-socket", &sock, "http://localhost/crm/v8/Contacts"]).await;
    assert_eq!(code, 403, "the policy applies on the socket too");

    // A plain tokio UnixStream client as well.
    let mut s = tokio::net::UnixStream::connect(&socket)
        .await
        .expect("connect to the socket");
    s.write_all(
        format!("GET {A_LEAD} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    let out = String::from_utf8_lossy(&out);
    assert!(
        out.starts_with("HTTP/1.1 200"),
        "UnixStream client gets 200: {out}"
    );

    // A second start on the same socket fails and leaves the running proxy alone.
    let second_dir = zoho.dir.path().join("second");
    std::fs::create_dir_all(&second_dir).expect("dir");
    let second_config = second_dir.join("proxy.yaml");
    std::fs::write(&second_config, &config).expect("write config");
    let out = tokio::process::Command::new(binary())
        .arg("--config")
        .arg(&second_config)
        .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
        .env("TEST_REFRESH_TOKEN", REFRESH_TOKEN)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(20), out)
        .await
        .expect("the second start ends promptly")
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a socket in use is a runtime failure: {stderr}"
    );
    assert!(
        stderr.contains("another process is listening"),
        "the message says why: {stderr}"
    );
    let (code, _) = curl(&["--unix-socket", &sock, &format!("http://localhost{A_LEAD}")]).await;
    assert_eq!(code, 200, "the first proxy still owns its socket");

    proxy.signal("TERM");
    let exit = proxy
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits");
    assert_eq!(exit.code(), Some(0), "clean exit");
    assert!(!socket.exists(), "the socket file is removed on exit");

    // A stale socket file (its process is gone) is replaced.
    let stale = std::os::unix::net::UnixListener::bind(&socket).expect("stale socket");
    drop(stale);
    assert!(socket.exists(), "a stale socket file is left behind");
    let proxy = RunningProxy::spawn(zoho.dir.path(), &config).await;
    assert!(
        proxy.wait_ready(Duration::from_secs(10)).await,
        "ready over a stale socket file"
    );
    let (code, _) = curl(&["--unix-socket", &sock, &format!("http://localhost{A_LEAD}")]).await;
    assert_eq!(
        code, 200,
        "the stale socket file was replaced by a live one"
    );
}

#[tokio::test]
async fn a_non_loopback_listen_needs_allow_remote_clients() {
    let zoho = Zoho::start().await;
    let base = zoho.config(LEADS_READ, "");
    let cases = [
        (
            "listen 0.0.0.0",
            base.replacen("listen: 127.0.0.1:0", "listen: 0.0.0.0:0", 1),
            "0.0.0.0:0",
        ),
        (
            "listen [::]",
            base.replacen("listen: 127.0.0.1:0", "listen: '[::]:0'", 1),
            "[::]:0",
        ),
        (
            "listen 192.0.2.1",
            base.replacen("listen: 127.0.0.1:0", "listen: 192.0.2.1:8080", 1),
            "192.0.2.1:8080",
        ),
    ];
    for (name, yaml, addr) in cases {
        let path = zoho.dir.path().join("remote.yaml");
        std::fs::write(&path, &yaml).expect("write config");
        let out = tokio::process::Command::new(binary())
            .arg("--config")
            .arg(&path)
            .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
            .env("TEST_REFRESH_TOKEN", REFRESH_TOKEN)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(20), out)
            .await
            .expect("exits promptly")
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{name}: exit status 2");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("allow_remote_clients"),
            "{name}: the message names the opt-in: {stderr}"
        );
        assert!(
            stderr.contains("not a loopback address"),
            "{name}: the message says why: {stderr}"
        );
        assert!(
            stderr.contains(addr),
            "{name}: the message names the address: {stderr}"
        );
        assert!(
            stderr.contains("credentials"),
            "{name}: the message explains the danger: {stderr}"
        );
        assert!(
            out.stdout.is_empty(),
            "{name}: nothing was bound or announced"
        );
    }
    // With the opt-in it starts.
    let opted = base.replacen(
        "listen: 127.0.0.1:0",
        "listen: 0.0.0.0:0\nallow_remote_clients: true",
        1,
    );
    let proxy = RunningProxy::spawn(zoho.dir.path(), &opted).await;
    assert!(
        proxy.proxy_listen.starts_with("0.0.0.0:"),
        "bound all addresses with the opt-in: {}",
        proxy.proxy_listen
    );
}

// ------------------------------------------------------------------------------------------------
// 5. Logs.

/// Header values a client might send that must never be logged.
const CLIENT_AUTH: &str = "Zoho-oauthtoken CLIENTAUTH-CANARY-5f4e3d2c1b";
const CLIENT_COOKIE: &str = "sid=COOKIE-CANARY-9a8b7c6d5e";
const CLIENT_PROXY_AUTH: &str = "Basic UFJPWFlBVVRILUNBTkFSWQ==";

/// Drives success, replay after INVALID_TOKEN, token errors, denials and bad requests, all with
/// client credentials attached; returns every access token the fake issued on the way.
async fn leak_scenarios(zoho: &Zoho, proxy: &RunningProxy) -> Vec<String> {
    let c = client();
    let with_creds = |rb: reqwest::RequestBuilder| {
        rb.header("Authorization", CLIENT_AUTH)
            .header("Cookie", CLIENT_COOKIE)
            .header("Proxy-Authorization", CLIENT_PROXY_AUTH)
    };
    assert!(
        proxy.wait_ready(Duration::from_secs(10)).await,
        "ready: {}",
        proxy.logs()
    );
    let mut tokens = zoho.control().live_tokens();
    // Success, read and write.
    let r = with_creds(c.get(proxy.url(A_LEAD)))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200, "allowed GET");
    let r = with_creds(c.post(proxy.url("/crm/v8/Leads")))
        .header("content-type", "application/json")
        .body(r#"{"data":[{"Last_Name":"Lovelace"}]}"#)
        .send()
        .await
        .expect("POST");
    assert!(r.status().is_success(), "allowed POST: {}", r.status());
    // Denied and bad requests.
    let r = with_creds(c.get(proxy.url("/crm/v8/Contacts")))
        .send()
        .await
        .expect("denied");
    assert_eq!(r.status(), 403, "denied");
    let bad = format!(
        "GET /crm/v8/Leads/%2e%2e/Deals HTTP/1.1\r\nHost: localhost\r\nAuthorization: {CLIENT_AUTH}\r\nCookie: {CLIENT_COOKIE}\r\nConnection: close\r\n\r\n"
    );
    let answer = raw_response(proxy.proxy, bad.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(status_line_code(&answer), 400, "bad path: {answer}");
    let broken = format!("GET /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nAuthorization: {CLIENT_AUTH}\r\nCookie: {CLIENT_COOKIE}\r\nBad Header\r\n\r\n");
    let answer = raw_response(proxy.proxy, broken.as_bytes(), Duration::from_secs(5)).await;
    assert!(
        answer.is_empty() || status_line_code(&answer) == 400,
        "malformed head: {answer}"
    );
    // Zoho rejects the token: one shared refresh, one replay.
    zoho.control().revoke_all_access_tokens();
    let r = with_creds(c.get(proxy.url(A_LEAD)))
        .send()
        .await
        .expect("replay");
    assert_eq!(r.status(), 200, "replayed after INVALID_TOKEN");
    tokens.extend(zoho.control().live_tokens());
    // Zoho sends its own error responses.
    let r = with_creds(c.get(proxy.url("/crm/v8/Leads?__fake=scope_mismatch")))
        .send()
        .await
        .expect("scope mismatch");
    assert_eq!(r.status(), 401, "Zoho's 401 passes through");
    // Token errors: the refresh token is refused, the next token request fails.
    zoho.control()
        .set_token_behavior(TokenBehavior::Error("invalid_code".into()));
    zoho.control().revoke_all_access_tokens();
    let r = with_creds(c.get(proxy.url(A_LEAD)))
        .send()
        .await
        .expect("token error");
    assert!(
        !r.status().is_success(),
        "no token after invalid_code: {}",
        r.status()
    );
    // Admin endpoints.
    for path in [
        "/status",
        "/metrics",
        "/readyz",
        "/oauth/start?account=default",
    ] {
        let _ = c.get(proxy.admin_url(path)).send().await.expect("admin");
    }
    tokens.extend(zoho.control().live_tokens());
    tokens.sort();
    tokens.dedup();
    assert!(
        tokens.len() >= 2,
        "at least two access tokens were issued: {}",
        tokens.len()
    );
    tokens
}

fn assert_no_client_credentials(logs: &str, run: &str) {
    for needle in [
        "CLIENTAUTH-CANARY",
        "COOKIE-CANARY",
        "UFJPWFlBVVRILUNBTkFSWQ",
        "Zoho-oauthtoken",
    ] {
        assert!(
            !logs.contains(needle),
            "{run}: `{needle}` leaked into the output:\n{logs}"
        );
    }
}

#[tokio::test]
async fn a_trace_level_run_shows_no_secret_anywhere() {
    for (run, extra, env) in [
        ("log.level: trace", "log:\n  level: trace\n", vec![]),
        (
            "RUST_LOG=trace",
            "log:\n  level: info\n",
            vec![("RUST_LOG", "trace")],
        ),
    ] {
        let zoho = Zoho::start().await;
        let mut proxy =
            RunningProxy::spawn_with_env(zoho.dir.path(), &zoho.config(LEADS_ALL, extra), &env)
                .await;
        let tokens = leak_scenarios(&zoho, &proxy).await;
        proxy.signal("TERM");
        let exit = proxy
            .wait_exit(Duration::from_secs(15))
            .await
            .expect("exits");
        assert_eq!(
            exit.code(),
            Some(0),
            "{run}: clean exit flushes every log line"
        );
        let logs = proxy.logs();
        assert!(
            logs.contains("DEBUG"),
            "{run}: the run really logged below info:\n{logs}"
        );
        assert!(
            logs.contains("decision=\"denied\"") && logs.contains("INVALID_TOKEN"),
            "{run}: the scenarios ran:\n{logs}"
        );
        proxy.assert_no_secrets(&tokens);
        assert_no_client_credentials(&logs, run);
    }
}

#[tokio::test]
async fn json_logs_are_one_object_per_line_with_an_access_line_per_request() {
    let zoho = Zoho::start().await;
    let mut proxy = RunningProxy::spawn(
        zoho.dir.path(),
        &zoho.config(LEADS_READ, "log:\n  format: json\n  level: debug\n"),
    )
    .await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");
    let c = client();
    assert_eq!(status_of(&c, &proxy.url(A_LEAD)).await, 200, "allowed");
    assert_eq!(
        status_of(&c, &proxy.url("/crm/v8/Contacts")).await,
        403,
        "denied"
    );
    let r = c
        .get(proxy.url("/crm/v8/Leads?__fake=download&bytes=100000"))
        .header("Cookie", CLIENT_COOKIE)
        .send()
        .await
        .expect("download");
    assert_eq!(
        r.bytes().await.expect("body").len(),
        100_000,
        "download complete"
    );
    proxy.signal("TERM");
    assert_eq!(
        proxy
            .wait_exit(Duration::from_secs(10))
            .await
            .and_then(|e| e.code()),
        Some(0),
        "clean exit"
    );
    // The output pumps may still be reading what the process wrote just before it exited.
    proxy
        .wait_for_output(Duration::from_secs(5), |out| {
            out.matches("\"target\":\"access\"").count() >= 3
        })
        .await;

    let logs = proxy.logs();
    let mut access = Vec::new();
    // Every line, the `listening` announcements on stdout included, is JSON.
    for line in logs.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {line}"));
        assert!(v.is_object(), "each line is an object: {line}");
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "level and timestamp: {line}"
        );
        if v["target"] == "access" {
            access.push(v);
        }
    }
    assert_eq!(access.len(), 3, "one access line per request:\n{logs}");
    let ok = &access[0];
    assert_eq!(ok["method"], "GET", "method: {ok}");
    assert_eq!(ok["path"], A_LEAD, "path: {ok}");
    assert_eq!(ok["decision"], "allowed", "decision: {ok}");
    assert_eq!(
        ok["scope"], "ZohoCRM.modules.leads.READ",
        "required scope: {ok}"
    );
    assert_eq!(ok["status"], 200, "status: {ok}");
    assert!(ok["upstream_ms"].is_u64(), "upstream latency: {ok}");
    assert!(ok["bytes"].as_u64().unwrap_or(0) > 0, "bytes: {ok}");
    assert_eq!(
        ok["complete"], true,
        "a fully sent Content-Length body is complete: {ok}"
    );
    let denied = &access[1];
    assert_eq!(denied["decision"], "denied", "denied decision: {denied}");
    assert_eq!(denied["status"], 403, "denied status: {denied}");
    assert_eq!(
        denied["scope"], "ZohoCRM.modules.contacts.READ",
        "denied scope: {denied}"
    );
    assert!(
        denied["bytes"].as_u64().unwrap_or(0) > 0,
        "the error body's bytes are counted: {denied}"
    );
    assert!(
        denied["upstream_ms"].is_null(),
        "nothing was sent upstream: {denied}"
    );
    let download = &access[2];
    assert_eq!(
        download["bytes"], 100_000,
        "streamed bytes counted: {download}"
    );
    assert_eq!(download["complete"], true, "download complete: {download}");
    assert_no_client_credentials(&logs, "json");
}

// ------------------------------------------------------------------------------------------------
// 6. Limits.

#[tokio::test]
async fn a_body_over_max_body_gets_413_while_streaming_with_flat_memory() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(
        zoho.dir.path(),
        &zoho.config(LEADS_ALL, "limits:\n  max_body: 20MiB\n"),
    )
    .await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");
    let (_, rss_before) = proxy.memory_kib();

    // Declared too large: refused before any byte of the body is read.
    let head = "POST /crm/v8/Leads?__fake=upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nContent-Length: 2147483648\r\n\r\n";
    let answer = raw_response(proxy.proxy, head.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(
        status_line_code(&answer),
        413,
        "a declared 2 GiB body is refused at once: {answer}"
    );
    assert!(
        answer.contains("PROXY_BODY_TOO_LARGE"),
        "with the proxy's code: {answer}"
    );

    // Chunked, no length: 2 GiB streamed from here, cut at 20 MiB while streaming.
    let stream = TcpStream::connect(proxy.proxy).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let mut reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return out,
                Ok(n) => {
                    out.extend_from_slice(&buf[..n]);
                    if out.windows(4).any(|w| w == b"\r\n\r\n") {
                        return out;
                    }
                }
            }
        }
    });
    wr.write_all(b"POST /crm/v8/Leads?__fake=upload HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        .await
        .expect("head");
    let chunk_len = 1usize << 20;
    let mut chunk = format!("{chunk_len:x}\r\n").into_bytes();
    chunk.extend(std::iter::repeat_n(b'z', chunk_len));
    chunk.extend_from_slice(b"\r\n");
    let total: u64 = 2 << 30;
    let mut sent = 0u64;
    let started = Instant::now();
    let answer = loop {
        if sent >= total {
            break tokio::time::timeout(Duration::from_secs(30), &mut reader)
                .await
                .expect("answer")
                .expect("reader");
        }
        tokio::select! {
            r = &mut reader => break r.expect("reader"),
            w = wr.write_all(&chunk) => {
                if w.is_err() {
                    break tokio::time::timeout(Duration::from_secs(10), &mut reader).await.expect("answer").expect("reader");
                }
                sent += chunk_len as u64;
            }
        }
    };
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert_eq!(
        status_line_code(&answer),
        413,
        "413 while streaming: {answer}"
    );
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-zoho-proxy-error: proxy_body_too_large"),
        "marked as the proxy's: {answer}"
    );
    assert!(
        sent < 200 << 20,
        "the proxy answered long before 2 GiB (client had sent {} MiB)",
        sent >> 20
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "answered promptly"
    );
    let (peak, _) = proxy.memory_kib();
    let grew = peak.saturating_sub(rss_before);
    eprintln!(
        "measured: 413 after {} MiB streamed; RSS before {rss_before} KiB, peak {peak} KiB (+{grew} KiB)",
        sent >> 20
    );
    assert!(
        grew < 30 * 1024,
        "memory stayed flat: peak grew {grew} KiB over {} KiB",
        rss_before
    );
    let c = client();
    assert_eq!(
        status_of(&c, &proxy.url(A_LEAD)).await,
        200,
        "the proxy keeps serving"
    );
}

#[tokio::test]
async fn slow_clients_are_cut_at_the_header_and_body_timeouts_while_others_are_served() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(
        zoho.dir.path(),
        &zoho.config(
            LEADS_ALL,
            "limits:\n  header_timeout: 1s\n  body_idle_timeout: 1s\n",
        ),
    )
    .await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");
    let addr = proxy.proxy;

    // Slowloris: 8 connections trickling a header byte every 100 ms, 2 that send nothing.
    let mut slow = Vec::new();
    for i in 0..10 {
        slow.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let started = Instant::now();
            if i < 8 {
                s.write_all(b"GET /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
                    .await
                    .expect("head start");
            }
            let mut buf = [0u8; 512];
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    r = s.read(&mut buf) => match r {
                        Ok(0) | Err(_) => return Some(started.elapsed()),
                        Ok(_) => {}
                    },
                    _ = tick.tick() => {
                        if started.elapsed() > Duration::from_secs(8) {
                            return None;
                        }
                        if i < 8 && s.write_all(b"a").await.is_err() {
                            return Some(started.elapsed());
                        }
                    }
                }
            }
        }));
    }
    // Meanwhile ordinary requests are served quickly.
    let c = client();
    let end = Instant::now() + Duration::from_millis(1500);
    let mut served = 0;
    while Instant::now() < end {
        let t = Instant::now();
        assert_eq!(
            status_of(&c, &proxy.url(A_LEAD)).await,
            200,
            "ordinary requests are served during the attack"
        );
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "and quickly ({:?})",
            t.elapsed()
        );
        served += 1;
    }
    assert!(
        served >= 5,
        "several requests served during the attack ({served})"
    );
    for (i, task) in slow.into_iter().enumerate() {
        let cut = task.await.expect("slow task");
        let kind = if i < 8 { "trickling" } else { "silent" };
        let cut = cut.unwrap_or_else(|| panic!("{kind} client {i} was never cut"));
        eprintln!("measured: {kind} client {i} cut after {cut:?}");
        assert!(
            cut >= Duration::from_millis(800) && cut < Duration::from_secs(4),
            "{kind} client {i} cut at the 1 s header timeout, got {cut:?}"
        );
    }

    // A stalled body is cut at body_idle_timeout with 408.
    let started = Instant::now();
    let answer = raw_response(
        addr,
        b"POST /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"data\"",
        Duration::from_secs(8),
    )
    .await;
    assert_eq!(
        status_line_code(&answer),
        408,
        "a stalled body gets 408: {answer}"
    );
    assert!(
        answer.contains("PROXY_BODY_TIMEOUT"),
        "with the proxy's code: {answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "after about body_idle_timeout ({:?})",
        started.elapsed()
    );
}

#[tokio::test]
async fn request_timeout_answers_504() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(
        zoho.dir.path(),
        &zoho.config(LEADS_READ, "limits:\n  request_timeout: 1s\n"),
    )
    .await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");
    let started = Instant::now();
    let r = client()
        .get(proxy.url("/crm/v8/Leads?__fake=delay_ms=3000"))
        .send()
        .await
        .expect("send");
    let took = started.elapsed();
    assert_eq!(r.status(), 504, "a slow upstream gives 504");
    assert_eq!(
        r.headers()["x-zoho-proxy-error"],
        "PROXY_UPSTREAM_TIMEOUT",
        "marked as the proxy's"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_millis(2500),
        "after limits.request_timeout, took {took:?}"
    );
    assert_eq!(
        status_of(&client(), &proxy.url("/crm/v8/Leads?__fake=delay_ms=200")).await,
        200,
        "faster answers still pass"
    );
}

#[tokio::test]
async fn max_connections_sheds_extra_connections() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(
        zoho.dir.path(),
        &zoho.config(
            LEADS_READ,
            "limits:\n  max_connections: 2\n  header_timeout: 20s\n",
        ),
    )
    .await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");
    let mut held = vec![
        TcpStream::connect(proxy.proxy).await.expect("first"),
        TcpStream::connect(proxy.proxy).await.expect("second"),
    ];
    let counted = poll_until(Duration::from_secs(5), || async {
        metric(
            &scrape(&proxy).await,
            "zoho_proxy_open_connections",
            &[("listener", "proxy")],
        ) == Some(2.0)
    })
    .await;
    assert!(counted, "two connections are open");
    let mut third = TcpStream::connect(proxy.proxy)
        .await
        .expect("the kernel accepts the third");
    assert!(
        closed_within(&mut third, Duration::from_secs(2)).await,
        "the third connection is closed at once"
    );
    let text = scrape(&proxy).await;
    assert!(
        metric(&text, "zoho_proxy_connections_shed_total", &[]).unwrap_or(0.0) >= 1.0,
        "the shed connection is counted:\n{text}"
    );
    // A held connection is still served, and freeing one lets a new one in.
    held[0]
        .write_all(
            format!("GET {A_LEAD} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), held[0].read_to_end(&mut out)).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "a held connection is served"
    );
    held.remove(0);
    let c = client();
    let served = poll_until(Duration::from_secs(5), || async {
        status_of(&c, &proxy.url(A_LEAD)).await == 200
    })
    .await;
    assert!(served, "a new connection is served once a slot is free");
}

#[tokio::test]
async fn upstream_concurrency_caps_requests_to_zoho_and_queued_ones_get_503() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(
        zoho.dir.path(),
        &zoho.config(
            LEADS_READ,
            "limits:\n  upstream_concurrency: 2\n  upstream_queue_timeout: 500ms\n",
        ),
    )
    .await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");
    // The proxy's own start-up read of Zoho's costs (`__apis`, issue 38) may open a connection of
    // its own: count the client requests' connections from after it.
    assert!(
        poll_until(Duration::from_secs(10), || async {
            let status = proxy.admin_text("/status").await;
            !zoho.control().own_requests().is_empty()
                && (status.contains("\"zoho\"") || status.contains("\"note\""))
        })
        .await,
        "the proxy's own start-up read of Zoho's costs ended (its slot is free again)"
    );
    let own_connections = zoho.control().crm_connections();
    let mut tasks = Vec::new();
    for _ in 0..5 {
        let url = proxy.url("/crm/v8/Leads?__fake=delay_ms=2500");
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let r = client().get(url).send().await.expect("send");
            let code = r
                .headers()
                .get("x-zoho-proxy-error")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            let retry = r.headers().contains_key("retry-after");
            (r.status().as_u16(), code, retry, started.elapsed())
        }));
    }
    let mut ok = 0;
    let mut busy = 0;
    for t in tasks {
        let (status, code, retry, took) = t.await.expect("task");
        match status {
            200 => ok += 1,
            503 => {
                busy += 1;
                assert_eq!(code, "PROXY_UPSTREAM_BUSY", "503 names the queue limit");
                assert!(retry, "503 carries Retry-After");
                assert!(
                    took >= Duration::from_millis(450) && took < Duration::from_millis(2000),
                    "503 after the 500 ms queue deadline, took {took:?}"
                );
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        (ok, busy),
        (2, 3),
        "2 requests in flight to Zoho, 3 shed after queueing"
    );
    assert_eq!(
        zoho.control().crm_requests().len(),
        2,
        "Zoho saw only the 2 admitted requests"
    );
    let connections = zoho.control().crm_connections() - own_connections;
    assert!(
        connections <= 2,
        "at most 2 upstream connections for the 5 requests ({connections})"
    );
    assert_eq!(
        status_of(&client(), &proxy.url(A_LEAD)).await,
        200,
        "slots are released afterwards"
    );
}

// ------------------------------------------------------------------------------------------------
// 7. The shipped Kubernetes ConfigMaps load with the real parser.

/// Every ConfigMap key ending in `.yaml` under examples/kubernetes, with its file.
fn shipped_proxy_configs() -> Vec<(String, String)> {
    use serde::Deserialize;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubernetes");
    let mut files = Vec::new();
    for dir in [root.clone(), root.join("fleet")] {
        for entry in std::fs::read_dir(&dir).expect("examples dir").flatten() {
            if entry.path().extension().is_some_and(|e| e == "yaml") {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read manifest");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v = serde_yaml::Value::deserialize(doc).expect("manifest YAML");
            if v["kind"] != "ConfigMap" {
                continue;
            }
            if let Some(data) = v["data"].as_mapping() {
                for (k, body) in data {
                    if let (Some(k), Some(body)) = (k.as_str(), body.as_str()) {
                        if k.ends_with(".yaml") {
                            out.push((format!("{} ({k})", file.display()), body.to_string()));
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn shipped_configmaps_load_with_the_real_config_parser() {
    let configs = shipped_proxy_configs();
    assert!(
        configs.len() >= 2,
        "both the sidecar and the fleet ConfigMaps were found: {configs:?}"
    );
    for (name, text) in configs {
        // Absolute secret-file paths (mounted Secrets in the pod) become files in a temp dir.
        let dir = tempfile::tempdir().expect("temp dir");
        let mut local = text.clone();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once(':') else {
                continue;
            };
            let value = value.trim();
            if key.ends_with("_file") && value.starts_with('/') {
                let stand_in = dir.path().join(value.trim_start_matches('/'));
                std::fs::create_dir_all(stand_in.parent().expect("parent")).expect("mkdir");
                std::fs::write(&stand_in, "placeholder-secret\n").expect("write stand-in");
                local = local.replace(value, &stand_in.display().to_string());
            }
        }
        // `${VAR}`s come from the container's environment (tests/manifests.rs checks that the
        // Deployment sets each one); any value will do here.
        let env = |var: &str| Some(format!("placeholder-{var}"));
        let config = zoho_auth_proxy::config::Config::from_yaml_str_with(&local, &env, dir.path())
            .unwrap_or_else(|e| panic!("{name}: the shipped proxy.yaml does not load: {e}"));
        assert!(!config.accounts.is_empty(), "{name}: at least one account");
        for a in &config.accounts {
            assert!(
                !a.allow.is_empty(),
                "{name}: account {} has an allowlist",
                a.name
            );
        }
        assert!(
            matches!(&config.listen, zoho_auth_proxy::config::ListenAddr::Tcp(a) if a.ip().is_loopback())
                || matches!(config.listen, zoho_auth_proxy::config::ListenAddr::Unix(_))
                || config.allow_remote_clients,
            "{name}: the proxy listener is loopback or a socket"
        );
        assert!(
            config.shutdown_grace + config.shutdown_delay < Duration::from_secs(30),
            "{name}: grace + delay stays under the pods' terminationGracePeriodSeconds"
        );
        let watched: Vec<String> = config
            .watched_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        for line in text.lines().filter(|l| l.contains("_file:")) {
            let value = line.split_once(':').map(|(_, v)| v.trim()).unwrap_or("");
            if value.starts_with("/run/secrets") && !line.contains("redis_password_file") {
                let stand_in = dir
                    .path()
                    .join(value.trim_start_matches('/'))
                    .display()
                    .to_string();
                assert!(
                    watched.contains(&stand_in),
                    "{name}: {value} is watched for rotation: {watched:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn shrinking_max_connections_on_reload_applies_even_below_the_connections_open() {
    let zoho = Zoho::start().await;
    let roomy = zoho.config(
        LEADS_READ,
        "limits:\n  max_connections: 3\n  header_timeout: 30s\n",
    );
    let tight = zoho.config(
        LEADS_READ,
        "limits:\n  max_connections: 1\n  header_timeout: 30s\n",
    );
    let proxy = RunningProxy::spawn(zoho.dir.path(), &roomy).await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");
    let open = |n: f64| {
        let proxy = &proxy;
        move || async move {
            metric(
                &scrape(proxy).await,
                "zoho_proxy_open_connections",
                &[("listener", "proxy")],
            ) == Some(n)
        }
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(proxy.proxy).await.expect("connect"));
    }
    assert!(
        poll_until(Duration::from_secs(5), open(3.0)).await,
        "3 connections open"
    );

    // Shrink to 1 while 3 are open: no slot is free to take away yet.
    write_atomic(&proxy.config_path, &tight);
    proxy.signal("HUP");
    assert!(
        proxy
            .wait_for_output(Duration::from_secs(5), |t| t
                .contains("configuration reloaded"))
            .await,
        "reloaded: {}",
        proxy.logs()
    );
    let mut extra = TcpStream::connect(proxy.proxy).await.expect("connect");
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)).await,
        "over the new cap: a new connection is shed"
    );
    held.clear();
    assert!(
        poll_until(Duration::from_secs(5), open(0.0)).await,
        "all connections closed"
    );

    // Now the cap is 1: one connection is served, a second one is shed.
    let mut first = TcpStream::connect(proxy.proxy).await.expect("connect");
    assert!(
        poll_until(Duration::from_secs(5), open(1.0)).await,
        "the first connection is admitted"
    );
    let mut second = TcpStream::connect(proxy.proxy).await.expect("connect");
    assert!(
        closed_within(&mut second, Duration::from_secs(2)).await,
        "a second connection is shed: the cap shrank to 1 once the old connections closed"
    );
    first
        .write_all(
            format!("GET {A_LEAD} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), first.read_to_end(&mut out)).await;
    assert!(
        String::from_utf8_lossy(&out).starts_with("HTTP/1.1 200"),
        "the admitted connection is served"
    );
}

#[tokio::test]
async fn a_secret_rotated_after_zoho_refused_the_old_one_is_tried_at_once() {
    const NEW_REFRESH_TOKEN: &str = "1000.RTCANARY3aaaabbbbccccdddd.0123456789abcdef";
    let zoho = Zoho::start().await;
    let (mut volume, config) = secret_file_config(&zoho);
    let proxy = RunningProxy::spawn(zoho.dir.path(), &config).await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");
    let mut seen_tokens = zoho.control().live_tokens();

    // The refresh token is revoked (Connected Apps, say): Zoho refuses it, a permanent failure.
    zoho.control().revoke_refresh_token(REFRESH_TOKEN);
    zoho.control().revoke_all_access_tokens();
    let c = client();
    assert_ne!(
        status_of(&c, &proxy.url(A_LEAD)).await,
        200,
        "no token after the revocation"
    );
    assert!(
        proxy
            .wait_for_output(Duration::from_secs(5), |t| t.contains("invalid_code"))
            .await,
        "the refusal is logged: {}",
        proxy.logs()
    );
    let (code, body) = curl(&[&proxy.admin_url("/readyz")]).await;
    assert_eq!(code, 503, "not ready after the refusal: {body}");

    // The operator updates the Secret: the new refresh token is used within seconds, not minutes.
    zoho.control().add_refresh_token(NEW_REFRESH_TOKEN);
    let rotated = Instant::now();
    volume.swap(&[
        ("client_secret", CLIENT_SECRET),
        ("refresh_token", NEW_REFRESH_TOKEN),
    ]);
    assert!(
        proxy.wait_ready(Duration::from_secs(5)).await,
        "ready again within 5 s of the rotation: {}",
        proxy.logs()
    );
    eprintln!("ready {:?} after the rotation", rotated.elapsed());
    assert_eq!(
        status_of(&c, &proxy.url(A_LEAD)).await,
        200,
        "serving with the rotated refresh token"
    );
    seen_tokens.extend(zoho.control().live_tokens());
    proxy.assert_no_secrets(&seen_tokens);
}

/// A Kubernetes-style secret volume with the canary credentials, and a config that reads both
/// secrets from it (`client_secret_file`, `refresh_token_file`).
fn secret_file_config(zoho: &Zoho) -> (SecretVolume, String) {
    let volume = SecretVolume::new(
        zoho.dir.path().join("secrets"),
        &[
            ("client_secret", CLIENT_SECRET),
            ("refresh_token", REFRESH_TOKEN),
        ],
    );
    let config = zoho
        .config(LEADS_READ, "")
        .replace(
            "client_secret: ${TEST_CLIENT_SECRET}",
            &format!(
                "client_secret_file: {}",
                volume.path("client_secret").display()
            ),
        )
        .replace(
            "refresh_token: ${TEST_REFRESH_TOKEN}",
            &format!(
                "refresh_token_file: {}",
                volume.path("refresh_token").display()
            ),
        );
    (volume, config)
}

/// A client that stops reading a large response is disconnected once its writes have waited
/// `body_idle_timeout`, which ends the upstream exchange and frees the upstream slot: with one
/// slot, the next request is served instead of queueing behind the stalled one for good.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_and_frees_its_upstream_slot() {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn(
        zoho.dir.path(),
        &zoho.config(
            LEADS_READ,
            "limits:\n  upstream_concurrency: 1\n  upstream_queue_timeout: 60s\n  body_idle_timeout: 1s\n",
        ),
    )
    .await;
    assert!(proxy.wait_ready(Duration::from_secs(10)).await, "ready");
    let addr = proxy.proxy;
    const SIZE: usize = 512 << 20;
    let mut stalled = TcpStream::connect(addr).await.expect("connect");
    stalled
        .write_all(
            format!(
                "GET /crm/v8/Leads?__fake=download&bytes={SIZE} HTTP/1.1\r\nHost: localhost\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("send the request, then never read");
    assert!(
        poll_until(Duration::from_secs(10), || async {
            zoho.control().crm_requests().len() == 1
        })
        .await,
        "the stalled download reached Zoho and holds the only upstream slot"
    );

    let started = Instant::now();
    let r = client()
        .get(proxy.url("/crm/v8/Leads"))
        .send()
        .await
        .expect("send");
    let took = started.elapsed();
    assert_eq!(
        r.status(),
        200,
        "the slot was freed: {:?}",
        r.text().await.unwrap_or_default()
    );
    assert!(
        took < Duration::from_secs(20),
        "served once the stalled client was cut (took {took:?})"
    );
    assert_eq!(zoho.control().crm_requests().len(), 2);

    // The proxy closed the stalled connection: what it holds ends well short of the body.
    let mut buf = vec![0u8; 1 << 20];
    let mut received = 0usize;
    let drained = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match stalled.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
    })
    .await;
    assert!(drained.is_ok(), "the stalled connection was closed");
    assert!(
        received < SIZE,
        "the response was cut ({received} of {SIZE} bytes)"
    );
}
