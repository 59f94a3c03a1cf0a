//! Top-level keys: `workers`, `listen`, `admin.listen`, `policy.mode`, `routing`, and the checks
//! that span every listener (loopback unless `allow_remote_clients`, no address used twice, no
//! abstract Unix socket without `unix.allowed_uids`).
//!
//! Must not: bind or probe an address; the listeners are opened by `server`.

use super::Validator;
use crate::config::raw::{RawCount, RawPolicy};
use crate::config::{
    AccessConfig, AccountConfig, ConfigError, ListenAddr, Routing, DEFAULT_WORKERS, MAX_WORKERS,
};
use crate::policy::PolicyMode;

impl Validator<'_> {
    /// `workers`: a number from 1 to [`MAX_WORKERS`] (default [`DEFAULT_WORKERS`]) or `auto`
    /// (one per core).
    pub(super) fn workers(&self, value: Option<RawCount>) -> Result<usize, ConfigError> {
        let key = "workers";
        let count = match value {
            None => return Ok(DEFAULT_WORKERS),
            Some(RawCount::Number(n)) => n,
            Some(RawCount::Text(text)) => match self.string(key, &Some(text))?.as_deref() {
                None => return Ok(DEFAULT_WORKERS),
                Some("auto") => return Ok(crate::rt::workers::auto_count().min(MAX_WORKERS)),
                Some(t) => t.parse().map_err(|_| {
                    self.err(
                        key,
                        format!("`{t}` is not a number; use auto or 1 to {MAX_WORKERS}"),
                    )
                })?,
            },
        };
        match usize::try_from(count) {
            Ok(n) if (1..=MAX_WORKERS).contains(&n) => Ok(n),
            _ => Err(self.err(
                key,
                format!("must be auto or 1 to {MAX_WORKERS}, not {count}"),
            )),
        }
    }

    /// `admin.listen` (default `127.0.0.1:9901`): never the main listener's address.
    pub(super) fn admin_listen(
        &self,
        value: &Option<String>,
        listen: &ListenAddr,
    ) -> Result<ListenAddr, ConfigError> {
        let admin_listen = self.listen("admin.listen", value, "127.0.0.1:9901")?;
        if admin_listen == *listen && !matches!(listen, ListenAddr::Tcp(a) if a.port() == 0) {
            return Err(self.err("admin.listen", "the admin listener must differ from listen"));
        }
        Ok(admin_listen)
    }

    /// `policy.mode`: `enforce` (default) or `report`.
    pub(super) fn policy_mode(&self, raw: Option<&RawPolicy>) -> Result<PolicyMode, ConfigError> {
        match self
            .string("policy.mode", &raw.and_then(|p| p.mode.clone()))?
            .as_deref()
        {
            None | Some("enforce") => Ok(PolicyMode::Enforce),
            Some("report") => Ok(PolicyMode::Report),
            Some(other) => Err(self.err(
                "policy.mode",
                format!("unknown mode `{other}`; use enforce or report"),
            )),
        }
    }

    /// `routing`: `listener` (default) or `header`.
    pub(super) fn routing(&self, value: &Option<String>) -> Result<Routing, ConfigError> {
        match self.string("routing", value)?.as_deref() {
            None | Some("listener") => Ok(Routing::Listener),
            Some("header") => Ok(Routing::Header),
            Some(other) => Err(self.err(
                "routing",
                format!("unknown routing `{other}`; use listener or header"),
            )),
        }
    }

    /// A TCP listener on a non-loopback address needs `allow_remote_clients: true`.
    pub(super) fn check_remote(
        &self,
        key: &str,
        addr: &ListenAddr,
        allowed: bool,
    ) -> Result<(), ConfigError> {
        if let ListenAddr::Tcp(sock) = addr {
            if !sock.ip().is_loopback() && !allowed {
                return Err(self.err(
                    key,
                    format!(
                        "{sock} is not a loopback address: anyone who can reach it could use your Zoho \
                         credentials through this proxy. Bind 127.0.0.1, use a unix: socket, or set \
                         allow_remote_clients: true if the network is private to your app"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Account by account: a name not used before, and a listener that is loopback (unless
    /// allowed) and not the address of `listen`, `admin.listen` or an earlier account (port 0
    /// excepted). One pass, so the first account at fault is the one reported.
    pub(super) fn check_accounts_unique(
        &self,
        accounts: &[AccountConfig],
        [listen, admin_listen]: [&ListenAddr; 2],
        allow_remote_clients: bool,
    ) -> Result<(), ConfigError> {
        for (i, a) in accounts.iter().enumerate() {
            if accounts[..i].iter().any(|b| b.name == a.name) {
                return Err(self.err(
                    &format!("{}.name", a.key),
                    format!("duplicate account name `{}`", a.name),
                ));
            }
            if let Some(l) = &a.listen {
                self.check_remote(&format!("{}.listen", a.key), l, allow_remote_clients)?;
                let ephemeral = matches!(l, ListenAddr::Tcp(a) if a.port() == 0);
                if !ephemeral
                    && (l == listen
                        || l == admin_listen
                        || accounts[..i].iter().any(|b| b.listen.as_ref() == Some(l)))
                {
                    return Err(self.err(
                        &format!("{}.listen", a.key),
                        format!("{l} is already used by another listener"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// An abstract Unix socket (`unix:@name`) has no file permissions: it needs
    /// `unix.allowed_uids`.
    pub(super) fn check_abstract_sockets(
        &self,
        [listen, admin_listen]: [&ListenAddr; 2],
        accounts: &[AccountConfig],
        access: &AccessConfig,
    ) -> Result<(), ConfigError> {
        let listeners = [
            ("listen".to_string(), listen),
            ("admin.listen".to_string(), admin_listen),
        ]
        .into_iter()
        .chain(accounts.iter().enumerate().filter_map(|(i, a)| {
            a.listen
                .as_ref()
                .map(|l| (format!("accounts[{i}].listen"), l))
        }));
        for (key, addr) in listeners {
            if addr.is_abstract() && access.unix_allowed_uids.is_empty() {
                return Err(self.err(
                    &key,
                    format!("{addr} is an abstract Unix socket, which has no file permissions: any process on this machine could connect. Set unix.allowed_uids to the uids that may, or listen on a socket path (unix:/run/zoho-auth-proxy/proxy.sock)"),
                ));
            }
        }
        Ok(())
    }
}
