//! The command line and the configuration file (SPEC 7, SPEC 8, SPEC 10 "`check` output"): the
//! real binary checks files (each problem as `FILE:LINE:COLUMN: message`, exit 2), refuses to
//! run on a bad one, serves an event stream to `curl -N`, and drains on SIGTERM.

mod common;

use std::path::Path;
use std::process::Stdio;

use common::*;
use tokio::process::{Child, Command};

const BINARY: &str = env!("CARGO_BIN_EXE_ssebridge");

/// Runs the binary to completion; returns its exit code, stdout and stderr.
async fn run_binary(args: &[&str]) -> (i32, String, String) {
    let output = within(
        "the binary to finish",
        Command::new(BINARY)
            .args(args)
            .env_remove("RUST_LOG")
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("run the binary");
    (
        output.status.code().expect("an exit code"),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn write_config(name: &str, text: &str) -> String {
    let path = temp_dir("cli").join(name);
    std::fs::write(&path, text).expect("write the config file");
    path.display().to_string()
}

/// The problem lines of `check` output: `(line, column, message)` for each `FILE:LINE:COLUMN:
/// message` line naming `file`; panics on any other line.
fn problems(output: &str, file: &str) -> Vec<(u32, u32, String)> {
    output
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let rest = l
                .strip_prefix(file)
                .and_then(|r| r.strip_prefix(':'))
                .unwrap_or_else(|| panic!("not a FILE:LINE:COLUMN line: {l:?}"));
            let mut parts = rest.splitn(3, ':');
            let line = parts.next().and_then(|n| n.parse().ok());
            let column = parts.next().and_then(|n| n.parse().ok());
            let message = parts.next().and_then(|m| m.strip_prefix(' '));
            match (line, column, message) {
                (Some(line), Some(column), Some(message)) => (line, column, message.to_owned()),
                _ => panic!("not a FILE:LINE:COLUMN: message line: {l:?}"),
            }
        })
        .collect()
}

#[tokio::test]
async fn check_accepts_the_example_configuration() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.yaml.example");
    let example = example.display().to_string();
    let (code, stdout, stderr) = run_binary(&["check", "--config", &example]).await;
    assert_eq!(code, 0, "stdout {stdout:?} stderr {stderr:?}");
}

#[tokio::test]
async fn check_prints_each_problem_with_file_line_and_column_and_exits_2() {
    let file = write_config(
        "three-problems.yaml",
        "listeners:\n\
         \x20 - bind: 127.0.0.1:0\n\
         drain_timeout: 5 parsecs\n\
         limits:\n\
         \x20 max_body: lots\n\
         routes:\n\
         \x20 - path: /events\n\
         \x20   upstream: ftp://127.0.0.1:9/x\n",
    );
    let (code, stdout, stderr) = run_binary(&["check", "--config", &file]).await;
    assert_eq!(code, 2, "stdout {stdout:?}");
    let found = problems(&stderr, &file);
    let lines: Vec<u32> = found.iter().map(|(line, _, _)| *line).collect();
    assert_eq!(lines, [3, 5, 8], "problems: {found:?}");
    assert!(found[0].2.contains("drain_timeout"), "{found:?}");
    assert!(found[1].2.contains("max_body"), "{found:?}");
    assert!(found[2].2.contains("upstream"), "{found:?}");
    assert!(found.iter().all(|(_, column, _)| *column >= 1));
    // The column points into the line: the route's `upstream` key is indented by 4.
    assert_eq!(found[2].1, 5, "{found:?}");
}

#[tokio::test]
async fn unknown_keys_are_errors_with_their_position() {
    let file = write_config(
        "unknown-keys.yaml",
        "listeners:\n\
         \x20 - bind: 127.0.0.1:0\n\
         routes:\n\
         \x20 - path: /events\n\
         \x20   upstream: http://127.0.0.1:9/x\n\
         \x20   heartbeet: 5s\n\
         colour: blue\n",
    );
    let (code, _, stderr) = run_binary(&["check", "--config", &file]).await;
    assert_eq!(code, 2);
    let found = problems(&stderr, &file);
    assert_eq!(found.len(), 2, "problems: {found:?}");
    assert_eq!((found[0].0, found[0].1), (6, 5), "{found:?}");
    assert!(found[0].2.contains("heartbeet"), "{found:?}");
    assert_eq!((found[1].0, found[1].1), (7, 1), "{found:?}");
    assert!(found[1].2.contains("colour"), "{found:?}");
}

