//! HTTP/1.1 connections while they ask for event streams: the proxy reads the request head,
//! writes the response head and frames the body itself, and hands the connection to hyper
//! at the first request that is anything else.
//!
//! hyper's HTTP/1.1 connection keeps an 8 KiB read buffer and an 8 KiB head buffer for its
//! whole life, a page of each touched: most of what an open stream costs. Here an open stream
//! holds its socket, its response body and no buffer: the head is read through the stack and
//! let go once parsed; each body frame goes out in one vectored write (chunk-size line, the
//! frame's bytes, CRLF) and the next is asked for only once it is written, so the upstream is
//! read only as fast as the client takes data.
//!
//! While a request is served, the client's side is read (up to one small read) so that a
//! client that leaves is noticed at once, as hyper does: its upstream is dropped. Bytes it
//! sends meanwhile (a pipelined request) are kept for the next head, and reading stops there.
//! Requests this path does not take (see [`wire`]) go to hyper with every byte read so far
//! replayed, so hyper answers them exactly as it would have.

#[cfg(test)]
mod tests;
mod wire;

use std::future::{poll_fn, Future};
use std::io;
use std::io::IoSlice;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::SystemTime;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use http_body::Body;
use http_body_util::{Either, Empty};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use self::wire::{ChunkLine, Framing, Head, CHUNK_END, LAST_CHUNK};
use super::Activity;
use crate::io::ClientIo;
use crate::proxy::{ConnInfo, Proxy, ProxyBody};

/// How the connection left this path.
pub(super) enum Outcome {
    /// Closed (or to be dropped): nothing more to serve.
    Closed,
    /// A request this path does not take: hyper serves the connection from these bytes on.
    HandOff(Bytes),
}

/// What the path needs from its connection.
pub(super) struct Front<'a> {
    pub proxy: &'a Arc<Proxy>,
    pub conn: &'a Arc<ConnInfo>,
    pub activity: &'a Arc<Activity>,
    /// The header size limit.
    pub max_head: usize,
    /// Set by the connection's watch when the drain starts: the connection closes once the
    /// response in flight (if any) is done.
    pub draining: &'a AtomicBool,
}

/// Serves event-stream requests on `io` until the connection closes or a request needs hyper.
pub(super) async fn serve(io: &mut ClientIo, front: Front<'_>) -> Outcome {
    // Bytes read past the last head (a pipelined request); empty, with no allocation, as a
    // rule.
    let mut pending = BytesMut::new();
    loop {
        let (request, close) = match read_head(io, &mut pending, &front).await {
            Read::EventStream(request, close) => (request, close),
            Read::Other => return Outcome::HandOff(pending.freeze()),
            Read::Closed => {
                // Also lets a refusal of the strict watcher go out (`ClientIo`).
                let _ = io.shutdown().await;
                return Outcome::Closed;
            }
        };
        let _in_flight = front.activity.start();
        let request = (*request).map(|()| Either::Right(Empty::new()));
        // Boxed: the handler's state goes with its request, not into the connection task.
        let handler = Box::pin(front.proxy.clone().handle(front.conn.clone(), request));
        let Some(response) = until_gone(io, &mut pending, handler).await else {
            return Outcome::Closed;
        };
        let close = close || front.draining.load(Ordering::Relaxed);
        match respond(io, response, close, &mut pending).await {
            Ok(true) if !close => {}
            Ok(_) => {
                let _ = io.shutdown().await;
                return Outcome::Closed;
            }
            // Aborted: the connection closes without the last chunk (SPEC 10 "Stream end").
            Err(()) => return Outcome::Closed,
        }
    }
}

enum Read {
    EventStream(Box<Request<()>>, bool),
    Other,
    Closed,
}

