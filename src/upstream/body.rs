//! The body of an upstream response, over either protocol.

use super::http2::H2Body;
use crate::web::body::BodyError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use std::pin::Pin;
use std::task::{Context, Poll};

/// A response body from the CRM API.
pub enum UpstreamBody {
    /// From an HTTP/1.1 connection.
    Http1(Incoming),
    /// From an HTTP/2 stream.
    Http2(H2Body),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            UpstreamBody::Http1(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            UpstreamBody::Http2(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpstreamBody::Http1(b) => b.is_end_stream(),
            UpstreamBody::Http2(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpstreamBody::Http1(b) => b.size_hint(),
            UpstreamBody::Http2(b) => b.size_hint(),
        }
    }
}
