//! zoho-auth-proxy: a local reverse proxy that lets programs without OAuth code call the Zoho CRM
//! API. It decides from each request's method and path which Zoho OAuth scope it needs, refuses
//! what `proxy.yaml` does not allow, attaches a continually refreshed access token and forwards
//! over TLS, streaming bodies.
//!
//! A request flows: [`server`] (listener, connection limits) → [`proxy`] (account, canonical
//! request and [`policy`] decision, token from [`token`], forward, stream back). Around it:
//! [`config`] (proxy.yaml → typed `Config`), [`admin`] (health, readiness, metrics, status, the
//! operator console and explain page, browser authorization via [`admin::oauth`]), [`observed`]
//! (what the traffic needed, recorded by the proxy for the console), [`reload`] (SIGHUP and file
//! changes), [`metrics`], [`logging`], and [`sandbox`], the built-in fake Zoho behind `demo` and
//! the tests.

#![forbid(unsafe_code)]

pub mod access;
pub mod admin;
pub mod config;
pub mod credits;
pub mod demo;
pub mod drain;
pub mod logging;
pub mod metrics;
pub mod observed;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod sandbox;
pub mod server;
pub mod state;
pub mod timer;
pub mod tls;
pub mod token;
pub mod workers;

/// A hash map with a fast non-cryptographic hasher (FxHash), for maps looked up on every request
/// whose keys come from the config, never from a client (account, client and scope names): std's
/// SipHash cost about 200 instructions a lookup, several times a request. A client cannot choose
/// these keys, so hash flooding does not apply.
pub type FastMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;

use crate::admin::Admin;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::reload::{Reloader, SetLogLevel};
use crate::server::{ConnSettings, Listener};
use crate::state::{AppState, ListenerRole};
use crate::token::{Refresher, Secrets, TokenHandle};
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

