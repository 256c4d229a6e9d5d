//! Request and response hygiene shared by every stream kind: hop-by-hop headers removed in
//! both directions (RFC 9110 section 7.6.1), `X-Forwarded-*` or `Forwarded` added, and the
//! repair of event-stream response headers (SPEC 3 and 10).

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::Forwarded;

const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub const X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

/// Removes `Connection`, every header it names, and the fixed hop-by-hop set.
pub fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        KEEP_ALIVE,
        PROXY_CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
}

/// Who the client is, for the forwarding headers.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr<'a> {
    pub peer: SocketAddr,
    /// `http` or `https`: the scheme of the client's connection.
    pub scheme: &'static str,
    /// The client's `Host` (or `:authority`).
    pub host: Option<&'a str>,
}

/// Adds the forwarding headers the route asks for.
pub fn add_forwarded(headers: &mut HeaderMap, mode: Forwarded, client: ClientAddr<'_>) {
    match mode {
        Forwarded::None => {}
        Forwarded::XForwarded => {
            let ip = client.peer.ip().to_string();
            let chained = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
                Some(prior) if !prior.trim().is_empty() => format!("{prior}, {ip}"),
                _ => ip,
            };
            set(headers, X_FORWARDED_FOR, &chained);
            set(headers, X_FORWARDED_PROTO, client.scheme);
            match client.host {
                Some(host) => set(headers, X_FORWARDED_HOST, host),
                None => {
                    headers.remove(X_FORWARDED_HOST);
                }
            }
        }
        Forwarded::Rfc7239 => {
            // RFC 7239 section 6: an IPv6 node is quoted and bracketed.
            let node = match client.peer.ip() {
                std::net::IpAddr::V4(ip) => ip.to_string(),
                std::net::IpAddr::V6(ip) => format!("\"[{ip}]\""),
            };
            let mut element = format!("for={node};proto={}", client.scheme);
            if let Some(host) = client.host {
                element.push_str(";host=");
                element.push_str(&quote_if_needed(host));
            }
            let value = match headers.get(header::FORWARDED).and_then(|v| v.to_str().ok()) {
                Some(prior) if !prior.trim().is_empty() => format!("{prior}, {element}"),
                _ => element,
            };
            set(headers, header::FORWARDED, &value);
        }
    }
}

fn quote_if_needed(value: &str) -> String {
    let token = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        value.to_owned()
    } else {
        format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// True for a `text/event-stream` media type, parameters and letter case ignored.
pub fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// True when a comma-separated header (`Connection`, `Upgrade`) lists `token`, in any case.
pub fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether the client asks for an event stream (`Accept: text/event-stream`, as every
/// `EventSource` sends).
pub fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|range| range.split(';').next())
        .any(|media| media.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// Makes an event-stream response safe to pass through caches and buffering proxies.
pub fn repair_event_stream(headers: &mut HeaderMap) {
    let cache_control = repaired_cache_control(headers);
    headers.insert(header::CACHE_CONTROL, cache_control);
    headers.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    headers.remove(header::CONTENT_LENGTH);
}

/// Headers of a stream the proxy makes itself (WebSocket origin -> SSE client).
pub fn event_stream_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache, no-transform"),
    );
    headers.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    headers
}

/// SPEC 10: keep `no-store`, `private` and `no-cache` (adding `no-cache` when none is present),
/// drop what lets a cache keep the stream, always add `no-transform`.
fn repaired_cache_control(headers: &HeaderMap) -> HeaderValue {
    const DROPPED: [&str; 5] = ["public", "max-age", "s-maxage", "immutable", "no-transform"];
    let mut kept: Vec<String> = Vec::new();
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            let name = directive
                .split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !DROPPED.contains(&name.as_str())
                && !kept.iter().any(|k| k.eq_ignore_ascii_case(directive))
            {
                kept.push(directive.to_owned());
            }
        }
    }
    let has_strict = kept.iter().any(|d| {
        let name = d.split('=').next().unwrap_or("").trim();
        ["no-store", "private", "no-cache"]
            .iter()
            .any(|s| name.eq_ignore_ascii_case(s))
    });
    if !has_strict {
        kept.insert(0, "no-cache".to_owned());
    }
    kept.push("no-transform".to_owned());
    HeaderValue::from_str(&kept.join(", "))
        .unwrap_or(HeaderValue::from_static("no-cache, no-transform"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache_control(input: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for v in input {
            headers.append(header::CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
        }
        repair_event_stream(&mut headers);
        headers[header::CACHE_CONTROL].to_str().unwrap().to_owned()
    }

    #[test]
    fn cache_control_keeps_strict_drops_caching_adds_no_transform() {
        assert_eq!(cache_control(&[]), "no-cache, no-transform");
        assert_eq!(
            cache_control(&["public, max-age=60"]),
            "no-cache, no-transform"
        );
        assert_eq!(cache_control(&["no-store"]), "no-store, no-transform");
        assert_eq!(
            cache_control(&["private, max-age=5", "immutable"]),
            "private, no-transform"
        );
        assert_eq!(
            cache_control(&["no-cache, no-transform"]),
            "no-cache, no-transform"
        );
        assert_eq!(
            cache_control(&["must-revalidate"]),
            "no-cache, must-revalidate, no-transform"
        );
    }

    #[test]
    fn hop_by_hop_and_connection_named_headers_removed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key(header::ACCEPT));
    }

    #[test]
    fn x_forwarded_for_appends_client() {
        let mut h = HeaderMap::new();
        h.insert(X_FORWARDED_FOR, HeaderValue::from_static("10.0.0.1"));
        let client = ClientAddr {
            peer: "127.0.0.9:4000".parse().unwrap(),
            scheme: "https",
            host: Some("a.example"),
        };
        add_forwarded(&mut h, Forwarded::XForwarded, client);
        assert_eq!(h[X_FORWARDED_FOR], "10.0.0.1, 127.0.0.9");
        assert_eq!(h[X_FORWARDED_PROTO], "https");
        assert_eq!(h[X_FORWARDED_HOST], "a.example");
        let mut h = HeaderMap::new();
        add_forwarded(&mut h, Forwarded::Rfc7239, client);
        assert_eq!(
            h[header::FORWARDED],
            "for=127.0.0.9;proto=https;host=a.example"
        );
    }

    #[test]
    fn event_stream_media_type_ignores_case_and_parameters() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("Text/Event-Stream; charset=utf-8"),
        );
        assert!(is_event_stream(&h));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-streamx"),
        );
        assert!(!is_event_stream(&h));
    }
}
