//! Decodes an event stream into events, following the WHATWG HTML "server-sent events" parser.
//!
//! Translation (SPEC section 4) works on whole events: [`Decoder`] takes chunks as they arrive,
//! split anywhere (inside a CRLF, a BOM or a UTF-8 sequence), and hands out each event when its
//! blank line arrives. It is a pure function of the bytes: it must never do I/O, never panic on
//! any input, never complete an event the stream has not finished, and never hold more than
//! `max_event_size` bytes for one event.

use std::borrow::Cow;
use std::fmt;

use super::boundary::BomFilter;
use super::scan::find_line_end;

/// One dispatched event, as `EventSource` would hand it to a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event` field, or "message" when the event had none (or an empty one).
    pub event_type: String,
    /// The `data` lines joined with LF.
    pub data: String,
    /// The stream's last event ID when the event was dispatched (it persists across events).
    pub last_event_id: String,
    /// A valid `retry` field seen in this event.
    pub retry: Option<u64>,
}

/// Why the stream cannot be decoded further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// One event (its lines so far plus its data and type) went past the decoder's bound.
    EventTooLarge {
        /// The bound, in bytes.
        limit: usize,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::EventTooLarge { limit } => {
                write!(f, "server-sent event larger than {limit} bytes")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

/// Incremental event-stream parser.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_event_size: usize,
    bom: BomFilter,
    /// The start of a line whose end has not arrived yet (comments are not kept).
    line: Vec<u8>,
    /// The unfinished line is a comment: skip it up to its end.
    in_comment: bool,
    /// The last chunk ended with a CR: an LF at the start of the next one belongs to it.
    after_cr: bool,
    data: String,
    event_type: String,
    /// WHATWG "last event ID buffer": set by `id`, never reset by a dispatch.
    id_buffer: String,
    /// WHATWG "last event ID string" of the event source, copied from the buffer at a dispatch.
    last_event_id: String,
    event_retry: Option<u64>,
    reconnection_time: Option<u64>,
    failed: Option<DecodeError>,
}

impl Decoder {
    /// A decoder at the start of a stream. `max_event_size` bounds the bytes held for one event:
    /// an unfinished line plus the data and type gathered so far.
    pub fn new(max_event_size: usize) -> Self {
        Self {
            max_event_size,
            bom: BomFilter::new(),
            line: Vec::new(),
            in_comment: false,
            after_cr: false,
            data: String::new(),
            event_type: String::new(),
            id_buffer: String::new(),
            last_event_id: String::new(),
            event_retry: None,
            reconnection_time: None,
            failed: None,
        }
    }

    /// Decodes one chunk, calling `emit` for each event it completes. After an error the stream
    /// is broken: every later call returns the same error and emits nothing.
    pub fn feed(&mut self, chunk: &[u8], mut emit: impl FnMut(Event)) -> Result<(), DecodeError> {
        if let Some(error) = self.failed {
            return Err(error);
        }
        let out = self.bom.filter(chunk);
        let result = out
            .parts()
            .iter()
            .try_for_each(|part| self.feed_bytes(part, &mut emit));
        self.failed = result.err();
        result
    }

    /// The last event ID the stream set, as of its last blank line; what a reconnecting client
    /// sends as `Last-Event-ID`.
    pub fn last_event_id(&self) -> &str {
        &self.last_event_id
    }

    /// The reconnection time (milliseconds) from the stream's last valid `retry` field.
    pub fn reconnection_time(&self) -> Option<u64> {
        self.reconnection_time
    }

    fn feed_bytes(
        &mut self,
        bytes: &[u8],
        emit: &mut impl FnMut(Event),
    ) -> Result<(), DecodeError> {
        let mut rest = self.skip_lf_after_cr(bytes);
        while !rest.is_empty() {
            let Some(index) = find_line_end(rest) else {
                return self.keep_partial(rest);
            };
            let ended_with_cr = rest[index] == b'\r';
            self.end_line(&rest[..index], emit)?;
            rest = &rest[index + 1..];
            if ended_with_cr {
                rest = self.skip_lf_after_cr_in(rest);
            }
        }
        Ok(())
    }

    /// WHATWG: CRLF is one line end, also when the CR ended the previous chunk.
    fn skip_lf_after_cr<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        if bytes.is_empty() || !self.after_cr {
            return bytes;
        }
        self.after_cr = false;
        bytes.strip_prefix(b"\n").unwrap_or(bytes)
    }

    /// Right after a CR line end inside a chunk: drop its LF, or remember the CR at chunk end.
    fn skip_lf_after_cr_in<'a>(&mut self, rest: &'a [u8]) -> &'a [u8] {
        self.after_cr = rest.is_empty();
        rest.strip_prefix(b"\n").unwrap_or(rest)
    }

    /// Keeps the start of a line until its end arrives; a comment is skipped instead.
    fn keep_partial(&mut self, bytes: &[u8]) -> Result<(), DecodeError> {
        if self.line.is_empty() && !self.in_comment && bytes.first() == Some(&b':') {
            self.in_comment = true;
        }
        if self.in_comment {
            return Ok(());
        }
        self.check_size(self.line.len() + bytes.len())?;
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// A line end arrived; `tail` is the part of the line in this chunk.
    fn end_line(&mut self, tail: &[u8], emit: &mut impl FnMut(Event)) -> Result<(), DecodeError> {
        if std::mem::take(&mut self.in_comment) {
            return Ok(());
        }
        if self.line.is_empty() {
            return self.process_line(tail, emit);
        }
        self.check_size(self.line.len() + tail.len())?;
        let mut line = std::mem::take(&mut self.line);
        line.extend_from_slice(tail);
        let result = self.process_line(&line, emit);
        // Keep the allocation for the next long line.
        line.clear();
        self.line = line;
        result
    }

    /// WHATWG "interpret the line": blank, comment, or `name[: value]`.
    fn process_line(
        &mut self,
        line: &[u8],
        emit: &mut impl FnMut(Event),
    ) -> Result<(), DecodeError> {
        match line.first() {
            None => {
                self.dispatch(emit);
                Ok(())
            }
            Some(b':') => Ok(()),
            Some(_) => {
                self.check_size(line.len())?;
                let (name, value) = split_field(line);
                self.process_field(name, value);
                self.check_size(0)
            }
        }
    }

    /// WHATWG "process the field".
    fn process_field(&mut self, name: &[u8], value: &[u8]) {
        match name {
            b"event" => replace(&mut self.event_type, &utf8(value)),
            b"data" => {
                self.data.push_str(&utf8(value));
                self.data.push('\n');
            }
            // WHATWG: an id containing NUL is ignored; an empty one resets the last event ID.
            b"id" if !value.contains(&0) => replace(&mut self.id_buffer, &utf8(value)),
            b"retry" => {
                if let Some(millis) = parse_retry(value) {
                    self.reconnection_time = Some(millis);
                    self.event_retry = Some(millis);
                }
            }
            // WHATWG: any other field is ignored.
            _ => {}
        }
    }

    /// WHATWG "dispatch the event", at a blank line.
    fn dispatch(&mut self, emit: &mut impl FnMut(Event)) {
        // WHATWG: the last event ID string is set even when nothing is dispatched.
        self.last_event_id.clone_from(&self.id_buffer);
        let retry = self.event_retry.take();
        if self.data.is_empty() {
            self.event_type.clear();
            return;
        }
        let mut data = std::mem::take(&mut self.data);
        // WHATWG: remove the LF that the last `data` line appended.
        if data.ends_with('\n') {
            data.pop();
        }
        let event_type = match std::mem::take(&mut self.event_type) {
            t if t.is_empty() => String::from("message"),
            t => t,
        };
        emit(Event {
            event_type,
            data,
            last_event_id: self.last_event_id.clone(),
            retry,
        });
    }

    /// Fails when `line_bytes` more bytes would put the event past `max_event_size`.
    fn check_size(&self, line_bytes: usize) -> Result<(), DecodeError> {
        let held = line_bytes
            .saturating_add(self.data.len())
            .saturating_add(self.event_type.len());
        if held > self.max_event_size {
            return Err(DecodeError::EventTooLarge {
                limit: self.max_event_size,
            });
        }
        Ok(())
    }
}

