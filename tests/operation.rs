//! Operation (SPEC 8, SPEC 10 limits and metrics): the admin endpoints, connection limits,
//! header and send timeouts, and the graceful drain that ends streams at an event boundary
//! with a `retry:` field.

mod common;

use bytes::Bytes;
use common::*;

/// One `/events` route in front of `origin`, an admin listener, and extra top-level YAML.
fn config(origin: &Origin, route_extra: &str, top: &str) -> String {
    format!(
        "listeners:\n  - bind: 127.0.0.1:0\nadmin:\n  bind: 127.0.0.1:0\n{top}\
         routes:\n  - path: /events\n    upstream: {}\n{route_extra}",
        origin.url("/stream")
    )
}

/// A client with an open event stream (the origin's side returned with it).
async fn open_stream(proxy: &Proxy, origin: &mut Origin) -> (RawClient, OriginStream) {
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/events", &[]).await;
    let stream = origin.next_request().await.respond_sse();
    assert_eq!(client.read_head().await.0, 200);
    (client, stream)
}

async fn metrics_text(proxy: &Proxy) -> String {
    let (status, body) = admin_get(proxy.admin.expect("an admin listener"), "/metrics").await;
    assert_eq!(status, 200);
    body
}

#[tokio::test]
async fn healthz_and_readyz_answer_200_while_serving() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "", "")).await;
    let admin = proxy.admin.expect("admin");
    assert_eq!(admin_get(admin, "/healthz").await.0, 200);
    assert_eq!(admin_get(admin, "/readyz").await.0, 200);
}

#[tokio::test]
async fn readyz_answers_503_while_draining() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "    heartbeat: 0\n", "")).await;
    let admin = proxy.admin.expect("admin");
    // A stream in the middle of an event keeps the drain going.
    let (mut client, stream) = open_stream(&proxy, &mut origin).await;
    stream.send("data: hal").await;
    client.read_until("data: hal").await;
    proxy.begin_shutdown();
    assert_eq!(admin_get(admin, "/readyz").await.0, 503);
    assert_eq!(admin_get(admin, "/healthz").await.0, 200);
    stream.send("f\n\n").await;
    client.read_until("retry: ").await;
}

#[tokio::test]
async fn metrics_show_open_streams_and_count_events_and_heartbeats() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "    heartbeat: 50ms\n", "")).await;
    let (mut client, stream) = open_stream(&proxy, &mut origin).await;
    stream.send("data: one\n\nid: 2\ndata: two\n\n").await;
    client.read_until("data: two\n\n").await;
    client.read_until(":\n\n").await;

    let metrics = metrics_text(&proxy).await;
    let open = "ssebridge_streams_open{route=\"/events\",kind=\"sse\"}";
    assert_eq!(sample_value(&metrics, open), Some(1), "{metrics}");
    assert_eq!(
        sample_value(
            &metrics,
            "ssebridge_streams_total{route=\"/events\",kind=\"sse\"}"
        ),
        Some(1)
    );
    assert_eq!(
        sample_value(
            &metrics,
            "ssebridge_events_total{route=\"/events\",direction=\"downstream\"}"
        ),
        Some(2),
        "{metrics}"
    );
    let heartbeats = sample_value(&metrics, "ssebridge_heartbeats_total{route=\"/events\"}");
    assert!(heartbeats >= Some(1), "heartbeats: {heartbeats:?}");
    assert_eq!(
        sample_value(&metrics, "ssebridge_connections_open"),
        Some(1)
    );

    drop(client);
    within("the origin to see its stream dropped", stream.closed()).await;
    let metrics = metrics_text(&proxy).await;
    assert_eq!(sample_value(&metrics, open), Some(0), "{metrics}");
    assert_eq!(
        sample_value(
            &metrics,
            "ssebridge_closes_total{route=\"/events\",reason=\"client_gone\"}"
        ),
        Some(1),
        "{metrics}"
    );
}

#[tokio::test]
async fn connection_over_max_connections_gets_503() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "", "limits:\n  max_connections: 1\n")).await;
    let (_first, _stream) = open_stream(&proxy, &mut origin).await;
    let mut extra = RawClient::connect(proxy.addr()).await;
    extra.get("/events", &[]).await;
    let (status, headers) = extra.read_head().await;
    assert_eq!(status, 503);
    assert!(header(&headers, "retry-after").is_some());
    let metrics = metrics_text(&proxy).await;
    assert_eq!(
        sample_value(
            &metrics,
            "ssebridge_limit_rejections_total{limit=\"max_connections\"}"
        ),
        Some(1),
        "{metrics}"
    );
}

