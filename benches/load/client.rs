//! The benchmark's clients, tasks in the bench process: a lean SSE client (raw HTTP/1.1 over
//! TCP, a chunked-body decoder and an event scanner that only reads what it needs) and a
//! WebSocket client. Each counts the events it receives while a run is measuring and keeps the
//! latency of each (receive time minus the origin's stamp).
//!
//! Connections come from loopback source addresses 127.1.x.y: a fresh address every 16 000
//! connections and for every run, so that tens of thousands of streams never run out of
//! ephemeral ports or meet a previous run's TIME_WAIT sockets.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::origin::now_ns;

/// What one run of clients shares: the measuring phase, counters and the stop signal.
#[derive(Default)]
pub struct Shared {
    /// 0 warming up, 1 measuring, 2 done.
    phase: AtomicU8,
    pub events: AtomicU64,
    /// Clients that received their first event.
    pub established: AtomicUsize,
    pub failed: AtomicUsize,
    pub stop: CancellationToken,
}

impl Shared {
    pub fn measure(&self, on: bool) {
        self.phase.store(if on { 1 } else { 2 }, Ordering::SeqCst);
    }

    fn measuring(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == 1
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    /// An EventSource-like client.
    Sse,
    /// A WebSocket client.
    Ws,
}

/// One client: where it goes and what it keeps.
#[derive(Clone)]
pub struct Spec {
    pub addr: SocketAddr,
    pub path: String,
    pub kind: Kind,
    /// Keep each event's latency (a paced run) or only count (flood, idle).
    pub latency: bool,
}

/// Connections per client source address (of the ~28 000 ephemeral ports).
const PER_SOURCE: u64 = 16_000;
static NEXT_SOURCE: AtomicU64 = AtomicU64::new(0);

/// The next client source address.
fn source() -> IpAddr {
    let n = NEXT_SOURCE.fetch_add(1, Ordering::Relaxed) / PER_SOURCE + 1;
    IpAddr::V4(Ipv4Addr::new(127, 1, (n >> 8) as u8, n as u8))
}

/// Starts a run on source addresses no earlier run used: binding to port 0 on an address whose
/// ports sit in TIME_WAIT from the last run's 10 000 closes is slow (and can fail).
pub fn fresh_sources() {
    let _ = NEXT_SOURCE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
        Some((n / PER_SOURCE + 1) * PER_SOURCE)
    });
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source(), 0))?;
    let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(addr))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs one client until `shared.stop`; returns the latencies (ns) seen while measuring.
pub async fn run(spec: Spec, shared: &Shared) -> Vec<u64> {
    let mut latencies = Vec::new();
    let result = match spec.kind {
        Kind::Sse => sse(&spec, shared, &mut latencies).await,
        Kind::Ws => ws(&spec, shared, &mut latencies).await,
    };
    if result.is_err() {
        shared.failed.fetch_add(1, Ordering::Relaxed);
    }
    latencies
}

/// Counts and times the events of one read.
struct Tally<'a> {
    shared: &'a Shared,
    latencies: &'a mut Vec<u64>,
    keep: bool,
    first: bool,
}

impl Tally<'_> {
    fn event(&mut self, stamp: u64) {
        if self.first {
            self.first = false;
            self.shared.established.fetch_add(1, Ordering::Relaxed);
        }
        if self.keep && self.shared.measuring() {
            self.latencies.push(now_ns().saturating_sub(stamp));
        }
    }

    fn count(&self, n: u64) {
        if n > 0 && self.shared.measuring() {
            self.shared.events.fetch_add(n, Ordering::Relaxed);
        }
    }
}

async fn sse(spec: &Spec, shared: &Shared, latencies: &mut Vec<u64>) -> std::io::Result<()> {
    let mut sock = connect(spec.addr).await?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
        spec.path
    );
    sock.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; if spec.latency { 4096 } else { 1024 }];
    let (body_start, filled, chunked) = read_head(&mut sock, &mut buf).await?;
    let mut body = Body::new(chunked);
    let mut scanner = Scanner::default();
    let mut tally = Tally {
        shared,
        latencies,
        keep: spec.latency,
        first: true,
    };
    let mut feed = |data: &[u8], tally: &mut Tally| {
        let mut n = 0;
        body.decode(data, |bytes| {
            n += scanner.feed(bytes, |stamp| tally.event(stamp));
        });
        tally.count(n);
    };
    feed(&buf[body_start..filled], &mut tally);
    // Busy streams (a flood, a one-stream rate search) read big, as the WebSocket client does;
    // idle and slowly paced ones keep only a small buffer once established.
    if !spec.latency {
        buf = vec![0u8; if busy(&spec.path) { 64 * 1024 } else { 256 }];
    }
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return Ok(()),
            n = sock.read(&mut buf) => {
                let n = n?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                feed(&buf[..n], &mut tally);
            }
        }
    }
}

/// Whether a stream's query asks for a flood or for more than 1000 events per second.
fn busy(path: &str) -> bool {
    let rate = path
        .split(['?', '&'])
        .find_map(|pair| pair.strip_prefix("rate="))
        .and_then(|r| r.parse::<f64>().ok());
    path.contains("mode=flood") || rate.is_some_and(|r| r > 1000.0)
}

