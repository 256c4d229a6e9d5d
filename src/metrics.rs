//! Counters for `/metrics` (Prometheus text format, prefix `ssebridge_`).
//!
//! The hot path never looks anything up: a stream resolves its route's [`RouteMetrics`] once
//! and then only bumps atomics. Label sets are closed enums, so the output is bounded.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// What kind of stream a client holds (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// SSE origin -> SSE client, bytes passed through.
    Sse,
    /// Any other HTTP exchange, body streamed.
    Http,
    /// WebSocket origin -> WebSocket client.
    Ws,
    /// WebSocket origin -> SSE client.
    WsToSse,
    /// SSE origin -> WebSocket client.
    SseToWs,
}

impl StreamKind {
    const ALL: [StreamKind; 5] = [
        StreamKind::Sse,
        StreamKind::Http,
        StreamKind::Ws,
        StreamKind::WsToSse,
        StreamKind::SseToWs,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Sse => "sse",
            StreamKind::Http => "http",
            StreamKind::Ws => "ws",
            StreamKind::WsToSse => "ws_to_sse",
            StreamKind::SseToWs => "sse_to_ws",
        }
    }
}

/// Which way data flows (the `direction` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Upstream to client.
    Down,
    /// Client to upstream.
    Up,
}

impl Direction {
    const ALL: [Direction; 2] = [Direction::Down, Direction::Up];

    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Down => "downstream",
            Direction::Up => "upstream",
        }
    }
}

/// Why a stream ended (SPEC 10, close reasons).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    ClientGone,
    UpstreamEnd,
    UpstreamError,
    SlowClient,
    SendTimeout,
    PingTimeout,
    HeaderTimeout,
    Shutdown,
    Limit,
}

