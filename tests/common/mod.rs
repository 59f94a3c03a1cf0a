//! Shared integration-test helpers: the fake Zoho (the same code as `demo`), a test CA, and
//! `RunningProxy`, which runs the real binary on loopback ports and captures all its output.
#![allow(dead_code, unused_imports)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
pub use zoho_auth_proxy::sandbox::{
    FakeControl, FakeZoho, FakeZohoOptions, RecordedRequest, TestCa, TokenBehavior,
};

/// Secrets used by tests; the leak checks grep every output for them.
pub const CLIENT_SECRET: &str = "CS-CANARY-0123456789abcdef";
pub const REFRESH_TOKEN: &str = "1000.RTCANARY0123456789abcdef.0123456789abcdef";
pub const CLIENT_ID: &str = "1000.TESTCLIENT";

/// A fake Zoho plus a temp dir holding its CA file.
pub struct Zoho {
    pub ca: TestCa,
    pub fake: FakeZoho,
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
}

/// Fake-Zoho options with the canary credentials.
pub fn options() -> FakeZohoOptions {
    FakeZohoOptions {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        refresh_tokens: vec![REFRESH_TOKEN.into()],
        ..FakeZohoOptions::default()
    }
}

impl Zoho {
    pub async fn start() -> Zoho {
        Zoho::start_with(options()).await
    }

    pub async fn start_with(opts: FakeZohoOptions) -> Zoho {
        let ca = TestCa::new();
        let fake = FakeZoho::start(opts, &ca).await.expect("fake Zoho starts");
        Zoho::with_fake(ca, fake)
    }

    /// Around an already started fake (custom TLS), with `ca` written as the trust file.
    pub fn with_fake(ca: TestCa, fake: FakeZoho) -> Zoho {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.cert_pem()).expect("write CA");
        Zoho {
            ca,
            fake,
            dir,
            ca_file,
        }
    }

    /// A fake whose API server offers only HTTP/1.1 through ALPN (framing headers and
    /// connection reuse become visible; HTTP/2 is declined).
    pub async fn start_http1_only() -> Zoho {
        let ca = TestCa::new();
        let tls = ca.server_config(&["127.0.0.1", "localhost"]);
        let mut h1 = (*tls).clone();
        h1.alpn_protocols = vec![b"http/1.1".to_vec()];
        let fake = FakeZoho::start_with_tls(options(), tls, Arc::new(h1))
            .await
            .expect("fake starts");
        Zoho::with_fake(ca, fake)
    }

    pub fn control(&self) -> &FakeControl {
        self.fake.control()
    }

    /// A complete single-account config with the given allow entries and extra top-level YAML.
    pub fn config(&self, allow: &[&str], extra: &str) -> String {
        let allow: String = allow.iter().map(|a| format!("  - {a}\n")).collect();
        format!(
            "listen: 127.0.0.1:0\nadmin:\n  listen: 127.0.0.1:0\nzoho:\n  data_center: us\n  accounts_url: {}\n  api_url: {}\n  client_id: {CLIENT_ID}\n  client_secret: ${{TEST_CLIENT_SECRET}}\n  refresh_token: ${{TEST_REFRESH_TOKEN}}\n  ca_file: {}\nallow:\n{allow}{extra}",
            self.fake.accounts_url(),
            self.fake.api_url(),
            self.ca_file.display()
        )
    }
}

/// Output captured from the child.
#[derive(Default)]
struct Output {
    text: Mutex<String>,
    changed: Notify,
}

/// The proxy binary, running.
pub struct RunningProxy {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    /// The proxy listener as printed (`127.0.0.1:PORT` or `unix:/path`); `proxy` is unspecified
    /// (port 0) for a Unix socket.
    pub proxy_listen: String,
    pub config_path: PathBuf,
    output: Arc<Output>,
}

