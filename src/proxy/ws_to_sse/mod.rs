//! WebSocket origin -> SSE client (SPEC 4.1): the proxy opens the upstream WebSocket for each
//! SSE client, sends the `on_connect` messages, and turns every message into one event. The
//! stream starts with a `bridge` event naming the back channel.
//!
//! One task per stream owns the upstream socket ([`link`]): it reads frames, writes the events
//! of each read to the client's bounded channel as one chunk, and writes pongs, pings,
//! back-channel messages and the close frame itself.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use http::{header, Request, Response, StatusCode};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::backchannel::{send_path, BackMessage, SessionGuard};
use super::events::{self, EventSender, StreamOptions};
use super::headers::{self, LAST_EVENT_ID};
use super::relay::side::fresh_mask as mask;
use super::relay::{warn_upstream_ignored_close, CLOSE_GRACE};
use super::translate;
use super::ws::handshake_headers;
use super::{error_response, upstream_failed, ConnInfo, Proxy, ProxyBody, RequestBody, RouteState};
use crate::metrics::StreamKind;
use crate::upstream;
use crate::wake::SideWake;
use crate::ws::close;
use crate::ws::frame::OP_TEXT;
use crate::ws::message_frame;

mod link;

use link::{Link, Read, Stop};

/// Messages waiting for the upstream from the back channel.
const BACK_CHANNEL_DEPTH: usize = 64;

