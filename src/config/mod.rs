//! Configuration: `proxy.yaml` → [`RawConfig`] (serde mirror) → validated, typed [`Config`].
//!
//! Owns env interpolation, secret files, URL and listen-address checks and the error messages
//! that name the key and line. Reads the config file, secret files and `ca_file`, and (in
//! [`Config::load`], at start and reload) checks with a probe file that each file token store's
//! folder is writable; nothing else.
//! After start-up the rest of the program only sees [`Config`].

mod access;
mod admin;
mod datacenter;
mod interpolate;
mod raw;
mod store;
mod units;

pub use access::{AccessConfig, ClientConfig, ANONYMOUS, MIN_KEY_CHARS};
pub use datacenter::{check_override_host, is_zoho_api_host, DataCenter, Endpoint};
pub use raw::RawConfig;
pub use store::{RedisNode, RedisTopology, SUPPORTED_STORES};
pub use units::{parse_duration, parse_size};

use crate::policy::{Policy, PolicyMode};
pub use admin::AdminAuth;
use raw::{OrderedMap, RawAccount, RawCount, RawCredits, RawLimits, RawToken, RawZoho};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use store::StoreValue;

/// The largest config file we read (a guard against pasting a huge file by mistake).
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// Data-plane worker threads when `workers` is not set: one. Zoho admits at most 25 concurrent
/// calls per org, and one worker relays over 10,000 requests a second on the bench machine, so
/// more threads buy a sidecar nothing; measured on 2 cores (bench/README.md), one worker cost
/// 5–20 % less CPU per request than `auto` from 1 to 256 connections, at the same throughput.
pub const DEFAULT_WORKERS: usize = 1;

/// Most data-plane worker threads `workers` may ask for.
pub const MAX_WORKERS: usize = 256;

/// A configuration problem: which key, where, and what to do. Never contains a secret value.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}{}: {message}", key, line.map(|l| format!(" (line {l})")).unwrap_or_default())]
pub struct ConfigError {
    /// Dotted key path, e.g. `zoho.client_secret` or `accounts[1].allow[0]`.
    pub key: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Where a listener binds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum ListenAddr {
    /// A TCP socket address.
    Tcp(SocketAddr),
    /// A Unix domain socket path (`unix:/path`), or an abstract socket name (`unix:@name`: the
    /// path starts with `@`).
    Unix(PathBuf),
}

/// The mode of the socket file of a `unix:/path` listener.
pub const UNIX_SOCKET_MODE: u32 = 0o660;

impl ListenAddr {
    /// An abstract Unix socket (`unix:@name`): no file, so no permissions guard it.
    pub fn is_abstract(&self) -> bool {
        matches!(self, ListenAddr::Unix(p) if p.as_os_str().as_encoded_bytes().first() == Some(&b'@'))
    }
}

impl std::fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenAddr::Tcp(a) => write!(f, "{a}"),
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// A secret value and, when it came from a file, that file (re-read on reload).
#[derive(Clone)]
pub struct SecretValue {
    /// The secret itself.
    pub value: SecretString,
    /// The file it was read from, if any.
    pub file: Option<PathBuf>,
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        crate::util::REDACTED.fmt(f)
    }
}

impl PartialEq for SecretValue {
    fn eq(&self, other: &Self) -> bool {
        self.file == other.file && self.expose() == other.expose()
    }
}

impl Eq for SecretValue {}

impl SecretValue {
    /// Exposes the secret for the one place that sends it.
    pub fn expose(&self) -> &str {
        self.value.expose_secret()
    }
}

/// One account's `credits:` section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreditsConfig {
    /// `credits.daily_limit` (`None`: count without a limit).
    pub daily_limit: Option<u64>,
    /// `credits.costs`: operation → credits, replacing the built-in table's figure.
    pub costs: crate::policy::CostOverrides,
}

/// Self client (backend, own org) or server-based client (browser authorization).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientType {
    /// Zoho API console "Self Client".
    #[serde(rename = "self")]
    SelfClient,
    /// "Server-based Applications": authorized per account in a browser.
    Server,
}

/// Where tokens are persisted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    /// Memory only: a restart mints again.
    Memory,
    /// A JSON file written atomically with mode 0600.
    File(PathBuf),
    /// A shared Redis (fleet mode).
    Redis {
        /// The configured URL (`redis://`, `rediss://`, `redis+sentinel://`, `redis+cluster://`,
        /// …), never with a password.
        url: String,
        /// One Redis, Sentinel or Cluster, parsed from `url`.
        topology: RedisTopology,
        /// The data nodes' password (from `${VAR}` or `redis_password_file`).
        password: Option<SecretValue>,
        /// The sentinels' own password (`sentinel_password_file`), Sentinel only.
        sentinel_password: Option<SecretValue>,
    },
}

/// What a replica does when Redis is unreachable and its cached token expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedisDownPolicy {
    /// Stop serving (503) until Redis is back: the fleet-wide budget is never at risk.
    Refuse,
    /// Mint locally, within a budget of at most 2 per window per replica.
    MintLocally,
}

/// `token:` settings of one account.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// Persistence.
    pub store: StoreConfig,
    /// Dotted key of `store` (`token.store` or `accounts[i].token.store`), for messages.
    pub store_key: String,
    /// Mints allowed per refresh token per 10 minutes (Zoho allows 10).
    pub mint_budget: u32,
    /// Fleet mode: how long a minting lease lasts before another replica may take over.
    pub lease: Duration,
    /// Fleet mode: what to do when Redis is down and the token expires.
    pub when_redis_down: RedisDownPolicy,
}

