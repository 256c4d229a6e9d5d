//! Throughput of the event-stream codec: the decoder (translation) and the boundary tracker
//! (passthrough, on every forwarded byte), fed in 16 KiB chunks as a socket would hand them
//! over, and the encoder per event. Measures only; it must never assert behaviour.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ssebridge::sse::{encode, BoundaryTracker, Decoder, OutEvent};

const CHUNK: usize = 16 * 1024;
/// Bytes of stream per iteration, so small and large events measure comparable work.
const STREAM: usize = 1024 * 1024;
const SIZES: [(usize, &str); 3] = [(64, "64B"), (1024, "1KiB"), (64 * 1024, "64KiB")];
const LINE_ENDS: [(&str, &str); 2] = [("\n", "lf"), ("\r\n", "crlf")];

/// One event of about `size` bytes on the wire: an id and one JSON-like `data` line.
fn event(size: usize, n: usize, end: &str) -> String {
    let head = format!("id: {n}{end}data: {{\"v\":\"");
    let tail = format!("\"}}{end}{end}");
    let fill = size.saturating_sub(head.len() + tail.len()).max(1);
    format!("{head}{}{tail}", "x".repeat(fill))
}

fn stream(size: usize, end: &str) -> Vec<u8> {
    let mut out = String::new();
    let mut n = 0;
    while out.len() < STREAM {
        out.push_str(&event(size, n, end));
        n += 1;
    }
    out.into_bytes()
}

fn decoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("decoder");
    for (size, size_name) in SIZES {
        for (end, end_name) in LINE_ENDS {
            let input = stream(size, end);
            group.throughput(Throughput::Bytes(input.len() as u64));
            let id = BenchmarkId::new(size_name, end_name);
            group.bench_with_input(id, &input, |b, input| {
                b.iter(|| {
                    let mut decoder = Decoder::new(1 << 20);
                    let mut events = 0usize;
                    for chunk in input.chunks(CHUNK) {
                        let fed = decoder.feed(black_box(chunk), |e| {
                            events += black_box(e).data.len();
                        });
                        black_box(fed).ok();
                    }
                    events
                });
            });
        }
    }
    group.finish();
}

fn boundary(c: &mut Criterion) {
    let mut group = c.benchmark_group("boundary");
    for (size, size_name) in SIZES {
        for (end, end_name) in LINE_ENDS {
            let input = stream(size, end);
            group.throughput(Throughput::Bytes(input.len() as u64));
            let id = BenchmarkId::new(size_name, end_name);
            group.bench_with_input(id, &input, |b, input| {
                b.iter(|| {
                    let mut tracker = BoundaryTracker::new();
                    let events: usize = input
                        .chunks(CHUNK)
                        .map(|chunk| tracker.feed(black_box(chunk)))
                        .sum();
                    (events, tracker.at_boundary())
                });
            });
        }
    }
    group.finish();
}

fn encoder(c: &mut Criterion) {
    let mut group = c.benchmark_group("encoder");
    for (size, size_name) in SIZES {
        let data = "x".repeat(size);
        let ev = OutEvent {
            event: Some("tick"),
            id: Some("12345"),
            retry: None,
            data: &data,
        };
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("event", size_name), &ev, |b, ev| {
            let mut out = BytesMut::with_capacity(size + 64);
            b.iter(|| {
                out.clear();
                black_box(encode(&mut out, black_box(ev))).ok();
                out.len()
            });
        });
    }
    group.finish();
}

criterion_group!(benches, decoder, boundary, encoder);
criterion_main!(benches);
