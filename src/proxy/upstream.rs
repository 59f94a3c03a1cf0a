//! The pooled HTTPS client to the CRM API: rustls (webpki roots + `ca_file`), HTTP/2 when the
//! server offers it through ALPN, keep-alive pool, connect timeout, no proxy from the environment
//! (the connector dials the URI's host directly), no redirects (the client never follows them),
//! no decompression.
//!
//! `upstream_protocol` (per account, default `auto`) picks HTTP/1.1 or HTTP/2 per request; see
//! [`Upstream`].
//!
//! Each data-plane worker has its own client (and so its own pooled connections), so an upstream
//! connection is only ever driven by the thread that serves the requests on it; see
//! [`crate::workers`].

use super::body::ProxyBody;
use crate::config::UpstreamProtocol;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The upstream client type.
pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, ProxyBody>;

/// One account's upstream clients: per data-plane worker (plus one for any other thread) an
/// HTTP/2-capable client and, for `upstream_protocol: auto`, an HTTP/1.1 one, with the count of
/// that worker's requests in flight upstream that decides between them.
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
    h2: Arc<[UpstreamClient]>,
    h1: Option<Arc<[UpstreamClient]>>,
    in_flight: Arc<[AtomicUsize]>,
}

/// Counts a request in flight upstream on its worker until dropped (kept with the response
/// body, so a request counts until its last byte is relayed).
pub struct InFlightUpstream {
    counters: Arc<[AtomicUsize]>,
    slot: usize,
}

impl Drop for InFlightUpstream {
    fn drop(&mut self) {
        self.counters[self.slot].fetch_sub(1, Ordering::Relaxed);
    }
}

impl Upstream {
    /// Builds the clients for one trust configuration and `workers` data-plane workers.
    pub fn build(
        ca_file: Option<&Path>,
        connect_timeout: Duration,
        workers: usize,
        protocol: UpstreamProtocol,
    ) -> Result<Upstream, String> {
        let tls = crate::tls::client_config(ca_file, &[])?;
        let build = |http2: bool| -> Arc<[UpstreamClient]> {
            (0..=workers)
                .map(|_| client(tls.clone(), connect_timeout, http2))
                .collect()
        };
        let (h2, h1) = match protocol {
            UpstreamProtocol::Auto => (build(true), Some(build(false))),
            UpstreamProtocol::Http2 => (build(true), None),
            UpstreamProtocol::Http1 => (build(false), None),
        };
        Ok(Upstream {
            h2,
            h1,
            in_flight: (0..=workers).map(|_| AtomicUsize::new(0)).collect(),
        })
    }

    /// The client for the calling thread's next request, and its in-flight count.
    pub fn client(&self) -> (&UpstreamClient, InFlightUpstream) {
        let slot = crate::workers::current().map_or(0, |i| i + 1) % self.h2.len();
        let before = self.in_flight[slot].fetch_add(1, Ordering::Relaxed);
        let guard = InFlightUpstream {
            counters: self.in_flight.clone(),
            slot,
        };
        let client = match &self.h1 {
            Some(h1) if before == 0 => &h1[slot],
            _ => &self.h2[slot],
        };
        (client, guard)
    }
}

fn client(tls: rustls::ClientConfig, connect_timeout: Duration, http2: bool) -> UpstreamClient {
    let mut http = HttpConnector::new();
    // The https connector below dials TLS itself; plain http is allowed only for loopback
    // stand-ins, which config validation enforces.
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1();
    let https = if http2 {
        builder.enable_http2().wrap_connector(http)
    } else {
        builder.wrap_connector(http)
    };
    // An idle HTTP/1.1 connection has no GOAWAY to say the server is closing it: retire it well
    // before the usual server keep-alive timeouts (60–75 s), so a reused one is rarely a
    // connection the server is just closing.
    let idle = if http2 { 90 } else { 30 };
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(idle))
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(Some(Duration::from_secs(30)))
        .http2_keep_alive_while_idle(false)
        .build(https)
}
