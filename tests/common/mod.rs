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

    /// Starts the proxy from a configuration; `workers` unset means two, so that the tests
    /// cross workers even on a one-core machine.
    pub async fn start_config(mut config: ssebridge::config::Config) -> Proxy {
        config.workers.get_or_insert(2);
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

    /// Sends `chunk` again and again until the proxy drops this response; returns the bytes
    /// that were accepted. Used against a client that stops reading.
    pub async fn send_until_closed(&self, chunk: Bytes) -> u64 {
        let mut sent = 0u64;
        within("the proxy to drop the response", async {
            loop {
                tokio::select! {
                    biased;
                    _ = self.tx.closed() => return,
                    accepted = self.tx.send(Ok(Frame::data(chunk.clone()))) => {
                        if accepted.is_err() {
                            return;
                        }
                        sent += chunk.len() as u64;
                    }
                }
            }
        })
        .await;
        sent
    }
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

/// Serves one origin connection, handing each request to the test.
async fn serve_origin_connection<S>(io: S, tx: mpsc::Sender<OriginRequest>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
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
            let empty = || {
                http_body_util::Empty::new()
                    .map_err(|e| match e {})
                    .boxed_unsync()
            };
            if tx.send(request).await.is_err() {
                return Ok::<_, Infallible>(Response::new(empty()));
            }
            Ok(response.await.unwrap_or_else(|_| {
                let mut r = Response::new(empty());
                *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                r
            }))
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
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
        Self::start_with(None).await
    }

    /// An origin that speaks HTTPS with `acceptor`'s certificate.
    pub async fn start_tls(acceptor: tokio_rustls::TlsAcceptor) -> Origin {
        Self::start_with(Some(acceptor)).await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Origin {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind origin");
        let addr = listener.local_addr().expect("origin addr");
        let (tx, requests) = mpsc::channel(64);
        let open = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let open_conns = open.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let tx = tx.clone();
                let open = open_conns.clone();
                let tls = tls.clone();
                open.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    match tls {
                        None => serve_origin_connection(tcp, tx).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve_origin_connection(stream, tx).await;
                            }
                        }
                    }
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
pub struct RawClient<S = TcpStream> {
    pub stream: S,
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
        RawClient::over(stream)
    }

    /// Connects from a chosen local address (e.g. `127.0.0.2`), to appear as another client IP.
    pub async fn connect_from(local: std::net::IpAddr, addr: SocketAddr) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("client socket");
        socket
            .bind(SocketAddr::new(local, 0))
            .expect("bind client address");
        let stream = within("connect", socket.connect(addr))
            .await
            .expect("connect to proxy");
        RawClient::over(stream)
    }

    /// Connects with a small kernel receive buffer, for a client that is easy to fill.
    pub async fn connect_with_recv_buffer(addr: SocketAddr, bytes: u32) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("client socket");
        socket
            .set_recv_buffer_size(bytes)
            .expect("set the receive buffer");
        let stream = within("connect", socket.connect(addr))
            .await
            .expect("connect to proxy");
        RawClient::over(stream)
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> RawClient<S> {
    /// A raw client over any byte stream (a TLS stream, for one).
    pub fn over(stream: S) -> RawClient<S> {
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
        self.send_bytes(raw.as_bytes()).await;
    }

    /// Writes bytes as they are (requests that are not valid UTF-8, or not valid HTTP).
    pub async fn send_bytes(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).await.expect("write request");
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
        if !self.head_read || (self.chunked && self.complete) {
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

    /// Reads until the response's last chunk; returns the rest of the body. What follows is
    /// the next response's head.
    pub async fn read_to_end_of_response(&mut self) -> String {
        within("the end of the response", async {
            while !self.complete {
                assert!(self.fill().await, "connection closed before the last chunk");
            }
        })
        .await;
        self.head_read = false;
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
pub async fn next_block<S>(client: &mut RawClient<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    client.read_until("\n\n").await
}

/// Next text message of a WebSocket, skipping pings and pongs.
pub async fn next_text<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match next_data(ws).await {
        WsMessage::Text(t) => t.as_str().to_owned(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// A port that was free a moment ago (bound, then released), for a program that cannot tell
/// which port it bound.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A certificate for 127.0.0.1 and `localhost`, self-signed: its PEM file is also the CA file.
pub struct OriginCert {
    pub cert_file: std::path::PathBuf,
    pub acceptor: tokio_rustls::TlsAcceptor,
}

pub fn origin_cert(name: &str) -> OriginCert {
    let dir = temp_dir(name);
    let generated =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("generate a certificate");
    let cert_file = dir.join("origin.pem");
    std::fs::write(&cert_file, generated.cert.pem()).expect("write the certificate");
    let key = rustls_pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .expect("key");
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key)
        .expect("server config");
    OriginCert {
        cert_file,
        acceptor: tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)),
    }
}

/// Builds the Go program in `source` into `binary` with Debian's Go and packaged libraries
/// (no module download).
pub fn go_build(source: &std::path::Path, binary: &std::path::Path) -> Result<(), String> {
    let output = std::process::Command::new("go")
        .args(["build", "-o"])
        .arg(binary)
        .arg(".")
        .current_dir(source)
        .env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env(
            "GOCACHE",
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("go-cache"),
        )
        .output()
        .map_err(|e| format!("cannot run `go build`: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "go build of {} failed:\n{}",
            source.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(())
}

/// A fresh, empty directory under the system's temporary directory, unique to this process,
/// `name` and call.
pub fn temp_dir(name: &str) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("ssebridge-test-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    dir
}

/// Sends `raw` (a whole request, as bytes on the wire) on a new connection and returns the
/// status of the response.
pub async fn status_of_raw(addr: SocketAddr, raw: &[u8]) -> u16 {
    let mut client = RawClient::connect(addr).await;
    client.send_bytes(raw).await;
    client.read_head().await.0
}

/// Proves the proxy still serves: a GET for `path` on a new connection is the next request
/// the origin sees (as `at_origin`), and the origin's answer reaches the client.
pub async fn assert_still_serves(
    proxy: SocketAddr,
    origin: &mut Origin,
    path: &str,
    at_origin: &str,
) {
    let mut client = RawClient::connect(proxy).await;
    client.get(path, &[]).await;
    let request = origin.next_request().await;
    assert_eq!(
        request.uri.path_and_query().map(|p| p.as_str()),
        Some(at_origin),
        "the next request at the origin must be the good one"
    );
    let answer = request.respond(200, &[("content-type", "text/plain")]);
    answer.send("still serving").await;
    answer.finish();
    let (status, _) = client.read_head().await;
    assert_eq!(status, 200);
    client.read_until("still serving").await;
}

/// The next data frame of a body; `None` at its end.
pub async fn next_body_chunk(body: &mut Incoming) -> Option<Bytes> {
    within("a body frame", async {
        loop {
            match body.frame().await {
                None => return None,
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Some(data);
                    }
                }
                Some(Err(e)) => panic!("body failed: {e}"),
            }
        }
    })
    .await
}

/// Reads a body until `pattern` has arrived; returns all of it so far.
pub async fn read_body_until(body: &mut Incoming, pattern: &str) -> String {
    let mut seen = Vec::new();
    within(&format!("{pattern:?} in a body"), async {
        while find(&seen, pattern.as_bytes()).is_none() {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        seen.extend_from_slice(&data);
                    }
                }
                other => panic!(
                    "body ended before {pattern:?} ({other:?}); got {:?}",
                    String::from_utf8_lossy(&seen)
                ),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&seen).into_owned()
}

/// A GET on the admin listener over a new connection: the status and the body.
pub async fn admin_get(admin: SocketAddr, path: &str) -> (u16, String) {
    let mut client = RawClient::connect(admin).await;
    client
        .send(&format!(
            "GET {path} HTTP/1.1\r\nHost: admin.test\r\nConnection: close\r\n\r\n"
        ))
        .await;
    let (status, _) = client.read_head().await;
    (status, client.read_to_close().await)
}

/// The value of one Prometheus sample in a `/metrics` text (`name{labels}`, written exactly as
/// rendered); `None` when absent.
pub fn sample_value(metrics: &str, sample: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(sample)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

/// Reads the output of another program (a child's stdout or stderr) until a pattern.
pub struct Output<R> {
    reader: R,
    buf: Vec<u8>,
}

impl<R: tokio::io::AsyncRead + Unpin> Output<R> {
    pub fn new(reader: R) -> Self {
        Output {
            reader,
            buf: Vec::new(),
        }
    }

    /// Reads until `pattern` has arrived; returns everything up to and including it.
    pub async fn read_until(&mut self, pattern: &str) -> String {
        let needle = pattern.as_bytes();
        let read = tokio::time::timeout(WAIT, async {
            loop {
                if let Some(pos) = find(&self.buf, needle) {
                    let rest = self.buf.split_off(pos + needle.len());
                    let got = std::mem::replace(&mut self.buf, rest);
                    return String::from_utf8_lossy(&got).into_owned();
                }
                let mut chunk = [0u8; 8192];
                let n = self.reader.read(&mut chunk).await.unwrap_or(0);
                assert!(
                    n > 0,
                    "output ended before {pattern:?}; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                );
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        read.unwrap_or_else(|_| {
            panic!(
                "timed out waiting for {pattern:?} in the output; got {:?}",
                String::from_utf8_lossy(&self.buf)
            )
        })
    }

    /// Reads to the end; returns what had not been read yet.
    pub async fn read_to_end(&mut self) -> String {
        within("the end of the output", async {
            let mut rest = Vec::new();
            let _ = self.reader.read_to_end(&mut rest).await;
            self.buf.extend_from_slice(&rest);
        })
        .await;
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }
}

// ---- Bridges and WebSocket passthrough (issue 3) ----

pub type ClientWs =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;
pub use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The `ws://` URL of `path` on the proxy.
pub fn ws_url(proxy: &Proxy, path: &str) -> String {
    format!("ws://{}{path}", proxy.addr())
}

/// Opens a WebSocket through the proxy with extra request headers; panics unless it upgrades.
pub async fn ws_connect(url: &str, extra: &[(&str, &str)]) -> (ClientWs, HeaderMap) {
    match ws_try_connect(url, extra).await {
        Ok(pair) => pair,
        Err(err) => panic!("WebSocket handshake with {url} failed: {err}"),
    }
}

/// Opens a WebSocket; on a refused handshake returns the HTTP status the proxy answered.
pub async fn ws_try_connect(
    url: &str,
    extra: &[(&str, &str)],
) -> Result<(ClientWs, HeaderMap), tokio_tungstenite::tungstenite::Error> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().expect("client request");
    for (k, v) in extra {
        request.headers_mut().append(
            http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            http::HeaderValue::from_str(v).expect("header value"),
        );
    }
    let (ws, response) = within(
        "the WebSocket handshake",
        tokio_tungstenite::connect_async(request),
    )
    .await?;
    Ok((ws, response.headers().clone()))
}

/// The HTTP status of a WebSocket handshake the proxy refused (panics if it upgraded).
pub async fn ws_refused_status(url: &str, extra: &[(&str, &str)]) -> u16 {
    match ws_try_connect(url, extra).await {
        Ok(_) => panic!("the proxy upgraded {url}; a refusal was expected"),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal from {url}, got {other}"),
    }
}

/// Reads until the peer's close frame, skipping pings and pongs; panics on a data message.
/// Returns the close code and reason (`None` when the frame carried none, or the connection
/// ended without a close frame: then `Err` says how).
pub async fn next_close<S>(
    ws: &mut tokio_tungstenite::WebSocketStream<S>,
) -> Result<Option<(u16, String)>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    within("a close frame", async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                Some(Ok(WsMessage::Close(frame))) => {
                    return Ok(frame.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())))
                }
                Some(Ok(other)) => panic!("expected a close frame, got {other:?}"),
                Some(Err(err)) => return Err(format!("connection ended without a close: {err}")),
                None => return Err("connection ended without a close frame".to_owned()),
            }
        }
    })
    .await
}

