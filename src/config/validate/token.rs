//! `token:` (top level, or per account): where tokens persist (memory, a file, one of the Redis
//! forms with its passwords), the mint budget, the fleet lease and what to do when Redis is down.
//!
//! Must not: open the store or check its folder (that is `load`, once the whole file is valid),
//! or echo a store URL's password.

use super::Validator;
use crate::config::raw::RawToken;
use crate::config::store::{self, StoreValue};
use crate::config::{ConfigError, RedisDownPolicy, RedisTopology, StoreConfig, TokenConfig};
use std::path::PathBuf;
use std::time::Duration;

impl Validator<'_> {
    /// `tkey` is `token` or `accounts[i].token`. `shared_by`: the account name when a top-level
    /// `token:` serves several accounts, so each gets its own store file.
    pub(super) fn token(
        &self,
        tkey: &str,
        raw: &RawToken,
        shared_by: Option<&str>,
    ) -> Result<TokenConfig, ConfigError> {
        let store_key = format!("{tkey}.store");
        let store = self.token_store(tkey, &store_key, raw, shared_by)?;
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

    /// `token.store`: memory when unset, else a file path or a Redis URL; the sentinel password
    /// keys only with a `redis+sentinel://` URL.
    fn token_store(
        &self,
        tkey: &str,
        store_key: &str,
        raw: &RawToken,
        shared_by: Option<&str>,
    ) -> Result<StoreConfig, ConfigError> {
        let value = self.string(store_key, &raw.store)?;
        let classified = match value.as_deref() {
            None => None,
            Some(s) => Some(store::classify(s).map_err(|m| self.err(store_key, m))?),
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
        match (value.as_deref(), classified) {
            (None, _) | (_, None) => Ok(StoreConfig::Memory),
            (Some(s), Some(StoreValue::Redis(topology))) => {
                self.redis_store(tkey, store_key, s, topology, raw)
            }
            (Some(path), Some(StoreValue::File(_))) => Ok(StoreConfig::File(per_account(
                self.base.join(path),
                shared_by,
            ))),
        }
    }

    /// A Redis store: no password in a one-Redis URL; the passwords from their own keys.
    fn redis_store(
        &self,
        tkey: &str,
        store_key: &str,
        url: &str,
        topology: RedisTopology,
        raw: &RawToken,
    ) -> Result<StoreConfig, ConfigError> {
        if topology == RedisTopology::Single {
            let parsed = url::Url::parse(url)
                .map_err(|e| self.err(store_key, format!("not a valid Redis URL: {e}")))?;
            if parsed.password().is_some() {
                return Err(self.err(
                    store_key,
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
        Ok(StoreConfig::Redis {
            url: url.to_string(),
            topology,
            password,
            sentinel_password,
        })
    }
}

/// A file store shared by several accounts gets one file each: token.json -> token.NAME.json, so
/// accounts never share a file.
fn per_account(path: PathBuf, shared_by: Option<&str>) -> PathBuf {
    match shared_by {
        Some(name) => {
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ext = path
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_default();
            path.with_file_name(format!("{stem}.{name}{ext}"))
        }
        None => path,
    }
}
