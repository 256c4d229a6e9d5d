//! Forwarding a request to an HTTP origin: the request body streamed up, the response body
//! streamed down. A `200` `text/event-stream` response becomes an [`SsePassthrough`]; any
//! other response passes unchanged (less hop-by-hop headers).
//!
//! A bodiless `GET` that asks for an event stream gets a connection of its own
//! ([`upstream::h1`]): an open stream then costs its socket and little else. Every other
//! request goes through the route's pooled client.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::{BodyExt, Limited};

use super::headers::{self, ClientAddr, LAST_EVENT_ID};
use super::sse::SsePassthrough;
use super::{error_response, ConnInfo, Proxy, ProxyBody, RequestBody, RouteState};
use crate::metrics::{LimitKind, StreamKind};
use crate::upstream::{self, BoxError, OriginBody, UpstreamError};

/// What the upstream request is made of, taken from the client's request.
pub struct Target {
    pub uri: Uri,
    pub last_event_id: Option<HeaderValue>,
}

/// Builds the upstream URL (SPEC 10 "Upstream URL"): the route's URL path plus the request path
/// below the prefix, the query kept less `last_event_id_param`, whose value becomes the
/// `Last-Event-ID` when the request has no such header.
pub fn target(
    route: &RouteState,
    suffix: &str,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<Target, StatusCode> {
    let base = &route.route.upstream.url;
    let base_path = base.path().trim_end_matches('/');
    let mut path_and_query = String::with_capacity(base_path.len() + suffix.len() + 32);
    path_and_query.push_str(base_path);
    path_and_query.push_str(suffix);
    if path_and_query.is_empty() {
        path_and_query.push('/');
    }
    let mut from_query = None;
    let mut kept: Vec<&str> = Vec::new();
    let base_query = base.query().filter(|q| !q.is_empty());
    kept.extend(base_query);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(name).as_deref()
            == Some(route.route.settings.last_event_id_param.as_bytes())
        {
            from_query = percent_decode(value);
        } else {
            kept.push(pair);
        }
    }
    if !kept.is_empty() {
        path_and_query.push('?');
        path_and_query.push_str(&kept.join("&"));
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path_and_query)
        .build()
        .map_err(|_| StatusCode::BAD_REQUEST)?;
    let last_event_id = match headers.get(&LAST_EVENT_ID) {
        Some(v) => Some(v.clone()),
        None => from_query
            .map(|v| HeaderValue::from_bytes(&v).map_err(|_| StatusCode::BAD_REQUEST))
            .transpose()?,
    };
    Ok(Target { uri, last_event_id })
}

/// Decodes `%XX` escapes and `+` (as in `URLSearchParams`); `None` for a broken escape.
pub fn percent_decode(input: &str) -> Option<Vec<u8>> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// The request headers for the origin: hop-by-hop removed, forwarding headers added, `Host`
/// left to the client for the origin's authority.
pub fn upstream_headers(
    mut headers: HeaderMap,
    route: &RouteState,
    conn: &ConnInfo,
    target: &Target,
) -> HeaderMap {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| conn.authority.clone());
    headers::remove_hop_by_hop(&mut headers);
    headers.remove(header::HOST);
    let client = ClientAddr {
        peer: conn.peer,
        scheme: conn.scheme,
        host: host.as_deref(),
    };
    headers::add_forwarded(&mut headers, route.route.settings.forwarded, client);
    if let Some(id) = &target.last_event_id {
        headers.insert(LAST_EVENT_ID, id.clone());
    }
    headers
}

/// Proxies one plain HTTP (or SSE) request.
pub async fn forward(
    proxy: &Proxy,
    route: Arc<RouteState>,
    conn: Arc<ConnInfo>,
    req: Request<RequestBody>,
    suffix: &str,
) -> Response<ProxyBody> {
    let (mut parts, body) = req.into_parts();
    let target = match target(&route, suffix, parts.uri.query(), &parts.headers) {
        Ok(t) => t,
        Err(status) => return error_response(status, "invalid request target"),
    };
    if parts.method == Method::GET
        && body.is_end_stream()
        && headers::accepts_event_stream(&parts.headers)
    {
        let headers = upstream_headers(std::mem::take(&mut parts.headers), &route, &conn, &target);
        let settings = &route.route.settings;
        let response = upstream::request_own(
            &target.uri,
            route.tls.clone(),
            settings.connect_timeout,
            &parts.method,
            &headers,
        )
        .await;
        return match response {
            Ok(response) => respond(proxy, &route, &conn, response),
            Err(err) => super::upstream_failed(&route, err),
        };
    }
    let max_body = proxy.limits().max_body;
    if let (Some(max), Some(len)) = (max_body, body.size_hint().exact()) {
        if len > max {
            proxy.metrics.limit_rejected(LimitKind::MaxBody);
            return error_response(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
        }
    }
    // A client body that fails (malformed chunking, a cut connection) is the client's fault:
    // the flag turns the upstream error it causes into a 400, never a 502.
    let client_body_failed = Arc::new(AtomicBool::new(false));
    let flag = client_body_failed.clone();
    let mark = move |e: BoxError| {
        if !e.is::<http_body_util::LengthLimitError>() {
            flag.store(true, Ordering::Relaxed);
        }
        e
    };
    let body: ProxyBody = match max_body {
        Some(max) => Limited::new(body, max as usize)
            .map_err(mark)
            .boxed_unsync(),
        None => body.map_err(mark).boxed_unsync(),
    };
    let headers = upstream_headers(std::mem::take(&mut parts.headers), &route, &conn, &target);
    let mut upstream_req = Request::new(body);
    *upstream_req.method_mut() = parts.method.clone();
    *upstream_req.uri_mut() = target.uri;
    *upstream_req.headers_mut() = headers;
    let response = match route.client.request(upstream_req).await {
        Ok(r) => r,
        Err(err) => {
            if body_too_large(&err) {
                proxy.metrics.limit_rejected(LimitKind::MaxBody);
                return error_response(StatusCode::PAYLOAD_TOO_LARGE, "request body too large");
            }
            if client_body_failed.load(Ordering::Relaxed) {
                return error_response(StatusCode::BAD_REQUEST, "malformed request body");
            }
            return super::upstream_failed(&route, UpstreamError::from_client(err));
        }
    };
    respond(proxy, &route, &conn, response.map(OriginBody::Pooled))
}

fn body_too_large(err: &hyper_util::client::legacy::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

fn respond(
    proxy: &Proxy,
    route: &Arc<RouteState>,
    conn: &ConnInfo,
    response: Response<OriginBody>,
) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    // RFC 9112 section 6.3: a Transfer-Encoding overrides Content-Length, and a proxy removes
    // the latter before forwarding (the client gets the body re-framed).
    if parts.headers.contains_key(header::TRANSFER_ENCODING) {
        parts.headers.remove(header::CONTENT_LENGTH);
    }
    headers::remove_hop_by_hop(&mut parts.headers);
    let settings = &route.route.settings;
    let is_stream = parts.status == StatusCode::OK && headers::is_event_stream(&parts.headers);
    let body = if is_stream {
        headers::repair_event_stream(&mut parts.headers);
        let log = route.stream_log(StreamKind::Sse, conn);
        let heartbeat = route.heartbeat();
        let drain = proxy.drain.clone();
        SsePassthrough::new(body, settings.retry, heartbeat, drain, log).boxed_unsync()
    } else {
        let log = route.stream_log(StreamKind::Http, conn);
        super::body::Logged::new(body, log).boxed_unsync()
    };
    Response::from_parts(parts, body)
}
