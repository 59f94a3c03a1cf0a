//! `accept_hosts`, `allow_any_host`, `require_request_header`, `strict_content_type`,
//! `unix.allowed_uids` and `clients:`: who may use the proxy (see `crate::access`). Validation
//! only; the checks live in `access/` (and the peer check in `server`).
//!
//! Must not: check a request, or show a client key (`describe` names only where it came from).

use super::raw::{RawClient, RawUnix};
use super::{AccountConfig, ConfigError, SecretValue, Validator};
use crate::policy::{Policy, PolicyError};
use serde_json::json;
use std::sync::Arc;

/// The metric/log label of requests without a client identity.
pub const ANONYMOUS: &str = "(anonymous)";

/// Shortest client key accepted.
pub const MIN_KEY_CHARS: usize = 32;

/// The requester settings.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// Names accepted in `Host` besides `localhost` and IP literals, lower-cased.
    pub accept_hosts: Vec<String>,
    /// The Host check is off (warned about at start and on every reload).
    pub allow_any_host: bool,
    /// Every proxied request must carry `X-Zoho-Proxy-Request: true`.
    pub require_request_header: bool,
    /// Bodies must be `application/json` (or `multipart/form-data` on uploads).
    pub strict_content_type: bool,
    /// `unix.allowed_uids`: the peer uids a Unix-socket listener serves; empty: any peer the
    /// socket's mode lets in.
    pub unix_allowed_uids: Arc<[u32]>,
    /// Client identities; empty: every request is anonymous.
    pub clients: Vec<ClientConfig>,
}

/// One `clients:` entry.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Name (letters, digits, `-`, `_`).
    pub name: String,
    /// Its key, when it identifies by key.
    pub key: Option<SecretValue>,
    /// Unix-socket peer uid that identifies it.
    pub unix_uid: Option<u32>,
    /// Unix-socket peer gid that identifies it.
    pub unix_gid: Option<u32>,
    /// Its own allow list (a subset of each of its accounts'), as written.
    pub allow: Option<Vec<String>>,
    /// The accounts it may use (`None`: all).
    pub accounts: Option<Vec<String>>,
    /// Per account (config order): its policy there, `None` where it may not go.
    pub policies: Vec<Option<Arc<Policy>>>,
    /// Its own credit budget per rolling 24 hours (`credits_per_day`), across its accounts.
    pub credits_per_day: Option<u64>,
    /// Its own Books/Inventory organization ids (within each of its accounts' lists), as
    /// written.
    pub organizations: Option<Vec<String>>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The requester keys of `proxy.yaml`, as written (top-level keys of [`super::raw::RawConfig`]).
pub(super) struct RawAccess {
    pub accept_hosts: Option<Vec<String>>,
    pub allow_any_host: Option<bool>,
    pub require_request_header: Option<bool>,
    pub strict_content_type: Option<bool>,
    pub unix: Option<RawUnix>,
    pub clients: Option<Vec<RawClient>>,
}

