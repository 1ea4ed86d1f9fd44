//! A verified-token cache kept in Envoy shared data, so a token's signature is checked once per
//! Envoy process rather than once per worker and per reconnect (asymmetric verification in the
//! VM costs around a millisecond).
//!
//! Shared data is one map per process with no TTL and no size limit, so the cache is a fixed
//! table of `slots` keys: a token always lands in the same slot and a newer token evicts an
//! older one. These are pure functions; the glue does the shared-data get and set.
//!
//! An entry is bound to three things, all checked on every read:
//! - the token's SHA-256 digest, because a slot is shared by every token that hashes to it;
//! - a configuration fingerprint, because shared data outlives a configuration: after a key is
//!   rotated out, or the issuer, audience or claim names change, a verdict reached under the old
//!   configuration must not be served. Every configuration reads only its own verdicts;
//! - the token's expiry, checked with the verifier's rule ([`accepts_expiry`]), so a cached
//!   verdict never outlives the token.
//!
//! The trailing check value detects a torn or corrupted entry. It is not a MAC: anything that
//! can write this VM's shared data is trusted like the VM itself.

use sha2::{Digest, Sha256};

use super::jwt::{accepts_expiry, VerifiedIdentity};

/// The conventional key prefix: slot keys read `sb.vc.<index>`.
pub const SLOT_KEY_PREFIX: &str = "sb.vc.";
/// Longest agent, tenant or region value an entry can hold.
pub const MAX_ENTRY_FIELD_BYTES: usize = 1024;
/// Largest encoded entry.
pub const MAX_ENTRY_BYTES: usize = FIXED_BYTES + 3 * MAX_ENTRY_FIELD_BYTES;

const FORMAT_VERSION: u8 = 1;
const FLAG_REGION: u8 = 1;
const CHECK_BYTES: usize = 8;
/// version, flags, digest, fingerprint, expiry, three u16 lengths, check value.
const FIXED_BYTES: usize = 1 + 1 + 32 + 8 + 8 + 3 * 2 + CHECK_BYTES;

/// SHA-256 of the token, the only form in which a token is kept.
pub fn token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The shared-data key of the slot a token lives in: `<prefix><index>` (the prefix carries its
/// own separator, e.g. [`SLOT_KEY_PREFIX`]), the index being the first 8 bytes of the digest,
/// big-endian, modulo `slots` (0 slots is treated as 1).
pub fn slot_key(prefix: &str, digest: &[u8; 32], slots: u32) -> String {
    let index = leading_u64(digest) % u64::from(slots.max(1));
    format!("{prefix}{index}")
}

/// Encodes a verdict for `digest` under `config_fingerprint`: at most [`MAX_ENTRY_BYTES`]. When
/// a field is longer than [`MAX_ENTRY_FIELD_BYTES`] the result is empty, which never decodes
/// (the verifier's `max_identity_len` keeps real identities below; skip storing an empty entry).
///
/// Layout (integers big-endian): version u8, flags u8 (bit 0: region present), digest [32],
/// fingerprint u64, expires_at u64, agent/tenant/region lengths u16 each, the three UTF-8
/// strings, then the first 8 bytes of SHA-256 over everything before.
pub fn encode_entry(
    digest: &[u8; 32],
    config_fingerprint: u64,
    identity: &VerifiedIdentity,
) -> Vec<u8> {
    let region = identity.region.as_deref().unwrap_or("");
    let fields = [
        identity.agent_id.as_str(),
        identity.tenant_id.as_str(),
        region,
    ];
    let mut lengths = [0u16; 3];
    for (length, field) in lengths.iter_mut().zip(fields) {
        match u16::try_from(field.len()) {
            Ok(len) if field.len() <= MAX_ENTRY_FIELD_BYTES => *length = len,
            _ => return Vec::new(),
        }
    }
    let total = FIXED_BYTES + fields.iter().map(|field| field.len()).sum::<usize>();
    let mut out = Vec::with_capacity(total);
    out.push(FORMAT_VERSION);
    out.push(if identity.region.is_some() {
        FLAG_REGION
    } else {
        0
    });
    out.extend_from_slice(digest);
    out.extend_from_slice(&config_fingerprint.to_be_bytes());
    out.extend_from_slice(&identity.expires_at.to_be_bytes());
    for length in lengths {
        out.extend_from_slice(&length.to_be_bytes());
    }
    for field in fields {
        out.extend_from_slice(field.as_bytes());
    }
    let check = check_value(&out);
    out.extend_from_slice(&check);
    out
}

/// The cached identity, or `None` when the slot holds another token or another
/// configuration's verdict, the token is no longer accepted at `now` (same rule and leeway as
/// the verifier), or the bytes are not a well-formed entry. Never panics on any input.
pub fn decode_entry(
    bytes: &[u8],
    digest: &[u8; 32],
    config_fingerprint: u64,
    now: u64,
    leeway: u64,
) -> Option<VerifiedIdentity> {
    if bytes.len() < FIXED_BYTES || bytes.len() > MAX_ENTRY_BYTES {
        return None;
    }
    let (body, check) = bytes.split_at(bytes.len() - CHECK_BYTES);
    if check != check_value(body) {
        return None;
    }
    let mut reader = Reader { rest: body };
    if reader.take::<1>()? != [FORMAT_VERSION] {
        return None;
    }
    let [flags] = reader.take::<1>()?;
    if flags & !FLAG_REGION != 0 {
        return None;
    }
    if reader.take::<32>()? != *digest {
        return None;
    }
    if u64::from_be_bytes(reader.take::<8>()?) != config_fingerprint {
        return None;
    }
    let expires_at = u64::from_be_bytes(reader.take::<8>()?);
    if !accepts_expiry(expires_at, now, leeway) {
        return None;
    }
    let agent_len = usize::from(u16::from_be_bytes(reader.take::<2>()?));
    let tenant_len = usize::from(u16::from_be_bytes(reader.take::<2>()?));
    let region_len = usize::from(u16::from_be_bytes(reader.take::<2>()?));
    let agent_id = reader.text(agent_len)?;
    let tenant_id = reader.text(tenant_len)?;
    let region = reader.text(region_len)?;
    let has_region = flags & FLAG_REGION != 0;
    // The verifier never produces an empty value, so one here means a damaged entry.
    if !reader.rest.is_empty()
        || agent_id.is_empty()
        || tenant_id.is_empty()
        || has_region == region.is_empty()
    {
        return None;
    }
    Some(VerifiedIdentity {
        agent_id,
        tenant_id,
        region: has_region.then_some(region),
        expires_at,
    })
}

/// A 64-bit digest of configuration parts, for the `config_fingerprint` of entries. Each part
/// is length-prefixed, so `["ab", "c"]` and `["a", "bc"]` differ.
pub fn fingerprint(parts: &[&[u8]]) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(b"switchboard.identity.fingerprint.v1\0");
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let digest: [u8; 32] = hasher.finalize().into();
    leading_u64(&digest)
}

