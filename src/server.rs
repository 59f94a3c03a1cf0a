//! Listeners (TCP or Unix socket), the accept loops, the connection cap and graceful drain.
//!
//! Connections are HTTP/1.1 only (no h2c, no upgrades: a `CONNECT` or `Upgrade` can never become a
//! tunnel), with hyper's header-read timeout driven by a real timer, bounded header size, and
//! keep-alive. On shutdown the accept loops stop (new connections are refused), open connections
//! finish their in-flight request and close.

use crate::access::{PeerCred, Transport};
use crate::config::ListenAddr;
use crate::metrics::Metrics;
use crate::timer::ConnTimer;
use crate::workers::Workers;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn, Instrument};

/// Largest request head (start line + headers) accepted; beyond it hyper answers 431.
pub const MAX_HEADER_BYTES: usize = 96 * 1024;

/// A bound listener.
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// Unix domain socket (the path is removed on drop).
    Unix(UnixListener, UnixSocketGuard),
}

/// Removes a Unix socket file when the listener goes away.
pub struct UnixSocketGuard(PathBuf);

impl Drop for UnixSocketGuard {
    fn drop(&mut self) {
        // An abstract socket has no file; it goes when the listener closes.
        if !ListenAddr::Unix(self.0.clone()).is_abstract() {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

/// Binds the abstract Unix socket `name` (`unix:@name`, Linux only): no file and no mode, so the
/// config requires `unix.allowed_uids` with it.
fn bind_abstract(name: &[u8]) -> std::io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    if name.is_empty() {
        return Err(std::io::Error::other(
            "the abstract socket needs a name after `@`",
        ));
    }
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

impl Listener {
    /// Binds `addr`. A Unix socket is created with mode 0660; a stale socket file (nobody accepts
    /// on it) is replaced, a live one or anything else at that path is an error. `unix:@name` binds
    /// an abstract socket.
    pub async fn bind(addr: &ListenAddr) -> Result<Listener, String> {
        match addr {
            ListenAddr::Tcp(sock) => TcpListener::bind(sock)
                .await
                .map(Listener::Tcp)
                .map_err(|e| format!("cannot listen on {sock}: {e}")),
            ListenAddr::Unix(path) if addr.is_abstract() => {
                let name = &path.as_os_str().as_encoded_bytes()[1..];
                let listener =
                    bind_abstract(name).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                Ok(Listener::Unix(listener, UnixSocketGuard(path.clone())))
            }
            ListenAddr::Unix(path) => {
                use std::os::unix::fs::FileTypeExt;
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    if meta.file_type().is_socket() {
                        // A socket that still accepts belongs to a running process (another
                        // replica sharing the volume, or a second start): never take it over.
                        if tokio::net::UnixStream::connect(path).await.is_ok() {
                            return Err(format!(
                                "cannot listen on unix:{}: another process is listening on it",
                                path.display()
                            ));
                        }
                        let _ = std::fs::remove_file(path);
                    } else {
                        return Err(format!(
                            "cannot listen on unix:{}: a non-socket file is in the way",
                            path.display()
                        ));
                    }
                }
                let listener = bind_unix_0660(path)
                    .map_err(|e| format!("cannot listen on unix:{}: {e}", path.display()))?;
                Ok(Listener::Unix(listener, UnixSocketGuard(path.clone())))
            }
        }
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_addr(&self) -> ListenAddr {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(ListenAddr::Tcp)
                .unwrap_or(ListenAddr::Tcp(SocketAddr::from(([0, 0, 0, 0], 0)))),
            Listener::Unix(_, guard) => ListenAddr::Unix(guard.0.clone()),
        }
    }
}

/// Binds a Unix socket at `path` whose mode is never wider than 0660, whatever the umask: the
/// socket is bound inside a fresh private (0700) folder beside `path`, set to 0660 there, then
/// renamed into place (a rename keeps the bound socket), so no other user can connect in between.
fn bind_unix_0660(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if path.file_name().is_none() {
        return Err(std::io::Error::other("the socket path has no file name"));
    }
    let private = parent.join(format!(".zap-bind-{}", std::process::id()));
    let staged = private.join("s");
    // sun_path holds 108 bytes: a path too long for the staging folder is bound in place.
    if staged.as_os_str().len() >= 100 {
        let listener = UnixListener::bind(path)?;
        std::fs::set_permissions(
            path,
            std::fs::Permissions::from_mode(crate::config::UNIX_SOCKET_MODE),
        )?;
        return Ok(listener);
    }
    let _ = std::fs::remove_dir_all(&private);
    std::fs::DirBuilder::new().mode(0o700).create(&private)?;
    let result = (|| {
        let listener = UnixListener::bind(&staged)?;
        std::fs::set_permissions(
            &staged,
            std::fs::Permissions::from_mode(crate::config::UNIX_SOCKET_MODE),
        )?;
        std::fs::rename(&staged, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_dir_all(&private);
    result
}

/// Per-connection settings of one listener, read when a connection is accepted.
#[derive(Clone, Debug)]
pub struct ConnSettings {
    /// hyper's header read timeout (also cuts idle keep-alive connections).
    pub header_timeout: Duration,
    /// Longest time a write to the client may wait: a client that stops reading a response is
    /// disconnected after it, which ends the upstream exchange and frees its slot.
    pub write_timeout: Duration,
    /// `unix.allowed_uids`: the peers a Unix-socket listener serves (empty: any).
    pub allowed_uids: Arc<[u32]>,
}

fn http1(settings: &ConnSettings) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        // One tokio timer per connection, not one per request: see crate::timer.
        .timer(ConnTimer::default())
        .header_read_timeout(settings.header_timeout)
        .keep_alive(true)
        .half_close(false)
        .max_header_size(MAX_HEADER_BYTES)
        .max_buf_size(MAX_HEADER_BYTES + 8192);
    builder
}

/// Decrements the open-connection gauge when a connection ends.
struct ConnGuard(prometheus_client::metrics::gauge::Gauge);
impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Accepts connections until `stop` fires, serving each with `service` on the next of `workers`
/// (or on the accepting runtime without them); connection tasks are tracked in `tracker` and
/// drain gracefully when `drain` fires.
#[allow(clippy::too_many_arguments)]
pub async fn serve<F, Fut, B>(
    listener: Listener,
    name: &'static str,
    workers: Option<Arc<Workers>>,
    settings: Arc<dyn Fn() -> ConnSettings + Send + Sync>,
    slots: Option<Arc<Semaphore>>,
    metrics: Arc<Metrics>,
    service: F,
    stop: CancellationToken,
    drain: CancellationToken,
    tracker: TaskTracker,
) where
    F: Fn(Transport, ConnTimer, hyper::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<hyper::Response<B>, std::convert::Infallible>> + Send + 'static,
    B: hyper::body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut failures = 0u32;
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => break,
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
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let settings = settings();
        let mut peer = None;
        if let Accepted::Unix(s) = &io {
            // SO_PEERCRED: who connected, as the kernel saw it at connect time.
            peer = s.peer_cred().ok().map(|c| PeerCred {
                uid: c.uid(),
                gid: c.gid(),
            });
            if !crate::access::peer_allowed(&settings.allowed_uids, peer) {
                metrics.refused(name, "peer");
                warn!(
                    listener = name,
                    uid = peer.map(|p| p.uid),
                    "a Unix-socket peer outside unix.allowed_uids connected: closed before reading anything"
                );
                continue;
            }
        }
        let permit = match &slots {
            None => None,
            Some(s) => match s.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    metrics.shed();
                    debug!(
                        listener = name,
                        "max_connections reached: closing a new connection"
                    );
                    drop(io);
                    continue;
                }
            },
        };
        // The socket leaves this runtime's reactor and joins the worker's.
        let io = match io.detach() {
            Ok(io) => io,
            Err(e) => {
                debug!(listener = name, "cannot hand a connection over: {e}");
                continue;
            }
        };
        let handle = match &workers {
            Some(w) => w.next().clone(),
            None => tokio::runtime::Handle::current(),
        };
        let open = metrics.connections(name);
        open.inc();
        let guard = ConnGuard(open);
        let builder = http1(&settings);
        let service = service.clone();
        let drain = drain.clone();
        tracker.spawn_on(
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
                // The connection's request deadlines (see crate::timer), apart from hyper's.
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

enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Accepted {
    /// Detaches the socket from the accepting runtime.
    fn detach(self) -> std::io::Result<Detached> {
        match self {
            Accepted::Tcp(s) => s.into_std().map(Detached::Tcp),
            Accepted::Unix(s) => s.into_std().map(Detached::Unix),
        }
    }
}

/// An accepted socket on its way to the runtime that will serve it (still non-blocking).
enum Detached {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Detached {
    /// Registers the socket with the calling runtime's reactor.
    fn attach(self) -> std::io::Result<Accepted> {
        match self {
            Detached::Tcp(s) => tokio::net::TcpStream::from_std(s).map(Accepted::Tcp),
            Detached::Unix(s) => tokio::net::UnixStream::from_std(s).map(Accepted::Unix),
        }
    }
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp(l) => {
            let (s, _) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok(Accepted::Tcp(s))
        }
        Listener::Unix(l, _) => {
            let (s, _) = l.accept().await?;
            Ok(Accepted::Unix(s))
        }
    }
}

/// A client socket whose writes may wait at most `limit`: when the client stops reading and the
/// socket buffer stays full that long, the write fails with `TimedOut` and hyper closes the
/// connection (dropping the response body, and with it the upstream stream and slot). The timer is
/// armed only while a write is pending, so writes that complete at once cost nothing.
struct WriteDeadline<I> {
    io: I,
    limit: Duration,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    armed: bool,
}

impl<I> WriteDeadline<I> {
    fn new(io: I, limit: Duration) -> WriteDeadline<I> {
        WriteDeadline {
            io,
            limit,
            timer: None,
            armed: false,
        }
    }

    /// After the inner write said `Pending`: arms the timer on the first such answer since the
    /// last progress, and fails once it fires.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<T>> {
        if !self.armed {
            let deadline = tokio::time::Instant::now() + self.limit;
            self.armed = true;
            match self.timer.as_mut() {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let fired = self
            .timer
            .as_mut()
            .is_some_and(|timer| timer.as_mut().poll(cx).is_ready());
        if fired {
            Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client did not read the response within the write timeout",
            )))
        } else {
            Poll::Pending
        }
    }

    fn progress<T>(
        &mut self,
        result: Poll<std::io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<T>> {
        match result {
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx),
        }
    }
}

impl<I: hyper::rt::Read + Unpin> hyper::rt::Read for WriteDeadline<I> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<I: hyper::rt::Write + Unpin> hyper::rt::Write for WriteDeadline<I> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        self.progress(r, cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.progress(r, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.io).poll_flush(cx);
        self.progress(r, cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        let r = std::pin::Pin::new(&mut self.io).poll_shutdown(cx);
        self.progress(r, cx)
    }
}

/// A served connection, type-erased over the socket kind.
trait GracefulConn: Future<Output = Result<(), hyper::Error>> + Send {
    fn shutdown(self: std::pin::Pin<&mut Self>);
}

impl<I, S, B> GracefulConn for hyper::server::conn::http1::Connection<I, S>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B> + Send,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn shutdown(self: std::pin::Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

struct ServedConn;
impl ServedConn {
    fn boxed<C: GracefulConn + 'static>(c: C) -> std::pin::Pin<Box<dyn GracefulConn>> {
        Box::pin(c)
    }
}

async fn run_connection(mut conn: std::pin::Pin<Box<dyn GracefulConn>>, drain: CancellationToken) {
    let result = crate::drain::run_until_drained(conn.as_mut(), &drain, |c| c.shutdown()).await;
    if let Err(e) = result {
        debug!("connection ended: {e}");
    }
}
