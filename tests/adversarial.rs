//! Adversarial suite (issue 7; security catalogue sections A–J) against the real binary.
//!
//! Every case checks two things: what reached the fake Zoho (nothing, or exactly the canonical
//! request: one `Host`, one `Authorization` that is the proxy's, at most one framing header, no
//! hop-by-hop or client-credential headers, the body byte-identical) and that no secret appears in
//! the client's bytes, the proxy's output, `/metrics` or `/status`. Byte-exact input goes through
//! raw `TcpStream`s and a strict response parser, so a truncated or desynchronised answer shows.
//!
//! Cases that can run at once do (one connection each, told apart by a `case=` marker in the
//! query), which keeps the whole file well under two minutes on two cores.

mod common;

use common::*;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Leads (all operations) and COQL reads are allowed; Contacts and everything else is not.
const ALLOW: &[&str] = &["ZohoCRM.modules.leads.ALL", "ZohoCRM.coql.READ"];
/// Small timeouts so slow-client cases finish quickly; trace logging so leak checks see everything.
const FAST: &str = "limits:\n  header_timeout: 1s\n  body_idle_timeout: 1s\n  request_timeout: 2s\nlog:\n  level: trace\n";
/// A Leads record id the fake knows.
const LEAD: &str = "554023000000235011";
/// How long any single exchange may take before a case counts as hung.
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Raw HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

