//! The wiring: builds the proxy from a `Config` ([`App::build`]: worker threads, one token
//! handle, refresher and upstream client per account, every listener bound, the credit ledgers
//! and the first runtime snapshot), then runs it ([`App::run`]: refreshers, accept loops, the
//! admin listener, reload, the proxy's own calls (`discover`), the `listening` announcements, and the drain on shutdown).
//!
//! The composition root: the only module that names every service. Holds no logic of its own.

use crate::admin::Admin;
use crate::config::{Config, LogFormat};
use crate::logging::SetLogLevel;
use crate::metrics::Metrics;
use crate::reload::Reloader;
use crate::rt::workers::Workers;
use crate::server::{ConnSettings, Listener, Plane, Serving};
use crate::state::{AppState, ListenerRole, Services};
use crate::token::{Refresher, Secrets, TokenHandle};
use crate::upstream::Upstream;
use crate::{access, cache, config, credits, logging, proxy, token};
use arc_swap::ArcSwap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

/// A start-up failure: bad config (exit 2) or a runtime problem such as a port in use (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Invalid configuration.
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    /// Anything else.
    #[error("{0}")]
    Runtime(String),
}

/// Runs the proxy until `shutdown` resolves, then drains within `shutdown.grace`.
///
/// Prints one `listening <role> <address>` line per listener on stdout once bound (tools and tests
/// read the real port from it when a port of 0 was configured); with `log.format: json` the line
/// is a JSON event with `role` and `address` fields ([`logging::announcement`]).
pub async fn run(
    config: Config,
    config_path: Option<PathBuf>,
    set_log_level: SetLogLevel,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let app = App::build(config).await?;
    app.run(config_path, set_log_level, shutdown).await
}

/// The listeners, bound before anything is served so that a port in use fails the start.
struct Listeners {
    main: Listener,
    admin: Listener,
    accounts: Vec<(String, Listener)>,
}

impl Listeners {
    async fn bind(config: &Config) -> Result<Listeners, StartError> {
        let main = Listener::bind(&config.listen)
            .await
            .map_err(StartError::Runtime)?;
        let admin = Listener::bind(&config.admin_listen)
            .await
            .map_err(StartError::Runtime)?;
        let mut accounts = Vec::new();
        for account in &config.accounts {
            if let Some(addr) = &account.listen {
                let l = Listener::bind(addr).await.map_err(StartError::Runtime)?;
                accounts.push((account.name.clone(), l));
            }
        }
        Ok(Listeners {
            main,
            admin,
            accounts,
        })
    }

    /// `(role, address)` of each listener, in the order they are announced.
    fn roles(&self) -> Vec<(String, config::ListenAddr)> {
        let mut roles = vec![
            ("proxy".to_string(), self.main.local_addr()),
            ("admin".to_string(), self.admin.local_addr()),
        ];
        roles.extend(
            self.accounts
                .iter()
                .map(|(n, l)| (format!("account:{n}"), l.local_addr())),
        );
        roles
    }
}

/// The proxy, built and bound, not yet serving.
pub struct App {
    started: Instant,
    config: Arc<Config>,
    state: AppState,
    workers: Arc<Workers>,
    refreshers: Vec<Refresher>,
    listeners: Listeners,
    tracker: TaskTracker,
    /// Stops the background tasks (refreshers, credit writer, reloader, discovery).
    background: CancellationToken,
}

