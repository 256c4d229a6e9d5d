//! Whole files through `parse`: defaults, inheritance, and every kind of problem at its exact
//! line and column.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const HEAD: &str = "listeners:\n  - bind: 127.0.0.1:8080\n";

fn ok(text: &str) -> Config {
    match parse(text, "proxy.yaml") {
        Ok(config) => config,
        Err(e) => panic!("expected a valid configuration, got:\n{e}"),
    }
}

/// Each problem as `LINE:COLUMN: message`.
fn problems(text: &str) -> Vec<String> {
    problems_in(text, "proxy.yaml")
}

fn problems_in(text: &str, file: &str) -> Vec<String> {
    match parse(text, file) {
        Ok(_) => panic!("expected problems in:\n{text}"),
        Err(e) => e
            .problems
            .iter()
            .map(|p| format!("{}:{}: {}", p.line, p.column, p.message))
            .collect(),
    }
}

/// The single problem of `text`, which must start with `expected` (`LINE:COLUMN: message...`).
#[track_caller]
fn assert_problem(text: &str, expected: &str) {
    let found = problems(text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        found[0].starts_with(expected),
        "expected {expected:?}\n   found {:?}",
        found[0]
    );
}

/// A fresh directory for files a configuration names, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = format!("ssebridge-config-{}-{name}", std::process::id());
        let dir = std::env::temp_dir().join(dir);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn route(upstream: &str) -> String {
    format!("{HEAD}routes:\n  - path: /a\n    upstream: {upstream}\n")
}

#[test]
fn a_minimal_file_gets_every_default() {
    let config = ok(&route("http://127.0.0.1:9000"));
    assert_eq!(config.listeners.len(), 1);
    assert_eq!(config.listeners[0].bind, "127.0.0.1:8080".parse().unwrap());
    assert!(config.listeners[0].tls.is_none());
    assert!(config.admin.is_none());
    assert_eq!(config.drain_timeout, Duration::from_secs(30));
    assert_eq!(config.workers, None, "auto");
    let limits = &config.limits;
    assert_eq!(
        (
            limits.max_connections,
            limits.max_connections_per_ip,
            limits.max_body
        ),
        (None, None, None)
    );
    assert_eq!(limits.max_header_size, 16 * 1024);
    assert_eq!(limits.header_timeout, Duration::from_secs(10));
    assert_eq!(limits.keepalive_timeout, Duration::from_secs(60));
    assert_eq!(limits.send_timeout, Duration::from_secs(30));

    let route = &config.routes[0];
    assert_eq!(route.path, "/a");
    assert_eq!(route.upstream.url, "http://127.0.0.1:9000/");
    assert_eq!(
        (route.upstream.kind, route.upstream.tls),
        (UpstreamKind::Http, false)
    );
    assert!(route.send_to.is_none());
    let s = &route.settings;
    assert_eq!(s.heartbeat, Some(Duration::from_secs(15)));
    assert_eq!((s.heartbeat_padding, s.retry), (0, None));
    assert_eq!(s.last_event_id_param, "last_event_id");
    assert_eq!(s.forwarded, Forwarded::XForwarded);
    assert_eq!(s.connect_timeout, Duration::from_secs(5));
    assert_eq!(s.ws_ping, Some(Duration::from_secs(30)));
    assert_eq!((s.max_message, s.client_buffer), (1 << 20, 1 << 20));
    assert_eq!((s.format, s.binary), (Format::Raw, BinaryMode::Base64));
    assert_eq!(s.bridge_event, "bridge");
    assert!(s.on_connect.is_empty());
    assert_eq!(
        (&s.cors, &s.allowed_origins, &s.upstream_ca),
        (&None, &None, &None)
    );
}