/// The close code the peer sent next (panics if the connection ended without one).
pub async fn next_close_code<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> u16
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match next_close(ws).await {
        Ok(Some((code, _))) => code,
        Ok(None) => panic!("close frame without a code"),
        Err(why) => panic!("{why}"),
    }
}

/// Next data message (text or binary) of a WebSocket, skipping pings and pongs.
pub async fn next_data<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> WsMessage
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    within("a data message", async {
        loop {
            match ws.next().await {
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                Some(Ok(m @ (WsMessage::Text(_) | WsMessage::Binary(_)))) => return m,
                other => panic!("expected a data message, got {other:?}"),
            }
        }
    })
    .await
}

/// Sends one message on a WebSocket (with a timeout).
pub async fn ws_send<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>, msg: WsMessage)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::SinkExt;
    within("a WebSocket send", ws.send(msg))
        .await
        .expect("WebSocket send");
}

/// What a hand-shaped WebSocket origin saw of the handshake.
pub struct WsHandshake {
    pub uri: http::Uri,
    pub headers: HeaderMap,
}

/// Accepts one WebSocket on `listener`; `answer` may shape the `101` (pick a subprotocol).
pub async fn ws_accept_once(
    listener: &TcpListener,
    answer: impl FnOnce(
            &tokio_tungstenite::tungstenite::handshake::server::Request,
            tokio_tungstenite::tungstenite::handshake::server::Response,
        ) -> tokio_tungstenite::tungstenite::handshake::server::Response
        + Send
        + Unpin,
) -> (WsHandshake, tokio_tungstenite::WebSocketStream<TcpStream>) {
    let (tcp, _) = within("a connection at the origin", listener.accept())
        .await
        .expect("accept");
    let mut seen = None;
    let callback =
        |req: &tokio_tungstenite::tungstenite::handshake::server::Request,
         resp: tokio_tungstenite::tungstenite::handshake::server::Response| {
            seen = Some(WsHandshake {
                uri: req.uri().clone(),
                headers: req.headers().clone(),
            });
            Ok(answer(req, resp))
        };
    let ws = within(
        "the origin's handshake",
        tokio_tungstenite::accept_hdr_async(tcp, callback),
    )
    .await
    .expect("origin handshake");
    (seen.expect("handshake seen"), ws)
}

