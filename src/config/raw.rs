//! The serde mirror of `proxy.yaml`: every key the file may contain, nothing more.
//!
//! Values are kept as written (strings are interpolated later, by `Config::try_from`), so that
//! YAML syntax errors, unknown keys and duplicate keys are reported by the parser with a line.

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// Top level of `proxy.yaml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub allow_remote_clients: Option<bool>,
    pub workers: Option<RawCount>,
    pub admin: Option<RawAdmin>,
    pub zoho: Option<RawZoho>,
    pub allow: Option<Vec<String>>,
    pub modules: Option<OrderedMap>,
    pub policy: Option<RawPolicy>,
    pub token: Option<RawToken>,
    pub limits: Option<RawLimits>,
    pub log: Option<RawLog>,
    pub shutdown: Option<RawShutdown>,
    pub routing: Option<String>,
    pub accounts: Option<Vec<RawAccount>>,
    pub credits: Option<RawCredits>,
    pub accept_hosts: Option<Vec<String>>,
    pub allow_any_host: Option<bool>,
    pub require_request_header: Option<bool>,
    pub strict_content_type: Option<bool>,
    pub unix: Option<RawUnix>,
    pub clients: Option<Vec<RawClient>>,
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
    pub token: Option<RawToken>,
    pub credits: Option<RawCredits>,
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
    pub upstream_concurrency: Option<u32>,
    pub upstream_queue_timeout: Option<String>,
    pub token_wait: Option<String>,
    pub heavy_concurrency: Option<u32>,
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
