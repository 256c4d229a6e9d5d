//! What every WebSocket-facing stream shares: the server handshake, the mapping of errors to
//! close codes, the bounded outbox that cuts a slow peer, and ping keepalive.
//!
//! A WebSocket here is a `Stream` + `Sink` of messages and nothing more (tokio-tungstenite);
//! this module never reads or writes frames by hand.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, Sink, SinkExt};
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode, Version};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_util::sync::CancellationToken;

use super::budget::{Budget, Overflow};
use super::headers::has_token;
use crate::config::RouteSettings;

/// True when the request asks for a WebSocket (HTTP/1.1 `Upgrade: websocket`).
pub fn is_websocket_request<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11 && has_token(req.headers(), header::UPGRADE, "websocket")
}

/// Checks an opening handshake (RFC 6455 section 4.2.1) and returns the `101` answer.
pub fn accept<B>(req: &Request<B>) -> Result<Response<()>, &'static str> {
    if req.method() != http::Method::GET {
        return Err("a WebSocket handshake must be a GET");
    }
    if !has_token(req.headers(), header::CONNECTION, "upgrade") {
        return Err("Connection: upgrade is missing");
    }
    if req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(|v| v.as_bytes())
        != Some(b"13")
    {
        return Err("Sec-WebSocket-Version must be 13");
    }
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("Sec-WebSocket-Key is missing")?;
    let mut response = Response::new(());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    let accept =
        HeaderValue::from_str(&derive_accept_key(key.as_bytes())).map_err(|_| "bad key")?;
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

/// `403` unless the request's `Origin` is allowed by the route (any, when not configured).
pub fn origin_allowed(settings: &RouteSettings, headers: &HeaderMap) -> bool {
    let Some(allowed) = &settings.allowed_origins else {
        return true;
    };
    headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .is_some_and(|origin| allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)))
}

/// Limits for one WebSocket side: `max_message` for messages and frames, a small read buffer,
/// and a write buffer that never grows past `client_buffer`.
pub fn ws_config(settings: &RouteSettings) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(settings.max_message))
        .max_frame_size(Some(settings.max_message))
        // tungstenite zero-fills its read buffer up to this size before every read (128 KiB
        // by default: most of the CPU of a paced WebSocket stream, and 128 KiB of memory
        // touched per side). A frame larger than this still gets room for all of it.
        .read_buffer_size(READ_BUFFER)
        // Frames gather in the write buffer until the writer flushes a batch.
        .write_buffer_size(MAX_BATCH)
        .max_write_buffer_size(settings.client_buffer.max(settings.max_message) + 64 * 1024)
}

/// The close code for a failed read from a peer (SPEC 5 and 10).
pub fn close_code_for(err: &WsError) -> CloseCode {
    match err {
        WsError::Capacity(_) => CloseCode::Size,
        WsError::Utf8(_) => CloseCode::Invalid,
        WsError::Protocol(_) => CloseCode::Protocol,
        _ => CloseCode::Error,
    }
}

pub fn close_message(code: CloseCode, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_owned().into(),
    }))
}

/// The payload size of a message (what is counted as forwarded).
pub fn message_len(msg: &Message) -> usize {
    match msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) | Message::Ping(b) | Message::Pong(b) => b.len(),
        Message::Close(_) | Message::Frame(_) => 2,
    }
}

/// What a queued message costs against `client_buffer`: its payload and the bookkeeping that
/// holds it, so that many tiny messages are bounded too.
pub const QUEUED_OVERHEAD: usize = 64;

fn queued_cost(msg: &Message) -> usize {
    message_len(msg) + QUEUED_OVERHEAD
}

/// Slots for a queue whose bytes are bounded by `limit`: never full before the budget is, so a
/// full budget, not a message count, decides when a client is too slow.
pub fn queue_slots(limit: usize) -> usize {
    limit / QUEUED_OVERHEAD + 2
}

/// A write batch never holds more than this before it is flushed.
const MAX_BATCH: usize = 64 * 1024;

/// What one read from a WebSocket peer may take.
const READ_BUFFER: usize = 8 * 1024;

/// A bounded, byte-counted queue of messages for one peer, drained by a writer task.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Message>,
    budget: Arc<Budget>,
    cut: CancellationToken,
    silent: Arc<std::sync::atomic::AtomicBool>,
}

impl Outbox {
    /// Queues a small control message (close, ping) without waiting.
    pub fn push(&self, msg: Message) -> Result<(), Overflow> {
        let len = queued_cost(&msg);
        self.budget.try_reserve(len)?;
        self.queue(msg, len)
    }

    /// Queues a message, waiting while the peer drains a full `client_buffer`; `Overflow` when
    /// the peer cannot keep up and is to be cut.
    pub async fn send(&self, msg: Message) -> Result<(), Overflow> {
        let len = queued_cost(&msg);
        self.budget.reserve(len).await?;
        self.queue(msg, len)
    }

