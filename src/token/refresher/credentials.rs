//! Which credentials the refresher mints with (the configured refresh token, the one a browser
//! authorization obtained, a grant token not yet exchanged) and where they go: the accounts
//! server that issued them and the API base the new token is sent to.
//!
//! Must not: ask Zoho, change the stored state, or send the client secret or a token to a host
//! the config and Zoho's data-center rules do not allow (an edited store cannot redirect them).

use super::Refresher;
use crate::config::{is_zoho_api_host, ClientType, DataCenter};
use crate::token::store::fingerprint;
use crate::token::ApiBase;
use secrecy::{ExposeSecret, SecretString};
use tracing::warn;

impl Refresher {
    /// The refresh token to use: the configured one, else the one the proxy obtained. A refresh
    /// token from a browser authorization supersedes the configured one it replaced, until the
    /// configured one changes (a rotated secret file, an edited config).
    pub(super) fn refresh_token(&self) -> Option<SecretString> {
        let stored = self
            .state
            .refresh_token
            .as_ref()
            .map(|rt| SecretString::from(rt.clone()));
        match &self.handle.secrets().refresh_token {
            None => stored,
            Some(configured) => {
                let superseded = self.state.supersedes_sha256.as_deref()
                    == Some(fingerprint(configured.expose_secret()).as_str());
                match stored {
                    Some(rt) if superseded => Some(rt),
                    _ => Some(configured.clone()),
                }
            }
        }
    }

    /// A grant token that has not been exchanged yet.
    pub(super) fn pending_grant(&self) -> Option<SecretString> {
        let grant = self.account.grant_token.as_ref()?;
        let used = self.state.exchanged_grant_sha256.as_deref()
            == Some(fingerprint(grant.expose()).as_str());
        (!used).then(|| grant.value.clone())
    }

    /// Whether there is anything to mint with: a refresh token or a grant token not yet exchanged.
    pub(super) fn can_mint(&self) -> bool {
        self.refresh_token().is_some() || self.pending_grant().is_some()
    }

    /// Where token requests go: the accounts server of the data center that authorized the
    /// stored refresh token (server-based clients; re-checked against the same rule as the
    /// callback, so an edited store cannot direct the client secret elsewhere), else the
    /// configured one.
    pub(super) fn accounts_url(&self) -> url::Url {
        let authorized_rt = self.state.refresh_token.as_ref().map(|rt| fingerprint(rt));
        let using_authorized = authorized_rt.is_some()
            && self
                .refresh_token()
                .map(|rt| fingerprint(rt.expose_secret()))
                == authorized_rt;
        self.state
            .accounts_url
            .as_deref()
            .filter(|_| self.account.client_type == ClientType::Server && using_authorized)
            .and_then(|u| url::Url::parse(u).ok())
            .and_then(|u| self.account.accepted_accounts_server(&u))
            .unwrap_or_else(|| self.account.accounts_url.clone())
    }

    /// The API base: the configured override, else a valid Zoho `api_domain`, else the data center's.
    pub(super) fn api_base(&self, api_domain: Option<&str>, warn_if_ignored: bool) -> ApiBase {
        let fallback = || {
            let dc = DataCenter::from_accounts_url(self.accounts_url().as_str())
                .unwrap_or(self.account.data_center);
            let url = self.account.api_url.clone().unwrap_or_else(|| {
                url::Url::parse(dc.api_url()).expect("data center table holds valid URLs")
            });
            ApiBase::from_url(&url).expect("config validated the API URL")
        };
        if self.account.api_url.is_some() {
            return fallback();
        }
        let Some(domain) = api_domain else {
            return fallback();
        };
        let accepted = url::Url::parse(domain).ok().filter(|u| {
            u.scheme() == "https"
                && u.host_str().is_some_and(is_zoho_api_host)
                && u.username().is_empty()
                && u.password().is_none()
                && u.path() == "/"
                && u.query().is_none()
        });
        match accepted.and_then(|u| ApiBase::from_url(&u)) {
            Some(base) => base,
            None => {
                if warn_if_ignored {
                    warn!(
                        account = %self.account.name,
                        api_domain = %crate::util::log_safe(domain),
                        "ignoring api_domain from the token response: not an https Zoho API host (*.zohoapis.*)"
                    );
                }
                fallback()
            }
        }
    }
}