/// An SSE client on a raw socket whose events are decoded by the project's WHATWG decoder, as
/// `EventSource` would see them; `raw` keeps the wire bytes visible.
pub struct SseClient {
    pub raw: RawClient,
    decoder: ssebridge::sse::decoder::Decoder,
    ready: std::collections::VecDeque<ssebridge::sse::decoder::Event>,
    /// Every block (up to a blank line) read so far, as it came.
    pub blocks: Vec<String>,
}

impl SseClient {
    /// Sends a GET for `path` and reads the response head.
    pub async fn get(
        addr: SocketAddr,
        path: &str,
        extra: &[(&str, &str)],
    ) -> (SseClient, u16, Vec<(String, String)>) {
        let mut raw = RawClient::connect(addr).await;
        raw.get(path, extra).await;
        let (status, headers) = raw.read_head().await;
        let client = SseClient {
            raw,
            decoder: ssebridge::sse::decoder::Decoder::new(usize::MAX),
            ready: Default::default(),
            blocks: Vec::new(),
        };
        (client, status, headers)
    }

    /// The next dispatched event (heartbeats and `retry:`-only blocks dispatch nothing).
    pub async fn next_event(&mut self) -> ssebridge::sse::decoder::Event {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return event;
            }
            let block = next_block(&mut self.raw).await;
            let ready = &mut self.ready;
            self.decoder
                .feed(block.as_bytes(), |e| ready.push_back(e))
                .expect("decodable stream");
            self.blocks.push(block);
        }
    }

    /// The `bridge` event that opens a WebSocket -> SSE stream: its session id and send path.
    pub async fn bridge(&mut self, event_type: &str) -> (String, String) {
        let event = self.next_event().await;
        assert_eq!(
            event.event_type, event_type,
            "the stream opens with the bridge event"
        );
        let v: serde_json::Value = serde_json::from_str(&event.data).expect("bridge data is JSON");
        (
            v["session"].as_str().expect("session").to_owned(),
            v["send"].as_str().expect("send").to_owned(),
        )
    }
}

