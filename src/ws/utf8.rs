//! Incremental UTF-8 validation for text messages that arrive in pieces (fragments, frames
//! split across reads, inflated output produced step by step).
//!
//! RFC 6455 section 8.1 asks an endpoint to fail the connection as soon as text turns out to
//! be invalid, so the validator rejects a sequence at the first byte that makes it impossible
//! (bad lead byte, bad continuation, overlong form, surrogate, or a value above U+10FFFF),
//! even when that byte is the last one received so far. A sequence that is merely cut short
//! is carried over to the next piece and only reported by [`Utf8Validator::finish`].

use std::fmt;

/// Why a text payload is not UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Utf8Error {
    /// A byte was seen that no valid UTF-8 text could contain at that position.
    Invalid,
    /// The text ended in the middle of a multi-byte sequence.
    IncompleteAtEnd,
}

impl fmt::Display for Utf8Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Utf8Error::Invalid => f.write_str("invalid UTF-8 in text"),
            Utf8Error::IncompleteAtEnd => f.write_str("text ends inside a UTF-8 sequence"),
        }
    }
}

impl std::error::Error for Utf8Error {}

/// Validates UTF-8 text fed in arbitrary pieces.
///
/// Bulk validation is delegated to [`std::str::from_utf8`] (vectorised, and exact about the
/// difference between "invalid" and "cut short"); only a sequence straddling two pieces
/// (at most 3 carried bytes) is handled here.
#[derive(Clone, Debug, Default)]
pub struct Utf8Validator {
    /// Bytes of a sequence that the previous piece ended in the middle of.
    pending: [u8; 4],
    pending_len: usize,
}

impl Utf8Validator {
    /// A validator at the start of a text.
    pub const fn new() -> Self {
        Utf8Validator {
            pending: [0; 4],
            pending_len: 0,
        }
    }