/// The address announced for `role` in the output: `listening ROLE ADDR` (text logs) or the
/// JSON event `{"message":"listening","role":ROLE,"address":ADDR,…}` (`log.format: json`).
pub fn announced(output: &str, role: &str) -> Option<String> {
    let prefix = format!("listening {role} ");
    output.lines().find_map(|line| {
        if let Some(address) = line.strip_prefix(&prefix) {
            return Some(address.trim().to_string());
        }
        let event: serde_json::Value = serde_json::from_str(line).ok()?;
        (event.get("message")?.as_str()? == "listening" && event.get("role")?.as_str()? == role)
            .then(|| event.get("address")?.as_str().map(str::to_string))
            .flatten()
    })
}

fn pump<R: tokio::io::AsyncRead + Unpin + Send + 'static>(reader: R, output: Arc<Output>) {
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(mut t) = output.text.lock() {
                t.push_str(&line);
                t.push('\n');
            }
            output.changed.notify_waiters();
        }
    });
}

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_zoho-auth-proxy")
}

/// Runs the proxy once on the config file at `config_path`, with the canary secrets in its
/// environment, and waits for it to exit (a config that must be refused).
pub fn run_to_exit(config_path: &Path) -> std::process::Output {
    std::process::Command::new(binary())
        .arg("--config")
        .arg(config_path)
        .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
        .env("TEST_REFRESH_TOKEN", REFRESH_TOKEN)
        .output()
        .expect("run the proxy")
}

impl RunningProxy {
    /// Writes `config` to `dir/proxy.yaml` and starts the proxy with the canary secrets in its
    /// environment; returns once both listeners are bound.
    pub async fn spawn(dir: &Path, config: &str) -> RunningProxy {
        RunningProxy::spawn_with_env(dir, config, &[]).await
    }

    /// [`spawn`](Self::spawn), then waits up to 20 s for `/readyz` (fails the test otherwise).
    pub async fn spawn_ready(dir: &Path, config: &str) -> RunningProxy {
        let proxy = RunningProxy::spawn(dir, config).await;
        assert!(
            proxy.wait_ready(Duration::from_secs(20)).await,
            "ready: {}",
            proxy.logs()
        );
        proxy
    }

    pub async fn spawn_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> RunningProxy {
        let config_path = dir.join("proxy.yaml");
        std::fs::write(&config_path, config).expect("write config");
        RunningProxy::spawn_file(&config_path, env).await
    }

