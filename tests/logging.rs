//! Logs (SPEC 8): one line per stream end with route, kinds, duration, events, bytes and close
//! reason; `--log-format json` writes one JSON object per line.

mod common;

use common::*;

#[tokio::test]
async fn json_log_has_one_line_per_stream_end_with_its_figures() {
    let mut origin = Origin::start().await;
    let routes = format!(
        "  - path: /events\n    upstream: {}\n    heartbeat: 0\n",
        origin.url("/stream")
    );
    let mut proxy = Binary::start("json-log", &routes, &["--log-format", "json"]).await;

    let mut client = RawClient::connect(proxy.addr).await;
    client.get("/events", &[]).await;
    let stream = origin.next_request().await.respond_sse();
    client.read_head().await;
    stream.send("data: one\n\ndata: two\n\n").await;
    client.read_until("data: two\n\n").await;
    stream.finish();
    client.read_to_end_of_response().await;

    let entry: serde_json::Value = loop {
        let line = proxy.log.read_until("\n").await;
        let entry: serde_json::Value =
            serde_json::from_str(line.trim()).expect("every line is JSON");
        if entry["message"] == "stream ended" {
            break entry;
        }
    };
    assert_eq!(entry["route"], "/events");
    assert_eq!(entry["kind"], "sse");
    assert_eq!(entry["reason"], "upstream_end");
    assert_eq!(entry["events"], 2);
    assert_eq!(entry["bytes"], 22);
    assert!(entry["duration_ms"].is_u64());
}

#[tokio::test]
async fn an_origin_that_ignores_the_close_is_dropped_with_a_warning() {
    let (url, origin) = raw_origin(switching, Vec::new()).await;
    let routes = format!("  - path: /ws\n    upstream: {url}\n");
    let mut proxy = Binary::start("ignored-close", &routes, &["--log-format", "json"]).await;
    let (client, _) = ws_connect(&format!("ws://{}/ws", proxy.addr), &[]).await;
    let mut origin = within("the origin's handshake", origin).await.unwrap();
    drop(client);
    assert_eq!(
        read_client_frame(&mut origin).await.0,
        0x88,
        "the proxy's close"
    );
    within("the proxy to drop the origin", flood_until_dropped(origin)).await;
    let entry: serde_json::Value = loop {
        let line = proxy.log.read_until("\n").await;
        let entry: serde_json::Value =
            serde_json::from_str(line.trim()).expect("every line is JSON");
        if entry["level"] == "WARN" {
            break entry;
        }
    };
    assert_eq!(
        entry["message"],
        "upstream WebSocket kept sending after the close; dropped"
    );
    assert_eq!(entry["route"], "/ws");
    assert_eq!(entry["limit"], 1 << 20);
}
