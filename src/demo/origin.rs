//! The demo's SSE origin: `/events` (a JSON tick every second on the default event type, plus
//! `chat` events fed by `POST /messages`), `/progress` (`progress` events with ids, resuming
//! after `Last-Event-ID`), and the demo page at `/`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::stream;
use http::{header, Method, Request, Response, StatusCode};
use http_body::Frame;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::server::ServeError;

type DemoBody = UnsyncBoxBody<Bytes, Infallible>;

const PAGE: &str = include_str!("page.html");

pub async fn start(shutdown: CancellationToken) -> Result<SocketAddr, ServeError> {
    let bind: SocketAddr = ([127, 0, 0, 1], 0).into();
    let (listener, addr) = crate::server::bind(bind).await?;
    let (chat, _) = broadcast::channel::<String>(64);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            let Ok((tcp, _)) = accepted else { continue };
            let chat = chat.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| answer(req, chat.clone()));
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    Ok(addr)
}

async fn answer(
    req: Request<Incoming>,
    chat: broadcast::Sender<String>,
) -> Result<Response<DemoBody>, Infallible> {
    let response = match (req.method(), req.uri().path()) {
        (&Method::GET, "/events") => event_stream(ticks_and_chat(chat.subscribe())),
        (&Method::GET, "/progress") => {
            let after = req
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            event_stream(progress(after.map_or(0, |id| id + 1)))
        }
        (&Method::POST, "/messages") => {
            match Limited::new(req.into_body(), 64 * 1024).collect().await {
                Ok(body) => {
                    let text = String::from_utf8_lossy(&body.to_bytes()).into_owned();
                    let _ = chat.send(text);
                    plain(StatusCode::NO_CONTENT, "")
                }
                Err(_) => plain(StatusCode::PAYLOAD_TOO_LARGE, "message too large\n"),
            }
        }
        (&Method::GET, "/") => {
            let mut r = plain(StatusCode::OK, PAGE);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    };
    Ok(response)
}

fn plain(status: StatusCode, body: &'static str) -> Response<DemoBody> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())).boxed_unsync());
    *r.status_mut() = status;
    r
}

fn event_stream(body: DemoBody) -> Response<DemoBody> {
    let mut response = Response::new(body);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/event-stream"),
    );
    response
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// `data: {"tick":N,"time_ms":T}` every second, and `event: chat` for each POSTed message.
fn ticks_and_chat(chat: broadcast::Receiver<String>) -> DemoBody {
    let start = (0u64, tokio::time::interval(Duration::from_secs(1)), chat);
    let events = stream::unfold(start, |(n, mut every, mut chat)| async move {
        let event = tokio::select! {
            _ = every.tick() => format!("data: {{\"tick\":{n},\"time_ms\":{}}}\n\n", now_ms()),
            message = chat.recv() => match message {
                Ok(text) => {
                    let mut event = String::from("event: chat\n");
                    for line in text.lines() {
                        event.push_str("data: ");
                        event.push_str(line);
                        event.push('\n');
                    }
                    event.push('\n');
                    event
                }
                Err(_) => String::from(": missed some chat\n\n"),
            },
        };
        Some((Ok(Frame::data(Bytes::from(event))), (n + 1, every, chat)))
    });
    StreamBody::new(events).boxed_unsync()
}

/// `progress` events with ids from `start`, percent going 0..=100 and round again.
fn progress(start: u64) -> DemoBody {
    let events = stream::unfold(start, move |id| async move {
        if id > start {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let percent = id % 101;
        let event = format!("event: progress\nid: {id}\ndata: {{\"percent\":{percent}}}\n\n");
        Some((Ok(Frame::data(Bytes::from(event))), id + 1))
    });
    StreamBody::new(events).boxed_unsync()
}
