//! Routing and bad requests (SPEC 2, SPEC 8 limits, SPEC 10 "Strict HTTP/1.1"): longest
//! prefix on whole, normalised segments, 404 otherwise; 400/405/431 for requests the proxy
//! refuses; and after each refusal the proxy still serves a good request.

mod common;

use common::*;

/// Routes `/a` -> origin `/one`, `/a/b` -> origin `/two`, `/secret` -> origin `/hidden`.
fn routes(origin: &Origin, limits: &str) -> String {
    format!(
        "{}{limits}",
        config_with_routes(&format!(
            "  - path: /a\n    upstream: {}\n  - path: /a/b\n    upstream: {}\n\
             \x20 - path: /secret\n    upstream: {}\n",
            origin.url("/one"),
            origin.url("/two"),
            origin.url("/hidden"),
        ))
    )
}

/// Sends `raw` on a new connection, expects `status`, then shows the proxy still serves.
async fn refused_then_still_serving(raw: &[u8], status: u16, limits: &str) {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&routes(&origin, limits)).await;
    assert_eq!(
        status_of_raw(proxy.addr(), raw).await,
        status,
        "for {:?}",
        String::from_utf8_lossy(raw)
    );
    assert_still_serves(proxy.addr(), &mut origin, "/a/ok", "/one/ok").await;
}

/// The path the origin sees for a GET of `path`.
async fn path_at_origin(proxy: &Proxy, origin: &mut Origin, path: &str) -> String {
    let mut client = RawClient::connect(proxy.addr()).await;
    client.get(path, &[]).await;
    let request = origin.next_request().await;
    request.uri.path().to_owned()
}

#[tokio::test]
async fn request_matching_no_route_gets_404() {
    refused_then_still_serving(
        b"GET /nowhere HTTP/1.1\r\nHost: proxy.test\r\n\r\n",
        404,
        "",
    )
    .await;
}

#[tokio::test]
async fn route_prefix_matches_whole_segments_only() {
    // `/ab` starts with `/a` but is another segment.
    refused_then_still_serving(b"GET /ab HTTP/1.1\r\nHost: proxy.test\r\n\r\n", 404, "").await;
    refused_then_still_serving(b"GET /a.b/c HTTP/1.1\r\nHost: proxy.test\r\n\r\n", 404, "").await;
}

#[tokio::test]
async fn longest_matching_prefix_wins() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&routes(&origin, "")).await;
    assert_eq!(
        path_at_origin(&proxy, &mut origin, "/a/b/c").await,
        "/two/c"
    );
    assert_eq!(path_at_origin(&proxy, &mut origin, "/a/b").await, "/two");
    assert_eq!(
        path_at_origin(&proxy, &mut origin, "/a/bc").await,
        "/one/bc"
    );
    assert_eq!(path_at_origin(&proxy, &mut origin, "/a/x").await, "/one/x");
}

#[tokio::test]
async fn dot_segments_are_resolved_before_routing() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&routes(&origin, "")).await;
    assert_eq!(
        path_at_origin(&proxy, &mut origin, "/a/../secret/x").await,
        "/hidden/x"
    );
    assert_eq!(
        path_at_origin(&proxy, &mut origin, "/a/b/../c").await,
        "/one/c"
    );
    assert_eq!(
        path_at_origin(&proxy, &mut origin, "/a/./b/./x").await,
        "/two/x"
    );
}

#[tokio::test]
async fn percent_encoded_dot_segments_are_resolved_before_routing() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&routes(&origin, "")).await;
    assert_eq!(
        path_at_origin(&proxy, &mut origin, "/a/%2e%2e/secret/x").await,
        "/hidden/x"
    );
    assert_eq!(
        path_at_origin(&proxy, &mut origin, "/a/b/%2E./c").await,
        "/one/c"
    );
}

#[tokio::test]
async fn dot_segments_cannot_climb_into_a_path_no_route_matches() {
    // `/a/../private` is `/private`: no route, whatever `/a` would have allowed.
    refused_then_still_serving(
        b"GET /a/../private HTTP/1.1\r\nHost: proxy.test\r\n\r\n",
        404,
        "",
    )
    .await;
    refused_then_still_serving(
        b"GET /a/%2e%2e/private HTTP/1.1\r\nHost: proxy.test\r\n\r\n",
        404,
        "",
    )
    .await;
}

#[tokio::test]
async fn encoded_slash_is_not_a_separator() {
    // `/a%2Fb/x` is one segment `a%2Fb`: it matches neither `/a` nor `/a/b`.
    refused_then_still_serving(
        b"GET /a%2Fb/x HTTP/1.1\r\nHost: proxy.test\r\n\r\n",
        404,
        "",
    )
    .await;
}