    pub async fn spawn_file(config_path: &Path, env: &[(&str, &str)]) -> RunningProxy {
        let mut cmd = Command::new(binary());
        cmd.arg("--config")
            .arg(config_path)
            .env("TEST_CLIENT_SECRET", CLIENT_SECRET)
            .env("TEST_REFRESH_TOKEN", REFRESH_TOKEN)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn proxy");
        let output = Arc::new(Output::default());
        pump(child.stdout.take().expect("stdout"), output.clone());
        pump(child.stderr.take().expect("stderr"), output.clone());
        let mut proxy = RunningProxy {
            child,
            proxy: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
            proxy_listen: String::new(),
            config_path: config_path.to_path_buf(),
            output,
        };
        let found = proxy
            .wait_for_output(Duration::from_secs(30), |t| {
                announced(t, "proxy").is_some() && announced(t, "admin").is_some()
            })
            .await;
        assert!(found, "proxy did not start; output:\n{}", proxy.logs());
        let logs = proxy.logs();
        let text = |role: &str| -> String {
            announced(&logs, role).unwrap_or_else(|| panic!("no {role} address in output:\n{logs}"))
        };
        let addr = |role: &str| -> SocketAddr {
            let t = text(role);
            t.parse()
                .unwrap_or_else(|_| panic!("{role} address `{t}` is not host:port"))
        };
        proxy.proxy_listen = text("proxy");
        proxy.proxy = proxy
            .proxy_listen
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 0)));
        proxy.admin = addr("admin");
        proxy
    }

    /// Everything the child printed so far (stdout and stderr).
    pub fn logs(&self) -> String {
        self.output
            .text
            .lock()
            .map(|t| t.clone())
            .unwrap_or_default()
    }

    /// Waits until the output satisfies `pred` (bounded).
    pub async fn wait_for_output(&self, deadline: Duration, pred: impl Fn(&str) -> bool) -> bool {
        let end = Instant::now() + deadline;
        loop {
            let notified = self.output.changed.notified();
            if pred(&self.logs()) {
                return true;
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let _ = tokio::time::timeout(left.min(Duration::from_millis(200)), notified).await;
        }
    }

    /// The address of the listener announced as `listening <role> ADDR` (e.g. `account:NAME`),
    /// waiting (bounded) for the line.
    pub async fn listening(&self, role: &str) -> SocketAddr {
        self.wait_for_output(Duration::from_secs(10), |t| announced(t, role).is_some())
            .await;
        let logs = self.logs();
        announced(&logs, role)
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no `listening {role}` line in output:\n{logs}"))
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.proxy)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        self.admin_text("/metrics").await
    }

    /// The text the admin listener answers on `path` (the console on `/`).
    pub async fn admin_text(&self, path: &str) -> String {
        client()
            .get(self.admin_url(path))
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("GET {path} text: {e}"))
    }

    /// The admin listener's `/status` JSON.
    pub async fn status_json(&self) -> serde_json::Value {
        client()
            .get(self.admin_url("/status"))
            .send()
            .await
            .expect("status")
            .json()
            .await
            .expect("status json")
    }

    /// Polls `/readyz` until 200 (bounded).
    pub async fn wait_ready(&self, deadline: Duration) -> bool {
        let c = client();
        poll_until(deadline, || async {
            c.get(self.admin_url("/readyz"))
                .send()
                .await
                .map(|r| r.status() == 200)
                .unwrap_or(false)
        })
        .await
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("child running")
    }

    /// Sends a signal by name (TERM, INT, HUP).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// Waits for the process to exit (bounded).
    pub async fn wait_exit(&mut self, deadline: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(deadline, self.child.wait())
            .await
            .ok()
            .and_then(|r| r.ok())
    }

    /// Peak resident memory in KiB (VmHWM) and current (VmRSS).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmHWM:"), field("VmRSS:"))
    }

    /// Asserts no canary secret or live token appears in the output.
    pub fn assert_no_secrets(&self, tokens: &[String]) {
        let logs = self.logs();
        for secret in [CLIENT_SECRET, REFRESH_TOKEN, "CS-CANARY", "RTCANARY"] {
            assert!(
                !logs.contains(secret),
                "secret {secret} leaked into output:\n{logs}"
            );
        }
        for t in tokens {
            assert!(
                !logs.contains(t.as_str()),
                "an access token leaked into output"
            );
        }
    }
}

/// The Chromium binary on `PATH`, if any (browser tests say SKIPPED without it).
pub fn chromium() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// Runs headless Chromium on `url` with a fresh `profile` and `extra` flags, never through an
/// HTTP proxy, and returns its output: the DOM after load on stdout (`--dump-dom`). Bounded at
/// 90 s.
pub async fn chromium_dump_dom(
    browser: &Path,
    profile: &Path,
    extra: &[&str],
    url: &str,
) -> std::process::Output {
    let mut cmd = Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ])
    .args(extra)
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg("--dump-dom")
    .arg(url)
    .env_remove("http_proxy")
    .env_remove("https_proxy")
    .env_remove("HTTP_PROXY")
    .env_remove("HTTPS_PROXY")
    .stdin(Stdio::null())
    .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(90), cmd.output())
        .await
        .expect("chromium finishes within 90 s")
        .expect("chromium runs")
}

/// A plain HTTP client that ignores proxy environment variables.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A client that trusts the test CA (to talk to the fake Zoho directly) and follows no redirects.
pub fn tls_client(ca: &TestCa) -> reqwest::Client {
    let cert =
        reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).expect("test CA certificate");
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .add_root_certificate(cert)
        .build()
        .expect("tls client")
}

