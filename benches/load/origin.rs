//! The benchmark's own origins, in the bench process: an SSE server (hand-written HTTP/1.1 with
//! a chunked body, as most origins send) on several ports, and a WebSocket server. Every event
//! or message carries `<seq> <send time in ns>` so a client can compute its latency against the
//! same clock ([`now_ns`]).
//!
//! A stream's shape comes from its query string: `mode=paced&rate=10` (one event every 1/rate s,
//! at a random phase), `mode=flood` (as fast as the socket takes them, 16 KiB per write),
//! `mode=idle` (one event, then silence); `size` is the bytes per event on the wire; `gen` ties
//! the stream to one scenario run: when the run ends, [`Origin::end_run`] closes its streams, so
//! nothing a proxy forgot to close keeps loading the next run. `slot=N` (1..) puts a paced SSE
//! stream in a group that sends only while [`Origin::take_turn`] says it is that group's turn,
//! so that several targets' streams can stay open together and take turns on the machine.

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

static CLOCK: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds on the process-wide monotonic clock that origins stamp and clients read.
pub fn now_ns() -> u64 {
    CLOCK.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// Bytes per write in flood mode.
const FLOOD_WRITE: usize = 16 * 1024;
const RESPONSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
cache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Mode {
    Paced { rate: f64 },
    Flood,
    Idle,
}

impl Mode {
    pub fn query(self, size: usize, generation: u64) -> String {
        let mode = match self {
            Mode::Paced { rate } => format!("mode=paced&rate={rate}"),
            Mode::Flood => "mode=flood".to_owned(),
            Mode::Idle => "mode=idle".to_owned(),
        };
        format!("{mode}&size={size}&gen={generation}")
    }
}

struct Params {
    mode: Mode,
    size: usize,
    generation: u64,
    /// 0: always sends; otherwise only in this slot's turns.
    slot: usize,
}

fn params(target: &str) -> Params {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut p = Params {
        mode: Mode::Idle,
        size: 256,
        generation: 0,
        slot: 0,
    };
    let mut rate = 10.0;
    let mut mode = "idle";
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "mode" => mode = v,
            "rate" => rate = v.parse().unwrap_or(10.0),
            "size" => p.size = v.parse().unwrap_or(256),
            "gen" => p.generation = v.parse().unwrap_or(0),
            "slot" => p.slot = v.parse().unwrap_or(0),
            _ => {}
        }
    }
    p.mode = match mode {
        "paced" => Mode::Paced { rate },
        "flood" => Mode::Flood,
        _ => Mode::Idle,
    };
    p
}

/// Slots whose paced streams take turns (slot 0, the default, is not one of them).
pub const SLOTS: usize = 4;

/// Whose turn it is, per slot: a stream waits on its own slot's flag only, so a change of turn
/// wakes the streams that start and none of the others (those that stop see it at their next
/// tick).
type Turns = Arc<[watch::Sender<bool>; SLOTS]>;

/// The running origins.
pub struct Origin {
    pub sse_ports: Vec<u16>,
    pub ws_ports: Vec<u16>,
    generation: watch::Sender<u64>,
    turns: Turns,
}

impl Origin {
    /// Several ports of each kind, because one proxy opens at most ~28 000 connections to one
    /// IP:port (the ephemeral port range, which also holds the closed ones in TIME_WAIT for a
    /// minute).
    pub async fn start(ports_each: usize) -> std::io::Result<Origin> {
        let (generation, _) = watch::channel(1u64);
        let turns: Turns = Arc::new(std::array::from_fn(|_| watch::channel(false).0));
        let mut ports = Vec::new();
        let mut ws_ports = Vec::new();
        for _ in 0..ports_each {
            let listener = listen()?;
            ports.push(listener.local_addr()?.port());
            tokio::spawn(accept_loop(
                listener,
                generation.subscribe(),
                Some(turns.clone()),
            ));
            let ws = listen()?;
            ws_ports.push(ws.local_addr()?.port());
            tokio::spawn(accept_loop(ws, generation.subscribe(), None));
        }
        Ok(Origin {
            sse_ports: ports,
            ws_ports,
            generation,
            turns,
        })
    }

    /// Makes it slot `slot`'s turn (1..SLOTS), or nobody's (0): from now on only that slot's
    /// paced streams send.
    pub fn take_turn(&self, slot: usize) {
        for (i, turn) in self.turns.iter().enumerate() {
            turn.send_if_modified(|on| std::mem::replace(on, i == slot && i != 0) != *on);
        }
    }

