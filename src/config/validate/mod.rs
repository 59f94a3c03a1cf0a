//! Validation: the parsed mirror ([`RawConfig`]) → the typed [`Config`], one file per section.
//!
//! This file holds the [`Validator`] (the file text for line numbers, the environment, the base
//! folder) with its value helpers (interpolated strings, paths, secrets, URLs, durations, sizes,
//! listen addresses) and [`Validator::validate`], which runs the sections in file order: the
//! first problem found is the one reported, so that order is part of the behaviour.
//!
//! Must not: read files other than secret files and `ca_file`, touch the network, or keep state
//! between calls; every message names its key (the line is found from it) and never a secret.

mod account;
mod accounts;
mod cache;
mod limits;
mod log;
mod organizations;
mod token;
mod top;

use super::checks::{check_base_url, is_loopback, parse_listen};
use super::error::line_of;
use super::interpolate;
use super::load::{read_secret_file, EnvLookup};
use super::{
    check_override_host, parse_duration, parse_size, AccessConfig, AccountConfig, AdminAuth,
    Config, ConfigError, DataCenter, Endpoint, ListenAddr, RawConfig, SecretValue,
};
use accounts::RawAccounts;
use secrecy::SecretString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Validates one config text: what every section's validator needs.
pub(super) struct Validator<'a> {
    /// The file text, to find the line of a key.
    pub(super) text: &'a str,
    /// Where `${VAR}` values come from.
    pub(super) env: EnvLookup<'a>,
    /// The config file's folder: relative paths resolve against it.
    pub(super) base: &'a Path,
}

