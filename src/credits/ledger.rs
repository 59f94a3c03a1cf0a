//! The rolling 24-hour ledger: credits spent per minute, for one account or one client.
//!
//! Zoho's window is rolling: credits spent in a minute come back 24 hours later (CREDITS.md §2).
//! A ledger keeps one bucket per minute that saw traffic, at most 1,440. Pure: the caller passes
//! the time (Unix ms), so tests drive the clock. The same arithmetic serves the buckets a Redis
//! script returns in fleet mode ([`retry_after_ms`]).

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// Minutes in the window.
pub const WINDOW_MINUTES: u64 = 24 * 60;
/// One minute in ms.
pub const MINUTE_MS: u64 = 60_000;

/// The minute a Unix-ms time falls in.
pub fn minute_of(now_ms: u64) -> u64 {
    now_ms / MINUTE_MS
}

/// The first minute still inside the window at `now_ms`.
pub fn window_start(now_ms: u64) -> u64 {
    (minute_of(now_ms) + 1).saturating_sub(WINDOW_MINUTES)
}

/// Credits spent per minute over the last 24 hours.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// `(minute, credits)`, oldest first, minutes strictly increasing.
    buckets: VecDeque<(u64, u64)>,
    #[serde(skip)]
    total: u64,
}

impl Ledger {
    /// A ledger from stored buckets (any order; out-of-window ones are dropped at `now_ms`).
    pub fn from_buckets(mut buckets: Vec<(u64, u64)>, now_ms: u64) -> Ledger {
        buckets.sort_unstable();
        let mut ledger = Ledger::default();
        for (minute, credits) in buckets {
            ledger.add_at_minute(minute, credits);
        }
        ledger.prune(now_ms);
        ledger
    }

    /// The buckets, oldest first (for persistence).
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.buckets.iter().copied()
    }

    /// Drops the minutes that have left the window.
    pub fn prune(&mut self, now_ms: u64) {
        let start = window_start(now_ms);
        while let Some(&(minute, credits)) = self.buckets.front() {
            if minute >= start {
                break;
            }
            self.total -= credits;
            self.buckets.pop_front();
        }
    }

    /// Credits spent in the window ending at `now_ms`.
    pub fn used(&mut self, now_ms: u64) -> u64 {
        self.prune(now_ms);
        self.total
    }

    /// Records `credits` spent at `now_ms`.
    pub fn add(&mut self, now_ms: u64, credits: u64) {
        self.prune(now_ms);
        self.add_at_minute(minute_of(now_ms), credits);
    }

    fn add_at_minute(&mut self, minute: u64, credits: u64) {
        if credits == 0 {
            return;
        }
        match self.buckets.back_mut() {
            Some((m, c)) if *m == minute => *c += credits,
            // A clock step backwards: fold into the newest bucket rather than break the order.
            Some((m, c)) if *m > minute => *c += credits,
            _ => self.buckets.push_back((minute, credits)),
        }
        self.total += credits;
    }

    /// Whether `cost` more fits under `limit` at `now_ms`; if not, how long until enough rolls
    /// off (ms).
    pub fn check(&mut self, now_ms: u64, cost: u64, limit: u64) -> Result<(), u64> {
        self.prune(now_ms);
        if self.total + cost <= limit {
            return Ok(());
        }
        Err(retry_after_ms(
            self.buckets.iter().copied(),
            now_ms,
            cost,
            limit,
        ))
    }
}

/// How long until `cost` fits under `limit`, given the buckets in the window (oldest first).
/// A bucket of minute `m` comes back at the end of minute `m + 1440`. A cost above the limit
/// never fits: a whole window is returned.
pub fn retry_after_ms(
    buckets: impl Iterator<Item = (u64, u64)> + Clone,
    now_ms: u64,
    cost: u64,
    limit: u64,
) -> u64 {
    let window = WINDOW_MINUTES * MINUTE_MS;
    if cost > limit {
        return window;
    }
    let mut used: u64 = buckets.clone().map(|(_, c)| c).sum();
    for (minute, credits) in buckets {
        used -= credits;
        if used + cost <= limit {
            let back_at = (minute + WINDOW_MINUTES) * MINUTE_MS;
            return back_at.saturating_sub(now_ms).max(1);
        }
    }
    window
}

/// Whole seconds for a `Retry-After` header (rounded up, at least 1).
pub fn retry_after_secs(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}

/// Reserves a bulk-read download at `now_ms` and says how long to wait for it: at most
/// [`DOWNLOADS_PER_MINUTE`](super::DOWNLOADS_PER_MINUTE) start in any minute; the 11th waits for the oldest to age out.
pub fn download_wait(starts: &mut VecDeque<u64>, now_ms: u64) -> Duration {
    while starts.front().is_some_and(|&t| t + 60_000 <= now_ms) {
        starts.pop_front();
    }
    let start = if starts.len() < super::DOWNLOADS_PER_MINUTE {
        now_ms
    } else {
        // The slot after the one DOWNLOADS_PER_MINUTE places back frees a minute after it.
        let k = starts.len() - super::DOWNLOADS_PER_MINUTE;
        (starts[k] + 60_000).max(now_ms)
    };
    starts.push_back(start);
    Duration::from_millis(start - now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600_000;

    #[test]
    fn credits_come_back_24_hours_after_their_minute() {
        let t0 = 1_000 * MINUTE_MS + 5_000;
        let mut l = Ledger::default();
        l.add(t0, 3);
        l.add(t0 + MINUTE_MS, 2);
        assert_eq!(l.used(t0 + MINUTE_MS), 5);
        assert_eq!(l.used(t0 + 24 * H - 10_000), 5, "still inside the window");
        // The end of minute 1000 + 1440: the first bucket has left.
        assert_eq!(l.used((1000 + WINDOW_MINUTES) * MINUTE_MS), 2);
        assert_eq!(l.used((1001 + WINDOW_MINUTES) * MINUTE_MS), 0);
    }

    #[test]
    fn a_refusal_says_when_enough_rolls_off() {
        let t0 = 2_000 * MINUTE_MS;
        let mut l = Ledger::default();
        l.add(t0, 4);
        l.add(t0 + 10 * MINUTE_MS, 1);
        assert_eq!(l.check(t0 + 20 * MINUTE_MS, 0, 5), Ok(()));
        // One more needs the first bucket (4) back: at the end of minute 2000 + 1440.
        let wait = l
            .check(t0 + 20 * MINUTE_MS, 1, 5)
            .expect_err("over the limit");
        assert_eq!(
            wait,
            (2000 + WINDOW_MINUTES) * MINUTE_MS - (t0 + 20 * MINUTE_MS)
        );
        assert_eq!(retry_after_secs(wait), wait / 1000);
        assert_eq!(
            l.check(t0, 6, 5).expect_err("never fits"),
            WINDOW_MINUTES * MINUTE_MS,
            "a cost above the limit waits a whole window"
        );
    }

    #[test]
    fn stored_buckets_are_restored_and_pruned() {
        let now = 10_000 * MINUTE_MS;
        let l = Ledger::from_buckets(vec![(9_999, 2), (1, 100), (9_000, 3)], now);
        assert_eq!(
            l.buckets().collect::<Vec<_>>(),
            vec![(9_000, 3), (9_999, 2)]
        );
        let mut l = l;
        assert_eq!(l.used(now), 5);
    }

    #[test]
    fn retry_after_is_at_least_one_second() {
        assert_eq!(retry_after_secs(0), 1);
        assert_eq!(retry_after_secs(1_001), 2);
    }
}
