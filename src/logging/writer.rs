//! The log sink: a batching writer in front of stderr.
//!
//! The thread that logs a line appends it to one shared in-memory buffer (a mutex held for a
//! copy). One writer thread writes the buffer to stderr:
//! - a **deferred** line (the access line, logged by a data-plane worker) waits at most
//!   [`FLUSH_DELAY`] after the first line landed in an empty buffer, and goes out with every
//!   line logged meanwhile (on any worker): one `write` per batch. The writer thread keeps that
//!   time itself: after a batch it waits [`FLUSH_DELAY`] once more without being asked, so under
//!   load no worker wakes it, arms a timer or makes a system call for its lines; only the first
//!   line after a quiet spell wakes it. [`HIGH_WATER`] bytes waiting wake it at once. (A
//!   per-line channel send and writer wake-up, `tracing_appender`'s way, cost two context
//!   switches per request at one connection; writing at every park of the worker still cost one
//!   `write` per request; a flusher task with a 2 ms timer on each worker cost 10 µs of CPU per
//!   request at one connection, a quarter of the request.)
//! - every other line (token refreshes, warnings, errors: rare, and read by operators and tests
//!   as they happen) is **urgent**: it wakes the writer thread at once, which writes it with
//!   whatever deferred lines wait before it.
//!
//! Lines are written whole and in the order they were appended. Nothing is dropped: past
//! [`CAPACITY`] bytes waiting (stderr not being read) the logging thread waits for the writer,
//! as `tracing_appender`'s lossless mode did. Dropping the [`FlushGuard`] writes out what is
//! buffered and stops the thread.
//! Must not: format lines, or decide what is logged (that is the subscriber's job in [`super`]).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Deferred bytes waiting that wake the writer thread before their batch is due.
pub const HIGH_WATER: usize = 64 * 1024;
/// Bytes waiting beyond which a logging thread waits for the writer (back-pressure).
pub const CAPACITY: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    closed: bool,
    /// An urgent line (or the high-water mark) asks the writer thread to write.
    urgent: bool,
    /// When the first deferred line landed in the empty buffer (they are written at most
    /// [`FLUSH_DELAY`] later).
    since: Option<Instant>,
    /// The writer thread waits without a deadline: the next deferred line must wake it.
    idle: bool,
    /// Logging threads waiting for room.
    blocked: usize,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread (urgent line, past the high-water mark, a deferred line while it
    /// is idle, or closed).
    wake: Condvar,
    /// Wakes logging threads waiting for room.
    room: Condvar,
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
    /// writer thread; a deferred one waits up to [`FLUSH_DELAY`] (or for the high-water mark).
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
        let mut wake = (urgent || high) && !state.urgent;
        state.urgent |= urgent || high;
        if !urgent && state.since.is_none() {
            state.since = Some(Instant::now());
            // Only an idle writer needs telling; one that waits with a deadline will look.
            wake |= std::mem::take(&mut state.idle);
        }
        drop(state);
        if wake {
            shared.wake.notify_one();
        }
    }
}

/// Takes the buffered bytes and writes them, holding the sink across both, so that two
/// writers (the writer thread, a logger after shutdown) cannot write batches out of order.
/// Says whether there was anything to write.
fn take_and_write(shared: &Shared) -> bool {
    let mut out = shared.out.lock().unwrap_or_else(|p| p.into_inner());
    let mut state = shared.lock();
    let batch = std::mem::take(&mut state.buf);
    state.urgent = false;
    state.since = None;
    let blocked = state.blocked > 0;
    drop(state);
    if blocked {
        shared.room.notify_all();
    }
    if batch.is_empty() {
        return false;
    }
    // Nothing sensible can be done about a failed write to stderr; keep serving.
    let _ = out.write_all(&batch);
    let _ = out.flush();
    true
}

