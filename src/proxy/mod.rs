//! The proxy proper: classify each request (client kind x upstream kind, SPEC 2) and hand it
//! to the stream kind that serves it.
//!
//! Every failure becomes an answer here: the mapping of errors to statuses lives in
//! [`upstream_failed`] and [`error_response`] and nowhere else.

pub mod backchannel;
pub mod body;
pub mod budget;
pub mod cors;
pub mod events;
pub mod headers;
pub mod http;
pub mod relay;
pub mod sse;
pub mod sse_to_ws;
pub mod stream;
pub mod translate;
pub mod watch;
pub mod websocket;
pub mod ws;
pub mod ws_to_sse;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use ::http::{header, Method, Request, Response, StatusCode, Version};
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Either, Empty, Full};
use hyper::body::Incoming;
use tokio_util::sync::CancellationToken;

use tokio_util::task::TaskTracker;

use self::backchannel::Sessions;
use crate::config::{Config, Limits, Route, UpstreamKind};
use crate::io::CutFlag;
use crate::metrics::{Metrics, RouteMetrics};
use crate::router::{normalise_path, Router};
use crate::tls::{self, TlsError};
use crate::upstream::{self, BoxError, HttpClient, UpstreamError};

/// Every response body the proxy produces.
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// A client's request body: hyper's, or none for an event-stream `GET` that the proxy read
/// itself (`server::event_stream`).
pub type RequestBody = Either<Incoming, Empty<Bytes>>;

/// One route with what it needs at run time.
pub struct RouteState {
    pub route: Route,
    /// The route's path, as used in logs and metric labels.
    pub name: Arc<str>,
    pub client: HttpClient,
    /// TLS for an `https` or `wss` upstream.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub metrics: Arc<RouteMetrics>,
}

impl RouteState {
    fn new(route: Route, metrics: &Metrics) -> Result<Self, TlsError> {
        let tls = tls::client_config(route.settings.upstream_ca.as_deref())?;
        let origin_tls = route.upstream.tls.then(|| tls.clone());
        let client = upstream::http_client(tls, route.settings.connect_timeout);
        Ok(RouteState {
            name: Arc::from(route.path.as_str()),
            metrics: metrics.route(&route.path),
            client,
            tls: origin_tls,
            route,
        })
    }

    /// Opens the log (and the metrics) of one stream of this route on `conn`.
    pub fn stream_log(
        &self,
        kind: crate::metrics::StreamKind,
        conn: &ConnInfo,
    ) -> stream::StreamLog {
        stream::StreamLog::open(
            self.name.clone(),
            kind,
            self.metrics.clone(),
            conn.cut.clone(),
        )
    }

    /// Opens the route's upstream WebSocket at `uri`: the socket, what the origin sent after
    /// its `101`, and the `101`'s headers (see [`upstream::connect_ws_raw`]).
    pub async fn connect_ws(
        &self,
        uri: &::http::Uri,
        headers: &::http::HeaderMap,
    ) -> Result<(upstream::UpstreamStream, bytes::BytesMut, ::http::HeaderMap), UpstreamError> {
        let timeout = self.route.settings.connect_timeout;
        upstream::connect_ws_raw(uri, headers, self.tls.clone(), timeout).await
    }

    /// The route's heartbeat, if it has one.
    pub fn heartbeat(&self) -> Option<watch::Heartbeat> {
        let settings = &self.route.settings;
        settings
            .heartbeat
            .map(|every| watch::Heartbeat::new(every, settings.heartbeat_padding))
    }
}

/// The part of the configuration that a reload swaps whole.
pub struct Table {
    pub router: Router<RouteState>,
    pub limits: Limits,
}

impl Table {
    pub fn build(config: &Config, metrics: &Metrics) -> Result<Self, TlsError> {
        let routes = config
            .routes
            .iter()
            .map(|r| Ok((r.path.clone(), RouteState::new(r.clone(), metrics)?)))
            .collect::<Result<Vec<_>, TlsError>>()?;
        Ok(Table {
            router: Router::new(routes),
            limits: config.limits.clone(),
        })
    }
}

/// What a connection knows about its client.
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    pub cut: Arc<CutFlag>,
    /// Filled per request for HTTP/2 (`:authority`).
    pub authority: Option<String>,
    /// Cancelling it drops the client's connection (HTTP/1.1 only: one stream per connection;
    /// an HTTP/2 stream is reset through its body instead).
    pub kill: CancellationToken,
}

/// Shared by every connection.
pub struct Proxy {
    table: RwLock<Arc<Table>>,
    pub metrics: Arc<Metrics>,
    /// Cancelled when the proxy starts draining.
    pub drain: CancellationToken,
    /// Cancelled after `drain_timeout`: whatever still runs is dropped.
    pub hard_stop: CancellationToken,
    /// Tasks that outlive their request (upgraded WebSockets, bridges).
    pub tasks: TaskTracker,
    pub sessions: Arc<Sessions>,
}

impl Proxy {
    pub fn new(table: Table, metrics: Arc<Metrics>, drain: CancellationToken) -> Self {
        Proxy {
            table: RwLock::new(Arc::new(table)),
            metrics,
            drain,
            hard_stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            sessions: Arc::default(),
        }
    }

