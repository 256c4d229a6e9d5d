//! The WebSocket passthrough relay: one task owns both sockets and passes frames on as they
//! came, checked but never decoded into messages or encoded again.
//!
//! Each read is cut into frames by [`FrameReader`]; the data frames (and a close) among them go
//! to the other side as slices of the read buffer, in one write. Pings are answered and pongs
//! taken by the proxy on each hop, which also pings an idle peer itself (`ws_ping`). A frame that
//! may not be relayed closes its sender with the matching code and never reaches the other
//! side.
//!
//! Bounded: what waits to be written to a side is at most `client_buffer` (plus one read) before
//! the other side is no longer read; a side that then takes nothing for
//! [`SLOW_CLIENT_GRACE`] is cut. A read buffer holds at most one frame of `max_message` and
//! is let go once it has been handed on whole.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::budget::SLOW_CLIENT_GRACE;
use super::stream::StreamLog;
use super::websocket::{Keepalive, KeepaliveAction};
use crate::metrics::{CloseReason, Direction};
use crate::wake::SideWake;
use crate::ws::frame::{OP_PING, OP_PONG};
use crate::ws::{close, close_frame, control_frame, Frame, FrameError, FrameReader, Next, Sender};

/// How long a closing side may take to finish its close handshake before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// The smallest room a read gets.
const READ_SIZE: usize = 8 * 1024;
/// Reads of one side in a row, and rounds of reads and writes in one poll, before the task
/// yields to the others on its worker.
const READS_PER_POLL: usize = 16;

/// Where a side is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
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
struct Side<IO> {
    /// Dropped (the connection closed) once the side is gone.
    io: Option<IO>,
    /// Which end of the WebSocket this side is to the proxy: frames it sends are from a
    /// client (masked) or a server; frames the proxy writes to it the opposite.
    sender: Sender,
    reader: FrameReader,
    rbuf: BytesMut,
    /// `rbuf` holds bytes not looked at yet (what came with the origin's `101`).
    unparsed: bool,
    out: VecDeque<Bytes>,
    out_len: usize,
    needs_flush: bool,
    state: State,
    /// A close frame (forwarded or the proxy's own) has been queued for this side.
    close_sent: bool,
    alive: Keepalive,
    /// Since when `out` has been full without the side taking a byte.
    stalled_since: Option<Instant>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Side<IO> {
    fn new(
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
            rbuf,
            out: VecDeque::new(),
            out_len: 0,
            needs_flush: false,
            state: State::Open,
            close_sent: false,
            alive: Keepalive::new(ping),
            stalled_since: None,
        }
    }

    /// The mask of a frame the proxy writes to this side: a fresh one towards a server.
    fn mask(&self) -> Option<[u8; 4]> {
        (self.sender == Sender::Server).then(fresh_mask)
    }

    fn queue(&mut self, bytes: Bytes) {
        if self.state != State::Gone && !bytes.is_empty() {
            self.out_len += bytes.len();
            self.out.push_back(bytes);
        }
    }

    /// Queues the proxy's own close frame, unless the side already has one.
    fn queue_close(&mut self, code: u16, reason: &str) {
        if !self.close_sent {
            self.close_sent = true;
            let frame = close_frame(code, reason, self.mask());
            self.queue(frame);
        }
    }

    /// Neither read nor written again: its connection is closed now.
    fn gone(&mut self) {
        self.state = State::Gone;
        self.io = None;
        self.out.clear();
        self.out_len = 0;
        self.needs_flush = false;
        self.stalled_since = None;
    }

    fn can_take_data(&self) -> bool {
        self.state != State::Gone && !self.close_sent
    }

    /// Writes what is queued until the socket would block; true when anything was written.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
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
    fn poll_read_some(&mut self, cx: &mut Context<'_>) -> io::Result<Option<usize>> {
        let Some(io) = self.io.as_mut() else {
            return Ok(Some(0));
        };
        if self.rbuf.capacity() - self.rbuf.len() < READ_SIZE {
            self.rbuf.reserve(READ_SIZE);
        }
        match tokio_util::io::poll_read_buf(Pin::new(io), cx, &mut self.rbuf) {
            Poll::Ready(Ok(n)) => Ok(Some(n)),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Ok(None),
        }
    }

