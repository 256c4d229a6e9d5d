//! What the clients connect to: the origin itself (the physical baseline), nginx tuned as an
//! SSE proxy, and ssebridge (the release binary cargo built for this bench). The proxies get the
//! same routes: `/s0` .. `/sN` to the SSE origin's ports and `/w0` .. `/wN` to the WebSocket origin's.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::origin::Origin;
use crate::procs::{self, Proc};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    Direct,
    Nginx,
    Ssebridge,
}

impl Target {
    pub fn name(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Nginx => "nginx",
            Target::Ssebridge => "ssebridge",
        }
    }
}

/// A running proxy.
pub struct Proxy {
    proc: Proc,
    pub port: u16,
    with_workers: bool,
}

impl Proxy {
    /// Starts `command` with its stderr in `log` and waits until it listens on `port`.
    async fn spawn(
        mut command: Command,
        log: std::fs::File,
        port: u16,
        with_workers: bool,
    ) -> std::io::Result<Proxy> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let mut proc = Proc::spawn(command)?;
        procs::wait_listening(port, &mut proc).await?;
        Ok(Proxy {
            proc,
            port,
            with_workers,
        })
    }

    /// The pids whose memory and CPU count: nginx's master and workers, or ssebridge.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids = vec![self.proc.pid()];
        if self.with_workers {
            pids.extend(procs::children(self.proc.pid()));
        }
        pids
    }

    pub fn rss_kib(&self) -> u64 {
        self.pids().into_iter().map(procs::rss_kib).sum()
    }

    pub fn cpu_seconds(&self) -> f64 {
        self.pids().into_iter().map(procs::cpu_seconds).sum()
    }
}

/// Where a client of `target` connects for SSE stream `k`.
pub fn sse_endpoint(
    target: Target,
    origin: &Origin,
    proxy: Option<&Proxy>,
    k: usize,
) -> (SocketAddr, String) {
    endpoint(target, &origin.sse_ports, "/s", proxy, k)
}

/// Where a client of `target` connects for WebSocket stream `k`.
pub fn ws_endpoint(
    target: Target,
    origin: &Origin,
    proxy: Option<&Proxy>,
    k: usize,
) -> (SocketAddr, String) {
    endpoint(target, &origin.ws_ports, "/w", proxy, k)
}

/// Stream `k` goes to origin port `k` (modulo their number), directly or through the proxy,
/// whose route `{prefix}{k}` leads there.
fn endpoint(
    target: Target,
    ports: &[u16],
    prefix: &str,
    proxy: Option<&Proxy>,
    k: usize,
) -> (SocketAddr, String) {
    let k = k % ports.len();
    let port = match (target, proxy) {
        (Target::Direct, _) | (_, None) => ports[k],
        (_, Some(p)) => p.port,
    };
    (
        SocketAddr::from(([127, 0, 0, 1], port)),
        format!("{prefix}{k}"),
    )
}

/// The directory the bench writes its configurations and logs to.
pub fn work_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("ssebridge-load");
    let _ = std::fs::create_dir_all(&dir);
    dir
}

