//! Who may use the proxy (catalogue section K): the Host rule on both listeners, browser markers,
//! the SSRF header, client identities by key and by Unix-socket peer uid, per-client allow lists,
//! key rotation on reload, bad `clients:` configs, and a real headless Chromium whose page on
//! another loopback origin fires cross-site requests at the proxy.
//!
//! Every case runs the real binary against the in-process fake Zoho over TLS; "no forward" is
//! checked on the fake's own request log.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LEADS: &str = "/crm/v8/Leads";
const ALLOW: &[&str] = &["ZohoCRM.modules.leads.ALL", "ZohoCRM.modules.contacts.READ"];
const KEY_SYNC: &str = "sync-key-0123456789abcdef0123456789abcdef";
const KEY_REPORT: &str = "report-key-0123456789abcdef0123456789abcdef";
const KEY_REPORT_NEW: &str = "report-key-rotated-0123456789abcdef01234567";
const JSON_LEAD: &str = r#"{"data":[{"Last_Name":"x"}]}"#;

/// A raw HTTP/1.1 exchange: status, headers (lower-cased names) and body.
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn code(&self) -> &str {
        self.header("x-zoho-proxy-error").unwrap_or("")
    }
}

fn parse(bytes: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

/// Sends one request with exactly these header lines (plus `Connection: close`).
async fn send(
    addr: std::net::SocketAddr,
    request_line: &str,
    headers: &[&str],
    body: &str,
) -> Answer {
    let mut text = format!("{request_line}\r\n");
    for h in headers {
        text.push_str(h);
        text.push_str("\r\n");
    }
    if !body.is_empty() {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("Connection: close\r\n\r\n");
    text.push_str(body);
    parse(&raw(addr, text.as_bytes(), Duration::from_secs(10)).await)
}

/// A JSON lead POST with `host` and the `extra` header lines.
async fn post_lead(addr: std::net::SocketAddr, host: &str, extra: &[&str]) -> Answer {
    let mut headers = vec![host];
    headers.extend_from_slice(extra);
    send(addr, &format!("POST {LEADS} HTTP/1.1"), &headers, JSON_LEAD).await
}

async fn get(addr: std::net::SocketAddr, host: &str, extra: &[&str]) -> Answer {
    let mut headers = vec![format!("Host: {host}")];
    headers.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    send(addr, &format!("GET {LEADS} HTTP/1.1"), &refs, "").await
}

/// `a` is a refusal with this status and code whose message names `fix`.
fn assert_refusal(a: &Answer, status: u16, code: &str, fix: &str) {
    assert_eq!((a.status, a.code()), (status, code), "{}", a.body);
    assert!(a.body.contains(fix), "the body names the fix: {}", a.body);
}

/// `a` is a forwarded request's answer (the fake Zoho's 200 or 201).
fn assert_served(a: &Answer, what: &str) {
    assert!(
        a.status == 201 || a.status == 200,
        "{what} is served: {} {}",
        a.status,
        a.body
    );
}

/// The value of one Prometheus sample, 0 when absent.
fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn start(extra: &str) -> (Zoho, RunningProxy) {
    let zoho = Zoho::start().await;
    let config = zoho.config(ALLOW, extra);
    let proxy = RunningProxy::spawn(zoho.dir.path(), &config).await;
    assert!(
        proxy.wait_ready(Duration::from_secs(20)).await,
        "ready: {}",
        proxy.logs()
    );
    (zoho, proxy)
}

#[tokio::test]
async fn foreign_host_names_are_refused_and_local_forms_served() {
    let (zoho, proxy) = start("accept_hosts: [crm-proxy.internal]\n").await;
    let fake = zoho.control();
    fake.clear_crm_requests();
    let served = [
        "localhost:8080",
        "localhost",
        "LOCALHOST:8080",
        "127.0.0.1:8080",
        "127.0.0.2:8080",
        "[::1]:8080",
        "[::ffff:127.0.0.1]:8080",
        "10.42.0.17:8080",
        "crm-proxy.internal:8080",
        "CRM-PROXY.INTERNAL",
    ];
    for host in served {
        let a = get(proxy.proxy, host, &[]).await;
        assert_eq!(a.status, 200, "Host {host} is served: {}", a.body);
    }
    assert_eq!(
        fake.crm_requests().len(),
        served.len(),
        "each served Host reached Zoho once"
    );
    for r in fake.crm_requests() {
        assert_ne!(
            r.header_str("host").unwrap_or(""),
            "localhost:8080",
            "Zoho sees its own Host, never the client's"
        );
    }
    fake.clear_crm_requests();

    let forbidden = [
        "attacker.example:8080",
        "localhost.attacker.example",
        "127.0.0.1.nip.io",
        "zohoapis.com",
        "attacker.localhost",
        "localhost.:8080",
        "127.1:8080",
        "2130706433:8080",
        "0.0.0.0:8080",
        "[::]:8080",
        "x.crm-proxy.internal",
    ];
    for host in forbidden {
        let a = get(proxy.proxy, host, &[]).await;
        assert_eq!(
            (a.status, a.code()),
            (403, "PROXY_HOST_NOT_ALLOWED"),
            "Host {host} is refused"
        );
        assert!(
            a.body.contains("accept_hosts"),
            "the body says how to allow a name: {}",
            a.body
        );
        assert!(
            !a.body.contains(host),
            "the body never echoes the Host: {}",
            a.body
        );
        assert!(
            a.header("access-control-allow-origin").is_none(),
            "no CORS header on a refusal"
        );
        assert_eq!(a.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            a.header("cross-origin-resource-policy"),
            Some("same-origin")
        );
    }
    for bad in [
        "localhost@attacker.example",
        "localhost,attacker.example",
        "localhost:abc",
        "localhost:99999",
        "[::1%25lo]:8080",
        "localhost/x",
    ] {
        let a = get(proxy.proxy, bad, &[]).await;
        assert_eq!(
            (a.status, a.code()),
            (400, "PROXY_BAD_HOST"),
            "Host {bad} is malformed"
        );
    }
    // Two Host lines, or none on HTTP/1.1: 400. HTTP/1.0 without Host: served.
    let two = send(
        proxy.proxy,
        &format!("GET {LEADS} HTTP/1.1"),
        &["Host: localhost", "Host: attacker.example"],
        "",
    )
    .await;
    assert_eq!(
        (two.status, two.code()),
        (400, "PROXY_BAD_HOST"),
        "duplicate Host"
    );
    let none = send(proxy.proxy, &format!("GET {LEADS} HTTP/1.1"), &[], "").await;
    assert_eq!(
        (none.status, none.code()),
        (400, "PROXY_BAD_HOST"),
        "HTTP/1.1 without Host"
    );
    // Forwarded host headers are never consulted.
    let fwd = get(
        proxy.proxy,
        "attacker.example:8080",
        &["X-Forwarded-Host: localhost", "Forwarded: host=localhost"],
    )
    .await;
    assert_eq!(
        fwd.code(),
        "PROXY_HOST_NOT_ALLOWED",
        "X-Forwarded-Host does not override Host"
    );
    // Absolute-form with a foreign authority (and the reverse): refused, never "one matches".
    let abs = send(
        proxy.proxy,
        "GET http://attacker.example:8080/crm/v8/Leads HTTP/1.1",
        &["Host: 127.0.0.1:8080"],
        "",
    )
    .await;
    assert_eq!(
        abs.status, 400,
        "absolute-form with a foreign authority: {}",
        abs.body
    );
    let rev = send(
        proxy.proxy,
        "GET http://127.0.0.1:8080/crm/v8/Leads HTTP/1.1",
        &["Host: attacker.example"],
        "",
    )
    .await;
    assert_eq!(
        rev.status, 400,
        "absolute-form with a foreign Host: {}",
        rev.body
    );
    // A refused request with a large announced body is answered before the body is read.
    let early = tokio::time::timeout(
        Duration::from_secs(5),
        send(
            proxy.proxy,
            &format!("POST {LEADS} HTTP/1.1"),
            &["Host: attacker.example", "Content-Length: 1000000"],
            "",
        ),
    )
    .await
    .expect("the refusal comes without waiting for the body");
    assert_eq!(early.status, 403, "refused before the body");
    let http10 = send(proxy.proxy, &format!("GET {LEADS} HTTP/1.0"), &[], "").await;
    assert_eq!(
        http10.status, 200,
        "HTTP/1.0 without Host is served: {}",
        http10.body
    );
    assert_eq!(
        fake.crm_requests().len(),
        1,
        "only the HTTP/1.0 request reached Zoho"
    );
    assert_eq!(fake.mints(), 1, "refusals never mint");

    let metrics = proxy.metrics_text().await;
    assert!(
        sample(
            &metrics,
            r#"zoho_proxy_requester_refusals_total{listener="proxy",rule="host"}"#
        ) >= forbidden.len() as f64,
        "host refusals are counted:\n{metrics}"
    );
    assert!(
        !metrics.contains("attacker.example"),
        "no Host value in a label"
    );
    let status = proxy.status_json().await;
    assert_eq!(
        status["access"]["accept_hosts"]
            .as_array()
            .and_then(|a| a.last())
            .and_then(|v| v.as_str()),
        Some("crm-proxy.internal"),
        "/status shows the effective host list: {status}"
    );
}

#[tokio::test]
async fn browser_requests_are_refused_and_programs_served() {
    let (zoho, proxy) = start("").await;
    let fake = zoho.control();
    fake.clear_crm_requests();
    let host = "Host: 127.0.0.1:8080";
    let browser_posts: &[&[&str]] = &[
        // The verified attack: a no-cors fetch from another loopback origin.
        &[
            "Origin: http://127.0.0.2:7777",
            "Sec-Fetch-Site: same-site",
            "Sec-Fetch-Mode: no-cors",
            "Sec-Fetch-Dest: empty",
            "Content-Type: text/plain",
        ],
        &[
            "Origin: https://attacker.example",
            "Sec-Fetch-Site: cross-site",
            "Content-Type: text/plain;charset=UTF-8",
        ],
        // A form post (enctype=text/plain) as a top-level navigation.
        &[
            "Origin: https://attacker.example",
            "Sec-Fetch-Site: cross-site",
            "Sec-Fetch-Mode: navigate",
            "Sec-Fetch-Dest: document",
            "Content-Type: text/plain",
        ],
        &[
            "Origin: null",
            "Content-Type: application/x-www-form-urlencoded",
        ],
        &[
            "Origin: http://localhost:8080",
            "Content-Type: multipart/form-data; boundary=x",
        ],
        // An old browser without Fetch Metadata still sends Origin.
        &[
            "Origin: https://attacker.example",
            "Content-Type: text/plain",
        ],
        // Fetch Metadata without Origin.
        &["Sec-Fetch-Site: same-origin"],
        &["Sec-Fetch-Site: foo"],
    ];
    for extra in browser_posts {
        let a = post_lead(proxy.proxy, host, extra).await;
        assert_eq!(
            (a.status, a.code()),
            (403, "PROXY_BROWSER_REQUEST"),
            "{extra:?}: {}",
            a.body
        );
        assert!(
            a.headers
                .iter()
                .all(|(n, _)| !n.starts_with("access-control-")),
            "no CORS header: {extra:?}"
        );
    }
    // A cross-site navigation GET.
    let nav = get(
        proxy.proxy,
        "127.0.0.1:8080",
        &[
            "Sec-Fetch-Site: cross-site",
            "Sec-Fetch-Mode: navigate",
            "Sec-Fetch-Dest: document",
        ],
    )
    .await;
    assert_eq!(nav.code(), "PROXY_BROWSER_REQUEST", "cross-site navigation");
    // A CORS preflight.
    let preflight = send(
        proxy.proxy,
        &format!("OPTIONS {LEADS} HTTP/1.1"),
        &[
            host,
            "Origin: https://attacker.example",
            "Access-Control-Request-Method: POST",
            "Access-Control-Request-Headers: content-type,x-zoho-proxy-request",
            "Access-Control-Request-Private-Network: true",
        ],
        "",
    )
    .await;
    assert_eq!(
        (preflight.status, preflight.code()),
        (403, "PROXY_BROWSER_REQUEST"),
        "preflight"
    );
    assert!(
        preflight
            .headers
            .iter()
            .all(|(n, _)| !n.starts_with("access-control-")),
        "the preflight gets no CORS grant"
    );
    let plain_options = send(
        proxy.proxy,
        &format!("OPTIONS {LEADS} HTTP/1.1"),
        &[host],
        "",
    )
    .await;
    assert_eq!(
        plain_options.status, 405,
        "OPTIONS without browser headers is just not a CRM method"
    );
    assert!(
        fake.crm_requests().is_empty(),
        "no browser-shaped request reached Zoho"
    );

    // Programs: Node's fetch (sec-fetch-mode alone), curl, SDK-shaped bodies, a typed URL.
    let programs: &[&[&str]] = &[
        &[
            "sec-fetch-mode: cors",
            "accept-language: *",
            "user-agent: node",
            "Content-Type: text/plain;charset=UTF-8",
        ],
        &["User-Agent: curl/8", "Content-Type: application/json"],
        &["Content-Type: text/plain; charset=UTF-8"],
        &["User-Agent: python-requests/2.32"],
        &[
            "Sec-Fetch-Site: none",
            "Sec-Fetch-Mode: navigate",
            "Sec-Fetch-Dest: document",
        ],
    ];
    for extra in programs {
        let a = post_lead(proxy.proxy, host, extra).await;
        assert_served(&a, &format!("{extra:?}"));
        assert_eq!(
            a.header("x-content-type-options"),
            Some("nosniff"),
            "proxied responses are hardened"
        );
        assert_eq!(
            a.header("cross-origin-resource-policy"),
            Some("same-origin")
        );
        assert_eq!(a.header("content-security-policy"), Some("sandbox"));
    }
    let seen = fake.crm_requests();
    assert_eq!(
        seen.len(),
        programs.len(),
        "every program request reached Zoho"
    );
    for r in &seen {
        assert_eq!(
            r.header_count("sec-fetch-mode")
                + r.header_count("sec-fetch-site")
                + r.header_count("origin"),
            0,
            "no browser header is forwarded"
        );
    }
}

#[tokio::test]
async fn a_url_encoded_form_is_refused_even_without_browser_headers() {
    let (zoho, proxy) = start("").await;
    let fake = zoho.control();
    fake.clear_crm_requests();
    let host = "Host: 127.0.0.1:8080";
    // What an HTML form sends from a browser without Origin or Fetch Metadata (Firefox < 70),
    // and the same from any program.
    for content_type in [
        "Content-Type: application/x-www-form-urlencoded",
        "Content-Type: Application/X-WWW-Form-URLEncoded; charset=UTF-8",
    ] {
        let a = post_lead(proxy.proxy, host, &[content_type]).await;
        assert_refusal(
            &a,
            415,
            "PROXY_CONTENT_TYPE_NOT_ALLOWED",
            "application/json",
        );
    }
    assert!(fake.crm_requests().is_empty(), "no form body reached Zoho");
    let metrics = proxy.metrics_text().await;
    assert_eq!(
        sample(
            &metrics,
            r#"zoho_proxy_requester_refusals_total{listener="proxy",rule="content_type"}"#
        ),
        2.0,
        "form refusals are counted:\n{metrics}"
    );
    // The SDKs' shapes on the same operation: JSON, text/plain, and no type at all.
    for extra in [
        &["Content-Type: application/json"][..],
        &["Content-Type: text/plain; charset=UTF-8"][..],
        &[][..],
    ] {
        let a = post_lead(proxy.proxy, host, extra).await;
        assert_served(&a, &format!("{extra:?}"));
    }
    assert_eq!(
        fake.crm_requests().len(),
        3,
        "the SDK-shaped bodies reached Zoho"
    );
}

#[tokio::test]
async fn the_admin_listener_checks_host_and_browser_for_every_path() {
    let (zoho, proxy) = start("").await;
    let admin = proxy.admin;
    let at = |path: &str, headers: Vec<String>| {
        let line = format!("GET {path} HTTP/1.1");
        async move {
            let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
            send(admin, &line, &refs, "").await
        }
    };
    let h = |s: &str| s.to_string();
    for path in [
        "/status",
        "/healthz",
        "/metrics",
        "/readyz",
        "/oauth/start?account=default",
        "/nope",
    ] {
        let a = at(path, vec![h("Host: attacker.example:9901")]).await;
        assert_eq!(
            (a.status, a.code()),
            (403, "PROXY_HOST_NOT_ALLOWED"),
            "{path} with a foreign Host"
        );
    }
    // Kubelet probes and Prometheus scrapes send the pod IP.
    let probe = at(
        "/healthz",
        vec![h("Host: 10.42.0.17:9901"), h("User-Agent: kube-probe/1.30")],
    )
    .await;
    assert_eq!(probe.status, 200, "probe with the pod IP Host");
    let scrape = at("/metrics", vec![h("Host: 10.42.0.17:9901")]).await;
    assert_eq!(scrape.status, 200, "scrape with the pod IP Host");
    // The operator typing the URL, and curl.
    let typed = at(
        "/status",
        vec![
            h("Host: localhost:9901"),
            h("Sec-Fetch-Site: none"),
            h("Sec-Fetch-Mode: navigate"),
        ],
    )
    .await;
    assert_eq!(typed.status, 200, "typed /status");
    assert_eq!(
        typed.header("cache-control"),
        Some("no-store"),
        "/status is not cached"
    );
    assert_eq!(typed.header("x-content-type-options"), Some("nosniff"));
    // A page's script or fetch.
    for extra in [
        vec![h("Sec-Fetch-Site: cross-site"), h("Sec-Fetch-Dest: script")],
        vec![h("Sec-Fetch-Site: same-site"), h("Sec-Fetch-Dest: empty")],
        vec![h("Origin: null")],
        vec![h("Origin: https://attacker.example")],
    ] {
        let mut headers = vec![h("Host: 127.0.0.1:9901")];
        headers.extend(extra.clone());
        let a = at("/status", headers).await;
        assert_eq!(
            (a.status, a.code()),
            (403, "PROXY_BROWSER_REQUEST"),
            "/status from a page: {extra:?}"
        );
    }
    // A drive-by /oauth/start from another site creates no state.
    let drive_by = at(
        "/oauth/start?account=default",
        vec![
            h("Host: localhost:9901"),
            h("Sec-Fetch-Site: cross-site"),
            h("Sec-Fetch-Mode: navigate"),
            h("Sec-Fetch-Dest: document"),
        ],
    )
    .await;
    assert_eq!(
        drive_by.code(),
        "PROXY_BROWSER_REQUEST",
        "cross-site /oauth/start"
    );
    // Zoho's consent redirect: a cross-site top-level navigation reaches the callback handler
    // (which refuses the unknown state itself, with 400, and never calls Zoho).
    let before = zoho.control().token_requests();
    let callback = at(
        "/oauth/callback?state=S&code=C&location=us&accounts-server=https%3A%2F%2Faccounts.zoho.com",
        vec![
            h("Host: localhost:9901"),
            h("Sec-Fetch-Site: cross-site"),
            h("Sec-Fetch-Mode: navigate"),
            h("Sec-Fetch-Dest: document"),
            h("Sec-Fetch-User: ?1"),
            h("Referer: https://accounts.zoho.com/"),
        ],
    )
    .await;
    assert_eq!(
        callback.status, 400,
        "the navigation reaches the callback, which refuses the forged state: {}",
        callback.body
    );
    assert_eq!(callback.code(), "", "not refused by the requester checks");
    for extra in [
        vec![
            h("Sec-Fetch-Site: cross-site"),
            h("Sec-Fetch-Mode: no-cors"),
            h("Sec-Fetch-Dest: image"),
        ],
        vec![
            h("Sec-Fetch-Site: cross-site"),
            h("Sec-Fetch-Mode: navigate"),
            h("Sec-Fetch-Dest: iframe"),
        ],
        vec![
            h("Sec-Fetch-Site: cross-site"),
            h("Sec-Fetch-Mode: cors"),
            h("Sec-Fetch-Dest: empty"),
        ],
    ] {
        let mut headers = vec![h("Host: localhost:9901")];
        headers.extend(extra.clone());
        let a = at("/oauth/callback?state=S&code=C", headers).await;
        assert_eq!(
            a.code(),
            "PROXY_BROWSER_REQUEST",
            "callback misuse {extra:?}"
        );
    }
    assert_eq!(
        zoho.control().token_requests(),
        before,
        "no refused callback reached Zoho Accounts"
    );
    let metrics = proxy.metrics_text().await;
    assert!(
        sample(
            &metrics,
            r#"zoho_proxy_requester_refusals_total{listener="admin",rule="browser"}"#
        ) >= 7.0,
        "admin refusals are counted:\n{metrics}"
    );
}

#[tokio::test]
async fn the_ssrf_header_is_required_when_configured_and_never_forwarded() {
    let (zoho, proxy) = start("require_request_header: true\n").await;
    let fake = zoho.control();
    fake.clear_crm_requests();
    let without = get(proxy.proxy, "127.0.0.1", &[]).await;
    assert_refusal(
        &without,
        412,
        "PROXY_REQUEST_HEADER_REQUIRED",
        "X-Zoho-Proxy-Request: true",
    );
    let twice = get(
        proxy.proxy,
        "127.0.0.1",
        &["X-Zoho-Proxy-Request: true", "X-Zoho-Proxy-Request: true"],
    )
    .await;
    assert_eq!(twice.status, 412, "sent twice");
    let wrong = get(proxy.proxy, "127.0.0.1", &["X-Zoho-Proxy-Request: 1"]).await;
    assert_eq!(wrong.status, 412, "a value other than true");
    assert!(
        fake.crm_requests().is_empty(),
        "nothing forwarded without the header"
    );
    let with = get(proxy.proxy, "127.0.0.1", &["X-Zoho-Proxy-Request: true"]).await;
    assert_eq!(with.status, 200, "with the header: {}", with.body);
    let seen = fake.crm_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].header_count("x-zoho-proxy-request"),
        0,
        "the header is removed before forwarding"
    );
}

