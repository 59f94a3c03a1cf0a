//! Zoho's concurrency limits, kept on the way out: the ordinary upstream slots
//! (`limits.upstream_concurrency`, shared out among the workers), the heavy group's slots
//! (`limits.heavy_concurrency`, Zoho's sub-concurrency of 10) and a composite's five edition
//! slots (CREDITS.md §3). Heavy slots are taken first, so a heavy request queued for its group
//! holds no ordinary slot and ordinary calls are never held by the heavy cap.
//!
//! Must not: know about credits or budgets (only [`Cost::slots`] and [`Cost::heavy`]).

use crate::config::Limits;
use crate::policy::Cost;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The slots one forwarded request holds until its response body ends.
///
/// Nearly every request holds one slot: it is kept inline, and only the rest (a heavy call's
/// group slot, a composite's edition slots) go to the heap.
#[derive(Debug, Default)]
pub struct SlotGuard {
    first: Option<OwnedSemaphorePermit>,
    rest: Vec<OwnedSemaphorePermit>,
}

impl SlotGuard {
    fn hold(&mut self, permit: OwnedSemaphorePermit) {
        match self.first {
            None => self.first = Some(permit),
            Some(_) => self.rest.push(permit),
        }
    }
}

/// The queue deadline passed before every slot was free.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotsBusy {
    /// Whether it was the heavy group that was full.
    pub heavy: bool,
}

/// Where the upstream limit in force came from (`/status`, the console).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitSource {
    /// `limits.upstream_concurrency` is a number.
    Config,
    /// `auto`: the org's edition as Zoho named it (`license_details.paid_type`).
    Org(Arc<str>),
    /// `auto`, but the edition is not known (not read yet, no `ZohoCRM.org.READ`, an unknown
    /// name): 10, safe for every paid edition.
    Fallback,
}

impl std::fmt::Display for LimitSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitSource::Config => f.write_str("config"),
            LimitSource::Org(edition) => write!(f, "org:{edition}"),
            LimitSource::Fallback => f.write_str("fallback"),
        }
    }
}

/// What `limits.upstream_concurrency: auto` gives: the limit and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoLimit {
    /// Requests in flight to Zoho at most.
    pub limit: u32,
    /// The edition it came from, or the fallback.
    pub source: LimitSource,
}

/// The limit `auto` uses until the org is read, or when it cannot be: Standard's 10, which every
/// paid edition allows (CREDITS.md §3.1).
pub const FALLBACK_LIMIT: u32 = 10;

/// What the fallback tells the operator to do.
pub const FALLBACK_FIX: &str = "grant ZohoCRM.org.READ, or set limits.upstream_concurrency";

impl Default for AutoLimit {
    fn default() -> Self {
        AutoLimit {
            limit: FALLBACK_LIMIT,
            source: LimitSource::Fallback,
        }
    }
}

/// The slots in force: one struct, since they are taken together and swapped together.
#[derive(Debug, Clone)]
pub struct Slots {
    /// Ordinary upstream slots (`None`: unlimited).
    pub upstream: Option<Arc<UpstreamSlots>>,
    /// The upstream limit in force (`limits.upstream_concurrency`, or what `auto` found).
    pub upstream_limit: u32,
    /// Where that limit came from.
    pub source: LimitSource,
    /// Heavy-group slots (`None`: unlimited).
    pub heavy: Option<Arc<Semaphore>>,
    /// `limits.heavy_concurrency`.
    pub heavy_limit: u32,
    /// `limits.upstream_queue_timeout`.
    pub queue_timeout: Duration,
}

impl Slots {
    /// The slots of `limits` for `workers` data-plane workers (`auto`: this replica's share of
    /// the limit in `auto`),
    /// reusing `previous`'s semaphores where the limit did not change (requests in flight keep
    /// their slots across a reload or a new edition).
    pub fn new(
        limits: &Limits,
        auto: &AutoLimit,
        workers: usize,
        previous: Option<&Slots>,
    ) -> Slots {
        let (limit, source) = match limits.upstream_concurrency.fixed() {
            Some(n) => (n, LimitSource::Config),
            None => (limits.per_replica(auto.limit), auto.source.clone()),
        };
        let upstream = match previous {
            Some(p) if p.upstream_limit == limit => p.upstream.clone(),
            _ => (limit > 0).then(|| Arc::new(UpstreamSlots::new(limit as usize, workers))),
        };
        let heavy_limit = limits.heavy_concurrency;
        let heavy = match previous {
            Some(p) if p.heavy_limit == heavy_limit => p.heavy.clone(),
            _ => (heavy_limit > 0).then(|| Arc::new(Semaphore::new(heavy_limit as usize))),
        };
        Slots {
            upstream,
            upstream_limit: limit,
            source,
            heavy,
            heavy_limit,
            queue_timeout: limits.upstream_queue_timeout,
        }
    }

