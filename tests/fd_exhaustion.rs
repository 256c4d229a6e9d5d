//! Out of file descriptors (SPEC 10): the accept loop logs, backs off and keeps accepting; open
//! streams are untouched. The real binary runs under a tiny RLIMIT_NOFILE set with `prlimit`.

mod common;

use std::process::Stdio;

use common::*;
use tokio::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_ssebridge");

fn set_nofile(pid: u32, limit: usize) {
    let output = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--nofile={limit}:")])
        .output()
        .expect("run prlimit (util-linux)");
    assert!(
        output.status.success(),
        "prlimit failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list fds")
        .count()
}

#[tokio::test]
async fn accept_survives_running_out_of_descriptors_and_open_streams_keep_flowing() {
    let mut origin = Origin::start().await;
    let addr = format!("127.0.0.1:{}", free_port());
    let file = temp_dir("emfile").join("proxy.yaml");
    let yaml = format!(
        "listeners:\n  - bind: {addr}\nroutes:\n  - path: /events\n    upstream: {}\n    heartbeat: 0\n",
        origin.url("/stream")
    );
    std::fs::write(&file, yaml).expect("write config");
    let mut child = Command::new(BINARY)
        .args(["--config", file.to_str().expect("path")])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary");
    let pid = child.id().expect("pid");
    let mut log = Output::new(child.stderr.take().expect("stderr"));
    log.read_until(&addr).await;
    let proxy: std::net::SocketAddr = addr.parse().expect("addr");

    let mut stream_client = RawClient::connect(proxy).await;
    stream_client.get("/events", &[]).await;
    let stream = origin.next_request().await.respond_sse();
    stream_client.read_head().await;

    // Room for two more descriptors only, then a crowd of connections.
    set_nofile(pid, open_fds(pid) + 2);
    let mut crowd = Vec::new();
    for _ in 0..16 {
        crowd.push(
            tokio::net::TcpStream::connect(proxy)
                .await
                .expect("connect"),
        );
    }
    log.read_until("accept failed; backing off").await;

    // The open stream is untouched.
    stream.send("data: still flowing\n\n").await;
    stream_client.read_until("data: still flowing\n\n").await;

    // Descriptors come back: the proxy serves new clients again.
    drop(crowd);
    set_nofile(pid, 1024);
    let mut fresh = RawClient::connect(proxy).await;
    fresh.get("/events", &[]).await;
    origin.next_request().await.respond_sse();
    assert_eq!(fresh.read_head().await.0, 200);
}
