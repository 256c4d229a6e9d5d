//! Watches a passthrough event stream for event boundaries, without changing a byte of it.
//!
//! SSE passthrough (SPEC section 3, "Event boundaries" in section 10) forwards the upstream's
//! bytes as they come; the proxy may add a heartbeat comment only where it cannot split an event:
//! at the stream's start or right after a blank line. [`BoundaryTracker`] tells it where that is;
//! [`BomFilter`] drops the upstream's leading byte order mark once the proxy has written something
//! before it. Neither ever buffers, rewrites or allocates: they look at borrowed chunks only, and
//! they must never panic on any input.

use super::scan::{find_line_end, is_line_end};

/// WHATWG: the stream is decoded with "UTF-8 decode", which drops one leading byte order mark.
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// Where the tracker stands within the line structure of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// At the start of a line. `boundary`: the previous line was blank and ended with LF, or
    /// nothing but a byte order mark has been seen yet.
    LineStart { boundary: bool },
    /// Inside a line that has at least one byte.
    InLine,
    /// Right after a CR that ended a line. WHATWG: CRLF is one line end, so an LF here still
    /// belongs to it, and nothing may be written in between. `blank`: that line was empty.
    AfterCr { blank: bool },
}

impl Default for Position {
    fn default() -> Self {
        Position::LineStart { boundary: true }
    }
}

/// Follows where events end in a stream that passes through unchanged.
///
/// Feed it the bytes as the upstream sent them, leading byte order mark included.
#[derive(Debug, Clone, Default)]
pub struct BoundaryTracker {
    bom: BomFilter,
    position: Position,
    /// The current block has a line that is not a comment, so its blank line ends an event.
    block_has_field: bool,
}

impl BoundaryTracker {
    /// A tracker at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Watches one chunk; returns how many events it completed (a blank line that ends a block
    /// containing at least one non-comment line).
    pub fn feed(&mut self, chunk: &[u8]) -> usize {
        let out = self.bom.filter(chunk);
        out.parts().iter().map(|part| self.scan(part)).sum()
    }

    /// True at the stream start (before any byte, or after only a BOM has been seen) or right
    /// after a blank line that ended with LF. False in the middle of a line, after a non-blank
    /// line, and right after ANY CR (an LF may follow it; so a stream whose line ends are lone CRs
    /// never reports a boundary after its start).
    pub fn at_boundary(&self) -> bool {
        // Part of a BOM held back: a heartbeat there would cut the BOM (or the line it starts).
        self.position == (Position::LineStart { boundary: true }) && !self.bom.is_holding()
    }

    /// Advances over `bytes`; returns the number of events completed.
    fn scan(&mut self, bytes: &[u8]) -> usize {
        let mut events = 0;
        let mut rest = bytes;
        while let Some((&byte, after)) = rest.split_first() {
            rest = match self.position {
                Position::InLine => self.skip_line(rest),
                Position::AfterCr { blank } => {
                    self.leave_cr(byte, blank);
                    if byte == b'\n' {
                        after
                    } else {
                        rest
                    }
                }
                Position::LineStart { .. } => {
                    events += self.start_line(byte);
                    after
                }
            };
        }
        events
    }

    /// Skips the rest of a non-empty line: its content never matters, only where it ends.
    fn skip_line<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        match find_line_end(bytes) {
            None => &[],
            Some(index) => {
                self.end_line(bytes[index], false);
                &bytes[index + 1..]
            }
        }
    }

    /// The byte after a CR that ended a line: an LF completes the CRLF, anything else begins a
    /// line (which the caller then reads from this same byte).
    fn leave_cr(&mut self, byte: u8, blank: bool) {
        self.position = Position::LineStart {
            boundary: blank && byte == b'\n',
        };
    }

    /// The first byte of a line. Returns 1 when it ends a blank line that completes an event.
    fn start_line(&mut self, byte: u8) -> usize {
        if is_line_end(byte) {
            // WHATWG: an empty line dispatches the event built so far.
            let completed = std::mem::take(&mut self.block_has_field);
            self.end_line(byte, true);
            return usize::from(completed);
        }
        // WHATWG: a line that starts with ':' is a comment and adds nothing to the event.
        if byte != b':' {
            self.block_has_field = true;
        }
        self.position = Position::InLine;
        0
    }

    fn end_line(&mut self, line_end: u8, blank: bool) {
        self.position = if line_end == b'\r' {
            Position::AfterCr { blank }
        } else {
            Position::LineStart { boundary: blank }
        };
    }
}

/// Drops one leading UTF-8 byte order mark from a stream split anywhere.
///
/// It holds back at most the two bytes of a BOM prefix; once the first three bytes are known it
/// passes every chunk through as the same slice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BomFilter {
    state: BomState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BomState {
    /// This many leading bytes (0 to 2) matched the BOM so far and are held back.
    Matching(usize),
    /// The BOM was dropped, or the stream does not start with one.
    Done,
}

impl Default for BomState {
    fn default() -> Self {
        BomState::Matching(0)
    }
}

