//! One account (`zoho:` in the single-account form, or an `accounts:` entry): its name, client
//! type, listener, data center and endpoint overrides, OAuth credentials, redirect URI and
//! scopes, TLS roots, upstream protocol, allowlist and policy, and token settings.
//!
//! Must not: compare the account with the others (names and listeners are `top`'s), or contact
//! Zoho; it reads only its secret files and `ca_file`.

use super::Validator;
use crate::config::checks::check_redirect_uri;
use crate::config::raw::{OrderedMap, RawAccount, RawToken};
use crate::config::{
    AccountConfig, ClientType, ConfigError, CreditsConfig, DataCenter, Endpoint, SecretValue,
    StoreConfig, UpstreamProtocol,
};
use crate::policy::{Policy, PolicyMode};
use std::path::PathBuf;
use std::sync::Arc;

/// An account's data center and where its accounts server and API are.
struct Endpoints {
    data_center: DataCenter,
    accounts_url: url::Url,
    api_url: Option<url::Url>,
}

/// An account's OAuth client secret, refresh token and one-time grant token.
struct Credentials {
    client_secret: SecretValue,
    refresh_token: Option<SecretValue>,
    grant_token: Option<SecretValue>,
}

impl Validator<'_> {
    /// One account; `key` is `zoho` (the single-account form, named `default`) or
    /// `accounts[i]`. Its keys are checked in file order, then what its client type requires,
    /// then its scopes and credits.
    pub(super) fn account(
        &self,
        key: &str,
        raw: RawAccount,
        default_token: &RawToken,
        mode: PolicyMode,
    ) -> Result<AccountConfig, ConfigError> {
        let single = key == "zoho";
        let name = self.account_name(key, &raw.name, single)?;
        let client_type = self.client_type(key, &raw.client_type)?;
        let listen = match &raw.listen {
            Some(_) => Some(self.listen(&format!("{key}.listen"), &raw.listen, "")?),
            None => None,
        };
        let endpoints = self.endpoints(key, &raw)?;
        let client_id = self
            .string(&format!("{key}.client_id"), &raw.client_id)?
            .ok_or_else(|| {
                self.err(
                    &format!("{key}.client_id"),
                    "client_id is required (from the Zoho API console)",
                )
            })?;
        let credentials = self.credentials(key, &raw)?;
        let redirect_uri = self.redirect_uri(key, &raw.redirect_uri)?;
        let (ca_file, upstream_protocol) = self.transport(key, &raw)?;
        let (allow, policy) = self.allowlist(key, single, raw.allow, raw.modules, mode)?;
        let org_key = if single {
            "organizations".to_string()
        } else {
            format!("{key}.organizations")
        };
        let (organizations, policy) = self.organizations(
            &org_key,
            raw.organizations.as_ref().map(|o| &o.0[..]),
            &policy,
            false,
        )?;
        let own_limits = raw.limits.unwrap_or_default();
        let org_limits = self.org_limits(
            &format!("{key}.limits"),
            own_limits.requests_per_minute.as_ref(),
            own_limits.daily_calls.as_ref(),
        )?;
        let token = match &raw.token {
            Some(own) => self.token(&format!("{key}.token"), own, None)?,
            None if single => self.token("token", default_token, None)?,
            None => self.token("token", default_token, Some(&name))?,
        };
        let mut account = AccountConfig {
            name,
            key: key.to_string(),
            listen,
            client_type,
            data_center: endpoints.data_center,
            accounts_url: endpoints.accounts_url,
            api_url: endpoints.api_url,
            client_id,
            client_secret: credentials.client_secret,
            refresh_token: credentials.refresh_token,
            grant_token: credentials.grant_token,
            redirect_uri,
            scopes: Vec::new(),
            ca_file,
            upstream_protocol,
            policy: Arc::new(policy),
            allow,
            token,
            credits: CreditsConfig::default(),
            cache: crate::config::CacheConfig::default(),
            organizations,
            org_limits,
        };
        self.check_client_type(&account)?;
        account.scopes = self.scopes(key, raw.scopes, &account.allow)?;
        account.credits = self.credits(&format!("{key}.credits"), raw.credits.as_ref())?;
        Ok(account)
    }

    /// `name`: required in `accounts:`, `default` in the single-account form; letters, digits,
    /// `-` and `_`.
    fn account_name(
        &self,
        key: &str,
        value: &Option<String>,
        single: bool,
    ) -> Result<String, ConfigError> {
        let name = match self.string(&format!("{key}.name"), value)? {
            Some(n) => n,
            None if single => "default".to_string(),
            None => return Err(self.err(&format!("{key}.name"), "every account needs a name")),
        };
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(self.err(
                &format!("{key}.name"),
                "use letters, digits, `-` and `_` only",
            ));
        }
        Ok(name)
    }

    /// `client_type`: `self` (default) or `server`.
    fn client_type(&self, key: &str, value: &Option<String>) -> Result<ClientType, ConfigError> {
        match self
            .string(&format!("{key}.client_type"), value)?
            .as_deref()
        {
            None | Some("self") => Ok(ClientType::SelfClient),
            Some("server") => Ok(ClientType::Server),
            Some(other) => Err(self.err(
                &format!("{key}.client_type"),
                format!("unknown client type `{other}`; use self or server"),
            )),
        }
    }

    /// `data_center` (default `us`), and the `accounts_url` and `api_url` overrides, which must
    /// name that data center's own Zoho host or a loopback one.
    fn endpoints(&self, key: &str, raw: &RawAccount) -> Result<Endpoints, ConfigError> {
        let data_center = match self.string(&format!("{key}.data_center"), &raw.data_center)? {
            Some(code) => code
                .parse::<DataCenter>()
                .map_err(|m| self.err(&format!("{key}.data_center"), m))?,
            None => DataCenter::Us,
        };
        let accounts_key = format!("{key}.accounts_url");
        let accounts_url = match self.url(&accounts_key, &raw.accounts_url)? {
            Some(u) => {
                self.override_host(&accounts_key, &u, Endpoint::Accounts, data_center)?;
                u
            }
            None => url::Url::parse(data_center.accounts_url())
                .expect("data center table holds valid URLs"),
        };
        let api_key = format!("{key}.api_url");
        let api_url = self.url(&api_key, &raw.api_url)?;
        if let Some(u) = &api_url {
            self.override_host(&api_key, u, Endpoint::Api, data_center)?;
        }
        Ok(Endpoints {
            data_center,
            accounts_url,
            api_url,
        })
    }

    /// `client_secret` (required), `refresh_token` and `grant_token`, each inline or (but the
    /// grant token) from a file.
    fn credentials(&self, key: &str, raw: &RawAccount) -> Result<Credentials, ConfigError> {
        let client_secret = self
            .secret(
                key,
                "client_secret",
                &raw.client_secret,
                &raw.client_secret_file,
                true,
            )?
            .ok_or_else(|| {
                self.err(&format!("{key}.client_secret"), "client_secret is required")
            })?;
        let refresh_token = self.secret(
            key,
            "refresh_token",
            &raw.refresh_token,
            &raw.refresh_token_file,
            false,
        )?;
        let grant_token = self.secret(key, "grant_token", &raw.grant_token, &None, false)?;
        Ok(Credentials {
            client_secret,
            refresh_token,
            grant_token,
        })
    }

    /// `redirect_uri`: a URL that passes [`check_redirect_uri`].
    fn redirect_uri(
        &self,
        key: &str,
        value: &Option<String>,
    ) -> Result<Option<url::Url>, ConfigError> {
        let Some(text) = self.string(&format!("{key}.redirect_uri"), value)? else {
            return Ok(None);
        };
        let url = url::Url::parse(&text).map_err(|e| {
            self.err(
                &format!("{key}.redirect_uri"),
                format!("`{text}` is not a valid URL: {e}"),
            )
        })?;
        check_redirect_uri(&url).map_err(|m| self.err(&format!("{key}.redirect_uri"), m))?;
        Ok(Some(url))
    }

    /// `ca_file` (a readable PEM file of certificates) and `upstream_protocol` (`auto`,
    /// `http2` or `http1`).
    fn transport(
        &self,
        key: &str,
        raw: &RawAccount,
    ) -> Result<(Option<PathBuf>, UpstreamProtocol), ConfigError> {
        let ca_file = self.path(&format!("{key}.ca_file"), &raw.ca_file)?;
        let upstream_protocol = match raw.upstream_protocol.as_deref().map(str::trim) {
            None | Some("auto") => UpstreamProtocol::Auto,
            Some("http2") => UpstreamProtocol::Http2,
            Some("http1") => UpstreamProtocol::Http1,
            Some(_) => {
                return Err(self.err(
                    &format!("{key}.upstream_protocol"),
                    "must be auto, http2 or http1",
                ))
            }
        };
        if let Some(path) = &ca_file {
            crate::util::tls::read_pem_certs(path)
                .map_err(|m| self.err(&format!("{key}.ca_file"), m))?;
        }
        Ok((ca_file, upstream_protocol))
    }

    /// `allow:` (not empty; `allow` itself in the single-account form) and `modules:`, compiled
    /// into the account's policy.
    fn allowlist(
        &self,
        key: &str,
        single: bool,
        allow: Option<Vec<String>>,
        modules: Option<OrderedMap>,
        mode: PolicyMode,
    ) -> Result<(Vec<String>, Policy), ConfigError> {
        let allow_key = if single {
            "allow".to_string()
        } else {
            format!("{key}.allow")
        };
        let allow = allow.unwrap_or_default();
        if allow.is_empty() {
            return Err(self.err(
                &allow_key,
                "the allowlist is empty: list the Zoho scopes this proxy may use, e.g. ZohoCRM.modules.leads.READ",
            ));
        }
        let allow: Vec<String> = allow
            .iter()
            .enumerate()
            .map(|(i, entry)| {
                self.string(&format!("{allow_key}[{i}]"), &Some(entry.clone()))
                    .map(|v| v.unwrap_or_default())
            })
            .collect::<Result<_, _>>()?;
        let modules = modules.unwrap_or(OrderedMap(Vec::new())).0;
        let policy =
            Policy::new(&allow, &modules, mode).map_err(|e| self.err(&allow_key, e.to_string()))?;
        Ok((allow, policy))
    }

    /// What the client type requires: a self client a refresh token (or a grant token kept by
    /// a store); a server-based client a `redirect_uri` and a store for what the browser
    /// authorization produces.
    fn check_client_type(&self, account: &AccountConfig) -> Result<(), ConfigError> {
        let key = &account.key;
        let memory_store = account.token.store == StoreConfig::Memory;
        match account.client_type {
            ClientType::SelfClient => {
                if account.refresh_token.is_none() && account.grant_token.is_none() {
                    return Err(self.err(
                        &format!("{key}.refresh_token"),
                        "refresh_token (or refresh_token_file, or a one-time grant_token) is required for a self client",
                    ));
                }
                if account.grant_token.is_some() && account.refresh_token.is_none() && memory_store
                {
                    return Err(self.err(
                        &format!("{key}.grant_token"),
                        "a grant token can be exchanged only once: set token.store so the refresh token obtained from it survives a restart",
                    ));
                }
            }
            ClientType::Server => {
                if account.redirect_uri.is_none() {
                    return Err(self.err(
                        &format!("{key}.redirect_uri"),
                        "a server-based client needs the redirect_uri registered in the Zoho API console (e.g. http://127.0.0.1:9901/oauth/callback)",
                    ));
                }
                if memory_store && account.refresh_token.is_none() {
                    return Err(self.err(
                        &format!("{key}.token.store"),
                        "a server-based account needs token.store to keep the refresh token its authorization produces",
                    ));
                }
            }
        }
        Ok(())
    }

    /// `scopes`: Zoho scope names requested in the browser flow; the allowlist when unset or
    /// empty.
    fn scopes(
        &self,
        key: &str,
        scopes: Option<Vec<String>>,
        allow: &[String],
    ) -> Result<Vec<String>, ConfigError> {
        let list = match scopes {
            Some(list) if !list.is_empty() => list,
            _ => return Ok(allow.to_vec()),
        };
        list.iter()
            .enumerate()
            .map(|(i, scope)| {
                let skey = format!("{key}.scopes[{i}]");
                let scope = self
                    .string(&skey, &Some(scope.clone()))?
                    .unwrap_or_default();
                let valid = !scope.is_empty()
                    && scope
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                if valid {
                    Ok(scope)
                } else {
                    Err(self.err(
                        &skey,
                        format!(
                            "`{scope}` is not a Zoho scope name (e.g. ZohoCRM.modules.leads.READ)"
                        ),
                    ))
                }
            })
            .collect()
    }
}