impl CloseReason {
    const ALL: [CloseReason; 9] = [
        CloseReason::ClientGone,
        CloseReason::UpstreamEnd,
        CloseReason::UpstreamError,
        CloseReason::SlowClient,
        CloseReason::SendTimeout,
        CloseReason::PingTimeout,
        CloseReason::HeaderTimeout,
        CloseReason::Shutdown,
        CloseReason::Limit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::ClientGone => "client_gone",
            CloseReason::UpstreamEnd => "upstream_end",
            CloseReason::UpstreamError => "upstream_error",
            CloseReason::SlowClient => "slow_client",
            CloseReason::SendTimeout => "send_timeout",
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::HeaderTimeout => "header_timeout",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Limit => "limit",
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an upstream could not serve (the `reason` label of `upstream_errors_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    Connect,
    Timeout,
    Handshake,
    Protocol,
}

impl UpstreamErrorKind {
    const ALL: [UpstreamErrorKind; 4] = [
        UpstreamErrorKind::Connect,
        UpstreamErrorKind::Timeout,
        UpstreamErrorKind::Handshake,
        UpstreamErrorKind::Protocol,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            UpstreamErrorKind::Connect => "connect",
            UpstreamErrorKind::Timeout => "timeout",
            UpstreamErrorKind::Handshake => "handshake",
            UpstreamErrorKind::Protocol => "protocol",
        }
    }
}

/// Which limit refused a connection or request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    MaxConnections,
    MaxConnectionsPerIp,
    MaxBody,
    MaxMessage,
}

impl LimitKind {
    const ALL: [LimitKind; 4] = [
        LimitKind::MaxConnections,
        LimitKind::MaxConnectionsPerIp,
        LimitKind::MaxBody,
        LimitKind::MaxMessage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::MaxConnections => "max_connections",
            LimitKind::MaxConnectionsPerIp => "max_connections_per_ip",
            LimitKind::MaxBody => "max_body",
            LimitKind::MaxMessage => "max_message",
        }
    }
}

fn counters<const N: usize>() -> [AtomicU64; N] {
    std::array::from_fn(|_| AtomicU64::new(0))
}

/// The counters of one route.
#[derive(Debug)]
pub struct RouteMetrics {
    streams_open: [AtomicI64; 5],
    streams_total: [AtomicU64; 5],
    events: [AtomicU64; 2],
    bytes: [AtomicU64; 2],
    heartbeats: AtomicU64,
    upstream_errors: [AtomicU64; 4],
    translation_errors: AtomicU64,
    closes: [AtomicU64; 9],
}

impl Default for RouteMetrics {
    fn default() -> Self {
        RouteMetrics {
            streams_open: std::array::from_fn(|_| AtomicI64::new(0)),
            streams_total: counters(),
            events: counters(),
            bytes: counters(),
            heartbeats: AtomicU64::new(0),
            upstream_errors: counters(),
            translation_errors: AtomicU64::new(0),
            closes: counters(),
        }
    }
}

fn index<T: PartialEq>(all: &[T], item: T) -> usize {
    all.iter().position(|x| *x == item).unwrap_or(0)
}

impl RouteMetrics {
    pub fn stream_opened(&self, kind: StreamKind) {
        let i = index(&StreamKind::ALL, kind);
        self.streams_open[i].fetch_add(1, Ordering::Relaxed);
        self.streams_total[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn stream_closed(&self, kind: StreamKind, reason: CloseReason) {
        self.streams_open[index(&StreamKind::ALL, kind)].fetch_sub(1, Ordering::Relaxed);
        self.closes[index(&CloseReason::ALL, reason)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn forwarded(&self, direction: Direction, events: u64, bytes: u64) {
        let i = index(&Direction::ALL, direction);
        if events > 0 {
            self.events[i].fetch_add(events, Ordering::Relaxed);
        }
        self.bytes[i].fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn heartbeat(&self) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
    }

    pub fn upstream_error(&self, kind: UpstreamErrorKind) {
        self.upstream_errors[index(&UpstreamErrorKind::ALL, kind)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn translation_error(&self) {
        self.translation_errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every counter of the process.
#[derive(Debug, Default)]
pub struct Metrics {
    connections_open: AtomicI64,
    limit_rejections: [AtomicU64; 4],
    routes: Mutex<BTreeMap<String, Arc<RouteMetrics>>>,
}

impl Metrics {
    /// The counters of `route`, created on first use and kept across reloads.
    pub fn route(&self, route: &str) -> Arc<RouteMetrics> {
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        routes.entry(route.to_owned()).or_default().clone()
    }

    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn limit_rejected(&self, limit: LimitKind) {
        self.limit_rejections[index(&LimitKind::ALL, limit)].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of all counters.
    pub fn render(&self) -> String {
        let routes: Vec<(String, Arc<RouteMetrics>)> = {
            let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
            routes.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let mut out = String::with_capacity(4096);
        let c = &mut out;
        family(c, "connections_open", "gauge", "Open client connections.");
        sample(
            c,
            "connections_open",
            &[],
            self.connections_open.load(Ordering::Relaxed),
        );
        family(
            c,
            "streams_open",
            "gauge",
            "Open streams by route and kind.",
        );
        for (name, m) in &routes {
            for (i, kind) in StreamKind::ALL.iter().enumerate() {
                let labels = [("route", name.as_str()), ("kind", kind.as_str())];
                sample(
                    c,
                    "streams_open",
                    &labels,
                    m.streams_open[i].load(Ordering::Relaxed),
                );
            }
        }
        family(
            c,
            "streams_total",
            "counter",
            "Streams started by route and kind.",
        );
        for (name, m) in &routes {
            for (i, kind) in StreamKind::ALL.iter().enumerate() {
                let labels = [("route", name.as_str()), ("kind", kind.as_str())];
                sample(
                    c,
                    "streams_total",
                    &labels,
                    m.streams_total[i].load(Ordering::Relaxed),
                );
            }
        }
        per_direction(
            c,
            &routes,
            "events_total",
            "Events or messages forwarded.",
            |m| &m.events,
        );
        per_direction(c, &routes, "bytes_total", "Payload bytes forwarded.", |m| {
            &m.bytes
        });
        family(
            c,
            "heartbeats_total",
            "counter",
            "Heartbeat comments written.",
        );
        for (name, m) in &routes {
            let labels = [("route", name.as_str())];
            sample(
                c,
                "heartbeats_total",
                &labels,
                m.heartbeats.load(Ordering::Relaxed),
            );
        }
        family(
            c,
            "upstream_errors_total",
            "counter",
            "Upstream failures by reason.",
        );
        for (name, m) in &routes {
            for (i, kind) in UpstreamErrorKind::ALL.iter().enumerate() {
                let labels = [("route", name.as_str()), ("reason", kind.as_str())];
                let v = m.upstream_errors[i].load(Ordering::Relaxed);
                sample(c, "upstream_errors_total", &labels, v);
            }
        }
        family(
            c,
            "translation_errors_total",
            "counter",
            "Messages that could not be translated as asked.",
        );
        for (name, m) in &routes {
            let labels = [("route", name.as_str())];
            let v = m.translation_errors.load(Ordering::Relaxed);
            sample(c, "translation_errors_total", &labels, v);
        }
        family(c, "closes_total", "counter", "Streams ended, by reason.");
        for (name, m) in &routes {
            for (i, reason) in CloseReason::ALL.iter().enumerate() {
                let labels = [("route", name.as_str()), ("reason", reason.as_str())];
                sample(
                    c,
                    "closes_total",
                    &labels,
                    m.closes[i].load(Ordering::Relaxed),
                );
            }
        }
        family(
            c,
            "limit_rejections_total",
            "counter",
            "Connections or requests refused by a limit.",
        );
        for (i, limit) in LimitKind::ALL.iter().enumerate() {
            let v = self.limit_rejections[i].load(Ordering::Relaxed);
            sample(c, "limit_rejections_total", &[("limit", limit.as_str())], v);
        }
        out
    }
}

fn per_direction(
    out: &mut String,
    routes: &[(String, Arc<RouteMetrics>)],
    name: &str,
    help: &str,
    field: impl Fn(&RouteMetrics) -> &[AtomicU64; 2],
) {
    family(out, name, "counter", help);
    for (route, m) in routes {
        for (i, dir) in Direction::ALL.iter().enumerate() {
            let labels = [("route", route.as_str()), ("direction", dir.as_str())];
            sample(out, name, &labels, field(m)[i].load(Ordering::Relaxed));
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(
        out,
        "# HELP ssebridge_{name} {help}\n# TYPE ssebridge_{name} {kind}"
    );
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    let _ = write!(out, "ssebridge_{name}");
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_labels_and_values() {
        let m = Metrics::default();
        let r = m.route("/events");
        r.stream_opened(StreamKind::Sse);
        r.forwarded(Direction::Down, 3, 120);
        r.stream_closed(StreamKind::Sse, CloseReason::ClientGone);
        m.limit_rejected(LimitKind::MaxConnectionsPerIp);
        let text = m.render();
        assert!(text.contains("ssebridge_streams_total{route=\"/events\",kind=\"sse\"} 1"));
        assert!(text.contains("ssebridge_streams_open{route=\"/events\",kind=\"sse\"} 0"));
        assert!(
            text.contains("ssebridge_events_total{route=\"/events\",direction=\"downstream\"} 3")
        );
        assert!(text.contains("ssebridge_closes_total{route=\"/events\",reason=\"client_gone\"} 1"));
        assert!(
            text.contains("ssebridge_limit_rejections_total{limit=\"max_connections_per_ip\"} 1")
        );
    }
}
