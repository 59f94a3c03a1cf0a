//! A read-ahead buffer under TLS: one `recvfrom` takes everything the API server has sent (up to
//! [`CAPACITY`]), and rustls's reads are served from it.
//!
//! Why: rustls reads at most 4 KiB from the socket per `read_tls` call, so a burst of responses
//! on the shared HTTP/2 connection (about 2.3 KB each for a records page) cost one system call per
//! 1.7 responses: 0.6 `recvfrom` a request at 256 connections. Copying a few KB once more in memory
//! is cheaper than the system calls it saves. A read into a buffer at least as large as this one
//! skips it.
//!
//! Writes pass straight through (vectored, as rustls writes).
//!
//! Must not: hold data back: whatever the socket gave is returned before the socket is read again.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The read-ahead buffer's size: a batch of a dozen responses in one system call.
pub const CAPACITY: usize = 32 * 1024;

/// `inner` with a read-ahead buffer (allocated at the first read).
pub struct ReadAhead<T> {
    inner: T,
    buf: Box<[u8]>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
}

impl<T> ReadAhead<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> ReadAhead<T> {
        ReadAhead {
            inner,
            buf: Box::default(),
            start: 0,
            end: 0,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadAhead<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if out.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.start == this.end {
            if out.remaining() >= CAPACITY {
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            if this.buf.is_empty() {
                this.buf = vec![0; CAPACITY].into_boxed_slice();
            }
            let mut fill = ReadBuf::new(&mut this.buf);
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, &mut fill))?;
            this.start = 0;
            this.end = fill.filled().len();
        }
        let n = out.remaining().min(this.end - this.start);
        out.put_slice(&this.buf[this.start..this.start + n]);
        this.start += n;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadAhead<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (client.expect("connect"), server.expect("accept").0)
    }

    #[tokio::test]
    async fn small_reads_are_served_from_the_buffer_in_order_and_whole() {
        let (client, mut server) = pair().await;
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        server.write_all(&data).await.expect("write");
        let mut reader = ReadAhead::new(client);
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        let n = reader.read(&mut chunk).await.expect("read");
        got.extend_from_slice(&chunk[..n]);
        assert!(
            reader.end > chunk.len(),
            "one socket read took more than the 4 KiB asked for ({} bytes)",
            reader.end
        );
        // An empty read takes nothing.
        assert_eq!(reader.read(&mut []).await.expect("empty read"), 0);
        while got.len() < data.len() {
            let n = reader.read(&mut chunk).await.expect("read");
            assert!(n > 0, "no early end of stream");
            got.extend_from_slice(&chunk[..n]);
        }
        assert_eq!(got, data);
        assert_eq!(
            reader.start, reader.end,
            "everything read was handed on, nothing is held back"
        );
        // The end of the stream is passed on.
        drop(server);
        assert_eq!(reader.read(&mut chunk).await.expect("eof"), 0);
    }

    #[tokio::test]
    async fn a_large_read_bypasses_the_buffer_and_writes_pass_through() {
        let (client, mut server) = pair().await;
        let mut stream = ReadAhead::new(client);
        stream.write_all(b"ping").await.expect("write");
        let mut four = [0u8; 4];
        server.read_exact(&mut four).await.expect("server read");
        assert_eq!(&four, b"ping");
        server.write_all(b"pong").await.expect("server write");
        let mut big = vec![0u8; CAPACITY];
        let n = stream.read(&mut big).await.expect("read");
        assert_eq!(&big[..n], b"pong");
        assert!(stream.buf.is_empty(), "the buffer was never needed");
    }
}