/// What [`BomFilter::filter`] lets through for one chunk: `held` (bytes kept back from earlier
/// chunks, now known not to be a BOM) followed by `rest` (part of the chunk given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BomOutput<'a> {
    /// Earlier bytes that began like a BOM but were not one; written before `rest`.
    pub held: &'static [u8],
    /// The chunk, less any BOM bytes it held.
    pub rest: &'a [u8],
}

impl<'a> BomOutput<'a> {
    /// Both parts, in stream order.
    pub fn parts(&self) -> [&'a [u8]; 2] {
        [self.held, self.rest]
    }

    /// Number of bytes let through.
    pub fn len(&self) -> usize {
        self.held.len() + self.rest.len()
    }

    /// True when nothing is let through (yet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl BomFilter {
    /// A filter at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Passes `chunk` on, less the bytes of a leading BOM.
    pub fn filter<'a>(&mut self, chunk: &'a [u8]) -> BomOutput<'a> {
        let BomState::Matching(held) = self.state else {
            return BomOutput {
                held: &[],
                rest: chunk,
            };
        };
        let wanted = &BOM[held..];
        let matched = wanted.iter().zip(chunk).take_while(|(b, c)| b == c).count();
        if matched == wanted.len() {
            self.state = BomState::Done;
            return BomOutput {
                held: &[],
                rest: &chunk[matched..],
            };
        }
        if matched == chunk.len() {
            self.state = BomState::Matching(held + matched);
            return BomOutput {
                held: &[],
                rest: &[],
            };
        }
        // A byte that does not continue the BOM: everything held was ordinary text.
        self.state = BomState::Done;
        BomOutput {
            held: &BOM[..held],
            rest: chunk,
        }
    }

    /// At the end of the stream: the bytes still held back (a BOM prefix the stream ended in).
    pub fn finish(&mut self) -> &'static [u8] {
        let held = match self.state {
            BomState::Matching(held) => &BOM[..held],
            BomState::Done => &[],
        };
        self.state = BomState::Done;
        held
    }

    /// True while some bytes are held back, waiting to see whether they make a BOM.
    pub fn is_holding(&self) -> bool {
        matches!(self.state, BomState::Matching(held) if held > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::decoder::{Decoder, Event};
    use crate::sse::test_support::{splits, Rng};

    /// `at_boundary` after each byte, fed one byte at a time, and the events completed.
    fn byte_by_byte(input: &[u8]) -> (Vec<bool>, usize) {
        let mut tracker = BoundaryTracker::new();
        let mut marks = vec![tracker.at_boundary()];
        let mut events = 0;
        for byte in input {
            events += tracker.feed(std::slice::from_ref(byte));
            marks.push(tracker.at_boundary());
        }
        (marks, events)
    }

    fn boundary_after(input: &[u8]) -> bool {
        let mut tracker = BoundaryTracker::new();
        tracker.feed(input);
        tracker.at_boundary()
    }

    fn events_in(input: &[u8]) -> usize {
        BoundaryTracker::new().feed(input)
    }

    /// Every split gives, after each chunk, what byte-by-byte feeding gives at that offset.
    fn assert_split_safe(input: &[u8]) {
        let (marks, total) = byte_by_byte(input);
        assert_eq!(events_in(input), total, "input {input:?}");
        for chunks in splits(input) {
            let mut tracker = BoundaryTracker::new();
            let (mut offset, mut events) = (0, 0);
            for chunk in chunks {
                events += tracker.feed(chunk);
                offset += chunk.len();
                assert_eq!(
                    tracker.at_boundary(),
                    marks[offset],
                    "input {input:?} at {offset}"
                );
            }
            assert_eq!(events, total, "input {input:?}");
        }
    }

    #[test]
    fn the_stream_start_is_a_boundary_also_after_a_bom() {
        assert!(boundary_after(b""));
        assert!(boundary_after(b"\xEF\xBB\xBF"));
        assert!(!boundary_after(b"\xEF\xBB"));
        assert!(!boundary_after(b"\xEF\xBB\xBF\xEF\xBB\xBF"));
    }

    #[test]
    fn only_a_blank_line_ended_by_lf_is_a_boundary() {
        assert!(!boundary_after(b"data: a"));
        assert!(!boundary_after(b"data: a\n"));
        assert!(boundary_after(b"data: a\n\n"));
        assert!(boundary_after(b"data: a\r\n\r\n"));
        assert!(boundary_after(b"data: a\r\r\n"));
        assert!(boundary_after(b":\n\n"));
        assert!(boundary_after(b"\n"));
        // WHATWG: the LF that may follow a CR belongs to the same line end, and SPEC 10: a
        // heartbeat never goes between them (the upstream's line ends stay as written).
        assert!(!boundary_after(b"data: a\r\r"));
        assert!(!boundary_after(b"data: a\r\n\r"));
        assert!(!boundary_after(b"\r"));
    }

    #[test]
    fn a_blank_line_completes_an_event_when_its_block_has_a_field() {
        assert_eq!(events_in(b"data: a\n\n"), 1);
        assert_eq!(events_in(b"data: a\r\n\r\n"), 1);
        assert_eq!(events_in(b"data: a\r\rdata: b\r\r"), 2);
        assert_eq!(events_in(b"event: x\n\n"), 1);
        assert_eq!(events_in(b": comment\n\n\n\r\n"), 0);
        assert_eq!(events_in(b"data: a\ndata: b\n"), 0);
        assert_eq!(events_in(b"\xEF\xBB\xBF:c\n\n"), 0);
        // A BOM prefix that is no BOM starts a field line.
        assert_eq!(events_in(b"\xEF\xBB:c\n\n"), 1);
    }

    #[test]
    fn every_split_gives_the_same_boundaries_and_counts() {
        for input in [
            &b"data: a\r\n\r\n:c\r\rdata: b\n\n"[..],
            b"\xEF\xBB\xBFdata: x\r\n\r\n",
            b"\xEF\xBB\xBF\xEF\xBB\xBF\n\n",
            b"\xEFdata\r\r\r\n\n",
        ] {
            assert_split_safe(input);
        }
        let mut rng = Rng::new(2);
        for _ in 0..200 {
            assert_split_safe(&rng.stream(8));
        }
    }

    fn decode(input: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        let fed = Decoder::new(1 << 16).feed(input, |e| events.push(e));
        assert_eq!(fed, Ok(()));
        events
    }

    /// What the proxy sends: the BOM dropped, and a heartbeat wherever the tracker allows one.
    fn with_heartbeats_everywhere(input: &[u8]) -> Vec<u8> {
        let (mut tracker, mut bom) = (BoundaryTracker::new(), BomFilter::new());
        let mut out = Vec::new();
        for byte in input.chunks(1) {
            if tracker.at_boundary() {
                out.extend_from_slice(b":\n\n");
            }
            tracker.feed(byte);
            bom.filter(byte)
                .parts()
                .iter()
                .for_each(|p| out.extend_from_slice(p));
        }
        out.extend_from_slice(bom.finish());
        out
    }

    #[test]
    fn heartbeats_at_boundaries_never_change_the_events() {
        let mut rng = Rng::new(3);
        for _ in 0..500 {
            let input = rng.stream(10);
            let sent = with_heartbeats_everywhere(&input);
            assert_eq!(decode(&sent), decode(&input), "input {input:?}");
        }
    }

    #[test]
    fn counts_match_the_decoder_when_every_field_is_data() {
        // When every field is `data`, every completed event dispatches.
        const LINES: &[&[u8]] = &[b"data: x", b"data", b":c", b"", b"", b"data:\xEF"];
        const ENDS: &[&[u8]] = &[b"\n", b"\r", b"\r\n"];
        let mut rng = Rng::new(4);
        for _ in 0..300 {
            let mut input = rng.pick(&[b"", b"\xEF\xBB\xBF"]).to_vec();
            for _ in 0..8 {
                input.extend_from_slice(rng.pick(LINES));
                input.extend_from_slice(rng.pick(ENDS));
            }
            assert_eq!(events_in(&input), decode(&input).len(), "input {input:?}");
        }
    }

    fn bom_filtered(chunks: &[&[u8]]) -> Vec<u8> {
        let mut filter = BomFilter::new();
        let mut out = Vec::new();
        for chunk in chunks {
            let passed = filter.filter(chunk);
            assert!(passed.len() <= chunk.len() + 2);
            passed.parts().iter().for_each(|p| out.extend_from_slice(p));
        }
        out.extend_from_slice(filter.finish());
        out
    }

    #[test]
    fn bom_filter_drops_one_leading_bom_however_split() {
        for (input, expected) in [
            (&b"\xEF\xBB\xBFdata"[..], &b"data"[..]),
            (b"\xEF\xBB\xBF", b""),
            (b"\xEF\xBB\xBF\xEF\xBB\xBF", b"\xEF\xBB\xBF"),
            (b"\xEF\xBB", b"\xEF\xBB"),
            (b"\xEF", b"\xEF"),
            (b"\xEF\xBBx", b"\xEF\xBBx"),
            (b"\xEFx\xBB\xBF", b"\xEFx\xBB\xBF"),
            (b"x\xEF\xBB\xBF", b"x\xEF\xBB\xBF"),
            (b"", b""),
        ] {
            for chunks in splits(input) {
                assert_eq!(bom_filtered(&chunks), expected, "chunks {chunks:?}");
            }
        }
    }

    #[test]
    fn bom_filter_passes_the_same_slice_once_settled() {
        let mut filter = BomFilter::new();
        assert!(filter.filter(b"\xEF").is_empty());
        assert!(filter.is_holding());
        let chunk = b"\xBB\xBFdata: x\n";
        assert_eq!(filter.filter(chunk).rest, b"data: x\n");
        assert!(!filter.is_holding());
        let next = b"more".as_slice();
        let passed = filter.filter(next);
        assert!(passed.held.is_empty() && std::ptr::eq(passed.rest, next));
        assert!(filter.finish().is_empty());
    }
}
