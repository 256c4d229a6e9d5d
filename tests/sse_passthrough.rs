//! SSE passthrough (SPEC 3 and 10): unbuffered, repaired, heartbeats at event boundaries only,
//! Last-Event-ID carried, upstream cancelled with its client, failures answered.

mod common;

use common::*;

/// A client with an open `/events` stream, and the origin's end of it.
async fn open_stream(proxy: &Proxy, origin: &mut Origin) -> (RawClient, OriginStream) {
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/events", &[]).await;
    let stream = origin.next_request().await.respond_sse();
    client.read_head().await;
    (client, stream)
}

fn route(origin: &Origin, extra: &str) -> String {
    config_with_routes(&format!(
        "  - path: /events\n    upstream: {}\n{extra}",
        origin.url("/stream")
    ))
}

#[tokio::test]
async fn event_reaches_client_while_origin_keeps_stream_open() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .get("/events", &[("Accept", "text/event-stream")])
        .await;
    let stream = origin.next_request().await.respond_sse();
    let (status, _) = client.read_head().await;
    assert_eq!(status, 200);
    stream.send("data: first\n\n").await;
    client.read_until("data: first\n\n").await;
    stream.send("id: 2\ndata: second\n\n").await;
    client.read_until("id: 2\ndata: second\n\n").await;
    assert!(stream.is_open());
}

#[tokio::test]
async fn event_stream_headers_are_repaired() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/events", &[]).await;
    let _stream = origin.next_request().await.respond(
        200,
        &[
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "public, max-age=600"),
            ("content-length", "1000"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
        ],
    );
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "cache-control"),
        Some("no-cache, no-transform")
    );
    assert_eq!(header(&headers, "x-accel-buffering"), Some("no"));
    assert_eq!(header(&headers, "content-length"), None);
    assert_eq!(header(&headers, "x-hop"), None);
    assert_eq!(header(&headers, "keep-alive"), None);
    assert_eq!(header(&headers, "content-encoding"), None);
}

#[tokio::test]
async fn heartbeat_is_written_when_idle_and_never_inside_a_half_sent_event() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "    heartbeat: 100ms\n")).await;
    // A second stream on the same proxy is the clock: two heartbeats there prove that at least
    // two intervals passed while the first stream sat inside an event.
    let (mut watched, stream) = open_stream(&proxy, &mut origin).await;
    let (mut clock, _clock_stream) = open_stream(&proxy, &mut origin).await;

    // Idle at the start: a heartbeat comes.
    watched.read_until(":\n\n").await;
    stream.send("data: a\n").await;
    watched.read_until("data: a\n").await;
    clock.read_until(":\n\n").await;
    clock.read_until(":\n\n").await;
    clock.read_until(":\n\n").await;
    stream.send("\n").await;
    let rest = watched.read_until("\n").await;
    assert_eq!(rest, "\n", "nothing may come between the lines of an event");
    // After the event is complete, heartbeats resume.
    watched.read_until(":\n\n").await;
}

#[tokio::test]
async fn last_event_id_header_reaches_origin() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/events", &[("Last-Event-ID", "41")]).await;
    let request = origin.next_request().await;
    assert_eq!(request.header("last-event-id").as_deref(), Some("41"));
}

#[tokio::test]
async fn last_event_id_query_parameter_becomes_the_header_and_leaves_the_url() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .get("/events/sub?topic=a&last_event_id=caf%C3%A9%2042&x=1", &[])
        .await;
    let request = origin.next_request().await;
    assert_eq!(request.uri.path(), "/stream/sub");
    assert_eq!(request.uri.query(), Some("topic=a&x=1"));
    assert_eq!(request.header("last-event-id").as_deref(), Some("café 42"));
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_request() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "    heartbeat: 0\n")).await;
    let (mut client, stream) = open_stream(&proxy, &mut origin).await;
    stream.send("data: x\n\n").await;
    client.read_until("data: x\n\n").await;
    drop(client);
    within("the origin to see its response dropped", stream.closed()).await;
}

