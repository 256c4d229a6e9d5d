//! WebSocket passthrough (SPEC 5 and 10): frames relayed in order both ways, close codes and
//! reasons kept, oversize / invalid / malformed input closed with the right code and never
//! relayed, subprotocols and allowed origins, and keepalive pings on both sides.

mod common;

use common::*;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

const ROUTE: &str = "/chat";

fn route(origin: &WsOrigin, extra: &str) -> String {
    config_with_routes(&format!(
        "  - path: {ROUTE}\n    upstream: {}\n{extra}",
        origin.url("/chat")
    ))
}

async fn open(
    extra: &str,
) -> (
    WsOrigin,
    Proxy,
    ClientWs,
    tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, extra)).await;
    let (client, _) = ws_connect(&ws_url(&proxy, ROUTE), &[]).await;
    let (_, upstream) = origin.accept().await;
    (origin, proxy, client, upstream)
}

fn close(code: u16, reason: &str) -> WsMessage {
    WsMessage::Close(Some(CloseFrame {
        code: code.into(),
        reason: reason.into(),
    }))
}

/// Reads what reached the origin until its connection ends; panics on any data message.
async fn origin_gets_no_data(
    upstream: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
) {
    use futures_util::StreamExt;
    within("the upstream to end", async {
        while let Some(Ok(msg)) = upstream.next().await {
            assert!(
                !matches!(msg, WsMessage::Text(_) | WsMessage::Binary(_)),
                "nothing of the refused input may reach the upstream, got {msg:?}"
            );
            if matches!(msg, WsMessage::Close(_)) {
                return;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn text_and_binary_messages_are_relayed_both_ways_in_order() {
    let (_origin, _proxy, mut client, mut upstream) = open("").await;
    let sent = [
        WsMessage::text("one"),
        WsMessage::binary(vec![0u8, 1, 2, 255]),
        WsMessage::text("three ✓"),
        WsMessage::binary(vec![]),
    ];
    for msg in sent.iter().cloned() {
        ws_send(&mut client, msg).await;
    }
    for msg in &sent {
        assert_eq!(&next_data(&mut upstream).await, msg, "client -> origin");
    }
    for msg in sent.iter().cloned() {
        ws_send(&mut upstream, msg).await;
    }
    for msg in &sent {
        assert_eq!(&next_data(&mut client).await, msg, "origin -> client");
    }
}

#[tokio::test]
async fn fragmented_messages_are_reassembled_both_ways() {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let mut raw = RawWs::connect(proxy.addr(), ROUTE).await;
    let (_, mut upstream) = origin.accept().await;
    raw.send_frame(0x01, true, b"hel").await; // text, not final
    raw.send_frame(0x89, true, b"between").await; // a ping may come between fragments
    raw.send_frame(0x00, true, b"lo ").await; // continuation
    raw.send_frame(0x80, true, b"world").await; // final continuation
    assert_eq!(next_text(&mut upstream).await, "hello world");

    ws_send(
        &mut upstream,
        WsMessage::Frame(Frame::message("frag", OpCode::Data(Data::Binary), false)),
    )
    .await;
    ws_send(
        &mut upstream,
        WsMessage::Frame(Frame::message("mented", OpCode::Data(Data::Continue), true)),
    )
    .await;
    let mut payload = Vec::new();
    loop {
        let frame = raw.read_frame().await.expect("a frame");
        if frame.opcode() == 0x9 || frame.opcode() == 0xa {
            continue;
        }
        payload.extend_from_slice(&frame.payload);
        if frame.head & 0x80 != 0 {
            break;
        }
    }
    assert_eq!(payload, b"fragmented");
}

#[tokio::test]
async fn close_code_and_reason_pass_from_client_to_origin() {
    let (_origin, _proxy, mut client, mut upstream) = open("").await;
    ws_send(&mut client, close(4001, "client says bye")).await;
    assert_eq!(
        next_close(&mut upstream).await,
        Ok(Some((4001, "client says bye".to_owned())))
    );
}

#[tokio::test]
async fn close_code_and_reason_pass_from_origin_to_client() {
    let (_origin, _proxy, mut client, mut upstream) = open("").await;
    ws_send(&mut upstream, close(4002, "origin says bye")).await;
    assert_eq!(
        next_close(&mut client).await,
        Ok(Some((4002, "origin says bye".to_owned())))
    );
}

#[tokio::test]
async fn messages_many_reads_long_arrive_whole_both_ways() {
    // Far larger than one read from a peer: each message takes many reads to gather.
    let (_origin, _proxy, mut client, mut upstream) = open("").await;
    let up: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let down = "x".repeat(1024 * 1024);
    ws_send(&mut client, WsMessage::binary(up.clone())).await;
    ws_send(&mut upstream, WsMessage::text(down.clone())).await;
    assert_eq!(next_data(&mut upstream).await, WsMessage::binary(up));
    assert_eq!(
        next_text(&mut client).await,
        down,
        "max_message itself passes"
    );
}

#[tokio::test]
async fn client_message_over_max_message_closes_with_1009_and_is_not_relayed() {
    let (_origin, _proxy, mut client, mut upstream) = open("    max_message: 1KiB\n").await;
    ws_send(&mut client, WsMessage::text("a".repeat(1024))).await;
    assert_eq!(
        next_text(&mut upstream).await.len(),
        1024,
        "max_message itself passes"
    );
    ws_send(&mut client, WsMessage::text("b".repeat(1025))).await;
    assert_eq!(next_close_code(&mut client).await, 1009);
    origin_gets_no_data(&mut upstream).await;
}

#[tokio::test]
async fn origin_message_over_max_message_closes_the_client_with_1009() {
    let (_origin, _proxy, mut client, mut upstream) = open("    max_message: 1KiB\n").await;
    ws_send(&mut upstream, WsMessage::binary(vec![7u8; 2048])).await;
    assert_eq!(next_close_code(&mut client).await, 1009);
}

#[tokio::test]
async fn invalid_utf8_in_text_closes_with_1007_and_is_not_relayed() {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let mut raw = RawWs::connect(proxy.addr(), ROUTE).await;
    let (_, mut upstream) = origin.accept().await;
    raw.send_frame(0x81, true, b"ok \xff\xfe bad").await;
    let frames = raw.read_to_end().await;
    let codes: Vec<_> = frames.iter().filter_map(RawFrame::close_code).collect();
    assert_eq!(codes, [1007]);
    origin_gets_no_data(&mut upstream).await;
}

#[tokio::test]
async fn malformed_frames_close_with_1002_and_nothing_reaches_the_upstream() {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let cases: [(&str, u8, bool, Vec<u8>); 6] = [
        ("unmasked client frame", 0x81, false, b"evil".to_vec()),
        (
            "RSV1 set without an extension",
            0xc1,
            true,
            b"evil".to_vec(),
        ),
        ("RSV3 set", 0x91, true, b"evil".to_vec()),
        ("reserved data opcode 0x3", 0x83, true, b"evil".to_vec()),
        ("fragmented control frame", 0x09, true, b"evil".to_vec()),
        ("control frame over 125 bytes", 0x89, true, vec![b'p'; 126]),
    ];
    for (what, head, masked, payload) in cases {
        let mut raw = RawWs::connect(proxy.addr(), ROUTE).await;
        let (_, mut upstream) = origin.accept().await;
        raw.send_frame(head, masked, &payload).await;
        // A valid message after the bad frame must not be relayed either.
        raw.send_frame(0x81, true, b"after").await;
        let frames = raw.read_to_end().await;
        let codes: Vec<_> = frames.iter().filter_map(RawFrame::close_code).collect();
        assert_eq!(codes, [1002], "{what}");
        assert!(
            frames.iter().all(|f| f.opcode() >= 0x8),
            "{what}: no data came back"
        );
        origin_gets_no_data(&mut upstream).await;
    }
}

#[tokio::test]
async fn subprotocol_is_negotiated_through_the_proxy() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = format!("ws://{}/chat", listener.local_addr().unwrap());
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: {ROUTE}\n    upstream: {upstream}\n"
    )))
    .await;
    let url = ws_url(&proxy, ROUTE);
    let connecting = tokio::spawn(async move {
        ws_connect(&url, &[("Sec-WebSocket-Protocol", "chat.v2, chat.v1")]).await
    });
    let (handshake, _upstream) = ws_accept_once(&listener, |_, mut resp| {
        resp.headers_mut().insert(
            "sec-websocket-protocol",
            http::HeaderValue::from_static("chat.v1"),
        );
        resp
    })
    .await;
    assert_eq!(
        handshake
            .headers
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some("chat.v2, chat.v1"),
        "the client's offer reaches the origin"
    );
    let (_client, headers) = within("the upgrade", connecting).await.unwrap();
    assert_eq!(
        headers
            .get("sec-websocket-protocol")
            .map(|v| v.to_str().unwrap()),
        Some("chat.v1"),
        "the origin's choice reaches the client"
    );
}

#[tokio::test]
async fn allowed_origins_refuse_another_origin_with_403() {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&route(
        &origin,
        "    allowed_origins: [\"http://app.test\"]\n",
    ))
    .await;
    let url = ws_url(&proxy, ROUTE);
    assert_eq!(
        ws_refused_status(&url, &[("Origin", "http://evil.test")]).await,
        403
    );
    let (_client, _) = ws_connect(&url, &[("Origin", "http://app.test")]).await;
    let (headers, _upstream) = origin.accept().await;
    assert_eq!(
        headers.get("origin").map(|v| v.to_str().unwrap()),
        Some("http://app.test"),
        "the Origin header is forwarded as sent"
    );
}