    fn queue(&self, msg: Message, len: usize) -> Result<(), Overflow> {
        self.tx.try_send(msg).map_err(|_| {
            self.budget.release(len);
            Overflow
        })
    }

    /// Cuts the peer: the writer tries a `1013` close frame if it fits at once, then drops the
    /// connection.
    pub fn cut(&self) {
        self.cut.cancel();
    }

    /// Drops the peer without any close frame (a peer that stopped answering pings).
    pub fn abort(&self) {
        self.silent.store(true, Ordering::Release);
        self.cut.cancel();
    }
}

/// Starts the writer of `sink`, returning its outbox. The task ends after a queued close frame,
/// when every outbox is dropped, on a write error, or when cut.
pub fn spawn_writer<S>(
    mut sink: S,
    limit: usize,
    tasks: &tokio_util::task::TaskTracker,
) -> (Outbox, tokio::task::JoinHandle<()>)
where
    S: Sink<Message, Error = WsError> + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel::<Message>(queue_slots(limit));
    let budget = Arc::new(Budget::new(limit));
    let cut = CancellationToken::new();
    let silent = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let outbox = Outbox {
        tx,
        budget: budget.clone(),
        cut: cut.clone(),
        silent: silent.clone(),
    };
    let handle = tasks.spawn(async move {
        loop {
            let first = tokio::select! {
                biased;
                _ = cut.cancelled() => break,
                msg = rx.recv() => match msg {
                    Some(m) => m,
                    None => {
                        let _ = sink.close().await;
                        return;
                    }
                },
            };
            let mut batch = Batch::default();
            let written = tokio::select! {
                biased;
                _ = cut.cancelled() => break,
                written = write_batch(&mut sink, &mut rx, first, &mut batch) => written,
            };
            budget.release(batch.cost);
            if written.is_err() || batch.closed {
                return;
            }
        }
        if silent.load(Ordering::Acquire) {
            return;
        }
        // Cut: a 1013 close frame only if the socket takes it right now, then the drop.
        let _ = sink
            .send(close_message(CloseCode::Again, "client too slow"))
            .now_or_never();
    });
    (outbox, handle)
}

/// What one write batch carried.
#[derive(Default)]
struct Batch {
    cost: usize,
    closed: bool,
}

/// Writes `first` and whatever else is already queued (up to [`MAX_BATCH`]), then flushes once:
/// a burst costs one write to the socket, not one per message.
async fn write_batch<S>(
    sink: &mut S,
    rx: &mut mpsc::Receiver<Message>,
    first: Message,
    batch: &mut Batch,
) -> Result<(), WsError>
where
    S: Sink<Message, Error = WsError> + Unpin,
{
    let mut next = Some(first);
    while let Some(msg) = next.take() {
        batch.cost += queued_cost(&msg);
        batch.closed = matches!(msg, Message::Close(_));
        sink.feed(msg).await?;
        if batch.closed || batch.cost >= MAX_BATCH {
            break;
        }
        next = rx.try_recv().ok();
    }
    sink.flush().await
}

/// Ping keepalive for one peer: after `every` without receiving anything a ping is sent; after
/// one more interval without anything the peer is considered dead.
pub struct Keepalive {
    every: Option<Duration>,
    last_seen: Instant,
    pinged: bool,
}

/// What the keepalive asks for when its timer fires.
#[derive(Debug, PartialEq, Eq)]
pub enum KeepaliveAction {
    Ping,
    Dead,
    Nothing,
}

impl Keepalive {
    pub fn new(every: Option<Duration>) -> Self {
        Keepalive {
            every,
            last_seen: Instant::now(),
            pinged: false,
        }
    }

    /// Anything received from the peer proves it alive.
    pub fn seen(&mut self) {
        self.last_seen = Instant::now();
        self.pinged = false;
    }

    /// When the timer should fire next (far away when disabled).
    pub fn deadline(&self) -> Instant {
        match self.every {
            Some(every) if self.pinged => self.last_seen + every * 2,
            Some(every) => self.last_seen + every,
            None => Instant::now() + Duration::from_secs(86_400),
        }
    }

    pub fn fire(&mut self) -> KeepaliveAction {
        let Some(every) = self.every else {
            return KeepaliveAction::Nothing;
        };
        let idle = self.last_seen.elapsed();
        if self.pinged && idle >= every * 2 {
            KeepaliveAction::Dead
        } else if !self.pinged && idle >= every {
            self.pinged = true;
            KeepaliveAction::Ping
        } else {
            KeepaliveAction::Nothing
        }
    }
}

/// Headers of the client's request that travel to the origin's handshake or request: identity
/// and credentials, never hop-by-hop or handshake headers.
pub fn passed_headers(headers: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in [
        header::AUTHORIZATION,
        header::COOKIE,
        header::ORIGIN,
        header::USER_AGENT,
        header::ACCEPT_LANGUAGE,
    ] {
        for value in headers.get_all(&name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}
