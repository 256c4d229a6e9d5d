//! Finds line ends in a byte slice, the one search every part of the codec repeats.
//!
//! WHATWG "server-sent events": a line ends with CRLF, LF or a lone CR, so the codec only ever
//! looks for the next CR or LF. This module must never allocate, never look past the slice and
//! never use `unsafe`: it reads eight bytes at a time from safe slices ("SWAR", SIMD within a
//! register) so long `data:` lines are skipped quickly.

/// Eight copies of one byte value spread over a word.
const fn splat(byte: u8) -> u64 {
    u64::from_ne_bytes([byte; 8])
}

const LOW_BITS: u64 = splat(0x01);
const HIGH_BITS: u64 = splat(0x80);
const CR_WORD: u64 = splat(b'\r');
const LF_WORD: u64 = splat(b'\n');

/// Sets the high bit of each byte of `word` that is zero. A borrow may also mark a byte above a
/// zero byte, never one below it, so the lowest marked byte is always a real zero.
const fn zero_bytes(word: u64) -> u64 {
    word.wrapping_sub(LOW_BITS) & !word & HIGH_BITS
}

/// Reads eight bytes as a little-endian word, so the lowest bit stands for the first byte.
fn load_le(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// Index of the first CR or LF in `haystack`, if any.
pub(crate) fn find_line_end(haystack: &[u8]) -> Option<usize> {
    let words = haystack.chunks_exact(8);
    let tail = words.remainder();
    for (index, bytes) in words.enumerate() {
        let word = load_le(bytes);
        let hits = zero_bytes(word ^ CR_WORD) | zero_bytes(word ^ LF_WORD);
        if hits != 0 {
            return Some(index * 8 + (hits.trailing_zeros() / 8) as usize);
        }
    }
    let start = haystack.len() - tail.len();
    tail.iter()
        .position(|&b| is_line_end(b))
        .map(|offset| start + offset)
}

/// WHATWG: CR and LF are the only line-ending bytes of an event stream.
pub(crate) fn is_line_end(byte: u8) -> bool {
    byte == b'\r' || byte == b'\n'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(haystack: &[u8]) -> Option<usize> {
        haystack.iter().position(|&b| is_line_end(b))
    }

    #[test]
    fn finds_the_first_cr_or_lf_at_every_position_and_length() {
        for len in 0..40 {
            for pos in 0..len {
                for end in [b'\r', b'\n'] {
                    let mut hay = vec![b'x'; len];
                    hay[pos] = end;
                    assert_eq!(find_line_end(&hay), Some(pos), "len {len} pos {pos}");
                }
            }
            assert_eq!(find_line_end(&vec![b'a'; len]), None);
        }
    }

    #[test]
    fn agrees_with_a_byte_loop_on_every_byte_value() {
        // Bytes next to CR/LF in value (0x0B, 0x0C, 0x0E, 0x8A, 0x8D, 0xFF) must not match,
        // also right after a matching byte where a borrow could spill over.
        let mut hay: Vec<u8> = (0..=255u8).collect();
        hay.extend((0..=255u8).rev());
        for start in 0..hay.len() {
            assert_eq!(find_line_end(&hay[start..]), naive(&hay[start..]));
        }
        let no_ends: Vec<u8> = (0..=255u8).filter(|&b| !is_line_end(b)).collect();
        assert_eq!(find_line_end(&no_ends), None);
    }
}
