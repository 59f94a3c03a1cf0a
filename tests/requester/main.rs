//! Who may use the proxy (catalogue section K): the Host rule on both listeners, browser markers,
//! the SSRF header, client identities by key and by Unix-socket peer uid, per-client allow lists,
//! key rotation on reload, bad `clients:` configs, and a real headless Chromium whose page on
//! another loopback origin fires cross-site requests at the proxy.
//!
//! Every case runs the real binary against the in-process fake Zoho over TLS; "no forward" is
//! checked on the fake's own request log.

mod body_type;
mod browser;
mod clients;
#[path = "../common/mod.rs"]
mod common;
mod host;
mod unix;

use common::*;
use std::time::Duration;

pub(crate) const LEADS: &str = "/crm/v8/Leads";
pub(crate) const ALLOW: &[&str] = &["ZohoCRM.modules.leads.ALL", "ZohoCRM.modules.contacts.READ"];
pub(crate) const KEY_SYNC: &str = "sync-key-0123456789abcdef0123456789abcdef";
pub(crate) const KEY_REPORT: &str = "report-key-0123456789abcdef0123456789abcdef";
pub(crate) const KEY_REPORT_NEW: &str = "report-key-rotated-0123456789abcdef01234567";
pub(crate) const JSON_LEAD: &str = r#"{"data":[{"Last_Name":"x"}]}"#;

/// A raw HTTP/1.1 exchange: status, headers (lower-cased names) and body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn code(&self) -> &str {
        self.header("x-zoho-proxy-error").unwrap_or("")
    }
}

pub(crate) fn parse(bytes: &[u8]) -> Answer {
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
pub(crate) async fn send(
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
pub(crate) async fn post_lead(addr: std::net::SocketAddr, host: &str, extra: &[&str]) -> Answer {
    let mut headers = vec![host];
    headers.extend_from_slice(extra);
    send(addr, &format!("POST {LEADS} HTTP/1.1"), &headers, JSON_LEAD).await
}

pub(crate) async fn get(addr: std::net::SocketAddr, host: &str, extra: &[&str]) -> Answer {
    let mut headers = vec![format!("Host: {host}")];
    headers.extend(extra.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = headers.iter().map(String::as_str).collect();
    send(addr, &format!("GET {LEADS} HTTP/1.1"), &refs, "").await
}

/// `a` is a refusal with this status and code whose message names `fix`.
pub(crate) fn assert_refusal(a: &Answer, status: u16, code: &str, fix: &str) {
    assert_eq!((a.status, a.code()), (status, code), "{}", a.body);
    assert!(a.body.contains(fix), "the body names the fix: {}", a.body);
}

/// `a` is a forwarded request's answer (the fake Zoho's 200 or 201).
pub(crate) fn assert_served(a: &Answer, what: &str) {
    assert!(
        a.status == 201 || a.status == 200,
        "{what} is served: {} {}",
        a.status,
        a.body
    );
}

/// The value of one Prometheus sample, 0 when absent.
pub(crate) fn sample(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// `zoho_proxy_requester_refusals_total{listener, rule}` on the proxy's `/metrics`, and the whole
/// metrics text (for the assertion message).
pub(crate) async fn refusals(proxy: &RunningProxy, listener: &str, rule: &str) -> (f64, String) {
    let metrics = proxy.metrics_text().await;
    let key =
        format!(r#"zoho_proxy_requester_refusals_total{{listener="{listener}",rule="{rule}"}}"#);
    (sample(&metrics, &key), metrics)
}

pub(crate) async fn start(extra: &str) -> (Zoho, RunningProxy) {
    let zoho = Zoho::start().await;
    let config = zoho.config(ALLOW, extra);
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &config).await;
    (zoho, proxy)
}
