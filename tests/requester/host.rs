//! The Host rule (DNS rebinding) on the proxy listener and the admin listener's checks.

use crate::*;
use std::time::Duration;

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

    let (count, metrics) = refusals(&proxy, "proxy", "host").await;
    assert!(
        count >= forbidden.len() as f64,
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
    let (count, metrics) = refusals(&proxy, "admin", "browser").await;
    assert!(count >= 7.0, "admin refusals are counted:\n{metrics}");
}