/// The admin listener's service: the requester checks for the whole listener (so a route added
/// later is covered too), then the admin's handlers; every answer is hardened against being read
/// or framed by a page.
async fn admin_service(
    admin: Admin,
    transport: access::Transport,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<proxy::body::ProxyBody>, std::convert::Infallible> {
    let checked = admin.state.runtime.load().access.check_admin(
        transport,
        req.method(),
        req.uri(),
        req.version(),
        req.headers(),
    );
    let mut response = match checked {
        Ok(()) => admin.handle(req).await?,
        Err(refusal) => {
            admin.state.metrics.refused("admin", refusal.rule);
            tracing::debug!(
                rule = refusal.rule,
                code = refusal.code,
                path = %proxy::log_safe(req.uri().path()),
                "admin request refused by the requester checks"
            );
            proxy::error::ProxyError::Refused(refusal).into_response()
        }
    };
    let headers = response.headers_mut();
    proxy::headers::harden(headers);
    if !headers.contains_key(http::header::CACHE_CONTROL) {
        headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("no-store"),
        );
    }
    Ok(response)
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
    let started = Instant::now();
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let tracker = TaskTracker::new();
    let background = CancellationToken::new();
    let stop_accept = CancellationToken::new();
    let drain = CancellationToken::new();

    let workers = Arc::new(
        workers::Workers::start(config.workers)
            .map_err(|e| StartError::Runtime(format!("cannot start the worker threads: {e}")))?,
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
        let refresher = Refresher::new(account, handle.clone(), commands, metrics.clone())
            .map_err(StartError::Runtime)?;
        let client = proxy::upstream::Upstream::build(
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

    // Bind everything before serving anything, so a port in use fails the start cleanly.
    let main_listener = Listener::bind(&config.listen)
        .await
        .map_err(StartError::Runtime)?;
    let admin_listener = Listener::bind(&config.admin_listen)
        .await
        .map_err(StartError::Runtime)?;
    let mut account_listeners = Vec::new();
    for account in &config.accounts {
        if let Some(addr) = &account.listen {
            let l = Listener::bind(addr).await.map_err(StartError::Runtime)?;
            account_listeners.push((account.name.clone(), l));
        }
    }

    let shared_stores: credits::SharedStores = config
        .accounts
        .iter()
        .zip(&refreshers)
        .filter_map(|(a, r)| Some((a.name.clone(), r.shared_store()?)))
        .collect();
    let credits = Arc::new(credits::Credits::new(
        &config,
        credits::CreditSettings::default(),
        &shared_stores,
        metrics.credits.clone(),
    ));
    credits.restore().await;
    tracker.spawn(credits.clone().run_writer(background.clone()));
    let runtime = AppState::build_runtime(
        config.clone(),
        &tokens,
        &clients,
        None,
        workers.count(),
        credits,
    );
    let state = AppState {
        runtime: Arc::new(ArcSwap::from_pointee(runtime)),
        metrics: metrics.clone(),
        admin_listen: Arc::new(admin_listener.local_addr()),
        connection_slots: Arc::new(Semaphore::new(config.limits.max_connections as usize)),
        observed: Arc::default(),
    };

    // Restore stored tokens first: with a valid stored token the proxy is ready at once.
    for mut refresher in refreshers {
        refresher.restore().await;
        let cancel = background.clone();
        tracker.spawn(refresher.run(cancel));
    }

    let settings_state = state.clone();
    let settings: Arc<dyn Fn() -> ConnSettings + Send + Sync> = Arc::new(move || {
        let runtime = settings_state.runtime.load();
        ConnSettings {
            header_timeout: runtime.limits.header_timeout,
            write_timeout: runtime.limits.body_idle_timeout,
            allowed_uids: runtime.config.access.unix_allowed_uids.clone(),
        }
    });
    let mut announce = vec![
        ("proxy".to_string(), main_listener.local_addr()),
        ("admin".to_string(), admin_listener.local_addr()),
    ];
    announce.extend(
        account_listeners
            .iter()
            .map(|(n, l)| (format!("account:{n}"), l.local_addr())),
    );

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
    tracker.spawn(server::serve(
        main_listener,
        "proxy",
        Some(workers.clone()),
        settings.clone(),
        Some(state.connection_slots.clone()),
        metrics.clone(),
        proxy_service(ListenerRole::Main),
        stop_accept.clone(),
        drain.clone(),
        tracker.clone(),
    ));
    for (name, listener) in account_listeners {
        tracker.spawn(server::serve(
            listener,
            "account",
            Some(workers.clone()),
            settings.clone(),
            Some(state.connection_slots.clone()),
            metrics.clone(),
            proxy_service(ListenerRole::Account(name.as_str().into())),
            stop_accept.clone(),
            drain.clone(),
            tracker.clone(),
        ));
    }
    let shutting_down = CancellationToken::new();
    let admin = Admin::new(state.clone(), started, shutting_down.clone());
    tracker.spawn(server::serve(
        admin_listener,
        "admin",
        None,
        settings.clone(),
        None,
        metrics.clone(),
        // The admin listener has no upstream deadline of its own.
        move |transport, _, req| admin_service(admin.clone(), transport, req),
        stop_accept.clone(),
        drain.clone(),
        tracker.clone(),
    ));
    if let Some(path) = config_path {
        let reloader = Reloader {
            path,
            state: state.clone(),
            set_log_level,
        };
        tracker.spawn(reloader.run(background.clone()));
    }

    let mut out = std::io::stdout().lock();
    for (role, addr) in &announce {
        let line = logging::announcement(config.log_format, role, &addr.to_string());
        let _ = writeln!(out, "{line}");
    }
    let _ = out.flush();
    drop(out);
    if config.log_format == config::LogFormat::Text {
        // The JSON announcement on stdout already is this event.
        for (role, addr) in &announce {
            info!(role = %role, address = %addr, "listening");
        }
    }
    info!(access = %access::Gate::describe(&config), "who may use the proxy");
    access::warn_if_open(&config);
    info!(
        accounts = config.accounts.len(),
        startup_ms = started.elapsed().as_millis() as u64,
        version = env!("CARGO_PKG_VERSION"),
        "zoho-auth-proxy started"
    );

    shutdown.await;
    shutting_down.cancel();
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
    stop_accept.cancel();
    drain.cancel();
    background.cancel();
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!("shutdown.grace elapsed with requests still in flight; closing them");
    }
    info!("stopped");
    Ok(())
}
