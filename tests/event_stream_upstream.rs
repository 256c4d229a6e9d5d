//! Event-stream requests to HTTP origins (SPEC 3 and 10): a GET that asks for
//! `text/event-stream` is carried over its own upstream connection, and the origin's framing
//! (chunked with extensions and trailers, `Content-Length`, close-delimited, interim `1xx`
//! responses) is decoded exactly. Origins here are raw TCP listeners that write the response
//! byte for byte, so framing, cuts and malformed heads are under the test's control.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// What a browser's `EventSource` sends.
const ACCEPT_EVENT_STREAM: (&str, &str) = ("Accept", "text/event-stream");

/// The head of a chunked event stream.
const CHUNKED_SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

#[tokio::test]
async fn chunked_stream_with_extensions_and_trailer_arrives_exactly_and_ends_cleanly() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut client = open_event_stream(&proxy, "/events").await;
    let mut conn = origin.accept_request().await;
    conn.write(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\
         Trailer: X-Checksum\r\n\r\nd;name=value\r\ndata: first\n\n\r\n",
    )
    .await;
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "trailer"), None, "a hop-by-hop header");
    assert_eq!(client.read_until("\n\n").await, "data: first\n\n");
    conn.write("11;a=1;b=\"q\"\r\nid: 2\ndata: two\n\n\r\n0;last\r\nX-Checksum: abc\r\n\r\n")
        .await;
    // The origin keeps its connection open: the last chunk alone must end the response.
    assert_eq!(
        client.read_to_end_of_response().await,
        "id: 2\ndata: two\n\n"
    );
}

#[tokio::test]
async fn content_length_stream_arrives_exactly_and_ends_cleanly() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut client = open_event_stream(&proxy, "/events").await;
    let mut conn = origin.accept_request().await;
    let body = "data: one\n\nid: 2\ndata: two\n\n";
    conn.write(&format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n\
         data: one\n\n",
        body.len()
    ))
    .await;
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-length"), None, "header repair");
    assert_eq!(client.read_until("\n\n").await, "data: one\n\n");
    conn.write("id: 2\ndata: two\n\n").await;
    // The origin keeps its connection open: the declared length alone ends the response.
    assert_eq!(
        client.read_to_end_of_response().await,
        "id: 2\ndata: two\n\n"
    );
}

#[tokio::test]
async fn close_delimited_stream_ends_cleanly_when_the_origin_closes() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut client = open_event_stream(&proxy, "/events").await;
    let mut conn = origin.accept_request().await;
    conn.write("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: one\n\n")
        .await;
    assert_eq!(client.read_head().await.0, 200);
    assert_eq!(client.read_until("\n\n").await, "data: one\n\n");
    conn.write("data: two\n\n").await;
    conn.close().await;
    assert_eq!(client.read_to_end_of_response().await, "data: two\n\n");
}

#[tokio::test]
async fn chunked_stream_cut_before_the_last_chunk_aborts_the_client_response() {
    cut_after_one_event_aborts_the_client(&format!("{CHUNKED_SSE_HEAD}{}", chunk("data: one\n\n")))
        .await;
}

#[tokio::test]
async fn content_length_stream_cut_short_aborts_the_client_response() {
    cut_after_one_event_aborts_the_client(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 100\r\n\r\n\
         data: one\n\n",
    )
    .await;
}

/// The origin answers with `response` (a head and the event `data: one`), then closes before
/// its body is complete.
async fn cut_after_one_event_aborts_the_client(response: &str) {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut client = open_event_stream(&proxy, "/events").await;
    let mut conn = origin.accept_request().await;
    conn.write(response).await;
    assert_eq!(client.read_head().await.0, 200);
    assert_eq!(client.read_until("\n\n").await, "data: one\n\n");
    conn.close().await;
    assert_aborted(&mut client).await;
}

#[tokio::test]
async fn transfer_encoding_chunked_wins_over_content_length() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut client = open_event_stream(&proxy, "/events").await;
    let mut conn = origin.accept_request().await;
    // Read by its Content-Length, the body would be five bytes of chunk framing.
    conn.write(&format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\n\r\n{}{}0\r\n\r\n",
        chunk("data: one\n\n"),
        chunk("data: two\n\n")
    ))
    .await;
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-length"), None);
    assert_eq!(
        client.read_to_end_of_response().await,
        "data: one\n\ndata: two\n\n"
    );
}

