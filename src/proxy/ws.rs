//! WebSocket passthrough (SPEC 5): frames relayed in order, close codes and reasons kept,
//! malformed or oversize input closed with the right code, pings to idle peers on both sides.
//!
//! Each side has a bounded outbox; a client that cannot take what its upstream sends is cut
//! with `1013` and never slows anyone else.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::headers::{self, ClientAddr, LAST_EVENT_ID};
use super::stream::StreamLog;
use super::websocket::{self, close_code_for, close_message, Keepalive, KeepaliveAction, Outbox};
use super::{empty_body, error_response, upstream_failed, ConnInfo, Proxy, ProxyBody, RouteState};
use crate::metrics::{CloseReason, Direction, StreamKind};
use crate::upstream::{self, UpstreamWs};

/// The client's side of an upgraded connection.
pub type ClientWs = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// How long a closing side may take to finish its close handshake before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Answers a WebSocket client of a WebSocket origin: the upstream handshake first, then `101`.
pub async fn serve(
    proxy: &Arc<Proxy>,
    route: Arc<RouteState>,
    conn: Arc<ConnInfo>,
    mut req: Request<Incoming>,
    suffix: &str,
) -> Response<ProxyBody> {
    let mut response = match websocket::accept(&req) {
        Ok(r) => r,
        Err(why) => return error_response(StatusCode::BAD_REQUEST, why),
    };
    let upstream_headers = handshake_headers(&route, &conn, &req);
    let target = match super::http::target(&route, suffix, req.uri().query(), req.headers()) {
        Ok(t) => t,
        Err(status) => return error_response(status, "invalid request target"),
    };
    let mut upstream_headers = upstream_headers;
    if let Some(id) = target.last_event_id {
        upstream_headers.insert(LAST_EVENT_ID, id);
    }
    if let Some(protocols) = req.headers().get(header::SEC_WEBSOCKET_PROTOCOL) {
        upstream_headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocols.clone());
    }
    let settings = &route.route.settings;
    let connected = upstream::connect_ws(
        &target.uri,
        upstream_headers,
        route.tls.clone(),
        settings.connect_timeout,
        websocket::ws_config(settings),
    )
    .await;
    let (upstream, upstream_response) = match connected {
        Ok(c) => c,
        Err(err) => return upstream_failed(&route, err),
    };
    if let Some(protocol) = upstream_response.get(header::SEC_WEBSOCKET_PROTOCOL) {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, protocol.clone());
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let log = StreamLog::open(
        route.name.clone(),
        StreamKind::Ws,
        route.metrics.clone(),
        conn.cut.clone(),
    );
    let task_proxy = proxy.clone();
    proxy.tasks.spawn(async move {
        if let Some(client) = upgrade(on_upgrade, &route).await {
            relay(&task_proxy, &route, client, upstream, log).await;
        }
    });
    response.map(|()| empty_body())
}

/// Headers for an upstream handshake or request made on behalf of a client.
pub fn handshake_headers<B>(
    route: &RouteState,
    conn: &ConnInfo,
    req: &Request<B>,
) -> http::HeaderMap {
    let mut out = websocket::passed_headers(req.headers());
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| conn.authority.clone());
    let client = ClientAddr {
        peer: conn.peer,
        scheme: conn.scheme,
        host: host.as_deref(),
    };
    headers::add_forwarded(&mut out, route.route.settings.forwarded, client);
    out
}

/// Completes the client's upgrade into a WebSocket.
pub async fn upgrade(on_upgrade: OnUpgrade, route: &RouteState) -> Option<ClientWs> {
    match on_upgrade.await {
        Ok(upgraded) => {
            let config = websocket::ws_config(&route.route.settings);
            Some(
                WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(config),
                )
                .await,
            )
        }
        Err(err) => {
            tracing::debug!(route = %route.name, error = %err, "client upgrade failed");
            None
        }
    }
}

