//! The mint budget: token requests per refresh token over a sliding 10-minute window.
//!
//! Zoho allows 10 access tokens per refresh token per 10 minutes and silently evicts the oldest
//! beyond ~15 live ones. We count every token request we send (Zoho counts requests) in wall-clock
//! milliseconds so the log can be persisted and shared, and keep below a configurable budget.

use std::time::Duration;

/// Zoho's window.
pub const WINDOW: Duration = Duration::from_secs(600);

/// Recent mint times and the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintBudget {
    budget: u32,
    /// Unix milliseconds of recent token requests, oldest first.
    log: Vec<u64>,
}

impl MintBudget {
    /// A budget with an existing log (e.g. from the store).
    pub fn new(budget: u32, mut log: Vec<u64>) -> MintBudget {
        log.sort_unstable();
        MintBudget { budget, log }
    }

    /// The configured number of requests per window.
    pub fn budget(&self) -> u32 {
        self.budget
    }

    /// The recorded times, oldest first.
    pub fn log(&self) -> &[u64] {
        &self.log
    }

    fn prune(&mut self, now_ms: u64) {
        let window = WINDOW.as_millis() as u64;
        // Entries from the future (a clock step back) count until the window passes them.
        self.log.retain(|&t| t.saturating_add(window) > now_ms);
    }

    /// Requests left in the current window.
    pub fn left(&mut self, now_ms: u64) -> u32 {
        self.prune(now_ms);
        self.budget.saturating_sub(self.log.len() as u32)
    }

    /// `None` if a request may be sent now, else how long until a slot frees.
    pub fn wait(&mut self, now_ms: u64) -> Option<Duration> {
        if self.left(now_ms) > 0 {
            return None;
        }
        let window = WINDOW.as_millis() as u64;
        let index = self.log.len() - self.budget as usize;
        let frees_at = self.log[index].saturating_add(window);
        Some(Duration::from_millis(
            frees_at.saturating_sub(now_ms).max(1),
        ))
    }

    /// Records a request sent at `now_ms`.
    pub fn record(&mut self, now_ms: u64) {
        self.prune(now_ms);
        self.log.push(now_ms);
    }

    /// Merges another log (e.g. read back from a shared store), keeping each time once.
    pub fn merge(&mut self, other: &[u64]) {
        for &t in other {
            if !self.log.contains(&t) {
                self.log.push(t);
            }
        }
        self.log.sort_unstable();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    #[test]
    fn budget_is_spent_then_frees_as_the_window_slides() {
        let mut b = MintBudget::new(3, vec![]);
        for t in [0, MIN, 2 * MIN] {
            assert_eq!(b.wait(t), None, "slot free at {t}");
            b.record(t);
        }
        assert_eq!(b.left(2 * MIN), 0, "three of three used");
        assert_eq!(
            b.wait(3 * MIN),
            Some(Duration::from_millis(7 * MIN)),
            "oldest frees at 10 min"
        );
        assert_eq!(
            b.wait(10 * MIN),
            None,
            "a slot is free once the first request left the window"
        );
        assert_eq!(b.left(12 * MIN), 3, "all free after the window");
    }

    #[test]
    fn persisted_log_counts_after_restart() {
        let mut b = MintBudget::new(8, (0..8).map(|i| i * 1000).collect());
        assert!(
            b.wait(9_000).is_some(),
            "a restarted process sees the spent budget"
        );
    }

    #[test]
    fn merge_keeps_each_time_once() {
        let mut b = MintBudget::new(8, vec![1, 5]);
        b.merge(&[5, 3]);
        assert_eq!(b.log(), &[1, 3, 5]);
    }
}
