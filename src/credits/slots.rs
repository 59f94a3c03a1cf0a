//! Concurrency for one request beyond the ordinary upstream slot: the heavy group's slots
//! (`limits.heavy_concurrency`, Zoho's sub-concurrency of 10) and a composite's five edition
//! slots (CREDITS.md §3). Heavy slots are taken first, so a heavy request queued for its group
//! holds no ordinary slot and ordinary calls are never held by the heavy cap.
//!
//! Must not: know about credits or budgets (only [`Cost::slots`] and [`Cost::heavy`]).

use super::{Cost, DOWNLOADS_PER_MINUTE};
use crate::state::UpstreamSlots;
use std::collections::VecDeque;
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

/// Takes `cost.heavy` heavy slots (at most `heavy_limit`), then `cost.slots` ordinary ones (at
/// most `upstream_limit`), queueing until `queue_timeout` in all.
pub async fn take(
    upstream: Option<&Arc<UpstreamSlots>>,
    upstream_limit: u32,
    heavy: Option<&Arc<Semaphore>>,
    heavy_limit: u32,
    cost: &Cost,
    queue_timeout: Duration,
) -> Result<SlotGuard, SlotsBusy> {
    let mut permits = SlotGuard::default();
    // Read the clock only when a request has to queue (most take a free slot at once).
    let mut deadline = None;
    let mut deadline = || *deadline.get_or_insert_with(|| Instant::now() + queue_timeout);
    if let Some(sem) = heavy.filter(|_| cost.heavy > 0) {
        let n = cost.heavy.min(heavy_limit.max(1));
        let permit = match sem.clone().try_acquire_many_owned(n) {
            Ok(p) => p,
            Err(_) => {
                match tokio::time::timeout_at(deadline(), sem.clone().acquire_many_owned(n)).await {
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

/// Reserves a bulk-read download at `now_ms` and says how long to wait for it: at most
/// [`DOWNLOADS_PER_MINUTE`] start in any minute; the 11th waits for the oldest to age out.
pub fn download_wait(starts: &mut VecDeque<u64>, now_ms: u64) -> Duration {
    while starts.front().is_some_and(|&t| t + 60_000 <= now_ms) {
        starts.pop_front();
    }
    let start = if starts.len() < DOWNLOADS_PER_MINUTE {
        now_ms
    } else {
        // The slot after the one DOWNLOADS_PER_MINUTE places back frees a minute after it.
        let k = starts.len() - DOWNLOADS_PER_MINUTE;
        (starts[k] + 60_000).max(now_ms)
    };
    starts.push_back(start);
    Duration::from_millis(start - now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credits::CostedOp;

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
        let first = take(Some(&upstream), 3, Some(&heavy), 1, &cost(1, 1), t)
            .await
            .expect("a heavy slot is free");
        let second = take(Some(&upstream), 3, Some(&heavy), 1, &cost(1, 1), t).await;
        assert_eq!(
            second.err(),
            Some(SlotsBusy { heavy: true }),
            "the group is full"
        );
        // Ordinary requests still get the two ordinary slots left.
        let a = take(Some(&upstream), 3, Some(&heavy), 1, &cost(1, 0), t).await;
        let b = take(Some(&upstream), 3, Some(&heavy), 1, &cost(1, 0), t).await;
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
        let held = take(Some(&upstream), 6, None, 10, &cost(5, 1), t)
            .await
            .expect("five free");
        let sixth = take(Some(&upstream), 6, None, 10, &cost(1, 0), t)
            .await
            .expect("one slot is left");
        assert!(
            take(Some(&upstream), 6, None, 10, &cost(1, 0), t)
                .await
                .is_err(),
            "the composite holds 5 of the 6 slots"
        );
        drop((held, sixth));
    }
}
