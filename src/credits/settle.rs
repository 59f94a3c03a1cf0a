//! Settling a charge: Zoho's response head arrives (record `X-API-CREDITS-REMAINING`, start or
//! end the 429 back-off), or the request never reaches Zoho and the charge is given back.
//! Must not: decide admission (`mod.rs` does).

use super::ledger::{self, Ledger};
use super::{backoff, lock, AccountCredits, Backend, Credits, ANONYMOUS, REMAINING_HEADER};
use crate::policy::Cost;
use http::{HeaderMap, StatusCode};
use std::sync::Arc;
use tracing::warn;

/// What one admitted request was charged; settled when Zoho's response head arrives, refunded
/// when dropped unsettled (the request never reached Zoho: slot queue timeout, connect failure).
pub struct Charge {
    /// The price.
    pub cost: Cost,
    pub(super) account: Arc<AccountCredits>,
    pub(super) client: Option<Arc<str>>,
    pub(super) now_ms: u64,
    pub(super) settled: bool,
    pub(super) credits: Arc<Credits>,
}

impl Charge {
    /// Marks the request as having reached Zoho: no refund.
    fn settle(&mut self) {
        self.settled = true;
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if !self.settled && self.cost.credits > 0 {
            self.credits.refund(self);
        }
    }
}

impl Credits {
    /// Gives back an unsettled charge (the request never reached Zoho).
    fn refund(&self, charge: &Charge) {
        let credits = charge.cost.credits;
        {
            let mut state = lock(&charge.account.state);
            let ledger = std::mem::take(&mut state.ledger);
            state.ledger = subtract(ledger, charge.now_ms, credits, (self.clock)());
            state.dirty = true;
        }
        let client = charge.client.as_deref().unwrap_or(ANONYMOUS);
        if charge.client.is_some() {
            let mut clients = lock(&self.clients);
            if let Some(l) = clients.remove(client) {
                clients.insert(
                    client.to_string(),
                    subtract(l, charge.now_ms, credits, (self.clock)()),
                );
            }
        }
        self.metrics.refunded(&charge.account.name, client, credits);
        if let Backend::Redis(shared) = &charge.account.backend {
            let shared = shared.clone();
            let (at, has_client) = (charge.now_ms, charge.client.clone());
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                handle.spawn(async move {
                    if let Err(e) = shared.refund(at, credits, has_client.as_deref()).await {
                        warn!("credits: cannot refund {credits} credits in Redis: {e}");
                    }
                });
            }
        }
        self.dirty.notify_one();
    }

    /// Zoho's response head arrived: the charge is settled; `X-API-CREDITS-REMAINING` is
    /// recorded; a 429 starts (or extends) the account's back-off, anything else ends it. In
    /// fleet mode a 429's back-off is announced through Redis before the 429 is passed on, so
    /// no other replica forwards in between.
    pub async fn on_response(&self, charge: &mut Charge, status: StatusCode, headers: &HeaderMap) {
        charge.settle();
        let acc = &charge.account;
        let now = (self.clock)();
        let remaining = headers
            .get(REMAINING_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let delay = {
            let mut state = lock(&acc.state);
            if let Some(r) = remaining {
                state.zoho_remaining = Some((r, now));
                self.metrics.zoho_remaining(&acc.name, r);
            }
            if status != StatusCode::TOO_MANY_REQUESTS {
                state.backoff.succeeded();
                return;
            }
            let retry_after = headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| backoff::parse_retry_after(v.as_bytes()));
            let delay = state.backoff.throttled(now, retry_after);
            let consecutive = state.backoff.consecutive();
            warn!(account = %acc.name, backoff_ms = delay.as_millis() as u64, consecutive, "Zoho answered 429: forwarding nothing for this account during the back-off");
            delay
        };
        self.metrics.zoho_throttled(&acc.name);
        if let Backend::Redis(shared) = &acc.backend {
            // Boxed, as in `admit`: only a 429 in fleet mode gets here.
            if let Err(e) = Box::pin(shared.throttle(now, delay)).await {
                warn!(account = %acc.name, "credits: cannot share Zoho's back-off through Redis: {e}");
            }
        }
    }
}

/// Removes `credits` from the bucket of `at_ms` (refunds).
fn subtract(ledger: Ledger, at_ms: u64, credits: u64, now_ms: u64) -> Ledger {
    let minute = ledger::minute_of(at_ms);
    let buckets = ledger
        .buckets()
        .map(|(m, c)| {
            if m == minute {
                (m, c.saturating_sub(credits))
            } else {
                (m, c)
            }
        })
        .filter(|(_, c)| *c > 0)
        .collect();
    Ledger::from_buckets(buckets, now_ms)
}
