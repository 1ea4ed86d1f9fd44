//! Resume cursors: the last event position delivered to each agent, so that when the agent
//! reconnects without one the gateway can ask the platform to replay what was missed.
//!
//! Storage is Envoy shared data, which has no TTL and no size limit, so it is bounded here: a
//! fixed table of `slots` sets, each holding at most [`WAYS`] agents; inserting into a full set
//! evicts its least recently updated agent (LRU by agent), and entries older than the TTL are
//! ignored and overwritten first.

/// Agents per set.
pub const WAYS: usize = 4;
/// Longest position kept (a timestamp or an opaque cursor).
pub const MAX_POSITION_BYTES: usize = 512;
/// Longest routing key kept.
const MAX_KEY_BYTES: usize = 255;
const FORMAT_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    routing_key: String,
    position: String,
    updated_ms: u64,
}

/// One set of the table, decoded from shared data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResumeSet {
    entries: Vec<Entry>,
}

/// The shared-data key of the set that holds `routing_key`.
pub fn set_key(routing_key: &str, slots: u32) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(routing_key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    let index = u64::from_be_bytes(first) % u64::from(slots.max(1));
    format!("sb.rc.{index}")
}

impl ResumeSet {
    /// Decodes a stored set; anything malformed is an empty set (only a replay is lost).
    pub fn decode(bytes: &[u8]) -> ResumeSet {
        Self::try_decode(bytes).unwrap_or_default()
    }

    fn try_decode(bytes: &[u8]) -> Option<ResumeSet> {
        let (&version, rest) = bytes.split_first()?;
        let (&count, mut rest) = rest.split_first()?;
        if version != FORMAT_VERSION || usize::from(count) > WAYS {
            return None;
        }
        let mut entries = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let (&key_len, tail) = rest.split_first()?;
            let key = tail.get(..usize::from(key_len))?;
            let tail = tail.get(usize::from(key_len)..)?;
            let pos_len = usize::from(u16::from_le_bytes(tail.get(..2)?.try_into().ok()?));
            if pos_len > MAX_POSITION_BYTES {
                return None;
            }
            let position = tail.get(2..2 + pos_len)?;
            let updated = u64::from_le_bytes(tail.get(2 + pos_len..10 + pos_len)?.try_into().ok()?);
            rest = tail.get(10 + pos_len..)?;
            entries.push(Entry {
                routing_key: String::from_utf8(key.to_vec()).ok()?,
                position: String::from_utf8(position.to_vec()).ok()?,
                updated_ms: updated,
            });
        }
        rest.is_empty().then_some(ResumeSet { entries })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![
            FORMAT_VERSION,
            u8::try_from(self.entries.len()).unwrap_or(0),
        ];
        for entry in &self.entries {
            out.push(u8::try_from(entry.routing_key.len()).unwrap_or(0));
            out.extend_from_slice(entry.routing_key.as_bytes());
            out.extend_from_slice(
                &u16::try_from(entry.position.len())
                    .unwrap_or(0)
                    .to_le_bytes(),
            );
            out.extend_from_slice(entry.position.as_bytes());
            out.extend_from_slice(&entry.updated_ms.to_le_bytes());
        }
        out
    }

    /// The agent's last delivered position, if recorded within `ttl_ms`.
    pub fn position(&self, routing_key: &str, now_ms: u64, ttl_ms: u64) -> Option<&str> {
        self.entries
            .iter()
            .find(|e| e.routing_key == routing_key && now_ms.saturating_sub(e.updated_ms) <= ttl_ms)
            .map(|e| e.position.as_str())
    }

    /// Records the agent's position. Returns false (and records nothing) for a key or position
    /// too long to keep. Expired entries go first, then the least recently updated.
    pub fn record(&mut self, routing_key: &str, position: &str, now_ms: u64, ttl_ms: u64) -> bool {
        if routing_key.len() > MAX_KEY_BYTES || position.len() > MAX_POSITION_BYTES {
            return false;
        }
        self.entries.retain(|e| {
            e.routing_key != routing_key && now_ms.saturating_sub(e.updated_ms) <= ttl_ms
        });
        if self.entries.len() >= WAYS {
            if let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, e)| e.updated_ms)
                .map(|(i, _)| i)
            {
                self.entries.swap_remove(oldest);
            }
        }
        self.entries.push(Entry {
            routing_key: routing_key.to_string(),
            position: position.to_string(),
            updated_ms: now_ms,
        });
        true
    }
}

