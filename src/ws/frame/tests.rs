use super::*;

const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A frame as a peer would write it: masked with [`MASK`] when `masked`.
fn frame(b0: u8, masked: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b0];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        out.extend_from_slice(&MASK);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

fn client() -> FrameReader {
    FrameReader::new(Sender::Client, 1024 * 1024)
}

fn server() -> FrameReader {
    FrameReader::new(Sender::Server, 1024 * 1024)
}

/// Reads every frame of `bytes` with `reader`.
fn read_all(reader: &mut FrameReader, mut bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let mut frames = Vec::new();
    while !bytes.is_empty() {
        match reader.next(bytes)? {
            Next::Frame(f) => {
                bytes = &bytes[f.wire_len()..];
                frames.push(f);
            }
            Next::NeedBytes(n) => panic!("incomplete: {n} bytes needed, {} held", bytes.len()),
        }
    }
    Ok(frames)
}

#[test]
fn a_frame_split_anywhere_is_complete_only_with_its_last_byte() {
    for payload_len in [0usize, 5, 125, 126, 300, 70_000] {
        let payload = vec![b'a'; payload_len];
        for (sender, masked) in [(Sender::Client, true), (Sender::Server, false)] {
            let bytes = frame(0x81, masked, &payload);
            let mut reader = FrameReader::new(sender, 1024 * 1024);
            for cut in 0..bytes.len() {
                match reader.next(&bytes[..cut]).unwrap() {
                    Next::NeedBytes(n) => assert!(n > cut && n <= bytes.len(), "{n} at {cut}"),
                    Next::Frame(f) => panic!("complete at {cut} of {}: {f:?}", bytes.len()),
                }
            }
            match reader.next(&bytes).unwrap() {
                Next::Frame(Frame::Data {
                    len,
                    payload,
                    fin,
                    text,
                }) => {
                    assert_eq!(
                        (len, payload, fin, text),
                        (bytes.len(), payload_len, true, true)
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }
}

#[test]
fn fragments_make_one_message_and_text_may_split_a_character() {
    let text = "€uro";
    let bytes = text.as_bytes();
    let mut stream = frame(0x01, true, &bytes[..1]);
    stream.extend(frame(0x89, true, b"hi")); // a ping between fragments
    stream.extend(frame(0x00, true, &bytes[1..2]));
    stream.extend(frame(0x80, true, &bytes[2..]));
    let frames = read_all(&mut client(), &stream).unwrap();
    assert!(matches!(
        frames[0],
        Frame::Data {
            fin: false,
            payload: 1,
            ..
        }
    ));
    match frames[1] {
        Frame::Ping { payload, .. } => assert_eq!(payload.as_bytes(), b"hi"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(frames[2], Frame::Data { fin: false, .. }));
    assert!(matches!(frames[3], Frame::Data { fin: true, .. }));
}

#[test]
fn text_that_is_not_utf8_is_refused_masked_or_not() {
    let bad = b"ok \xff\xfe bad";
    assert_eq!(
        read_all(&mut client(), &frame(0x81, true, bad)).unwrap_err(),
        FrameError::InvalidUtf8
    );
    assert_eq!(
        read_all(&mut server(), &frame(0x81, false, bad)).unwrap_err(),
        FrameError::InvalidUtf8
    );
    // Unfinished at the end of the message, though each fragment alone looks fine.
    let mut stream = frame(0x01, true, b"ok");
    stream.extend(frame(0x80, true, b"\xe2\x82"));
    assert_eq!(
        read_all(&mut client(), &stream).unwrap_err(),
        FrameError::InvalidUtf8
    );
    // Binary is never checked.
    read_all(&mut client(), &frame(0x82, true, bad)).unwrap();
}

#[test]
fn long_masked_text_is_checked_across_unmasking_blocks() {
    let text = "€".repeat(1000); // sequences straddle every 512-byte block
    read_all(&mut client(), &frame(0x81, true, text.as_bytes())).unwrap();
    let mut bad = text.into_bytes();
    bad[1500] = 0xff;
    assert_eq!(
        read_all(&mut client(), &frame(0x81, true, &bad)).unwrap_err(),
        FrameError::InvalidUtf8
    );
}

#[test]
fn malformed_frames_are_protocol_errors() {
    let cases: [(&str, FrameReader, Vec<u8>); 9] = [
        ("unmasked client frame", client(), frame(0x81, false, b"x")),
        ("masked server frame", server(), frame(0x81, true, b"x")),
        ("RSV1", client(), frame(0xc1, true, b"x")),
        ("RSV3", client(), frame(0x91, true, b"x")),
        ("reserved data opcode", client(), frame(0x83, true, b"x")),
        ("reserved control opcode", client(), frame(0x8b, true, b"x")),
        (
            "fragmented control frame",
            client(),
            frame(0x09, true, b"x"),
        ),
        (
            "control frame over 125",
            client(),
            frame(0x89, true, &[b'p'; 126]),
        ),
        (
            "continuation outside a message",
            client(),
            frame(0x80, true, b"x"),
        ),
    ];
    for (what, mut reader, bytes) in cases {
        assert!(
            matches!(reader.next(&bytes), Err(FrameError::Protocol(_))),
            "{what}"
        );
    }
    let mut stream = frame(0x01, true, b"a");
    stream.extend(frame(0x81, true, b"b"));
    assert!(
        matches!(
            read_all(&mut client(), &stream),
            Err(FrameError::Protocol(_))
        ),
        "a new message inside a fragmented one"
    );
}

#[test]
fn errors_are_known_from_the_header_before_the_payload_arrives() {
    let mut reader = FrameReader::new(Sender::Client, 1024);
    let bytes = frame(0x81, true, &[b'a'; 5000]);
    assert_eq!(reader.next(&bytes[..4]).unwrap_err(), FrameError::TooBig);
    let bytes = frame(0xc1, true, &[b'a'; 5000]);
    assert!(matches!(reader.next(&bytes[..1]), Ok(Next::NeedBytes(2))));
    assert!(matches!(
        reader.next(&bytes[..2]),
        Err(FrameError::Protocol(_))
    ));
}

#[test]
fn max_message_counts_the_whole_message() {
    let mut reader = FrameReader::new(Sender::Client, 1024);
    read_all(&mut reader, &frame(0x82, true, &[0; 1024])).unwrap();
    assert_eq!(
        read_all(&mut reader, &frame(0x82, true, &[0; 1025])).unwrap_err(),
        FrameError::TooBig
    );
    let mut reader = FrameReader::new(Sender::Client, 1024);
    let mut stream = frame(0x02, true, &[0; 600]);
    stream.extend(frame(0x80, true, &[0; 600]));
    assert_eq!(
        read_all(&mut reader, &stream).unwrap_err(),
        FrameError::TooBig
    );
}

#[test]
fn a_64_bit_length_with_the_top_bit_set_is_refused() {
    let mut bytes = vec![0x82, 0x80 | 127];
    bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
    assert!(matches!(
        client().next(&bytes),
        Err(FrameError::Protocol(_))
    ));
}

#[test]
fn close_frames_carry_an_allowed_code_and_a_utf8_reason() {
    let close = |payload: &[u8]| client().next(&frame(0x88, true, payload));
    assert!(matches!(
        close(b""),
        Ok(Next::Frame(Frame::Close { code: None, .. }))
    ));
    let mut ok = 4001u16.to_be_bytes().to_vec();
    ok.extend_from_slice("bye ü".as_bytes());
    assert!(matches!(
        close(&ok),
        Ok(Next::Frame(Frame::Close {
            code: Some(4001),
            ..
        }))
    ));
    assert!(matches!(close(b"\x03"), Err(FrameError::Protocol(_))));
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 2999, 5000] {
        assert!(
            matches!(close(&code.to_be_bytes()), Err(FrameError::Protocol(_))),
            "{code}"
        );
    }
    let mut bad_reason = 1000u16.to_be_bytes().to_vec();
    bad_reason.push(0xff);
    assert_eq!(close(&bad_reason).unwrap_err(), FrameError::InvalidUtf8);
}

#[test]
fn frames_the_proxy_writes_read_back_as_sent() {
    let ping = control_frame(OP_PING, b"keepalive", Some([1, 2, 3, 4]));
    match client().next(&ping).unwrap() {
        Next::Frame(Frame::Ping { len, payload }) => {
            assert_eq!(len, ping.len());
            assert_eq!(payload.as_bytes(), b"keepalive");
        }
        other => panic!("{other:?}"),
    }
    let close = close_frame(close::AWAY, &"é".repeat(100), None);
    assert!(close.len() <= 2 + MAX_CONTROL_PAYLOAD);
    assert!(matches!(
        server().next(&close).unwrap(),
        Next::Frame(Frame::Close {
            code: Some(1001),
            ..
        })
    ));
    let pong = control_frame(OP_PONG, &[7; 200], None);
    assert!(matches!(
        server().next(&pong).unwrap(),
        Next::Frame(Frame::Pong { len: 127 })
    ));
}

#[test]
fn messages_the_proxy_writes_read_back_as_sent_at_every_length_size() {
    for len in [0usize, 125, 126, 0xffff, 0x10000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let masked = message_frame(OP_BINARY, &payload, Some(MASK));
        assert_eq!(masked, frame(0x82, true, &payload), "masked, {len} bytes");
        let plain = message_frame(OP_TEXT, &payload, None);
        assert_eq!(plain, frame(0x81, false, &payload), "unmasked, {len} bytes");
    }
}

#[test]
fn a_reader_for_whole_messages_leaves_text_to_its_caller_but_checks_the_rest() {
    let bad = frame(0x81, false, &[0xff, 0xfe]);
    let mut reader = FrameReader::for_messages(Sender::Server, 1024);
    match reader.next(&bad).unwrap() {
        Next::Frame(Frame::Data { text, fin, .. }) => assert!(text && fin),
        other => panic!("{other:?}"),
    }
    assert_eq!(server().next(&bad).unwrap_err(), FrameError::InvalidUtf8);
    // Continuations carry the message's kind.
    let mut stream = frame(0x02, false, b"ab");
    stream.extend(frame(0x80, false, b"cd"));
    let frames = read_all(
        &mut FrameReader::for_messages(Sender::Server, 1024),
        &stream,
    )
    .unwrap();
    assert!(frames
        .iter()
        .all(|f| matches!(f, Frame::Data { text: false, .. })));
    let masked = frame(0x81, true, b"hi");
    assert!(matches!(
        FrameReader::for_messages(Sender::Server, 1024).next(&masked),
        Err(FrameError::Protocol(_))
    ));
    let big = frame(0x81, false, &[b'a'; 1025]);
    assert_eq!(
        FrameReader::for_messages(Sender::Server, 1024)
            .next(&big)
            .unwrap_err(),
        FrameError::TooBig
    );
}
