//! The admin listener: `/healthz` (the process answers), `/readyz` (it accepts traffic; `503`
//! while draining) and `/metrics` (Prometheus text format).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::Metrics;
use crate::server::ServeError;

/// Binds the admin listener and serves it until `shutdown`.
pub async fn start(
    bind: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    tasks: &TaskTracker,
) -> Result<SocketAddr, ServeError> {
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| ServeError::Bind { addr: bind, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr: bind, source })?;
    tracing::info!(%addr, "admin listening");
    let connections = tasks.clone();
    tasks.spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(err) => {
                        tracing::error!(error = %err, "admin accept failed; backing off");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let metrics = metrics.clone();
            let draining = shutdown.clone();
            connections.spawn(async move {
                let service =
                    service_fn(move |req| answer(req, metrics.clone(), draining.is_cancelled()));
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(tcp), service);
                let _ = tokio::time::timeout(std::time::Duration::from_secs(60), conn).await;
            });
        }
    });
    Ok(addr)
}

async fn answer(
    req: Request<Incoming>,
    metrics: Arc<Metrics>,
    draining: bool,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match req.uri().path() {
        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
        "/readyz" if draining => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "draining\n".to_owned(),
        ),
        "/readyz" => (StatusCode::OK, "text/plain", "ready\n".to_owned()),
        "/metrics" => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics.render(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    Ok(response)
}
