//! The writes of [`Out`]: frames gathered into one vectored write, and writes the socket takes
//! only in part.

use std::io;
use std::io::IoSlice;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use tokio::io::AsyncWrite;

use super::{Out, LAST_CHUNK, MAX_BYTES, MAX_FRAMES};

/// A writer that records its vectored writes and takes at most `max` bytes of each.
struct Recorder {
    bytes: Vec<u8>,
    writes: usize,
    max: usize,
}

impl Recorder {
    fn taking(max: usize) -> Self {
        Recorder {
            bytes: Vec::new(),
            writes: 0,
            max,
        }
    }
}

impl AsyncWrite for Recorder {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.writes += 1;
        let mut room = self.max;
        for slice in slices {
            let n = slice.len().min(room);
            self.bytes.extend_from_slice(&slice[..n]);
            room -= n;
        }
        Poll::Ready(Ok(self.max - room))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn write_all(out: &mut Out, to: &mut Recorder) {
    let mut cx = Context::from_waker(Waker::noop());
    match out.poll_write(to, &mut cx) {
        Poll::Ready(result) => result.expect("the recorder takes every write"),
        Poll::Pending => panic!("the recorder never waits"),
    }
}

/// A head, three chunks and the last chunk.
fn three_chunks_and_the_end() -> Out {
    let mut out = Out {
        head: b"HTTP/1.1 200 OK\r\n\r\n".to_vec(),
        ..Out::default()
    };
    for data in ["data: a\n\n", "data: bb\n\n", &"x".repeat(300)] {
        assert!(out.has_room());
        out.push(Bytes::from(data.to_owned()), true);
    }
    out.end = LAST_CHUNK;
    out
}

fn expected_three_chunks() -> Vec<u8> {
    let mut expected = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    expected.extend_from_slice(b"9\r\ndata: a\n\n\r\n");
    expected.extend_from_slice(b"a\r\ndata: bb\n\n\r\n");
    expected.extend_from_slice(b"12c\r\n");
    expected.extend_from_slice("x".repeat(300).as_bytes());
    expected.extend_from_slice(b"\r\n0\r\n\r\n");
    expected
}

#[test]
fn frames_that_are_ready_go_out_in_one_write() {
    let mut out = three_chunks_and_the_end();
    let mut to = Recorder::taking(usize::MAX);
    write_all(&mut out, &mut to);
    assert_eq!(to.writes, 1);
    assert_eq!(to.bytes, expected_three_chunks());
    assert!(
        out.is_empty() && out.has_room(),
        "ready for the next frames"
    );
}

#[test]
fn a_write_taken_in_part_resumes_at_every_split_position() {
    let expected = expected_three_chunks();
    for max in 1..=expected.len() {
        let mut out = three_chunks_and_the_end();
        let mut to = Recorder::taking(max);
        write_all(&mut out, &mut to);
        assert_eq!(to.bytes, expected, "at most {max} bytes per write");
        assert_eq!(to.writes, expected.len().div_ceil(max));
    }
}

#[test]
fn a_frame_of_a_length_delimited_body_goes_out_as_it_is() {
    let mut out = Out::default();
    out.push(Bytes::from_static(b"hello "), false);
    out.push(Bytes::from_static(b"world"), false);
    let mut to = Recorder::taking(usize::MAX);
    write_all(&mut out, &mut to);
    assert_eq!(to.bytes, b"hello world");
}

#[test]
fn a_write_is_bounded_in_frames_and_in_bytes() {
    let mut out = Out::default();
    for _ in 0..MAX_FRAMES {
        assert!(out.has_room());
        out.push(Bytes::from_static(b"data: x\n\n"), true);
    }
    assert!(!out.has_room(), "{MAX_FRAMES} frames");

    let mut out = Out::default();
    out.push(Bytes::from(vec![b'x'; MAX_BYTES - 1]), true);
    assert!(out.has_room());
    out.push(Bytes::from_static(b"y"), true);
    assert!(!out.has_room(), "{MAX_BYTES} bytes");
}

#[test]
fn nothing_joins_a_write_under_way_or_after_the_end() {
    let mut out = Out::default();
    out.push(Bytes::from_static(b"data: x\n\n"), true);
    let mut cx = Context::from_waker(Waker::noop());
    // Takes 4 bytes, then waits.
    struct Once(bool);
    impl AsyncWrite for Once {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            if std::mem::replace(&mut self.0, true) {
                Poll::Pending
            } else {
                Poll::Ready(Ok(buf.len().min(4)))
            }
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }
    assert!(out.poll_write(&mut Once(false), &mut cx).is_pending());
    assert!(!out.is_empty());
    assert!(!out.has_room(), "a frame waits behind a write under way");

    let mut out = Out {
        end: LAST_CHUNK,
        ..Out::default()
    };
    assert!(!out.has_room(), "the body ended");
    write_all(&mut out, &mut Recorder::taking(usize::MAX));
}
