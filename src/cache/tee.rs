//! The response body of a cache miss: streams Zoho's body to the client frame by frame, unchanged
//! and undelayed, while keeping a copy of at most the entry cap; when the body ends complete,
//! the copy is stored.
//!
//! Must not: buffer beyond the cap, hold a frame back, or store a body that broke off.

use super::Fill;
use crate::web::body::{BodyError, ProxyBody};
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::pin::Pin;
use std::task::{Context, Poll};

/// A body copied (bounded) into the cache as it streams.
pub(super) struct Tee {
    pub(super) inner: ProxyBody,
    /// The copy so far; `None` once it passed the cap or the body failed.
    pub(super) copy: Option<BytesMut>,
    pub(super) cap: u64,
    /// What to store, taken when the body ends complete.
    pub(super) pending: Option<(Fill, HeaderMap, u64)>,
}

impl Tee {
    fn keep(&mut self, data: &Bytes) {
        if let Some(copy) = &mut self.copy {
            if (copy.len() + data.len()) as u64 > self.cap {
                self.copy = None;
            } else {
                copy.extend_from_slice(data);
            }
        }
    }

    fn finish(&mut self) {
        if let (Some(copy), Some((fill, headers, credits))) =
            (self.copy.take(), self.pending.take())
        {
            fill.store(headers, copy.freeze(), credits);
        }
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.keep(data);
                }
                // The last frame: hyper may not poll again once the body says it has ended.
                if this.inner.is_end_stream() {
                    this.finish();
                }
            }
            Poll::Ready(Some(Err(_))) => this.copy = None,
            Poll::Ready(None) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
