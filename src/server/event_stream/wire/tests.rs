use super::*;

const STREAM: &[u8] = b"GET /events?x=1 HTTP/1.1\r\nHost: a.test\r\nAccept: text/event-stream\r\nLast-Event-ID: 7\r\n\r\n";

fn is_other(head: &[u8]) -> bool {
    matches!(parse(head, 8192), Head::Other)
}

#[test]
fn an_event_stream_get_is_taken_with_its_target_and_headers() {
    let mut buf = STREAM.to_vec();
    buf.extend_from_slice(b"GET /next");
    let Head::EventStream {
        request,
        len,
        close,
    } = parse(&buf, 8192)
    else {
        panic!("not taken");
    };
    assert_eq!(len, STREAM.len());
    assert!(!close);
    assert_eq!(request.method(), Method::GET);
    assert_eq!(request.version(), Version::HTTP_11);
    assert_eq!(request.uri(), "/events?x=1");
    assert_eq!(request.headers()["host"], "a.test");
    assert_eq!(request.headers()["last-event-id"], "7");
    assert_eq!(request.headers().len(), 3);
}

#[test]
fn every_split_of_a_head_is_partial_until_its_last_byte() {
    for cut in 0..STREAM.len() {
        assert!(
            matches!(parse(&STREAM[..cut], 8192), Head::Partial),
            "cut at {cut}"
        );
    }
    assert!(matches!(parse(STREAM, 8192), Head::EventStream { .. }));
}

#[test]
fn connection_close_is_noted() {
    let head = b"GET / HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nConnection: keep-alive, Close\r\n\r\n";
    assert!(matches!(
        parse(head, 8192),
        Head::EventStream { close: true, .. }
    ));
}

#[test]
fn an_accept_list_with_parameters_is_an_event_stream_request() {
    let head =
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: text/html;q=0.9, Text/Event-Stream;q=1\r\n\r\n";
    assert!(matches!(parse(head, 8192), Head::EventStream { .. }));
}

#[test]
fn anything_more_than_a_bodiless_event_stream_get_is_left_to_hyper() {
    let cases: &[&[u8]] = &[
        b"POST / HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n",
        b"HEAD / HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n",
        b"GET / HTTP/1.0\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nContent-Length: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nExpect: 100-continue\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nConnection: upgrade\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n",
        b"GET * HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n\r\n",
        // What hyper refuses itself: obs-fold, a bare CR, NUL in a value, a space before the colon.
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\rAccept: text/event-stream\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\nX: a\0b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\nAccept: text/event-stream\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    ];
    for head in cases {
        assert!(is_other(head), "{}", String::from_utf8_lossy(head));
    }
}

#[test]
fn a_head_over_the_size_limit_or_over_a_hundred_fields_is_left_to_hyper() {
    assert!(matches!(parse(STREAM, STREAM.len() - 1), Head::Other));
    assert!(matches!(parse(&STREAM[..40], 40), Head::Other));
    let mut many = b"GET / HTTP/1.1\r\nHost: a\r\nAccept: text/event-stream\r\n".to_vec();
    for i in 0..99 {
        many.extend_from_slice(format!("x-{i}: y\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    assert!(matches!(parse(&many, 1 << 20), Head::Other));
}

#[test]
fn framing_follows_status_length_and_size_hint() {
    let none = HeaderMap::new();
    let mut with_length = HeaderMap::new();
    with_length.insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
    assert_eq!(
        Framing::of(StatusCode::NO_CONTENT, &none, Some(0)),
        Framing::None
    );
    assert_eq!(
        Framing::of(StatusCode::NOT_MODIFIED, &with_length, None),
        Framing::None
    );
    assert_eq!(
        Framing::of(StatusCode::OK, &with_length, None),
        Framing::Length(12)
    );
    assert_eq!(
        Framing::of(StatusCode::NOT_FOUND, &none, Some(5)),
        Framing::Length(5)
    );
    assert_eq!(Framing::of(StatusCode::OK, &none, None), Framing::Chunked);
}

#[test]
fn the_response_head_carries_its_framing_date_and_close() {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("99"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    let head = response_head(StatusCode::OK, &headers, Framing::Chunked, false, "D");
    assert_eq!(
        head,
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\ndate: D\r\n\r\n"
    );
    headers.insert(header::DATE, HeaderValue::from_static("Tue"));
    let head = response_head(
        StatusCode::BAD_GATEWAY,
        &headers,
        Framing::Length(4),
        true,
        "D",
    );
    assert_eq!(
        head,
        b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/event-stream\r\ndate: Tue\r\ncontent-length: 4\r\nconnection: close\r\n\r\n"
    );
    let head = response_head(
        StatusCode::NOT_MODIFIED,
        &headers,
        Framing::None,
        false,
        "D",
    );
    assert!(head.windows(19).any(|w| w == b"content-length: 99\r"));
}

#[test]
fn chunk_lines_are_hex_sizes() {
    assert_eq!(ChunkLine::new(0).as_bytes(), b"0\r\n");
    assert_eq!(ChunkLine::new(255).as_bytes(), b"ff\r\n");
    assert_eq!(ChunkLine::new(65536).as_bytes(), b"10000\r\n");
    assert_eq!(
        ChunkLine::new(usize::MAX).as_bytes(),
        b"ffffffffffffffff\r\n"
    );
}