/// One request on its own connection (`Connection: close`); returns the status and body.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut client = RawClient::connect(addr).await;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: proxy.test\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    client.send(&head).await;
    client.stream.write_all(body).await.expect("write body");
    let (status, _) = client.read_head().await;
    (status, client.read_to_close().await)
}

/// A WebSocket client on a raw socket: the test writes frames byte for byte (malformed ones
/// included) and reads the server's frames as they come.
pub struct RawWs {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// A frame read by [`RawWs`]: the first header byte (FIN, RSV, opcode) and the payload.
#[derive(Debug)]
pub struct RawFrame {
    pub head: u8,
    pub payload: Vec<u8>,
}

impl RawFrame {
    pub fn opcode(&self) -> u8 {
        self.head & 0x0f
    }

    /// The code of a close frame.
    pub fn close_code(&self) -> Option<u16> {
        (self.opcode() == 0x8 && self.payload.len() >= 2)
            .then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

impl RawWs {
    /// Connects and completes the opening handshake for `path`.
    pub async fn connect(addr: SocketAddr, path: &str) -> RawWs {
        Self::connect_with(addr, path, |_| {}).await
    }

    /// As [`RawWs::connect`], with socket options set before connecting.
    pub async fn connect_with(
        addr: SocketAddr,
        path: &str,
        configure: impl FnOnce(&tokio::net::TcpSocket),
    ) -> RawWs {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        configure(&socket);
        let mut stream = within("connect", socket.connect(addr))
            .await
            .expect("connect to proxy");
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: proxy.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut ws = RawWs {
            stream,
            buf: Vec::new(),
        };
        let head = within("the 101 response", async {
            loop {
                if let Some(end) = find(&ws.buf, b"\r\n\r\n") {
                    let rest = ws.buf.split_off(end + 4);
                    return String::from_utf8_lossy(&std::mem::replace(&mut ws.buf, rest))
                        .into_owned();
                }
                assert!(ws.fill().await, "closed during the handshake");
            }
        })
        .await;
        assert_eq!(parse_head(&head).0, 101, "handshake answered {head:?}");
        ws
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Writes one frame: `head` is the first byte (FIN, RSV bits, opcode); `masked` as a client
    /// must (a malformed frame leaves it out).
    pub async fn send_frame(&mut self, head: u8, masked: bool, payload: &[u8]) {
        let mut frame = vec![head];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => frame.push(mask_bit | n as u8),
            n if n <= 0xffff => {
                frame.push(mask_bit | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(mask_bit | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if masked {
            let key = [0x37, 0xfa, 0x21, 0x3d];
            frame.extend_from_slice(&key);
            frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            frame.extend_from_slice(payload);
        }
        self.stream.write_all(&frame).await.expect("write frame");
    }

    /// The next frame from the server; `None` when the connection ends.
    pub async fn read_frame(&mut self) -> Option<RawFrame> {
        within("a frame", async {
            loop {
                if let Some((frame, used)) = parse_server_frame(&self.buf) {
                    self.buf.drain(..used);
                    return Some(frame);
                }
                if !self.fill().await {
                    return None;
                }
            }
        })
        .await
    }

    /// Reads frames until the connection ends; returns them all.
    pub async fn read_to_end(&mut self) -> Vec<RawFrame> {
        let mut frames = Vec::new();
        while let Some(frame) = self.read_frame().await {
            frames.push(frame);
        }
        frames
    }
}

fn parse_server_frame(buf: &[u8]) -> Option<(RawFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let (len, mut at) = match buf[1] & 0x7f {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => (
            u64::from_be_bytes(buf[2..10].try_into().expect("8 bytes")) as usize,
            10,
        ),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    let mask = if buf[1] & 0x80 != 0 {
        let key = buf.get(at..at + 4)?.to_vec();
        at += 4;
        Some(key)
    } else {
        None
    };
    let mut payload = buf.get(at..at + len)?.to_vec();
    if let Some(key) = mask {
        payload
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b ^= key[i % 4]);
    }
    Some((
        RawFrame {
            head: buf[0],
            payload,
        },
        at + len,
    ))
}

impl RawClient {
    /// Reads until the response ends either way: its last chunk, or the connection closing.
    pub async fn read_to_end_either_way(&mut self) -> String {
        within("the end of the response", async {
            while !self.complete && self.fill().await {}
        })
        .await;
        String::from_utf8_lossy(&std::mem::take(&mut self.body)).into_owned()
    }
}

impl OriginRequest {
    /// Reads the whole request body.
    pub async fn read_body(&mut self) -> Bytes {
        within("the request body", async {
            let mut out = Vec::new();
            while let Some(frame) = self.body.frame().await {
                if let Ok(data) = frame.expect("request body").into_data() {
                    out.extend_from_slice(&data);
                }
            }
            Bytes::from(out)
        })
        .await
    }
}

/// A WebSocket kept alive by its own task: it is always read (so pings get their pongs) and
/// the test sends and receives through channels.
pub struct LiveWs {
    out: mpsc::Sender<WsMessage>,
    incoming: mpsc::Receiver<Result<WsMessage, String>>,
}

impl LiveWs {
    pub fn new<S>(ws: tokio_tungstenite::WebSocketStream<S>) -> LiveWs
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        use futures_util::SinkExt;
        let (out, mut out_rx) = mpsc::channel::<WsMessage>(64);
        let (in_tx, incoming) = mpsc::channel(4096);
        tokio::spawn(async move {
            let (mut sink, mut stream) = ws.split();
            loop {
                tokio::select! {
                    msg = out_rx.recv() => match msg {
                        Some(m) => if sink.send(m).await.is_err() { break },
                        None => break,
                    },
                    got = stream.next() => match got {
                        Some(Ok(m)) => if in_tx.send(Ok(m)).await.is_err() { break },
                        Some(Err(e)) => { let _ = in_tx.send(Err(e.to_string())).await; break }
                        None => break,
                    },
                }
            }
        });
        LiveWs { out, incoming }
    }

    pub async fn send(&self, msg: WsMessage) {
        within("a send", self.out.send(msg))
            .await
            .expect("the WebSocket task runs");
    }

    /// The next message other than a ping or pong; `None` when the connection ended.
    pub async fn next(&mut self) -> Option<Result<WsMessage, String>> {
        within("a message", async {
            loop {
                match self.incoming.recv().await {
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => continue,
                    other => return other,
                }
            }
        })
        .await
    }

    /// The next message, pings and pongs included.
    pub async fn next_any(&mut self) -> Option<Result<WsMessage, String>> {
        within("a message", self.incoming.recv()).await
    }
}

impl RawClient {
    /// As [`RawClient::connect`], with socket options set before connecting (a small receive
    /// buffer makes a client that stops reading fall behind sooner).
    pub async fn connect_with(
        addr: SocketAddr,
        configure: impl FnOnce(&tokio::net::TcpSocket),
    ) -> RawClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        configure(&socket);
        let stream = within("connect", socket.connect(addr))
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
}

impl OriginStream {
    /// Sends a chunk if the proxy still reads this response; false once it dropped it.
    pub async fn try_send(&self, data: impl Into<Bytes>) -> bool {
        within("origin send", self.tx.send(Ok(Frame::data(data.into()))))
            .await
            .is_ok()
    }
}

/// The real `ssebridge` binary running on a configuration file, with its log at hand.
pub struct Binary {
    pub child: tokio::process::Child,
    pub pid: u32,
    pub addr: SocketAddr,
    pub config: std::path::PathBuf,
    pub log: Output<tokio::process::ChildStderr>,
}

impl Binary {
    /// Writes a configuration with one listener on a free port and `routes` (YAML list items),
    /// starts the binary on it with `args`, and returns once it listens.
    pub async fn start(name: &str, routes: &str, args: &[&str]) -> Binary {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        let config = temp_dir(name).join("proxy.yaml");
        std::fs::write(&config, Self::config(addr, routes)).expect("write the configuration");
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ssebridge"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the binary");
        let pid = child.id().expect("pid");
        let mut log = Output::new(child.stderr.take().expect("stderr"));
        // The listener is bound before its address is logged; skip the rest of that line.
        log.read_until(&addr.to_string()).await;
        log.read_until("\n").await;
        Binary {
            child,
            pid,
            addr,
            config,
            log,
        }
    }

    /// The configuration text for `addr` and `routes`.
    pub fn config(addr: SocketAddr, routes: &str) -> String {
        format!("listeners:\n  - bind: {addr}\nroutes:\n{routes}")
    }
}

/// An origin that answers one WebSocket handshake by hand: `answer` builds the response head
/// from the client's key (given the correct `Sec-WebSocket-Accept`), and `after` is written in
/// the same write as the head. Hands back the origin's socket.
pub async fn raw_origin(
    answer: fn(&str) -> String,
    after: Vec<u8>,
) -> (String, tokio::task::JoinHandle<tokio::net::TcpStream>) {
    raw_origin_with(answer, after, None).await
}

/// [`raw_origin`] whose socket has a receive buffer of `recv_buffer` bytes (set before it
/// listens, so the accepted socket has it from the handshake on).
pub async fn raw_origin_with(
    answer: fn(&str) -> String,
    after: Vec<u8>,
    recv_buffer: Option<u32>,
) -> (String, tokio::task::JoinHandle<tokio::net::TcpStream>) {
    use tokio::io::AsyncWriteExt;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes).unwrap();
    }
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(16).unwrap();
    let url = format!("ws://{}/chat", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        let head = read_request_head(&mut tcp).await;
        let key = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .expect("Sec-WebSocket-Key");
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let mut out = answer(&accept).into_bytes();
        out.extend_from_slice(&after);
        tcp.write_all(&out).await.expect("answer");
        tcp
    });
    (url, task)
}

/// Reads a request head byte by byte, so that nothing after it is consumed.
pub async fn read_request_head(tcp: &mut tokio::net::TcpStream) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tcp.read_exact(&mut byte).await.expect("request head");
        head.push(byte[0]);
    }
    String::from_utf8(head).expect("head")
}

