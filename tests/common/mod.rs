//! The shared test harness: the proxy started in-process on port 0, scriptable origins that
//! report each request to the test, and raw clients that read until a pattern (absorbing TCP
//! segmentation). Every wait has a timeout; nothing sleeps to synchronise.

#![allow(dead_code, clippy::result_large_err)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

/// A proxy running in this process.
pub struct Proxy {
    pub addrs: Vec<SocketAddr>,
    pub admin: Option<SocketAddr>,
    shutdown: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Starts the proxy from YAML (listeners should bind `127.0.0.1:0`).
    pub async fn start(yaml: &str) -> Proxy {
        let config = ssebridge::config::parse(yaml, "test.yaml")
            .unwrap_or_else(|e| panic!("test config invalid:\n{e}"));
        Self::start_config(config).await
    }

    pub async fn start_config(config: ssebridge::config::Config) -> Proxy {
        let shutdown = CancellationToken::new();
        let running = ssebridge::serve(&config, shutdown.clone())
            .await
            .expect("proxy starts");
        let addrs = running.local_addrs().to_vec();
        let admin = running.admin_addr();
        let done = tokio::spawn(running.wait());
        Proxy {
            addrs,
            admin,
            shutdown,
            done,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// SIGTERM as the binary would get it: drain, then wait for the proxy to stop.
    pub async fn stop(self) {
        self.shutdown.cancel();
        within("proxy drain", self.done).await.expect("proxy task");
    }

    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
    }
}

/// A proxy config with one listener and the given routes (YAML list items, indented by 2).
pub fn config_with_routes(routes: &str) -> String {
    format!("listeners:\n  - bind: 127.0.0.1:0\nroutes:\n{routes}")
}

pub type OriginBody = UnsyncBoxBody<Bytes, std::io::Error>;

/// A request that reached a scriptable origin; the test answers it.
pub struct OriginRequest {
    pub method: http::Method,
    pub uri: http::Uri,
    pub headers: HeaderMap,
    pub body: Incoming,
    respond: oneshot::Sender<Response<OriginBody>>,
}

/// The origin's side of a streamed response body.
pub struct OriginStream {
    tx: mpsc::Sender<Result<Frame<Bytes>, std::io::Error>>,
}

impl OriginStream {
    pub async fn send(&self, data: impl Into<Bytes>) {
        within("origin send", self.tx.send(Ok(Frame::data(data.into()))))
            .await
            .expect("the proxy still reads this response");
    }

    /// True when the proxy is still reading (the response body has not been dropped).
    pub fn is_open(&self) -> bool {
        !self.tx.is_closed()
    }

    /// Resolves when the proxy drops this response (its client went away).
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Ends the response with an error: hyper aborts it (no last chunk).
    pub async fn abort(self) {
        let _ = self
            .tx
            .send(Err(std::io::Error::other("origin failure")))
            .await;
    }

    /// Ends the response cleanly.
    pub fn finish(self) {}
}

impl OriginRequest {
    /// Answers with `status`, `headers` and a body the test streams through the returned handle.
    pub fn respond(self, status: u16, headers: &[(&str, &str)]) -> OriginStream {
        let (tx, rx) = mpsc::channel(16);
        let body = StreamBody::new(tokio_stream_from(rx)).boxed_unsync();
        let mut response = Response::new(body);
        *response.status_mut() = StatusCode::from_u16(status).expect("status");
        for (k, v) in headers {
            response.headers_mut().append(
                http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                http::HeaderValue::from_str(v).expect("header value"),
            );
        }
        let _ = self.respond.send(response);
        OriginStream { tx }
    }

    /// Answers with an event stream.
    pub fn respond_sse(self) -> OriginStream {
        self.respond(200, &[("content-type", "text/event-stream")])
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

fn tokio_stream_from<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send {
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// An HTTP/1.1 origin that hands every request to the test.
pub struct Origin {
    pub addr: SocketAddr,
    requests: mpsc::Receiver<OriginRequest>,
    /// Counts the TCP connections the origin accepted and that are still open.
    pub open_connections: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Origin {
    pub async fn start() -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let (tx, requests) = mpsc::channel(64);
        let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let open_conns = open.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                let open = open_conns.clone();
                open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let (respond, response) = oneshot::channel();
                            let (parts, body) = req.into_parts();
                            let request = OriginRequest {
                                method: parts.method,
                                uri: parts.uri,
                                headers: parts.headers,
                                body,
                                respond,
                            };
                            if tx.send(request).await.is_err() {
                                return Ok::<_, Infallible>(Response::new(
                                    http_body_util::Empty::new()
                                        .map_err(|e| match e {})
                                        .boxed_unsync(),
                                ));
                            }
                            Ok(response.await.unwrap_or_else(|_| {
                                let mut r = Response::new(
                                    http_body_util::Empty::new()
                                        .map_err(|e| match e {})
                                        .boxed_unsync(),
                                );
                                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                                r
                            }))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), service)
                        .await;
                    open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                });
            }
        });
        Origin {
            addr,
            requests,
            open_connections: open,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn next_request(&mut self) -> OriginRequest {
        within("a request at the origin", self.requests.recv())
            .await
            .expect("origin running")
    }
}

