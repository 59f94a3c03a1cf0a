//! The plain typed configuration: [`Config`], its accounts, limits, listeners, token stores and
//! the enums their keys choose from, with their defaults and small accessors.
//!
//! Owns the shapes the rest of the program reads after start-up. Must not: read files or the
//! environment, parse YAML, or validate (that is `load` and `validate`); must not import
//! anything above `policy` and the leaf helpers.

use super::{AccessConfig, AdminAuth, DataCenter, RedisTopology};
use crate::policy::{Policy, PolicyMode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Data-plane worker threads when `workers` is not set: one. Zoho admits at most 25 concurrent
/// calls per org, and one worker relays over 10,000 requests a second on the bench machine, so
/// more threads buy a sidecar nothing; measured on 2 cores (bench/README.md), one worker cost
/// 5–20 % less CPU per request than `auto` from 1 to 256 connections, at the same throughput.
pub const DEFAULT_WORKERS: usize = 1;

/// Most data-plane worker threads `workers` may ask for.
pub const MAX_WORKERS: usize = 256;

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
    /// An inline secret (tests and tools).
    pub fn inline(value: String) -> SecretValue {
        SecretValue {
            value: SecretString::from(value),
            file: None,
        }
    }

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
    pub credits: CreditsConfig,
    /// `cache:`: the metadata cache (the account's own keys over the top-level ones).
    pub cache: CacheConfig,
    /// `organizations:`: the Books/Inventory organization ids local programs may use (`None`:
    /// any). Also compiled into `policy`.
    pub organizations: Option<Vec<String>>,
    /// `limits.requests_per_minute` / `limits.daily_calls`, the account's own over the
    /// top-level ones.
    pub org_limits: OrgLimits,
}

/// Per-organization limits of the products Zoho limits per organization (Books, Inventory),
/// by product name (live-reloadable).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OrgLimits {
    /// `requests_per_minute`: requests per organization per 60 s (0: no limit).
    pub requests_per_minute: Vec<(&'static str, u32)>,
    /// `daily_calls`: requests per organization per rolling 24 h (absent: no budget).
    pub daily_calls: Vec<(&'static str, u64)>,
}

impl OrgLimits {
    /// The built-in defaults: each product's documented requests per minute, no daily budget.
    pub fn defaults() -> OrgLimits {
        OrgLimits {
            requests_per_minute: crate::policy::products::per_organization()
                .map(|(p, n)| (p.name, n))
                .collect(),
            daily_calls: Vec::new(),
        }
    }

    /// `other`'s entries over these.
    pub fn merged(&self, other: &OrgLimits) -> OrgLimits {
        fn merge<T: Copy>(
            base: &[(&'static str, T)],
            over: &[(&'static str, T)],
        ) -> Vec<(&'static str, T)> {
            let mut out: Vec<(&'static str, T)> = base
                .iter()
                .filter(|(name, _)| !over.iter().any(|(o, _)| o == name))
                .copied()
                .collect();
            out.extend_from_slice(over);
            out
        }
        OrgLimits {
            requests_per_minute: merge(&self.requests_per_minute, &other.requests_per_minute),
            daily_calls: merge(&self.daily_calls, &other.daily_calls),
        }
    }

    /// The requests per minute of `product` (`None`: not limited).
    pub fn per_minute(&self, product: &str) -> Option<u32> {
        self.requests_per_minute
            .iter()
            .find(|(p, _)| *p == product)
            .map(|(_, n)| *n)
            .filter(|n| *n > 0)
    }

    /// The daily calls of `product` (`None`: no budget).
    pub fn daily(&self, product: &str) -> Option<u64> {
        self.daily_calls
            .iter()
            .find(|(p, _)| *p == product)
            .map(|(_, n)| *n)
    }
}

/// One account's `cache:` settings (live-reloadable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheConfig {
    /// `cache.metadata_ttl`: how long a stored metadata answer is served (zero: the cache is
    /// off).
    pub metadata_ttl: Duration,
    /// `cache.max_bytes`: the most body bytes the account's cache holds (least recently used
    /// out first).
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            metadata_ttl: Duration::from_secs(300),
            max_bytes: 16 << 20,
        }
    }
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
    /// Requests in flight to Zoho at most: `auto` (from the org's edition) or a number
    /// (0 = unlimited).
    pub upstream_concurrency: UpstreamConcurrency,
    /// With `auto`: how many replicas share the org's limit (each gets its share, at least 1).
    pub upstream_replicas: u32,
    /// How long a request may queue for an upstream slot before 503.
    pub upstream_queue_timeout: Duration,
    /// How long a request waits for a token refresh already in flight before 503.
    pub token_wait: Duration,
    /// Heavy calls (COQL, convert, send mail, big writes, bulk, search, composite) in flight to
    /// Zoho at most, on top of their ordinary slot (0 = unlimited; Zoho allows 10).
    pub heavy_concurrency: u32,
    /// `requests_per_minute` and `daily_calls`: the default of every account.
    pub per_organization: OrgLimits,
}

impl Limits {
    /// This replica's share of an org-wide `limit` (`limits.upstream_replicas`), at least 1.
    pub fn per_replica(&self, limit: u32) -> u32 {
        (limit / self.upstream_replicas.max(1)).max(1)
    }
}

/// `limits.upstream_concurrency`: sized from the org's edition, or a number that wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UpstreamConcurrency {
    /// Read the edition from `GET /crm/v8/org` (5 to 25; 10 until it is read or when it cannot be).
    #[default]
    Auto,
    /// This many requests in flight (0 = unlimited).
    Fixed(u32),
}

impl UpstreamConcurrency {
    /// The configured number, if one was set.
    pub fn fixed(self) -> Option<u32> {
        match self {
            UpstreamConcurrency::Auto => None,
            UpstreamConcurrency::Fixed(n) => Some(n),
        }
    }
}

impl serde::Serialize for UpstreamConcurrency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            UpstreamConcurrency::Auto => s.serialize_str("auto"),
            UpstreamConcurrency::Fixed(n) => s.serialize_u32(*n),
        }
    }
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
            upstream_concurrency: UpstreamConcurrency::Auto,
            upstream_replicas: 1,
            upstream_queue_timeout: Duration::from_secs(10),
            token_wait: Duration::from_secs(5),
            heavy_concurrency: 10,
            per_organization: OrgLimits::defaults(),
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

impl Config {
    /// The account with this name.
    pub fn account(&self, name: &str) -> Option<&AccountConfig> {
        self.accounts.iter().find(|a| a.name == name)
    }
}