impl App {
    /// Builds everything `config` asks for; nothing is served yet.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let started = Instant::now();
        let config = Arc::new(config);
        let mut metrics = Metrics::new();
        let credit_metrics = credits::CreditMetrics::register(metrics.registry_mut());
        let token_metrics = token::TokenMetrics::register(metrics.registry_mut());
        let caches = Arc::new(cache::Caches::new(cache::CacheMetrics::register(
            metrics.registry_mut(),
        )));
        let tracker = TaskTracker::new();
        let background = CancellationToken::new();
        let workers = Arc::new(
            Workers::start(config.workers, logging::writer::defer_on_this_thread).map_err(|e| {
                StartError::Runtime(format!("cannot start the worker threads: {e}"))
            })?,
        );
        let mut tokens = Vec::new();
        let mut clients = Vec::new();
        let mut refreshers = Vec::new();
        for account in &config.accounts {
            let secrets = Secrets {
                client_secret: account.client_secret.value.clone(),
                refresh_token: account.refresh_token.as_ref().map(|s| s.value.clone()),
            };
            let api = token::ApiBase::from_url(&account.default_api_url())
                .map(|b| b.origin())
                .unwrap_or_default();
            let (handle, commands) =
                TokenHandle::new(&account.name, secrets, account.token.mint_budget, api);
            let refresher =
                Refresher::new(account, handle.clone(), commands, token_metrics.clone())
                    .map_err(StartError::Runtime)?;
            let client = Upstream::build(
                account.ca_file.as_deref(),
                config.limits.connect_timeout,
                workers.count(),
                account.upstream_protocol,
            )
            .map_err(StartError::Runtime)?;
            tokens.push(handle);
            clients.push(client);
            refreshers.push(refresher);
        }
        let listeners = Listeners::bind(&config).await?;

        let shared_stores: credits::SharedStores = config
            .accounts
            .iter()
            .zip(&refreshers)
            .filter_map(|(a, r)| Some((a.name.clone(), r.shared_store()?.client())))
            .collect();
        let credits = Arc::new(credits::Credits::new(
            &config,
            credits::CreditSettings::default(),
            &shared_stores,
            credit_metrics,
        ));
        let quotas = Arc::new(crate::quota::Quotas::new(
            crate::quota::QuotaSettings::default(),
            &shared_stores,
            metrics.registry_mut(),
        ));
        let metrics = Arc::new(metrics);
        credits.restore().await;
        tracker.spawn(credits.clone().run_writer(background.clone()));
        let services = Services {
            credits,
            caches,
            quotas,
        };
        services.apply(&config);
        let runtime = AppState::build_runtime(
            config.clone(),
            &tokens,
            &clients,
            None,
            workers.count(),
            services,
        );
        let state = AppState {
            runtime: Arc::new(ArcSwap::from_pointee(runtime)),
            metrics,
            admin_listen: Arc::new(listeners.admin.local_addr()),
            connection_slots: Arc::new(Semaphore::new(config.limits.max_connections as usize)),
            observed: Arc::default(),
            token_metrics,
        };
        Ok(App {
            started,
            config,
            state,
            workers,
            refreshers,
            listeners,
            tracker,
            background,
        })
    }

    /// Serves until `shutdown` resolves, then drains within `shutdown.grace`. With `config_path`
    /// the config is reloaded on SIGHUP and when the file changes.
    pub async fn run(
        self,
        config_path: Option<PathBuf>,
        set_log_level: SetLogLevel,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), StartError> {
        let App {
            started,
            config,
            state,
            workers,
            refreshers,
            listeners,
            tracker,
            background,
        } = self;
        // Restore stored tokens first: with a valid stored token the proxy is ready at once.
        for mut refresher in refreshers {
            refresher.restore().await;
            tracker.spawn(refresher.run(background.clone()));
        }
        let serving = Serving {
            settings: conn_settings(&state),
            metrics: state.metrics.clone(),
            stop: CancellationToken::new(),
            drain: CancellationToken::new(),
            tracker: tracker.clone(),
        };
        let announce = listeners.roles();
        let proxy_service = |role: ListenerRole| {
            let state = state.clone();
            move |transport, deadlines, req| {
                // Boxed: the request's future is 6.3 KB, and hyper moves the service future into
                // its connection's slot by value; a pointer is cheaper to move than the future
                // (issue 17's fifteenth round: -0.7 us CPU a request at 64 connections).
                Box::pin(proxy::handle(
                    state.clone(),
                    role.clone(),
                    transport,
                    deadlines,
                    req,
                ))
            }
        };
        let data_plane = |name| Plane {
            name,
            workers: Some(workers.clone()),
            slots: Some(state.connection_slots.clone()),
        };
        serving.spawn(
            listeners.main,
            data_plane("proxy"),
            proxy_service(ListenerRole::Main),
        );
        for (name, listener) in listeners.accounts {
            let role = ListenerRole::Account(name.as_str().into());
            serving.spawn(listener, data_plane("account"), proxy_service(role));
        }
        let shutting_down = CancellationToken::new();
        let admin = Admin::new(state.clone(), started, shutting_down.clone());
        let admin_plane = Plane {
            name: "admin",
            workers: None,
            slots: None,
        };
        // The admin listener has no upstream deadline of its own.
        serving.spawn(listeners.admin, admin_plane, move |transport, _, req| {
            crate::admin::service(admin.clone(), transport, req)
        });
        let discovery = crate::discover::Discovery {
            state: state.clone(),
        };
        tracker.spawn(discovery.run(background.clone()));
        if let Some(path) = config_path {
            let reloader = Reloader {
                path,
                state: state.clone(),
                set_log_level,
            };
            tracker.spawn(reloader.run(background.clone()));
        }
        announce_started(&config, &announce, started);

        shutdown.await;
        shutting_down.cancel();
        drain(&config, &serving, &background).await;
        Ok(())
    }
}

