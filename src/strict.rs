//! Strict HTTP/1.1 request framing (SPEC 10 "Strict HTTP/1.1"): a watcher that follows the
//! client's byte stream message by message, ahead of hyper, and refuses what hyper would
//! tolerate but a strict proxy must not: `Content-Length` together with `Transfer-Encoding`,
//! several `Content-Length` headers (equal or not), a transfer coding other than `chunked`.
//!
//! Pure: bytes in, a verdict out; no I/O. Heads that do not even parse are left to hyper, which
//! answers them with `400`/`431` itself. The watcher stops at the first upgrade request or an
//! HTTP/2 preface: what follows is not HTTP/1.1 requests.

/// What the watcher concluded from the bytes so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing wrong (yet): pass the bytes on.
    Pass,
    /// Refuse the request with this status and close the connection.
    Reject(u16, &'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Collecting a request head.
    Head,
    /// Inside a `Content-Length` body: this many bytes to go.
    Body(u64),
    /// Inside a chunked body.
    Chunked(Chunk),
    /// Past an upgrade or an HTTP/2 preface, or after a verdict: nothing more is checked.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line (size so far, whether an extension started, its length).
    Size {
        size: u64,
        digits: usize,
        ext: usize,
    },
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk: trailer lines until an empty one (bytes on the current line).
    Trailer {
        line: usize,
    },
    TrailerLf {
        line: usize,
    },
}

/// Chunk extensions longer than this are refused (SPEC 10).
const MAX_CHUNK_EXTENSION: usize = 16 * 1024;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// Follows one client connection.
#[derive(Debug)]
pub struct RequestWatcher {
    state: State,
    head: Vec<u8>,
    max_head: usize,
}

