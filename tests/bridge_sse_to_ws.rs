//! SSE origin -> WebSocket client (SPEC 4.2 and 10): each dispatched event is one message
//! (WHATWG decoding), client messages are POSTed to `send_to` in order with credentials, and the
//! upstream's end maps to close codes.

mod common;

use common::*;

const ROUTE: &str = "/events";

fn route(origin: &Origin, extra: &str) -> String {
    config_with_routes(&format!(
        "  - path: {ROUTE}\n    upstream: {}\n{extra}",
        origin.url("/stream")
    ))
}

fn route_with_send_to(origin: &Origin, extra: &str) -> String {
    route(
        origin,
        &format!("    send_to: {}\n{extra}", origin.url("/messages")),
    )
}

/// Opens a WebSocket of the SSE origin; the origin answers with an event stream.
async fn open(
    origin: &mut Origin,
    proxy: &Proxy,
    headers: &[(&str, &str)],
) -> (ClientWs, OriginStream, http::Request<()>) {
    let url = ws_url(proxy, ROUTE);
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let connecting = tokio::spawn(async move {
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        ws_connect(&url, &headers).await.0
    });
    let request = origin.next_request().await;
    let mut seen = http::Request::new(());
    *seen.uri_mut() = request.uri.clone();
    *seen.headers_mut() = request.headers.clone();
    let stream = request.respond_sse();
    let ws = within("the upgrade", connecting)
        .await
        .expect("client task");
    (ws, stream, seen)
}

#[tokio::test]
async fn each_dispatched_event_becomes_one_text_message_of_its_data() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let (mut ws, stream, request) = open(&mut origin, &proxy, &[]).await;
    assert_eq!(request.uri().path(), "/stream");
    stream.send("data: one\n\n").await;
    assert_eq!(next_text(&mut ws).await, "one");
    stream
        .send("event: tick\nid: 3\ndata: two\ndata: lines\n\n")
        .await;
    assert_eq!(next_text(&mut ws).await, "two\nlines");
    assert!(stream.is_open());
}

#[tokio::test]
async fn json_format_sends_event_id_and_data_with_id_only_when_set() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "    format: json\n")).await;
    let (mut ws, stream, _) = open(&mut origin, &proxy, &[]).await;
    let cases = [
        (
            "data: one\n\n",
            serde_json::json!({"event": "message", "data": "one"}),
        ),
        (
            "event: tick\nid: 5\ndata: x\ndata: y\n\n",
            serde_json::json!({"event": "tick", "id": "5", "data": "x\ny"}),
        ),
        // The last event ID persists across events (WHATWG) ...
        (
            "data: z\n\n",
            serde_json::json!({"event": "message", "id": "5", "data": "z"}),
        ),
        // ... until an empty id clears it.
        (
            "id\ndata: w\n\n",
            serde_json::json!({"event": "message", "data": "w"}),
        ),
    ];
    for (sent, expected) in cases {
        stream.send(sent).await;
        let text = next_text(&mut ws).await;
        let got: serde_json::Value = serde_json::from_str(&text).expect("a JSON message");
        assert_eq!(got, expected, "for {sent:?}");
    }
}

#[tokio::test]
async fn comments_and_events_without_data_are_not_sent() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let (mut ws, stream, _) = open(&mut origin, &proxy, &[]).await;
    stream
        .send(": a comment\n\nevent: nothing\n\nid: 9\n\nretry: 100\n\n:\n\n")
        .await;
    stream.send("data: real\n\n").await;
    assert_eq!(next_text(&mut ws).await, "real");
}

#[tokio::test]
async fn crlf_cr_and_bom_input_is_decoded_even_when_split_anywhere() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let (mut ws, stream, _) = open(&mut origin, &proxy, &[]).await;
    stream.send(&b"\xef\xbb"[..]).await;
    stream.send(&b"\xbfdata: a\r\ndata: b\r\n\r"[..]).await;
    stream.send("\ndata: c\rdata: d\r\r").await;
    // A CRLF split between chunks, and a UTF-8 sequence split in two.
    stream.send(&b"data: caf\xc3"[..]).await;
    stream.send(&b"\xa9\r"[..]).await;
    stream.send("\n\r\n").await;
    assert_eq!(next_text(&mut ws).await, "a\nb");
    assert_eq!(next_text(&mut ws).await, "c\nd");
    assert_eq!(next_text(&mut ws).await, "café");
}

