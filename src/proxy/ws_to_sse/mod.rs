//! WebSocket origin -> SSE client (SPEC 4.1): the proxy opens the upstream WebSocket for each
//! SSE client, sends the `on_connect` messages, and turns every message into one event. The
//! stream starts with a `bridge` event naming the back channel.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_util::{FutureExt, StreamExt};
use http::{header, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use super::backchannel::{send_path, SessionGuard};
use super::events::{self, EventSender, StreamOptions};
use super::headers::{self, LAST_EVENT_ID};
use super::sse::Heartbeat;
use super::stream::StreamLog;
use super::translate::{self, Translated};
use super::websocket::{self, close_message, Keepalive};
use super::ws::{handshake_headers, ping};
use super::{error_response, upstream_failed, ConnInfo, Proxy, ProxyBody, RouteState};
use crate::config::BinaryMode;
use crate::metrics::StreamKind;
use crate::upstream::{self, UpstreamWs};
use crate::wake::SideWake;

/// Messages waiting for the upstream from the back channel.
const BACK_CHANNEL_DEPTH: usize = 64;

pub async fn serve(
    proxy: &Arc<Proxy>,
    route: Arc<RouteState>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
    suffix: &str,
) -> Response<ProxyBody> {
    let settings = &route.route.settings;
    let target = match super::http::target(&route, suffix, req.uri().query(), req.headers()) {
        Ok(t) => t,
        Err(status) => return error_response(status, "invalid request target"),
    };
    let mut upstream_headers = handshake_headers(&route, &conn, &req);
    if let Some(id) = &target.last_event_id {
        upstream_headers.insert(LAST_EVENT_ID, id.clone());
    }
    let connected = upstream::connect_ws(
        &target.uri,
        upstream_headers,
        route.tls.clone(),
        settings.connect_timeout,
        websocket::ws_config(settings),
    )
    .await;
    let (mut upstream, _) = match connected {
        Ok(c) => c,
        Err(err) => return upstream_failed(&route, err),
    };
    for template in &settings.on_connect {
        let message = translate::fill_template(
            template,
            |name| query_value(&req, name),
            |name| header_value(&req, name),
        );
        if let Err(err) = futures_util::SinkExt::send(&mut upstream, Message::text(message)).await {
            let err = upstream::UpstreamError::Handshake(format!("sending on_connect: {err}"));
            return upstream_failed(&route, err);
        }
    }
    let (back_tx, back_rx) = mpsc::channel(BACK_CHANNEL_DEPTH);
    let session = match proxy.sessions.open(route.name.clone(), back_tx) {
        Ok(s) => s,
        Err(_) => {
            return error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "no randomness for a session id",
            )
        }
    };
    let mut first = BytesMut::new();
    let bridge = serde_json::json!({ "session": session.id(), "send": send_path(&route.route.path, session.id()) });
    translate::raw_event(
        &mut first,
        Some(&settings.bridge_event),
        &bridge.to_string(),
    );
    let log = StreamLog::open(
        route.name.clone(),
        StreamKind::WsToSse,
        route.metrics.clone(),
        conn.cut.clone(),
    );
    let options = StreamOptions {
        retry: settings.retry,
        heartbeat: settings
            .heartbeat
            .map(|every| Heartbeat::new(every, settings.heartbeat_padding)),
        client_buffer: settings.client_buffer,
    };
    let (sender, body) = events::channel(options, first.freeze(), proxy.drain.clone(), log);
    let task_proxy = proxy.clone();
    let task_route = route.clone();
    proxy.tasks.spawn(async move {
        pump(
            &task_proxy,
            &task_route,
            &conn,
            upstream,
            sender,
            back_rx,
            session,
        )
        .await;
    });
    let mut response = Response::new(http_body_util::BodyExt::boxed_unsync(body));
    *response.headers_mut() = headers::event_stream_headers();
    response
}

fn query_value<B>(req: &Request<B>, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = super::http::percent_decode(k)?;
        (k == name.as_bytes()).then(|| {
            super::http::percent_decode(v).map(|v| String::from_utf8_lossy(&v).into_owned())
        })?
    })
}

