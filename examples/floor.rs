//! The floor of the proxy's protocol stack: the least a forwarder built from the same crates can
//! spend per request (issue 17, bench/README.md "The floor of the crate stack").
//!
//! It is the shape HAProxy is measured in, written with the proxy's crates and nothing of the
//! proxy: one thread with a single-threaded tokio runtime, hyper's HTTP/1.1 server for the
//! clients, one HTTP/2 connection (the `h2` crate, TLS by rustls with `ring`, certificate
//! verification and ALPN `h2`) to the upstream, a static `Authorization` header, response bodies
//! streamed back frame by frame. No policy, token, credits, requester checks, timers, limits,
//! metrics or access log; GET only (request bodies are not forwarded). Not for use: a benchmark
//! instrument.
//!
//! ```text
//! cargo build --release --example floor
//! target/release/examples/floor LISTEN UPSTREAM_ADDR SERVER_NAME CA_PEM TOKEN
//! ```

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, h2::Error>;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [listen, upstream, server_name, ca, token] = args.as_slice() else {
        return Err("usage: floor LISTEN UPSTREAM_ADDR SERVER_NAME CA_PEM TOKEN".into());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(listen, upstream, server_name, ca, token))
}

async fn serve(
    listen: &str,
    upstream: &str,
    server_name: &str,
    ca: &str,
    token: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut std::io::BufReader::new(std::fs::File::open(ca)?)) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(upstream).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())?;
    let io = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await?;
    let (send, connection) = h2::client::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("floor: upstream connection ended: {e}");
        }
    });
    let authority = http::uri::Authority::try_from(upstream)?;
    let authorization = http::HeaderValue::try_from(format!("Zoho-oauthtoken {token}"))?;
    let listener = TcpListener::bind(listen).await?;
    eprintln!("floor: listening on {listen}");
    loop {
        let (client, _) = listener.accept().await?;
        client.set_nodelay(true)?;
        let send = send.clone();
        let authority = authority.clone();
        let authorization = authorization.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                forward(
                    request,
                    send.clone(),
                    authority.clone(),
                    authorization.clone(),
                )
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(client), service)
                .await;
        });
    }
}

async fn forward(
    request: Request<Incoming>,
    send: h2::client::SendRequest<Bytes>,
    authority: http::uri::Authority,
    authorization: http::HeaderValue,
) -> Result<Response<Body>, Infallible> {
    match exchange(request, send, authority, authorization).await {
        Ok(response) => Ok(response),
        Err(e) => {
            let mut response = Response::new(
                http_body_util::Full::new(Bytes::from(format!("floor: {e}\n")))
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            );
            *response.status_mut() = http::StatusCode::BAD_GATEWAY;
            Ok(response)
        }
    }
}

async fn exchange(
    request: Request<Incoming>,
    send: h2::client::SendRequest<Bytes>,
    authority: http::uri::Authority,
    authorization: http::HeaderValue,
) -> Result<Response<Body>, h2::Error> {
    let (parts, _body) = request.into_parts();
    let mut uri = http::uri::Parts::default();
    uri.scheme = Some(http::uri::Scheme::HTTPS);
    uri.authority = Some(authority);
    uri.path_and_query = parts.uri.path_and_query().cloned();
    let mut upstream = Request::new(());
    *upstream.method_mut() = parts.method;
    *upstream.uri_mut() = http::Uri::from_parts(uri).unwrap_or_default();
    let headers = upstream.headers_mut();
    for (name, value) in &parts.headers {
        if name != http::header::HOST && name != http::header::CONNECTION {
            headers.append(name, value.clone());
        }
    }
    headers.insert(http::header::AUTHORIZATION, authorization);
    let mut send = send.ready().await?;
    let (response, _) = send.send_request(upstream, true)?;
    let (parts, body) = response.await?.into_parts();
    let body = http_body_util::StreamBody::new(futures_util::stream::unfold(
        body,
        |mut body| async move {
            let chunk = body.data().await?;
            Some((
                chunk.map(|data| {
                    let _ = body.flow_control().release_capacity(data.len());
                    Frame::data(data)
                }),
                body,
            ))
        },
    ));
    Ok(Response::from_parts(parts, body.boxed_unsync()))
}
