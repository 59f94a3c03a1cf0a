//! Binding the listeners (TCP, a Unix socket file with mode 0660, or an abstract socket) and
//! accepting from them; an accepted socket can move from the accepting runtime to a worker's.

use crate::config::ListenAddr;
use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::net::{TcpListener, UnixListener};

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

pub(super) enum Accepted {
    /// A TCP connection.
    Tcp(tokio::net::TcpStream),
    /// A Unix-socket connection.
    Unix(tokio::net::UnixStream),
}

impl Accepted {
    /// Detaches the socket from the accepting runtime.
    pub(super) fn detach(self) -> std::io::Result<Detached> {
        match self {
            Accepted::Tcp(s) => s.into_std().map(Detached::Tcp),
            Accepted::Unix(s) => s.into_std().map(Detached::Unix),
        }
    }
}

/// An accepted socket on its way to the runtime that will serve it (still non-blocking).
pub(super) enum Detached {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Detached {
    /// Registers the socket with the calling runtime's reactor.
    pub(super) fn attach(self) -> std::io::Result<Accepted> {
        match self {
            Detached::Tcp(s) => tokio::net::TcpStream::from_std(s).map(Accepted::Tcp),
            Detached::Unix(s) => tokio::net::UnixStream::from_std(s).map(Accepted::Unix),
        }
    }
}

pub(super) async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
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