fn clients_yaml(report_key_file: &Path) -> String {
    format!(
        "clients:\n  - name: sync\n    key: {KEY_SYNC}\n    allow: [ZohoCRM.modules.leads.READ]\n  - name: report\n    key_file: {}\n",
        report_key_file.display()
    )
}

#[tokio::test]
async fn client_keys_identify_narrow_and_rotate_on_reload() {
    let zoho = Zoho::start().await;
    let key_file = zoho.dir.path().join("report.key");
    std::fs::write(&key_file, format!("{KEY_REPORT}\n")).expect("key file");
    let config = zoho.config(ALLOW, &clients_yaml(&key_file));
    let proxy = RunningProxy::spawn(zoho.dir.path(), &config).await;
    assert!(
        proxy.wait_ready(Duration::from_secs(20)).await,
        "ready: {}",
        proxy.logs()
    );
    let fake = zoho.control();
    fake.clear_crm_requests();
    let host = "127.0.0.1";

    // The three key forms.
    for form in [
        format!("Authorization: Bearer {KEY_SYNC}"),
        format!("Authorization: Zoho-oauthtoken {KEY_SYNC}"),
        format!("X-Zoho-Proxy-Key: {KEY_SYNC}"),
    ] {
        let a = get(proxy.proxy, host, &[form.as_str()]).await;
        assert_eq!(a.status, 200, "{form}: {}", a.body);
    }
    let seen = fake.crm_requests();
    assert_eq!(seen.len(), 3);
    let live = fake.live_tokens();
    for r in &seen {
        let auth = r.header_str("authorization").unwrap_or("");
        assert!(
            live.iter().any(|t| auth == format!("Zoho-oauthtoken {t}")),
            "Zoho sees the proxy's token, not the key"
        );
        assert_eq!(
            r.header_count("x-zoho-proxy-key"),
            0,
            "the key header is removed"
        );
    }
    fake.clear_crm_requests();

    // Missing and wrong keys: 401 with no hint.
    for extra in [
        vec![],
        vec!["Authorization: Bearer wrong-key-0123456789abcdef0123456789abcdef"],
        vec!["X-Zoho-Proxy-Key: nope"],
        vec!["Authorization: Basic c3luYzpzeW5j"],
    ] {
        let a = get(proxy.proxy, host, &extra).await;
        assert_eq!(
            (a.status, a.code()),
            (401, "PROXY_CLIENT_UNAUTHENTICATED"),
            "{extra:?}"
        );
        assert!(
            !a.body.contains("sync") && !a.body.contains("report"),
            "no client name in the body: {}",
            a.body
        );
    }
    // sync may only read Leads; report has the account's whole list.
    let create = send(
        proxy.proxy,
        &format!("POST {LEADS} HTTP/1.1"),
        &[
            &format!("Host: {host}"),
            &format!("X-Zoho-Proxy-Key: {KEY_SYNC}"),
            "Content-Type: application/json",
        ],
        JSON_LEAD,
    )
    .await;
    assert_eq!(
        (create.status, create.code()),
        (403, "PROXY_SCOPE_DENIED"),
        "sync's narrower list: {}",
        create.body
    );
    let contacts = send(
        proxy.proxy,
        "GET /crm/v8/Contacts HTTP/1.1",
        &[
            &format!("Host: {host}"),
            &format!("X-Zoho-Proxy-Key: {KEY_SYNC}"),
        ],
        "",
    )
    .await;
    assert_eq!(contacts.status, 403, "sync may not read Contacts");
    let report_contacts = send(
        proxy.proxy,
        "GET /crm/v8/Contacts HTTP/1.1",
        &[
            &format!("Host: {host}"),
            &format!("Authorization: Bearer {KEY_REPORT}"),
        ],
        "",
    )
    .await;
    assert_eq!(
        report_contacts.status, 200,
        "report reads Contacts: {}",
        report_contacts.body
    );
    assert_eq!(
        fake.crm_requests().len(),
        1,
        "only report's request reached Zoho"
    );

    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains(r#"client="sync""#) && metrics.contains(r#"client="report""#),
        "requests_total has the client label:\n{metrics}"
    );
    let status = proxy.status_json().await;
    let text = status.to_string();
    assert!(
        text.contains("\"sync\"") && text.contains("ZohoCRM.modules.leads.READ"),
        "/status lists clients and allow lists: {text}"
    );
    for (what, secret) in [("metrics", &metrics), ("status", &text)] {
        assert!(
            !secret.contains(KEY_SYNC) && !secret.contains(KEY_REPORT),
            "no key in {what}"
        );
    }

    // Rotate report's key: rewrite the file and SIGHUP.
    std::fs::write(&key_file, format!("{KEY_REPORT_NEW}\n")).expect("rotate");
    proxy.signal("HUP");
    let rotated = poll_until(Duration::from_secs(5), || async {
        get(
            proxy.proxy,
            host,
            &[&format!("X-Zoho-Proxy-Key: {KEY_REPORT_NEW}")],
        )
        .await
        .status
            == 200
    })
    .await;
    assert!(
        rotated,
        "the new key works after the reload: {}",
        proxy.logs()
    );
    let old = get(
        proxy.proxy,
        host,
        &[&format!("X-Zoho-Proxy-Key: {KEY_REPORT}")],
    )
    .await;
    assert_eq!(old.status, 401, "the old key no longer works");

    // A broken reload (a short key) keeps the previous clients.
    std::fs::write(&key_file, "short\n").expect("short key");
    proxy.signal("HUP");
    assert!(
        proxy
            .wait_for_output(Duration::from_secs(5), |t| t
                .contains("keeping the previous configuration"))
            .await,
        "the bad reload is refused: {}",
        proxy.logs()
    );
    let kept = get(
        proxy.proxy,
        host,
        &[&format!("X-Zoho-Proxy-Key: {KEY_REPORT_NEW}")],
    )
    .await;
    assert_eq!(kept.status, 200, "the last good key still works");

    let logs = proxy.logs();
    for key in [KEY_SYNC, KEY_REPORT, KEY_REPORT_NEW] {
        assert!(!logs.contains(key), "a client key leaked into the logs");
    }
    assert!(
        logs.contains("client=sync") || logs.contains(r#""client":"sync""#),
        "the access log names the client"
    );
    proxy.assert_no_secrets(&fake.live_tokens());
}

#[tokio::test]
async fn a_unix_socket_peer_uid_identifies_a_client() {
    let zoho = Zoho::start().await;
    let marker = zoho.dir.path().join("uid-marker");
    std::fs::write(&marker, "x").expect("marker");
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&marker).expect("meta"));
    let socket = zoho.dir.path().join("proxy.sock");
    let config = zoho
        .config(
            ALLOW,
            &format!(
                "clients:\n  - name: local-app\n    unix_uid: {uid}\n    allow: [ZohoCRM.modules.leads.READ]\n  - name: someone-else\n    unix_uid: {}\n",
                uid + 1
            ),
        )
        .replacen("listen: 127.0.0.1:0\n", &format!("listen: unix:{}\n", socket.display()), 1);
    let proxy = RunningProxy::spawn(zoho.dir.path(), &config).await;
    assert!(
        proxy.wait_ready(Duration::from_secs(20)).await,
        "ready: {}",
        proxy.logs()
    );
    let over_socket = |socket: std::path::PathBuf, request: String| async move {
        let mut s = tokio::net::UnixStream::connect(&socket)
            .await
            .expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        parse(&out)
    };
    // Any Host on a Unix socket (browsers cannot dial one), no key: identified by uid.
    let a = over_socket(
        socket.clone(),
        format!("GET {LEADS} HTTP/1.1\r\nHost: anything\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(
        a.status, 200,
        "the peer uid identifies local-app: {}",
        a.body
    );
    let denied = over_socket(
        socket.clone(),
        "GET /crm/v8/Contacts HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!(denied.status, 403, "local-app's narrower list applies");
    let browser = over_socket(socket.clone(), format!("GET {LEADS} HTTP/1.1\r\nHost: localhost\r\nOrigin: http://x\r\nConnection: close\r\n\r\n")).await;
    assert_eq!(
        browser.code(),
        "PROXY_BROWSER_REQUEST",
        "a relayed browser request is refused on the socket too"
    );
    let metrics = proxy.metrics_text().await;
    assert!(
        metrics.contains(r#"client="local-app""#),
        "counted as local-app:\n{metrics}"
    );
    drop(proxy);

    // With only another uid configured, the same peer is unauthenticated.
    let socket = zoho.dir.path().join("proxy2.sock");
    let other = zoho
        .config(
            ALLOW,
            &format!(
                "clients:\n  - name: someone-else\n    unix_uid: {}\n",
                uid + 1
            ),
        )
        .replacen(
            "listen: 127.0.0.1:0\n",
            &format!("listen: unix:{}\n", socket.display()),
            1,
        );
    let dir2 = tempfile::tempdir().expect("dir");
    let proxy = RunningProxy::spawn(dir2.path(), &other).await;
    assert!(
        proxy.wait_ready(Duration::from_secs(20)).await,
        "ready: {}",
        proxy.logs()
    );
    let a = over_socket(
        socket.clone(),
        format!("GET {LEADS} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(
        (a.status, a.code()),
        (401, "PROXY_CLIENT_UNAUTHENTICATED"),
        "another uid: {}",
        a.body
    );
}

#[tokio::test]
async fn bad_requester_settings_exit_2_naming_the_key() {
    let zoho = Zoho::start().await;
    let cases: &[(&str, &str, &str)] = &[
        ("short key", "clients:\n  - name: sync\n    key: tooshort-secret\n", "clients[0].key"),
        ("wider allow", "clients:\n  - name: sync\n    key: 0123456789abcdef0123456789abcdef\n    allow: [ZohoCRM.modules.deals.READ]\n", "clients[0].allow[0]"),
        ("bad name", "clients:\n  - name: sync job\n    key: 0123456789abcdef0123456789abcdef\n", "clients[0].name"),
        ("no identity", "clients:\n  - name: sync\n", "clients[0].key"),
        ("duplicate key", "clients:\n  - name: a\n    key: 0123456789abcdef0123456789abcdef\n  - name: b\n    key: 0123456789abcdef0123456789abcdef\n", "clients[1].key"),
        ("unknown account", "clients:\n  - name: a\n    key: 0123456789abcdef0123456789abcdef\n    accounts: [nope]\n", "clients[0].accounts[0]"),
        ("unknown key", "clients:\n  - name: a\n    secret: x\n", "clients[0]"),
        ("zero credits", "clients:\n  - name: a\n    key: 0123456789abcdef0123456789abcdef\n    credits_per_day: 0\n", "clients[0].credits_per_day"),
        ("wildcard host", "accept_hosts: ['*']\n", "accept_hosts[0]"),
        ("host with port", "accept_hosts: ['crm:8080']\n", "accept_hosts[0]"),
    ];
    for (name, extra, key) in cases {
        let path = zoho.dir.path().join("bad.yaml");
        std::fs::write(&path, zoho.config(ALLOW, extra)).expect("write");
        let out = std::process::Command::new(binary())
            .arg("--config")
            .arg(&path)
            .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
            .env("TEST_REFRESH_TOKEN", REFRESH_TOKEN)
            .output()
            .expect("run");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{name}: exit 2; output: {text}");
        assert!(text.contains(key), "{name}: the error names {key}: {text}");
        assert!(
            !text.contains("tooshort-secret") && !text.contains("0123456789abcdef0123456789abcdef"),
            "{name}: the key is never echoed: {text}"
        );
    }
}

/// Serves one fixed HTML page on `addr` to every request (the attacker's page).
async fn serve_page(listener: tokio::net::TcpListener, html: String) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        let html = html.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                html.len()
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(html.as_bytes()).await;
        });
    }
}

