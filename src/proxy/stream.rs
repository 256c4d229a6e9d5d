//! The life of one stream: opened, counted, and logged exactly once when it ends.
//!
//! A [`StreamLog`] is owned by whatever carries the stream (a response body, a bridge task);
//! dropping it without an explicit end means the client went away.

use std::sync::Arc;

use tokio::time::Instant;

use crate::io::CutFlag;
use crate::metrics::{CloseReason, Direction, RouteMetrics, StreamKind};

/// Where a stream is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    Open,
    /// Shutdown asked; the stream ends at the next event boundary.
    Draining,
    Closed(CloseReason),
}

pub struct StreamLog {
    route: Arc<str>,
    kind: StreamKind,
    started: Instant,
    events: u64,
    bytes: u64,
    state: StreamState,
    metrics: Arc<RouteMetrics>,
    cut: Arc<CutFlag>,
}

impl StreamLog {
    pub fn open(
        route: Arc<str>,
        kind: StreamKind,
        metrics: Arc<RouteMetrics>,
        cut: Arc<CutFlag>,
    ) -> Self {
        metrics.stream_opened(kind);
        StreamLog {
            route,
            kind,
            started: Instant::now(),
            events: 0,
            bytes: 0,
            state: StreamState::Open,
            metrics,
            cut,
        }
    }

    pub fn state(&self) -> StreamState {
        self.state
    }

    pub fn drain(&mut self) {
        if self.state == StreamState::Open {
            self.state = StreamState::Draining;
        }
    }

    /// Records the end of the stream; the first reason given wins.
    pub fn close(&mut self, reason: CloseReason) {
        if !matches!(self.state, StreamState::Closed(_)) {
            self.state = StreamState::Closed(reason);
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, StreamState::Closed(_))
    }

    /// Counts what was forwarded; `events` may be 0 for a chunk inside an event.
    pub fn forwarded(&mut self, direction: Direction, events: u64, bytes: u64) {
        if direction == Direction::Down {
            self.events += events;
            self.bytes += bytes;
        }
        self.metrics.forwarded(direction, events, bytes);
    }

    pub fn metrics(&self) -> &RouteMetrics {
        &self.metrics
    }
}

impl Drop for StreamLog {
    fn drop(&mut self) {
        let reason = match self.state {
            StreamState::Closed(reason) => reason,
            _ if self.cut.is_set() => CloseReason::SendTimeout,
            _ => CloseReason::ClientGone,
        };
        self.metrics.stream_closed(self.kind, reason);
        let duration_ms = self.started.elapsed().as_millis() as u64;
        if self.kind == StreamKind::Http {
            tracing::debug!(
                route = %self.route,
                duration_ms,
                bytes = self.bytes,
                reason = reason.as_str(),
                "request ended"
            );
            return;
        }
        tracing::info!(
            route = %self.route,
            kind = self.kind.as_str(),
            duration_ms,
            events = self.events,
            bytes = self.bytes,
            reason = reason.as_str(),
            "stream ended"
        );
    }
}
