//! UTF-8 validation of a text message that arrives in pieces (frames, reads): a multi-byte
//! sequence may be split anywhere, so up to three bytes of an unfinished sequence are carried
//! from one piece to the next (RFC 6455 section 8.1: a text message must be valid UTF-8 as a
//! whole; each fragment need not be).

/// The payload is not UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidUtf8;

/// Validates the pieces of one text message in order.
#[derive(Debug, Default, Clone)]
pub struct Utf8Validator {
    /// The start of a sequence the last piece ended inside.
    pending: [u8; 4],
    pending_len: usize,
}

impl Utf8Validator {
    /// Checks the next piece of the message.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let width = sequence_width(self.pending[0]);
            let take = (width - self.pending_len).min(bytes.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&bytes[..take]);
            self.pending_len += take;
            bytes = &bytes[take..];
            match std::str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                // Still unfinished: this piece was shorter than the rest of the sequence.
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &bytes[e.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// The message ended: no sequence may be left unfinished.
    pub fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let unfinished = self.pending_len > 0;
        self.pending_len = 0;
        if unfinished {
            Err(InvalidUtf8)
        } else {
            Ok(())
        }
    }
}

/// The length of the sequence a lead byte starts (only called on a lead byte that
/// `from_utf8` accepted as the start of an unfinished sequence: 2, 3 or 4).
fn sequence_width(lead: u8) -> usize {
    match lead {
        0xf0.. => 4,
        0xe0.. => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_split(bytes: &[u8]) -> Result<(), InvalidUtf8> {
        let mut v = Utf8Validator::default();
        v.feed(bytes)?;
        v.finish()
    }

    #[test]
    fn every_split_of_valid_text_is_valid() {
        let text = "a€𝄞ü z\u{7ff}\u{800}\u{ffff}\u{10000}".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                let mut v = Utf8Validator::default();
                v.feed(&text[..i]).unwrap();
                v.feed(&text[i..j]).unwrap();
                v.feed(&text[j..]).unwrap();
                assert_eq!(v.finish(), Ok(()), "split at {i} and {j}");
            }
        }
    }

    #[test]
    fn every_split_of_invalid_text_is_invalid() {
        let cases: [&[u8]; 7] = [
            b"ok \xff bad",
            b"\xc0\xaf",         // overlong
            b"\xed\xa0\x80",     // surrogate
            b"\xf4\x90\x80\x80", // past U+10FFFF
            b"\xe2\x82",         // unfinished at the end
            b"\xe2\x82z",        // interrupted
            b"\x80 lone continuation",
        ];
        for bytes in cases {
            assert_eq!(check_split(bytes), Err(InvalidUtf8), "{bytes:?} whole");
            for i in 0..=bytes.len() {
                let mut v = Utf8Validator::default();
                let result = v
                    .feed(&bytes[..i])
                    .and_then(|()| v.feed(&bytes[i..]))
                    .and_then(|()| v.finish());
                assert_eq!(result, Err(InvalidUtf8), "{bytes:?} split at {i}");
            }
        }
    }

    #[test]
    fn finish_resets_for_the_next_message() {
        let mut v = Utf8Validator::default();
        v.feed(b"\xe2").unwrap();
        assert_eq!(v.finish(), Err(InvalidUtf8));
        v.feed(b"ok").unwrap();
        assert_eq!(v.finish(), Ok(()));
    }
}
