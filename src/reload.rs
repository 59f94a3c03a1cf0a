//! Live reload: on SIGHUP or when the config file (or a secret file) changes on disk, re-read
//! the config and swap in the new policies, limits and log level as one snapshot.
//!
//! A broken config keeps the old snapshot, logs why and counts a failed reload. Settings that
//! need a restart (listen addresses, accounts, credentials other than rotated secret files, token
//! stores, log format) are logged as such and keep their old values.

use crate::config::{Config, SecretValue};
use crate::state::{AppState, Runtime};
use crate::token::Secrets;
use sha2::{Digest, Sha256};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// How often files are checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

use crate::logging::SetLogLevel;

/// Reload machinery.
pub struct Reloader {
    /// The config file.
    pub path: PathBuf,
    /// Shared state.
    pub state: AppState,
    /// Log level control.
    pub set_log_level: SetLogLevel,
}

/// A fingerprint of the watched files' contents (path + content hash).
fn fingerprint(paths: &[PathBuf]) -> Vec<(PathBuf, Option<[u8; 32]>)> {
    paths
        .iter()
        .map(|p| {
            // Kubernetes swaps secret/config volumes through symlinks; reading the content
            // (not the mtime) sees every swap.
            let hash = std::fs::read(p).ok().map(|b| Sha256::digest(&b).into());
            (p.clone(), hash)
        })
        .collect()
}

impl Reloader {
    /// Runs until cancelled: SIGHUP and file polling both trigger a reload.
    pub async fn run(self, cancel: CancellationToken) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("cannot listen for SIGHUP ({e}); only file changes trigger reloads");
                None
            }
        };
        let watched = |state: &AppState| state.runtime.load().config.watched_files.clone();
        let mut last = {
            let paths = watched(&self.state);
            tokio::task::spawn_blocking(move || fingerprint(&paths))
                .await
                .unwrap_or_default()
        };
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let by_signal = tokio::select! {
                _ = cancel.cancelled() => return,
                _ = async { match hup.as_mut() { Some(h) => { h.recv().await; } None => std::future::pending().await } } => true,
                _ = tick.tick() => false,
            };
            let paths = watched(&self.state);
            let now = tokio::task::spawn_blocking(move || fingerprint(&paths))
                .await
                .unwrap_or_default();
            if !by_signal && now == last {
                continue;
            }
            let reason = if by_signal { "SIGHUP" } else { "file change" };
            self.reload(reason).await;
            // The new config may watch different secret files.
            let paths = watched(&self.state);
            last = tokio::task::spawn_blocking(move || fingerprint(&paths))
                .await
                .unwrap_or_default();
        }
    }

    /// Loads and applies the config once.
    pub async fn reload(&self, reason: &str) {
        let path = self.path.clone();
        let loaded = tokio::task::spawn_blocking(move || Config::load(&path)).await;
        let config = match loaded {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                self.state.metrics.reload(false);
                error!("reload ({reason}) failed, keeping the previous configuration: {e}");
                return;
            }
            Err(e) => {
                self.state.metrics.reload(false);
                error!("reload ({reason}) failed: {e}");
                return;
            }
        };
        let old = self.state.runtime.load_full();
        for note in restart_only_changes(&old.config, &config) {
            warn!("reload: {note} changed; this takes effect only after a restart");
        }
        if old.config.log_level != config.log_level && crate::logging::rust_log_overrides() {
            warn!("reload: log.level changed, but RUST_LOG is set and takes precedence over it");
        }
        if let Err(e) = (self.set_log_level)(&config.log_level) {
            self.state.metrics.reload(false);
            error!("reload ({reason}) failed, keeping the previous configuration: log.level: {e}");
            return;
        }
        resize(
            &self.state.connection_slots,
            old.limits.max_connections,
            config.limits.max_connections,
        );
        let (before, after) = (old.config.access.describe(), config.access.describe());
        if before != after {
            info!(access = %after, "reload: who may use the proxy changed");
        }
        crate::access::warn_if_open(&config);
        let runtime = apply(&old, config);
        self.state.runtime.store(Arc::new(runtime));
        self.state.metrics.reload(true);
        info!("configuration reloaded ({reason})");
    }
}

