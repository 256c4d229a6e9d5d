//! WebSocket origin -> SSE client (SPEC 4.1 and 10): one event per message, JSON envelopes,
//! binary modes, the back channel, `on_connect` templates, Last-Event-ID, and how either side
//! ending ends the other.

mod common;

use common::*;
use tokio::net::TcpListener;

const ROUTE: &str = "/ticker";

fn route(origin: &WsOrigin, extra: &str) -> String {
    config_with_routes(&format!(
        "  - path: {ROUTE}\n    upstream: {}\n{extra}",
        origin.url("/ws")
    ))
}

/// Starts the proxy, opens an SSE stream of the WebSocket origin, and reads the bridge event.
async fn open(
    extra: &str,
) -> (
    WsOrigin,
    Proxy,
    SseClient,
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    String,
) {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, extra)).await;
    let (mut client, status, _) = SseClient::get(proxy.addr(), ROUTE, &[]).await;
    assert_eq!(status, 200);
    let (_, ws) = origin.accept().await;
    let (_, send) = client.bridge("bridge").await;
    (origin, proxy, client, ws, send)
}

#[tokio::test]
async fn each_text_message_becomes_one_event_while_the_upstream_stays_open() {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let (mut client, status, headers) = SseClient::get(proxy.addr(), ROUTE, &[]).await;
    assert_eq!(status, 200);
    let content_type = header(&headers, "content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    assert_eq!(
        header(&headers, "cache-control"),
        Some("no-cache, no-transform")
    );
    assert_eq!(header(&headers, "x-accel-buffering"), Some("no"));
    let (_, mut ws) = origin.accept().await;
    client.bridge("bridge").await;

    ws_send(&mut ws, WsMessage::text("hello")).await;
    let event = client.next_event().await;
    assert_eq!(
        (event.event_type.as_str(), event.data.as_str()),
        ("message", "hello")
    );
    ws_send(&mut ws, WsMessage::text("world")).await;
    let event = client.next_event().await;
    assert_eq!(
        (event.event_type.as_str(), event.data.as_str()),
        ("message", "world")
    );
    assert_eq!(
        client.blocks.last().map(String::as_str),
        Some("data: world\n\n")
    );
}

#[tokio::test]
async fn message_lines_become_data_lines_so_event_data_is_the_text_with_lf() {
    let (_origin, _proxy, mut client, mut ws, _) = open("").await;
    let cases = [
        ("crlf\r\nlf\nlone cr\rend", "crlf\nlf\nlone cr\nend"),
        ("blank\r\n\r\nline", "blank\n\nline"),
        ("trailing\n", "trailing\n"),
        ("", ""),
    ];
    for (sent, expected) in cases {
        ws_send(&mut ws, WsMessage::text(sent)).await;
        let event = client.next_event().await;
        assert_eq!(event.data, expected, "message {sent:?}");
    }
    assert_eq!(
        client.blocks[1], "data: crlf\ndata: lf\ndata: lone cr\ndata: end\n\n",
        "each line of the message is one data line"
    );
}

