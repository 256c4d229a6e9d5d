//! The WebSocket passthrough relay: one task owns both sockets and passes frames on as they
//! came, checked but never decoded into messages or encoded again.
//!
//! Each read is cut into frames by [`FrameReader`](crate::ws::FrameReader); the data frames (and a close) among them go
//! to the other side as slices of the read buffer, in one write. Pings are answered and pongs
//! taken by the proxy on each hop, which also pings an idle peer itself (`ws_ping`). A frame that
//! may not be relayed closes its sender with the matching code and never reaches the other
//! side.
//!
//! Bounded: what waits to be written to a side is at most `client_buffer` (plus one read) before
//! the other side is no longer read; a side that then takes nothing for
//! [`SLOW_CLIENT_GRACE`] is cut. A read buffer holds at most one frame of `max_message` and
//! is let go once it has been handed on whole.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::budget::SLOW_CLIENT_GRACE;
use super::stream::StreamLog;
use crate::metrics::{CloseReason, Direction};
use crate::wake::SideWake;
use crate::ws::{close, FrameError, Sender};

mod pump;
pub(super) mod side;

use pump::{pump, Found};
pub use side::RelayIo;
use side::{keepalive, write_side, Side, State};

/// How long a closing side may take to finish its close handshake before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// What a side that was sent a close may still send, read and dropped by the proxy, before it
/// is taken to ignore the close and its connection is dropped: room for the frames a peer had
/// under way when the close reached it, not for a peer that goes on flooding for all of
/// [`CLOSE_GRACE`].
pub const CLOSE_DISCARD: usize = 1024 * 1024;
/// The log line of an origin dropped for sending more than [`CLOSE_DISCARD`] after its close
/// (by the relay and by the WS -> SSE bridge).
pub(super) fn warn_upstream_ignored_close(route: &str) {
    tracing::warn!(
        route,
        limit = CLOSE_DISCARD,
        "upstream WebSocket kept sending after the close; dropped"
    );
}

/// The smallest room a read gets, and the largest.
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;
/// Reads of one side in a row, and rounds of reads and writes in one poll, before the task
/// yields to the others on its worker.
pub(super) const READS_PER_POLL: usize = 16;

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
    C: RelayIo,
    U: RelayIo,
{
    /// `client_read` and `upstream_read` hold what each side sent before the relay started
    /// (right after the handshake).
    pub fn new(
        (client, client_read): (C, BytesMut),
        (upstream, upstream_read): (U, BytesMut),
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
                client_read,
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
            self.log_ignored_close();
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
            Found::Nothing | Found::IgnoredClose => {}
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
            Found::Nothing | Found::IgnoredClose => {}
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

    /// Says so when a side was dropped for sending more than [`CLOSE_DISCARD`] after its close.
    fn log_ignored_close(&mut self) {
        if self.upstream.take_ignored_close() {
            warn_upstream_ignored_close(&self.route);
        }
        if self.client.take_ignored_close() {
            tracing::debug!(route = %self.route, limit = CLOSE_DISCARD, "WebSocket client kept sending after the close; dropped");
        }
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