    /// Takes `cost.heavy` heavy slots (at most the heavy limit), then `cost.slots` ordinary ones
    /// (at most the upstream limit), queueing until the queue timeout in all.
    pub async fn take(&self, cost: &Cost) -> Result<SlotGuard, SlotsBusy> {
        let (upstream, upstream_limit) = (self.upstream.as_ref(), self.upstream_limit);
        let (heavy, heavy_limit) = (self.heavy.as_ref(), self.heavy_limit);
        let queue_timeout = self.queue_timeout;
        let mut permits = SlotGuard::default();
        // Read the clock only when a request has to queue (most take a free slot at once).
        let mut deadline = None;
        let mut deadline = || *deadline.get_or_insert_with(|| Instant::now() + queue_timeout);
        if let Some(sem) = heavy.filter(|_| cost.heavy > 0) {
            let n = cost.heavy.min(heavy_limit.max(1));
            let permit = match sem.clone().try_acquire_many_owned(n) {
                Ok(p) => p,
                Err(_) => {
                    match tokio::time::timeout_at(deadline(), sem.clone().acquire_many_owned(n))
                        .await
                    {
                        Ok(Ok(p)) => p,
                        _ => return Err(SlotsBusy { heavy: true }),
                    }
                }
            };
            permits.hold(permit);
        }
        if let Some(slots) = upstream {
            let n = cost.slots.clamp(1, upstream_limit.max(1));
            for _ in 0..n {
                // A free slot is taken at once; only a queued request arms the queue timer.
                let permit = match slots.try_acquire() {
                    Some(p) => p,
                    None => match tokio::time::timeout_at(deadline(), slots.acquire()).await {
                        Ok(Some(p)) => p,
                        _ => return Err(SlotsBusy { heavy: false }),
                    },
                };
                permits.hold(permit);
            }
        }
        Ok(permits)
    }
}

/// `limits.upstream_concurrency`, shared out among the data-plane workers.
///
/// The shares add up to the limit, so the cap holds exactly. A request takes a slot from its own
/// worker's share, or borrows a free one from another share; it queues only when every slot is
/// taken, and then on its own worker's share, so it is woken by a request finishing on its own
/// thread. With one queue for all workers, most hand-overs woke a request on another thread (at
/// 256 connections and 25 slots that cost a third of the throughput). Connections are dealt to
/// workers in turn, which keeps the queues evenly fed. With fewer slots than workers, one shared
/// pool is used.
#[derive(Debug)]
pub struct UpstreamSlots {
    shares: Vec<Arc<Semaphore>>,
}

impl UpstreamSlots {
    /// `limit` slots (at least one) for `workers` workers.
    pub fn new(limit: usize, workers: usize) -> UpstreamSlots {
        let limit = limit.max(1);
        let parts = if workers > 1 && limit >= workers {
            workers
        } else {
            1
        };
        let shares = (0..parts)
            .map(|i| {
                Arc::new(Semaphore::new(
                    limit / parts + usize::from(i < limit % parts),
                ))
            })
            .collect();
        UpstreamSlots { shares }
    }

    fn own(&self) -> usize {
        crate::rt::workers::current().unwrap_or(0) % self.shares.len()
    }

