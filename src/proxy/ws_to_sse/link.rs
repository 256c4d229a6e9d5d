//! The upstream WebSocket of one WS -> SSE stream, read and written by the bridge's own task.
//!
//! Frames are cut out of each read by [`FrameReader`] and never decoded into owned messages: an
//! unfragmented message becomes its event straight from the read buffer, and only a fragmented
//! one is gathered (within `max_message`) until its last frame. Pongs, keepalive pings,
//! back-channel messages and the close frame go out through the same bounded queue, masked
//! (the proxy is the client of this WebSocket).
//!
//! It reads only when the bridge asks for events, so a client that does not take them holds back
//! its own upstream and nobody else's. A read buffer is set aside only while there is something
//! to read.

use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::super::backchannel::BackMessage;
use super::super::budget::SLOW_CLIENT_GRACE;
use super::super::relay::side::{keepalive, write_side, Side, State};
use super::super::relay::READS_PER_POLL;
use super::super::translate::{self, Translated};
use crate::config::{BinaryMode, Format, RouteSettings};
use crate::metrics::RouteMetrics as Metrics;
use crate::upstream::UpstreamStream;
use crate::ws::frame::{OP_BINARY, OP_CLOSE, OP_PONG, OP_TEXT};
use crate::ws::{control_frame, message_frame, Frame, FrameError, FrameReader, Next, Sender};

/// The most translated bytes one chunk for the client gathers.
const MAX_BATCH: usize = 64 * 1024;

pub(super) struct Link {
    side: Side<UpstreamStream>,
    /// A message that came in fragments, gathered until its last one.
    partial: Option<Partial>,
    /// What may wait to be written upstream before the back channel is no longer taken.
    limit: usize,
    format: Format,
    binary: BinaryMode,
}

struct Partial {
    text: bool,
    payload: BytesMut,
}

/// What one poll of the link found: events translated (into the caller's buffer) and why the
/// stream stops, if it does.
#[derive(Debug, Default)]
pub(super) struct Read {
    pub events: u64,
    pub stop: Option<Stop>,
}

/// Why the upstream stream stops.
#[derive(Debug)]
pub(super) enum Stop {
    /// The origin's close frame, with its code if it had one.
    Closed(Option<u16>),
    /// A binary message under `binary: close`.
    Binary,
    /// The connection ended without a close frame, or a read failed.
    Dropped,
    /// A write to the origin failed.
    WriteFailed(std::io::Error),
    /// A frame or a message broke the protocol.
    Fault(FrameError),
}

impl Link {
    /// `read` holds what the origin sent right after its `101`.
    pub(super) fn new(io: UpstreamStream, read: BytesMut, settings: &RouteSettings) -> Link {
        let mut side = Side::new(
            io,
            Sender::Server,
            read,
            settings.max_message,
            settings.ws_ping,
        );
        side.reader = FrameReader::for_messages(Sender::Server, settings.max_message);
        Link {
            side,
            partial: None,
            // Back-channel messages of up to `max_message` each; two may wait.
            limit: settings.max_message * 2,
            format: settings.format,
            binary: settings.binary,
        }
    }

