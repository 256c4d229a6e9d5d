//! Upstreams over `https` and `wss` (SPEC 6): verified against the system's roots, or against
//! the CA file the route names (`upstream_ca`).

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpListener;

fn https_route(origin: &Origin, ca: Option<&std::path::Path>) -> String {
    let ca = ca
        .map(|p| format!("    upstream_ca: '{}'\n", p.display()))
        .unwrap_or_default();
    config_with_routes(&format!(
        "  - path: /events\n    upstream: https://127.0.0.1:{}/stream\n    heartbeat: 0\n{ca}",
        origin.addr.port()
    ))
}

#[tokio::test]
async fn https_upstream_verified_against_the_configured_ca_carries_the_stream() {
    let cert = origin_cert("https-ca");
    let mut origin = Origin::start_tls(cert.acceptor.clone()).await;
    let proxy = Proxy::start(&https_route(&origin, Some(&cert.cert_file))).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/events", &[]).await;
    let request = origin.next_request().await;
    assert_eq!(request.header("x-forwarded-proto").as_deref(), Some("http"));
    let stream = request.respond_sse();
    let (status, _) = client.read_head().await;
    assert_eq!(status, 200);
    stream.send("data: over tls\n\n").await;
    client.read_until("data: over tls\n\n").await;
}

#[tokio::test]
async fn https_upstream_with_a_certificate_the_roots_do_not_trust_gets_502() {
    let cert = origin_cert("https-untrusted");
    let origin = Origin::start_tls(cert.acceptor.clone()).await;
    let proxy = Proxy::start(&https_route(&origin, None)).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/events", &[]).await;
    let (status, _) = client.read_head().await;
    assert_eq!(status, 502);
    let body = client.read_until("\n").await;
    assert!(body.contains("handshake"), "{body:?}");
}

#[tokio::test]
async fn wss_upstream_verified_against_the_configured_ca_is_relayed() {
    let cert = origin_cert("wss-ca");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind wss origin");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = cert.acceptor.clone();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let tls = acceptor.accept(tcp).await.expect("TLS handshake");
        let mut ws = tokio_tungstenite::accept_async(tls)
            .await
            .expect("WebSocket handshake");
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() && ws.send(msg).await.is_err() {
                return;
            }
        }
    });
    let yaml = config_with_routes(&format!(
        "  - path: /echo\n    upstream: wss://localhost:{port}/ws\n    upstream_ca: '{}'\n",
        cert.cert_file.display()
    ));
    let proxy = Proxy::start(&yaml).await;
    let (mut ws, _) = ws_connect(&ws_url(&proxy, "/echo"), &[]).await;
    ws.send(WsMessage::text("through wss")).await.expect("send");
    assert_eq!(next_text(&mut ws).await, "through wss");
}

/// An origin that accepts TCP connections and then says nothing, holding them open.
async fn silent_origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind silent origin");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    port
}

#[tokio::test]
async fn tls_handshake_past_connect_timeout_gets_504() {
    let port = silent_origin().await;
    let yaml = config_with_routes(&format!(
        "  - path: /events\n    upstream: https://127.0.0.1:{port}/\n    connect_timeout: 200ms\n"
    ));
    let proxy = Proxy::start(&yaml).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/events", &[]).await;
    assert_eq!(client.read_head().await.0, 504);
}

#[tokio::test]
async fn websocket_handshake_past_connect_timeout_gets_504_and_no_upgrade() {
    let port = silent_origin().await;
    let yaml = config_with_routes(&format!(
        "  - path: /feed\n    upstream: ws://127.0.0.1:{port}/ws\n    connect_timeout: 200ms\n"
    ));
    let proxy = Proxy::start(&yaml).await;
    // An EventSource client of the WebSocket origin.
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/feed", &[]).await;
    assert_eq!(client.read_head().await.0, 504);
    // A WebSocket client.
    assert_eq!(ws_refused_status(&ws_url(&proxy, "/feed"), &[]).await, 504);
}
