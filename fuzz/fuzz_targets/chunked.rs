//! Fuzzes the in-place chunked decoder of upstream bodies: no input may make it panic, and a
//! split must not change the payload it yields, where the body ends, or whether it is refused.
//! The first byte picks the split position.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssebridge::upstream::chunked::{ChunkError, ChunkedDecoder};

/// The payload, whether the body ended, and the error if any, feeding `chunks` as a reader
/// would (unconsumed bytes are kept and passed again with the next chunk).
fn decode(chunks: &[&[u8]]) -> (Vec<u8>, bool, Option<ChunkError>) {
    let mut decoder = ChunkedDecoder::new();
    let mut pending = Vec::new();
    let mut payload = Vec::new();
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        match decoder.decode(&mut pending) {
            Ok(d) => {
                assert!(d.start + d.len <= d.consumed && d.consumed <= pending.len());
                payload.extend_from_slice(&pending[d.start..d.start + d.len]);
                pending.drain(..d.consumed);
            }
            Err(e) => return (payload, false, Some(e)),
        }
        if decoder.is_done() {
            break;
        }
    }
    (payload, decoder.is_done(), None)
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, body)) = input.split_first() else {
        return;
    };
    let at = usize::from(selector) * body.len() / 255;
    let (head, tail) = body.split_at(at);
    let whole = decode(&[body]);
    let split = decode(&[head, tail]);
    // A refused body may have yielded a different amount of payload before the error.
    assert_eq!(split.1, whole.1, "end at split {at}");
    assert_eq!(split.2, whole.2, "error at split {at}");
    if whole.2.is_none() {
        assert_eq!(split.0, whole.0, "payload at split {at}");
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    let one_by_one = decode(&bytes);
    assert_eq!(one_by_one.2, whole.2);
    if whole.2.is_none() {
        assert_eq!(one_by_one.0, whole.0);
    }
});