/// One Zoho account the proxy serves.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// Name used by routing, metrics and status (`default` in the single-account form).
    pub name: String,
    /// Config key prefix of this account (`zoho` or `accounts[i]`), for messages.
    pub key: String,
    /// A listener dedicated to this account.
    pub listen: Option<ListenAddr>,
    /// Self or server-based client.
    pub client_type: ClientType,
    /// Data center.
    pub data_center: DataCenter,
    /// Accounts server base URL (token endpoint host), no trailing slash.
    pub accounts_url: url::Url,
    /// Explicit API base override (then `api_domain` from token responses is ignored).
    pub api_url: Option<url::Url>,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth client secret.
    pub client_secret: SecretValue,
    /// Configured refresh token (self client), if any.
    pub refresh_token: Option<SecretValue>,
    /// Self-client grant token to exchange once.
    pub grant_token: Option<SecretValue>,
    /// Registered redirect URI (server-based clients).
    pub redirect_uri: Option<url::Url>,
    /// Scopes requested in the browser flow (server-based clients).
    pub scopes: Vec<String>,
    /// Extra trusted roots (PEM file).
    pub ca_file: Option<PathBuf>,
    /// Which HTTP version the forwarded requests use (`upstream_protocol`).
    pub upstream_protocol: UpstreamProtocol,
    /// The allowlist.
    pub policy: Arc<Policy>,
    /// Raw allow entries, for `check`.
    pub allow: Vec<String>,
    /// Token persistence and budget.
    pub token: TokenConfig,
    /// `credits:`: the daily limit and cost overrides (top-level costs merged in).
    pub credits: crate::config::CreditsConfig,
}

impl AccountConfig {
    /// The API base URL used before any token response names one.
    pub fn default_api_url(&self) -> url::Url {
        self.api_url.clone().unwrap_or_else(|| {
            url::Url::parse(self.data_center.api_url()).expect("data center table holds valid URLs")
        })
    }

    /// Whether the client secret may be sent to `candidate`, an accounts server named by Zoho's
    /// OAuth redirect (`accounts-server=`) or remembered in the token store. Accepted: a bare
    /// origin that is one of Zoho's data-center accounts servers, or the origin of this
    /// account's configured `accounts_url`. Returns the normalised origin; `None` for anything
    /// else (other hosts, credentials, paths, queries), so a query parameter can never direct
    /// the secret to an arbitrary host.
    pub fn accepted_accounts_server(&self, candidate: &url::Url) -> Option<url::Url> {
        let bare = candidate.username().is_empty()
            && candidate.password().is_none()
            && matches!(candidate.path(), "" | "/")
            && candidate.query().is_none()
            && candidate.fragment().is_none();
        if !bare || candidate.host().is_none() {
            return None;
        }
        let origin = url::Url::parse(&candidate.origin().ascii_serialization()).ok()?;
        let configured = candidate.origin() == self.accounts_url.origin();
        let zoho =
            origin.scheme() == "https" && DataCenter::from_accounts_url(origin.as_str()).is_some();
        (configured || zoho).then_some(origin)
    }

    /// Where a person starts the browser authorization of this account: the origin (and path
    /// prefix) of the registered `redirect_uri` with `/oauth/start?account=NAME`, since the
    /// browser must reach that address anyway; the admin listener otherwise.
    pub fn authorize_start_url(&self, admin: &ListenAddr) -> String {
        let via_redirect = self.redirect_uri.as_ref().and_then(|r| {
            let prefix = r.path().strip_suffix("/oauth/callback")?;
            let mut url = r.clone();
            url.set_path(&format!("{prefix}/oauth/start"));
            url.set_query(None);
            url.set_fragment(None);
            url.query_pairs_mut().append_pair("account", &self.name);
            Some(url.to_string())
        });
        via_redirect.unwrap_or_else(|| match admin {
            ListenAddr::Tcp(addr) => format!("http://{addr}/oauth/start?account={}", self.name),
            ListenAddr::Unix(path) => {
                format!(
                    "/oauth/start?account={} on the admin socket unix:{}",
                    self.name,
                    path.display()
                )
            }
        })
    }
}

/// Request limits (live-reloadable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest request body forwarded (413 beyond).
    pub max_body: u64,
    /// Bodies up to this size are kept for one replay after `INVALID_TOKEN`.
    pub replay_body: u64,
    /// Time allowed until the upstream's response headers (504 beyond).
    pub request_timeout: Duration,
    /// TCP+TLS connect timeout to upstream.
    pub connect_timeout: Duration,
    /// Time allowed for a client's request headers (and idle keep-alive).
    pub header_timeout: Duration,
    /// Longest pause inside a request or response body. A request body must also deliver at
    /// least 1 KiB (`proxy::body::MIN_BODY_PROGRESS`) or end within each such period, so a
    /// trickled body is cut as well.
    pub body_idle_timeout: Duration,
    /// Open client connections at most; extra ones are shed.
    pub max_connections: u32,
    /// Requests in flight to Zoho at most (0 = unlimited).
    pub upstream_concurrency: u32,
    /// How long a request may queue for an upstream slot before 503.
    pub upstream_queue_timeout: Duration,
    /// How long a request waits for a token refresh already in flight before 503.
    pub token_wait: Duration,
    /// Heavy calls (COQL, convert, send mail, big writes, bulk, search, composite) in flight to
    /// Zoho at most, on top of their ordinary slot (0 = unlimited; Zoho allows 10).
    pub heavy_concurrency: u32,
}

/// The HTTP version of forwarded requests (`zoho.upstream_protocol`, per account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamProtocol {
    /// HTTP/1.1 for a request that is alone in flight on its worker (no HTTP/2 framing, HPACK
    /// or flow control to pay for), HTTP/2 multiplexing as soon as others are in flight, when
    /// the API server offers it (ALPN).
    #[default]
    Auto,
    /// HTTP/2 whenever the server offers it.
    Http2,
    /// HTTP/1.1 only.
    Http1,
}

impl UpstreamProtocol {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamProtocol::Auto => "auto",
            UpstreamProtocol::Http2 => "http2",
            UpstreamProtocol::Http1 => "http1",
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 1 << 30,
            replay_body: 1 << 20,
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            header_timeout: Duration::from_secs(10),
            body_idle_timeout: Duration::from_secs(30),
            max_connections: 4096,
            upstream_concurrency: 25,
            upstream_queue_timeout: Duration::from_secs(10),
            token_wait: Duration::from_secs(5),
            heavy_concurrency: 10,
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How a request picks its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// By the listener it arrived on (the main listener serves the first account).
    Listener,
    /// By the `X-Zoho-Account` header (on the main listener).
    Header,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Main proxy listener.
    pub listen: ListenAddr,
    /// Opt-in for non-loopback TCP listeners.
    pub allow_remote_clients: bool,
    /// Admin listener (health, readiness, metrics, status, console, OAuth callback).
    pub admin_listen: ListenAddr,
    /// The admin listener's opt-in credential (`admin.auth`).
    pub admin_auth: Option<AdminAuth>,
    /// Data-plane worker threads (restart to change).
    pub workers: usize,
    /// Accounts, at least one; the first is the main listener's default.
    pub accounts: Vec<AccountConfig>,
    /// Account routing.
    pub routing: Routing,
    /// Enforce or report.
    pub policy_mode: PolicyMode,
    /// Limits.
    pub limits: Limits,
    /// Log format (restart to change).
    pub log_format: LogFormat,
    /// Log level / filter directive (reloadable).
    pub log_level: String,
    /// Drain time after SIGTERM.
    pub shutdown_grace: Duration,
    /// Time to keep accepting after SIGTERM before draining.
    pub shutdown_delay: Duration,
    /// Who may use the proxy: Host names, the SSRF header, client identities.
    pub access: AccessConfig,
    /// The config file itself and every secret file, for change detection.
    pub watched_files: Vec<PathBuf>,
}

