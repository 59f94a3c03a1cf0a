//! The log sink: a batching writer in front of stderr.
//!
//! The thread that logs a line appends it to one shared in-memory buffer (a mutex held for a
//! copy, no system call, no wake-up of another thread per line) and one writer thread writes the
//! buffer to stderr in batches: it wakes when the buffer stops being empty, lets access lines
//! gather for at most [`LINGER`] (less once [`HIGH_WATER`] bytes are waiting), then writes them
//! with one `write`. Every other line (token refreshes, warnings, errors: rare, and read by
//! operators and tests as they happen) is urgent: it is written at once, with whatever access
//! lines are waiting before it. With one access line per request, a per-line channel send and writer wake-up cost
//! more CPU than the request itself at one connection; batched, a line costs its formatting and
//! a copy. nginx's `access_log … buffer= flush=` makes the same trade.
//!
//! Nothing is dropped: past [`CAPACITY`] bytes waiting (stderr not being read) the logging
//! thread waits for the writer, as `tracing_appender`'s lossless mode did. Dropping the
//! [`FlushGuard`] writes out what is buffered and stops the thread. Must not: format lines, or
//! decide what is logged (that is the subscriber's job in [`super`]).

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Longest a line waits in the buffer before it is written.
pub const LINGER: Duration = Duration::from_millis(50);
/// Bytes waiting that make the writer write at once instead of lingering.
pub const HIGH_WATER: usize = 64 * 1024;
/// Bytes waiting beyond which a logging thread waits for the writer (back-pressure).
pub const CAPACITY: usize = 4 * 1024 * 1024;

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    closed: bool,
    /// An urgent line is waiting: write without lingering.
    urgent: bool,
    /// Logging threads waiting for room.
    blocked: usize,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer thread (buffer no longer empty, past the high-water mark, or closed).
    wake: Condvar,
    /// Wakes logging threads waiting for room.
    room: Condvar,
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
    let shared = Arc::new(Shared::default());
    let for_thread = shared.clone();
    let thread = std::thread::Builder::new()
        .name("zap-log-writer".into())
        .spawn(move || drain(&for_thread, out))
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
    /// Appends one formatted line (or any bytes) to the buffer; an `urgent` one is written
    /// without lingering.
    pub(crate) fn append(&self, bytes: &[u8], urgent: bool) {
        let shared = &*self.shared;
        let mut state = shared.lock();
        if state.closed {
            // After shutdown (or without a writer thread): straight to stderr.
            drop(state);
            let _ = std::io::stderr().lock().write_all(bytes);
            return;
        }
        while state.buf.len() + bytes.len() > CAPACITY && !state.buf.is_empty() && !state.closed {
            state.blocked += 1;
            shared.wake.notify_one();
            state = shared.room.wait(state).unwrap_or_else(|p| p.into_inner());
            state.blocked -= 1;
        }
        let before = state.buf.len();
        state.buf.extend_from_slice(bytes);
        let after = state.buf.len();
        state.urgent |= urgent;
        drop(state);
        // The writer sleeps until the buffer stops being empty, and lingers until the high-water
        // mark or an urgent line: only those transitions need a wake-up.
        if urgent || before == 0 || (before < HIGH_WATER && after >= HIGH_WATER) {
            shared.wake.notify_one();
        }
    }
}

/// The writer thread: waits for lines, lingers, writes a batch, repeats until closed and empty.
fn drain<W: Write>(shared: &Shared, mut out: W) {
    let mut spare = Vec::new();
    loop {
        let mut state = shared.lock();
        while state.buf.is_empty() && !state.closed {
            state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        if state.buf.is_empty() && state.closed {
            return;
        }
        let deadline = Instant::now() + LINGER;
        while state.buf.len() < HIGH_WATER && !state.closed && !state.urgent && state.blocked == 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            state = match shared.wake.wait_timeout(state, left) {
                Ok((s, _)) => s,
                Err(p) => p.into_inner().0,
            };
        }
        let batch = std::mem::replace(&mut state.buf, std::mem::take(&mut spare));
        state.urgent = false;
        let blocked = state.blocked > 0;
        drop(state);
        if blocked {
            shared.room.notify_all();
        }
        // Nothing sensible can be done about a failed write to stderr; keep the process serving.
        let _ = out.write_all(&batch);
        let _ = out.flush();
        spare = batch;
        spare.clear();
        if spare.capacity() > CAPACITY {
            spare = Vec::new();
        }
    }
}

impl Drop for FlushGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
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
    fn lines_from_many_threads_arrive_whole_in_order_per_thread_and_in_few_writes() {
        let sink = Recorder::default();
        let (writer, guard) = start(sink.clone());
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
            writes.len() < 1000,
            "8000 lines are written in batches, not one write each: {} writes",
            writes.len()
        );
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
