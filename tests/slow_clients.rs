//! Slow clients (SPEC 8 and 10 "Slow clients"): past `client_buffer` a client that stops
//! reading is cut (WebSocket: `1013` if it fits, then the TCP connection closed; SSE: the
//! response aborted), its upstream is cancelled, and a fast client of the same route keeps
//! receiving every message.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Semaphore};
use tokio_tungstenite::WebSocketStream;

/// Messages the origin sends to each client: 6.4 MB, more than the slow client can hide in
/// kernel buffers (its receive buffer is shrunk; the proxy's send buffer grows to 4 MiB at
/// most) plus its `client_buffer` of 64 KiB.
const MESSAGES: usize = 800;
const PADDING: usize = 8192;
/// Messages the origin sends ahead of what the fast client has read: 4 x 8 KiB, well inside
/// `client_buffer`, so the fast client never has reason to be cut. The origin is as fast as
/// the fast client reads, and the slow client gets the same messages unpaced.
const WINDOW: usize = 4;

fn message(i: usize) -> String {
    format!("{i:06} {}", "x".repeat(PADDING))
}

fn small_receive_buffer(socket: &tokio::net::TcpSocket) {
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
}

/// The origin as a broadcast hub: each message goes to the fast client's upstream, then to the
/// slow one's, as long as that one is open. Returns when the slow upstream ended (the proxy
/// cancelled it), and the task, which ends once everything is sent and hands back the fast
/// upstream (still open: the test ends it).
fn broadcast(
    fast: WebSocketStream<TcpStream>,
    slow: WebSocketStream<TcpStream>,
    window: Arc<Semaphore>,
) -> (
    oneshot::Receiver<()>,
    tokio::task::JoinHandle<WebSocketStream<TcpStream>>,
) {
    let (ended_tx, ended) = oneshot::channel();
    let (mut slow_sink, mut slow_stream) = slow.split();
    tokio::spawn(async move {
        while let Some(Ok(msg)) = slow_stream.next().await {
            if matches!(msg, WsMessage::Close(_)) {
                break;
            }
        }
        let _ = ended_tx.send(());
    });
    let task = tokio::spawn(async move {
        let mut fast = fast;
        let mut slow_open = true;
        for i in 0..MESSAGES {
            window.acquire().await.expect("window").forget();
            let msg = WsMessage::text(message(i));
            fast.send(msg.clone()).await.expect("fast upstream open");
            if slow_open && slow_sink.send(msg).await.is_err() {
                slow_open = false;
            }
        }
        fast
    });
    (ended, task)
}

#[tokio::test]
async fn slow_websocket_client_is_closed_while_a_fast_one_gets_every_message() {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: /chat\n    upstream: {}\n    client_buffer: 64KiB\n",
        origin.url("/chat")
    )))
    .await;
    let mut slow = RawWs::connect_with(proxy.addr(), "/chat", small_receive_buffer).await;
    let (_, slow_upstream) = origin.accept().await;
    let (mut fast, _) = ws_connect(&ws_url(&proxy, "/chat"), &[]).await;
    let (_, fast_upstream) = origin.accept().await;
    let window = Arc::new(Semaphore::new(WINDOW));
    let (slow_upstream_ended, origin_task) =
        broadcast(fast_upstream, slow_upstream, window.clone());

    for i in 0..MESSAGES {
        assert_eq!(
            next_text(&mut fast).await,
            message(i),
            "message {i} in order"
        );
        window.add_permits(1);
    }
    let _fast_upstream = within("the origin to finish", origin_task).await.unwrap();
    within(
        "the slow client's upstream to be cancelled",
        slow_upstream_ended,
    )
    .await
    .unwrap();

    let frames = slow.read_to_end().await;
    let data = frames.iter().filter(|f| f.opcode() == 0x1).count();
    assert!(data < MESSAGES, "the slow client was cut, not buffered for");
    let closes: Vec<_> = frames.iter().filter(|f| f.opcode() == 0x8).collect();
    match closes.as_slice() {
        [] => {}
        [close] => {
            assert_eq!(close.close_code(), Some(1013));
            assert_eq!(
                frames.last().map(RawFrame::opcode),
                Some(0x8),
                "nothing after the close"
            );
        }
        many => panic!("several close frames: {many:?}"),
    }
}