#[tokio::test]
async fn interim_103_and_100_responses_are_skipped_and_the_stream_follows() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut client = open_event_stream(&proxy, "/events").await;
    let mut conn = origin.accept_request().await;
    conn.write(&format!(
        "HTTP/1.1 103 Early Hints\r\nLink: </app.css>; rel=preload\r\n\r\n\
         HTTP/1.1 100 Continue\r\n\r\n{CHUNKED_SSE_HEAD}{}",
        chunk("data: after hints\n\n")
    ))
    .await;
    // The first head the client sees is the final one.
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "link"),
        None,
        "an interim response's header"
    );
    assert_eq!(client.read_until("\n\n").await, "data: after hints\n\n");
}

#[tokio::test]
async fn garbage_status_line_gets_502_and_the_proxy_keeps_serving() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut client = open_event_stream(&proxy, "/events").await;
    origin.accept_request().await.answer_and_hold(
        b"HTTP/1.1 two-hundred OK\r\nContent-Type: text/event-stream\r\n\r\n".to_vec(),
    );
    assert_bad_gateway(&mut client).await;
    assert_stream_flows(&proxy, &mut origin, "/events").await;
}

#[tokio::test]
async fn origin_closing_right_after_accept_gets_502_and_the_proxy_keeps_serving() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut client = open_event_stream(&proxy, "/events").await;
    drop(origin.accept().await);
    assert_bad_gateway(&mut client).await;
    assert_stream_flows(&proxy, &mut origin, "/events").await;
}

#[tokio::test]
async fn origin_closing_mid_head_gets_502_and_the_proxy_keeps_serving() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut client = open_event_stream(&proxy, "/events").await;
    let mut conn = origin.accept_request().await;
    conn.write("HTTP/1.1 200 OK\r\nContent-Type: text/ev").await;
    conn.close().await;
    assert_bad_gateway(&mut client).await;
    assert_stream_flows(&proxy, &mut origin, "/events").await;
}

/// The head limit of the event-stream path is 64 KiB; hyper's pooled client allows about
/// 400 KiB. A 512 KiB head is over both.
#[tokio::test]
async fn oversized_response_head_gets_502_and_the_proxy_keeps_serving() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut client = open_event_stream(&proxy, "/events").await;
    let mut head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n".to_vec();
    for i in 0..8 {
        head.extend_from_slice(format!("X-Filler-{i}: ").as_bytes());
        head.extend(std::iter::repeat_n(b'a', 64 * 1024));
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    origin.accept_request().await.answer_and_hold(head);
    assert_bad_gateway(&mut client).await;
    assert_stream_flows(&proxy, &mut origin, "/events").await;
}

/// The event-stream path's own limit: a 70 KiB head, which the pooled client would take.
#[tokio::test]
async fn response_head_over_64_kib_gets_502() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut client = open_event_stream(&proxy, "/events").await;
    let mut head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nX-Filler: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 70 * 1024));
    head.extend_from_slice(b"\r\n\r\n");
    origin.accept_request().await.answer_and_hold(head);
    assert_bad_gateway(&mut client).await;
    assert_stream_flows(&proxy, &mut origin, "/events").await;
}

#[tokio::test]
async fn refused_connection_gets_502_and_the_proxy_keeps_serving() {
    let mut origin = RawOrigin::start().await;
    let refused = format!("http://127.0.0.1:{}/stream", free_port());
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: /events\n    upstream: {refused}\n    heartbeat: 0\n\
         \x20 - path: /good\n    upstream: {}\n    heartbeat: 0\n",
        origin.url("/base")
    )))
    .await;
    let mut client = open_event_stream(&proxy, "/events").await;
    assert_bad_gateway(&mut client).await;
    assert_stream_flows(&proxy, &mut origin, "/good").await;
}

#[tokio::test]
async fn tls_handshake_past_connect_timeout_gets_504() {
    let silent = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a silent origin");
    let port = silent.local_addr().expect("addr").port();
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: /events\n    upstream: https://127.0.0.1:{port}/\n    connect_timeout: 200ms\n"
    )))
    .await;
    let mut client = open_event_stream(&proxy, "/events").await;
    // Accepted by the kernel, never answered: the TLS handshake cannot finish.
    let _held = within("the proxy to connect", silent.accept()).await;
    assert_eq!(client.read_head().await.0, 504);
}

