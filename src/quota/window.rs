//! The 60-second request window of one product's organization, and its rolling 24-hour call
//! count. Pure: times are Unix ms passed by the caller, so tests drive the clock. The fleet's Lua
//! script (`redis.rs`) runs the same arithmetic on a sorted set; [`daily_retry_after_ms`] serves
//! the buckets it returns.
//!
//! The window is exact and first come, first served: it keeps the admission time of each request
//! of the last 60 s, and reservations (requests waiting for a slot) at the time they may go. A
//! request may go when fewer than `limit` times lie in the 60 s before it: at once, or 60 s after
//! the time `limit` places back from the newest.

use std::collections::VecDeque;

/// The window's length: Zoho Books and Inventory count requests per organization per minute.
pub const WINDOW_MS: u64 = 60_000;
/// One minute in ms (the daily count's bucket).
pub const MINUTE_MS: u64 = 60_000;
/// Minutes in the daily window.
pub const DAY_MINUTES: u64 = 24 * 60;
/// Reservations one organization may hold beyond its limit (requests waiting for the window):
/// bounds the memory a burst can take whatever `queue_timeout` is.
pub const MAX_QUEUED: usize = 1_000;

/// What the window said to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// Recorded: the request may go at `at_ms` (now, or later: wait until then).
    At { at_ms: u64 },
    /// Full for longer than the request may wait; nothing recorded. `wait_ms`: until a slot frees.
    Full { wait_ms: u64 },
}

/// Admission times (Unix ms) of the last 60 s and the reservations after them, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Window {
    times: VecDeque<u64>,
}

impl Window {
    /// Drops the times that have left the window at `now_ms`.
    pub fn prune(&mut self, now_ms: u64) {
        while self.times.front().is_some_and(|&t| t + WINDOW_MS <= now_ms) {
            self.times.pop_front();
        }
    }

    /// Requests counted at `now_ms`: those of the last 60 s and those waiting.
    pub fn used(&mut self, now_ms: u64) -> u64 {
        self.prune(now_ms);
        self.times.len() as u64
    }

    /// Requests waiting at `now_ms` (reservations after it).
    pub fn queued(&self, now_ms: u64) -> usize {
        self.times.iter().rev().take_while(|&&t| t > now_ms).count()
    }

    /// When a request arriving at `now_ms` may go under `limit`, without recording it.
    pub fn earliest(&mut self, now_ms: u64, limit: u32) -> u64 {
        self.prune(now_ms);
        let limit = limit as usize;
        let len = self.times.len();
        if len < limit {
            return now_ms;
        }
        if limit == 0 {
            // Nothing is ever allowed: a whole window, every time.
            return now_ms + WINDOW_MS;
        }
        // FIFO: never before the newest reservation (a lowered limit could say earlier).
        let free = self.times[len - limit] + WINDOW_MS;
        free.max(self.times.back().copied().unwrap_or(now_ms))
            .max(now_ms)
    }

    /// Reserves the request arriving at `now_ms` if it may go within `max_wait_ms`.
    pub fn reserve(&mut self, now_ms: u64, limit: u32, max_wait_ms: u64) -> Slot {
        let at_ms = self.earliest(now_ms, limit);
        let wait_ms = at_ms - now_ms;
        if limit == 0 || wait_ms > max_wait_ms || (wait_ms > 0 && self.queued(now_ms) >= MAX_QUEUED)
        {
            return Slot::Full {
                wait_ms: wait_ms.max(1),
            };
        }
        self.times.push_back(at_ms);
        Slot::At { at_ms }
    }

    /// Records a time the fleet's window admitted (kept in order; the local view for when Redis
    /// fails). Bounded as the window is: beyond the limit and the queue, the oldest goes.
    pub fn record(&mut self, at_ms: u64, now_ms: u64, limit: u32) {
        self.prune(now_ms);
        let pos = self.times.partition_point(|&t| t <= at_ms);
        self.times.insert(pos, at_ms);
        while self.times.len() > limit as usize + MAX_QUEUED {
            self.times.pop_front();
        }
    }
}

/// The minute a Unix-ms time falls in.
pub fn minute_of(now_ms: u64) -> u64 {
    now_ms / MINUTE_MS
}

/// The first minute still inside the daily window at `now_ms`.
pub fn day_start(now_ms: u64) -> u64 {
    (minute_of(now_ms) + 1).saturating_sub(DAY_MINUTES)
}

/// Calls per minute over the last 24 hours (at most 1,440 buckets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DailyCount {
    /// `(minute, calls)`, oldest first, minutes strictly increasing.
    buckets: VecDeque<(u64, u64)>,
    total: u64,
}

impl DailyCount {
    fn prune(&mut self, now_ms: u64) {
        let start = day_start(now_ms);
        while let Some(&(minute, calls)) = self.buckets.front() {
            if minute >= start {
                break;
            }
            self.total -= calls;
            self.buckets.pop_front();
        }
    }

    /// Calls in the 24 hours ending at `now_ms`.
    pub fn used(&mut self, now_ms: u64) -> u64 {
        self.prune(now_ms);
        self.total
    }

    /// Whether one more call fits under `limit` at `now_ms`; if not, the ms until one does.
    pub fn check(&mut self, now_ms: u64, limit: u64) -> Result<(), u64> {
        self.prune(now_ms);
        if self.total < limit {
            return Ok(());
        }
        Err(daily_retry_after_ms(
            self.buckets.iter().copied(),
            now_ms,
            limit,
        ))
    }

    /// Records one call at `now_ms`.
    pub fn add(&mut self, now_ms: u64) {
        self.prune(now_ms);
        let minute = minute_of(now_ms);
        match self.buckets.back_mut() {
            // A clock step backwards folds into the newest bucket rather than break the order.
            Some((m, c)) if *m >= minute => *c += 1,
            _ => self.buckets.push_back((minute, 1)),
        }
        self.total += 1;
    }
}

/// How long until one more call fits under `limit`, given the buckets in the window (oldest
/// first). A bucket of minute `m` comes back at the end of minute `m + 1440`; a limit of 0 never
/// fits (a whole day).
pub fn daily_retry_after_ms(
    buckets: impl Iterator<Item = (u64, u64)> + Clone,
    now_ms: u64,
    limit: u64,
) -> u64 {
    let day = DAY_MINUTES * MINUTE_MS;
    if limit == 0 {
        return day;
    }
    let mut used: u64 = buckets.clone().map(|(_, c)| c).sum();
    for (minute, calls) in buckets {
        used = used.saturating_sub(calls);
        if used < limit {
            let back_at = (minute + DAY_MINUTES) * MINUTE_MS;
            return back_at.saturating_sub(now_ms).max(1);
        }
    }
    day
}

/// Whole seconds for a `Retry-After` header (rounded up, at least 1).
pub fn retry_after_secs(ms: u64) -> u64 {
    ms.div_ceil(1000).max(1)
}
