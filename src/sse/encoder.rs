//! Writes events onto the wire: the one place that produces `event:`, `id:`, `retry:` and
//! `data:` lines.
//!
//! Every event the proxy makes itself (WebSocket -> SSE, heartbeats, the `retry:` field at the
//! start of a stream) goes through here, so the wire rules live in one module. It must never
//! write what a client would read differently from what was meant: it refuses an `event` or `id`
//! that a line end would cut (and an `id` with NUL, which a client ignores), and it never leaves a
//! partial event in the buffer when it refuses one.

use std::fmt;

use bytes::BytesMut;

use super::scan::find_line_end;

/// An event to write. `data` may hold any text; its line ends become separate `data:` lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutEvent<'a> {
    /// The event type; `None` leaves the client's default, "message".
    pub event: Option<&'a str>,
    /// The event ID; `Some("")` resets the client's last event ID.
    pub id: Option<&'a str>,
    /// The client's reconnection time, in milliseconds.
    pub retry: Option<u64>,
    /// The event's data, as the client's `event.data` will read (line ends as LF).
    pub data: &'a str,
}

impl<'a> OutEvent<'a> {
    /// A plain "message" event carrying `data`.
    pub fn new(data: &'a str) -> Self {
        Self {
            data,
            ..Self::default()
        }
    }
}

/// Why an event cannot be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The `event` type holds a CR or LF, which would end its line early.
    NewlineInEvent,
    /// The `id` holds a CR or LF, which would end its line early.
    NewlineInId,
    /// The `id` holds NUL; WHATWG: a client ignores such an `id` field.
    NulInId,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncodeError::NewlineInEvent => "event type contains a line break",
            EncodeError::NewlineInId => "event id contains a line break",
            EncodeError::NulInId => "event id contains NUL",
        })
    }
}

impl std::error::Error for EncodeError {}

/// Appends the event: `event:`, `id:`, `retry:` lines then one `data:` line per line of data
/// (data split on CRLF, LF or lone CR, so the client's event.data equals the text with line ends
/// as LF), then a blank line. Always writes "data: " with a space so a value starting with a
/// space survives. On error nothing is written.
pub fn encode(out: &mut BytesMut, ev: &OutEvent) -> Result<(), EncodeError> {
    validate(ev)?;
    out.reserve(ev.data.len() + 64);
    if let Some(event) = ev.event {
        put_field(out, b"event", event.as_bytes());
    }
    if let Some(id) = ev.id {
        put_field(out, b"id", id.as_bytes());
    }
    if let Some(millis) = ev.retry {
        put_retry(out, millis);
    }
    put_data(out, ev.data.as_bytes());
    // WHATWG: a blank line dispatches the event.
    out.extend_from_slice(b"\n");
    Ok(())
}

/// Appends a heartbeat: a comment (`:`, then spaces) and a blank line, `":\n\n"` when
/// `padding` is 3 or less. With a larger `padding` the spaces make the whole heartbeat,
/// final `"\n\n"` included, exactly `padding` bytes long (SPEC: "padded to at least this many
/// bytes"). WHATWG: a line starting with ':' is a comment, and the blank line after a block with
/// nothing but comments dispatches nothing.
pub fn heartbeat(out: &mut BytesMut, padding: usize) {
    const BARE: &[u8] = b":\n\n";
    let spaces = padding.saturating_sub(BARE.len());
    out.reserve(BARE.len() + spaces);
    out.extend_from_slice(b":");
    out.resize(out.len() + spaces, b' ');
    out.extend_from_slice(b"\n\n");
}

/// Appends `"retry: N\n\n"`: sets the client's reconnection time, and the blank line closes the
/// block (without data, WHATWG dispatches nothing) so the stream is at an event boundary after it.
pub fn retry_field(out: &mut BytesMut, millis: u64) {
    put_retry(out, millis);
    out.extend_from_slice(b"\n");
}

fn validate(ev: &OutEvent) -> Result<(), EncodeError> {
    if ev.event.is_some_and(has_line_end) {
        return Err(EncodeError::NewlineInEvent);
    }
    if let Some(id) = ev.id {
        if has_line_end(id) {
            return Err(EncodeError::NewlineInId);
        }
        if id.contains('\0') {
            return Err(EncodeError::NulInId);
        }
    }
    Ok(())
}

fn has_line_end(text: &str) -> bool {
    find_line_end(text.as_bytes()).is_some()
}

/// `name: value\n`. The space is stripped by the client (WHATWG: one leading space of a value).
fn put_field(out: &mut BytesMut, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\n");
}

fn put_retry(out: &mut BytesMut, millis: u64) {
    let mut digits = [0u8; 20];
    put_field(out, b"retry", decimal(millis, &mut digits));
}

/// One `data:` line per line of `data`. WHATWG: the client joins `data` lines with LF, so any of
/// CRLF, LF or CR here reads back as LF; an empty data, or one ending with a line end, gives an
/// empty last line, so the event still dispatches with the same data.
fn put_data(out: &mut BytesMut, data: &[u8]) {
    let mut rest = data;
    while let Some(index) = find_line_end(rest) {
        put_field(out, b"data", &rest[..index]);
        let after = &rest[index + 1..];
        rest = match rest[index] {
            b'\r' => after.strip_prefix(b"\n").unwrap_or(after),
            _ => after,
        };
    }
    put_field(out, b"data", rest);
}

