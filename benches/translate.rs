//! Per-message cost of the bridges' translation (SPEC 4): a WebSocket text message into an SSE
//! event (`message_to_event`, raw and JSON envelopes), and an SSE event stream back into
//! WebSocket messages (`Decoder` + `event_to_message`). Measures only; never asserts behaviour.
//!
//! Each iteration handles one message, so `Throughput::Elements(1)` makes criterion report
//! messages per second; the payload sizes are those of the codec benches (64 B, 1 KiB, 64 KiB).

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ssebridge::config::Format;
use ssebridge::proxy::translate::{event_to_message, message_to_event};
use ssebridge::sse::{encode, Decoder, Event, OutEvent};

const SIZES: [(usize, &str); 3] = [(64, "64B"), (1024, "1KiB"), (64 * 1024, "64KiB")];
/// How many events one SSE->WS iteration decodes: enough to amortise the loop, few enough that
/// a 64 KiB run stays short.
const EVENTS_PER_FEED: usize = 16;

/// A text payload of exactly `size` bytes: a JSON-looking body with a few line ends, so the
/// encoder has lines to split, as real feeds (pretty-printed JSON, multi-line text) do.
fn payload(size: usize) -> String {
    let line = "{\"symbol\":\"ABC\",\"price\":123.45,\"seq\":1}\n";
    let mut out = String::with_capacity(size);
    while out.len() < size {
        out.push_str(line);
    }
    out.truncate(size);
    out
}

/// A JSON envelope (SPEC 4.1 `format: json`) whose `data` string brings it to about `size` bytes.
fn envelope(size: usize) -> String {
    let head = "{\"event\":\"tick\",\"id\":\"42\",\"data\":\"";
    let tail = "\"}";
    let fill = size.saturating_sub(head.len() + tail.len()).max(1);
    format!("{head}{}{tail}", "x".repeat(fill))
}

fn ws_to_sse(c: &mut Criterion) {
    let mut group = c.benchmark_group("ws_to_sse");
    group.throughput(Throughput::Elements(1));
    for (size, size_name) in SIZES {
        let cases = [
            ("raw", payload(size), Format::Raw),
            ("json_plain", payload(size), Format::Json),
            ("json_envelope", envelope(size), Format::Json),
        ];
        for (case, text, format) in cases {
            let id = BenchmarkId::new(case, size_name);
            group.bench_with_input(id, &text, |b, text| {
                let mut out = BytesMut::with_capacity(2 * size + 64);
                b.iter(|| {
                    out.clear();
                    black_box(message_to_event(&mut out, black_box(text), format));
                    out.len()
                });
            });
        }
    }
    group.finish();
}

/// The wire form of `EVENTS_PER_FEED` events of `size` data bytes each, as an origin sends them.
fn sse_stream(size: usize) -> Vec<u8> {
    let data = payload(size).replace('\n', " ");
    let mut out = BytesMut::new();
    for n in 0..EVENTS_PER_FEED {
        let id = n.to_string();
        let event = OutEvent {
            event: Some("tick"),
            id: Some(&id),
            retry: None,
            data: &data,
        };
        encode(&mut out, &event).expect("a valid event");
    }
    out.to_vec()
}

fn sse_to_ws(c: &mut Criterion) {
    let mut group = c.benchmark_group("sse_to_ws");
    group.throughput(Throughput::Elements(EVENTS_PER_FEED as u64));
    for (size, size_name) in SIZES {
        let input = sse_stream(size);
        for (case, format) in [("raw", Format::Raw), ("json", Format::Json)] {
            let id = BenchmarkId::new(case, size_name);
            group.bench_with_input(id, &input, |b, input| {
                b.iter(|| {
                    let mut decoder = Decoder::new(1 << 20);
                    let mut bytes = 0usize;
                    // 16 KiB reads, as a socket hands them over.
                    for chunk in input.chunks(16 * 1024) {
                        let fed = decoder.feed(black_box(chunk), |event: Event| {
                            bytes += black_box(event_to_message(&event, format)).len();
                        });
                        black_box(fed).ok();
                    }
                    bytes
                });
            });
        }
    }
    group.finish();
}

criterion_group!(benches, ws_to_sse, sse_to_ws);
criterion_main!(benches);
