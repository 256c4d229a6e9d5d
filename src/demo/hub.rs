//! The demo's WebSocket origin: a broadcast hub in the manner of the classic Gorilla example.
//! Each client gets a welcome message; every 5 s the hub broadcasts the time; whatever a client
//! sends is broadcast to every client.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use crate::server::ServeError;

pub async fn start(shutdown: CancellationToken) -> Result<SocketAddr, ServeError> {
    let bind: SocketAddr = ([127, 0, 0, 1], 0).into();
    let (listener, addr) = crate::server::bind(bind).await?;
    let (hub, _) = broadcast::channel::<String>(64);
    let ticker = hub.clone();
    let tick_stop = shutdown.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = tick_stop.cancelled() => return,
                _ = every.tick() => {
                    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
                    let _ = ticker.send(format!("{{\"type\":\"broadcast\",\"time_ms\":{millis}}}"));
                }
            }
        }
    });
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => return,
                accepted = listener.accept() => accepted,
            };
            if let Ok((tcp, _)) = accepted {
                tokio::spawn(client(tcp, hub.clone()));
            }
        }
    });
    Ok(addr)
}

async fn client(tcp: TcpStream, hub: broadcast::Sender<String>) {
    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    let (mut sink, mut stream) = ws.split();
    let mut feed = hub.subscribe();
    let welcome = r#"{"type":"welcome","message":"Connected to the demo WebSocket hub"}"#;
    if sink.send(Message::text(welcome)).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    let echo = serde_json::json!({ "type": "message", "text": text.as_str() });
                    let _ = hub.send(echo.to_string());
                }
                Some(Ok(Message::Binary(data))) => {
                    let echo = serde_json::json!({ "type": "binary", "bytes": data.len() });
                    let _ = hub.send(echo.to_string());
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            out = feed.recv() => match out {
                Ok(text) => {
                    if sink.send(Message::text(text)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            },
        }
    }
}
