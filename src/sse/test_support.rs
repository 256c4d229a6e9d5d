//! Helpers shared by the codec's tests: random event streams and every way to split them.
//! Test code only; it must never be compiled into the proxy.

/// A small deterministic generator (xorshift64*), so failures replay exactly.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n.max(1)
    }

    pub(crate) fn pick<'a>(&mut self, items: &[&'a [u8]]) -> &'a [u8] {
        items[self.below(items.len())]
    }

    /// A stream of `lines` random lines built from what matters to the parser: field names,
    /// colons, spaces, every kind of line end, comments, NUL, BOM bytes and split UTF-8.
    pub(crate) fn stream(&mut self, lines: usize) -> Vec<u8> {
        const STARTS: &[&[u8]] = &[
            b"",
            b"",
            b"",
            b"data:",
            b"data: ",
            b"data",
            b"event:",
            b"id: ",
            b"retry:",
            b":",
            b"x",
            b"\xEF\xBB\xBF",
        ];
        const VALUES: &[&[u8]] = &[
            b"x",
            b" ",
            b"12",
            b":",
            b"\0",
            "\u{e9}\u{20ac}\u{1F600}".as_bytes(),
            b"\xF0\x9F",
            b"\xEF",
            b"\xEF\xBB\xBF",
        ];
        const ENDS: &[&[u8]] = &[b"\n", b"\n", b"\r", b"\r\n"];
        let mut out = Vec::new();
        for _ in 0..lines {
            out.extend_from_slice(self.pick(STARTS));
            for _ in 0..self.below(3) {
                out.extend_from_slice(self.pick(VALUES));
            }
            out.extend_from_slice(self.pick(ENDS));
        }
        out
    }
}

/// Every way to cut `input` into two chunks, then into three chunks, then into 1-byte chunks.
pub(crate) fn splits(input: &[u8]) -> Vec<Vec<&[u8]>> {
    let len = input.len();
    let mut all = vec![vec![input]];
    for a in 0..=len {
        all.push(vec![&input[..a], &input[a..]]);
    }
    if len <= 96 {
        for a in 0..=len {
            for b in a..=len {
                all.push(vec![&input[..a], &input[a..b], &input[b..]]);
            }
        }
    }
    all.push(input.chunks(1).collect());
    all
}