#[tokio::test]
async fn idle_client_is_pinged_every_ws_ping_and_stays_open_while_it_answers() {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, "    ws_ping: 100ms\n")).await;
    let (mut client, _) = ws_connect(&ws_url(&proxy, ROUTE), &[]).await;
    let (_, upstream) = origin.accept().await;
    let upstream = LiveWs::new(upstream);
    use futures_util::StreamExt;
    // tungstenite answers each ping as it reads it; four pings are four intervals, twice the
    // time after which a silent client would have been closed.
    let mut pings = 0;
    while pings < 4 {
        match within("a ping", client.next()).await {
            Some(Ok(WsMessage::Ping(_))) => pings += 1,
            other => panic!("expected pings on an idle connection, got {other:?}"),
        }
    }
    upstream.send(WsMessage::text("still here")).await;
    assert_eq!(next_text(&mut client).await, "still here");
}

#[tokio::test]
async fn client_that_stops_answering_pings_is_disconnected() {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, "    ws_ping: 100ms\n")).await;
    // A raw socket that never answers: after the handshake it reads nothing until the end.
    let mut raw = RawWs::connect(proxy.addr(), ROUTE).await;
    let (_, upstream) = origin.accept().await;
    let mut upstream = LiveWs::new(upstream);
    // The origin (answering its own pings) learns that the client is gone.
    match upstream.next().await {
        Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => {}
        Some(Ok(other)) => panic!("unexpected {other:?} at the origin"),
    }
    let frames = raw.read_to_end().await;
    assert!(
        frames.iter().any(|f| f.opcode() == 0x9),
        "the proxy pinged the client first: {frames:?}"
    );
    // The connection ended although this client never answered anything: no close handshake
    // was waited for. At most a close frame may have been sent on the way out.
    let (last, before) = frames.split_last().expect("frames");
    assert!(
        before.iter().all(|f| f.opcode() == 0x9) && matches!(last.opcode(), 0x8 | 0x9),
        "pings, then at most a close frame: {frames:?}"
    );
}