#[tokio::test]
async fn json_envelope_sets_event_id_retry_and_data() {
    let (_origin, _proxy, mut client, mut ws, _) = open("    format: json\n").await;
    ws_send(
        &mut ws,
        WsMessage::text(r#"{"event":"tick","id":"7","retry":1500,"data":{"p":[1, 2],"q":"x"}}"#),
    )
    .await;
    let event = client.next_event().await;
    assert_eq!(event.event_type, "tick");
    assert_eq!(event.last_event_id, "7");
    assert_eq!(event.retry, Some(1500));
    assert_eq!(
        event.data, r#"{"p":[1,2],"q":"x"}"#,
        "non-string data is compact JSON"
    );

    ws_send(&mut ws, WsMessage::text(r#"{"data":"two\nlines"}"#)).await;
    let event = client.next_event().await;
    assert_eq!(
        (event.event_type.as_str(), event.data.as_str()),
        ("message", "two\nlines")
    );

    // Anything that is not an envelope is sent raw.
    for raw in ["plain text", r#"{"other":1}"#, "[1,2]"] {
        ws_send(&mut ws, WsMessage::text(raw)).await;
        let event = client.next_event().await;
        assert_eq!(
            (event.event_type.as_str(), event.data.as_str()),
            ("message", raw)
        );
    }
}

/// The value of one sample of the proxy's metrics.
async fn metric_value(admin: std::net::SocketAddr, sample: &str) -> u64 {
    let (status, metrics) = admin_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    sample_value(&metrics, sample).unwrap_or_else(|| panic!("{sample} in:\n{metrics}"))
}

#[tokio::test]
async fn invalid_json_envelope_is_sent_raw_and_counted_as_a_translation_error() {
    let mut origin = WsOrigin::start().await;
    let yaml = route(&origin, "    format: json\n")
        .replace("routes:\n", "admin:\n  bind: 127.0.0.1:0\nroutes:\n");
    let proxy = Proxy::start(&yaml).await;
    let admin = proxy.admin.expect("admin listener");
    let sample = format!("ssebridge_translation_errors_total{{route=\"{ROUTE}\"}}");
    assert_eq!(metric_value(admin, &sample).await, 0);
    let (mut client, _, _) = SseClient::get(proxy.addr(), ROUTE, &[]).await;
    let (_, mut ws) = origin.accept().await;
    client.bridge("bridge").await;

    let invalid = [
        r#"{"event":"a\nb","data":"x"}"#,
        r#"{"event":"a\rb","data":"x"}"#,
        r#"{"id":"1\u0000","data":"x"}"#,
        r#"{"id":7,"data":"x"}"#,
        r#"{"retry":-5,"data":"x"}"#,
        r#"{"retry":"100","data":"x"}"#,
    ];
    for text in invalid {
        ws_send(&mut ws, WsMessage::text(text)).await;
        let event = client.next_event().await;
        assert_eq!(
            (event.event_type.as_str(), event.data.as_str()),
            ("message", text)
        );
        assert_eq!(event.last_event_id, "", "an invalid envelope sets no id");
        assert_eq!(event.retry, None);
    }
    // A message that is no envelope at all is not an error.
    ws_send(&mut ws, WsMessage::text("just text")).await;
    assert_eq!(client.next_event().await.data, "just text");
    assert_eq!(metric_value(admin, &sample).await, invalid.len() as u64);
}

#[tokio::test]
async fn binary_message_becomes_a_base64_event_of_type_binary() {
    let (_origin, _proxy, mut client, mut ws, _) = open("").await;
    ws_send(
        &mut ws,
        WsMessage::binary(vec![0x00, 0xff, 0x10, b'h', b'i', b'\n']),
    )
    .await;
    let event = client.next_event().await;
    assert_eq!(
        (event.event_type.as_str(), event.data.as_str()),
        ("binary", "AP8QaGkK")
    );
}

#[tokio::test]
async fn binary_drop_skips_binary_messages() {
    let (_origin, _proxy, mut client, mut ws, _) = open("    binary: drop\n").await;
    ws_send(&mut ws, WsMessage::binary(vec![1, 2, 3])).await;
    ws_send(&mut ws, WsMessage::text("after")).await;
    let event = client.next_event().await;
    assert_eq!(
        (event.event_type.as_str(), event.data.as_str()),
        ("message", "after")
    );
}

#[tokio::test]
async fn binary_close_closes_the_upstream_and_ends_the_stream() {
    let (_origin, _proxy, mut client, mut ws, _) = open("    binary: close\n").await;
    ws_send(&mut ws, WsMessage::text("before")).await;
    assert_eq!(client.next_event().await.data, "before");
    ws_send(&mut ws, WsMessage::binary(vec![1, 2, 3])).await;
    assert!(
        next_close(&mut ws).await.is_ok(),
        "the origin gets a close frame"
    );
    let rest = client.raw.read_to_end_either_way().await;
    assert!(
        !rest.contains("data:"),
        "no event after the binary message: {rest:?}"
    );
}

#[tokio::test]
async fn bridge_event_comes_first_names_the_session_and_carries_no_id() {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, "    bridge_event: hello-bridge\n")).await;
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let (mut client, _, _) = SseClient::get(proxy.addr(), ROUTE, &[]).await;
        let (_, mut ws) = origin.accept().await;
        let (session, send) = client.bridge("hello-bridge").await;
        assert!(
            !client.blocks[0].lines().any(|l| l.starts_with("id")),
            "the bridge event has no id: {:?}",
            client.blocks[0]
        );
        assert!(
            session.len() >= 22,
            "a session id carries at least 128 random bits: {session:?}"
        );
        assert!(
            send.starts_with('/') && send.contains(&session),
            "send path {send:?}"
        );
        ws_send(&mut ws, WsMessage::text("x")).await;
        let event = client.next_event().await;
        assert_eq!(
            event.last_event_id, "",
            "the bridge event set no last event ID"
        );
        sessions.push(session);
    }
    assert_ne!(sessions[0], sessions[1]);
}