#[tokio::test]
async fn upstream_failure_mid_event_aborts_the_client_response() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let (mut client, stream) = open_stream(&proxy, &mut origin).await;
    stream.send("data: whole\n\ndata: half").await;
    client.read_until("data: half").await;
    stream.abort().await;
    client.read_to_close().await;
    assert!(
        !client.complete,
        "an aborted stream must not end with the last chunk"
    );
}

#[tokio::test]
async fn upstream_clean_end_ends_the_client_response_cleanly() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "")).await;
    let (mut client, stream) = open_stream(&proxy, &mut origin).await;
    stream.send("data: last\n\n").await;
    stream.finish();
    client.read_until("data: last\n\n").await;
    assert_eq!(client.read_to_end_of_response().await, "");
}

#[tokio::test]
async fn unreachable_upstream_gets_502_with_a_reason() {
    let unused = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = unused.local_addr().unwrap().port();
    drop(unused);
    let yaml = config_with_routes(&format!(
        "  - path: /events\n    upstream: http://127.0.0.1:{port}/\n"
    ));
    let proxy = Proxy::start(&yaml).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/events", &[]).await;
    let (status, _) = client.read_head().await;
    assert_eq!(status, 502);
    client.read_until("unreachable").await;
}

#[tokio::test]
async fn retry_field_opens_the_stream() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "    retry: 2500ms\n")).await;
    let (mut client, stream) = open_stream(&proxy, &mut origin).await;
    stream.send("data: a\n\n").await;
    let body = client.read_until("data: a\n\n").await;
    let retry = body.find("retry: 2500\n\n").expect("retry field");
    assert!(retry < body.find("data: a").unwrap());
}

#[tokio::test]
async fn heartbeat_padding_pads_the_comment_to_the_configured_size() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(
        &origin,
        "    heartbeat: 100ms\n    heartbeat_padding: 64\n",
    ))
    .await;
    let (mut client, _stream) = open_stream(&proxy, &mut origin).await;
    let heartbeat = client.read_until("\n\n").await;
    assert_eq!(heartbeat.len(), 64, "{heartbeat:?}");
    assert!(heartbeat.starts_with(':') && heartbeat[1..62].bytes().all(|b| b == b' '));
}

#[tokio::test]
async fn leading_bom_is_dropped_when_the_proxy_wrote_first() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "    retry: 1s\n    heartbeat: 0\n")).await;
    let (mut client, stream) = open_stream(&proxy, &mut origin).await;
    // The BOM arrives split across two chunks.
    stream.send(&b"\xEF\xBB"[..]).await;
    stream.send(&b"\xBFdata: a\n\n"[..]).await;
    assert_eq!(
        client.read_until("data: a\n\n").await,
        "retry: 1000\n\ndata: a\n\n"
    );
}

#[tokio::test]
async fn leading_bom_passes_untouched_when_the_upstream_writes_first() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "    heartbeat: 0\n")).await;
    let (mut client, stream) = open_stream(&proxy, &mut origin).await;
    stream.send(&b"\xEF\xBB\xBFdata: a\n\n"[..]).await;
    assert_eq!(
        client.read_until("data: a\n\n").await,
        "\u{feff}data: a\n\n"
    );
}

#[tokio::test]
async fn line_ends_stay_as_the_upstream_wrote_them_and_lone_cr_streams_get_no_heartbeat_mid_stream()
{
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin, "    heartbeat: 100ms\n")).await;
    let (mut watched, stream) = open_stream(&proxy, &mut origin).await;
    let (mut clock, _clock_stream) = open_stream(&proxy, &mut origin).await;
    watched.read_until(":\n\n").await;
    stream.send("data: a\r\rdata: b\r\n\r\n").await;
    watched.read_until("data: a\r\rdata: b\r\n\r\n").await;
    stream.send("data: c\r\r").await;
    watched.read_until("data: c\r\r").await;
    // Three heartbeats elsewhere: a CR may still be followed by LF, so none may come here.
    for _ in 0..3 {
        clock.read_until(":\n\n").await;
    }
    stream.send("data: d\n\n").await;
    assert_eq!(watched.read_until("data: d\n\n").await, "data: d\n\n");
}
