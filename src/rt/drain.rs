//! Running a served connection until it ends, or until the listener drains and it has finished
//! its in-flight request.
//!
//! The drain signal is one [`CancellationToken`] shared by every connection. Polling its
//! `cancelled()` future each time a connection's task runs (about three times a request) locks the
//! token's mutex and the waiter list of its `Notify`, shared by every connection (and every worker
//! thread, with `workers` above 1): about 450 instructions a request at 64 connections
//! (callgrind). Here the signal's future is polled once, with a waker of its own that records the
//! wake-up before waking the task; later polls read that flag, which only this connection touches,
//! and poll the signal again only after it woke them.
//!
//! Must not: know about HTTP (the caller says how to shut its connection down).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use tokio_util::sync::CancellationToken;

/// The waker the drain signal holds: notes that it fired, then wakes the connection's task.
struct Signalled {
    fired: AtomicBool,
    task: Waker,
}

impl Wake for Signalled {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.fired.store(true, Ordering::Release);
        self.task.wake_by_ref();
    }
}

/// Polls `conn` to its end. If `drain` fires first, `shutdown` is called on it once (it should
/// finish what is in flight and close) and it is polled on to its end.
pub async fn run_until_drained<C, T>(
    mut conn: Pin<&mut C>,
    drain: &CancellationToken,
    shutdown: impl FnOnce(Pin<&mut C>),
) -> T
where
    C: Future<Output = T> + ?Sized,
{
    let mut signal = std::pin::pin!(drain.cancelled());
    // The signal's waker, once registered, and the same as a `Waker`.
    let mut registered: Option<(Arc<Signalled>, Waker)> = None;
    let ended = std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = conn.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        match &registered {
            // Registered for this task: look at the signal only after it woke us (a `Notify`
            // wakes only when the token is cancelled).
            Some((s, _)) if s.task.will_wake(cx.waker()) => {
                if !s.fired.swap(false, Ordering::AcqRel) {
                    return Poll::Pending;
                }
            }
            // First poll, or polled from another task: (re-)register with this task's waker.
            _ => {
                let s = Arc::new(Signalled {
                    fired: AtomicBool::new(false),
                    task: cx.waker().clone(),
                });
                registered = Some((s.clone(), Waker::from(s)));
            }
        }
        let Some((_, waker)) = &registered else {
            return Poll::Pending;
        };
        signal
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .map(|()| None)
    })
    .await;
    match ended {
        Some(out) => out,
        None => {
            shutdown(conn.as_mut());
            conn.await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio::sync::oneshot;

    /// A connection that ends when told to (`finish`), or at once after `shutdown`; it says when
    /// it was first polled.
    struct FakeConn {
        finish: oneshot::Receiver<()>,
        shut: bool,
        first_poll: Option<oneshot::Sender<()>>,
    }

    impl Future for FakeConn {
        type Output = &'static str;
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
            if let Some(tx) = self.first_poll.take() {
                let _ = tx.send(());
            }
            if self.shut {
                return Poll::Ready("shut down");
            }
            Pin::new(&mut self.finish).poll(cx).map(|_| "finished")
        }
    }

    fn conn() -> (FakeConn, oneshot::Sender<()>, oneshot::Receiver<()>) {
        let (finish_tx, finish) = oneshot::channel();
        let (tx, rx) = oneshot::channel();
        let c = FakeConn {
            finish,
            shut: false,
            first_poll: Some(tx),
        };
        (c, finish_tx, rx)
    }

    type BoxedRun = Pin<Box<dyn Future<Output = (&'static str, usize)> + Send>>;

    /// Runs `c` until drained, shutting it down by its flag; counts shutdowns.
    fn run(c: FakeConn, drain: CancellationToken) -> BoxedRun {
        Box::pin(async move {
            let mut shutdowns = 0;
            let out = run_until_drained(std::pin::pin!(c), &drain, |c| {
                shutdowns += 1;
                c.get_mut().shut = true;
            })
            .await;
            (out, shutdowns)
        })
    }

    /// [`run`] on a task of its own.
    fn spawn(
        c: FakeConn,
        drain: &CancellationToken,
    ) -> tokio::task::JoinHandle<(&'static str, usize)> {
        tokio::spawn(run(c, drain.clone()))
    }

    async fn within<T>(f: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), f)
            .await
            .expect("finished within 10 s")
    }

    /// A connection on a task of its own, after its first poll: the sender that finishes it, its
    /// drain signal and the task.
    async fn polled_once() -> (
        oneshot::Sender<()>,
        CancellationToken,
        tokio::task::JoinHandle<(&'static str, usize)>,
    ) {
        let (c, finish, first_poll) = conn();
        let drain = CancellationToken::new();
        let task = spawn(c, &drain);
        within(first_poll).await.expect("polled");
        (finish, drain, task)
    }

    #[tokio::test]
    async fn a_connection_that_ends_by_itself_is_not_shut_down() {
        let (finish, _drain, task) = polled_once().await;
        finish.send(()).expect("the connection waits");
        assert_eq!(within(task).await.expect("no panic"), ("finished", 0));
    }

    #[tokio::test]
    async fn a_drain_after_the_first_poll_wakes_the_connection_and_shuts_it_down_once() {
        // The task's first poll registered the signal (in the same poll that reported it: this
        // single-threaded runtime runs nothing in between), and it waits.
        let (_finish, drain, task) = polled_once().await;
        drain.cancel();
        assert_eq!(within(task).await.expect("no panic"), ("shut down", 1));
    }

    #[tokio::test]
    async fn a_drain_before_the_first_poll_shuts_the_connection_down() {
        let (c, _finish, _) = conn();
        let drain = CancellationToken::new();
        drain.cancel();
        let task = spawn(c, &drain);
        assert_eq!(within(task).await.expect("no panic"), ("shut down", 1));
    }

    #[tokio::test]
    async fn a_connection_moved_to_another_task_registers_again() {
        // Polled once on one task (registers that task's waker), then finished on another: the
        // drain must wake the second one.
        let (c, _finish, first_poll) = conn();
        let drain = CancellationToken::new();
        let (moved_tx, moved_rx) = oneshot::channel::<BoxedRun>();
        let mut fut = run(c, drain.clone());
        let first = tokio::spawn(async move {
            // One poll here, then hand the future to another task.
            std::future::poll_fn(|cx| {
                let _ = fut.as_mut().poll(cx);
                Poll::Ready(())
            })
            .await;
            let _ = moved_tx.send(fut);
        });
        within(first_poll).await.expect("polled");
        within(first).await.expect("first task ran");
        let fut = within(moved_rx).await.expect("handed over");
        let (polled_tx, polled_rx) = oneshot::channel();
        let second = tokio::spawn(async move {
            let mut fut = fut;
            let mut polled_tx = Some(polled_tx);
            std::future::poll_fn(|cx| {
                let r = fut.as_mut().poll(cx);
                if let Some(tx) = polled_tx.take() {
                    let _ = tx.send(());
                }
                r
            })
            .await
        });
        within(polled_rx).await.expect("polled on the second task");
        drain.cancel();
        assert_eq!(within(second).await.expect("no panic"), ("shut down", 1));
    }
}
