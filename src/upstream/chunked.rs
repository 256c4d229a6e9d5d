//! The chunked transfer coding of a response body (RFC 9112 section 7.1), decoded in place.
//!
//! [`ChunkedDecoder::decode`] takes whatever bytes have arrived and leaves the payload they
//! carry as one contiguous run inside the same buffer: the first run stays where it is and
//! later chunks are moved down beside it, so a read holding many small chunks (one event
//! each) becomes one frame without a copy of the first chunk and without an allocation. It is
//! a pure function of bytes, knows nothing of sockets, and must never panic on any input.
//! Extensions and trailers are accepted and dropped, with their sizes bounded.

/// A chunk-size line longer than this (hex digits, extensions, whitespace) is refused.
pub const MAX_SIZE_LINE: usize = 16 * 1024;
/// A trailer section longer than this is refused.
pub const MAX_TRAILERS: usize = 64 * 1024;

/// Why a chunked body cannot be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    #[error("invalid chunk size")]
    InvalidSize,
    #[error("chunk size line too long")]
    SizeLineTooLong,
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
    #[error("trailer section too long")]
    TrailersTooLong,
}

/// Where the decoder stands between two calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex digits of a chunk size; `digits` read so far.
    Size {
        size: u64,
        digits: u8,
    },
    /// After the size: whitespace, then extensions (`ext`: a `;` was seen) up to the CR.
    /// `len`: the line's length so far.
    SizeRest {
        size: u64,
        len: usize,
        ext: bool,
    },
    /// Seen the CR that ends the size line.
    SizeLf {
        size: u64,
    },
    Data {
        remaining: u64,
    },
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the final empty line). `len`: trailer bytes so far.
    TrailerStart {
        len: usize,
    },
    TrailerLine {
        len: usize,
    },
    TrailerLf {
        len: usize,
        empty: bool,
    },
    Done,
}

/// What one call made of its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Decoded {
    /// The payload starts here...
    pub start: usize,
    /// ...and is this long.
    pub len: usize,
    /// Input bytes used up (payload and framing); anything after them is the start of an
    /// unfinished size line or trailer, to be passed again with more bytes behind it.
    pub consumed: usize,
}

#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder {
            state: State::Size { size: 0, digits: 0 },
        }
    }
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes `buf` in place; see the module documentation. Bytes after the end of the body
    /// are left unconsumed.
    pub fn decode(&mut self, buf: &mut [u8]) -> Result<Decoded, ChunkError> {
        let mut out = Decoded::default();
        let mut at = 0;
        while at < buf.len() {
            match self.state {
                State::Data { remaining } => {
                    let n = remaining.min((buf.len() - at) as u64) as usize;
                    if out.len == 0 {
                        out.start = at;
                    } else if out.start + out.len != at {
                        buf.copy_within(at..at + n, out.start + out.len);
                    }
                    out.len += n;
                    at += n;
                    self.state = match remaining - n as u64 {
                        0 => State::DataCr,
                        left => State::Data { remaining: left },
                    };
                }
                State::Done => break,
                _ => {
                    self.state = self.step(buf[at])?;
                    at += 1;
                }
            }
        }
        out.consumed = at;
        Ok(out)
    }

    /// Advances over one framing byte.
    fn step(&self, byte: u8) -> Result<State, ChunkError> {
        Ok(match self.state {
            State::Size { size, digits } => match hex_value(byte) {
                Some(v) if digits < 16 => State::Size {
                    size: size << 4 | u64::from(v),
                    digits: digits + 1,
                },
                Some(_) => return Err(ChunkError::InvalidSize),
                None if digits == 0 => return Err(ChunkError::InvalidSize),
                None => size_rest(size, usize::from(digits), false, byte)?,
            },
            State::SizeRest { size, len, ext } => size_rest(size, len, ext, byte)?,
            State::SizeLf { size } => match (byte, size) {
                (b'\n', 0) => State::TrailerStart { len: 0 },
                (b'\n', size) => State::Data { remaining: size },
                _ => return Err(ChunkError::InvalidSize),
            },
            State::DataCr if byte == b'\r' => State::DataLf,
            State::DataLf if byte == b'\n' => State::Size { size: 0, digits: 0 },
            State::DataCr | State::DataLf => return Err(ChunkError::MissingCrlf),
            State::TrailerStart { len } | State::TrailerLine { len } => {
                let empty = matches!(self.state, State::TrailerStart { .. });
                match byte {
                    _ if len >= MAX_TRAILERS => return Err(ChunkError::TrailersTooLong),
                    b'\r' => State::TrailerLf {
                        len: len + 1,
                        empty,
                    },
                    _ => State::TrailerLine { len: len + 1 },
                }
            }
            State::TrailerLf { len, empty } => match (byte, empty) {
                (b'\n', true) => State::Done,
                (b'\n', false) => State::TrailerStart { len: len + 1 },
                _ => return Err(ChunkError::MissingCrlf),
            },
            // Handled by `decode` without a call here.
            State::Data { .. } | State::Done => self.state,
        })
    }
}

