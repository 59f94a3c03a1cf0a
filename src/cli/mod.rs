//! The command line: parses the arguments (clap) and dispatches to one function per subcommand
//! (`commands.rs`); `process.rs` holds what every subcommand shares (config loading with exit
//! code 2, the control runtime, signals). `main` only calls [`main`].

mod commands;
pub mod demo;
mod process;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// A local reverse proxy for the Zoho CRM API: scope allowlist, refreshed OAuth tokens, TLS.
#[derive(Parser, Debug)]
#[command(name = "zoho-auth-proxy", version, about, long_about = None)]
pub struct Cli {
    /// Config file.
    #[arg(
        long,
        global = true,
        env = "ZOHO_PROXY_CONFIG",
        default_value = "proxy.yaml"
    )]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Option<Cmd>,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
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

/// Parses the command line and runs the subcommand it names.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config.as_path();
    match cli.command.unwrap_or(Cmd::Run) {
        Cmd::Run => commands::run(config),
        Cmd::Check => commands::check(config),
        Cmd::Explain {
            method,
            path,
            body,
            account,
        } => commands::explain(config, &method, &path, body, account.as_deref()),
        Cmd::Exchange { code, account } => commands::exchange(config, &code, account.as_deref()),
        Cmd::Authorize { account } => commands::authorize(config, &account),
        Cmd::Demo { listen, admin } => commands::demo(listen, admin),
    }
}
