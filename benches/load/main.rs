//! The load benchmark of issue 4: ssebridge against nginx (tuned for SSE) and a direct connection,
//! side by side, in one run on one machine. Run it with
//!
//! ```text
//! cargo bench --bench load
//! ```
//!
//! It starts its own origins (SSE and WebSocket, a send time stamped in every event), the release
//! ssebridge that cargo built for it, and nginx (installed from Debian when missing), drives them
//! with its own clients, and prints one table. Scale (defaults sized for ~10 minutes on 2 cores;
//! see BENCHMARKS.md) through environment variables:
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SSEBRIDGE_BENCH_ONLY` | all | scenarios to run, e.g. `P1,P3` (P4 comes with P1, P3 with P6) |
//! | `SSEBRIDGE_BENCH_REPS` | 3 | repetitions of every measurement |
//! | `SSEBRIDGE_BENCH_STREAMS` | 1000 | paced streams in P1 and P5 |
//! | `SSEBRIDGE_BENCH_RATE` | 10 | events per second per paced stream |
//! | `SSEBRIDGE_BENCH_EVENT_BYTES` | 256 | bytes per event on the wire |
//! | `SSEBRIDGE_BENCH_SECONDS` | 15 | measured seconds of each P1 run (P5: two thirds) |
//! | `SSEBRIDGE_BENCH_WINDOW` | 1 | seconds of each turn in P1, where the targets' streams take turns |
//! | `SSEBRIDGE_BENCH_FLOOD_SECONDS` | 4 | measured seconds of each P2 run (one stream, flood) |
//! | `SSEBRIDGE_BENCH_STEP_SECONDS` | 1 | measured seconds of each step of P5's one-stream rate search |
//! | `SSEBRIDGE_BENCH_IDLE_STREAMS` | 10000 | idle streams of P3 (and idle WebSocket connections of P3W) |
//! | `SSEBRIDGE_BENCH_MAX_STREAMS` | 50000 | where the P6 ramp stops (or at `..._MAX_RSS_MIB`, 2048) |
//!
//! P3 and P6 are capped by RLIMIT_NOFILE: the bench raises it as far as it may, and each stream
//! takes two descriptors in the proxy (and two in the bench: client and origin), so a hard limit
//! of 20 000 caps both at about 9 700 streams (the table says so when it happens).
//! | `SSEBRIDGE_BENCH_NGINX` | PATH, /usr/sbin | the nginx binary, or `none`; `SSEBRIDGE_BENCH_NO_INSTALL` skips apt |
//! | `SSEBRIDGE_BENCH_WRAP` | none | a command ssebridge runs under, e.g. `valgrind --tool=callgrind` |
//!
//! Without `--bench` (that is, under `cargo test --all-targets`) it runs a smoke version of P1
//! and P2 against the direct connection and ssebridge only, in a few seconds.

mod client;
mod origin;
mod procs;
mod report;
mod scenarios;
mod targets;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use scenarios::Bench;
use targets::Target;

/// The size of a run.
#[derive(Clone, Debug)]
pub struct Scale {
    pub reps: usize,
    pub streams: usize,
    pub rate: f64,
    pub event_bytes: usize,
    pub seconds: Duration,
    pub p5_seconds: Duration,
    pub flood_seconds: Duration,
    pub step_seconds: Duration,
    pub idle_streams: usize,
    pub max_streams: usize,
    pub max_rss_mib: u64,
    pub only: Vec<String>,
    pub with_nginx: bool,
    /// Streams run this long before a paced measurement starts.
    pub warmup: Duration,
    /// P1's targets take turns in windows this long.
    pub window: Duration,
    /// Wait for an idle machine before each measurement.
    pub wait_quiet: bool,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Scale {
    fn from_env() -> Scale {
        let seconds: f64 = env("SSEBRIDGE_BENCH_SECONDS", 15.0);
        let only: String = env("SSEBRIDGE_BENCH_ONLY", "P1,P2,P3,P3W,P4,P5,P6".to_owned());
        Scale {
            reps: env("SSEBRIDGE_BENCH_REPS", 3usize).max(1),
            streams: env("SSEBRIDGE_BENCH_STREAMS", 1000usize).max(1),
            rate: env("SSEBRIDGE_BENCH_RATE", 10.0f64),
            event_bytes: env("SSEBRIDGE_BENCH_EVENT_BYTES", 256usize).max(48),
            seconds: Duration::from_secs_f64(seconds),
            p5_seconds: Duration::from_secs_f64(seconds * 2.0 / 3.0),
            flood_seconds: Duration::from_secs_f64(env("SSEBRIDGE_BENCH_FLOOD_SECONDS", 4.0)),
            step_seconds: Duration::from_secs_f64(env("SSEBRIDGE_BENCH_STEP_SECONDS", 1.0)),
            idle_streams: env("SSEBRIDGE_BENCH_IDLE_STREAMS", 10_000usize).max(1),
            max_streams: env("SSEBRIDGE_BENCH_MAX_STREAMS", 50_000usize),
            max_rss_mib: env("SSEBRIDGE_BENCH_MAX_RSS_MIB", 2048u64),
            only: only
                .split(',')
                .map(|s| s.trim().to_ascii_uppercase())
                .collect(),
            with_nginx: true,
            warmup: Duration::from_secs(2),
            window: Duration::from_secs_f64(env("SSEBRIDGE_BENCH_WINDOW", 1.0f64).max(0.05)),
            wait_quiet: true,
        }
    }

    /// `cargo test`: a few seconds, the direct connection and ssebridge only.
    fn smoke() -> Scale {
        Scale {
            reps: 1,
            streams: 20,
            seconds: Duration::from_secs(1),
            p5_seconds: Duration::from_secs(1),
            flood_seconds: Duration::from_millis(500),
            step_seconds: Duration::from_millis(500),
            only: vec!["P1".to_owned(), "P2".to_owned()],
            with_nginx: false,
            warmup: Duration::from_millis(200),
            window: Duration::from_millis(250),
            wait_quiet: false,
            ..Scale::from_env()
        }
    }

    fn runs(&self, scenario: &str) -> bool {
        self.only.iter().any(|s| s == scenario)
    }
}

fn main() -> ExitCode {
    let bench = std::env::args().any(|a| a == "--bench");
    let scale = if bench {
        Scale::from_env()
    } else {
        Scale::smoke()
    };
    let deadline: u64 = env(
        "SSEBRIDGE_BENCH_DEADLINE_SECONDS",
        if bench { 45 * 60 } else { 120 },
    );
    // Whatever happens, the bench ends and takes its children with it.
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(deadline));
        eprintln!("load bench: deadline of {deadline} s passed; stopping");
        procs::kill_all();
        std::process::exit(3);
    });
    let nofile = procs::raise_nofile();
    let mut scale = scale;
    // Two descriptors per stream in the proxy and in the bench, and some to spare.
    let fd_cap = (nofile.saturating_sub(600) / 2) as usize;
    let capped = scale.max_streams > fd_cap || scale.idle_streams > fd_cap;
    scale.max_streams = scale.max_streams.min(fd_cap);
    if scale.idle_streams > fd_cap {
        scale.idle_streams = fd_cap / 1000 * 1000;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("load bench: no runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        tokio::spawn(async {
            use tokio::signal::unix::{signal, SignalKind};
            if let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                eprintln!("load bench: interrupted; stopping the proxies");
                procs::kill_all();
                std::process::exit(130);
            }
        });
        run(scale, nofile, bench, capped).await
    });
    // Tasks still holding sockets are dropped with the runtime, without waiting for them.
    runtime.shutdown_timeout(Duration::from_secs(1));
    code
}

async fn run(scale: Scale, nofile: u64, bench: bool, capped: bool) -> ExitCode {
    let ssebridge = PathBuf::from(env!("CARGO_BIN_EXE_ssebridge"));
    let nginx = if scale.with_nginx {
        targets::find_or_install_nginx()
    } else {
        None
    };
    eprintln!(
        "load bench: {} ({}), ssebridge {}, RLIMIT_NOFILE {nofile}, scale {scale:?}",
        if bench { "full" } else { "smoke (no --bench)" },
        nginx
            .as_ref()
            .map_or("no nginx".to_owned(), |n| targets::version(n)),
        ssebridge.display()
    );
    let started = Instant::now();
    let mut b = match Bench::new(scale.clone(), ssebridge, nginx, nofile).await {
        Ok(b) => b,
        Err(err) => {
            eprintln!("load bench: could not start the origin or the proxies: {err}");
            return ExitCode::FAILURE;
        }
    };
    if capped && (scale.runs("P3") || scale.runs("P3W") || scale.runs("P6")) {
        b.report.note(format!(
            "P3/P6: RLIMIT_NOFILE is {nofile} here and cannot be raised, so the idle and ramp \
             stream counts are capped at {} and {} (two descriptors per stream per process).",
            scale.idle_streams, scale.max_streams
        ));
    }
    if scale.runs("P1") || scale.runs("P4") {
        b.p1_p4().await;
    }
    if scale.runs("P2") {
        b.p2().await;
    }
    if scale.runs("P3") || scale.runs("P6") {
        b.p3_p6(scale.runs("P6")).await;
    }
    if scale.runs("P3W") {
        b.p3_ws().await;
    }
    if scale.runs("P5") {
        b.p5().await;
    }
    eprintln!(
        "load bench: done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("{}", b.report.table());
    // The smoke run fails when ssebridge forwarded nothing.
    let forwarded = [
        format!(
            "P1 {} streams x {}/s x {} B",
            scale.streams, scale.rate, scale.event_bytes
        ),
        format!("P2 1 stream flood, {} B events", scale.event_bytes),
    ]
    .iter()
    .any(|s| {
        ["events/s delivered", "events/s"]
            .iter()
            .any(|m| b.report.median(s, m, Target::Ssebridge).unwrap_or(0.0) > 0.0)
    });
    if !bench && !forwarded {
        eprintln!("load bench smoke: ssebridge forwarded no event");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
