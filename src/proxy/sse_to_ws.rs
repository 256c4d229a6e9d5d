//! SSE origin -> WebSocket client (SPEC 4.2): the proxy subscribes upstream for each client,
//! decodes the event stream (WHATWG rules) and sends each dispatched event as one message.
//! Client messages are POSTed to the route's `send_to`, one request per message, in order.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use super::headers::LAST_EVENT_ID;
use super::stream::StreamLog;
use super::translate;
use super::websocket::{self, close_code_for, close_message, Keepalive};
use super::ws::{handshake_headers, ping, upgrade, ClientWs};
use super::{
    empty_body, error_response, headers, upstream_failed, ConnInfo, Proxy, ProxyBody, RequestBody,
    RouteState,
};
use crate::metrics::{CloseReason, Direction, StreamKind};
use crate::sse::decoder::Decoder;
use crate::upstream::{self, BoxError, OriginBody, UpstreamError};

/// Client messages waiting to be POSTed.
const POST_QUEUE_DEPTH: usize = 64;

pub async fn serve(
    proxy: &Arc<Proxy>,
    route: Arc<RouteState>,
    conn: Arc<ConnInfo>,
    mut req: Request<RequestBody>,
    suffix: &str,
) -> Response<ProxyBody> {
    let response = match websocket::accept(&req) {
        Ok(r) => r,
        Err(why) => return error_response(StatusCode::BAD_REQUEST, why),
    };
    let target = match super::http::target(&route, suffix, req.uri().query(), req.headers()) {
        Ok(t) => t,
        Err(status) => return error_response(status, "invalid request target"),
    };
    let mut upstream_headers = handshake_headers(&route, &conn, &req);
    upstream_headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("text/event-stream"),
    );
    if let Some(id) = &target.last_event_id {
        upstream_headers.insert(LAST_EVENT_ID, id.clone());
    }
    // Like an EventSource's request: a connection of its own, read by the relay directly.
    let upstream = upstream::request_own(
        &target.uri,
        route.tls.clone(),
        route.route.settings.connect_timeout,
        &Method::GET,
        &upstream_headers,
    )
    .await;
    let upstream = match upstream {
        Ok(r) => r,
        Err(err) => return upstream_failed(&route, err),
    };
    if upstream.status() != StatusCode::OK || !headers::is_event_stream(upstream.headers()) {
        let err = UpstreamError::Protocol(format!(
            "origin answered {} without an event stream",
            upstream.status()
        ));
        return upstream_failed(&route, err);
    }
    let credentials = credentials(req.headers());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let log = route.stream_log(StreamKind::SseToWs, &conn);
    let task_proxy = proxy.clone();
    proxy.tasks.spawn(async move {
        if let Some(client) = upgrade(on_upgrade, &route).await {
            let poster = route
                .route
                .send_to
                .clone()
                .map(|url| spawn_poster(&task_proxy, route.clone(), url, credentials));
            relay(
                &task_proxy,
                &route,
                client,
                upstream.into_body(),
                poster,
                log,
            )
            .await;
        }
    });
    response.map(|()| empty_body())
}

