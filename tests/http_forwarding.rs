//! Plain HTTP forwarding (SPEC 2, 3 and 10): request and response bodies streamed both ways,
//! responses that are not event streams passed unchanged, hop-by-hop headers removed in both
//! directions, forwarding headers, upstream URL joining, `max_body`, and h2c prior knowledge.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

fn api_route(origin: &Origin, extra: &str) -> String {
    config_with_routes(&format!(
        "  - path: /api\n    upstream: {}\n{extra}",
        origin.url("/base")
    ))
}

#[tokio::test]
async fn post_body_is_streamed_to_the_origin_chunk_by_chunk() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&api_route(&origin, "")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .send(
            "POST /api/upload HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n\
             Content-Type: text/plain\r\n\r\n5\r\nfirst\r\n",
        )
        .await;
    let mut request = origin.next_request().await;
    assert_eq!(request.method, http::Method::POST);
    assert_eq!(request.uri.path(), "/base/upload");
    // The origin has the first chunk while the client has not sent the second yet.
    let first = next_body_chunk(&mut request.body).await;
    assert_eq!(first.as_deref(), Some(&b"first"[..]));
    client.send("6\r\nsecond\r\n0\r\n\r\n").await;
    let mut rest = Vec::new();
    while let Some(chunk) = next_body_chunk(&mut request.body).await {
        rest.extend_from_slice(&chunk);
    }
    assert_eq!(rest, b"second");
    let answer = request.respond(201, &[("content-type", "text/plain")]);
    answer.finish();
    assert_eq!(client.read_head().await.0, 201);
}

#[tokio::test]
async fn response_body_is_streamed_to_the_client_chunk_by_chunk() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&api_route(&origin, "")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/api/report", &[]).await;
    let answer = origin
        .next_request()
        .await
        .respond(200, &[("content-type", "application/x-ndjson")]);
    let (status, _) = client.read_head().await;
    assert_eq!(status, 200);
    answer.send("{\"row\":1}\n").await;
    client.read_until("{\"row\":1}\n").await;
    assert!(answer.is_open(), "the response is still going");
    answer.send("{\"row\":2}\n").await;
    client.read_until("{\"row\":2}\n").await;
    answer.finish();
    assert_eq!(client.read_to_end_of_response().await, "");
}

#[tokio::test]
async fn non_200_event_stream_response_passes_unchanged() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&api_route(&origin, "    retry: 1s\n")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/api/events", &[]).await;
    let answer = origin.next_request().await.respond(
        503,
        &[
            ("content-type", "text/event-stream"),
            ("cache-control", "public, max-age=60"),
            ("content-length", "11"),
        ],
    );
    answer.send("retry later").await;
    answer.finish();
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 503);
    assert_eq!(
        header(&headers, "cache-control"),
        Some("public, max-age=60")
    );
    assert_eq!(header(&headers, "content-length"), Some("11"));
    assert_eq!(header(&headers, "x-accel-buffering"), None);
    assert_eq!(client.read_until("retry later").await, "retry later");
}

#[tokio::test]
async fn non_event_stream_200_gets_no_repair_heartbeat_or_retry() {
    let mut origin = Origin::start().await;
    let yaml = config_with_routes(&format!(
        "  - path: /api\n    upstream: {}\n    heartbeat: 50ms\n    retry: 1s\n",
        origin.url("/base")
    ));
    let proxy = Proxy::start(&yaml).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/api/data", &[]).await;
    let answer = origin.next_request().await.respond(
        200,
        &[
            ("content-type", "application/json"),
            ("cache-control", "public, max-age=600"),
        ],
    );
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "cache-control"),
        Some("public, max-age=600")
    );
    assert_eq!(header(&headers, "x-accel-buffering"), None);
    // An event stream on the same route is the clock: three heartbeats there mean the idle JSON
    // response sat past the heartbeat interval.
    let mut clock = RawClient::connect(proxy.addr()).await;
    clock.get("/api/clock", &[]).await;
    let _clock_stream = origin.next_request().await.respond_sse();
    clock.read_head().await;
    for _ in 0..3 {
        clock.read_until(":\n\n").await;
    }
    answer.send("{\"a\":1}").await;
    answer.finish();
    assert_eq!(client.read_to_end_of_response().await, "{\"a\":1}");
}

#[tokio::test]
async fn hop_by_hop_request_headers_do_not_reach_the_origin() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&api_route(&origin, "")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .get(
            "/api/x",
            &[
                ("Connection", "keep-alive, X-Client-Secret"),
                ("X-Client-Secret", "1"),
                ("Keep-Alive", "timeout=5"),
                ("TE", "trailers"),
                ("Trailer", "X-Checksum"),
                ("Upgrade", "example/1"),
                ("Proxy-Connection", "keep-alive"),
                ("X-Kept", "yes"),
            ],
        )
        .await;
    let request = origin.next_request().await;
    for name in [
        "connection",
        "x-client-secret",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
    ] {
        assert_eq!(request.header(name), None, "{name} reached the origin");
    }
    assert_eq!(request.header("x-kept").as_deref(), Some("yes"));
}

#[tokio::test]
async fn hop_by_hop_response_headers_do_not_reach_the_client() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&api_route(&origin, "")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/api/x", &[]).await;
    let answer = origin.next_request().await.respond(
        200,
        &[
            ("content-type", "text/plain"),
            ("connection", "X-Origin-Secret"),
            ("x-origin-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("trailer", "X-Checksum"),
            ("upgrade", "example/1"),
            ("proxy-connection", "keep-alive"),
            ("x-kept", "yes"),
        ],
    );
    answer.send("body").await;
    answer.finish();
    let (status, headers) = client.read_head().await;
    assert_eq!(status, 200);
    for name in [
        "connection",
        "x-origin-secret",
        "keep-alive",
        "trailer",
        "upgrade",
        "proxy-connection",
    ] {
        assert_eq!(header(&headers, name), None, "{name} reached the client");
    }
    assert_eq!(header(&headers, "x-kept"), Some("yes"));
}