#[tokio::test]
async fn a_page_on_another_loopback_origin_reaches_zoho_zero_times() {
    let Some(browser) = chromium() else {
        eprintln!("\n*** SKIPPED a_page_on_another_loopback_origin_reaches_zoho_zero_times: no chromium in PATH (apt-get install chromium) ***\n");
        return;
    };
    let (zoho, proxy) = start("").await;
    let fake = zoho.control();
    fake.clear_crm_requests();
    let target = format!("http://127.0.0.1:{}", proxy.proxy.port());
    // The attack from the issue: no-cors fetches (text/plain JSON and a GET) and an
    // enctype=text/plain form whose name/value pair assembles JSON, posted into an iframe.
    let html = format!(
        r#"<!doctype html><html><body>
<form id="f" method="POST" enctype="text/plain" action="{target}/crm/v8/Leads" target="sink">
<input name='{{"data":[{{"Last_Name":"pwn","x":"' value='"}}]}}'></form>
<iframe name="sink"></iframe>
<div id="out">pending</div>
<script>
const t = "{target}/crm/v8/Leads";
Promise.allSettled([
  fetch(t, {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}, body: '{{"data":[{{"Last_Name":"pwn"}}]}}'}}),
  fetch(t, {{mode: "no-cors"}}),
  fetch(t, {{method: "POST", mode: "no-cors", body: '{{"data":[{{"Last_Name":"pwn2"}}]}}'}}),
]).then(r => {{
  document.getElementById("out").textContent = "fired " + r.length;
  document.getElementById("f").submit();
}});
</script></body></html>"#
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let page = format!("http://{}/", listener.local_addr().expect("addr"));
    let server = tokio::spawn(serve_page(listener, html));
    let profile = tempfile::tempdir().expect("profile");
    let output = chromium_dump_dom(
        &browser,
        profile.path(),
        &["--virtual-time-budget=5000"],
        &page,
    )
    .await;
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("fired 3"),
        "the page ran its fetches; DOM:\n{dom}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The three fetches and the form post reached the proxy and were refused there.
    let refused = poll_until(Duration::from_secs(10), || async {
        sample(
            &proxy.metrics_text().await,
            r#"zoho_proxy_requester_refusals_total{listener="proxy",rule="browser"}"#,
        ) >= 4.0
    })
    .await;
    assert!(
        refused,
        "the proxy refused the page's 4 requests as browser requests:\n{}\n{}",
        proxy.metrics_text().await,
        proxy.logs()
    );
    assert!(
        fake.crm_requests().is_empty(),
        "Zoho saw none of the page's requests"
    );
    server.abort();
}