#[tokio::test]
async fn back_channel_post_reaches_the_origin_and_answers_204() {
    let (_origin, proxy, _client, mut ws, send) = open("").await;
    let (status, _) = http_request(
        proxy.addr(),
        "POST",
        &send,
        &[("Content-Type", "text/plain")],
        "hello {\"a\":1}\nline".as_bytes(),
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(next_text(&mut ws).await, "hello {\"a\":1}\nline");

    let (status, _) = http_request(
        proxy.addr(),
        "POST",
        &send,
        &[("Content-Type", "application/octet-stream")],
        &[0, 159, 146, 150],
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        next_data(&mut ws).await,
        WsMessage::binary(vec![0, 159, 146, 150]),
        "an octet-stream body is sent as a binary message"
    );
}

#[tokio::test]
async fn back_channel_unknown_session_is_404() {
    let (_origin, proxy, _client, mut ws, send) = open("").await;
    let unknown = format!("{ROUTE}/_send/00000000000000000000000000000000");
    assert_ne!(unknown, send);
    let (status, _) = http_request(proxy.addr(), "POST", &unknown, &[], b"x").await;
    assert_eq!(status, 404);
    // A session of the stream is known; nothing of the refused POST reached the origin.
    let (status, _) = http_request(proxy.addr(), "POST", &send, &[], b"ok").await;
    assert_eq!(status, 204);
    assert_eq!(next_text(&mut ws).await, "ok");
}

#[tokio::test]
async fn back_channel_body_over_max_message_is_413() {
    let (_origin, proxy, _client, mut ws, send) = open("    max_message: 1KiB\n").await;
    let (status, _) = http_request(proxy.addr(), "POST", &send, &[], &[b'a'; 1025]).await;
    assert_eq!(status, 413);
    let (status, _) = http_request(proxy.addr(), "POST", &send, &[], &[b'b'; 1024]).await;
    assert_eq!(status, 204, "a body of exactly max_message is accepted");
    assert_eq!(next_text(&mut ws).await, "b".repeat(1024));
}

#[tokio::test]
async fn back_channel_other_method_is_405() {
    let (_origin, proxy, _client, _ws, send) = open("").await;
    for method in ["GET", "PUT", "DELETE"] {
        let (status, _) = http_request(proxy.addr(), method, &send, &[], b"").await;
        assert_eq!(status, 405, "{method} on the back channel");
    }
}

#[tokio::test]
async fn back_channel_refuses_an_origin_not_in_allowed_origins_with_403() {
    let (_origin, proxy, _client, mut ws, send) =
        open("    allowed_origins: [\"http://app.test\"]\n").await;
    let (status, _) = http_request(
        proxy.addr(),
        "POST",
        &send,
        &[("Origin", "http://evil.test")],
        b"forged",
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = http_request(
        proxy.addr(),
        "POST",
        &send,
        &[("Origin", "http://app.test")],
        b"allowed",
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(
        next_text(&mut ws).await,
        "allowed",
        "the refused message never reached the origin"
    );
}

#[tokio::test]
async fn back_channel_session_is_dead_once_the_stream_ends() {
    let (_origin, proxy, mut client, mut ws, send) = open("").await;
    let (status, _) = http_request(proxy.addr(), "POST", &send, &[], b"alive").await;
    assert_eq!(status, 204);
    assert_eq!(next_text(&mut ws).await, "alive");
    ws_send(&mut ws, WsMessage::Close(None)).await;
    client.raw.read_to_end_of_response().await;
    let (status, _) = http_request(proxy.addr(), "POST", &send, &[], b"late").await;
    assert_eq!(status, 404);
}

fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn on_connect_templates_are_filled_json_escaped_and_never_re_expanded() {
    let mut origin = WsOrigin::start().await;
    let extra = "    on_connect:\n      - '{\"op\":\"subscribe\",\"symbol\":\"{query.symbol}\",\"user\":\"{header.X-User}\",\"missing\":\"{query.absent}\"}'\n      - 'ready'\n";
    let proxy = Proxy::start(&route(&origin, extra)).await;
    let hostile = r#"ABC"},{"op":"evil","x":"\{query.symbol}\\{header.x-user}"#;
    let hostile_header = r#"bob" , "admin": true, "y": "\{query.symbol}"#;
    let path = format!("{ROUTE}?symbol={}", percent_encode(hostile));
    let (_client, status, _) =
        SseClient::get(proxy.addr(), &path, &[("x-user", hostile_header)]).await;
    assert_eq!(status, 200);
    let (_, mut ws) = origin.accept().await;

    let first = next_text(&mut ws).await;
    let parsed: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{first:?} is not JSON: {e}"));
    let expected = serde_json::json!({
        "op": "subscribe",
        "symbol": hostile,
        "user": hostile_header,
        "missing": "",
    });
    assert_eq!(parsed, expected, "sent upstream: {first}");
    assert_eq!(next_text(&mut ws).await, "ready");
}

#[tokio::test]
async fn last_event_id_header_reaches_the_upstream_handshake() {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let (_client, status, _) =
        SseClient::get(proxy.addr(), ROUTE, &[("Last-Event-ID", "evt-41")]).await;
    assert_eq!(status, 200);
    let (headers, _ws) = origin.accept().await;
    assert_eq!(
        headers.get("last-event-id").map(|v| v.as_bytes()),
        Some(&b"evt-41"[..])
    );
}

#[tokio::test]
async fn last_event_id_query_parameter_reaches_the_upstream_handshake_and_leaves_the_url() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("ws://{}/ws", listener.local_addr().unwrap());
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: {ROUTE}\n    upstream: {upstream}\n"
    )))
    .await;
    let get = tokio::spawn(SseClient::get(
        proxy.addr(),
        "/ticker/sub?topic=a&last_event_id=42&x=1",
        &[],
    ));
    let (handshake, _ws) = ws_accept_once(&listener, |_, resp| resp).await;
    assert_eq!(
        handshake.headers.get("last-event-id").map(|v| v.as_bytes()),
        Some(&b"42"[..])
    );
    assert_eq!(handshake.uri.path(), "/ws/sub");
    assert_eq!(handshake.uri.query(), Some("topic=a&x=1"));
    let (_client, status, _) = within("the SSE response", get).await.unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn upstream_close_ends_the_sse_response_cleanly() {
    let (_origin, _proxy, mut client, mut ws, _) = open("").await;
    ws_send(&mut ws, WsMessage::text("last")).await;
    assert_eq!(client.next_event().await.data, "last");
    ws_send(&mut ws, WsMessage::Close(None)).await;
    assert_eq!(client.raw.read_to_end_of_response().await, "");
    assert!(client.raw.complete);
}

