//! The bytes of the event-stream path (pure, no I/O): which request heads it serves, and the
//! response head and chunk framing it writes.
//!
//! A head is taken only when nothing about it needs more than a bodiless `GET` (RFC 9112):
//! origin-form target, HTTP/1.1, no `Content-Length`, `Transfer-Encoding`, `Expect` or
//! `Upgrade`, and an `Accept` that asks for `text/event-stream`. Everything else, and every
//! head `httparse` or the `http` types refuse, is left to hyper, which answers it as before
//! (`400`, `431`, ...): this path never decides a refusal of its own.

use std::fmt::Write as _;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

use crate::proxy::headers::{accepts_event_stream, has_token};

/// Header lines in a request head, as for hyper (`max_headers`).
const MAX_HEADERS: usize = 100;

/// What the bytes read so far hold.
#[derive(Debug)]
pub enum Head {
    /// Not a whole head yet.
    Partial,
    /// A request this path serves, the length of its head, and whether the client asked for
    /// the connection to close after it.
    EventStream {
        // Boxed: the head's parts are large, and only this variant has them.
        request: Box<Request<()>>,
        len: usize,
        close: bool,
    },
    /// Anything else: hyper serves the connection from here.
    Other,
}

/// Classifies the start of `buf`; `max_head` is the header size limit (a head that has not
/// ended within it is hyper's to refuse).
pub fn parse(buf: &[u8], max_head: usize) -> Head {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut lines);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len <= max_head => len,
        Ok(httparse::Status::Partial) if buf.len() < max_head => return Head::Partial,
        _ => return Head::Other,
    };
    if parsed.method != Some("GET") || parsed.version != Some(1) {
        return Head::Other;
    }
    let Some(path) = parsed.path.filter(|p| p.starts_with('/')) else {
        return Head::Other;
    };
    let Ok(uri) = Uri::from_maybe_shared(Bytes::copy_from_slice(path.as_bytes())) else {
        return Head::Other;
    };
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for line in parsed.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line.name.as_bytes()),
            HeaderValue::from_bytes(line.value),
        ) else {
            return Head::Other;
        };
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::EXPECT
            || name == header::UPGRADE
        {
            return Head::Other;
        }
        headers.append(name, value);
    }
    if has_token(&headers, header::CONNECTION, "upgrade") || !accepts_event_stream(&headers) {
        return Head::Other;
    }
    let close = has_token(&headers, header::CONNECTION, "close");
    let mut request = Request::new(());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Head::EventStream {
        request: Box::new(request),
        len,
        close,
    }
}

/// How a response body is delimited on the wire (RFC 9112 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all (`204`, `304`).
    None,
    Length(u64),
    Chunked,
}

impl Framing {
    /// The framing for a response with `status` and `headers` whose body reports `exact`
    /// (its size hint). A `Content-Length` the response carries is kept; otherwise a body of
    /// known size gets one, and any other body is chunked.
    pub fn of(status: StatusCode, headers: &HeaderMap, exact: Option<u64>) -> Self {
        if status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
            || status.is_informational()
        {
            return Framing::None;
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        match declared.or(exact) {
            Some(len) => Framing::Length(len),
            None => Framing::Chunked,
        }
    }
}

/// The response head: status line, the response's headers (less the framing ones, which are
/// written from `framing`), `Date` when the response has none (as hyper adds it), and
/// `Connection: close` when the connection ends after this response.
pub fn response_head(
    status: StatusCode,
    headers: &HeaderMap,
    framing: Framing,
    close: bool,
    date: &str,
) -> Vec<u8> {
    let mut head = Vec::with_capacity(128 + headers.len() * 40);
    head.extend_from_slice(b"HTTP/1.1 ");
    head.extend_from_slice(status.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        line(&mut head, name.as_str().as_bytes(), value.as_bytes());
    }
    match framing {
        Framing::None => {
            // A 304 keeps the length of the representation it stands for.
            if status == StatusCode::NOT_MODIFIED {
                if let Some(len) = headers.get(header::CONTENT_LENGTH) {
                    line(&mut head, b"content-length", len.as_bytes());
                }
            }
        }
        Framing::Length(len) => {
            line(&mut head, b"content-length", len.to_string().as_bytes());
        }
        Framing::Chunked => line(&mut head, b"transfer-encoding", b"chunked"),
    }
    if !headers.contains_key(header::DATE) {
        line(&mut head, b"date", date.as_bytes());
    }
    if close {
        line(&mut head, b"connection", b"close");
    }
    head.extend_from_slice(b"\r\n");
    head
}

fn line(head: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    head.extend_from_slice(name);
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// A chunk-size line (`<hex>\r\n`), kept inline: one per event, never allocated.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChunkLine {
    buf: [u8; 18],
    len: u8,
}

impl ChunkLine {
    pub fn new(size: usize) -> Self {
        let mut line = ChunkLine::default();
        let mut text = Hex(&mut line);
        // 16 hex digits at most for a usize, plus CRLF: always fits.
        let _ = write!(text, "{size:x}\r\n");
        line
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

struct Hex<'a>(&'a mut ChunkLine);

impl std::fmt::Write for Hex<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let start = usize::from(self.0.len);
        let end = start + s.len();
        let dest = self.0.buf.get_mut(start..end).ok_or(std::fmt::Error)?;
        dest.copy_from_slice(s.as_bytes());
        self.0.len = end as u8;
        Ok(())
    }
}

/// The end of a chunked body: the last chunk, no trailers.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";
/// What follows each chunk's data.
pub const CHUNK_END: &[u8] = b"\r\n";

#[cfg(test)]
mod tests;
