//! Reload on SIGHUP (SPEC 6): a valid new configuration takes effect without dropping open
//! streams; one that fails validation is refused, logged, and the running one stays.

mod common;

use common::*;

fn route(path: &str, origin: &Origin) -> String {
    format!(
        "  - path: {path}\n    upstream: {}\n    heartbeat: 0\n",
        origin.url("/stream")
    )
}

fn hangup(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[tokio::test]
async fn sighup_applies_a_new_configuration_without_dropping_open_streams_and_refuses_a_bad_one() {
    let mut origin = Origin::start().await;
    let mut proxy = Binary::start("reload", &route("/old", &origin), &[]).await;
    let (pid, proxy_addr, file) = (proxy.pid, proxy.addr, proxy.config.clone());
    let log = &mut proxy.log;

    // A stream opened before the reload.
    let mut open = RawClient::connect(proxy_addr).await;
    open.get("/old", &[]).await;
    let stream = origin.next_request().await.respond_sse();
    open.read_head().await;

    // A new route appears, the old one goes.
    std::fs::write(&file, Binary::config(proxy_addr, &route("/new", &origin)))
        .expect("rewrite config");
    hangup(pid);
    log.read_until("configuration reloaded").await;
    let mut fresh = RawClient::connect(proxy_addr).await;
    fresh.get("/new", &[]).await;
    origin.next_request().await.respond_sse();
    assert_eq!(fresh.read_head().await.0, 200);
    let mut gone = RawClient::connect(proxy_addr).await;
    gone.get("/old", &[]).await;
    assert_eq!(gone.read_head().await.0, 404);

    // The stream opened before the reload still flows.
    stream.send("data: still here\n\n").await;
    open.read_until("data: still here\n\n").await;

    // A broken file is refused with its problem; the running configuration stays.
    std::fs::write(&file, "listeners:\n  - bind: nowhere\nroutes: []\n").expect("break config");
    hangup(pid);
    log.read_until("reload refused").await;
    unchanged(proxy_addr, &mut origin, &mut open, &stream, "and still").await;

    // A valid file that sets `workers` (the proxy runs with `auto`) is refused too: that
    // needs a restart.
    let text = Binary::config(proxy_addr, &route("/other", &origin));
    std::fs::write(&file, format!("workers: 1\n{text}")).expect("rewrite config");
    hangup(pid);
    log.read_until("reload refused").await;
    log.read_until("cannot change `workers`").await;
    unchanged(proxy_addr, &mut origin, &mut open, &stream, "still flowing").await;
}

/// After a refused reload: `/new` still answers and the stream opened first still flows.
async fn unchanged(
    proxy_addr: std::net::SocketAddr,
    origin: &mut Origin,
    open: &mut RawClient,
    stream: &OriginStream,
    data: &str,
) {
    let mut client = RawClient::connect(proxy_addr).await;
    client.get("/new", &[]).await;
    origin.next_request().await.respond_sse();
    assert_eq!(client.read_head().await.0, 200);
    stream.send(format!("data: {data}\n\n")).await;
    open.read_until(&format!("data: {data}\n\n")).await;
}