    /// The generation a new run's streams carry.
    pub fn generation(&self) -> u64 {
        *self.generation.borrow()
    }

    /// Closes every stream of the current run.
    pub fn end_run(&self) {
        self.generation.send_modify(|g| *g += 1);
    }
}

fn listen() -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
    socket.listen(4096)
}

/// Accepts SSE streams (given `turns`) or WebSocket ones (without).
async fn accept_loop(
    listener: TcpListener,
    generation: watch::Receiver<u64>,
    turns: Option<Turns>,
) {
    loop {
        match listener.accept().await {
            Ok((sock, _)) => {
                let generation = generation.clone();
                let turns = turns.clone();
                tokio::spawn(async move {
                    let _ = sock.set_nodelay(true);
                    let _ = match turns {
                        Some(turns) => serve_sse(sock, generation, &turns).await,
                        None => serve_ws(sock, generation).await,
                    };
                });
            }
            // Out of descriptors: back off, keep accepting.
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

/// A random phase for paced streams, so that 1000 streams do not tick together.
fn phase(period: Duration) -> Duration {
    static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut x = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed) ^ now_ns();
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    period.mul_f64((x % 10_000) as f64 / 10_000.0)
}

/// Paces a stream at `rate` events per second: ticks every 1/rate s (at least 1 ms, so high
/// rates send a few events per tick), at a random phase; each tick says how many events should
/// have been sent by now, so a late tick catches up instead of lowering the rate.
struct Pacer {
    rate: f64,
    start: tokio::time::Instant,
    ticker: tokio::time::Interval,
}

impl Pacer {
    fn new(rate: f64) -> Pacer {
        let rate = rate.max(0.001);
        let period = Duration::from_secs_f64(1.0 / rate).max(Duration::from_millis(1));
        let start = tokio::time::Instant::now() + phase(period);
        let mut ticker = tokio::time::interval_at(start, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Pacer {
            rate,
            start,
            ticker,
        }
    }

    /// Waits for the next tick; returns how many events are due in all.
    async fn tick(&mut self) -> u64 {
        self.ticker.tick().await;
        (self.start.elapsed().as_secs_f64() * self.rate) as u64 + 1
    }
}

/// Appends the text `<seq> <ns> xxx…` padded so that it is `len` bytes long.
pub fn stamp(out: &mut Vec<u8>, seq: u64, ts: u64, len: usize) {
    let start = out.len();
    let _ = write!(out, "{seq} {ts} ");
    let written = out.len() - start;
    out.resize(start + len.max(written), b'x');
}

/// One SSE event of exactly `size` bytes (for sizes above ~40): `data: <stamp>\n\n`.
fn sse_event(out: &mut Vec<u8>, seq: u64, ts: u64, size: usize) {
    out.extend_from_slice(b"data: ");
    stamp(out, seq, ts, size.saturating_sub(8));
    out.extend_from_slice(b"\n\n");
}

async fn read_head(sock: &mut TcpStream) -> std::io::Result<String> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 || buf.len() > 16 * 1024 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
            let line = String::from_utf8_lossy(line);
            return Ok(line.split(' ').nth(1).unwrap_or("/").to_owned());
        }
    }
}

