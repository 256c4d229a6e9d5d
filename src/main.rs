//! The `ssebridge` command line: run the proxy, check a configuration, or run the demo.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "ssebridge",
    version,
    about = "A reverse proxy for Server-Sent Events and WebSocket"
)]
struct Cli {
    /// The configuration file.
    #[arg(long, short, global = true, default_value = "proxy.yaml")]
    config: PathBuf,
    /// Log output: human-readable lines or one JSON object per line. `RUST_LOG` sets the level.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Run,
    /// Validate the configuration: exit 0, or print each problem as FILE:LINE:COLUMN and exit 2.
    Check,
    /// Run with a built-in configuration in front of built-in demo origins.
    Demo {
        /// Where the demo proxy listens.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command.unwrap_or(Command::Run) {
        Command::Check => check(&cli.config),
        Command::Run => run_or_report(run(cli.config)),
        Command::Demo { listen } => run_or_report(demo(listen)),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn check(path: &Path) -> ExitCode {
    match ssebridge::config::load(path) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("{err}");
            ExitCode::from(2)
        }
    }
}

/// Exit 2 for a configuration problem, 1 for anything else.
fn run_or_report(result: anyhow::Result<Option<ssebridge::config::ConfigError>>) -> ExitCode {
    match result {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(config_error)) => {
            eprintln!("{config_error}");
            ExitCode::from(2)
        }
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The control runtime. The accept loops and the admin listener run on its one worker thread;
/// the main thread only waits for signals and does reloads, so a slow reload (reading
/// certificates and CA bundles) never holds up accepting. The connections themselves run on
/// the workers (`workers.rs`).
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")
}

fn run(path: PathBuf) -> anyhow::Result<Option<ssebridge::config::ConfigError>> {
    let config = match ssebridge::config::load(&path) {
        Ok(c) => c,
        Err(err) => return Ok(Some(err)),
    };
    runtime()?.block_on(async move {
        let shutdown = CancellationToken::new();
        let running = ssebridge::serve(&config, shutdown.clone()).await?;
        let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
        let reload_running = &running;
        let stop = stop_signal(shutdown.clone());
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = hangup.recv() => reload(&path, reload_running),
            }
        }
        running.wait().await;
        Ok(None)
    })
}

fn reload(path: &Path, running: &ssebridge::Running) {
    match ssebridge::config::load(path) {
        Ok(config) => match running.reload(&config) {
            Ok(()) => tracing::info!(config = %path.display(), "configuration reloaded"),
            Err(err) => {
                tracing::error!(error = %err, "reload refused; the running configuration stays")
            }
        },
        Err(err) => {
            for line in err.to_string().lines() {
                tracing::error!(
                    problem = line,
                    "reload refused; the running configuration stays"
                );
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT after cancelling `shutdown`.
async fn stop_signal(shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: draining"),
        _ = int.recv() => tracing::info!("SIGINT: draining"),
    }
    shutdown.cancel();
    Ok(())
}

fn demo(listen: SocketAddr) -> anyhow::Result<Option<ssebridge::config::ConfigError>> {
    runtime()?.block_on(async move {
        let shutdown = CancellationToken::new();
        let running = ssebridge::demo::start(listen, shutdown.clone()).await?;
        let proxy = running.local_addrs().first().copied().unwrap_or(listen);
        tracing::info!(
            "demo ready: open http://{proxy}/ in a browser, or run: curl -N http://{proxy}/events"
        );
        stop_signal(shutdown).await?;
        running.wait().await;
        Ok(None)
    })
}
