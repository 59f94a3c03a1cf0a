//! `limits:`: body sizes, timeouts and connection/concurrency caps (live-reloadable).
//!
//! Must not: enforce them (that is `server`, `proxy` and `upstream`); defaults live in
//! [`Limits::default`].

use super::Validator;
use crate::config::raw::{RawConcurrency, RawLimits};
use crate::config::{ConfigError, Limits, UpstreamConcurrency};

impl Validator<'_> {
    /// `limits:`: sizes, timeouts (none zero) and concurrency caps, defaults from
    /// [`Limits::default`].
    pub(super) fn limits(&self, raw: RawLimits) -> Result<Limits, ConfigError> {
        let d = Limits::default();
        let limits = Limits {
            max_body: self.size("limits.max_body", &raw.max_body, d.max_body)?,
            replay_body: self.size("limits.replay_body", &raw.replay_body, d.replay_body)?,
            request_timeout: self.duration(
                "limits.request_timeout",
                &raw.request_timeout,
                d.request_timeout,
            )?,
            connect_timeout: self.duration(
                "limits.connect_timeout",
                &raw.connect_timeout,
                d.connect_timeout,
            )?,
            header_timeout: self.duration(
                "limits.header_timeout",
                &raw.header_timeout,
                d.header_timeout,
            )?,
            body_idle_timeout: self.duration(
                "limits.body_idle_timeout",
                &raw.body_idle_timeout,
                d.body_idle_timeout,
            )?,
            max_connections: raw.max_connections.unwrap_or(d.max_connections),
            upstream_concurrency: match raw.upstream_concurrency {
                None => d.upstream_concurrency,
                Some(RawConcurrency::Number(n)) => UpstreamConcurrency::Fixed(n),
                Some(RawConcurrency::Word(w)) if w.eq_ignore_ascii_case("auto") => {
                    UpstreamConcurrency::Auto
                }
                Some(RawConcurrency::Word(_)) => {
                    return Err(self.err(
                        "limits.upstream_concurrency",
                        "must be `auto` or a number of requests (0 = unlimited)",
                    ))
                }
            },
            upstream_replicas: raw.upstream_replicas.unwrap_or(d.upstream_replicas),
            upstream_queue_timeout: self.duration(
                "limits.upstream_queue_timeout",
                &raw.upstream_queue_timeout,
                d.upstream_queue_timeout,
            )?,
            token_wait: self.duration("limits.token_wait", &raw.token_wait, d.token_wait)?,
            heavy_concurrency: raw.heavy_concurrency.unwrap_or(d.heavy_concurrency),
            per_organization: d.per_organization.merged(&self.org_limits(
                "limits",
                raw.requests_per_minute.as_ref(),
                raw.daily_calls.as_ref(),
            )?),
        };
        for (key, value) in [
            ("limits.request_timeout", limits.request_timeout),
            ("limits.connect_timeout", limits.connect_timeout),
            ("limits.header_timeout", limits.header_timeout),
            ("limits.body_idle_timeout", limits.body_idle_timeout),
        ] {
            if value.is_zero() {
                return Err(self.err(key, "must be greater than zero"));
            }
        }
        if limits.max_connections == 0 {
            return Err(self.err("limits.max_connections", "must be at least 1"));
        }
        if limits.upstream_replicas == 0 {
            return Err(self.err("limits.upstream_replicas", "must be at least 1"));
        }
        if limits.replay_body > limits.max_body {
            return Err(self.err("limits.replay_body", "must not exceed limits.max_body"));
        }
        Ok(limits)
    }
}
