//! The validated, frozen configuration. Nothing here knows YAML: `parse.rs` builds these values
//! and every field is already checked when a `Config` exists.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use http::Uri;

/// The whole proxy configuration, shared behind an `Arc` and swapped whole on reload.
#[derive(Debug, Clone)]
pub struct Config {
    pub listeners: Vec<Listener>,
    pub admin: Option<Admin>,
    pub routes: Vec<Route>,
    pub limits: Limits,
    /// How long a graceful shutdown waits for open streams (`drain_timeout`, default 30s).
    pub drain_timeout: Duration,
    /// Threads serving connections (`workers`); `None` is `auto` (the default): one per core,
    /// counted when the proxy starts.
    pub workers: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Listener {
    pub bind: SocketAddr,
    pub tls: Option<ListenerTls>,
}

#[derive(Debug, Clone)]
pub struct ListenerTls {
    /// At least one; the first is used without SNI or for names no certificate covers.
    pub certs: Vec<CertPair>,
}

#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct Admin {
    pub bind: SocketAddr,
}

/// Connection limits (SPEC 10, `limits`).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: Option<usize>,
    pub max_connections_per_ip: Option<usize>,
    pub max_header_size: usize,
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub send_timeout: Duration,
    pub max_body: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: None,
            max_connections_per_ip: None,
            max_header_size: 16 * 1024,
            header_timeout: Duration::from_secs(10),
            keepalive_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(30),
            max_body: None,
        }
    }
}

/// One route: a path prefix mapped to an upstream, with its settings.
#[derive(Debug, Clone)]
pub struct Route {
    /// Normalised prefix: starts with `/`, no trailing `/` (except the root `/`).
    pub path: String,
    pub upstream: Upstream,
    /// Where messages from WebSocket clients of an SSE origin are POSTed (SPEC 4.2).
    pub send_to: Option<Uri>,
    pub settings: RouteSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// `http` / `https`: an HTTP origin (SSE or plain).
    Http,
    /// `ws` / `wss`: a WebSocket origin.
    WebSocket,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    /// The URL as written (scheme http, https, ws or wss), with a path (at least `/`).
    pub url: Uri,
    pub kind: UpstreamKind,
    /// `https` or `wss`.
    pub tls: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarded {
    /// `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`.
    XForwarded,
    /// RFC 7239 `Forwarded`.
    Rfc7239,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Raw,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryMode {
    Base64,
    Drop,
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginList {
    /// `*`
    Any,
    List(Vec<String>),
}

/// Route keys that may also stand in `defaults` (SPEC 10).
#[derive(Debug, Clone)]
pub struct RouteSettings {
    /// `None` when disabled (`0`).
    pub heartbeat: Option<Duration>,
    pub heartbeat_padding: usize,
    pub retry: Option<Duration>,
    pub last_event_id_param: String,
    pub forwarded: Forwarded,
    pub connect_timeout: Duration,
    /// `None` when disabled (`0`).
    pub ws_ping: Option<Duration>,
    pub max_message: usize,
    pub client_buffer: usize,
    pub format: Format,
    pub binary: BinaryMode,
    pub bridge_event: String,
    pub on_connect: Vec<String>,
    pub cors: Option<OriginList>,
    pub allowed_origins: Option<Vec<String>>,
    /// PEM file of CA certificates for `https`/`wss` upstreams instead of the system roots.
    pub upstream_ca: Option<PathBuf>,
}

impl Default for RouteSettings {
    fn default() -> Self {
        RouteSettings {
            heartbeat: Some(Duration::from_secs(15)),
            heartbeat_padding: 0,
            retry: None,
            last_event_id_param: "last_event_id".to_owned(),
            forwarded: Forwarded::XForwarded,
            connect_timeout: Duration::from_secs(5),
            ws_ping: Some(Duration::from_secs(30)),
            max_message: 1024 * 1024,
            client_buffer: 1024 * 1024,
            format: Format::Raw,
            binary: BinaryMode::Base64,
            bridge_event: "bridge".to_owned(),
            on_connect: Vec::new(),
            cors: None,
            allowed_origins: None,
            upstream_ca: None,
        }
    }
}