    /// Writes what waits for the origin, takes back-channel messages while there is room, and
    /// reads: ready once events were translated into `out` (everything the socket held, up to
    /// [`MAX_BATCH`]) or the stream stops.
    pub(super) fn poll_read(
        &mut self,
        cx: &mut Context<'_>,
        back: &mut mpsc::Receiver<BackMessage>,
        out: &mut BytesMut,
        metrics: &Metrics,
    ) -> Poll<Read> {
        let mut read = Read::default();
        for _ in 0..READS_PER_POLL {
            if let Err(err) = self.write(cx, back) {
                read.stop = Some(Stop::WriteFailed(err));
                return Poll::Ready(read);
            }
            // What came with the origin's `101` is looked at before the first read.
            let fresh = if std::mem::take(&mut self.side.unparsed) {
                Ok(Some(self.side.rbuf.len()))
            } else {
                self.side.poll_read_some(cx)
            };
            match fresh {
                Ok(None) => {
                    if self.side.rbuf.is_empty() {
                        // Idle: no read buffer is held while nothing comes.
                        self.side.rbuf = BytesMut::new();
                    }
                    return if read.events > 0 {
                        Poll::Ready(read)
                    } else {
                        Poll::Pending
                    };
                }
                Ok(Some(0)) | Err(_) => {
                    self.side.eof = true;
                    self.side.state = State::Done;
                    read.stop = Some(Stop::Dropped);
                    return Poll::Ready(read);
                }
                Ok(Some(_)) => {}
            }
            self.side.alive.seen();
            self.frames(out, &mut read, metrics);
            if read.stop.is_some() || out.len() >= MAX_BATCH {
                return Poll::Ready(read);
            }
        }
        if read.events == 0 {
            // Still busy after a round of reads: the worker's other tasks run first.
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        Poll::Ready(read)
    }

    /// Writes the queue to the origin, topped up from the back channel while it has room.
    ///
    /// Taking stops either at an empty channel (whose waker then wakes the task for the next
    /// message) or at a full queue (whose socket then wakes it once it takes more). When the
    /// socket takes the whole queue at once, neither will: the channel is looked at again here,
    /// or its waiting messages, and every later one, would wait for the origin to send.
    fn write(
        &mut self,
        cx: &mut Context<'_>,
        back: &mut mpsc::Receiver<BackMessage>,
    ) -> std::io::Result<()> {
        for _ in 0..READS_PER_POLL {
            let mut taken_to_the_limit = false;
            while self.side.can_take_data() {
                if self.side.out_len >= self.limit {
                    taken_to_the_limit = true;
                    break;
                }
                let Poll::Ready(Some(message)) = back.poll_recv(cx) else {
                    break;
                };
                let opcode = if message.binary { OP_BINARY } else { OP_TEXT };
                let frame = message_frame(opcode, &message.payload, self.side.mask());
                self.side.queue(frame);
            }
            write_side(&mut self.side, cx, self.limit)?;
            if !taken_to_the_limit || self.side.out_len >= self.limit {
                return Ok(());
            }
        }
        // Still taking after a round of writes: the worker's other tasks run first.
        cx.waker().wake_by_ref();
        Ok(())
    }

    /// Cuts the frames out of the read buffer: whole messages become events in `out`, pings
    /// are answered, a close or a broken frame stops the stream.
    fn frames(&mut self, out: &mut BytesMut, read: &mut Read, metrics: &Metrics) {
        let side = &mut self.side;
        let mut at = 0;
        let mut need = 0;
        while read.stop.is_none() {
            let buf = &side.rbuf[at..];
            let frame = match side.reader.next(buf) {
                Ok(Next::Frame(frame)) => frame,
                Ok(Next::NeedBytes(n)) => {
                    need = n;
                    break;
                }
                Err(err) => {
                    read.stop = Some(Stop::Fault(err));
                    break;
                }
            };
            let len = frame.wire_len();
            match frame {
                Frame::Data {
                    payload, fin, text, ..
                } => {
                    let payload = &buf[len - payload..len];
                    let translate = (self.format, self.binary);
                    let whole = match self.partial.take() {
                        None if fin => Some(message(out, text, payload, translate, metrics)),
                        None => {
                            let payload = BytesMut::from(payload);
                            self.partial = Some(Partial { text, payload });
                            None
                        }
                        Some(mut partial) => {
                            partial.payload.extend_from_slice(payload);
                            if fin {
                                let Partial { text, payload } = partial;
                                Some(message(out, text, &payload, translate, metrics))
                            } else {
                                self.partial = Some(partial);
                                None
                            }
                        }
                    };
                    match whole {
                        Some(Ok(events)) => read.events += events,
                        Some(Err(stop)) => read.stop = Some(stop),
                        None => {}
                    }
                }
                Frame::Ping { payload, .. } => {
                    let pong = control_frame(OP_PONG, payload.as_bytes(), side.mask());
                    side.queue(pong);
                }
                Frame::Pong { .. } => {}
                Frame::Close { code, .. } => read.stop = Some(Stop::Closed(code)),
            }
            at += len;
        }
        if read.stop.is_some() {
            // Nothing after a close or a broken frame is looked at.
            side.rbuf.clear();
            return;
        }
        side.rbuf.advance(at);
        if side.rbuf.capacity() < need {
            side.rbuf.reserve(need - side.rbuf.len());
        }
    }

    /// Queues the proxy's close frame (`None`: one without a code); nothing more is read.
    pub(super) fn close(&mut self, code: Option<u16>, reason: &str) {
        if self.side.state == State::Open {
            self.side.state = State::Done;
        }
        match code {
            Some(code) => self.side.queue_close(code, reason),
            None if !self.side.close_sent => {
                self.side.close_sent = true;
                let frame = control_frame(OP_CLOSE, b"", self.side.mask());
                self.side.queue(frame);
            }
            None => {}
        }
    }

    /// Drops the connection at once, without a close frame.
    pub(super) fn abort(&mut self) {
        self.side.gone();
    }

    /// The earliest time the keepalive or a stalled back channel needs looking at.
    pub(super) fn deadline(&self) -> Instant {
        let alive = self.side.alive.deadline();
        match self.side.stalled_since {
            Some(since) => alive.min(since + SLOW_CLIENT_GRACE),
            None => alive,
        }
    }

    /// The timer fired: pings an idle origin; `Err` when the origin is dead or has taken nothing
    /// from a full queue for [`SLOW_CLIENT_GRACE`].
    pub(super) fn on_timer(&mut self) -> Result<(), &'static str> {
        if self
            .side
            .stalled_since
            .is_some_and(|since| Instant::now() >= since + SLOW_CLIENT_GRACE)
        {
            return Err("upstream not taking back-channel messages");
        }
        if keepalive(&mut self.side) {
            return Err("upstream stopped answering pings");
        }
        Ok(())
    }

