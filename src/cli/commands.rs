//! One function per subcommand: each loads what it needs, does its one thing and returns the
//! exit code.

use super::demo;
use super::process::{exit_for, load, runtime, shutdown_signal};
use crate::config::LogFormat;
use crate::logging;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `run` (the default): the proxy until SIGTERM or SIGINT, reloading on SIGHUP.
pub fn run(config_path: &Path) -> ExitCode {
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    // SIGHUP means "reload". Its default action ends the process, so take it over before
    // anything else: one arriving before the reloader listens is then simply ignored.
    let hangup = rt
        .block_on(async { tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) });
    if let Err(e) = hangup {
        eprintln!("zoho-auth-proxy: cannot take over SIGHUP: {e}");
    }
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let format = config.log_format;
    let (set_level, guard) = logging::init(format, &config.log_level);
    let result = rt.block_on(crate::app::run(
        config,
        Some(config_path.to_path_buf()),
        set_level,
        shutdown_signal(format),
    ));
    // Flush the log writer before the final line, so it comes last.
    drop(guard);
    exit_for(result, format)
}

/// `check`: validates the config and prints the effective settings (no secrets).
pub fn check(config_path: &Path) -> ExitCode {
    match load(config_path) {
        Ok(config) => {
            println!("configuration OK: {}", config_path.display());
            println!(
                "{}",
                serde_json::to_string_pretty(&config.describe()).unwrap_or_default()
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `explain`: the scopes a request needs, the allow entry that covers them, the decision and
/// the credit cost.
pub fn explain(
    config_path: &Path,
    method: &str,
    path: &str,
    body: Option<PathBuf>,
    account: Option<&str>,
) -> ExitCode {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let account = match account {
        Some(name) => config.account(name),
        None => config.accounts.first(),
    };
    let Some(account) = account else {
        eprintln!("zoho-auth-proxy: unknown account");
        return ExitCode::from(2);
    };
    let body = match body.map(std::fs::read).transpose() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("zoho-auth-proxy: cannot read the body file: {e}");
            return ExitCode::from(2);
        }
    };
    let (Ok(method), Ok(uri)) = (
        http::Method::from_bytes(method.as_bytes()),
        path.parse::<http::Uri>(),
    ) else {
        eprintln!(
            "zoho-auth-proxy: give a method and a request path, e.g. `explain GET /crm/v8/Leads`"
        );
        return ExitCode::from(2);
    };
    println!("{}", account.policy.explain(&method, &uri, body.as_deref()));
    println!(
        "{}",
        crate::credits::explain(account, &method, &uri, body.as_deref())
    );
    ExitCode::SUCCESS
}

/// `exchange`: trades a self-client grant token for a refresh token, once.
pub fn exchange(config_path: &Path, code: &str, account: Option<&str>) -> ExitCode {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(account) = account.map_or(config.accounts.first(), |n| config.account(n)) else {
        eprintln!("zoho-auth-proxy: unknown account");
        return ExitCode::from(2);
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    report(rt.block_on(crate::token::refresher::exchange_once(account, code)))
}

/// `authorize`: a server-based account's browser authorization on a headless machine.
pub fn authorize(config_path: &Path, account: &str) -> ExitCode {
    let config = match load(config_path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (_set_level, _guard) = logging::init(LogFormat::Text, &config.log_level);
    report(rt.block_on(crate::admin::authorize::authorize_cli(&config, account)))
}

/// Prints a one-off command's message (exit 0) or its error (exit 1).
fn report(result: Result<String, String>) -> ExitCode {
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("zoho-auth-proxy: {e}");
            ExitCode::from(1)
        }
    }
}

/// `demo`: the proxy in front of the built-in fake Zoho.
pub fn demo(listen: String, admin: String) -> ExitCode {
    let rt = match runtime() {
        Ok(r) => r,
        Err(code) => return code,
    };
    let (set_level, _guard) = logging::init(LogFormat::Text, "info");
    let options = demo::DemoOptions { listen, admin };
    exit_for(
        rt.block_on(demo::run(
            options,
            set_level,
            shutdown_signal(LogFormat::Text),
        )),
        LogFormat::Text,
    )
}
