//! The frame prefix (RFC 6455 §5.2): FIN, RSV1-3, opcode, MASK, a 7/16/64-bit payload length and
//! an optional 4-byte masking key; 2 to 14 bytes. Parsing borrows the bytes and never allocates;
//! the payload length is checked against the caller's maximum before anyone sizes a buffer by it.
//!
//! Only context-free rules are enforced here. Rules that depend on the direction (masking), the
//! negotiated extensions (RSV) or earlier frames (fragmentation) live in [`super::parser`].

use super::mask::apply_mask;
use super::{Opcode, Violation};

/// The longest possible header: 2 + 8 (64-bit length) + 4 (masking key).
pub const MAX_HEADER_LEN: usize = 14;
/// RSV1 within [`FrameHeader::rsv`]; permessage-deflate's "compressed" bit (RFC 7692 §6).
pub const RSV1: u8 = 0b100;
/// RSV2 within [`FrameHeader::rsv`].
pub const RSV2: u8 = 0b010;
/// RSV3 within [`FrameHeader::rsv`].
pub const RSV3: u8 = 0b001;
/// The largest payload of a control frame (§5.5).
pub const MAX_CONTROL_PAYLOAD: u64 = 125;

/// One decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Final fragment of a message.
    pub fin: bool,
    /// RSV1, RSV2, RSV3 as the low three bits (RSV1 = [`RSV1`]).
    pub rsv: u8,
    pub opcode: Opcode,
    /// The MASK bit; `mask_key` is `Some` exactly when it is set.
    pub masked: bool,
    pub mask_key: Option<[u8; 4]>,
    /// Payload bytes following the header, as declared on the wire.
    pub payload_len: u64,
    /// Bytes the header occupies on the wire (2 to 14), including a non-minimal length form.
    pub header_len: usize,
}

/// An encoded header held inline (no allocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodedHeader {
    bytes: [u8; MAX_HEADER_LEN],
    len: usize,
}

impl EncodedHeader {
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or(&self.bytes)
    }
}

impl FrameHeader {
    /// A header with the shortest length form, as a sender should write it.
    pub fn new(
        fin: bool,
        rsv: u8,
        opcode: Opcode,
        mask_key: Option<[u8; 4]>,
        payload_len: u64,
    ) -> FrameHeader {
        let length_form = match payload_len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        FrameHeader {
            fin,
            rsv: rsv & 0b111,
            opcode,
            masked: mask_key.is_some(),
            mask_key,
            payload_len,
            header_len: length_form + if mask_key.is_some() { 4 } else { 0 },
        }
    }

    /// The wire bytes. For a parsed header they are identical to the bytes it was parsed from,
    /// including a non-minimal length form (kept through `header_len`), so a caller may drop the
    /// start of a header it forwarded late and write it again from here.
    pub fn encode(&self) -> EncodedHeader {
        let mask_len = if self.mask_key.is_some() { 4 } else { 0 };
        let length_form = match self.header_len.saturating_sub(mask_len) {
            2 if self.payload_len <= 125 => 2,
            4 if self.payload_len <= 0xFFFF => 4,
            10 => 10,
            _ => {
                FrameHeader::new(self.fin, self.rsv, self.opcode, None, self.payload_len).header_len
            }
        };
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[0] = u8::from(self.fin) << 7 | (self.rsv & 0b111) << 4 | self.opcode.bits();
        let mask_bit = if self.mask_key.is_some() { 0x80 } else { 0 };
        let mut len = 2;
        match length_form {
            2 => bytes[1] = mask_bit | (self.payload_len & 0x7F) as u8,
            4 => {
                bytes[1] = mask_bit | 126;
                bytes[2..4].copy_from_slice(&(self.payload_len as u16).to_be_bytes());
                len = 4;
            }
            _ => {
                bytes[1] = mask_bit | 127;
                bytes[2..10].copy_from_slice(&self.payload_len.to_be_bytes());
                len = 10;
            }
        }
        if let Some(key) = self.mask_key {
            bytes[len..len + 4].copy_from_slice(&key);
            len += 4;
        }
        EncodedHeader { bytes, len }
    }

