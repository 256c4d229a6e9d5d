//! Listeners, the accept loop, HTTP/1.1 + HTTP/2 connections, limits and graceful shutdown.
//!
//! One cancellation tree: the `shutdown` token given to [`serve`] stops the accept loops and
//! starts the drain (streams end at an event boundary, connections close when idle); after
//! `drain_timeout` a second token drops whatever is left. Every connection task is tracked.
//! The accept loop never stops on an error: it logs, backs off and keeps accepting.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

mod event_stream;

use crate::admin;
use crate::config::{Config, Limits};
use crate::io::{ClientIo, ClientStream, ConnGuard, CutFlag};
use crate::metrics::{LimitKind, Metrics};
use crate::proxy::{error_response, ConnInfo, Proxy, Table};
use crate::tls::{self, TlsError};
use crate::wake::SideWake;
use crate::workers::Workers;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("reload cannot change listeners (restart to add, remove or re-bind them)")]
    ListenersChanged,
    #[error("reload cannot change `workers` (restart to change it)")]
    WorkersChanged,
    #[error("cannot start the connection workers: {0}")]
    Workers(io::Error),
}

/// The connection counts behind `max_connections` and `max_connections_per_ip`.
pub struct ConnCounters {
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    metrics: Arc<Metrics>,
}

impl ConnCounters {
    fn new(metrics: Arc<Metrics>) -> Self {
        ConnCounters {
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// Takes a place for a new connection from `ip`, or says which limit refuses it.
    fn acquire(self: &Arc<Self>, ip: IpAddr, limits: &Limits) -> Result<ConnGuard, LimitKind> {
        let total = self.total.fetch_add(1, Ordering::Relaxed) + 1;
        if limits.max_connections.is_some_and(|max| total > max) {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Err(LimitKind::MaxConnections);
        }
        {
            let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
            let count = per_ip.entry(ip).or_insert(0);
            if limits
                .max_connections_per_ip
                .is_some_and(|max| *count >= max)
            {
                drop(per_ip);
                self.total.fetch_sub(1, Ordering::Relaxed);
                return Err(LimitKind::MaxConnectionsPerIp);
            }
            *count += 1;
        }
        self.metrics.connection_opened();
        Ok(ConnGuard::new(self.clone(), ip))
    }

    pub(crate) fn release(&self, ip: IpAddr) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_ip.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                per_ip.remove(&ip);
            }
        }
        drop(per_ip);
        self.metrics.connection_closed();
    }
}

/// One listener's TLS configuration, swapped on reload.
type TlsSlot = Arc<RwLock<Arc<ServerConfig>>>;

struct Shared {
    proxy: Arc<Proxy>,
    counters: Arc<ConnCounters>,
    tracker: TaskTracker,
    workers: Arc<Workers>,
}

/// A running proxy.
pub struct Running {
    local_addrs: Vec<SocketAddr>,
    admin_addr: Option<SocketAddr>,
    admin_stop: CancellationToken,
    binds: Vec<SocketAddr>,
    tls_slots: Vec<Option<TlsSlot>>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    drain_timeout: Arc<AtomicU64>,
    accept_tasks: TaskTracker,
    /// `workers` as configured (`None`: auto), which reload may not change.
    workers_setting: Option<usize>,
    /// Stops the accept loops when the proxy is dropped.
    _accept_stop: DropGuard,
    /// Stops the workers' runtimes (and drops what they still run) when the proxy is dropped.
    _workers_stop: DropGuard,
}

