//! Real origins nobody on the project wrote (../shared/examples): the Go net/http and Gin SSE
//! servers, built with Debian's Go and started on free ports, behind the proxy. Their events
//! must arrive whole and with repaired headers, and a departed client must reach them.
//!
//! Their own heartbeats come every 30 s: nothing here waits for them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use common::*;
use tokio::process::{Child, ChildStderr, Command};

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/examples");

/// Builds one example with Debian's Go and packaged libraries (no module download) into a
/// temporary directory: the examples folder is read-only.
fn build(name: &str) -> PathBuf {
    let out = temp_dir("go").join(format!("example-{name}"));
    let source = Path::new(EXAMPLES).join(name);
    go_build(&source, &out).unwrap_or_else(|e| panic!("{name}: {e} (run .ci/setup)"));
    out
}

fn nethttp_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build("nethttp"))
}

fn gin_binary() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build("gin"))
}

/// A running example origin; killed when dropped.
struct GoOrigin {
    _child: Child,
    addr: std::net::SocketAddr,
    log: Output<ChildStderr>,
}

impl GoOrigin {
    /// Starts `binary` on a free port and waits until it accepts connections.
    async fn start(binary: &Path) -> GoOrigin {
        let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port())
            .parse()
            .expect("address");
        let mut child = Command::new(binary)
            .env("ADDR", addr.to_string())
            .env("GIN_MODE", "release")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start the example origin");
        let log = Output::new(child.stderr.take().expect("stderr"));
        // The examples print before they listen, so the only sign of readiness is a connection
        // that succeeds: retry until one does.
        within("the example origin to accept connections", async {
            while tokio::net::TcpStream::connect(addr).await.is_err() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        GoOrigin {
            _child: child,
            addr,
            log,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn proxy_for(origin: &GoOrigin) -> Proxy {
    Proxy::start(&config_with_routes(&format!(
        "  - path: /go\n    upstream: {}\n    heartbeat: 0\n",
        origin.url("/api")
    )))
    .await
}

#[tokio::test]
async fn nethttp_message_events_arrive_with_repaired_headers() {
    let origin = GoOrigin::start(nethttp_binary()).await;
    let proxy = proxy_for(&origin).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .get("/go/events", &[("Accept", "text/event-stream")])
        .await;
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/event-stream"));
    assert_eq!(
        header(&headers, "cache-control"),
        Some("no-cache, no-transform")
    );
    assert_eq!(header(&headers, "x-accel-buffering"), Some("no"));
    // The origin sets `Connection: keep-alive` itself: a hop-by-hop header, never forwarded.
    assert_eq!(header(&headers, "connection"), None);
    assert_eq!(header(&headers, "content-length"), None);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    // Its opening comment is multi-byte UTF-8; bytes pass untouched.
    assert_eq!(client.read_until("\n\n").await, ": 连接已建立\n\n");
    let event = client.read_until("\n\n").await;
    assert!(
        event.starts_with("data: {\"timestamp\":") && event.ends_with("}\n\n"),
        "{event:?}"
    );
    let json: serde_json::Value = serde_json::from_str(
        event
            .strip_prefix("data: ")
            .expect("a data field")
            .trim_end(),
    )
    .expect("the event's data is JSON");
    assert_eq!(json["message"], "Hello from Go server");
}

#[tokio::test]
async fn nethttp_custom_progress_events_arrive_with_their_ids() {
    let origin = GoOrigin::start(nethttp_binary()).await;
    let proxy = proxy_for(&origin).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/go/custom-events", &[]).await;
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "connection"), None);
    assert_eq!(
        client.read_until("\n\n").await,
        ": Custom event stream started\n\n"
    );
    let event = client.read_until("\n\n").await;
    let lines: Vec<&str> = event.trim_end().split('\n').collect();
    assert_eq!(lines.len(), 3, "{event:?}");
    assert_eq!(lines[0], "event: progress");
    let id = lines[1].strip_prefix("id: ").expect("an id field");
    assert!(id.parse::<u64>().is_ok(), "{event:?}");
    let json: serde_json::Value =
        serde_json::from_str(lines[2].strip_prefix("data: ").expect("a data field"))
            .expect("the event's data is JSON");
    assert_eq!(json["type"], "progress");
    assert_eq!(json["status"], "processing");
}

#[tokio::test]
async fn nethttp_origin_sees_its_client_go_away_when_the_proxy_client_does() {
    let mut origin = GoOrigin::start(nethttp_binary()).await;
    let proxy = proxy_for(&origin).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/go/custom-events", &[]).await;
    client.read_head().await;
    client.read_until(": Custom event stream started\n\n").await;
    drop(client);
    // The handler logs this when its request context ends: the proxy cancelled the upstream.
    origin
        .log
        .read_until("Client disconnected from custom events")
        .await;
}

#[tokio::test]
async fn gin_stream_opening_comment_and_progress_events_arrive() {
    let origin = GoOrigin::start(gin_binary()).await;
    let proxy = proxy_for(&origin).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .get("/go/stream", &[("Accept", "text/event-stream")])
        .await;
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "cache-control"),
        Some("no-cache, no-transform")
    );
    assert_eq!(header(&headers, "x-accel-buffering"), Some("no"));
    assert_eq!(header(&headers, "connection"), None);
    assert_eq!(
        client.read_until("\n\n").await,
        ": Gin SSE connection established\n\n"
    );
    // Its first `: heartbeat` comment is written at once, from another goroutine; the first
    // progress event comes two seconds later.
    let upto_event = client.read_until("event: progress\n").await;
    assert!(
        upto_event.split("\n\n").all(|block| block.is_empty()
            || block.starts_with(": heartbeat ")
            || block == "event: progress\n"),
        "only heartbeat comments before the event: {upto_event:?}"
    );
    let data = client.read_until("\n\n").await;
    let json: serde_json::Value = serde_json::from_str(
        data.strip_prefix("data: ")
            .expect("a data line right after the event line")
            .trim_end(),
    )
    .expect("the event's data is JSON");
    assert_eq!(json["percent"], 10);
    assert_eq!(json["message"], "Progress update");
}