#[tokio::test]
async fn non_event_stream_response_passes_unchanged() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, "    heartbeat: 50ms\n    retry: 1s\n")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .get("/events", &[ACCEPT_EVENT_STREAM, ("Connection", "close")])
        .await;
    let mut conn = origin.accept_request().await;
    // The origin keeps its connection open: the declared length alone ends the body.
    conn.write(
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 15\r\n\r\n\
         no such stream\n",
    )
    .await;
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 404);
    assert_eq!(header(&headers, "content-type"), Some("text/plain"));
    assert_eq!(header(&headers, "content-length"), Some("15"));
    assert_eq!(header(&headers, "x-accel-buffering"), None);
    assert_eq!(client.read_to_close().await, "no such stream\n");
}

/// Both paths: with the Accept header (own connection) and without it (pooled client).
#[tokio::test]
async fn non_event_stream_response_with_both_framings_reaches_the_client_decoded() {
    for accept in [Some(ACCEPT_EVENT_STREAM), None] {
        let mut origin = RawOrigin::start().await;
        let proxy = Proxy::start(&quiet_route(&origin)).await;
        let mut client = RawClient::connect(proxy.addr()).await;
        let mut headers = vec![("Connection", "close")];
        headers.extend(accept);
        client.get("/events", &headers).await;
        both_framings_404_is_decoded(&mut origin, &mut client).await;
    }
}

async fn both_framings_404_is_decoded(origin: &mut RawOrigin, client: &mut RawClient) {
    let mut conn = origin.accept_request().await;
    conn.write(&format!(
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\
         Transfer-Encoding: chunked\r\n\r\n{}0\r\n\r\n",
        chunk("no such stream\n")
    ))
    .await;
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 404);
    assert!(
        matches!(header(&headers, "content-length"), None | Some("15")),
        "the origin's Content-Length does not describe the decoded body: {headers:?}"
    );
    assert_eq!(client.read_to_close().await, "no such stream\n");
}

#[tokio::test]
async fn origin_receives_the_rewritten_target_and_cleaned_headers() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .get(
            "/events/path?last_event_id=41&x=1",
            &[
                ACCEPT_EVENT_STREAM,
                ("Connection", "keep-alive, X-Custom"),
                ("X-Custom", "secret"),
                ("X-Kept", "yes"),
            ],
        )
        .await;
    let conn = origin.accept_request().await;
    let (request_line, rest) = conn.head.split_once("\r\n").expect("a request line");
    assert_eq!(request_line, "GET /base/path?x=1 HTTP/1.1");
    let (_, headers) = parse_head(&format!("\r\n{rest}"));
    let all = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(all("host"), [origin.addr.to_string()], "{}", conn.head);
    assert_eq!(all("last-event-id"), ["41"]);
    assert_eq!(all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(all("x-kept"), ["yes"]);
    assert_eq!(all("accept"), ["text/event-stream"]);
    assert_eq!(all("x-custom"), Vec::<&str>::new(), "named by Connection");
    assert_eq!(
        all("transfer-encoding"),
        Vec::<&str>::new(),
        "a GET has no body"
    );
    assert!(
        all("connection")
            .iter()
            .all(|v| !v.to_ascii_lowercase().contains("x-custom")),
        "the client's Connection header reached the origin: {}",
        conn.head
    );
}

#[tokio::test]
async fn stream_written_one_byte_at_a_time_arrives_exactly() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut client = open_event_stream(&proxy, "/events").await;
    let mut conn = origin.accept_request().await;
    conn.stream.set_nodelay(true).expect("TCP_NODELAY");
    let response = format!(
        "{CHUNKED_SSE_HEAD}{}{}5;ext=1\r\ndata:\r\n8\r\n three\n\n\r\n0\r\n\r\n",
        chunk("data: one\n\n"),
        chunk("id: 2\r\ndata: two\r\n\r\n"),
    );
    for byte in response.as_bytes() {
        conn.write_bytes(std::slice::from_ref(byte)).await;
    }
    assert_eq!(client.read_head().await.0, 200);
    assert_eq!(
        client.read_to_end_of_response().await,
        "data: one\n\nid: 2\r\ndata: two\r\n\r\ndata: three\n\n"
    );
}