/// Reads variables for `${VAR}`; tests pass their own.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Looks variables up in the process environment.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Config {
    /// Reads and validates a config file. Relative paths inside resolve against its folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file_error = |message: String| ConfigError {
            key: path.display().to_string(),
            line: None,
            message,
        };
        let meta = std::fs::metadata(path)
            .map_err(|e| file_error(format!("cannot read the config file: {e}")))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(file_error(format!(
                "the config file is {} bytes; the limit is {MAX_CONFIG_BYTES}",
                meta.len()
            )));
        }
        let bytes = std::fs::read(path)
            .map_err(|e| file_error(format!("cannot read the config file: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| file_error("the config file is not UTF-8 text".to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = Config::from_yaml_str_with(&text, &process_env, base)?;
        config.check_store_dirs(&text)?;
        config.watched_files.insert(0, path.to_path_buf());
        Ok(config)
    }

    /// Each file store's folder exists and is writable (checked at start, not at the first
    /// token, which may be an hour away).
    fn check_store_dirs(&self, text: &str) -> Result<(), ConfigError> {
        for account in &self.accounts {
            if let StoreConfig::File(path) = &account.token.store {
                store::check_file_store_dir(path).map_err(|message| ConfigError {
                    key: account.token.store_key.clone(),
                    line: line_of(text, &account.token.store_key),
                    message,
                })?;
            }
        }
        Ok(())
    }

    /// Validates YAML text using the process environment (for tests and tools).
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str_with(text, &process_env, Path::new("."))
    }

    /// Validates YAML text with an explicit environment and base folder.
    pub fn from_yaml_str_with(
        text: &str,
        env: EnvLookup<'_>,
        base: &Path,
    ) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError {
                key: "(file)".to_string(),
                line: None,
                message: "the config file is empty; start from the annotated proxy.yaml"
                    .to_string(),
            });
        }
        let raw: RawConfig = serde_yaml::from_str(text).map_err(|e| yaml_error(&e, text))?;
        Validator { text, env, base }.validate(raw)
    }

    /// Effective settings without secrets, for `check` and `/status`.
    pub fn describe(&self) -> serde_json::Value {
        let accounts: Vec<_> = self
            .accounts
            .iter()
            .map(|a| {
                serde_json::json!({
                    "name": a.name,
                    "client_type": a.client_type,
                    "listen": a.listen.as_ref().map(|l| l.to_string()),
                    "data_center": a.data_center.code(),
                    "accounts_url": a.accounts_url.as_str().trim_end_matches('/'),
                    "api_url": a.api_url.as_ref().map(|u| u.as_str().trim_end_matches('/').to_string())
                        .unwrap_or_else(|| format!("{} (or the token's api_domain)", a.data_center.api_url())),
                    "client_id": a.client_id,
                    "client_secret": secret_origin(&a.client_secret),
                    "refresh_token": a.refresh_token.as_ref().map(secret_origin),
                    "grant_token": a.grant_token.as_ref().map(|_| "set (exchanged once)"),
                    "redirect_uri": a.redirect_uri.as_ref().map(|u| u.as_str()),
                    "scopes": (a.client_type == ClientType::Server).then_some(&a.scopes),
                    "ca_file": a.ca_file.as_ref().map(|p| p.display().to_string()),
                    "upstream_protocol": a.upstream_protocol.as_str(),
                    "token_store": match &a.token.store {
                        StoreConfig::Memory => "memory (a restart mints a new token)".to_string(),
                        StoreConfig::File(p) => p.display().to_string(),
                        StoreConfig::Redis { url, .. } => url.clone(),
                    },
                    "mint_budget": a.token.mint_budget,
                    "policy": a.policy.summary(),
                })
            })
            .collect();
        serde_json::json!({
            "listen": self.listen.to_string(),
            "allow_remote_clients": self.allow_remote_clients,
            "admin_listen": self.admin_listen.to_string(),
            "admin_auth": self.admin_auth.as_ref().map(|a| serde_json::json!({
                "username": a.username,
                "password_file": a.password.file.as_ref().map(|p| p.display().to_string()),
                "exempt": a.exempt,
            })),
            "workers": self.workers,
            "routing": self.routing,
            "policy_mode": match self.policy_mode { PolicyMode::Enforce => "enforce", PolicyMode::Report => "report" },
            "limits": {
                "max_body": self.limits.max_body,
                "replay_body": self.limits.replay_body,
                "request_timeout_ms": self.limits.request_timeout.as_millis() as u64,
                "connect_timeout_ms": self.limits.connect_timeout.as_millis() as u64,
                "header_timeout_ms": self.limits.header_timeout.as_millis() as u64,
                "body_idle_timeout_ms": self.limits.body_idle_timeout.as_millis() as u64,
                "max_connections": self.limits.max_connections,
                "upstream_concurrency": self.limits.upstream_concurrency,
                "upstream_queue_timeout_ms": self.limits.upstream_queue_timeout.as_millis() as u64,
                "token_wait_ms": self.limits.token_wait.as_millis() as u64,
                "heavy_concurrency": self.limits.heavy_concurrency,
            },
            "log": { "format": self.log_format, "level": self.log_level },
            "shutdown": { "grace_ms": self.shutdown_grace.as_millis() as u64, "delay_ms": self.shutdown_delay.as_millis() as u64 },
            "accounts": accounts,
            "access": self.access.describe(),
        })
    }

    /// The account with this name.
    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name == name)
    }
}

fn secret_origin(secret: &SecretValue) -> String {
    match &secret.file {
        Some(f) => format!("from file {}", f.display()),
        None => "set (hidden)".to_string(),
    }
}

