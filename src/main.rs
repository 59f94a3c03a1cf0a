//! Command line: parses arguments, sets up logging and signals, calls into the library and maps
//! failures to exit codes (2: bad config or usage, 1: runtime failure).

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use zoho_auth_proxy::config::{Config, LogFormat};
use zoho_auth_proxy::{logging, StartError};

// glibc's malloc showed up as about a tenth of the proxy's CPU time per request (many small,
// short-lived allocations across threads); mimalloc's thread-local free lists make them cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A local reverse proxy for the Zoho CRM API: scope allowlist, refreshed OAuth tokens, TLS.
#[derive(Parser, Debug)]
#[command(name = "zoho-auth-proxy", version, about, long_about = None)]
struct Cli {
    /// Config file.
    #[arg(
        long,
        global = true,
        env = "ZOHO_PROXY_CONFIG",
        default_value = "proxy.yaml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Run the proxy (the default).
    Run,
    /// Validate the config and print the effective settings (no secrets).
    Check,
    /// Show the scopes a request needs, the allow entry that covers them, and the decision.
    Explain {
        /// HTTP method, e.g. GET.
        method: String,
        /// Request path (and query), e.g. /crm/v8/Leads.
        path: String,
        /// A request body file (COQL, bulk, composite requests are decided on their body).
        #[arg(long)]
        body: Option<PathBuf>,
        /// Account whose allowlist to use (default: the first).
        #[arg(long)]
        account: Option<String>,
    },
    /// Exchange a self-client grant token once and keep the refresh token in token.store.
    Exchange {
        /// The grant token from the API console (Self Client → Generate Code).
        #[arg(long)]
        code: String,
        /// Account (default: the first).
        #[arg(long)]
        account: Option<String>,
    },
    /// Authorize a server-based account on a headless machine: prints the URL, waits for the callback.
    Authorize {
        /// Account name.
        #[arg(long)]
        account: String,
    },
    /// Run the proxy in front of a built-in fake Zoho and print curl commands to try.
    Demo {
        /// Proxy listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Admin listen address.
        #[arg(long, default_value = "127.0.0.1:9901")]
        admin: String,
    },
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        // In the format the file asks for, when it says (JSON log pipelines read stderr too).
        let format = logging::format_hint(path).unwrap_or(LogFormat::Text);
        let message = format!("config error in {}: {e}", path.display());
        eprintln!(
            "{}",
            logging::error_line(
                format,
                &message,
                &[("key", e.key.clone().into()), ("line", e.line.into())]
            )
        );
        ExitCode::from(2)
    })
}

/// The control runtime: accept loops, admin listener, token refreshers, reload. Requests are served
/// on the data-plane workers (`workers`), so one thread is plenty here.
fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("zap-control")
        .enable_all()
        .build()
        .map_err(|e| {
            eprintln!("zoho-auth-proxy: cannot start the runtime: {e}");
            ExitCode::from(1)
        })
}

/// Resolves on the first SIGTERM or SIGINT; a second one exits at once.
async fn shutdown_signal(format: LogFormat) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("zoho-auth-proxy: cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        eprintln!(
            "{}",
            logging::error_line(format, "second signal, exiting now", &[])
        );
        std::process::exit(1);
    });
}

fn exit_for(result: Result<(), StartError>, format: LogFormat) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(StartError::Config(e)) => {
            let message = format!("config error: {e}");
            let fields = [("key", e.key.clone().into()), ("line", e.line.into())];
            eprintln!("{}", logging::error_line(format, &message, &fields));
            ExitCode::from(2)
        }
        Err(StartError::Runtime(e)) => {
            eprintln!("{}", logging::error_line(format, &e, &[]));
            ExitCode::from(1)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Cmd::Run) {
        Cmd::Run => {
            let rt = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            // SIGHUP means "reload". Its default action ends the process, so take it over before
            // anything else: one arriving before the reloader listens is then simply ignored.
            let hangup = rt.block_on(async {
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            });
            if let Err(e) = hangup {
                eprintln!("zoho-auth-proxy: cannot take over SIGHUP: {e}");
            }
            let config = match load(&cli.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let format = config.log_format;
            let (set_level, guard) = logging::init(format, &config.log_level);
            let result = rt.block_on(zoho_auth_proxy::run(
                config,
                Some(cli.config.clone()),
                set_level,
                shutdown_signal(format),
            ));
            // Flush the log writer before the final line, so it comes last.
            drop(guard);
            exit_for(result, format)
        }
        Cmd::Check => match load(&cli.config) {
            Ok(config) => {
                println!("configuration OK: {}", cli.config.display());
                println!(
                    "{}",
                    serde_json::to_string_pretty(&config.describe()).unwrap_or_default()
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        },
        Cmd::Explain {
            method,
            path,
            body,
            account,
        } => {
            let config = match load(&cli.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let account = match account.as_deref() {
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
                eprintln!("zoho-auth-proxy: give a method and a request path, e.g. `explain GET /crm/v8/Leads`");
                return ExitCode::from(2);
            };
            println!("{}", account.policy.explain(&method, &uri, body.as_deref()));
            println!(
                "{}",
                zoho_auth_proxy::credits::explain(account, &method, &uri, body.as_deref())
            );
            ExitCode::SUCCESS
        }
        Cmd::Exchange { code, account } => {
            let config = match load(&cli.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let Some(account) = account
                .as_deref()
                .map_or(config.accounts.first(), |n| config.account(n))
            else {
                eprintln!("zoho-auth-proxy: unknown account");
                return ExitCode::from(2);
            };
            let rt = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            match rt.block_on(zoho_auth_proxy::token::refresher::exchange_once(
                account, &code,
            )) {
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
        Cmd::Authorize { account } => {
            let config = match load(&cli.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            let rt = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            let (_set_level, _guard) = logging::init(LogFormat::Text, &config.log_level);
            match rt.block_on(zoho_auth_proxy::admin::authorize::authorize_cli(
                &config, &account,
            )) {
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
        Cmd::Demo { listen, admin } => {
            let rt = match runtime() {
                Ok(r) => r,
                Err(code) => return code,
            };
            let (set_level, _guard) = logging::init(LogFormat::Text, "info");
            let options = zoho_auth_proxy::demo::DemoOptions { listen, admin };
            exit_for(
                rt.block_on(zoho_auth_proxy::demo::run(
                    options,
                    set_level,
                    shutdown_signal(LogFormat::Text),
                )),
                LogFormat::Text,
            )
        }
    }
}
