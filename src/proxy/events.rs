//! A stream the proxy makes itself (WebSocket origin -> SSE client): translated events pass
//! through a bounded, byte-counted channel from the upstream task to this response body, which
//! adds the `retry:` field, heartbeats and the drain, as passthrough does.

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::budget::{Budget, Overflow};
use super::sse::drain_retry;
use super::stream::{StreamLog, StreamState};
use super::watch::{Heartbeat, StreamWatch};
use super::websocket::{queue_slots, QUEUED_OVERHEAD};
use crate::metrics::{CloseReason, Direction};
use crate::sse::encoder;
use crate::upstream::BoxError;

const OPEN: u8 = 0;
const CLEAN_END: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 3;

/// The upstream task's end of the channel.
pub struct EventSender {
    tx: mpsc::Sender<Chunk>,
    budget: Arc<Budget>,
    end: Arc<AtomicU8>,
}

impl EventSender {
    /// Queues `events` whole events in one chunk, waiting while the client drains a full
    /// `client_buffer`; `Overflow` when the client cannot keep up and is to be cut.
    pub async fn send(&self, bytes: Bytes, events: u64) -> Result<(), Overflow> {
        let len = bytes.len() + QUEUED_OVERHEAD;
        let queued = match self.budget.reserve(len).await {
            Ok(()) => self
                .tx
                .try_send(Chunk { bytes, events })
                .map_err(|_| self.budget.release(len)),
            Err(Overflow) => Err(()),
        };
        queued.map_err(|()| {
            self.end.store(SLOW, Ordering::Release);
            Overflow
        })
    }

    /// Resolves when the client's body is gone.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// The upstream ended cleanly: the client's response ends cleanly after what is queued.
    pub fn finish(self) {
        let _ = self
            .end
            .compare_exchange(OPEN, CLEAN_END, Ordering::AcqRel, Ordering::Acquire);
    }

    /// The upstream failed: the client's response is aborted so `EventSource` reconnects.
    pub fn fail(self) {
        let _ = self
            .end
            .compare_exchange(OPEN, FAILED, Ordering::AcqRel, Ordering::Acquire);
    }
}

/// Whole events on their way to the client, and how many.
struct Chunk {
    bytes: Bytes,
    events: u64,
}

pin_project_lite::pin_project! {
    /// The response body of a translated event stream.
    pub struct EventStreamBody {
        rx: mpsc::Receiver<Chunk>,
        budget: Arc<Budget>,
        end: Arc<AtomicU8>,
        // Set once the end is known to be an abort: one more turn lets hyper flush the whole
        // events already handed to it before the abort discards its buffer.
        abort_armed: bool,
        prefix: Option<Bytes>,
        watch: StreamWatch,
        retry: Option<Duration>,
        log: StreamLog,
    }
}

/// Settings of a translated stream.
pub struct StreamOptions {
    pub retry: Option<Duration>,
    pub heartbeat: Option<Heartbeat>,
    pub client_buffer: usize,
}

/// A channel whose receiving end is the client's response body; `first` is written at once
/// (after the `retry:` field).
pub fn channel(
    options: StreamOptions,
    first: Bytes,
    drain: CancellationToken,
    log: StreamLog,
) -> (EventSender, EventStreamBody) {
    let (tx, rx) = mpsc::channel(queue_slots(options.client_buffer));
    let budget = Arc::new(Budget::new(options.client_buffer));
    let end = Arc::new(AtomicU8::new(OPEN));
    let mut prefix = BytesMut::new();
    if let Some(retry) = options.retry {
        encoder::retry_field(&mut prefix, retry.as_millis() as u64);
    }
    prefix.extend_from_slice(&first);
    let sender = EventSender {
        tx,
        budget: budget.clone(),
        end: end.clone(),
    };
    let body = EventStreamBody {
        rx,
        budget,
        end,
        abort_armed: false,
        prefix: Some(prefix.freeze()),
        watch: StreamWatch::new(drain, options.heartbeat),
        retry: options.retry,
        log,
    };
    (sender, body)
}

impl Body for EventStreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if let Some(prefix) = this.prefix.take() {
            this.watch.wrote();
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if this.log.is_closed() {
            return Poll::Ready(None);
        }
        let draining = this.watch.poll(cx);
        if this.log.state() == StreamState::Open && draining {
            // Every queued item is a whole event, so any point is a boundary.
            this.log.close(CloseReason::Shutdown);
            let mut out = BytesMut::new();
            encoder::retry_field(&mut out, drain_retry(*this.retry));
            return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
        }
        match this.rx.poll_recv(cx) {
            Poll::Ready(Some(Chunk { bytes, events })) => {
                this.budget.release(bytes.len() + QUEUED_OVERHEAD);
                this.log
                    .forwarded(Direction::Down, events, bytes.len() as u64);
                this.watch.wrote();
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            Poll::Ready(None) => {
                let end = this.end.load(Ordering::Acquire);
                if end != CLEAN_END && !*this.abort_armed {
                    *this.abort_armed = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                return match end {
                    CLEAN_END => {
                        this.log.close(CloseReason::UpstreamEnd);
                        Poll::Ready(None)
                    }
                    SLOW => {
                        this.log.close(CloseReason::SlowClient);
                        Poll::Ready(Some(Err("client too slow; stream cut".into())))
                    }
                    _ => {
                        this.log.close(CloseReason::UpstreamError);
                        Poll::Ready(Some(Err("upstream failed; stream aborted".into())))
                    }
                };
            }
            Poll::Pending => {}
        }
        let Some(padding) = this.watch.heartbeat_due() else {
            return Poll::Pending;
        };
        let mut out = BytesMut::new();
        encoder::heartbeat(&mut out, padding);
        this.watch.heartbeat_written();
        this.log.metrics().heartbeat();
        Poll::Ready(Some(Ok(Frame::data(out.freeze()))))
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
