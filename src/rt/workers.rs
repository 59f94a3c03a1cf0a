//! The data plane's worker threads: one single-threaded tokio runtime per worker, each serving
//! the client connections handed to it and owning its own upstream connections.
//!
//! A connection never leaves its worker: the client socket, its requests, the upstream
//! connection they travel on and every timer they arm live on one thread, so a request costs no
//! cross-thread wake-up, lock or cache-line transfer (the shape nginx has with one process per
//! core). The accept loops, the admin listener and the token refreshers stay on the main runtime.
//! Connections are dealt round-robin, which keeps the workers balanced even when a few
//! long-lived keep-alive connections carry all the traffic.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

thread_local! {
    /// The index of the worker running on this thread (`None` off the data plane).
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The worker this thread belongs to, if it is one.
pub fn current() -> Option<usize> {
    CURRENT.with(Cell::get)
}

/// The number of workers `auto` means: one per available core.
pub fn auto_count() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The running worker threads. Dropping it stops them (their remaining tasks are dropped, so
/// drain the connections first).
pub struct Workers {
    handles: Vec<Handle>,
    next: AtomicUsize,
    stop: CancellationToken,
}

impl Workers {
    /// Starts `count` worker threads (at least one). Each runs `on_thread_start` once on its own
    /// thread before serving (the wiring passes the log writer's per-thread set-up, so access
    /// lines logged on a worker wait for the writer's next batch: no wake-up per request).
    pub fn start(count: usize, on_thread_start: fn()) -> std::io::Result<Workers> {
        // Built first, so that a failure part-way stops the threads already started.
        let mut workers = Workers {
            handles: Vec::with_capacity(count.max(1)),
            next: AtomicUsize::new(0),
            stop: CancellationToken::new(),
        };
        for index in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            workers.handles.push(runtime.handle().clone());
            let stop = workers.stop.clone();
            std::thread::Builder::new()
                .name(format!("zap-worker-{index}"))
                .spawn(move || {
                    CURRENT.with(|c| c.set(Some(index)));
                    on_thread_start();
                    runtime.block_on(stop.cancelled());
                })?;
        }
        Ok(workers)
    }

    /// How many workers run.
    pub fn count(&self) -> usize {
        self.handles.len()
    }

    /// The next worker in turn.
    pub fn next(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_run_on_their_worker_and_round_robin_spreads_them() {
        let workers = Workers::start(3, || {}).expect("workers start");
        assert_eq!(workers.count(), 3);
        assert_eq!(current(), None, "the test thread is not a worker");
        let mut seen = Vec::new();
        for _ in 0..6 {
            let (tx, rx) = std::sync::mpsc::channel();
            workers.next().spawn(async move {
                let _ = tx.send(current());
            });
            seen.push(rx.recv().expect("the task ran"));
        }
        assert_eq!(
            seen,
            vec![Some(0), Some(1), Some(2), Some(0), Some(1), Some(2)]
        );
    }

    #[test]
    fn dropping_the_workers_stops_their_runtimes_and_tasks() {
        let workers = Workers::start(2, || {}).expect("workers start");
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        for _ in 0..2 {
            let tx = tx.clone();
            workers.next().spawn(async move {
                let _held = tx;
                std::future::pending::<()>().await;
            });
        }
        drop(tx);
        drop(workers);
        // Each task's sender is dropped with its runtime: the channel disconnects.
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(10)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
