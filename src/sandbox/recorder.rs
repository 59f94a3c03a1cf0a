//! Recording of requests as the fake servers receive them: headers at arrival, then the body
//! streamed through SHA-256 with only a bounded head kept in memory.
//!
//! Owns: building [`RecordedRequest`]s and reading request bodies. Must not: decide how a
//! request is answered, or keep more than `keep` bytes of any body (1 GiB uploads must not grow
//! the fake's memory).

use std::sync::Mutex;

use bytes::Bytes;
use http::request::Parts;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use sha2::{Digest, Sha256};

use super::control::{lock, RecordedRequest, RequestLog, Shared};
use super::ledger::to_hex;

/// How much of each body a record keeps (`body_prefix`).
pub(crate) const PREFIX_BYTES: usize = 64 * 1024;

/// A request body after streaming it through the hasher.
#[derive(Debug)]
pub(crate) struct Captured {
    pub len: u64,
    pub sha256: String,
    /// The whole body if it is at most `keep` bytes and was read to its end.
    pub content: Option<Bytes>,
}

/// Appends the request's head to `log` (body fields filled in by [`drain`]); returns its
/// sequence number.
pub(crate) fn record_start(shared: &Shared, log: &Mutex<RequestLog>, parts: &Parts) -> u64 {
    let headers = parts
        .headers
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    let rec = RecordedRequest {
        method: parts.method.as_str().to_owned(),
        path_and_query: parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".to_owned()),
        headers,
        body_len: 0,
        body_sha256: to_hex(&Sha256::digest(b"")),
        body_prefix: Vec::new(),
        version: format!("{:?}", parts.version),
        body_complete: false,
    };
    let seq = lock(log).push(rec);
    shared.notify();
    seq
}

/// Reads the body to its end (or the client's abort), hashing as it goes and keeping at most
/// `keep` bytes, then completes record `seq` in `log`.
pub(crate) async fn drain(
    shared: &Shared,
    log: &Mutex<RequestLog>,
    seq: u64,
    mut body: Incoming,
    keep: usize,
) -> Captured {
    let keep = keep.max(PREFIX_BYTES);
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut head: Vec<u8> = Vec::new();
    let mut complete = true;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            complete = false;
            break;
        };
        if let Ok(data) = frame.into_data() {
            hasher.update(&data);
            len += data.len() as u64;
            let room = keep.saturating_sub(head.len());
            head.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    let sha256 = to_hex(&hasher.finalize());
    let prefix = head[..head.len().min(PREFIX_BYTES)].to_vec();
    lock(log).update(seq, |r| {
        r.body_len = len;
        r.body_sha256 = sha256.clone();
        r.body_prefix = prefix;
        r.body_complete = complete;
    });
    shared.notify();
    let whole = complete && head.len() as u64 == len;
    Captured {
        len,
        sha256,
        content: whole.then(|| Bytes::from(head)),
    }
}
