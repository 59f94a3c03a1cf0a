//! The HTTPS client to the CRM API, on hyper's connection API with a pool of its own: rustls
//! (webpki roots + `ca_file`), HTTP/2 when the server offers it through ALPN, keep-alive,
//! connect timeout, no proxy from the environment (the URI's host is dialed directly), no
//! redirects, no decompression.
//!
//! Each data-plane worker has its own pool slot, so an upstream connection is only ever driven by
//! the thread that serves the requests on it (see [`crate::rt::workers`]). Why not hyper-util's
//! pooled client: measured at one connection, its checkout (a hash map keyed by host with SipHash,
//! its waiter lists, the per-request task that puts an HTTP/1.1 connection back) cost about 12,000
//! instructions a request, a seventh of the proxy's whole cost (bench/README.md). Here a request
//! takes its worker's connection with one uncontended lock and gives an HTTP/1.1 one back when its
//! response body ends.
//!
//! `upstream_protocol` (per account, default `auto`) picks HTTP/1.1 or HTTP/2 per request; see
//! [`Upstream`].

mod body;
mod connect;
mod http2;
mod pool;
mod readahead;
pub mod slots;

use crate::config::UpstreamProtocol;
use crate::web::body::BodyError;
use crate::web::body::ProxyBody;
use connect::{Connected, Dialer, Stage};
use futures_util::FutureExt;
use http::header::HOST;
use http::{Request, Response, Uri};
use pool::{H1Sender, H2Sender, Key, Slot};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use body::UpstreamBody;
pub use connect::ConnectError;

/// One account's upstream connections: per data-plane worker (plus one slot for any other
/// thread) a pool slot and the count of that worker's requests in flight upstream, which decides
/// the protocol under `auto`.
///
/// Why `auto` sends a request that is alone on its worker over HTTP/1.1: measured at one
/// connection (bench/README.md), an HTTP/2 exchange costs about 13,000 more instructions than an
/// HTTP/1.1 one (HPACK-decoding response headers that the server does not index, stream state,
/// flow control, the per-request task hyper spawns), and buys nothing without another request to
/// share the connection with. As soon as requests overlap, HTTP/2 multiplexes them on one
/// connection and batches their frames into fewer TLS records and system calls, which is the
/// cheaper shape from a few connections up.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    dialer: Dialer,
    protocol: UpstreamProtocol,
    slots: Box<[Mutex<Slot>]>,
    in_flight: Box<[AtomicUsize]>,
}

/// Counts a request in flight upstream on its worker until dropped (kept with the response
/// body, so a request counts until its last byte is relayed); an HTTP/1.1 connection goes back
/// to the pool with it.
pub struct InFlightUpstream {
    inner: Arc<Inner>,
    slot: usize,
    h1: Option<(H1Sender, Key)>,
}

impl Drop for InFlightUpstream {
    fn drop(&mut self) {
        self.inner.in_flight[self.slot].fetch_sub(1, Ordering::Relaxed);
        if let Some((sender, key)) = self.h1.take() {
            pool::lock(&self.inner.slots[self.slot])
                .host(&key)
                .put_idle(sender, Instant::now(), false);
        }
    }
}

/// Why an upstream exchange failed.
#[derive(Debug)]
pub enum UpstreamError {
    /// No connection could be made.
    Connect(Arc<ConnectError>),
    /// The connection failed before a response arrived.
    Send(BodyError),
    /// The server refused the request without processing it (HTTP/2 GOAWAY or
    /// `REFUSED_STREAM`): sending it again is safe.
    Refused(BodyError),
    /// The request URI has no host (never for requests the proxy builds).
    NoHost,
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "connect failed: {e}"),
            UpstreamError::Send(e) => write!(f, "request failed: {e}"),
            UpstreamError::Refused(e) => write!(f, "request refused unprocessed: {e}"),
            UpstreamError::NoHost => f.write_str("the request URI has no host"),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UpstreamError::Connect(e) => Some(&**e),
            UpstreamError::Send(e) | UpstreamError::Refused(e) => Some(&**e),
            UpstreamError::NoHost => None,
        }
    }
}

impl UpstreamError {
    /// A short, secret-free description for the client.
    pub fn reason(&self) -> &'static str {
        match self {
            UpstreamError::Connect(e) => match e.stage {
                Stage::Tls => "TLS handshake failed (certificate not trusted, expired or for another name); the token was not sent",
                Stage::Refused => "connection refused",
                Stage::Dns => "DNS lookup failed",
                Stage::Tcp | Stage::Http => "connect failed",
            },
            UpstreamError::Send(_) | UpstreamError::NoHost => {
                "the connection failed before a response arrived"
            }
            UpstreamError::Refused(_) => {
                "the API server refused the request unprocessed (it was closing the connection)"
            }
        }
    }

    /// The server did not process the request: the caller may send it again.
    pub fn unprocessed(&self) -> bool {
        matches!(self, UpstreamError::Refused(_))
    }
}

