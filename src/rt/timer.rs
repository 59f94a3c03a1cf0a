//! A hyper [`Timer`] for one client connection whose sleeps share one tokio timer.
//!
//! hyper arms its header-read timeout afresh for every request on a keep-alive connection: with
//! hyper-util's `TokioTimer` that is a new tokio timer per request (an allocation, a wheel insert
//! and remove) and, because the new deadline is usually earlier than the one the runtime parked
//! for, a wake-up of the runtime's driver: one `eventfd` write per request on an otherwise idle
//! worker (measured with `perf` at one connection, bench/README.md).
//!
//! Here each sleep only records its deadline. The connection's one tokio timer stays registered
//! and is never moved earlier: a request's deadline is always later than the previous request's,
//! so when the timer fires early the sleep that is waiting moves it on to its own deadline (a
//! later one, which wakes nothing). A timeout therefore fires exactly when due; the cost is at most
//! one spurious wake-up of the connection's task per timeout period.
//!
//! The proxy's own per-request deadline (`limits.request_timeout`, from the moment the request is
//! sent until Zoho answers) uses a second `ConnTimer` of the same connection, through
//! [`ConnTimer::after`]: one deadline per request, each later than the last, so after the first
//! request it costs a lock and a deadline store instead of a tokio timer's insert and remove. It is
//! not the header-read timer: the two kinds of deadline alternate (10 s, then 120 s, then 10 s...),
//! and on one shared timer every request would move it earlier once.

use hyper::rt::{Sleep, Timer};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// The timer of one connection (build one per connection; its tokio timer is made at the first
/// wait).
#[derive(Clone, Default)]
pub struct ConnTimer {
    shared: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl ConnTimer {
    /// A sleep of `duration` from now on this timer (unboxed, for the proxy's own deadlines).
    pub fn after(&self, duration: Duration) -> ConnSleep {
        self.at(self.now() + duration)
    }

    /// A sleep until `deadline` on this timer.
    fn at(&self, deadline: Instant) -> ConnSleep {
        ConnSleep {
            deadline,
            shared: self.shared.clone(),
        }
    }
}

impl Timer for ConnTimer {
    // The runtime's clock (the same as the system's, except in tests with paused time).
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        self.sleep_until(self.now() + duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        Box::pin(self.at(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<ConnSleep>() {
            Some(s) => s.get_mut().deadline = new_deadline,
            None => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// One deadline on a [`ConnTimer`].
pub struct ConnSleep {
    deadline: Instant,
    shared: Arc<Mutex<Option<Pin<Box<tokio::time::Sleep>>>>>,
}

impl Future for ConnSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = tokio::time::Instant::from_std(self.deadline);
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let timer = shared.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            // Later than this sleep's deadline (a sleep made before a reset to an earlier time,
            // which hyper never does): bring it forward.
            if timer.deadline() > deadline {
                timer.as_mut().reset(deadline);
            }
            match timer.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if timer.deadline() >= deadline => return Poll::Ready(()),
                // Fired for an earlier deadline: move on to this one.
                Poll::Ready(()) => timer.as_mut().reset(deadline),
            }
        }
    }
}

impl Sleep for ConnSleep {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_sleep_fires_at_its_deadline_after_earlier_ones_were_dropped() {
        let timer = ConnTimer::default();
        let start = timer.now();
        // The first request's timeout is armed and polled, then dropped (its head arrived).
        let mut first = timer.sleep(Duration::from_secs(30));
        assert!(futures_util::poll!(first.as_mut()).is_pending());
        drop(first);
        tokio::time::advance(Duration::from_secs(10)).await;
        // The next request's timeout runs 30 s from now, past the shared timer's deadline.
        let second = timer.sleep(Duration::from_secs(30));
        second.await;
        let waited = timer.now() - start;
        assert!(
            waited >= Duration::from_secs(40) && waited < Duration::from_secs(41),
            "fired after {waited:?}, not at the first sleep's 30 s"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn request_deadlines_each_run_their_whole_duration_from_their_own_start() {
        let timer = ConnTimer::default();
        let start = timer.now();
        // The first request is answered after 25 s of its 30 s.
        let mut first = std::pin::pin!(timer.after(Duration::from_secs(30)));
        assert!(futures_util::poll!(first.as_mut()).is_pending());
        tokio::time::advance(Duration::from_secs(25)).await;
        assert!(futures_util::poll!(first.as_mut()).is_pending());
        // The next one on the connection still gets 30 s.
        timer.after(Duration::from_secs(30)).await;
        assert_eq!(timer.now() - start, Duration::from_secs(55));
    }

    #[tokio::test(start_paused = true)]
    async fn reset_moves_a_sleep_and_an_earlier_deadline_is_honoured() {
        let timer = ConnTimer::default();
        let start = timer.now();
        let mut long = timer.sleep(Duration::from_secs(60));
        assert!(futures_util::poll!(long.as_mut()).is_pending());
        timer.reset(&mut long, start + Duration::from_secs(5));
        long.await;
        let waited = timer.now() - start;
        assert_eq!(waited, Duration::from_secs(5), "reset to an earlier time");
    }
}
