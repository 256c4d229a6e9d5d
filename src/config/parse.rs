//! The shape of the file (SPEC 7 and 10): the top level, listeners, `admin` and `limits`. Routes
//! and their settings are in `routes.rs`. Each part reads its keys through the `Walker`, which
//! records every problem instead of stopping; a `Config` is returned only when there are none.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_norway::Value;

use super::model::{Admin, CertPair, Config, Limits, Listener, ListenerTls, Route, RouteSettings};
use super::position::{child, item, PositionIndex};
use super::routes::{route, ROUTE_SETTINGS};
use super::values::{keys, set, Setter, Walker};
use super::Problem;

const TOP_KEYS: &[&str] = &[
    "listeners",
    "admin",
    "defaults",
    "routes",
    "limits",
    "drain_timeout",
    "workers",
];
const LISTENER_KEYS: &[&str] = &["bind", "tls"];
const TLS_KEYS: &[&str] = &["certs"];
const CERT_KEYS: &[&str] = &["cert", "key"];
const ADMIN_KEYS: &[&str] = &["bind"];

const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// One thread each: far more than any machine has cores, far fewer than a process may start.
const MAX_WORKERS: usize = 1024;

/// `limits` keys; the defaults are `Limits::default()`.
const LIMITS: &[(&str, Setter<Limits>)] = &[
    ("max_connections", |w, p, v, l| {
        set(&mut l.max_connections, w.positive_integer(p, v).map(Some))
    }),
    ("max_connections_per_ip", |w, p, v, l| {
        set(
            &mut l.max_connections_per_ip,
            w.positive_integer(p, v).map(Some),
        )
    }),
    ("max_header_size", |w, p, v, l| {
        set(&mut l.max_header_size, w.memory_size(p, v, true))
    }),
    ("header_timeout", |w, p, v, l| {
        set(&mut l.header_timeout, w.positive_duration(p, v))
    }),
    ("keepalive_timeout", |w, p, v, l| {
        set(&mut l.keepalive_timeout, w.positive_duration(p, v))
    }),
    ("send_timeout", |w, p, v, l| {
        set(&mut l.send_timeout, w.positive_duration(p, v))
    }),
    ("max_body", |w, p, v, l| {
        set(&mut l.max_body, w.size(p, v).map(Some))
    }),
];

/// Parses and validates `text`; relative file paths are resolved against `base_dir`.
pub(crate) fn parse_config(text: &str, base_dir: &Path) -> Result<Config, Vec<Problem>> {
    let index = PositionIndex::build(text);
    if let Some(pos) = index.too_deep() {
        let message = "invalid YAML: nested too deeply".to_owned();
        return Err(vec![Problem {
            line: pos.line,
            column: pos.column,
            message,
        }]);
    }
    let mut root: Value =
        serde_norway::from_str(text).map_err(|e| vec![syntax_problem(&e, &index)])?;
    // `<<: *anchor` merge keys; merged keys are placed at the mapping that merges them.
    root.apply_merge()
        .map_err(|e| vec![syntax_problem(&e, &index)])?;
    let mut walker = Walker::new(&index, base_dir);
    let config = config(&mut walker, &root);
    let problems = walker.into_problems();
    if problems.is_empty() {
        Ok(config)
    } else {
        Err(problems)
    }
}

/// Reads the whole document. What could not be read is left out (or at its default); the
/// problems say why, so the result is only used when there are none.
fn config(w: &mut Walker<'_>, root: &Value) -> Config {
    let mut config = Config {
        listeners: Vec::new(),
        admin: None,
        routes: Vec::new(),
        limits: Limits::default(),
        drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        workers: None,
    };
    if !matches!(root, Value::Mapping(_)) {
        let found = super::values::describe(root);
        w.report(
            "",
            format!("expected a mapping with `listeners` and `routes`, found {found}"),
        );
        return config;
    }
    let Some(map) = w.mapping("", root, "the top level", TOP_KEYS) else {
        return config;
    };
    if let Some(value) = w.required("", map, "listeners", "the top level") {
        config.listeners = listeners(w, "listeners", value);
    }
    if let Some(value) = map.get("admin") {
        config.admin = admin(w, "admin", value);
    }
    let mut defaults = RouteSettings::default();
    if let Some(value) = map.get("defaults") {
        let allowed = keys(ROUTE_SETTINGS);
        if let Some(settings) = w.mapping("defaults", value, "defaults", &allowed) {
            w.apply("defaults", settings, ROUTE_SETTINGS, &mut defaults);
        }
    }
    if let Some(value) = w.required("", map, "routes", "the top level") {
        config.routes = routes(w, "routes", value, &defaults);
    }
    if let Some(value) = map.get("limits") {
        if let Some(limits) = w.mapping("limits", value, "limits", &keys(LIMITS)) {
            w.apply("limits", limits, LIMITS, &mut config.limits);
        }
    }
    if let Some(value) = map.get("drain_timeout") {
        set(
            &mut config.drain_timeout,
            w.duration("drain_timeout", value),
        );
    }
    if let Some(value) = map.get("workers") {
        set(&mut config.workers, workers(w, value));
    }
    config
}

