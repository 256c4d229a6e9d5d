//! One side of the relay: its socket, the reader of its frames, and the frames waiting to be
//! written to it.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{CLOSE_DISCARD, MAX_READ, MIN_READ};
use crate::proxy::websocket::{Keepalive, KeepaliveAction};
use crate::ws::frame::OP_PING;
use crate::ws::{close_frame, control_frame, FrameReader, Sender};

/// A socket the relay reads and writes, and can wait on for readability before it sets a
/// read buffer aside: an idle side then holds none.
pub trait RelayIo: AsyncRead + AsyncWrite + Unpin {
    /// Ready when a read may find bytes; always ready where that cannot be known.
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl RelayIo for crate::io::ClientIo {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        crate::io::ClientIo::poll_read_ready(self, cx)
    }
}

impl RelayIo for crate::upstream::UpstreamStream {
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            tokio_util::either::Either::Left(tcp) => tcp.poll_read_ready(cx),
            // The TLS layer may hold plaintext the socket no longer shows.
            tokio_util::either::Either::Right(_) => Poll::Ready(Ok(())),
        }
    }
}

/// Where a side is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::proxy) enum State {
    /// Read and written.
    Open,
    /// Its close frame has come: no more reads; what is queued for it is still written.
    Closing,
    /// Ended (end of stream, a frame that broke the protocol): no more reads; what is queued
    /// for it (a close frame) is still written.
    Done,
    /// Neither read nor written again (a write failed, it was cut or stopped answering).
    Gone,
}

/// One side of the relay: a socket, its reader and what waits to be written to it.
pub(in crate::proxy) struct Side<IO> {
    /// Dropped (the connection closed) once the side is gone.
    pub(in crate::proxy) io: Option<IO>,
    /// Which end of the WebSocket this side is to the proxy: frames it sends are from a
    /// client (masked) or a server; frames the proxy writes to it the opposite.
    pub(in crate::proxy) sender: Sender,
    pub(in crate::proxy) reader: FrameReader,
    pub(in crate::proxy) rbuf: BytesMut,
    /// `rbuf` holds bytes not looked at yet (what came with the handshake).
    pub(in crate::proxy) unparsed: bool,
    /// The room the next read gets: [`MIN_READ`], doubled while reads fill it.
    pub(in crate::proxy) read_size: usize,
    pub(in crate::proxy) out: VecDeque<Bytes>,
    pub(in crate::proxy) out_len: usize,
    pub(in crate::proxy) needs_flush: bool,
    pub(in crate::proxy) state: State,
    /// Its end of stream has been read.
    pub(in crate::proxy) eof: bool,
    /// A close frame (forwarded or the proxy's own) has been queued for this side.
    pub(in crate::proxy) close_sent: bool,
    pub(in crate::proxy) alive: Keepalive,
    /// Since when `out` has been full without the side taking a byte.
    pub(in crate::proxy) stalled_since: Option<Instant>,
    /// Bytes read from it and dropped since it was sent a close.
    discarded: usize,
    /// It was dropped for sending more than [`CLOSE_DISCARD`] after its close; not yet logged.
    ignored_close: bool,
}

impl<IO: RelayIo> Side<IO> {
    pub(in crate::proxy) fn new(
        io: IO,
        sender: Sender,
        rbuf: BytesMut,
        max_message: usize,
        ping: Option<Duration>,
    ) -> Self {
        Side {
            io: Some(io),
            sender,
            reader: FrameReader::new(sender, max_message),
            unparsed: !rbuf.is_empty(),
            read_size: MIN_READ,
            rbuf,
            out: VecDeque::new(),
            out_len: 0,
            needs_flush: false,
            state: State::Open,
            close_sent: false,
            eof: false,
            alive: Keepalive::new(ping),
            stalled_since: None,
            discarded: 0,
            ignored_close: false,
        }
    }

    /// The mask of a frame the proxy writes to this side: a fresh one towards a server.
    pub(in crate::proxy) fn mask(&self) -> Option<[u8; 4]> {
        (self.sender == Sender::Server).then(fresh_mask)
    }

    pub(in crate::proxy) fn queue(&mut self, bytes: Bytes) {
        if self.state != State::Gone && !bytes.is_empty() {
            self.out_len += bytes.len();
            self.out.push_back(bytes);
        }
    }

    /// Queues the proxy's own close frame, unless the side already has one.
    pub(in crate::proxy) fn queue_close(&mut self, code: u16, reason: &str) {
        if !self.close_sent {
            self.close_sent = true;
            let frame = close_frame(code, reason, self.mask());
            self.queue(frame);
        }
    }

    /// Neither read nor written again: its connection is closed now.
    pub(in crate::proxy) fn gone(&mut self) {
        self.state = State::Gone;
        self.io = None;
        self.out.clear();
        self.out_len = 0;
        self.needs_flush = false;
        self.stalled_since = None;
    }

    /// Counts `n` bytes read from the side and dropped after it was sent a close; past
    /// [`CLOSE_DISCARD`] the side ignores the close, and is dropped.
    pub(in crate::proxy) fn discard(&mut self, n: usize) {
        self.discarded += n;
        if self.discarded > CLOSE_DISCARD && self.state != State::Gone {
            self.gone();
            self.ignored_close = true;
        }
    }

    /// Whether the side was dropped for ignoring its close, once: for the log line.
    pub(in crate::proxy) fn take_ignored_close(&mut self) -> bool {
        std::mem::take(&mut self.ignored_close)
    }

    pub(in crate::proxy) fn can_take_data(&self) -> bool {
        self.state != State::Gone && !self.close_sent
    }

