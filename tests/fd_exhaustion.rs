//! Out of file descriptors (SPEC 10): the accept loop logs, backs off and keeps accepting; open
//! streams are untouched. The real binary runs under a tiny RLIMIT_NOFILE set with `prlimit`.

mod common;

use common::*;

/// Sets the soft limit only: lowering the hard limit could not be undone without privileges.
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
    let routes = format!(
        "  - path: /events\n    upstream: {}\n    heartbeat: 0\n",
        origin.url("/stream")
    );
    let mut proxy = Binary::start("emfile", &routes, &[]).await;

    let mut stream_client = RawClient::connect(proxy.addr).await;
    stream_client.get("/events", &[]).await;
    let stream = origin.next_request().await.respond_sse();
    stream_client.read_head().await;

    // Room for two more descriptors only, then a crowd of connections.
    set_nofile(proxy.pid, open_fds(proxy.pid) + 2);
    let mut crowd = Vec::new();
    for _ in 0..16 {
        crowd.push(
            tokio::net::TcpStream::connect(proxy.addr)
                .await
                .expect("connect"),
        );
    }
    proxy.log.read_until("accept failed; backing off").await;

    // The open stream is untouched.
    stream.send("data: still flowing\n\n").await;
    stream_client.read_until("data: still flowing\n\n").await;

    // Descriptors come back: the proxy serves new clients again.
    drop(crowd);
    set_nofile(proxy.pid, 1024);
    let mut fresh = RawClient::connect(proxy.addr).await;
    fresh.get("/events", &[]).await;
    origin.next_request().await.respond_sse();
    assert_eq!(fresh.read_head().await.0, 200);
}
