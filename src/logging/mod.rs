//! Logging: `tracing` to stderr through a batching writer ([`writer`]), text or JSON, with a
//! reloadable filter (`log.level`, overridden by `RUST_LOG`).
//!
//! With `log.format: json` every line the process writes is JSON: the `listening` announcements
//! on stdout ([`announcement`]) and errors printed before or after the subscriber runs
//! ([`error_line`]) use the same shape as the subscriber's events.
//!
//! Dependencies that could print protocol details at trace level (hyper, h2, rustls, reqwest,
//! redis) are capped at `info` unless the filter names them explicitly, so a trace-level run
//! cannot leak header values through them. Our own code never logs secrets at any level.

pub mod line;
pub mod writer;

use crate::config::LogFormat;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer};

/// Changes the log filter (from `log.level`), returning an error text if it is invalid.
pub type SetLogLevel = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

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

/// `RUST_LOG`, when set to something non-blank.
fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

/// Whether `RUST_LOG` is set, so `log.level` (and its reloads) have no effect.
pub fn rust_log_overrides() -> bool {
    rust_log().is_some()
}

/// The effective filter: `RUST_LOG` if set, else `level`, plus the dependency caps.
pub fn filter_directive(level: &str) -> String {
    let base = rust_log().unwrap_or_else(|| level.to_string());
    let mut directive = base.clone();
    for dep in CAPPED {
        if !base.contains(dep) {
            directive.push_str(&format!(",{dep}=info"));
        }
    }
    directive
}

/// The access log's state as the installed filter last decided it: 1 off, 2 on, 0 ask
/// `tracing` (before [`init`], under a test's own subscriber, or when the filter has
/// span-scoped directives, whose answer depends on the current span).
static ACCESS_LOG: AtomicU8 = AtomicU8::new(0);

/// Whether access lines (target `access`, INFO) are logged. Hot path: the filter's walk costs
/// about 370 instructions, so it is asked once at start and after each level change.
pub fn access_enabled() -> bool {
    match ACCESS_LOG.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => tracing::enabled!(target: "access", tracing::Level::INFO),
    }
}

/// Records what the global filter, built from `directive`, decides for access lines.
fn remember_access_log(directive: &str) {
    ACCESS_LOG.store(0, Ordering::Relaxed);
    if !directive.contains('[') {
        let on = tracing::enabled!(target: "access", tracing::Level::INFO);
        ACCESS_LOG.store(if on { 2 } else { 1 }, Ordering::Relaxed);
    }
}

/// Installs the global subscriber; returns the level setter and the writer guard (keep it alive).
pub fn init(format: LogFormat, level: &str) -> (SetLogLevel, writer::FlushGuard) {
    let (writer, guard) = writer::start(std::io::stderr());
    line::install(format, writer.clone());
    let directive = filter_directive(level);
    let (filter, directive) = match EnvFilter::try_new(&directive) {
        Ok(filter) => (filter, directive),
        Err(_) => (EnvFilter::new("info"), "info".to_string()),
    };
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
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok();
    if installed {
        remember_access_log(&directive);
    }
    let set: SetLogLevel = Arc::new(move |level: &str| {
        let directive = filter_directive(level);
        let filter = EnvFilter::try_new(&directive).map_err(|e| e.to_string())?;
        handle.reload(filter).map_err(|e| e.to_string())?;
        if installed {
            remember_access_log(&directive);
        }
        Ok(())
    });
    (set, guard)
}

/// The `listening <role> <address>` announcement on stdout, from which tools and tests learn the
/// bound ports: plain text, or with `log.format: json` a JSON event
/// `{"timestamp":…,"level":"INFO","message":"listening","role":…,"address":…}`.
pub fn announcement(format: LogFormat, role: &str, address: &str) -> String {
    match format {
        LogFormat::Text => format!("listening {role} {address}"),
        LogFormat::Json => json_event(
            "INFO",
            "listening",
            &[("role", role.into()), ("address", address.into())],
        ),
    }
}

/// An error printed outside the subscriber (config errors at start, start-up failures):
/// `zoho-auth-proxy: MESSAGE` as text, or a JSON event with the extra fields (e.g. `key`).
pub fn error_line(
    format: LogFormat,
    message: &str,
    fields: &[(&str, serde_json::Value)],
) -> String {
    match format {
        LogFormat::Text => format!("zoho-auth-proxy: {message}"),
        LogFormat::Json => json_event("ERROR", message, fields),
    }
}

/// The log format a config file asks for, read leniently so that an invalid file still has
/// its errors reported in the format it names (`None`: unreadable, or no `log.format`).
pub fn format_hint(path: &std::path::Path) -> Option<LogFormat> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_yaml::Value = serde_yaml::from_str(&text).ok()?;
    match value.get("log")?.get("format")?.as_str()?.trim() {
        "json" => Some(LogFormat::Json),
        "text" => Some(LogFormat::Text),
        _ => None,
    }
}

fn json_event(level: &str, message: &str, fields: &[(&str, serde_json::Value)]) -> String {
    let mut map = serde_json::Map::new();
    map.insert(
        "timestamp".into(),
        crate::util::clock::rfc3339(crate::util::clock::now_unix_ms()).into(),
    );
    map.insert("level".into(), level.into());
    map.insert("message".into(), message.into());
    for (k, v) in fields {
        map.insert((*k).to_string(), v.clone());
    }
    map.insert("target".into(), "zoho_auth_proxy".into());
    serde_json::Value::Object(map).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_parse_and_text_lines_keep_their_shape() {
        let text = announcement(LogFormat::Text, "admin", "127.0.0.1:9901");
        assert_eq!(
            text, "listening admin 127.0.0.1:9901",
            "plain form unchanged"
        );
        let json = announcement(LogFormat::Json, "account:a", "127.0.0.1:1");
        let v: serde_json::Value = serde_json::from_str(&json).expect("announcement is JSON");
        assert_eq!(v["message"], "listening");
        assert_eq!(v["role"], "account:a");
        assert_eq!(v["address"], "127.0.0.1:1");
        assert_eq!(v["level"], "INFO");
        let err = error_line(LogFormat::Json, "bad \"x\"", &[("key", "listen".into())]);
        let v: serde_json::Value = serde_json::from_str(&err).expect("error is JSON");
        assert_eq!(v["key"], "listen");
        assert_eq!(v["message"], "bad \"x\"");
    }
}