fn header_value<B>(req: &Request<B>, name: &str) -> Option<String> {
    let name = header::HeaderName::from_bytes(name.as_bytes()).ok()?;
    req.headers()
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Reads the upstream WebSocket into the client's event channel and writes back-channel
/// messages upstream, until one side ends.
async fn pump(
    proxy: &Proxy,
    route: &RouteState,
    conn: &ConnInfo,
    upstream: UpstreamWs,
    events: EventSender,
    mut back: mpsc::Receiver<Message>,
    session: SessionGuard,
) {
    let settings = &route.route.settings;
    let (upstream_sink, mut upstream_stream) = upstream.split();
    let (to_upstream, writer) =
        websocket::spawn_writer(upstream_sink, settings.max_message * 2, &proxy.tasks);
    let mut alive = Keepalive::new(settings.ws_ping);
    let mut scratch = BytesMut::new();
    // The drain, the client going away and the keepalive timer are polled only when they wake
    // (see `wake`), not for every message.
    let ending: Ending = {
        let drain = pin!(proxy.drain.cancelled());
        let closed = pin!(events.closed());
        let timer = pin!(tokio::time::sleep_until(alive.deadline()));
        let mut watch = Watch {
            side: SideWake::default(),
            drain,
            closed,
            timer,
        };
        loop {
            tokio::select! {
                biased;
                woke = std::future::poll_fn(|cx| watch.poll(cx)) => match woke {
                    Woke::Drain => {
                        let _ = to_upstream.push(close_message(CloseCode::Away, "proxy shutting down"));
                        break Ending::Clean;
                    }
                    Woke::ClientGone => {
                        let (code, reason) = if proxy.drain.is_cancelled() {
                            (CloseCode::Away, "proxy shutting down")
                        } else {
                            (CloseCode::Normal, "client gone")
                        };
                        let _ = to_upstream.push(close_message(code, reason));
                        break Ending::Clean;
                    }
                    Woke::Timer => {
                        if ping(&mut alive, &to_upstream) {
                            to_upstream.abort();
                            tracing::warn!(route = %route.name, "upstream stopped answering pings");
                            break Ending::Failed;
                        }
                        // Set again from the last time the upstream was heard (a message since
                        // then moved the deadline on).
                        watch.rearm(alive.deadline());
                    }
                },
                Some(message) = back.recv() => {
                    if to_upstream.send(message).await.is_err() {
                        tracing::warn!(route = %route.name, "upstream not taking back-channel messages; closing");
                        break Ending::Failed;
                    }
                }
                msg = upstream_stream.next() => {
                    alive.seen();
                    // This message, and those that came with it and are ready now: one chunk
                    // for the client, none of them waiting for another.
                    let mut batch = Batch::default();
                    let mut step = batch.add(msg, settings, route, &mut scratch);
                    while step.is_none() && scratch.len() < MAX_BATCH {
                        let Some(msg) = upstream_stream.next().now_or_never() else {
                            break;
                        };
                        step = batch.add(msg, settings, route, &mut scratch);
                    }
                    if batch.events > 0 {
                        let chunk = scratch.split().freeze();
                        if events.send(chunk, batch.events).await.is_err() {
                            tracing::warn!(route = %route.name, peer = %conn.peer, "SSE client too slow; cutting it off");
                            conn.kill.cancel();
                            let _ = to_upstream.push(close_message(CloseCode::Normal, "client too slow"));
                            break Ending::Slow;
                        }
                    }
                    match step {
                        None => {}
                        Some(Stop::Binary) => {
                            let _ = to_upstream.push(close_message(CloseCode::Unsupported, "binary messages not accepted"));
                            break Ending::Clean;
                        }
                        Some(Stop::Closed) => break Ending::Clean,
                        Some(Stop::Failed) => break Ending::Failed,
                    }
                }
            }
        }
    };
    drop(session);
    match ending {
        Ending::Clean => events.finish(),
        Ending::Failed => events.fail(),
        Ending::Slow => drop(events),
    }
    drop(to_upstream);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), writer).await;
}

/// The most translated bytes one chunk for the client gathers.
const MAX_BATCH: usize = 64 * 1024;

/// Why the messages of a batch stop the stream.
enum Stop {
    /// A binary message with `binary: close`.
    Binary,
    Closed,
    Failed,
}

/// The events translated from the messages of one read.
#[derive(Default)]
struct Batch {
    events: u64,
}

impl Batch {
    /// Translates one message (or the end of the stream) into `out`; `Some` when the stream
    /// stops with it.
    fn add(
        &mut self,
        msg: Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
        settings: &crate::config::RouteSettings,
        route: &RouteState,
        out: &mut BytesMut,
    ) -> Option<Stop> {
        match msg {
            Some(Ok(Message::Text(text))) => {
                if translate::message_to_event(out, &text, settings.format) == Translated::SentRaw {
                    route.metrics.translation_error();
                }
                self.events += 1;
                None
            }
            Some(Ok(Message::Binary(data))) => match settings.binary {
                BinaryMode::Base64 => {
                    use base64::Engine as _;
                    let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
                    translate::raw_event(out, Some("binary"), &encoded);
                    self.events += 1;
                    None
                }
                BinaryMode::Drop => None,
                BinaryMode::Close => Some(Stop::Binary),
            },
            Some(Ok(Message::Close(_))) => Some(Stop::Closed),
            Some(Ok(_)) => None,
            Some(Err(err)) => {
                tracing::warn!(route = %route.name, error = %err, "upstream WebSocket failed");
                route
                    .metrics
                    .upstream_error(crate::metrics::UpstreamErrorKind::Protocol);
                Some(Stop::Failed)
            }
            None => {
                tracing::warn!(route = %route.name, "upstream WebSocket dropped without a close frame");
                route
                    .metrics
                    .upstream_error(crate::metrics::UpstreamErrorKind::Protocol);
                Some(Stop::Failed)
            }
        }
    }
}

/// What the bridge waits on besides messages, polled only when one of them woke.
struct Watch<'a, D, C> {
    side: SideWake,
    drain: Pin<&'a mut D>,
    closed: Pin<&'a mut C>,
    timer: Pin<&'a mut tokio::time::Sleep>,
}

impl<D: Future, C: Future> Watch<'_, D, C> {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Woke> {
        if !self.side.due(cx) {
            return Poll::Pending;
        }
        let mut side_cx = Context::from_waker(self.side.waker());
        // Drain first: the client's body ends on drain too, and the upstream must then hear
        // 1001 (going away), not 1000 (client gone).
        if self.drain.as_mut().poll(&mut side_cx).is_ready() {
            return Poll::Ready(Woke::Drain);
        }
        if self.closed.as_mut().poll(&mut side_cx).is_ready() {
            return Poll::Ready(Woke::ClientGone);
        }
        if self.timer.as_mut().poll(&mut side_cx).is_ready() {
            return Poll::Ready(Woke::Timer);
        }
        Poll::Pending
    }

    /// Sets the keepalive timer again after it fired.
    fn rearm(&mut self, deadline: tokio::time::Instant) {
        self.timer.as_mut().reset(deadline);
        // Polled again at the next turn, so that it is registered with the side waker.
        self.side.waker().wake_by_ref();
    }
}

/// Which of the bridge's side futures woke.
enum Woke {
    Drain,
    ClientGone,
    Timer,
}

enum Ending {
    Clean,
    Failed,
    Slow,
}