impl Validator<'_> {
    /// Validates the requester settings against the accounts.
    pub(super) fn access(
        &self,
        raw: RawAccess,
        accounts: &[AccountConfig],
    ) -> Result<AccessConfig, ConfigError> {
        let RawAccess {
            accept_hosts,
            allow_any_host,
            require_request_header,
            strict_content_type,
            unix,
            clients,
        } = raw;
        let mut hosts = Vec::new();
        for (i, entry) in accept_hosts.unwrap_or_default().iter().enumerate() {
            let key = format!("accept_hosts[{i}]");
            let text = self.string(&key, &Some(entry.clone()))?.unwrap_or_default();
            let name = crate::web::host::accept_entry(&text).map_err(|m| self.err(&key, m))?;
            if !hosts.contains(&name) {
                hosts.push(name);
            }
        }
        let mut unix_allowed_uids = Vec::new();
        if let Some(uids) = unix.and_then(|u| u.allowed_uids) {
            if uids.is_empty() {
                return Err(self.err(
                    "unix.allowed_uids",
                    "the list is empty, so no peer could connect: list the uids that may use the Unix sockets, or remove the key",
                ));
            }
            for uid in uids {
                if !unix_allowed_uids.contains(&uid) {
                    unix_allowed_uids.push(uid);
                }
            }
        }
        let mut list = Vec::new();
        if let Some(raw) = clients {
            if raw.is_empty() {
                return Err(self.err(
                    "clients",
                    "the list is empty: remove `clients:` to serve anonymous requests, or add a client",
                ));
            }
            for (i, client) in raw.into_iter().enumerate() {
                let parsed = self.client(i, client, accounts, &list)?;
                if let Some(uid) = parsed.unix_uid {
                    if !unix_allowed_uids.is_empty() && !unix_allowed_uids.contains(&uid) {
                        return Err(self.err(
                            &format!("clients[{i}].unix_uid"),
                            format!("uid {uid} is not in unix.allowed_uids, so client `{}` could never connect: add it there", parsed.name),
                        ));
                    }
                }
                list.push(parsed);
            }
        }
        Ok(AccessConfig {
            accept_hosts: hosts,
            allow_any_host: allow_any_host.unwrap_or(false),
            require_request_header: require_request_header.unwrap_or(false),
            strict_content_type: strict_content_type.unwrap_or(false),
            unix_allowed_uids: unix_allowed_uids.into(),
            clients: list,
        })
    }

    /// One `clients:` entry: a unique name, a key or a Unix peer identity, the accounts it may
    /// use and its allow list (narrowing each account's), and its own credit budget.
    fn client(
        &self,
        i: usize,
        raw: RawClient,
        accounts: &[AccountConfig],
        earlier: &[ClientConfig],
    ) -> Result<ClientConfig, ConfigError> {
        let prefix = format!("clients[{i}]");
        let name = self.client_name(&prefix, &raw.name, earlier)?;
        let key = self.client_key(&prefix, &name, &raw, earlier)?;
        let allowed_accounts = self.client_accounts(&prefix, &raw.accounts, accounts)?;
        let allow = match &raw.allow {
            None => None,
            Some(entries) => Some(
                entries
                    .iter()
                    .enumerate()
                    .map(|(j, e)| {
                        self.string(&format!("{prefix}.allow[{j}]"), &Some(e.clone()))
                            .map(Option::unwrap_or_default)
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let scope = ClientScope {
            prefix: &prefix,
            name: &name,
            allow: allow.as_deref(),
            accounts: allowed_accounts.as_deref(),
            organizations: raw.organizations.as_ref().map(|o| &o.0[..]),
        };
        let policies = self.client_policies(&scope, accounts)?;
        if raw.credits_per_day == Some(0) {
            return Err(self.err(
                &format!("{prefix}.credits_per_day"),
                format!("client `{name}`: credits_per_day must be at least 1 (remove it for no client budget)"),
            ));
        }
        Ok(ClientConfig {
            name,
            credits_per_day: raw.credits_per_day,
            key,
            unix_uid: raw.unix_uid,
            unix_gid: raw.unix_gid,
            allow,
            accounts: allowed_accounts,
            policies,
            organizations: raw.organizations.map(|o| o.0),
        })
    }

    /// A client's `name`: required, valid, not used by an earlier client.
    fn client_name(
        &self,
        prefix: &str,
        value: &Option<String>,
        earlier: &[ClientConfig],
    ) -> Result<String, ConfigError> {
        let name = self
            .string(&format!("{prefix}.name"), value)?
            .ok_or_else(|| self.err(&format!("{prefix}.name"), "each client needs a name"))?;
        if !valid_name(&name) {
            return Err(self.err(
                &format!("{prefix}.name"),
                "a client name may hold only letters, digits, `-` and `_` (at most 64)",
            ));
        }
        if earlier.iter().any(|c| c.name == name) {
            return Err(self.err(
                &format!("{prefix}.name"),
                format!("duplicate client name `{name}`"),
            ));
        }
        Ok(name)
    }

    /// A client's identity: `key`/`key_file` (long, printable, its own) or `unix_uid`/
    /// `unix_gid`, exactly one of the two.
    fn client_key(
        &self,
        prefix: &str,
        name: &str,
        raw: &RawClient,
        earlier: &[ClientConfig],
    ) -> Result<Option<SecretValue>, ConfigError> {
        let key = self.secret(prefix, "key", &raw.key, &raw.key_file, false)?;
        let by_peer = raw.unix_uid.is_some() || raw.unix_gid.is_some();
        match (&key, by_peer) {
            (Some(_), true) => {
                return Err(self.err(
                    &format!("{prefix}.key"),
                    format!("client `{name}`: set either key/key_file or unix_uid/unix_gid, not both"),
                ))
            }
            (None, false) => {
                return Err(self.err(
                    &format!("{prefix}.key"),
                    format!("client `{name}` needs key (or key_file), or unix_uid/unix_gid for a Unix-socket peer"),
                ))
            }
            _ => {}
        }
        let Some(k) = &key else { return Ok(key) };
        let which = if k.file.is_some() { "key_file" } else { "key" };
        let key_name = format!("{prefix}.{which}");
        if k.expose().chars().count() < MIN_KEY_CHARS {
            return Err(self.err(
                &key_name,
                format!("the key of client `{name}` is shorter than {MIN_KEY_CHARS} characters; generate one with `openssl rand -hex 32`"),
            ));
        }
        if k.expose().bytes().any(|b| !(0x21..=0x7e).contains(&b)) {
            return Err(self.err(
                &key_name,
                format!("the key of client `{name}` must be printable ASCII without spaces (it travels in a header)"),
            ));
        }
        if let Some(other) = earlier
            .iter()
            .find(|c| c.key.as_ref().is_some_and(|o| o.expose() == k.expose()))
        {
            return Err(self.err(
                &key_name,
                format!(
                    "client `{name}` has the same key as client `{}`; each client needs its own",
                    other.name
                ),
            ));
        }
        Ok(key)
    }

    /// A client's `accounts:`: configured account names, at least one (`None`: all).
    fn client_accounts(
        &self,
        prefix: &str,
        names: &Option<Vec<String>>,
        accounts: &[AccountConfig],
    ) -> Result<Option<Vec<String>>, ConfigError> {
        let Some(names) = names else { return Ok(None) };
        let mut out = Vec::new();
        for (j, n) in names.iter().enumerate() {
            let key = format!("{prefix}.accounts[{j}]");
            let n = self.string(&key, &Some(n.clone()))?.unwrap_or_default();
            if !accounts.iter().any(|a| a.name == n) {
                let known: Vec<&str> = accounts.iter().map(|a| a.name.as_str()).collect();
                return Err(self.err(
                    &key,
                    format!(
                        "no account is named `{}`; known accounts: {}",
                        crate::util::log_safe(&n),
                        known.join(", ")
                    ),
                ));
            }
            out.push(n);
        }
        if out.is_empty() {
            return Err(self.err(
                &format!("{prefix}.accounts"),
                "the list is empty: name at least one account, or remove the key to allow all",
            ));
        }
        Ok(Some(out))
    }

    /// A client's policy per account (config order): `None` where it may not go, the account's
    /// own without a client `allow:`, else the account's narrowed to the client's list.
    fn client_policies(
        &self,
        client: &ClientScope<'_>,
        accounts: &[AccountConfig],
    ) -> Result<Vec<Option<Arc<Policy>>>, ConfigError> {
        let mut policies = Vec::with_capacity(accounts.len());
        for account in accounts {
            let permitted = client
                .accounts
                .is_none_or(|names| names.contains(&account.name));
            if !permitted {
                policies.push(None);
                continue;
            }
            let policy = match client.allow {
                None => account.policy.clone(),
                Some(entries) => Arc::new(account.policy.narrowed(entries).map_err(|e| {
                    let (key, message) = client.narrowing_error(&e, account, accounts.len() > 1);
                    self.err(&key, message)
                })?),
            };
            let policy = match client.organizations {
                None => policy,
                Some(ids) => {
                    let key = format!("{}.organizations", client.prefix);
                    let (_, narrowed) = self
                        .organizations(&key, Some(ids), &policy, true)
                        .map_err(|mut e| {
                            e.message = format!(
                                "client `{}`, account `{}`: {}{}",
                                client.name,
                                account.name,
                                e.message,
                                if accounts.len() > 1 { " (use `accounts:` to restrict the client to the accounts that list it)" } else { "" }
                            );
                            e
                        })?;
                    Arc::new(narrowed)
                }
            };
            policies.push(Some(policy));
        }
        Ok(policies)
    }
}

/// What a client's policies are derived from.
struct ClientScope<'a> {
    /// `clients[i]`.
    prefix: &'a str,
    /// The client's name.
    name: &'a str,
    /// Its own allow list, as written (interpolated).
    allow: Option<&'a [String]>,
    /// The accounts it may use (`None`: all).
    accounts: Option<&'a [String]>,
    /// Its own organization ids, as written.
    organizations: Option<&'a [String]>,
}

impl ClientScope<'_> {
    /// The key and message when the client's allow list cannot narrow `account`'s.
    fn narrowing_error(
        &self,
        e: &PolicyError,
        account: &AccountConfig,
        several: bool,
    ) -> (String, String) {
        let ClientScope { prefix, name, .. } = self;
        match e {
            PolicyError::NotCovered { index, scope } => (
                format!("{prefix}.allow[{index}]"),
                format!(
                    "client `{name}`: `{scope}` is not covered by account `{}`'s allow list ({}); a client's allow list may only narrow its account's{}",
                    account.name,
                    account.key,
                    if several { " (use `accounts:` to restrict the client to the accounts that allow it)" } else { "" }
                ),
            ),
            PolicyError::Scope { index, source } => {
                (format!("{prefix}.allow[{index}]"), source.to_string())
            }
            PolicyError::EmptyAllowlist => (
                format!("{prefix}.allow"),
                "the list is empty: name at least one scope, or remove the key to use the account's list".to_string(),
            ),
            other => (format!("{prefix}.allow"), other.to_string()),
        }
    }
}

impl AccessConfig {
    /// The effective settings, for `/status` and the start-up log (no key, no secret).
    pub fn describe(&self) -> serde_json::Value {
        let a = self;
        json!({
            "accept_hosts": host_list(a),
            "allow_any_host": a.allow_any_host,
            "browser_requests": "refused",
            "require_request_header": a.require_request_header,
            "strict_content_type": a.strict_content_type,
            "unix_socket_mode": format!("{:04o}", super::UNIX_SOCKET_MODE),
            "unix_allowed_uids": if a.unix_allowed_uids.is_empty() { json!("any peer the socket mode admits") } else { json!(&*a.unix_allowed_uids) },
            "clients": a.clients.iter().map(|c| json!({
                "name": c.name,
                "identified_by": match (&c.key, c.unix_uid, c.unix_gid) {
                    (Some(k), _, _) if k.file.is_some() => "key_file",
                    (Some(_), _, _) => "key",
                    _ => "unix peer",
                },
                "unix_uid": c.unix_uid,
                "unix_gid": c.unix_gid,
                "allow": c.allow.as_ref().map_or_else(|| json!("the account's allow list"), |a| json!(a)),
                "accounts": c.accounts.as_ref().map_or_else(|| json!("all"), |a| json!(a)),
            })).collect::<Vec<_>>(),
        })
    }
}

/// The names the Host rule accepts, as shown to operators.
fn host_list(a: &AccessConfig) -> Vec<String> {
    if a.allow_any_host {
        return vec!["* (allow_any_host: true)".into()];
    }
    let mut names = vec![
        "localhost".to_string(),
        "IP literals except 0.0.0.0 and [::]".to_string(),
    ];
    names.extend(a.accept_hosts.iter().cloned());
    names
}
