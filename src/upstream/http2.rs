//! HTTP/2 to the CRM API on the `h2` crate itself, without hyper's client layer.
//!
//! Why: measured with callgrind at 64 connections (bench/README.md), hyper's HTTP/2 client hands
//! every request through a channel to the connection's task, which spawns a task per request to
//! await the response and sends it back through a oneshot: about 6,000 instructions a request
//! (the task's allocation and moves alone were 2,400). Here the request's own task opens the
//! stream and awaits the response; the connection's task only drives the connection.
//!
//! Kept from hyper's client: its window sizes and limits (5 MiB connection and 2 MiB stream
//! windows, 16 KiB frames and header lists, a 1 MiB send buffer, no server push), PINGs every
//! 30 s while streams are open with 20 s for the answer, request bodies piped under flow control
//! (a chunk waits for stream capacity; the stream is reset when the body fails or the response is
//! dropped first), a stream reset by the server with `NO_ERROR` or `CANCEL` ends the response
//! body cleanly, and the response's `Content-Length` is its exact size hint.

use crate::web::body::ProxyBody;
use bytes::Bytes;
use h2::client::SendRequest;
use h2::{Ping, PingPong, Reason, RecvStream, SendStream};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tracing::debug;

const CONN_WINDOW: u32 = 5 * 1024 * 1024;
const STREAM_WINDOW: u32 = 2 * 1024 * 1024;
const MAX_FRAME: u32 = 16 * 1024;
const MAX_HEADER_LIST: u32 = 16 * 1024;
const MAX_SEND_BUFFER: usize = 1024 * 1024;
/// Streams the server may have opened to us and reset before we accepted them (as hyper).
const MAX_LOCAL_ERROR_RESETS: usize = 1024;
/// A connection with streams open sends a PING this often...
pub const KEEP_ALIVE: Duration = Duration::from_secs(30);
/// ...and is closed when the answer takes longer than this.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// What a connection's handles and its task share.
#[derive(Default)]
struct Shared {
    /// The connection's task has ended.
    closed: AtomicBool,
    /// Streams whose response has not ended yet (PINGs are sent only while there are some).
    open: AtomicUsize,
}

/// A request handle on one HTTP/2 connection (cheap to clone).
#[derive(Clone)]
pub struct H2Conn {
    send: SendRequest<Bytes>,
    shared: Arc<Shared>,
}

impl H2Conn {
    /// The connection has ended (closed by either side, or failed).
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Both handles are for the same connection.
    pub fn same(&self, other: &H2Conn) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

/// The HTTP/2 handshake on `io` (TLS with ALPN `h2`); the connection's task is spawned on the
/// calling thread's runtime.
pub async fn handshake<T>(io: T) -> Result<H2Conn, h2::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (send, mut connection) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONN_WINDOW)
        .max_frame_size(MAX_FRAME)
        .max_header_list_size(MAX_HEADER_LIST)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .enable_push(false)
        .handshake::<_, Bytes>(io)
        .await?;
    let shared = Arc::new(Shared::default());
    let pings = connection.ping_pong();
    let task_shared = shared.clone();
    tokio::spawn(async move {
        let ended = match pings {
            Some(pings) => tokio::select! {
                r = &mut connection => r.map_err(|e| e.to_string()),
                why = keep_alive(pings, &task_shared) => Err(why),
            },
            None => connection.await.map_err(|e| e.to_string()),
        };
        task_shared.closed.store(true, Ordering::Release);
        if let Err(e) = ended {
            debug!("upstream HTTP/2 connection ended: {e}");
        }
    });
    Ok(H2Conn { send, shared })
}

/// PINGs while streams are open; returns why the connection must close.
async fn keep_alive(mut pings: PingPong, shared: &Shared) -> String {
    loop {
        tokio::time::sleep(KEEP_ALIVE).await;
        if shared.open.load(Ordering::Acquire) == 0 {
            continue;
        }
        match tokio::time::timeout(KEEP_ALIVE_TIMEOUT, pings.ping(Ping::opaque())).await {
            Ok(Ok(_pong)) => {}
            Ok(Err(e)) => return format!("PING failed: {e}"),
            Err(_) => return format!("no PING answer within {} s", KEEP_ALIVE_TIMEOUT.as_secs()),
        }
    }
}

/// Why a request got no response.
pub enum SendFail {
    /// The connection could not take a new stream (closing, or failed): the request was not
    /// sent and is handed back.
    NotSent(Box<Request<ProxyBody>>, h2::Error),
    /// The server refused the stream unprocessed (a GOAWAY that did not cover it, or
    /// `REFUSED_STREAM`): the request may be sent again, on another connection.
    Refused(h2::Error),
    /// The stream failed after the request went out.
    Failed(h2::Error),
}

/// RFC 9113 §8.7: a stream above a GOAWAY's last stream id, or reset with `REFUSED_STREAM`, was
/// not processed by the server. (`h2` fails exactly the streams above the last id with the
/// remote GOAWAY's error.)
fn stream_failure(e: h2::Error) -> SendFail {
    if (e.is_go_away() && e.is_remote()) || e.reason() == Some(Reason::REFUSED_STREAM) {
        SendFail::Refused(e)
    } else {
        SendFail::Failed(e)
    }
}

