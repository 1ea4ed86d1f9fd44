//! The proxy-wasm ABI's serialized header map: `u32 count`, then `count × (u32 name_len,
//! u32 value_len)`, then each name and value followed by a NUL. Decoding treats the bytes as
//! hostile: any inconsistency yields `None`, never a panic or an oversized allocation.

/// Decodes a host-provided map. Names must be UTF-8 (Envoy lowercases them; HTTP names are
/// ASCII tokens); values stay bytes because `obs-text` is legal in header values.
pub fn decode(bytes: &[u8]) -> Option<Vec<(String, Vec<u8>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = usize::try_from(read_u32(bytes, 0)?).ok()?;
    let sizes_end = count.checked_mul(8)?.checked_add(4)?;
    if sizes_end > bytes.len() {
        return None;
    }
    let mut map = Vec::with_capacity(count);
    let mut cursor = sizes_end;
    for index in 0..count {
        let entry = 4 + index * 8;
        let name_len = usize::try_from(read_u32(bytes, entry)?).ok()?;
        let value_len = usize::try_from(read_u32(bytes, entry + 4)?).ok()?;
        let (name, after_name) = terminated(bytes, cursor, name_len)?;
        let (value, after_value) = terminated(bytes, after_name, value_len)?;
        cursor = after_value;
        map.push((String::from_utf8(name.to_vec()).ok()?, value.to_vec()));
    }
    Some(map)
}

/// Encodes pairs for the host; `None` if a length does not fit the ABI's u32.
pub fn encode(pairs: &[(&str, &[u8])]) -> Option<Vec<u8>> {
    let mut size: usize = 4;
    for (name, value) in pairs {
        size = size
            .checked_add(name.len())?
            .checked_add(value.len())?
            .checked_add(10)?;
    }
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&u32::try_from(pairs.len()).ok()?.to_le_bytes());
    for (name, value) in pairs {
        out.extend_from_slice(&u32::try_from(name.len()).ok()?.to_le_bytes());
        out.extend_from_slice(&u32::try_from(value.len()).ok()?.to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(value);
        out.push(0);
    }
    Some(out)
}

/// `len` bytes at `at` followed by the NUL the ABI puts after each string; returns them and the
/// offset past the NUL.
fn terminated(bytes: &[u8], at: usize, len: usize) -> Option<(&[u8], usize)> {
    let end = at.checked_add(len)?;
    let text = bytes.get(at..end)?;
    (*bytes.get(end)? == 0).then_some((text, end + 1))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(raw))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn round_trip() {
        let pairs: [(&str, &[u8]); 3] = [(":method", b"GET"), ("x-a", b""), ("x-b", b"\xff\xfe")];
        let bytes = encode(&pairs).unwrap();
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.len(), 3);
        assert_eq!(decoded[0], (":method".to_string(), b"GET".to_vec()));
        assert_eq!(decoded[2].1, b"\xff\xfe".to_vec());
        assert_eq!(decode(&[]).unwrap(), Vec::new());
    }

    #[test]
    fn every_truncation_and_corruption_is_refused_without_panic() {
        let pairs: [(&str, &[u8]); 2] = [("host", b"example"), ("upgrade", b"websocket")];
        let bytes = encode(&pairs).unwrap();
        for len in 1..bytes.len() {
            assert_eq!(decode(&bytes[..len]), None, "truncated at {len}");
        }
        // A count claiming billions of entries must not allocate or panic.
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode(&huge), None);
        // A length pointing past the end.
        let mut long = bytes.clone();
        long[4..8].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert_eq!(decode(&long), None);
        for (i, byte) in bytes.iter().enumerate() {
            let mut flipped = bytes.clone();
            flipped[i] = byte ^ 0xff;
            let _ = decode(&flipped);
        }
    }
}
