//! When to ask Zoho next: [`plan`] decides from the current token, rejections, back-off and
//! credentials, and [`backoff`] spaces out transient failures.
//!
//! Owns the refresh timing rules (with their table tests). Must not: do I/O, read the clock
//! (now is an input), or touch the refresher's state: it is pure.

use crate::token::refresh_margin;
use std::time::{Duration, Instant};

const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// What the refresher should do next. Pure, table-tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// Ask Zoho now.
    MintNow,
    /// Sleep until then (or until kicked).
    WaitUntil(Instant),
    /// Nothing to do until kicked (no credentials yet).
    WaitForKick,
}

/// Inputs of [`plan`].
#[derive(Debug, Clone, Copy)]
pub struct PlanInput {
    /// Now.
    pub now: Instant,
    /// Current token: (expires_at, lifetime, generation).
    pub token: Option<(Instant, Duration, u64)>,
    /// Highest generation reported rejected.
    pub invalidated: u64,
    /// No attempt before then (backoff, throttle, budget).
    pub not_before: Option<Instant>,
    /// Whether there is anything to mint with.
    pub can_mint: bool,
}

/// Decides the next step.
pub fn plan(input: PlanInput) -> Plan {
    if !input.can_mint {
        return Plan::WaitForKick;
    }
    let due = match input.token {
        None => input.now,
        Some((_, _, generation)) if generation <= input.invalidated => input.now,
        Some((expires_at, lifetime, _)) => expires_at
            .checked_sub(refresh_margin(lifetime))
            .unwrap_or(input.now),
    };
    let at = input.not_before.map_or(due, |nb| nb.max(due));
    if at <= input.now {
        Plan::MintNow
    } else {
        Plan::WaitUntil(at)
    }
}

/// Delay after the `failures`-th consecutive transient failure: capped exponential, jittered
/// to 50–100 % so replicas spread out.
pub fn backoff(failures: u32, jitter: f64) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << failures.saturating_sub(1).min(16));
    exp.min(BACKOFF_CAP)
        .mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_follows_the_table() {
        let now = Instant::now();
        let s = Duration::from_secs;
        let hour = s(3600);
        let cases: &[(&str, PlanInput, Plan)] = &[
            (
                "no token → mint",
                PlanInput {
                    now,
                    token: None,
                    invalidated: 0,
                    not_before: None,
                    can_mint: true,
                },
                Plan::MintNow,
            ),
            (
                "no credentials → idle",
                PlanInput {
                    now,
                    token: None,
                    invalidated: 0,
                    not_before: None,
                    can_mint: false,
                },
                Plan::WaitForKick,
            ),
            (
                "fresh token → wait until margin",
                PlanInput {
                    now,
                    token: Some((now + hour, hour, 1)),
                    invalidated: 0,
                    not_before: None,
                    can_mint: true,
                },
                Plan::WaitUntil(now + hour - s(300)),
            ),
            (
                "inside margin → mint",
                PlanInput {
                    now,
                    token: Some((now + s(100), hour, 1)),
                    invalidated: 0,
                    not_before: None,
                    can_mint: true,
                },
                Plan::MintNow,
            ),
            (
                "rejected token → mint",
                PlanInput {
                    now,
                    token: Some((now + hour, hour, 3)),
                    invalidated: 3,
                    not_before: None,
                    can_mint: true,
                },
                Plan::MintNow,
            ),
            (
                "rejected older generation → keep",
                PlanInput {
                    now,
                    token: Some((now + hour, hour, 4)),
                    invalidated: 3,
                    not_before: None,
                    can_mint: true,
                },
                Plan::WaitUntil(now + hour - s(300)),
            ),
            (
                "backoff holds a due mint",
                PlanInput {
                    now,
                    token: None,
                    invalidated: 0,
                    not_before: Some(now + s(8)),
                    can_mint: true,
                },
                Plan::WaitUntil(now + s(8)),
            ),
            (
                "short lifetime refreshes at 90%",
                PlanInput {
                    now,
                    token: Some((now + s(5), s(5), 1)),
                    invalidated: 0,
                    not_before: None,
                    can_mint: true,
                },
                Plan::WaitUntil(now + Duration::from_millis(4500)),
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(plan(*input), *expected, "{name}");
        }
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        assert_eq!(backoff(1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(2, 1.0), Duration::from_secs(2));
        assert_eq!(backoff(4, 1.0), Duration::from_secs(8));
        assert_eq!(
            backoff(30, 1.0),
            Duration::from_secs(300),
            "capped at 5 minutes"
        );
        assert_eq!(
            backoff(4, 0.0),
            Duration::from_secs(4),
            "jitter halves at most"
        );
    }
}
