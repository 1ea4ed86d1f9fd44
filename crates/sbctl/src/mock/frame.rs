//! RFC 6455 §5.2 frames, built and parsed by hand. The mock needs this for what a WebSocket
//! library will not do: write frames that break the protocol on purpose (fault sessions), and
//! carry RSV1 for permessage-deflate (RFC 7692), which tungstenite 0.28 does not implement.
//!
//! Pure functions over byte slices; the session code owns the socket.

/// Continuation frame (RFC 6455 §5.2).
pub const OPCODE_CONTINUATION: u8 = 0x0;
pub const OPCODE_TEXT: u8 = 0x1;
pub const OPCODE_BINARY: u8 = 0x2;
pub const OPCODE_CLOSE: u8 = 0x8;
pub const OPCODE_PING: u8 = 0x9;
pub const OPCODE_PONG: u8 = 0xA;

const FIN_BIT: u8 = 0x80;
const RSV1_BIT: u8 = 0x40;
const RSV2_BIT: u8 = 0x20;
const RSV3_BIT: u8 = 0x10;
const OPCODE_BITS: u8 = 0x0F;
const MASK_BIT: u8 = 0x80;
const LENGTH_BITS: u8 = 0x7F;
/// Largest header: 2 fixed bytes, 8 bytes of extended length, 4 bytes of masking key.
pub const MAX_HEADER_BYTES: usize = 14;

/// Everything in a frame header except the length, which `encode` takes from the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSpec {
    pub fin: bool,
    pub rsv1: bool,
    pub rsv2: bool,
    pub rsv3: bool,
    /// Four bits; higher bits are dropped.
    pub opcode: u8,
    /// Masking key; `Some` makes `encode` mask the payload with it.
    pub mask: Option<[u8; 4]>,
}

impl FrameSpec {
    /// A final, unmasked frame with no reserved bits: what a conforming server sends.
    pub const fn server(opcode: u8) -> Self {
        Self {
            fin: true,
            rsv1: false,
            rsv2: false,
            rsv3: false,
            opcode,
            mask: None,
        }
    }
}

/// Builds one frame: header, then the payload (masked if the spec carries a key).
pub fn encode(spec: &FrameSpec, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(MAX_HEADER_BYTES + payload.len());
    let mut first = spec.opcode & OPCODE_BITS;
    for (set, bit) in [
        (spec.fin, FIN_BIT),
        (spec.rsv1, RSV1_BIT),
        (spec.rsv2, RSV2_BIT),
        (spec.rsv3, RSV3_BIT),
    ] {
        if set {
            first |= bit;
        }
    }
    frame.push(first);
    let mask_bit = if spec.mask.is_some() { MASK_BIT } else { 0 };
    // RFC 6455 §5.2: the minimal number of bytes MUST be used to encode the length.
    let length = payload.len();
    if let Ok(short @ 0..=125) = u8::try_from(length) {
        frame.push(mask_bit | short);
    } else if let Ok(medium) = u16::try_from(length) {
        frame.push(mask_bit | 126);
        frame.extend_from_slice(&medium.to_be_bytes());
    } else {
        frame.push(mask_bit | 127);
        // usize is at most 64 bits on every supported target, so this never saturates.
        frame.extend_from_slice(&u64::try_from(length).unwrap_or(u64::MAX).to_be_bytes());
    }
    match spec.mask {
        Some(key) => {
            frame.extend_from_slice(&key);
            let start = frame.len();
            frame.extend_from_slice(payload);
            if let Some(body) = frame.get_mut(start..) {
                apply_mask(body, key);
            }
        }
        None => frame.extend_from_slice(payload),
    }
    frame
}

/// RFC 6455 §5.3: octet i of the payload is XORed with octet i mod 4 of the key. Its own
/// inverse, so it both masks and unmasks.
pub fn apply_mask(payload: &mut [u8], key: [u8; 4]) {
    for (byte, key_byte) in payload.iter_mut().zip(key.iter().cycle()) {
        *byte ^= key_byte;
    }
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub rsv1: bool,
    pub rsv2: bool,
    pub rsv3: bool,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    /// As on the wire; the caller checks it against its limits before allocating.
    pub payload_len: u64,
    /// Bytes the header took.
    pub header_len: usize,
}

/// A header that no endpoint may send, whatever was negotiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A 64-bit length with the most significant bit set.
    #[error("64-bit payload length has its most significant bit set")]
    LengthHighBit,
    /// An extended length that fits a shorter form.
    #[error("payload length not minimally encoded")]
    NonMinimalLength,
}

/// Parses the header at the start of `bytes`. `Ok(None)` means more bytes are needed.
pub fn parse_header(bytes: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
    let (Some(&first), Some(&second)) = (bytes.first(), bytes.get(1)) else {
        return Ok(None);
    };
    let (payload_len, mut at) = match second & LENGTH_BITS {
        126 => {
            let Some(raw) = bytes.get(2..4).and_then(|b| <[u8; 2]>::try_from(b).ok()) else {
                return Ok(None);
            };
            let length = u16::from_be_bytes(raw);
            // RFC 6455 §5.2: the minimal number of bytes MUST be used to encode the length.
            if length < 126 {
                return Err(FrameError::NonMinimalLength);
            }
            (u64::from(length), 4)
        }
        127 => {
            let Some(raw) = bytes.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
                return Ok(None);
            };
            let length = u64::from_be_bytes(raw);
            // RFC 6455 §5.2: the most significant bit of a 64-bit length MUST be 0.
            if length >> 63 != 0 {
                return Err(FrameError::LengthHighBit);
            }
            if length <= u64::from(u16::MAX) {
                return Err(FrameError::NonMinimalLength);
            }
            (length, 10)
        }
        short => (u64::from(short), 2),
    };
    let mask = if second & MASK_BIT != 0 {
        let Some(key) = bytes
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
        else {
            return Ok(None);
        };
        at += 4;
        Some(key)
    } else {
        None
    };
    Ok(Some(FrameHeader {
        fin: first & FIN_BIT != 0,
        rsv1: first & RSV1_BIT != 0,
        rsv2: first & RSV2_BIT != 0,
        rsv3: first & RSV3_BIT != 0,
        opcode: first & OPCODE_BITS,
        mask,
        payload_len,
        header_len: at,
    }))
}

