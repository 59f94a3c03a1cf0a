//! Body plumbing: streaming wrappers that enforce the size limit and idle timeouts, count bytes,
//! drop request trailers, and report how a body ended, plus bounded collection for the cases an
//! issue allows (policy bodies, replay of small bodies, 401 inspection).

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// A request body must deliver at least this many bytes (or end) within every
/// `limits.body_idle_timeout`, else it counts as idle. Resetting the idle timer on every frame
/// would let a client trickle one byte per interval and hold a connection and an upstream request
/// for ever (catalogue F2); 1 KiB per period (34 bytes/s at the 30 s default) is far below any
/// real client.
pub const MIN_BODY_PROGRESS: u64 = 1024;

/// Adds `len` received bytes to `progress`; true (and `progress` restarts) once the body has
/// delivered [`MIN_BODY_PROGRESS`] since the idle timer was last reset.
fn made_progress(progress: &mut u64, len: usize) -> bool {
    *progress += len as u64;
    if *progress >= MIN_BODY_PROGRESS {
        *progress = 0;
        return true;
    }
    false
}

/// Error type of proxied bodies.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;
/// The body type the proxy sends and returns.
pub type ProxyBody = BoxBody<Bytes, BodyError>;

/// A body error with a fixed message (never carries data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyFault {
    /// More bytes than `limits.max_body`.
    #[error("request body exceeds limits.max_body")]
    TooLarge,
    /// No bytes for `limits.body_idle_timeout`.
    #[error("body idle timeout")]
    Idle,
    /// The peer's body was malformed or the connection broke.
    #[error("body stream broken")]
    Broken,
}

impl BodyFault {
    fn code(self) -> u8 {
        match self {
            BodyFault::TooLarge => 1,
            BodyFault::Idle => 2,
            BodyFault::Broken => 3,
        }
    }
}

/// Shared view of how a request body is doing, read by the handler after an upstream error.
#[derive(Debug, Default)]
pub struct BodyWatch {
    fault: AtomicU8,
    finished: AtomicBool,
    /// Data frames handed to the upstream so far.
    frames: AtomicU64,
    notify: Notify,
}

impl BodyWatch {
    /// The fault that ended the body, if any.
    pub fn fault(&self) -> Option<BodyFault> {
        match self.fault.load(Ordering::Acquire) {
            1 => Some(BodyFault::TooLarge),
            2 => Some(BodyFault::Idle),
            3 => Some(BodyFault::Broken),
            _ => None,
        }
    }

    fn set_fault(&self, fault: BodyFault) {
        self.fault.store(fault.code(), Ordering::Release);
        self.finish();
    }

    fn finish(&self) {
        self.finished.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Data frames the upstream has taken so far: the request deadline restarts while it grows.
    pub fn frames_sent(&self) -> u64 {
        self.frames.load(Ordering::Acquire)
    }

    fn frame_sent(&self) {
        self.frames.fetch_add(1, Ordering::AcqRel);
    }

    /// Marks a body that needs no streaming as finished.
    pub fn mark_finished(&self) {
        self.finish();
    }

    /// Whether the body has ended already (a body-less request is marked so before it is sent).
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Acquire)
    }

    /// Resolves once the body has ended (fully sent, or failed).
    pub async fn finished(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_finished() {
                return;
            }
            notified.await;
        }
    }
}

/// A streaming request body: limit, idle timeout (with [`MIN_BODY_PROGRESS`]), trailers dropped,
/// optional already-read prefix.
pub struct RequestBody {
    inner: Incoming,
    prefix: Option<Bytes>,
    seen: u64,
    max: u64,
    idle: Duration,
    sleep: Pin<Box<Sleep>>,
    /// Bytes received since the idle timer was last reset.
    progress: u64,
    watch: Arc<BodyWatch>,
    done: bool,
}