/// Turns a serde_yaml error into a `ConfigError` naming the key and line.
fn yaml_error(e: &serde_yaml::Error, text: &str) -> ConfigError {
    let rendered = e.to_string();
    // serde_yaml formats as "path.to.key: message at line L column C".
    let (key, message) = match rendered.split_once(": ") {
        Some((k, m)) if !k.contains(' ') => (k.to_string(), m.to_string()),
        _ => ("(file)".to_string(), rendered.clone()),
    };
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    let mut line = e.location().map(|l| l.line());
    // serde reports a duplicate at the start of its mapping; point at the second occurrence.
    if let Some(name) = message
        .strip_prefix("duplicate field `")
        .and_then(|r| r.split('`').next())
    {
        let start = line.unwrap_or(1).saturating_sub(1);
        let hits: Vec<usize> = text
            .lines()
            .enumerate()
            .skip(start)
            .filter(|(_, l)| {
                let l = l.trim_start().trim_start_matches("- ");
                l.strip_prefix(name)
                    .is_some_and(|r| r.trim_start().starts_with(':'))
            })
            .map(|(i, _)| i + 1)
            .collect();
        if let Some(second) = hits.get(1) {
            line = Some(*second);
        }
    }
    ConfigError { key, line, message }
}

struct Validator<'a> {
    text: &'a str,
    env: EnvLookup<'a>,
    base: &'a Path,
}