pub fn switching(accept: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
}

/// (local port, remote port) of the loopback connections in TIME_WAIT (Linux `/proc/net/tcp`).
pub fn time_waits() -> Vec<(u16, u16)> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let port = |addr: &str| u16::from_str_radix(addr.rsplit(':').next()?, 16).ok();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(3) == Some(&"06")).then(|| Some((port(fields[1])?, port(fields[2])?)))?
        })
        .collect()
}

/// Checks that after a close handshake the proxy leaves the origin, as the server, to close
/// the TCP connection first (RFC 6455 section 7.1.1): the proxy still holds it open when the
/// origin shuts down, then closes too, so the TIME_WAIT is the origin's and not one of the
/// proxy's ports towards it.
pub async fn assert_the_origin_closes_first(mut origin: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let origin_port = origin.local_addr().unwrap().port();
    let proxy_port = origin.peer_addr().unwrap().port();
    origin.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(
        "the proxy to close after the origin",
        origin.read_to_end(&mut rest),
    )
    .await
    .unwrap();
    drop(origin);
    let waits = time_waits();
    assert!(
        !waits.contains(&(proxy_port, origin_port)),
        "the proxy's port {proxy_port} towards the origin is in TIME_WAIT"
    );
    assert!(
        waits.contains(&(origin_port, proxy_port)),
        "the origin's end of the connection is in TIME_WAIT"
    );
}