/// `Authorization` and `Cookie` of the client, forwarded with each POST.
fn credentials(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [header::AUTHORIZATION, header::COOKIE] {
        for value in headers.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

async fn relay(
    proxy: &Proxy,
    route: &RouteState,
    client: ClientWs,
    mut upstream: OriginBody,
    poster: Option<mpsc::Sender<Message>>,
    mut log: StreamLog,
) {
    let settings = &route.route.settings;
    let (client_sink, mut client_stream) = client.split();
    let (to_client, writer) =
        websocket::spawn_writer(client_sink, settings.client_buffer, &proxy.tasks);
    let mut alive = Keepalive::new(settings.ws_ping);
    let mut decoder = Decoder::new(settings.max_message);
    let mut messages: Vec<String> = Vec::new();
    let reason = 'relay: loop {
        tokio::select! {
            _ = proxy.drain.cancelled() => {
                let _ = to_client.push(close_message(CloseCode::Away, "proxy shutting down"));
                break CloseReason::Shutdown;
            }
            _ = proxy.hard_stop.cancelled() => break CloseReason::Shutdown,
            frame = upstream.frame() => match frame {
                Some(Ok(frame)) => {
                    let Ok(data) = frame.into_data() else { continue };
                    let decoded = decoder.feed(&data, |event| messages.push(translate::event_to_message(&event, settings.format)));
                    if let Err(err) = decoded {
                        tracing::warn!(route = %route.name, error = %err, "upstream event too large; closing");
                        route.metrics.translation_error();
                        let _ = to_client.push(close_message(CloseCode::Error, "upstream event too large"));
                        break CloseReason::UpstreamError;
                    }
                    for text in messages.drain(..) {
                        log.forwarded(Direction::Down, 1, text.len() as u64);
                        if to_client.send(Message::text(text)).await.is_err() {
                            tracing::warn!(route = %route.name, "WebSocket client too slow; closing with 1013");
                            to_client.cut();
                            break 'relay CloseReason::SlowClient;
                        }
                    }
                }
                Some(Err(err)) => {
                    tracing::warn!(route = %route.name, error = %err, "upstream event stream failed");
                    route.metrics.upstream_error(crate::metrics::UpstreamErrorKind::Protocol);
                    let _ = to_client.push(close_message(CloseCode::Error, "upstream failed"));
                    break CloseReason::UpstreamError;
                }
                None => {
                    let _ = to_client.push(close_message(CloseCode::Normal, "upstream ended"));
                    break CloseReason::UpstreamEnd;
                }
            },
            msg = client_stream.next() => {
                alive.seen();
                match msg {
                    Some(Ok(msg @ (Message::Text(_) | Message::Binary(_)))) => {
                        let Some(poster) = &poster else {
                            let _ = to_client.push(close_message(CloseCode::Unsupported, "this route takes no messages"));
                            break CloseReason::ClientGone;
                        };
                        log.forwarded(Direction::Up, 1, websocket::message_len(&msg) as u64);
                        if poster.try_send(msg).is_err() {
                            let _ = to_client.push(close_message(CloseCode::Policy, "too many messages waiting for the origin"));
                            break CloseReason::Limit;
                        }
                    }
                    Some(Ok(Message::Close(_))) | None => break CloseReason::ClientGone,
                    Some(Ok(_)) => {}
                    Some(Err(err)) => {
                        let _ = to_client.push(close_message(close_code_for(&err), ""));
                        break CloseReason::ClientGone;
                    }
                }
            }
            _ = tokio::time::sleep_until(alive.deadline()) => {
                if ping(&mut alive, &to_client) {
                    to_client.abort();
                    break CloseReason::PingTimeout;
                }
            }
        }
    };
    log.close(reason);
    drop(upstream);
    drop(to_client);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
}

/// POSTs each client message to `url`, one at a time, in order.
fn spawn_poster(
    proxy: &Proxy,
    route: Arc<RouteState>,
    url: Uri,
    credentials: HeaderMap,
) -> mpsc::Sender<Message> {
    let (tx, mut rx) = mpsc::channel::<Message>(POST_QUEUE_DEPTH);
    proxy.tasks.spawn(async move {
        while let Some(message) = rx.recv().await {
            let (body, content_type) = match message {
                Message::Binary(b) => (b, "application/octet-stream"),
                Message::Text(t) => (Bytes::from(t.as_str().to_owned()), "text/plain; charset=utf-8"),
                _ => continue,
            };
            let mut req = Request::new(Full::new(body).map_err(|e| -> BoxError { match e {} }).boxed_unsync());
            *req.method_mut() = Method::POST;
            *req.uri_mut() = url.clone();
            *req.headers_mut() = credentials.clone();
            req.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            match route.client.request(req).await {
                Ok(response) if response.status().is_success() => {
                    // Read the (small) answer so the connection can be reused; never more than 64 KiB.
                    let _ = http_body_util::Limited::new(response.into_body(), 64 * 1024).collect().await;
                }
                Ok(response) => {
                    tracing::warn!(route = %route.name, status = %response.status(), send_to = %url, "origin refused a client message");
                }
                Err(err) => {
                    let err = UpstreamError::from_client(err);
                    route.metrics.upstream_error(err.kind());
                    tracing::warn!(route = %route.name, send_to = %url, error = %err, "could not POST a client message");
                }
            }
        }
    });
    tx
}