/// Sends `request` (absolute URI, no connection-specific headers) on `conn` and awaits the
/// response head. A request body that is not empty is piped by a task of its own.
pub async fn send(
    conn: &H2Conn,
    request: Request<ProxyBody>,
) -> Result<Response<H2Body>, SendFail> {
    let mut sender = conn.send.clone();
    // Waits while the server's limit of concurrent streams is reached.
    if let Err(e) = poll_fn(|cx| sender.poll_ready(cx)).await {
        return Err(SendFail::NotSent(Box::new(request), e));
    }
    let (parts, body) = request.into_parts();
    let end_of_stream = body.is_end_stream();
    let (response, stream) = sender
        .send_request(Request::from_parts(parts, ()), end_of_stream)
        .map_err(SendFail::Failed)?;
    let open = Open::new(&conn.shared);
    let cancel = if end_of_stream {
        None
    } else {
        let (cancel, cancelled) = oneshot::channel();
        tokio::spawn(pipe(body, stream, cancelled));
        Some(cancel)
    };
    let response = response.await.map_err(stream_failure)?;
    let (parts, recv) = response.into_parts();
    let remaining = if recv.is_end_stream() {
        Some(0)
    } else {
        parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    };
    Ok(Response::from_parts(
        parts,
        H2Body {
            recv,
            remaining,
            data_done: false,
            _open: open,
            _cancel: cancel,
        },
    ))
}

/// Counts a stream as open until dropped.
struct Open(Arc<Shared>);

impl Open {
    fn new(shared: &Arc<Shared>) -> Open {
        shared.open.fetch_add(1, Ordering::AcqRel);
        Open(shared.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Pipes a request body into its stream; resets the stream when the body fails, when the server
/// resets it, or when the response (or the wait for it) is dropped first (`cancelled`).
async fn pipe(
    mut body: ProxyBody,
    mut stream: SendStream<Bytes>,
    cancelled: oneshot::Receiver<()>,
) {
    let ended = tokio::select! {
        r = pump(&mut body, &mut stream) => r,
        _ = cancelled => Err(Some(Reason::CANCEL)),
    };
    match ended {
        Ok(()) => {}
        Err(Some(reason)) => {
            debug!("upstream request body not sent to the end: {reason}");
            stream.send_reset(reason);
        }
        Err(None) => debug!("upstream request body stopped: the stream ended"),
    }
}

/// Sends the body's frames as stream capacity allows. `Err(Some(reason))`: reset the stream with
/// it; `Err(None)`: the stream is gone already.
async fn pump(body: &mut ProxyBody, stream: &mut SendStream<Bytes>) -> Result<(), Option<Reason>> {
    loop {
        let frame = tokio::select! {
            frame = poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)) => frame,
            reset = poll_fn(|cx| stream.poll_reset(cx)) => {
                if let Ok(reason) = reset {
                    debug!("upstream reset the request stream: {reason}");
                }
                return Err(None);
            }
        };
        let frame = match frame {
            None => return stream.send_data(Bytes::new(), true).map_err(|_| None),
            Some(Err(_)) => return Err(Some(Reason::INTERNAL_ERROR)),
            Some(Ok(frame)) => frame,
        };
        let data = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    stream.reserve_capacity(0);
                    return stream.send_trailers(trailers).map_err(|_| None);
                }
                continue;
            }
        };
        let end_of_stream = body.is_end_stream();
        if !data.is_empty() {
            // A claim of one byte, raised to the chunk's length by `send_data`: claiming the
            // whole chunk up front could pin connection window other streams need.
            stream.reserve_capacity(1);
            while stream.capacity() == 0 {
                match poll_fn(|cx| stream.poll_capacity(cx)).await {
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Err(None),
                }
            }
        }
        stream.send_data(data, end_of_stream).map_err(|_| None)?;
        if end_of_stream {
            return Ok(());
        }
    }
}

/// A stream reset after a complete response (`NO_ERROR`), or because we dropped it (`CANCEL`):
/// the body's end, not a failure.
fn clean_end(e: &h2::Error) -> bool {
    matches!(e.reason(), Some(Reason::NO_ERROR | Reason::CANCEL))
}

/// A response body on an HTTP/2 stream; gives the flow-control window back as data is read.
pub struct H2Body {
    recv: RecvStream,
    /// Bytes the `Content-Length` still promises.
    remaining: Option<u64>,
    data_done: bool,
    _open: Open,
    /// Dropped with the body: a request body still being piped then stops.
    _cancel: Option<oneshot::Sender<()>>,
}

impl Body for H2Body {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        let this = &mut *self;
        if !this.data_done {
            match ready!(this.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = this.recv.flow_control().release_capacity(data.len());
                    // `h2` itself fails a stream whose data overruns (or falls short of) its
                    // `Content-Length`; this only keeps the size hint.
                    if let Some(remaining) = &mut this.remaining {
                        *remaining = remaining.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) if clean_end(&e) => {
                    this.data_done = true;
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.data_done = true,
            }
        }
        match ready!(this.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) if clean_end(&e) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests;
