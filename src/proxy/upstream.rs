//! The pooled HTTPS client to the CRM API: rustls (webpki roots + `ca_file`), HTTP/2 when the
//! server offers it through ALPN, keep-alive pool, connect timeout, no proxy from the environment
//! (the connector dials the URI's host directly), no redirects (the client never follows them),
//! no decompression.

use super::body::ProxyBody;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::path::Path;
use std::time::Duration;

/// The upstream client type.
pub type UpstreamClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, ProxyBody>;

/// Builds the client for one trust configuration.
pub fn build(ca_file: Option<&Path>, connect_timeout: Duration) -> Result<UpstreamClient, String> {
    let tls = crate::tls::client_config(ca_file, &[])?;
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
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(1024)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(Some(Duration::from_secs(30)))
        .http2_keep_alive_while_idle(false)
        .build(https))
}
