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
use crate::strict::{RequestWatcher, Verdict};

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
        // Watches HTTP/1.1 request framing ahead of hyper; gone once it has nothing to watch.
        watcher: Option<Box<RequestWatcher>>,
        // A refusal the watcher made: the answer still to write, and how much is written.
        refusal: Option<(Vec<u8>, usize)>,
        // Bytes already read (and watched) that hyper is to read again first: what the
        // event-stream path read before it handed the connection over.
        replay: Option<bytes::Bytes>,
        _guard: Option<ConnGuard>,
    }
}

impl ClientIo {
    /// `max_head` bounds what the strict HTTP/1.1 watcher holds (the header size limit).
    pub fn new(
        inner: ClientStream,
        send_timeout: Duration,
        cut: Arc<CutFlag>,
        guard: Option<ConnGuard>,
        max_head: usize,
    ) -> Self {
        ClientIo {
            inner,
            send_timeout,
            stall: None,
            stalled: false,
            cut,
            watcher: Some(Box::new(RequestWatcher::new(max_head))),
            refusal: None,
            replay: None,
            _guard: guard,
        }
    }

    /// Has the next reads return `bytes` before anything more from the client.
    pub fn replay(&mut self, bytes: bytes::Bytes) {
        self.replay = Some(bytes).filter(|b| !b.is_empty());
    }
}

impl ClientIo {
    /// Ready once a read may find bytes: on cleartext when the socket is readable; on TLS
    /// always (the TLS layer may hold plaintext the socket no longer shows), as it is while a
    /// refusal, the request watcher or bytes to replay still have a say.
    pub fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &self.inner {
            ClientStream::Plain(tcp)
                if self.refusal.is_none() && self.watcher.is_none() && self.replay.is_none() =>
            {
                tcp.poll_read_ready(cx)
            }
            _ => Poll::Ready(Ok(())),
        }
    }
}

/// The whole answer to a request the watcher refused; the connection closes after it.
fn refusal_response(status: u16, reason: &str) -> Vec<u8> {
    let phrase = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Bad Request");
    let body = format!("{reason}\n");
    format!(
        "HTTP/1.1 {status} {phrase}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Writes what is left of a refusal, then shuts the write side; Ready when all is done.
fn poll_refusal(
    mut inner: Pin<&mut ClientStream>,
    refusal: &mut (Vec<u8>, usize),
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while refusal.1 < refusal.0.len() {
        let n = ready!(inner.as_mut().poll_write(cx, &refusal.0[refusal.1..]))?;
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        refusal.1 += n;
    }
    inner.poll_shutdown(cx)
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
    ($self:ident, $cx:ident, $inner:ident => $call:expr, $swallowed:expr) => {{
        let this = $self.project();
        if this.refusal.is_some() {
            // After a refusal the proxy owns the connection's output: hyper's writes go nowhere.
            return Poll::Ready(Ok($swallowed));
        }
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
        let mut this = self.project();
        if let Some(replay) = this.replay.as_mut() {
            let n = replay.len().min(buf.remaining());
            buf.put_slice(&replay.split_to(n));
            if replay.is_empty() {
                *this.replay = None;
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(refusal) = this.refusal.as_mut() {
            // hyper sees the end of the stream; the refusal goes out as the connection closes.
            let _ = poll_refusal(this.inner.as_mut(), refusal, cx);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        ready!(this.inner.as_mut().poll_read(cx, buf))?;
        let Some(watcher) = this.watcher.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        match watcher.feed(&buf.filled()[before..]) {
            Verdict::Pass => {
                if watcher.is_done() {
                    *this.watcher = None;
                }
            }
            Verdict::Reject(status, reason) => {
                tracing::info!(status, reason, "refused a malformed HTTP/1.1 request");
                buf.set_filled(before);
                *this.watcher = None;
                let mut refusal = (refusal_response(status, reason), 0);
                let _ = poll_refusal(this.inner.as_mut(), &mut refusal, cx);
                *this.refusal = Some(refusal);
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        guarded_write!(self, cx, inner => inner.poll_write(cx, buf), buf.len())
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        guarded_write!(self, cx, inner => inner.poll_write_vectored(cx, bufs), bufs.iter().map(|b| b.len()).sum())
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        guarded_write!(self, cx, inner => inner.poll_flush(cx), ())
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut this = self.project();
        match this.refusal.as_mut() {
            Some(refusal) => poll_refusal(this.inner.as_mut(), refusal, cx),
            None => this.inner.poll_shutdown(cx),
        }
    }
}