#[tokio::test]
async fn connection_over_max_connections_per_ip_gets_429_and_other_ips_are_served() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(
        &origin,
        "",
        "limits:\n  max_connections_per_ip: 1\n",
    ))
    .await;
    let (_first, _stream) = open_stream(&proxy, &mut origin).await;
    let mut same_ip = RawClient::connect(proxy.addr()).await;
    same_ip.get("/events", &[]).await;
    assert_eq!(same_ip.read_head().await.0, 429);

    let other_ip: std::net::IpAddr = "127.0.0.2".parse().expect("address");
    let mut other = RawClient::connect_from(other_ip, proxy.addr()).await;
    other.get("/events", &[]).await;
    let request = origin.next_request().await;
    assert_eq!(
        request.header("x-forwarded-for").as_deref(),
        Some("127.0.0.2")
    );
    let _other_stream = request.respond_sse();
    assert_eq!(other.read_head().await.0, 200);
}

#[tokio::test]
async fn header_timeout_closes_a_connection_that_sends_nothing() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "", "limits:\n  header_timeout: 300ms\n")).await;
    let mut idle = RawClient::connect(proxy.addr()).await;
    // No request at all: the proxy closes the connection (with or without a 408 first).
    let answer = idle.read_to_close().await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
}

#[tokio::test]
async fn header_timeout_closes_a_connection_whose_head_never_completes() {
    let origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "", "limits:\n  header_timeout: 300ms\n")).await;
    let mut slow = RawClient::connect(proxy.addr()).await;
    slow.send("GET /events HTTP/1.1\r\nHost: proxy.test\r\nX-Slow: 1\r\n")
        .await;
    let answer = slow.read_to_close().await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer:?}"
    );
}

/// Two requests on one keep-alive connection, each answered `204`.
async fn two_requests_answered(proxy: &Proxy, origin: &mut Origin) -> RawClient {
    let mut client = RawClient::connect(proxy.addr()).await;
    for _ in 0..2 {
        client.get("/events", &[]).await;
        drop(origin.next_request().await.respond(204, &[]));
        assert_eq!(client.read_head().await.0, 204);
    }
    client
}

#[tokio::test]
async fn keepalive_timeout_closes_a_connection_idle_after_its_requests() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(
        &origin,
        "",
        "limits:\n  keepalive_timeout: 300ms\n",
    ))
    .await;
    let mut client = two_requests_answered(&proxy, &mut origin).await;
    assert_eq!(client.read_to_close().await, "");
}

#[tokio::test]
async fn drain_closes_an_idle_keep_alive_connection_at_once() {
    let mut origin = Origin::start().await;
    // Neither timeout could close it within the test's wait: only the drain can.
    let proxy = Proxy::start(&config(
        &origin,
        "",
        "drain_timeout: 60s\nlimits:\n  keepalive_timeout: 60s\n",
    ))
    .await;
    let mut client = two_requests_answered(&proxy, &mut origin).await;
    proxy.begin_shutdown();
    assert_eq!(client.read_to_close().await, "");
}

#[tokio::test]
async fn header_timeout_does_not_end_a_stream_that_outlives_it() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(
        &origin,
        "    heartbeat: 100ms\n",
        "limits:\n  header_timeout: 300ms\n",
    ))
    .await;
    let (mut client, stream) = open_stream(&proxy, &mut origin).await;
    // Five heartbeats: the stream has lived past the header timeout.
    for _ in 0..5 {
        client.read_until(":\n\n").await;
    }
    stream.send("data: still here\n\n").await;
    client.read_until("data: still here\n\n").await;
}