pub async fn serve(
    proxy: &Arc<Proxy>,
    route: Arc<RouteState>,
    conn: Arc<ConnInfo>,
    req: Request<RequestBody>,
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
    let connected = route.connect_ws(&target.uri, &upstream_headers).await;
    let (mut upstream, upstream_read, _) = match connected {
        Ok(c) => c,
        Err(err) => return upstream_failed(&route, err),
    };
    let mut subscribe = BytesMut::new();
    for template in &settings.on_connect {
        let message = translate::fill_template(
            template,
            |name| query_value(&req, name),
            |name| header_value(&req, name),
        );
        subscribe.extend_from_slice(&message_frame(OP_TEXT, message.as_bytes(), Some(mask())));
    }
    if !subscribe.is_empty() {
        let sent = tokio::time::timeout(settings.connect_timeout, upstream.write_all(&subscribe));
        let err = match sent.await {
            Ok(Ok(())) => None,
            Ok(Err(err)) => Some(upstream::UpstreamError::Handshake(format!(
                "sending on_connect: {err}"
            ))),
            Err(_) => Some(upstream::UpstreamError::Timeout),
        };
        if let Some(err) = err {
            return upstream_failed(&route, err);
        }
    }
    let link = Link::new(upstream, upstream_read, settings);
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
    let log = route.stream_log(StreamKind::WsToSse, &conn);
    let options = StreamOptions {
        retry: settings.retry,
        heartbeat: route.heartbeat(),
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
            link,
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
/// messages upstream, until one side ends; then finishes the upstream's close.
async fn pump(
    proxy: &Proxy,
    route: &RouteState,
    conn: &ConnInfo,
    mut link: Link,
    events: EventSender,
    mut back: mpsc::Receiver<BackMessage>,
    session: SessionGuard,
) {
    let metrics = &route.metrics;
    let mut scratch = BytesMut::new();
    // The drain, the client going away and the timer are polled only when they wake (see
    // `wake`), not for every read.
    let ending: Ending = {
        let drain = pin!(proxy.drain.cancelled());
        let closed = pin!(events.closed());
        let timer_at = link.deadline();
        let timer = pin!(tokio::time::sleep_until(timer_at));
        let mut watch = Watch {
            side: SideWake::default(),
            drain,
            closed,
            timer,
            timer_at,
        };
        loop {
            let step = std::future::poll_fn(|cx| {
                if let Poll::Ready(woke) = watch.poll(cx) {
                    return Poll::Ready(Step::Woke(woke));
                }
                let read = link.poll_read(cx, &mut back, &mut scratch, metrics);
                // A back channel that just filled up is looked at again within its grace.
                watch.arm(link.deadline());
                read.map(Step::Read)
            })
            .await;
            let read = match step {
                Step::Woke(Woke::Drain) => {
                    link.close(Some(close::AWAY), "proxy shutting down");
                    break Ending::Clean;
                }
                Step::Woke(Woke::ClientGone) => {
                    let (code, reason) = if proxy.drain.is_cancelled() {
                        (close::AWAY, "proxy shutting down")
                    } else {
                        (close::NORMAL, "client gone")
                    };
                    link.close(Some(code), reason);
                    break Ending::Clean;
                }
                Step::Woke(Woke::Timer) => {
                    if let Err(why) = link.on_timer() {
                        tracing::warn!(route = %route.name, "{why}; closing");
                        link.abort();
                        break Ending::Failed;
                    }
                    watch.rearm(link.deadline());
                    continue;
                }
                Step::Read(read) => read,
            };
            if read.events > 0 {
                let chunk = scratch.split().freeze();
                if events.send(chunk, read.events).await.is_err() {
                    tracing::warn!(route = %route.name, peer = %conn.peer, "SSE client too slow; cutting it off");
                    conn.kill.cancel();
                    link.close(Some(close::NORMAL), "client too slow");
                    break Ending::Slow;
                }
            }
            if let Some(stop) = read.stop {
                break stopped(&mut link, stop, route);
            }
        }
    };
    drop(session);
    match ending {
        Ending::Clean => events.finish(),
        Ending::Failed => events.fail(),
        Ending::Slow => drop(events),
    }
    let finish = std::future::poll_fn(|cx| link.poll_finish(cx));
    let _ = tokio::time::timeout(CLOSE_GRACE, finish).await;
    if link.ignored_close() {
        warn_upstream_ignored_close(&route.name);
    }
}

/// How the stream ends when the upstream stopped it; queues the close frame the origin gets.
fn stopped(link: &mut Link, stop: Stop, route: &RouteState) -> Ending {
    let protocol_error = || {
        route
            .metrics
            .upstream_error(crate::metrics::UpstreamErrorKind::Protocol)
    };
    match stop {
        // RFC 6455 section 5.5.1: the close is answered, echoing its code.
        Stop::Closed(code) => {
            link.close(code, "");
            Ending::Clean
        }
        Stop::Binary => {
            link.close(Some(close::UNSUPPORTED), "binary messages not accepted");
            Ending::Clean
        }
        Stop::Dropped => {
            tracing::warn!(route = %route.name, "upstream WebSocket dropped without a close frame");
            protocol_error();
            Ending::Failed
        }
        Stop::WriteFailed(err) => {
            tracing::warn!(route = %route.name, error = %err, "writing to the upstream WebSocket failed");
            link.abort();
            Ending::Failed
        }
        Stop::Fault(err) => {
            tracing::warn!(route = %route.name, error = %err, "upstream WebSocket failed");
            protocol_error();
            link.close(Some(err.close_code()), "");
            Ending::Failed
        }
    }
}

/// What woke the bridge's task.
enum Step {
    Woke(Woke),
    Read(Read),
}

/// What the bridge waits on besides messages, polled only when one of them woke.
struct Watch<'a, D, C> {
    side: SideWake,
    drain: Pin<&'a mut D>,
    closed: Pin<&'a mut C>,
    timer: Pin<&'a mut tokio::time::Sleep>,
    timer_at: tokio::time::Instant,
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

    /// Moves the timer earlier when `deadline` is (a keepalive seen since it was set fires
    /// early and finds nothing to do; it is then set again).
    fn arm(&mut self, deadline: tokio::time::Instant) {
        if deadline < self.timer_at {
            self.rearm(deadline);
        }
    }

    /// Sets the timer again after it fired.
    fn rearm(&mut self, deadline: tokio::time::Instant) {
        self.timer_at = deadline;
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