#[tokio::test]
async fn client_disconnect_closes_the_upstream_connection() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut client = open_event_stream(&proxy, "/events").await;
    let mut conn = origin.accept_request().await;
    conn.write(&format!("{CHUNKED_SSE_HEAD}{}", chunk("data: one\n\n")))
        .await;
    assert_eq!(client.read_head().await.0, 200);
    client.read_until("data: one\n\n").await;
    drop(client);
    // No heartbeat and nothing more from the origin: only the client's EOF can end this.
    conn.closed_by_proxy().await;
}

#[tokio::test]
async fn client_that_leaves_before_the_origin_answers_closes_the_upstream_connection() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let client = open_event_stream(&proxy, "/events").await;
    // The origin has the request and never answers it: only the client's EOF can end this.
    let mut conn = origin.accept_request().await;
    drop(client);
    conn.closed_by_proxy().await;
}

#[tokio::test]
async fn https_upstream_carries_the_stream_and_its_clean_end() {
    let OriginCert {
        cert_file: ca_file,
        acceptor,
    } = origin_cert("event-stream-https");
    let mut origin = Origin::start_tls(acceptor).await;
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: /events\n    upstream: https://127.0.0.1:{}/stream\n    heartbeat: 0\n\
         \x20   upstream_ca: '{}'\n",
        origin.addr.port(),
        ca_file.display()
    )))
    .await;
    let mut client = open_event_stream(&proxy, "/events").await;
    let request = origin.next_request().await;
    assert_eq!(request.uri.path(), "/stream");
    assert_eq!(
        request.header("host"),
        Some(format!("127.0.0.1:{}", origin.addr.port()))
    );
    let stream = request.respond_sse();
    assert_eq!(client.read_head().await.0, 200);
    stream.send("data: over tls\n\n").await;
    assert_eq!(client.read_until("\n\n").await, "data: over tls\n\n");
    stream.send("data: last\n\n").await;
    stream.finish();
    assert_eq!(client.read_to_end_of_response().await, "data: last\n\n");
}

#[tokio::test]
async fn heartbeats_fill_an_idle_stream_and_the_next_event_follows() {
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, "    heartbeat: 100ms\n")).await;
    let mut client = open_event_stream(&proxy, "/events").await;
    let mut conn = origin.accept_request().await;
    conn.write(CHUNKED_SSE_HEAD).await;
    assert_eq!(client.read_head().await.0, 200);
    assert_eq!(client.read_until("\n\n").await, ":\n\n");
    assert_eq!(client.read_until("\n\n").await, ":\n\n");
    conn.write(&chunk("data: after idle\n\n")).await;
    let rest = client.read_until("data: after idle\n\n").await;
    assert_eq!(rest.trim_start_matches(":\n\n"), "data: after idle\n\n");
}

#[tokio::test]
async fn two_hundred_concurrent_streams_each_get_their_own_event() {
    const STREAMS: usize = 200;
    let mut origin = RawOrigin::start().await;
    let proxy = Proxy::start(&quiet_route(&origin)).await;
    let mut clients = Vec::with_capacity(STREAMS);
    for i in 0..STREAMS {
        clients.push(open_event_stream(&proxy, &format!("/events/{i}")).await);
    }
    // Every origin connection stays open until every client has its event.
    let mut conns = Vec::with_capacity(STREAMS);
    for _ in 0..STREAMS {
        let mut conn = origin.accept_request().await;
        let target = conn.head.split(' ').nth(1).expect("a request target");
        let i = target
            .strip_prefix("/base/")
            .expect("below the upstream path")
            .to_owned();
        conn.write(&format!(
            "{CHUNKED_SSE_HEAD}{}",
            chunk(&format!("data: {i}\n\n"))
        ))
        .await;
        conns.push(conn);
    }
    for (i, client) in clients.iter_mut().enumerate() {
        assert_eq!(client.read_head().await.0, 200);
        assert_eq!(client.read_until("\n\n").await, format!("data: {i}\n\n"));
    }
}

// ---- Helpers ----

/// A route `/events` -> the origin's `/base`, with `extra` route keys.
fn route(origin: &RawOrigin, extra: &str) -> String {
    config_with_routes(&format!(
        "  - path: /events\n    upstream: {}\n{extra}",
        origin.url("/base")
    ))
}

