//! The refresher: one task per account, the only code that asks Zoho for tokens.
//!
//! It restores the stored token at start (so restarts mint nothing), refreshes ahead of expiry,
//! answers rejections reported by requests with one shared mint, keeps within the mint budget,
//! backs off on failure (transient: 1 s → 5 min with jitter; permanent: minutes; Zoho's throttle:
//! the whole window) and persists what it learns. In fleet mode (`token.store: redis://…`) the
//! mint goes through the fleet's lease instead (`refresher/fleet/`).
//!
//! This module owns the [`Refresher`] itself: building it, its run loop, the commands it answers
//! and the status it reports while idle. The parts live beside it, one reason to change each:
//! `plan` (when), `restore` (start-up), `credentials` (with what, and where to), `mint` (the
//! request and the one install of a new token), `authorize` (authorization codes) and `fleet`
//! (replicas sharing one refresh token). Must not: be called on the request path (requests only
//! read the token handle), or import anything above the services layer.

mod authorize;
mod credentials;
mod fleet;
mod mint;
mod plan;
mod restore;
#[cfg(test)]
mod tests;

pub use authorize::exchange_once;
pub use plan::{backoff, plan, Plan, PlanInput};

use super::budget::MintBudget;
use super::client::AccountsClient;
use super::redis_store::RedisStore;
use super::store::{FileStore, Store, StoredState};
use super::TokenMetrics;
use super::{ApiBase, Command, Secrets, TokenHandle, TokenState};
use crate::config::{AccountConfig, ClientType, StoreConfig};
use crate::util::clock::now_unix_ms;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Timeout of one token request.
pub const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One account's refresher.
pub struct Refresher {
    /// The token cell requests read, and the status the admin listener shows.
    handle: Arc<TokenHandle>,
    commands: mpsc::Receiver<Command>,
    account: AccountConfig,
    client: AccountsClient,
    store: Store,
    /// What survives a restart (saved by `persist` outside fleet mode).
    state: StoredState,
    budget: MintBudget,
    /// No token request before then (back-off, throttle, budget).
    not_before: Option<Instant>,
    /// Consecutive transient failures (the back-off grows with them).
    failures: u32,
    /// Generation of the last token installed.
    generation: u64,
    /// The kind of the last error, so a repeated one is logged once.
    last_error_label: Option<&'static str>,
    metrics: TokenMetrics,
    /// Fleet mode's state (`Some` with a Redis store).
    fleet: Option<fleet::Fleet>,
    /// Whether `restore` has run.
    restored: bool,
    /// The credentials the last attempt was planned with (a reload may rotate them).
    secrets_seen: Arc<Secrets>,
}

impl Refresher {
    /// Builds the refresher of `account` (no I/O yet).
    pub fn new(
        account: &AccountConfig,
        handle: Arc<TokenHandle>,
        commands: mpsc::Receiver<Command>,
        metrics: TokenMetrics,
    ) -> Result<Refresher, String> {
        let client = AccountsClient::new(account.ca_file.as_deref(), TOKEN_REQUEST_TIMEOUT)?;
        let (store, fleet) = open_store(account)?;
        Ok(Refresher {
            secrets_seen: handle.secrets(),
            handle,
            commands,
            account: account.clone(),
            client,
            store,
            state: StoredState::for_client(&account.client_id),
            budget: MintBudget::new(account.token.mint_budget, Vec::new()),
            not_before: None,
            failures: 0,
            generation: 0,
            last_error_label: None,
            metrics,
            fleet,
            restored: false,
        })
    }

    /// The fleet's Redis store, in fleet mode (the credit ledgers share it).
    pub fn shared_store(&self) -> Option<Arc<RedisStore>> {
        match &self.store {
            Store::Redis(r) => Some(r.clone()),
            _ => None,
        }
    }

