//! One HTTP/1.1 exchange on a connection of its own, for requests that ask for an event
//! stream: the request head is written here, the response head parsed with `httparse`, and the
//! body decoded by the response body itself as the client's connection asks for it.
//!
//! The pooled client would put a connection task, a request channel and two 8 KiB buffers
//! behind every open stream. Here a stream holds its socket, its framing state and, while it
//! is idle, no buffer at all: bytes are read only once the socket is readable, and a read
//! buffer that has been handed on whole is let go.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, Uri};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::either::Either;

use super::chunked::ChunkedDecoder;
use super::{UpstreamError, UpstreamStream};

/// A response head larger than this is refused (the pooled client's own limit is larger, but
/// no event-stream origin needs more).
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Header lines in a response head, as for requests.
const MAX_HEADERS: usize = 100;
/// The first read of a body, and the smallest; doubled while reads fill it.
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;

/// Sends `GET`-like request `method uri` with `headers` (hop-by-hop already removed; `Host`
/// is written from the URI) on `io`, and reads the response head. 1xx interim responses are
/// skipped.
pub async fn exchange(
    mut io: UpstreamStream,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response<ResponseBody>, UpstreamError> {
    let head = request_head(method, uri, headers);
    io.write_all(&head)
        .await
        .map_err(|e| protocol("sending the request", &e))?;
    drop(head);
    let (head, buf) = read_head(&mut io, false).await?;
    let framing = Framing::of(&head)?;
    let mut response = Response::new(ResponseBody::new(io, buf, framing));
    *response.status_mut() = head.status;
    *response.version_mut() = head.version;
    *response.headers_mut() = head.headers;
    Ok(response)
}

/// A WebSocket opening handshake (RFC 6455 section 4.1) on `io`: the `GET` with `headers`
/// and a fresh key, then the origin's `101` checked. Returns the headers of the `101` and the
/// bytes the origin sent after it (the start of its frames).
pub async fn websocket_handshake(
    io: &mut UpstreamStream,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(HeaderMap, BytesMut), UpstreamError> {
    use tokio_tungstenite::tungstenite::handshake::client::generate_key;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

    let key = generate_key();
    let mut request = headers.clone();
    request.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    request.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    request.insert(
        header::SEC_WEBSOCKET_VERSION,
        HeaderValue::from_static("13"),
    );
    let key_value = HeaderValue::from_str(&key)
        .map_err(|e| UpstreamError::Handshake(format!("WebSocket key: {e}")))?;
    request.insert(header::SEC_WEBSOCKET_KEY, key_value);
    let head = request_head(&Method::GET, uri, &request);
    io.write_all(&head)
        .await
        .map_err(|e| protocol("sending the WebSocket handshake", &e))?;
    let (head, rest) = read_head(io, true).await?;
    let refused = |why: String| Err(UpstreamError::Handshake(why));
    if head.status != StatusCode::SWITCHING_PROTOCOLS {
        return refused(format!(
            "origin answered {} instead of upgrading",
            head.status
        ));
    }
    let token = |name: header::HeaderName, token: &str| {
        head.headers
            .get_all(name)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    };
    if !token(header::UPGRADE, "websocket") || !token(header::CONNECTION, "upgrade") {
        return refused("101 without Upgrade: websocket".to_owned());
    }
    let accept = head.headers.get(header::SEC_WEBSOCKET_ACCEPT);
    if accept.map(HeaderValue::as_bytes) != Some(derive_accept_key(key.as_bytes()).as_bytes()) {
        return refused("wrong Sec-WebSocket-Accept".to_owned());
    }
    // No extension was offered, so none may be in use: the relay passes frames as they are.
    if head.headers.contains_key(header::SEC_WEBSOCKET_EXTENSIONS) {
        return refused("origin chose an extension that was not offered".to_owned());
    }
    Ok((head.headers, rest))
}

/// Reads a response head from `io`, skipping 1xx interim responses (but for a `101` when
/// `upgrade` is asked for). Returns the head and the bytes read after it.
async fn read_head(
    io: &mut UpstreamStream,
    upgrade: bool,
) -> Result<(Head, BytesMut), UpstreamError> {
    let mut buf = BytesMut::with_capacity(4096);
    // Bytes already known to hold no line end: the head is parsed again only once a line is
    // complete, so an origin trickling its head byte by byte costs one parse per line.
    let mut scanned = 0;
    loop {
        let line_ended = buf[scanned..].contains(&b'\n');
        scanned = buf.len();
        if let Some((head, len)) = line_ended
            .then(|| parse_head(&buf, upgrade))
            .transpose()?
            .flatten()
        {
            buf.advance(len);
            scanned = 0;
            if head.status.is_informational() && head.status != StatusCode::SWITCHING_PROTOCOLS {
                continue;
            }
            return Ok((head, buf));
        }
        if buf.len() >= MAX_RESPONSE_HEAD {
            return Err(head_too_large());
        }
        buf.reserve(4096);
        let n = io
            .read_buf(&mut buf)
            .await
            .map_err(|e| protocol("reading the response head", &e))?;
        if n == 0 {
            return Err(UpstreamError::Protocol(
                "connection closed before the response head".to_owned(),
            ));
        }
    }
}

fn head_too_large() -> UpstreamError {
    UpstreamError::Protocol(format!(
        "response head larger than {} KiB",
        MAX_RESPONSE_HEAD / 1024
    ))
}

fn protocol(doing: &str, err: &io::Error) -> UpstreamError {
    UpstreamError::Protocol(format!("{doing}: {err}"))
}

/// The request line, `Host`, and `headers`.
fn request_head(method: &Method, uri: &Uri, headers: &HeaderMap) -> Vec<u8> {
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let size: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    let mut head = Vec::with_capacity(size + path.len() + 64);
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(host_header(uri).as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// `Host` for the origin: its host, and its port unless it is the scheme's default.
fn host_header(uri: &Uri) -> String {
    let host = uri.host().unwrap_or("");
    let default = if matches!(uri.scheme_str(), Some("https" | "wss")) {
        443
    } else {
        80
    };
    match uri.port_u16() {
        Some(port) if port != default => format!("{host}:{port}"),
        _ => host.to_owned(),
    }
}

struct Head {
    status: StatusCode,
    version: http::Version,
    headers: HeaderMap,
}

/// A complete response head at the start of `buf` and its length, or `None` for more bytes.
/// A `101` is refused unless `upgrade` was asked for.
fn parse_head(buf: &[u8], upgrade: bool) -> Result<Option<(Head, usize)>, UpstreamError> {
    let invalid = |what: &dyn std::fmt::Display| {
        UpstreamError::Protocol(format!("invalid response head: {what}"))
    };
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf).map_err(|e| invalid(&e))? {
        httparse::Status::Complete(len) if len <= MAX_RESPONSE_HEAD => len,
        httparse::Status::Complete(_) => return Err(head_too_large()),
        httparse::Status::Partial => return Ok(None),
    };
    let status = parsed
        .code
        .and_then(|c| StatusCode::from_u16(c).ok())
        .ok_or_else(|| invalid(&"status code"))?;
    if status == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
        return Err(invalid(&"101 to a request that asked for no upgrade"));
    }
    let version = match parsed.version {
        Some(0) => http::Version::HTTP_10,
        _ => http::Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|e| invalid(&e))?;
        let value = HeaderValue::from_bytes(h.value).map_err(|e| invalid(&e))?;
        headers.append(name, value);
    }
    Ok(Some((
        Head {
            status,
            version,
            headers,
        },
        len,
    )))
}

/// How the end of a response body is known (RFC 9112 section 6.3).
#[derive(Debug)]
enum Framing {
    Chunked(ChunkedDecoder),
    Length(u64),
    UntilClose,
    Done,
}

impl Framing {
    fn of(head: &Head) -> Result<Framing, UpstreamError> {
        let status = head.status;
        if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            return Ok(Framing::Done);
        }
        if head.headers.contains_key(header::TRANSFER_ENCODING) {
            let last = head
                .headers
                .get_all(header::TRANSFER_ENCODING)
                .iter()
                .flat_map(|v| v.as_bytes().split(|&b| b == b','))
                .map(|coding| coding.trim_ascii())
                .rfind(|coding| !coding.is_empty());
            // A body whose last coding is not chunked ends when the connection does.
            return Ok(match last {
                Some(c) if c.eq_ignore_ascii_case(b"chunked") => {
                    Framing::Chunked(ChunkedDecoder::new())
                }
                _ => Framing::UntilClose,
            });
        }
        let mut length = None;
        for value in head.headers.get_all(header::CONTENT_LENGTH) {
            for item in value.as_bytes().split(|&b| b == b',') {
                let n = std::str::from_utf8(item.trim_ascii())
                    .ok()
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| UpstreamError::Protocol("invalid Content-Length".to_owned()))?;
                if length.is_some_and(|l| l != n) {
                    return Err(UpstreamError::Protocol(
                        "conflicting Content-Length values".to_owned(),
                    ));
                }
                length = Some(n);
            }
        }
        Ok(match length {
            Some(0) => Framing::Done,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        })
    }
}

