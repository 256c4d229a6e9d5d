//! Scenarios P1..P6 of issue 4. Each repetition runs every target once, in an order rotated per
//! repetition (so a drift of the machine does not always hit the same target), on the same
//! origin, with the same clients. P1 goes further: its targets' streams are open together and
//! take turns in short windows ([`Bench::run_turns`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::client::{self, Kind, Shared, Spec};
use crate::origin::{Mode, Origin};
use crate::procs;
use crate::report::{quantile, Report};
use crate::targets::{self, Proxy, Target};
use crate::Scale;

/// Clients connecting at once while a run opens its streams.
const CONNECTING: usize = 256;

pub struct Bench {
    pub scale: Scale,
    pub origin: Origin,
    pub report: Report,
    ssebridge_bin: PathBuf,
    nginx_bin: Option<PathBuf>,
    nofile: u64,
    nginx: Option<Proxy>,
    ssebridge: Option<Proxy>,
}

/// What one run of streams measured.
struct Run {
    events: u64,
    seconds: f64,
    /// Sorted, ns.
    latencies: Vec<u64>,
    /// CPU seconds of the proxy process(es) during the measurement.
    cpu: f64,
    /// Share of the machine's CPU in use during the measurement.
    busy: f64,
    /// Share of the machine's CPU used by neither the proxy nor the bench (other work: other
    /// processes, the kernel's softirq work for loopback traffic, and `stolen`).
    other: f64,
    /// Share of the machine's CPU the hypervisor took for other guests (part of `other`).
    stolen: f64,
    failed: usize,
}

impl Run {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    fn cpu_per_million(&self) -> f64 {
        self.cpu / self.events.max(1) as f64 * 1e6
    }

    fn us(&self, q: f64) -> f64 {
        quantile(&self.latencies, q) / 1000.0
    }
}

/// How a run's streams are opened and measured.
struct Shape {
    streams: usize,
    kind: Kind,
    mode: Mode,
    warmup: Duration,
    measure: Duration,
}

fn base_is_zero(shared: &Shared) -> bool {
    shared.established.load(Ordering::SeqCst) + shared.failed.load(Ordering::SeqCst) == 0
}

/// Waits (up to 10 s) until the machine is nearly idle, so other work on a shared machine
/// (a build) does not land inside a measurement; the `CPU of other work` rows show what remained.
async fn wait_quiet() {
    for _ in 0..40 {
        let j0 = procs::machine_jiffies();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let j1 = procs::machine_jiffies();
        if ((j1.busy - j0.busy) as f64) < 0.1 * (j1.total - j0.total).max(1) as f64 {
            return;
        }
    }
    eprintln!("load bench: the machine is busy with other work; measuring anyway");
}

/// Stops one run's clients; returns their latencies.
async fn stop_clients(shared: &Shared, mut set: JoinSet<Vec<u64>>) -> Vec<u64> {
    shared.stop.cancel();
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Ok(Some(res)) = tokio::time::timeout_at(deadline, set.join_next()).await {
        if let Ok(v) = res {
            all.extend(v);
        }
    }
    set.abort_all();
    all
}

/// The clocks [`Usage`] is counted on, read at one moment.
struct Mark {
    at: Instant,
    /// CPU seconds of the proxy process(es) so far.
    proxy: f64,
    /// CPU seconds of the bench process (origin and clients) so far.
    own: f64,
    jiffies: procs::Jiffies,
}

impl Mark {
    fn now(proxy: Option<&Proxy>) -> Mark {
        Mark {
            at: Instant::now(),
            proxy: proxy.map_or(0.0, Proxy::cpu_seconds),
            own: procs::cpu_seconds(std::process::id()),
            jiffies: procs::machine_jiffies(),
        }
    }
}

/// What the machine and the processes used over some stretches of time.
#[derive(Clone, Copy, Default)]
struct Usage {
    seconds: f64,
    /// CPU seconds of the proxy process(es).
    proxy: f64,
    /// CPU seconds of the bench process (origin and clients).
    own: f64,
    jiffies: procs::Jiffies,
}

