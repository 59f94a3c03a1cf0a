//! The back-off after Zoho answers `429 TOO_MANY_REQUESTS`: for an account (`credits/`) or for
//! one product's organization (`quota/`).
//!
//! Zoho's Retry-After when it sends one, else 1 s doubling per consecutive 429 up to 60 s; any
//! other answer resets it. Pure: times are Unix ms passed by the caller, so tests inject the
//! clock. Nothing here retries a request: the 429 Zoho sent is passed through, and requests
//! arriving during the back-off are refused locally.

use std::time::Duration;

/// The first back-off without a Retry-After.
pub const FIRST: Duration = Duration::from_secs(1);
/// The longest back-off without a Retry-After.
pub const CAP: Duration = Duration::from_secs(60);
/// The longest Retry-After from Zoho that is honoured (a day: the credit window).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// One back-off state (an account's, or a product's organization's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Backoff {
    /// 429s in a row.
    consecutive: u32,
    /// Nothing is forwarded before this (Unix ms).
    until_ms: Option<u64>,
}

impl Backoff {
    /// Zoho answered 429 at `now_ms`, with `retry_after` if it sent one. Returns the back-off.
    pub fn throttled(&mut self, now_ms: u64, retry_after: Option<Duration>) -> Duration {
        self.consecutive = self.consecutive.saturating_add(1);
        let delay = match retry_after {
            Some(d) => d.min(MAX_RETRY_AFTER),
            None => {
                let shift = (self.consecutive - 1).min(16);
                (FIRST * (1u32 << shift)).min(CAP)
            }
        };
        let until = now_ms + delay.as_millis() as u64;
        // A later 429 never shortens a back-off already announced.
        self.until_ms = Some(self.until_ms.map_or(until, |u| u.max(until)));
        delay
    }

    /// Zoho answered something else: the next 429 starts from 1 s again.
    pub fn succeeded(&mut self) {
        self.consecutive = 0;
        self.until_ms = None;
    }

    /// Adopts a back-off another replica announced (fleet mode).
    pub fn adopt(&mut self, until_ms: u64) {
        self.until_ms = Some(self.until_ms.map_or(until_ms, |u| u.max(until_ms)));
    }

    /// How long requests must still wait at `now_ms` (`None`: forward).
    pub fn remaining(&self, now_ms: u64) -> Option<Duration> {
        let until = self.until_ms?;
        (until > now_ms).then(|| Duration::from_millis(until - now_ms))
    }

    /// The end of the back-off (Unix ms), if one was set.
    pub fn until_ms(&self) -> Option<u64> {
        self.until_ms
    }

    /// 429s in a row.
    pub fn consecutive(&self) -> u32 {
        self.consecutive
    }
}

/// Parses a `Retry-After` header value given in seconds (HTTP dates are not used by Zoho).
pub fn parse_retry_after(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    text.parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_one_second_to_sixty_and_resets_on_success() {
        let mut b = Backoff::default();
        let mut now = 1_000_000;
        let mut got = Vec::new();
        for _ in 0..9 {
            got.push(b.throttled(now, None).as_secs());
            assert!(b.remaining(now).is_some(), "blocked right after a 429");
            now = b.until_ms().expect("set");
            assert_eq!(b.remaining(now), None, "free once the back-off has passed");
        }
        assert_eq!(got, vec![1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.succeeded();
        assert_eq!(
            b.throttled(now, None),
            FIRST,
            "a success resets the doubling"
        );
    }

    #[test]
    fn zohos_retry_after_wins() {
        let mut b = Backoff::default();
        assert_eq!(
            b.throttled(0, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
        assert_eq!(b.remaining(2_500), Some(Duration::from_millis(4_500)));
        assert_eq!(
            b.throttled(0, Some(Duration::from_secs(10 * 24 * 3600))),
            MAX_RETRY_AFTER,
            "capped at a day"
        );
    }

    /// The acceptance scenario: during 3 s of 429s, with one request ready at every moment the
    /// proxy would forward, at most 4 reach Zoho.
    #[test]
    fn three_seconds_of_429s_let_at_most_four_requests_through() {
        let mut b = Backoff::default();
        let (start, end) = (0u64, 3_000u64);
        let mut now = start;
        let mut forwarded = 0;
        while now <= end {
            match b.remaining(now) {
                Some(wait) => now += wait.as_millis() as u64,
                None => {
                    forwarded += 1;
                    b.throttled(now, None);
                }
            }
        }
        assert!(forwarded <= 4, "{forwarded} requests reached Zoho");
    }

    #[test]
    fn adopting_never_shortens() {
        let mut b = Backoff::default();
        b.throttled(0, Some(Duration::from_secs(10)));
        b.adopt(5_000);
        assert_eq!(b.until_ms(), Some(10_000));
        b.adopt(20_000);
        assert_eq!(b.until_ms(), Some(20_000));
    }

    #[test]
    fn retry_after_values() {
        assert_eq!(parse_retry_after(b" 12 "), Some(Duration::from_secs(12)));
        assert_eq!(parse_retry_after(b"Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