/// A fake Zoho and a ready proxy in front of it: one account allowed `allow`, plus `extra`
/// top-level YAML.
pub async fn start_proxy(allow: &[&str], extra: &str) -> (Zoho, RunningProxy) {
    let zoho = Zoho::start().await;
    let proxy = RunningProxy::spawn_ready(zoho.dir.path(), &zoho.config(allow, extra)).await;
    (zoho, proxy)
}

/// Where `.ci/run` installs Zoho's official Node SDK (or `ZOHO_NODE_SDK`); `None` when it is
/// not installed (the tests that run it then say SKIPPED).
pub fn node_sdk() -> Option<PathBuf> {
    let dir = std::env::var_os("ZOHO_NODE_SDK")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/node-sdk/node_modules/@zohocrm/nodejs-sdk-8.0")
        });
    dir.join("package.json").is_file().then_some(dir)
}

/// Runs `tests/data/node-sdk/get_leads.mjs` (Zoho's Node SDK at `sdk`) once against `proxy`
/// with `key` as its access token and `resources` as its resource folder: its JSON result line
/// (`{"status": …, "records": …}`) and all it printed.
pub async fn run_node_sdk(
    sdk: &Path,
    proxy: &RunningProxy,
    key: &str,
    resources: &Path,
) -> (serde_json::Value, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/node-sdk/get_leads.mjs");
    let out = Command::new("node")
        .arg(&script)
        .env("ZOHO_SDK", sdk)
        .env(
            "PROXY_URL",
            format!("http://127.0.0.1:{}", proxy.proxy.port()),
        )
        .env("CLIENT_KEY", key)
        .env("RESOURCES", resources)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
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

/// Polls `check` until it returns true or the deadline passes.
pub async fn poll_until<F, Fut>(deadline: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    let mut pause = Duration::from_millis(5);
    loop {
        if check().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

/// Sends raw bytes and reads until the server closes or `deadline` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], deadline: Duration) -> Vec<u8> {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(deadline, s.read_to_end(&mut out)).await;
    out
}

/// Waits (bounded) until every replica of a fleet is ready.
pub async fn wait_all_ready(fleet: &[RunningProxy], deadline: Duration) {
    let ready = futures_util::future::join_all(fleet.iter().map(|p| p.wait_ready(deadline))).await;
    for (i, (ok, p)) in ready.iter().zip(fleet).enumerate() {
        assert!(ok, "replica {i} became ready; output:\n{}", p.logs());
    }
}

/// The token a replica injects (through the fake's echo of the request it got), or the status
/// it answered with.
pub async fn injected_token(proxy: &RunningProxy) -> Result<String, u16> {
    let resp = client()
        .get(proxy.url("/crm/v8/Leads?__fake=echo"))
        .send()
        .await
        .map_err(|_| 0u16)?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(status);
    }
    let v: serde_json::Value = resp.json().await.map_err(|_| status)?;
    v["headers"]
        .as_array()
        .and_then(|hs| hs.iter().find(|h| h[0] == "authorization"))
        .and_then(|h| h[1].as_str())
        .and_then(|a| a.strip_prefix("Zoho-oauthtoken "))
        .map(str::to_string)
        .ok_or(status)
}

/// The `redis-server` binary, where Debian and Ubuntu put it.
pub fn redis_binary() -> Option<PathBuf> {
    [
        "/usr/bin/redis-server",
        "/usr/sbin/redis-server",
        "/usr/local/bin/redis-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// A throw-away `redis-server` on a free loopback port (killed on drop), or `None` (test
/// skipped loudly) when it is not installed.
pub async fn start_redis() -> Option<(tokio::process::Child, u16, tempfile::TempDir)> {
    let Some(binary) = redis_binary() else {
        eprintln!("\n\n!!!!!!!!!! SKIPPED: redis-server is not installed !!!!!!!!!!\n\n");
        return None;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let dir = tempfile::tempdir().expect("temp dir");
    let child = tokio::process::Command::new(binary)
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "no", "--protected-mode", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn redis-server");
    let up = poll_until(Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    assert!(up, "redis-server listens");
    Some((child, port, dir))
}