#[test]
fn a_route_value_overrides_defaults_which_override_built_in_defaults() {
    let config = ok(&format!(
        "{HEAD}defaults:\n  heartbeat: 5s\n  retry: 2s\n  format: json\n  cors: '*'\nroutes:
  - path: /a\n    upstream: ws://127.0.0.1:9001/ws
  - path: /b\n    upstream: wss://127.0.0.1:9001\n    heartbeat: 0\n    format: raw\n    retry: ~\n    cors: ~
"
    ));
    let (a, b) = (&config.routes[0], &config.routes[1]);
    assert_eq!(a.settings.heartbeat, Some(Duration::from_secs(5)));
    assert_eq!(a.settings.retry, Some(Duration::from_secs(2)));
    assert_eq!(a.settings.format, Format::Json);
    assert_eq!(a.settings.cors, Some(OriginList::Any));
    assert_eq!(
        a.settings.ws_ping,
        Some(Duration::from_secs(30)),
        "untouched keys keep the built-in default"
    );
    assert_eq!(
        (a.upstream.kind, a.upstream.tls),
        (UpstreamKind::WebSocket, false)
    );
    assert_eq!(b.settings.heartbeat, None);
    assert_eq!(b.settings.format, Format::Raw);
    assert_eq!(
        (b.settings.retry, &b.settings.cors),
        (None, &None),
        "null unsets a default"
    );
    assert_eq!(
        (b.upstream.kind, b.upstream.tls),
        (UpstreamKind::WebSocket, true)
    );
    assert_eq!(b.upstream.url, "wss://127.0.0.1:9001/");
}

#[test]
fn every_unit_form_is_read() {
    let config = ok(&format!(
        "{HEAD}drain_timeout: 1h\nlimits:\n  max_header_size: 8192\n  max_body: 2GiB\n  header_timeout: 500ms
  send_timeout: 2m\n  keepalive_timeout: 1s\nroutes:\n  - path: /a\n    upstream: http://127.0.0.1:1/
    heartbeat: 0s\n    ws_ping: 0\n    retry: 0\n    heartbeat_padding: 512B\n    max_message: 64KiB
    client_buffer: 3MiB\n"
    ));
    assert_eq!(config.drain_timeout, Duration::from_secs(3600));
    assert_eq!(config.limits.max_header_size, 8192);
    assert_eq!(config.limits.max_body, Some(2 << 30));
    assert_eq!(config.limits.header_timeout, Duration::from_millis(500));
    assert_eq!(config.limits.send_timeout, Duration::from_secs(120));
    let s = &config.routes[0].settings;
    assert_eq!(
        (s.heartbeat, s.ws_ping, s.retry),
        (None, None, Some(Duration::ZERO))
    );
    assert_eq!(
        (s.heartbeat_padding, s.max_message, s.client_buffer),
        (512, 64 << 10, 3 << 20)
    );
}