#[tokio::test]
async fn upstream_that_stops_answering_pings_is_disconnected_and_the_client_gets_1011() {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, "    ws_ping: 100ms\n")).await;
    let (mut client, _) = ws_connect(&ws_url(&proxy, ROUTE), &[]).await;
    // The origin's socket is never read while the client waits: it answers no ping.
    let (_, mut upstream) = origin.accept().await;
    assert_eq!(next_close_code(&mut client).await, 1011);
    use futures_util::StreamExt;
    let mut pinged = false;
    within("the upstream connection to end", async {
        while let Some(Ok(msg)) = upstream.next().await {
            match msg {
                WsMessage::Ping(_) => pinged = true,
                // At most a close frame on the way out; the connection then ends.
                WsMessage::Close(_) => {}
                other => panic!("a dead upstream gets nothing but pings, got {other:?}"),
            }
        }
    })
    .await;
    assert!(pinged, "the proxy pinged the upstream first");
}

#[tokio::test]
async fn upstream_dropping_without_a_close_gives_the_client_1011() {
    let (_origin, _proxy, mut client, mut upstream) = open("").await;
    ws_send(&mut upstream, WsMessage::text("last words")).await;
    assert_eq!(next_text(&mut client).await, "last words");
    drop(upstream);
    assert_eq!(next_close_code(&mut client).await, 1011);
}

