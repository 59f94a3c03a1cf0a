//! The batching writer's tests: batching, order, the deferred lines' timer and back-pressure.

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
fn lines_from_many_threads_arrive_whole_in_order_per_thread_and_together_while_the_sink_is_busy() {
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
    let both_in_time = std::thread::spawn({
        let writer = writer.clone();
        let sink = sink.clone();
        move || {
            defer_on_this_thread();
            assert!(defers_on_this_thread(), "this thread defers");
            writer.append(b"access 1\n", false);
            writer.append(b"access 2\n", false);
            // Both lines were in the buffer before the first one's batch was due, unless this
            // thread was descheduled past it (a loaded CI machine can take that long).
            let in_time = logged.elapsed() < FLUSH_DELAY;
            let waiting = writer.shared.lock().buf.len();
            assert!(
                (waiting == 18 && sink.0.lock().expect("sink").is_empty()) || !in_time,
                "deferred lines stay buffered until the batch is due"
            );
            in_time
        }
    })
    .join()
    .expect("worker thread");
    wait_for(&sink, 18, "the deferred lines were never written");
    assert!(
        logged.elapsed() >= FLUSH_DELAY,
        "written only once the batch was due"
    );
    let writes = sink.0.lock().expect("sink").clone();
    if both_in_time {
        assert_eq!(
            writes,
            vec![b"access 1\naccess 2\n".to_vec()],
            "both lines go out in one write"
        );
    } else {
        assert_eq!(
            writes.concat(),
            b"access 1\naccess 2\n".to_vec(),
            "lines in order"
        );
    }
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

#[test]
fn a_written_batch_leaves_its_buffer_for_the_next_one() {
    let sink = Recorder::default();
    let (writer, guard) = start(sink.clone());
    let line = [b'x'; 1000];
    // Two urgent batches: the first one's buffer, emptied, is the buffer the third batch
    // collects in.
    writer.append(&line, true);
    wait_for(&sink, 1000, "the first batch was never written");
    writer.append(&line, true);
    wait_for(&sink, 2000, "the second batch was never written");
    {
        let state = writer.shared.lock();
        assert!(state.buf.is_empty(), "nothing waits");
        assert!(
            state.buf.capacity() >= line.len(),
            "the buffer keeps the first batch's capacity ({} bytes)",
            state.buf.capacity()
        );
    }
    writer.append(&line, true);
    wait_for(&sink, 3000, "the third batch was never written");
    drop(guard);
    let writes = sink.0.lock().expect("recorder").clone();
    assert_eq!(writes.len(), 3, "one write a batch");
    assert!(
        writes.iter().all(|w| w[..] == line[..]),
        "each batch is whole"
    );
}