/// Builds the new snapshot: new policies and limits for accounts that still exist (matched by
/// name), rotated secrets pushed to their token handles; the old account set is kept.
fn apply(old: &Runtime, mut config: Config) -> Runtime {
    let mut accounts = Vec::with_capacity(old.accounts.len());
    for previous in &old.config.accounts {
        match config.accounts.iter().find(|a| a.name == previous.name) {
            Some(new) => {
                let mut merged = previous.clone();
                merged.policy = new.policy.clone();
                merged.allow = new.allow.clone();
                merged.credits = new.credits.clone();
                merged.cache = new.cache;
                merged.organizations = new.organizations.clone();
                merged.org_limits = new.org_limits.clone();
                if secret_changed(&previous.client_secret, &new.client_secret)
                    || previous.refresh_token.as_ref().map(SecretValue::expose)
                        != new.refresh_token.as_ref().map(SecretValue::expose)
                {
                    info!(account = %new.name, "credentials changed: the next token request uses them");
                    merged.client_secret = new.client_secret.clone();
                    merged.refresh_token = new.refresh_token.clone();
                    if let Some(handle) = old.account(&new.name).map(|a| a.token.clone()) {
                        handle.set_secrets(Secrets {
                            client_secret: new.client_secret.value.clone(),
                            refresh_token: new.refresh_token.as_ref().map(|s| s.value.clone()),
                        });
                    }
                }
                accounts.push(merged);
            }
            None => {
                warn!(account = %previous.name, "reload: the account was removed from the config; it keeps serving until a restart");
                accounts.push(previous.clone());
            }
        }
    }
    // Client policies were built per account of the new file; the snapshot keeps the old account
    // set and order, so re-index them by name (none for an account the new file removed).
    for client in &mut config.access.clients {
        client.policies = accounts
            .iter()
            .map(|a| {
                config
                    .accounts
                    .iter()
                    .position(|n| n.name == a.name)
                    .and_then(|i| client.policies.get(i).cloned().flatten())
            })
            .collect();
    }
    config.accounts = accounts;
    config.listen = old.config.listen.clone();
    config.admin_listen = old.config.admin_listen.clone();
    config.log_format = old.config.log_format;
    let tokens: Vec<_> = old.accounts.iter().map(|a| a.token.clone()).collect();
    let clients: Vec<_> = old.accounts.iter().map(|a| a.upstream.clone()).collect();
    let services = old.services();
    services.apply(&config);
    AppState::build_runtime(
        Arc::new(config),
        &tokens,
        &clients,
        Some(old),
        old.workers,
        services,
    )
}

/// Grows or shrinks the connection cap in place. Shrinking below the number of connections open
/// right now takes the missing slots as those connections close: a queued acquire collects and
/// forgets them (the semaphore is fair, so new connections are shed until it is paid).
fn resize(slots: &Arc<tokio::sync::Semaphore>, old: u32, new: u32) {
    if new > old {
        slots.add_permits((new - old) as usize);
    } else if new < old {
        let wanted = old - new;
        let forgotten = slots.forget_permits(wanted as usize) as u32;
        if forgotten < wanted {
            let slots = slots.clone();
            // Ends as soon as enough connections close; nothing to cancel at shutdown.
            tokio::spawn(async move {
                if let Ok(owed) = slots.acquire_many_owned(wanted - forgotten).await {
                    owed.forget();
                }
            });
        }
    }
}

fn secret_changed(a: &SecretValue, b: &SecretValue) -> bool {
    a.expose() != b.expose()
}

/// Settings that differ but only apply after a restart.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<String> {
    let mut notes = Vec::new();
    if old.listen != new.listen {
        notes.push("listen".to_string());
    }
    if old.admin_listen != new.admin_listen {
        notes.push("admin.listen".to_string());
    }
    if old.allow_remote_clients != new.allow_remote_clients {
        notes.push("allow_remote_clients".to_string());
    }
    if old.log_format != new.log_format {
        notes.push("log.format".to_string());
    }
    if old.workers != new.workers {
        notes.push("workers".to_string());
    }
    for n in &new.accounts {
        match old.account(&n.name) {
            None => notes.push(format!("a new account `{}`", n.name)),
            Some(o) => {
                if o.listen != n.listen {
                    notes.push(format!("{}.listen", n.key));
                }
                if o.client_id != n.client_id
                    || o.data_center != n.data_center
                    || o.accounts_url != n.accounts_url
                    || o.api_url != n.api_url
                {
                    notes.push(format!("{} client or data center", n.key));
                }
                if o.token.store != n.token.store || o.token.mint_budget != n.token.mint_budget {
                    notes.push(format!("{} token settings", n.key));
                }
                if o.ca_file != n.ca_file {
                    notes.push(format!("{}.ca_file", n.key));
                }
            }
        }
    }
    notes
}
