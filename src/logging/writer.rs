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

/// Deferred bytes waiting that wake the writer thread before their batch is due (above a
/// [`FLUSH_DELAY`] of lines at 70,000 requests a second, so a worker does not wake it under load).
pub const HIGH_WATER: usize = 256 * 1024;
/// Bytes waiting beyond which a logging thread waits for the writer (back-pressure).
pub const CAPACITY: usize = 4 * 1024 * 1024;

/// Largest emptied batch buffer kept for reuse (a bigger one, from a stall, is freed).
const SPARE_MAX: usize = 1024 * 1024;

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// The last batch's buffer, emptied: it becomes `buf` at the next take, so appends reuse
    /// its capacity instead of growing a new buffer from nothing every batch (and no buffer a
    /// worker grew is freed on the writer thread).
    spare: Vec<u8>,
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
    let mut batch = match state.buf.is_empty() {
        true => Vec::new(),
        false => {
            let spare = std::mem::take(&mut state.spare);
            std::mem::replace(&mut state.buf, spare)
        }
    };
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
    if batch.capacity() <= SPARE_MAX {
        batch.clear();
        shared.lock().spare = batch;
    }
    true
}

fn write_batch(shared: &Shared, bytes: &[u8]) {
    let mut out = shared.out.lock().unwrap_or_else(|p| p.into_inner());
    let _ = out.write_all(bytes);
    let _ = out.flush();
}

/// How long a deferred line may wait for the lines that follow it: the writer thread writes
/// them together at most this long after the first one. 10 ms rather than 2: under load the
/// writer wakes once a period, and its wake-ups cost about as much as its writes (issue 17's
/// fifteenth round: the writer thread's CPU a request 1.7 -> 0.8 us at one connection, 1.0 ->
/// 0.4 us at 64).
pub const FLUSH_DELAY: Duration = Duration::from_millis(10);

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
mod tests;
