//! The process around a subcommand: loading the config (exit 2 naming the key), the control
//! runtime, the shutdown signals, and the exit code of a run.

use crate::app::StartError;
use crate::config::{Config, LogFormat};
use crate::logging;
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn load(path: &Path) -> Result<Config, ExitCode> {
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
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ExitCode> {
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
pub(crate) async fn shutdown_signal(format: LogFormat) {
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

pub(crate) fn exit_for(result: Result<(), StartError>, format: LogFormat) -> ExitCode {
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
