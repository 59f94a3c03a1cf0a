//! The HTTP/2 client against an `h2` server over an in-memory pipe.
use super::*;
use crate::web::body::{self, BodyError};
use futures_util::StreamExt;
use http_body_util::{BodyExt, StreamBody};

/// A client handle on one end of an in-memory pipe and the `h2` server connection on the
/// other (the server must be polled by the test).
async fn pair(
    window: u32,
) -> (
    H2Conn,
    h2::server::Connection<tokio::io::DuplexStream, Bytes>,
) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let server = tokio::spawn(async move {
        h2::server::Builder::new()
            .initial_window_size(window)
            .handshake(server)
            .await
            .expect("server handshake")
    });
    let conn = handshake(client).await.expect("client handshake");
    (conn, server.await.expect("server task"))
}

/// Sends `request` and expects a response head.
async fn response_to(conn: &H2Conn, request: Request<ProxyBody>) -> Response<H2Body> {
    match send(conn, request).await {
        Ok(response) => response,
        Err(_) => panic!("no response"),
    }
}

/// The whole body of `response`, which must end without an error.
async fn whole(response: Response<H2Body>) -> Bytes {
    response
        .into_body()
        .collect()
        .await
        .expect("the body ends without an error")
        .to_bytes()
}

fn get() -> Request<ProxyBody> {
    let mut request = Request::new(body::empty());
    *request.uri_mut() = "https://api.test/crm/v8/Leads".parse().expect("uri");
    request
}

fn streaming(chunks: Vec<Bytes>) -> ProxyBody {
    BodyExt::boxed(StreamBody::new(
        futures_util::stream::iter(chunks).map(|c| Ok::<_, BodyError>(Frame::data(c))),
    ))
}

#[tokio::test]
async fn a_response_carries_its_length_data_and_trailers() {
    let (conn, mut server) = pair(65_535).await;
    let serve = tokio::spawn(async move {
        let (_request, mut respond) = server.accept().await.expect("a stream").expect("ok");
        let response = Response::builder()
            .header("content-length", "5")
            .body(())
            .expect("response");
        let mut stream = respond.send_response(response, false).expect("head");
        stream
            .send_data(Bytes::from_static(b"hello"), false)
            .expect("data");
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-done", http::HeaderValue::from_static("yes"));
        stream.send_trailers(trailers).expect("trailers");
        // Keep the connection alive until the client has read everything.
        while server.accept().await.is_some() {}
    });
    let mut body = response_to(&conn, get()).await.into_body();
    assert_eq!(
        body.size_hint().exact(),
        Some(5),
        "Content-Length is the exact size"
    );
    let frame = body.frame().await.expect("a frame").expect("ok");
    assert_eq!(frame.into_data().expect("data"), "hello");
    assert_eq!(body.size_hint().exact(), Some(0), "nothing more promised");
    let frame = body.frame().await.expect("a frame").expect("ok");
    assert_eq!(frame.into_trailers().expect("trailers")["x-done"], "yes");
    assert!(body.frame().await.is_none(), "then the end");
    drop((body, conn));
    serve.await.expect("server");
}

#[tokio::test]
async fn a_request_body_larger_than_the_window_is_sent_whole_under_flow_control() {
    // A 16 KiB stream window and 1 MiB of body: 64 windows' worth, sent as the server
    // releases capacity.
    let (conn, mut server) = pair(16 * 1024).await;
    let serve = tokio::spawn(async move {
        let (request, mut respond) = server.accept().await.expect("a stream").expect("ok");
        let reader = tokio::spawn(async move {
            let mut body = request.into_body();
            let mut got = 0usize;
            while let Some(chunk) = body.data().await {
                let chunk = chunk.expect("chunk");
                got += chunk.len();
                let _ = body.flow_control().release_capacity(chunk.len());
            }
            let response = Response::builder().body(()).expect("response");
            let mut stream = respond.send_response(response, false).expect("head");
            stream
                .send_data(Bytes::from(got.to_string()), true)
                .expect("data");
        });
        while server.accept().await.is_some() {}
        reader.await.expect("reader");
    });
    let chunks: Vec<Bytes> = (0..16).map(|_| Bytes::from(vec![7u8; 64 * 1024])).collect();
    let mut request = get();
    *request.method_mut() = http::Method::POST;
    *request.body_mut() = streaming(chunks);
    let body = whole(response_to(&conn, request).await).await;
    assert_eq!(body, "1048576", "the server received every byte");
    drop(conn);
    serve.await.expect("server");
}

