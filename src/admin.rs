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
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::server::ServeError;

/// Binds the admin listener and serves it until `stop`; `/readyz` turns 503 once `draining`
/// is cancelled.
pub async fn start(
    bind: SocketAddr,
    metrics: Arc<Metrics>,
    draining: CancellationToken,
    stop: CancellationToken,
) -> Result<SocketAddr, ServeError> {
    let (listener, addr) = crate::server::bind(bind).await?;
    tracing::info!(%addr, "admin listening");
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! {
                _ = stop.cancelled() => return,
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
            let draining = draining.clone();
            let stop = stop.clone();
            // Owned through `stop`: every admin connection ends with the listener.
            tokio::spawn(async move {
                let service =
                    service_fn(move |req| answer(req, metrics.clone(), draining.is_cancelled()));
                let conn = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(TokioIo::new(tcp), service);
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::timeout(std::time::Duration::from_secs(60), conn) => {}
                }
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