/// A route without heartbeats: the client sees the origin's bytes and nothing else.
fn quiet_route(origin: &RawOrigin) -> String {
    route(origin, "    heartbeat: 0\n")
}

/// A client that has sent an `EventSource`-style GET for `path`.
async fn open_event_stream(proxy: &Proxy, path: &str) -> RawClient {
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get(path, &[ACCEPT_EVENT_STREAM]).await;
    client
}

/// One chunk of a chunked body.
fn chunk(data: &str) -> String {
    format!("{:x}\r\n{data}\r\n", data.len())
}

/// The client got a `502` with a short plain-text reason.
async fn assert_bad_gateway(client: &mut RawClient) {
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 502);
    assert!(
        header(&headers, "content-type").is_some_and(|t| t.starts_with("text/plain")),
        "{headers:?}"
    );
    let reason = client.read_until("\n").await;
    assert!(reason.len() > 1 && reason.len() < 512, "{reason:?}");
}

/// The response ended without its last chunk and the connection closed.
async fn assert_aborted(client: &mut RawClient) {
    let rest = client.read_to_end_either_way().await;
    assert!(
        !client.complete,
        "a cut upstream must not end the client's response cleanly (then got {rest:?})"
    );
}

/// A new event stream on `path` is answered by the origin's next connection and its event
/// reaches the client.
async fn assert_stream_flows(proxy: &Proxy, origin: &mut RawOrigin, path: &str) {
    let mut client = open_event_stream(proxy, path).await;
    let mut conn = origin.accept_request().await;
    conn.write(&format!(
        "{CHUNKED_SSE_HEAD}{}",
        chunk("data: still serving\n\n")
    ))
    .await;
    assert_eq!(client.read_head().await.0, 200);
    assert_eq!(client.read_until("\n\n").await, "data: still serving\n\n");
}

/// A TCP origin that hands each accepted connection to the test.
struct RawOrigin {
    addr: std::net::SocketAddr,
    conns: mpsc::Receiver<TcpStream>,
}

impl RawOrigin {
    async fn start() -> RawOrigin {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind raw origin");
        let addr = listener.local_addr().expect("raw origin addr");
        let (tx, conns) = mpsc::channel(1024);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                if tx.send(tcp).await.is_err() {
                    return;
                }
            }
        });
        RawOrigin { addr, conns }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next connection, its request unread.
    async fn accept(&mut self) -> TcpStream {
        within("a connection at the origin", self.conns.recv())
            .await
            .expect("raw origin running")
    }

    /// The next connection, with its request head read.
    async fn accept_request(&mut self) -> OriginConn {
        let mut stream = self.accept().await;
        let mut head = Vec::new();
        within("a request head at the origin", async {
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                let n = stream.read(&mut byte).await.expect("read the request");
                assert_eq!(n, 1, "closed before a full request head: {head:?}");
                head.push(byte[0]);
            }
        })
        .await;
        OriginConn {
            stream,
            head: String::from_utf8(head).expect("a UTF-8 request head"),
        }
    }
}

/// One connection at a [`RawOrigin`], after its request head.
struct OriginConn {
    stream: TcpStream,
    head: String,
}

impl OriginConn {
    async fn write(&mut self, text: &str) {
        self.write_bytes(text.as_bytes()).await;
    }

    async fn write_bytes(&mut self, bytes: &[u8]) {
        within("an origin write", async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .expect("the proxy still reads the origin");
    }

    /// Closes the connection (FIN): the end of a close-delimited body, or a cut.
    async fn close(mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Writes `bytes` in the background (the proxy may stop reading and close) and holds the
    /// connection open until the proxy closes it: any `502` is the proxy's own decision.
    fn answer_and_hold(mut self, bytes: Vec<u8>) {
        tokio::spawn(async move {
            let _ = self.stream.write_all(&bytes).await;
            let mut sink = [0u8; 1024];
            while matches!(self.stream.read(&mut sink).await, Ok(n) if n > 0) {}
        });
    }

    /// Resolves when the proxy closes this connection (EOF or reset).
    async fn closed_by_proxy(&mut self) {
        within("the proxy to close the upstream connection", async {
            let mut sink = [0u8; 1024];
            while matches!(self.stream.read(&mut sink).await, Ok(n) if n > 0) {}
        })
        .await;
    }
}