#[tokio::test]
async fn send_timeout_cuts_a_client_that_stops_reading_and_cancels_its_upstream() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(
        &origin,
        "    heartbeat: 0\n",
        "limits:\n  send_timeout: 200ms\n",
    ))
    .await;
    // A small receive buffer fills quickly; the client then never reads again.
    let mut stuck = RawClient::connect_with_recv_buffer(proxy.addr(), 4096).await;
    stuck.get("/events", &[]).await;
    let stream = origin.next_request().await.respond_sse();
    assert_eq!(stuck.read_head().await.0, 200);
    let event = Bytes::from(format!("data: {}\n\n", "x".repeat(64 * 1024)));
    // The origin keeps sending until the proxy drops the stream of the cut client.
    let sent = stream.send_until_closed(event).await;
    assert!(sent > 0);
    let metrics = metrics_text(&proxy).await;
    assert_eq!(
        sample_value(
            &metrics,
            "ssebridge_closes_total{route=\"/events\",reason=\"send_timeout\"}"
        ),
        Some(1),
        "{metrics}"
    );
    // Nobody else is held up: a new client gets its stream at once.
    let (mut other, other_stream) = open_stream(&proxy, &mut origin).await;
    other_stream.send("data: unaffected\n\n").await;
    other.read_until("data: unaffected\n\n").await;
    drop(stuck);
}

#[tokio::test]
async fn shutdown_sends_retry_then_a_clean_end_and_drops_the_origin_stream() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "    heartbeat: 0\n    retry: 2s\n", "")).await;
    let (mut client, stream) = open_stream(&proxy, &mut origin).await;
    client.read_until("retry: 2000\n\n").await;
    stream.send("data: before\n\n").await;
    client.read_until("data: before\n\n").await;

    proxy.begin_shutdown();
    assert_eq!(client.read_until("retry: ").await, "retry: ");
    let value = client.read_until("\n\n").await;
    let retry: u64 = value.trim_end().parse().expect("a retry value in ms");
    // The route's retry plus jitter of up to max(retry, 5 s), so reconnects spread out.
    assert!((2000..7000).contains(&retry), "retry {retry}");
    assert_eq!(client.read_to_end_of_response().await, "");
    assert!(client.complete, "the response ends with its last chunk");
    within("the origin to see its stream dropped", stream.closed()).await;
    proxy.stop().await;
}

#[tokio::test]
async fn shutdown_lets_an_event_in_progress_finish_before_the_retry() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&config(&origin, "    heartbeat: 0\n", "")).await;
    let (mut midway, midway_stream) = open_stream(&proxy, &mut origin).await;
    let (mut idle, _idle_stream) = open_stream(&proxy, &mut origin).await;
    midway_stream.send("data: par").await;
    midway.read_until("data: par").await;

    proxy.begin_shutdown();
    // The stream at a boundary ends at once: the drain has started.
    idle.read_until("retry: ").await;
    idle.read_to_end_of_response().await;
    assert!(
        midway_stream.is_open(),
        "a stream inside an event is not ended"
    );
    midway_stream.send("tial\n\n").await;
    assert_eq!(midway.read_until("\n\n").await, "tial\n\n");
    assert_eq!(midway.read_until("retry: ").await, "retry: ");
    midway.read_until("\n\n").await;
    assert_eq!(midway.read_to_end_of_response().await, "");
    within(
        "the origin to see its stream dropped",
        midway_stream.closed(),
    )
    .await;
    proxy.stop().await;
}

/// Waits until nothing listens on `addr` any more (a connection is refused).
async fn until_refused(addr: std::net::SocketAddr) {
    within("the port to close", async {
        loop {
            match tokio::net::TcpStream::connect(addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return,
                _ => tokio::task::yield_now().await,
            }
        }
    })
    .await;
}

#[tokio::test]
async fn a_dropped_proxy_stops_listening() {
    let origin = Origin::start().await;
    let config = ssebridge::config::parse(&config(&origin, "", ""), "test.yaml").expect("config");
    let running = ssebridge::serve(&config, tokio_util::sync::CancellationToken::new())
        .await
        .expect("proxy starts");
    let addr = running.local_addrs()[0];
    drop(running);
    until_refused(addr).await;
}

#[tokio::test]
async fn a_proxy_that_fails_to_start_leaves_no_listener_behind() {
    let origin = Origin::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("address");
    let first = free_port();
    let yaml = format!(
        "listeners:\n  - bind: 127.0.0.1:{first}\n  - bind: {taken_addr}\n\
         routes:\n  - path: /events\n    upstream: {}\n",
        origin.url("/stream")
    );
    let config = ssebridge::config::parse(&yaml, "test.yaml").expect("config");
    let failed = ssebridge::serve(&config, tokio_util::sync::CancellationToken::new()).await;
    assert!(failed.is_err(), "the second listener cannot bind");
    until_refused(format!("127.0.0.1:{first}").parse().expect("address")).await;
}