#[tokio::test]
async fn shutdown_closes_both_sides_with_1001() {
    let (_origin, proxy, mut client, mut upstream) = open("").await;
    proxy.begin_shutdown();
    assert_eq!(next_close_code(&mut client).await, 1001);
    assert_eq!(next_close_code(&mut upstream).await, 1001);
}

#[tokio::test]
async fn unreachable_origin_gets_502_and_no_upgrade() {
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: {ROUTE}\n    upstream: ws://127.0.0.1:{}/chat\n",
        free_port()
    )))
    .await;
    assert_eq!(ws_refused_status(&ws_url(&proxy, ROUTE), &[]).await, 502);
}

/// Starts the proxy in front of a hand-written origin that sends `after` with its `101`, and
/// opens a client through it; hands back the origin's socket still to come.
async fn relay_of_raw(
    answer: fn(&str) -> String,
    after: Vec<u8>,
) -> (
    Proxy,
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    tokio::task::JoinHandle<tokio::net::TcpStream>,
) {
    let (url, origin) = raw_origin(answer, after).await;
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: {ROUTE}\n    upstream: {url}\n"
    )))
    .await;
    let (client, _) = ws_connect(&ws_url(&proxy, ROUTE), &[]).await;
    (proxy, client, origin)
}

#[tokio::test]
async fn frames_the_origin_sends_together_with_its_101_reach_the_client() {
    // An unmasked text frame "welcome" right behind the head, in the same packet.
    let mut frame = vec![0x81, 7];
    frame.extend_from_slice(b"welcome");
    let (_proxy, mut client, _origin) = relay_of_raw(switching, frame).await;
    assert_eq!(next_text(&mut client).await, "welcome");
}

#[tokio::test]
async fn an_origin_that_ignores_the_close_of_a_gone_client_is_dropped_after_a_mebibyte() {
    let (_proxy, client, origin) = relay_of_raw(switching, Vec::new()).await;
    let mut origin = within("the origin's handshake", origin).await.unwrap();
    drop(client);
    let (b0, payload) = read_client_frame(&mut origin).await;
    assert_eq!(b0, 0x88, "the proxy's close");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    let written = within("the proxy to drop the origin", flood_until_dropped(origin)).await;
    // 1 MiB read and dropped, plus what the two sockets' buffers held (at most 4 + 32 MiB
    // here); for the 5 s of the close grace it would be gigabytes.
    assert!(written < 64 << 20, "{written} bytes taken after the close");
}

#[tokio::test]
async fn a_masked_frame_from_the_origin_closes_the_client_with_1011() {
    let mut frame = vec![0x81, 0x80 | 4, 1, 2, 3, 4];
    frame.extend(b"evil".iter().zip([1u8, 2, 3, 4]).map(|(b, m)| b ^ m));
    let (_proxy, mut client, _origin) = relay_of_raw(switching, frame).await;
    assert_eq!(next_close_code(&mut client).await, 1011);
}

#[tokio::test]
async fn an_origin_that_answers_with_the_wrong_accept_key_gets_the_client_502() {
    fn wrong(_: &str) -> String {
        switching("dGhlIHNhbXBsZSBub25jZQ==")
    }
    let (url, _origin) = raw_origin(wrong, Vec::new()).await;
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: {ROUTE}\n    upstream: {url}\n"
    )))
    .await;
    assert_eq!(ws_refused_status(&ws_url(&proxy, ROUTE), &[]).await, 502);
}

