//! Connecting to origins: one pooled HTTP client per route (HTTP/1.1 over TCP or TLS), a
//! connection of its own for each request that asks for an event stream ([`h1`]), and
//! WebSocket connects; every connect (TCP and TLS handshake) is bounded by the route's
//! `connect_timeout`.
//!
//! Errors are classified here, once, into [`UpstreamError`]; `proxy::error` maps them to a
//! status or close code.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;

use crate::metrics::UpstreamErrorKind;

pub mod chunked;
pub mod h1;

pub type BoxError = Box<dyn StdError + Send + Sync>;
/// A streamed request body on its way to an origin.
pub type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;
pub type HttpClient = Client<TimeoutConnector<HttpsConnector<HttpConnector>>, UpstreamBody>;

/// Why an origin could not be used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream unreachable: {0}")]
    Connect(String),
    #[error("upstream connect timed out")]
    Timeout,
    #[error("upstream handshake failed: {0}")]
    Handshake(String),
    #[error("upstream protocol error: {0}")]
    Protocol(String),
}

impl UpstreamError {
    pub fn kind(&self) -> UpstreamErrorKind {
        match self {
            UpstreamError::Connect(_) => UpstreamErrorKind::Connect,
            UpstreamError::Timeout => UpstreamErrorKind::Timeout,
            UpstreamError::Handshake(_) => UpstreamErrorKind::Handshake,
            UpstreamError::Protocol(_) => UpstreamErrorKind::Protocol,
        }
    }

    /// Classifies an error of the HTTP client.
    pub fn from_client(err: hyper_util::client::legacy::Error) -> Self {
        if !err.is_connect() {
            return UpstreamError::Protocol(chain(&err));
        }
        if find_cause::<ConnectTimeout>(&err).is_some() {
            return UpstreamError::Timeout;
        }
        if let Some(tls) = find_cause::<rustls::Error>(&err) {
            return UpstreamError::Handshake(tls.to_string());
        }
        UpstreamError::Connect(chain(&err))
    }
}

/// The first error of type `T` among `err` and its causes, including errors wrapped inside an
/// `io::Error` (whose `source()` skips the error it wraps).
fn find_cause<'a, T: StdError + 'static>(err: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    if let Some(found) = err.downcast_ref::<T>() {
        return Some(found);
    }
    let wrapped = err
        .downcast_ref::<std::io::Error>()
        .and_then(|io| io.get_ref());
    if let Some(found) =
        wrapped.and_then(|inner| find_cause::<T>(inner as &(dyn StdError + 'static)))
    {
        return Some(found);
    }
    err.source().and_then(find_cause::<T>)
}

/// The error message and its causes on one line.
pub fn chain(err: &dyn StdError) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = e.source();
    }
    out
}

#[derive(Debug, thiserror::Error)]
#[error("connect timed out after {0:?}")]
pub struct ConnectTimeout(Duration);

/// Bounds a whole connect (TCP and TLS handshake) by one deadline.
#[derive(Clone)]
pub struct TimeoutConnector<C> {
    inner: C,
    timeout: Duration,
}

impl<C> tower_service::Service<Uri> for TimeoutConnector<C>
where
    C: tower_service::Service<Uri> + Send,
    C::Future: Send + 'static,
    C::Error: Into<BoxError>,
{
    type Response = C::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<C::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let timeout = self.timeout;
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            match tokio::time::timeout(timeout, connecting).await {
                Ok(result) => result.map_err(Into::into),
                Err(_) => Err(Box::new(ConnectTimeout(timeout)) as BoxError),
            }
        })
    }
}

/// A pooled client for one route's HTTP origin.
pub fn http_client(tls: Arc<ClientConfig>, connect_timeout: Duration) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = HttpsConnectorBuilder::new()
        .with_tls_config((*tls).clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let connector = TimeoutConnector {
        inner: https,
        timeout: connect_timeout,
    };
    Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build(connector)
}

/// A connection to an origin, cleartext or TLS. The TLS state (over a kilobyte) is boxed so
/// that cleartext connections, held by every open stream, stay small.
pub type UpstreamStream = tokio_util::either::Either<
    tokio::net::TcpStream,
    Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
>;

/// Opens a connection to the origin of `url`, with TLS when `tls` is given. Not bounded in
/// time: the caller bounds the connect together with whatever handshake follows it.
pub async fn connect(
    url: &Uri,
    tls: Option<Arc<ClientConfig>>,
) -> Result<UpstreamStream, UpstreamError> {
    use tokio_util::either::Either;

    let host = url
        .host()
        .ok_or_else(|| UpstreamError::Connect("upstream URL has no host".to_owned()))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = url
        .port_u16()
        .unwrap_or(if tls.is_some() { 443 } else { 80 });
    let tcp = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| UpstreamError::Connect(format!("{host}:{port}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let Some(config) = tls else {
        return Ok(Either::Left(tcp));
    };
    let name = rustls_pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| UpstreamError::Handshake(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| UpstreamError::Handshake(e.to_string()))?;
    Ok(Either::Right(Box::new(tls)))
}

/// Sends a bodiless request on a connection of its own (see [`h1`]); the connect and the TLS
/// handshake are bounded by `timeout`, the wait for the response head is not.
pub async fn request_own(
    url: &Uri,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
    method: &http::Method,
    headers: &http::HeaderMap,
) -> Result<http::Response<OriginBody>, UpstreamError> {
    let io = tokio::time::timeout(timeout, connect(url, tls))
        .await
        .map_err(|_| UpstreamError::Timeout)??;
    let response = h1::exchange(io, method, url, headers).await?;
    Ok(response.map(OriginBody::Own))
}

/// A response body from an origin: read by the pooled client, or by the stream itself on a
/// connection of its own.
#[derive(Debug)]
pub enum OriginBody {
    Pooled(hyper::body::Incoming),
    Own(h1::ResponseBody),
}

impl http_body::Body for OriginBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            OriginBody::Pooled(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            OriginBody::Own(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            OriginBody::Pooled(body) => body.is_end_stream(),
            OriginBody::Own(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            OriginBody::Pooled(body) => body.size_hint(),
            OriginBody::Own(body) => body.size_hint(),
        }
    }
}

/// Opens a WebSocket to `url` (`ws` or `wss`) for a relay that reads and writes frames itself:
/// the socket, the bytes the origin sent after its `101` (the start of its frames) and the
/// `101`'s headers. The connect and both handshakes together are bounded by `timeout`.
pub async fn connect_ws_raw(
    url: &Uri,
    headers: &http::HeaderMap,
    tls: Option<Arc<ClientConfig>>,
    timeout: Duration,
) -> Result<(UpstreamStream, bytes::BytesMut, http::HeaderMap), UpstreamError> {
    let connecting = async {
        let mut stream = connect(url, tls).await?;
        let (answer, rest) = h1::websocket_handshake(&mut stream, url, headers).await?;
        Ok((stream, rest, answer))
    };
    tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| UpstreamError::Timeout)?
}
