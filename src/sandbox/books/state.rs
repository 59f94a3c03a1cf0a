//! The Books/Inventory fake's levers and counters: the organizations the token may reach, the
//! per-organization per-minute limit, the requests that reached each organization and the queue
//! of forced `401 code 57` answers.
//!
//! Owns: [`BooksState`] (pure: every time-dependent method takes `now`). Must not: speak HTTP or
//! hold records (that is `store.rs`).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::FinanceProduct;

/// The window of the per-organization limit.
pub(crate) const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The organizations a fresh fake knows: (organization_id, name).
pub(crate) const DEFAULT_ORGS: &[(&str, &str)] = &[("60001", "Acme"), ("60002", "Globex")];

/// Levers and counters of the Books and Inventory fake.
#[derive(Debug)]
pub(crate) struct BooksState {
    /// (organization_id, name), in listing order; the first is the default org.
    pub orgs: Vec<(String, String)>,
    /// Requests allowed per (product, organization) in [`RATE_WINDOW`] (`None`: unlimited).
    pub rate_limit: Option<usize>,
    /// Arrival times of the admitted requests of the current window, per (product, org).
    windows: HashMap<(FinanceProduct, String), VecDeque<Instant>>,
    /// Every request that named an organization, per (product, org), whatever its answer.
    arrivals: HashMap<(FinanceProduct, String), usize>,
    /// How many of the next client requests answer `401 code 57` whatever their token.
    pub fail_code57: usize,
}

impl Default for BooksState {
    fn default() -> BooksState {
        BooksState {
            orgs: DEFAULT_ORGS
                .iter()
                .map(|(id, name)| ((*id).to_owned(), (*name).to_owned()))
                .collect(),
            rate_limit: None,
            windows: HashMap::new(),
            arrivals: HashMap::new(),
            fail_code57: 0,
        }
    }
}

impl BooksState {
    /// Whether `org` is one of the configured organizations.
    pub(crate) fn knows(&self, org: &str) -> bool {
        self.orgs.iter().any(|(id, _)| id == org)
    }

    /// The configured organization `org`: (index in the listing, name).
    pub(crate) fn org(&self, org: &str) -> Option<(usize, &str)> {
        self.orgs
            .iter()
            .enumerate()
            .find(|(_, (id, _))| id == org)
            .map(|(i, (_, name))| (i, name.as_str()))
    }

    /// Counts a request that reached the fake for (`product`, `org`).
    pub(crate) fn arrived(&mut self, product: FinanceProduct, org: &str) {
        *self.arrivals.entry((product, org.to_owned())).or_default() += 1;
    }

    /// Requests that reached the fake for (`product`, `org`) so far.
    pub(crate) fn arrivals(&self, product: FinanceProduct, org: &str) -> usize {
        self.arrivals
            .get(&(product, org.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// Admits one request for (`product`, `org`) at `now` under the limit; `false` means over
    /// it (the refused request does not count in the window).
    pub(crate) fn admit(&mut self, product: FinanceProduct, org: &str, now: Instant) -> bool {
        let Some(limit) = self.rate_limit else {
            return true;
        };
        let window = self.windows.entry((product, org.to_owned())).or_default();
        while window
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= RATE_WINDOW)
        {
            window.pop_front();
        }
        if window.len() >= limit {
            return false;
        }
        window.push_back(now);
        true
    }

    /// Sets the limit and forgets the windows counted so far.
    pub(crate) fn set_rate_limit(&mut self, limit: Option<usize>) {
        self.rate_limit = limit;
        self.windows.clear();
    }

    /// Takes one forced `401 code 57` from the queue, if any is left.
    pub(crate) fn take_code57(&mut self) -> bool {
        if self.fail_code57 == 0 {
            return false;
        }
        self.fail_code57 -= 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOOKS: FinanceProduct = FinanceProduct::Books;
    const INVENTORY: FinanceProduct = FinanceProduct::Inventory;

    #[test]
    fn without_a_limit_everything_is_admitted() {
        let mut s = BooksState::default();
        let now = Instant::now();
        assert!((0..1000).all(|_| s.admit(BOOKS, "60001", now)), "unlimited");
    }

    #[test]
    fn the_limit_counts_per_product_and_org_in_a_sliding_minute() {
        let mut s = BooksState::default();
        s.set_rate_limit(Some(2));
        let t0 = Instant::now();
        assert!(s.admit(BOOKS, "60001", t0), "first");
        assert!(
            s.admit(BOOKS, "60001", t0 + Duration::from_secs(10)),
            "second"
        );
        assert!(
            !s.admit(BOOKS, "60001", t0 + Duration::from_secs(20)),
            "third in the minute is refused"
        );
        assert!(
            s.admit(BOOKS, "60002", t0),
            "another org has its own window"
        );
        assert!(s.admit(INVENTORY, "60001", t0), "another product too");
        assert!(
            s.admit(BOOKS, "60001", t0 + Duration::from_secs(60)),
            "the first left the window after 60 s"
        );
        assert!(
            !s.admit(BOOKS, "60001", t0 + Duration::from_secs(61)),
            "the second is still in it, with the new one"
        );
    }

    #[test]
    fn a_zero_limit_refuses_everything() {
        let mut s = BooksState::default();
        s.set_rate_limit(Some(0));
        assert!(!s.admit(BOOKS, "60001", Instant::now()));
    }

    #[test]
    fn arrivals_and_the_code57_queue_count() {
        let mut s = BooksState::default();
        s.arrived(BOOKS, "60001");
        s.arrived(BOOKS, "60001");
        s.arrived(INVENTORY, "60001");
        assert_eq!(s.arrivals(BOOKS, "60001"), 2);
        assert_eq!(s.arrivals(INVENTORY, "60001"), 1);
        assert_eq!(s.arrivals(BOOKS, "60002"), 0);
        s.fail_code57 = 2;
        let taken: Vec<bool> = (0..3).map(|_| s.take_code57()).collect();
        assert_eq!(taken, [true, true, false], "exactly two forced failures");
    }

    #[test]
    fn the_default_orgs_are_known() {
        let s = BooksState::default();
        assert!(s.knows("60001") && s.knows("60002") && !s.knows("1"));
        assert_eq!(s.org("60002"), Some((1, "Globex")));
    }
}
