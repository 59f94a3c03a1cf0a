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

#[cfg(test)]
mod tests {
    use crate::config::{CacheConfig, Config};
    use std::path::Path;
    use std::time::Duration;

    fn parse(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_yaml_str_with(text, &|_| None, Path::new("/tmp"))
    }

    fn account(name: &str, cache: &str) -> String {
        format!("  - name: {name}\n    client_id: 1000.ID\n    client_secret: s\n    refresh_token: r\n    allow: [ZohoCRM.settings.fields.READ]\n{cache}")
    }

    const SINGLE: &str = "zoho:\n  client_id: 1000.ID\n  client_secret: s\n  refresh_token: r\nallow: [ZohoCRM.settings.fields.READ]\n";

    #[test]
    fn defaults_top_level_and_per_account_keys_combine_key_by_key() {
        let d = CacheConfig::default();
        assert_eq!(
            (d.metadata_ttl, d.max_bytes),
            (Duration::from_secs(300), 16 << 20),
            "defaults: 5m, 16MiB"
        );
        let single = parse(SINGLE).expect("single");
        assert_eq!(single.accounts[0].cache, d, "unset: the defaults");
        let off = parse(&format!("{SINGLE}cache:\n  metadata_ttl: 0s\n")).expect("off");
        assert!(off.accounts[0].cache.metadata_ttl.is_zero(), "0s: off");
        let text = format!(
            "cache:\n  metadata_ttl: 1m\n  max_bytes: 4MiB\naccounts:\n{}{}",
            account("a", ""),
            account("b", "    cache:\n      max_bytes: 1MiB\n"),
        );
        let multi = parse(&text).expect("multi");
        let (a, b) = (multi.accounts[0].cache, multi.accounts[1].cache);
        assert_eq!(
            (a.metadata_ttl, a.max_bytes),
            (Duration::from_secs(60), 4 << 20),
            "a: the top level"
        );
        assert_eq!(
            (b.metadata_ttl, b.max_bytes),
            (Duration::from_secs(60), 1 << 20),
            "b: its own size, the top-level TTL"
        );
    }

    #[test]
    fn bad_values_name_their_key() {
        const CASES: &[(&str, &str)] = &[
            ("cache:\n  metadata_ttl: soon\n", "cache.metadata_ttl"),
            ("cache:\n  max_bytes: big\n", "cache.max_bytes"),
        ];
        for (extra, key) in CASES {
            let e = parse(&format!("{SINGLE}{extra}")).expect_err(extra);
            assert_eq!(e.key, *key, "{extra}");
        }
        let text = format!(
            "accounts:\n{}",
            account("a", "    cache:\n      metadata_ttl: 5 minutes\n")
        );
        let e = parse(&text).expect_err("per account");
        assert_eq!(e.key, "accounts[0].cache.metadata_ttl", "per account");
    }
}
