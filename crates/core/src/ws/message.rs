//! Data frames the filter writes itself, e.g. a rewritten message in place of a captured one.
//! The caller supplies the masking key (fresh for every frame, §5.3), so this stays deterministic.

use super::header::encode_header;
use super::mask::apply_mask;
use super::Opcode;

/// Appends one complete frame to `out`: header, then `payload` (masked with `mask_key` if given).
/// Control frames must stay within 125 bytes (§5.5); that is the caller's duty here.
pub fn encode_frame(
    fin: bool,
    rsv: u8,
    opcode: Opcode,
    payload: &[u8],
    mask_key: Option<[u8; 4]>,
    out: &mut Vec<u8>,
) {
    let header = encode_header(fin, rsv, opcode, mask_key, payload.len() as u64);
    out.reserve(header.as_bytes().len() + payload.len());
    out.extend_from_slice(header.as_bytes());
    let start = out.len();
    out.extend_from_slice(payload);
    if let (Some(key), Some(written)) = (mask_key, out.get_mut(start..)) {
        apply_mask(written, key, 0);
    }
}

/// A complete text message as one frame.
pub fn encode_text(text: &str, mask_key: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(true, 0, Opcode::Text, text.as_bytes(), mask_key, &mut out);
    out
}

/// A complete binary message as one frame.
pub fn encode_binary(data: &[u8], mask_key: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(true, 0, Opcode::Binary, data, mask_key, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn rfc_unmasked_hello() {
        // FIN=1 op=text mask=0 len=5 "Hello" (§5.7)
        assert_eq!(
            encode_text("Hello", None),
            [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        );
    }

    #[test]
    fn rfc_masked_hello() {
        // FIN=1 op=text mask=1 len=5 key=37fa213d "Hello" (§5.7)
        assert_eq!(
            encode_text("Hello", Some([0x37, 0xfa, 0x21, 0x3d])),
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
    }

    #[test]
    fn rfc_256_byte_and_64k_binary() {
        // FIN=1 op=binary len=126 → 16-bit 0x0100, 256 bytes (§5.7)
        let frame = encode_binary(&[0xAB; 256], None);
        assert_eq!(&frame[..4], [0x82, 0x7E, 0x01, 0x00]);
        assert_eq!(frame.len(), 4 + 256);
        // FIN=1 op=binary len=127 → 64-bit 0x10000, 65536 bytes (§5.7)
        let frame = encode_binary(&vec![0xCD; 65_536], None);
        assert_eq!(&frame[..10], [0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
        assert_eq!(frame.len(), 10 + 65_536);
    }

    #[test]
    fn appends_after_existing_bytes() {
        let mut out = vec![0xEE];
        // FIN=0 op=text "Hel" then FIN=1 op=continuation "lo" (§5.7 fragmented)
        encode_frame(false, 0, Opcode::Text, b"Hel", None, &mut out);
        encode_frame(
            true,
            0,
            Opcode::Continuation,
            b"lo",
            Some([1, 2, 3, 4]),
            &mut out,
        );
        assert_eq!(&out[..6], [0xEE, 0x01, 0x03, b'H', b'e', b'l']);
        assert_eq!(&out[6..12], [0x80, 0x82, 1, 2, 3, 4]);
        assert_eq!(&out[12..], [b'l' ^ 1, b'o' ^ 2]);
    }
}
