//! `organizations:` (per account, per client) and the per-organization limits
//! (`limits.requests_per_minute`, `limits.daily_calls`, top level or per account).
//!
//! Must not: enforce them (that is `policy`, for the ids, and `quota`, for the limits).

use super::Validator;
use crate::config::raw::OrderedCounts;
use crate::config::{ConfigError, OrgLimits};
use crate::policy::products;
use crate::policy::{OrganizationError, Policy};

impl Validator<'_> {
    /// An `organizations:` list at `key`, interpolated, compiled into `policy` (`narrow`: a
    /// client's list, which must be within the policy's own).
    pub(in crate::config) fn organizations(
        &self,
        key: &str,
        raw: Option<&[String]>,
        policy: &Policy,
        narrow: bool,
    ) -> Result<(Option<Vec<String>>, Policy), ConfigError> {
        let Some(raw) = raw else {
            return Ok((None, policy.clone()));
        };
        let ids = raw
            .iter()
            .enumerate()
            .map(|(j, id)| {
                self.string(&format!("{key}[{j}]"), &Some(id.clone()))
                    .map(Option::unwrap_or_default)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let compiled = policy
            .with_organizations(Some(&ids), narrow)
            .map_err(|e| match &e {
                OrganizationError::BadId { index, .. }
                | OrganizationError::NotCovered { index, .. } => {
                    self.err(&format!("{key}[{index}]"), e.to_string())
                }
                OrganizationError::Empty => self.err(key, e.to_string()),
            })?;
        Ok((Some(ids), compiled))
    }

    /// `requests_per_minute` and `daily_calls` under `prefix` (`limits` or
    /// `accounts[i].limits`), as written (not merged with any default).
    pub(super) fn org_limits(
        &self,
        prefix: &str,
        requests_per_minute: Option<&OrderedCounts>,
        daily_calls: Option<&OrderedCounts>,
    ) -> Result<OrgLimits, ConfigError> {
        let mut limits = OrgLimits::default();
        for (name, value) in requests_per_minute.map_or(&[][..], |c| &c.0[..]) {
            let key = format!("{prefix}.requests_per_minute.{name}");
            let product = self.limited_product(&key, name)?;
            let n = u32::try_from(*value)
                .map_err(|_| self.err(&key, "is too large; Zoho allows about 100 a minute"))?;
            limits.requests_per_minute.push((product, n));
        }
        for (name, value) in daily_calls.map_or(&[][..], |c| &c.0[..]) {
            let key = format!("{prefix}.daily_calls.{name}");
            let product = self.limited_product(&key, name)?;
            if *value == 0 {
                return Err(self.err(&key, "must be at least 1 (remove it for no daily budget)"));
            }
            limits.daily_calls.push((product, *value));
        }
        Ok(limits)
    }

    /// The product a per-organization limit names.
    fn limited_product(&self, key: &str, name: &str) -> Result<&'static str, ConfigError> {
        products::per_organization()
            .map(|(p, _)| p.name)
            .find(|p| *p == name)
            .ok_or_else(|| {
                let known: Vec<&str> = products::per_organization().map(|(p, _)| p.name).collect();
                self.err(
                    key,
                    format!(
                        "`{}` is not a product limited per organization; use {}",
                        crate::util::escape(name, 40),
                        known.join(" or ")
                    ),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};
    use std::path::Path;

    const HEAD: &str = "zoho:\n  client_id: id\n  client_secret: s\n  refresh_token: r\nallow: [ZohoBooks.invoices.READ]\n";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_yaml_str_with(text, &|_| None, Path::new("/tmp"))
    }

    #[test]
    fn organizations_and_limits_are_read_and_merged() {
        let c = parse(&format!(
            "{HEAD}organizations: [60001, \"60002\", 60001]\nlimits:\n  requests_per_minute: {{books: 10}}\n  daily_calls: {{inventory: 500}}\n"
        ))
        .expect("valid");
        let a = &c.accounts[0];
        assert_eq!(
            a.organizations.as_deref(),
            Some(
                &[
                    "60001".to_string(),
                    "60002".to_string(),
                    "60001".to_string()
                ][..]
            )
        );
        assert_eq!(
            a.policy.organizations(),
            Some(&["60001".to_string(), "60002".to_string()][..])
        );
        assert_eq!(a.org_limits.per_minute("books"), Some(10));
        assert_eq!(
            a.org_limits.per_minute("inventory"),
            Some(100),
            "the default stays"
        );
        assert_eq!(a.org_limits.daily_calls, vec![("inventory", 500)]);
        let c = parse(HEAD).expect("valid");
        assert_eq!(c.accounts[0].organizations, None);
        assert_eq!(c.accounts[0].org_limits.per_minute("books"), Some(100));
        let off = parse(&format!(
            "{HEAD}limits:\n  requests_per_minute: {{books: 0}}\n"
        ))
        .expect("valid");
        assert_eq!(off.accounts[0].org_limits.per_minute("books"), None);
    }

    #[test]
    fn an_accounts_own_limits_replace_the_top_level_ones_per_product() {
        let c = parse(
            "limits:\n  requests_per_minute: {books: 50, inventory: 60}\naccounts:\n  - name: a\n    client_id: id\n    client_secret: s\n    refresh_token: r\n    allow: [ZohoBooks.invoices.READ]\n    organizations: [1]\n    limits:\n      requests_per_minute: {books: 5}\n      daily_calls: {books: 100}\n",
        )
        .expect("valid");
        let a = &c.accounts[0];
        assert_eq!(a.org_limits.per_minute("books"), Some(5));
        assert_eq!(a.org_limits.per_minute("inventory"), Some(60));
        assert_eq!(a.org_limits.daily_calls, vec![("books", 100)]);
        assert_eq!(a.organizations.as_deref(), Some(&["1".to_string()][..]));
    }

    #[test]
    fn bad_entries_name_their_key() {
        let client = |orgs: &str| {
            format!("{HEAD}organizations: [1, 2]\nclients:\n  - name: c\n    key: {}\n    organizations: {orgs}\n", "k".repeat(40))
        };
        for (text, key, words) in [
            (format!("{HEAD}organizations: [1, \"a b\"]\n"), "organizations[1]", "not an organization id"),
            (format!("{HEAD}organizations: []\n"), "organizations", "empty"),
            (client("[3]"), "clients[0].organizations[0]", "not in the account's"),
            (client("[\"2\", 9]"), "clients[0].organizations[1]", "client `c`"),
            (format!("{HEAD}limits:\n  requests_per_minute: {{desk: 10}}\n"), "limits.requests_per_minute.desk", "books or inventory"),
            (format!("{HEAD}limits:\n  daily_calls: {{books: 0}}\n"), "limits.daily_calls.books", "at least 1"),
            (
                "organizations: [1]\naccounts:\n  - name: a\n    client_id: id\n    client_secret: s\n    refresh_token: r\n    allow: [ZohoBooks.invoices.READ]\n".to_string(),
                "organizations",
                "each account has its own",
            ),
            (
                "accounts:\n  - name: a\n    client_id: id\n    client_secret: s\n    refresh_token: r\n    allow: [ZohoBooks.invoices.READ]\n    limits:\n      daily_calls: {crm: 5}\n".to_string(),
                "accounts[0].limits.daily_calls.crm",
                "not a product limited per organization",
            ),
        ] {
            let e = parse(&text).expect_err(&text);
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.message.contains(words), "{text}: {e}");
        }
    }
}