#[tokio::test]
async fn upstream_dropped_without_close_aborts_the_sse_response() {
    let (_origin, _proxy, mut client, mut ws, _) = open("").await;
    ws_send(&mut ws, WsMessage::text("last")).await;
    assert_eq!(client.next_event().await.data, "last");
    drop(ws);
    client.raw.read_to_close().await;
    assert!(
        !client.raw.complete,
        "a failed upstream must abort the response (no last chunk)"
    );
}

#[tokio::test]
async fn events_received_before_the_upstream_dropped_reach_the_client_before_the_abort() {
    let (_origin, _proxy, mut client, mut ws, _) = open("").await;
    use futures_util::SinkExt;
    for i in 0..10 {
        ws.feed(WsMessage::text(format!("m{i}"))).await.unwrap();
    }
    within("the origin's flush", ws.flush()).await.unwrap();
    drop(ws);
    for i in 0..10 {
        assert_eq!(client.next_event().await.data, format!("m{i}"));
    }
    client.raw.read_to_close().await;
    assert!(!client.raw.complete, "then the response is aborted");
}

#[tokio::test]
async fn client_gone_sends_close_1000_upstream() {
    let (_origin, _proxy, client, mut ws, _) = open("    heartbeat: 0\n").await;
    drop(client);
    assert_eq!(next_close_code(&mut ws).await, 1000);
}

