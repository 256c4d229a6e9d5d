//! WebSocket passthrough (SPEC 5): the upstream handshake first, then `101`, then one
//! [`Relay`] task that passes frames on as they came (see `relay`). Also the pieces the bridges
//! share with it: the headers an upstream handshake carries, the client upgrade into a
//! message stream, and ping keepalive over an outbox.

use std::sync::Arc;

use bytes::BytesMut;

use http::{header, Request, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::headers::{self, ClientAddr, LAST_EVENT_ID};
use super::relay::{Relay, RelaySettings};
use super::websocket::{self, Keepalive, KeepaliveAction, Outbox};
use super::{
    empty_body, error_response, upstream_failed, ConnInfo, Proxy, ProxyBody, RequestBody,
    RouteState,
};
use crate::io::ClientIo;
use crate::metrics::StreamKind;

/// The client's side of an upgraded connection.
pub type ClientWs = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Answers a WebSocket client of a WebSocket origin: the upstream handshake first, then `101`.
pub async fn serve(
    proxy: &Arc<Proxy>,
    route: Arc<RouteState>,
    conn: Arc<ConnInfo>,
    mut req: Request<RequestBody>,
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
    let connected = route.connect_ws(&target.uri, &upstream_headers).await;
    let (upstream, upstream_read, upstream_response) = match connected {
        Ok(c) => c,
        Err(err) => return upstream_failed(&route, err),
    };
    if let Some(protocol) = upstream_response.get(header::SEC_WEBSOCKET_PROTOCOL) {
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, protocol.clone());
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    let log = route.stream_log(StreamKind::Ws, &conn);
    let relay_settings = RelaySettings {
        limit: settings.client_buffer,
        max_message: settings.max_message,
        ping: settings.ws_ping,
        drain: proxy.drain.clone(),
        hard_stop: proxy.hard_stop.clone(),
    };
    proxy.tasks.spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(err) => {
                tracing::debug!(route = %route.name, error = %err, "client upgrade failed");
                return;
            }
        };
        let name = route.name.clone();
        let upstream = (upstream, upstream_read);
        // The client's own socket, so that the relay reads it directly and can wait for it
        // to be readable before setting a buffer aside; what hyper read past the handshake
        // comes along.
        // Every HTTP/1.1 connection is served over `TokioIo<ClientIo>` (`server::connection`),
        // so the downcast only fails if that changes.
        let Ok(parts) = upgraded.downcast::<TokioIo<ClientIo>>() else {
            tracing::error!(route = %name, "upgraded connection is not a client socket; closing");
            return;
        };
        let client = (parts.io.into_inner(), BytesMut::from(parts.read_buf));
        Relay::new(client, upstream, relay_settings, name, log)
            .run()
            .await;
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
