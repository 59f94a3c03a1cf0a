//! One worker's idle upstream connections, by host: at most one shared HTTP/2 connection (and
//! the dial of it in progress, which every request that wants it awaits) and a stack of idle
//! HTTP/1.1 connections, most recently used on top.
//!
//! A slot is only ever used by its own worker's thread (slot 0 serves every other thread), so
//! its lock is uncontended; it is never held across an `.await`.

use super::connect::ConnectError;
use super::http2::H2Conn;
use crate::web::body::ProxyBody;
use futures_util::future::{BoxFuture, Shared};
use http::uri::Authority;
use http::HeaderValue;
use hyper::client::conn::http1;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// An idle HTTP/1.1 connection is retired after this long: HTTP/1.1 has no GOAWAY to announce a
/// close, so keep well under the usual server keep-alive timeouts (60–75 s) and a reused
/// connection is rarely one the server is just closing.
pub const H1_IDLE: Duration = Duration::from_secs(30);
/// An HTTP/2 connection unused this long is replaced on the next request.
pub const H2_IDLE: Duration = Duration::from_secs(90);
/// At most this many idle HTTP/1.1 connections are kept per host and worker.
const MAX_IDLE: usize = 1024;

/// The dial of a host's HTTP/2 connection, shared by every request waiting for it: the sender
/// when the server chose `h2`, `None` when it answered `http/1.1`.
pub type H2Dial = Shared<BoxFuture<'static, Result<Option<H2Sender>, Arc<ConnectError>>>>;
/// A request handle on an HTTP/2 connection.
pub type H2Sender = H2Conn;
/// A request handle on an HTTP/1.1 connection.
pub type H1Sender = http1::SendRequest<ProxyBody>;

/// Which server a connection goes to.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    /// `https` (else plain `http`, loopback stand-ins only).
    pub tls: bool,
    /// Host and port as the URI has them.
    pub authority: Authority,
}

/// One host's connections on one worker.
pub struct Host {
    key: Key,
    /// The `Host` header HTTP/1.1 requests carry (the authority without a default port).
    pub host_header: HeaderValue,
    /// The shared HTTP/2 connection and when a request last took it.
    pub h2: Option<(H2Sender, Instant)>,
    /// Its dial, while one is under way.
    pub h2_dial: Option<H2Dial>,
    /// The server answered an `h2` offer with `http/1.1`: use HTTP/1.1 from then on.
    pub h2_refused: bool,
    /// Idle HTTP/1.1 connections, when each became idle, and whether it is new (never used: hyper
    /// takes a first request before the connection's task has said it is ready).
    idle: Vec<(H1Sender, Instant, bool)>,
}

impl Host {
    /// The most recently used idle HTTP/1.1 connection that can take a request now. Closed and
    /// expired ones are dropped; one still finishing its last response is left for later.
    pub fn take_idle(&mut self, now: Instant) -> Option<H1Sender> {
        self.idle
            .retain(|(s, since, _)| !s.is_closed() && now.duration_since(*since) < H1_IDLE);
        let ready = self
            .idle
            .iter()
            .rposition(|(s, _, new)| *new || s.is_ready())?;
        Some(self.idle.remove(ready).0)
    }

    /// Keeps an HTTP/1.1 connection for the next request (`new`: it has carried none yet).
    pub fn put_idle(&mut self, sender: H1Sender, now: Instant, new: bool) {
        if !sender.is_closed() && self.idle.len() < MAX_IDLE {
            self.idle.push((sender, now, new));
        }
    }

    /// The shared HTTP/2 connection if it is open and not stale (marking it used).
    pub fn h2_now(&mut self, now: Instant) -> Option<H2Sender> {
        match &mut self.h2 {
            Some((sender, used)) if !sender.is_closed() && now.duration_since(*used) < H2_IDLE => {
                *used = now;
                Some(sender.clone())
            }
            Some(_) => {
                self.h2 = None;
                None
            }
            None => None,
        }
    }
}

/// One worker's hosts.
#[derive(Default)]
pub struct Slot {
    hosts: Vec<Host>,
}

impl Slot {
    /// The entry for `key`, made on first use.
    pub fn host(&mut self, key: &Key) -> &mut Host {
        // The byte-exact comparison first: the proxy builds every URI of a host from the same
        // text, and `Authority`'s own `==` lower-cases byte by byte (about 450 instructions a
        // request in callgrind).
        let same =
            |h: &Host| h.key.tls == key.tls && h.key.authority.as_str() == key.authority.as_str();
        let found = (self.hosts.iter().position(same))
            .or_else(|| self.hosts.iter().position(|h| h.key == *key));
        match found {
            Some(i) => &mut self.hosts[i],
            None => {
                self.hosts.push(Host {
                    key: key.clone(),
                    host_header: host_header(key),
                    h2: None,
                    h2_dial: None,
                    h2_refused: false,
                    idle: Vec::new(),
                });
                let last = self.hosts.len() - 1;
                &mut self.hosts[last]
            }
        }
    }
}

/// Locks a slot; a panic elsewhere while it was held leaves plain data, still usable.
pub fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    slot.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `Host` for HTTP/1.1: the authority, without the scheme's default port.
fn host_header(key: &Key) -> HeaderValue {
    let default = if key.tls { 443 } else { 80 };
    let text = match key.authority.port_u16() {
        Some(p) if p == default => key.authority.host(),
        _ => key.authority.as_str(),
    };
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(tls: bool, authority: &'static str) -> Key {
        Key {
            tls,
            authority: Authority::from_static(authority),
        }
    }

    #[test]
    fn host_header_leaves_out_only_the_default_port() {
        assert_eq!(
            host_header(&key(true, "www.zohoapis.com")),
            "www.zohoapis.com"
        );
        assert_eq!(
            host_header(&key(true, "www.zohoapis.com:443")),
            "www.zohoapis.com"
        );
        assert_eq!(host_header(&key(true, "127.0.0.1:8443")), "127.0.0.1:8443");
        assert_eq!(host_header(&key(false, "127.0.0.1:80")), "127.0.0.1");
        assert_eq!(host_header(&key(false, "[::1]:9000")), "[::1]:9000");
    }

    #[test]
    fn hosts_are_kept_apart_by_scheme_and_authority() {
        let mut slot = Slot::default();
        slot.host(&key(true, "a.example")).h2_refused = true;
        assert!(!slot.host(&key(false, "a.example")).h2_refused);
        assert!(!slot.host(&key(true, "b.example")).h2_refused);
        assert!(slot.host(&key(true, "A.example")).h2_refused);
        assert_eq!(slot.hosts.len(), 3);
    }
}