impl RequestBody {
    /// Wraps `inner`; `prefix` are bytes already read from it (counted against `max`).
    pub fn new(
        inner: Incoming,
        prefix: Option<Bytes>,
        max: u64,
        idle: Duration,
        watch: Arc<BodyWatch>,
    ) -> RequestBody {
        let seen = prefix.as_ref().map_or(0, |p| p.len() as u64);
        RequestBody {
            inner,
            prefix,
            seen,
            max,
            idle,
            sleep: Box::pin(tokio::time::sleep(idle)),
            progress: 0,
            watch,
            done: false,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(prefix) = this.prefix.take() {
            if !prefix.is_empty() {
                this.watch.frame_sent();
                return Poll::Ready(Some(Ok(Frame::data(prefix))));
            }
        }
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    match frame.into_data() {
                        Ok(data) => {
                            this.seen += data.len() as u64;
                            if made_progress(&mut this.progress, data.len()) {
                                let deadline = Instant::now() + this.idle;
                                this.sleep.as_mut().reset(deadline);
                            }
                            if this.seen > this.max {
                                this.done = true;
                                this.watch.set_fault(BodyFault::TooLarge);
                                return Poll::Ready(Some(Err(Box::new(BodyFault::TooLarge))));
                            }
                            this.watch.frame_sent();
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        // Request trailers are never forwarded (an `Authorization` trailer above all).
                        Err(_trailers) => continue,
                    }
                }
                Poll::Ready(Some(Err(_))) => {
                    this.done = true;
                    this.watch.set_fault(BodyFault::Broken);
                    return Poll::Ready(Some(Err(Box::new(BodyFault::Broken))));
                }
                Poll::Ready(None) => {
                    this.done = true;
                    this.watch.finish();
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    if this.sleep.as_mut().poll(cx).is_ready() {
                        this.done = true;
                        this.watch.set_fault(BodyFault::Idle);
                        return Poll::Ready(Some(Err(Box::new(BodyFault::Idle))));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
            || (self.prefix.as_ref().is_none_or(|p| p.is_empty()) && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let mut hint = self.inner.size_hint();
        if let Some(p) = &self.prefix {
            let extra = p.len() as u64;
            hint.set_lower(hint.lower() + extra);
            if let Some(upper) = hint.upper() {
                hint.set_upper(upper + extra);
            }
        }
        hint
    }
}

/// Called once when a response body ends or is dropped: (bytes sent, completed cleanly).
pub type OnFinish = Box<dyn FnOnce(u64, bool) + Send + Sync>;

/// A streaming response body: idle timeout, byte count, and a completion callback (which owns
/// whatever must live as long as the body, such as the upstream concurrency permit).
pub struct ResponseBody<B> {
    inner: B,
    idle: Duration,
    /// Created on the first wait only: a small response that arrives in one go never arms a timer.
    sleep: Option<Pin<Box<Sleep>>>,
    bytes: u64,
    /// The body's exact length when known (Content-Length), to tell a complete body from a cut one.
    expected: Option<u64>,
    clean: bool,
    on_finish: Option<OnFinish>,
}

impl<B> ResponseBody<B> {
    /// Wraps `inner`.
    pub fn new(inner: B, idle: Duration, on_finish: OnFinish) -> ResponseBody<B>
    where
        B: Body,
    {
        let expected = inner.size_hint().exact();
        ResponseBody {
            expected,
            inner,
            idle,
            sleep: None,
            bytes: 0,
            clean: false,
            on_finish: Some(on_finish),
        }
    }

    /// Marks a response that has no body by definition (`204`, `304`, any answer to `HEAD`) as
    /// complete from the start: hyper never polls such a body, it only drops it, and an empty
    /// list (Zoho answers `204`) must not be logged as a truncated transfer.
    pub fn without_content(mut self) -> ResponseBody<B> {
        self.clean = true;
        self
    }

    fn finish(&mut self) {
        if let Some(f) = self.on_finish.take() {
            f(self.bytes, self.clean);
        }
    }
}

impl<B> Drop for ResponseBody<B> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BodyError>,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if this.on_finish.is_none() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(sleep) = this.sleep.as_mut() {
                    sleep.as_mut().reset(Instant::now() + this.idle);
                }
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
                // With a Content-Length, hyper stops polling once the last byte is handed over and
                // drops the body without seeing its end (an HTTP/2 upstream flags the end later):
                // record completion here.
                if this.inner.is_end_stream() || this.expected == Some(this.bytes) {
                    this.clean = true;
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            // Propagate the error: hyper then aborts the client connection without a clean end
            // of message, so a truncated upstream body is never presented as complete.
            Poll::Ready(Some(Err(e))) => {
                this.finish();
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.clean = true;
                this.finish();
                Poll::Ready(None)
            }
            Poll::Pending => {
                let idle = this.idle;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if sleep.as_mut().poll(cx).is_ready() {
                    this.finish();
                    return Poll::Ready(Some(Err(Box::new(BodyFault::Idle))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// What a bounded read found.
pub enum Collected<B> {
    /// The whole body, within the cap.
    Complete(Bytes),
    /// More than the cap: the bytes read so far and the rest of the stream.
    Exceeded(Bytes, B),
}

/// Reads a body up to `cap` bytes; it must deliver [`MIN_BODY_PROGRESS`] bytes (or end) within
/// every `idle` period. Trailers are dropped.
pub async fn collect_capped<B>(
    mut body: B,
    cap: u64,
    idle: Duration,
) -> Result<Collected<B>, BodyFault>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut buf = BytesMut::new();
    let mut deadline = Instant::now() + idle;
    let mut progress = 0;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => return Err(BodyFault::Idle),
            Ok(None) => return Ok(Collected::Complete(buf.freeze())),
            Ok(Some(Err(_))) => return Err(BodyFault::Broken),
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if made_progress(&mut progress, data.len()) {
                deadline = Instant::now() + idle;
            }
            buf.extend_from_slice(&data);
            if buf.len() as u64 > cap {
                return Ok(Collected::Exceeded(buf.freeze(), body));
            }
        }
    }
}

/// A complete body from bytes.
pub fn full(bytes: Bytes) -> ProxyBody {
    Full::new(bytes).map_err(|never| match never {}).boxed()
}

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trickle_is_not_progress_but_a_kilobyte_is() {
        let mut progress = 0;
        for i in 0..MIN_BODY_PROGRESS - 1 {
            assert!(
                !made_progress(&mut progress, 1),
                "byte {i} alone does not reset the idle timer"
            );
        }
        assert!(made_progress(&mut progress, 1), "the 1024th byte does");
        assert_eq!(progress, 0, "the count restarts after a reset");
        assert!(
            made_progress(&mut progress, 64 * 1024),
            "one large frame is progress at once"
        );
    }
}