/// WHATWG: the field name is the line up to the first ':', the value the rest, less one leading
/// space; a line without ':' is a field name with an empty value.
fn split_field(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b':') {
        None => (line, &[]),
        Some(colon) => {
            let value = &line[colon + 1..];
            (&line[..colon], value.strip_prefix(b" ").unwrap_or(value))
        }
    }
}

/// WHATWG: the stream is UTF-8, and bytes that are not become U+FFFD. ':' and ' ' are ASCII, so
/// decoding a value alone gives the same text as decoding the whole line.
fn utf8(bytes: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(bytes)
}

/// WHATWG: `retry` counts only when its value is ASCII digits. An empty value, or one too large
/// for a u64, is ignored too.
fn parse_retry(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0u64, |acc, &digit| {
        acc.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// Sets `buffer` to `text`, keeping its allocation.
fn replace(buffer: &mut String, text: &str) {
    buffer.clear();
    buffer.push_str(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::test_support::{splits, Rng};

    const LIMIT: usize = 1 << 16;

    type Outcome = (Vec<Event>, Result<(), DecodeError>);

    fn decode_chunks(chunks: &[&[u8]], limit: usize) -> Outcome {
        let mut decoder = Decoder::new(limit);
        let mut events = Vec::new();
        let result = chunks
            .iter()
            .try_for_each(|chunk| decoder.feed(chunk, |event| events.push(event)));
        (events, result)
    }

    /// Decodes `input` whole and cut in every way; all must agree. Returns the events.
    fn decode_every_split(input: &[u8], limit: usize) -> Outcome {
        let whole = decode_chunks(&[input], limit);
        for chunks in splits(input) {
            assert_eq!(decode_chunks(&chunks, limit), whole, "chunks {chunks:?}");
        }
        whole
    }

    fn events_of(input: &[u8]) -> Vec<Event> {
        let (events, result) = decode_every_split(input, LIMIT);
        assert_eq!(result, Ok(()));
        events
    }

    fn event(event_type: &str, data: &str, last_event_id: &str) -> Event {
        Event {
            event_type: event_type.into(),
            data: data.into(),
            last_event_id: last_event_id.into(),
            retry: None,
        }
    }

    fn message(data: &str) -> Event {
        event("message", data, "")
    }

    fn datas(input: &[u8]) -> Vec<String> {
        events_of(input).into_iter().map(|e| e.data).collect()
    }

    #[test]
    fn blank_line_dispatches_and_data_lines_join_with_lf() {
        // The WHATWG example: "YHOO\n+2\n10".
        assert_eq!(
            events_of(b"data: YHOO\ndata: +2\ndata: 10\n\n"),
            [message("YHOO\n+2\n10")]
        );
    }

    #[test]
    fn crlf_lf_and_lone_cr_all_end_lines() {
        for end in ["\n", "\r\n", "\r"] {
            let input = format!("data: a{end}data: b{end}{end}data: c{end}{end}");
            assert_eq!(datas(input.as_bytes()), ["a\nb", "c"], "line end {end:?}");
        }
        assert_eq!(datas(b"data: a\r\ndata: b\rdata: c\n\r\n"), ["a\nb\nc"]);
    }

    #[test]
    fn crlf_split_between_chunks_is_one_line_end() {
        // Were "\r" | "\n" two line ends, the LF would be a blank line dispatching "a" alone.
        let (events, _) = decode_chunks(&[b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"], LIMIT);
        assert_eq!(events, [message("a\nb")]);
    }

    #[test]
    fn lone_cr_at_chunk_end_then_text_ends_the_line() {
        let (events, _) = decode_chunks(&[b"data: a\r", b"data: b\r", b"\r"], LIMIT);
        assert_eq!(events, [message("a\nb")]);
    }

    #[test]
    fn leading_bom_is_ignored_once() {
        assert_eq!(datas(b"\xEF\xBB\xBFdata: a\n\n"), ["a"]);
        // A second BOM is text: the field name "\u{FEFF}data" is unknown.
        assert!(datas(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\n").is_empty());
        // A BOM prefix that is no BOM stays text (one U+FFFD before "data").
        assert!(datas(b"\xEF\xBBdata: a\n\n").is_empty());
        assert_eq!(datas(b"data: \xEF\xBB\xBFa\n\n"), ["\u{FEFF}a"]);
    }

    #[test]
    fn utf8_split_anywhere_decodes_and_invalid_bytes_become_replacement() {
        assert_eq!(datas("data: é€😀\n\n".as_bytes()), ["é€😀"]);
        assert_eq!(datas(b"data: a\xF0\x9Fb\xFF\n\n"), ["a\u{FFFD}b\u{FFFD}"]);
        assert_eq!(
            datas(b"data: \xF0\x9F\ndata: \x98\x80\n\n"),
            ["\u{FFFD}\n\u{FFFD}\u{FFFD}"]
        );
    }

    #[test]
    fn one_leading_space_of_a_value_is_stripped() {
        assert_eq!(
            datas(b"data:test\n\ndata: test\n\ndata:  two\n\n"),
            ["test", "test", " two"]
        );
    }

    #[test]
    fn line_without_colon_is_a_field_with_empty_value() {
        // The WHATWG example: two events, "" and "\n"; the unterminated "data:" is dropped.
        assert_eq!(datas(b"data\n\ndata\ndata\n\ndata:"), ["", "\n"]);
    }

    #[test]
    fn comments_are_ignored() {
        assert_eq!(datas(b": hi\ndata: a\n:\n: data: b\n\n:only\n\n"), ["a"]);
    }

    #[test]
    fn event_field_sets_the_type_for_one_event() {
        let input = b"event: add\ndata: 1\n\nevent:\ndata: 2\n\ndata: 3\n\n";
        let types: Vec<String> = events_of(input).into_iter().map(|e| e.event_type).collect();
        assert_eq!(types, ["add", "message", "message"]);
    }

    #[test]
    fn event_without_data_is_not_dispatched_and_resets_the_type() {
        assert_eq!(events_of(b"event: x\n\ndata: y\n\n"), [message("y")]);
        assert!(events_of(b"event: x\nid: 1\nretry: 5\n\n").is_empty());
    }

    #[test]
    fn id_persists_across_events_and_an_empty_id_resets_it() {
        let input = b"id: 7\ndata: a\n\ndata: b\n\nid\ndata: c\n\n";
        let ids: Vec<String> = events_of(input)
            .into_iter()
            .map(|e| e.last_event_id)
            .collect();
        assert_eq!(ids, ["7", "7", ""]);
    }

    #[test]
    fn id_with_nul_is_ignored() {
        let input = b"id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n";
        let ids: Vec<String> = events_of(input)
            .into_iter()
            .map(|e| e.last_event_id)
            .collect();
        assert_eq!(ids, ["1", "1"]);
    }

    #[test]
    fn last_event_id_is_set_at_a_blank_line_even_without_data() {
        let mut decoder = Decoder::new(LIMIT);
        let mut events = 0;
        let fed = decoder.feed(b"id: 9\n", |_| events += 1);
        assert_eq!((fed, decoder.last_event_id()), (Ok(()), ""));
        let fed = decoder.feed(b"\n", |_| events += 1);
        assert_eq!((fed, decoder.last_event_id(), events), (Ok(()), "9", 0));
    }

    #[test]
    fn retry_counts_only_when_all_ascii_digits() {
        for (line, expected) in [
            ("retry: 1500", Some(1500)),
            ("retry:0", Some(0)),
            ("retry: 15a", None),
            ("retry:  15", None),
            ("retry: -1", None),
            ("retry: 1.5", None),
            ("retry:", None),
            ("retry: ١٢", None),
            ("retry: 99999999999999999999", None),
        ] {
            let input = format!("{line}\ndata: x\n\n");
            let mut decoder = Decoder::new(LIMIT);
            let mut events = Vec::new();
            assert_eq!(decoder.feed(input.as_bytes(), |e| events.push(e)), Ok(()));
            assert_eq!(decoder.reconnection_time(), expected, "{line}");
            assert_eq!(events[0].retry, expected, "{line}");
        }
    }

    #[test]
    fn retry_persists_in_the_stream_but_belongs_to_one_event() {
        let mut decoder = Decoder::new(LIMIT);
        let mut events = Vec::new();
        let fed = decoder.feed(b"retry: 10\ndata: a\n\ndata: b\n\n", |e| events.push(e));
        assert_eq!(fed, Ok(()));
        let retries: Vec<_> = events.iter().map(|e| e.retry).collect();
        assert_eq!(retries, [Some(10), None]);
        assert_eq!(decoder.reconnection_time(), Some(10));
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert_eq!(
            datas(b"foo: bar\nData: no\ndata : no\ndata: yes\n\n"),
            ["yes"]
        );
    }

    #[test]
    fn unterminated_last_event_is_discarded() {
        assert_eq!(datas(b"data: a\n\ndata: b\n"), ["a"]);
        assert_eq!(datas(b"data: a\n\ndata: b"), ["a"]);
        assert_eq!(datas(b"data: a\n\ndata: b\r"), ["a"]);
    }

    #[test]
    fn event_too_large_is_an_error_that_sticks() {
        let limit = 16;
        let too_large = Err(DecodeError::EventTooLarge { limit });
        // A 16-byte line is allowed; the 17-byte one is not.
        let (events, result) =
            decode_every_split(b"data: 0123456789\n\ndata: 01234567890\n", limit);
        assert_eq!((events, result), (vec![message("0123456789")], too_large));
        // An unfinished line is bounded as well.
        let (_, result) = decode_every_split(b"data: a\ndata: 0123456789", limit);
        assert_eq!(result, too_large);
        let mut decoder = Decoder::new(limit);
        assert_eq!(decoder.feed(&[b'x'; 17], |_| {}), too_large);
        assert_eq!(
            decoder.feed(b"\n\ndata: ok\n\n", |_| panic!("broken stream")),
            too_large
        );
    }

    #[test]
    fn comments_do_not_count_toward_the_size_bound() {
        let mut input = vec![b':'; 100];
        input.extend_from_slice(b"\ndata: ok\n\n");
        let (events, result) = decode_every_split(&input, 16);
        assert_eq!((events, result), (vec![message("ok")], Ok(())));
    }

    /// The WHATWG algorithm written the plain way, on a whole stream held in memory.
    fn reference(input: &[u8]) -> Vec<Event> {
        let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
        let text = String::from_utf8_lossy(input)
            .replace("\r\n", "\n")
            .replace('\r', "\n");
        let mut lines: Vec<&str> = text.split('\n').collect();
        lines.pop(); // the unterminated rest
        let (mut events, mut data, mut kind, mut id) = (vec![], String::new(), String::new(), "");
        for line in lines {
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match name {
                "" if line.is_empty() => {
                    if let Some(d) = data.strip_suffix('\n') {
                        let kind = if kind.is_empty() { "message" } else { &kind };
                        events.push(event(kind, d, id));
                    }
                    (data, kind) = (String::new(), String::new());
                }
                "event" => kind = value.into(),
                "data" => data = data + value + "\n",
                "id" if !value.contains('\0') => id = value,
                _ => {}
            }
        }
        events
    }

    #[test]
    fn random_streams_decode_as_the_plain_algorithm_however_split() {
        let mut rng = Rng::new(1);
        let mut dispatched = 0;
        for _ in 0..300 {
            let input = rng.stream(8);
            let (events, result) = decode_every_split(&input, LIMIT);
            assert_eq!(result, Ok(()));
            dispatched += events.len();
            let without_retry: Vec<Event> = events
                .into_iter()
                .map(|e| Event { retry: None, ..e })
                .collect();
            assert_eq!(without_retry, reference(&input), "input {input:?}");
            let (_, _bounded) = decode_every_split(&input, 24);
        }
        assert!(
            dispatched > 50,
            "the streams exercise dispatch: {dispatched}"
        );
    }
}
