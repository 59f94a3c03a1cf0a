//! The refresher: one task per account, the only code that asks Zoho for tokens.
//!
//! It restores the stored token at start (so restarts mint nothing), refreshes ahead of expiry,
//! answers rejections reported by requests with one shared mint, keeps within the mint budget,
//! backs off on failure (transient: 1 s → 5 min with jitter; permanent: minutes; Zoho's throttle:
//! the whole window) and persists what it learns. In fleet mode (`token.store: redis://…`) the
//! mint goes through the fleet's lease instead (`refresher/fleet.rs`).

mod fleet;

use super::budget::{MintBudget, WINDOW};
use super::client::{AccountsClient, FailureClass, Grant, Minted, TokenError};
use super::redis_store::RedisStore;
use super::store::{fingerprint, FileStore, Loaded, Store, StoredState, STORE_VERSION};
use super::{refresh_margin, AccessToken, ApiBase, Command, Secrets, TokenHandle, TokenState};
use crate::config::{is_zoho_api_host, AccountConfig, ClientType, DataCenter, StoreConfig};
use crate::metrics::Metrics;
use crate::util::clock::now_unix_ms;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Timeout of one token request.
pub const TOKEN_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(300);
const PERMANENT_RETRY: Duration = Duration::from_secs(300);

/// What the refresher should do next. Pure, table-tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Ask Zoho now.
    MintNow,
    /// Sleep until then (or until kicked).
    WaitUntil(Instant),
    /// Nothing to do until kicked (no credentials yet).
    WaitForKick,
}

/// Inputs of [`plan`].
#[derive(Debug, Clone, Copy)]
pub struct PlanInput {
    /// Now.
    pub now: Instant,
    /// Current token: (expires_at, lifetime, generation).
    pub token: Option<(Instant, Duration, u64)>,
    /// Highest generation reported rejected.
    pub invalidated: u64,
    /// No attempt before then (backoff, throttle, budget).
    pub not_before: Option<Instant>,
    /// Whether there is anything to mint with.
    pub can_mint: bool,
}

/// Decides the next step.
pub fn plan(input: PlanInput) -> Plan {
    if !input.can_mint {
        return Plan::WaitForKick;
    }
    let due = match input.token {
        None => input.now,
        Some((_, _, generation)) if generation <= input.invalidated => input.now,
        Some((expires_at, lifetime, _)) => expires_at
            .checked_sub(refresh_margin(lifetime))
            .unwrap_or(input.now),
    };
    let at = input.not_before.map_or(due, |nb| nb.max(due));
    if at <= input.now {
        Plan::MintNow
    } else {
        Plan::WaitUntil(at)
    }
}

/// Delay after the `failures`-th consecutive transient failure: capped exponential, jittered
/// to 50–100 % so replicas spread out.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    exp.min(BACKOFF_CAP)
        .mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// One account's refresher.
