//! Browser markers, URL-encoded bodies (forwarded unless a browser sends them or
//! `strict_content_type` is on), and a real headless Chromium firing cross-site requests.

use crate::common::*;
use crate::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// The form type as `curl -d` sends it, and in another spelling.
const FORM_TYPES: [&str; 2] = [
    "Content-Type: application/x-www-form-urlencoded",
    "Content-Type: Application/X-WWW-Form-URLEncoded; charset=UTF-8",
];

/// `a` is the browser rule's refusal.
fn assert_browser_refusal(a: &Answer, what: &str) {
    assert_eq!(
        (a.status, a.code()),
        (403, "PROXY_BROWSER_REQUEST"),
        "{what}: {}",
        a.body
    );
}

#[tokio::test]
async fn a_url_encoded_body_is_forwarded_by_default_unless_a_browser_sends_it() {
    let (zoho, proxy) = start("").await;
    let fake = zoho.control();
    fake.clear_crm_requests();
    let host = "Host: 127.0.0.1:8080";
    // What `curl -d` (as in Zoho's own examples) and PHP's CURLOPT_POSTFIELDS send: JSON as a
    // URL-encoded form. Zoho accepts it, so the proxy forwards it, body and type unchanged.
    for content_type in FORM_TYPES {
        let a = post_lead(proxy.proxy, host, &[content_type]).await;
        assert_eq!(
            a.status, 201,
            "{content_type}: forwarded and created: {}",
            a.body
        );
    }
    let seen = fake.crm_requests();
    assert_eq!(seen.len(), 2, "both form-typed bodies reached Zoho");
    assert!(
        seen.iter().all(|r| r.body_prefix == JSON_LEAD.as_bytes()
            && r.header("content-type").is_some_and(|v| v
                .to_ascii_lowercase()
                .starts_with(b"application/x-www-form-urlencoded"))),
        "forwarded with its body and type: {seen:?}"
    );
    // The same body from a browser page (Origin, a cross-site Sec-Fetch-Site, or both): refused
    // by the browser rule, not forwarded, whatever the body type.
    fake.clear_crm_requests();
    for extra in [
        &[
            "Origin: https://evil.example",
            "Content-Type: application/x-www-form-urlencoded",
        ][..],
        &[
            "Sec-Fetch-Site: cross-site",
            "Content-Type: application/x-www-form-urlencoded",
        ][..],
        &["Origin: https://evil.example"][..],
    ] {
        let a = post_lead(proxy.proxy, host, extra).await;
        assert_browser_refusal(&a, &format!("{extra:?}"));
    }
    assert!(
        fake.crm_requests().is_empty(),
        "no browser-sent body reached Zoho"
    );
    let (count, metrics) = refusals(&proxy, "proxy", "content_type").await;
    assert_eq!(
        count, 0.0,
        "nothing refused for its type by default:\n{metrics}"
    );
}

#[tokio::test]
async fn strict_content_type_refuses_a_url_encoded_form_without_browser_headers() {
    let (zoho, proxy) = start("strict_content_type: true\n").await;
    let fake = zoho.control();
    fake.clear_crm_requests();
    let host = "Host: 127.0.0.1:8080";
    // What an HTML form sends from a browser without Origin or Fetch Metadata (Firefox < 70),
    // and the same from any program.
    for content_type in FORM_TYPES {
        let a = post_lead(proxy.proxy, host, &[content_type]).await;
        assert_refusal(
            &a,
            415,
            "PROXY_CONTENT_TYPE_NOT_ALLOWED",
            "application/json",
        );
    }
    assert!(fake.crm_requests().is_empty(), "no form body reached Zoho");
    let (count, metrics) = refusals(&proxy, "proxy", "content_type").await;
    assert_eq!(count, 2.0, "form refusals are counted:\n{metrics}");
    // JSON on the same operation is served.
    let a = post_lead(proxy.proxy, host, &["Content-Type: application/json"]).await;
    assert_served(&a, "JSON under strict_content_type");
    assert_eq!(fake.crm_requests().len(), 1, "the JSON body reached Zoho");
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
        refusals(&proxy, "proxy", "browser").await.0 >= 4.0
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