/// A connection taken for one request, and whether it had carried requests before (only then is
/// a request it refused before sending retried on a new one).
enum Lease {
    H1(H1Sender, http::HeaderValue, bool),
    H2(H2Sender, bool),
}

impl Upstream {
    /// Builds the client for one trust configuration and `workers` data-plane workers.
    pub fn build(
        ca_file: Option<&Path>,
        connect_timeout: Duration,
        workers: usize,
        protocol: UpstreamProtocol,
    ) -> Result<Upstream, String> {
        let tls = |alpn: &[&[u8]]| -> Result<tokio_rustls::TlsConnector, String> {
            Ok(Arc::new(crate::util::tls::client_config(ca_file, alpn)?).into())
        };
        let dialer = Dialer {
            tls_h1: tls(&[b"http/1.1"])?,
            tls_h2: tls(&[b"h2", b"http/1.1"])?,
            connect_timeout,
        };
        Ok(Upstream {
            inner: Arc::new(Inner {
                dialer,
                protocol,
                slots: (0..=workers).map(|_| Mutex::default()).collect(),
                in_flight: (0..=workers).map(|_| AtomicUsize::new(0)).collect(),
            }),
        })
    }

    /// Sends `request` (absolute URI) on the calling worker's connection to its host; the
    /// returned guard must be kept until the response body ends.
    pub async fn send(
        &self,
        mut request: Request<ProxyBody>,
    ) -> Result<(Response<UpstreamBody>, InFlightUpstream), UpstreamError> {
        let inner = &self.inner;
        let slot = crate::rt::workers::current().map_or(0, |i| i + 1) % inner.slots.len();
        let before = inner.in_flight[slot].fetch_add(1, Ordering::Relaxed);
        let mut guard = InFlightUpstream {
            inner: inner.clone(),
            slot,
            h1: None,
        };
        let key = Key {
            tls: request.uri().scheme() == Some(&http::uri::Scheme::HTTPS),
            authority: request
                .uri()
                .authority()
                .cloned()
                .ok_or(UpstreamError::NoHost)?,
        };
        // The absolute URI, while an HTTP/1.1 attempt has the request in origin form (put back
        // if a retry goes out on HTTP/2). Moved, not cloned: most requests never need it.
        let mut absolute: Option<Uri> = None;
        let want_h2 = key.tls
            && match inner.protocol {
                UpstreamProtocol::Http1 => false,
                UpstreamProtocol::Http2 => true,
                UpstreamProtocol::Auto => before > 0,
            };
        let mut retried = false;
        loop {
            // How it failed; `Some(request)`: refused before it was sent, so it may go on a new
            // connection. A response returns at once.
            let (back, e): (Option<Request<ProxyBody>>, BodyError) =
                match self.lease(slot, &key, want_h2).await? {
                    Lease::H2(conn, reused) => {
                        if let Some(uri) = absolute.take() {
                            *request.uri_mut() = uri;
                            request.headers_mut().remove(HOST);
                        }
                        match http2::send(&conn, request).await {
                            Ok(response) => return Ok((response.map(UpstreamBody::Http2), guard)),
                            Err(http2::SendFail::NotSent(back, e)) => {
                                // The connection takes no new streams (a GOAWAY, or it failed):
                                // the next lease dials a new one, unless another request has
                                // already replaced it.
                                let mut s = pool::lock(&inner.slots[slot]);
                                let host = s.host(&key);
                                if host.h2.as_ref().is_some_and(|(c, _)| c.same(&conn)) {
                                    host.h2 = None;
                                }
                                drop(s);
                                (reused.then_some(*back), e.into())
                            }
                            Err(http2::SendFail::Refused(e)) => {
                                return Err(UpstreamError::Refused(e.into()))
                            }
                            Err(http2::SendFail::Failed(e)) => (None, e.into()),
                        }
                    }
                    Lease::H1(mut sender, host, reused) => {
                        if absolute.is_none() {
                            let origin = origin_form(request.uri());
                            absolute = Some(std::mem::replace(request.uri_mut(), origin));
                        }
                        request.headers_mut().insert(HOST, host);
                        match sender.try_send_request(request).await {
                            Ok(response) => {
                                guard.h1 = Some((sender, key));
                                return Ok((response.map(UpstreamBody::Http1), guard));
                            }
                            Err(mut e) => {
                                let back = e.take_message().filter(|_| reused);
                                (back, e.into_error().into())
                            }
                        }
                    }
                };
            match back {
                // The connection closed before taking the request (an idle one the server was
                // just closing): once, on a new connection.
                Some(back) if !retried => {
                    retried = true;
                    request = back;
                }
                _ => return Err(UpstreamError::Send(e)),
            }
        }
    }