    /// Whether the origin was dropped for sending more than
    /// [`CLOSE_DISCARD`](crate::proxy::relay::CLOSE_DISCARD) after the close; once.
    pub(super) fn ignored_close(&mut self) -> bool {
        self.side.take_ignored_close()
    }

    /// Writes what is queued (the close frame), waits for the origin to close the TCP
    /// connection first (RFC 6455 section 7.1.1), then shuts it down. The caller bounds the
    /// wait.
    pub(super) fn poll_finish(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.side.state == State::Open {
            self.side.state = State::Done;
        }
        for _ in 0..READS_PER_POLL {
            if self.side.state == State::Gone {
                return Poll::Ready(());
            }
            if self.side.poll_write_out(cx).is_err() {
                self.side.gone();
                continue;
            }
            if !self.side.poll_finish(cx) {
                return Poll::Pending;
            }
        }
        // The origin keeps sending after the close: let the worker's other tasks run.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

/// Translates one whole message into `out`: the events it made, or why the stream stops.
fn message(
    out: &mut BytesMut,
    text: bool,
    payload: &[u8],
    (format, binary): (Format, BinaryMode),
    metrics: &Metrics,
) -> Result<u64, Stop> {
    if text {
        // RFC 6455 section 8.1: a text message is UTF-8 as a whole.
        let text =
            std::str::from_utf8(payload).map_err(|_| Stop::Fault(FrameError::InvalidUtf8))?;
        if translate::message_to_event(out, text, format) == Translated::SentRaw {
            metrics.translation_error();
        }
        return Ok(1);
    }
    match binary {
        BinaryMode::Base64 => {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(payload);
            translate::raw_event(out, Some("binary"), &encoded);
            Ok(1)
        }
        BinaryMode::Drop => Ok(0),
        BinaryMode::Close => Err(Stop::Binary),
    }
}
