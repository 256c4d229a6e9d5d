//! `ssebridge demo`: the proxy with a built-in configuration in front of built-in origins, so a
//! fresh machine shows a live, repaired stream with one command.
//!
//! The SSE origin serves `/events` (a JSON tick every second, default event type) and
//! `/progress` (`progress` events with ids, resuming after `Last-Event-ID`). It is deliberately
//! an ordinary origin: it sets no anti-cache headers and sends no heartbeats; the proxy adds them.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream;
use http::{header, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Listener, Route, RouteSettings, Upstream, UpstreamKind};
use crate::server::{serve, Running, ServeError};

type DemoBody = UnsyncBoxBody<Bytes, Infallible>;

/// Starts the demo origins and the proxy in front of them on `listen`.
pub async fn start(listen: SocketAddr, shutdown: CancellationToken) -> Result<Running, ServeError> {
    let origin = start_origin(shutdown.clone()).await?;
    tracing::info!(%origin, "demo SSE origin listening");
    serve(&config(listen, origin), shutdown).await
}

/// The demo's configuration: `/events` and `/progress` proxied to the SSE origin.
pub fn config(listen: SocketAddr, origin: SocketAddr) -> Config {
    let route = |path: &str| Route {
        path: path.to_owned(),
        upstream: Upstream {
            url: format!("http://{origin}{path}").parse().unwrap_or_default(),
            kind: UpstreamKind::Http,
            tls: false,
        },
        send_to: None,
        settings: RouteSettings {
            heartbeat: Some(Duration::from_secs(5)),
            retry: Some(Duration::from_secs(2)),
            ..RouteSettings::default()
        },
    };
    Config {
        listeners: vec![Listener {
            bind: listen,
            tls: None,
        }],
        admin: None,
        routes: vec![route("/events"), route("/progress")],
        limits: Default::default(),
        drain_timeout: Duration::from_secs(5),
    }
}

async fn start_origin(shutdown: CancellationToken) -> Result<SocketAddr, ServeError> {
    let bind: SocketAddr = ([127, 0, 0, 1], 0).into();
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| ServeError::Bind { addr: bind, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr: bind, source })?;
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((tcp, _)) = accepted else { continue };
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service_fn(origin))
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn origin(req: Request<Incoming>) -> Result<Response<DemoBody>, Infallible> {
    let response = match req.uri().path() {
        "/events" => event_stream(ticks()),
        "/progress" => {
            let after = req
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            event_stream(progress(after.map_or(0, |id| id + 1)))
        }
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")).boxed_unsync());
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    };
    Ok(response)
}

fn event_stream(body: DemoBody) -> Response<DemoBody> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// `data: {"tick":N,"time_ms":T}` every second.
fn ticks() -> DemoBody {
    let events = stream::unfold(0u64, |n| async move {
        if n > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let event = format!("data: {{\"tick\":{n},\"time_ms\":{millis}}}\n\n");
        Some((Ok(Frame::data(Bytes::from(event))), n + 1))
    });
    StreamBody::new(events).boxed_unsync()
}

/// `progress` events with ids from `start`, percent going 0..=100 and round again.
fn progress(start: u64) -> DemoBody {
    let events = stream::unfold(start, move |id| async move {
        if id > start {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let percent = id % 101;
        let event = format!("event: progress\nid: {id}\ndata: {{\"percent\":{percent}}}\n\n");
        Some((Ok(Frame::data(Bytes::from(event))), id + 1))
    });
    StreamBody::new(events).boxed_unsync()
}
