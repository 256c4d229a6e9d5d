//! The client connection's byte stream: TCP or TLS, with a send timeout and the connection's
//! accounting attached.
//!
//! The accounting ([`ConnGuard`]) lives inside the I/O object so that it follows the socket into
//! an upgraded WebSocket and is released exactly when the socket is closed, never earlier.
//! The send timeout cuts a client that takes no byte for `send_timeout` while data waits
//! (SPEC 10): only a write that stays pending arms it, so an idle stream is never cut.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;

use crate::server::ConnCounters;

/// A client socket, cleartext or TLS.
pub enum ClientStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self.get_mut() {
            ClientStream::Plain($s) => {
                let $s = Pin::new($s);
                $e
            }
            ClientStream::Tls($s) => {
                let $s = Pin::new($s.as_mut());
                $e
            }
        }
    };
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_read(cx, buf))
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        delegate!(self, s => s.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            ClientStream::Plain(s) => s.is_write_vectored(),
            ClientStream::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        delegate!(self, s => s.poll_shutdown(cx))
    }
}

/// Releases a connection's place in the limits when the socket is dropped.
pub struct ConnGuard {
    counters: Arc<ConnCounters>,
    ip: IpAddr,
}

impl ConnGuard {
    pub(crate) fn new(counters: Arc<ConnCounters>, ip: IpAddr) -> Self {
        ConnGuard { counters, ip }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.counters.release(self.ip);
    }
}

/// Set when the connection was cut for not taking data, so the stream that ends with it can
/// log `send_timeout` rather than `client_gone`.
#[derive(Debug, Default)]
pub struct CutFlag(AtomicBool);

impl CutFlag {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pin_project! {
    /// The I/O object handed to hyper for one client connection.
    pub struct ClientIo {
        #[pin]
        inner: ClientStream,
        send_timeout: Duration,
        stall: Option<Pin<Box<Sleep>>>,
        stalled: bool,
        cut: Arc<CutFlag>,
        _guard: Option<ConnGuard>,
    }
}

impl ClientIo {
    pub fn new(
        inner: ClientStream,
        send_timeout: Duration,
        cut: Arc<CutFlag>,
        guard: Option<ConnGuard>,
    ) -> Self {
        ClientIo {
            inner,
            send_timeout,
            stall: None,
            stalled: false,
            cut,
            _guard: guard,
        }
    }
}

/// Arms the stall timer on the first pending write and fails the write once it fires.
fn check_stall(
    stall: &mut Option<Pin<Box<Sleep>>>,
    stalled: &mut bool,
    send_timeout: Duration,
    cut: &CutFlag,
    cx: &mut Context<'_>,
) -> Poll<io::Error> {
    let deadline = Instant::now() + send_timeout;
    let timer = stall.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
    if !*stalled {
        *stalled = true;
        timer.as_mut().reset(deadline);
    }
    ready!(timer.as_mut().poll(cx));
    cut.0.store(true, Ordering::Relaxed);
    Poll::Ready(io::Error::new(
        io::ErrorKind::TimedOut,
        "client took no data within send_timeout",
    ))
}

macro_rules! guarded_write {
    ($self:ident, $cx:ident, $inner:ident => $call:expr) => {{
        let this = $self.project();
        let $inner = this.inner;
        match $call {
            Poll::Pending => {
                let err = ready!(check_stall(
                    this.stall,
                    this.stalled,
                    *this.send_timeout,
                    this.cut,
                    $cx
                ));
                Poll::Ready(Err(err))
            }
            ready => {
                *this.stalled = false;
                ready
            }
        }
    }};
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.project().inner.poll_read(cx, buf)
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        guarded_write!(self, cx, inner => inner.poll_write(cx, buf))
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        guarded_write!(self, cx, inner => inner.poll_write_vectored(cx, bufs))
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        guarded_write!(self, cx, inner => inner.poll_flush(cx))
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}