/// One parsed response.
#[derive(Debug, Clone)]
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }

    /// The proxy's own error code (`x-zoho-proxy-error`), if the proxy answered itself.
    fn proxy_error(&self) -> Option<&str> {
        self.header("x-zoho-proxy-error")
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// How reading the next response ended.
#[derive(Debug)]
enum Next {
    Response(RawResponse),
    /// The server closed (or reset) the connection before any byte of a response.
    Closed,
    /// Nothing more arrived before the deadline; the unparsed bytes so far.
    Timeout(#[allow(dead_code)] Vec<u8>),
    /// The connection ended inside a response; the bytes of that response.
    Truncated(Vec<u8>),
}

enum Parse {
    Need,
    Done(RawResponse, usize),
    Invalid(String),
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parses one response from the start of `buf`. `no_body`: the request was HEAD.
fn parse_response(buf: &[u8], no_body: bool, eof: bool) -> Parse {
    let Some(end) = find(buf, b"\r\n\r\n") else {
        return Parse::Need;
    };
    let Ok(head) = std::str::from_utf8(&buf[..end]) else {
        return Parse::Invalid("non-UTF-8 response head".into());
    };
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = match parts.next().and_then(|s| s.parse::<u16>().ok()) {
        Some(s) if version == "HTTP/1.1" || version == "HTTP/1.0" => s,
        _ => return Parse::Invalid(format!("bad status line {status_line:?}")),
    };
    let mut headers = Vec::new();
    for line in lines {
        let Some((n, v)) = line.split_once(':') else {
            return Parse::Invalid(format!("bad header line {line:?}"));
        };
        headers.push((n.to_ascii_lowercase(), v.trim().to_string()));
    }
    let start = end + 4;
    let mut resp = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if no_body || status < 200 || status == 204 || status == 304 {
        return Parse::Done(resp, start);
    }
    if resp.header_count("transfer-encoding") + resp.header_count("content-length") > 1 {
        return Parse::Invalid("response with more than one framing header".into());
    }
    if let Some(te) = resp.header("transfer-encoding") {
        if te != "chunked" {
            return Parse::Invalid(format!("response transfer-encoding {te:?}"));
        }
        let mut pos = start;
        loop {
            let Some(line_end) = find(&buf[pos..], b"\r\n") else {
                return Parse::Need;
            };
            let line = String::from_utf8_lossy(&buf[pos..pos + line_end]).to_string();
            let Ok(size) =
                usize::from_str_radix(line.split(';').next().unwrap_or_default().trim(), 16)
            else {
                return Parse::Invalid(format!("bad chunk size line {line:?}"));
            };
            pos += line_end + 2;
            if size == 0 {
                loop {
                    let Some(le) = find(&buf[pos..], b"\r\n") else {
                        return Parse::Need;
                    };
                    pos += le + 2;
                    if le == 0 {
                        return Parse::Done(resp, pos);
                    }
                }
            }
            if buf.len() < pos + size + 2 {
                return Parse::Need;
            }
            resp.body.extend_from_slice(&buf[pos..pos + size]);
            if &buf[pos + size..pos + size + 2] != b"\r\n" {
                return Parse::Invalid("chunk data not followed by CRLF".into());
            }
            pos += size + 2;
        }
    }
    if let Some(cl) = resp.header("content-length") {
        let Ok(n) = cl.parse::<usize>() else {
            return Parse::Invalid(format!("bad content-length {cl:?}"));
        };
        if buf.len() < start + n {
            return Parse::Need;
        }
        resp.body = buf[start..start + n].to_vec();
        return Parse::Done(resp, start + n);
    }
    if eof {
        resp.body = buf[start..].to_vec();
        return Parse::Done(resp, buf.len());
    }
    Parse::Need
}

/// A raw client connection; every byte received is also appended to the harness transcript.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
    transcript: Arc<Mutex<Vec<u8>>>,
}

impl Conn {
    async fn open(addr: SocketAddr, transcript: Arc<Mutex<Vec<u8>>>) -> Conn {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connect to the proxy");
        Conn {
            stream,
            buf: Vec::new(),
            eof: false,
            transcript,
        }
    }

    /// Writes bytes; an error (the proxy already closed) is returned, not a panic.
    async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    async fn read_some(&mut self, until: Instant) -> bool {
        let mut chunk = vec![0u8; 64 * 1024];
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, self.stream.read(&mut chunk)).await {
            Err(_) => false,
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.eof = true;
                true
            }
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn record(&self, bytes: &[u8]) {
        if let Ok(mut t) = self.transcript.lock() {
            t.extend_from_slice(bytes);
        }
    }

    /// Reads the next response (HEAD: `no_body`), waiting at most `wait`.
    async fn next(&mut self, no_body: bool, wait: Duration) -> Next {
        let until = Instant::now() + wait;
        loop {
            match parse_response(&self.buf, no_body, self.eof) {
                Parse::Done(r, used) => {
                    let bytes: Vec<u8> = self.buf.drain(..used).collect();
                    // The fake's `echo` switch reflects the injected token by design; every other
                    // byte a client receives goes to the leak check.
                    let echo = r.json()["path_and_query"]
                        .as_str()
                        .is_some_and(|p| p.contains("__fake=echo"));
                    if !echo {
                        self.record(&bytes);
                    }
                    return Next::Response(r);
                }
                Parse::Invalid(why) => panic!(
                    "unparseable response ({why}): {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Parse::Need => {}
            }
            if self.eof {
                let rest = std::mem::take(&mut self.buf);
                self.record(&rest);
                return if rest.is_empty() {
                    Next::Closed
                } else {
                    Next::Truncated(rest)
                };
            }
            if !self.read_some(until).await {
                self.record(&self.buf.clone());
                return Next::Timeout(self.buf.clone());
            }
        }
    }

    /// The next response, or a panic naming `case`.
    async fn response(&mut self, case: &str) -> RawResponse {
        match self.next(false, WAIT).await {
            Next::Response(r) => r,
            other => panic!("{case}: expected a response, got {other:?}"),
        }
    }

    /// Every response until the server closes the connection (bounded by `wait` in total).
    /// Returns the responses and whether the connection was closed.
    async fn drain(&mut self, wait: Duration) -> (Vec<RawResponse>, Next) {
        let until = Instant::now() + wait;
        let mut out = Vec::new();
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.next(false, left).await {
                Next::Response(r) => out.push(r),
                end => return (out, end),
            }
        }
    }

    /// Whether the server closes the connection within `wait` without sending anything more.
    async fn closes_within(&mut self, wait: Duration) -> Result<(), String> {
        match self.next(false, wait).await {
            Next::Closed => Ok(()),
            other => Err(format!("{other:?}")),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Harness: fake Zoho + proxy + oracle checks
// ---------------------------------------------------------------------------------------------

/// Upstream headers that must never arrive (hop-by-hop, client credentials, trust headers,
/// method overrides).
const NEVER_UPSTREAM: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "http2-settings",
    "expect",
    "cookie",
    "proxy-authorization",
    "forwarded",
    "x-real-ip",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-zoho-account",
];

/// Which protocol the fake API server offers the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upstream {
    /// HTTP/2 (the fake's default, as www.zohoapis.com offers).
    H2,
    /// HTTP/1.1 only: framing headers and connection reuse become visible.
    H1,
}

struct Harness {
    zoho: Zoho,
    proxy: RunningProxy,
    transcript: Arc<Mutex<Vec<u8>>>,
    /// Every token seen upstream, for the leak checks.
    tokens: Mutex<Vec<String>>,
}

impl Harness {
    async fn start(allow: &[&str], extra: &str) -> Harness {
        Harness::start_on(Upstream::H2, allow, extra).await
    }

    /// Starts with the fake's API server offering only `upstream`'s protocol through ALPN.
    async fn start_on(upstream: Upstream, allow: &[&str], extra: &str) -> Harness {
        let zoho = match upstream {
            Upstream::H2 => Zoho::start().await,
            Upstream::H1 => Zoho::start_http1_only().await,
        };
        let mut config = zoho.config(allow, extra);
        if upstream == Upstream::H2 {
            // Keep every exchange on HTTP/2 (the default `auto` sends a lone request over
            // HTTP/1.1), so these cases exercise the HTTP/2 upstream path.
            config = config.replace("\nallow:\n", "\n  upstream_protocol: http2\nallow:\n");
        }
        Harness::start_with(zoho, &config, &[]).await
    }

    async fn start_with(zoho: Zoho, config: &str, env: &[(&str, &str)]) -> Harness {
        let proxy = RunningProxy::spawn_with_env(zoho.dir.path(), config, env).await;
        assert!(
            proxy.wait_ready(Duration::from_secs(15)).await,
            "proxy ready: {}",
            proxy.logs()
        );
        Harness {
            zoho,
            proxy,
            transcript: Arc::default(),
            tokens: Mutex::default(),
        }
    }

    async fn conn(&self) -> Conn {
        Conn::open(self.proxy.proxy, self.transcript.clone()).await
    }

    /// Sends `bytes` on a fresh connection; returns every response until the proxy closes it.
    async fn exchange(&self, bytes: &[u8]) -> (Vec<RawResponse>, Next) {
        let mut c = self.conn().await;
        let _ = c.send(bytes).await;
        c.drain(WAIT).await
    }

    fn upstream(&self) -> Vec<RecordedRequest> {
        self.zoho.control().crm_requests()
    }

    /// Upstream requests whose target contains `marker`.
    fn upstream_with(&self, marker: &str) -> Vec<RecordedRequest> {
        self.upstream()
            .into_iter()
            .filter(|r| r.path_and_query.contains(marker))
            .collect()
    }

    fn clear(&self) {
        self.zoho.control().clear_crm_requests();
    }

    fn authority(&self) -> String {
        self.zoho.fake.api_addr().to_string()
    }

    /// The oracle's "canonical fwd": exactly what the client meant, framed by the proxy.
    fn assert_canonical(
        &self,
        r: &RecordedRequest,
        method: &str,
        target: &str,
        body: &[u8],
        case: &str,
    ) {
        assert_eq!(
            r.method, method,
            "{case}: upstream method is the request-line method"
        );
        assert_eq!(
            r.path_and_query, target,
            "{case}: upstream target is byte-identical to the checked one"
        );
        if r.version == "HTTP/2.0" {
            assert_eq!(
                r.header_count("host"),
                0,
                "{case}: HTTP/2 carries the authority, not a Host header"
            );
        } else {
            assert_eq!(
                r.header_count("host"),
                1,
                "{case}: exactly one Host upstream"
            );
            assert_eq!(
                r.header_str("host"),
                Some(self.authority().as_str()),
                "{case}: Host is the configured upstream"
            );
        }
        assert_eq!(
            r.header_count("authorization"),
            1,
            "{case}: exactly one Authorization upstream"
        );
        let token = r
            .header_str("authorization")
            .and_then(|a| a.strip_prefix("Zoho-oauthtoken "))
            .unwrap_or_else(|| panic!("{case}: Authorization is the proxy's Zoho-oauthtoken"));
        assert!(
            self.zoho.control().is_live(token),
            "{case}: the injected token is a live one (the proxy's)"
        );
        if let Ok(mut t) = self.tokens.lock() {
            if !t.iter().any(|x| x == token) {
                t.push(token.to_string());
            }
        }
        let framing = r.header_count("content-length") + r.header_count("transfer-encoding");
        assert!(
            framing <= 1,
            "{case}: at most one framing header upstream, got {:?}",
            r.headers
        );
        if let Some(te) = r.header_str("transfer-encoding") {
            assert_eq!(
                te, "chunked",
                "{case}: the only transfer coding upstream is the proxy's own chunked"
            );
        }
        for (name, _) in &r.headers {
            // Some servers read `X_Forwarded_For` as `X-Forwarded-For`: compare both spellings.
            let hyphenated = name.replace('_', "-");
            assert!(
                !NEVER_UPSTREAM.contains(&hyphenated.as_str()),
                "{case}: `{name}` never reaches upstream"
            );
            assert!(
                !["content-length", "transfer-encoding", "host", "authorization"].contains(&hyphenated.as_str())
                    || !name.contains('_'),
                "{case}: `{name}` (an underscore spelling of a framing or credential header) never reaches upstream"
            );
        }
        for (name, value) in &r.headers {
            let name = &name.replace('_', "-");
            assert!(
                !name.starts_with("x-forwarded-") && !name.starts_with("proxy-"),
                "{case}: `{name}` never reaches upstream"
            );
            assert!(
                !value.iter().any(|b| matches!(b, b'\r' | b'\n' | 0)),
                "{case}: no CR/LF/NUL in upstream header `{name}`"
            );
        }
        assert!(r.body_complete, "{case}: upstream body read to a clean end");
        assert_eq!(
            r.body_len,
            body.len() as u64,
            "{case}: upstream body length"
        );
        assert_eq!(
            r.body_sha256,
            sha_hex(body),
            "{case}: upstream body byte-identical"
        );
    }

    /// Exactly one upstream request carrying `marker`, canonical.
    fn assert_one_canonical(
        &self,
        marker: &str,
        method: &str,
        target: &str,
        body: &[u8],
        case: &str,
    ) {
        let seen = self.upstream_with(marker);
        assert_eq!(
            seen.len(),
            1,
            "{case}: exactly one upstream request, got {:?}",
            targets(&seen)
        );
        self.assert_canonical(&seen[0], method, target, body, case);
    }

    /// Every secret and token: the leak oracle.
    fn secrets(&self) -> Vec<String> {
        let mut all: Vec<String> = [CLIENT_SECRET, REFRESH_TOKEN, "CS-CANARY", "RTCANARY"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        all.extend(self.zoho.control().live_tokens());
        if let Ok(t) = self.tokens.lock() {
            all.extend(t.iter().cloned());
        }
        all
    }

    /// No secret in the client's bytes, the proxy's output, `/metrics` or `/status`.
    async fn assert_no_leaks(&self) {
        let secrets = self.secrets();
        let tokens: Vec<String> = secrets[4..].to_vec();
        self.proxy.assert_no_secrets(&tokens);
        let transcript = self
            .transcript
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default();
        let c = client();
        let mut admin = String::new();
        for path in ["/metrics", "/status"] {
            let r = c
                .get(self.proxy.admin_url(path))
                .send()
                .await
                .expect("admin endpoint answers");
            assert_eq!(r.status(), 200, "{path} answers");
            admin.push_str(&r.text().await.expect("admin body"));
        }
        for s in &secrets {
            assert!(
                find(&transcript, s.as_bytes()).is_none(),
                "a secret reached a client response"
            );
            assert!(
                !admin.contains(s.as_str()),
                "a secret appears in /metrics or /status"
            );
        }
    }

    /// Counter or gauge value from `/metrics` (sum over all label sets of `name`).
    async fn metric(&self, name: &str) -> f64 {
        self.metric_where(name, "").await
    }

    /// Like [`Harness::metric`], only over label sets containing `labels` (e.g. `listener="proxy"`).
    async fn metric_where(&self, name: &str, labels: &str) -> f64 {
        let text = client()
            .get(self.proxy.admin_url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split(['{', ' ']).next() == Some(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

fn sha_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn targets(reqs: &[RecordedRequest]) -> Vec<String> {
    reqs.iter()
        .map(|r| format!("{} {}", r.method, r.path_and_query))
        .collect()
}

/// A listener that must never see a connection (redirect, Host, absolute-form, proxy traps).
struct Trap {
    listener: std::net::TcpListener,
}

impl Trap {
    fn new() -> Trap {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind trap");
        listener.set_nonblocking(true).expect("nonblocking trap");
        Trap { listener }
    }

    fn addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("trap addr")
    }

    /// Connections that reached the trap so far (completed handshakes wait in the backlog).
    fn connections(&self) -> usize {
        let mut n = 0;
        while self.listener.accept().is_ok() {
            n += 1;
        }
        n
    }
}

/// The soft open-files limit of this process after trying to raise it to `want` (within the
/// hard limit) with `prlimit`; children spawned afterwards inherit it.
fn raise_fd_limit(want: u64) -> u64 {
    let read = || -> (u64, u64) {
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or_default();
        let mut nums = line.split_whitespace().filter_map(|w| {
            w.parse::<u64>()
                .ok()
                .or((w == "unlimited").then_some(u64::MAX))
        });
        (nums.next().unwrap_or(0), nums.next().unwrap_or(0))
    };
    let (soft, hard) = read();
    if soft < want {
        let target = want.min(hard);
        let _ = std::process::Command::new("prlimit")
            .arg(format!("--pid={}", std::process::id()))
            .arg(format!("--nofile={target}:{hard}"))
            .status();
    }
    read().0
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").into_bytes()
}

// ---------------------------------------------------------------------------------------------
// A. Allowlist bypass through the path
// ---------------------------------------------------------------------------------------------

/// What must happen to a request target.
#[derive(Debug, Clone)]
enum Expect {
    /// A 4xx from the proxy (or hyper), nothing upstream.
    Refused,
    /// Forwarded once, canonical, with exactly this target.
    Forwarded(String),
}

fn path_cases(trap: SocketAddr) -> Vec<(&'static str, String, Expect)> {
    use Expect::*;
    let r = |id: &'static str, t: &str| (id, t.to_string(), Refused);
    let f = |id: &'static str, t: &str| (id, t.to_string(), Forwarded(t.to_string()));
    vec![
        f("baseline", "/crm/v8/Leads"),
        f("baseline v7", "/crm/v7/Leads"),
        f("record", &format!("/crm/v8/Leads/{LEAD}")),
        r("A1 dot-dot", "/crm/v8/Leads/../Contacts"),
        r("A1 dot-dot v7", "/crm/v7/Leads/../Contacts"),
        r("A1 trailing dot-dot", "/crm/v8/Leads/.."),
        r("A1 dot", "/crm/v8/./Leads"),
        r(
            "A1 dot-dot to root",
            "/crm/v8/Leads/../../../books/v3/invoices",
        ),
        r("A2 %2e%2e", "/crm/v8/Leads/%2e%2e/Contacts"),
        r("A2 %2E%2E", "/crm/v8/Leads/%2E%2E/Contacts"),
        r("A2 .%2e", "/crm/v8/Leads/.%2e/Contacts"),
        r("A2 %2e.", "/crm/v8/Leads/%2e./Contacts"),
        r("A2 %2e", "/crm/v8/%2e/Contacts"),
        r("A3 %2F", "/crm/v8/Leads%2F..%2FContacts"),
        r("A3 %2f", "/crm/v8/Leads%2fContacts"),
        r("A3 %5C", "/crm/v8/Leads%5C..%5CContacts"),
        r("A3 encoded prefix", "/crm%2Fv8%2FLeads"),
        r("A4 %252F", "/crm/v8/Leads%252F..%252FContacts"),
        r("A4 %254C", "/crm/v8/%254Ceads"),
        r("A4 %25%32%65", "/crm/v8/Leads/%25%32%65%25%32%65/Contacts"),
        r("A5 backslash dot-dot", "/crm/v8/Leads\\..\\Contacts"),
        r("A5 backslash separators", "/crm\\v8\\Leads"),
        r("A5 trailing backslash", "/crm/v8/Leads\\"),
        r("A6 inner //", "/crm/v8//Leads"),
        r("A6 leading //", "//crm/v8/Leads"),
        r("A6 /crm//", "/crm//v8/Leads"),
        r("A6 trailing //", "/crm/v8/Leads//"),
        r("A6 ///", "///crm/v8/Leads"),
        r("A7 trailing slash", "/crm/v8/Leads/"),
        r("A7 trailing /.", "/crm/v8/Leads/."),
        r("A7 /.", "/."),
        r("A7 /./", "/crm/v8/Leads/./"),
        r("A8 LeadsX", "/crm/v8/LeadsX"),
        r("A8 Leads_Archive", "/crm/v8/Leads_Archive"),
        r("A8 Leads.json", "/crm/v8/Leads.json"),
        r("A8 Leads%20", "/crm/v8/Leads%20"),
        r("A8 related list", &format!("/crm/v8/Leads/{LEAD}/Contacts")),
        r("A8 denied module", "/crm/v8/Contacts"),
        r("A8 denied record", "/crm/v8/Contacts/1"),
        f("A9 leads", "/crm/v8/leads"),
        f("A9 LEADS", "/crm/v8/LEADS"),
        f("A9 lEaDs", "/crm/v8/lEaDs"),
        r("A9 CONTACTS", "/crm/v8/CONTACTS"),
        r("A9 contacts", "/crm/v8/contacts"),
        r("A9 cOnTaCtS", "/crm/v8/cOnTaCtS"),
        r("A9 /CRM", "/CRM/v8/Leads"),
        r("A9 /V8", "/crm/V8/Leads"),
        r("A9 /Crm", "/Crm/v8/Leads"),
        r("A10 %61", "/crm/v8/Le%61ds"),
        r("A10 %4C", "/crm/v8/%4Ceads"),
        r("A10 %43", "/crm/v8/%43ontacts"),
        r("A11 ;x=1", "/crm/v8/Leads;x=1"),
        r("A11 ;/..", "/crm/v8/Leads;/../Contacts"),
        r("A11 ..;", "/crm/v8/..;/v8/Contacts"),
        r("A11 trailing ;", "/crm/v8/Leads;"),
        r("A12 fragment to Leads", "/crm/v8/Contacts#/../Leads"),
        (
            "A12 fragment from Leads",
            "/crm/v8/Leads#/../Contacts".to_string(),
            Forwarded("/crm/v8/Leads".to_string()),
        ),
        r("A12 %23", "/crm/v8/Leads%23/../Contacts"),
        r("A13 %C0%AF", "/crm/v8/Leads%C0%AF..%C0%AFContacts"),
        r("A13 %C0%AE", "/crm/v8/Leads/%C0%AE%C0%AE/Contacts"),
        r(
            "A13 full-width slash",
            "/crm/v8/Leads%EF%BC%8F..%EF%BC%8FContacts",
        ),
        r("A13 full-width L", "/crm/v8/%EF%BC%ACeads"),
        r("A14 %00", "/crm/v8/Leads%00"),
        r("A14 %0d%0a", "/crm/v8/Leads%0d%0aX:1"),
        r("A14 %09", "/crm/v8/Leads%09"),
        r("A15 %3F", "/crm/v8/Leads%3F/../../Contacts"),
        r("A15 %3f", "/crm/v8/Leads%3f"),
        r("A16 absolute evil", "http://evil.example/crm/v8/Leads"),
        r(
            "A16 absolute other DC",
            "https://www.zohoapis.eu/crm/v8/Leads",
        ),
        (
            "A16 absolute userinfo trap",
            format!("http://user@{trap}/crm/v8/Leads"),
            Refused,
        ),
        (
            "A16 absolute trap",
            format!("http://{trap}/crm/v8/Leads"),
            Refused,
        ),
        r("A16 absolute no path", "http://evil.example"),
        r("A17 authority-form", "evil.example:443"),
        r("A17 asterisk", "*"),
        r("A18 books", "/books/v3/invoices"),
        r("A18 oauth", "/oauth/v2/token"),
        r("A18 bulk", "/crm/bulk/v8/read"),
        r("A18 root", "/"),
        r("A18 /crm", "/crm"),
        r("A18 no module", "/crm/v8"),
        r("A18 v1", "/crm/v1/Leads"),
        r("A19 _method", "/crm/v8/Leads?_method=DELETE"),
        r(
            "A19 x-http-method-override",
            "/crm/v8/Leads?x-http-method-override=DELETE",
        ),
        r(
            "A19 X-HTTP-Method-Override",
            "/crm/v8/Leads?X-HTTP-Method-Override=DELETE",
        ),
        r("A19 %5Fmethod", "/crm/v8/Leads?%5Fmethod=DELETE"),
        r("A19 %255Fmethod", "/crm/v8/Leads?%255Fmethod=DELETE"),
        r(
            "A19 after a field",
            "/crm/v8/Leads?fields=Email&_method=DELETE",
        ),
        r("A19 semicolon", "/crm/v8/Leads?fields=Email;_method=DELETE"),
        r("A19 x_http_method", "/crm/v8/Leads?x_http_method=DELETE"),
        f(
            "A19 legitimate query",
            "/crm/v8/Leads?fields=Last_Name,Email&page=1&per_page=2",
        ),
        r(
            "A18 search needs ZohoSearch",
            "/crm/v8/Leads/search?criteria=(Last_Name:equals:Lovelace)",
        ),
        f(
            "A19 odd but legal query",
            "/crm/v8/Leads?fields=Last_Name&cvid=(1)&x=%2e%2e&y=a/b",
        ),
    ]
}

#[tokio::test]
async fn a_path_variants_are_refused_or_forwarded_unchanged() {
    let h = Harness::start(ALLOW, FAST).await;
    let trap = Trap::new();
    let cases = path_cases(trap.addr());
    assert!(
        cases.len() >= 90,
        "the catalogue's A section is covered ({} cases)",
        cases.len()
    );
    let mut raw = vec![("A5 raw bytes 0xc0 0xaf", b"GET /crm/v8/Leads\xc0\xaf..\xc0\xafContacts HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec())];
    raw.push((
        "A14 raw tab",
        b"GET /crm/v8/Leads\t HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".to_vec(),
    ));
    raw.push((
        "A17 GET absolute without path",
        b"GET http://evil.example HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n"
            .to_vec(),
    ));
    for (case, target, expect) in &cases {
        h.clear();
        let (responses, _) = h.exchange(&get(target)).await;
        assert_eq!(
            responses.len(),
            1,
            "{case} ({target}): exactly one response"
        );
        let resp = &responses[0];
        match expect {
            Expect::Refused => {
                assert!(
                    (400..500).contains(&resp.status),
                    "{case} ({target}): refused with a 4xx, got {}",
                    resp.status
                );
                let seen = h.upstream();
                assert!(
                    seen.is_empty(),
                    "{case} ({target}): nothing forwarded, got {:?}",
                    targets(&seen)
                );
            }
            Expect::Forwarded(fwd) => {
                assert!(
                    resp.proxy_error().is_none(),
                    "{case} ({target}): forwarded, not refused: {} {:?}",
                    resp.status,
                    resp.json()
                );
                let seen = h.upstream();
                assert_eq!(
                    seen.len(),
                    1,
                    "{case} ({target}): forwarded once, got {:?}",
                    targets(&seen)
                );
                h.assert_canonical(&seen[0], "GET", fwd, b"", case);
            }
        }
    }
    for (case, bytes) in raw {
        h.clear();
        let (responses, _) = h.exchange(&bytes).await;
        assert!(
            responses.iter().all(|r| (400..500).contains(&r.status)),
            "{case}: only 4xx answers, got {:?}",
            responses.iter().map(|r| r.status).collect::<Vec<_>>()
        );
        assert!(h.upstream().is_empty(), "{case}: nothing forwarded");
    }
    assert_eq!(
        trap.connections(),
        0,
        "A16: an absolute-form authority never gets a connection"
    );
    h.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// B. Method tricks
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn b_method_tricks_never_widen_the_decision() {
    let h = Harness::start(ALLOW, FAST).await;
    let refused: &[(&str, &[u8])] = &[
        ("B3 lower-case get", b"get /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        ("B3 FOO", b"FOO /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        ("B3 PROPFIND", b"PROPFIND /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        ("B3 MOVE", b"MOVE /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nDestination: /crm/v8/Contacts\r\nConnection: close\r\n\r\n"),
        ("B3 Get", b"Get /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        ("B4 TRACE", b"TRACE /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        ("B5 CONNECT", b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\nConnection: close\r\n\r\n"),
        ("B5 CONNECT path", b"CONNECT /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        ("B6 OPTIONS", b"OPTIONS /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nOrigin: https://evil.example\r\nAccess-Control-Request-Method: DELETE\r\nConnection: close\r\n\r\n"),
        ("B6 OPTIONS *", b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        ("B2 HEAD denied", b"HEAD /crm/v8/Contacts HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        ("B1 PATCH denied", b"PATCH /crm/v8/Contacts/1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"),
        ("B1 DELETE denied", b"DELETE /crm/v8/Contacts/1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"),
        ("B1 override header cannot downgrade", b"DELETE /crm/v8/Contacts/1 HTTP/1.1\r\nHost: localhost\r\nX-HTTP-Method-Override: GET\r\nConnection: close\r\n\r\n"),
    ];
    for (case, bytes) in refused {
        h.clear();
        let mut c = h.conn().await;
        let _ = c.send(bytes).await;
        let head = case.starts_with("B2");
        let resp = match c.next(head, WAIT).await {
            Next::Response(r) => r,
            Next::Closed => {
                assert!(h.upstream().is_empty(), "{case}: nothing forwarded");
                continue;
            }
            other => panic!("{case}: a response or a close, got {other:?}"),
        };
        assert!(
            matches!(resp.status, 400 | 403 | 405),
            "{case}: 400/403/405, got {}",
            resp.status
        );
        assert!(
            !(200..300).contains(&resp.status),
            "{case}: never a 2xx (CONNECT would become a tunnel)"
        );
        assert!(
            c.closes_within(WAIT).await.is_ok(),
            "{case}: connection closed after the refusal"
        );
        assert!(
            h.upstream().is_empty(),
            "{case}: nothing forwarded, got {:?}",
            targets(&h.upstream())
        );
    }

    // B2: HEAD on an allowed module is forwarded as HEAD (same scope as GET).
    h.clear();
    let mut c = h.conn().await;
    let _ = c
        .send(
            b"HEAD /crm/v8/Leads?case=b2 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        )
        .await;
    let resp = match c.next(true, WAIT).await {
        Next::Response(r) => r,
        other => panic!("B2 HEAD allowed: a response, got {other:?}"),
    };
    assert!(resp.proxy_error().is_none(), "B2 HEAD allowed: forwarded");
    h.assert_one_canonical(
        "case=b2",
        "HEAD",
        "/crm/v8/Leads?case=b2",
        b"",
        "B2 HEAD allowed",
    );

    // B1: method-override headers are stripped; the request-line method decides and is sent.
    for (i, name) in [
        "X-HTTP-Method-Override",
        "X-HTTP-Method",
        "X-Method-Override",
    ]
    .iter()
    .enumerate()
    {
        let case = format!("B1 {name}");
        let target = format!("/crm/v8/Leads?__fake=echo&case=b1-{i}");
        let req = format!("POST {target} HTTP/1.1\r\nHost: localhost\r\n{name}: DELETE\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}");
        let (responses, _) = h.exchange(req.as_bytes()).await;
        assert_eq!(responses.len(), 1, "{case}: one response");
        assert_eq!(responses[0].status, 200, "{case}: forwarded");
        h.assert_one_canonical(&format!("case=b1-{i}"), "POST", &target, b"{}", &case);
    }

    // B7: bodies on GET and DELETE are forwarded intact (never stripped while CL stays).
    for (method, id) in [("GET", "b7-get"), ("DELETE", "b7-delete")] {
        let target = format!("/crm/v8/Leads/{LEAD}?__fake=echo&case={id}");
        let req = format!("{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi");
        let (responses, _) = h.exchange(req.as_bytes()).await;
        assert_eq!(responses.len(), 1, "B7 {method}: one response");
        if responses[0].status == 400 {
            assert!(
                h.upstream_with(id).is_empty(),
                "B7 {method}: refused, nothing forwarded"
            );
        } else {
            h.assert_one_canonical(
                id,
                method,
                &target,
                b"hi",
                &format!("B7 {method} with a body"),
            );
        }
    }
    h.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// C. Semantic smuggling inside allowed endpoints
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn c_bodies_naming_denied_modules_are_refused() {
    let allow = &["ZohoCRM.modules.leads.READ", "ZohoCRM.coql.READ"];
    let h = Harness::start(allow, FAST).await;
    let coql = |q: &str| serde_json::json!({ "select_query": q }).to_string();
    let cases: Vec<(&str, &str, String, bool)> = vec![
        ("C1 coql Leads", "/crm/v8/coql", coql("select Last_Name from Leads where id is not null"), true),
        ("C1 coql Contacts", "/crm/v8/coql", coql("select Email from Contacts where id is not null"), false),
        ("C1 coql FROM upper", "/crm/v8/coql", coql("SELECT Email FROM Contacts WHERE id is not null"), false),
        ("C1 coql lower module", "/crm/v8/coql", coql("select Email from contacts where id is not null"), false),
        ("C1 coql newline", "/crm/v8/coql", coql("select Email from\n\tContacts\nwhere id is not null"), false),
        ("C1 coql lookup into another module", "/crm/v8/coql", coql("select Last_Name, Converted_Account.Account_Name from Leads where id is not null"), false),
        ("C1 coql join", "/crm/v8/coql", coql("select Last_Name from Leads join Contacts on Leads.Email = Contacts.Email"), false),
        ("C1 coql comment", "/crm/v8/coql", coql("select Email from /*Leads*/ Contacts where id is not null"), false),
        ("C1 coql unicode escape", "/crm/v8/coql", r#"{"select_query":"select Email from \u0043ontacts where id is not null"}"#.to_string(), false),
        ("C1 coql duplicate key", "/crm/v8/coql", r#"{"select_query":"select Last_Name from Leads where id is not null","select_query":"select Email from Contacts where id is not null"}"#.to_string(), false),
        ("C1 coql malformed", "/crm/v8/coql", "{\"select_query\":".to_string(), false),
        ("C1 coql missing query", "/crm/v8/coql", "{}".to_string(), false),
        ("C1 coql not an object", "/crm/v8/coql", "[\"select Email from Contacts\"]".to_string(), false),
        ("C1 coql oversized", "/crm/v8/coql", coql(&format!("select Last_Name from Leads where Last_Name = '{}'", "x".repeat(2 << 20))), false),
        ("C2 composite", "/crm/v8/__composite_requests", r#"{"__composite_requests":[{"method":"DELETE","uri":"/crm/v8/Contacts/1"}]}"#.to_string(), false),
        ("C3 bulk read", "/crm/bulk/v8/read", r#"{"query":{"module":{"api_name":"Contacts"}}}"#.to_string(), false),
        ("C3 mass delete through POST", "/crm/v8/Leads/actions/mass_delete", r#"{"ids":["1"]}"#.to_string(), false),
    ];
    for (case, path, body, allowed) in &cases {
        h.clear();
        let req = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        let (responses, _) = h.exchange(req.as_bytes()).await;
        let status = responses.first().map(|r| r.status);
        if *allowed {
            assert!(
                responses.first().is_some_and(|r| r.proxy_error().is_none()),
                "{case}: forwarded, got {status:?}"
            );
            let seen = h.upstream();
            assert_eq!(seen.len(), 1, "{case}: forwarded once");
            h.assert_canonical(&seen[0], "POST", path, body.as_bytes(), case);
        } else {
            assert!(
                status.is_none_or(|s| (400..500).contains(&s)),
                "{case}: refused, got {status:?}"
            );
            assert!(
                h.upstream().is_empty(),
                "{case}: nothing forwarded, got {:?}",
                targets(&h.upstream())
            );
        }
    }
    h.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// D. Token exfiltration and header handling
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn d_header_abuse_never_reaches_upstream_and_never_moves_the_token() {
    let zoho = Zoho::start().await;
    // D7: the token endpoint names a foreign api_domain; the configured upstream must be kept.
    let steer = Trap::new();
    zoho.control()
        .set_api_domain(&format!("https://{}", steer.addr()));
    let config = zoho.config(ALLOW, FAST);
    let h = Harness::start_with(zoho, &config, &[]).await;
    let trap = Trap::new();
    let body = r#"{"data":[{"Last_Name":"Lovelace"}]}"#;
    let cases: Vec<(&str, String, &str)> = vec![
        ("D1 two client Authorization", "Authorization: Zoho-oauthtoken ATTACKER\r\nauthorization: Bearer x\r\n".into(), ""),
        ("D2 Proxy-Authorization and Cookie", "Proxy-Authorization: Basic eDp5\r\nCookie: ZCSRF=1; session=2\r\nCookie: other=3\r\n".into(), ""),
        ("D3 Connection names Authorization", "Connection: keep-alive, Authorization, X-Forwarded-For\r\nX-Forwarded-For: 1.2.3.4\r\n".into(), ""),
        ("D3 Connection names Content-Length", "Connection: close, Content-Length\r\n".into(), body),
        ("D3 Connection names Host", "Connection: Host, TE\r\nTE: trailers\r\n".into(), ""),
        ("D3 hop-by-hop set", "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-Foo\r\nUpgrade: websocket\r\n".into(), ""),
        ("D4 Host steering", format!("Host: {}\r\n", trap.addr()), ""),
        ("D4 two Host", format!("Host: {}\r\nHost: evil.example\r\n", trap.addr()), ""),
        ("D4 Host with path", "Host: evil.example/a?b\r\n".into(), ""),
        ("D5 forwarding headers", "X-Forwarded-For: 1.2.3.4\r\nForwarded: for=1.2.3.4;host=evil.example\r\nX-Real-IP: 1.2.3.4\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Port: 80\r\n".into(), ""),
        ("D account header", "X-Zoho-Account: other\r\n".into(), ""),
        (
            "D5 underscore spellings",
            "X_Forwarded_For: 1.2.3.4\r\nX_HTTP_Method_Override: DELETE\r\nx_method_override: DELETE\r\nProxy_Authorization: Basic eDp5\r\nX_Real_IP: 1.2.3.4\r\nX_Forwarded_Host: evil.example\r\n".into(),
            "",
        ),
        (
            "E14 underscore framing and credentials",
            "Content_Length: 40\r\nTransfer_Encoding: chunked\r\nAuthorization_: x\r\nX_Zoho_Account: other\r\n".into(),
            body,
        ),
    ];
    for (i, (case, extra, body)) in cases.iter().enumerate() {
        let marker = format!("case=d{i}x");
        let target = format!("/crm/v8/Leads?__fake=echo&{marker}");
        let host = if extra.starts_with("Host:") {
            ""
        } else {
            "Host: localhost\r\n"
        };
        let method = if body.is_empty() { "GET" } else { "POST" };
        let framing = if body.is_empty() {
            String::new()
        } else {
            format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                body.len()
            )
        };
        let close = if extra.contains("Connection:") {
            ""
        } else {
            "Connection: close\r\n"
        };
        let req = format!("{method} {target} HTTP/1.1\r\n{host}{extra}{framing}{close}\r\n{body}");
        let (responses, _) = h.exchange(req.as_bytes()).await;
        assert!(!responses.is_empty(), "{case}: a response");
        if case.contains("two Host") || case.contains("Host with path") {
            // Two Host lines, or a Host that is not host[:port]: refused by the Host rule
            // (K10/K11), never "the first" or "the last".
            assert_eq!(responses[0].status, 400, "{case}: refused");
            assert!(
                h.upstream_with(&marker).is_empty(),
                "{case}: refused, nothing forwarded"
            );
            continue;
        }
        assert_eq!(
            responses[0].status,
            200,
            "{case}: forwarded with the proxy's token: {:?}",
            responses[0].json()
        );
        h.assert_one_canonical(&marker, method, &target, body.as_bytes(), case);
        let echoed = responses[0].json();
        assert_eq!(
            echoed["method"], method,
            "{case}: the fake echoes the method it got"
        );
    }

    // D4: a missing Host (HTTP/1.0) still gets the configured one.
    let (responses, _) = h
        .exchange(b"GET /crm/v8/Leads?__fake=echo&case=d-nohost HTTP/1.0\r\n\r\n")
        .await;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(200),
        "D4 missing Host: forwarded"
    );
    h.assert_one_canonical(
        "case=d-nohost",
        "GET",
        "/crm/v8/Leads?__fake=echo&case=d-nohost",
        b"",
        "D4 missing Host",
    );

    // D9: an `Authorization` trailer (and any trailer) is never forwarded.
    let target = "/crm/v8/Leads?__fake=echo&case=trailer";
    let req = format!("POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nTrailer: Authorization, X-Trailer\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\nAuthorization: Bearer evil\r\nX-Trailer: 1\r\n\r\n");
    let (responses, _) = h.exchange(req.as_bytes()).await;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(200),
        "D9 trailers: the body is forwarded"
    );
    h.assert_one_canonical(
        "case=trailer",
        "POST",
        target,
        b"hello",
        "D9 Authorization trailer",
    );
    let seen = h.upstream_with("case=trailer");
    assert_eq!(
        seen[0].header_count("x-trailer"),
        0,
        "D9: no trailer becomes a header"
    );
    let echoed = responses[0].json().to_string();
    assert!(
        !echoed.contains("evil"),
        "D9: the trailer's credential reached nobody"
    );

    // D2: Set-Cookie from Zoho is not handed to local clients.
    let (responses, _) = h.exchange(&get("/crm/v8/Leads?__fake=set_cookie")).await;
    assert_eq!(
        responses.first().map(|r| r.header_count("set-cookie")),
        Some(0),
        "D2: Set-Cookie stripped"
    );

    // D6: upstream redirects come back unfollowed, whatever the status and target.
    for status in [301, 302, 303, 307, 308] {
        h.clear();
        let location = if status % 2 == 0 {
            format!("http://{}/steal", trap.addr())
        } else {
            format!("https://{}/crm/v8/Contacts", h.authority())
        };
        let (responses, _) = h
            .exchange(&get(&format!(
                "/crm/v8/Leads?__fake=redirect&status={status}&location={location}"
            )))
            .await;
        assert_eq!(
            responses.first().map(|r| r.status),
            Some(status),
            "D6 {status}: returned to the client"
        );
        assert_eq!(
            h.upstream().len(),
            1,
            "D6 {status}: exactly one upstream request (not followed)"
        );
    }
    assert_eq!(
        trap.connections(),
        0,
        "D4/D6: the Host or redirect target got no connection"
    );
    assert_eq!(
        steer.connections(),
        0,
        "D7: a foreign api_domain from the token response is never used"
    );
    h.assert_no_leaks().await;
}

#[tokio::test]
async fn d_token_with_crlf_or_10kb_is_refused_never_injected() {
    let cases = [
        ("D10 CR/LF", "{\"access_token\":\"1000.abc\\r\\nX-Evil: 1\",\"expires_in\":3600,\"token_type\":\"Bearer\"}".to_string()),
        ("D10 10 KB", format!("{{\"access_token\":\"1000.{}\",\"expires_in\":3600,\"token_type\":\"Bearer\"}}", "a".repeat(10 * 1024))),
        ("D10 NUL", "{\"access_token\":\"1000.abc\\u0000def\",\"expires_in\":3600}".to_string()),
    ];
    for (case, body) in cases {
        let zoho = Zoho::start().await;
        zoho.control()
            .set_token_behavior(TokenBehavior::Raw { status: 200, body });
        let proxy = RunningProxy::spawn(zoho.dir.path(), &zoho.config(ALLOW, FAST)).await;
        let transcript = Arc::new(Mutex::new(Vec::new()));
        let mut c = Conn::open(proxy.proxy, transcript.clone()).await;
        let _ = c.send(&get("/crm/v8/Leads")).await;
        let resp = c.response(case).await;
        assert_eq!(
            resp.status, 503,
            "{case}: an unusable token response means 503"
        );
        assert_eq!(
            resp.proxy_error(),
            Some("PROXY_TOKEN_UNAVAILABLE"),
            "{case}: marked as the proxy's"
        );
        assert!(
            zoho.control().token_requests() >= 1,
            "{case}: the token endpoint was asked"
        );
        assert!(
            zoho.control().crm_requests().is_empty(),
            "{case}: nothing injected upstream"
        );
        let t = transcript.lock().map(|t| t.clone()).unwrap_or_default();
        assert!(
            find(&t, b"X-Evil").is_none() && find(&t, b"aaaaaaaaaaaaaaaa").is_none(),
            "{case}: the token value is not echoed"
        );
        let logs = proxy.logs();
        assert!(
            !logs.contains("X-Evil") && !logs.contains("aaaaaaaaaaaaaaaa"),
            "{case}: the token value is not logged"
        );
        assert!(!logs.contains("panicked"), "{case}: no panic");
        proxy.assert_no_secrets(&[]);
    }
}

// ---------------------------------------------------------------------------------------------
// E. Smuggling and desync
// ---------------------------------------------------------------------------------------------

/// A request that would be allowed if it were ever parsed: its marker must never reach upstream.
fn inner(n: usize) -> String {
    format!("DELETE /crm/v8/Leads/6660{n}?__fake=echo&inner=smuggled{n}x HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
}

/// One framing case: the outer POST's header block (after the request line) and its body bytes,
/// followed by a pipelined inner request. Accepted outcomes: a refusal with nothing forwarded,
/// or one canonical forward carrying one of `bodies`. When the framing is unambiguous (`ka`),
/// the inner request is a legitimate pipelined request and may be answered on its own; when it
/// is ambiguous (CL and TE together) the connection must close after the outer response.
struct Framing {
    name: &'static str,
    headers: &'static str,
    body: &'static str,
    version: &'static str,
    bodies: &'static [&'static str],
    ka: bool,
}

const FRAMING: &[Framing] = &[
    Framing {
        name: "E1 CL.TE",
        headers: "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        body: "0\r\n\r\n",
        version: "1.1",
        bodies: &[""],
        ka: false,
    },
    Framing {
        name: "E1 CL.TE, CL second",
        headers: "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n",
        body: "0\r\n\r\n",
        version: "1.1",
        bodies: &[""],
        ka: false,
    },
    Framing {
        name: "E2 TE.CL",
        headers: "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
        body: "8\r\nSMUGGLED\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &["SMUGGLED"],
        ka: false,
    },
    Framing {
        name: "E3 TE tab",
        headers: "Transfer-Encoding:\tchunked\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &["hello"],
        ka: true,
    },
    Framing {
        name: "E3 TE leading space (obs-fold)",
        headers: "X-A: b\r\n Transfer-Encoding: chunked\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E3 TE space before colon",
        headers: "Transfer-Encoding : chunked\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E3 TE xchunked",
        headers: "Transfer-Encoding: xchunked\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E3 TE chunked, identity",
        headers: "Transfer-Encoding: chunked, identity\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E3 TE vertical tab",
        headers: "Transfer-Encoding:\x0bchunked\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E3 TE leading comma",
        headers: "Transfer-Encoding: , chunked\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &["hello"],
        ka: true,
    },
    Framing {
        name: "E3 TE Chunked",
        headers: "Transfer-Encoding: Chunked\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &["hello"],
        ka: true,
    },
    Framing {
        name: "E3 TE twice",
        headers: "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &["hello"],
        ka: true,
    },
    Framing {
        name: "E3 TE then identity",
        headers: "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E3 TE gzip, chunked",
        headers: "Transfer-Encoding: gzip, chunked\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &["hello"],
        ka: true,
    },
    Framing {
        name: "E3 TE after bare LF",
        headers: "X: X\nTransfer-Encoding: chunked\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &["hello"],
        ka: true,
    },
    Framing {
        name: "E3 TE chunked + CL",
        headers: "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &["hello"],
        ka: false,
    },
    Framing {
        name: "E4 CL +5",
        headers: "Content-Length: +5\r\n",
        body: "hello",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E4 CL 0x5",
        headers: "Content-Length: 0x5\r\n",
        body: "hello",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E4 CL -1",
        headers: "Content-Length: -1\r\n",
        body: "hello",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E4 CL leading space",
        headers: "Content-Length:  5\r\n",
        body: "hello",
        version: "1.1",
        bodies: &["hello"],
        ka: true,
    },
    Framing {
        name: "E4 CL list 5, 6",
        headers: "Content-Length: 5, 6\r\n",
        body: "hello",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E4 CL list 5, 5",
        headers: "Content-Length: 5, 5\r\n",
        body: "hello",
        version: "1.1",
        bodies: &["hello"],
        ka: true,
    },
    Framing {
        name: "E4 CL 5 5",
        headers: "Content-Length: 5 5\r\n",
        body: "hello",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E4 two different CL",
        headers: "Content-Length: 5\r\nContent-Length: 6\r\n",
        body: "hello",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E4 two equal CL",
        headers: "Content-Length: 5\r\nContent-Length: 5\r\n",
        body: "hello",
        version: "1.1",
        bodies: &["hello"],
        ka: true,
    },
    Framing {
        name: "E4 empty CL then CL",
        headers: "Content-Length:\r\nContent-Length: 5\r\n",
        body: "hello",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E4 CL 005",
        headers: "Content-Length: 005\r\n",
        body: "hello",
        version: "1.1",
        bodies: &["hello"],
        ka: true,
    },
    Framing {
        name: "E4 CL overflow",
        headers: "Content-Length: 99999999999999999999999\r\n",
        body: "hello",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E5 HTTP/1.0 chunked",
        headers: "Transfer-Encoding: chunked\r\n",
        body: "5\r\nhello\r\n0\r\n\r\n",
        version: "1.0",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E6 chunk size overflow",
        headers: "Transfer-Encoding: chunked\r\n",
        body: "FFFFFFFFFFFFFFFFF3\r\nabc\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E6 chunk size leading space",
        headers: "Transfer-Encoding: chunked\r\n",
        body: " 3\r\nabc\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E6 bare LF in extension",
        headers: "Transfer-Encoding: chunked\r\n",
        body: "3;x\nabc\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E6 data without CRLF",
        headers: "Transfer-Encoding: chunked\r\n",
        body: "3\r\nabcX0\r\n\r\n",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E6 last chunk bare LF",
        headers: "Transfer-Encoding: chunked\r\n",
        body: "3\r\nabc\r\n0\n\r\n",
        version: "1.1",
        bodies: &["abc"],
        ka: true,
    },
    Framing {
        name: "E6 chunk size not hex",
        headers: "Transfer-Encoding: chunked\r\n",
        body: "g\r\nabc\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
    Framing {
        name: "E6 chunk longer than declared",
        headers: "Transfer-Encoding: chunked\r\n",
        body: "2\r\nabc\r\n0\r\n\r\n",
        version: "1.1",
        bodies: &[],
        ka: false,
    },
];

#[tokio::test]
async fn e_framing_desync_never_smuggles_a_request() {
    for upstream in [Upstream::H2, Upstream::H1] {
        framing_cases(upstream).await;
    }
}

async fn framing_cases(upstream: Upstream) {
    let h = Harness::start_on(upstream, ALLOW, FAST).await;
    let long_ext = format!("3;{}\r\nabc\r\n0\r\n\r\n", "x".repeat(20 * 1024));
    let mut work = Vec::new();
    for (n, f) in FRAMING.iter().enumerate() {
        let target = format!("/crm/v8/Leads?__fake=echo&case=frame{n}x");
        let req = format!(
            "POST {target} HTTP/{}\r\nHost: localhost\r\nContent-Type: text/plain\r\n{}\r\n{}{}",
            f.version,
            f.headers,
            f.body,
            inner(n)
        );
        work.push((n, f.name, target, req.into_bytes(), f.bodies.to_vec(), f.ka));
    }
    let n = FRAMING.len();
    let target = format!("/crm/v8/Leads?__fake=echo&case=frame{n}x");
    let req = format!(
        "POST {target} HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n{long_ext}{}",
        inner(n)
    );
    work.push((
        n,
        "E6 20 KB chunk extension",
        target,
        req.into_bytes(),
        vec!["abc"],
        true,
    ));

    let results =
        futures_util::future::join_all(work.iter().map(|(_, _, _, bytes, _, _)| h.exchange(bytes)))
            .await;
    for ((n, name, target, _, bodies, ka), (responses, end)) in work.iter().zip(results) {
        let marker = format!("case=frame{n}x");
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        assert!(
            !matches!(end, Next::Timeout(_)),
            "{name}: the proxy closed the connection (no hang), statuses {statuses:?}"
        );
        assert!(
            !matches!(end, Next::Truncated(_)),
            "{name}: no truncated response"
        );
        eprintln!("{upstream:?} {name}: {statuses:?}");
        let name = &format!("{name} ({upstream:?} upstream)");
        let most = if *ka { 2 } else { 1 };
        assert!(
            responses.len() <= most,
            "{name}: at most {most} response(s); an ambiguous framing must close: {statuses:?}"
        );
        let seen = h.upstream_with(&marker);
        match responses.first() {
            Some(r) if r.status == 200 => {
                assert!(!bodies.is_empty(), "{name}: must be refused, got 200");
                assert_eq!(seen.len(), 1, "{name}: forwarded once");
                let got = &seen[0];
                let body = bodies
                    .iter()
                    .find(|b| got.body_sha256 == sha_hex(b.as_bytes()))
                    .copied();
                let body = body.unwrap_or_else(|| {
                    panic!(
                        "{name}: forwarded body is one of {bodies:?} (len {})",
                        got.body_len
                    )
                });
                h.assert_canonical(got, "POST", target, body.as_bytes(), name);
            }
            Some(r) => {
                assert!(
                    (400..500).contains(&r.status),
                    "{name}: refused with a 4xx, got {}",
                    r.status
                );
                assert!(
                    seen.is_empty(),
                    "{name}: refused, so nothing forwarded; got {:?}",
                    targets(&seen)
                );
            }
            None => assert!(
                seen.is_empty(),
                "{name}: closed without an answer, nothing forwarded"
            ),
        }
        // The inner request reaches upstream only as its own, answered, pipelined request.
        let inner_seen = h.upstream_with(&format!("inner=smuggled{n}x"));
        let answered_inner = usize::from(responses.len() == 2);
        assert_eq!(
            inner_seen.len(),
            answered_inner,
            "{name}: the inner request reached upstream only if the client got its answer"
        );
        if let Some(r) = inner_seen.first() {
            h.assert_canonical(r, "DELETE", &r.path_and_query.clone(), b"", name);
        }
    }
    h.assert_no_leaks().await;
}

#[tokio::test]
async fn e_early_answers_expect_upgrade_and_pipelining_stay_in_sync() {
    let h = Harness::start(ALLOW, FAST).await;

    // E7: a denied request whose body is a whole request, then a pipelined allowed request.
    let hidden =
        "DELETE /crm/v8/Leads/6661?__fake=echo&inner=e7 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let req = format!(
        "POST /crm/v8/Contacts HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{hidden}GET /crm/v8/Leads?__fake=echo&case=e7 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        hidden.len()
    );
    let (responses, _) = h.exchange(req.as_bytes()).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert!(
        statuses == [403, 200] || statuses == [403],
        "E7: 403 then the pipelined answer (or a close), got {statuses:?}"
    );
    if statuses.len() == 2 {
        h.assert_one_canonical(
            "case=e7",
            "GET",
            "/crm/v8/Leads?__fake=echo&case=e7",
            b"",
            "E7 pipelined after 403",
        );
    }
    assert!(
        h.upstream_with("inner=e7").is_empty(),
        "E7: the request inside the refused body was never executed"
    );

    // E7: a large unread body gets 403 and a close.
    let mut c = h.conn().await;
    let big = 400 * 1024;
    let head = format!(
        "POST /crm/v8/Contacts HTTP/1.1\r\nHost: localhost\r\nContent-Length: {big}\r\n\r\n"
    );
    let _ = c.send(head.as_bytes()).await;
    let resp = c.response("E7 large unread body").await;
    assert_eq!(
        resp.status, 403,
        "E7 large body: 403 before the body was read"
    );
    let mut filler = vec![b'a'; big - hidden.len()];
    filler.extend_from_slice(hidden.as_bytes());
    let _ = c.send(&filler).await;
    assert!(
        c.closes_within(WAIT).await.is_ok(),
        "E7 large body: the connection is closed, the body never parsed"
    );
    assert!(
        h.upstream_with("inner=e7").is_empty(),
        "E7 large body: the trailing request never executed"
    );

    // E9: Expect on a denied request gets no 100, a 403 and no desync.
    let mut c = h.conn().await;
    let _ = c.send(b"POST /crm/v8/Contacts HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n").await;
    let resp = c.response("E9 denied").await;
    assert_eq!(
        resp.status, 403,
        "E9 denied: the first answer is the 403, never a 100"
    );
    // The client sends its 5 body bytes anyway, then another request. hyper may close, or read
    // exactly 5 bytes as the body and answer the next request; parsing the body bytes as a
    // request (a 4xx for `hello…`) would be the desync.
    let _ = c.send(format!("hello{}", inner(99)).as_bytes()).await;
    let (rest, _) = c.drain(WAIT).await;
    let statuses: Vec<u16> = rest.iter().map(|r| r.status).collect();
    let inner_seen = h.upstream_with("inner=smuggled99x");
    match statuses.as_slice() {
        [] => assert!(
            inner_seen.is_empty(),
            "E9 denied: closed, so the bytes after the refusal never executed"
        ),
        [200] => {
            assert_eq!(inner_seen.len(), 1, "E9 denied: the next request ran once");
            h.assert_canonical(
                &inner_seen[0],
                "DELETE",
                &inner_seen[0].path_and_query.clone(),
                b"",
                "E9 denied, next request",
            );
        }
        other => panic!("E9 denied: the body bytes were parsed as a request: {other:?}"),
    }

    // E9: Expect on an allowed request: 100, then the result; Expect is not forwarded.
    let mut c = h.conn().await;
    let target = "/crm/v8/Leads?__fake=echo&case=e9";
    let _ = c.send(format!("POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").as_bytes()).await;
    let first = c.response("E9 allowed").await;
    assert_eq!(first.status, 100, "E9 allowed: 100 Continue first");
    let _ = c.send(b"hello").await;
    let resp = c.response("E9 allowed result").await;
    assert_eq!(resp.status, 200, "E9 allowed: forwarded");
    h.assert_one_canonical("case=e9", "POST", target, b"hello", "E9 allowed Expect");

    // E9: odd Expect values keep framing unchanged.
    for (i, expect) in ["y 100-continue", "100-continue ", "100-Continue", "200-ok"]
        .iter()
        .enumerate()
    {
        let target = format!("/crm/v8/Leads?__fake=echo&case=e9odd{i}x");
        let req = format!("POST {target} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: {expect}\r\nConnection: close\r\n\r\nhello");
        let (responses, _) = h.exchange(req.as_bytes()).await;
        let last = responses.last().map(|r| r.status);
        if last == Some(200) {
            h.assert_one_canonical(
                &format!("case=e9odd{i}x"),
                "POST",
                &target,
                b"hello",
                &format!("E9 Expect {expect:?}"),
            );
        } else {
            assert!(
                last.is_some_and(|s| (400..500).contains(&s)),
                "E9 Expect {expect:?}: 200 or a 4xx, got {last:?}"
            );
            assert!(
                h.upstream_with(&format!("case=e9odd{i}x")).is_empty(),
                "E9 Expect {expect:?}: refused, nothing forwarded"
            );
        }
    }

    // E10: Upgrade is never a tunnel; the pipelined request behind it is parsed as HTTP.
    for (i, upgrade) in ["Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"].iter().enumerate() {
        let target = format!("/crm/v8/Leads?__fake=echo&case=e10u{i}x");
        let req = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{upgrade}\r\nDELETE /crm/v8/Contacts/1?inner=e10 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let (responses, _) = h.exchange(req.as_bytes()).await;
        let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
        assert!(statuses == [200, 403] || statuses == [200], "E10 #{i}: the GET answered normally, then 403 (or close), got {statuses:?}");
        assert!(!statuses.contains(&101), "E10 #{i}: never switching protocols");
        h.assert_one_canonical(&format!("case=e10u{i}x"), "GET", &target, b"", &format!("E10 upgrade #{i}"));
    }
    assert!(
        h.upstream_with("inner=e10").is_empty(),
        "E10: the request behind the Upgrade never reached upstream"
    );

    // E10: an HTTP/2 preface on the HTTP/1 listener.
    let (responses, _) = h.exchange(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert!(
        responses.iter().all(|r| r.status >= 400),
        "h2 preface: refused"
    );

    // E11: 50 pipelined GETs in one write: 50 answers in order, each forwarded once.
    let mut req = String::new();
    for i in 0..50 {
        let close = if i == 49 { "Connection: close\r\n" } else { "" };
        req.push_str(&format!(
            "GET /crm/v8/Leads?__fake=echo&pipe={i}x HTTP/1.1\r\nHost: localhost\r\n{close}\r\n"
        ));
    }
    let (responses, end) = h.exchange(req.as_bytes()).await;
    assert_eq!(responses.len(), 50, "E11: 50 responses (end {end:?})");
    for (i, r) in responses.iter().enumerate() {
        assert_eq!(r.status, 200, "E11 #{i}: 200");
        let path = r.json()["path_and_query"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            path.ends_with(&format!("pipe={i}x")),
            "E11 #{i}: answers in order, got {path}"
        );
        h.assert_one_canonical(
            &format!("pipe={i}x"),
            "GET",
            &format!("/crm/v8/Leads?__fake=echo&pipe={i}x"),
            b"",
            "E11 pipelined",
        );
    }

    // E11: a bad request in the middle: earlier ones answered, then 400 and close.
    let mut req = String::new();
    for i in 0..5 {
        req.push_str(&format!(
            "GET /crm/v8/Leads?__fake=echo&pipebad={i}x HTTP/1.1\r\nHost: localhost\r\n\r\n"
        ));
    }
    req.push_str("GET /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nContent-Length: +1\r\n\r\n");
    for i in 5..10 {
        req.push_str(&format!(
            "GET /crm/v8/Leads?__fake=echo&pipebad={i}x HTTP/1.1\r\nHost: localhost\r\n\r\n"
        ));
    }
    let (responses, end) = h.exchange(req.as_bytes()).await;
    let statuses: Vec<u16> = responses.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 400],
        "E11 bad middle: five answers then 400"
    );
    assert!(
        matches!(end, Next::Closed),
        "E11 bad middle: closed after the 400, got {end:?}"
    );
    assert_eq!(
        h.upstream_with("pipebad=").len(),
        5,
        "E11 bad middle: only the five before it were forwarded"
    );

    // E12: HTTP/1.0 without Host: answered and closed, forwarded with the configured Host.
    let (responses, end) = h
        .exchange(b"GET /crm/v8/Leads?__fake=echo&case=e12 HTTP/1.0\r\n\r\n")
        .await;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(200),
        "E12: HTTP/1.0 answered"
    );
    assert!(
        matches!(end, Next::Closed),
        "E12: closed after the response"
    );
    h.assert_one_canonical(
        "case=e12",
        "GET",
        "/crm/v8/Leads?__fake=echo&case=e12",
        b"",
        "E12 HTTP/1.0",
    );
    h.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// F. Resource exhaustion
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn f_header_count_header_size_and_uri_length_limits() {
    let h = Harness::start(ALLOW, FAST).await;
    let many: String = (0..101).map(|i| format!("X-H{i}: v\r\n")).collect();
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "F4 101 headers",
            format!("GET /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\n{many}\r\n"),
            431,
        ),
        (
            "F4 100 KB header",
            format!(
                "GET /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
                "a".repeat(100 * 1024)
            ),
            431,
        ),
        (
            "F4 1 MB header",
            format!(
                "GET /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nCookie: {}\r\n\r\n",
                "a".repeat(1 << 20)
            ),
            431,
        ),
        (
            "F4 70 KB URI",
            format!(
                "GET /crm/v8/Leads?x={} HTTP/1.1\r\nHost: localhost\r\n\r\n",
                "a".repeat(70 * 1024)
            ),
            414,
        ),
    ];
    for (case, req, want) in cases {
        let stream = TcpStream::connect(h.proxy.proxy).await.expect("connect");
        let bytes = req.into_bytes();
        // Write from a task: the proxy may answer and close before reading everything.
        let (mut rd, mut wr) = stream.into_split();
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(&bytes).await;
            wr
        });
        let mut got = Vec::new();
        let _ = tokio::time::timeout(WAIT, rd.read_to_end(&mut got)).await;
        let _ = writer.await;
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with(&format!("HTTP/1.1 {want}")),
            "{case}: {want} expected, got {:?}",
            text.lines().next()
        );
    }
    assert!(h.upstream().is_empty(), "F4: nothing forwarded");
    let (responses, _) = h.exchange(&get("/crm/v8/Leads")).await;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(200),
        "F4: still serving after oversized heads"
    );
    h.assert_no_leaks().await;
}

#[tokio::test]
async fn f_slow_clients_are_cut_within_their_timeouts() {
    let extra = "limits:\n  header_timeout: 1s\n  body_idle_timeout: 1s\n  request_timeout: 2s\n  replay_body: 4KiB\nlog:\n  level: trace\n";
    let h = Harness::start(ALLOW, extra).await;

    // F1: slowloris on headers: a byte every 200 ms, never finishing. Also 100 of them at once.
    let slowloris = |h: &Harness| {
        let addr = h.proxy.proxy;
        async move {
            let mut s = TcpStream::connect(addr).await.expect("connect");
            let started = Instant::now();
            let script = b"GET /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
                .iter()
                .copied()
                .chain(std::iter::repeat(b'a'));
            let mut buf = [0u8; 1024];
            for b in script {
                tokio::select! {
                    r = s.read(&mut buf) => {
                        let n = r.unwrap_or(0);
                        let answer = String::from_utf8_lossy(&buf[..n]).to_string();
                        assert!(n == 0 || answer.starts_with("HTTP/1.1 408"), "F1: closed silently or with 408, got {answer:?}");
                        return started.elapsed();
                    }
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if s.write_all(&[b]).await.is_err() {
                            return started.elapsed();
                        }
                    }
                }
                if started.elapsed() > Duration::from_secs(10) {
                    break;
                }
            }
            started.elapsed()
        }
    };
    let crowd: Vec<_> = (0..100).map(|_| slowloris(&h)).collect();
    let crowd = tokio::spawn(futures_util::future::join_all(crowd));
    // Normal requests are served while the slow crowd holds connections.
    let c = client();
    for i in 0..5 {
        let r = c
            .get(
                h.proxy
                    .url(&format!("/crm/v8/Leads?__fake=echo&case=f1ok{i}")),
            )
            .send()
            .await
            .expect("normal request");
        assert_eq!(
            r.status(),
            200,
            "F1: normal request #{i} served during the slowloris crowd"
        );
    }
    let times = crowd.await.expect("crowd");
    for t in &times {
        assert!(
            *t >= Duration::from_millis(800) && *t < Duration::from_secs(4),
            "F1: slow header cut after header_timeout (1 s), took {t:?}"
        );
    }

    // F3: a response that streams for longer than header_timeout does not use up the next
    // request's header timeout: the keep-alive connection serves the next request.
    let mut conn = h.conn().await;
    let _ = conn
        .send(b"GET /crm/v8/Leads?__fake=slow_body&chunks=8&ms=250 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let slow = conn.response("F3 long response").await;
    assert_eq!(slow.status, 200, "F3: the slow response arrived whole");
    assert_eq!(
        slow.body.len(),
        8 * 16,
        "F3: every chunk of the slow response"
    );
    let _ = conn
        .send(b"GET /crm/v8/Leads?__fake=echo&case=f3next HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    match conn.next(false, WAIT).await {
        Next::Response(r) => assert_eq!(r.status, 200, "F3: the next request on the connection"),
        other => panic!("F3: the connection serves a request after a long response, got {other:?}"),
    }

    // F3: an idle keep-alive connection is closed within the header timeout.
    let mut conn = h.conn().await;
    let _ = conn
        .send(b"GET /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let r = conn.response("F3").await;
    assert_eq!(r.status, 200, "F3: first request served");
    let idle_start = Instant::now();
    assert!(
        conn.closes_within(Duration::from_secs(4)).await.is_ok(),
        "F3: idle keep-alive closed"
    );
    assert!(
        idle_start.elapsed() < Duration::from_secs(3),
        "F3: closed within ~header_timeout, took {:?}",
        idle_start.elapsed()
    );

    // F2 + E8: a body that stops (small: collected for replay; large: streaming upstream).
    for (case, len, sent) in [
        ("F2 small body pause", 1000usize, 10usize),
        ("F2 streaming body pause", 1_000_000, 64 * 1024),
    ] {
        h.clear();
        let marker = format!("case=f2-{len}");
        let mut conn = h.conn().await;
        let started = Instant::now();
        let head = format!("POST /crm/v8/Leads?__fake=upload&{marker} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\n\r\n");
        let _ = conn.send(head.as_bytes()).await;
        let _ = conn.send(&vec![b'b'; sent]).await;
        let resp = conn.next(false, WAIT).await;
        let elapsed = started.elapsed();
        match resp {
            Next::Response(r) => assert_eq!(r.status, 408, "{case}: 408"),
            Next::Closed => {}
            other => panic!("{case}: 408 or a close, got {other:?}"),
        }
        assert!(
            elapsed >= Duration::from_millis(800) && elapsed < Duration::from_secs(3),
            "{case}: cut after body_idle_timeout (1 s), took {elapsed:?}"
        );
        // E8: whatever follows is never parsed as a new request.
        let _ = conn
            .send(format!("{}{}", "b".repeat(len.min(100)), inner(77)).as_bytes())
            .await;
        let (more, _) = conn.drain(Duration::from_secs(2)).await;
        assert!(
            more.is_empty(),
            "{case}: no response to bytes sent after the timeout"
        );
        let seen = h.upstream_with(&marker);
        assert!(
            seen.iter().all(|r| !r.body_complete),
            "{case}: the upstream never got a complete body"
        );
        if len <= 4096 {
            assert!(
                seen.is_empty(),
                "{case}: a collected body never started an upstream request"
            );
        }
    }

    // F2: a body trickled slower than any real client (a byte every 250 ms) is cut too.
    h.clear();
    let mut conn = h.conn().await;
    let started = Instant::now();
    let _ = conn.send(b"POST /crm/v8/Leads?__fake=upload&case=f2trickle HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\n\r\n").await;
    let mut cut = None;
    while started.elapsed() < Duration::from_secs(8) {
        tokio::select! {
            n = conn.next(false, Duration::from_secs(8)) => { cut = Some((started.elapsed(), n)); break; }
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
        }
        if conn.send(b"c").await.is_err() {
            cut = Some((started.elapsed(), Next::Closed));
            break;
        }
    }
    let (elapsed, how) = cut.unwrap_or_else(|| panic!("F2 trickle: never cut"));
    assert!(
        matches!(&how, Next::Closed) || matches!(&how, Next::Response(r) if r.status == 408),
        "F2 trickle: 408 or close, got {how:?}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "F2 trickle: cut within a few body_idle_timeouts, took {elapsed:?}"
    );
    assert!(
        h.upstream_with("case=f2trickle")
            .iter()
            .all(|r| !r.body_complete),
        "F2 trickle: never a complete upstream body"
    );

    let (responses, _) = h.exchange(&get("/crm/v8/Leads")).await;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(200),
        "still serving after slow clients"
    );
    h.assert_no_leaks().await;
}

#[tokio::test]
async fn f_connection_flood_is_shed_while_service_continues() {
    // The flood's sockets live in this process; the proxy child inherits the raised limit.
    let limit = raise_fd_limit(12_000);
    assert!(
        limit >= 6_000,
        "F7 needs about 6,000 open files in the test process; the limit is {limit} (ulimit -n)"
    );
    let extra = "limits:\n  max_connections: 300\n  header_timeout: 2s\nlog:\n  level: debug\n";
    let h = Harness::start(ALLOW, extra).await;
    let fds = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = fds(h.proxy.pid());
    let addr = h.proxy.proxy;
    // 5,000 idle sockets, opened 250 at a time, all held until the end.
    let flood = tokio::spawn(async move {
        let mut held = Vec::with_capacity(5000);
        let mut failed = 0usize;
        for _ in 0..20 {
            let batch =
                futures_util::future::join_all((0..250).map(|_| {
                    tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
                }))
                .await;
            for s in batch {
                match s {
                    Ok(Ok(s)) => held.push(s),
                    _ => failed += 1,
                }
            }
        }
        (held, failed)
    });
    // Meanwhile normal clients keep going; a shed connection is retried on a new one.
    let c = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .build()
        .expect("client");
    let started = Instant::now();
    let mut served = 0;
    let mut retries = 0;
    while served < 30 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "F7: normal requests keep being served ({served} so far)"
        );
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            c.get(
                h.proxy
                    .url(&format!("/crm/v8/Leads?__fake=echo&flood={served}x")),
            )
            .send(),
        )
        .await;
        match r {
            Ok(Ok(r)) if r.status() == 200 => served += 1,
            _ => retries += 1,
        }
    }
    let (held, failed) = flood.await.expect("flood");
    assert!(held.len() + failed == 5000, "flood bookkeeping");
    assert!(
        held.len() >= 4000,
        "F7: the kernel accepted most of the flood ({} held, {failed} failed)",
        held.len()
    );
    let shed = h.metric("zoho_proxy_connections_shed_total").await;
    assert!(
        shed >= 1.0,
        "F7: connections beyond max_connections were shed ({shed})"
    );
    let open = h
        .metric_where("zoho_proxy_open_connections", "listener=\"proxy\"")
        .await;
    assert!(
        open <= 300.0,
        "F7: never more than max_connections open ({open})"
    );
    let health = client()
        .get(h.proxy.admin_url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(
        health.status(),
        200,
        "F7: health checks answer during the flood"
    );
    drop(held);
    let settled = poll_until(Duration::from_secs(10), || async {
        fds(h.proxy.pid()) <= before + 16
    })
    .await;
    assert!(
        settled,
        "F7: file descriptors return to the baseline ({} now, {before} before)",
        fds(h.proxy.pid())
    );
    let r = client()
        .get(h.proxy.url("/crm/v8/Leads"))
        .send()
        .await
        .expect("after flood");
    assert_eq!(r.status(), 200, "F7: serving normally after the flood");
    assert_eq!(
        h.upstream_with("flood=").len(),
        30,
        "F7: exactly the served requests reached upstream"
    );
    eprintln!(
        "F7: served 30 requests with {retries} retries during a 5,000-socket flood; {shed} shed"
    );
    assert!(!h.proxy.logs().contains("panicked"), "F7: no panic");
    h.assert_no_leaks().await;
}

#[tokio::test]
async fn f_descriptor_exhaustion_backs_off_and_recovers() {
    // max_connections (default 4096) above the process's open-files limit: accept hits EMFILE.
    let h = Harness::start(
        ALLOW,
        "limits:\n  header_timeout: 2s\nlog:\n  level: debug\n",
    )
    .await;
    let pid = h.proxy.pid();
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg("--nofile=128:128")
        .status()
        .expect("prlimit runs");
    assert!(status.success(), "prlimit lowered the proxy's limit");
    let cpu = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit(')').next().unwrap_or_default().to_string();
        let f: Vec<u64> = after
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        // utime and stime (fields 14 and 15 of stat, counted after the command name).
        f.get(10).copied().unwrap_or(0) + f.get(11).copied().unwrap_or(0)
    };
    let addr = h.proxy.proxy;
    let mut held = Vec::new();
    for _ in 0..400 {
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr)).await
        {
            held.push(s);
        }
    }
    let before = cpu();
    let window = Instant::now();
    // While descriptors are exhausted, the admin listener still answers or fails fast.
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        client().get(h.proxy.admin_url("/healthz")).send(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(window.elapsed())).await;
    let burned = cpu() - before;
    let ticks = 100; // USER_HZ
    eprintln!(
        "EMFILE: {burned} ticks of CPU in 2 s with {} sockets held",
        held.len()
    );
    assert!(
        burned < ticks / 2,
        "F7: no hot accept loop on EMFILE ({burned} ticks of CPU in 2 s)"
    );
    drop(held);
    let c = client();
    let recovered = poll_until(Duration::from_secs(15), || async {
        c.get(h.proxy.url("/crm/v8/Leads"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    assert!(recovered, "F7: serving again once descriptors are free");
    assert!(!h.proxy.logs().contains("panicked"), "F7: no panic");
    let warnings = h.proxy.logs().matches("accept failed").count();
    assert!(
        warnings >= 1,
        "F7: the flood did exhaust descriptors (accept failed was logged)"
    );
    assert!(
        warnings < 200,
        "F7: accept errors are logged with back-off, not per spin ({warnings})"
    );
    h.assert_no_leaks().await;
}

#[tokio::test]
async fn f_bodies_over_max_body_get_413_without_buffering() {
    let extra = "limits:\n  max_body: 4MiB\n  replay_body: 64KiB\n  body_idle_timeout: 2s\nlog:\n  level: debug\n";
    let h = Harness::start(ALLOW, extra).await;
    let (_, rss_before) = h.proxy.memory_kib();

    // Declared too large: 413 before a byte of body, then close.
    let mut c = h.conn().await;
    let _ = c.send(b"POST /crm/v8/Leads?__fake=upload&case=f5cl HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2147483648\r\n\r\n").await;
    let r = c.response("F5 declared").await;
    assert_eq!(r.status, 413, "F5: a declared 2 GiB body gets 413 at once");
    assert!(
        c.closes_within(WAIT).await.is_ok(),
        "F5: and the connection closes"
    );
    assert!(
        h.upstream_with("case=f5cl").is_empty(),
        "F5 declared: nothing forwarded"
    );

    // Chunked, no declared length: 200 MiB offered, cut at 4 MiB.
    let conn = h.conn().await;
    let Conn { stream, .. } = conn;
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(b"POST /crm/v8/Leads?__fake=upload&case=f5chunked HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n").await;
        let chunk = vec![b'z'; 64 * 1024];
        let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
        frame.extend_from_slice(&chunk);
        frame.extend_from_slice(b"\r\n");
        let mut written = 0u64;
        for _ in 0..3200 {
            if wr.write_all(&frame).await.is_err() {
                break;
            }
            written += chunk.len() as u64;
        }
        written
    });
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), rd.read_to_end(&mut got)).await;
    let written = tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .expect("writer stops")
        .expect("writer");
    let text = String::from_utf8_lossy(&got);
    assert!(
        got.is_empty() || text.starts_with("HTTP/1.1 413"),
        "F5 chunked: 413 (or a cut connection), got {:?}",
        text.lines().next()
    );
    assert!(
        written < 64 << 20,
        "F5 chunked: the proxy stopped reading long before 200 MiB ({written} bytes accepted)"
    );
    let seen = h.upstream_with("case=f5chunked");
    assert!(
        seen.iter()
            .all(|r| !r.body_complete && r.body_len <= 4 << 20),
        "F5 chunked: upstream never got a complete or over-limit body"
    );
    let (peak, _) = h.proxy.memory_kib();
    assert!(
        peak.saturating_sub(rss_before) < 40 * 1024,
        "F5: flat memory (peak grew {} KiB)",
        peak.saturating_sub(rss_before)
    );
    let (responses, _) = h.exchange(&get("/crm/v8/Leads")).await;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(200),
        "F5: still serving"
    );
    h.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// H. Upstream faults
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn h_upstream_resets_stalls_and_silence_never_look_like_success() {
    for upstream in [Upstream::H2, Upstream::H1] {
        upstream_faults(upstream).await;
    }
}

async fn upstream_faults(upstream: Upstream) {
    let h = Harness::start_on(upstream, ALLOW, FAST).await;

    // H1: reset mid-body: the client sees a truncated transfer, never a clean end.
    let mut c = h.conn().await;
    let _ = c
        .send(b"GET /crm/v8/Leads/111?__fake=reset&after=500 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    match c.next(false, WAIT).await {
        Next::Truncated(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            assert!(
                text.starts_with("HTTP/1.1 200"),
                "H1: headers passed, then the body was cut: {:?}",
                text.lines().next()
            );
        }
        other => panic!("H1: a truncated transfer, got {other:?}"),
    }
    // The next request on a new connection works and gets no leftover bytes (E13).
    let connections = h.zoho.control().crm_connections();
    let (responses, _) = h
        .exchange(&get("/crm/v8/Leads?__fake=echo&case=h1next"))
        .await;
    assert_eq!(responses.len(), 1, "H1: next request answered once");
    assert_eq!(responses[0].status, 200, "H1: next request works");
    h.assert_one_canonical(
        "case=h1next",
        "GET",
        "/crm/v8/Leads?__fake=echo&case=h1next",
        b"",
        "H1 next",
    );
    let version = h.upstream_with("case=h1next")[0].version.clone();
    let expected = if upstream == Upstream::H1 {
        "HTTP/1.1"
    } else {
        "HTTP/2.0"
    };
    assert_eq!(version, expected, "the fake offered {upstream:?}");
    if version == "HTTP/1.1" {
        assert!(
            h.zoho.control().crm_connections() > connections,
            "H1: the reset HTTP/1.1 upstream connection was not reused"
        );
    }
    assert_eq!(
        responses[0].json()["path_and_query"],
        "/crm/v8/Leads?__fake=echo&case=h1next",
        "E13: no bytes of the reset response leak into the next"
    );

    // The access log tells a truncated transfer from a complete one.
    let (responses, _) = h
        .exchange(&get("/crm/v8/Leads/222?__fake=download&bytes=3000"))
        .await;
    assert_eq!(
        responses.first().map(|r| r.body.len()),
        Some(3000),
        "a complete download"
    );
    let logged = h
        .proxy
        .wait_for_output(WAIT, |t| {
            t.lines()
                .any(|l| l.contains("path=/crm/v8/Leads/111") && l.contains("complete=false"))
                && t.lines()
                    .any(|l| l.contains("path=/crm/v8/Leads/222") && l.contains("complete=true"))
        })
        .await;
    assert!(
        logged,
        "access log: complete=false for the reset transfer, complete=true for the whole one: {}",
        h.proxy
            .logs()
            .lines()
            .filter(|l| l.contains("access"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // H4: upstream stalls mid-body: the client connection is aborted after the idle timeout.
    let mut c = h.conn().await;
    let started = Instant::now();
    let _ = c
        .send(b"GET /crm/v8/Leads?__fake=stall&after=100 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    match c.next(false, WAIT).await {
        Next::Truncated(_) => {}
        other => panic!("H4: a truncated transfer, got {other:?}"),
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(4),
        "H4: cut after body_idle_timeout, took {elapsed:?}"
    );

    // H3: upstream never answers: 504 after request_timeout.
    let started = Instant::now();
    let (responses, _) = h.exchange(&get("/crm/v8/Leads?__fake=hang")).await;
    assert_eq!(responses.first().map(|r| r.status), Some(504), "H3: 504");
    assert_eq!(
        responses[0].proxy_error(),
        Some("PROXY_UPSTREAM_TIMEOUT"),
        "H3: marked as the proxy's"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "H3: within request_timeout (2 s), took {:?}",
        started.elapsed()
    );

    // H7: 429 passes through with Retry-After, no retry storm.
    h.clear();
    let (responses, _) = h.exchange(&get("/crm/v8/Leads?__fake=rate_limit")).await;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(429),
        "H7: 429 passed through"
    );
    assert!(
        responses[0].proxy_error().is_none(),
        "H7: Zoho's answer, not ours"
    );
    assert_eq!(h.upstream().len(), 1, "H7: no automatic retry");
    // ... and starts the account's back-off (1 s without Retry-After, issue 14): the next
    // request is refused locally without reaching Zoho, then traffic resumes.
    let (responses, _) = h.exchange(&get("/crm/v8/Leads")).await;
    assert_eq!(
        responses.first().and_then(|r| r.proxy_error()),
        Some("PROXY_ZOHO_THROTTLED"),
        "H7: refused locally during Zoho's back-off"
    );
    assert_eq!(
        h.upstream().len(),
        1,
        "H7: nothing forwarded during the back-off"
    );
    let resumed = poll_until(Duration::from_secs(5), || async {
        let (responses, _) = h.exchange(&get("/crm/v8/Leads")).await;
        responses.first().map(|r| r.status) == Some(200)
    })
    .await;
    assert!(resumed, "H7: traffic resumes after the back-off");

    // H8: upstream 5xx HTML passes through unchanged.
    let (responses, _) = h
        .exchange(&get("/crm/v8/Leads?__fake=status=502&html=1"))
        .await;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(502),
        "H8: 502 passed through"
    );
    assert!(
        responses[0].proxy_error().is_none()
            && String::from_utf8_lossy(&responses[0].body).contains('<'),
        "H8: body untouched"
    );

    let (responses, _) = h.exchange(&get("/crm/v8/Leads")).await;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(200),
        "still serving after upstream faults"
    );
    h.assert_no_leaks().await;
}

#[tokio::test]
async fn h_upstream_that_never_handshakes_or_reads_is_cut_by_the_deadline() {
    // The API "server" accepts TCP (the kernel completes the handshake) and never says a word.
    let zoho = Zoho::start().await;
    let silent = Trap::new();
    let config = zoho
        .config(ALLOW, "limits:\n  request_timeout: 2s\n  body_idle_timeout: 2s\n  replay_body: 1KiB\nlog:\n  level: trace\n")
        .replace(&zoho.fake.api_url(), &format!("https://{}", silent.addr()));
    let h = Harness::start_with(zoho, &config, &[]).await;
    let cases: [(&str, Vec<u8>); 2] = [
        ("H3 no body", get("/crm/v8/Leads")),
        (
            "H3 streaming body",
            format!(
                "POST /crm/v8/Leads HTTP/1.1\r\nHost: localhost\r\nContent-Length: 200000\r\nConnection: close\r\n\r\n{}",
                "d".repeat(200_000)
            )
            .into_bytes(),
        ),
    ];
    for (case, bytes) in cases {
        let started = Instant::now();
        let stream = TcpStream::connect(h.proxy.proxy).await.expect("connect");
        let (mut rd, mut wr) = stream.into_split();
        let writer = tokio::spawn(async move {
            let _ = wr.write_all(&bytes).await;
            wr
        });
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut got)).await;
        writer.abort();
        let elapsed = started.elapsed();
        let text = String::from_utf8_lossy(&got);
        assert!(
            text.starts_with("HTTP/1.1 504") || text.starts_with("HTTP/1.1 502"),
            "{case}: a 504 (or 502) from the proxy, got {:?} after {elapsed:?}",
            text.lines().next()
        );
        assert!(
            elapsed < Duration::from_secs(6),
            "{case}: answered within request_timeout plus slack, took {elapsed:?}"
        );
    }
    assert!(silent.connections() >= 1, "the silent upstream was dialled");
    h.assert_no_leaks().await;
}

#[tokio::test]
async fn h_tls_failures_give_502_and_the_token_is_never_sent() {
    /// Builds the API server's TLS config from (the trusted CA, an unknown CA).
    type ApiTls = fn(&TestCa, &TestCa) -> Arc<rustls::ServerConfig>;
    let cases: [(&str, ApiTls); 3] = [
        ("H5 unknown CA", |_ca, other| {
            other.server_config(&["127.0.0.1", "localhost"])
        }),
        ("H5 wrong name", |ca, _| {
            ca.server_config(&["other.example"])
        }),
        ("H5 expired", |ca, _| {
            ca.expired_server_config(&["127.0.0.1", "localhost"])
        }),
    ];
    for (case, api_tls) in cases {
        let ca = TestCa::new();
        let other = TestCa::new();
        let fake = FakeZoho::start_with_tls(
            options(),
            ca.server_config(&["127.0.0.1", "localhost"]),
            api_tls(&ca, &other),
        )
        .await
        .expect("fake starts");
        let zoho = Zoho::with_fake(ca, fake);
        let config = zoho.config(ALLOW, FAST);
        let h = Harness::start_with(zoho, &config, &[]).await;
        let (responses, _) = h.exchange(&get("/crm/v8/Leads")).await;
        let r = responses
            .first()
            .unwrap_or_else(|| panic!("{case}: a response"));
        assert_eq!(r.status, 502, "{case}: 502");
        assert_eq!(
            r.proxy_error(),
            Some("PROXY_UPSTREAM_UNREACHABLE"),
            "{case}: marked as the proxy's"
        );
        assert!(
            String::from_utf8_lossy(&r.body).contains("TLS"),
            "{case}: the reason names TLS: {:?}",
            r.json()
        );
        assert!(
            h.upstream().is_empty(),
            "{case}: nothing reached the API server"
        );
        assert_eq!(
            h.zoho.control().crm_connections(),
            0,
            "{case}: no TLS handshake completed, so no token was sent"
        );
        assert!(
            h.zoho.control().mints() >= 1,
            "{case}: the proxy did hold a token it could have leaked"
        );
        h.assert_no_leaks().await;
    }

    // H5 plaintext on the TLS port: a plain HTTP server answers; the proxy must not fall back.
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let plain_addr = plain.local_addr().expect("addr");
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = received.clone();
    let server = tokio::spawn(async move {
        while let Ok((mut s, _)) = plain.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                if let Ok(n) = s.read(&mut buf).await {
                    if let Ok(mut r) = seen.lock() {
                        r.extend_from_slice(&buf[..n]);
                    }
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    let zoho = Zoho::start().await;
    let config = zoho
        .config(ALLOW, FAST)
        .replace(&zoho.fake.api_url(), &format!("https://{plain_addr}"));
    let h = Harness::start_with(zoho, &config, &[]).await;
    let (responses, _) = h.exchange(&get("/crm/v8/Leads")).await;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(502),
        "H5 plaintext: 502"
    );
    let bytes = received.lock().map(|r| r.clone()).unwrap_or_default();
    assert_eq!(
        bytes.first(),
        Some(&0x16),
        "H5 plaintext: only a TLS ClientHello was sent"
    );
    assert!(
        find(&bytes, b"Zoho-oauthtoken").is_none() && find(&bytes, b"GET ").is_none(),
        "H5 plaintext: no request, no token in clear text"
    );
    server.abort();
    h.assert_no_leaks().await;
}

#[tokio::test]
async fn h_environment_proxy_variables_are_ignored() {
    let zoho = Zoho::start().await;
    let trap = Trap::new();
    let url = format!("http://{}", trap.addr());
    let config = zoho.config(ALLOW, FAST);
    let env = [
        ("HTTPS_PROXY", url.as_str()),
        ("https_proxy", url.as_str()),
        ("HTTP_PROXY", url.as_str()),
        ("http_proxy", url.as_str()),
        ("ALL_PROXY", url.as_str()),
        ("all_proxy", url.as_str()),
    ];
    let h = Harness::start_with(zoho, &config, &env).await;
    let (responses, _) = h.exchange(&get("/crm/v8/Leads?__fake=echo&case=h10")).await;
    assert_eq!(
        responses.first().map(|r| r.status),
        Some(200),
        "H10: forwarded directly"
    );
    h.assert_one_canonical(
        "case=h10",
        "GET",
        "/crm/v8/Leads?__fake=echo&case=h10",
        b"",
        "H10",
    );
    assert_eq!(
        trap.connections(),
        0,
        "H10: the environment proxy saw no connection (token or API)"
    );
    h.assert_no_leaks().await;
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_request() {
    let extra = "limits:\n  replay_body: 1KiB\n  request_timeout: 30s\n  upstream_concurrency: 400\nlog:\n  level: trace\n";
    let h = Harness::start(ALLOW, extra).await;

    // A streaming upload: the client vanishes mid-body; the upstream sees the body aborted.
    let mut c = h.conn().await;
    let _ = c.send(b"POST /crm/v8/Leads?__fake=upload&case=cancel-body HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10000000\r\n\r\n").await;
    let _ = c.send(&vec![b'q'; 64 * 1024]).await;
    assert!(
        h.zoho.control().wait_for_crm_requests(1, WAIT).await,
        "the upload reached upstream"
    );
    drop(c);
    let dropped = Instant::now();
    let aborted = poll_until(WAIT, || async {
        h.upstream_with("case=cancel-body")
            .first()
            .is_some_and(|r| r.body_len > 0 && !r.body_complete)
    })
    .await;
    assert!(
        aborted,
        "F6/J5: the upstream request body was aborted, not left waiting: {:?}\n{}",
        h.upstream_with("case=cancel-body")
            .first()
            .map(|r| (r.body_len, r.body_complete)),
        h.proxy.logs()
    );
    assert!(
        dropped.elapsed() < Duration::from_secs(2),
        "aborted within a second or so ({:?})",
        dropped.elapsed()
    );

    // A request waiting for upstream headers: the client vanishes; the proxy drops its side.
    let mut c = h.conn().await;
    let _ = c
        .send(b"GET /crm/v8/Leads?__fake=hang&case=cancel-wait HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    assert!(
        h.zoho.control().wait_for_crm_requests(2, WAIT).await,
        "the hanging request reached upstream"
    );
    assert_eq!(
        h.metric("zoho_proxy_requests_in_flight").await,
        1.0,
        "one request in flight"
    );
    drop(c);
    let released = poll_until(WAIT, || async {
        h.metric("zoho_proxy_requests_in_flight").await == 0.0
    })
    .await;
    assert!(
        released,
        "J5: the in-flight request (and its upstream call) ended when the client left"
    );

    // F6: a client leaving mid-download ends the request within about a second.
    let mut c = h.conn().await;
    let _ = c
        .send(b"GET /crm/v8/Leads?__fake=download&bytes=1073741824 HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await;
    let mut got = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while got < 1 << 20 {
        match tokio::time::timeout(WAIT, c.stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got += n,
            other => panic!("F6: the download streams ({got} bytes, then {other:?})"),
        }
    }
    drop(c);
    let dropped = Instant::now();
    let released = poll_until(WAIT, || async {
        h.metric("zoho_proxy_requests_in_flight").await == 0.0
    })
    .await;
    assert!(released, "F6: the download ended when the client left");
    assert!(
        dropped.elapsed() < Duration::from_secs(2),
        "F6: within about a second ({:?})",
        dropped.elapsed()
    );

    // J5 at scale: 150 requests aborted (the fake allows 200 concurrent HTTP/2 streams) while waiting for Zoho leave no task or socket behind.
    let fds = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = fds(h.proxy.pid());
    let already = h.upstream().len();
    let mut conns = Vec::new();
    for i in 0..150 {
        let mut c = h.conn().await;
        let req =
            format!("GET /crm/v8/Leads?__fake=hang&abort={i}x HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let _ = c.send(req.as_bytes()).await;
        conns.push(c);
    }
    assert!(
        h.zoho
            .control()
            .wait_for_crm_requests(already + 150, Duration::from_secs(15))
            .await,
        "J5: all 150 reached upstream ({} did)",
        h.upstream().len() - already
    );
    drop(conns);
    let released = poll_until(Duration::from_secs(10), || async {
        h.metric("zoho_proxy_requests_in_flight").await == 0.0
            && h.metric_where("zoho_proxy_open_connections", "listener=\"proxy\"")
                .await
                == 0.0
    })
    .await;
    assert!(
        released,
        "J5: every aborted request and connection was released"
    );
    let settled = poll_until(Duration::from_secs(10), || async {
        fds(h.proxy.pid()) <= before + 8
    })
    .await;
    assert!(
        settled,
        "J5: no socket leak ({} fds now, {before} before)",
        fds(h.proxy.pid())
    );
    h.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// I. Configuration and signals
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn i_bad_configs_exit_non_zero_naming_the_key_and_never_the_secret() {
    let zoho = Zoho::start().await;
    let good = zoho.config(ALLOW, "");
    let dir = tempfile::tempdir().expect("dir");
    let unreadable = dir.path().join("missing-secret");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "I1 broken YAML",
            good.replace("allow:\n", "allow: [\n").into_bytes(),
            "line",
        ),
        (
            "I1 tabs",
            good.replacen("  client_id", "\tclient_id", 1).into_bytes(),
            "line",
        ),
        ("I1 empty file", Vec::new(), "empty"),
        (
            "I1 binary garbage",
            vec![0xff, 0xfe, 0x00, 0x01, 0x80, 0x81],
            "UTF-8",
        ),
        ("I1 billion laughs", laughs.as_bytes().to_vec(), ""),
        (
            "I1 2 MB file",
            format!("{good}# {}\n", "x".repeat(2 << 20)).into_bytes(),
            "limit",
        ),
        (
            "I2 unknown key",
            good.replace("  api_url:", "  upstream_url:").into_bytes(),
            "upstream_url",
        ),
        (
            "I2 typo key",
            good.replace("allow:\n", "allowlst:\n").into_bytes(),
            "allowlst",
        ),
        (
            "I2 duplicate key",
            format!("{good}listen: 127.0.0.1:0\n").into_bytes(),
            "listen",
        ),
        (
            "I3 unset variable",
            good.replace("${TEST_REFRESH_TOKEN}", "${ZOHO_RT_NOT_SET_ANYWHERE}")
                .into_bytes(),
            "refresh_token",
        ),
        (
            "I3 empty secret",
            good.replace("${TEST_CLIENT_SECRET}", "''").into_bytes(),
            "client_secret",
        ),
        (
            "I3 unreadable secret file",
            good.replace(
                "client_secret: ${TEST_CLIENT_SECRET}",
                &format!("client_secret_file: {}", unreadable.display()),
            )
            .into_bytes(),
            "client_secret_file",
        ),
        (
            "I4 READS",
            good.replace("ZohoCRM.modules.leads.ALL", "ZohoCRM.modules.leads.READS")
                .into_bytes(),
            "allow[0]",
        ),
        (
            "I4 empty part",
            good.replace("ZohoCRM.modules.leads.ALL", "ZohoCRM..READ")
                .into_bytes(),
            "allow[0]",
        ),
        (
            "I4 unknown service",
            good.replace("ZohoCRM.modules.leads.ALL", "ZohoDesk.tickets.READ")
                .into_bytes(),
            "allow[0]",
        ),
        (
            "I5 plain http",
            good.replace(&zoho.fake.api_url(), "http://www.zohoapis.com")
                .into_bytes(),
            "api_url",
        ),
        (
            "I5 foreign host",
            good.replace(&zoho.fake.api_url(), "https://evil.example")
                .into_bytes(),
            "api_url",
        ),
        (
            "I5 userinfo and path",
            good.replace(&zoho.fake.api_url(), "https://user@www.zohoapis.com/x?y=1")
                .into_bytes(),
            "api_url",
        ),
        (
            "I6 remote listen",
            good.replace("listen: 127.0.0.1:0\nadmin", "listen: 0.0.0.0:0\nadmin")
                .into_bytes(),
            "allow_remote_clients",
        ),
        (
            "I6 port in use",
            good.replace(
                "listen: 127.0.0.1:0\nadmin",
                &format!("listen: {}\nadmin", busy.local_addr().expect("addr")),
            )
            .into_bytes(),
            "cannot listen",
        ),
    ];
    for (case, bytes, needle) in cases {
        let path = dir.path().join("bad.yaml");
        std::fs::write(&path, &bytes).expect("write config");
        let started = Instant::now();
        let out = tokio::time::timeout(
            Duration::from_secs(10),
            tokio::process::Command::new(binary())
                .arg("--config")
                .arg(&path)
                .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
                .env("TEST_REFRESH_TOKEN", REFRESH_TOKEN)
                .env_remove("RUST_LOG")
                .kill_on_drop(true)
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("{case}: exits within 10 s"))
        .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{case}: non-zero exit");
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{case}: exit 1 or 2, not a crash: {:?}",
            out.status
        );
        assert!(
            stderr.contains(needle),
            "{case}: the message names `{needle}`: {stderr}"
        );
        assert!(
            !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
            "{case}: no panic: {stderr}"
        );
        assert!(
            !stdout.contains("listening proxy"),
            "{case}: nothing listening"
        );
        for s in [CLIENT_SECRET, REFRESH_TOKEN] {
            assert!(
                !stderr.contains(s) && !stdout.contains(s),
                "{case}: the secret value is never printed"
            );
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{case}: fails fast"
        );
    }
}

#[tokio::test]
async fn i_sighup_with_a_broken_config_keeps_the_old_policy() {
    let h = Harness::start(ALLOW, FAST).await;
    let c = client();
    let status = |path: &'static str| {
        let c = c.clone();
        let url = h.proxy.url(path);
        async move {
            c.get(url)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    assert_eq!(status("/crm/v8/Leads").await, 200, "I9: allowed before");
    assert_eq!(status("/crm/v8/Contacts").await, 403, "I9: denied before");
    let good = std::fs::read_to_string(&h.proxy.config_path).expect("config");
    std::fs::write(
        &h.proxy.config_path,
        good.replace("allow:\n", "allow: [\n  - ZohoCRM.modules.contacts.ALL\n"),
    )
    .expect("write broken");
    h.proxy.signal("HUP");
    let failed = poll_until(WAIT, || async {
        h.metric_where("zoho_proxy_config_reloads_total", "result=\"error\"")
            .await
            >= 1.0
    })
    .await;
    assert!(failed, "I9: the broken reload was attempted and counted");
    assert_eq!(
        status("/crm/v8/Leads").await,
        200,
        "I9: still allowed after a broken reload"
    );
    assert_eq!(
        status("/crm/v8/Contacts").await,
        403,
        "I9: still denied after a broken reload"
    );
    std::fs::write(
        &h.proxy.config_path,
        good.replace("allow:\n", "allow:\n  - ZohoCRM.modules.contacts.READ\n"),
    )
    .expect("write good");
    h.proxy.signal("HUP");
    let applied = poll_until(WAIT, || async { status("/crm/v8/Contacts").await == 200 }).await;
    assert!(applied, "I9: a later valid reload applies");
    h.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// J. Load and concurrency
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn j_concurrent_keep_alive_clients_get_exact_upstream_counts() {
    const CLIENTS: usize = 200;
    const PER_CLIENT: usize = 50;
    let h = Harness::start(ALLOW, "log:\n  level: info\n").await;
    let fds = |pid: u32| {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let before = fds(h.proxy.pid());
    let started = Instant::now();
    let tasks = (0..CLIENTS).map(|i| {
        let c = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .build()
            .expect("client");
        let base = h.proxy.url("");
        async move {
            let mut errors = Vec::new();
            for j in 0..PER_CLIENT {
                let allowed = (i + j) % 2 == 0;
                let url = if allowed {
                    format!("{base}/crm/v8/Leads?__fake=echo&load={i}x{j}y")
                } else {
                    format!("{base}/crm/v8/Contacts?load={i}x{j}y")
                };
                match c.get(&url).send().await {
                    Ok(r) => {
                        let marked = r
                            .headers()
                            .get("x-zoho-proxy-error")
                            .map(|v| v.to_str().unwrap_or("").to_string());
                        let status = r.status().as_u16();
                        let _ = r.bytes().await;
                        let ok = if allowed {
                            status == 200 && marked.is_none()
                        } else {
                            status == 403 && marked.as_deref() == Some("PROXY_SCOPE_DENIED")
                        };
                        if !ok {
                            errors.push(format!("{url}: {status} {marked:?}"));
                        }
                    }
                    Err(e) => errors.push(format!("{url}: {e}")),
                }
            }
            errors
        }
    });
    let errors: Vec<String> = futures_util::stream::iter(tasks)
        .buffer_unordered(CLIENTS)
        .collect::<Vec<_>>()
        .await
        .concat();
    let elapsed = started.elapsed();
    assert!(
        errors.is_empty(),
        "J1: zero errors, got {} (first: {:?})",
        errors.len(),
        errors.first()
    );
    let seen = h.upstream();
    let total = CLIENTS * PER_CLIENT;
    assert_eq!(
        seen.len(),
        total / 2,
        "J1: exactly the allowed requests reached upstream"
    );
    assert!(
        seen.iter()
            .all(|r| r.path_and_query.starts_with("/crm/v8/Leads?")),
        "J1: no denied request reached upstream"
    );
    let mut markers: Vec<&str> = seen.iter().map(|r| r.path_and_query.as_str()).collect();
    markers.sort_unstable();
    markers.dedup();
    assert_eq!(
        markers.len(),
        total / 2,
        "J1: each allowed request forwarded exactly once"
    );
    for r in seen.iter().take(20) {
        h.assert_canonical(r, "GET", &r.path_and_query.clone(), b"", "J1 sample");
    }
    let settled = poll_until(Duration::from_secs(10), || async {
        h.metric_where("zoho_proxy_open_connections", "listener=\"proxy\"")
            .await
            == 0.0
    })
    .await;
    assert!(settled, "J1: client connections all closed afterwards");
    let after = fds(h.proxy.pid());
    assert!(
        after <= before + 40,
        "J1: no fd leak ({before} before, {after} after; upstream pool may hold a few)"
    );
    eprintln!(
        "J1: {total} requests from {CLIENTS} keep-alive clients in {elapsed:?} ({:.0} req/s)",
        total as f64 / elapsed.as_secs_f64()
    );
    h.assert_no_leaks().await;
}

// ---------------------------------------------------------------------------------------------
// Property test through the running proxy
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn generated_targets_never_reach_upstream_in_another_form() {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let h = Harness::start(ALLOW, "log:\n  level: debug\n").await;
    let junk = prop_oneof![
        Just(".."),
        Just("."),
        Just(""),
        Just("%2e%2e"),
        Just("%2F"),
        Just("%5C"),
        Just("%252F"),
        Just("\\"),
        Just(";"),
        Just("..;"),
        Just("%00"),
        Just("crm"),
        Just("v8"),
        Just("search"),
        Just("coql"),
        Just("actions"),
        Just("%3F"),
        Just("%23"),
        Just("Leads%2F..%2FContacts"),
        Just("%4Ceads"),
        Just("Le%61ds"),
        Just("LeadsX"),
        Just("Leads.json"),
        Just("related"),
    ];
    let module = prop_oneof![
        3 => Just("Leads"),
        1 => Just("leads"),
        1 => Just("LEADS"),
        2 => Just("Contacts"),
        1 => Just("CONTACTS"),
        3 => junk.clone(),
    ];
    let tail = prop_oneof![3 => Just(LEAD), 1 => Just("Contacts"), 1 => Just("Notes"), 3 => junk];
    let prefix = prop_oneof![
        4 => Just("/crm/v8/"),
        2 => Just("/crm/v7/"),
        1 => Just("/"),
        1 => Just("/crm/"),
        1 => Just("//crm/v8/"),
        1 => Just("/crm/v8//"),
        1 => Just("/CRM/v8/"),
    ];
    let query = prop_oneof![
        3 => Just(""),
        1 => Just("?fields=Email"),
        1 => Just("?_method=DELETE"),
        1 => Just("?page=1&X-HTTP-Method-Override=GET"),
        1 => Just("?a=%2e%2e"),
    ];
    let strategy = (prefix, module, proptest::collection::vec(tail, 0..3), query).prop_map(
        |(p, m, rest, q)| {
            let mut path = format!("{p}{m}");
            for r in rest {
                path.push('/');
                path.push_str(r);
            }
            format!("{path}{q}")
        },
    );
    let mut runner = TestRunner::deterministic();
    let mut targets_sent = Vec::new();
    for _ in 0..500 {
        let value = strategy.new_tree(&mut runner).expect("generate").current();
        targets_sent.push(value);
    }
    let answers = futures_util::stream::iter(targets_sent.iter().map(|t| {
        let h = &h;
        async move { (t.clone(), h.exchange(&get(t)).await.0) }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    for (target, responses) in &answers {
        assert_eq!(responses.len(), 1, "{target}: one response");
        let s = responses[0].status;
        assert!(s < 500, "{target}: no 5xx from the proxy ({s})");
    }
    for r in h.upstream() {
        let path = r.path_and_query.split('?').next().unwrap_or_default();
        assert!(
            targets_sent.contains(&r.path_and_query),
            "forwarded target {} was sent byte for byte",
            r.path_and_query
        );
        let segments: Vec<&str> = path.split('/').skip(1).collect();
        assert!(
            segments.iter().all(|s| !s.is_empty()
                && *s != "."
                && *s != ".."
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')),
            "forwarded path {path} is canonical"
        );
        // /crm/{v}/{module}[/{id}[/{related list}]]: `Contacts` as an id is a Leads record.
        assert!(
            segments
                .get(2)
                .is_some_and(|m| m.eq_ignore_ascii_case("leads"))
                && segments
                    .get(4)
                    .is_none_or(|r| !r.eq_ignore_ascii_case("contacts")),
            "forwarded path {path} is a Leads operation, never Contacts data"
        );
        assert!(
            !r.path_and_query.contains("_method") && !r.path_and_query.contains("Override"),
            "no method override forwarded: {}",
            r.path_and_query
        );
        h.assert_canonical(&r, "GET", &r.path_and_query.clone(), b"", "generated");
    }
    let forwarded = h.upstream().len();
    eprintln!(
        "generated: {} targets, {forwarded} forwarded",
        answers.len()
    );
    assert!(
        forwarded > 0 && forwarded < answers.len(),
        "the generator exercises both outcomes ({forwarded} forwarded)"
    );
    h.assert_no_leaks().await;
}
