//! Client-to-server payload masking (RFC 6455 §5.3): byte `i` of the payload is XORed with
//! `key[i % 4]`. Unmasking is the same operation.
//!
//! `offset` is how far into the payload `data` starts, so a payload split across chunks can be
//! unmasked piece by piece. The fast path rotates the key by that offset once and XORs eight bytes
//! at a time.

/// Masks or unmasks `data`, which begins `offset` bytes into a frame's payload.
pub fn apply_mask(data: &mut [u8], key: [u8; 4], offset: usize) {
    let rotated = rotate(key, offset);
    let word = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);
    let mut words = data.chunks_exact_mut(8);
    for chunk in &mut words {
        if let Ok(bytes) = <&mut [u8; 8]>::try_from(chunk) {
            *bytes = (u64::from_ne_bytes(*bytes) ^ word).to_ne_bytes();
        }
    }
    // A multiple of 8 bytes were consumed, so the rotated key still starts at index 0.
    for (byte, mask) in words
        .into_remainder()
        .iter_mut()
        .zip(rotated.iter().cycle())
    {
        *byte ^= mask;
    }
}

/// The definition, byte by byte; the fast path is tested and fuzzed against it.
pub fn apply_mask_reference(data: &mut [u8], key: [u8; 4], offset: usize) {
    for (index, byte) in data.iter_mut().enumerate() {
        *byte ^= key[(offset.wrapping_add(index)) % 4];
    }
}

fn rotate(key: [u8; 4], offset: usize) -> [u8; 4] {
    match offset % 4 {
        0 => key,
        1 => [key[1], key[2], key[3], key[0]],
        2 => [key[2], key[3], key[0], key[1]],
        _ => [key[3], key[0], key[1], key[2]],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::fuzzing::SplitMix64;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn rfc_masked_hello() {
        // key=37fa213d, masked "Hello" = 7f 9f 4d 51 58 (§5.7)
        let mut data = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(&data, b"Hello");
    }

    #[test]
    fn split_payload_unmasks_with_offsets() {
        // The same masked "Hello" split as "Hel" | "lo": the second piece starts at offset 3.
        let mut data = [0x7f, 0x9f, 0x4d, 0x51, 0x58];
        let (head, tail) = data.split_at_mut(3);
        apply_mask(head, [0x37, 0xfa, 0x21, 0x3d], 0);
        apply_mask(tail, [0x37, 0xfa, 0x21, 0x3d], 3);
        assert_eq!(&data, b"Hello");
    }

    #[test]
    fn fast_path_matches_reference_for_all_lengths_offsets_and_alignments() {
        let mut random = SplitMix64::new(0x5eed);
        let mut storage = [0u8; 300 + 8];
        for len in 0..=300 {
            for offset in 0..4 {
                for alignment in 0..4 {
                    let key = random.next_u32().to_le_bytes();
                    random.fill(&mut storage);
                    let original = storage;
                    let region = alignment..alignment + len;
                    let mut expected = storage;
                    apply_mask_reference(&mut expected[region.clone()], key, offset);
                    apply_mask(&mut storage[region.clone()], key, offset);
                    assert_eq!(
                        storage, expected,
                        "len {len} offset {offset} alignment {alignment}"
                    );
                    // Bytes outside the region are untouched; masking twice restores the input.
                    apply_mask(&mut storage[region], key, offset);
                    assert_eq!(storage, original);
                }
            }
        }
    }

    #[test]
    fn offsets_beyond_four_wrap() {
        let key = [1, 2, 3, 4];
        for offset in [4usize, 5, 1023, usize::MAX] {
            let mut fast = [0u8; 13];
            let mut reference = [0u8; 13];
            apply_mask(&mut fast, key, offset);
            apply_mask_reference(&mut reference, key, offset);
            assert_eq!(fast, reference, "offset {offset}");
        }
    }
}