/// After the size digits: optional whitespace, then `;name=value` extensions up to the CR
/// (RFC 9112 section 7.1.1); their content is not interpreted, but nothing else may follow
/// the digits (`0x10` is not a size).
fn size_rest(size: u64, len: usize, ext: bool, byte: u8) -> Result<State, ChunkError> {
    if len >= MAX_SIZE_LINE {
        return Err(ChunkError::SizeLineTooLong);
    }
    let len = len + 1;
    match byte {
        b'\r' => Ok(State::SizeLf { size }),
        b'\n' => Err(ChunkError::InvalidSize),
        b';' => Ok(State::SizeRest {
            size,
            len,
            ext: true,
        }),
        b' ' | b'\t' => Ok(State::SizeRest { size, len, ext }),
        _ if ext => Ok(State::SizeRest { size, len, ext }),
        _ => Err(ChunkError::InvalidSize),
    }
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces cut at `cuts`, keeping unconsumed bytes like a reader would;
    /// returns the payload and whether the body ended.
    fn decode_split(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, bool), ChunkError> {
        let mut decoder = ChunkedDecoder::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut payload = Vec::new();
        let mut last = 0;
        for &cut in cuts.iter().chain(std::iter::once(&input.len())) {
            pending.extend_from_slice(&input[last..cut]);
            last = cut;
            let d = decoder.decode(&mut pending)?;
            payload.extend_from_slice(&pending[d.start..d.start + d.len]);
            pending.drain(..d.consumed);
        }
        Ok((payload, decoder.is_done()))
    }

    const BODY: &[u8] = b"9;name=\"v\"\r\ndata: a\n\n\r\n1C\r\ndata: bbbbbbbbbbbbbbbbbbbb\n\n\r\n3 \r\n: x\r\n0\r\nExpires: never\r\nX-T: 1\r\n\r\n";
    const PAYLOAD: &[u8] = b"data: a\n\ndata: bbbbbbbbbbbbbbbbbbbb\n\n: x";

    #[test]
    fn decodes_whole_body_into_one_run() {
        let mut buf = BODY.to_vec();
        let mut decoder = ChunkedDecoder::new();
        let d = decoder.decode(&mut buf).expect("valid body");
        assert_eq!(&buf[d.start..d.start + d.len], PAYLOAD);
        assert_eq!(d.start, 12, "the first chunk stays in place");
        assert_eq!(d.consumed, BODY.len());
        assert!(decoder.is_done());
    }

    #[test]
    fn every_split_position_gives_the_same_payload() {
        for cut in 0..=BODY.len() {
            for second in cut..=BODY.len() {
                let (payload, done) = decode_split(BODY, &[cut, second]).expect("valid body");
                assert_eq!(payload, PAYLOAD, "cuts at {cut} and {second}");
                assert!(done);
            }
        }
    }

    #[test]
    fn one_byte_at_a_time() {
        let cuts: Vec<usize> = (1..BODY.len()).collect();
        let (payload, done) = decode_split(BODY, &cuts).expect("valid body");
        assert_eq!(payload, PAYLOAD);
        assert!(done);
    }

    #[test]
    fn bytes_after_the_body_are_left() {
        let mut buf = b"2\r\nok\r\n0\r\n\r\nextra".to_vec();
        let mut decoder = ChunkedDecoder::new();
        let d = decoder.decode(&mut buf).expect("valid body");
        assert_eq!(&buf[d.start..d.start + d.len], b"ok");
        assert_eq!(d.consumed, buf.len() - 5);
        assert!(decoder.is_done());
    }

    #[test]
    fn unfinished_body_is_not_done() {
        let (payload, done) = decode_split(b"5\r\nhello\r\n", &[]).expect("valid so far");
        assert_eq!(payload, b"hello");
        assert!(!done);
    }

    #[test]
    fn refuses_broken_framing() {
        let cases: &[(&[u8], ChunkError)] = &[
            (b"x\r\n", ChunkError::InvalidSize),
            (b"\r\n", ChunkError::InvalidSize),
            (b"5\n", ChunkError::InvalidSize),
            (b"5\r\r", ChunkError::InvalidSize),
            (b"9zzz\r\n", ChunkError::InvalidSize),
            (b"0x10\r\n", ChunkError::InvalidSize),
            (b"5 x\r\n", ChunkError::InvalidSize),
            (b"11111111111111111\r\n", ChunkError::InvalidSize),
            (b"2\r\nokX", ChunkError::MissingCrlf),
            (b"2\r\nok\rX", ChunkError::MissingCrlf),
            (b"0\r\nX: 1\rX", ChunkError::MissingCrlf),
        ];
        for (input, expected) in cases {
            let got = ChunkedDecoder::new().decode(&mut input.to_vec());
            assert_eq!(got, Err(*expected), "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn largest_size_is_accepted() {
        let mut buf = b"ffffffffffffffff\r\nabc".to_vec();
        let d = ChunkedDecoder::new().decode(&mut buf).expect("valid size");
        assert_eq!(&buf[d.start..d.start + d.len], b"abc");
    }

    #[test]
    fn bounds_extensions_and_trailers() {
        let mut line = b"1;".to_vec();
        line.resize(MAX_SIZE_LINE + 8, b'x');
        assert_eq!(
            ChunkedDecoder::new().decode(&mut line),
            Err(ChunkError::SizeLineTooLong)
        );
        let mut trailers = b"0\r\n".to_vec();
        while trailers.len() < MAX_TRAILERS + 64 {
            trailers.extend_from_slice(b"X-Filler: 0123456789\r\n");
        }
        assert_eq!(
            ChunkedDecoder::new().decode(&mut trailers),
            Err(ChunkError::TrailersTooLong)
        );
    }
}
