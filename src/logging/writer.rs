//! The log sink: a batching writer in front of stderr.
//!
//! The thread that logs a line appends it to one shared in-memory buffer (a mutex held for a
//! copy). Who writes the buffer to stderr, and when:
//! - a **deferred** line (the access line, logged by a data-plane worker) is written by a small
//!   task on that worker's own runtime, [`FLUSH_DELAY`] after the first line landed in an empty
//!   buffer, together with every line logged meanwhile (on any worker): one `write` per batch,
//!   and the only wake-up is a local one on the worker's thread. [`HIGH_WATER`] bytes waiting
//!   wake the writer thread instead. A per-line channel send and writer wake-up
//!   (`tracing_appender`) cost two context switches per request at one connection, more CPU than
//!   the rest of the request, and writing at every park of the worker still cost one `write` per
//!   request;
//! - every other line (token refreshes, warnings, errors: rare, and read by operators and tests
//!   as they happen) is **urgent**: it wakes the writer thread at once, which writes it with
//!   whatever deferred lines wait before it.
//!
//! Lines are written whole and in the order they were appended. Nothing is dropped: past
//! [`CAPACITY`] bytes waiting (stderr not being read) the logging thread waits for the writer,
//! as `tracing_appender`'s lossless mode did, and a flusher's `write` blocks its worker like
//! nginx's access log. Dropping the [`FlushGuard`] writes out what is buffered and stops the thread.
//! Must not: format lines, or decide what is logged (that is the subscriber's job in [`super`]).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// Deferred bytes waiting that wake the writer thread without waiting for a flusher.
pub const HIGH_WATER: usize = 64 * 1024;
/// Bytes waiting beyond which a logging thread waits for the writer (back-pressure).
pub const CAPACITY: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    closed: bool,
    /// An urgent line (or the high-water mark) asks the writer thread to write.
    urgent: bool,
    /// Logging threads waiting for room.
    blocked: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread (urgent line, past the high-water mark, or closed).
    wake: Condvar,
    /// Wakes logging threads waiting for room.
    room: Condvar,
    /// Something is buffered (read without the lock by a flusher).
    pending: AtomicBool,
    /// The sink; held while writing, so that batches are written in the order they were taken.
    out: Mutex<Box<dyn Write + Send>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while holding the lock left the buffer intact (appends and
        // swaps do not panic half-way): keep logging.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The `MakeWriter` handed to `tracing_subscriber`: cheap to clone, shared by every thread.
#[derive(Clone)]
pub struct BatchWriter {
    shared: Arc<Shared>,
}

/// Writes out what is buffered and stops the writer thread when dropped.
pub struct FlushGuard {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts the writer thread in front of `out` (stderr in production).
pub fn start<W: Write + Send + 'static>(out: W) -> (BatchWriter, FlushGuard) {
    let shared = Arc::new(Shared {
        state: Mutex::default(),
        wake: Condvar::new(),
        room: Condvar::new(),
        pending: AtomicBool::new(false),
        out: Mutex::new(Box::new(out)),
    });
    let for_thread = shared.clone();
    let thread = std::thread::Builder::new()
        .name("zap-log-writer".into())
        .spawn(move || drain(&for_thread))
        .ok();
    let writer = BatchWriter {
        shared: shared.clone(),
    };
    // Without a writer thread (thread creation failed), lines are written inline.
    let shared_for_guard = shared.clone();
    if thread.is_none() {
        shared.lock().closed = true;
    }
    (
        writer,
        FlushGuard {
            shared: shared_for_guard,
            thread,
        },
    )
}

impl BatchWriter {
    /// Appends one formatted line (or any bytes) to the buffer. An `urgent` one wakes the
    /// writer thread; a deferred one waits for this thread's flusher (or the high-water mark).
    pub(crate) fn append(&self, bytes: &[u8], urgent: bool) {
        let shared = &*self.shared;
        let mut state = shared.lock();
        if state.closed {
            // After shutdown (or without a writer thread): straight to the sink.
            drop(state);
            write_batch(shared, bytes);
            return;
        }
        while state.buf.len() + bytes.len() > CAPACITY && !state.buf.is_empty() && !state.closed {
            state.blocked += 1;
            state.urgent = true;
            shared.wake.notify_one();
            state = shared.room.wait(state).unwrap_or_else(|p| p.into_inner());
            state.blocked -= 1;
        }
        let before = state.buf.len();
        state.buf.extend_from_slice(bytes);
        let after = state.buf.len();
        let high = before < HIGH_WATER && after >= HIGH_WATER;
        // A deferred line on a thread without a flusher is written as an urgent one.
        let urgent = urgent || (before == 0 && !wake_flusher());
        let wake = (urgent || high) && !state.urgent;
        state.urgent |= urgent || high;
        drop(state);
        shared.pending.store(true, Ordering::Release);
        if wake {
            shared.wake.notify_one();
        }
    }

    /// Writes out what is buffered, on the calling thread.
    fn flush_now(&self) {
        let shared = &*self.shared;
        if !shared.pending.load(Ordering::Acquire) {
            return;
        }
        take_and_write(shared);
    }
}

/// Takes the buffered bytes and writes them, holding the sink across both, so that two
/// flushers cannot write their batches out of order.
fn take_and_write(shared: &Shared) {
    let mut out = shared.out.lock().unwrap_or_else(|p| p.into_inner());
    let mut state = shared.lock();
    let batch = std::mem::take(&mut state.buf);
    state.urgent = false;
    shared.pending.store(false, Ordering::Release);
    let blocked = state.blocked > 0;
    drop(state);
    if blocked {
        shared.room.notify_all();
    }
    if !batch.is_empty() {
        // Nothing sensible can be done about a failed write to stderr; keep serving.
        let _ = out.write_all(&batch);
        let _ = out.flush();
    }
}

fn write_batch(shared: &Shared, bytes: &[u8]) {
    let mut out = shared.out.lock().unwrap_or_else(|p| p.into_inner());
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// How long a deferred line may wait for the lines that follow it: the worker's flusher writes
/// them together this long after the first one.
pub const FLUSH_DELAY: std::time::Duration = std::time::Duration::from_millis(2);

thread_local! {
    /// This thread's flusher (set by [`defer_on_this_thread`]).
    static FLUSHER: std::cell::RefCell<Option<Arc<tokio::sync::Notify>>> =
        const { std::cell::RefCell::new(None) };
}

/// Makes the calling thread (a data-plane worker, inside its runtime) defer its lines: a task on
/// this runtime writes them [`FLUSH_DELAY`] after the first one lands in an empty buffer, so a
/// burst of requests costs one `write` and the wake-up stays on this thread.
pub fn defer_on_this_thread(writer: &BatchWriter) {
    let notify = Arc::new(tokio::sync::Notify::new());
    FLUSHER.with(|f| *f.borrow_mut() = Some(notify.clone()));
    let writer = writer.clone();
    // Lives as long as the worker's runtime (dropped with it); it owns nothing that needs a
    // graceful stop: the `FlushGuard` writes out whatever it had not written yet.
    tokio::spawn(async move {
        loop {
            notify.notified().await;
            tokio::time::sleep(FLUSH_DELAY).await;
            writer.flush_now();
        }
    });
}

/// Whether lines logged on this thread are deferred to its flusher.
pub fn defers_on_this_thread() -> bool {
    FLUSHER.with(|f| f.borrow().is_some())
}

/// Wakes this thread's flusher (a local wake: no system call).
fn wake_flusher() -> bool {
    FLUSHER.with(|f| match f.borrow().as_ref() {
        Some(n) => {
            n.notify_one();
            true
        }
        None => false,
    })
}

/// The writer thread: waits until asked (urgent line, high-water mark, a logger held back, or
/// closing), writes everything buffered, repeats until closed and empty.
fn drain(shared: &Shared) {
    loop {
        let mut state = shared.lock();
        while !state.urgent && !state.closed && state.blocked == 0 {
            state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        let done = state.closed;
        drop(state);
        take_and_write(shared);
        if done {
            // Lines appended after `closed` go straight to the sink.
            take_and_write(shared);
            return;
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if self.thread.is_none() {
            take_and_write(&self.shared);
        }
        self.shared.room.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The per-event writer `tracing_subscriber` asks for; each `write` appends at once (the
/// subscriber writes a whole formatted line in one call). Its lines are urgent: the hot-path
/// access line does not come through here but through [`super::line`].
pub struct LineWriter<'a>(&'a BatchWriter);

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.append(bytes, true);
        Ok(bytes.len())
    }

    fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.append(bytes, true);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A sink that records every `write` call, so the test sees batching as well as content.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Recorder {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("recorder").push(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_in_order_per_thread_and_together_while_the_sink_is_busy(
    ) {
        let sink = Recorder::default();
        let (writer, guard) = start(sink.clone());
        // The sink is busy (a slow stderr) while the threads log: whatever the scheduler does,
        // the lines that arrive meanwhile must wait in the buffer and go out together.
        let busy = writer.shared.out.lock().expect("sink");
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..2000 {
                        let line = format!("thread={t} line={i}\n");
                        writer.append(line.as_bytes(), false);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("logging thread");
        }
        drop(busy);
        drop(guard);
        let writes = sink.0.lock().expect("recorder").clone();
        let all: Vec<u8> = writes.concat();
        let text = String::from_utf8(all).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 8000, "every line is written exactly once");
        for t in 0..4 {
            let mine: Vec<usize> = lines
                .iter()
                .filter_map(|l| l.strip_prefix(&format!("thread={t} line=")))
                .map(|n| n.parse().expect("line number"))
                .collect();
            assert_eq!(
                mine,
                (0..2000).collect::<Vec<_>>(),
                "thread {t}'s lines are whole and in order"
            );
        }
        assert!(
            writes.len() <= 2,
            "8000 lines logged while the sink was busy are written in one batch: {} writes",
            writes.len()
        );
    }

    #[test]
    fn deferred_lines_are_batched_by_the_workers_flusher_and_urgent_lines_take_them_along() {
        let sink = Recorder::default();
        let (writer, guard) = start(sink.clone());
        std::thread::spawn({
            let writer = writer.clone();
            let sink = sink.clone();
            move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    defer_on_this_thread(&writer);
                    assert!(defers_on_this_thread(), "this thread defers");
                    writer.append(b"access 1\n", false);
                    writer.append(b"access 2\n", false);
                    // No other thread is woken and nothing is written while this task runs.
                    assert!(
                        writer.shared.lock().buf.len() == 18
                            && sink.0.lock().expect("sink").is_empty(),
                        "deferred lines stay buffered until the flusher runs"
                    );
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                    while sink.0.lock().expect("sink").is_empty() {
                        assert!(tokio::time::Instant::now() < deadline, "never flushed");
                        tokio::task::yield_now().await;
                    }
                    assert_eq!(
                        sink.0.lock().expect("sink").clone(),
                        vec![b"access 1\naccess 2\n".to_vec()],
                        "the flusher writes both lines in one write"
                    );
                });
            }
        })
        .join()
        .expect("worker thread");
        assert!(!defers_on_this_thread(), "other threads do not defer");
        // Off a worker, a deferred line is written like an urgent one.
        writer.append(b"access 3\n", false);
        writer.append(b"urgent\n", true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.0.lock().expect("sink").concat().len() < 34 {
            assert!(
                Instant::now() < deadline,
                "the urgent line was never written"
            );
            std::thread::yield_now();
        }
        assert_eq!(
            sink.0.lock().expect("sink").concat(),
            b"access 1\naccess 2\naccess 3\nurgent\n".to_vec(),
            "lines are written in order"
        );
        drop(guard);
    }

    #[test]
    fn a_full_buffer_holds_the_logger_back_instead_of_dropping_lines() {
        /// A sink that blocks until released, like a stderr pipe nobody reads.
        #[derive(Clone)]
        struct Stuck(Arc<(Mutex<bool>, Condvar)>, Recorder);
        impl Write for Stuck {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                let (lock, cv) = &*self.0;
                let mut open = lock.lock().expect("gate");
                while !*open {
                    open = cv.wait(open).expect("gate");
                }
                self.1.write(bytes)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let recorder = Recorder::default();
        let (writer, guard) = start(Stuck(gate.clone(), recorder.clone()));
        let line = vec![b'x'; 1024];
        let logger = {
            let writer = writer.clone();
            let line = line.clone();
            std::thread::spawn(move || {
                // 3 × CAPACITY: cannot all fit while the sink is stuck.
                for _ in 0..(3 * CAPACITY / 1024) {
                    writer.append(&line, false);
                }
            })
        };
        // While the sink is stuck, the buffer never grows past its capacity.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let waiting = writer.shared.lock().blocked;
            if waiting > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "the logger never hit the cap");
            std::thread::yield_now();
        }
        assert!(writer.shared.lock().buf.len() <= CAPACITY, "bounded");
        *gate.0.lock().expect("gate") = true;
        gate.1.notify_all();
        logger.join().expect("logger");
        drop(guard);
        let total: usize = recorder
            .0
            .lock()
            .expect("recorder")
            .iter()
            .map(Vec::len)
            .sum();
        assert_eq!(total, 3 * CAPACITY, "no line was dropped");
    }
}
