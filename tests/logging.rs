//! Logs (SPEC 8): one line per stream end with route, kinds, duration, events, bytes and close
//! reason; `--log-format json` writes one JSON object per line.

mod common;

use std::process::Stdio;

use common::*;
use tokio::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_ssebridge");

#[tokio::test]
async fn json_log_has_one_line_per_stream_end_with_its_figures() {
    let mut origin = Origin::start().await;
    let addr = format!("127.0.0.1:{}", free_port());
    let file = temp_dir("json-log").join("proxy.yaml");
    let yaml = format!(
        "listeners:\n  - bind: {addr}\nroutes:\n  - path: /events\n    upstream: {}\n    heartbeat: 0\n",
        origin.url("/stream")
    );
    std::fs::write(&file, yaml).expect("write config");
    let mut child = Command::new(BINARY)
        .args([
            "--config",
            file.to_str().expect("path"),
            "--log-format",
            "json",
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary");
    let mut log = Output::new(child.stderr.take().expect("stderr"));
    log.read_until(&addr).await;
    log.read_until("\n").await;

    let mut client = RawClient::connect(addr.parse().expect("addr")).await;
    client.get("/events", &[]).await;
    let stream = origin.next_request().await.respond_sse();
    client.read_head().await;
    stream.send("data: one\n\ndata: two\n\n").await;
    client.read_until("data: two\n\n").await;
    stream.finish();
    client.read_to_end_of_response().await;

    let entry: serde_json::Value = loop {
        let line = log.read_until("\n").await;
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
