//! Fuzzes the WebSocket frame reader of the passthrough relay: no input may make it panic, a
//! frame it accepts never claims more bytes than it was given, and a split of the input must
//! not change which frames are accepted or whether (and how) the stream is refused. The first
//! byte picks the sender's role and the split position. The reader for whole messages (the
//! WS -> SSE bridge's, which leaves text to its caller) must keep the same properties, and
//! agree with the relay's reader on every stream the latter accepts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssebridge::ws::{Frame, FrameError, FrameReader, Next, Sender};

/// The frames' lengths and kinds, and the error if any, feeding `chunks` as the relay does
/// (bytes not yet a whole frame are kept and looked at again with the next chunk).
fn read(
    sender: Sender,
    whole_messages: bool,
    chunks: &[&[u8]],
) -> (Vec<(usize, u8)>, Option<FrameError>) {
    let mut reader = if whole_messages {
        FrameReader::for_messages(sender, 4096)
    } else {
        FrameReader::new(sender, 4096)
    };
    let mut pending = Vec::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        loop {
            match reader.next(&pending) {
                Ok(Next::Frame(frame)) => {
                    let len = frame.wire_len();
                    assert!(len >= 2 && len <= pending.len());
                    let kind = match frame {
                        Frame::Data { fin, text, .. } => u8::from(fin) | u8::from(text) << 4,
                        Frame::Ping { .. } => 2,
                        Frame::Pong { .. } => 3,
                        Frame::Close { .. } => 4,
                    };
                    frames.push((len, kind));
                    pending.drain(..len);
                }
                Ok(Next::NeedBytes(n)) => {
                    assert!(n > pending.len());
                    break;
                }
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    (frames, None)
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    let sender = if selector & 1 == 0 {
        Sender::Client
    } else {
        Sender::Server
    };
    let at = usize::from(selector >> 1) * body.len() / 127;
    let (head, tail) = body.split_at(at);
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    for whole_messages in [false, true] {
        let whole = read(sender, whole_messages, &[body]);
        assert_eq!(read(sender, whole_messages, &[head, tail]), whole, "split at {at}");
        assert_eq!(read(sender, whole_messages, &bytes), whole, "byte by byte");
    }
    let relay = read(sender, false, &[body]);
    if relay.1.is_none() {
        assert_eq!(read(sender, true, &[body]), relay, "whole-message reader");
    }
});
