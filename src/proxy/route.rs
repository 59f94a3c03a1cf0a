//! Routing: which account a request is for.

use super::error::ProxyError;
use crate::state::{AccountRuntime, ListenerRole, Runtime};
use http::HeaderMap;

/// Header that picks the account when `routing: header` is on.
pub const ACCOUNT_HEADER: &str = "x-zoho-account";

/// The account a request is for: the account listener's own, or on the main listener the one
/// `X-Zoho-Account` names (`routing: header`), else the first.
pub(super) fn select_account<'r>(
    runtime: &'r Runtime,
    role: &ListenerRole,
    headers: &HeaderMap,
) -> Result<&'r AccountRuntime, ProxyError> {
    let by_name = |name: &str| {
        runtime
            .account(name)
            .ok_or_else(|| ProxyError::UnknownAccount {
                name: crate::util::log_safe(name),
                known: runtime.account_names(),
            })
    };
    match role {
        ListenerRole::Account(name) => by_name(name),
        // An account's own listener serves that account whatever the header says (the header is
        // removed before forwarding either way).
        ListenerRole::Main => {
            let mut values = headers.get_all(ACCOUNT_HEADER).iter();
            let first = runtime
                .accounts
                .first()
                .ok_or_else(|| ProxyError::UnknownAccount {
                    name: String::new(),
                    known: String::new(),
                });
            match (runtime.routing, values.next(), values.next()) {
                (crate::config::Routing::Header, Some(_), Some(_)) => {
                    Err(ProxyError::AccountRequired {
                        known: runtime.account_names(),
                    })
                }
                (crate::config::Routing::Header, Some(value), None) => {
                    let name = value.to_str().map_err(|_| ProxyError::UnknownAccount {
                        name: "(non-ASCII)".into(),
                        known: runtime.account_names(),
                    })?;
                    by_name(name.trim())
                }
                // With several accounts, guessing would act on the wrong organisation's data.
                (crate::config::Routing::Header, None, _) if runtime.accounts.len() > 1 => {
                    Err(ProxyError::AccountRequired {
                        known: runtime.account_names(),
                    })
                }
                _ => first,
            }
        }
    }
}
