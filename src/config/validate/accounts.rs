//! The account list: `accounts:`, or the single-account form (`zoho:` + `allow:`) as one
//! account named `default`; each account's `credits:` with the top-level `credits:` merged in.
//!
//! Must not: validate one account's own keys (that is `account`), or compare listeners (that is
//! `top`, once the list is complete).

use super::Validator;
use crate::config::raw::{OrderedMap, RawAccount, RawCache, RawCredits, RawToken, RawZoho};
use crate::config::{AccountConfig, CacheConfig, ConfigError, CreditsConfig};
use crate::policy::PolicyMode;

/// The keys of `proxy.yaml` that make the account list, as written.
pub(super) struct RawAccounts {
    /// `accounts:` (the multi-account form).
    pub accounts: Option<Vec<RawAccount>>,
    /// `zoho:` (the single-account form).
    pub zoho: Option<RawZoho>,
    /// `allow:` of the single-account form.
    pub allow: Option<Vec<String>>,
    /// `modules:` of the single-account form.
    pub modules: Option<OrderedMap>,
    /// `organizations:` of the single-account form.
    pub organizations: Option<crate::config::raw::OrgIds>,
    /// The top-level `token:`, the default of every account.
    pub token: Option<RawToken>,
    /// The top-level `credits:`.
    pub credits: Option<RawCredits>,
    /// The top-level `cache:`, the default of every account.
    pub cache: Option<RawCache>,
}

impl Validator<'_> {
    /// Every account, in file order, with the top-level credits merged in: the daily limit in
    /// the single-account form only, each cost where the account does not set its own.
    pub(super) fn accounts(
        &self,
        raw: RawAccounts,
        policy_mode: PolicyMode,
    ) -> Result<Vec<AccountConfig>, ConfigError> {
        let default_token = raw.token.unwrap_or_default();
        let top_credits = self.credits("credits", raw.credits.as_ref())?;
        let multi = raw.accounts.is_some();
        if multi && top_credits.daily_limit.is_some() {
            return Err(self.err(
                "credits.daily_limit",
                "with `accounts:`, each account has its own budget: set accounts[i].credits.daily_limit",
            ));
        }
        let top_cache = self.cache("cache", raw.cache.as_ref(), &CacheConfig::default())?;
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
            (Some(_), None) if raw.organizations.is_some() => {
                return Err(self.err(
                    "organizations",
                    "with `accounts:`, each account has its own `organizations:`",
                ))
            }
            (Some(list), None) => {
                if list.is_empty() {
                    return Err(self.err("accounts", "at least one account is required"));
                }
                for (i, mut account) in list.into_iter().enumerate() {
                    let key = format!("accounts[{i}]");
                    let own_cache = account.cache.take();
                    let mut a = self.account(&key, account, &default_token, policy_mode)?;
                    a.cache =
                        self.cache(&format!("{key}.cache"), own_cache.as_ref(), &top_cache)?;
                    accounts.push(a);
                }
            }
            (None, zoho) => {
                let Some(zoho) = zoho else {
                    return Err(self.err(
                        "zoho",
                        "the `zoho:` section (client id, secret, refresh token) is required",
                    ));
                };
                let mut account = single_account(zoho, raw.allow, raw.modules);
                account.organizations = raw.organizations;
                let mut a = self.account("zoho", account, &default_token, policy_mode)?;
                a.cache = top_cache;
                accounts.push(a);
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
        Ok(accounts)
    }

    /// A `credits:` section: `daily_limit` (at least 1) and `costs` (operation → credits).
    pub(super) fn credits(
        &self,
        key: &str,
        raw: Option<&RawCredits>,
    ) -> Result<CreditsConfig, ConfigError> {
        use crate::policy::CostedOp;
        let mut settings = CreditsConfig::default();
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
        organizations: None,
        limits: None,
        token: None,
        credits: None,
        cache: None,
    }
}
