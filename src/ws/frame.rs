//! WebSocket frames (RFC 6455 section 5) as the relay sees them: a header to check, a payload
//! to pass on untouched.
//!
//! [`FrameReader`] looks at the start of a buffer and says how long the frame there is, what it
//! is and whether it may be relayed: masking as the sender's role requires, no reserved bits
//! (no extension is ever negotiated), known opcodes, unfragmented control frames of at most
//! 125 bytes, continuations only inside a message, messages within `max_message`, text that is
//! UTF-8 as a whole, and close frames with an allowed code and a UTF-8 reason. It never copies a
//! data payload; only control payloads (at most 125 bytes) are unmasked into the frame it
//! returns. Nothing is committed until a frame is complete, so a frame split across reads is
//! simply looked at again once more bytes have come.

use bytes::{BufMut, Bytes, BytesMut};

use super::utf8::Utf8Validator;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;

/// The longest control frame payload (RFC 6455 section 5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;
/// The longest frame header: 2 bytes, a 64-bit length and a mask.
pub const MAX_HEADER: usize = 14;

/// Close codes the proxy sends (RFC 6455 section 7.4.1, and 1013 from the IANA registry).
pub mod close {
    pub const NORMAL: u16 = 1000;
    pub const AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const UNSUPPORTED: u16 = 1003;
    pub const INVALID: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
    pub const ERROR: u16 = 1011;
    pub const AGAIN: u16 = 1013;
}

/// Which end of a WebSocket wrote the frames being read: a client must mask every frame, a
/// server must mask none (RFC 6455 section 5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sender {
    Client,
    Server,
}

/// Why a frame may not be relayed; each maps to the close code its sender gets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("message larger than max_message")]
    TooBig,
    #[error("text that is not UTF-8")]
    InvalidUtf8,
}

impl FrameError {
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => close::PROTOCOL,
            FrameError::TooBig => close::TOO_BIG,
            FrameError::InvalidUtf8 => close::INVALID,
        }
    }
}

/// The unmasked payload of a control frame.
#[derive(Clone, Copy)]
pub struct ControlPayload {
    bytes: [u8; MAX_CONTROL_PAYLOAD],
    len: u8,
}

impl ControlPayload {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for ControlPayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_bytes())
    }
}

/// What a complete frame at the start of the buffer is. `len` is the whole frame, header
/// included: the bytes to pass on (or to skip).
#[derive(Debug, Clone, Copy)]
pub enum Frame {
    /// Part of a message: `payload` bytes of it (the last ones of the frame), the last part
    /// when `fin`; `text` for a text message.
    Data {
        len: usize,
        payload: usize,
        fin: bool,
        text: bool,
    },
    Ping {
        len: usize,
        payload: ControlPayload,
    },
    Pong {
        len: usize,
    },
    /// The sender's close; `code` is `None` for an empty close frame.
    Close {
        len: usize,
        code: Option<u16>,
    },
}

impl Frame {
    pub fn wire_len(&self) -> usize {
        match *self {
            Frame::Data { len, .. }
            | Frame::Ping { len, .. }
            | Frame::Pong { len }
            | Frame::Close { len, .. } => len,
        }
    }
}

/// What the start of a buffer holds.
#[derive(Debug)]
pub enum Next {
    Frame(Frame),
    /// The frame is not complete: the buffer must hold this many bytes before it is.
    NeedBytes(usize),
}

/// The message a reader is in the middle of.
#[derive(Debug)]
struct Message {
    text: bool,
    len: u64,
    utf8: Utf8Validator,
}

/// Checks the frames of one direction of a WebSocket, in order.
#[derive(Debug)]
pub struct FrameReader {
    sender: Sender,
    max_message: u64,
    message: Option<Message>,
    /// Text is checked here, frame by frame; off for a reader whose caller gathers whole
    /// messages and checks each text once.
    check_text: bool,
}

struct Header {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    header_len: usize,
    payload_len: u64,
}

