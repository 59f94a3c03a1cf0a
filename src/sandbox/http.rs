//! HTTP plumbing shared by the fake's two servers: the TLS accept loop (HTTP/1.1 and HTTP/2 via
//! hyper-util's auto builder), the response body type and small response builders.
//!
//! Owns: sockets, TLS handshakes, connection tasks and their shutdown. Must not: contain Zoho
//! behaviour (that lives in `accounts.rs` and `crm/`).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// Error type of streamed response bodies (an `Err` makes hyper abort the stream/connection).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Every response body the fake sends.
pub(crate) type FakeBody = BoxBody<Bytes, BoxError>;
/// Every response the fake sends.
pub(crate) type Resp = Response<FakeBody>;

/// `Content-Type` Zoho's accounts server sends (observed), reused for CRM JSON.
pub(crate) const JSON_UTF8: &str = "application/json;charset=UTF-8";

/// A body holding `bytes`.
pub(crate) fn full(bytes: impl Into<Bytes>) -> FakeBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// An empty body.
pub(crate) fn empty() -> FakeBody {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A response with `status` and `body`, no headers.
pub(crate) fn response(status: u16, body: FakeBody) -> Resp {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp
}

/// A JSON response (`application/json;charset=UTF-8`).
pub(crate) fn json(status: u16, value: &serde_json::Value) -> Resp {
    let mut resp = response(status, full(value.to_string()));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    resp
}

/// A JSON response whose body is given verbatim.
pub(crate) fn raw_json(status: u16, body: String) -> Resp {
    let mut resp = response(status, full(body));
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(JSON_UTF8));
    resp
}

/// An HTML error page.
pub(crate) fn html(status: u16, title: &str) -> Resp {
    let page = format!(
        "<!DOCTYPE html>\n<html><head><title>{title}</title></head>\
         <body><h1>{status} {title}</h1><p>fake Zoho</p></body></html>\n"
    );
    let mut resp = response(status, full(page));
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html;charset=UTF-8"),
    );
    resp
}

/// Accepts TLS connections on `listener` until `cancel` fires, serving each with `handler`.
///
/// Connection tasks live in a `JoinSet` owned by the accept task, so ending the accept task
/// (cancellation or abort) aborts every connection too.
pub(crate) fn spawn_server<H, F>(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    cancel: CancellationToken,
    on_connect: Arc<dyn Fn() + Send + Sync>,
    handler: H,
) -> JoinHandle<()>
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Resp> + Send + 'static,
{
    let acceptor = TlsAcceptor::from(tls);
    tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            while conns.try_join_next().is_some() {}
            let accepted = tokio::select! {
                () = cancel.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            let Ok((tcp, _peer)) = accepted else {
                // Accept errors (e.g. EMFILE) are transient: back off briefly, keep serving.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let handler = handler.clone();
            let on_connect = on_connect.clone();
            conns.spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    // Handshake refused (e.g. the client rejected an expired cert): nothing to do.
                    return;
                };
                on_connect();
                let svc = service_fn(move |req| {
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
            });
        }
    })
}