#[tokio::test]
async fn run_with_a_bad_configuration_exits_2_with_the_problem() {
    let file = write_config(
        "bad-run.yaml",
        "listeners:\n  - bind: 127.0.0.1:0\nroutes: []\nheartbeat: 1s\n",
    );
    for args in [
        &["--config", file.as_str()][..],
        &["run", "--config", file.as_str()][..],
    ] {
        let (code, _, stderr) = run_binary(args).await;
        assert_eq!(code, 2, "for {args:?}: {stderr:?}");
        assert!(
            stderr.lines().any(|l| l.starts_with(&format!("{file}:4:"))),
            "for {args:?}: {stderr:?}"
        );
    }
}

/// The binary running a config with one cleartext listener on a free port in front of
/// `origin`, ready once its log says it listens.
struct Running {
    child: Child,
    addr: std::net::SocketAddr,
}

/// Runs the binary with one route to `origin`; `top` adds top-level keys to its configuration.
async fn start_binary(origin: &Origin, top: &str) -> Running {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let file = write_config(
        "run.yaml",
        &format!(
            "{top}listeners:\n  - bind: {addr}\nroutes:\n  - path: /events\n    upstream: {}\n    \
             heartbeat: 0\n",
            origin.url("/stream")
        ),
    );
    let mut child = Command::new(BINARY)
        .args(["--config", &file])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the binary");
    let mut log = Output::new(child.stderr.take().expect("stderr"));
    // The listener is bound before this line is written.
    log.read_until(&addr.to_string()).await;
    // Keep draining the log so that the binary never blocks on a full pipe.
    tokio::spawn(async move { log.read_to_end().await });
    Running { child, addr }
}

fn curl(url: &str) -> Child {
    Command::new("curl")
        .args(["-N", "-s", "-S", "--max-time", "20", url])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start curl")
}

#[tokio::test]
async fn binary_serves_an_event_stream_to_curl_while_the_origin_holds_it_open() {
    let mut origin = Origin::start().await;
    let running = start_binary(&origin, "").await;
    let mut curl = curl(&format!("http://{}/events", running.addr));
    let mut out = Output::new(curl.stdout.take().expect("curl stdout"));
    let events = origin.next_request().await.respond_sse();
    events.send("id: 1\ndata: from the binary\n\n").await;
    assert_eq!(
        out.read_until("data: from the binary\n\n").await,
        "id: 1\ndata: from the binary\n\n"
    );
    events.send("data: second\n\n").await;
    out.read_until("data: second\n\n").await;
    assert!(events.is_open());
}

#[tokio::test]
async fn sigterm_drains_open_streams_with_retry_and_a_clean_end_then_exits_0() {
    let mut origin = Origin::start().await;
    let mut running = start_binary(&origin, "").await;
    let mut curl = curl(&format!("http://{}/events", running.addr));
    let mut out = Output::new(curl.stdout.take().expect("curl stdout"));
    let events = origin.next_request().await.respond_sse();
    events.send("data: before\n\n").await;
    out.read_until("data: before\n\n").await;

    let pid = running.child.id().expect("the binary's pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(kill.success());

    let rest = out.read_until("retry: ").await;
    assert_eq!(rest, "retry: ", "nothing before the drain's retry field");
    let retry = out.read_to_end().await;
    assert!(
        retry.trim_end().parse::<u64>().is_ok() && retry.ends_with("\n\n"),
        "a retry field then the end, got {retry:?}"
    );
    // curl exits 0 only when the chunked response ended with its last chunk (18 otherwise).
    let curl_status = within("curl to finish", curl.wait())
        .await
        .expect("curl status");
    assert_eq!(curl_status.code(), Some(0), "the response ended cleanly");
    within("the origin's stream to be dropped", events.closed()).await;
    // drain_timeout is the default 30 s: exiting within the wait means the drain finished.
    let status = within("the binary to exit", running.child.wait())
        .await
        .expect("binary status");
    assert_eq!(status.code(), Some(0));
}

/// The names of the threads of process `pid`.
fn thread_names(pid: u32) -> Vec<String> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("list the threads");
    tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .map(|name| name.trim_end().to_owned())
        .collect()
}

#[tokio::test]
async fn workers_sets_how_many_threads_serve_connections() {
    let mut origin = Origin::start().await;
    let running = start_binary(&origin, "workers: 3\n").await;
    let pid = running.child.id().expect("pid");
    let mut workers: Vec<String> = thread_names(pid)
        .into_iter()
        .filter(|name| name.starts_with("worker-"))
        .collect();
    workers.sort();
    assert_eq!(workers, ["worker-0", "worker-1", "worker-2"]);
    // Three streams at once, one on each worker, all flowing.
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut curl = curl(&format!("http://{}/events", running.addr));
        let out = Output::new(curl.stdout.take().expect("curl stdout"));
        let events = origin.next_request().await.respond_sse();
        clients.push((curl, out, events));
    }
    for (i, (_, out, events)) in clients.iter_mut().enumerate() {
        events.send(format!("data: {i}\n\n")).await;
        out.read_until(&format!("data: {i}\n\n")).await;
    }
}
