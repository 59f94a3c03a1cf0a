//! The fake CRM's API credits and concurrency: charges each request with the proxy's own cost
//! table, sends `X-API-CREDITS-REMAINING` once half the daily credits are used (as Zoho does,
//! CREDITS.md §0), and answers `429 TOO_MANY_REQUESTS` when the credits are spent, while a
//! throttle set by a test runs, or over a concurrency limit. Counts requests in flight (all and
//! heavy) and remembers the peaks, for tests of the proxy's caps.
//!
//! Controlled through [`FakeControl`](crate::sandbox::FakeControl) (`set_credit_limit`,
//! `throttle_for`, `set_concurrency_limit`, `max_in_flight`, ...). Must not: change anything
//! when no limit is set (the default), so other tests see the plain fake.

use std::sync::Arc;
use std::time::Duration;

use http::header::{HeaderValue, RETRY_AFTER};
use http::request::Parts;
use serde_json::json;
use tokio::time::Instant;

use super::records::error_body;
use super::Captured;
use crate::policy::{cost, BodyView, CostOverrides};
use crate::sandbox::control::{lock, Shared};
use crate::sandbox::http::{json, Resp};

/// The credit and concurrency state of the fake.
#[derive(Debug, Default)]
pub(crate) struct FakeCredits {
    /// Credits per day (`None`: unlimited, no header).
    pub daily_limit: Option<u64>,
    /// Credits used (the fake's window never rolls).
    pub used: u64,
    /// `X-API-CREDITS-REMAINING` to send on every answer, whatever is used.
    pub remaining_header: Option<u64>,
    /// Every request is answered 429 until then.
    pub throttle_until: Option<Instant>,
    /// The `Retry-After` sent with those 429s.
    pub throttle_retry_after: Option<u64>,
    /// Concurrent requests allowed (`None`: unlimited).
    pub concurrency_limit: Option<usize>,
    pub in_flight: usize,
    pub heavy_in_flight: usize,
    pub max_in_flight: usize,
    pub max_heavy_in_flight: usize,
    /// Requests answered 429 by these rules.
    pub throttled: u64,
}

/// Leaves the in-flight counts when the answer is ready.
pub(crate) struct InFlight {
    shared: Arc<Shared>,
    heavy: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut c = lock(&self.shared.credits);
        c.in_flight = c.in_flight.saturating_sub(1);
        if self.heavy {
            c.heavy_in_flight = c.heavy_in_flight.saturating_sub(1);
        }
        drop(c);
        self.shared.notify();
    }
}

fn too_many(retry_after: Option<u64>, message: &str) -> Resp {
    let mut resp = json(429, &error_body("TOO_MANY_REQUESTS", message, json!({})));
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// Counts the request in flight and charges it; `Err` is the 429 to answer instead. The proxy's
/// `own` calls count in flight but are neither charged nor refused: the fake's credit limit,
/// throttle and concurrency limit are the tests' levers on client traffic.
pub(crate) fn enter(
    shared: &Arc<Shared>,
    parts: &Parts,
    captured: &Captured,
    own: bool,
) -> Result<(InFlight, Option<u64>), Box<Resp>> {
    let body = captured
        .content
        .as_deref()
        .filter(|b| !b.is_empty())
        .map_or(BodyView::None, BodyView::Whole);
    let price = cost::cost(
        parts.method.as_str(),
        parts.uri.path(),
        parts.uri.query(),
        body,
        &CostOverrides::default(),
    );
    let heavy = price.heavy > 0;
    let mut c = lock(&shared.credits);
    c.in_flight += 1;
    c.max_in_flight = c.max_in_flight.max(c.in_flight);
    if heavy {
        c.heavy_in_flight += 1;
        c.max_heavy_in_flight = c.max_heavy_in_flight.max(c.heavy_in_flight);
    }
    let guard = InFlight {
        shared: shared.clone(),
        heavy,
    };
    let refusal = (|| {
        if own {
            return None;
        }
        if let Some(until) = c.throttle_until {
            if Instant::now() < until {
                return Some((
                    c.throttle_retry_after,
                    "Too many requests (throttled by the test)",
                ));
            }
            c.throttle_until = None;
        }
        if c.concurrency_limit.is_some_and(|l| c.in_flight > l) {
            return Some((
                None,
                "The concurrency limit of the user for the app was exceeded",
            ));
        }
        if let Some(limit) = c.daily_limit {
            if c.used + price.credits > limit {
                return Some((None, "The API credits for the day are exhausted"));
            }
            c.used += price.credits;
        }
        None
    })();
    if let Some((retry, message)) = refusal {
        c.throttled += 1;
        // The guard takes the same lock when dropped: release it first.
        drop(c);
        drop(guard);
        return Err(Box::new(too_many(retry, message)));
    }
    let remaining = c.remaining_header.or_else(|| {
        c.daily_limit
            .filter(|l| c.used * 2 >= *l)
            .map(|l| l.saturating_sub(c.used))
    });
    drop(c);
    shared.notify();
    Ok((guard, remaining))
}

/// Adds `X-API-CREDITS-REMAINING` to an answer.
pub(crate) fn stamp(resp: &mut Resp, remaining: Option<u64>) {
    if let Some(r) = remaining {
        resp.headers_mut()
            .insert("x-api-credits-remaining", HeaderValue::from(r));
    }
}

/// Seconds as a `Duration` deadline from now.
pub(crate) fn deadline(d: Duration) -> Instant {
    Instant::now() + d
}
