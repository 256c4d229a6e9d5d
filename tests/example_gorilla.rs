//! The Gorilla WebSocket example (../shared/examples/gorilla), a backend nobody on the project
//! wrote, behind the proxy. As written its handler ends with `defer ws.Close()` and drops every
//! connection right after the handshake: SPEC 10 "Close codes" says a WebSocket client then gets
//! `1011` and an SSE client's stream is aborted. With that one line removed it is the intended
//! hub: a welcome message, and an echo of what a client sends, through both passthrough and the
//! WebSocket -> SSE bridge.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;

use common::*;
use tokio::process::{Child, Command};

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/examples/gorilla");

struct Binaries {
    as_written: PathBuf,
    fixed: PathBuf,
}

/// Builds the example as written and a copy without `defer ws.Close()`, once per test run,
/// with Debian's Go and packaged Gorilla (no module download), into the test's temp dir.
fn binaries() -> &'static Binaries {
    static BUILT: OnceLock<Result<Binaries, String>> = OnceLock::new();
    BUILT
        .get_or_init(build)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn build() -> Result<Binaries, String> {
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("example-gorilla");
    let source = std::fs::read_to_string(Path::new(EXAMPLE).join("main.go"))
        .map_err(|e| format!("reading the example: {e}"))?;
    let line = "\tdefer ws.Close()\n";
    if source.matches(line).count() != 1 {
        return Err("the example no longer has exactly one `defer ws.Close()`".to_owned());
    }
    let as_written = build_variant(&out.join("as-written"), &source)?;
    let fixed = build_variant(&out.join("fixed"), &source.replacen(line, "", 1))?;
    Ok(Binaries { as_written, fixed })
}

/// Builds `source` as the `main.go` of `dir`.
fn build_variant(dir: &Path, source: &str) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("main.go"), source).map_err(|e| format!("writing main.go: {e}"))?;
    let binary = dir.join("gorilla");
    go_build(dir, &binary).map_err(|e| {
        format!("{e}\n(.ci/setup installs golang-go and golang-github-gorilla-websocket-dev)")
    })?;
    Ok(binary)
}

/// A running example server, killed when dropped.
struct Gorilla {
    addr: std::net::SocketAddr,
    _child: Child,
}

impl Gorilla {
    async fn start(binary: &Path) -> Gorilla {
        let addr: std::net::SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let child = Command::new(binary)
            .env("ADDR", addr.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the example");
        // The example says nothing once it listens: the only sign is a connect that succeeds.
        within("the example to listen", async {
            loop {
                if tokio::net::TcpStream::connect(addr).await.is_ok() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
        Gorilla {
            addr,
            _child: child,
        }
    }

    fn routes(&self) -> String {
        config_with_routes(&format!(
            "  - path: /ws\n    upstream: ws://{addr}/ws\n  - path: /feed\n    upstream: ws://{addr}/ws\n    heartbeat: 0\n",
            addr = self.addr
        ))
    }
}

/// The example's writer joins queued messages with LF into one message: its parts.
fn parts(text: &str) -> Vec<serde_json::Value> {
    text.split('\n')
        .map(|p| serde_json::from_str(p).unwrap_or(serde_json::Value::String(p.to_owned())))
        .collect()
}

fn is_welcome(v: &serde_json::Value) -> bool {
    v["type"] == "welcome" && v["server"] == "Go WebSocket Server"
}

#[tokio::test]
async fn as_written_it_drops_a_websocket_client_which_gets_1011() {
    let gorilla = Gorilla::start(&binaries().as_written).await;
    let proxy = Proxy::start(&gorilla.routes()).await;
    let (mut client, _) = ws_connect(&ws_url(&proxy, "/ws"), &[]).await;
    use futures_util::StreamExt;
    let close = within("the close", async {
        loop {
            match client.next().await {
                // The welcome may or may not be written before the example closes the socket.
                Some(Ok(WsMessage::Text(t))) => assert!(parts(&t).iter().all(is_welcome), "{t}"),
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                Some(Ok(WsMessage::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(close, Some(1011));
}

#[tokio::test]
async fn as_written_it_drops_an_sse_client_whose_stream_is_aborted() {
    let gorilla = Gorilla::start(&binaries().as_written).await;
    let proxy = Proxy::start(&gorilla.routes()).await;
    let (mut client, status, _) = SseClient::get(proxy.addr(), "/feed", &[]).await;
    assert_eq!(status, 200, "the handshake itself succeeds");
    client.bridge("bridge").await;
    client.raw.read_to_close().await;
    assert!(
        !client.raw.complete,
        "an upstream gone without a close frame aborts the stream (no last chunk)"
    );
}

#[tokio::test]
async fn fixed_it_welcomes_and_echoes_through_websocket_passthrough() {
    let gorilla = Gorilla::start(&binaries().fixed).await;
    let proxy = Proxy::start(&gorilla.routes()).await;
    let (mut client, _) = ws_connect(&ws_url(&proxy, "/ws"), &[]).await;
    let first = next_text(&mut client).await;
    assert!(is_welcome(&parts(&first)[0]), "first message {first:?}");
    ws_send(&mut client, WsMessage::text("hello gorilla")).await;
    within("the echo", async {
        // Skip the example's periodic broadcasts.
        while !parts(&next_text(&mut client).await).contains(&"hello gorilla".into()) {}
    })
    .await;
}

#[tokio::test]
async fn fixed_it_welcomes_and_echoes_through_the_sse_bridge_and_back_channel() {
    let gorilla = Gorilla::start(&binaries().fixed).await;
    let proxy = Proxy::start(&gorilla.routes()).await;
    let (mut client, status, _) = SseClient::get(proxy.addr(), "/feed", &[]).await;
    assert_eq!(status, 200);
    let (_, send) = client.bridge("bridge").await;
    let welcome = client.next_event().await;
    assert!(
        is_welcome(&parts(&welcome.data)[0]),
        "first event {welcome:?}"
    );
    let (status, _) = http_request(proxy.addr(), "POST", &send, &[], b"hello gorilla").await;
    assert_eq!(status, 204);
    within("the echo", async {
        while !parts(&client.next_event().await.data).contains(&"hello gorilla".into()) {}
    })
    .await;
}