impl Usage {
    /// Adds what was used since `start`.
    fn add_since(&mut self, proxy: Option<&Proxy>, start: Mark) {
        let end = Mark::now(proxy);
        self.seconds += (end.at - start.at).as_secs_f64();
        self.proxy += end.proxy - start.proxy;
        self.own += end.own - start.own;
        let (j, j0) = (end.jiffies, start.jiffies);
        self.jiffies.busy += j.busy - j0.busy;
        self.jiffies.total += j.total - j0.total;
        self.jiffies.steal += j.steal - j0.steal;
    }

    /// The run these figures belong to.
    fn run(&self, events: u64, failed: usize, mut latencies: Vec<u64>) -> Run {
        latencies.sort_unstable();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let total = self.jiffies.total.max(1) as f64;
        let busy = self.jiffies.busy as f64 / total;
        let seconds = self.seconds.max(1e-9);
        Run {
            events,
            seconds,
            latencies,
            cpu: self.proxy,
            busy,
            other: (busy - (self.proxy + self.own) / seconds / cores).max(0.0),
            stolen: self.jiffies.steal as f64 / total,
            failed,
        }
    }
}

const QUANTILES: [(f64, &str); 3] = [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")];

fn rotated<T: Copy>(items: &[T], rep: usize) -> Vec<T> {
    let mut v = items.to_vec();
    let len = v.len();
    v.rotate_left(rep % len);
    v
}

impl Bench {
    pub async fn new(
        scale: Scale,
        ssebridge_bin: PathBuf,
        nginx_bin: Option<PathBuf>,
        nofile: u64,
    ) -> std::io::Result<Bench> {
        // 8 ports: 50 000 upstream connections fit the ephemeral range 4 times over.
        let origin = Origin::start(8).await?;
        let mut bench = Bench {
            scale,
            origin,
            report: Report::default(),
            ssebridge_bin,
            nginx_bin,
            nofile,
            nginx: None,
            ssebridge: None,
        };
        bench.restart(Target::Ssebridge).await?;
        if bench.nginx_bin.is_some() {
            bench.restart(Target::Nginx).await?;
        }
        Ok(bench)
    }

    pub fn targets(&self) -> Vec<Target> {
        let mut t = vec![Target::Direct];
        if self.nginx.is_some() {
            t.push(Target::Nginx);
        }
        t.push(Target::Ssebridge);
        t
    }

    fn proxy(&self, target: Target) -> Option<&Proxy> {
        match target {
            Target::Direct => None,
            Target::Nginx => self.nginx.as_ref(),
            Target::Ssebridge => self.ssebridge.as_ref(),
        }
    }

    /// A fresh proxy process (memory scenarios start from a clean heap).
    async fn restart(&mut self, target: Target) -> std::io::Result<()> {
        match target {
            Target::Direct => {}
            Target::Nginx => {
                self.nginx = None;
                if let Some(bin) = &self.nginx_bin {
                    self.nginx = Some(
                        targets::start_nginx(
                            bin,
                            &self.origin,
                            self.nofile,
                            self.scale.max_streams.max(self.scale.streams),
                        )
                        .await?,
                    );
                }
            }
            Target::Ssebridge => {
                self.ssebridge = None;
                self.ssebridge =
                    Some(targets::start_ssebridge(&self.ssebridge_bin, &self.origin).await?);
            }
        }
        Ok(())
    }

    fn spec(
        &self,
        target: Target,
        kind: Kind,
        ws_origin: bool,
        k: usize,
        query: &str,
        latency: bool,
    ) -> Spec {
        let proxy = self.proxy(target);
        let (addr, path): (SocketAddr, String) = if ws_origin {
            targets::ws_endpoint(target, &self.origin, proxy, k)
        } else {
            targets::sse_endpoint(target, &self.origin, proxy, k)
        };
        Spec {
            addr,
            path: format!("{path}?{query}"),
            kind,
            latency,
        }
    }

    /// Opens `specs` with at most `CONNECTING` at once; waits until each got its first event
    /// or failed. Returns false when the deadline passed first.
    async fn open(shared: &Arc<Shared>, set: &mut JoinSet<Vec<u64>>, specs: Vec<Spec>) -> bool {
        if base_is_zero(shared) {
            client::fresh_sources();
        }
        let base = shared.established.load(Ordering::SeqCst) + shared.failed.load(Ordering::SeqCst);
        let deadline =
            Instant::now() + Duration::from_secs(30) + Duration::from_millis(specs.len() as u64);
        let total = specs.len();
        let done = || {
            shared.established.load(Ordering::SeqCst) + shared.failed.load(Ordering::SeqCst) - base
        };
        for (i, spec) in specs.into_iter().enumerate() {
            while i >= done() + CONNECTING {
                if Instant::now() > deadline {
                    return false;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            let shared = shared.clone();
            set.spawn(async move { client::run(spec, &shared).await });
        }
        let mut report = Instant::now() + Duration::from_secs(2);
        while done() < total {
            if Instant::now() > deadline {
                return false;
            }
            if Instant::now() > report {
                report += Duration::from_secs(2);
                eprintln!(
                    "  ... {} of {total} streams open, {} failed",
                    done(),
                    shared.failed.load(Ordering::SeqCst)
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Stops a run's clients and the origin's streams; returns the clients' latencies.
    async fn close(&self, shared: &Shared, set: JoinSet<Vec<u64>>) -> Vec<u64> {
        let all = stop_clients(shared, set).await;
        self.origin.end_run();
        // Let the proxies see the closes before the next run.
        tokio::time::sleep(Duration::from_millis(300)).await;
        all
    }

    async fn run(&self, target: Target, ws_origin: bool, shape: &Shape) -> Run {
        let shared = Arc::new(Shared::default());
        let mut set = JoinSet::new();
        let query = shape
            .mode
            .query(self.scale.event_bytes, self.origin.generation());
        // Latencies of paced runs; a one-stream rate search only counts.
        let latency = matches!(shape.mode, Mode::Paced { rate } if rate <= 1000.0);
        let specs = (0..shape.streams)
            .map(|k| self.spec(target, shape.kind, ws_origin, k, &query, latency))
            .collect();
        if self.scale.wait_quiet {
            wait_quiet().await;
        }
        Self::open(&shared, &mut set, specs).await;
        tokio::time::sleep(shape.warmup).await;
        let proxy = self.proxy(target);
        let mut usage = Usage::default();
        let start = Mark::now(proxy);
        shared.measure(true);
        tokio::time::sleep(shape.measure).await;
        shared.measure(false);
        usage.add_since(proxy, start);
        let events = shared.events.load(Ordering::SeqCst);
        let failed = shared.failed.load(Ordering::SeqCst);
        let latencies = self.close(&shared, set).await;
        usage.run(events, failed, latencies)
    }

    /// Runs paced SSE streams of every one of `targets` at once, open together, taking turns:
    /// windows of `scale.window`, round after round (each round in a rotated order) until each
    /// target had `shape.measure`. Only the streams whose turn it is send, so each target meets
    /// the same machine (a noisy neighbour's burst lands on all of them alike, not on the one
    /// that happened to run then), and each target's figures are summed over its own windows.
    async fn run_turns(&self, targets: &[Target], shape: &Shape) -> Vec<(Target, Run)> {
        let Mode::Paced { rate } = shape.mode else {
            unreachable!("turns are for paced SSE streams");
        };
        let query = shape
            .mode
            .query(self.scale.event_bytes, self.origin.generation());
        if self.scale.wait_quiet {
            wait_quiet().await;
        }
        let mut clients = Vec::new();
        for (i, &target) in targets.iter().enumerate() {
            let slot = i + 1;
            let query = format!("{query}&slot={slot}");
            let specs = (0..shape.streams)
                .map(|k| self.spec(target, shape.kind, false, k, &query, rate <= 1000.0))
                .collect();
            // A stream counts as open on its first event, so it opens in its slot's turn.
            self.origin.take_turn(slot);
            let shared = Arc::new(Shared::default());
            let mut set = JoinSet::new();
            Self::open(&shared, &mut set, specs).await;
            clients.push((shared, set));
        }
        let window = self.scale.window.min(shape.measure);
        let rounds = (shape.measure.as_secs_f64() / window.as_secs_f64()).ceil() as usize;
        // A warm-up round (instead of `shape.warmup`), then every target measures from then on:
        // events reach a client only in its target's turns (and right after, for those still on
        // their way).
        let mut usage = vec![Usage::default(); targets.len()];
        for round in 0..=rounds {
            for i in rotated(&(0..targets.len()).collect::<Vec<_>>(), round) {
                let proxy = self.proxy(targets[i]);
                self.origin.take_turn(i + 1);
                let start = Mark::now(proxy);
                tokio::time::sleep(window).await;
                if round > 0 {
                    usage[i].add_since(proxy, start);
                }
            }
            if round == 0 {
                clients.iter().for_each(|(shared, _)| shared.measure(true));
            }
        }
        self.origin.take_turn(0);
        clients.iter().for_each(|(shared, _)| shared.measure(false));
        let mut runs = Vec::new();
        for ((shared, set), (&target, usage)) in clients.into_iter().zip(targets.iter().zip(usage))
        {
            let events = shared.events.load(Ordering::SeqCst);
            let failed = shared.failed.load(Ordering::SeqCst);
            let latencies = stop_clients(&shared, set).await;
            runs.push((target, usage.run(events, failed, latencies)));
        }
        self.origin.end_run();
        tokio::time::sleep(Duration::from_millis(300)).await;
        runs
    }

    fn log(&self, scenario: &str, rep: usize, who: &str, run: &Run) {
        eprintln!(
            "{scenario} rep {} {who:>16}: {:>9.0} ev/s  p50 {:>8.1} µs  p99 {:>8.1} µs  p99.9 {:>8.1} µs  proxy cpu {:.2} s  machine busy {:.0}% (other work {:.0}%, stolen {:.0}%)  failed {}",
            rep + 1,
            run.rate(),
            run.us(0.5),
            run.us(0.99),
            run.us(0.999),
            run.cpu,
            run.busy * 100.0,
            run.other * 100.0,
            run.stolen * 100.0,
            run.failed
        );
    }

    /// P1 (added latency) and P4 (CPU per million events) from the same runs.
    pub async fn p1_p4(&mut self) {
        let shape = Shape {
            streams: self.scale.streams,
            kind: Kind::Sse,
            mode: Mode::Paced {
                rate: self.scale.rate,
            },
            warmup: self.scale.warmup,
            measure: self.scale.seconds,
        };
        let s = format!(
            "P1 {} streams x {}/s x {} B",
            self.scale.streams, self.scale.rate, self.scale.event_bytes
        );
        for rep in 0..self.scale.reps {
            let mut direct = None;
            let runs = self.run_turns(&rotated(&self.targets(), rep), &shape).await;
            for (target, run) in &runs {
                self.log("P1", rep, target.name(), run);
                if *target == Target::Direct {
                    direct = Some(QUANTILES.map(|(q, _)| run.us(q)));
                }
            }
            for (target, run) in runs {
                let r = &mut self.report;
                r.add(&s, "events/s delivered", target, run.rate());
                for (i, (q, name)) in QUANTILES.iter().enumerate() {
                    r.add(&s, &format!("latency {name} (µs)"), target, run.us(*q));
                    if let (Some(d), true) = (direct, target != Target::Direct) {
                        r.add(
                            &s,
                            &format!("added latency {name} (µs)"),
                            target,
                            run.us(*q) - d[i],
                        );
                    }
                }
                r.add(&s, "machine CPU busy (%)", target, run.busy * 100.0);
                r.add(&s, "CPU of other work (%)", target, run.other * 100.0);
                r.add(&s, "CPU stolen by the host (%)", target, run.stolen * 100.0);
                if target != Target::Direct {
                    r.add(
                        "P4 CPU (P1 runs)",
                        "proxy CPU s per 1M events",
                        target,
                        run.cpu_per_million(),
                    );
                }
            }
        }
    }

    /// P2: one stream, as fast as the origin can send.
    pub async fn p2(&mut self) {
        let shape = Shape {
            streams: 1,
            kind: Kind::Sse,
            mode: Mode::Flood,
            warmup: Duration::from_millis(500),
            measure: self.scale.flood_seconds,
        };
        let s = format!("P2 1 stream flood, {} B events", self.scale.event_bytes);
        for rep in 0..self.scale.reps {
            for target in rotated(&self.targets(), rep) {
                let run = self.run(target, false, &shape).await;
                self.log("P2", rep, target.name(), &run);
                self.report.add(&s, "events/s", target, run.rate());
                self.report.add(
                    &s,
                    "MB/s",
                    target,
                    run.rate() * self.scale.event_bytes as f64 / 1e6,
                );
                if target != Target::Direct {
                    self.report.add(
                        &s,
                        "proxy CPU s per 1M events",
                        target,
                        run.cpu_per_million(),
                    );
                }
                self.report
                    .add(&s, "machine CPU busy (%)", target, run.busy * 100.0);
            }
        }
    }

    /// P3 (KiB per idle stream at `idle_streams`) and P6 (streams held per GiB, ramping to
    /// `max_streams` or `max_rss`), from one ramp per proxy and repetition on a fresh process.
    pub async fn p3_p6(&mut self, to_max: bool) {
        let proxies: Vec<Target> = self
            .targets()
            .into_iter()
            .filter(|t| *t != Target::Direct)
            .collect();
        let p3 = format!("P3 {} idle streams", self.scale.idle_streams);
        let p6 = format!(
            "P6 ramp to {} streams or {} MiB",
            self.scale.max_streams, self.scale.max_rss_mib
        );
        for rep in 0..self.scale.reps {
            for target in rotated(&proxies, rep) {
                if !self.fresh(target, "P3", rep).await {
                    continue;
                }
                let mut rows: Vec<(&str, &str, f64)> = Vec::new();
                let proxy = self.proxy(target).expect("restarted");
                let idle = proxy.rss_kib();
                let shared = Arc::new(Shared::default());
                let mut set = JoinSet::new();
                let query = Mode::Idle.query(self.scale.event_bytes, self.origin.generation());
                let mut opened = 0usize;
                let step = |n: usize, opened: &mut usize| {
                    let specs: Vec<Spec> = (*opened..n)
                        .map(|k| self.spec(target, Kind::Sse, false, k, &query, false))
                        .collect();
                    *opened = n;
                    specs
                };
                let t0 = Instant::now();
                let ok = Self::open(
                    &shared,
                    &mut set,
                    step(self.scale.idle_streams, &mut opened),
                )
                .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let held = shared.established.load(Ordering::SeqCst);
                let rss = proxy.rss_kib();
                let per_stream = rss.saturating_sub(idle) as f64 / held.max(1) as f64;
                eprintln!(
                    "P3 rep {} {:>9}: idle {} KiB, {} streams in {:.1} s -> {} KiB ({:.2} KiB/stream){}",
                    rep + 1,
                    target.name(),
                    idle,
                    held,
                    t0.elapsed().as_secs_f64(),
                    rss,
                    per_stream,
                    if ok { "" } else { " (incomplete)" }
                );
                rows.push((&p3, "idle process RSS (MiB)", idle as f64 / 1024.0));
                if held >= self.scale.idle_streams * 99 / 100 {
                    rows.push((
                        &p3,
                        "KiB per stream: (RSS - idle RSS) / streams",
                        per_stream,
                    ));
                }
                if to_max {
                    let mut rss = rss;
                    let cap = self.scale.max_rss_mib * 1024;
                    while opened < self.scale.max_streams
                        && rss < cap
                        && shared.failed.load(Ordering::SeqCst) < 1 + opened / 200
                    {
                        let n = (opened + 5000).min(self.scale.max_streams);
                        if !Self::open(&shared, &mut set, step(n, &mut opened)).await {
                            break;
                        }
                        rss = proxy.rss_kib();
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let held = shared.established.load(Ordering::SeqCst);
                    let rss = proxy.rss_kib();
                    let failed = shared.failed.load(Ordering::SeqCst);
                    eprintln!(
                        "P6 rep {} {:>9}: {} streams held ({} failed) in {:.1} s, RSS {} MiB",
                        rep + 1,
                        target.name(),
                        held,
                        failed,
                        t0.elapsed().as_secs_f64(),
                        rss / 1024
                    );
                    rows.push((&p6, "streams held", held as f64));
                    rows.push((&p6, "RSS at the top (MiB)", rss as f64 / 1024.0));
                    rows.push((
                        &p6,
                        "streams per GiB of RSS",
                        held as f64 / (rss as f64 / (1024.0 * 1024.0)),
                    ));
                }
                self.close(&shared, set).await;
                for (s, m, v) in rows {
                    self.report.add(s, m, target, v);
                }
                // Let the proxy drop 50 000 connections before the next ramp.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// A fresh process of `target` for a memory measurement, once the machine is quiet; false
    /// (and a line saying why) when it would not start.
    async fn fresh(&mut self, target: Target, scenario: &str, rep: usize) -> bool {
        if self.scale.wait_quiet {
            wait_quiet().await;
        }
        if let Err(err) = self.restart(target).await {
            eprintln!(
                "{scenario} rep {} {}: restart failed: {err}",
                rep + 1,
                target.name()
            );
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        true
    }

    /// P3W: resident KiB per idle WebSocket connection (client -> proxy -> WebSocket origin,
    /// one message each, then silence), at P3's count, on a fresh process per repetition.
    pub async fn p3_ws(&mut self) {
        let proxies: Vec<Target> = self
            .targets()
            .into_iter()
            .filter(|t| *t != Target::Direct)
            .collect();
        let name = format!("P3W {} idle WebSocket connections", self.scale.idle_streams);
        for rep in 0..self.scale.reps {
            for target in rotated(&proxies, rep) {
                if !self.fresh(target, "P3W", rep).await {
                    continue;
                }
                let proxy = self.proxy(target).expect("restarted");
                let idle = proxy.rss_kib();
                let shared = Arc::new(Shared::default());
                let mut set = JoinSet::new();
                let query = Mode::Idle.query(self.scale.event_bytes, self.origin.generation());
                let specs = (0..self.scale.idle_streams)
                    .map(|k| self.spec(target, Kind::Ws, true, k, &query, false))
                    .collect();
                let ok = Self::open(&shared, &mut set, specs).await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let held = shared.established.load(Ordering::SeqCst);
                let rss = proxy.rss_kib();
                let per_conn = rss.saturating_sub(idle) as f64 / held.max(1) as f64;
                eprintln!(
                    "P3W rep {} {:>9}: idle {idle} KiB, {held} connections -> {rss} KiB ({per_conn:.2} KiB/connection){}",
                    rep + 1,
                    target.name(),
                    if ok { "" } else { " (incomplete)" }
                );
                self.close(&shared, set).await;
                if held >= self.scale.idle_streams * 99 / 100 {
                    self.report.add(
                        &name,
                        "KiB per connection: (RSS - idle RSS) / connections",
                        target,
                        per_conn,
                    );
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }

    /// The highest rate one stream from the WebSocket origin sustains: offered rates double
    /// from 12 500 msg/s until a run delivers less than 95 % of its rate or the proxy cuts the
    /// client (ssebridge cuts a client that falls `client_buffer` behind instead of slowing the
    /// origin down, SPEC 10 "Slow clients"), then three halvings of the last step narrow it
    /// down (to within 1/16 of the rate); returns the best run that kept up.
    async fn max_rate(&self, rep: usize, name: &str, target: Target, kind: Kind) -> Option<Run> {
        let mut rate = 12_500.0;
        let mut best: Option<(f64, Run)> = None;
        let mut failed_at = None;
        while rate <= 3_200_000.0 {
            match self.rate_step(rep, name, target, kind, rate).await {
                Ok(run) => best = Some((rate, run)),
                Err(()) => {
                    failed_at = Some(rate);
                    break;
                }
            }
            rate *= 2.0;
        }
        if let (Some(mut bad), Some((good, _))) = (failed_at, &best) {
            let mut good = *good;
            for _ in 0..3 {
                let mid = (good + bad) / 2.0;
                match self.rate_step(rep, name, target, kind, mid).await {
                    Ok(run) => {
                        good = mid;
                        best = Some((mid, run));
                    }
                    Err(()) => bad = mid,
                }
            }
        }
        if let Some((_, run)) = &best {
            self.log("P5 rate", rep, name, run);
        }
        best.map(|(_, run)| run)
    }

    /// One step of the rate search: the run when it kept up with `rate`.
    async fn rate_step(
        &self,
        rep: usize,
        name: &str,
        target: Target,
        kind: Kind,
        rate: f64,
    ) -> Result<Run, ()> {
        let shape = Shape {
            streams: 1,
            kind,
            mode: Mode::Paced { rate },
            warmup: Duration::from_millis(300),
            measure: self.scale.step_seconds,
        };
        let run = self.run(target, true, &shape).await;
        if run.failed == 0 && run.rate() >= 0.95 * rate {
            return Ok(run);
        }
        eprintln!(
            "P5 rate rep {} {name:>16}: offered {rate:.0} msg/s, delivered {:.0}, {}",
            rep + 1,
            run.rate(),
            if run.failed > 0 {
                "client cut"
            } else {
                "fell behind"
            }
        );
        Err(())
    }

    /// P5: SSE clients of a WebSocket origin through ssebridge's bridge, against WebSocket
    /// clients of the same origin directly, through nginx and through ssebridge.
    pub async fn p5(&mut self) {
        #[derive(Clone, Copy, PartialEq)]
        enum Who {
            Ws(Target),
            Bridge,
        }
        let mut who: Vec<Who> = self.targets().into_iter().map(Who::Ws).collect();
        who.push(Who::Bridge);
        let paced = Shape {
            streams: self.scale.streams,
            kind: Kind::Ws,
            mode: Mode::Paced {
                rate: self.scale.rate,
            },
            warmup: self.scale.warmup,
            measure: self.scale.p5_seconds,
        };
        let sp = format!(
            "P5 WS passthrough {} x {}/s",
            self.scale.streams, self.scale.rate
        );
        let sb = format!(
            "P5 bridge WS->SSE {} x {}/s",
            self.scale.streams, self.scale.rate
        );
        let fp = "P5 WS passthrough, 1 stream, rate search".to_owned();
        let fb = "P5 bridge WS->SSE, 1 stream, rate search".to_owned();
        for rep in 0..self.scale.reps {
            let mut direct = None;
            let mut runs = Vec::new();
            for w in rotated(&who, rep) {
                let (target, kind, name) = match w {
                    Who::Ws(t) => (t, Kind::Ws, format!("{} ws", t.name())),
                    Who::Bridge => (Target::Ssebridge, Kind::Sse, "ssebridge bridge".to_owned()),
                };
                let run = self.run(target, true, &Shape { kind, ..paced }).await;
                self.log("P5", rep, &name, &run);
                let fl = self.max_rate(rep, &name, target, kind).await;
                if w == Who::Ws(Target::Direct) {
                    direct = Some(QUANTILES.map(|(q, _)| run.us(q)));
                }
                runs.push((w, run, fl));
            }
            for (w, run, fl) in runs {
                let r = &mut self.report;
                // The bridge rows compare ssebridge's bridge with WebSocket passthrough direct
                // and through nginx; the passthrough rows hold ssebridge's WebSocket passthrough.
                let pass = (sp.as_str(), fp.as_str());
                let bridge = (sb.as_str(), fb.as_str());
                let (rows, target) = match w {
                    Who::Ws(Target::Ssebridge) => (vec![pass], Target::Ssebridge),
                    Who::Ws(t) => (vec![pass, bridge], t),
                    Who::Bridge => (vec![bridge], Target::Ssebridge),
                };
                for (s, f) in rows {
                    r.add(s, "msg/s delivered", target, run.rate());
                    for (i, (q, name)) in QUANTILES.iter().enumerate() {
                        r.add(s, &format!("latency {name} (µs)"), target, run.us(*q));
                        if let (Some(d), true) = (direct, target != Target::Direct) {
                            r.add(
                                s,
                                &format!("added latency {name} (µs)"),
                                target,
                                run.us(*q) - d[i],
                            );
                        }
                    }
                    if target != Target::Direct {
                        r.add(s, "proxy CPU s per 1M msgs", target, run.cpu_per_million());
                    }
                    if let Some(fl) = &fl {
                        r.add(f, "highest msg/s sustained", target, fl.rate());
                        if target != Target::Direct {
                            r.add(f, "proxy CPU s per 1M msgs", target, fl.cpu_per_million());
                        }
                    }
                }
            }
        }
        let ratio = |a: &str, b: &str, m: &str| {
            Some(
                self.report.median(a, m, Target::Ssebridge)?
                    / self.report.median(b, m, Target::Ssebridge)?,
            )
        };
        if let (Some(paced), Some(fl)) = (
            ratio(&sb, &sp, "msg/s delivered"),
            ratio(&fb, &fp, "highest msg/s sustained"),
        ) {
            self.report.note(format!(
                "P5: ssebridge bridge / ssebridge WS passthrough: {paced:.2} of the paced msg/s, {fl:.2} of the highest one-stream msg/s."
            ));
        }
    }
}