#[tokio::test]
async fn slow_sse_client_of_a_websocket_origin_is_cut_while_a_fast_one_gets_every_event() {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: /ticker\n    upstream: {}\n    client_buffer: 64KiB\n    heartbeat: 0\n",
        origin.url("/ws")
    )))
    .await;
    let mut slow = RawClient::connect_with(proxy.addr(), small_receive_buffer).await;
    slow.get("/ticker", &[]).await;
    let (_, slow_upstream) = origin.accept().await;
    let (status, _) = slow.read_head().await;
    assert_eq!(status, 200);
    let (mut fast, status, _) = SseClient::get(proxy.addr(), "/ticker", &[]).await;
    assert_eq!(status, 200);
    let (_, fast_upstream) = origin.accept().await;
    fast.bridge("bridge").await;
    let window = Arc::new(Semaphore::new(WINDOW));
    let (slow_upstream_ended, origin_task) =
        broadcast(fast_upstream, slow_upstream, window.clone());

    for i in 0..MESSAGES {
        assert_eq!(
            fast.next_event().await.data,
            message(i),
            "event {i} in order"
        );
        window.add_permits(1);
    }
    let _fast_upstream = within("the origin to finish", origin_task).await.unwrap();
    within(
        "the slow client's upstream to be cancelled",
        slow_upstream_ended,
    )
    .await
    .unwrap();

    let body = slow.read_to_close().await;
    assert!(
        !slow.complete,
        "a cut SSE client's response is aborted, not ended cleanly"
    );
    assert!(
        body.matches("data: ").count() < MESSAGES,
        "the slow client was cut, not buffered for"
    );
}

#[tokio::test]
async fn slow_websocket_client_of_an_sse_origin_is_closed_while_a_fast_one_gets_every_event() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: /events\n    upstream: {}\n    client_buffer: 64KiB\n",
        origin.url("/stream")
    )))
    .await;
    let slow_url = proxy.addr();
    let slow_connecting = tokio::spawn(async move {
        RawWs::connect_with(slow_url, "/events", small_receive_buffer).await
    });
    let slow_stream = origin.next_request().await.respond_sse();
    let mut slow = within("the slow upgrade", slow_connecting).await.unwrap();
    let url = ws_url(&proxy, "/events");
    let fast_connecting = tokio::spawn(async move { ws_connect(&url, &[]).await.0 });
    let fast_stream = origin.next_request().await.respond_sse();
    let mut fast = within("the fast upgrade", fast_connecting).await.unwrap();

    let window = Arc::new(Semaphore::new(WINDOW));
    let origin_window = window.clone();
    let origin_task = tokio::spawn(async move {
        let mut slow_open = true;
        for i in 0..MESSAGES {
            origin_window.acquire().await.expect("window").forget();
            let event = format!("data: {}\n\n", message(i));
            fast_stream.send(event.clone()).await;
            if slow_open {
                slow_open = slow_stream.try_send(event).await;
            }
        }
        slow_stream
    });
    for i in 0..MESSAGES {
        assert_eq!(
            next_text(&mut fast).await,
            message(i),
            "message {i} in order"
        );
        window.add_permits(1);
    }
    let slow_stream = within("the origin to finish", origin_task).await.unwrap();
    within(
        "the slow client's upstream request to be cancelled",
        slow_stream.closed(),
    )
    .await;

    let frames = slow.read_to_end().await;
    let data = frames.iter().filter(|f| f.opcode() == 0x1).count();
    assert!(data < MESSAGES, "the slow client was cut, not buffered for");
    let codes: Vec<_> = frames.iter().filter_map(RawFrame::close_code).collect();
    assert!(
        codes.is_empty() || codes == [1013],
        "a cut client gets 1013 if anything: {codes:?}"
    );
}

/// A burst just over `client_buffer` (33 messages of 2 KiB; `client_buffer` 64 KiB) that a
/// reading client's empty socket buffers can take at once.
const BURST: usize = 33;

fn burst_message(i: usize) -> String {
    format!("{i:04}{}", "x".repeat(2044))
}

async fn send_burst(upstream: &mut WebSocketStream<TcpStream>) {
    for i in 0..BURST {
        within(
            "the burst",
            upstream.feed(WsMessage::text(burst_message(i))),
        )
        .await
        .expect("feed");
    }
    within("the burst", upstream.flush()).await.expect("flush");
}

#[tokio::test]
async fn upstream_burst_a_reading_websocket_client_can_take_does_not_cut_it() {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: /chat\n    upstream: {}\n    client_buffer: 64KiB\n",
        origin.url("/chat")
    )))
    .await;
    let (mut client, _) = ws_connect(&ws_url(&proxy, "/chat"), &[]).await;
    let (_, mut upstream) = origin.accept().await;
    send_burst(&mut upstream).await;
    for i in 0..BURST {
        assert_eq!(next_text(&mut client).await, burst_message(i));
    }
}

#[tokio::test]
async fn upstream_burst_a_reading_sse_client_can_take_does_not_cut_it() {
    let mut origin = WsOrigin::start().await;
    let proxy = Proxy::start(&config_with_routes(&format!(
        "  - path: /ticker\n    upstream: {}\n    client_buffer: 64KiB\n",
        origin.url("/ws")
    )))
    .await;
    let (mut client, _, _) = SseClient::get(proxy.addr(), "/ticker", &[]).await;
    let (_, mut upstream) = origin.accept().await;
    client.bridge("bridge").await;
    send_burst(&mut upstream).await;
    for i in 0..BURST {
        assert_eq!(client.next_event().await.data, burst_message(i));
    }
}