    /// Unmasks (or masks: XOR is its own inverse) `data`, the payload bytes starting
    /// `payload_offset` bytes into this frame's payload. A no-op for unmasked frames.
    pub fn unmask(&self, data: &mut [u8], payload_offset: u64) {
        if let Some(key) = self.mask_key {
            apply_mask(data, key, (payload_offset % 4) as usize);
        }
    }

    /// Header plus payload bytes on the wire.
    pub fn frame_len(&self) -> u64 {
        self.payload_len.saturating_add(self.header_len as u64)
    }
}

/// Encodes a header with the shortest length form (see [`FrameHeader::new`]).
pub fn encode_header(
    fin: bool,
    rsv: u8,
    opcode: Opcode,
    mask_key: Option<[u8; 4]>,
    payload_len: u64,
) -> EncodedHeader {
    FrameHeader::new(fin, rsv, opcode, mask_key, payload_len).encode()
}

/// Decodes the header at the start of `buf`. `Ok(None)`: `buf` holds only a prefix of a valid
/// header; feed more bytes. Fails as soon as the bytes present break a context-free rule, so a
/// reserved opcode is reported from the first byte and an oversized length before the masking key
/// arrives. `max_payload_len` bounds the declared payload length (0x7FFF_FFFF_FFFF_FFFF = none).
pub fn parse_header(buf: &[u8], max_payload_len: u64) -> Result<Option<FrameHeader>, Violation> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let fin = first & 0x80 != 0;
    let rsv = (first >> 4) & 0b111;
    let opcode = Opcode::from_bits(first & 0x0F)?;
    // §5.5: "All control frames ... MUST NOT be fragmented."
    if opcode.is_control() && !fin {
        return Err(Violation::FragmentedControlFrame);
    }
    let Some(&second) = buf.get(1) else {
        return Ok(None);
    };
    let masked = second & 0x80 != 0;
    let (payload_len, length_end) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(&[high, low]) => (u64::from(u16::from_be_bytes([high, low])), 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
            Some(raw) => {
                let len = u64::from_be_bytes(raw);
                // §5.2: "the most significant bit MUST be 0" in the 64-bit length.
                if len >> 63 != 0 {
                    return Err(Violation::LengthHighBitSet);
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    // §5.5: "All control frames MUST have a payload length of 125 bytes or less."
    if opcode.is_control() && payload_len > MAX_CONTROL_PAYLOAD {
        return Err(Violation::ControlPayloadTooLong { len: payload_len });
    }
    if payload_len > max_payload_len {
        return Err(Violation::FrameTooLarge {
            len: payload_len,
            max: max_payload_len,
        });
    }
    let mask_key = if masked {
        match buf
            .get(length_end..length_end + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
        {
            Some(key) => Some(key),
            None => return Ok(None),
        }
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin,
        rsv,
        opcode,
        masked,
        mask_key,
        payload_len,
        header_len: length_end + if masked { 4 } else { 0 },
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const NO_LIMIT: u64 = u64::MAX;

    fn parse(bytes: &[u8]) -> FrameHeader {
        parse_header(bytes, NO_LIMIT).unwrap().unwrap()
    }

    #[test]
    fn rfc_unmasked_hello() {
        // FIN=1 op=text mask=0 len=5 "Hello" (§5.7)
        let frame = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
        let header = parse(&frame);
        assert!(header.fin);
        assert_eq!(header.rsv, 0);
        assert_eq!(header.opcode, Opcode::Text);
        assert!(!header.masked);
        assert_eq!(header.mask_key, None);
        assert_eq!(header.payload_len, 5);
        assert_eq!(header.header_len, 2);
        assert_eq!(&frame[header.header_len..], b"Hello");
    }

    #[test]
    fn rfc_masked_hello() {
        // FIN=1 op=text mask=1 len=5 key=37fa213d "Hello" (§5.7)
        let mut frame = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let header = parse(&frame);
        assert!(header.masked);
        assert_eq!(header.mask_key, Some([0x37, 0xfa, 0x21, 0x3d]));
        assert_eq!(header.payload_len, 5);
        assert_eq!(header.header_len, 6);
        let payload = &mut frame[6..];
        header.unmask(payload, 0);
        assert_eq!(payload, b"Hello");
    }

    #[test]
    fn rfc_fragmented_hello_headers() {
        // FIN=0 op=text len=3 "Hel", then FIN=1 op=continuation len=2 "lo" (§5.7)
        let first = parse(&[0x01, 0x03, 0x48, 0x65, 0x6c]);
        assert!(!first.fin);
        assert_eq!(first.opcode, Opcode::Text);
        assert_eq!(first.payload_len, 3);
        let second = parse(&[0x80, 0x02, 0x6c, 0x6f]);
        assert!(second.fin);
        assert_eq!(second.opcode, Opcode::Continuation);
        assert_eq!(second.payload_len, 2);
    }

    #[test]
    fn rfc_ping_and_masked_pong() {
        // FIN=1 op=ping len=5 "Hello" unmasked (§5.7)
        let ping = parse(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        assert_eq!((ping.opcode, ping.payload_len), (Opcode::Ping, 5));
        // FIN=1 op=pong mask=1 len=5 key=37fa213d "Hello" (§5.7)
        let pong = parse(&[
            0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ]);
        assert_eq!((pong.opcode, pong.masked), (Opcode::Pong, true));
    }

    #[test]
    fn rfc_256_byte_binary_uses_16_bit_length() {
        // FIN=1 op=binary mask=0 len=126 → 16-bit length 0x0100 (§5.7)
        let header = parse(&[0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(
            (header.opcode, header.payload_len, header.header_len),
            (Opcode::Binary, 256, 4)
        );
        assert_eq!(
            encode_header(true, 0, Opcode::Binary, None, 256).as_bytes(),
            [0x82, 0x7E, 0x01, 0x00]
        );
    }

    #[test]
    fn rfc_64k_binary_uses_64_bit_length() {
        // FIN=1 op=binary mask=0 len=127 → 64-bit length 0x10000 (§5.7)
        let bytes = [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00];
        let header = parse(&bytes);
        assert_eq!((header.payload_len, header.header_len), (65_536, 10));
        assert_eq!(
            encode_header(true, 0, Opcode::Binary, None, 65_536).as_bytes(),
            bytes
        );
    }

    #[test]
    fn every_proper_prefix_needs_more_bytes() {
        // FIN=1 op=binary mask=1 len=127 (64-bit 0x10000) key=01020304: the 14-byte maximum
        let bytes = [0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4];
        for end in 0..bytes.len() {
            assert_eq!(
                parse_header(&bytes[..end], NO_LIMIT),
                Ok(None),
                "prefix {end}"
            );
        }
        let header = parse(&bytes);
        assert_eq!(header.header_len, MAX_HEADER_LEN);
        assert_eq!(header.mask_key, Some([1, 2, 3, 4]));
    }

    #[test]
    fn non_minimal_lengths_are_accepted_and_re_encoded_verbatim() {
        // FIN=1 op=text len=126 → 16-bit length 5 (non-minimal, allowed: §5.2 does not require
        // receivers to enforce the minimal form)
        let sixteen = [0x81, 0x7E, 0x00, 0x05];
        assert_eq!(parse(&sixteen).payload_len, 5);
        assert_eq!(parse(&sixteen).encode().as_bytes(), sixteen);
        // FIN=1 op=text mask=1 len=127 → 64-bit length 5, key=37fa213d
        let sixty_four = [0x81, 0xFF, 0, 0, 0, 0, 0, 0, 0, 5, 0x37, 0xfa, 0x21, 0x3d];
        assert_eq!(parse(&sixty_four).header_len, 14);
        assert_eq!(parse(&sixty_four).encode().as_bytes(), sixty_four);
    }

    #[test]
    fn length_high_bit_is_a_violation() {
        // FIN=1 op=binary len=127 → 64-bit length 0x8000_0000_0000_0000 (§5.2: MSB must be 0)
        let bytes = [0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(
            parse_header(&bytes, NO_LIMIT),
            Err(Violation::LengthHighBitSet)
        );
        assert_eq!(Violation::LengthHighBitSet.close_code(), 1002);
    }

    #[test]
    fn oversized_length_fails_before_the_masking_key_arrives() {
        // FIN=1 op=binary mask=1 len=127 → 64-bit length 2^32; key not yet received
        let bytes = [0x82, 0xFF, 0, 0, 0, 1, 0, 0, 0, 0];
        let violation = parse_header(&bytes, 1 << 20).unwrap_err();
        assert_eq!(
            violation,
            Violation::FrameTooLarge {
                len: 1 << 32,
                max: 1 << 20
            }
        );
        assert_eq!(violation.close_code(), 1009);
        // At the limit exactly: fine.
        assert_eq!(
            parse_header(&[0x82, 0x7E, 0x01, 0x00], 256)
                .unwrap()
                .unwrap()
                .payload_len,
            256
        );
        assert!(parse_header(&[0x82, 0x7E, 0x01, 0x01], 256).is_err());
    }

    #[test]
    fn reserved_opcodes_fail_on_the_first_byte() {
        for value in [0x3u8, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            // FIN=1 op=<reserved>, nothing else received yet
            assert_eq!(
                parse_header(&[0x80 | value], NO_LIMIT),
                Err(Violation::ReservedOpcode { value })
            );
        }
    }

    #[test]
    fn control_frame_rules() {
        // FIN=0 op=ping len=0 (§5.5: control frames must not be fragmented)
        assert_eq!(
            parse_header(&[0x09], NO_LIMIT),
            Err(Violation::FragmentedControlFrame)
        );
        // FIN=1 op=close len=126 → 16-bit length 126 (§5.5: at most 125)
        assert_eq!(
            parse_header(&[0x88, 0x7E, 0x00, 0x7E], NO_LIMIT),
            Err(Violation::ControlPayloadTooLong { len: 126 })
        );
        // FIN=1 op=pong len=125: the largest allowed
        assert_eq!(parse(&[0x8A, 0x7D]).payload_len, 125);
        // The control rule wins over a smaller frame limit: it is a 1002, not a 1009.
        assert_eq!(
            parse_header(&[0x89, 0x7F, 0, 0, 0, 0, 0, 0, 1, 0], 10),
            Err(Violation::ControlPayloadTooLong { len: 256 })
        );
    }

    #[test]
    fn rsv_bits_are_reported_not_judged() {
        // FIN=1 RSV1=1 RSV3=1 op=text len=0: RSV is the parser's business (extensions)
        let header = parse(&[0xD1, 0x00]);
        assert_eq!(header.rsv, RSV1 | RSV3);
        assert_eq!(header.encode().as_bytes(), [0xD1, 0x00]);
    }

    #[test]
    fn encode_uses_minimal_forms() {
        for (len, header_len) in [
            (0u64, 2usize),
            (125, 2),
            (126, 4),
            (65_535, 4),
            (65_536, 10),
        ] {
            let unmasked = encode_header(true, 0, Opcode::Binary, None, len);
            assert_eq!(unmasked.as_bytes().len(), header_len);
            let masked = encode_header(false, RSV1, Opcode::Text, Some([9, 8, 7, 6]), len);
            assert_eq!(masked.as_bytes().len(), header_len + 4);
            let back = parse(masked.as_bytes());
            assert_eq!(
                (back.fin, back.rsv, back.opcode, back.payload_len),
                (false, RSV1, Opcode::Text, len)
            );
            assert_eq!(back.mask_key, Some([9, 8, 7, 6]));
        }
    }
}
