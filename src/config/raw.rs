//! The serde mirror of `proxy.yaml`: every key the file may contain, nothing more.
//!
//! Values are kept as written (strings are interpolated later, by `validate`), so that YAML
//! syntax errors, unknown keys and duplicate keys are reported by the parser with a line.
//!
//! Must not: default, interpolate or check a value; a key added here needs its validator.

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// Top level of `proxy.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `listen`: the main proxy listener.
    pub listen: Option<String>,
    /// `allow_remote_clients`: opt-in for non-loopback TCP listeners.
    pub allow_remote_clients: Option<bool>,
    /// `workers`: data-plane threads, a number or `auto`.
    pub workers: Option<RawCount>,
    /// `admin:`: the admin listener and its credential.
    pub admin: Option<RawAdmin>,
    /// `zoho:`: the single-account form's account.
    pub zoho: Option<RawZoho>,
    /// `allow:`: the single-account form's allowlist.
    pub allow: Option<Vec<String>>,
    /// `modules:`: the single-account form's module API name → scope name map.
    pub modules: Option<OrderedMap>,
    /// `organizations:`: the single-account form's Books/Inventory organization ids.
    pub organizations: Option<OrgIds>,
    /// `policy:`: enforce or report.
    pub policy: Option<RawPolicy>,
    /// `token:`: the default token settings of every account.
    pub token: Option<RawToken>,
    /// `limits:`: sizes, timeouts and caps.
    pub limits: Option<RawLimits>,
    /// `log:`: format and level.
    pub log: Option<RawLog>,
    /// `shutdown:`: grace and delay after SIGTERM.
    pub shutdown: Option<RawShutdown>,
    /// `routing`: by listener or by header.
    pub routing: Option<String>,
    /// `accounts:`: the multi-account form.
    pub accounts: Option<Vec<RawAccount>>,
    /// `credits:`: top-level daily limit and cost overrides.
    pub credits: Option<RawCredits>,
    /// `accept_hosts`: extra names accepted in `Host`.
    pub accept_hosts: Option<Vec<String>>,
    /// `allow_any_host`: turns the Host check off.
    pub allow_any_host: Option<bool>,
    /// `require_request_header`: requires `X-Zoho-Proxy-Request: true`.
    pub require_request_header: Option<bool>,
    /// `strict_content_type`: JSON (or multipart uploads) bodies only.
    pub strict_content_type: Option<bool>,
    /// `unix:`: who may connect to the Unix sockets.
    pub unix: Option<RawUnix>,
    /// `clients:`: client identities.
    pub clients: Option<Vec<RawClient>>,
    /// `cache:`: the metadata cache (the default of every account).
    pub cache: Option<RawCache>,
}

/// `cache:` section (top level, or per account): the metadata cache.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    pub metadata_ttl: Option<String>,
    pub max_bytes: Option<String>,
}

/// `unix:` section: who may connect to the Unix-socket listeners.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUnix {
    pub allowed_uids: Option<Vec<u32>>,
}

/// One entry of `clients:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub name: Option<String>,
    pub key: Option<String>,
    pub key_file: Option<String>,
    pub unix_uid: Option<u32>,
    pub unix_gid: Option<u32>,
    pub allow: Option<Vec<String>>,
    pub accounts: Option<Vec<String>>,
    pub credits_per_day: Option<u64>,
    pub organizations: Option<OrgIds>,
}

/// `credits:` section (top level, or per account).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredits {
    pub daily_limit: Option<u64>,
    pub costs: Option<std::collections::BTreeMap<String, u64>>,
}

/// A count written as a number or as text (`auto`, `${VAR}`).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawCount {
    Number(u64),
    Text(String),
}

/// `admin:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
    pub auth: Option<RawAdminAuth>,
}

/// `admin.auth:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdminAuth {
    pub username: Option<String>,
    pub password_file: Option<String>,
    pub exempt: Option<Vec<String>>,
}

/// `zoho:` section (the single-account form) and the credential part of an account.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZoho {
    pub data_center: Option<String>,
    pub accounts_url: Option<String>,
    pub api_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub refresh_token: Option<String>,
    pub refresh_token_file: Option<String>,
    pub grant_token: Option<String>,
    pub ca_file: Option<String>,
    pub upstream_protocol: Option<String>,
}