/// Where `.ci/run` installs Zoho's official Node SDK (or `ZOHO_NODE_SDK`).
fn node_sdk() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("ZOHO_NODE_SDK")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/node-sdk/node_modules/@zohocrm/nodejs-sdk-8.0")
        });
    dir.join("package.json").is_file().then_some(dir)
}

#[tokio::test]
async fn zohos_node_sdk_works_with_a_client_key_as_its_access_token() {
    let Some(sdk) = node_sdk() else {
        eprintln!("\n*** SKIPPED zohos_node_sdk_works_with_a_client_key_as_its_access_token: Zoho's Node SDK is not installed (.ci/run: npm install --prefix target/node-sdk @zohocrm/nodejs-sdk-8.0) ***\n");
        return;
    };
    let zoho = Zoho::start().await;
    // What the SDK calls before its first record operation: the module's field metadata.
    let allow = ["ZohoCRM.modules.leads.READ", "ZohoCRM.settings.fields.READ"];
    let config = zoho.config(
        &allow,
        &format!("clients:\n  - name: node-sdk\n    key: {KEY_SYNC}\n"),
    );
    let proxy = RunningProxy::spawn(zoho.dir.path(), &config).await;
    assert!(
        proxy.wait_ready(Duration::from_secs(20)).await,
        "ready: {}",
        proxy.logs()
    );
    let resources = tempfile::tempdir().expect("SDK resource dir");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/node-sdk/get_leads.mjs");
    let run = |key: &'static str| {
        let mut cmd = tokio::process::Command::new("node");
        cmd.arg(&script)
            .env("ZOHO_SDK", &sdk)
            .env(
                "PROXY_URL",
                format!("http://127.0.0.1:{}", proxy.proxy.port()),
            )
            .env("CLIENT_KEY", key)
            .env("RESOURCES", resources.path())
            .kill_on_drop(true);
        async move {
            let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
                .await
                .expect("the SDK finishes within 60 s")
                .expect("node runs");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let line = text.lines().last().unwrap_or("").to_string();
            (
                serde_json::from_str::<serde_json::Value>(&line).unwrap_or_default(),
                format!("{text}{}", String::from_utf8_lossy(&out.stderr)),
            )
        }
    };
    let (ok, output) = run(KEY_SYNC).await;
    assert_eq!(
        ok["status"],
        200,
        "the SDK gets Leads through the proxy: {output}\n{}",
        proxy.logs()
    );
    assert!(
        ok["records"].as_u64().unwrap_or(0) >= 1,
        "records came back: {output}"
    );
    let live = zoho.control().live_tokens();
    let seen = zoho.control().crm_requests();
    assert!(!seen.is_empty(), "the SDK's requests reached Zoho");
    for r in &seen {
        let auth = r.header_str("authorization").unwrap_or("");
        assert!(
            live.iter().any(|t| auth == format!("Zoho-oauthtoken {t}")),
            "Zoho sees the proxy's token, never the client key"
        );
    }
    let (refused, output) = run("a-wrong-key-0123456789abcdef0123456789ab").await;
    assert_ne!(refused["status"], 200, "a wrong key is refused: {output}");
    assert!(
        !proxy.logs().contains(KEY_SYNC),
        "the key never reaches the logs"
    );
}
