//! Close frames (RFC 6455 §5.5.1, §7.4): reading the peer's status and reason, writing the
//! filter's own.

use std::fmt;
use std::str;

use super::header::encode_header;
use super::mask::apply_mask;
use super::{Opcode, Violation};

/// The longest reason that fits a close frame: 125 payload bytes minus the 2-byte code.
pub const MAX_REASON_LEN: usize = 123;

/// A close frame's body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClosePayload<'a> {
    pub code: u16,
    pub reason: &'a str,
}

/// Why the filter cannot send a close frame as asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseError {
    /// A code that may not be sent on the wire (1004-1006, 1015, unassigned or out of range).
    UnsendableCode(u16),
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseError::UnsendableCode(code) => write!(f, "close code {code} may not be sent"),
        }
    }
}

impl std::error::Error for CloseError {}

/// Whether `code` may appear in a close frame: the codes §7.4.1 defines for use on the wire, the
/// IANA-registered 1012-1014, and the ranges for libraries (3000-3999) and applications
/// (4000-4999).
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// Reads an (unmasked) close payload. `Ok(None)`: an empty body, i.e. no status code (1005).
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<ClosePayload<'_>>, Violation> {
    let (code, reason) = match payload {
        [] => return Ok(None),
        // §5.5.1: if there is a body, its first two bytes MUST be a status code.
        [_] => return Err(Violation::CloseBodyTooShort),
        [high, low, reason @ ..] => (u16::from_be_bytes([*high, *low]), reason),
    };
    // §7.4.1/§7.4.2: 1004-1006, 1015, unassigned 1016-2999 and codes outside 1000-4999 MUST NOT
    // be sent, so receiving one fails the connection.
    if !is_valid_close_code(code) {
        return Err(Violation::InvalidCloseCode { code });
    }
    // §5.5.1: the reason is UTF-8 (§8.1: invalid UTF-8 fails the connection).
    let reason = str::from_utf8(reason).map_err(|_| Violation::InvalidCloseReason)?;
    Ok(Some(ClosePayload { code, reason }))
}

/// A complete close frame with `code` and `reason`, masked with `mask_key` when it goes toward
/// the server (see [`super::Direction::frame_mask`]). A reason over [`MAX_REASON_LEN`] bytes is
/// cut at the last character boundary that fits, because a control frame carries at most 125.
pub fn encode_close(
    code: u16,
    reason: &str,
    mask_key: Option<[u8; 4]>,
) -> Result<Vec<u8>, CloseError> {
    // §7.4.1: 1005, 1006 and 1015 MUST NOT be set as a status code by an endpoint.
    if !is_valid_close_code(code) {
        return Err(CloseError::UnsendableCode(code));
    }
    let reason = truncate_at_char_boundary(reason, MAX_REASON_LEN);
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    let header = encode_header(true, 0, Opcode::Close, mask_key, payload.len() as u64);
    if let Some(key) = mask_key {
        apply_mask(&mut payload, key, 0);
    }
    let mut frame = Vec::with_capacity(header.as_bytes().len() + payload.len());
    frame.extend_from_slice(header.as_bytes());
    frame.extend_from_slice(&payload);
    Ok(frame)
}

fn truncate_at_char_boundary(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or("")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ws::header::parse_header;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn reads_code_and_reason() {
        // code=1000 reason="bye"
        let parsed = parse_close_payload(&[0x03, 0xE8, b'b', b'y', b'e'])
            .unwrap()
            .unwrap();
        assert_eq!(
            parsed,
            ClosePayload {
                code: 1000,
                reason: "bye"
            }
        );
        // code=4001, no reason
        assert_eq!(
            parse_close_payload(&[0x0F, 0xA1]).unwrap().unwrap().code,
            4001
        );
        // empty body: no status
        assert_eq!(parse_close_payload(&[]), Ok(None));
    }

    #[test]
    fn one_byte_body_is_a_protocol_error() {
        // §5.5.1: a body starts with a 2-byte code
        assert_eq!(
            parse_close_payload(&[0x03]),
            Err(Violation::CloseBodyTooShort)
        );
        assert_eq!(Violation::CloseBodyTooShort.close_code(), 1002);
    }

    #[test]
    fn close_codes_per_section_7_4() {
        let invalid = [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ];
        for code in invalid {
            let body = code.to_be_bytes();
            assert_eq!(
                parse_close_payload(&body),
                Err(Violation::InvalidCloseCode { code }),
                "{code}"
            );
            assert_eq!(
                encode_close(code, "", None),
                Err(CloseError::UnsendableCode(code))
            );
        }
        let valid = [
            1000u16, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ];
        for code in valid {
            assert_eq!(
                parse_close_payload(&code.to_be_bytes())
                    .unwrap()
                    .unwrap()
                    .code,
                code
            );
        }
        for code in 0..=u16::MAX {
            assert_eq!(
                is_valid_close_code(code),
                valid.contains(&code) || matches!(code, 3000..=4999)
            );
        }
    }

    #[test]
    fn invalid_utf8_reason_is_1007() {
        // code=1000 reason=ce ba e1 bd b9 cf 83 ce bc ce b5 ed a0 80 (surrogate)
        let body = [
            0x03, 0xE8, 0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed,
            0xa0, 0x80,
        ];
        let violation = parse_close_payload(&body).unwrap_err();
        assert_eq!(violation, Violation::InvalidCloseReason);
        assert_eq!(violation.close_code(), 1007);
    }

    #[test]
    fn server_to_client_close_is_unmasked() {
        let frame = encode_close(1001, "going away", None).unwrap();
        // FIN=1 op=close mask=0 len=12 code=1001 "going away"
        let mut expected = vec![0x88, 0x0C, 0x03, 0xE9];
        expected.extend_from_slice(b"going away");
        assert_eq!(frame, expected);
    }

    #[test]
    fn client_to_server_close_is_masked_with_the_given_key() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let frame = encode_close(1008, "policy", Some(key)).unwrap();
        let header = parse_header(&frame, u64::MAX).unwrap().unwrap();
        assert_eq!(
            (header.opcode, header.mask_key, header.payload_len),
            (Opcode::Close, Some(key), 8)
        );
        let mut payload = frame[header.header_len..].to_vec();
        header.unmask(&mut payload, 0);
        assert_eq!(
            parse_close_payload(&payload).unwrap().unwrap(),
            ClosePayload {
                code: 1008,
                reason: "policy"
            }
        );
    }

    #[test]
    fn long_reasons_are_cut_at_a_character_boundary() {
        // 62 two-byte characters = 124 bytes: one too many; the cut must not split "é".
        let reason = "é".repeat(62);
        let frame = encode_close(1000, &reason, None).unwrap();
        let header = parse_header(&frame, u64::MAX).unwrap().unwrap();
        assert_eq!(header.payload_len, 2 + 122);
        let parsed = parse_close_payload(&frame[header.header_len..])
            .unwrap()
            .unwrap();
        assert_eq!(parsed.reason, "é".repeat(61));
        let ascii = "x".repeat(500);
        assert_eq!(encode_close(1000, &ascii, None).unwrap().len(), 2 + 125);
    }
}