fn leading_u64(digest: &[u8; 32]) -> u64 {
    let [b0, b1, b2, b3, b4, b5, b6, b7, ..] = *digest;
    u64::from_be_bytes([b0, b1, b2, b3, b4, b5, b6, b7])
}

fn check_value(body: &[u8]) -> [u8; CHECK_BYTES] {
    leading_u64(&Sha256::digest(body).into()).to_be_bytes()
}

/// Reads an entry front to back; every read is bounds-checked.
struct Reader<'a> {
    rest: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, tail) = self.rest.split_first_chunk::<N>()?;
        self.rest = tail;
        Some(*head)
    }

    fn text(&mut self, len: usize) -> Option<String> {
        if len > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        String::from_utf8(head.to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    const FINGERPRINT: u64 = 0x5eed_f00d_dead_beef;
    const EXP: u64 = 1_800_000_000;

    fn identity(region: Option<&str>) -> VerifiedIdentity {
        VerifiedIdentity {
            agent_id: "agent-7".to_string(),
            tenant_id: "acme".to_string(),
            region: region.map(str::to_string),
            expires_at: EXP,
        }
    }

    fn digest() -> [u8; 32] {
        token_digest("header.payload.signature")
    }

    /// xorshift64: deterministic bytes with no dependency and no randomness source.
    fn pseudo_random_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn digest_is_sha256_of_the_token() {
        // FIPS 180-2 appendix B.1.
        let expected = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let hex: String = token_digest("abc")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expected);
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn slot_keys_are_stable_and_bounded() {
        let mut digest = [0u8; 32];
        digest[7] = 10;
        assert_eq!(slot_key(SLOT_KEY_PREFIX, &digest, 16_384), "sb.vc.10");
        assert_eq!(slot_key(SLOT_KEY_PREFIX, &digest, 4), "sb.vc.2");
        assert_eq!(slot_key(SLOT_KEY_PREFIX, &digest, 1), "sb.vc.0");
        assert_eq!(slot_key(SLOT_KEY_PREFIX, &digest, 0), "sb.vc.0");
        // 2^64 - 1 = (2^32 - 1)(2^32 + 1).
        assert_eq!(slot_key("x:", &[0xff; 32], u32::MAX), "x:0");
        assert_eq!(slot_key("x:", &[0xff; 32], 1000), "x:615");
        for seed in 1..200u64 {
            let token = format!("token-{seed}");
            let key = slot_key(SLOT_KEY_PREFIX, &token_digest(&token), 97);
            let index: u64 = key.strip_prefix(SLOT_KEY_PREFIX).unwrap().parse().unwrap();
            assert!(index < 97);
            assert_eq!(key, slot_key(SLOT_KEY_PREFIX, &token_digest(&token), 97));
        }
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn entries_round_trip() {
        for region in [Some("eu-west"), None] {
            let entry = encode_entry(&digest(), FINGERPRINT, &identity(region));
            assert!(entry.len() <= MAX_ENTRY_BYTES);
            assert_eq!(
                decode_entry(&entry, &digest(), FINGERPRINT, EXP - 100, 30),
                Some(identity(region))
            );
        }
        let unicode = VerifiedIdentity {
            agent_id: "agënt".to_string(),
            ..identity(Some("日本"))
        };
        let entry = encode_entry(&digest(), FINGERPRINT, &unicode);
        assert_eq!(
            decode_entry(&entry, &digest(), FINGERPRINT, EXP, 0),
            Some(unicode)
        );
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn another_token_or_configuration_misses() {
        let entry = encode_entry(&digest(), FINGERPRINT, &identity(None));
        let other_token = token_digest("header.payload.other");
        assert_eq!(
            decode_entry(&entry, &other_token, FINGERPRINT, EXP, 30),
            None
        );
        assert_eq!(
            decode_entry(&entry, &digest(), FINGERPRINT ^ 1, EXP, 30),
            None
        );
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn expiry_matches_the_verifier() {
        let entry = encode_entry(&digest(), FINGERPRINT, &identity(None));
        assert!(decode_entry(&entry, &digest(), FINGERPRINT, EXP + 30, 30).is_some());
        assert_eq!(
            decode_entry(&entry, &digest(), FINGERPRINT, EXP + 31, 30),
            None
        );
        assert!(decode_entry(&entry, &digest(), FINGERPRINT, EXP, 0).is_some());
        assert_eq!(
            decode_entry(&entry, &digest(), FINGERPRINT, EXP + 1, 0),
            None
        );
        for now in [0, EXP - 1, EXP, EXP + 29, EXP + 30, EXP + 31, u64::MAX] {
            assert_eq!(
                decode_entry(&entry, &digest(), FINGERPRINT, now, 30).is_some(),
                accepts_expiry(EXP, now, 30),
                "{now}"
            );
        }
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn every_truncation_and_bit_flip_misses() {
        let entry = encode_entry(&digest(), FINGERPRINT, &identity(Some("eu-west")));
        for len in 0..entry.len() {
            assert_eq!(
                decode_entry(&entry[..len], &digest(), FINGERPRINT, EXP, 30),
                None,
                "{len}"
            );
        }
        for index in 0..entry.len() {
            for bit in 0..8 {
                let mut damaged = entry.clone();
                damaged[index] ^= 1 << bit;
                assert_eq!(
                    decode_entry(&damaged, &digest(), FINGERPRINT, EXP, 30),
                    None,
                    "byte {index} bit {bit}"
                );
            }
        }
        let mut extended = entry.clone();
        extended.push(0);
        assert_eq!(
            decode_entry(&extended, &digest(), FINGERPRINT, EXP, 30),
            None
        );
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn arbitrary_bytes_never_decode() {
        let entry = encode_entry(&digest(), FINGERPRINT, &identity(Some("eu-west")));
        for seed in 0..2_000u64 {
            let len = usize::try_from(seed % 160).unwrap();
            let noise = pseudo_random_bytes(seed, len);
            assert_eq!(decode_entry(&noise, &digest(), FINGERPRINT, EXP, 30), None);
            // A valid-looking header followed by noise.
            let mut spliced = entry[..len.min(entry.len())].to_vec();
            spliced.extend_from_slice(&noise);
            if spliced != entry {
                assert_eq!(
                    decode_entry(&spliced, &digest(), FINGERPRINT, EXP, 30),
                    None
                );
            }
        }
        for fill in [0x00, 0xff, 0x01, 0x7f] {
            for len in [0, 1, FIXED_BYTES, MAX_ENTRY_BYTES, MAX_ENTRY_BYTES + 1] {
                let block = vec![fill; len];
                assert_eq!(decode_entry(&block, &digest(), FINGERPRINT, EXP, 30), None);
            }
        }
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn oversized_identity_is_not_cached() {
        let long = VerifiedIdentity {
            tenant_id: "t".repeat(MAX_ENTRY_FIELD_BYTES + 1),
            ..identity(None)
        };
        let entry = encode_entry(&digest(), FINGERPRINT, &long);
        assert!(entry.is_empty());
        assert_eq!(decode_entry(&entry, &digest(), FINGERPRINT, EXP, 30), None);
        let longest = VerifiedIdentity {
            agent_id: "a".repeat(MAX_ENTRY_FIELD_BYTES),
            tenant_id: "t".repeat(MAX_ENTRY_FIELD_BYTES),
            region: Some("r".repeat(MAX_ENTRY_FIELD_BYTES)),
            expires_at: EXP,
        };
        let entry = encode_entry(&digest(), FINGERPRINT, &longest);
        assert_eq!(entry.len(), MAX_ENTRY_BYTES);
        assert_eq!(
            decode_entry(&entry, &digest(), FINGERPRINT, EXP, 30),
            Some(longest)
        );
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn fingerprint_separates_parts() {
        let joined = fingerprint(&[b"ab", b"c"]);
        assert_eq!(joined, fingerprint(&[b"ab", b"c"]));
        assert_ne!(joined, fingerprint(&[b"a", b"bc"]));
        assert_ne!(joined, fingerprint(&[b"abc"]));
        assert_ne!(fingerprint(&[]), fingerprint(&[b""]));
    }
}
