//! `log:` (format and level/filter) and `shutdown:` (grace and delay after SIGTERM).
//!
//! Must not: install the subscriber or handle signals; the level is only parsed here to reject a
//! bad filter before start.

use super::Validator;
use crate::config::raw::{RawLog, RawShutdown};
use crate::config::{ConfigError, LogFormat};
use std::time::Duration;

impl Validator<'_> {
    /// `log.format` (`text` or `json`) and `log.level` (default `info`, any filter directive).
    pub(super) fn log(&self, log: RawLog) -> Result<(LogFormat, String), ConfigError> {
        let log_format = match self.string("log.format", &log.format)?.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(self.err(
                    "log.format",
                    format!("unknown format `{other}`; use text or json"),
                ))
            }
        };
        let log_level = self
            .string("log.level", &log.level)?
            .unwrap_or_else(|| "info".to_string());
        tracing_subscriber::EnvFilter::try_new(&log_level).map_err(|e| {
            self.err(
                "log.level",
                format!("`{log_level}` is not a level or filter: {e}"),
            )
        })?;
        Ok((log_format, log_level))
    }

    /// `shutdown.grace` (default 20 s) and `shutdown.delay` (default none).
    pub(super) fn shutdown(
        &self,
        shutdown: RawShutdown,
    ) -> Result<(Duration, Duration), ConfigError> {
        let shutdown_grace =
            self.duration("shutdown.grace", &shutdown.grace, Duration::from_secs(20))?;
        let shutdown_delay = self.duration("shutdown.delay", &shutdown.delay, Duration::ZERO)?;
        Ok((shutdown_grace, shutdown_delay))
    }
}