/// The connection settings in force, read from the current snapshot as each connection is
/// accepted.
fn conn_settings(state: &AppState) -> Arc<dyn Fn() -> ConnSettings + Send + Sync> {
    let state = state.clone();
    Arc::new(move || {
        let runtime = state.runtime.load();
        ConnSettings {
            header_timeout: runtime.limits.header_timeout,
            write_timeout: runtime.limits.body_idle_timeout,
            allowed_uids: runtime.config.access.unix_allowed_uids.clone(),
        }
    })
}

/// Prints the `listening` lines on stdout and logs the start.
fn announce_started(config: &Config, announce: &[(String, config::ListenAddr)], started: Instant) {
    let mut out = std::io::stdout().lock();
    for (role, addr) in announce {
        let line = logging::announcement(config.log_format, role, &addr.to_string());
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
    drop(out);
    if config.log_format == LogFormat::Text {
        // The JSON announcement on stdout already is this event.
        for (role, addr) in announce {
            info!(role = %role, address = %addr, "listening");
        }
    }
    info!(access = %config.access.describe(), "who may use the proxy");
    access::warn_if_open(config);
    for a in &config.accounts {
        if !a.policy.allows_organization_products() && a.organizations.is_none() {
            continue;
        }
        match &a.organizations {
            Some(ids) => {
                info!(account = %a.name, organizations = %ids.join(","), "Books and Inventory requests may name only these organizations")
            }
            None => {
                info!(account = %a.name, "organizations: none set, so Books and Inventory requests may name any organization the token can reach (set `organizations:` to restrict them)")
            }
        }
    }
    info!(
        accounts = config.accounts.len(),
        startup_ms = started.elapsed().as_millis() as u64,
        version = env!("CARGO_PKG_VERSION"),
        "zoho-auth-proxy started"
    );
}

/// The shutdown: `shutdown.delay` still accepting, then no new connections, in-flight requests
/// drained within `shutdown.grace`.
async fn drain(config: &Config, serving: &Serving, background: &CancellationToken) {
    let grace = config.shutdown_grace;
    let delay = config.shutdown_delay;
    if !delay.is_zero() {
        info!(
            delay_ms = delay.as_millis() as u64,
            "shutdown requested: still accepting for shutdown.delay"
        );
        tokio::time::sleep(delay).await;
    }
    info!(
        grace_ms = grace.as_millis() as u64,
        "shutting down: no new connections, draining in-flight requests"
    );
    serving.stop.cancel();
    serving.drain.cancel();
    background.cancel();
    serving.tracker.close();
    if tokio::time::timeout(grace, serving.tracker.wait())
        .await
        .is_err()
    {
        warn!("shutdown.grace elapsed with requests still in flight; closing them");
    }
    info!("stopped");
}
