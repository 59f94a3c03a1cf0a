//! Admitting one request: through the fleet's Redis (one script checks and reserves), or in this
//! replica's own state (no Redis, or Redis failing); and counting what was admitted or refused.

use super::redis;
use super::state::{account_label, lock, org, OrgState};
use super::window::{retry_after_secs, Slot};
use super::{Quotas, Refusal};
use crate::util::FastMap;
use std::sync::Arc;
use tracing::warn;

/// One request's question to the gate.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ask<'a> {
    pub account: &'a str,
    pub product: &'static str,
    pub organization: &'a str,
    /// Unix ms when it arrived.
    pub now: u64,
    /// The account's (requests per minute, daily calls) for the product.
    pub limits: (Option<u32>, Option<u64>),
    /// The longest it may wait for its turn.
    pub max_wait_ms: u64,
}

impl Quotas {
    /// Checks and reserves through the fleet's Redis; on failure, in this replica's own state.
    pub(super) async fn admit_fleet(
        &self,
        fleet: &redis::RedisQuota,
        ask: Ask<'_>,
    ) -> Result<u64, Refusal> {
        let Ask {
            account,
            product,
            organization,
            now,
            limits,
            max_wait_ms,
        } = ask;
        let (limit, daily_limit) = limits;
        {
            // Zoho's back-off as this replica knows it: no Redis round trip needed.
            let mut state = lock(&self.state);
            let (o, accounts) = org(&mut state, &self.metrics, product, organization, now);
            if let Some(wait) = o.backoff.remaining(now) {
                let refusal = Refusal::ZohoThrottled {
                    product,
                    organization: organization.to_string(),
                    retry_after_secs: retry_after_secs(wait.as_millis() as u64),
                };
                return Err(self.refuse(accounts, o, account, product, refusal));
            }
        }
        let question = redis::Ask {
            product,
            organization,
            now_ms: now,
            limit,
            max_wait_ms,
            daily_limit,
        };
        // Boxed: Redis's futures are large, and inline they would be copied with every
        // request's future in local mode too. A Redis round trip dwarfs the allocation.
        let mut adopt = None;
        let refusal = match Box::pin(fleet.admit(question)).await {
            redis::Admission::Admitted {
                at_ms,
                window_used,
                daily_used,
            } => {
                let mut state = lock(&self.state);
                let (o, accounts) = org(&mut state, &self.metrics, product, organization, now);
                o.limits = limits;
                // This replica's own view, for when Redis fails.
                if let Some(l) = limit {
                    o.window.record(at_ms, now, l);
                }
                o.daily.add(now);
                // Replies to concurrent requests may come back out of order (several
                // connections): within a second, the largest count is the newest.
                o.fleet = Some(match o.fleet {
                    Some((at, w, d)) if at + 1_000 > now => {
                        (now.max(at), w.max(window_used), d.max(daily_used))
                    }
                    _ => (now, window_used, daily_used),
                });
                let shown = o.fleet.map_or(window_used, |(_, w, _)| w);
                self.admitted(accounts, o, account, product, shown);
                return Ok(at_ms);
            }
            redis::Admission::RateLimited { wait_ms } => Refusal::RateLimited {
                product,
                organization: organization.to_string(),
                limit: limit.unwrap_or(0),
                retry_after_secs: retry_after_secs(wait_ms),
            },
            redis::Admission::DailyExhausted { retry_after_ms } => Refusal::DailyCallsExhausted {
                product,
                organization: organization.to_string(),
                limit: daily_limit.unwrap_or(0),
                retry_after_secs: retry_after_secs(retry_after_ms),
            },
            redis::Admission::Throttled { remaining_ms } => {
                adopt = Some(now + remaining_ms);
                Refusal::ZohoThrottled {
                    product,
                    organization: organization.to_string(),
                    retry_after_secs: retry_after_secs(remaining_ms),
                }
            }
            redis::Admission::Skipped => return self.admit_local(ask),
            redis::Admission::Unavailable { error, first } => {
                // Counting must not stop traffic: this replica's own view for a few seconds,
                // logged once (Redis is not tried again before then).
                if first {
                    warn!(account = %account, "quota: the fleet's window is unavailable, counting locally for {} s: {error}", crate::store::redis::hot::RETRY_AFTER_FAILURE_MS / 1000);
                }
                return self.admit_local(ask);
            }
        };
        let mut state = lock(&self.state);
        let (o, accounts) = org(&mut state, &self.metrics, product, organization, now);
        o.limits = limits;
        if let Some(until_ms) = adopt {
            o.backoff.adopt(until_ms);
        }
        Err(self.refuse(accounts, o, account, product, refusal))
    }

    /// Checks and reserves in this replica's own state; returns when the request may go.
    pub(super) fn admit_local(&self, ask: Ask<'_>) -> Result<u64, Refusal> {
        let Ask {
            account,
            product,
            organization,
            now,
            limits,
            max_wait_ms,
        } = ask;
        let mut state = lock(&self.state);
        let (o, accounts) = org(&mut state, &self.metrics, product, organization, now);
        o.limits = limits;
        let (limit, daily_limit) = limits;
        let refusal = if let Some(wait) = o.backoff.remaining(now) {
            Refusal::ZohoThrottled {
                product,
                organization: organization.to_string(),
                retry_after_secs: retry_after_secs(wait.as_millis() as u64),
            }
        } else if let Some(Err(wait_ms)) = daily_limit.map(|l| o.daily.check(now, l)) {
            Refusal::DailyCallsExhausted {
                product,
                organization: organization.to_string(),
                limit: daily_limit.unwrap_or(0),
                retry_after_secs: retry_after_secs(wait_ms),
            }
        } else {
            match limit.map(|l| o.window.reserve(now, l, max_wait_ms)) {
                Some(Slot::Full { wait_ms }) => Refusal::RateLimited {
                    product,
                    organization: organization.to_string(),
                    limit: limit.unwrap_or(0),
                    retry_after_secs: retry_after_secs(wait_ms),
                },
                slot => {
                    o.daily.add(now);
                    let used = o.window.used(now);
                    self.admitted(accounts, o, account, product, used);
                    return Ok(match slot {
                        Some(Slot::At { at_ms }) => at_ms,
                        _ => now,
                    });
                }
            }
        };
        Err(self.refuse(accounts, o, account, product, refusal))
    }

    /// Counts an admitted request in the metrics.
    pub(super) fn admitted(
        &self,
        accounts: &mut FastMap<String, Arc<str>>,
        o: &mut OrgState,
        account: &str,
        product: &'static str,
        window_used: u64,
    ) {
        if let Some(g) = &o.gauge {
            g.set(i64::try_from(window_used).unwrap_or(i64::MAX));
        }
        match o.counters.iter().find(|(a, _)| **a == *account) {
            Some((_, c)) => {
                c.inc();
            }
            None => {
                let name = account_label(accounts, account);
                let c = self.metrics.requests(&name, product, &o.label);
                c.inc();
                o.counters.push((name, c));
            }
        }
    }

    /// Counts a refusal and hands it back.
    pub(super) fn refuse(
        &self,
        accounts: &mut FastMap<String, Arc<str>>,
        o: &mut OrgState,
        account: &str,
        product: &'static str,
        refusal: Refusal,
    ) -> Refusal {
        let i = match refusal {
            Refusal::RateLimited { .. } => 0,
            Refusal::DailyCallsExhausted { .. } => 1,
            Refusal::ZohoThrottled { .. } => 2,
        };
        o.refused[i] += 1;
        let name = account_label(accounts, account);
        self.metrics
            .refused(&name, product, &o.label, refusal.reason());
        refusal
    }
}