#[tokio::test]
async fn shutdown_ends_the_sse_stream_with_a_retry_field_then_a_clean_end() {
    let (_origin, proxy, mut client, _ws, _) = open("    heartbeat: 0\n").await;
    proxy.begin_shutdown();
    let rest = client.raw.read_to_end_of_response().await;
    assert!(
        rest.starts_with("retry: ") && rest.ends_with("\n\n") && rest.lines().count() == 2,
        "the drained stream ends with a retry field and nothing else: {rest:?}"
    );
    let ms: u64 = rest["retry: ".len()..].trim().parse().expect("retry in ms");
    assert!(ms > 0);
}

#[tokio::test]
async fn shutdown_sends_1001_upstream() {
    let (_origin, proxy, _client, mut ws, _) = open("    heartbeat: 0\n").await;
    proxy.begin_shutdown();
    assert_eq!(next_close_code(&mut ws).await, 1001);
}

#[tokio::test]
async fn idle_stream_gets_heartbeats() {
    let (_origin, _proxy, mut client, _ws, _) = open("    heartbeat: 100ms\n").await;
    client.raw.read_until(":\n\n").await;
    client.raw.read_until(":\n\n").await;
}

#[tokio::test]
async fn unreachable_websocket_origin_gets_502_and_never_a_200() {
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: {ROUTE}\n    upstream: ws://127.0.0.1:{}/ws\n",
        free_port()
    )))
    .await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get(ROUTE, &[("Accept", "text/event-stream")]).await;
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 502);
    assert_ne!(header(&headers, "content-type"), Some("text/event-stream"));
}

#[tokio::test]
async fn idle_upstream_is_pinged_every_ws_ping_and_the_stream_stays_open_while_it_answers() {
    use futures_util::StreamExt;
    let (_origin, _proxy, mut client, mut ws, _) =
        open("    ws_ping: 100ms\n    heartbeat: 0\n").await;
    // tungstenite answers each ping as it reads it; four pings are four intervals, twice the
    // time after which a silent upstream would have been dropped.
    let mut pings = 0;
    while pings < 4 {
        match within("a ping", ws.next()).await {
            Some(Ok(WsMessage::Ping(_))) => pings += 1,
            other => panic!("expected pings on an idle upstream, got {other:?}"),
        }
    }
    ws_send(&mut ws, WsMessage::text("still here")).await;
    assert_eq!(client.next_event().await.data, "still here");
}

#[tokio::test]
async fn upstream_that_stops_answering_pings_aborts_the_sse_response() {
    // The origin's socket is never read: it answers no ping.
    let (_origin, _proxy, mut client, _ws, _) =
        open("    ws_ping: 100ms\n    heartbeat: 0\n").await;
    client.raw.read_to_close().await;
    assert!(
        !client.raw.complete,
        "a dead upstream aborts the response (no last chunk), so EventSource reconnects"
    );
}

#[tokio::test]
async fn a_burst_of_messages_arrives_whole_and_in_order_and_counts_one_event_each() {
    use futures_util::SinkExt;
    let mut origin = WsOrigin::start().await;
    let yaml = route(&origin, "    heartbeat: 0\n")
        .replace("routes:\n", "admin:\n  bind: 127.0.0.1:0\nroutes:\n");
    let proxy = Proxy::start(&yaml).await;
    let admin = proxy.admin.expect("admin listener");
    let (mut client, _, _) = SseClient::get(proxy.addr(), ROUTE, &[]).await;
    let (_, mut ws) = origin.accept().await;
    client.bridge("bridge").await;
    // Sent in one write: the proxy reads them together and may pass them on as one chunk.
    for i in 0..500 {
        ws.feed(WsMessage::text(format!("burst {i}")))
            .await
            .unwrap();
    }
    within("the origin's flush", ws.flush()).await.unwrap();
    for i in 0..500 {
        assert_eq!(client.next_event().await.data, format!("burst {i}"));
    }
    let sample = format!("ssebridge_events_total{{route=\"{ROUTE}\",direction=\"downstream\"}}");
    // One per message (the bridge event is the proxy's own, not a forwarded one).
    assert_eq!(metric_value(admin, &sample).await, 500);
}

/// A frame as an origin writes it: unmasked.
fn server_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut out = vec![b0, payload.len() as u8];
    out.extend_from_slice(payload);
    out
}