#[tokio::test]
async fn missing_host_gets_400() {
    refused_then_still_serving(b"GET /a/x HTTP/1.1\r\n\r\n", 400, "").await;
}

#[tokio::test]
async fn two_host_headers_get_400() {
    refused_then_still_serving(
        b"GET /a/x HTTP/1.1\r\nHost: proxy.test\r\nHost: other.test\r\n\r\n",
        400,
        "",
    )
    .await;
    refused_then_still_serving(
        b"GET /a/x HTTP/1.1\r\nHost: proxy.test\r\nHost: proxy.test\r\n\r\n",
        400,
        "",
    )
    .await;
}

#[tokio::test]
async fn invalid_host_gets_400() {
    refused_then_still_serving(b"GET /a/x HTTP/1.1\r\nHost: bad host/x\r\n\r\n", 400, "").await;
}

fn request_with_header_bytes(size: usize) -> Vec<u8> {
    format!(
        "GET /a/x HTTP/1.1\r\nHost: proxy.test\r\nX-Big: {}\r\n\r\n",
        "b".repeat(size)
    )
    .into_bytes()
}

#[tokio::test]
async fn header_section_over_the_default_16_kib_gets_431() {
    refused_then_still_serving(&request_with_header_bytes(17 * 1024), 431, "").await;
}

#[tokio::test]
async fn header_section_under_the_default_16_kib_is_served() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&routes(&origin, "")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .send_bytes(&request_with_header_bytes(15 * 1024))
        .await;
    let request = origin.next_request().await;
    assert_eq!(request.header("x-big").map(|v| v.len()), Some(15 * 1024));
}

#[tokio::test]
async fn header_section_over_a_configured_max_header_size_gets_431() {
    refused_then_still_serving(
        &request_with_header_bytes(5 * 1024),
        431,
        "limits:\n  max_header_size: 4KiB\n",
    )
    .await;
}

fn request_with_fields(count: usize) -> Vec<u8> {
    let mut raw = String::from("GET /a/x HTTP/1.1\r\nHost: proxy.test\r\n");
    for i in 1..count {
        raw.push_str(&format!("X-F{i}: {i}\r\n"));
    }
    raw.push_str("\r\n");
    raw.into_bytes()
}

#[tokio::test]
async fn more_than_100_header_fields_get_431() {
    refused_then_still_serving(&request_with_fields(101), 431, "").await;
}

#[tokio::test]
async fn exactly_100_header_fields_are_served() {
    let mut origin = Origin::start().await;
    // No forwarding headers: the test origin, like the proxy, takes at most 100 fields.
    let proxy = Proxy::start(&routes(&origin, "defaults:\n  forwarded: none\n")).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.send_bytes(&request_with_fields(100)).await;
    let request = origin.next_request().await;
    assert_eq!(request.header("x-f99").as_deref(), Some("99"));
}

#[tokio::test]
async fn connect_method_gets_405() {
    refused_then_still_serving(
        b"CONNECT proxy.test:443 HTTP/1.1\r\nHost: proxy.test:443\r\n\r\n",
        405,
        "",
    )
    .await;
}

#[tokio::test]
async fn absolute_form_target_is_routed_by_its_path_never_to_the_named_host() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&routes(&origin, "")).await;
    // A host the client names: it must never see a connection from the proxy.
    let named = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the named host");
    named
        .set_nonblocking(true)
        .expect("non-blocking named host");
    let named_addr = named.local_addr().expect("named host address");
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .send(&format!(
            "GET http://{named_addr}/a/x?q=1 HTTP/1.1\r\nHost: {named_addr}\r\n\r\n"
        ))
        .await;
    let request = origin.next_request().await;
    assert_eq!(
        request.uri.path_and_query().map(|p| p.as_str()),
        Some("/one/x?q=1")
    );
    let answer = request.respond(200, &[("content-type", "text/plain")]);
    answer.send("routed by path").await;
    answer.finish();
    assert_eq!(client.read_head().await.0, 200);
    client.read_until("routed by path").await;
    assert_eq!(
        named.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::WouldBlock),
        "the proxy connected to the host the client named"
    );
}

#[tokio::test]
async fn absolute_form_target_with_an_unrouted_path_gets_404() {
    refused_then_still_serving(
        b"GET http://127.0.0.1:9/elsewhere HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n",
        404,
        "",
    )
    .await;
}
