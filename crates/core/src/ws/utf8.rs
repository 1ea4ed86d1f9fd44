//! Incremental UTF-8 validation for text messages that arrive in pieces (fragments, chunks). A
//! code point may be split anywhere; at most three bytes of one are carried between pieces.
//! Invalid input is reported as soon as the bytes seen cannot start valid UTF-8 (fail fast, §8.1).

use std::str;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Utf8Validator {
    carried: [u8; 4],
    carried_len: usize,
}

/// Invalid UTF-8 was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

impl Utf8Validator {
    /// Checks the next piece of the text.
    pub(crate) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), InvalidUtf8> {
        if self.carried_len > 0 {
            let width = sequence_width(self.carried[0]);
            while self.carried_len < width {
                let Some((&next, rest)) = bytes.split_first() else {
                    break;
                };
                self.carried[self.carried_len] = next;
                self.carried_len += 1;
                bytes = rest;
            }
            let carried = self.carried.get(..self.carried_len).ok_or(InvalidUtf8)?;
            match str::from_utf8(carried) {
                Ok(_) => self.carried_len = 0,
                // Still an incomplete but valid prefix: wait for more.
                Err(error) if error.error_len().is_none() => return Ok(()),
                Err(_) => return Err(InvalidUtf8),
            }
        }
        match str::from_utf8(bytes) {
            Ok(_) => Ok(()),
            Err(error) if error.error_len().is_none() => {
                let tail = bytes.get(error.valid_up_to()..).ok_or(InvalidUtf8)?;
                let slot = self.carried.get_mut(..tail.len()).ok_or(InvalidUtf8)?;
                slot.copy_from_slice(tail);
                self.carried_len = tail.len();
                Ok(())
            }
            Err(_) => Err(InvalidUtf8),
        }
    }

    /// The text ended: a code point cut off at the end is invalid.
    pub(crate) fn finish(&self) -> Result<(), InvalidUtf8> {
        if self.carried_len == 0 {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

/// Length of the sequence a (valid) lead byte starts; only lead bytes are ever carried.
fn sequence_width(lead: u8) -> usize {
    match lead {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn validate_split(pieces: &[&[u8]]) -> Result<(), InvalidUtf8> {
        let mut validator = Utf8Validator::default();
        for piece in pieces {
            validator.feed(piece)?;
        }
        validator.finish()
    }

    #[test]
    fn code_points_split_at_every_position_are_valid() {
        let text = "aé€𝄞z κόσμε".as_bytes();
        for first in 0..=text.len() {
            for second in first..=text.len() {
                let pieces = [&text[..first], &text[first..second], &text[second..]];
                assert_eq!(validate_split(&pieces), Ok(()), "{first} {second}");
            }
        }
        // Byte by byte.
        let singles: Vec<&[u8]> = text.chunks(1).collect();
        assert_eq!(validate_split(&singles), Ok(()));
    }

    #[test]
    fn invalid_sequences_are_rejected_across_splits() {
        let cases: [&[u8]; 8] = [
            b"\xff",
            b"\xc0\xaf",                 // overlong '/'
            b"\xed\xa0\x80",             // UTF-16 surrogate
            b"\xf4\x90\x80\x80",         // above U+10FFFF
            b"\xe2\x82",                 // truncated at the end
            b"\x80",                     // lone continuation byte
            b"\xce\xba\xe1\xbd\xb9\xcf", // truncated "κόσ"
            b"a\xf0\x9d\x84",            // truncated 4-byte sequence
        ];
        for case in cases {
            for split in 0..=case.len() {
                assert_eq!(
                    validate_split(&[&case[..split], &case[split..]]),
                    Err(InvalidUtf8),
                    "{case:x?} split at {split}"
                );
            }
        }
    }

    #[test]
    fn fails_fast_before_the_message_ends() {
        let mut validator = Utf8Validator::default();
        assert_eq!(
            validator.feed(b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
            Ok(())
        );
        // "\xed\xa0" can never start a valid sequence (surrogate): reported without waiting.
        assert_eq!(validator.feed(b"\xed"), Ok(()));
        assert_eq!(validator.feed(b"\xa0"), Err(InvalidUtf8));
    }
}