pub struct Refresher {
    handle: Arc<TokenHandle>,
    commands: mpsc::Receiver<Command>,
    account: AccountConfig,
    client: AccountsClient,
    store: Store,
    state: StoredState,
    budget: MintBudget,
    not_before: Option<Instant>,
    failures: u32,
    generation: u64,
    last_error_label: Option<&'static str>,
    metrics: Arc<Metrics>,
    /// Fleet mode's state (`Some` with a Redis store).
    fleet: Option<fleet::Fleet>,
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
        metrics: Arc<Metrics>,
    ) -> Result<Refresher, String> {
        let client = AccountsClient::new(account.ca_file.as_deref(), TOKEN_REQUEST_TIMEOUT)?;
        let mut fleet = None;
        let store = match &account.token.store {
            StoreConfig::Memory => Store::Memory,
            StoreConfig::File(p) => Store::File(FileStore::new(p.clone())),
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
                fleet = Some(fleet::Fleet::new(redis.clone(), &account.token));
                Store::Redis(redis)
            }
        };
        Ok(Refresher {
            secrets_seen: handle.secrets(),
            handle,
            commands,
            account: account.clone(),
            client,
            store,
            state: StoredState {
                version: STORE_VERSION,
                client_id: account.client_id.clone(),
                ..Default::default()
            },
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

    /// Restores the stored state; installs a stored token that is still valid. Runs once:
    /// [`Refresher::run`] skips it when the caller already restored.
    pub async fn restore(&mut self) {
        if std::mem::replace(&mut self.restored, true) {
            return;
        }
        self.restore_stored().await;
        if !self.can_mint() {
            // Say "not authorized" before the first request or readiness probe can ask.
            self.explain_idle();
        }
    }

    async fn restore_stored(&mut self) {
        if let Store::File(f) = &self.store {
            if let Some(w) = f.permission_warning() {
                warn!(account = %self.account.name, "{w}");
            }
        }
        let refresh_token = self.refresh_token();
        let stored = match self
            .store
            .load(
                &self.account.client_id,
                refresh_token.as_ref().map(|rt| rt.expose_secret()),
            )
            .await
        {
            Loaded::Empty => return,
            Loaded::SetAside(message) => {
                error!(account = %self.account.name, "{message}");
                return;
            }
            Loaded::Unavailable(message) => {
                self.redis_down(message);
                return;
            }
            Loaded::State(s) => *s,
        };
        self.state = stored;
        self.state.client_id = self.account.client_id.clone();
        let current_rt = self
            .refresh_token()
            .map(|rt| fingerprint(rt.expose_secret()));
        if current_rt.is_some() && current_rt != self.state.refresh_token_sha256 {
            // A new refresh token: the stored access token and mint log belong to the old one.
            self.state.access_token = None;
            self.state.mints_unix_ms.clear();
            self.state.throttled_until_unix_ms = None;
            self.state.refresh_token_sha256 = current_rt;
        }
        self.budget = MintBudget::new(
            self.account.token.mint_budget,
            self.state.mints_unix_ms.clone(),
        );
        let now_ms = now_unix_ms();
        if let Some(until) = self.state.throttled_until_unix_ms.filter(|&t| t > now_ms) {
            self.not_before = Some(Instant::now() + Duration::from_millis(until - now_ms));
        }
        if let (Some(value), Some(expires)) = (
            self.state.access_token.clone(),
            self.state.expires_at_unix_ms,
        ) {
            let remaining = Duration::from_millis(expires.saturating_sub(now_ms));
            let lifetime = self
                .state
                .lifetime_secs
                .map(Duration::from_secs_f64)
                .unwrap_or(Duration::from_secs(3600));
            let api = self.api_base(self.state.api_domain.as_deref(), false);
            if !remaining.is_zero() {
                if let Some(token) = AccessToken::new(
                    &value,
                    self.generation + 1,
                    lifetime,
                    remaining,
                    api.clone(),
                ) {
                    if token.usable_at(Instant::now()) {
                        self.generation += 1;
                        info!(
                            account = %self.account.name,
                            expires_in_s = remaining.as_secs(),
                            "reusing the stored access token; no token request needed"
                        );
                        self.handle.install(token);
                        self.set_ready(&api);
                    }
                }
            }
        }
        self.publish_budget();
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

    async fn run_loop(mut self, cancel: CancellationToken) {
        self.restore().await;
        loop {
            self.notice_rotated_secrets();
            let input = PlanInput {
                now: Instant::now(),
                token: self
                    .handle
                    .current()
                    .map(|t| (t.expires_at, t.lifetime, t.generation)),
                invalidated: self.handle.invalidated(),
                not_before: self.not_before,
                can_mint: self.can_mint(),
            };
            match plan(input) {
                Plan::MintNow => {
                    tokio::select! {
                        _ = self.attempt() => {}
                        _ = cancel.cancelled() => return,
                    }
                }
                Plan::WaitUntil(at) => {
                    let kicked = self.handle.kicked();
                    let fleet_wake = self.fleet_wake();
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {}
                        _ = kicked => {}
                        _ = fleet_wake => if self.fleet_probe(&cancel).await.is_break() { return },
                        Some(cmd) = self.commands.recv() => self.on_command(cmd).await,
                        _ = cancel.cancelled() => return,
                    }
                }
                Plan::WaitForKick => {
                    self.explain_idle();
                    let kicked = self.handle.kicked();
                    let fleet_wake = self.fleet_wake();
                    tokio::select! {
                        _ = kicked => {}
                        _ = fleet_wake => if self.fleet_probe(&cancel).await.is_break() { return },
                        Some(cmd) = self.commands.recv() => self.on_command(cmd).await,
                        _ = cancel.cancelled() => return,
                    }
                }
            }
        }
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

    /// The refresh token to use: the configured one, else the one the proxy obtained. A refresh
    /// token from a browser authorization supersedes the configured one it replaced, until the
    /// configured one changes (a rotated secret file, an edited config).
    fn refresh_token(&self) -> Option<SecretString> {
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
    fn pending_grant(&self) -> Option<SecretString> {
        let grant = self.account.grant_token.as_ref()?;
        let used = self.state.exchanged_grant_sha256.as_deref()
            == Some(fingerprint(grant.expose()).as_str());
        (!used).then(|| grant.value.clone())
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

    fn can_mint(&self) -> bool {
        self.refresh_token().is_some() || self.pending_grant().is_some()
    }

    /// Where token requests go: the accounts server of the data center that authorized the
    /// stored refresh token (server-based clients; re-checked against the same rule as the
    /// callback, so an edited store cannot direct the client secret elsewhere), else the
    /// configured one.
    fn accounts_url(&self) -> url::Url {
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
    fn api_base(&self, api_domain: Option<&str>, warn_if_ignored: bool) -> ApiBase {
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

    fn publish_budget(&mut self) {
        let left = self.budget.left(now_unix_ms());
        self.handle.update_status(|s| s.mint_budget_left = left);
    }

    fn set_ready(&self, api: &ApiBase) {
        let origin = api.origin();
        self.handle.update_status(|s| {
            s.state = TokenState::Ready;
            s.last_error = None;
            s.next_attempt_unix_ms = None;
            s.api_host = origin;
        });
    }

    fn wait(&mut self, delay: Duration, state: TokenState, error: String) {
        self.not_before = Some(Instant::now() + delay);
        let next = now_unix_ms() + delay.as_millis() as u64;
        self.handle.update_status(|s| {
            s.state = state;
            s.last_error = Some(error);
            s.next_attempt_unix_ms = Some(next);
        });
        self.handle.wake_waiters();
    }

    async fn persist(&mut self) {
        if self.fleet.is_some() {
            // The shared state is written under the lease only (fleet.rs), and the store's health
            // is the fleet code's to report.
            return;
        }
        self.state.mints_unix_ms = self.budget.log().to_vec();
        if let Err(e) = self.store.save(&self.state).await {
            warn!(account = %self.account.name, "{e}");
            self.handle.update_status(|s| s.store_error = Some(e));
        } else {
            self.handle.update_status(|s| s.store_error = None);
        }
    }

    /// When the mint budget is spent: logs once, waits until a slot frees, returns true.
    /// `scope` qualifies the message (" across all replicas" in fleet mode).
    fn hold_for_budget(&mut self, now_ms: u64, scope: &str) -> bool {
        let Some(delay) = self.budget.wait(now_ms) else {
            return false;
        };
        let message = format!(
            "mint budget spent: {} token requests in the last 10 minutes{scope} (token.mint_budget); next one in {} s",
            self.account.token.mint_budget,
            delay.as_secs().max(1)
        );
        if self.last_error_label != Some("budget") {
            warn!(account = %self.account.name, "{message}");
            self.last_error_label = Some("budget");
        }
        self.wait(delay, TokenState::Throttled, message);
        true
    }

    /// One token request, if the throttle and the budget allow it.
    async fn attempt(&mut self) {
        if self.fleet.is_some() {
            return self.attempt_fleet().await;
        }
        let now_ms = now_unix_ms();
        if let Some(until) = self.state.throttled_until_unix_ms.filter(|&t| t > now_ms) {
            let delay = Duration::from_millis(until - now_ms);
            self.wait(
                delay,
                TokenState::Throttled,
                TokenError::Throttled.to_string(),
            );
            return;
        }
        if self.hold_for_budget(now_ms, "") {
            return;
        }
        let grant_code = if self.refresh_token().is_none() {
            self.pending_grant()
        } else {
            None
        };
        let refresh_token = self.refresh_token();
        let secrets = self.handle.secrets();
        self.budget.record(now_ms);
        if let Some(code) = &grant_code {
            // Never send the same grant token twice, even if we crash mid-exchange.
            self.state.exchanged_grant_sha256 = Some(fingerprint(code.expose_secret()));
        }
        self.persist().await;
        self.publish_budget();

        self.handle.set_minting(true);
        let accounts_url = self.accounts_url();
        let result = match (&grant_code, &refresh_token) {
            (Some(code), _) => {
                info!(account = %self.account.name, "exchanging the grant token for a refresh token (once)");
                let grant = Grant::Code {
                    code,
                    redirect_uri: None,
                };
                self.client
                    .request(
                        &accounts_url,
                        &self.account.client_id,
                        &secrets.client_secret,
                        grant,
                    )
                    .await
            }
            (None, Some(rt)) => {
                debug!(account = %self.account.name, "requesting an access token");
                self.client
                    .request(
                        &accounts_url,
                        &self.account.client_id,
                        &secrets.client_secret,
                        Grant::Refresh(rt),
                    )
                    .await
            }
            (None, None) => Err(TokenError::Other("no refresh token".to_string())),
        };
        match result {
            Ok(minted) => {
                self.accept(minted, grant_code.is_some(), None).await;
            }
            Err(e) => self.fail(e).await,
        }
        self.handle.set_minting(false);
    }

    /// Installs a freshly minted token and persists it; `false` if the token was unusable.
    async fn accept(
        &mut self,
        minted: Minted,
        from_code: bool,
        accounts_url: Option<url::Url>,
    ) -> bool {
        if from_code {
            match &minted.refresh_token {
                Some(rt) => {
                    self.state.refresh_token = Some(rt.expose_secret().to_string());
                    if let Some(u) = accounts_url {
                        self.state.accounts_url =
                            Some(u.as_str().trim_end_matches('/').to_string());
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
        let api = self.api_base(minted.api_domain.as_deref(), true);
        let Some(token) = AccessToken::new(
            minted.access_token.expose_secret(),
            self.generation + 1,
            minted.lifetime,
            minted.lifetime,
            api.clone(),
        ) else {
            self.fail(TokenError::UnusableToken).await;
            return false;
        };
        self.generation += 1;
        self.state.refresh_token_sha256 = self
            .refresh_token()
            .map(|rt| fingerprint(rt.expose_secret()));
        self.state.access_token = Some(minted.access_token.expose_secret().to_string());
        self.state.expires_at_unix_ms = Some(now_unix_ms() + minted.lifetime.as_millis() as u64);
        self.state.lifetime_secs = Some(minted.lifetime.as_secs_f64());
        self.state.api_domain = Some(api.origin());
        self.state.throttled_until_unix_ms = None;
        self.handle.install(token);
        self.failures = 0;
        self.not_before = None;
        if self.last_error_label.take().is_some() {
            info!(account = %self.account.name, "token service recovered");
        }
        info!(
            account = %self.account.name,
            expires_in_s = minted.lifetime.as_secs(),
            api_host = %api.origin(),
            "new access token"
        );
        self.set_ready(&api);
        let minted_at = now_unix_ms();
        self.handle
            .update_status(|s| s.last_refresh_unix_ms = Some(minted_at));
        self.metrics.token_refresh(&self.account.name, "ok");
        self.persist().await;
        self.publish_budget();
        true
    }

    async fn fail(&mut self, e: TokenError) {
        self.metrics.token_refresh(&self.account.name, e.label());
        let label = e.label();
        if self.last_error_label != Some(label) {
            match e.class() {
                FailureClass::Transient => {
                    warn!(account = %self.account.name, "token request failed: {e}")
                }
                _ => error!(account = %self.account.name, "token request failed: {e}"),
            }
            self.last_error_label = Some(label);
        } else {
            debug!(account = %self.account.name, "token request failed again: {e}");
        }
        let message = e.to_string();
        match e.class() {
            FailureClass::Transient => {
                self.failures = self.failures.saturating_add(1);
                let delay = backoff(self.failures, rand::thread_rng().gen());
                self.wait(delay, TokenState::Backoff, message);
            }
            FailureClass::Permanent => {
                let jitter: f64 = rand::thread_rng().gen();
                // A server-based account whose refresh token is gone needs its owner to
                // authorize again: say so (requests then get the authorization instructions).
                let state = if self.account.client_type == ClientType::Server
                    && e == TokenError::RefreshTokenRejected
                {
                    TokenState::NotAuthorized
                } else {
                    TokenState::Failed
                };
                self.wait(PERMANENT_RETRY.mul_f64(0.8 + 0.4 * jitter), state, message);
            }
            FailureClass::Throttled => {
                self.state.throttled_until_unix_ms =
                    Some(now_unix_ms() + WINDOW.as_millis() as u64);
                self.wait(WINDOW, TokenState::Throttled, message);
                self.persist().await;
            }
        }
    }

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

    /// Exchanges a browser authorization code (server-based client).
    async fn authorize(
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
            .client
            .request(
                &accounts_url,
                &self.account.client_id,
                &secrets.client_secret,
                grant,
            )
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
        Loaded::Empty => StoredState {
            version: STORE_VERSION,
            client_id: account.client_id.clone(),
            ..Default::default()
        },
        Loaded::SetAside(m) | Loaded::Unavailable(m) => {
            warn!("{m}");
            StoredState {
                version: STORE_VERSION,
                client_id: account.client_id.clone(),
                ..Default::default()
            }
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
    state.access_token = Some(minted.access_token.expose_secret().to_string());
    state.expires_at_unix_ms = Some(now_unix_ms() + minted.lifetime.as_millis() as u64);
    state.lifetime_secs = Some(minted.lifetime.as_secs_f64());
    state.mints_unix_ms = vec![now_unix_ms()];
    store.save(&state).await?;
    Ok(format!(
        "stored the refresh token in {}; the proxy will use it from now on",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_follows_the_table() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let hour = s(3600);
        let cases: &[(&str, PlanInput, Plan)] = &[
            (
                "no token → mint",
                PlanInput {
                    now,
                    token: None,
                    invalidated: 0,
                    not_before: None,
                    can_mint: true,
                },
                Plan::MintNow,
            ),
            (
                "no credentials → idle",
                PlanInput {
                    now,
                    token: None,
                    invalidated: 0,
                    not_before: None,
                    can_mint: false,
                },
                Plan::WaitForKick,
            ),
            (
                "fresh token → wait until margin",
                PlanInput {
                    now,
                    token: Some((now + hour, hour, 1)),
                    invalidated: 0,
                    not_before: None,
                    can_mint: true,
                },
                Plan::WaitUntil(now + hour - s(300)),
            ),
            (
                "inside margin → mint",
                PlanInput {
                    now,
                    token: Some((now + s(100), hour, 1)),
                    invalidated: 0,
                    not_before: None,
                    can_mint: true,
                },
                Plan::MintNow,
            ),
            (
                "rejected token → mint",
                PlanInput {
                    now,
                    token: Some((now + hour, hour, 3)),
                    invalidated: 3,
                    not_before: None,
                    can_mint: true,
                },
                Plan::MintNow,
            ),
            (
                "rejected older generation → keep",
                PlanInput {
                    now,
                    token: Some((now + hour, hour, 4)),
                    invalidated: 3,
                    not_before: None,
                    can_mint: true,
                },
                Plan::WaitUntil(now + hour - s(300)),
            ),
            (
                "backoff holds a due mint",
                PlanInput {
                    now,
                    token: None,
                    invalidated: 0,
                    not_before: Some(now + s(8)),
                    can_mint: true,
                },
                Plan::WaitUntil(now + s(8)),
            ),
            (
                "short lifetime refreshes at 90%",
                PlanInput {
                    now,
                    token: Some((now + s(5), s(5), 1)),
                    invalidated: 0,
                    not_before: None,
                    can_mint: true,
                },
                Plan::WaitUntil(now + Duration::from_millis(4500)),
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(plan(*input), *expected, "{name}");
        }
    }

    /// A refresher for the first account of `yaml` (no I/O until restore).
    fn refresher(yaml: &str) -> Refresher {
        let config = crate::config::Config::from_yaml_str(yaml).expect("test config is valid");
        let account = &config.accounts[0];
        let secrets = super::super::Secrets {
            client_secret: account.client_secret.value.clone(),
            refresh_token: account.refresh_token.as_ref().map(|s| s.value.clone()),
        };
        let (handle, commands) = TokenHandle::new(&account.name, secrets, 8, String::new());
        Refresher::new(account, handle, commands, Arc::new(Metrics::new()))
            .expect("refresher builds")
    }

    fn server_yaml(store: &std::path::Path, extra: &str) -> String {
        format!(
            "accounts:\n  - name: globex\n    client_type: server\n    data_center: us\n    client_id: 1000.CID\n    client_secret: s\n    \
             redirect_uri: http://127.0.0.1:9901/oauth/callback\n    token:\n      store: {}\n    allow: [ZohoCRM.modules.leads.READ]\n{extra}",
            store.display()
        )
    }

    #[test]
    fn the_user_data_center_decides_where_tokens_and_requests_go() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut r = refresher(&server_yaml(&dir.path().join("t.json"), ""));
        assert_eq!(
            r.accounts_url().as_str(),
            "https://accounts.zoho.com/",
            "configured DC before authorization"
        );
        r.state.refresh_token = Some("1000.rt.eu".into());
        let cases: &[(&str, Option<&str>, &str, &str)] = &[
            // (stored accounts_url, api_domain of the token reply, token endpoint used, API host used)
            (
                "https://accounts.zoho.eu",
                Some("https://www.zohoapis.eu"),
                "https://accounts.zoho.eu/",
                "https://www.zohoapis.eu",
            ),
            (
                "https://accounts.zoho.eu",
                None,
                "https://accounts.zoho.eu/",
                "https://www.zohoapis.eu",
            ),
            (
                "https://accounts.zoho.in",
                Some("https://evil.example"),
                "https://accounts.zoho.in/",
                "https://www.zohoapis.in",
            ),
            (
                "https://accounts.zoho.com.au",
                Some("https://sandbox.zohoapis.com.au"),
                "https://accounts.zoho.com.au/",
                "https://sandbox.zohoapis.com.au",
            ),
            (
                "https://evil.example",
                None,
                "https://accounts.zoho.com/",
                "https://www.zohoapis.com",
            ),
            (
                "https://accounts.zoho.eu/oauth/v2/token",
                None,
                "https://accounts.zoho.com/",
                "https://www.zohoapis.com",
            ),
        ];
        for (stored, api_domain, token_endpoint, api) in cases {
            r.state.accounts_url = Some(stored.to_string());
            assert_eq!(
                r.accounts_url().as_str(),
                *token_endpoint,
                "token endpoint for stored {stored}"
            );
            assert_eq!(
                r.api_base(*api_domain, false).origin(),
                *api,
                "API host for stored {stored}, api_domain {api_domain:?}"
            );
        }
    }

    #[test]
    fn a_configured_api_url_overrides_every_api_domain() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut r = refresher(&server_yaml(
            &dir.path().join("t.json"),
            "    api_url: https://127.0.0.1:4444\n",
        ));
        r.state.refresh_token = Some("1000.rt.eu".into());
        r.state.accounts_url = Some("https://accounts.zoho.eu".into());
        assert_eq!(
            r.api_base(Some("https://www.zohoapis.eu"), false).origin(),
            "https://127.0.0.1:4444",
            "api_url wins"
        );
    }

    #[test]
    fn an_authorized_refresh_token_supersedes_the_configured_one_until_that_changes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut r = refresher(&server_yaml(
            &dir.path().join("t.json"),
            "    refresh_token: 1000.configured\n",
        ));
        let current = |r: &Refresher| r.refresh_token().map(|t| t.expose_secret().to_string());
        assert_eq!(
            current(&r).as_deref(),
            Some("1000.configured"),
            "configured token before authorization"
        );
        r.state.refresh_token = Some("1000.authorized".into());
        r.state.accounts_url = Some("https://accounts.zoho.eu".into());
        assert_eq!(
            current(&r).as_deref(),
            Some("1000.configured"),
            "a stored token alone does not override the config"
        );
        assert_eq!(
            r.accounts_url().as_str(),
            "https://accounts.zoho.com/",
            "the configured token goes to the configured DC"
        );
        r.state.supersedes_sha256 = Some(fingerprint("1000.configured"));
        assert_eq!(
            current(&r).as_deref(),
            Some("1000.authorized"),
            "authorization supersedes the configured token"
        );
        assert_eq!(
            r.accounts_url().as_str(),
            "https://accounts.zoho.eu/",
            "and uses the DC that authorized it"
        );
        r.handle.set_secrets(super::super::Secrets {
            client_secret: "s".to_string().into(),
            refresh_token: Some("1000.rotated".to_string().into()),
        });
        assert_eq!(
            current(&r).as_deref(),
            Some("1000.rotated"),
            "a changed configured token wins again"
        );
    }

    #[tokio::test]
    async fn a_restart_restores_an_authorized_account_from_its_store() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("t.json");
        let never = refresher(&server_yaml(&path, ""));
        let mut never = never;
        never.restore().await;
        assert_eq!(
            never.handle.status().state,
            TokenState::NotAuthorized,
            "no store: not authorized right after restore"
        );
        assert!(never.handle.usable().is_none(), "no token");

        let state = StoredState {
            version: STORE_VERSION,
            client_id: "1000.CID".into(),
            refresh_token: Some("1000.rt.eu".into()),
            refresh_token_sha256: Some(fingerprint("1000.rt.eu")),
            accounts_url: Some("https://accounts.zoho.eu".into()),
            access_token: Some("1000.at.eu".into()),
            expires_at_unix_ms: Some(now_unix_ms() + 3_000_000),
            lifetime_secs: Some(3600.0),
            api_domain: Some("https://www.zohoapis.eu".into()),
            ..Default::default()
        };
        FileStore::new(path.clone())
            .save(&state)
            .await
            .expect("store written");
        let mut r = refresher(&server_yaml(&path, ""));
        r.restore().await;
        let token = r
            .handle
            .usable()
            .expect("the stored access token is installed");
        assert_eq!(
            token.api.origin(),
            "https://www.zohoapis.eu",
            "requests go to the authorizing DC's API"
        );
        assert_eq!(
            r.handle.status().state,
            TokenState::Ready,
            "ready without a token request"
        );
        assert_eq!(
            r.refresh_token()
                .map(|t| t.expose_secret().to_string())
                .as_deref(),
            Some("1000.rt.eu"),
            "stored refresh token used"
        );
        assert_eq!(
            r.accounts_url().as_str(),
            "https://accounts.zoho.eu/",
            "refreshes go to the authorizing DC"
        );
        let generation = token.generation;
        r.restore().await;
        assert_eq!(
            r.handle.usable().map(|t| t.generation),
            Some(generation),
            "a second restore is a no-op"
        );
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(2, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(4, 1.0), Duration::from_secs(8));
        assert_eq!(
            backoff(30, 1.0),
            Duration::from_secs(300),
            "capped at 5 minutes"
        );
        assert_eq!(
            backoff(4, 0.0),
            Duration::from_secs(4),
            "jitter halves at most"
        );
    }
}
