//! Clients that share no code with the proxy (issue 2, "How it is shown to work"): `curl -N`
//! and a Python SSE client written here with the standard library only, parsing the stream by
//! the WHATWG rules and reconnecting with `Last-Event-ID` like `EventSource`.

mod common;

use std::process::Stdio;

use common::*;
use tokio::process::{Child, ChildStdout, Command};

fn route(origin: &Origin) -> String {
    config_with_routes(&format!(
        "  - path: /events\n    upstream: {}\n    heartbeat: 0\n",
        origin.url("/stream")
    ))
}

#[tokio::test]
async fn curl_receives_each_event_while_the_origin_holds_the_stream_open() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin)).await;
    let mut curl = Command::new("curl")
        .args([
            "-N",
            "-s",
            "-S",
            "-i",
            "--max-time",
            "20",
            &proxy.url("/events"),
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start curl");
    let mut out = Output::new(curl.stdout.take().expect("curl stdout"));
    let events = origin.next_request().await.respond_sse();
    events.send("id: 1\ndata: first\n\n").await;
    // curl writes the head it shows with -i together with the first body bytes.
    let head = out.read_until("\r\n\r\n").await.to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(
        head.contains("cache-control: no-cache, no-transform\r\n"),
        "{head}"
    );
    assert!(head.contains("x-accel-buffering: no\r\n"), "{head}");
    assert_eq!(
        out.read_until("data: first\n\n").await,
        "id: 1\ndata: first\n\n"
    );
    events.send("id: 2\ndata: second\n\n").await;
    assert_eq!(
        out.read_until("data: second\n\n").await,
        "id: 2\ndata: second\n\n"
    );
    assert!(events.is_open(), "the origin still holds the stream open");
}

/// An SSE client in Python's standard library: WHATWG line splitting (CRLF, LF, CR), fields,
/// comments, a leading BOM, the last event ID; one JSON line per response head, dispatched
/// event and stream end; reconnects (up to argv[4] times) with `Last-Event-ID`.
const PYTHON_CLIENT: &str = r#"
import http.client, json, sys, time

host, port, path, reconnects = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
last_id = ""
delay = 0.0

def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()

for attempt in range(reconnects + 1):
    if attempt:
        time.sleep(delay)
    conn = http.client.HTTPConnection(host, port, timeout=20)
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if last_id:
        headers["Last-Event-ID"] = last_id
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    emit({"status": resp.status, "content_type": resp.getheader("Content-Type")})
    buf = b""
    first_line = True
    data, event_type = [], ""

    def field(line):
        global last_id, delay, data, event_type, first_line
        if first_line:
            first_line = False
            if line.startswith("\ufeff"):
                line = line[1:]
        if line == "":
            if data:
                emit({"type": event_type or "message", "data": "\n".join(data), "id": last_id})
            data, event_type = [], ""
            return
        if line.startswith(":"):
            return
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            event_type = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            last_id = value
        elif name == "retry" and value.isdigit():
            delay = int(value) / 1000.0

    while True:
        try:
            chunk = resp.read1(65536)
        except http.client.IncompleteRead:
            chunk = b""
        if not chunk:
            break
        buf += chunk
        while True:
            cr, lf = buf.find(b"\r"), buf.find(b"\n")
            ends = [i for i in (cr, lf) if i >= 0]
            if not ends:
                break
            end = min(ends)
            if buf[end:end + 1] == b"\r":
                if end + 1 == len(buf):
                    break  # a CR at the end of the buffer may be the first half of a CRLF
                size = 2 if buf[end + 1:end + 2] == b"\n" else 1
            else:
                size = 1
            line, buf = buf[:end], buf[end + size:]
            field(line.decode("utf-8", "replace"))
    emit({"end": True})
    conn.close()
"#;

struct PythonClient {
    _child: Child,
    out: Output<ChildStdout>,
}

impl PythonClient {
    fn start(proxy: &Proxy, path: &str, reconnects: u32) -> PythonClient {
        let mut child = Command::new("python3")
            .args([
                "-c",
                PYTHON_CLIENT,
                "127.0.0.1",
                &proxy.addr().port().to_string(),
                path,
                &reconnects.to_string(),
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start python3");
        let out = Output::new(child.stdout.take().expect("python stdout"));
        PythonClient { _child: child, out }
    }

    /// The next JSON line the client printed.
    async fn next(&mut self) -> serde_json::Value {
        let line = self.out.read_until("\n").await;
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}"))
    }
}

#[tokio::test]
async fn python_client_gets_the_events_and_reconnects_with_last_event_id() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin)).await;
    let mut python = PythonClient::start(&proxy, "/events", 1);

    let first = origin.next_request().await;
    assert_eq!(first.header("last-event-id"), None);
    let events = first.respond_sse();
    let head = python.next().await;
    assert_eq!(head["status"], 200);
    assert_eq!(head["content_type"], "text/event-stream");
    // CRLF line ends, split in the middle of a field and between CR and LF.
    events.send("id: 7\r\nevent: ti").await;
    events.send("ck\r\ndata: a\r\ndata: b\r").await;
    events.send("\n\r\n").await;
    assert_eq!(
        python.next().await,
        serde_json::json!({"type": "tick", "data": "a\nb", "id": "7"})
    );
    // A clean end in the middle of an event: the client discards the partial event.
    events.send(": a comment\n\ndata: never dispatched").await;
    events.finish();
    assert_eq!(python.next().await, serde_json::json!({"end": true}));

    let second = origin.next_request().await;
    assert_eq!(second.header("last-event-id").as_deref(), Some("7"));
    let events = second.respond_sse();
    assert_eq!(python.next().await["status"], 200);
    events.send("data: after reconnect\n\n").await;
    assert_eq!(
        python.next().await,
        serde_json::json!({"type": "message", "data": "after reconnect", "id": "7"})
    );
}

#[tokio::test]
async fn python_client_resumes_through_the_last_event_id_query_fallback() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin)).await;
    // EventSource cannot set headers on its first request: the id comes in the query.
    let mut python = PythonClient::start(&proxy, "/events?last_event_id=41&topic=x", 0);
    let request = origin.next_request().await;
    assert_eq!(request.header("last-event-id").as_deref(), Some("41"));
    assert_eq!(request.uri.query(), Some("topic=x"));
    let events = request.respond_sse();
    assert_eq!(python.next().await["status"], 200);
    events.send("id: 42\ndata: next\n\n").await;
    assert_eq!(
        python.next().await,
        serde_json::json!({"type": "message", "data": "next", "id": "42"})
    );
}
