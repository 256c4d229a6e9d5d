//! Reading a side: its frames cut out of each read, the ones to pass on handed to the other
//! side as one slice, the rest answered (pings) or acted on (a close, a broken frame).

use std::task::Context;

use bytes::{Buf, BytesMut};

use super::side::{RelayIo, Side, State};
use super::{Mode, READS_PER_POLL};
use crate::metrics::Direction;
use crate::proxy::stream::StreamLog;
use crate::ws::frame::OP_PONG;
use crate::ws::{control_frame, Frame, FrameError, Next};

/// What reading a side found besides frames to pass on.
pub(super) enum Found {
    Nothing,
    Close,
    End,
    Fault(FrameError),
    /// It was sent a close, and went on sending past [`CLOSE_DISCARD`](super::CLOSE_DISCARD):
    /// it is gone.
    IgnoredClose,
}

/// Reads `src` while `dst` has room, passing its data frames (and its close, while relaying)
/// on to `dst` and answering its pings. Returns what else it found, and whether it read.
pub(super) fn pump<A, B>(
    src: &mut Side<A>,
    dst: &mut Side<B>,
    cx: &mut Context<'_>,
    limit: usize,
    mode: Mode,
    direction: Direction,
    log: &mut StreamLog,
) -> (Found, bool)
where
    A: RelayIo,
    B: RelayIo,
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
                    src.eof = true;
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
    A: RelayIo,
    B: RelayIo,
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
                    if src.state == State::Gone {
                        break Found::IgnoredClose;
                    }
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
/// here (counted against [`CLOSE_DISCARD`](super::CLOSE_DISCARD) once `src` was sent a
/// close).
fn skip<A, B>(src: &mut Side<A>, dst: &mut Side<B>, pass: &mut usize, len: usize)
where
    A: RelayIo,
    B: RelayIo,
{
    if *pass > 0 {
        let passed = src.rbuf.split_to(*pass).freeze();
        dst.queue(passed);
        *pass = 0;
    }
    src.rbuf.advance(len);
    if src.close_sent {
        src.discard(len);
    }
}
