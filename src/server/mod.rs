//! Listeners (TCP or Unix socket), the accept loops, the connection cap and graceful drain.
//!
//! Connections are HTTP/1.1 only (no h2c, no upgrades: a `CONNECT` or `Upgrade` can never become a
//! tunnel), with hyper's header-read timeout driven by a real timer, bounded header size, and
//! keep-alive. On shutdown the accept loops stop (new connections are refused), open connections
//! finish their in-flight request and close.
//!
//! [`Serving`] is what every listener shares (settings, metrics, the shutdown signals, the task
//! tracker); [`Plane`] says where one listener's connections run. `listener.rs` binds and
//! accepts, `conn.rs` serves one connection.

mod conn;
mod listener;

pub use conn::{ConnSettings, MAX_HEADER_BYTES};
pub use listener::{Listener, UnixSocketGuard};

use crate::access::{PeerCred, Transport};
use crate::metrics::Metrics;
use crate::rt::timer::ConnTimer;
use crate::rt::workers::Workers;
use conn::{http1, run_connection, ConnGuard, ServedConn, WriteDeadline};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use listener::{accept, Accepted};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

/// A listener's request handler: called with how the client connected, the connection's
/// request deadlines and the request; cheap to clone into each connection.
pub trait Handler<B>:
    Fn(Transport, ConnTimer, hyper::Request<Incoming>) -> Self::Answer + Clone + Send + Sync + 'static
{
    /// The handler's future.
    type Answer: Future<Output = Result<hyper::Response<B>, std::convert::Infallible>>
        + Send
        + 'static;
}

impl<F, Fut, B> Handler<B> for F
where
    F: Fn(Transport, ConnTimer, hyper::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<hyper::Response<B>, std::convert::Infallible>> + Send + 'static,
{
    type Answer = Fut;
}

/// What the accept loops of every listener share.
#[derive(Clone)]
pub struct Serving {
    /// The connection settings in force, read as each connection is accepted (reloadable).
    pub settings: Arc<dyn Fn() -> ConnSettings + Send + Sync>,
    /// Connection gauges and refusal counters.
    pub metrics: Arc<Metrics>,
    /// Stops accepting.
    pub stop: CancellationToken,
    /// Asks open connections to finish their request and close.
    pub drain: CancellationToken,
    /// Tracks the accept loops and every connection task.
    pub tracker: TaskTracker,
}

/// Where one listener's connections are served.
pub struct Plane {
    /// The listener kind for metrics and logs (`proxy`, `account`, `admin`).
    pub name: &'static str,
    /// The data-plane workers to deal connections to (`None`: the accepting runtime).
    pub workers: Option<Arc<Workers>>,
    /// `limits.max_connections` (`None`: uncapped): a connection past it is closed at once.
    pub slots: Option<Arc<Semaphore>>,
}

impl Serving {
    /// Starts `listener`'s accept loop as a tracked task: each connection is served with
    /// `service` on `plane` until [`Serving::stop`] fires.
    pub fn spawn<F, B>(&self, listener: Listener, plane: Plane, service: F)
    where
        F: Handler<B>,
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.tracker
            .spawn(self.clone().accept_loop(listener, plane, service));
    }

    async fn accept_loop<F, B>(self, listener: Listener, plane: Plane, service: F)
    where
        F: Handler<B>,
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let name = plane.name;
        let mut failures = 0u32;
        loop {
            let accepted = tokio::select! {
                _ = self.stop.cancelled() => break,
                a = accept(&listener) => a,
            };
            let io = match accepted {
                Ok(io) => {
                    failures = 0;
                    io
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    failures = failures.saturating_add(1);
                    warn!(listener = name, "accept failed: {e}");
                    let pause = Duration::from_millis(10u64 << failures.min(6));
                    tokio::select! {
                        _ = self.stop.cancelled() => break,
                        _ = tokio::time::sleep(pause) => continue,
                    }
                }
            };
            let settings = (self.settings)();
            let Some((peer, permit)) = self.admit(&plane, &settings, &io) else {
                continue;
            };
            self.serve_connection(&plane, settings, io, peer, permit, service.clone());
        }
    }

    /// Whether to serve an accepted connection: a Unix-socket peer must be among
    /// `unix.allowed_uids`, and a slot must be free under `limits.max_connections`.
    fn admit(
        &self,
        plane: &Plane,
        settings: &ConnSettings,
        io: &Accepted,
    ) -> Option<(Option<PeerCred>, Option<OwnedSemaphorePermit>)> {
        let name = plane.name;
        let mut peer = None;
        if let Accepted::Unix(s) = io {
            // SO_PEERCRED: who connected, as the kernel saw it at connect time.
            peer = s.peer_cred().ok().map(|c| PeerCred {
                uid: c.uid(),
                gid: c.gid(),
            });
            if !crate::access::peer_allowed(&settings.allowed_uids, peer) {
                self.metrics.refused(name, "peer");
                warn!(
                    listener = name,
                    uid = peer.map(|p| p.uid),
                    "a Unix-socket peer outside unix.allowed_uids connected: closed before reading anything"
                );
                return None;
            }
        }
        let permit = match &plane.slots {
            None => None,
            Some(s) => match s.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    self.metrics.shed();
                    debug!(
                        listener = name,
                        "max_connections reached: closing a new connection"
                    );
                    return None;
                }
            },
        };
        Some((peer, permit))
    }

    /// Hands an admitted connection to its worker (or serves it here) as a tracked task.
    fn serve_connection<F, B>(
        &self,
        plane: &Plane,
        settings: ConnSettings,
        io: Accepted,
        peer: Option<PeerCred>,
        permit: Option<OwnedSemaphorePermit>,
        service: F,
    ) where
        F: Handler<B>,
        B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let name = plane.name;
        // The socket leaves this runtime's reactor and joins the worker's.
        let io = match io.detach() {
            Ok(io) => io,
            Err(e) => {
                debug!(listener = name, "cannot hand a connection over: {e}");
                return;
            }
        };
        let handle = match &plane.workers {
            Some(w) => w.next().clone(),
            None => tokio::runtime::Handle::current(),
        };
        let open = self.metrics.connections(name);
        open.inc();
        let guard = ConnGuard(open);
        let builder = http1(&settings);
        let drain = self.drain.clone();
        self.tracker.spawn_on(
            async move {
                let _permit = permit;
                let _guard = guard;
                let io = match io.attach() {
                    Ok(io) => io,
                    Err(e) => {
                        debug!("cannot take a connection over: {e}");
                        return;
                    }
                };
                let limit = settings.write_timeout;
                // The connection's request deadlines (see crate::rt::timer), apart from hyper's.
                let deadlines = ConnTimer::default();
                let conn = match io {
                    Accepted::Tcp(s) => ServedConn::boxed(builder.serve_connection(
                        WriteDeadline::new(TokioIo::new(s), limit),
                        service_fn(move |req| service(Transport::Tcp, deadlines.clone(), req)),
                    )),
                    Accepted::Unix(s) => ServedConn::boxed(builder.serve_connection(
                        WriteDeadline::new(TokioIo::new(s), limit),
                        service_fn(move |req| {
                            service(Transport::Unix(peer), deadlines.clone(), req)
                        }),
                    )),
                };
                run_connection(conn, drain).await;
            }
            .instrument(tracing::debug_span!("conn", listener = name)),
            &handle,
        );
    }
}