    /// Shuts the side's connection down once nothing more will pass either way: it has ended,
    /// or both close frames have crossed, and what was queued for it is written. True when it
    /// did.
    fn poll_finish(&mut self, cx: &mut Context<'_>) -> bool {
        let complete = match self.state {
            State::Done => true,
            State::Closing => self.close_sent,
            State::Open | State::Gone => false,
        };
        if !complete || !self.out.is_empty() || self.needs_flush {
            return false;
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

/// What reading a side found besides frames to pass on.
enum Found {
    Nothing,
    Close,
    End,
    Fault(FrameError),
}

/// Whether the relay still passes data on or only finishes closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Relaying,
    Ending,
}

pub struct Relay<C, U> {
    client: Side<C>,
    upstream: Side<U>,
    /// `client_buffer`: what may wait for one side before the other is no longer read.
    limit: usize,
    mode: Mode,
    /// Set once a side has closed or the relay is ending: the other side must finish by then.
    close_deadline: Option<Instant>,
    route: std::sync::Arc<str>,
    log: StreamLog,
    side: SideWake,
    drain: Pin<Box<WaitForCancellationFutureOwned>>,
    draining: bool,
    hard_stop: Pin<Box<WaitForCancellationFutureOwned>>,
    timer: Pin<Box<Sleep>>,
    timer_at: Instant,
}

/// What the relay needs from its route and the proxy.
pub struct RelaySettings {
    pub limit: usize,
    pub max_message: usize,
    pub ping: Option<Duration>,
    pub drain: tokio_util::sync::CancellationToken,
    pub hard_stop: tokio_util::sync::CancellationToken,
}

impl<C, U> Relay<C, U>
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    /// `upstream_read` holds what the origin sent right after its `101`.
    pub fn new(
        client: C,
        upstream: U,
        upstream_read: BytesMut,
        settings: RelaySettings,
        route: std::sync::Arc<str>,
        log: StreamLog,
    ) -> Self {
        // Elapsed at once, so that the first poll sets it.
        let timer_at = Instant::now();
        Relay {
            client: Side::new(
                client,
                Sender::Client,
                BytesMut::new(),
                settings.max_message,
                settings.ping,
            ),
            upstream: Side::new(
                upstream,
                Sender::Server,
                upstream_read,
                settings.max_message,
                settings.ping,
            ),
            limit: settings.limit,
            mode: Mode::Relaying,
            close_deadline: None,
            route,
            log,
            side: SideWake::default(),
            drain: Box::pin(settings.drain.cancelled_owned()),
            draining: false,
            hard_stop: Box::pin(settings.hard_stop.cancelled_owned()),
            timer: Box::pin(tokio::time::sleep_until(timer_at)),
            timer_at,
        }
    }

    /// Relays until both sides are closed and their connections shut down.
    pub async fn run(mut self) {
        std::future::poll_fn(|cx| self.poll(cx)).await
    }

    /// Ready once the relay is over (on a hard stop at once: everything is dropped).
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.side.due(cx) {
            let waker = self.side.waker().clone();
            let mut side_cx = Context::from_waker(&waker);
            if self.hard_stop.as_mut().poll(&mut side_cx).is_ready() {
                self.log.close(CloseReason::Shutdown);
                return Poll::Ready(());
            }
            if !self.draining && self.drain.as_mut().poll(&mut side_cx).is_ready() {
                self.draining = true;
                self.end(CloseReason::Shutdown);
                self.client.queue_close(close::AWAY, "proxy shutting down");
                self.upstream
                    .queue_close(close::AWAY, "proxy shutting down");
            }
            if self.timer.as_mut().poll(&mut side_cx).is_ready() {
                self.on_timer();
            }
        }
        for _ in 0..READS_PER_POLL {
            let mut progress = self.write(cx);
            progress |= self.read_client(cx);
            progress |= self.read_upstream(cx);
            progress |= self.write(cx);
            progress |= self.client.poll_finish(cx);
            progress |= self.upstream.poll_finish(cx);
            if self.client.state == State::Gone && self.upstream.state == State::Gone {
                return Poll::Ready(());
            }
            if !progress {
                self.arm_timer();
                return Poll::Pending;
            }
        }
        // Still busy: let the worker's other tasks run, then carry on.
        cx.waker().wake_by_ref();
        self.arm_timer();
        Poll::Pending
    }