/// A request body that sends one chunk and then waits for ever (until its sender drops).
fn endless() -> (
    tokio::sync::mpsc::UnboundedSender<Result<Frame<Bytes>, BodyError>>,
    ProxyBody,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Result<Frame<Bytes>, BodyError>>();
    tx.send(Ok(Frame::data(Bytes::from_static(b"part"))))
        .expect("queue");
    let frames = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|frame| (frame, rx))
    });
    (tx, BodyExt::boxed(StreamBody::new(frames)))
}

#[tokio::test]
async fn an_answer_before_the_request_body_ended_then_no_error_reset_is_a_clean_response() {
    // RFC 9113 §8.1: a server may answer completely and then stop the request body with
    // RST_STREAM(NO_ERROR).
    let (conn, mut server) = pair(65_535).await;
    let (answered_tx, answered) = oneshot::channel::<()>();
    let serve = tokio::spawn(async move {
        let (_request, mut respond) = server.accept().await.expect("a stream").expect("ok");
        let response = Response::builder().status(413).body(()).expect("response");
        let mut stream = respond.send_response(response, false).expect("head");
        stream
            .send_data(Bytes::from_static(b"too big"), true)
            .expect("data");
        // Reset once the answer is out (a reset queued behind unsent frames drops them).
        let reset = async move {
            let _ = answered.await;
            respond.send_reset(Reason::NO_ERROR);
        };
        let connection = async { while server.accept().await.is_some() {} };
        tokio::join!(reset, connection);
    });
    let (tx, body) = endless();
    let mut request = get();
    *request.method_mut() = http::Method::POST;
    *request.body_mut() = body;
    let response = response_to(&conn, request).await;
    assert_eq!(response.status(), 413);
    let _ = answered_tx.send(());
    assert_eq!(whole(response).await, "too big");
    drop((tx, conn));
    serve.await.expect("server");
}

#[tokio::test]
async fn a_refused_stream_is_reported_as_refused_and_other_resets_as_failures() {
    let (conn, mut server) = pair(65_535).await;
    let serve = tokio::spawn(async move {
        let (_first, mut respond) = server.accept().await.expect("a stream").expect("ok");
        respond.send_reset(Reason::REFUSED_STREAM);
        let (_second, mut respond) = server.accept().await.expect("a stream").expect("ok");
        respond.send_reset(Reason::INTERNAL_ERROR);
        while server.accept().await.is_some() {}
    });
    assert!(matches!(
        send(&conn, get()).await,
        Err(SendFail::Refused(_))
    ));
    assert!(matches!(send(&conn, get()).await, Err(SendFail::Failed(_))));
    drop(conn);
    serve.await.expect("server");
}

#[tokio::test]
async fn dropping_the_wait_for_the_answer_resets_a_request_body_still_being_sent() {
    let (conn, mut server) = pair(65_535).await;
    let (reset_tx, reset_rx) = oneshot::channel();
    let (got_tx, got_rx) = oneshot::channel::<()>();
    let serve = tokio::spawn(async move {
        let (request, _respond) = server.accept().await.expect("a stream").expect("ok");
        let reader = tokio::spawn(async move {
            let mut body = request.into_body();
            let mut outcome = None;
            let mut got = Some(got_tx);
            while let Some(chunk) = body.data().await {
                match chunk {
                    Ok(c) => {
                        let _ = body.flow_control().release_capacity(c.len());
                        if let Some(got) = got.take() {
                            let _ = got.send(());
                        }
                    }
                    Err(e) => {
                        outcome = e.reason();
                        break;
                    }
                }
            }
            let _ = reset_tx.send(outcome);
        });
        while server.accept().await.is_some() {}
        reader.await.expect("reader");
    });
    let (tx, body) = endless();
    let mut request = get();
    *request.method_mut() = http::Method::POST;
    *request.body_mut() = body;
    // Once the server has the first chunk, abandon the request (as the proxy does when its
    // client goes away): the wait for the answer is dropped.
    tokio::select! {
        _ = send(&conn, request) => panic!("the server never answers"),
        got = got_rx => got.expect("the server read the first chunk"),
    }
    let reason = reset_rx.await.expect("the server saw the body end");
    assert_eq!(reason, Some(Reason::CANCEL), "the stream was reset");
    drop((tx, conn));
    serve.await.expect("server");
}
