//! An HTTP/1.1 connection of `EventSource` clients (SPEC 3, SPEC 10 limits and drain): the
//! proxy serves event-stream requests on its own HTTP/1.1 path, keeps the connection alive
//! between them, hands it to hyper at the first other request (pipelined or not) with nothing
//! lost, and applies `Connection: close`, the drain and `send_timeout` as for any request.

mod common;

use bytes::Bytes;
use common::*;

const ACCEPT_EVENT_STREAM: (&str, &str) = ("Accept", "text/event-stream");

fn config(origin: &Origin, top: &str) -> String {
    format!(
        "listeners:\n  - bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n{top}\
         routes:\n  - path: /events\n    upstream: {}\n    heartbeat: 0\n",
        origin.url("/stream")
    )
}

/// Sends an event-stream GET on `client`, has the origin answer it, and reads the head.
async fn stream_on(
    client: &mut RawClient,
    origin: &mut Origin,
) -> (OriginStream, Vec<(String, String)>) {
    client.get("/events", &[ACCEPT_EVENT_STREAM]).await;
    let stream = origin.next_request().await.respond_sse();
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 200);
    (stream, headers)
}

#[tokio::test]
async fn one_connection_carries_streams_one_after_another_then_any_other_request() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    for n in 0..2 {
        let (stream, headers) = stream_on(&mut client, &mut origin).await;
        assert_eq!(header(&headers, "transfer-encoding"), Some("chunked"));
        assert!(header(&headers, "date").is_some(), "{headers:?}");
        stream.send(format!("data: {n}\n\n")).await;
        stream.finish();
        assert_eq!(
            client.read_to_end_of_response().await,
            format!("data: {n}\n\n")
        );
    }
    // Not an event-stream request: hyper answers it on the same connection.
    client.get("/events", &[]).await;
    drop(origin.next_request().await.respond(204, &[]));
    assert_eq!(client.read_head().await.0, 204);
    // A proxy answer on this path keeps the connection too.
    client.get("/nowhere", &[ACCEPT_EVENT_STREAM]).await;
    let (status, headers) = client.read_head().await;
    assert_eq!(
        (status, header(&headers, "content-length")),
        (404, Some("23"))
    );
}

#[tokio::test]
async fn a_request_pipelined_behind_a_stream_is_answered_after_it_ends() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .send(
            "GET /events?first HTTP/1.1\r\nHost: proxy.test\r\nAccept: text/event-stream\r\n\r\n\
             POST /events?second HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await;
    let first = origin.next_request().await;
    assert_eq!(first.uri.query(), Some("first"));
    let stream = first.respond_sse();
    assert_eq!(client.read_head().await.0, 200);
    stream.send("data: one\n\n").await;
    client.read_until("data: one\n\n").await;
    stream.finish();
    assert_eq!(client.read_to_end_of_response().await, "");
    let second = origin.next_request().await;
    assert_eq!(second.uri.query(), Some("second"));
    drop(second.respond(204, &[]));
    assert_eq!(client.read_head().await.0, 204);
}

#[tokio::test]
async fn connection_close_is_answered_in_kind_and_the_connection_closes_after_the_stream() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .get("/events", &[ACCEPT_EVENT_STREAM, ("Connection", "close")])
        .await;
    let stream = origin.next_request().await.respond_sse();
    let (status, headers) = client.read_head().await;
    assert_eq!(
        (status, header(&headers, "connection")),
        (200, Some("close"))
    );
    stream.send("data: last\n\n").await;
    stream.finish();
    assert_eq!(client.read_to_close().await, "data: last\n\n");
    assert!(client.complete, "the response ends with its last chunk");
}

#[tokio::test]
async fn drain_ends_the_stream_at_a_boundary_and_then_closes_the_connection() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "drain_timeout: 60s\n")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    let (stream, _) = stream_on(&mut client, &mut origin).await;
    stream.send("data: hal").await;
    client.read_until("data: hal").await;
    proxy.begin_shutdown();
    stream.send("f\n\n").await;
    client.read_until("f\n\nretry: ").await;
    assert!(client.read_to_close().await.ends_with("\n\n"));
    assert!(client.complete, "the response ends with its last chunk");
}

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_by_the_drain_and_by_its_timeout() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "limits:\n  keepalive_timeout: 300ms\n")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    let (stream, _) = stream_on(&mut client, &mut origin).await;
    stream.finish();
    assert_eq!(client.read_to_end_of_response().await, "");
    assert_eq!(
        client.read_to_close().await,
        "",
        "closed by keepalive_timeout"
    );

    let proxy = Proxy::start(&config(&origin, "drain_timeout: 60s\n")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    let (stream, _) = stream_on(&mut client, &mut origin).await;
    stream.finish();
    assert_eq!(client.read_to_end_of_response().await, "");
    proxy.begin_shutdown();
    assert_eq!(client.read_to_close().await, "", "closed by the drain");
}

#[tokio::test]
async fn send_timeout_cuts_a_stream_client_that_stops_reading() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "limits:\n  send_timeout: 200ms\n")).await;
    let mut stuck = RawClient::connect_with_recv_buffer(proxy.addr(), 4096).await;
    let (stream, _) = stream_on(&mut stuck, &mut origin).await;
    let event = Bytes::from(format!("data: {}\n\n", "x".repeat(64 * 1024)));
    // The origin keeps sending until the proxy drops the stream of the cut client.
    assert!(stream.send_until_closed(event).await > 0);
    let mut other = RawClient::connect(proxy.addr()).await;
    let (other_stream, _) = stream_on(&mut other, &mut origin).await;
    other_stream.send("data: unaffected\n\n").await;
    other.read_until("data: unaffected\n\n").await;
    drop(stuck);
}

#[tokio::test]
async fn a_malformed_event_stream_request_gets_hypers_400() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "")).await;
    let raw = b"GET /events HTTP/1.1\r\nHost: proxy.test\r\nAccept: text/event-stream\r\nX: a\r\n b\r\n\r\n";
    assert_eq!(status_of_raw(proxy.addr(), raw).await, 400);
}

/// An origin that writes its whole chunked response, one chunk per event, in one write (as a
/// Go server flushing per event does once it is behind): the proxy reads many chunks at once
/// and writes them to the client in few writes, every byte in order.
#[tokio::test]
async fn chunks_read_together_reach_the_client_whole_and_in_order() {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let events: Vec<String> = (0..200)
        .map(|n| format!("id: {n}\ndata: {}\n\n", "x".repeat(n % 37)))
        .collect();
    let mut body = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\
                     Transfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for event in &events {
        body.extend_from_slice(format!("{:x}\r\n{event}\r\n", event.len()).as_bytes());
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let origin = tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.expect("accept");
        read_request_head(&mut tcp).await;
        tcp.write_all(&body).await.expect("response");
        tcp
    });
    let proxy = Proxy::start(&format!(
        "listeners:\n  - bind: 127.0.0.1:0\nroutes:\n  - path: /events\n    \
         upstream: http://{addr}/stream\n    heartbeat: 0\n"
    ))
    .await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/events", &[ACCEPT_EVENT_STREAM]).await;
    assert_eq!(client.read_head().await.0, 200);
    assert_eq!(client.read_to_end_of_response().await, events.concat());
    drop(origin.await.expect("origin"));
}