    /// Runs until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        match self.fleet.as_ref().map(|f| f.watcher(cancel.clone())) {
            Some(watcher) => {
                tokio::join!(self.run_loop(cancel), watcher);
            }
            None => self.run_loop(cancel).await,
        }
    }

    /// Restores, then plans, mints and waits until cancelled.
    async fn run_loop(mut self, cancel: CancellationToken) {
        self.restore().await;
        loop {
            self.notice_rotated_secrets();
            match plan(self.plan_input(self.not_before, self.can_mint())) {
                Plan::MintNow => {
                    tokio::select! {
                        _ = self.attempt() => {}
                        _ = cancel.cancelled() => return,
                    }
                }
                Plan::WaitUntil(at) => {
                    if self.idle(Some(at), &cancel).await.is_break() {
                        return;
                    }
                }
                Plan::WaitForKick => {
                    self.explain_idle();
                    if self.idle(None, &cancel).await.is_break() {
                        return;
                    }
                }
            }
        }
    }

    /// What [`plan()`] decides from: the handle's token as of now, with `not_before` and `can_mint`.
    fn plan_input(&self, not_before: Option<Instant>, can_mint: bool) -> PlanInput {
        PlanInput {
            now: Instant::now(),
            token: self
                .handle
                .current()
                .map(|t| (t.expires_at, t.lifetime, t.generation)),
            invalidated: self.handle.invalidated(),
            not_before,
            can_mint,
        }
    }

    /// Waits until `at` (`None`: no deadline), a kick, a fleet notice or a command; `Break` on
    /// shutdown.
    async fn idle(&mut self, at: Option<Instant>, cancel: &CancellationToken) -> ControlFlow<()> {
        let kicked = self.handle.kicked();
        let fleet_wake = self.fleet_wake();
        let deadline = async move {
            match at {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = deadline => {}
            _ = kicked => {}
            _ = fleet_wake => return self.fleet_probe(cancel).await,
            Some(cmd) = self.commands.recv() => self.on_command(cmd).await,
            _ = cancel.cancelled() => return ControlFlow::Break(()),
        }
        ControlFlow::Continue(())
    }

    /// Restores the store, then only answers commands until cancelled: never refreshes. For the
    /// `authorize` command, which must not spend mints on access tokens it will not use.
    pub async fn run_commands_only(mut self, cancel: CancellationToken) {
        self.restore().await;
        loop {
            tokio::select! {
                Some(cmd) = self.commands.recv() => self.on_command(cmd).await,
                _ = cancel.cancelled() => return,
            }
        }
    }

    /// After a reload rotated the credentials (a Kubernetes Secret update, say), a permanent
    /// failure (refused client secret or refresh token) no longer stands: retry now instead of
    /// minutes later. The mint budget still applies.
    fn notice_rotated_secrets(&mut self) {
        let secrets = self.handle.secrets();
        if Arc::ptr_eq(&secrets, &self.secrets_seen) {
            return;
        }
        self.secrets_seen = secrets;
        if self.handle.status().state == TokenState::Failed && self.not_before.is_some() {
            info!(account = %self.account.name, "credentials rotated after a refused token request: retrying now");
            self.not_before = None;
            self.failures = 0;
        }
    }

    /// Answers a command sent through the handle.
    async fn on_command(&mut self, command: Command) {
        match command {
            Command::Authorize {
                code,
                accounts_url,
                reply,
            } => {
                let outcome = self.authorize(code, accounts_url).await;
                let _ = reply.send(outcome);
            }
        }
    }

    /// Status when there is nothing to mint with.
    fn explain_idle(&self) {
        let (state, error) = match self.account.client_type {
            ClientType::Server => (TokenState::NotAuthorized, None),
            ClientType::SelfClient => (
                TokenState::Failed,
                Some(
                    "the grant token was already exchanged (or tried) and no refresh token is stored; generate a new grant token in the API console and run `zoho-auth-proxy exchange`"
                        .to_string(),
                ),
            ),
        };
        self.handle.update_status(|s| {
            s.state = state;
            if error.is_some() {
                s.last_error = error;
            }
            s.next_attempt_unix_ms = None;
        });
    }

    /// Shows the mint budget left in the status.
    fn publish_budget(&mut self) {
        let left = self.budget.left(now_unix_ms());
        self.handle.update_status(|s| s.mint_budget_left = left);
    }

    /// Status once a token is installed: ready, no error, requests go to `api`.
    fn set_ready(&self, api: &ApiBase) {
        let origin = api.origin();
        self.handle.update_status(|s| {
            s.state = TokenState::Ready;
            s.last_error = None;
            s.next_attempt_unix_ms = None;
            s.api_host = origin;
        });
    }
}

/// The account's token store, and fleet mode's state with a Redis store.
fn open_store(account: &AccountConfig) -> Result<(Store, Option<fleet::Fleet>), String> {
    Ok(match &account.token.store {
        StoreConfig::Memory => (Store::Memory, None),
        StoreConfig::File(p) => (Store::File(FileStore::new(p.clone())), None),
        StoreConfig::Redis {
            url,
            topology,
            password,
            sentinel_password,
        } => {
            if account.refresh_token.is_none() {
                return Err(format!(
                    "account {}: token.store: {url} (fleet mode) needs zoho.refresh_token or zoho.refresh_token_file: replicas share the tokens of one refresh token, and a grant token or a browser authorization can be used only once. Obtain the refresh token first (`zoho-auth-proxy exchange` with a file store), then configure it",
                    account.name
                ));
            }
            let redis = Arc::new(RedisStore::new(
                url,
                topology,
                password.as_ref(),
                sentinel_password.as_ref(),
                &account.client_id,
            )?);
            let fleet = fleet::Fleet::new(redis.clone(), &account.token);
            (Store::Redis(redis), Some(fleet))
        }
    })
}