    /// Writes to both sides; true when either took anything.
    fn write(&mut self, cx: &mut Context<'_>) -> bool {
        let client = write_side(&mut self.client, cx, self.limit);
        let upstream = write_side(&mut self.upstream, cx, self.limit);
        match (client, upstream) {
            (Err(e), _) => {
                tracing::debug!(route = %self.route, error = %e, "writing to the WebSocket client failed");
                self.client.gone();
                self.end(CloseReason::ClientGone);
                self.upstream.queue_close(close::AWAY, "");
                true
            }
            (_, Err(e)) => {
                tracing::warn!(route = %self.route, error = %e, "writing to the upstream WebSocket failed");
                self.upstream.gone();
                self.end(CloseReason::UpstreamError);
                self.client.queue_close(close::ERROR, "upstream went away");
                true
            }
            (Ok(a), Ok(b)) => a || b,
        }
    }

    fn read_client(&mut self, cx: &mut Context<'_>) -> bool {
        let (found, progress) = pump(
            &mut self.client,
            &mut self.upstream,
            cx,
            self.limit,
            self.mode,
            Direction::Up,
            &mut self.log,
        );
        match found {
            Found::Nothing => {}
            Found::Close => self.side_closed(CloseReason::ClientGone),
            Found::End => {
                self.end(CloseReason::ClientGone);
                self.upstream.queue_close(close::AWAY, "");
            }
            Found::Fault(err) => {
                tracing::debug!(route = %self.route, error = %err, "WebSocket client broke the protocol");
                self.end(CloseReason::ClientGone);
                self.client.queue_close(err.close_code(), "");
                self.upstream.queue_close(close::AWAY, "");
            }
        }
        progress
    }

    fn read_upstream(&mut self, cx: &mut Context<'_>) -> bool {
        let (found, progress) = pump(
            &mut self.upstream,
            &mut self.client,
            cx,
            self.limit,
            self.mode,
            Direction::Down,
            &mut self.log,
        );
        match found {
            Found::Nothing => {}
            Found::Close => self.side_closed(CloseReason::UpstreamEnd),
            Found::End => {
                if self.mode == Mode::Relaying {
                    tracing::warn!(route = %self.route, "upstream WebSocket dropped without a close frame");
                }
                self.end(CloseReason::UpstreamError);
                self.client.queue_close(close::ERROR, "upstream went away");
            }
            Found::Fault(err) => {
                tracing::warn!(route = %self.route, error = %err, "upstream WebSocket broke the protocol");
                self.log
                    .metrics()
                    .upstream_error(crate::metrics::UpstreamErrorKind::Protocol);
                self.end(CloseReason::UpstreamError);
                self.upstream.queue_close(err.close_code(), "");
                let code = match err {
                    FrameError::TooBig => close::TOO_BIG,
                    _ => close::ERROR,
                };
                self.client.queue_close(code, "upstream failed");
            }
        }
        progress
    }

    /// A side's close frame was passed on: the other side has [`CLOSE_GRACE`] to answer.
    fn side_closed(&mut self, reason: CloseReason) {
        self.log.close(reason);
        if self.close_deadline.is_none() {
            self.close_deadline = Some(Instant::now() + CLOSE_GRACE);
        }
    }

