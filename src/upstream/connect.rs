//! Dialing the CRM API: DNS, TCP (connect timeout, `TCP_NODELAY`, keep-alive probes), TLS with
//! the account's trust and an ALPN offer, then the HTTP/1.1 or HTTP/2 handshake the server's ALPN
//! answer picks. TLS reads the socket through a read-ahead buffer ([`super::readahead`]). The
//! connection's task is spawned on the calling thread's runtime, so it is
//! driven by the worker that serves the requests on it.
//!
//! No proxy from the environment is used: the URI's host is dialed directly. Plain `http` is for
//! loopback stand-ins only (config validation enforces that) and always speaks HTTP/1.1.

use super::http2::{self, H2Conn};
use super::readahead::ReadAhead;
use crate::web::body::ProxyBody;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tracing::debug;

/// A freshly made connection: its request handle.
pub enum Connected {
    /// The server answered ALPN with `http/1.1` (or there was no TLS).
    Http1(http1::SendRequest<ProxyBody>),
    /// The server chose `h2`.
    Http2(H2Conn),
}

/// At which step a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The host name did not resolve.
    Dns,
    /// Every address refused the connection.
    Refused,
    /// TCP failed otherwise (timeout, unreachable).
    Tcp,
    /// The TLS handshake failed (untrusted, expired or wrong-name certificate, protocol).
    Tls,
    /// The HTTP handshake failed.
    Http,
}

/// Why a connection could not be made. Its text names the host and the cause, never a secret
/// (nothing secret is known while dialing).
#[derive(Debug)]
pub struct ConnectError {
    /// The failed step.
    pub stage: Stage,
    detail: String,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for ConnectError {}

fn failed(stage: Stage, detail: String) -> Arc<ConnectError> {
    Arc::new(ConnectError { stage, detail })
}

/// How to dial: shared by every connection of one account.
pub struct Dialer {
    /// ALPN `http/1.1` only.
    pub tls_h1: tokio_rustls::TlsConnector,
    /// ALPN `h2`, then `http/1.1`.
    pub tls_h2: tokio_rustls::TlsConnector,
    /// Longest wait for one TCP connect.
    pub connect_timeout: Duration,
}

/// TCP keep-alive probes start after this much silence.
const TCP_KEEP_ALIVE: Duration = Duration::from_secs(60);

impl Dialer {
    /// Connects to `host:port` (`https` when `tls`), offering HTTP/2 when `offer_h2`.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        tls: bool,
        offer_h2: bool,
    ) -> Result<Connected, Arc<ConnectError>> {
        let tcp = self.tcp(host, port).await?;
        if !tls {
            return handshake_h1(TokioIo::new(tcp)).await;
        }
        let name = rustls::pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| failed(Stage::Tls, format!("{host} is not a valid TLS name: {e}")))?;
        let connector = if offer_h2 { &self.tls_h2 } else { &self.tls_h1 };
        let stream = connector
            .connect(name, ReadAhead::new(tcp))
            .await
            .map_err(|e| failed(Stage::Tls, format!("TLS handshake with {host} failed: {e}")))?;
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            let conn = http2::handshake(stream)
                .await
                .map_err(|e| failed(Stage::Http, format!("HTTP/2 handshake failed: {e}")))?;
            Ok(Connected::Http2(conn))
        } else {
            handshake_h1(TokioIo::new(stream)).await
        }
    }

    /// TCP to the first address of `host` that accepts, each tried for `connect_timeout`.
    async fn tcp(&self, host: &str, port: u16) -> Result<TcpStream, Arc<ConnectError>> {
        let addrs: Vec<SocketAddr> = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| failed(Stage::Dns, format!("DNS lookup of {host} failed: {e}")))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(failed(
                Stage::Dns,
                format!("DNS lookup of {host} returned no address"),
            ));
        }
        let mut last = None;
        for addr in addrs {
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEP_ALIVE);
                    let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                    return Ok(stream);
                }
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                    last = Some(failed(
                        Stage::Refused,
                        format!("connection to {addr} refused"),
                    ));
                }
                Ok(Err(e)) => {
                    last = Some(failed(Stage::Tcp, format!("connect to {addr} failed: {e}")));
                }
                Err(_) => {
                    last = Some(failed(
                        Stage::Tcp,
                        format!(
                            "connect to {addr} timed out after {} ms",
                            self.connect_timeout.as_millis()
                        ),
                    ));
                }
            }
        }
        Err(last.unwrap_or_else(|| failed(Stage::Tcp, format!("cannot connect to {host}"))))
    }
}

async fn handshake_h1<I>(io: I) -> Result<Connected, Arc<ConnectError>>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(io)
        .await
        .map_err(|e| failed(Stage::Http, format!("HTTP/1.1 handshake failed: {e}")))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            debug!("upstream HTTP/1.1 connection ended: {e}");
        }
    });
    Ok(Connected::Http1(sender))
}
