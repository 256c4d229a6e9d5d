//! CORS for routes with a `cors` key (SPEC 10 "Browsers"): the proxy answers preflights for the
//! route and its back channel and sets `Access-Control-Allow-Origin` on its answers. Without the
//! key, CORS headers are the upstream's own, passed through untouched.

use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use super::{empty_body, ProxyBody};
use crate::config::OriginList;

/// The answer to a preflight `OPTIONS`, when the route has `cors` and the request is one.
pub fn preflight<B>(cors: Option<&OriginList>, req: &Request<B>) -> Option<Response<ProxyBody>> {
    let cors = cors?;
    let is_preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if !is_preflight {
        return None;
    }
    let mut response = Response::new(empty_body());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    allow(Some(cors), req.headers().get(header::ORIGIN), headers);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, OPTIONS"),
    );
    if let Some(asked) = req.headers().get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    Some(response)
}

/// Sets the allow-origin headers for an allowed `origin`.
pub fn allow(cors: Option<&OriginList>, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
    let Some(cors) = cors else { return };
    match cors {
        OriginList::Any => {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        }
        OriginList::List(list) => {
            let Some(origin) = origin else { return };
            let listed = origin
                .to_str()
                .is_ok_and(|o| list.iter().any(|allowed| allowed.eq_ignore_ascii_case(o)));
            if listed {
                headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
                headers.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
                headers.append(header::VARY, HeaderValue::from_static("Origin"));
            }
        }
    }
}
