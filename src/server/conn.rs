//! One client connection: its settings (header timeout, write deadline), hyper's HTTP/1.1
//! builder, the write deadline wrapper, and graceful draining.

use crate::rt::timer::ConnTimer;
use hyper::body::Incoming;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// Largest request head (start line + headers) accepted; beyond it hyper answers 431.
pub const MAX_HEADER_BYTES: usize = 96 * 1024;

/// Per-connection settings of one listener, read when a connection is accepted.
#[derive(Clone, Debug)]
pub struct ConnSettings {
    /// hyper's header read timeout (also cuts idle keep-alive connections).
    pub header_timeout: Duration,
    /// Longest time a write to the client may wait: a client that stops reading a response is
    /// disconnected after it, which ends the upstream exchange and frees its slot.
    pub write_timeout: Duration,
    /// `unix.allowed_uids`: the peers a Unix-socket listener serves (empty: any).
    pub allowed_uids: Arc<[u32]>,
}

pub(super) fn http1(settings: &ConnSettings) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        // One tokio timer per connection, not one per request: see crate::rt::timer.
        .timer(ConnTimer::default())
        .header_read_timeout(settings.header_timeout)
        .keep_alive(true)
        .half_close(false)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_HEADER_BYTES + 8192);
    builder
}

/// Decrements the open-connection gauge when a connection ends.
pub(super) struct ConnGuard(pub(super) prometheus_client::metrics::gauge::Gauge);
impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A client socket whose writes may wait at most `limit`: when the client stops reading and the
/// socket buffer stays full that long, the write fails with `TimedOut` and hyper closes the
/// connection (dropping the response body, and with it the upstream stream and slot). The timer is
/// armed only while a write is pending, so writes that complete at once cost nothing.
pub(super) struct WriteDeadline<I> {
    io: I,
    limit: Duration,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl<I> WriteDeadline<I> {
    pub(super) fn new(io: I, limit: Duration) -> WriteDeadline<I> {
        WriteDeadline {
            io,
            limit,
            timer: None,
            armed: false,
        }
    }

    /// After the inner write said `Pending`: arms the timer on the first such answer since the
    /// last progress, and fails once it fires.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        if !self.armed {
            let deadline = tokio::time::Instant::now() + self.limit;
            self.armed = true;
            match self.timer.as_mut() {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let fired = self
            .timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        if fired {
            Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not read the response within the write timeout",
            )))
        } else {
            Poll::Pending
        }
    }

    fn progress<T>(
        &mut self,
        result: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        match result {
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx),
        }
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for WriteDeadline<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for WriteDeadline<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        self.progress(r, cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.progress(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.io).poll_flush(cx);
        self.progress(r, cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.io).poll_shutdown(cx);
        self.progress(r, cx)
    }
}

/// A served connection, type-erased over the socket kind.
pub(super) trait GracefulConn: Future<Output = Result<(), hyper::Error>> + Send {
    fn shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S, B> GracefulConn for hyper::server::conn::http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

pub(super) struct ServedConn;
impl ServedConn {
    pub(super) fn boxed<C: GracefulConn + 'static>(c: C) -> std::pin::Pin<Box<dyn GracefulConn>> {
        Box::pin(c)
    }
}

pub(super) async fn run_connection(
    mut conn: std::pin::Pin<Box<dyn GracefulConn>>,
    drain: CancellationToken,
) {
    let result = crate::rt::drain::run_until_drained(conn.as_mut(), &drain, |c| c.shutdown()).await;
    if let Err(e) = result {
        debug!("connection ended: {e}");
    }
}
