//! `cache:`: the metadata cache's time to live and size, at the top level (the default of every
//! account) or in an entry of `accounts:` (its own keys win, key by key).
//!
//! Must not: cache anything (that is `cache/`); defaults live in [`CacheConfig::default`].

use super::Validator;
use crate::config::raw::RawCache;
use crate::config::{CacheConfig, ConfigError};

impl Validator<'_> {
    /// A `cache:` section at `key` (`cache` or `accounts[i].cache`): each key it sets replaces
    /// the one of `base`. `metadata_ttl: 0s` turns the cache off.
    pub(super) fn cache(
        &self,
        key: &str,
        raw: Option<&RawCache>,
        base: &CacheConfig,
    ) -> Result<CacheConfig, ConfigError> {
        let Some(raw) = raw else {
            return Ok(*base);
        };
        Ok(CacheConfig {
            metadata_ttl: self.duration(
                &format!("{key}.metadata_ttl"),
                &raw.metadata_ttl,
                base.metadata_ttl,
            )?,
            max_bytes: self.size(&format!("{key}.max_bytes"), &raw.max_bytes, base.max_bytes)?,
        })
    }
}