/// Starts the proxy in front of a hand-written origin that sends `after` with its `101`, opens
/// an SSE stream and reads the bridge event; hands back the origin's socket.
async fn open_raw(after: Vec<u8>, extra: &str) -> (Proxy, SseClient, tokio::net::TcpStream) {
    let (url, origin) = raw_origin(switching, after).await;
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: {ROUTE}\n    upstream: {url}\n    heartbeat: 0\n{extra}"
    )))
    .await;
    let (mut client, status, _) = SseClient::get(proxy.addr(), ROUTE, &[]).await;
    assert_eq!(status, 200);
    let origin = within("the origin's handshake", origin).await.unwrap();
    client.bridge("bridge").await;
    (proxy, client, origin)
}

/// The close code of a close frame's payload.
fn code_of(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

#[tokio::test]
async fn messages_the_origin_sends_together_with_its_101_become_events() {
    let mut after = server_frame(0x81, b"welcome");
    after.extend(server_frame(0x81, b"second"));
    let (_proxy, mut client, _origin) = open_raw(after, "").await;
    assert_eq!(client.next_event().await.data, "welcome");
    assert_eq!(client.next_event().await.data, "second");
}

#[tokio::test]
async fn a_fragmented_message_becomes_one_event_and_a_ping_between_its_fragments_is_answered() {
    use tokio::io::AsyncWriteExt;
    let (_proxy, mut client, mut origin) = open_raw(Vec::new(), "").await;
    // "€uro", its first character split across the first two fragments.
    let text = "€uro".as_bytes();
    let mut frames = server_frame(0x01, &text[..1]);
    frames.extend(server_frame(0x89, b"are you there"));
    frames.extend(server_frame(0x00, &text[1..2]));
    frames.extend(server_frame(0x80, &text[2..]));
    origin.write_all(&frames).await.unwrap();
    let (b0, payload) = read_client_frame(&mut origin).await;
    assert_eq!(b0, 0x8a, "a pong");
    assert_eq!(payload, b"are you there");
    let event = client.next_event().await;
    assert_eq!(event.data, "€uro");
    assert_eq!(event.event_type, "message");
}

#[tokio::test]
async fn text_that_is_not_utf8_closes_the_origin_with_1007_and_aborts_the_stream() {
    let mut after = server_frame(0x81, b"fine");
    after.extend(server_frame(0x81, &[b'a', 0xff, b'b']));
    let (_proxy, mut client, mut origin) = open_raw(after, "").await;
    assert_eq!(client.next_event().await.data, "fine");
    let (b0, payload) = read_client_frame(&mut origin).await;
    assert_eq!((b0, code_of(&payload)), (0x88, 1007));
    client.raw.read_to_close().await;
    assert!(
        !client.raw.complete,
        "a broken upstream aborts the response"
    );
}

#[tokio::test]
async fn a_message_over_max_message_closes_the_origin_with_1009() {
    let mut after = server_frame(0x01, &[b'a'; 100]);
    after.extend(server_frame(0x80, &[b'a'; 100]));
    let (_proxy, mut client, mut origin) = open_raw(after, "    max_message: 150\n").await;
    let (b0, payload) = read_client_frame(&mut origin).await;
    assert_eq!((b0, code_of(&payload)), (0x88, 1009));
    client.raw.read_to_close().await;
    assert!(!client.raw.complete);
}

#[tokio::test]
async fn the_origins_close_is_answered_with_its_code_and_the_origin_closes_its_connection_first() {
    use tokio::io::AsyncWriteExt;
    let (_proxy, mut client, mut origin) = open_raw(Vec::new(), "").await;
    origin
        .write_all(&server_frame(0x88, &4000u16.to_be_bytes()))
        .await
        .unwrap();
    let (b0, payload) = read_client_frame(&mut origin).await;
    assert_eq!((b0, code_of(&payload)), (0x88, 4000), "the close, echoed");
    assert_eq!(client.raw.read_to_end_of_response().await, "");
    assert!(
        client.raw.complete,
        "an upstream close ends the response cleanly"
    );
    assert_the_origin_closes_first(origin).await;
}

#[tokio::test]
async fn an_origin_that_ignores_the_close_is_dropped_after_a_mebibyte_not_after_the_grace() {
    let (_proxy, client, mut origin) = open_raw(Vec::new(), "").await;
    drop(client);
    let (b0, payload) = read_client_frame(&mut origin).await;
    assert_eq!((b0, code_of(&payload)), (0x88, 1000), "the proxy's close");
    let written = within("the proxy to drop the origin", flood_until_dropped(origin)).await;
    // 1 MiB read and dropped, plus what the two sockets' buffers held (at most 4 + 32 MiB
    // here); for the 5 s of the close grace it would be gigabytes.
    assert!(written < 64 << 20, "{written} bytes taken after the close");
}

#[tokio::test]
async fn on_connect_and_back_channel_messages_reach_the_origin_as_masked_frames() {
    let (url, origin) = raw_origin(switching, Vec::new()).await;
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: {ROUTE}\n    upstream: {url}\n    heartbeat: 0\n    on_connect:\n      - hello\n"
    )))
    .await;
    let (mut client, _, _) = SseClient::get(proxy.addr(), ROUTE, &[]).await;
    let mut origin = within("the origin's handshake", origin).await.unwrap();
    let (_, send) = client.bridge("bridge").await;
    assert_eq!(
        read_client_frame(&mut origin).await,
        (0x81, b"hello".to_vec())
    );
    // A binary message longer than a 16-bit length.
    let body = vec![7u8; 70_000];
    let mut raw = RawClient::connect(proxy.addr()).await;
    raw.send(&format!(
        "POST {send} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    ))
    .await;
    raw.send_bytes(&body).await;
    assert_eq!(raw.read_head().await.0, 204);
    assert_eq!(read_client_frame(&mut origin).await, (0x82, body));
}

#[tokio::test]
async fn back_channel_messages_that_queue_up_while_the_link_is_busy_all_reach_the_origin() {
    // One worker: the pipelined POSTs are all taken before the link runs again, so more than a
    // full queue (two messages of max_message) waits in the channel, and the origin's socket
    // takes them all at once.
    let (url, origin) = raw_origin(switching, Vec::new()).await;
    let proxy = Proxy::start(&format!(
        "workers: 1\n{}",
        config_with_routes(&format!(
            "  - path: {ROUTE}\n    upstream: {url}\n    heartbeat: 0\n    max_message: 1KiB\n"
        ))
    ))
    .await;
    let (mut client, _, _) = SseClient::get(proxy.addr(), ROUTE, &[]).await;
    let mut origin = within("the origin's handshake", origin).await.unwrap();
    let (_, send) = client.bridge("bridge").await;
    let mut raw = RawClient::connect(proxy.addr()).await;
    let mut pipelined = String::new();
    for i in 0..8 {
        let body = format!("{i:0>1000}");
        pipelined.push_str(&format!(
            "POST {send} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    raw.send(&pipelined).await;
    for i in 0..8 {
        let (b0, payload) = read_client_frame(&mut origin).await;
        assert_eq!((b0, payload), (0x81, format!("{i:0>1000}").into_bytes()));
    }
}

#[tokio::test]
async fn an_origin_that_takes_no_back_channel_messages_is_dropped_and_the_stream_aborted() {
    // The origin never reads, and its receive buffer is small: the proxy's queue towards it
    // (two messages of max_message) fills once the sockets' buffers have.
    let (url, origin) = raw_origin_with(switching, Vec::new(), Some(4096)).await;
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: {ROUTE}\n    upstream: {url}\n    heartbeat: 0\n    max_message: 64KiB\n"
    )))
    .await;
    let (mut client, _, _) = SseClient::get(proxy.addr(), ROUTE, &[]).await;
    let _origin = within("the origin's handshake", origin).await.unwrap();
    let (_, send) = client.bridge("bridge").await;
    let addr = proxy.addr();
    let posts = tokio::spawn(async move {
        let body = vec![b'x'; 60_000];
        for _ in 0..64 {
            let (status, _) = http_request(
                addr,
                "POST",
                &send,
                &[("Content-Type", "text/plain")],
                &body,
            )
            .await;
            if status != 204 {
                // 503 while the proxy's back channel is full, 404 once the stream is gone.
                assert!(status == 503 || status == 404, "POST answered {status}");
                return;
            }
        }
    });
    client.raw.read_to_close().await;
    assert!(
        !client.raw.complete,
        "an upstream that stopped taking messages fails the stream (no last chunk)"
    );
    within("the POSTs", posts).await.unwrap();
}