fn write_batch(shared: &Shared, bytes: &[u8]) {
    let mut out = shared.out.lock().unwrap_or_else(|p| p.into_inner());
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// How long a deferred line may wait for the lines that follow it: the writer thread writes
/// them together at most this long after the first one.
pub const FLUSH_DELAY: Duration = Duration::from_millis(2);

thread_local! {
    /// Whether this thread's lines are deferred (set by [`defer_on_this_thread`]).
    static DEFERS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes the calling thread (a data-plane worker) defer its access lines: they wait for the
/// writer thread's next batch instead of waking it.
pub fn defer_on_this_thread() {
    DEFERS.with(|d| d.set(true));
}

/// Whether lines logged on this thread are deferred.
pub fn defers_on_this_thread() -> bool {
    DEFERS.with(std::cell::Cell::get)
}

/// The writer thread: writes when asked (urgent line, high-water mark, a logger held back, or
/// closing) or when deferred lines have waited [`FLUSH_DELAY`]; repeats until closed and empty.
fn drain(shared: &Shared) {
    // Just wrote a batch: more deferred lines are likely, so wait for them once without being
    // woken, and write what came (under load, the workers never wake this thread, and it wakes
    // once per batch).
    let mut linger = false;
    loop {
        let mut state = shared.lock();
        while !state.urgent && !state.closed && state.blocked == 0 {
            let now = Instant::now();
            if let Some(since) = state.since {
                let due = since + FLUSH_DELAY;
                if now >= due {
                    break;
                }
                state = wait_until(shared, state, due - now);
            } else if std::mem::take(&mut linger) {
                state = wait_until(shared, state, FLUSH_DELAY);
                if state.since.is_some() {
                    // Lines that came during the linger have waited less than FLUSH_DELAY:
                    // write them now (one wake-up per batch under load, not two).
                    break;
                }
            } else {
                state.idle = true;
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
                state.idle = false;
            }
        }
        let done = state.closed;
        drop(state);
        linger = take_and_write(shared);
        if done {
            // Lines appended after `closed` go straight to the sink.
            take_and_write(shared);
            return;
        }
    }
}

fn wait_until<'a>(
    shared: &'a Shared,
    state: MutexGuard<'a, State>,
    timeout: Duration,
) -> MutexGuard<'a, State> {
    match shared.wake.wait_timeout(state, timeout) {
        Ok((state, _)) => state,
        Err(p) => p.into_inner().0,
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

    /// Waits until the sink holds `len` bytes in all (or fails after 10 s).
    fn wait_for(sink: &Recorder, len: usize, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while sink.0.lock().expect("sink").concat().len() < len {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::yield_now();
        }
    }

    #[test]
    fn deferred_lines_wait_for_one_batch_and_urgent_lines_take_them_along() {
        let sink = Recorder::default();
        let (writer, guard) = start(sink.clone());
        let logged = Instant::now();
        std::thread::spawn({
            let writer = writer.clone();
            let sink = sink.clone();
            move || {
                defer_on_this_thread();
                assert!(defers_on_this_thread(), "this thread defers");
                writer.append(b"access 1\n", false);
                writer.append(b"access 2\n", false);
                let waiting = writer.shared.lock().buf.len();
                // Nothing is written before the batch is due (unless this thread was descheduled
                // past it).
                assert!(
                    (waiting == 18 && sink.0.lock().expect("sink").is_empty())
                        || logged.elapsed() >= FLUSH_DELAY,
                    "deferred lines stay buffered until the batch is due"
                );
            }
        })
        .join()
        .expect("worker thread");
        wait_for(&sink, 18, "the deferred lines were never written");
        assert!(
            logged.elapsed() >= FLUSH_DELAY,
            "written only once the batch was due"
        );
        assert_eq!(
            sink.0.lock().expect("sink").clone(),
            vec![b"access 1\naccess 2\n".to_vec()],
            "both lines go out in one write"
        );
        // The writer thread lingers after a batch: a deferred line now needs no wake-up.
        writer.append(b"access 3\n", false);
        assert!(!defers_on_this_thread(), "other threads do not defer");
        // An urgent line goes out at once, after the deferred one waiting before it.
        let urgent = Instant::now();
        writer.append(b"urgent\n", true);
        wait_for(&sink, 34, "the urgent line was never written");
        assert!(
            urgent.elapsed() < Duration::from_secs(5),
            "the urgent line did not wait for a batch"
        );
        assert_eq!(
            sink.0.lock().expect("sink").concat(),
            b"access 1\naccess 2\naccess 3\nurgent\n".to_vec(),
            "lines are written in order"
        );
        drop(guard);
    }

    #[test]
    fn a_deferred_line_after_a_quiet_spell_wakes_the_idle_writer() {
        let sink = Recorder::default();
        let (writer, guard) = start(sink.clone());
        // Let the writer thread settle into its idle wait (nothing was ever logged).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !writer.shared.lock().idle {
            assert!(Instant::now() < deadline, "the writer never went idle");
            std::thread::yield_now();
        }
        writer.append(b"access after a pause\n", false);
        assert!(
            !writer.shared.lock().idle,
            "the first deferred line takes the writer out of its idle wait"
        );
        wait_for(
            &sink,
            21,
            "a deferred line on an idle writer was never written",
        );
        // After the batch (and its linger) the writer is idle again, and the next line wakes it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !writer.shared.lock().idle {
            assert!(
                Instant::now() < deadline,
                "the writer never went idle again"
            );
            std::thread::yield_now();
        }
        writer.append(b"and another\n", false);
        wait_for(&sink, 33, "the second line was never written");
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