/// The body of a response read by [`exchange`]: frames are cut from the socket's reads as the
/// client takes them, so nothing is read ahead of a client that is not reading.
#[derive(Debug)]
pub struct ResponseBody {
    io: UpstreamStream,
    /// Bytes read and not yet handed on: the start of the body after the head, or an
    /// unfinished chunk-size line. Empty and unallocated while the stream is idle.
    buf: BytesMut,
    framing: Framing,
    read_size: usize,
}

/// The upstream closed or broke the body before its end.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("upstream closed the connection before the end of the body")]
    Incomplete,
    #[error("invalid chunked body: {0}")]
    Chunked(#[from] super::chunked::ChunkError),
    #[error("reading the upstream body: {0}")]
    Io(#[from] io::Error),
}

impl ResponseBody {
    fn new(io: UpstreamStream, buf: BytesMut, framing: Framing) -> Self {
        ResponseBody {
            io,
            buf,
            framing,
            read_size: MIN_READ,
        }
    }

    /// The payload among the buffered bytes, if any.
    fn take_payload(&mut self) -> Result<Option<Bytes>, BodyError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let payload = match &mut self.framing {
            Framing::Chunked(decoder) => {
                let decoded = decoder.decode(&mut self.buf)?;
                self.buf.advance(decoded.start);
                let payload = self.buf.split_to(decoded.len);
                self.buf
                    .advance(decoded.consumed - decoded.start - decoded.len);
                if decoder.is_done() {
                    self.framing = Framing::Done;
                }
                payload
            }
            Framing::Length(remaining) => {
                let n = (*remaining).min(self.buf.len() as u64);
                *remaining -= n;
                if *remaining == 0 {
                    self.framing = Framing::Done;
                }
                self.buf.split_to(n as usize)
            }
            Framing::UntilClose => self.buf.split(),
            Framing::Done => return Ok(None),
        };
        if matches!(self.framing, Framing::Done) {
            self.buf = BytesMut::new();
        }
        Ok((!payload.is_empty()).then(|| payload.freeze()))
    }

    /// Reads once into `buf`; `Ready(Ok(0))` at the end of the connection. On plain TCP the
    /// buffer is reserved only once the socket is readable.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let want = self.read_size;
        if let Either::Left(tcp) = &self.io {
            ready!(tcp.poll_read_ready(cx))?;
        }
        self.buf.reserve(want);
        // Through `poll_read`, not `try_read`: on TCP a read that leaves room in the buffer
        // marks the socket drained, so the next poll waits for epoll instead of spending a
        // `recvfrom` on EAGAIN (one per event on a paced stream).
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.buf
        ))?;
        self.read_size = if n >= want {
            (want * 2).min(MAX_READ)
        } else if n < want / 4 {
            (want / 2).max(MIN_READ)
        } else {
            want
        };
        Poll::Ready(Ok(n))
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        loop {
            if let Some(payload) = this.take_payload()? {
                return Poll::Ready(Some(Ok(Frame::data(payload))));
            }
            if matches!(this.framing, Framing::Done) {
                return Poll::Ready(None);
            }
            match this.poll_fill(cx) {
                Poll::Ready(Ok(0)) => {
                    if matches!(this.framing, Framing::UntilClose) {
                        this.framing = Framing::Done;
                        return Poll::Ready(None);
                    }
                    return Poll::Ready(Some(Err(BodyError::Incomplete)));
                }
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Pending => {
                    // Idle: let the read buffer go (what was handed on keeps its own bytes).
                    if this.buf.is_empty() {
                        this.buf = BytesMut::new();
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.framing, Framing::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Done => SizeHint::with_exact(0),
            Framing::Length(n) => SizeHint::with_exact(n),
            _ => SizeHint::default(),
        }
    }
}