impl Validator<'_> {
    fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.to_string(),
            line: line_of(self.text, key),
            message: message.into(),
        }
    }

    /// Interpolates a string value; an empty result counts as missing.
    fn string(&self, key: &str, value: &Option<String>) -> Result<Option<String>, ConfigError> {
        let Some(value) = value else { return Ok(None) };
        let value =
            interpolate::interpolate(value, self.env).map_err(|e| self.err(key, e.to_string()))?;
        let value = value.trim().to_string();
        Ok((!value.is_empty()).then_some(value))
    }

    fn path(&self, key: &str, value: &Option<String>) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self.string(key, value)?.map(|p| self.base.join(p)))
    }

    /// A secret given inline (`key`) or as a file (`key_file`); exactly one of them.
    fn secret(
        &self,
        prefix: &str,
        name: &str,
        inline: &Option<String>,
        file: &Option<String>,
        required: bool,
    ) -> Result<Option<SecretValue>, ConfigError> {
        let key = format!("{prefix}.{name}");
        let file_key = format!("{prefix}.{name}_file");
        if inline.is_some() && file.is_some() {
            return Err(self.err(&key, format!("set either {name} or {name}_file, not both")));
        }
        if let Some(path) = self.path(&file_key, file)? {
            let value = read_secret_file(&path).map_err(|m| self.err(&file_key, m))?;
            return Ok(Some(SecretValue {
                value: SecretString::from(value),
                file: Some(path),
            }));
        }
        match self.string(&key, inline)? {
            Some(value) => Ok(Some(SecretValue {
                value: SecretString::from(value),
                file: None,
            })),
            None if required => Err(self.err(
                &key,
                if inline.is_some() {
                    format!("{name} is empty")
                } else {
                    format!("{name} (or {name}_file) is required")
                },
            )),
            None => Ok(None),
        }
    }

    /// The host of an override URL must be the data center's own Zoho host or loopback.
    fn override_host(
        &self,
        key: &str,
        url: &url::Url,
        endpoint: Endpoint,
        dc: DataCenter,
    ) -> Result<(), ConfigError> {
        let host = url.host_str().unwrap_or_default();
        check_override_host(host, is_loopback(url), endpoint, dc).map_err(|m| self.err(key, m))
    }

    fn url(&self, key: &str, value: &Option<String>) -> Result<Option<url::Url>, ConfigError> {
        let Some(text) = self.string(key, value)? else {
            return Ok(None);
        };
        let url = url::Url::parse(&text)
            .map_err(|e| self.err(key, format!("`{text}` is not a valid URL: {e}")))?;
        check_base_url(&url).map_err(|m| self.err(key, m))?;
        Ok(Some(url))
    }

    fn duration(
        &self,
        key: &str,
        value: &Option<String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match self.string(key, value)? {
            Some(text) => parse_duration(&text).map_err(|m| self.err(key, m)),
            None => Ok(default),
        }
    }

    fn size(&self, key: &str, value: &Option<String>, default: u64) -> Result<u64, ConfigError> {
        match self.string(key, value)? {
            Some(text) => parse_size(&text).map_err(|m| self.err(key, m)),
            None => Ok(default),
        }
    }

    fn listen(
        &self,
        key: &str,
        value: &Option<String>,
        default: &str,
    ) -> Result<ListenAddr, ConfigError> {
        let text = self
            .string(key, value)?
            .unwrap_or_else(|| default.to_string());
        parse_listen(&text).map_err(|m| self.err(key, m))
    }

    /// `workers`: a number from 1 to [`MAX_WORKERS`] (default [`DEFAULT_WORKERS`]) or `auto`
    /// (one per core).
    fn workers(&self, value: Option<RawCount>) -> Result<usize, ConfigError> {
        let key = "workers";
        let count = match value {
            None => return Ok(DEFAULT_WORKERS),
            Some(RawCount::Number(n)) => n,
            Some(RawCount::Text(text)) => match self.string(key, &Some(text))?.as_deref() {
                None => return Ok(DEFAULT_WORKERS),
                Some("auto") => return Ok(crate::rt::workers::auto_count().min(MAX_WORKERS)),
                Some(t) => t.parse().map_err(|_| {
                    self.err(
                        key,
                        format!("`{t}` is not a number; use auto or 1 to {MAX_WORKERS}"),
                    )
                })?,
            },
        };
        match usize::try_from(count) {
            Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
            _ => Err(self.err(
                key,
                format!("must be auto or 1 to {MAX_WORKERS}, not {count}"),
            )),
        }
    }

    fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let allow_remote_clients = raw.allow_remote_clients.unwrap_or(false);
        let workers = self.workers(raw.workers)?;
        let listen = self.listen("listen", &raw.listen, "127.0.0.1:8080")?;
        self.check_remote("listen", &listen, allow_remote_clients)?;
        let admin = raw.admin.unwrap_or_default();
        let admin_listen = self.listen("admin.listen", &admin.listen, "127.0.0.1:9901")?;
        if admin_listen == listen && !matches!(&listen, ListenAddr::Tcp(a) if a.port() == 0) {
            return Err(self.err("admin.listen", "the admin listener must differ from listen"));
        }
        let admin_auth = self.admin_auth(admin.auth)?;

        let policy_mode = match self
            .string(
                "policy.mode",
                &raw.policy.as_ref().and_then(|p| p.mode.clone()),
            )?
            .as_deref()
        {
            None | Some("enforce") => PolicyMode::Enforce,
            Some("report") => PolicyMode::Report,
            Some(other) => {
                return Err(self.err(
                    "policy.mode",
                    format!("unknown mode `{other}`; use enforce or report"),
                ))
            }
        };
        let routing = match self.string("routing", &raw.routing)?.as_deref() {
            None | Some("listener") => Routing::Listener,
            Some("header") => Routing::Header,
            Some(other) => {
                return Err(self.err(
                    "routing",
                    format!("unknown routing `{other}`; use listener or header"),
                ))
            }
        };

        let default_token = raw.token.unwrap_or_default();
        let top_credits = self.credits("credits", raw.credits.as_ref())?;
        let multi = raw.accounts.is_some();
        if multi && top_credits.daily_limit.is_some() {
            return Err(self.err(
                "credits.daily_limit",
                "with `accounts:`, each account has its own budget: set accounts[i].credits.daily_limit",
            ));
        }
        let mut accounts = Vec::new();
        match (raw.accounts, raw.zoho) {
            (Some(_), Some(_)) => return Err(self.err(
                "zoho",
                "use either the single-account `zoho:` + `allow:` form or `accounts:`, not both",
            )),
            (Some(_), None) if raw.allow.is_some() => {
                return Err(self.err(
                    "allow",
                    "with `accounts:`, each account has its own `allow:`",
                ))
            }
            (Some(list), None) => {
                if list.is_empty() {
                    return Err(self.err("accounts", "at least one account is required"));
                }
                for (i, account) in list.into_iter().enumerate() {
                    let key = format!("accounts[{i}]");
                    accounts.push(self.account(&key, account, &default_token, policy_mode)?);
                }
            }
            (None, zoho) => {
                let Some(zoho) = zoho else {
                    return Err(self.err(
                        "zoho",
                        "the `zoho:` section (client id, secret, refresh token) is required",
                    ));
                };
                let account = single_account(zoho, raw.allow, raw.modules);
                accounts.push(self.account("zoho", account, &default_token, policy_mode)?);
            }
        }
        for a in &mut accounts {
            if !multi {
                a.credits.daily_limit = top_credits.daily_limit;
            }
            for (op, credits) in &top_credits.costs.0 {
                a.credits.costs.0.entry(*op).or_insert(*credits);
            }
        }
        for (i, a) in accounts.iter().enumerate() {
            if accounts[..i].iter().any(|b| b.name == a.name) {
                return Err(self.err(
                    &format!("{}.name", a.key),
                    format!("duplicate account name `{}`", a.name),
                ));
            }
            if let Some(l) = &a.listen {
                self.check_remote(&format!("{}.listen", a.key), l, allow_remote_clients)?;
                let ephemeral = matches!(l, ListenAddr::Tcp(a) if a.port() == 0);
                if !ephemeral
                    && (*l == listen
                        || *l == admin_listen
                        || accounts[..i].iter().any(|b| b.listen.as_ref() == Some(l)))
                {
                    return Err(self.err(
                        &format!("{}.listen", a.key),
                        format!("{l} is already used by another listener"),
                    ));
                }
            }
        }

        let limits = self.limits(raw.limits.unwrap_or_default())?;
        let log = raw.log.unwrap_or_default();
        let log_format = match self.string("log.format", &log.format)?.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(self.err(
                    "log.format",
                    format!("unknown format `{other}`; use text or json"),
                ))
            }
        };
        let log_level = self
            .string("log.level", &log.level)?
            .unwrap_or_else(|| "info".to_string());
        tracing_subscriber::EnvFilter::try_new(&log_level).map_err(|e| {
            self.err(
                "log.level",
                format!("`{log_level}` is not a level or filter: {e}"),
            )
        })?;
        let shutdown = raw.shutdown.unwrap_or_default();
        let shutdown_grace =
            self.duration("shutdown.grace", &shutdown.grace, Duration::from_secs(20))?;
        let shutdown_delay = self.duration("shutdown.delay", &shutdown.delay, Duration::ZERO)?;

        let access = self.access(
            access::RawAccess {
                accept_hosts: raw.accept_hosts,
                allow_any_host: raw.allow_any_host,
                require_request_header: raw.require_request_header,
                strict_content_type: raw.strict_content_type,
                unix: raw.unix,
                clients: raw.clients,
            },
            &accounts,
        )?;
        let mut watched_files: Vec<PathBuf> = admin_auth
            .iter()
            .filter_map(|a| a.password.file.clone())
            .collect();
        for c in &access.clients {
            if let Some(f) = c.key.as_ref().and_then(|k| k.file.as_ref()) {
                watched_files.push(f.clone());
            }
        }
        for a in &accounts {
            for s in [Some(&a.client_secret), a.refresh_token.as_ref()]
                .into_iter()
                .flatten()
            {
                if let Some(f) = &s.file {
                    watched_files.push(f.clone());
                }
            }
        }
        let listeners = [
            ("listen".to_string(), &listen),
            ("admin.listen".to_string(), &admin_listen),
        ]
        .into_iter()
        .chain(accounts.iter().enumerate().filter_map(|(i, a)| {
            a.listen
                .as_ref()
                .map(|l| (format!("accounts[{i}].listen"), l))
        }));
        for (key, addr) in listeners {
            if addr.is_abstract() && access.unix_allowed_uids.is_empty() {
                return Err(self.err(
                    &key,
                    format!("{addr} is an abstract Unix socket, which has no file permissions: any process on this machine could connect. Set unix.allowed_uids to the uids that may, or listen on a socket path (unix:/run/zoho-auth-proxy/proxy.sock)"),
                ));
            }
        }
        Ok(Config {
            listen,
            allow_remote_clients,
            admin_listen,
            admin_auth,
            workers,
            accounts,
            routing,
            policy_mode,
            limits,
            log_format,
            log_level,
            shutdown_grace,
            shutdown_delay,
            access,
            watched_files,
        })
    }

    fn check_remote(&self, key: &str, addr: &ListenAddr, allowed: bool) -> Result<(), ConfigError> {
        if let ListenAddr::Tcp(sock) = addr {
            if !sock.ip().is_loopback() && !allowed {
                return Err(self.err(
                    key,
                    format!(
                        "{sock} is not a loopback address: anyone who can reach it could use your Zoho \
                         credentials through this proxy. Bind 127.0.0.1, use a unix: socket, or set \
                         allow_remote_clients: true if the network is private to your app"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn limits(&self, raw: RawLimits) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let limits = Limits {
            max_body: self.size("limits.max_body", &raw.max_body, d.max_body)?,
            replay_body: self.size("limits.replay_body", &raw.replay_body, d.replay_body)?,
            request_timeout: self.duration(
                "limits.request_timeout",
                &raw.request_timeout,
                d.request_timeout,
            )?,
            connect_timeout: self.duration(
                "limits.connect_timeout",
                &raw.connect_timeout,
                d.connect_timeout,
            )?,
            header_timeout: self.duration(
                "limits.header_timeout",
                &raw.header_timeout,
                d.header_timeout,
            )?,
            body_idle_timeout: self.duration(
                "limits.body_idle_timeout",
                &raw.body_idle_timeout,
                d.body_idle_timeout,
            )?,
            max_connections: raw.max_connections.unwrap_or(d.max_connections),
            upstream_concurrency: raw.upstream_concurrency.unwrap_or(d.upstream_concurrency),
            upstream_queue_timeout: self.duration(
                "limits.upstream_queue_timeout",
                &raw.upstream_queue_timeout,
                d.upstream_queue_timeout,
            )?,
            token_wait: self.duration("limits.token_wait", &raw.token_wait, d.token_wait)?,
            heavy_concurrency: raw.heavy_concurrency.unwrap_or(d.heavy_concurrency),
        };
        for (key, value) in [
            ("limits.request_timeout", limits.request_timeout),
            ("limits.connect_timeout", limits.connect_timeout),
            ("limits.header_timeout", limits.header_timeout),
            ("limits.body_idle_timeout", limits.body_idle_timeout),
        ] {
            if value.is_zero() {
                return Err(self.err(key, "must be greater than zero"));
            }
        }
        if limits.max_connections == 0 {
            return Err(self.err("limits.max_connections", "must be at least 1"));
        }
        if limits.replay_body > limits.max_body {
            return Err(self.err("limits.replay_body", "must not exceed limits.max_body"));
        }
        Ok(limits)
    }

    fn account(
        &self,
        key: &str,
        raw: RawAccount,
        default_token: &RawToken,
        mode: PolicyMode,
    ) -> Result<AccountConfig, ConfigError> {
        let single = key == "zoho";
        let name = match self.string(&format!("{key}.name"), &raw.name)? {
            Some(n) => n,
            None if single => "default".to_string(),
            None => return Err(self.err(&format!("{key}.name"), "every account needs a name")),
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(self.err(
                &format!("{key}.name"),
                "use letters, digits, `-` and `_` only",
            ));
        }
        let client_type = match self
            .string(&format!("{key}.client_type"), &raw.client_type)?
            .as_deref()
        {
            None | Some("self") => ClientType::SelfClient,
            Some("server") => ClientType::Server,
            Some(other) => {
                return Err(self.err(
                    &format!("{key}.client_type"),
                    format!("unknown client type `{other}`; use self or server"),
                ))
            }
        };
        let listen = match &raw.listen {
            Some(_) => Some(self.listen(&format!("{key}.listen"), &raw.listen, "")?),
            None => None,
        };
        let data_center = match self.string(&format!("{key}.data_center"), &raw.data_center)? {
            Some(code) => code
                .parse::<DataCenter>()
                .map_err(|m| self.err(&format!("{key}.data_center"), m))?,
            None => DataCenter::Us,
        };
        let accounts_key = format!("{key}.accounts_url");
        let accounts_url = match self.url(&accounts_key, &raw.accounts_url)? {
            Some(u) => {
                self.override_host(&accounts_key, &u, Endpoint::Accounts, data_center)?;
                u
            }
            None => url::Url::parse(data_center.accounts_url())
                .expect("data center table holds valid URLs"),
        };
        let api_key = format!("{key}.api_url");
        let api_url = self.url(&api_key, &raw.api_url)?;
        if let Some(u) = &api_url {
            self.override_host(&api_key, u, Endpoint::Api, data_center)?;
        }
        let client_id = self
            .string(&format!("{key}.client_id"), &raw.client_id)?
            .ok_or_else(|| {
                self.err(
                    &format!("{key}.client_id"),
                    "client_id is required (from the Zoho API console)",
                )
            })?;
        let client_secret = self
            .secret(
                key,
                "client_secret",
                &raw.client_secret,
                &raw.client_secret_file,
                true,
            )?
            .ok_or_else(|| {
                self.err(&format!("{key}.client_secret"), "client_secret is required")
            })?;
        let refresh_token = self.secret(
            key,
            "refresh_token",
            &raw.refresh_token,
            &raw.refresh_token_file,
            false,
        )?;
        let grant_token = self.secret(key, "grant_token", &raw.grant_token, &None, false)?;
        let redirect_uri = match self.string(&format!("{key}.redirect_uri"), &raw.redirect_uri)? {
            Some(text) => {
                let url = url::Url::parse(&text).map_err(|e| {
                    self.err(
                        &format!("{key}.redirect_uri"),
                        format!("`{text}` is not a valid URL: {e}"),
                    )
                })?;
                check_redirect_uri(&url)
                    .map_err(|m| self.err(&format!("{key}.redirect_uri"), m))?;
                Some(url)
            }
            None => None,
        };
        let ca_file = self.path(&format!("{key}.ca_file"), &raw.ca_file)?;
        let upstream_protocol = match raw.upstream_protocol.as_deref().map(str::trim) {
            None | Some("auto") => UpstreamProtocol::Auto,
            Some("http2") => UpstreamProtocol::Http2,
            Some("http1") => UpstreamProtocol::Http1,
            Some(_) => {
                return Err(self.err(
                    &format!("{key}.upstream_protocol"),
                    "must be auto, http2 or http1",
                ))
            }
        };
        if let Some(path) = &ca_file {
            crate::util::tls::read_pem_certs(path)
                .map_err(|m| self.err(&format!("{key}.ca_file"), m))?;
        }
        let allow_key = if single {
            "allow".to_string()
        } else {
            format!("{key}.allow")
        };
        let allow = raw.allow.unwrap_or_default();
        if allow.is_empty() {
            return Err(self.err(
                &allow_key,
                "the allowlist is empty: list the Zoho scopes this proxy may use, e.g. ZohoCRM.modules.leads.READ",
            ));
        }
        let allow: Vec<String> = allow
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                self.string(&format!("{allow_key}[{i}]"), &Some(entry.clone()))
                    .map(|v| v.unwrap_or_default())
            })
            .collect::<Result<_, _>>()?;
        let modules = raw.modules.unwrap_or(OrderedMap(Vec::new())).0;
        let policy =
            Policy::new(&allow, &modules, mode).map_err(|e| self.err(&allow_key, e.to_string()))?;
        let token = match &raw.token {
            Some(own) => self.token(&format!("{key}.token"), own, None)?,
            None if single => self.token("token", default_token, None)?,
            None => self.token("token", default_token, Some(&name))?,
        };

        match client_type {
            ClientType::SelfClient => {
                if refresh_token.is_none() && grant_token.is_none() {
                    return Err(self.err(
                        &format!("{key}.refresh_token"),
                        "refresh_token (or refresh_token_file, or a one-time grant_token) is required for a self client",
                    ));
                }
                if grant_token.is_some()
                    && refresh_token.is_none()
                    && token.store == StoreConfig::Memory
                {
                    return Err(self.err(
                        &format!("{key}.grant_token"),
                        "a grant token can be exchanged only once: set token.store so the refresh token obtained from it survives a restart",
                    ));
                }
            }
            ClientType::Server => {
                if redirect_uri.is_none() {
                    return Err(self.err(
                        &format!("{key}.redirect_uri"),
                        "a server-based client needs the redirect_uri registered in the Zoho API console (e.g. http://127.0.0.1:9901/oauth/callback)",
                    ));
                }
                if token.store == StoreConfig::Memory && refresh_token.is_none() {
                    return Err(self.err(
                        &format!("{key}.token.store"),
                        "a server-based account needs token.store to keep the refresh token its authorization produces",
                    ));
                }
            }
        }
        let scopes = match raw.scopes {
            Some(list) if !list.is_empty() => list
                .iter()
                .enumerate()
                .map(|(i, scope)| {
                    let skey = format!("{key}.scopes[{i}]");
                    let scope = self.string(&skey, &Some(scope.clone()))?.unwrap_or_default();
                    let valid = !scope.is_empty()
                        && scope.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                    if valid {
                        Ok(scope)
                    } else {
                        Err(self.err(&skey, format!("`{scope}` is not a Zoho scope name (e.g. ZohoCRM.modules.leads.READ)")))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
            _ => allow.clone(),
        };
        Ok(AccountConfig {
            name,
            key: key.to_string(),
            listen,
            client_type,
            data_center,
            accounts_url,
            api_url,
            client_id,
            client_secret,
            refresh_token,
            grant_token,
            redirect_uri,
            scopes,
            ca_file,
            upstream_protocol,
            policy: Arc::new(policy),
            allow,
            token,
            credits: self.credits(&format!("{key}.credits"), raw.credits.as_ref())?,
        })
    }

    /// A `credits:` section: `daily_limit` (at least 1) and `costs` (operation → credits).
    fn credits(
        &self,
        key: &str,
        raw: Option<&RawCredits>,
    ) -> Result<crate::config::CreditsConfig, ConfigError> {
        use crate::policy::CostedOp;
        let mut settings = crate::config::CreditsConfig::default();
        let Some(raw) = raw else {
            return Ok(settings);
        };
        if raw.daily_limit == Some(0) {
            return Err(self.err(
                &format!("{key}.daily_limit"),
                "must be at least 1 (leave it out to count without a limit)",
            ));
        }
        settings.daily_limit = raw.daily_limit;
        for (name, credits) in raw.costs.iter().flatten() {
            let Some(op) = CostedOp::from_name(name) else {
                let known: Vec<&str> = CostedOp::ALL.iter().map(|o| o.name()).collect();
                return Err(self.err(
                    &format!("{key}.costs.{}", crate::policy::sanitize(name)),
                    format!("unknown operation; use one of: {}", known.join(", ")),
                ));
            };
            settings.costs.0.insert(op, *credits);
        }
        Ok(settings)
    }

    /// `shared_by`: the account name when a top-level `token:` serves several accounts, so each
    /// gets its own store file.
    fn token(
        &self,
        tkey: &str,
        raw: &RawToken,
        shared_by: Option<&str>,
    ) -> Result<TokenConfig, ConfigError> {
        let store_key = format!("{tkey}.store");
        let value = self.string(&store_key, &raw.store)?;
        let classified = match value.as_deref() {
            None => None,
            Some(s) => Some(store::classify(s).map_err(|m| self.err(&store_key, m))?),
        };
        let is_sentinel = matches!(
            classified,
            Some(StoreValue::Redis(RedisTopology::Sentinel { .. }))
        );
        if !is_sentinel && (raw.sentinel_password.is_some() || raw.sentinel_password_file.is_some())
        {
            let key = if raw.sentinel_password.is_some() {
                format!("{tkey}.sentinel_password")
            } else {
                format!("{tkey}.sentinel_password_file")
            };
            return Err(self.err(
                &key,
                "is for Redis Sentinel only; token.store is not a redis+sentinel:// URL",
            ));
        }
        let store = match (value.as_deref(), classified) {
            (None, _) | (_, None) => StoreConfig::Memory,
            (Some(s), Some(StoreValue::Redis(topology))) => {
                if topology == RedisTopology::Single {
                    let url = url::Url::parse(s)
                        .map_err(|e| self.err(&store_key, format!("not a valid Redis URL: {e}")))?;
                    if url.password().is_some() {
                        return Err(self.err(
                            &store_key,
                            "do not put the Redis password in the URL; use token.redis_password or token.redis_password_file",
                        ));
                    }
                }
                let password = self.secret(
                    tkey,
                    "redis_password",
                    &raw.redis_password,
                    &raw.redis_password_file,
                    false,
                )?;
                let sentinel_password = self.secret(
                    tkey,
                    "sentinel_password",
                    &raw.sentinel_password,
                    &raw.sentinel_password_file,
                    false,
                )?;
                StoreConfig::Redis {
                    url: s.to_string(),
                    topology,
                    password,
                    sentinel_password,
                }
            }
            (Some(path), Some(StoreValue::File(_))) => {
                let path = self.base.join(path);
                match shared_by {
                    // token.json -> token.NAME.json: accounts never share a file.
                    Some(name) => {
                        let stem = path
                            .file_stem()
                            .map(|s| s.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        let ext = path
                            .extension()
                            .map(|e| format!(".{}", e.to_string_lossy()))
                            .unwrap_or_default();
                        StoreConfig::File(path.with_file_name(format!("{stem}.{name}{ext}")))
                    }
                    None => StoreConfig::File(path),
                }
            }
        };
        let mint_budget = raw.mint_budget.unwrap_or(8);
        if !(1..=10).contains(&mint_budget) {
            return Err(self.err(
                &format!("{tkey}.mint_budget"),
                "must be between 1 and 10 (Zoho allows 10 access tokens per refresh token per 10 minutes)",
            ));
        }
        let lease = self.duration(
            &format!("{tkey}.lease"),
            &raw.lease,
            Duration::from_secs(15),
        )?;
        let when_redis_down = match self
            .string(&format!("{tkey}.when_redis_down"), &raw.when_redis_down)?
            .as_deref()
        {
            None | Some("refuse") => RedisDownPolicy::Refuse,
            Some("mint_locally") => RedisDownPolicy::MintLocally,
            Some(other) => {
                return Err(self.err(
                    &format!("{tkey}.when_redis_down"),
                    format!("unknown choice `{other}`; use refuse or mint_locally"),
                ))
            }
        };
        Ok(TokenConfig {
            store,
            store_key,
            mint_budget,
            lease,
            when_redis_down,
        })
    }
}

/// The single-account form (`zoho:` + `allow:`) as an account entry.
fn single_account(
    zoho: RawZoho,
    allow: Option<Vec<String>>,
    modules: Option<OrderedMap>,
) -> RawAccount {
    RawAccount {
        name: None,
        listen: None,
        client_type: None,
        data_center: zoho.data_center,
        accounts_url: zoho.accounts_url,
        api_url: zoho.api_url,
        client_id: zoho.client_id,
        client_secret: zoho.client_secret,
        client_secret_file: zoho.client_secret_file,
        refresh_token: zoho.refresh_token,
        refresh_token_file: zoho.refresh_token_file,
        grant_token: zoho.grant_token,
        redirect_uri: None,
        scopes: None,
        ca_file: zoho.ca_file,
        upstream_protocol: zoho.upstream_protocol,
        allow,
        modules,
        token: None,
        credits: None,
    }
}

/// Reads a secret file: trimmed, non-empty, at most 16 KiB.
pub fn read_secret_file(path: &Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.len() > 16 * 1024 {
        return Err(format!(
            "{} is larger than 16 KiB; is it the right file?",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let value = text.trim();
    if value.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(value.to_string())
}

/// Checks an accounts/API base URL: https (plain http only to a loopback host, for local
/// stand-ins), no credentials, path, query or fragment.
pub fn check_base_url(url: &url::Url) -> Result<(), String> {
    if url.host().is_none() {
        return Err(format!("`{url}` has no host"));
    }
    let loopback = is_loopback(url);
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "`{url}` uses plain http; tokens only travel over https (plain http is accepted only for a loopback host)"
            ))
        }
        other => return Err(format!("`{url}` has scheme `{other}`; use https")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "`{}` must not contain credentials",
            url.host_str().unwrap_or("")
        ));
    }
    if url.path() != "/" && !url.path().is_empty() {
        return Err(format!(
            "`{url}` must be a bare origin without a path (got `{}`)",
            url.path()
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("`{url}` must not have a query or fragment"));
    }
    Ok(())
}

/// Checks a registered OAuth `redirect_uri`: https (plain http only to a loopback host, so the
/// authorization code never crosses a network in clear), no credentials, no fragment.
pub fn check_redirect_uri(url: &url::Url) -> Result<(), String> {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => return Err(format!("`{url}` has no host")),
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(format!(
                "`{url}` uses plain http to a non-loopback host: the authorization code would travel in clear; use https (or a 127.0.0.1 address)"
            ))
        }
        other => return Err(format!("`{url}` has scheme `{other}`; use http://127.0.0.1:PORT/oauth/callback or an https URL")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the redirect_uri must not contain credentials".to_string());
    }
    if url.fragment().is_some() {
        return Err(format!("`{url}` must not have a fragment"));
    }
    Ok(())
}

/// Whether the URL's host is a loopback address or `localhost`.
fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// Parses `host:port`, `[v6]:port`, `localhost:port` or `unix:/path`.
pub fn parse_listen(text: &str) -> Result<ListenAddr, String> {
    if let Some(path) = text.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(
                "`unix:` needs a socket path, e.g. unix:/run/zoho-auth-proxy/proxy.sock"
                    .to_string(),
            );
        }
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port: u16 = port
            .parse()
            .map_err(|_| format!("`{text}` has a bad port"))?;
        return Ok(ListenAddr::Tcp(SocketAddr::new(
            IpAddr::from([127, 0, 0, 1]),
            port,
        )));
    }
    text.parse::<SocketAddr>()
        .map(ListenAddr::Tcp)
        .map_err(|_| {
            format!("`{text}` is not an address like 127.0.0.1:8080 or unix:/path/proxy.sock")
        })
}

/// Best-effort 1-based line of a dotted key (`zoho.client_secret`, `accounts[1].allow[0]`).
fn line_of(text: &str, key: &str) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    let mut from = 0usize;
    let mut found = None;
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let pos = (from..lines.len()).find(|&i| {
            let l = lines[i].trim_start().trim_start_matches("- ").trim_start();
            l.strip_prefix(name)
                .is_some_and(|r| r.trim_start().starts_with(':'))
        })?;
        found = Some(pos);
        from = pos + 1;
        if let Some(index) = index {
            let items: Vec<usize> = (from..lines.len())
                .filter(|&i| lines[i].trim_start().starts_with('-'))
                .collect();
            let indent = items
                .first()
                .map(|&i| lines[i].len() - lines[i].trim_start().len())?;
            let item = items
                .into_iter()
                .filter(|&i| lines[i].len() - lines[i].trim_start().len() == indent)
                .nth(index)?;
            found = Some(item);
            from = item;
        }
    }
    found.map(|i| i + 1)
}

#[cfg(test)]
mod tests;