impl FrameReader {
    pub fn new(sender: Sender, max_message: usize) -> Self {
        FrameReader {
            sender,
            max_message: max_message as u64,
            message: None,
            check_text: true,
        }
    }

    /// A reader for a caller that takes whole messages: it checks everything but the UTF-8 of
    /// text, which the caller must check once the message is whole (RFC 6455 section 8.1 asks
    /// it of the message, not of each frame).
    pub fn for_messages(sender: Sender, max_message: usize) -> Self {
        FrameReader {
            check_text: false,
            ..FrameReader::new(sender, max_message)
        }
    }

    /// Looks at the frame at the start of `buf` (which must start at a frame boundary). A
    /// complete frame is checked whole and commits the reader's state; the caller then
    /// consumes `frame.wire_len()` bytes.
    pub fn next(&mut self, buf: &[u8]) -> Result<Next, FrameError> {
        let Some(head) = self.header(buf)? else {
            return Ok(Next::NeedBytes(header_len_hint(buf)));
        };
        let total = head.header_len as u64 + head.payload_len;
        if (buf.len() as u64) < total {
            // Within max_message (checked in `header`), so it fits a usize.
            return Ok(Next::NeedBytes(total as usize));
        }
        let len = total as usize;
        let payload = &buf[head.header_len..len];
        match head.opcode {
            OP_PING => Ok(Next::Frame(Frame::Ping {
                len,
                payload: control_payload(payload, head.mask),
            })),
            OP_PONG => Ok(Next::Frame(Frame::Pong { len })),
            OP_CLOSE => {
                let payload = control_payload(payload, head.mask);
                let code = close_code(payload.as_bytes())?;
                Ok(Next::Frame(Frame::Close { len, code }))
            }
            _ => self.data(head, payload, len),
        }
    }

    /// The frame's header, checked, or `None` while it is incomplete.
    fn header(&self, buf: &[u8]) -> Result<Option<Header>, FrameError> {
        let [b0, b1, ..] = *buf else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(FrameError::Protocol("reserved bits set"));
        }
        let fin = b0 & 0x80 != 0;
        let opcode = b0 & 0x0f;
        let masked = b1 & 0x80 != 0;
        match (self.sender, masked) {
            (Sender::Client, false) => return Err(FrameError::Protocol("unmasked client frame")),
            (Sender::Server, true) => return Err(FrameError::Protocol("masked server frame")),
            _ => {}
        }
        let (payload_len, mut at) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut be = [0u8; 8];
                    be.copy_from_slice(b);
                    let n = u64::from_be_bytes(be);
                    if n >> 63 != 0 {
                        return Err(FrameError::Protocol("frame length with the top bit set"));
                    }
                    (n, 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin {
                    return Err(FrameError::Protocol("fragmented control frame"));
                }
                if payload_len > MAX_CONTROL_PAYLOAD as u64 {
                    return Err(FrameError::Protocol("control frame over 125 bytes"));
                }
            }
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {
                match (&self.message, opcode) {
                    (None, OP_CONTINUATION) => {
                        return Err(FrameError::Protocol("continuation outside a message"))
                    }
                    (Some(_), OP_TEXT | OP_BINARY) => {
                        return Err(FrameError::Protocol("new message inside a fragmented one"))
                    }
                    _ => {}
                }
                let so_far = self.message.as_ref().map_or(0, |m| m.len);
                if so_far + payload_len > self.max_message {
                    return Err(FrameError::TooBig);
                }
            }
            _ => return Err(FrameError::Protocol("reserved opcode")),
        }
        let mask = if masked {
            let Some(m) = buf.get(at..at + 4) else {
                return Ok(None);
            };
            at += 4;
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        Ok(Some(Header {
            fin,
            opcode,
            mask,
            header_len: at,
            payload_len,
        }))
    }

    fn data(&mut self, head: Header, payload: &[u8], len: usize) -> Result<Next, FrameError> {
        let message = self.message.get_or_insert_with(|| Message {
            text: head.opcode == OP_TEXT,
            len: 0,
            utf8: Utf8Validator::default(),
        });
        message.len += payload.len() as u64;
        let text = message.text;
        if text && self.check_text {
            let valid = match head.mask {
                None => message.utf8.feed(payload),
                Some(mask) => feed_unmasked(&mut message.utf8, payload, mask),
            };
            let valid = valid.and_then(|()| {
                if head.fin {
                    message.utf8.finish()
                } else {
                    Ok(())
                }
            });
            valid.map_err(|_| FrameError::InvalidUtf8)?;
        }
        if head.fin {
            self.message = None;
        }
        Ok(Next::Frame(Frame::Data {
            len,
            payload: payload.len(),
            fin: head.fin,
            text,
        }))
    }
}