pub async fn start_ssebridge(binary: &Path, origin: &Origin) -> std::io::Result<Proxy> {
    let dir = work_dir();
    let port = procs::free_port();
    let mut yaml = format!(
        "# Written by benches/load: every SSE origin port and the WebSocket origin.\n\
         listeners:\n  - bind: 127.0.0.1:{port}\n\
         drain_timeout: 1s\n\
         defaults:\n  heartbeat: 60s   # on, but never due inside a measurement\n\
         routes:\n"
    );
    for (k, p) in origin.sse_ports.iter().enumerate() {
        let _ = writeln!(
            yaml,
            "  - path: /s{k}\n    upstream: http://127.0.0.1:{p}/s{k}"
        );
    }
    for (k, p) in origin.ws_ports.iter().enumerate() {
        let _ = writeln!(yaml, "  - path: /w{k}\n    upstream: ws://127.0.0.1:{p}/ws");
    }
    let config = dir.join("ssebridge.yaml");
    std::fs::write(&config, yaml)?;
    let log = std::fs::File::create(dir.join("ssebridge.log"))?;
    // `SSEBRIDGE_BENCH_WRAP="valgrind --tool=callgrind"` runs ssebridge under a profiler.
    let wrap: Vec<String> = std::env::var("SSEBRIDGE_BENCH_WRAP")
        .map(|w| w.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    let mut command = match wrap.split_first() {
        Some((tool, args)) => {
            let mut c = Command::new(tool);
            c.args(args).arg(binary);
            c
        }
        None => Command::new(binary),
    };
    command.arg("--config").arg(&config).env("RUST_LOG", "warn");
    Proxy::spawn(command, log, port, false).await
}

/// nginx as a well-tuned SSE proxy: no buffering or caching, HTTP/1.1 keepalive upstreams,
/// one worker per core with SO_REUSEPORT, room for the run's streams (two connections each),
/// no access log (ssebridge runs at log level `warn` too).
fn nginx_conf(prefix: &Path, port: u16, origin: &Origin, nofile: u64, streams: usize) -> String {
    // Sized to the run (nginx preallocates its connection table): two per stream, and spare.
    let connections = (2 * streams as u64 + 1024).min(nofile.saturating_sub(64));
    let p = prefix.display();
    let user = if is_root() { "user root root;\n" } else { "" };
    let mut conf = format!(
        "# Written by benches/load.\n{user}daemon off;\nmaster_process on;\n\
         worker_processes auto;\nworker_rlimit_nofile {nofile};\n\
         pid {p}/nginx.pid;\nerror_log {p}/error.log warn;\n\
         events {{\n  worker_connections {connections};\n  multi_accept on;\n  use epoll;\n}}\n\
         http {{\n  access_log off;\n  tcp_nodelay on;\n\
         client_body_temp_path {p}/tmp/body;\n  proxy_temp_path {p}/tmp/proxy;\n\
         fastcgi_temp_path {p}/tmp/fastcgi;\n  uwsgi_temp_path {p}/tmp/uwsgi;\n\
         scgi_temp_path {p}/tmp/scgi;\n"
    );
    for (k, op) in origin.sse_ports.iter().enumerate() {
        let _ = writeln!(
            conf,
            "  upstream sse{k} {{ server 127.0.0.1:{op}; keepalive 64; }}"
        );
    }
    for (k, p) in origin.ws_ports.iter().enumerate() {
        let _ = writeln!(conf, "  upstream ws{k} {{ server 127.0.0.1:{p}; }}");
    }
    let _ = writeln!(conf, "  server {{\n    listen 127.0.0.1:{port} reuseport;");
    for k in 0..origin.sse_ports.len() {
        let _ = writeln!(
            conf,
            "    location = /s{k} {{\n      proxy_pass http://sse{k};\n      \
             proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      \
             proxy_buffering off;\n      proxy_cache off;\n      \
             proxy_read_timeout 1h;\n      proxy_send_timeout 1h;\n    }}"
        );
    }
    for k in 0..origin.ws_ports.len() {
        let _ = writeln!(
            conf,
            "    location = /w{k} {{\n      proxy_pass http://ws{k}/ws;\n      proxy_http_version 1.1;\n      \
             proxy_set_header Upgrade $http_upgrade;\n      proxy_set_header Connection \"upgrade\";\n      \
             proxy_buffering off;\n      proxy_read_timeout 1h;\n      proxy_send_timeout 1h;\n    }}"
        );
    }
    conf.push_str("  }\n}\n");
    conf
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

pub async fn start_nginx(
    binary: &Path,
    origin: &Origin,
    nofile: u64,
    streams: usize,
) -> std::io::Result<Proxy> {
    let prefix = work_dir().join("nginx");
    kill_stale_nginx(&prefix);
    let _ = std::fs::remove_dir_all(&prefix);
    std::fs::create_dir_all(prefix.join("tmp"))?;
    std::fs::create_dir_all(prefix.join("logs"))?;
    let port = procs::free_port();
    let conf = prefix.join("nginx.conf");
    std::fs::write(&conf, nginx_conf(&prefix, port, origin, nofile, streams))?;
    let log = std::fs::File::create(prefix.join("stderr.log"))?;
    let mut command = Command::new(binary);
    command.arg("-p").arg(&prefix).arg("-c").arg(&conf);
    Proxy::spawn(command, log, port, true).await
}

/// nginx workers outlive a master killed with SIGKILL (a bench killed hard): find any process
/// that holds this bench's nginx error log open and end it.
fn kill_stale_nginx(prefix: &Path) {
    let log = prefix.join("error.log");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return;
    };
    for pid in dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok()) {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        if fds
            .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
            .any(|target| target == log)
        {
            // SAFETY: kill(2); the process holds our own log file.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// The nginx binary: `SSEBRIDGE_BENCH_NGINX` (`none` for none), else on the PATH or in /usr/sbin, else installed
/// from Debian (`apt-get install nginx-light`, falling back to `nginx`) unless
/// `SSEBRIDGE_BENCH_NO_INSTALL` is set. None: the nginx column stays empty.
pub fn find_or_install_nginx() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("SSEBRIDGE_BENCH_NGINX") {
        // `none` (or empty) leaves nginx out, e.g. while profiling ssebridge.
        return match path.as_str() {
            "" | "none" => None,
            _ => Some(PathBuf::from(path)),
        };
    }
    let find = || {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.push("/usr/sbin".into());
        dirs.into_iter()
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    };
    if let Some(found) = find() {
        return Some(found);
    }
    if std::env::var_os("SSEBRIDGE_BENCH_NO_INSTALL").is_some() {
        return None;
    }
    eprintln!("nginx not found: installing it from Debian (apt-get install nginx-light) ...");
    let log = work_dir().join("apt.log");
    let apt = |args: &[&str]| {
        let mut command = if is_root() {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.args(["-n", "apt-get"]);
            c
        };
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log);
        command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null());
        if let Ok(out) = out {
            if let Ok(err) = out.try_clone() {
                command.stdout(out).stderr(err);
            }
        }
        command.status().is_ok_and(|s| s.success())
    };
    let install = |pkg: &str| apt(&["install", "-y", "--no-install-recommends", pkg]);
    let ok = install("nginx-light")
        || install("nginx")
        || (apt(&["update"]) && (install("nginx-light") || install("nginx")));
    if !ok {
        eprintln!(
            "installing nginx failed (see {}); nginx is left out",
            log.display()
        );
    }
    find()
}

pub fn version(binary: &Path) -> String {
    Command::new(binary)
        .arg("-v")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_owned())
        .unwrap_or_default()
}