    /// Writes what is queued until the socket would block; true when anything was written.
    pub(in crate::proxy) fn poll_write_out(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let mut progress = false;
        let Some(io) = self.io.as_mut() else {
            return Ok(false);
        };
        while !self.out.is_empty() {
            let mut slices = [IoSlice::new(&[]); 16];
            let n = self.out.len().min(slices.len());
            for (slice, bytes) in slices.iter_mut().zip(&self.out) {
                *slice = IoSlice::new(bytes);
            }
            let written = match Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Pending => return Ok(progress),
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(result) => result?,
            };
            progress = true;
            self.needs_flush = true;
            self.out_len -= written;
            let mut left = written;
            while left > 0 {
                let Some(front) = self.out.front_mut() else {
                    break;
                };
                if front.len() <= left {
                    left -= front.len();
                    self.out.pop_front();
                } else {
                    front.advance(left);
                    left = 0;
                }
            }
        }
        if self.needs_flush {
            match Pin::new(&mut *io).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.needs_flush = false,
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => {}
            }
        }
        Ok(progress)
    }

    /// Reads once into the read buffer: `Some(0)` at the end of the stream, `None` when the
    /// socket would block.
    pub(in crate::proxy) fn poll_read_some(
        &mut self,
        cx: &mut Context<'_>,
    ) -> io::Result<Option<usize>> {
        let Some(io) = self.io.as_mut() else {
            return Ok(Some(0));
        };
        if self.rbuf.capacity() == 0 {
            // No buffer while the side is idle: one is set aside once there is something to
            // read.
            match io.poll_read_ready(cx) {
                Poll::Pending => return Ok(None),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Ready(Ok(())) => {}
            }
        }
        if self.rbuf.capacity() - self.rbuf.len() < self.read_size {
            self.rbuf.reserve(self.read_size);
        }
        let room = self.rbuf.capacity() - self.rbuf.len();
        match tokio_util::io::poll_read_buf(Pin::new(io), cx, &mut self.rbuf) {
            Poll::Ready(Ok(n)) => {
                // A read that fills its room asks for a larger one next time (a flood takes
                // fewer, larger reads); a short one goes back to the smallest.
                self.read_size = if n == room {
                    (self.read_size * 2).min(MAX_READ)
                } else {
                    MIN_READ
                };
                Ok(Some(n))
            }
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(None),
        }
    }

    /// Shuts the side's connection down once nothing more will pass either way: it has ended,
    /// or both close frames have crossed, and what was queued for it is written. True when it
    /// did.
    pub(in crate::proxy) fn poll_finish(&mut self, cx: &mut Context<'_>) -> bool {
        let complete = match self.state {
            State::Done => true,
            State::Closing => self.close_sent,
            State::Open | State::Gone => false,
        };
        if !complete || !self.out.is_empty() || self.needs_flush {
            return false;
        }
        if self.sender == Sender::Server && !self.eof {
            // RFC 6455 section 7.1.1: the server closes the TCP connection first, so that the
            // TIME_WAIT is its own and not one of the proxy's ports towards it. What it still
            // sends is dropped; `CLOSE_GRACE` bounds the wait, `CLOSE_DISCARD` what it may
            // send meanwhile.
            return self.poll_discard(cx);
        }
        if let Some(io) = self.io.as_mut() {
            if Pin::new(io).poll_shutdown(cx).is_pending() {
                return false;
            }
        }
        self.gone();
        true
    }
}

impl<IO: RelayIo> Side<IO> {
    /// Reads and drops what the side sends until its end of stream (or until it sent more than
    /// [`CLOSE_DISCARD`]); true when it read.
    fn poll_discard(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(io) = self.io.as_mut() else {
            return false;
        };
        let mut scrap = [0u8; 8 * 1024];
        let mut scrap = tokio::io::ReadBuf::new(&mut scrap);
        match Pin::new(io).poll_read(cx, &mut scrap) {
            Poll::Pending => false,
            Poll::Ready(Ok(())) if !scrap.filled().is_empty() => {
                let n = scrap.filled().len();
                self.discard(n);
                true
            }
            Poll::Ready(_) => {
                self.eof = true;
                true
            }
        }
    }
}

/// Writes a side's queue and keeps its stall mark: set while the queue is full and the side
/// takes nothing, cleared by any progress.
pub(in crate::proxy) fn write_side<IO: RelayIo>(
    side: &mut Side<IO>,
    cx: &mut Context<'_>,
    limit: usize,
) -> io::Result<bool> {
    if side.state == State::Gone {
        return Ok(false);
    }
    let progress = side.poll_write_out(cx)?;
    if side.out_len < limit {
        side.stalled_since = None;
    } else if progress || side.stalled_since.is_none() {
        side.stalled_since = Some(Instant::now());
    }
    Ok(progress)
}

/// Runs a side's keepalive; true when the side is dead.
pub(in crate::proxy) fn keepalive<IO: RelayIo>(side: &mut Side<IO>) -> bool {
    if side.state != State::Open {
        return false;
    }
    match side.alive.fire() {
        KeepaliveAction::Ping => {
            let ping = control_frame(OP_PING, b"", side.mask());
            side.queue(ping);
            false
        }
        KeepaliveAction::Dead => true,
        KeepaliveAction::Nothing => false,
    }
}

/// A masking key for a frame the proxy sends to an origin (RFC 6455 section 5.3: fresh and
/// unpredictable for each frame).
pub(in crate::proxy) fn fresh_mask() -> [u8; 4] {
    let mut mask = [0u8; 4];
    if getrandom::fill(&mut mask).is_err() {
        // The system's source failing is no reason to drop a connection; masking here only
        // protects intermediaries between the proxy and the origin.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        mask = nanos.to_le_bytes();
    }
    mask
}