/// Reads the response head; returns (body start, bytes in `buf`, chunked?).
async fn read_head(sock: &mut TcpStream, buf: &mut [u8]) -> std::io::Result<(usize, usize, bool)> {
    let mut filled = 0;
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut buf[filled..]))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
        if let Some(end) = memchr::memmem::find(&buf[..filled], b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 200") {
                let status = head.lines().next().unwrap_or_default().to_owned();
                return Err(std::io::Error::other(status));
            }
            let chunked = head
                .lines()
                .any(|l| l.starts_with("transfer-encoding:") && l.contains("chunked"));
            return Ok((end + 4, filled, chunked));
        }
        if filled == buf.len() {
            return Err(std::io::Error::other("response head too large"));
        }
    }
}

async fn ws(spec: &Spec, shared: &Shared, latencies: &mut Vec<u64>) -> std::io::Result<()> {
    let sock = connect(spec.addr).await?;
    let url = format!("ws://127.0.0.1:{}{}", spec.addr.port(), spec.path);
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::client_async(url, sock),
    )
    .await
    .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
    .map_err(std::io::Error::other)?;
    let mut tally = Tally {
        shared,
        latencies,
        keep: spec.latency,
        first: true,
    };
    loop {
        tokio::select! {
            _ = shared.stop.cancelled() => return Ok(()),
            m = ws.next() => match m {
                Some(Ok(Message::Text(text))) => {
                    if let Some(stamp) = parse_stamp(text.as_bytes()) {
                        tally.event(stamp);
                        tally.count(1);
                    }
                }
                Some(Ok(_)) => {}
                _ => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }
}

/// The send time in `<seq> <ns> …`.
fn parse_stamp(data: &[u8]) -> Option<u64> {
    let mut fields = data.splitn(3, |&b| b == b' ');
    fields.next()?;
    let ts = fields.next()?;
    if ts.is_empty() || ts.len() > 19 || !ts.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(ts.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// An HTTP/1.1 response body decoder: chunked, or everything as it comes.
struct Body {
    state: Chunk,
}

enum Chunk {
    Identity,
    Size {
        value: usize,
        ext: bool,
    },
    Data(usize),
    /// Skipping the CRLF after a chunk's data.
    DataEnd,
    /// The last chunk was seen; trailers and the rest are ignored.
    Done,
}

impl Body {
    fn new(chunked: bool) -> Self {
        Body {
            state: if chunked {
                Chunk::Size {
                    value: 0,
                    ext: false,
                }
            } else {
                Chunk::Identity
            },
        }
    }

    fn decode<'a>(&mut self, mut input: &'a [u8], mut out: impl FnMut(&'a [u8])) {
        while !input.is_empty() {
            match &mut self.state {
                Chunk::Identity => {
                    out(input);
                    return;
                }
                Chunk::Done => return,
                Chunk::Data(left) => {
                    let take = (*left).min(input.len());
                    out(&input[..take]);
                    input = &input[take..];
                    *left -= take;
                    if *left == 0 {
                        self.state = Chunk::DataEnd;
                    }
                }
                Chunk::DataEnd => {
                    let b = input[0];
                    input = &input[1..];
                    if b == b'\n' {
                        self.state = Chunk::Size {
                            value: 0,
                            ext: false,
                        };
                    }
                }
                Chunk::Size { value, ext } => {
                    let b = input[0];
                    input = &input[1..];
                    match b {
                        b'\n' if *value == 0 => self.state = Chunk::Done,
                        b'\n' => self.state = Chunk::Data(*value),
                        _ if *ext => {}
                        b'0'..=b'9' => *value = *value * 16 + usize::from(b - b'0'),
                        b'a'..=b'f' => *value = *value * 16 + usize::from(b - b'a' + 10),
                        b'A'..=b'F' => *value = *value * 16 + usize::from(b - b'A' + 10),
                        b'\r' => {}
                        _ => *ext = true,
                    }
                }
            }
        }
    }
}

/// Finds the events in an SSE byte stream: an event is counted at its blank line when it had a
/// `data: <seq> <ns>` line (heartbeats and the bridge's first event have none). Line ends are
/// LF, as the origins write them and the proxies pass them.
#[derive(Default)]
struct Scanner {
    /// The start of the line in progress (enough to read the stamp).
    carry: Vec<u8>,
    stamp: Option<u64>,
}

const CARRY: usize = 48;

enum Line {
    Blank,
    Data(Option<u64>),
    Other,
}

fn classify(line: &[u8]) -> Line {
    if line.is_empty() {
        Line::Blank
    } else if let Some(rest) = line.strip_prefix(b"data: ") {
        Line::Data(parse_stamp(rest))
    } else {
        Line::Other
    }
}

impl Scanner {
    /// Returns how many events ended in `data`; calls `on_event` with each one's stamp.
    fn feed(&mut self, mut data: &[u8], mut on_event: impl FnMut(u64)) -> u64 {
        let mut events = 0;
        while let Some(i) = memchr::memchr(b'\n', data) {
            let line = if self.carry.is_empty() {
                classify(&data[..i])
            } else {
                let take = i.min(CARRY.saturating_sub(self.carry.len()));
                self.carry.extend_from_slice(&data[..take]);
                let line = classify(&self.carry);
                self.carry.clear();
                line
            };
            match line {
                Line::Blank => {
                    if let Some(stamp) = self.stamp.take() {
                        events += 1;
                        on_event(stamp);
                    }
                }
                Line::Data(stamp) => self.stamp = stamp,
                Line::Other => {}
            }
            data = &data[i + 1..];
        }
        let take = data.len().min(CARRY.saturating_sub(self.carry.len()));
        self.carry.extend_from_slice(&data[..take]);
        events
    }
}
