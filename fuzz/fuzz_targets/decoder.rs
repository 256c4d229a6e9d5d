//! Fuzzes the SSE decoder: no input may make it panic, and the events (and any error) must not
//! depend on where the stream is split. The first byte picks the split position.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssebridge::sse::{DecodeError, Decoder, Event};

type Outcome = (Vec<Event>, Result<(), DecodeError>);

fn decode(chunks: &[&[u8]], limit: usize) -> Outcome {
    let mut decoder = Decoder::new(limit);
    let mut events = Vec::new();
    let result = chunks
        .iter()
        .try_for_each(|chunk| decoder.feed(chunk, |e| events.push(e)));
    (events, result)
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, stream)) = input.split_first() else {
        return;
    };
    let at = usize::from(selector) * stream.len() / 255;
    let (head, tail) = stream.split_at(at);
    // A small bound too, so the size check runs as often as the parser.
    for limit in [1 << 16, 32] {
        let whole = decode(&[stream], limit);
        assert_eq!(decode(&[head, tail], limit), whole, "split at {at}");
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(decode(&bytes, limit), whole, "byte by byte");
    }
});
