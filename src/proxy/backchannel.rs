//! The back channel of WebSocket origin -> SSE client streams (SPEC 4.1, SPEC 10): each stream
//! has a random session id, valid only while it lives; a `POST` to
//! `<route>/_send/<session>` sends its body upstream as one message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use tokio::sync::mpsc;

use super::{empty_body, error_response, websocket, ProxyBody, RequestBody, RouteState};
use crate::metrics::LimitKind;

/// The path segment below a route that addresses a session.
pub const SEND_SEGMENT: &str = "/_send/";

/// One message for the upstream, from a `POST`: its body, text (checked UTF-8) or binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackMessage {
    pub binary: bool,
    pub payload: Bytes,
}

/// Sessions of live WebSocket -> SSE streams, by id. Critical sections are a map operation.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

struct Session {
    route: Arc<str>,
    tx: mpsc::Sender<BackMessage>,
}

/// Removes its session from the map when the stream ends.
pub struct SessionGuard {
    sessions: Arc<Sessions>,
    id: String,
}

impl SessionGuard {
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.id);
    }
}

impl Sessions {
    /// Registers a new session of `route` with 128 random bits as its id.
    pub fn open(
        self: &Arc<Self>,
        route: Arc<str>,
        tx: mpsc::Sender<BackMessage>,
    ) -> Result<SessionGuard, getrandom::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), Session { route, tx });
        Ok(SessionGuard {
            sessions: self.clone(),
            id,
        })
    }

    fn sender(&self, route: &str, id: &str) -> Option<mpsc::Sender<BackMessage>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(id)
            .filter(|s| &*s.route == route)
            .map(|s| s.tx.clone())
    }
}

/// The `send` URL of a session: an absolute path on the stream's own host.
pub fn send_path(route_path: &str, id: &str) -> String {
    format!("{}{SEND_SEGMENT}{id}", route_path.trim_end_matches('/'))
}

/// Answers a request to `<route>/_send/<id>`.
pub async fn post(
    sessions: &Sessions,
    metrics: &crate::metrics::Metrics,
    route: &RouteState,
    req: Request<RequestBody>,
    id: &str,
) -> Response<ProxyBody> {
    let settings = &route.route.settings;
    if req.method() != Method::POST {
        let mut response = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "the back channel takes POST",
        );
        response.headers_mut().insert(
            header::ALLOW,
            header::HeaderValue::from_static("POST, OPTIONS"),
        );
        return response;
    }
    if !websocket::origin_allowed(settings, req.headers()) {
        return error_response(StatusCode::FORBIDDEN, "origin not allowed");
    }
    let Some(tx) = sessions.sender(&route.name, id) else {
        return error_response(StatusCode::NOT_FOUND, "unknown or ended session");
    };
    let binary = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim()
                .to_ascii_lowercase()
                .starts_with("application/octet-stream")
        });
    let body = req.into_body();
    let too_large = || {
        metrics.limit_rejected(LimitKind::MaxMessage);
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message larger than max_message",
        )
    };
    if body.size_hint().lower() > settings.max_message as u64 {
        return too_large();
    }
    // A message is bounded by max_message, so collecting it is collecting one message.
    let bytes: Bytes = match Limited::new(body, settings.max_message).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(_) => return error_response(StatusCode::BAD_REQUEST, "malformed request body"),
    };
    if !binary && std::str::from_utf8(&bytes).is_err() {
        return error_response(StatusCode::BAD_REQUEST, "a text message must be UTF-8");
    }
    let message = BackMessage {
        binary,
        payload: bytes,
    };
    match tx.try_send(message) {
        Ok(()) => {
            let mut response = Response::new(empty_body());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            error_response(StatusCode::SERVICE_UNAVAILABLE, "back channel busy; retry")
        }
        Err(mpsc::error::TrySendError::Closed(_)) => {
            error_response(StatusCode::NOT_FOUND, "unknown or ended session")
        }
    }
}
