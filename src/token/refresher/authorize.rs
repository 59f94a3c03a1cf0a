//! The authorization-code path: a browser authorization's code (server-based clients, sent by the
//! admin listener or the `authorize` command), a self client's grant token (`exchange`, or the
//! first mint), and keeping the refresh token Zoho returns for it.
//!
//! Must not: exchange a code in fleet mode (replicas share one configured refresh token), send a
//! code twice, or keep a refresh token anywhere but the account's store.

use super::{Refresher, TOKEN_REQUEST_TIMEOUT};
use crate::config::{AccountConfig, StoreConfig};
use crate::token::budget::MintBudget;
use crate::token::client::{AccountsClient, Grant, Minted, TokenError};
use crate::token::store::{fingerprint, FileStore, Loaded, StoredState};
use crate::util::clock::now_unix_ms;
use secrecy::{ExposeSecret, SecretString};
use tracing::{info, warn};

impl Refresher {
    /// Exchanges a browser authorization code (server-based client).
    pub(super) async fn authorize(
        &mut self,
        code: SecretString,
        accounts_url: url::Url,
    ) -> Result<(), String> {
        if self.fleet.is_some() {
            return Err("fleet mode (token.store: redis://…) uses the configured refresh token; authorize one proxy with a file store, then configure the refresh token it obtained".to_string());
        }
        let secrets = self.handle.secrets();
        let redirect_uri = self
            .account
            .redirect_uri
            .as_ref()
            .map(|u| u.as_str().to_string());
        self.handle.set_minting(true);
        let grant = Grant::Code {
            code: &code,
            redirect_uri: redirect_uri.as_deref(),
        };
        let result = self
            .request(&accounts_url, &secrets.client_secret, grant)
            .await;
        let outcome = match result {
            Ok(minted) if minted.refresh_token.is_some() => {
                // A new refresh token starts a new mint window.
                self.budget = MintBudget::new(self.account.token.mint_budget, vec![now_unix_ms()]);
                self.state.exchanged_grant_sha256 = None;
                self.accept(minted, true, Some(accounts_url)).await;
                Ok(())
            }
            Ok(_) => Err("Zoho returned no refresh token; authorize again (the request asks for access_type=offline and prompt=consent)".to_string()),
            Err(e) => {
                self.metrics.token_refresh(&self.account.name, e.label());
                Err(match e {
                    // The self-client wording ("generate a grant token") does not fit a browser code.
                    TokenError::InvalidGrantCode => format!(
                        "Zoho answered invalid_code at {}: the authorization code expired or was already used; start again from /oauth/start",
                        accounts_url.host_str().unwrap_or("the accounts server")
                    ),
                    other => other.to_string(),
                })
            }
        };
        self.handle.set_minting(false);
        outcome
    }

    /// Keeps the refresh token a code was exchanged for (with the accounts server that issued it
    /// and, for a browser authorization, the configured refresh token it supersedes).
    pub(super) fn keep_refresh_token(&mut self, minted: &Minted, accounts_url: Option<url::Url>) {
        match &minted.refresh_token {
            Some(rt) => {
                self.state.refresh_token = Some(rt.expose_secret().to_string());
                if let Some(u) = accounts_url {
                    self.state.accounts_url = Some(u.as_str().trim_end_matches('/').to_string());
                    self.state.supersedes_sha256 = self
                        .handle
                        .secrets()
                        .refresh_token
                        .as_ref()
                        .map(|c| fingerprint(c.expose_secret()));
                }
                info!(account = %self.account.name, store = %self.store.describe(), "obtained a refresh token and stored it");
            }
            None => warn!(
                account = %self.account.name,
                "Zoho returned no refresh token for the code (for browser authorization, access_type=offline and prompt=consent are required)"
            ),
        }
    }
}

/// `exchange` subcommand: exchanges a grant token once and stores the refresh token.
pub async fn exchange_once(account: &AccountConfig, code: &str) -> Result<String, String> {
    let StoreConfig::File(path) = &account.token.store else {
        return Err(
            "`exchange` needs token.store set to a file, where the refresh token will be kept"
                .to_string(),
        );
    };
    let store = FileStore::new(path.clone());
    let mut state = match store.load(&account.client_id).await {
        Loaded::State(s) => *s,
        Loaded::Empty => StoredState::for_client(&account.client_id),
        Loaded::SetAside(m) | Loaded::Unavailable(m) => {
            warn!("{m}");
            StoredState::for_client(&account.client_id)
        }
    };
    let client = AccountsClient::new(account.ca_file.as_deref(), TOKEN_REQUEST_TIMEOUT)?;
    let code = SecretString::from(code.trim().to_string());
    state.exchanged_grant_sha256 = Some(fingerprint(code.expose_secret()));
    let minted = client
        .request(
            &account.accounts_url,
            &account.client_id,
            &account.client_secret.value,
            Grant::Code {
                code: &code,
                redirect_uri: None,
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let rt = minted
        .refresh_token
        .ok_or("Zoho returned no refresh token for this grant token")?;
    state.refresh_token_sha256 = Some(fingerprint(rt.expose_secret()));
    state.refresh_token = Some(rt.expose_secret().to_string());
    state.record_access_token(
        minted.access_token.expose_secret(),
        now_unix_ms() + minted.lifetime.as_millis() as u64,
        minted.lifetime,
    );
    state.mints_unix_ms = vec![now_unix_ms()];
    store.save(&state).await?;
    Ok(format!(
        "stored the refresh token in {}; the proxy will use it from now on",
        path.display()
    ))
}