impl Validator<'_> {
    /// The whole file, section by section, in the order the first error is reported.
    pub(super) fn validate(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let allow_remote_clients = raw.allow_remote_clients.unwrap_or(false);
        let workers = self.workers(raw.workers)?;
        let listen = self.listen("listen", &raw.listen, "127.0.0.1:8080")?;
        self.check_remote("listen", &listen, allow_remote_clients)?;
        let admin = raw.admin.unwrap_or_default();
        let admin_listen = self.admin_listen(&admin.listen, &listen)?;
        let admin_auth = self.admin_auth(admin.auth)?;
        let policy_mode = self.policy_mode(raw.policy.as_ref())?;
        let routing = self.routing(&raw.routing)?;
        let accounts = self.accounts(
            RawAccounts {
                accounts: raw.accounts,
                zoho: raw.zoho,
                allow: raw.allow,
                modules: raw.modules,
                organizations: raw.organizations,
                token: raw.token,
                credits: raw.credits,
                cache: raw.cache,
            },
            policy_mode,
        )?;
        self.check_accounts_unique(&accounts, [&listen, &admin_listen], allow_remote_clients)?;
        let limits = self.limits(raw.limits.unwrap_or_default())?;
        let mut accounts = accounts;
        for a in &mut accounts {
            a.org_limits = limits.per_organization.merged(&a.org_limits);
        }
        let (log_format, log_level) = self.log(raw.log.unwrap_or_default())?;
        let (shutdown_grace, shutdown_delay) = self.shutdown(raw.shutdown.unwrap_or_default())?;
        let access = self.access(
            super::access::RawAccess {
                accept_hosts: raw.accept_hosts,
                allow_any_host: raw.allow_any_host,
                require_request_header: raw.require_request_header,
                strict_content_type: raw.strict_content_type,
                unix: raw.unix,
                clients: raw.clients,
            },
            &accounts,
        )?;
        let watched_files = watched_files(admin_auth.as_ref(), &access, &accounts);
        self.check_abstract_sockets([&listen, &admin_listen], &accounts, &access)?;
        Ok(Config {
            listen,
            allow_remote_clients,
            admin_listen,
            admin_auth,
            workers,
            accounts,
            routing,
            policy_mode,
            limits,
            log_format,
            log_level,
            shutdown_grace,
            shutdown_delay,
            access,
            watched_files,
        })
    }

    /// An error at `key`, with the line of `key` in the file when it can be found.
    pub(super) fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.to_string(),
            line: line_of(self.text, key),
            message: message.into(),
        }
    }

    /// Interpolates a string value; an empty result counts as missing.
    pub(super) fn string(
        &self,
        key: &str,
        value: &Option<String>,
    ) -> Result<Option<String>, ConfigError> {
        let Some(value) = value else { return Ok(None) };
        let value =
            interpolate::interpolate(value, self.env).map_err(|e| self.err(key, e.to_string()))?;
        let value = value.trim().to_string();
        Ok((!value.is_empty()).then_some(value))
    }

    /// A path value, relative to the config file's folder.
    pub(super) fn path(
        &self,
        key: &str,
        value: &Option<String>,
    ) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self.string(key, value)?.map(|p| self.base.join(p)))
    }

    /// A secret given inline (`key`) or as a file (`key_file`); exactly one of them.
    pub(super) fn secret(
        &self,
        prefix: &str,
        name: &str,
        inline: &Option<String>,
        file: &Option<String>,
        required: bool,
    ) -> Result<Option<SecretValue>, ConfigError> {
        let key = format!("{prefix}.{name}");
        let file_key = format!("{prefix}.{name}_file");
        if inline.is_some() && file.is_some() {
            return Err(self.err(&key, format!("set either {name} or {name}_file, not both")));
        }
        if let Some(path) = self.path(&file_key, file)? {
            let value = read_secret_file(&path).map_err(|m| self.err(&file_key, m))?;
            return Ok(Some(SecretValue {
                value: SecretString::from(value),
                file: Some(path),
            }));
        }
        match self.string(&key, inline)? {
            Some(value) => Ok(Some(SecretValue {
                value: SecretString::from(value),
                file: None,
            })),
            None if required => Err(self.err(
                &key,
                if inline.is_some() {
                    format!("{name} is empty")
                } else {
                    format!("{name} (or {name}_file) is required")
                },
            )),
            None => Ok(None),
        }
    }

    /// The host of an override URL must be the data center's own Zoho host or loopback.
    pub(super) fn override_host(
        &self,
        key: &str,
        url: &url::Url,
        endpoint: Endpoint,
        dc: DataCenter,
    ) -> Result<(), ConfigError> {
        let host = url.host_str().unwrap_or_default();
        check_override_host(host, is_loopback(url), endpoint, dc).map_err(|m| self.err(key, m))
    }

    /// An accounts/API base URL (see [`check_base_url`]).
    pub(super) fn url(
        &self,
        key: &str,
        value: &Option<String>,
    ) -> Result<Option<url::Url>, ConfigError> {
        let Some(text) = self.string(key, value)? else {
            return Ok(None);
        };
        let url = url::Url::parse(&text)
            .map_err(|e| self.err(key, format!("`{text}` is not a valid URL: {e}")))?;
        check_base_url(&url).map_err(|m| self.err(key, m))?;
        Ok(Some(url))
    }

    /// A duration such as `30s` (see [`parse_duration`]); `default` when unset.
    pub(super) fn duration(
        &self,
        key: &str,
        value: &Option<String>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        self.parsed(key, value, default, parse_duration)
    }

    /// A size such as `10MiB` (see [`parse_size`]); `default` when unset.
    pub(super) fn size(
        &self,
        key: &str,
        value: &Option<String>,
        default: u64,
    ) -> Result<u64, ConfigError> {
        self.parsed(key, value, default, parse_size)
    }

    /// A value read by `parse` (whose message is reported at `key`); `default` when unset.
    fn parsed<T>(
        &self,
        key: &str,
        value: &Option<String>,
        default: T,
        parse: fn(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.string(key, value)? {
            Some(text) => parse(&text).map_err(|m| self.err(key, m)),
            None => Ok(default),
        }
    }

    /// A listen address (see [`parse_listen`]); `default` when unset.
    pub(super) fn listen(
        &self,
        key: &str,
        value: &Option<String>,
        default: &str,
    ) -> Result<ListenAddr, ConfigError> {
        let text = self
            .string(key, value)?
            .unwrap_or_else(|| default.to_string());
        parse_listen(&text).map_err(|m| self.err(key, m))
    }
}

/// Every secret file, for change detection: the admin password, client keys, then each
/// account's client secret and refresh token.
fn watched_files(
    admin_auth: Option<&AdminAuth>,
    access: &AccessConfig,
    accounts: &[AccountConfig],
) -> Vec<PathBuf> {
    let mut watched_files: Vec<PathBuf> = admin_auth
        .iter()
        .filter_map(|a| a.password.file.clone())
        .collect();
    for c in &access.clients {
        if let Some(f) = c.key.as_ref().and_then(|k| k.file.as_ref()) {
            watched_files.push(f.clone());
        }
    }
    for a in accounts {
        for s in [Some(&a.client_secret), a.refresh_token.as_ref()]
            .into_iter()
            .flatten()
        {
            if let Some(f) = &s.file {
                watched_files.push(f.clone());
            }
        }
    }
    watched_files
}