    /// A free slot, if there is one: from the calling worker's share, else from another share.
    /// Never ahead of requests already queued on a share.
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        let own = self.own();
        let n = self.shares.len();
        (0..n)
            .map(|k| (own + k) % n)
            .find_map(|i| self.shares[i].clone().try_acquire_owned().ok())
    }

    /// Waits for a slot of the calling worker's share (after [`try_acquire`](Self::try_acquire)
    /// found none).
    pub async fn acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.shares[self.own()].clone().acquire_owned().await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::CostedOp;

    fn slots(
        upstream: &Arc<UpstreamSlots>,
        upstream_limit: u32,
        heavy: Option<&Arc<Semaphore>>,
        heavy_limit: u32,
        queue_timeout: Duration,
    ) -> Slots {
        Slots {
            upstream: Some(upstream.clone()),
            upstream_limit,
            source: LimitSource::Config,
            heavy: heavy.cloned(),
            heavy_limit,
            queue_timeout,
        }
    }

    fn cost(slots: u32, heavy: u32) -> Cost {
        Cost {
            op: CostedOp::Coql,
            credits: 1,
            slots,
            heavy,
        }
    }

    #[tokio::test]
    async fn heavy_requests_queue_on_their_group_without_holding_ordinary_slots() {
        let upstream = Arc::new(UpstreamSlots::new(3, 1));
        let heavy = Arc::new(Semaphore::new(1));
        let t = Duration::from_millis(50);
        let first = slots(&upstream, 3, Some(&heavy), 1, t)
            .take(&cost(1, 1))
            .await
            .expect("a heavy slot is free");
        let second = slots(&upstream, 3, Some(&heavy), 1, t)
            .take(&cost(1, 1))
            .await;
        assert_eq!(
            second.err(),
            Some(SlotsBusy { heavy: true }),
            "the group is full"
        );
        // Ordinary requests still get the two ordinary slots left.
        let a = slots(&upstream, 3, Some(&heavy), 1, t)
            .take(&cost(1, 0))
            .await;
        let b = slots(&upstream, 3, Some(&heavy), 1, t)
            .take(&cost(1, 0))
            .await;
        assert!(
            a.is_ok() && b.is_ok(),
            "ordinary calls are not held by the heavy cap"
        );
        drop(first);
    }

    #[tokio::test]
    async fn a_composite_takes_five_ordinary_slots() {
        let upstream = Arc::new(UpstreamSlots::new(6, 1));
        let t = Duration::from_millis(20);
        let held = slots(&upstream, 6, None, 10, t)
            .take(&cost(5, 1))
            .await
            .expect("five free");
        let sixth = slots(&upstream, 6, None, 10, t)
            .take(&cost(1, 0))
            .await
            .expect("one slot is left");
        assert!(
            slots(&upstream, 6, None, 10, t)
                .take(&cost(1, 0))
                .await
                .is_err(),
            "the composite holds 5 of the 6 slots"
        );
        drop((held, sixth));
    }

    #[test]
    fn the_limit_in_force_and_where_it_came_from() {
        use crate::config::UpstreamConcurrency::{Auto, Fixed};
        let org = || LimitSource::Org("Professional".into());
        let professional = AutoLimit {
            limit: 15,
            source: org(),
        };
        // (case, setting, replicas, what auto found, limit, source)
        let cases = [
            (
                "a number wins",
                Fixed(7),
                1,
                professional.clone(),
                7,
                LimitSource::Config,
            ),
            (
                "a number is not divided",
                Fixed(7),
                3,
                professional.clone(),
                7,
                LimitSource::Config,
            ),
            (
                "auto: the edition",
                Auto,
                1,
                professional.clone(),
                15,
                org(),
            ),
            (
                "auto: a replica's share",
                Auto,
                2,
                professional.clone(),
                7,
                org(),
            ),
            ("auto: at least 1", Auto, 40, professional.clone(), 1, org()),
            (
                "auto before the read",
                Auto,
                1,
                AutoLimit::default(),
                10,
                LimitSource::Fallback,
            ),
        ];
        for (case, setting, replicas, auto, limit, source) in cases {
            let limits = Limits {
                upstream_concurrency: setting,
                upstream_replicas: replicas,
                ..Limits::default()
            };
            let s = Slots::new(&limits, &auto, 2, None);
            assert_eq!((s.upstream_limit, &s.source), (limit, &source), "{case}");
        }
        assert_eq!(org().to_string(), "org:Professional");
    }

    #[test]
    fn a_new_limit_gets_new_slots_and_an_unchanged_one_keeps_them() {
        let limits = Limits::default();
        let fallback = Slots::new(&limits, &AutoLimit::default(), 1, None);
        let standard = AutoLimit {
            limit: 10,
            source: LimitSource::Org("standard".into()),
        };
        let same = Slots::new(&limits, &standard, 1, Some(&fallback));
        assert!(
            Arc::ptr_eq(
                same.upstream.as_ref().expect("slots"),
                fallback.upstream.as_ref().expect("slots")
            ),
            "10 → 10: requests in flight keep their permits in the same slots"
        );
        assert_eq!(same.source, standard.source);
        let enterprise = AutoLimit {
            limit: 20,
            source: LimitSource::Org("enterprise".into()),
        };
        let bigger = Slots::new(&limits, &enterprise, 1, Some(&same));
        assert!(!Arc::ptr_eq(
            bigger.upstream.as_ref().expect("slots"),
            same.upstream.as_ref().expect("slots")
        ));
        assert_eq!(bigger.upstream_limit, 20);
    }

    #[test]
    fn upstream_slots_split_the_limit_exactly_and_lend_free_slots() {
        for (limit, workers, shares) in [
            (25, 2, vec![13, 12]),
            (5, 4, vec![2, 1, 1, 1]),
            (3, 4, vec![3]),
            (1, 1, vec![1]),
            (10, 1, vec![10]),
        ] {
            let slots = UpstreamSlots::new(limit, workers);
            let got: Vec<usize> = slots.shares.iter().map(|s| s.available_permits()).collect();
            assert_eq!(got, shares, "limit {limit}, {workers} workers");
            let available = |s: &UpstreamSlots| -> usize {
                s.shares.iter().map(|p| p.available_permits()).sum()
            };
            assert_eq!(available(&slots), limit);
            // Off the data plane, requests use share 0 and borrow from the others: exactly
            // `limit` slots are handed out, then none.
            let held: Vec<_> = (0..limit).map_while(|_| slots.try_acquire()).collect();
            assert_eq!(held.len(), limit, "every slot can be taken");
            assert!(slots.try_acquire().is_none(), "never more than the limit");
            drop(held);
            assert_eq!(available(&slots), limit, "slots return to their shares");
        }
    }

    #[tokio::test]
    async fn a_queued_request_gets_the_next_slot_of_its_share() {
        let slots = Arc::new(UpstreamSlots::new(1, 1));
        let first = slots.try_acquire().expect("free slot");
        let waiter = {
            let slots = slots.clone();
            tokio::spawn(async move { slots.acquire().await.is_some() })
        };
        tokio::task::yield_now().await;
        assert!(
            slots.try_acquire().is_none(),
            "a new request does not jump the queue"
        );
        drop(first);
        assert!(
            waiter.await.expect("joined"),
            "the queued request got the slot"
        );
    }
}