impl Running {
    /// The bound address of each listener, in configuration order.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.proxy.metrics
    }

    /// Applies a new configuration without dropping open streams: routes, route settings,
    /// limits and certificates. Nothing changes unless all of it is valid.
    pub fn reload(&self, config: &Config) -> Result<(), ServeError> {
        let binds: Vec<SocketAddr> = config.listeners.iter().map(|l| l.bind).collect();
        let tls_changed = config
            .listeners
            .iter()
            .zip(&self.tls_slots)
            .any(|(l, slot)| l.tls.is_some() != slot.is_some());
        if binds != self.binds || tls_changed {
            return Err(ServeError::ListenersChanged);
        }
        if config.workers != self.workers_setting {
            return Err(ServeError::WorkersChanged);
        }
        let table = Table::build(config, &self.shared.proxy.metrics)?;
        let tls_configs = config
            .listeners
            .iter()
            .map(|l| {
                l.tls
                    .as_ref()
                    .map(|t| tls::server_config(&t.certs))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (slot, new) in self.tls_slots.iter().zip(tls_configs) {
            if let (Some(slot), Some(new)) = (slot, new) {
                *slot.write().unwrap_or_else(|e| e.into_inner()) = new;
            }
        }
        self.shared.proxy.replace_table(table);
        self.drain_timeout
            .store(config.drain_timeout.as_millis() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Waits for the shutdown token, then drains: open connections get `drain_timeout` to
    /// finish before they are dropped.
    pub async fn wait(self) {
        self.shutdown.cancelled().await;
        self.accept_tasks.close();
        self.accept_tasks.wait().await;
        let connections = &self.shared.tracker;
        let streams = &self.shared.proxy.tasks;
        connections.close();
        streams.close();
        let drain = Duration::from_millis(self.drain_timeout.load(Ordering::Relaxed));
        tracing::info!(connections = connections.len(), streams = streams.len(), drain_timeout = ?drain, "draining");
        let all_done = async {
            connections.wait().await;
            streams.wait().await;
        };
        if tokio::time::timeout(drain, all_done).await.is_err() {
            tracing::warn!(
                left = connections.len() + streams.len(),
                "drain timeout reached; dropping what is left"
            );
            self.shared.proxy.hard_stop.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                connections.wait().await;
                streams.wait().await;
            })
            .await;
        }
        self.admin_stop.cancel();
        tracing::info!("stopped");
    }
}

/// Binds a listener; the error names the address.
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServeError> {
    let bound = async {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        Ok((listener, local))
    };
    bound
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Starts every listener of `config` and returns once they are bound.
pub async fn serve(config: &Config, shutdown: CancellationToken) -> Result<Running, ServeError> {
    let metrics = Arc::new(Metrics::default());
    let table = Table::build(config, &metrics)?;
    let proxy = Arc::new(Proxy::new(table, metrics.clone(), shutdown.clone()));
    let worker_count = config.workers.unwrap_or_else(crate::workers::default_count);
    let (workers, workers_stop) = Workers::start(worker_count).map_err(ServeError::Workers)?;
    // The accept loops stop with the proxy: on shutdown, or when `Running` (or a `serve` that
    // fails half-way) is dropped, so that no port stays bound handing sockets to stopped workers.
    let accept_stop = shutdown.child_token();
    let accept_guard = accept_stop.clone().drop_guard();
    let shared = Arc::new(Shared {
        proxy,
        counters: Arc::new(ConnCounters::new(metrics.clone())),
        tracker: TaskTracker::new(),
        workers,
    });
    let accept_tasks = TaskTracker::new();
    let mut local_addrs = Vec::new();
    let mut tls_slots = Vec::new();
    for listener_config in &config.listeners {
        let (listener, addr) = bind(listener_config.bind).await?;
        let slot = match &listener_config.tls {
            Some(t) => Some(Arc::new(RwLock::new(tls::server_config(&t.certs)?))),
            None => None,
        };
        tracing::info!(%addr, tls = slot.is_some(), "listening");
        local_addrs.push(addr);
        tls_slots.push(slot.clone());
        accept_tasks.spawn(accept_loop(
            listener,
            slot,
            shared.clone(),
            accept_stop.clone(),
        ));
    }
    // The admin listener outlives the drain (so `/readyz` can answer 503 meanwhile) and stops
    // when `wait` returns.
    let admin_stop = CancellationToken::new();
    let admin_addr = match &config.admin {
        Some(admin) => {
            Some(admin::start(admin.bind, metrics, shutdown.clone(), admin_stop.clone()).await?)
        }
        None => None,
    };
    Ok(Running {
        local_addrs,
        admin_addr,
        admin_stop,
        binds: config.listeners.iter().map(|l| l.bind).collect(),
        tls_slots,
        shared,
        shutdown,
        drain_timeout: Arc::new(AtomicU64::new(config.drain_timeout.as_millis() as u64)),
        accept_tasks,
        workers_setting: config.workers,
        _accept_stop: accept_guard,
        _workers_stop: workers_stop,
    })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsSlot>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let tls = tls
                    .as_ref()
                    .map(|slot| slot.read().unwrap_or_else(|e| e.into_inner()).clone());
                // The socket moves to the worker's own reactor.
                let tcp = match tcp.into_std() {
                    Ok(tcp) => tcp,
                    Err(err) => {
                        tracing::error!(%peer, error = %err, "cannot hand the connection to a worker");
                        continue;
                    }
                };
                let task_shared = shared.clone();
                let task = shared.tracker.track_future(async move {
                    match TcpStream::from_std(tcp) {
                        Ok(tcp) => connection(tcp, peer, tls, task_shared).await,
                        Err(err) => {
                            tracing::error!(%peer, error = %err, "cannot register the connection with its worker")
                        }
                    }
                });
                shared.workers.spawn(task);
            }
            Err(err) => {
                // EMFILE, ENFILE, ENOBUFS...: open streams are untouched; wait a little for
                // descriptors to come free instead of spinning.
                tracing::error!(error = %err, "accept failed; backing off");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<ServerConfig>>,
    shared: Arc<Shared>,
) {
    let limits = shared.proxy.limits();
    let _ = tcp.set_nodelay(true);
    let slot = shared.counters.acquire(peer.ip(), &limits);
    let accepted_at = Instant::now();
    let stream = match tls {
        None => ClientStream::Plain(tcp),
        Some(config) => {
            let handshake = TlsAcceptor::from(config).accept(tcp);
            // Boxed, like the HTTP/2 connection below: the task keeps room for its largest
            // state for its whole life, and these would triple it for every HTTP/1.1 stream.
            match Box::pin(tokio::time::timeout(limits.header_timeout, handshake)).await {
                Ok(Ok(stream)) => ClientStream::Tls(Box::new(stream)),
                Ok(Err(err)) => {
                    tracing::debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            }
        }
    };
    let Some(protocol) = protocol(&stream, accepted_at + limits.header_timeout).await else {
        return;
    };
    let scheme = if matches!(stream, ClientStream::Tls(_)) {
        "https"
    } else {
        "http"
    };
    let cut = Arc::new(CutFlag::default());
    let (guard, rejection) = match slot {
        Ok(guard) => (Some(guard), None),
        Err(limit) => {
            shared.proxy.metrics.limit_rejected(limit);
            tracing::warn!(%peer, limit = limit.as_str(), "connection refused by limit");
            (None, Some(limit))
        }
    };
    let io = ClientIo::new(
        stream,
        limits.send_timeout,
        cut.clone(),
        guard,
        limits.max_header_size,
    );
    // Only these outlive the set-up: `Limits` is not used (so not kept in the task) after it.
    let max_header_size = limits.max_header_size;
    let timeouts = Timeouts::of(&limits);
    // A child of the hard stop, so that the connection task waits on one token for both.
    let kill = shared.proxy.hard_stop.child_token();
    let conn_info = Arc::new(ConnInfo {
        peer,
        scheme,
        cut,
        authority: None,
        kill: kill.clone(),
    });
    let activity = Arc::new(Activity::new(accepted_at));
    let front_conn = conn_info.clone();
    let proxy = shared.proxy.clone();
    let service_activity = activity.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        let in_flight = service_activity.start();
        let proxy = proxy.clone();
        let conn_info = conn_info.clone();
        // Boxed whole: hyper keeps an allocation the size of the service future for as long
        // as the connection lives, and this future holds the request and every stream kind's
        // state machine. Boxed, that slot is one pointer, and the handler's memory goes with
        // the request.
        Box::pin(async move {
            let response = match rejection {
                Some(limit) => reject(limit),
                None => proxy
                    .handle(conn_info, req.map(http_body_util::Either::Left))
                    .await
                    .unwrap_or_else(|e| match e {}),
            };
            Ok::<_, std::convert::Infallible>(response.map(|body| InFlightBody {
                inner: body,
                _in_flight: in_flight,
            }))
        })
    });
    let watch = Watch {
        peer,
        timeouts,
        activity: &activity,
        drain: &shared.proxy.drain,
        kill: &kill,
    };
    // HTTP/1.1 and HTTP/2 are served by hyper's own connection types rather than hyper-util's
    // auto builder, whose protocol sniffing keeps an 8 KiB buffer for each connection's life.
    match protocol {
        Protocol::Http1 => {
            let mut io = io;
            if rejection.is_none() {
                // Event-stream requests first, on the proxy's own HTTP/1.1 path; hyper takes
                // over at the first other request, from the bytes that path read.
                let draining = AtomicBool::new(false);
                let front = event_stream::serve(
                    &mut io,
                    event_stream::Front {
                        proxy: &shared.proxy,
                        conn: &front_conn,
                        activity: &activity,
                        max_head: max_header_size,
                        draining: &draining,
                    },
                );
                let drain = |_: Pin<&mut _>| draining.store(true, Ordering::Relaxed);
                let outcome = watch.run(pin!(front), drain).await;
                match outcome {
                    Some(event_stream::Outcome::HandOff(read)) => io.replay(read),
                    _ => return,
                }
            }
            drop(front_conn);
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(None)
                .max_buf_size(max_header_size.max(8192))
                .max_headers(100)
                .keep_alive(rejection.is_none())
                .serve_connection(TokioIo::new(io), service)
                .with_upgrades();
            // Boxed, so that the connection task needs no room for it on the event-stream path.
            let mut conn = Box::pin(conn);
            watch.ended(watch.run(conn.as_mut(), |c| c.graceful_shutdown()).await);
        }
        Protocol::Http2 => {
            drop(front_conn);
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_header_list_size(max_header_size as u32)
                .keep_alive_interval(Some(Duration::from_secs(30)))
                .keep_alive_timeout(Duration::from_secs(20))
                .max_concurrent_streams(1000)
                .serve_connection(TokioIo::new(io), service);
            let mut conn = Box::pin(conn);
            watch.ended(watch.run(conn.as_mut(), |c| c.graceful_shutdown()).await);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// The HTTP/2 connection preface (RFC 9113 section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/1.1 or HTTP/2: by ALPN on TLS (no ALPN means HTTP/1.1), by a peek at the client's first
/// bytes on cleartext (HTTP/2 with prior knowledge starts with the preface). `None` when the
/// client closes or says nothing before `deadline`.
async fn protocol(stream: &ClientStream, deadline: Instant) -> Option<Protocol> {
    let tcp = match stream {
        ClientStream::Tls(tls) => {
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            return Some(if h2 { Protocol::Http2 } else { Protocol::Http1 });
        }
        ClientStream::Plain(tcp) => tcp,
    };
    let sniff = async {
        let mut buf = [0u8; 24];
        loop {
            let n = tcp.peek(&mut buf).await.ok()?;
            if n == 0 {
                return None;
            }
            if !H2_PREFACE.starts_with(&buf[..n]) {
                return Some(Protocol::Http1);
            }
            if n == H2_PREFACE.len() {
                return Some(Protocol::Http2);
            }
            // A preface split across packets: peek again once more has arrived.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout_at(deadline, sniff)
        .await
        .ok()
        .flatten()
}

/// The limits a connection task applies itself (copied: the task keeps them for its whole
/// life, and `Limits` is three times their size).
#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    keepalive: Duration,
}

impl Timeouts {
    fn of(limits: &Limits) -> Self {
        Timeouts {
            header: limits.header_timeout,
            keepalive: limits.keepalive_timeout,
        }
    }
}

/// What a connection task watches besides its connection.
struct Watch<'a> {
    peer: SocketAddr,
    timeouts: Timeouts,
    activity: &'a Arc<Activity>,
    drain: &'a CancellationToken,
    /// Cancelled by a hard stop too (a child token).
    kill: &'a CancellationToken,
}

impl Watch<'_> {
    /// Drives `conn` until it ends, starting its graceful shutdown on drain and dropping it on
    /// a hard stop, a kill, or an idle or header timeout (`None`).
    async fn run<C: Future>(
        &self,
        mut conn: Pin<&mut C>,
        graceful: impl Fn(Pin<&mut C>),
    ) -> Option<C::Output> {
        let peer = self.peer;
        let mut draining = false;
        // The connection wakes for every event of its stream; the rest is polled only when it
        // wakes (see `wake`), and the idle timer runs only while no request is in flight.
        let mut side = SideWake::default();
        let mut drain = pin!(self.drain.cancelled());
        let mut kill = pin!(self.kill.cancelled());
        let mut changed = pin!(self.activity.changed.notified());
        // Boxed and held only while no request is in flight: a streaming connection can live
        // for days without needing it.
        let mut idle: Option<Pin<Box<tokio::time::Sleep>>> = None;
        std::future::poll_fn(|cx| {
            if side.due(cx) {
                let mut side_cx = Context::from_waker(side.waker());
                if kill.as_mut().poll(&mut side_cx).is_ready() {
                    return Poll::Ready(None);
                }
                if !draining && drain.as_mut().poll(&mut side_cx).is_ready() {
                    draining = true;
                    graceful(conn.as_mut());
                }
                while changed.as_mut().poll(&mut side_cx).is_ready() {
                    changed.set(self.activity.changed.notified());
                }
                match self.activity.deadline(self.timeouts) {
                    Some(deadline) => {
                        if Instant::now() >= deadline {
                            tracing::debug!(%peer, "closing idle connection");
                            return Poll::Ready(None);
                        }
                        let timer = idle
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                        timer.as_mut().reset(deadline);
                        let _ = timer.as_mut().poll(&mut side_cx);
                    }
                    // A request in flight: re-checked when it ends (`changed` wakes this).
                    None => idle = None,
                }
            }
            conn.as_mut().poll(cx).map(Some)
        })
        .await
    }

    /// Logs how a hyper connection ended.
    fn ended<E: std::fmt::Display>(&self, result: Option<Result<(), E>>) {
        if let Some(Err(err)) = result {
            tracing::debug!(peer = %self.peer, error = %err, "connection ended with an error");
        }
    }
}

fn reject(limit: LimitKind) -> http::Response<crate::proxy::ProxyBody> {
    let status = match limit {
        LimitKind::MaxConnectionsPerIp => StatusCode::TOO_MANY_REQUESTS,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = error_response(status, "too many connections");
    response.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from_static("1"),
    );
    response
}

/// Request activity of one connection, for `header_timeout` (counted from accept, until the
/// first request) and `keepalive_timeout` (idle between requests).
struct Activity {
    accepted_at: Instant,
    in_flight: AtomicUsize,
    requests: AtomicUsize,
    /// Milliseconds after `accepted_at` when the last request finished.
    idle_since_ms: AtomicU64,
    /// Wakes the connection task when a request starts or ends, to drop or re-arm its idle
    /// deadline.
    changed: tokio::sync::Notify,
}

impl Activity {
    fn new(accepted_at: Instant) -> Self {
        Activity {
            accepted_at,
            in_flight: AtomicUsize::new(0),
            requests: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            changed: tokio::sync::Notify::new(),
        }
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        // The connection task lets its idle timer go while a request is in flight.
        self.changed.notify_one();
        InFlight(self.clone())
    }

    /// When the connection times out if nothing happens; `None` while a request is in flight
    /// (re-checked when it ends: a long stream keeps its connection).
    fn deadline(&self, timeouts: Timeouts) -> Option<Instant> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        if self.requests.load(Ordering::Relaxed) == 0 {
            return Some(self.accepted_at + timeouts.header);
        }
        Some(
            self.accepted_at
                + Duration::from_millis(self.idle_since_ms.load(Ordering::Relaxed))
                + timeouts.keepalive,
        )
    }
}

/// Marks a request in flight until its response body is done or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.accepted_at.elapsed().as_millis() as u64;
        activity.idle_since_ms.store(now, Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::Relaxed);
        activity.changed.notify_one();
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight.
    struct InFlightBody {
        #[pin]
        inner: crate::proxy::ProxyBody,
        _in_flight: InFlight,
    }
}

impl http_body::Body for InFlightBody {
    type Data = bytes::Bytes;
    type Error = crate::upstream::BoxError;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