#[test]
fn every_setting_is_read() {
    let dir = TempDir::new("settings");
    std::fs::write(
        dir.join("ca.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let text = format!(
        "{HEAD}admin: {{ bind: 127.0.0.1:9090 }}\nlimits: {{ max_connections: 10, max_connections_per_ip: 2 }}
routes:\n  - path: /a\n    upstream: https://127.0.0.1:9000/sse\n    send_to: http://127.0.0.1:9000/post
    last_event_id_param: lei\n    forwarded: forwarded\n    connect_timeout: 1s\n    binary: drop
    bridge_event: hello\n    on_connect: [one, two]\n    cors: [https://a.example]
    allowed_origins: [HTTPS://B.example:8443]\n    upstream_ca: ca.pem\n"
    );
    let config = parse(&text, dir.join("proxy.yaml").to_str().unwrap()).unwrap();
    assert_eq!(
        config.admin.unwrap().bind,
        "127.0.0.1:9090".parse().unwrap()
    );
    assert_eq!(
        (
            config.limits.max_connections,
            config.limits.max_connections_per_ip
        ),
        (Some(10), Some(2))
    );
    let route = &config.routes[0];
    assert_eq!(
        route.send_to.as_ref().unwrap(),
        "http://127.0.0.1:9000/post"
    );
    assert_eq!(
        (route.upstream.kind, route.upstream.tls),
        (UpstreamKind::Http, true)
    );
    let s = &route.settings;
    assert_eq!(
        (s.last_event_id_param.as_str(), s.forwarded),
        ("lei", Forwarded::Rfc7239)
    );
    assert_eq!(
        (s.connect_timeout, s.binary),
        (Duration::from_secs(1), BinaryMode::Drop)
    );
    assert_eq!(
        (s.bridge_event.as_str(), s.on_connect.clone()),
        ("hello", vec!["one".into(), "two".into()])
    );
    assert_eq!(
        s.cors,
        Some(OriginList::List(vec!["https://a.example".into()]))
    );
    assert_eq!(
        s.allowed_origins,
        Some(vec!["https://b.example:8443".into()])
    );
    assert_eq!(s.upstream_ca.as_deref(), Some(dir.join("ca.pem").as_path()));
}

#[test]
fn route_paths_are_normalised() {
    let config = ok(&format!(
        "{HEAD}routes:\n  - {{ path: '//a//b/', upstream: 'http://o' }}\n  - {{ path: /, upstream: 'http://o' }}\n"
    ));
    assert_eq!(config.routes[0].path, "/a/b");
    assert_eq!(config.routes[1].path, "/");
    assert_problem(
        &route("http://o").replace("/a", "/a/../b"),
        "4:5: path: invalid route path \"/a/../b\": `.` and `..` segments",
    );
    assert_problem(
        &route("http://o").replace("/a", "/a?x"),
        "4:5: path: invalid route path \"/a?x\": '?' is not allowed",
    );
    assert_problem(
        &route("http://o").replace("/a", "a"),
        "4:5: path: invalid route path \"a\": must start with /",
    );
}

#[test]
fn tls_files_are_resolved_against_the_config_directory() {
    let dir = TempDir::new("tls");
    std::fs::write(dir.join("cert.pem"), "cert").unwrap();
    std::fs::write(dir.join("key.pem"), "key").unwrap();
    let text = "listeners:\n  - bind: 127.0.0.1:8443\n    tls:\n      certs:\n        - { cert: cert.pem, key: key.pem }
routes:\n  - { path: /, upstream: 'http://127.0.0.1:1' }\n";
    let file = dir.join("proxy.yaml");
    let config = parse(text, file.to_str().unwrap()).unwrap();
    let certs = &config.listeners[0].tls.as_ref().unwrap().certs;
    assert_eq!(
        (certs[0].cert.clone(), certs[0].key.clone()),
        (dir.join("cert.pem"), dir.join("key.pem"))
    );

    let missing = text.replace("key.pem", "nokey.pem");
    let found = problems_in(&missing, file.to_str().unwrap());
    let expected = format!(
        "5:29: key: cannot read {}: ",
        dir.join("nokey.pem").display()
    );
    assert!(
        found.len() == 1 && found[0].starts_with(&expected),
        "{found:#?}"
    );
}

#[test]
fn each_kind_of_problem_is_reported_at_its_key() {
    let r = route("http://127.0.0.1:9000");
    assert_problem(
        &format!("{r}    heartbeat: 15 sec\n"),
        r#"6:5: heartbeat: invalid duration "15 sec": expected an integer followed by ms, s, m or h"#,
    );
    assert_problem(
        &format!("{r}    heartbeat: 15\n"),
        "6:5: heartbeat: invalid duration 15: a bare number is only allowed for 0",
    );
    assert_problem(
        &format!("{r}    max_message: 1MB\n"),
        r#"6:5: max_message: invalid size "1MB": expected an integer optionally followed by B, KiB, MiB or GiB"#,
    );
    assert_problem(
        &format!("{r}    max_message: 0\n"),
        "6:5: max_message: must be greater than 0",
    );
    assert_problem(
        &format!("{r}    connect_timeout: 0s\n"),
        "6:5: connect_timeout: must be greater than 0",
    );
    assert_problem(
        &format!("{r}    format: xml\n"),
        r#"6:5: format: expected `raw` or `json`, found "xml""#,
    );
    assert_problem(
        &format!("{r}    binary: [a]\n"),
        "6:5: binary: expected one of `base64`, `drop` or `close`, found a list",
    );
    assert_problem(
        &format!("{r}    bridge_event: \"a\\nb\"\n"),
        r#"6:5: bridge_event: invalid event type "a\nb""#,
    );
    assert_problem(
        &format!("{r}    last_event_id_param: 'a&b'\n"),
        r#"6:5: last_event_id_param: invalid name "a&b""#,
    );
    assert_problem(
        &format!("{r}    on_connect:\n      - ok\n      - {{ x: 1 }}\n"),
        "8:9: on_connect[1]: expected a message, found a mapping",
    );
    assert_problem(
        &format!("{r}    cors: yes\n"),
        r#"6:5: cors: expected "*" or a list of origins, found "yes""#,
    );
    assert_problem(
        &format!("{r}    allowed_origins: [https://a/b]\n"),
        r#"6:23: allowed_origins[0]: invalid origin "https://a/b""#,
    );
    assert_problem(
        &format!("{r}    upstream_ca: /nonexistent/ca.pem\n"),
        "6:5: upstream_ca: cannot read /nonexistent/ca.pem: ",
    );
    assert_problem(
        &route("ftp://o/"),
        r#"5:5: upstream: invalid URL "ftp://o/": unsupported scheme; expected a URL starting with one of http://, https://, ws:// or wss://"#,
    );
    assert_problem(
        &route("http://o/#x"),
        "5:5: upstream: invalid URL \"http://o/#x\": a fragment",
    );
    assert_problem(
        &format!("{}    send_to: http://o/post\n", route("ws://o/")),
        "6:5: send_to: only allowed when the upstream is http or https",
    );
    assert_problem(&format!("{r}    send_to: ws://o/post\n"), "6:5: send_to: invalid URL \"ws://o/post\": unsupported scheme; expected a URL starting with http:// or https://");
    assert_problem(
        &format!("{r}limits:\n  max_connections: 0\n"),
        "7:3: max_connections: expected a positive integer, found 0",
    );
    assert_problem(
        &format!("{r}admin:\n  bind: localhost:80\n"),
        r#"7:3: bind: invalid address "localhost:80": expected IP:PORT such as 127.0.0.1:8080"#,
    );
    assert_problem(
        &format!("{r}admin: {{ bind: 127.0.0.1:8080 }}\n"),
        "6:10: bind: duplicate bind `127.0.0.1:8080` (first at line 2)",
    );
    assert_problem(
        &format!("{r}drain_timeout: [1]\n"),
        "6:1: drain_timeout: expected a duration such as 15s",
    );
}

#[test]
fn missing_and_empty_required_keys_are_reported_at_the_enclosing_mapping() {
    assert_problem(
        "# nothing but\nroutes:\n  - { path: /, upstream: 'http://o' }\n",
        "2:1: missing required key `listeners` in the top level",
    );
    assert_problem(
        &format!("{HEAD}routes:\n  - path: /a\n"),
        "4:5: missing required key `upstream` in route",
    );
    assert_problem(
        &format!("{HEAD}routes: []\n"),
        "3:1: routes: expected at least one route, found an empty list",
    );
    assert_problem(
        &format!("listeners:\n  - {{}}\n{}", &route("http://o")[HEAD.len()..]),
        "2:5: missing required key `bind` in listener",
    );
    assert_problem(
        &format!(
            "{}listeners:\n  - bind: 127.0.0.1:1\n    tls: {{ certs: [] }}\n",
            &route("http://o")[HEAD.len()..]
        ),
        "6:12: certs: expected at least one certificate, found an empty list",
    );
    assert_problem(
        "",
        "1:1: expected a mapping with `listeners` and `routes`, found nothing",
    );
    assert_problem(
        "- a\n",
        "1:1: expected a mapping with `listeners` and `routes`, found a list",
    );
}

#[test]
fn unknown_keys_are_reported_everywhere() {
    let r = route("http://o");
    let tls = "listeners:\n  - bind: 127.0.0.1:1\n    tls: { certs: [ { cert: a, key: b } ], ciphers: x }\n";
    for (text, expected) in [
        (format!("{r}listner: 1\n"), "6:1: unknown key `listner` in the top level (did you mean `listeners`?); expected one of listeners, admin, defaults, routes, limits, drain_timeout"),
        (format!("{r}    hearbeat: 1s\n"), "6:5: unknown key `hearbeat` in route (did you mean `heartbeat`?); expected one of path, upstream, send_to, heartbeat, "),
        (format!("{r}defaults:\n  path: /x\n"), "7:3: unknown key `path` in defaults; expected one of heartbeat, heartbeat_padding, "),
        (format!("{r}limits:\n  max_conections: 1\n"), "7:3: unknown key `max_conections` in limits (did you mean `max_connections`?)"),
        (format!("{}{tls}", &r[HEAD.len()..]), "6:44: unknown key `ciphers` in tls; expected one of certs"),
        (format!("{r}admin: {{ bind: 127.0.0.1:2, port: 1 }}\n"), "6:29: unknown key `port` in admin; expected one of bind"),
    ] {
        let found = problems(&text);
        assert!(found.iter().any(|p| p.starts_with(expected)), "expected {expected:?} in {found:#?}");
    }
}

#[test]
fn duplicates_are_reported_at_the_second_one() {
    assert_problem(
        &format!(
            "{}  - {{ path: /a/, upstream: 'http://o' }}\n",
            route("http://o")
        ),
        "6:7: path: duplicate route path `/a` (first at line 4)",
    );
    let routes = &route("http://o")[HEAD.len()..];
    assert_problem(
        &format!("listeners:\n  - bind: 127.0.0.1:1\n  - bind: 127.0.0.1:1\n{routes}"),
        "3:5: bind: duplicate bind `127.0.0.1:1` (first at line 2)",
    );
    ok(&format!(
        "listeners:\n  - bind: 127.0.0.1:0\n  - bind: 127.0.0.1:0\n{routes}"
    ));
}

#[test]
fn three_different_problems_are_all_reported_in_order() {
    let text = "\
listeners:
  - bind: 127.0.0.1:99999
routes:
  - path: /a
    upstream: http://127.0.0.1:9000
    heartbeat: soon
  - path: /b
limits:
  max_body: lots
";
    assert_eq!(
        problems(text),
        [
            r#"2:5: bind: invalid address "127.0.0.1:99999": expected IP:PORT such as 127.0.0.1:8080"#,
            r#"6:5: heartbeat: invalid duration "soon": expected an integer followed by ms, s, m or h"#,
            "7:5: missing required key `upstream` in route",
            r#"9:3: max_body: invalid size "lots": expected an integer optionally followed by B, KiB, MiB or GiB"#,
        ]
    );
}

#[test]
fn a_yaml_syntax_error_is_one_problem_at_its_line() {
    let text = format!("{HEAD}routes:\n  - path: [/a\n    upstream: http://o\n");
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(found[0].starts_with("5:13: invalid YAML: "), "{found:#?}");
    assert!(!found[0].contains("at line 5 column 13"), "{found:#?}");

    assert_problem(
        &format!("{HEAD}routes:\n  - path: /a\n    path: /b\n"),
        r#"5:5: invalid YAML: routes[0]: duplicate entry with key "path""#,
    );
}

#[test]
fn errors_print_one_line_per_problem_and_unreadable_files_say_so() {
    let err = parse(
        &format!("{HEAD}routes:\n  - path: x\n    upstream: y\n"),
        "etc/proxy.yaml",
    )
    .unwrap_err();
    let text = err.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("etc/proxy.yaml:4:5: path: "), "{text}");
    assert!(
        lines[1].starts_with("etc/proxy.yaml:5:5: upstream: "),
        "{text}"
    );

    let err = load(Path::new("/nonexistent/proxy.yaml")).unwrap_err();
    assert!(err.problems.is_empty() && err.unreadable.is_some());
    assert!(
        err.to_string()
            .starts_with("cannot read /nonexistent/proxy.yaml: "),
        "{err}"
    );
}

#[test]
fn load_reads_the_file_and_resolves_paths_next_to_it() {
    let dir = TempDir::new("load");
    std::fs::write(dir.join("ca.pem"), "-----BEGIN CERTIFICATE-----\n").unwrap();
    std::fs::write(
        dir.join("proxy.yaml"),
        format!("{}    upstream_ca: ca.pem\n", route("https://o")),
    )
    .unwrap();
    let config = load(&dir.join("proxy.yaml")).unwrap();
    assert_eq!(
        config.routes[0].settings.upstream_ca,
        Some(dir.join("ca.pem"))
    );

    std::fs::write(dir.join("ca.pem"), "not a certificate").unwrap();
    let err = load(&dir.join("proxy.yaml")).unwrap_err();
    assert!(err.to_string().contains(":6:5: upstream_ca: "), "{err}");
    assert!(
        err.to_string().contains("holds no PEM certificate"),
        "{err}"
    );
}

#[test]
fn the_example_file_parses() {
    let config = ok(include_str!("../../proxy.yaml.example"));
    assert!(config
        .listeners
        .iter()
        .all(|l| l.bind.ip().is_loopback() && l.tls.is_none()));
    let kinds: Vec<_> = config
        .routes
        .iter()
        .map(|r| (r.upstream.kind, r.send_to.is_some()))
        .collect();
    assert!(kinds.contains(&(UpstreamKind::Http, true)));
    assert!(kinds.contains(&(UpstreamKind::WebSocket, false)));
    let ticker = config.routes.iter().find(|r| r.path == "/ticker").unwrap();
    assert_eq!(ticker.settings.format, Format::Json);
    assert_eq!(
        ticker.settings.on_connect,
        [r#"{"op":"subscribe","symbol":"{query.symbol}"}"#]
    );
    for route in &config.routes {
        assert_eq!(
            route.upstream.url.host(),
            Some("127.0.0.1"),
            "{}",
            route.path
        );
    }
}

#[test]
fn duplicates_are_found_whatever_else_is_wrong_with_either_route() {
    let text = format!(
        "{HEAD}routes:
  - path: /a
  - {{ path: /b, upstream: 'ws://o', send_to: 'http://o/' }}
  - {{ path: /b/, upstream: 'http://o', format: xml }}
"
    );
    assert_eq!(
        problems(&text),
        [
            "4:5: missing required key `upstream` in route",
            "5:37: send_to: only allowed when the upstream is http or https (it carries messages \
             from WebSocket clients of an SSE origin); this route's upstream is ws://o/",
            "6:7: path: duplicate route path `/b` (first at line 5)",
            r#"6:40: format: expected `raw` or `json`, found "xml""#,
        ]
    );
}

#[test]
fn anchors_and_merge_keys_are_resolved() {
    let config = ok(&format!(
        "{HEAD}routes:
  - &ws {{ path: /a, upstream: 'ws://127.0.0.1:1/', format: json }}
  - {{ <<: *ws, path: /b }}
  - {{ path: /c, upstream: 'http://o', on_connect: &msgs [hi] }}
  - {{ path: /d, upstream: 'ws://o', on_connect: *msgs }}
"
    ));
    let b = &config.routes[1];
    assert_eq!((b.path.as_str(), b.settings.format), ("/b", Format::Json));
    assert_eq!(b.upstream.url, "ws://127.0.0.1:1/");
    assert_eq!(config.routes[3].settings.on_connect, ["hi"]);
}

#[test]
fn deeply_nested_input_is_one_quick_problem() {
    let text = format!("{HEAD}routes: {}\n", "[".repeat(100_000));
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0], "3:264: invalid YAML: nested too deeply");
}

#[test]
fn workers_is_a_positive_count_or_auto() {
    let with = |value: &str| format!("workers: {value}\n{}", route("http://127.0.0.1:1"));
    assert_eq!(ok(&with("3")).workers, Some(3));
    assert_eq!(ok(&with("1024")).workers, Some(1024));
    assert_eq!(ok(&with("auto")).workers, None);
    assert_problem(&with("1025"), "1:1: workers: at most 1024, found 1025");
    assert_problem(
        &with("0"),
        "1:1: workers: expected a positive integer, found 0",
    );
    assert_problem(
        &with("many"),
        "1:1: workers: expected a positive integer or `auto`, found",
    );
    assert_problem(
        &with("[2]"),
        "1:1: workers: expected a positive integer or `auto`, found",
    );
}