/// Adds `param=<position>` to a request path that does not carry `param` already; `None` when
/// the client sent its own position (the client knows best what it has processed).
pub fn add_resume_param(path: &str, param: &str, position: &str) -> Option<String> {
    let (base, query) = match path.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (path, None),
    };
    if let Some(query) = query {
        if query
            .split('&')
            .any(|pair| pair.split_once('=').map_or(pair, |(n, _)| n) == param)
        {
            return None;
        }
    }
    let encoded = percent_encode(position);
    Some(match query {
        Some(query) if !query.is_empty() => format!("{base}?{query}&{param}={encoded}"),
        _ => format!("{base}?{param}={encoded}"),
    })
}

/// RFC 3986 query-value encoding: unreserved characters stay, everything else is `%XX`.
pub(crate) fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(b"0123456789ABCDEF"[usize::from(byte >> 4)]));
            out.push(char::from(b"0123456789ABCDEF"[usize::from(byte & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const TTL: u64 = 60_000;

    #[test]
    fn records_and_reads_positions_within_the_ttl() {
        let mut set = ResumeSet::default();
        assert!(set.record("key-a", "2026-11-22T10:00:00.000Z", 1_000, TTL));
        assert_eq!(
            set.position("key-a", 2_000, TTL),
            Some("2026-11-22T10:00:00.000Z")
        );
        assert!(set.record("key-a", "2026-11-22T10:00:05.000Z", 3_000, TTL));
        assert_eq!(
            set.position("key-a", 3_000, TTL),
            Some("2026-11-22T10:00:05.000Z")
        );
        assert_eq!(set.position("key-a", 3_000 + TTL + 1, TTL), None);
        assert_eq!(set.position("key-b", 3_000, TTL), None);
    }

    #[test]
    fn a_full_set_evicts_the_least_recently_updated_agent() {
        let mut set = ResumeSet::default();
        for (i, key) in ["a", "b", "c", "d"].iter().enumerate() {
            set.record(key, "p", 10 + i as u64, TTL);
        }
        set.record("a", "p2", 20, TTL); // a is now the most recent
        set.record("e", "p", 21, TTL); // evicts b
        assert_eq!(set.position("b", 22, TTL), None);
        for key in ["a", "c", "d", "e"] {
            assert!(set.position(key, 22, TTL).is_some(), "{key}");
        }
        assert_eq!(set.entries.len(), WAYS);
    }

    #[test]
    fn encoding_round_trips_and_rejects_garbage() {
        let mut set = ResumeSet::default();
        set.record("key-a", "cursor-17", 5, TTL);
        set.record("key-b", "", 6, TTL);
        let bytes = set.encode();
        assert_eq!(ResumeSet::decode(&bytes), set);
        for len in 0..bytes.len() {
            assert_eq!(
                ResumeSet::decode(&bytes[..len]),
                ResumeSet::default(),
                "{len}"
            );
        }
        assert!(!set.record("k", &"x".repeat(MAX_POSITION_BYTES + 1), 7, TTL));
        assert!(set_key("key-a", 1024).starts_with("sb.rc."));
        assert_eq!(set_key("key-a", 1024), set_key("key-a", 1024));
    }

    #[test]
    fn adds_the_position_only_when_the_client_sent_none() {
        assert_eq!(
            add_resume_param("/ws", "since", "2026-11-22T10:00:00.000Z").as_deref(),
            Some("/ws?since=2026-11-22T10%3A00%3A00.000Z")
        );
        assert_eq!(
            add_resume_param("/ws?a=1", "cursor", "17").as_deref(),
            Some("/ws?a=1&cursor=17")
        );
        assert_eq!(
            add_resume_param("/ws?", "cursor", "17").as_deref(),
            Some("/ws?cursor=17")
        );
        assert_eq!(add_resume_param("/ws?cursor=3&a=1", "cursor", "17"), None);
    }
}
