//! Routes (SPEC 2 and 10): `path`, `upstream`, `send_to`, and the route settings, each of which
//! may also stand in `defaults`. One table, `ROUTE_SETTINGS`, says how every setting is read;
//! `defaults` and each route apply the same table, a route on top of a copy of the defaults (and
//! the defaults on top of `RouteSettings::default()`), so a route value overrides `defaults`,
//! which override the built-in defaults.

use serde_norway::Value;

use super::model::UpstreamKind;
use super::model::{BinaryMode, Format, Forwarded, OriginList, Route, RouteSettings, Upstream};
use super::position::child;
use super::urls::normalise_route_path;
use super::values::{describe, keys, nullable, set, Setter, Walker};

/// Route keys that only a route has; every `ROUTE_SETTINGS` key is allowed too.
const ROUTE_KEYS: &[&str] = &["path", "upstream", "send_to"];

const UPSTREAM_SCHEMES: &[&str] = &["http", "https", "ws", "wss"];
const SEND_TO_SCHEMES: &[&str] = &["http", "https"];

const FORWARDED: &[(&str, Forwarded)] = &[
    ("x-forwarded", Forwarded::XForwarded),
    ("forwarded", Forwarded::Rfc7239),
    ("none", Forwarded::None),
];
const FORMATS: &[(&str, Format)] = &[("raw", Format::Raw), ("json", Format::Json)];
const BINARY_MODES: &[(&str, BinaryMode)] = &[
    ("base64", BinaryMode::Base64),
    ("drop", BinaryMode::Drop),
    ("close", BinaryMode::Close),
];

/// Every route setting (SPEC 10 table); the defaults are `RouteSettings::default()`.
pub(crate) const ROUTE_SETTINGS: &[(&str, Setter<RouteSettings>)] = &[
    ("heartbeat", |w, p, v, s| {
        set(&mut s.heartbeat, w.optional_duration(p, v))
    }),
    ("heartbeat_padding", |w, p, v, s| {
        set(&mut s.heartbeat_padding, w.memory_size(p, v, false))
    }),
    ("retry", |w, p, v, s| {
        set(&mut s.retry, nullable(v, || w.duration(p, v)))
    }),
    ("last_event_id_param", |w, p, v, s| {
        set(&mut s.last_event_id_param, query_name(w, p, v))
    }),
    ("forwarded", |w, p, v, s| {
        set(&mut s.forwarded, w.choice(p, v, FORWARDED))
    }),
    ("connect_timeout", |w, p, v, s| {
        set(&mut s.connect_timeout, w.positive_duration(p, v))
    }),
    ("ws_ping", |w, p, v, s| {
        set(&mut s.ws_ping, w.optional_duration(p, v))
    }),
    ("max_message", |w, p, v, s| {
        set(&mut s.max_message, w.memory_size(p, v, true))
    }),
    ("client_buffer", |w, p, v, s| {
        set(&mut s.client_buffer, w.memory_size(p, v, true))
    }),
    ("format", |w, p, v, s| {
        set(&mut s.format, w.choice(p, v, FORMATS))
    }),
    ("binary", |w, p, v, s| {
        set(&mut s.binary, w.choice(p, v, BINARY_MODES))
    }),
    ("bridge_event", |w, p, v, s| {
        set(&mut s.bridge_event, event_type(w, p, v))
    }),
    ("on_connect", |w, p, v, s| {
        set(&mut s.on_connect, w.string_list(p, v, "a message"))
    }),
    ("cors", |w, p, v, s| {
        set(&mut s.cors, nullable(v, || cors(w, p, v)))
    }),
    ("allowed_origins", |w, p, v, s| {
        set(&mut s.allowed_origins, nullable(v, || w.origins(p, v)))
    }),
    ("upstream_ca", |w, p, v, s| {
        set(&mut s.upstream_ca, nullable(v, || pem_file(w, p, v)))
    }),
];

