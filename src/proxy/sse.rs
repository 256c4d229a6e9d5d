//! SSE passthrough: the upstream's bytes reach the client as they come, untouched, while a
//! boundary tracker watches where events end so that heartbeats, the `retry:` field and the
//! drain on shutdown only ever land between events (SPEC 3, SPEC 10 "Event boundaries").
//!
//! This body never buffers: each upstream chunk is handed to hyper as it is, and nothing is
//! read from the upstream until hyper asks for more, so a slow client holds back its own
//! upstream and nobody else's.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio_util::sync::CancellationToken;

use super::stream::{StreamLog, StreamState};
use super::watch::{Heartbeat, StreamWatch};
use crate::metrics::{CloseReason, Direction};
use crate::sse::boundary::{BomFilter, BoundaryTracker};
use crate::sse::encoder;
use crate::upstream::{BoxError, OriginBody};

/// The `retry:` value sent when draining: the route's retry (or 3 s) plus up to as much again
/// (at least 5 s) of jitter, so that reconnects spread out instead of arriving as one storm.
pub fn drain_retry(base: Option<Duration>) -> u64 {
    let base = base.map_or(3000, |d| d.as_millis() as u64);
    let spread = base.max(5000);
    let mut bytes = [0u8; 8];
    let jitter = match getrandom::fill(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes) % spread,
        Err(_) => spread / 2,
    };
    base + jitter
}

pin_project_lite::pin_project! {
    /// The response body of an SSE passthrough stream.
    pub struct SsePassthrough {
        #[pin]
        upstream: OriginBody,
        tracker: BoundaryTracker,
        // Present until the upstream's first bytes are known.
        bom: Option<BomFilter>,
        // Whether the proxy wrote anything (retry, heartbeat) before the upstream's first byte.
        wrote_first: bool,
        prefix: Option<Bytes>,
        watch: StreamWatch,
        retry: Option<Duration>,
        // An upstream failure, reported to hyper one turn after it happened.
        failure: Option<BoxError>,
        log: StreamLog,
    }
}

impl SsePassthrough {
    pub fn new(
        upstream: OriginBody,
        retry: Option<Duration>,
        heartbeat: Option<Heartbeat>,
        drain: CancellationToken,
        log: StreamLog,
    ) -> Self {
        let prefix = retry.map(|r| {
            let mut out = BytesMut::new();
            encoder::retry_field(&mut out, r.as_millis() as u64);
            out.freeze()
        });
        SsePassthrough {
            upstream,
            tracker: BoundaryTracker::new(),
            bom: Some(BomFilter::new()),
            wrote_first: false,
            prefix,
            watch: StreamWatch::new(drain, heartbeat),
            retry,
            failure: None,
            log,
        }
    }
}

impl Body for SsePassthrough {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let mut this = self.project();
        if let Some(prefix) = this.prefix.take() {
            this.watch.wrote();
            *this.wrote_first = true;
            return Poll::Ready(Some(Ok(Frame::data(prefix))));
        }
        if let Some(err) = this.failure.take() {
            tracing::warn!(error = %err, "upstream failed mid-stream; aborting the client's response");
            this.log
                .metrics()
                .upstream_error(crate::metrics::UpstreamErrorKind::Protocol);
            this.log.close(CloseReason::UpstreamError);
            return Poll::Ready(Some(Err(err)));
        }
        loop {
            if this.log.is_closed() {
                return Poll::Ready(None);
            }
            let draining = this.watch.poll(cx);
            if this.log.state() == StreamState::Open && draining {
                this.log.drain();
            }
            if this.log.state() == StreamState::Draining && this.tracker.at_boundary() {
                this.log.close(CloseReason::Shutdown);
                let mut out = BytesMut::new();
                encoder::retry_field(&mut out, drain_retry(*this.retry));
                return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
            }
            match this.upstream.as_mut().poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let Ok(data) = frame.into_data() else {
                        continue;
                    };
                    let data = strip_bom(this.bom, *this.wrote_first, data);
                    if data.is_empty() {
                        continue;
                    }
                    let events = this.tracker.feed(&data) as u64;
                    this.log
                        .forwarded(Direction::Down, events, data.len() as u64);
                    this.watch.wrote();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(err))) => {
                    // One more turn before the abort lets hyper flush what it was handed.
                    *this.failure = Some(err);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(None) => {
                    this.log.close(CloseReason::UpstreamEnd);
                    return Poll::Ready(None);
                }
                Poll::Pending => {}
            }
            if let Some(padding) = this.watch.heartbeat_due() {
                if this.tracker.at_boundary() {
                    let mut out = BytesMut::with_capacity(padding.max(3));
                    encoder::heartbeat(&mut out, padding);
                    this.watch.heartbeat_written();
                    this.log.metrics().heartbeat();
                    *this.wrote_first = true;
                    return Poll::Ready(Some(Ok(Frame::data(out.freeze()))));
                }
                this.watch.heartbeat_postponed();
            }
            return Poll::Pending;
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// Drops a leading BOM when the proxy wrote something before the upstream's first byte
/// (SPEC 10); otherwise the BOM passes like any byte. Zero-copy except in the rare case of a
/// BOM-like prefix split across chunks that turns out not to be a BOM.
fn strip_bom(filter: &mut Option<BomFilter>, wrote_first: bool, data: Bytes) -> Bytes {
    let Some(f) = filter.as_mut() else {
        return data;
    };
    if !wrote_first && !f.is_holding() {
        *filter = None;
        return data;
    }
    let out = f.filter(&data);
    let result = if out.held.is_empty() {
        data.slice_ref(out.rest)
    } else {
        let mut joined = BytesMut::with_capacity(out.len());
        joined.extend_from_slice(out.held);
        joined.extend_from_slice(out.rest);
        joined.freeze()
    };
    if !f.is_holding() {
        *filter = None;
    }
    result
}