/// A raw HTTP/1.1 client on a TCP socket: the test sees the exact bytes of the head, and the
/// body with its chunked framing taken off (and whether the last chunk came).
pub struct RawClient {
    pub stream: TcpStream,
    raw: Vec<u8>,
    body: Vec<u8>,
    chunked: bool,
    head_read: bool,
    /// The zero-length last chunk arrived: the response ended cleanly.
    pub complete: bool,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = within("connect", TcpStream::connect(addr))
            .await
            .expect("connect to proxy");
        RawClient {
            stream,
            raw: Vec::new(),
            body: Vec::new(),
            chunked: false,
            head_read: false,
            complete: false,
        }
    }

    pub async fn send(&mut self, raw: &str) {
        self.stream
            .write_all(raw.as_bytes())
            .await
            .expect("write request");
    }

    /// Sends a GET with `Host` and the extra header lines.
    pub async fn get(&mut self, path: &str, extra: &[(&str, &str)]) {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: proxy.test\r\n");
        for (k, v) in extra {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.send(&req).await;
    }

    /// Reads more bytes; false at end of stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.raw.extend_from_slice(&chunk[..n]);
                self.dechunk();
                true
            }
        }
    }

    /// Moves whole chunks from `raw` to `body`.
    fn dechunk(&mut self) {
        if !self.head_read {
            return;
        }
        if !self.chunked {
            self.body.append(&mut self.raw);
            return;
        }
        loop {
            let Some(line_end) = find(&self.raw, b"\r\n") else {
                return;
            };
            let size_text = String::from_utf8_lossy(&self.raw[..line_end]).into_owned();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {size_text:?}"));
            if self.raw.len() < line_end + 2 + size + 2 {
                return;
            }
            let data_start = line_end + 2;
            self.body
                .extend_from_slice(&self.raw[data_start..data_start + size]);
            self.raw.drain(..data_start + size + 2);
            if size == 0 {
                self.complete = true;
                return;
            }
        }
    }

    /// Reads until `pattern` has arrived (in the head before `read_head`, in the body after);
    /// returns everything up to and including it and keeps the rest.
    pub async fn read_until(&mut self, pattern: &str) -> String {
        let pattern = pattern.as_bytes();
        within(&format!("{:?}", String::from_utf8_lossy(pattern)), async {
            loop {
                let buf = if self.head_read {
                    &mut self.body
                } else {
                    &mut self.raw
                };
                if let Some(pos) = find(buf, pattern) {
                    let rest = buf.split_off(pos + pattern.len());
                    let got = std::mem::replace(buf, rest);
                    return String::from_utf8_lossy(&got).into_owned();
                }
                let seen = String::from_utf8_lossy(buf).into_owned();
                assert!(
                    self.fill().await,
                    "connection closed before {:?}; got {seen:?}",
                    String::from_utf8_lossy(pattern)
                );
            }
        })
        .await
    }

    /// Reads the response head; returns the status and the headers (names lower-cased).
    pub async fn read_head(&mut self) -> (u16, Vec<(String, String)>) {
        let head = self.read_until("\r\n\r\n").await;
        let (status, headers) = parse_head(&head);
        self.head_read = true;
        self.chunked =
            header(&headers, "transfer-encoding").is_some_and(|te| te.contains("chunked"));
        self.complete = false;
        self.dechunk();
        (status, headers)
    }

    /// Reads until the peer closes; returns the body that arrived (without chunk framing).
    pub async fn read_to_close(&mut self) -> String {
        within("close", async { while self.fill().await {} }).await;
        String::from_utf8_lossy(&std::mem::take(&mut self.body)).into_owned()
    }

    /// Reads until the response's last chunk; returns the rest of the body.
    pub async fn read_to_end_of_response(&mut self) -> String {
        within("the end of the response", async {
            while !self.complete {
                assert!(self.fill().await, "connection closed before the last chunk");
            }
        })
        .await;
        String::from_utf8_lossy(&std::mem::take(&mut self.body)).into_owned()
    }
}

pub fn parse_head(head: &str) -> (u16, Vec<(String, String)>) {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    (status, headers)
}

pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A WebSocket origin that hands each accepted connection (and its handshake headers) to the test.
pub struct WsOrigin {
    pub addr: SocketAddr,
    conns: mpsc::Receiver<(HeaderMap, tokio_tungstenite::WebSocketStream<TcpStream>)>,
}

impl WsOrigin {
    pub async fn start() -> WsOrigin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind ws origin");
        let addr = listener.local_addr().expect("ws origin addr");
        let (tx, conns) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let (htx, hrx) = oneshot::channel();
                    let callback = move |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
                                         resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
                        let _ = htx.send(req.headers().clone());
                        Ok(resp)
                    };
                    if let Ok(ws) = tokio_tungstenite::accept_hdr_async(tcp, callback).await {
                        let headers = hrx.await.unwrap_or_default();
                        let _ = tx.send((headers, ws)).await;
                    }
                });
            }
        });
        WsOrigin { addr, conns }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    pub async fn accept(&mut self) -> (HeaderMap, tokio_tungstenite::WebSocketStream<TcpStream>) {
        within("a WebSocket at the origin", self.conns.recv())
            .await
            .expect("ws origin running")
    }
}

/// Reads SSE events off a raw client: returns the next complete block (up to a blank line).
pub async fn next_block(client: &mut RawClient) -> String {
    client.read_until("\n\n").await
}

/// Next text message of a WebSocket, skipping pings and pongs.
pub async fn next_text<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio_tungstenite::tungstenite::Message;
    within("a text message", async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return t.as_str().to_owned(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    })
    .await
}
