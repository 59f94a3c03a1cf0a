//! [`Config::describe`]: the effective settings as JSON for `check` and `/status`, secrets
//! replaced by where they came from.
//!
//! Must not: show a secret value, or change what is described.

use super::{ClientType, Config, SecretValue, StoreConfig};
use crate::policy::PolicyMode;

impl Config {
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
                    "cache": {
                        "metadata_ttl_ms": a.cache.metadata_ttl.as_millis() as u64,
                        "max_bytes": a.cache.max_bytes,
                    },
                    "organizations": organizations_text(a.organizations.as_deref()),
                    "limits": org_limits(&a.org_limits),
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
                "upstream_replicas": self.limits.upstream_replicas,
                "upstream_queue_timeout_ms": self.limits.upstream_queue_timeout.as_millis() as u64,
                "token_wait_ms": self.limits.token_wait.as_millis() as u64,
                "heavy_concurrency": self.limits.heavy_concurrency,
                "requests_per_minute": org_limits(&self.limits.per_organization)["requests_per_minute"],
                "daily_calls": org_limits(&self.limits.per_organization)["daily_calls"],
            },
            "log": { "format": self.log_format, "level": self.log_level },
            "shutdown": { "grace_ms": self.shutdown_grace.as_millis() as u64, "delay_ms": self.shutdown_delay.as_millis() as u64 },
            "accounts": accounts,
            "access": self.access.describe(),
        })
    }
}

/// An account's `organizations:` as shown: the list, or what its absence means.
pub fn organizations_text(list: Option<&[String]>) -> serde_json::Value {
    match list {
        Some(ids) => serde_json::json!(ids),
        None => serde_json::json!(
            "any: no `organizations:` is set, so Books and Inventory requests may name any organization the token can reach"
        ),
    }
}

fn org_limits(limits: &super::OrgLimits) -> serde_json::Value {
    let map = |pairs: Vec<(&str, u64)>| -> serde_json::Map<String, serde_json::Value> {
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
            .collect()
    };
    serde_json::json!({
        "requests_per_minute": map(limits.requests_per_minute.iter().map(|(p, n)| (*p, u64::from(*n))).collect()),
        "daily_calls": map(limits.daily_calls.iter().map(|(p, n)| (*p, *n)).collect()),
    })
}

/// How a secret is shown: the file it came from, or only that it is set.
fn secret_origin(secret: &SecretValue) -> String {
    match &secret.file {
        Some(f) => format!("from file {}", f.display()),
        None => "set (hidden)".to_string(),
    }
}