/// Reads the route at `path`, its settings on top of `defaults`.
pub(crate) fn route(
    w: &mut Walker<'_>,
    path: &str,
    value: &Value,
    defaults: &RouteSettings,
) -> Option<Route> {
    let allowed: Vec<&str> = ROUTE_KEYS
        .iter()
        .copied()
        .chain(keys(ROUTE_SETTINGS))
        .collect();
    let map = w.mapping(path, value, "route", &allowed)?;
    let prefix = w.required(path, map, "path", "route");
    let prefix = prefix.and_then(|v| route_path(w, &child(path, "path"), v));
    let upstream = w.required(path, map, "upstream", "route");
    let upstream = upstream.and_then(|v| self::upstream(w, &child(path, "upstream"), v));
    let send_to = match map.get("send_to") {
        None => Some(None),
        Some(value) => send_to(w, &child(path, "send_to"), value, upstream.as_ref()).map(Some),
    };
    let mut settings = defaults.clone();
    w.apply(path, map, ROUTE_SETTINGS, &mut settings);
    Some(Route {
        path: prefix?,
        upstream: upstream?,
        send_to: send_to?,
        settings,
    })
}

/// A normalised path prefix; no two routes may have the same.
fn route_path(w: &mut Walker<'_>, path: &str, value: &Value) -> Option<String> {
    let text = w.string(path, value, "a path such as /events")?;
    let prefix = normalise_route_path(text)
        .map_err(|e| w.report_value(path, format!("invalid route path {text:?}: {e}")))
        .ok()?;
    w.unique(path, "route path", prefix.clone());
    Some(prefix)
}

fn upstream(w: &mut Walker<'_>, path: &str, value: &Value) -> Option<Upstream> {
    let url = w.url(path, value, UPSTREAM_SCHEMES)?;
    let scheme = url.scheme_str().unwrap_or_default();
    let kind = match scheme {
        "ws" | "wss" => UpstreamKind::WebSocket,
        _ => UpstreamKind::Http,
    };
    let tls = matches!(scheme, "https" | "wss");
    Some(Upstream { url, kind, tls })
}

/// `send_to` carries messages from WebSocket clients of an SSE origin (SPEC 4.2), so it belongs
/// to an `http`/`https` upstream only.
fn send_to(
    w: &mut Walker<'_>,
    path: &str,
    value: &Value,
    upstream: Option<&Upstream>,
) -> Option<http::Uri> {
    if let Some(upstream) = upstream.filter(|u| u.kind == UpstreamKind::WebSocket) {
        let message = format!(
            "only allowed when the upstream is http or https (it carries messages from WebSocket \
             clients of an SSE origin); this route's upstream is {}",
            upstream.url
        );
        w.report_value(path, message);
        return None;
    }
    w.url(path, value, SEND_TO_SCHEMES)
}

/// A query parameter name: letters, digits, `-`, `.`, `_`, `~` (RFC 3986 unreserved).
fn query_name(w: &mut Walker<'_>, path: &str, value: &Value) -> Option<String> {
    let expected = "a non-empty name of letters, digits, -, ., _ or ~";
    let name = w.string(path, value, expected)?;
    let unreserved = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~');
    if name.is_empty() || !name.chars().all(unreserved) {
        w.report_value(path, format!("invalid name {name:?}: expected {expected}"));
        return None;
    }
    Some(name.to_owned())
}

/// An SSE event type: it ends up on an `event:` line, so no CR or LF (WHATWG: either ends a line).
fn event_type(w: &mut Walker<'_>, path: &str, value: &Value) -> Option<String> {
    let expected = "a non-empty event type without line breaks";
    let name = w.string(path, value, expected)?;
    if name.is_empty() || name.contains(['\r', '\n']) {
        w.report_value(
            path,
            format!("invalid event type {name:?}: expected {expected}"),
        );
        return None;
    }
    Some(name.to_owned())
}

/// `"*"` or a list of origins.
fn cors(w: &mut Walker<'_>, path: &str, value: &Value) -> Option<OriginList> {
    match value {
        Value::String(s) if s == "*" => Some(OriginList::Any),
        Value::Sequence(_) => w.origins(path, value).map(OriginList::List),
        _ => {
            let found = describe(value);
            w.report_value(
                path,
                format!("expected \"*\" or a list of origins, found {found}"),
            );
            None
        }
    }
}

/// A readable PEM file holding at least one certificate.
fn pem_file(w: &mut Walker<'_>, path: &str, value: &Value) -> Option<std::path::PathBuf> {
    let (file, contents) = w.readable_file(path, value)?;
    if !contents
        .windows(27)
        .any(|window| window == b"-----BEGIN CERTIFICATE-----")
    {
        let message = format!(
            "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            file.display()
        );
        w.report_value(path, message);
        return None;
    }
    Some(file)
}