async fn relay(
    proxy: &Proxy,
    route: &RouteState,
    client: ClientWs,
    upstream: UpstreamWs,
    mut log: StreamLog,
) {
    let settings = &route.route.settings;
    let (client_sink, mut client_stream) = client.split();
    let (upstream_sink, mut upstream_stream) = upstream.split();
    let (to_client, client_writer) =
        websocket::spawn_writer(client_sink, settings.client_buffer, &proxy.tasks);
    let (to_upstream, upstream_writer) =
        websocket::spawn_writer(upstream_sink, settings.client_buffer, &proxy.tasks);
    let mut client_alive = Keepalive::new(settings.ws_ping);
    let mut upstream_alive = Keepalive::new(settings.ws_ping);
    let reason = loop {
        tokio::select! {
            _ = proxy.drain.cancelled() => {
                let _ = to_client.push(close_message(CloseCode::Away, "proxy shutting down"));
                let _ = to_upstream.push(close_message(CloseCode::Away, "proxy shutting down"));
                break CloseReason::Shutdown;
            }
            _ = proxy.hard_stop.cancelled() => break CloseReason::Shutdown,
            msg = client_stream.next() => {
                client_alive.seen();
                match msg {
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        let _ = to_upstream.push(Message::Close(frame));
                        break CloseReason::ClientGone;
                    }
                    Some(Ok(msg)) => {
                        log.forwarded(Direction::Up, 1, websocket::message_len(&msg) as u64);
                        if to_upstream.send(msg).await.is_err() {
                            let _ = to_client.push(close_message(CloseCode::Again, "upstream too slow"));
                            to_upstream.cut();
                            break CloseReason::UpstreamError;
                        }
                    }
                    Some(Err(err)) => {
                        tracing::debug!(route = %route.name, error = %err, "client WebSocket error");
                        let _ = to_client.push(close_message(close_code_for(&err), ""));
                        let _ = to_upstream.push(close_message(CloseCode::Away, ""));
                        break CloseReason::ClientGone;
                    }
                    None => {
                        let _ = to_upstream.push(close_message(CloseCode::Away, ""));
                        break CloseReason::ClientGone;
                    }
                }
            }
            msg = upstream_stream.next() => {
                upstream_alive.seen();
                match msg {
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Close(frame))) => {
                        let _ = to_client.push(Message::Close(frame));
                        break CloseReason::UpstreamEnd;
                    }
                    Some(Ok(msg)) => {
                        log.forwarded(Direction::Down, 1, websocket::message_len(&msg) as u64);
                        if to_client.send(msg).await.is_err() {
                            to_client.cut();
                            tracing::warn!(route = %route.name, "WebSocket client too slow; closing with 1013");
                            let _ = to_upstream.push(close_message(CloseCode::Away, ""));
                            break CloseReason::SlowClient;
                        }
                    }
                    Some(Err(err)) => {
                        tracing::warn!(route = %route.name, error = %err, "upstream WebSocket failed");
                        route.metrics.upstream_error(crate::metrics::UpstreamErrorKind::Protocol);
                        let code = match close_code_for(&err) {
                            CloseCode::Size => CloseCode::Size,
                            _ => CloseCode::Error,
                        };
                        let _ = to_client.push(close_message(code, "upstream failed"));
                        break CloseReason::UpstreamError;
                    }
                    None => {
                        tracing::warn!(route = %route.name, "upstream WebSocket dropped without a close frame");
                        let _ = to_client.push(close_message(CloseCode::Error, "upstream went away"));
                        break CloseReason::UpstreamError;
                    }
                }
            }
            _ = tokio::time::sleep_until(client_alive.deadline()) => {
                if ping(&mut client_alive, &to_client) {
                    to_client.abort();
                    let _ = to_upstream.push(close_message(CloseCode::Away, ""));
                    break CloseReason::PingTimeout;
                }
            }
            _ = tokio::time::sleep_until(upstream_alive.deadline()) => {
                if ping(&mut upstream_alive, &to_upstream) {
                    to_upstream.abort();
                    let _ = to_client.push(close_message(CloseCode::Error, "upstream stopped answering"));
                    break CloseReason::PingTimeout;
                }
            }
        }
    };
    log.close(reason);
    drop((to_client, to_upstream));
    // Let both writers deliver what is queued (close frames included), within a grace period.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        let _ = client_writer.await;
        let _ = upstream_writer.await;
    })
    .await;
}

/// Runs a keepalive timer; true when the peer is dead.
pub fn ping(alive: &mut Keepalive, outbox: &Outbox) -> bool {
    match alive.fire() {
        KeepaliveAction::Ping => {
            let _ = outbox.push(Message::Ping(Default::default()));
            false
        }
        KeepaliveAction::Dead => true,
        KeepaliveAction::Nothing => false,
    }
}