/// How many bytes an incomplete header needs at least (its full length once the length
/// byte is known).
fn header_len_hint(buf: &[u8]) -> usize {
    let Some(&b1) = buf.get(1) else {
        return 2;
    };
    let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
    let len = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + len + mask
}

/// Validates a masked text payload without changing it: unmasked a block at a time on the
/// stack.
fn feed_unmasked(
    utf8: &mut Utf8Validator,
    payload: &[u8],
    mask: [u8; 4],
) -> Result<(), super::utf8::InvalidUtf8> {
    // A multiple of 4, so that every block starts at mask byte 0.
    const BLOCK: usize = 512;
    let mut plain = [0u8; BLOCK];
    for block in payload.chunks(BLOCK) {
        let out = &mut plain[..block.len()];
        for (i, (o, b)) in out.iter_mut().zip(block).enumerate() {
            *o = b ^ mask[i & 3];
        }
        utf8.feed(out)?;
    }
    Ok(())
}

fn control_payload(payload: &[u8], mask: Option<[u8; 4]>) -> ControlPayload {
    let mut out = ControlPayload {
        bytes: [0; MAX_CONTROL_PAYLOAD],
        len: payload.len() as u8,
    };
    for (i, (o, b)) in out.bytes.iter_mut().zip(payload).enumerate() {
        *o = match mask {
            Some(m) => b ^ m[i & 3],
            None => *b,
        };
    }
    out
}

/// The code of a close payload: none, or a code that may be sent and a UTF-8 reason
/// (RFC 6455 sections 5.5.1 and 7.4).
fn close_code(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("close frame of one byte")),
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                return Err(FrameError::Protocol("close code that may not be sent"));
            }
            std::str::from_utf8(reason).map_err(|_| FrameError::InvalidUtf8)?;
            Ok(Some(code))
        }
    }
}

/// A control frame written by the proxy itself: masked with `mask` towards a server (the
/// proxy is then the client), unmasked towards a client. `payload` is cut at 125 bytes.
pub fn control_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Bytes {
    let payload = &payload[..payload.len().min(MAX_CONTROL_PAYLOAD)];
    frame(opcode, payload, mask)
}

/// A whole message (`OP_TEXT` or `OP_BINARY`) in one frame, written by the proxy itself
/// (`on_connect`, the back channel), masked as [`control_frame`] is.
pub fn message_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Bytes {
    frame(opcode, payload, mask)
}

fn frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Bytes {
    let mut out = BytesMut::with_capacity(MAX_HEADER + payload.len());
    out.put_u8(0x80 | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.put_u8(mask_bit | n as u8),
        n @ 126..=0xffff => {
            out.put_u8(mask_bit | 126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(mask_bit | 127);
            out.put_u64(n as u64);
        }
    }
    match mask {
        Some(m) => {
            out.put_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i & 3]));
        }
        None => out.put_slice(payload),
    }
    out.freeze()
}

/// A close frame with `code` and as much of `reason` as fits (cut at a character boundary).
pub fn close_frame(code: u16, reason: &str, mask: Option<[u8; 4]>) -> Bytes {
    let mut cut = reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    while !reason.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut payload = Vec::with_capacity(2 + cut);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..cut]);
    control_frame(OP_CLOSE, &payload, mask)
}

#[cfg(test)]
mod tests;