    /// Validates the next piece of text. Returns [`Utf8Error::Invalid`] as soon as the text
    /// seen so far cannot be the prefix of valid UTF-8. After an error the validator must be
    /// [`reset`](Self::reset) before reuse.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Result<(), Utf8Error> {
        if self.pending_len > 0 {
            // Complete the carried sequence one byte at a time; it needs at most 3 more.
            loop {
                let Some((&byte, rest)) = bytes.split_first() else {
                    return Ok(());
                };
                let Some(slot) = self.pending.get_mut(self.pending_len) else {
                    return Err(Utf8Error::Invalid);
                };
                *slot = byte;
                self.pending_len += 1;
                bytes = rest;
                match std::str::from_utf8(&self.pending[..self.pending_len]) {
                    Ok(_) => {
                        self.pending_len = 0;
                        break;
                    }
                    Err(e) if e.error_len().is_some() => return Err(Utf8Error::Invalid),
                    Err(_) => {}
                }
            }
        }
        match std::str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(Utf8Error::Invalid),
            Err(e) => {
                // Cut short at the end: a valid prefix of at most 3 bytes.
                let tail = bytes.get(e.valid_up_to()..).unwrap_or_default();
                let Some(dst) = self.pending.get_mut(..tail.len()) else {
                    return Err(Utf8Error::Invalid);
                };
                dst.copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(())
            }
        }
    }

    /// Ends the text: fails with [`Utf8Error::IncompleteAtEnd`] if it stopped inside a
    /// sequence. Always leaves the validator reset for the next text.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let complete = self.pending_len == 0;
        self.reset();
        if complete {
            Ok(())
        } else {
            Err(Utf8Error::IncompleteAtEnd)
        }
    }

    /// Forgets any carried partial sequence.
    pub fn reset(&mut self) {
        self.pending_len = 0;
    }

    /// Whether the text so far ends on a character boundary.
    pub fn is_complete(&self) -> bool {
        self.pending_len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_whole(bytes: &[u8]) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        v.feed(bytes)?;
        v.finish()
    }

    fn validate_bytewise(bytes: &[u8]) -> Result<(), Utf8Error> {
        let mut v = Utf8Validator::new();
        for b in bytes {
            v.feed(std::slice::from_ref(b))?;
        }
        v.finish()
    }

    #[test]
    fn valid_text_in_any_split() {
        let text = "κόσμε Hello-µ@ßöäüàá-UTF-8!! 𝄞 \u{10FFFF} \u{FFFF} \u{E000}".as_bytes();
        assert_eq!(validate_whole(text), Ok(()));
        assert_eq!(validate_bytewise(text), Ok(()));
        for a in 0..=text.len() {
            for b in a..=text.len() {
                let mut v = Utf8Validator::new();
                v.feed(&text[..a]).unwrap();
                v.feed(&text[a..b]).unwrap();
                v.feed(&text[b..]).unwrap();
                assert!(v.is_complete());
                assert_eq!(v.finish(), Ok(()), "split {a}/{b}");
            }
        }
    }

    #[test]
    fn empty_text_is_valid() {
        assert_eq!(validate_whole(b""), Ok(()));
    }

    #[test]
    fn invalid_sequences_are_rejected() {
        let cases: &[&[u8]] = &[
            b"\x80",                                                           // lone continuation
            b"\xC0\xAF",                                                       // overlong '/'
            b"\xC1\xBF",                                                       // overlong
            b"\xE0\x80\xAF",                                                   // overlong 3-byte
            b"\xF0\x80\x80\xAF",                                               // overlong 4-byte
            b"\xED\xA0\x80",                                                   // surrogate U+D800
            b"\xED\xBF\xBF",                                                   // surrogate U+DFFF
            b"\xF4\x90\x80\x80",                                               // U+110000
            b"\xF5\x80\x80\x80", // lead byte beyond range
            b"\xFE",             // never valid
            b"\xFF",             // never valid
            b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80edited", // Autobahn 6.3.1 shape
            b"\xE2\x82\x41",                                                   // bad third byte
        ];
        for case in cases {
            assert_eq!(validate_whole(case), Err(Utf8Error::Invalid), "{case:x?}");
            assert_eq!(
                validate_bytewise(case),
                Err(Utf8Error::Invalid),
                "{case:x?}"
            );
        }
    }

    #[test]
    fn fails_fast_on_an_impossible_prefix() {
        // Each of these is cut before the sequence would be complete, but the bytes seen so
        // far already cannot start valid UTF-8; the validator must not wait for more.
        let prefixes: &[&[u8]] = &[
            b"ok\xF4\x90", // would be > U+10FFFF
            b"ok\xE0\x80", // overlong
            b"ok\xED\xA0", // surrogate
            b"ok\xC0",     // overlong lead byte
            b"ok\xF8",     // 5-byte lead
            b"ok\xF0\x80", // overlong 4-byte
        ];
        for prefix in prefixes {
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(prefix), Err(Utf8Error::Invalid), "{prefix:x?}");
            // Also when the impossible byte arrives in a later piece.
            let mut v = Utf8Validator::new();
            let (head, last) = prefix.split_at(prefix.len() - 1);
            assert_eq!(v.feed(head), Ok(()));
            assert_eq!(v.feed(last), Err(Utf8Error::Invalid), "{prefix:x?}");
        }
    }

    #[test]
    fn incomplete_at_end_is_reported_separately() {
        for tail in [&b"\xC2"[..], b"\xE2\x82", b"\xF0\x9D\x84", b"\xF4\x8F\xBF"] {
            let mut text = b"abc".to_vec();
            text.extend_from_slice(tail);
            let mut v = Utf8Validator::new();
            assert_eq!(v.feed(&text), Ok(()));
            assert!(!v.is_complete());
            assert_eq!(v.finish(), Err(Utf8Error::IncompleteAtEnd));
            // finish() resets, so the validator is reusable.
            assert_eq!(v.feed(b"fine"), Ok(()));
            assert_eq!(v.finish(), Ok(()));
        }
    }

    #[test]
    fn sequence_split_across_three_pieces() {
        let mut v = Utf8Validator::new();
        assert_eq!(v.feed(b"a\xF0"), Ok(()));
        assert_eq!(v.feed(b"\x9D"), Ok(()));
        assert_eq!(v.feed(b""), Ok(()));
        assert_eq!(v.feed(b"\x84\x9Ez"), Ok(()));
        assert_eq!(v.finish(), Ok(()));
    }

    #[test]
    fn exhaustive_two_byte_prefixes_agree_with_std() {
        // For every 1- and 2-byte input, bytewise feeding must agree with std's verdict.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let input = [a, b];
                let expected = match std::str::from_utf8(&input) {
                    Ok(_) => Ok(()),
                    Err(e) if e.error_len().is_some() => Err(Utf8Error::Invalid),
                    Err(_) => Err(Utf8Error::IncompleteAtEnd),
                };
                assert_eq!(validate_bytewise(&input), expected, "{input:x?}");
            }
        }
    }
}