/// Plays an origin that ignores the proxy's close: writes 16 KiB text frames as fast as the
/// proxy takes them, never reading, until the proxy drops the connection. Returns the bytes
/// written by then (of which up to the socket buffers' worth never reached the proxy).
pub async fn flood_until_dropped(mut origin: tokio::net::TcpStream) -> usize {
    use tokio::io::AsyncWriteExt;
    let mut frame = vec![0x81, 126];
    frame.extend_from_slice(&16_384u16.to_be_bytes());
    frame.resize(4 + 16_384, b'x');
    let mut written = 0;
    loop {
        match origin.write_all(&frame).await {
            Ok(()) => written += frame.len(),
            Err(err) => {
                assert!(
                    matches!(
                        err.kind(),
                        std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                    ),
                    "the proxy dropped the connection: {err}"
                );
                return written;
            }
        }
    }
}

/// Reads one frame the proxy wrote to an origin: it must be masked (the proxy is the client).
/// Returns the first byte (FIN and opcode) and the unmasked payload.
pub async fn read_client_frame<R: tokio::io::AsyncRead + Unpin>(tcp: &mut R) -> (u8, Vec<u8>) {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 2];
    within("a frame from the proxy", tcp.read_exact(&mut head))
        .await
        .expect("frame header");
    assert_ne!(
        head[1] & 0x80,
        0,
        "a frame towards the origin must be masked"
    );
    let len = match head[1] & 0x7f {
        126 => u64::from(tcp.read_u16().await.expect("length")),
        127 => tcp.read_u64().await.expect("length"),
        n => u64::from(n),
    };
    let mut mask = [0u8; 4];
    tcp.read_exact(&mut mask).await.expect("mask");
    let mut payload = vec![0u8; len as usize];
    tcp.read_exact(&mut payload).await.expect("payload");
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    (head[0], payload)
}