#[tokio::test]
async fn x_forwarded_for_appends_the_client_and_proto_and_host_are_set() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&api_route(&origin, "")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .get(
            "/api/x",
            &[
                ("X-Forwarded-For", "203.0.113.7"),
                ("X-Forwarded-Proto", "https"),
                ("X-Forwarded-Host", "spoofed.test"),
            ],
        )
        .await;
    let request = origin.next_request().await;
    assert_eq!(
        request.header("x-forwarded-for").as_deref(),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(request.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(
        request.header("x-forwarded-host").as_deref(),
        Some("proxy.test")
    );
    assert_eq!(request.header("forwarded"), None);
}

#[tokio::test]
async fn forwarded_setting_sends_an_rfc_7239_forwarded_header_instead() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&api_route(&origin, "    forwarded: forwarded\n")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/api/x", &[]).await;
    let request = origin.next_request().await;
    assert_eq!(
        request.header("forwarded").as_deref(),
        Some("for=127.0.0.1;proto=http;host=proxy.test")
    );
    for name in ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host"] {
        assert_eq!(
            request.header(name),
            None,
            "{name} with forwarded: forwarded"
        );
    }
}

#[tokio::test]
async fn forwarded_none_adds_no_forwarding_headers() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&api_route(&origin, "    forwarded: none\n")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get("/api/x", &[]).await;
    let request = origin.next_request().await;
    for name in [
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
    ] {
        assert_eq!(request.header(name), None, "{name} with forwarded: none");
    }
}

#[tokio::test]
async fn request_path_below_the_route_is_appended_to_the_upstream_path_with_the_query() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&api_route(&origin, "")).await;
    for (sent, expected) in [
        ("/api/x?y=1", "/base/x?y=1"),
        ("/api/x/deeper?a=1&b=2", "/base/x/deeper?a=1&b=2"),
        ("/api", "/base"),
    ] {
        let mut client = RawClient::connect(proxy.addr()).await;
        client.get(sent, &[]).await;
        let request = origin.next_request().await;
        assert_eq!(
            request.uri.path_and_query().map(|p| p.as_str()),
            Some(expected),
            "for {sent}"
        );
    }
}

#[tokio::test]
async fn declared_body_over_max_body_gets_413_and_never_reaches_the_origin() {
    let mut origin = Origin::start().await;
    let yaml = format!("{}limits:\n  max_body: 16B\n", api_route(&origin, ""));
    let proxy = Proxy::start(&yaml).await;
    let status = status_of_raw(
        proxy.addr(),
        b"POST /api/upload HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 17\r\n\r\n\
          0123456789abcdefg",
    )
    .await;
    assert_eq!(status, 413);
    assert_still_serves(proxy.addr(), &mut origin, "/api/after", "/base/after").await;
}

#[tokio::test]
async fn streamed_body_growing_over_max_body_gets_413() {
    let mut origin = Origin::start().await;
    let yaml = format!("{}limits:\n  max_body: 16B\n", api_route(&origin, ""));
    let proxy = Proxy::start(&yaml).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .send(
            "POST /api/upload HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n\r\n\
             a\r\n0123456789\r\na\r\n0123456789\r\n0\r\n\r\n",
        )
        .await;
    // The head may reach the origin before the body is known to be too long; the body never
    // arrives whole.
    let mut request = origin.next_request().await;
    let received = within("the origin's view of the body", async {
        let mut got = Vec::new();
        while let Some(Ok(frame)) = request.body.frame().await {
            if let Ok(data) = frame.into_data() {
                got.extend_from_slice(&data);
            }
        }
        got
    })
    .await;
    assert!(
        received.len() <= 16,
        "the origin got {} bytes",
        received.len()
    );
    assert_eq!(client.read_head().await.0, 413);
}

#[tokio::test]
async fn h2c_prior_knowledge_client_is_proxied() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&api_route(&origin, "")).await;
    let tcp = TcpStream::connect(proxy.addr())
        .await
        .expect("connect to the proxy");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("HTTP/2 prior-knowledge handshake");
    tokio::spawn(connection);
    let request = http::Request::post(format!(
        "http://proxy.test:{}/api/h2?q=1",
        proxy.addr().port()
    ))
    .header("content-type", "text/plain")
    .body(Full::new(Bytes::from_static(b"over h2c")))
    .expect("request");
    let response = tokio::spawn(async move { sender.send_request(request).await });
    let mut at_origin = origin.next_request().await;
    assert_eq!(
        at_origin.uri.path_and_query().map(|p| p.as_str()),
        Some("/base/h2?q=1")
    );
    assert_eq!(
        at_origin.header("x-forwarded-proto").as_deref(),
        Some("http")
    );
    assert_eq!(
        at_origin.header("x-forwarded-host"),
        Some(format!("proxy.test:{}", proxy.addr().port()))
    );
    assert_eq!(
        next_body_chunk(&mut at_origin.body).await.as_deref(),
        Some(&b"over h2c"[..])
    );
    let answer = at_origin.respond(200, &[("content-type", "text/plain")]);
    answer.send("h2 answer").await;
    answer.finish();
    let response = within("the HTTP/2 response", response)
        .await
        .expect("request task")
        .expect("HTTP/2 response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let mut body = response.into_body();
    assert_eq!(read_body_until(&mut body, "h2 answer").await, "h2 answer");
}