    /// Stops passing data on: from now on the relay only finishes the close handshakes.
    fn end(&mut self, reason: CloseReason) {
        self.log.close(reason);
        self.mode = Mode::Ending;
        let deadline = Instant::now() + CLOSE_GRACE;
        if self.close_deadline.is_none_or(|d| d > deadline) {
            self.close_deadline = Some(deadline);
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        if self.close_deadline.is_some_and(|d| now >= d) {
            self.client.gone();
            self.upstream.gone();
            return;
        }
        for side in [Sender::Client, Sender::Server] {
            let stalled = match side {
                Sender::Client => self.client.stalled_since,
                Sender::Server => self.upstream.stalled_since,
            };
            if stalled.is_some_and(|since| now >= since + SLOW_CLIENT_GRACE) {
                self.cut(side);
            }
        }
        if self.mode != Mode::Relaying {
            return;
        }
        if keepalive(&mut self.client) {
            self.client.gone();
            self.end(CloseReason::PingTimeout);
            self.upstream.queue_close(close::AWAY, "");
        } else if keepalive(&mut self.upstream) {
            self.upstream.gone();
            self.end(CloseReason::PingTimeout);
            self.client
                .queue_close(close::ERROR, "upstream stopped answering");
        }
    }

    /// Cuts a side that took nothing for [`SLOW_CLIENT_GRACE`] while its queue was full.
    fn cut(&mut self, which: Sender) {
        match which {
            Sender::Client => {
                tracing::warn!(route = %self.route, "WebSocket client too slow; closing with 1013");
                self.end(CloseReason::SlowClient);
                // What was not yet started is dropped, so that the close frame may fit.
                self.client.out.truncate(1);
                self.client.out_len = self.client.out.front().map_or(0, Bytes::len);
                self.client.close_sent = false;
                self.client.queue_close(close::AGAIN, "client too slow");
                let _ = self
                    .client
                    .poll_write_out(&mut Context::from_waker(std::task::Waker::noop()));
                self.client.gone();
                self.upstream.queue_close(close::AWAY, "");
            }
            Sender::Server => {
                tracing::warn!(route = %self.route, "upstream WebSocket too slow; closing the client with 1013");
                self.end(CloseReason::UpstreamError);
                self.upstream.gone();
                self.client.queue_close(close::AGAIN, "upstream too slow");
            }
        }
    }

    /// Sets the timer to the earliest thing that may be due: a keepalive, a stalled side, the
    /// end of a close handshake. Only moved earlier here (a keepalive seen since fires early
    /// and finds nothing to do); once it has fired it is set again.
    fn arm_timer(&mut self) {
        let mut want = Instant::now() + Duration::from_secs(86_400);
        if self.mode == Mode::Relaying {
            want = want
                .min(self.client.alive.deadline())
                .min(self.upstream.alive.deadline());
        }
        for stalled in [self.client.stalled_since, self.upstream.stalled_since]
            .into_iter()
            .flatten()
        {
            want = want.min(stalled + SLOW_CLIENT_GRACE);
        }
        if let Some(deadline) = self.close_deadline {
            want = want.min(deadline);
        }
        if self.timer.is_elapsed() || want < self.timer_at {
            self.timer_at = want;
            self.timer.as_mut().reset(want);
            let mut side_cx = Context::from_waker(self.side.waker());
            if self.timer.as_mut().poll(&mut side_cx).is_ready() {
                self.side.waker().wake_by_ref();
            }
        }
    }
}

/// Writes a side's queue and keeps its stall mark: set while the queue is full and the side
/// takes nothing, cleared by any progress.
fn write_side<IO: AsyncRead + AsyncWrite + Unpin>(
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
fn keepalive<IO: AsyncRead + AsyncWrite + Unpin>(side: &mut Side<IO>) -> bool {
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

/// Reads `src` while `dst` has room, passing its data frames (and its close, while relaying)
/// on to `dst` and answering its pings. Returns what else it found, and whether it read.
fn pump<A, B>(
    src: &mut Side<A>,
    dst: &mut Side<B>,
    cx: &mut Context<'_>,
    limit: usize,
    mode: Mode,
    direction: Direction,
    log: &mut StreamLog,
) -> (Found, bool)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let mut progress = false;
    for _ in 0..READS_PER_POLL {
        if src.state != State::Open || dst.out_len >= limit {
            break;
        }
        // What came with the origin's `101` is looked at before the first read.
        if !std::mem::take(&mut src.unparsed) {
            match src.poll_read_some(cx) {
                Ok(Some(0)) | Err(_) => {
                    src.state = State::Done;
                    return (Found::End, true);
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
            }
        }
        progress = true;
        src.alive.seen();
        let (found, messages, bytes) = frames(src, dst, mode);
        if messages > 0 || bytes > 0 {
            log.forwarded(direction, messages, bytes);
        }
        if !matches!(found, Found::Nothing) {
            return (found, true);
        }
    }
    (Found::Nothing, progress)
}

/// Cuts the frames out of `src`'s read buffer: returns what else was found, and the messages
/// and payload bytes passed on.
fn frames<A, B>(src: &mut Side<A>, dst: &mut Side<B>, mode: Mode) -> (Found, u64, u64)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let relaying = mode == Mode::Relaying && dst.can_take_data();
    let (mut messages, mut bytes) = (0, 0);
    // The frames at the start of the buffer that go to `dst` as one slice.
    let mut pass = 0;
    let found = loop {
        let frame = match src.reader.next(&src.rbuf[pass..]) {
            Ok(Next::Frame(frame)) => frame,
            Ok(Next::NeedBytes(n)) => {
                let need = pass + n;
                if src.rbuf.capacity() < need {
                    src.rbuf.reserve(need - src.rbuf.len());
                }
                break Found::Nothing;
            }
            Err(err) => {
                src.state = State::Done;
                break Found::Fault(err);
            }
        };
        let len = frame.wire_len();
        match frame {
            Frame::Data { payload, fin, .. } => {
                if relaying {
                    pass += len;
                    messages += u64::from(fin);
                    bytes += payload as u64;
                } else {
                    skip(src, dst, &mut pass, len);
                }
            }
            Frame::Close { .. } => {
                src.state = State::Closing;
                if relaying {
                    pass += len;
                    dst.close_sent = true;
                } else {
                    skip(src, dst, &mut pass, len);
                }
                break Found::Close;
            }
            Frame::Ping { payload, .. } => {
                skip(src, dst, &mut pass, len);
                if !src.close_sent {
                    let pong = control_frame(OP_PONG, payload.as_bytes(), src.mask());
                    src.queue(pong);
                }
            }
            Frame::Pong { .. } => skip(src, dst, &mut pass, len),
        }
    };
    if pass > 0 {
        let passed = src.rbuf.split_to(pass).freeze();
        dst.queue(passed);
    }
    if !matches!(found, Found::Nothing) {
        // Nothing after a close or a broken frame is looked at.
        src.rbuf.clear();
    }
    if src.rbuf.is_empty() {
        // Handed on whole (or skipped): let it go, so that an idle side, or one that has just
        // passed on a large frame, holds no read buffer.
        src.rbuf = BytesMut::new();
    }
    (found, messages, bytes)
}

/// Passes on the frames gathered so far, then drops the `len` bytes of a frame that stays
/// here.
fn skip<A, B>(src: &mut Side<A>, dst: &mut Side<B>, pass: &mut usize, len: usize)
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    if *pass > 0 {
        let passed = src.rbuf.split_to(*pass).freeze();
        dst.queue(passed);
        *pass = 0;
    }
    src.rbuf.advance(len);
}

/// A masking key for a frame the proxy sends to an origin (RFC 6455 section 5.3: fresh and
/// unpredictable for each frame).
fn fresh_mask() -> [u8; 4] {
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