#[tokio::test]
async fn a_client_ping_is_answered_by_the_proxy_and_never_reaches_the_origin() {
    use futures_util::StreamExt;
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let mut raw = RawWs::connect(proxy.addr(), ROUTE).await;
    let (_, mut upstream) = origin.accept().await;
    raw.send_frame(0x89, true, b"are you there").await;
    let pong = raw.read_frame().await.expect("a pong");
    assert_eq!(
        (pong.opcode(), pong.payload.as_slice()),
        (0xa, &b"are you there"[..])
    );
    // A ping between the fragments of a message leaves the message whole.
    raw.send_frame(0x01, true, b"hel").await;
    raw.send_frame(0x89, true, b"again").await;
    raw.send_frame(0x80, true, b"lo").await;
    let pong = raw.read_frame().await.expect("a second pong");
    assert_eq!(
        (pong.opcode(), pong.payload.as_slice()),
        (0xa, &b"again"[..])
    );
    let first = within("the message at the origin", upstream.next()).await;
    assert_eq!(
        first.expect("open").expect("message"),
        WsMessage::text("hello"),
        "the origin sees the message and no ping"
    );
}

#[tokio::test]
async fn a_client_close_is_answered_by_the_origin_s_own_close() {
    use tokio::io::AsyncWriteExt;
    let (_proxy, mut client, origin) = relay_of_raw(switching, Vec::new()).await;
    let mut origin = within("the origin's handshake", origin).await.unwrap();
    ws_send(&mut client, close(4001, "client says bye")).await;
    // The client's close reaches the origin as a masked close frame with its code.
    let (b0, payload) = read_client_frame(&mut origin).await;
    assert_eq!(b0, 0x88, "a close frame");
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    assert_eq!(code, 4001);
    // The origin answers with a code of its own: that answer, not an echo made up by the
    // proxy, is what the client gets.
    let mut answer = vec![0x88, 2 + 6];
    answer.extend_from_slice(&4003u16.to_be_bytes());
    answer.extend_from_slice(b"origin");
    origin.write_all(&answer).await.unwrap();
    assert_eq!(
        next_close(&mut client).await,
        Ok(Some((4003, "origin".to_owned())))
    );
}

#[tokio::test]
async fn an_origin_that_stops_reading_gets_its_client_closed_with_1013() {
    use futures_util::{SinkExt, StreamExt};
    // The origin takes the handshake, then never reads; its receive buffer is small.
    let (url, origin) = raw_origin_with(switching, Vec::new(), Some(4096)).await;
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: {ROUTE}\n    upstream: {url}\n    client_buffer: 64KiB\n"
    )))
    .await;
    let (client, _) = ws_connect(&ws_url(&proxy, ROUTE), &[]).await;
    // Held open, never read.
    let origin = within("the origin's handshake", origin).await.unwrap();
    let (mut sink, mut stream) = client.split();
    // 16 MB: more than the kernel buffers on the way can hold.
    let sender = tokio::spawn(async move {
        for _ in 0..2000 {
            if sink.send(WsMessage::binary(vec![0u8; 8192])).await.is_err() {
                break;
            }
        }
    });
    let code = within("the client to be closed", async {
        loop {
            match stream.next().await {
                Some(Ok(WsMessage::Close(frame))) => break frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(code, Some(1013));
    sender.abort();
    drop(origin);
}

#[tokio::test]
async fn a_frame_sent_together_with_the_client_s_handshake_reaches_the_origin() {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let mut tcp = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let mut bytes = format!(
        "GET {ROUTE} HTTP/1.1\r\nHost: proxy.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes();
    // A masked text frame "early", in the same write as the handshake.
    let mask = [9u8, 8, 7, 6];
    bytes.extend_from_slice(&[0x81, 0x80 | 5]);
    bytes.extend_from_slice(&mask);
    bytes.extend(b"early".iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    tcp.write_all(&bytes).await.unwrap();
    let (_, mut upstream) = origin.accept().await;
    let first = within("the early message at the origin", upstream.next()).await;
    assert_eq!(
        first.expect("open").expect("message"),
        WsMessage::text("early")
    );
    drop(tcp);
}

#[tokio::test]
async fn after_a_close_handshake_the_origin_closes_its_connection_first() {
    use tokio::io::AsyncWriteExt;
    let (_proxy, mut client, origin) = relay_of_raw(switching, Vec::new()).await;
    let mut origin = within("the origin's handshake", origin).await.unwrap();
    ws_send(&mut client, close(1000, "")).await;
    read_client_frame(&mut origin).await;
    origin.write_all(&[0x88, 2, 0x03, 0xe8]).await.unwrap();
    assert_eq!(next_close_code(&mut client).await, 1000);
    // The proxy has passed the origin's answer on; the origin closes first.
    assert_the_origin_closes_first(origin).await;
}