async fn serve_sse(
    mut sock: TcpStream,
    mut generation: watch::Receiver<u64>,
    turns: &Turns,
) -> std::io::Result<()> {
    let target = read_head(&mut sock).await?;
    let p = params(&target);
    if p.generation != *generation.borrow_and_update() {
        return Ok(());
    }
    sock.write_all(RESPONSE_HEAD).await?;
    let (mut rd, mut wr) = sock.split();
    let mut scratch = [0u8; 64];
    let mut buf = Vec::with_capacity(p.size + 16);
    let mut seq = 0u64;
    match p.mode {
        Mode::Paced { rate } => {
            let mut turn = turns
                .get(p.slot)
                .filter(|_| p.slot != 0)
                .map(watch::Sender::subscribe);
            loop {
                // Waits for this slot's turn; then paces from a fresh phase, so that a turn
                // starts without a burst of the events its streams skipped.
                if let Some(turn) = turn.as_mut() {
                    while !*turn.borrow_and_update() {
                        tokio::select! {
                            changed = turn.changed() => changed.map_err(std::io::Error::other)?,
                            n = rd.read(&mut scratch) => if n? == 0 { return Ok(()) },
                            _ = generation.changed() => return Ok(()),
                        }
                    }
                }
                let mut pacer = Pacer::new(rate);
                // A turn's `due` counts from its start (at 1).
                let base = seq;
                loop {
                    tokio::select! {
                        due = pacer.tick() => {
                            if turn.as_ref().is_some_and(|t| !*t.borrow()) {
                                break;
                            }
                            let due = due + base;
                            buf.clear();
                            while seq < due {
                                chunk(&mut buf, |b| sse_event(b, seq, now_ns(), p.size));
                                seq += 1;
                            }
                            wr.write_all(&buf).await?;
                        }
                        n = rd.read(&mut scratch) => if n? == 0 { return Ok(()) },
                        _ = generation.changed() => return Ok(()),
                    }
                }
            }
        }
        Mode::Flood => {
            let per_write = (FLOOD_WRITE / p.size.max(1)).max(1);
            buf.reserve(per_write * p.size + 16);
            loop {
                if generation.has_changed().unwrap_or(true) {
                    return Ok(());
                }
                buf.clear();
                let ts = now_ns();
                chunk(&mut buf, |b| {
                    for _ in 0..per_write {
                        sse_event(b, seq, ts, p.size);
                        seq += 1;
                    }
                });
                wr.write_all(&buf).await?;
            }
        }
        Mode::Idle => {
            chunk(&mut buf, |b| sse_event(b, 0, now_ns(), p.size));
            wr.write_all(&buf).await?;
            drop(buf);
            tokio::select! {
                _ = rd.read(&mut scratch) => Ok(()),
                _ = generation.changed() => Ok(()),
            }
        }
    }
}

/// Wraps what `body` appends in one HTTP/1.1 chunk, with the size in plain hex as origins
/// write it (`100\r\n`, not zero-padded).
fn chunk(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    body(out);
    let size = format!("{:x}\r\n", out.len() - start);
    out.splice(start..start, size.bytes());
    out.extend_from_slice(b"\r\n");
}

// The handshake callback's error type is tungstenite's, large by its design.
#[allow(clippy::result_large_err)]
async fn serve_ws(sock: TcpStream, mut generation: watch::Receiver<u64>) -> std::io::Result<()> {
    use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
    let mut target = String::new();
    let ws = tokio_tungstenite::accept_hdr_async(sock, |req: &Request, resp: Response| {
        target = req.uri().to_string();
        Ok(resp)
    })
    .await
    .map_err(std::io::Error::other)?;
    let p = params(&target);
    if p.generation != *generation.borrow_and_update() {
        return Ok(());
    }
    let (mut tx, mut rx) = ws.split();
    let mut buf = Vec::with_capacity(p.size);
    let mut seq = 0u64;
    let text = |buf: &mut Vec<u8>, seq, ts| {
        buf.clear();
        stamp(buf, seq, ts, p.size);
        Message::text(String::from_utf8_lossy(buf).into_owned())
    };
    match p.mode {
        Mode::Paced { rate } => {
            let mut pacer = Pacer::new(rate);
            loop {
                tokio::select! {
                    due = pacer.tick() => {
                        while seq < due {
                            let msg = text(&mut buf, seq, now_ns());
                            tx.feed(msg).await.map_err(std::io::Error::other)?;
                            seq += 1;
                        }
                        tx.flush().await.map_err(std::io::Error::other)?;
                    }
                    m = rx.next() => if !matches!(m, Some(Ok(_))) { return Ok(()) },
                    _ = generation.changed() => break,
                }
            }
        }
        Mode::Flood => loop {
            if generation.has_changed().unwrap_or(true) {
                break;
            }
            let ts = now_ns();
            let per_write = (FLOOD_WRITE / p.size.max(1)).max(1);
            for _ in 0..per_write {
                let msg = text(&mut buf, seq, ts);
                tx.feed(msg).await.map_err(std::io::Error::other)?;
                seq += 1;
            }
            tx.flush().await.map_err(std::io::Error::other)?;
        },
        Mode::Idle => {
            let msg = text(&mut buf, 0, now_ns());
            tx.send(msg).await.map_err(std::io::Error::other)?;
            tokio::select! {
                _ = async { while let Some(Ok(_)) = rx.next().await {} } => return Ok(()),
                _ = generation.changed() => {}
            }
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    Ok(())
}
