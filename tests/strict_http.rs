//! Strict HTTP/1.1 (SPEC 10): requests that could be read two ways (request smuggling) or are
//! malformed are refused with 400 (501 for an unknown transfer coding), never reach the
//! origin, and never turn into a 502; the proxy keeps serving after each.

mod common;

use common::*;

fn route(origin: &Origin) -> String {
    config_with_routes(&format!(
        "  - path: /api\n    upstream: {}\n",
        origin.url("/base")
    ))
}

/// Sends `raw` on a new connection and expects `status` before anything reaches the origin;
/// then shows the proxy still serves a good request.
async fn refused_before_the_origin(raw: &[u8], status: u16) {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin)).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.send_bytes(raw).await;
    let shown = String::from_utf8_lossy(raw).into_owned();
    tokio::select! {
        (got, _) = client.read_head() => assert_eq!(got, status, "for {shown:?}"),
        request = origin.next_request() => panic!(
            "{shown:?} reached the origin as {} {} {:?}",
            request.method, request.uri, request.headers
        ),
    }
    assert_still_serves(proxy.addr(), &mut origin, "/api/good", "/base/good").await;
}

/// The status the client gets for a request whose head is valid and whose body is not: the
/// head may reach the origin before the body is read (the origin's request is then held
/// unanswered), or not.
async fn status_with_a_valid_head(client: &mut RawClient, origin: &mut Origin) -> u16 {
    let mut at_origin = None;
    loop {
        tokio::select! {
            (status, _) = client.read_head() => return status,
            request = origin.next_request(), if at_origin.is_none() => at_origin = Some(request),
        }
    }
}

#[tokio::test]
async fn content_length_with_transfer_encoding_gets_400() {
    refused_before_the_origin(
        b"POST /api/x HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 4\r\n\
          Transfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\n\r\n",
        400,
    )
    .await;
}

#[tokio::test]
async fn two_different_content_lengths_get_400() {
    refused_before_the_origin(
        b"POST /api/x HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 4\r\n\
          Content-Length: 5\r\n\r\nbodyx",
        400,
    )
    .await;
}

#[tokio::test]
async fn two_equal_content_lengths_get_400() {
    refused_before_the_origin(
        b"POST /api/x HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 4\r\n\
          Content-Length: 4\r\n\r\nbody",
        400,
    )
    .await;
}

#[tokio::test]
async fn content_length_list_of_equal_values_gets_400() {
    refused_before_the_origin(
        b"POST /api/x HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: 4, 4\r\n\r\nbody",
        400,
    )
    .await;
}

#[tokio::test]
async fn invalid_content_length_gets_400() {
    for value in ["abc", "-1", "+4", "0x4", "4 4", ""] {
        refused_before_the_origin(
            format!(
                "POST /api/x HTTP/1.1\r\nHost: proxy.test\r\nContent-Length: {value}\r\n\r\nbody"
            )
            .as_bytes(),
            400,
        )
        .await;
    }
}

#[tokio::test]
async fn unknown_transfer_coding_gets_501() {
    refused_before_the_origin(
        b"POST /api/x HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: x-unknown\r\n\r\nbody",
        501,
    )
    .await;
}

#[tokio::test]
async fn unknown_transfer_coding_before_chunked_gets_501() {
    refused_before_the_origin(
        b"POST /api/x HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: x-unknown, chunked\r\n\r\n\
          4\r\nbody\r\n0\r\n\r\n",
        501,
    )
    .await;
}

#[tokio::test]
async fn obs_fold_in_a_header_gets_400() {
    refused_before_the_origin(
        b"GET /api/x HTTP/1.1\r\nHost: proxy.test\r\nX-Folded: first\r\n  continued\r\n\r\n",
        400,
    )
    .await;
}

#[tokio::test]
async fn bare_cr_in_a_header_gets_400() {
    refused_before_the_origin(
        b"GET /api/x HTTP/1.1\r\nHost: proxy.test\r\nX-Split: a\rb\r\n\r\n",
        400,
    )
    .await;
}

#[tokio::test]
async fn bare_cr_as_a_line_end_gets_400() {
    refused_before_the_origin(
        b"GET /api/x HTTP/1.1\r\nHost: proxy.test\rX-Next: 1\r\n\r\n",
        400,
    )
    .await;
}

#[tokio::test]
async fn nul_in_a_header_gets_400() {
    refused_before_the_origin(
        b"GET /api/x HTTP/1.1\r\nHost: proxy.test\r\nX-Nul: a\0b\r\n\r\n",
        400,
    )
    .await;
}

#[tokio::test]
async fn chunk_extension_over_16_kib_gets_400() {
    let raw = format!(
        "POST /api/x HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n\r\n\
         4;ext={}\r\nbody\r\n0\r\n\r\n",
        "e".repeat(17 * 1024)
    );
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin)).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client.send_bytes(raw.as_bytes()).await;
    assert_eq!(
        status_with_a_valid_head(&mut client, &mut origin).await,
        400
    );
    assert_still_serves(proxy.addr(), &mut origin, "/api/good", "/base/good").await;
}

#[tokio::test]
async fn malformed_chunked_body_gets_400_not_502() {
    let mut origin = Origin::start().await;
    let proxy = Proxy::start(&route(&origin)).await;
    let mut client = RawClient::connect(proxy.addr()).await;
    client
        .send(
            "POST /api/x HTTP/1.1\r\nHost: proxy.test\r\nTransfer-Encoding: chunked\r\n\r\n\
             zz\r\nbody\r\n0\r\n\r\n",
        )
        .await;
    assert_eq!(
        status_with_a_valid_head(&mut client, &mut origin).await,
        400
    );
    assert_still_serves(proxy.addr(), &mut origin, "/api/good", "/base/good").await;
}
