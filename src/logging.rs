//! Logging: `tracing` to stderr through a non-blocking writer, text or JSON, with a reloadable
//! filter (`log.level`, overridden by `RUST_LOG`).
//!
//! Dependencies that could print protocol details at trace level (hyper, h2, rustls, reqwest,
//! redis) are capped at `info` unless the filter names them explicitly, so a trace-level run
//! cannot leak header values through them. Our own code never logs secrets at any level.

use crate::config::LogFormat;
use crate::reload::SetLogLevel;
use std::sync::Arc;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer};

const CAPPED: &[&str] = &[
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
    "reqwest",
    "redis",
    "tokio_util",
    "mio",
    "tower",
    "want",
];

/// The effective filter: `RUST_LOG` if set, else `level`, plus the dependency caps.
pub fn filter_directive(level: &str) -> String {
    let base = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| level.to_string());
    let mut directive = base.clone();
    for dep in CAPPED {
        if !base.contains(dep) {
            directive.push_str(&format!(",{dep}=info"));
        }
    }
    directive
}

/// Installs the global subscriber; returns the level setter and the writer guard (keep it alive).
pub fn init(
    format: LogFormat,
    level: &str,
) -> (SetLogLevel, tracing_appender::non_blocking::WorkerGuard) {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let filter =
        EnvFilter::try_new(filter_directive(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(writer)
            .boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init();
    let set: SetLogLevel = Arc::new(move |level: &str| {
        let filter = EnvFilter::try_new(filter_directive(level)).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())
    });
    (set, guard)
}