#[tokio::test]
async fn websocket_client_gets_nothing_but_the_events_messages() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "    heartbeat: 100ms\n    retry: 1s\n")).await;
    let (mut ws, stream, _) = open(&mut origin, &proxy, &[]).await;
    // An SSE client of the same route is the clock: its heartbeats show intervals passing.
    let mut clock = RawClient::connect(proxy.addr()).await;
    clock.get(ROUTE, &[]).await;
    let _clock_stream = origin.next_request().await.respond_sse();
    clock.read_head().await;
    for _ in 0..3 {
        clock.read_until(":\n\n").await;
    }
    stream.send("data: first\n\n").await;
    assert_eq!(
        next_text(&mut ws).await,
        "first",
        "no heartbeat, retry or bridge message before the first event"
    );
}

#[tokio::test]
async fn last_event_id_reaches_the_origin() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let (_ws, _stream, request) = open(&mut origin, &proxy, &[("Last-Event-ID", "17")]).await;
    assert_eq!(
        request.headers().get("last-event-id").map(|v| v.as_bytes()),
        Some(&b"17"[..])
    );
}

#[tokio::test]
async fn client_messages_are_posted_to_send_to_in_order_with_credentials() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route_with_send_to(&origin, "")).await;
    let credentials = [
        ("Authorization", "Bearer s3cret"),
        ("Cookie", "sid=abc; theme=dark"),
    ];
    let (mut ws, _stream, _) = open(&mut origin, &proxy, &credentials).await;
    ws_send(&mut ws, WsMessage::text("first")).await;
    ws_send(&mut ws, WsMessage::text("second\nline")).await;
    ws_send(&mut ws, WsMessage::binary(vec![0u8, 1, 2, 255])).await;
    ws_send(&mut ws, WsMessage::text("fourth")).await;

    let expected: [(&[u8], bool); 4] = [
        (b"first", false),
        (b"second\nline", false),
        (&[0, 1, 2, 255], true),
        (b"fourth", false),
    ];
    for (body, binary) in expected {
        let mut request = origin.next_request().await;
        assert_eq!(request.method, http::Method::POST);
        assert_eq!(request.uri.path(), "/messages");
        assert_eq!(
            request.header("authorization").as_deref(),
            Some("Bearer s3cret")
        );
        assert_eq!(
            request.header("cookie").as_deref(),
            Some("sid=abc; theme=dark")
        );
        let content_type = request.header("content-type").unwrap_or_default();
        assert_eq!(
            content_type.starts_with("application/octet-stream"),
            binary,
            "content type {content_type:?}"
        );
        assert_eq!(&request.read_body().await[..], body);
        request.respond(204, &[]).finish();
    }
}

#[tokio::test]
async fn without_send_to_a_client_message_gets_close_1003() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let (mut ws, _stream, _) = open(&mut origin, &proxy, &[]).await;
    ws_send(&mut ws, WsMessage::text("hello?")).await;
    assert_eq!(next_close_code(&mut ws).await, 1003);
}

#[tokio::test]
async fn upstream_clean_end_closes_with_1000() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let (mut ws, stream, _) = open(&mut origin, &proxy, &[]).await;
    stream.send("data: last\n\n").await;
    stream.finish();
    assert_eq!(next_text(&mut ws).await, "last");
    assert_eq!(next_close_code(&mut ws).await, 1000);
}

#[tokio::test]
async fn upstream_end_mid_event_closes_with_1000_and_never_sends_the_partial_event() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let (mut ws, stream, _) = open(&mut origin, &proxy, &[]).await;
    stream.send("data: whole\n\ndata: partial\n").await;
    stream.finish();
    assert_eq!(next_text(&mut ws).await, "whole");
    // `next_close` panics on a data message: the partial event must not come.
    assert_eq!(next_close_code(&mut ws).await, 1000);
}

#[tokio::test]
async fn upstream_failure_closes_with_1011() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let (mut ws, stream, _) = open(&mut origin, &proxy, &[]).await;
    stream.send("data: whole\n\n").await;
    assert_eq!(next_text(&mut ws).await, "whole");
    stream.send("data: partial\n").await;
    stream.abort().await;
    assert_eq!(next_close_code(&mut ws).await, 1011);
}

#[tokio::test]
async fn shutdown_closes_with_1001() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let (mut ws, stream, _) = open(&mut origin, &proxy, &[]).await;
    stream.send("data: before\n\n").await;
    assert_eq!(next_text(&mut ws).await, "before");
    proxy.begin_shutdown();
    assert_eq!(next_close_code(&mut ws).await, 1001);
}

#[tokio::test]
async fn unreachable_origin_gets_502_and_no_upgrade() {
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: {ROUTE}\n    upstream: http://127.0.0.1:{}/stream\n",
        free_port()
    )))
    .await;
    assert_eq!(ws_refused_status(&ws_url(&proxy, ROUTE), &[]).await, 502);
}