    pub fn table(&self) -> Arc<Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace_table(&self, table: Table) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }

    pub fn limits(&self) -> Limits {
        self.table().limits.clone()
    }

    /// Serves one request; never fails, every problem is an HTTP answer.
    pub async fn handle(
        self: Arc<Self>,
        conn: Arc<ConnInfo>,
        req: Request<RequestBody>,
    ) -> Result<Response<ProxyBody>, Infallible> {
        if let Err((status, reason)) = check_request(&req) {
            return Ok(error_response(status, reason));
        }
        let path = match normalise_path(req.uri().path()) {
            Ok(p) => p,
            Err(_) => {
                return Ok(error_response(
                    StatusCode::BAD_REQUEST,
                    "malformed request path",
                ))
            }
        };
        let table = self.table();
        let Some((route, suffix)) = table.router.find(&path) else {
            return Ok(error_response(
                StatusCode::NOT_FOUND,
                "no route for this path",
            ));
        };
        let route = route.clone();
        let suffix = suffix.to_owned();
        let conn = if req.version() == Version::HTTP_2 {
            Arc::new(ConnInfo {
                peer: conn.peer,
                scheme: conn.scheme,
                cut: conn.cut.clone(),
                authority: req.uri().authority().map(|a| a.to_string()),
                kill: CancellationToken::new(),
            })
        } else {
            conn
        };
        let cors = route.route.settings.cors.clone();
        let origin = req.headers().get(header::ORIGIN).cloned();
        if let Some(preflight) = cors::preflight(cors.as_ref(), &req) {
            return Ok(preflight);
        }
        let mut response = self.dispatch(route, conn, req, &suffix).await;
        cors::allow(cors.as_ref(), origin.as_ref(), response.headers_mut());
        Ok(response)
    }

    /// SPEC 2: upstream kind x client kind.
    async fn dispatch(
        self: &Arc<Self>,
        route: Arc<RouteState>,
        conn: Arc<ConnInfo>,
        req: Request<RequestBody>,
        suffix: &str,
    ) -> Response<ProxyBody> {
        let websocket_client = websocket::is_websocket_request(&req);
        if websocket_client && !websocket::origin_allowed(&route.route.settings, req.headers()) {
            return error_response(StatusCode::FORBIDDEN, "origin not allowed");
        }
        match (route.route.upstream.kind, websocket_client) {
            (UpstreamKind::Http, false) => http::forward(self, route, conn, req, suffix).await,
            (UpstreamKind::Http, true) => sse_to_ws::serve(self, route, conn, req, suffix).await,
            (UpstreamKind::WebSocket, true) => ws::serve(self, route, conn, req, suffix).await,
            (UpstreamKind::WebSocket, false) => {
                if let Some(id) = suffix.strip_prefix(backchannel::SEND_SEGMENT) {
                    return backchannel::post(&self.sessions, &self.metrics, &route, req, id).await;
                }
                if req.method() != Method::GET {
                    let mut response = error_response(
                        StatusCode::METHOD_NOT_ALLOWED,
                        "this route serves an event stream to GET",
                    );
                    response
                        .headers_mut()
                        .insert(header::ALLOW, header::HeaderValue::from_static("GET"));
                    return response;
                }
                ws_to_sse::serve(self, route, conn, req, suffix).await
            }
        }
    }
}

/// Request checks that hyper leaves to us (SPEC 10 "Strict HTTP/1.1").
fn check_request(req: &Request<RequestBody>) -> Result<(), (StatusCode, &'static str)> {
    if req.method() == Method::CONNECT {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not supported"));
    }
    if req.version() == Version::HTTP_11 {
        let mut hosts = req.headers().get_all(header::HOST).iter();
        let valid = match (hosts.next(), hosts.next()) {
            (Some(host), None) => host
                .to_str()
                .is_ok_and(|h| h.parse::<::http::uri::Authority>().is_ok()),
            _ => false,
        };
        if !valid {
            return Err((
                StatusCode::BAD_REQUEST,
                "exactly one valid Host header is required",
            ));
        }
    }
    Ok(())
}

/// An empty body (for `101`, `204`).
pub fn empty_body() -> ProxyBody {
    http_body_util::Empty::new()
        .map_err(|e| match e {})
        .boxed_unsync()
}

/// A short plain-text answer made by the proxy itself.
pub fn error_response(status: StatusCode, reason: &str) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(format!("{reason}\n")))
        .map_err(|e| match e {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-store"),
    );
    response
}

/// The one mapping from an upstream failure to the client's answer: `504` for a connect
/// timeout, `502` otherwise, with a log line and a count.
pub fn upstream_failed(route: &RouteState, err: UpstreamError) -> Response<ProxyBody> {
    route.metrics.upstream_error(err.kind());
    tracing::warn!(route = %route.name, upstream = %route.route.upstream.url, error = %err, "upstream request failed");
    let status = match err {
        UpstreamError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::BAD_GATEWAY,
    };
    error_response(status, &err.to_string())
}
