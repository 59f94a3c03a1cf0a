//! The pooled HTTPS client to the CRM API: rustls (webpki roots + `ca_file`), HTTP/2 when the
//! server offers it through ALPN, keep-alive pool, connect timeout, no proxy from the environment
//! (the connector dials the URI's host directly), no redirects (the client never follows them),
//! no decompression.
//!
//! Each data-plane worker has its own client (and so its own pooled connections), so an upstream
//! connection is only ever driven by the thread that serves the requests on it; see
//! [`crate::workers`].

use super::body::ProxyBody;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// The upstream client type.
pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, ProxyBody>;

/// One account's upstream clients: one per data-plane worker, plus one for any other thread.
#[derive(Clone)]
pub struct Upstream {
    clients: Arc<[UpstreamClient]>,
}

impl Upstream {
    /// Builds the clients for one trust configuration and `workers` data-plane workers.
    pub fn build(
        ca_file: Option<&Path>,
        connect_timeout: Duration,
        workers: usize,
    ) -> Result<Upstream, String> {
        let tls = crate::tls::client_config(ca_file, &[])?;
        let clients = (0..=workers)
            .map(|_| client(tls.clone(), connect_timeout))
            .collect();
        Ok(Upstream { clients })
    }

    /// The client of the calling thread's worker.
    pub fn client(&self) -> &UpstreamClient {
        let slot = crate::workers::current().map_or(0, |i| i + 1);
        &self.clients[slot % self.clients.len()]
    }
}

fn client(tls: rustls::ClientConfig, connect_timeout: Duration) -> UpstreamClient {
    let mut http = HttpConnector::new();
    // The https connector below dials TLS itself; plain http is allowed only for loopback
    // stand-ins, which config validation enforces.
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(Some(Duration::from_secs(30)))
        .http2_keep_alive_while_idle(false)
        .build(https)
}