impl RequestWatcher {
    /// `max_head` bounds the bytes held while a head is incomplete (the header size limit).
    pub fn new(max_head: usize) -> Self {
        RequestWatcher {
            state: State::Head,
            head: Vec::new(),
            max_head,
        }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Watches bytes the client sent, in order.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Verdict {
        while !bytes.is_empty() {
            let consumed = match self.state {
                State::Done => return Verdict::Pass,
                State::Head => match self.head_bytes(bytes) {
                    Ok(n) => n,
                    Err(verdict) => {
                        self.state = State::Done;
                        return verdict;
                    }
                },
                State::Body(left) => {
                    let n = left.min(bytes.len() as u64);
                    self.state = if n == left {
                        State::Head
                    } else {
                        State::Body(left - n)
                    };
                    n as usize
                }
                State::Chunked(chunk) => match self.chunk_bytes(chunk, bytes) {
                    Ok(n) => n,
                    Err(verdict) => {
                        self.state = State::Done;
                        return verdict;
                    }
                },
            };
            bytes = &bytes[consumed..];
        }
        Verdict::Pass
    }

    /// Gathers a head; when complete, checks it and sets up the body. Returns bytes consumed.
    fn head_bytes(&mut self, bytes: &[u8]) -> Result<usize, Verdict> {
        // Leading empty lines between requests are allowed (RFC 9112 section 2.2).
        if self.head.is_empty() {
            let skip = bytes
                .iter()
                .take_while(|b| **b == b'\r' || **b == b'\n')
                .count();
            if skip > 0 {
                return Ok(skip);
            }
        }
        let before = self.head.len();
        let window_start = before.saturating_sub(3);
        self.head.extend_from_slice(bytes);
        if self.head.starts_with(H2_PREFACE)
            || (self.head.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(&self.head))
        {
            if self.head.len() >= H2_PREFACE.len() {
                self.state = State::Done;
            }
            return Ok(bytes.len());
        }
        let Some(end) = find(&self.head[window_start..], b"\r\n\r\n").map(|i| window_start + i + 4)
        else {
            if self.head.len() > self.max_head {
                // The header size limit is enforced here, exactly: hyper's own buffer limit
                // cannot go below 8 KiB.
                self.head = Vec::new();
                return Err(Verdict::Reject(431, "request header section too large"));
            }
            return Ok(bytes.len());
        };
        if end > self.max_head {
            self.head = Vec::new();
            return Err(Verdict::Reject(431, "request header section too large"));
        }
        let consumed = end - before;
        let head = std::mem::take(&mut self.head);
        self.state = check_head(&head[..end])?;
        Ok(consumed)
    }

    fn chunk_bytes(&mut self, chunk: Chunk, bytes: &[u8]) -> Result<usize, Verdict> {
        let b = bytes[0];
        let next = match chunk {
            Chunk::Size { size, digits, ext } => match b {
                b'\r' if digits > 0 => Chunk::SizeLf { size },
                _ if ext > 0 => {
                    if ext >= MAX_CHUNK_EXTENSION {
                        return Err(Verdict::Reject(400, "chunk extension too long"));
                    }
                    if b == b'\n' {
                        return Err(Verdict::Reject(400, "malformed chunk size line"));
                    }
                    Chunk::Size {
                        size,
                        digits,
                        ext: ext + 1,
                    }
                }
                b';' | b' ' | b'\t' if digits > 0 => Chunk::Size {
                    size,
                    digits,
                    ext: 1,
                },
                _ => {
                    let digit = (b as char)
                        .to_digit(16)
                        .ok_or(Verdict::Reject(400, "malformed chunk size"))?;
                    if digits >= 16 {
                        return Err(Verdict::Reject(400, "chunk size too large"));
                    }
                    Chunk::Size {
                        size: size * 16 + u64::from(digit),
                        digits: digits + 1,
                        ext: 0,
                    }
                }
            },
            Chunk::SizeLf { size } => match b {
                b'\n' if size == 0 => Chunk::Trailer { line: 0 },
                b'\n' => Chunk::Data(size),
                _ => return Err(Verdict::Reject(400, "malformed chunk size line")),
            },
            Chunk::Data(left) => {
                let n = left.min(bytes.len() as u64);
                self.state = State::Chunked(if n == left {
                    Chunk::DataCr
                } else {
                    Chunk::Data(left - n)
                });
                return Ok(n as usize);
            }
            Chunk::DataCr if b == b'\r' => Chunk::DataLf,
            Chunk::DataLf if b == b'\n' => Chunk::Size {
                size: 0,
                digits: 0,
                ext: 0,
            },
            Chunk::DataCr | Chunk::DataLf => {
                return Err(Verdict::Reject(400, "chunk data not followed by CRLF"))
            }
            Chunk::Trailer { line } => match b {
                b'\r' => Chunk::TrailerLf { line },
                b'\n' => return Err(Verdict::Reject(400, "bare LF in trailer")),
                _ if line >= self.max_head => {
                    return Err(Verdict::Reject(431, "trailer too large"))
                }
                _ => Chunk::Trailer { line: line + 1 },
            },
            Chunk::TrailerLf { line } => match b {
                b'\n' if line == 0 => {
                    self.state = State::Head;
                    return Ok(1);
                }
                b'\n' => Chunk::Trailer { line: 0 },
                _ => return Err(Verdict::Reject(400, "bare CR in trailer")),
            },
        };
        self.state = State::Chunked(next);
        Ok(1)
    }
}

/// Checks a complete head; returns the state for what follows it.
fn check_head(head: &[u8]) -> Result<State, Verdict> {
    let mut headers = [httparse::EMPTY_HEADER; 101];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        // Malformed or too many headers: hyper refuses it with the right status itself.
        _ => return Ok(State::Done),
    }
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut transfer_encoding = false;
    let mut upgrade = false;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            if content_length.is_some() {
                return Err(Verdict::Reject(400, "several Content-Length headers"));
            }
            let value = std::str::from_utf8(header.value)
                .map_err(|_| Verdict::Reject(400, "invalid Content-Length"))?;
            let value = value.trim_matches([' ', '\t']);
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Verdict::Reject(400, "invalid Content-Length"));
            }
            content_length = Some(
                value
                    .parse()
                    .map_err(|_| Verdict::Reject(400, "invalid Content-Length"))?,
            );
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            let value = std::str::from_utf8(header.value)
                .map_err(|_| Verdict::Reject(400, "invalid Transfer-Encoding"))?;
            for coding in value
                .split(',')
                .map(|c| c.trim_matches([' ', '\t']))
                .filter(|c| !c.is_empty())
            {
                if chunked {
                    // RFC 9112 section 6.1: chunked must be the last coding, applied once.
                    return Err(Verdict::Reject(
                        400,
                        "chunked is not the last transfer coding",
                    ));
                }
                if !coding.eq_ignore_ascii_case("chunked") {
                    return Err(Verdict::Reject(501, "unsupported transfer coding"));
                }
                chunked = true;
            }
            transfer_encoding = true;
        } else if header.name.eq_ignore_ascii_case("upgrade") {
            upgrade = true;
        }
    }
    if transfer_encoding && content_length.is_some() {
        return Err(Verdict::Reject(
            400,
            "both Content-Length and Transfer-Encoding",
        ));
    }
    if transfer_encoding && request.version == Some(0) {
        return Err(Verdict::Reject(
            400,
            "Transfer-Encoding in an HTTP/1.0 request",
        ));
    }
    if transfer_encoding && !chunked {
        return Err(Verdict::Reject(400, "empty Transfer-Encoding"));
    }
    if upgrade {
        return Ok(State::Done);
    }
    Ok(if chunked {
        State::Chunked(Chunk::Size {
            size: 0,
            digits: 0,
            ext: 0,
        })
    } else {
        match content_length {
            Some(n) if n > 0 => State::Body(n),
            _ => State::Head,
        }
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(input: &str) -> Verdict {
        let mut w = RequestWatcher::new(16 * 1024);
        w.feed(input.as_bytes())
    }

    /// Feeds byte by byte: the verdict must not depend on how the input is split.
    fn verdict_split(input: &str) -> Verdict {
        let mut w = RequestWatcher::new(16 * 1024);
        for b in input.as_bytes() {
            if let v @ Verdict::Reject(..) = w.feed(std::slice::from_ref(b)) {
                return v;
            }
        }
        Verdict::Pass
    }

    fn status(input: &str) -> Option<u16> {
        let whole = verdict(input);
        assert_eq!(
            whole,
            verdict_split(input),
            "split changes the verdict for {input:?}"
        );
        match whole {
            Verdict::Pass => None,
            Verdict::Reject(status, _) => Some(status),
        }
    }

    #[test]
    fn ordinary_requests_pass() {
        assert_eq!(status("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        assert_eq!(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost: a\r\n\r\n"), None);
        assert_eq!(
            status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
            None
        );
    }

    #[test]
    fn content_length_with_transfer_encoding_is_400() {
        assert_eq!(status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), Some(400));
        assert_eq!(status("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"), Some(400));
    }

    #[test]
    fn several_or_invalid_content_lengths_are_400() {
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
            Some(400)
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc"),
            Some(400)
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc"),
            Some(400)
        );
    }

    #[test]
    fn unknown_transfer_coding_is_501() {
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Some(501)
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n"),
            Some(501)
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"),
            Some(400)
        );
    }

    #[test]
    fn smuggled_second_request_is_checked_too() {
        let input = "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(status(input), Some(400));
    }

    #[test]
    fn long_chunk_extension_is_400() {
        let ext = "a".repeat(MAX_CHUNK_EXTENSION + 1);
        let input = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1;{ext}\r\nx\r\n0\r\n\r\n"
        );
        assert_eq!(
            verdict(&input),
            Verdict::Reject(400, "chunk extension too long")
        );
    }

    #[test]
    fn malformed_chunks_are_400() {
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"),
            Some(400)
        );
        assert_eq!(
            status("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxy\r\n"),
            Some(400)
        );
    }

    #[test]
    fn head_over_the_limit_is_431() {
        let mut w = RequestWatcher::new(64);
        let head = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(100));
        assert_eq!(
            w.feed(head.as_bytes()),
            Verdict::Reject(431, "request header section too large")
        );
        let mut w = RequestWatcher::new(64);
        assert_eq!(w.feed(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"), Verdict::Pass);
    }

    #[test]
    fn upgrade_and_http2_stop_the_watch() {
        let mut w = RequestWatcher::new(1024);
        assert_eq!(
            w.feed(
                b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
            ),
            Verdict::Pass
        );
        assert!(w.is_done());
        let mut w = RequestWatcher::new(1024);
        assert_eq!(w.feed(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Verdict::Pass);
        assert!(w.is_done());
    }
}