/// `workers`: a positive integer up to [`MAX_WORKERS`], or `auto` (`None`) for one per core.
fn workers(w: &mut Walker<'_>, value: &Value) -> Option<Option<usize>> {
    match value {
        Value::String(s) if s == "auto" => Some(None),
        Value::Number(_) => {
            let n = w.positive_integer("workers", value)?;
            if n > MAX_WORKERS {
                w.report_value("workers", format!("at most {MAX_WORKERS}, found {n}"));
                return None;
            }
            Some(Some(n))
        }
        other => {
            let found = super::values::describe(other);
            w.report_value(
                "workers",
                format!("expected a positive integer or `auto`, found {found}"),
            );
            None
        }
    }
}

fn listeners(w: &mut Walker<'_>, path: &str, value: &Value) -> Vec<Listener> {
    let Some(items) = w.list(path, value, "listener") else {
        return Vec::new();
    };
    let mut listeners = Vec::with_capacity(items.len());
    for (i, value) in items.iter().enumerate() {
        let path = item(path, i);
        let Some(map) = w.mapping(&path, value, "listener", LISTENER_KEYS) else {
            continue;
        };
        let bind = w.required(&path, map, "bind", "listener");
        let bind = bind.and_then(|v| self::bind(w, &child(&path, "bind"), v));
        // `Some(None)`: cleartext; `None`: a `tls` section with problems.
        let tls = match map.get("tls") {
            None => Some(None),
            Some(value) => listener_tls(w, &child(&path, "tls"), value).map(Some),
        };
        if let (Some(bind), Some(tls)) = (bind, tls) {
            listeners.push(Listener { bind, tls });
        }
    }
    listeners
}

/// A listener's or the admin listener's address; no two may be the same.
fn bind(w: &mut Walker<'_>, path: &str, value: &Value) -> Option<SocketAddr> {
    let addr = w.socket_addr(path, value)?;
    // Port 0 is a fresh port for each listener: never a clash.
    if addr.port() != 0 {
        w.unique(path, "bind", addr.to_string());
    }
    Some(addr)
}

fn routes(w: &mut Walker<'_>, path: &str, value: &Value, defaults: &RouteSettings) -> Vec<Route> {
    let Some(items) = w.list(path, value, "route") else {
        return Vec::new();
    };
    let routes = items.iter().enumerate();
    let routes = routes.filter_map(|(i, value)| route(w, &item(path, i), value, defaults));
    routes.collect()
}

/// A listener's `tls` section: at least one certificate and key, both readable files.
fn listener_tls(w: &mut Walker<'_>, path: &str, value: &Value) -> Option<ListenerTls> {
    let map = w.mapping(path, value, "tls", TLS_KEYS)?;
    let certs = w.required(path, map, "certs", "tls")?;
    let certs_path = child(path, "certs");
    let items = w.list(&certs_path, certs, "certificate")?;
    let mut pairs = Vec::with_capacity(items.len());
    for (i, value) in items.iter().enumerate() {
        let path = item(&certs_path, i);
        let Some(map) = w.mapping(&path, value, "certificate", CERT_KEYS) else {
            continue;
        };
        let mut file = |key: &str| {
            let value = w.required(&path, map, key, "certificate")?;
            w.readable_file(&child(&path, key), value)
                .map(|(file, _)| file)
        };
        let (cert, key) = (file("cert"), file("key"));
        if let (Some(cert), Some(key)) = (cert, key) {
            pairs.push(CertPair { cert, key });
        }
    }
    (pairs.len() == items.len()).then_some(ListenerTls { certs: pairs })
}

fn admin(w: &mut Walker<'_>, path: &str, value: &Value) -> Option<Admin> {
    let map = w.mapping(path, value, "admin", ADMIN_KEYS)?;
    let bind = w.required(path, map, "bind", "admin")?;
    let bind = self::bind(w, &child(path, "bind"), bind)?;
    Some(Admin { bind })
}

/// A text serde_norway cannot read: one problem at its location.
fn syntax_problem(error: &serde_norway::Error, index: &PositionIndex) -> Problem {
    let message = error.to_string();
    // serde_norway places a duplicate key at the document's start; the index knows better.
    if let (true, Some(pos)) = (message.contains("duplicate entry"), index.duplicate_key()) {
        let message = format!("invalid YAML: {message}");
        return Problem {
            line: pos.line,
            column: pos.column,
            message,
        };
    }
    let (line, column) = error.location().map_or((1, 1), |l| (l.line(), l.column()));
    let message = format!("invalid YAML: {}", without_first_location(&message));
    Problem {
        line,
        column,
        message,
    }
}

/// Drops the first ` at line N column M` from a serde_norway message: the problem's own
/// position says it.
fn without_first_location(message: &str) -> String {
    let Some(start) = message.find(" at line ") else {
        return message.to_owned();
    };
    let rest = &message[start + " at line ".len()..];
    let digits = |s: &str| s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let line_end = digits(rest);
    let Some(after) = rest[line_end..].strip_prefix(" column ") else {
        return message.to_owned();
    };
    let end = message.len() - after.len() + digits(after);
    format!("{}{}", &message[..start], &message[end..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_location_is_dropped_from_yaml_messages() {
        assert_eq!(
            without_first_location("did not find expected ',' or ']' at line 3 column 2, while parsing a flow sequence at line 2 column 4"),
            "did not find expected ',' or ']', while parsing a flow sequence at line 2 column 4"
        );
        assert_eq!(
            without_first_location("unknown anchor at line 1 column 4"),
            "unknown anchor"
        );
        assert_eq!(without_first_location("no location"), "no location");
    }
}