/// Reads until `pending` starts with a whole head (or one that is not this path's).
async fn read_head(io: &mut ClientIo, pending: &mut BytesMut, front: &Front<'_>) -> Read {
    poll_fn(|cx| loop {
        if !pending.is_empty() {
            match wire::parse(pending, front.max_head) {
                Head::EventStream {
                    request,
                    len,
                    close,
                } => {
                    let rest = &pending[len..];
                    *pending = if rest.is_empty() {
                        BytesMut::new()
                    } else {
                        BytesMut::from(rest)
                    };
                    return Poll::Ready(Read::EventStream(request, close));
                }
                Head::Other => return Poll::Ready(Read::Other),
                Head::Partial => {}
            }
        } else if front.draining.load(Ordering::Relaxed) {
            return Poll::Ready(Read::Closed);
        }
        let mut room = [const { MaybeUninit::uninit() }; 2048];
        let mut read = ReadBuf::uninit(&mut room);
        match ready!(Pin::new(&mut *io).poll_read(cx, &mut read)) {
            Ok(()) if !read.filled().is_empty() => pending.extend_from_slice(read.filled()),
            _ => return Poll::Ready(Read::Closed),
        }
    })
    .await
}

/// Drives `handler` while watching the client; `None` when the client left first (the
/// handler, and the upstream request it was making, are dropped).
async fn until_gone<F, T>(
    io: &mut ClientIo,
    pending: &mut BytesMut,
    mut handler: Pin<Box<F>>,
) -> Option<T>
where
    F: Future<Output = Result<T, std::convert::Infallible>>,
{
    poll_fn(|cx| {
        if let Poll::Ready(result) = handler.as_mut().poll(cx) {
            return Poll::Ready(Some(result.unwrap_or_else(|e| match e {})));
        }
        if client_gone(io, pending, cx) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// One read of the client's side while a request is served: `true` once the client has
/// closed (or failed). Bytes it sent are kept in `pending`, and nothing more is read while
/// they wait (as hyper does mid-message).
fn client_gone(io: &mut ClientIo, pending: &mut BytesMut, cx: &mut Context<'_>) -> bool {
    if !pending.is_empty() {
        return false;
    }
    // Not zeroed: this runs each time a stream's body waits, i.e. once per event.
    let mut room = [const { MaybeUninit::uninit() }; 1024];
    let mut read = ReadBuf::uninit(&mut room);
    match Pin::new(io).poll_read(cx, &mut read) {
        Poll::Ready(Ok(())) if !read.filled().is_empty() => {
            pending.extend_from_slice(read.filled());
            false
        }
        Poll::Ready(_) => true,
        Poll::Pending => false,
    }
}

/// Writes `response`; `Ok(true)` when it ended as framed (the connection may serve another
/// request), `Ok(false)` when its body fell short of its `Content-Length`, `Err` when it was
/// aborted (body error, write error, send timeout, client gone).
async fn respond(
    io: &mut ClientIo,
    response: Response<ProxyBody>,
    close: bool,
    pending: &mut BytesMut,
) -> Result<bool, ()> {
    let (parts, mut body) = response.into_parts();
    let framing = Framing::of(parts.status, &parts.headers, body.size_hint().exact());
    let date = httpdate::fmt_http_date(SystemTime::now());
    let mut out = Out {
        head: wire::response_head(parts.status, &parts.headers, framing, close, &date),
        ..Out::default()
    };
    drop(parts);
    let mut left = match framing {
        Framing::Length(len) => len,
        _ => 0,
    };
    let mut done = framing == Framing::None;
    poll_fn(|cx| loop {
        // Frames that are ready join the write in preparation (the head's too, so that a body
        // ready at once goes out with it); more are asked for only once it is written.
        while !done && out.has_room() {
            match Pin::new(&mut body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue; // trailers are not sent on HTTP/1.1
                    };
                    if data.is_empty() {
                        continue;
                    }
                    if framing != Framing::Chunked {
                        if data.len() as u64 > left {
                            return Poll::Ready(Err(()));
                        }
                        left -= data.len() as u64;
                    }
                    out.push(data, framing == Framing::Chunked);
                }
                Poll::Ready(Some(Err(_))) => return Poll::Ready(Err(())),
                Poll::Ready(None) => {
                    done = true;
                    if framing == Framing::Chunked {
                        out.end = LAST_CHUNK;
                    }
                }
                Poll::Pending if out.is_empty() => {
                    if ready!(Pin::new(&mut *io).poll_flush(cx)).is_err()
                        || client_gone(io, pending, cx)
                    {
                        return Poll::Ready(Err(()));
                    }
                    return Poll::Pending;
                }
                Poll::Pending => break,
            }
        }
        if !out.is_empty() {
            if ready!(out.poll_write(io, cx)).is_err() {
                return Poll::Ready(Err(()));
            }
            continue;
        }
        if done {
            if ready!(Pin::new(&mut *io).poll_flush(cx)).is_err() {
                return Poll::Ready(Err(()));
            }
            return Poll::Ready(Ok(left == 0));
        }
    })
    .await
}

/// At most this many body frames go out in one write ...
const MAX_FRAMES: usize = 16;
/// ... and once this many bytes of them are waiting, no more join.
const MAX_BYTES: usize = 64 * 1024;

/// The bytes on their way to the client: the head and the body frames that were ready
/// (each chunk with its size line and CRLF), or the last chunk, written with one vectored
/// write as far as the socket takes it. Holds no allocation but the head while at most one
/// frame waits, which is every frame of a paced stream.
#[derive(Default)]
struct Out {
    head: Vec<u8>,
    first: Piece,
    more: Vec<Piece>,
    /// What follows the frames: the last chunk, or nothing.
    end: &'static [u8],
    /// Bytes of the frames' data.
    queued: usize,
    written: usize,
}

/// One body frame: its chunk-size line (empty unless chunked), data and CRLF (when chunked).
#[derive(Default)]
struct Piece {
    line: ChunkLine,
    data: Bytes,
    tail: &'static [u8],
}

impl Piece {
    fn parts(&self) -> [&[u8]; 3] {
        [self.line.as_bytes(), &self.data[..], self.tail]
    }
}

impl Out {
    fn pieces(&self) -> impl Iterator<Item = &Piece> {
        std::iter::once(&self.first)
            .chain(&self.more)
            .filter(|p| !p.data.is_empty())
    }

    /// Every byte to write, in order, as slices (some empty).
    fn parts(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(&self.head[..])
            .chain(self.pieces().flat_map(Piece::parts))
            .chain(std::iter::once(self.end))
    }

    fn len(&self) -> usize {
        self.parts().map(<[u8]>::len).sum()
    }

    fn is_empty(&self) -> bool {
        self.written == self.len()
    }

    /// Whether a body frame may join: nothing was written yet, the body has not ended, and
    /// the write is below its bounds.
    fn has_room(&self) -> bool {
        self.written == 0
            && self.end.is_empty()
            && self.more.len() + 1 < MAX_FRAMES
            && self.queued < MAX_BYTES
    }

    fn push(&mut self, data: Bytes, chunked: bool) {
        self.queued += data.len();
        let piece = if chunked {
            Piece {
                line: ChunkLine::new(data.len()),
                data,
                tail: CHUNK_END,
            }
        } else {
            Piece {
                data,
                ..Piece::default()
            }
        };
        if self.first.data.is_empty() {
            self.first = piece;
        } else {
            self.more.push(piece);
        }
    }

    fn poll_write<W>(&mut self, io: &mut W, cx: &mut Context<'_>) -> Poll<io::Result<()>>
    where
        W: AsyncWrite + Unpin,
    {
        // The head, three slices per frame and the end.
        const SLICES: usize = 2 + 3 * MAX_FRAMES;
        let total = self.len();
        while self.written < total {
            let mut skip = self.written;
            let mut slices = [IoSlice::new(&[]); SLICES];
            let mut count = 0;
            for part in self.parts() {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices[count] = IoSlice::new(&part[skip..]);
                skip = 0;
                count += 1;
            }
            let n = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        *self = Out::default();
        Poll::Ready(Ok(()))
    }
}