/// RFC 6455 §5.5: control frames have the high opcode bit set.
pub const fn is_control(opcode: u8) -> bool {
    opcode & 0x8 != 0
}

/// The payload of a Close frame: the code, then a UTF-8 reason (RFC 6455 §5.5.1). The reason is
/// cut at a character boundary so the payload stays within the 125 bytes of a control frame.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    payload.extend_from_slice(reason.get(..end).unwrap_or_default().as_bytes());
    payload
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on an unexpected error"
)]
mod tests {
    use super::*;

    #[test]
    fn rfc_examples_encode() {
        // RFC 6455 §5.7: a single-frame unmasked text message "Hello".
        assert_eq!(
            encode(&FrameSpec::server(OPCODE_TEXT), b"Hello"),
            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
        // RFC 6455 §5.7: the same message masked with key 37 fa 21 3d.
        let masked = FrameSpec {
            mask: Some([0x37, 0xfa, 0x21, 0x3d]),
            ..FrameSpec::server(OPCODE_TEXT)
        };
        assert_eq!(
            encode(&masked, b"Hello"),
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        // RFC 6455 §5.7: 256 bytes binary uses the 16-bit length, 64 KiB the 64-bit length.
        let medium = encode(&FrameSpec::server(OPCODE_BINARY), &[0u8; 256]);
        assert_eq!(medium.get(..4), Some(&[0x82, 0x7e, 0x01, 0x00][..]));
        assert_eq!(medium.len(), 4 + 256);
        let large = encode(&FrameSpec::server(OPCODE_BINARY), &[0u8; 65_536]);
        assert_eq!(
            large.get(..10),
            Some(&[0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00][..])
        );
    }

    #[test]
    fn length_boundaries_are_minimal() {
        for (length, header) in [(125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let frame = encode(&FrameSpec::server(OPCODE_BINARY), &vec![7u8; length]);
            let parsed = parse_header(&frame).unwrap().unwrap();
            assert_eq!(parsed.header_len, header, "length {length}");
            assert_eq!(parsed.payload_len, length as u64);
        }
    }

    #[test]
    fn reserved_bits_and_opcodes_are_written_as_asked() {
        let rsv = FrameSpec {
            rsv1: true,
            ..FrameSpec::server(OPCODE_TEXT)
        };
        assert_eq!(encode(&rsv, b"Hi"), [0xc1, 0x02, b'H', b'i']);
        assert_eq!(encode(&FrameSpec::server(0x3), b""), [0x83, 0x00]);
        let fragment = FrameSpec {
            fin: false,
            ..FrameSpec::server(OPCODE_TEXT)
        };
        assert_eq!(encode(&fragment, b"a"), [0x01, 0x01, b'a']);
    }

    #[test]
    fn parses_masked_rfc_example() {
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let header = parse_header(&bytes).unwrap().unwrap();
        assert_eq!(
            header,
            FrameHeader {
                fin: true,
                rsv1: false,
                rsv2: false,
                rsv3: false,
                opcode: OPCODE_TEXT,
                mask: Some([0x37, 0xfa, 0x21, 0x3d]),
                payload_len: 5,
                header_len: 6,
            }
        );
        let mut payload = bytes.get(6..).unwrap().to_vec();
        apply_mask(&mut payload, [0x37, 0xfa, 0x21, 0x3d]);
        assert_eq!(payload, b"Hello");
    }

    #[test]
    fn partial_headers_ask_for_more() {
        let frame = encode(
            &FrameSpec {
                mask: Some([1, 2, 3, 4]),
                ..FrameSpec::server(OPCODE_BINARY)
            },
            &[0u8; 300],
        );
        for cut in 0..8 {
            assert_eq!(parse_header(frame.get(..cut).unwrap()), Ok(None), "{cut}");
        }
        assert!(parse_header(frame.get(..8).unwrap()).unwrap().is_some());
    }

    #[test]
    fn rejects_impossible_lengths() {
        assert_eq!(
            parse_header(&[0x82, 0x7e, 0x00, 0x05]),
            Err(FrameError::NonMinimalLength)
        );
        assert_eq!(
            parse_header(&[0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(FrameError::LengthHighBit)
        );
        assert_eq!(
            parse_header(&[0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0xff, 0xff]),
            Err(FrameError::NonMinimalLength)
        );
    }

    #[test]
    fn close_payload_is_bounded_at_a_char_boundary() {
        assert_eq!(close_payload(1000, "ok"), [0x03, 0xe8, b'o', b'k']);
        let long = "é".repeat(100);
        let payload = close_payload(1001, &long);
        assert!(payload.len() <= 125);
        assert!(std::str::from_utf8(payload.get(2..).unwrap()).is_ok());
    }
}