/// Writes `n` in decimal into the end of `digits`; returns the digits written.
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[start..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::decoder::{Decoder, Event};
    use crate::sse::test_support::Rng;

    fn encoded(ev: &OutEvent) -> Result<String, EncodeError> {
        let mut out = BytesMut::new();
        encode(&mut out, ev)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn decode(bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        let fed = Decoder::new(1 << 20).feed(bytes, |e| events.push(e));
        assert_eq!(fed, Ok(()));
        events
    }

    fn round_trip(ev: &OutEvent) -> Event {
        let mut out = BytesMut::new();
        assert_eq!(encode(&mut out, ev), Ok(()));
        let mut events = decode(&out);
        assert_eq!(events.len(), 1, "wire {out:?}");
        events.remove(0)
    }

    #[test]
    fn writes_fields_in_order_then_one_data_line_per_line() {
        let ev = OutEvent {
            event: Some("tick"),
            id: Some("42"),
            retry: Some(1500),
            data: "a\r\nb\nc\rd",
        };
        assert_eq!(
            encoded(&ev),
            Ok("event: tick\nid: 42\nretry: 1500\ndata: a\ndata: b\ndata: c\ndata: d\n\n".into())
        );
    }

    #[test]
    fn empty_data_still_dispatches() {
        assert_eq!(encoded(&OutEvent::new("")), Ok("data: \n\n".into()));
        assert_eq!(round_trip(&OutEvent::new("")).data, "");
    }

    #[test]
    fn data_ending_with_a_line_end_gives_an_empty_last_line() {
        assert_eq!(
            encoded(&OutEvent::new("a\n")),
            Ok("data: a\ndata: \n\n".into())
        );
        assert_eq!(round_trip(&OutEvent::new("a\r\n")).data, "a\n");
    }

    #[test]
    fn a_value_starting_with_a_space_survives() {
        let ev = OutEvent {
            event: Some(" spaced"),
            id: Some(" 1"),
            data: " x\n  y",
            ..OutEvent::default()
        };
        let got = round_trip(&ev);
        assert_eq!(
            (got.event_type.as_str(), got.last_event_id.as_str()),
            (" spaced", " 1")
        );
        assert_eq!(got.data, " x\n  y");
    }

    #[test]
    fn refuses_what_the_wire_cannot_carry_and_writes_nothing() {
        for (ev, error) in [
            (
                OutEvent {
                    event: Some("a\nb"),
                    ..OutEvent::new("x")
                },
                EncodeError::NewlineInEvent,
            ),
            (
                OutEvent {
                    event: Some("a\r"),
                    ..OutEvent::new("x")
                },
                EncodeError::NewlineInEvent,
            ),
            (
                OutEvent {
                    id: Some("1\n"),
                    ..OutEvent::new("x")
                },
                EncodeError::NewlineInId,
            ),
            (
                OutEvent {
                    id: Some("\r1"),
                    ..OutEvent::new("x")
                },
                EncodeError::NewlineInId,
            ),
            (
                OutEvent {
                    id: Some("1\0"),
                    ..OutEvent::new("x")
                },
                EncodeError::NulInId,
            ),
        ] {
            let mut out = BytesMut::from(&b"kept"[..]);
            assert_eq!(encode(&mut out, &ev), Err(error));
            assert_eq!(&out[..], b"kept");
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn an_empty_id_resets_the_last_event_id() {
        let mut out = BytesMut::new();
        let first = OutEvent {
            id: Some("5"),
            ..OutEvent::new("a")
        };
        let second = OutEvent {
            id: Some(""),
            ..OutEvent::new("b")
        };
        assert_eq!(
            encode(&mut out, &first).and(encode(&mut out, &second)),
            Ok(())
        );
        let ids: Vec<String> = decode(&out).into_iter().map(|e| e.last_event_id).collect();
        assert_eq!(ids, ["5", ""]);
    }

    #[test]
    fn heartbeat_is_a_comment_padded_to_at_least_padding_bytes() {
        for (padding, expected) in [(0, 3), (1, 3), (3, 3), (4, 4), (100, 100)] {
            let mut out = BytesMut::new();
            heartbeat(&mut out, padding);
            assert_eq!(out.len(), expected, "padding {padding}");
            assert!(out.starts_with(b":") && out.ends_with(b"\n\n"));
            assert!(out[1..out.len() - 2].iter().all(|&b| b == b' '));
            assert!(decode(&out).is_empty());
        }
    }

    #[test]
    fn retry_field_sets_the_reconnection_time_and_ends_the_block() {
        for millis in [0, 7, 3000, u64::MAX] {
            let mut out = BytesMut::new();
            retry_field(&mut out, millis);
            assert_eq!(out, format!("retry: {millis}\n\n").as_bytes());
            let mut decoder = Decoder::new(64);
            assert_eq!(decoder.feed(&out, |_| panic!("no event")), Ok(()));
            assert_eq!(decoder.reconnection_time(), Some(millis));
        }
    }

    #[test]
    fn round_trip_gives_the_data_with_line_ends_as_lf() {
        const PIECES: &[&str] = &[
            "a", " ", "\r\n", "\n", "\r", "\r\r\n", ":", "data: x", "é😀", "\0", "",
        ];
        let mut rng = Rng::new(5);
        for _ in 0..1000 {
            let data: String = (0..rng.below(10))
                .map(|_| PIECES[rng.below(PIECES.len())])
                .collect();
            let ev = OutEvent {
                event: Some("t"),
                id: Some("i d"),
                retry: Some(9),
                data: &data,
            };
            let expected = Event {
                event_type: "t".into(),
                data: data.replace("\r\n", "\n").replace('\r', "\n"),
                last_event_id: "i d".into(),
                retry: Some(9),
            };
            assert_eq!(round_trip(&ev), expected, "data {data:?}");
        }
    }
}
