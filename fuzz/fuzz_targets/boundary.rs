//! Fuzzes the passthrough boundary tracker and BOM filter: no input may make them panic, a split
//! must not change what they report, and a heartbeat written wherever the tracker allows one
//! must not change the events a client decodes. The first byte picks the split position.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ssebridge::sse::{heartbeat, BomFilter, BoundaryTracker, Decoder, Event};

fn track(chunks: &[&[u8]]) -> (usize, bool) {
    let mut tracker = BoundaryTracker::new();
    let events = chunks.iter().map(|chunk| tracker.feed(chunk)).sum();
    (events, tracker.at_boundary())
}

fn decode(stream: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    // A stream too large for the bound fails the same way with or without heartbeats.
    let _ = Decoder::new(1 << 20).feed(stream, |e| events.push(e));
    events
}

/// The stream as the proxy sends it: BOM dropped, a heartbeat at every boundary.
fn with_heartbeats(stream: &[u8]) -> Vec<u8> {
    let (mut tracker, mut bom) = (BoundaryTracker::new(), BomFilter::new());
    let mut out = bytes::BytesMut::new();
    for byte in stream.chunks(1) {
        if tracker.at_boundary() {
            heartbeat(&mut out, 0);
        }
        tracker.feed(byte);
        for part in bom.filter(byte).parts() {
            out.extend_from_slice(part);
        }
    }
    out.extend_from_slice(bom.finish());
    out.to_vec()
}

fuzz_target!(|input: &[u8]| {
    let Some((&selector, stream)) = input.split_first() else {
        return;
    };
    let at = usize::from(selector) * stream.len() / 255;
    let (head, tail) = stream.split_at(at);
    let whole = track(&[stream]);
    assert_eq!(track(&[head, tail]), whole, "split at {at}");
    let bytes: Vec<&[u8]> = stream.chunks(1).collect();
    assert_eq!(track(&bytes), whole, "byte by byte");
    assert_eq!(decode(&with_heartbeats(stream)), decode(stream));
});
