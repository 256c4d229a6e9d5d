//! `ssebridge demo`: the proxy with a built-in configuration in front of built-in origins, so a
//! fresh machine shows every stream kind with one command and a browser.
//!
//! Two ordinary origins stand behind the proxy: an SSE origin ([`origin`]: ticks, progress with
//! ids, a chat fed by POSTs, and the demo page) and a WebSocket hub ([`hub`]: a welcome message,
//! periodic broadcasts, and every client message broadcast to all). They set no anti-cache
//! headers and send no heartbeats: the proxy adds them. The page shows an `EventSource` client
//! and a WebSocket client of both feeds side by side.

mod hub;
mod origin;

use std::net::SocketAddr;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{Config, Format, Listener, Route, RouteSettings, Upstream, UpstreamKind};
use crate::server::{serve, Running, ServeError};

/// Starts the demo origins and the proxy in front of them on `listen`.
pub async fn start(listen: SocketAddr, shutdown: CancellationToken) -> Result<Running, ServeError> {
    let sse = origin::start(shutdown.clone()).await?;
    let ws = hub::start(shutdown.clone()).await?;
    tracing::info!(%sse, %ws, "demo origins listening");
    serve(&config(listen, sse, ws), shutdown).await
}

/// The demo's routes:
/// - `/events`: the SSE origin's chat and ticks, to `EventSource` (passthrough) and to WebSocket
///   clients (bridge, their messages POSTed to the origin's chat);
/// - `/progress`: `progress` events with ids, resumable with `Last-Event-ID`;
/// - `/feed`: the WebSocket hub, to WebSocket clients (passthrough) and to `EventSource` (bridge,
///   with a back channel);
/// - `/`: everything else, the origin's page.
pub fn config(listen: SocketAddr, sse: SocketAddr, ws: SocketAddr) -> Config {
    let settings = RouteSettings {
        heartbeat: Some(Duration::from_secs(5)),
        retry: Some(Duration::from_secs(2)),
        ws_ping: Some(Duration::from_secs(20)),
        format: Format::Raw,
        ..RouteSettings::default()
    };
    let route = |path: &str, url: String, kind: UpstreamKind, send_to: Option<String>| Route {
        path: path.to_owned(),
        upstream: Upstream {
            url: url.parse().unwrap_or_default(),
            kind,
            tls: false,
        },
        send_to: send_to.and_then(|s| s.parse().ok()),
        settings: settings.clone(),
    };
    Config {
        listeners: vec![Listener {
            bind: listen,
            tls: None,
        }],
        admin: None,
        routes: vec![
            route(
                "/events",
                format!("http://{sse}/events"),
                UpstreamKind::Http,
                Some(format!("http://{sse}/messages")),
            ),
            route(
                "/progress",
                format!("http://{sse}/progress"),
                UpstreamKind::Http,
                None,
            ),
            route(
                "/feed",
                format!("ws://{ws}/ws"),
                UpstreamKind::WebSocket,
                None,
            ),
            route("/", format!("http://{sse}/"), UpstreamKind::Http, None),
        ],
        limits: Default::default(),
        drain_timeout: Duration::from_secs(5),
        workers: None,
    }
}
