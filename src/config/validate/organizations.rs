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
                return Err(self.err(
                    &key,
                    "must be at least 1 (remove it for no daily budget)",
                ));
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