/// One entry of `accounts:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccount {
    pub name: Option<String>,
    pub listen: Option<String>,
    pub client_type: Option<String>,
    pub data_center: Option<String>,
    pub accounts_url: Option<String>,
    pub api_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub client_secret_file: Option<String>,
    pub refresh_token: Option<String>,
    pub refresh_token_file: Option<String>,
    pub grant_token: Option<String>,
    pub redirect_uri: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub ca_file: Option<String>,
    pub upstream_protocol: Option<String>,
    pub allow: Option<Vec<String>>,
    pub modules: Option<OrderedMap>,
    pub organizations: Option<OrgIds>,
    pub limits: Option<RawAccountLimits>,
    pub token: Option<RawToken>,
    pub credits: Option<RawCredits>,
    pub cache: Option<RawCache>,
}

/// `accounts[i].limits:`: the per-organization limits of one account.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccountLimits {
    pub requests_per_minute: Option<OrderedCounts>,
    pub daily_calls: Option<OrderedCounts>,
}

/// `policy:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub mode: Option<String>,
}

/// `token:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    pub store: Option<String>,
    pub mint_budget: Option<u32>,
    pub redis_password: Option<String>,
    pub redis_password_file: Option<String>,
    pub sentinel_password: Option<String>,
    pub sentinel_password_file: Option<String>,
    pub lease: Option<String>,
    pub when_redis_down: Option<String>,
}

/// `limits:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_body: Option<String>,
    pub replay_body: Option<String>,
    pub request_timeout: Option<String>,
    pub connect_timeout: Option<String>,
    pub header_timeout: Option<String>,
    pub body_idle_timeout: Option<String>,
    pub max_connections: Option<u32>,
    pub upstream_concurrency: Option<RawConcurrency>,
    pub upstream_replicas: Option<u32>,
    pub upstream_queue_timeout: Option<String>,
    pub token_wait: Option<String>,
    pub heavy_concurrency: Option<u32>,
    pub requests_per_minute: Option<OrderedCounts>,
    pub daily_calls: Option<OrderedCounts>,
}

/// `limits.upstream_concurrency`: `auto` or a number.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawConcurrency {
    /// A number.
    Number(u32),
    /// A word (only `auto` is accepted).
    Word(String),
}

/// `log:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

/// `shutdown:` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    pub grace: Option<String>,
    pub delay: Option<String>,
}

/// A string-to-string map that keeps file order and refuses duplicate keys
/// (serde's own map impls silently keep the last one).
#[derive(Debug, Default, Clone)]
pub struct OrderedMap(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for OrderedMap {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor;
        impl<'de> Visitor<'de> for MapVisitor {
            type Value = OrderedMap;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of module API names to scope names")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedMap, A::Error> {
                let mut entries: Vec<(String, String)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, String>()? {
                    if entries.iter().any(|(k, _)| k.eq_ignore_ascii_case(&key)) {
                        return Err(serde::de::Error::custom(format!("duplicate entry `{key}`")));
                    }
                    entries.push((key, value));
                }
                Ok(OrderedMap(entries))
            }
        }
        deserializer.deserialize_map(MapVisitor)
    }
}

/// A map of names to counts (`{books: 100, inventory: 100}`) that keeps file order and refuses
/// duplicate keys.
#[derive(Debug, Default, Clone)]
pub struct OrderedCounts(pub Vec<(String, u64)>);

impl<'de> Deserialize<'de> for OrderedCounts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountsVisitor;
        impl<'de> Visitor<'de> for CountsVisitor {
            type Value = OrderedCounts;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of product names to counts, e.g. `{books: 100, inventory: 100}`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<OrderedCounts, A::Error> {
                let mut entries: Vec<(String, u64)> = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, u64>()? {
                    if entries.iter().any(|(k, _)| k.eq_ignore_ascii_case(&key)) {
                        return Err(serde::de::Error::custom(format!("duplicate entry `{key}`")));
                    }
                    entries.push((key, value));
                }
                Ok(OrderedCounts(entries))
            }
        }
        deserializer.deserialize_map(CountsVisitor)
    }
}

/// A list of organization ids, each written as a string or as a number (`- 10234695`).
#[derive(Debug, Default, Clone)]
pub struct OrgIds(pub Vec<String>);

impl<'de> Deserialize<'de> for OrgIds {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Id {
            Number(u64),
            Text(String),
        }
        let ids = Vec::<Id>::deserialize(deserializer)?;
        Ok(OrgIds(
            ids.into_iter()
                .map(|id| match id {
                    Id::Number(n) => n.to_string(),
                    Id::Text(t) => t,
                })
                .collect(),
        ))
    }
}
