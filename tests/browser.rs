//! The demo page in a real browser (issue 3): headless Chromium, driven by Node's
//! `playwright-core`, loads `ssebridge demo` and sees both kinds of clients work side by side:
//! events arrive in the EventSource and the WebSocket lists, a message sent by the EventSource
//! page through the back channel reaches the WebSocket hub (and comes back to both of the hub's
//! clients), and a message sent by the WebSocket client of the SSE origin is POSTed to the origin
//! and comes back as a `chat` event.
//!
//! Needs `node`, `npm` (once, to fetch playwright-core into target/browser-test) and Debian's
//! `chromium`; `.ci/setup` installs them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Browser start-up and page work on a loaded 2-core machine: longer than the harness's WAIT.
const BROWSER_WAIT: Duration = Duration::from_secs(90);

fn cache_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-test")
}

/// Installs playwright-core into the cache directory unless it is there already.
async fn playwright_core(dir: &Path) {
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    std::fs::create_dir_all(dir).expect("cache dir");
    let status = tokio::time::timeout(
        BROWSER_WAIT,
        Command::new("npm")
            .args([
                "install",
                "--no-save",
                "--no-audit",
                "--no-fund",
                "--prefix",
            ])
            .arg(dir)
            .arg("playwright-core")
            .stdin(Stdio::null())
            .status(),
    )
    .await
    .expect("npm install within the time limit")
    .expect("npm runs (.ci/setup installs nodejs and npm)");
    assert!(status.success(), "npm install playwright-core failed");
}

const SCRIPT: &str = r##"
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");

const [url, screenshot] = process.argv.slice(2);
const LISTS = ["es-events", "es-feed", "ws-feed", "ws-events"];
const WAIT = 30000;

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "ssebridge-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 860 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = context.pages()[0] || await context.newPage();
    const problems = [];
    page.on("pageerror", (e) => problems.push(String(e)));
    await page.goto(url);

    // Every client is open and has shown at least one item.
    await page.waitForFunction((lists) => lists.every((id) =>
      Number(document.getElementById(id).dataset.count) >= 1 &&
      document.getElementById(id + "-state").textContent === "open"), LISTS, { timeout: WAIT });

    const listHas = (id, text) => page.waitForFunction(([id, text]) =>
      [...document.getElementById(id).children].some((li) => li.textContent.includes(text)),
      [id, text], { timeout: WAIT });

    // EventSource page -> POST back channel -> proxy -> WebSocket hub -> broadcast to the
    // hub's clients: the WebSocket passthrough client and the bridged EventSource.
    const esMessage = "from-eventsource-" + Date.now();
    await page.fill("#es-text", esMessage);
    await page.press("#es-text", "Enter");
    await listHas("ws-feed", esMessage);
    await listHas("es-feed", esMessage);

    // WebSocket client of the SSE origin -> proxy POSTs to the origin -> `chat` event ->
    // SSE passthrough to the EventSource (and the bridge back to the WebSocket).
    const wsMessage = "from-websocket-" + Date.now();
    await page.fill("#ws-text", wsMessage);
    await page.press("#ws-text", "Enter");
    await listHas("es-events", "chat: " + wsMessage);
    await listHas("ws-events", wsMessage);

    const summary = await page.evaluate((lists) => {
      const out = { counts: {}, states: {} };
      for (const id of lists) {
        out.counts[id] = Number(document.getElementById(id).dataset.count);
        out.states[id] = document.getElementById(id + "-state").textContent;
      }
      return out;
    }, LISTS);
    await page.screenshot({ path: screenshot, fullPage: true });
    Object.assign(summary, { ok: problems.length === 0, esMessage, wsMessage, problems });
    console.log(JSON.stringify(summary));
    return problems.length === 0 ? 0 : 1;
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().then((code) => process.exit(code), (err) => {
  console.error(err && err.stack || String(err));
  process.exit(1);
});
"##;

/// Starts `ssebridge demo` on a free port; returns the child and the page's URL, read from
/// the demo's "ready" log line.
async fn start_demo() -> (tokio::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssebridge"))
        .args(["demo", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start ssebridge demo");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let url = tokio::time::timeout(BROWSER_WAIT, async {
        while let Some(line) = lines.next_line().await.expect("demo log") {
            if let Some(rest) = line.split("open http://").nth(1) {
                let addr = rest.split('/').next().expect("address");
                return format!("http://{addr}/");
            }
        }
        panic!("the demo exited before it was ready");
    })
    .await
    .expect("the demo to be ready");
    // Keep draining the log so the demo never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

#[tokio::test]
async fn demo_page_shows_both_kinds_of_clients_and_messages_cross_between_them() {
    let dir = cache_dir();
    playwright_core(&dir).await;
    let script = dir.join("demo-check.js");
    std::fs::write(&script, SCRIPT).expect("write the browser script");
    let screenshot = dir.join("demo.png");
    let _ = std::fs::remove_file(&screenshot);
    let (_demo, url) = start_demo().await;

    let output = tokio::time::timeout(
        BROWSER_WAIT,
        Command::new("node")
            .arg(&script)
            .arg(&url)
            .arg(&screenshot)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser check within the time limit")
    .expect("node runs (.ci/setup installs nodejs)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser check failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .unwrap_or_else(|e| panic!("no JSON summary ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(summary["ok"], true, "{summary}");
    for list in ["es-events", "es-feed", "ws-feed", "ws-events"] {
        assert_eq!(summary["states"][list], "open", "{list}: {summary}");
        assert!(
            summary["counts"][list].as_u64().unwrap_or(0) >= 2,
            "{list} shows events and the crossed message: {summary}"
        );
    }
    assert!(summary["esMessage"]
        .as_str()
        .is_some_and(|m| m.starts_with("from-eventsource-")));
    assert!(summary["wsMessage"]
        .as_str()
        .is_some_and(|m| m.starts_with("from-websocket-")));
    assert!(screenshot.exists(), "the screenshot was written");
}