    /// A connection for the next request: the shared HTTP/2 one when `want_h2` (dialing it, or
    /// waiting for its dial, when there is none) unless the server refused `h2`; else an idle
    /// HTTP/1.1 one, or a new one.
    async fn lease(&self, slot: usize, key: &Key, want_h2: bool) -> Result<Lease, UpstreamError> {
        let inner = &self.inner;
        let dial = {
            let mut s = pool::lock(&inner.slots[slot]);
            let host = s.host(key);
            let now = Instant::now();
            if want_h2 && !host.h2_refused {
                if let Some(sender) = host.h2_now(now) {
                    return Ok(Lease::H2(sender, true));
                }
                Some(match &host.h2_dial {
                    Some(dial) => dial.clone(),
                    None => {
                        let dial = self.dial_h2(slot, key.clone()).boxed().shared();
                        host.h2_dial = Some(dial.clone());
                        dial
                    }
                })
            } else {
                if let Some(sender) = host.take_idle(now) {
                    return Ok(Lease::H1(sender, host.host_header.clone(), true));
                }
                None
            }
        };
        if let Some(dial) = dial {
            if let Some(sender) = dial.await.map_err(UpstreamError::Connect)? {
                return Ok(Lease::H2(sender, false));
            }
            // The server answered `http/1.1`: the dial left that connection idle in the pool.
            let mut s = pool::lock(&inner.slots[slot]);
            let host = s.host(key);
            if let Some(sender) = host.take_idle(Instant::now()) {
                return Ok(Lease::H1(sender, host.host_header.clone(), false));
            }
        }
        // Boxed: a dial's futures (TLS state, handshakes) are large, and kept inline they would
        // be copied with every request's future although most requests never dial.
        let dial = Box::pin(self.dial(key, false));
        match dial.await.map_err(UpstreamError::Connect)? {
            Connected::Http1(sender) => {
                let host = pool::lock(&inner.slots[slot]).host(key).host_header.clone();
                Ok(Lease::H1(sender, host, false))
            }
            Connected::Http2(sender) => Ok(Lease::H2(sender, false)),
        }
    }

    /// Dials the shared HTTP/2 connection of `key` on `slot` and records the outcome there.
    fn dial_h2(
        &self,
        slot: usize,
        key: Key,
    ) -> impl std::future::Future<Output = Result<Option<H2Sender>, std::sync::Arc<ConnectError>>>
           + Send
           + 'static {
        let this = self.clone();
        async move {
            let connected = this.dial(&key, true).await;
            let mut s = pool::lock(&this.inner.slots[slot]);
            let host = s.host(&key);
            host.h2_dial = None;
            match connected? {
                Connected::Http2(sender) => {
                    host.h2 = Some((sender.clone(), Instant::now()));
                    Ok(Some(sender))
                }
                Connected::Http1(sender) => {
                    host.h2_refused = true;
                    host.put_idle(sender, Instant::now(), true);
                    Ok(None)
                }
            }
        }
    }

    async fn dial(&self, key: &Key, offer_h2: bool) -> Result<Connected, Arc<ConnectError>> {
        let host = key.authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = key
            .authority
            .port_u16()
            .unwrap_or(if key.tls { 443 } else { 80 });
        self.inner
            .dialer
            .connect(host, port, key.tls, offer_h2)
            .await
    }
}

/// `/path?query` of an absolute URI (HTTP/1.1 sends the origin form).
fn origin_form(uri: &Uri) -> Uri {
    match uri.path_and_query() {
        Some(pq) => Uri::from(pq.clone()),
        None => Uri::from_static("/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_future_stays_small_because_dials_are_boxed() {
        let upstream = Upstream::build(None, Duration::from_secs(1), 1, UpstreamProtocol::Auto)
            .expect("builds");
        let future = upstream.send(Request::new(crate::web::body::empty()));
        let size = std::mem::size_of_val(&future);
        assert!(size < 2048, "Upstream::send's future is {size} bytes");
    }
}
