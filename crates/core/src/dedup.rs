//! Replayed-event suppression. After a resume the platform replays from a position with some
//! overlap, so the same event can reach an agent twice — possibly on another Envoy worker, since a
//! reconnect may land anywhere. Each agent's recently delivered event ids live in one shared-data
//! value, a fixed-size ring that [`DedupRing::check_and_record`] reads and rewrites in bounded
//! time and space; the glue writes it back with compare-and-swap.
//!
//! Shared data never forgets a key, so rings live in a fixed table of slots ([`ring_key`]); each
//! ring names its agent, and an agent hashed into a slot another agent holds takes it over (the
//! evicted agent only loses its window, which at worst lets one duplicate through).

/// How long and how many ids an agent's window remembers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupWindow {
    /// Ids remembered per agent (the ring's capacity).
    pub capacity: u16,
    /// Ids older than this no longer count as duplicates.
    pub max_age_ms: u64,
}

/// Whether an event was already delivered to this agent within the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// First time in the window: forward it.
    New,
    /// Delivered before: drop it.
    Duplicate,
}

const FORMAT_VERSION: u8 = 1;
/// version, capacity (u16), next write index (u16).
const HEADER_BYTES: usize = 5;
/// id digest (u64) + delivered-at (u64 ms).
const ENTRY_BYTES: usize = 16;

/// An agent's ring of recently delivered event ids, decoded from shared data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupRing {
    entries: Vec<(u64, u64)>,
    next: usize,
}

impl DedupRing {
    /// An empty ring of `capacity` entries (at least one).
    pub fn empty(capacity: u16) -> DedupRing {
        DedupRing {
            entries: vec![(0, 0); usize::from(capacity.max(1))],
            next: 0,
        }
    }

    /// Decodes a stored ring; anything malformed or of another capacity starts afresh (a lost
    /// window only risks a duplicate, never a lost event).
    pub fn decode(bytes: &[u8], capacity: u16) -> DedupRing {
        Self::try_decode(bytes, capacity).unwrap_or_else(|| DedupRing::empty(capacity))
    }

    fn try_decode(bytes: &[u8], capacity: u16) -> Option<DedupRing> {
        let (&version, rest) = bytes.split_first()?;
        if version != FORMAT_VERSION {
            return None;
        }
        let stored_capacity = u16::from_le_bytes(rest.get(0..2)?.try_into().ok()?);
        let next = usize::from(u16::from_le_bytes(rest.get(2..4)?.try_into().ok()?));
        if stored_capacity != capacity.max(1) || next >= usize::from(stored_capacity) {
            return None;
        }
        let body = bytes.get(HEADER_BYTES..)?;
        if body.len() != usize::from(stored_capacity) * ENTRY_BYTES {
            return None;
        }
        let entries = body
            .chunks_exact(ENTRY_BYTES)
            .map(|chunk| {
                let id = u64::from_le_bytes(chunk.get(0..8)?.try_into().ok()?);
                let at = u64::from_le_bytes(chunk.get(8..16)?.try_into().ok()?);
                Some((id, at))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(DedupRing { entries, next })
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + self.entries.len() * ENTRY_BYTES);
        out.push(FORMAT_VERSION);
        let capacity = u16::try_from(self.entries.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&capacity.to_le_bytes());
        out.extend_from_slice(&u16::try_from(self.next).unwrap_or(0).to_le_bytes());
        for (id, at) in &self.entries {
            out.extend_from_slice(&id.to_le_bytes());
            out.extend_from_slice(&at.to_le_bytes());
        }
        out
    }

    /// Looks `id` up within the window; records it when new. Bounded by the capacity.
    /// `id` 0 is reserved for empty slots, so callers pass a digest that is never 0
    /// ([`event_digest`]).
    pub fn check_and_record(&mut self, id: u64, now_ms: u64, window: DedupWindow) -> Delivery {
        let fresh_since = now_ms.saturating_sub(window.max_age_ms);
        let seen = self
            .entries
            .iter()
            .any(|(stored, at)| *stored == id && *at >= fresh_since);
        if seen {
            return Delivery::Duplicate;
        }
        if let Some(slot) = self.entries.get_mut(self.next) {
            *slot = (id, now_ms);
        }
        self.next = (self.next + 1) % self.entries.len().max(1);
        Delivery::New
    }
}

/// A 64-bit digest of an event id (never 0, which marks an empty slot).
pub fn event_digest(id: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(first).max(1)
}

/// The shared-data key of the slot that holds an agent's ring.
pub fn ring_key(routing_key: &str, slots: u32) -> String {
    let index = event_digest(routing_key) % u64::from(slots.max(1));
    format!("sb.dd.{index}")
}

/// Wraps a ring with the routing key of the agent it belongs to.
pub fn encode_owned(owner: &str, ring: &DedupRing) -> Vec<u8> {
    let owner = owner.as_bytes().get(..255).unwrap_or(owner.as_bytes());
    let mut out = Vec::with_capacity(1 + owner.len() + HEADER_BYTES);
    out.push(u8::try_from(owner.len()).unwrap_or(0));
    out.extend_from_slice(owner);
    out.extend(ring.encode());
    out
}

/// The agent's ring from a slot, or an empty one when the slot holds another agent or garbage.
pub fn decode_owned(bytes: &[u8], owner: &str, capacity: u16) -> DedupRing {
    let owner = owner.as_bytes().get(..255).unwrap_or(owner.as_bytes());
    let stored = bytes.split_first().and_then(|(&len, rest)| {
        Some((rest.get(..usize::from(len))?, rest.get(usize::from(len)..)?))
    });
    match stored {
        Some((stored_owner, ring)) if stored_owner == owner => DedupRing::decode(ring, capacity),
        _ => DedupRing::empty(capacity),
    }
}

/// [`DedupRing::check_and_record`] on an owned ring exactly as a shared-data slot stores it
/// ([`encode_owned`]), without decoding it: the ids are scanned in place and a new one is written
/// into its entry. Returns the delivery and the bytes to store back: `None` for a duplicate (the
/// slot is unchanged), a fresh one-entry ring when the slot was empty, another agent's, garbage
/// or of another capacity.
pub fn deliver_in_slot(
    stored: Option<Vec<u8>>,
    owner: &str,
    id: u64,
    now_ms: u64,
    window: DedupWindow,
) -> (Delivery, Option<Vec<u8>>) {
    let capacity = window.capacity.max(1);
    let Some((mut bytes, ring_at)) = stored.and_then(|bytes| {
        let ring_at = owned_ring_offset(&bytes, owner, capacity)?;
        Some((bytes, ring_at))
    }) else {
        let mut ring = DedupRing::empty(capacity);
        let delivery = ring.check_and_record(id, now_ms, window);
        return (delivery, Some(encode_owned(owner, &ring)));
    };
    let fresh_since = now_ms.saturating_sub(window.max_age_ms);
    let entries_at = ring_at + HEADER_BYTES;
    let Some(entries) = bytes.get(entries_at..) else {
        return (Delivery::New, None);
    };
    let seen = entries.chunks_exact(ENTRY_BYTES).any(|entry| {
        let (stored_id, at) = entry_fields(entry);
        stored_id == id && at >= fresh_since
    });
    if seen {
        return (Delivery::Duplicate, None);
    }
    let next = bytes
        .get(ring_at + 3..ring_at + 5)
        .map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]])));
    let slot = entries_at + next * ENTRY_BYTES;
    if let Some(entry) = bytes.get_mut(slot..slot + ENTRY_BYTES) {
        entry[..8].copy_from_slice(&id.to_le_bytes());
        entry[8..].copy_from_slice(&now_ms.to_le_bytes());
    }
    let following = u16::try_from((next + 1) % usize::from(capacity)).unwrap_or(0);
    if let Some(field) = bytes.get_mut(ring_at + 3..ring_at + 5) {
        field.copy_from_slice(&following.to_le_bytes());
    }
    (Delivery::New, Some(bytes))
}

/// Where the ring starts in an owned slot value, when it is `owner`'s, well formed and of
/// `capacity` entries.
fn owned_ring_offset(bytes: &[u8], owner: &str, capacity: u16) -> Option<usize> {
    let owner = owner.as_bytes().get(..255).unwrap_or(owner.as_bytes());
    let (&len, rest) = bytes.split_first()?;
    if rest.get(..usize::from(len))? != owner {
        return None;
    }
    let ring_at = 1 + usize::from(len);
    let header = bytes.get(ring_at..ring_at + HEADER_BYTES)?;
    let stored_capacity = u16::from_le_bytes([header[1], header[2]]);
    let next = u16::from_le_bytes([header[3], header[4]]);
    let body = bytes.len() - ring_at - HEADER_BYTES;
    (header[0] == FORMAT_VERSION
        && stored_capacity == capacity
        && next < stored_capacity
        && body == usize::from(stored_capacity) * ENTRY_BYTES)
        .then_some(ring_at)
}

fn entry_fields(entry: &[u8]) -> (u64, u64) {
    let mut id = [0u8; 8];
    let mut at = [0u8; 8];
    if let (Some(i), Some(a)) = (entry.get(..8), entry.get(8..16)) {
        id.copy_from_slice(i);
        at.copy_from_slice(a);
    }
    (u64::from_le_bytes(id), u64::from_le_bytes(at))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const WINDOW: DedupWindow = DedupWindow {
        capacity: 4,
        max_age_ms: 60_000,
    };

    #[test]
    fn second_delivery_is_a_duplicate_until_it_ages_out() {
        let mut ring = DedupRing::empty(WINDOW.capacity);
        let id = event_digest("evt-1");
        assert_eq!(ring.check_and_record(id, 1_000, WINDOW), Delivery::New);
        assert_eq!(
            ring.check_and_record(id, 2_000, WINDOW),
            Delivery::Duplicate
        );
        assert_eq!(ring.check_and_record(id, 61_001, WINDOW), Delivery::New);
    }

    #[test]
    fn capacity_bounds_memory_and_evicts_the_oldest() {
        let mut ring = DedupRing::empty(WINDOW.capacity);
        for i in 0..5 {
            assert_eq!(
                ring.check_and_record(event_digest(&format!("e{i}")), 10, WINDOW),
                Delivery::New
            );
        }
        assert_eq!(ring.encode().len(), HEADER_BYTES + 4 * ENTRY_BYTES);
        // e0 was overwritten by e4; e1..e4 are remembered.
        assert_eq!(
            ring.check_and_record(event_digest("e0"), 11, WINDOW),
            Delivery::New
        );
        assert_eq!(
            ring.check_and_record(event_digest("e3"), 11, WINDOW),
            Delivery::Duplicate
        );
    }

    #[test]
    fn survives_a_round_trip_through_shared_data() {
        let mut ring = DedupRing::empty(WINDOW.capacity);
        ring.check_and_record(event_digest("a"), 5, WINDOW);
        let mut restored = DedupRing::decode(&ring.encode(), WINDOW.capacity);
        assert_eq!(restored, ring);
        assert_eq!(
            restored.check_and_record(event_digest("a"), 6, WINDOW),
            Delivery::Duplicate
        );
    }

    #[test]
    fn garbage_or_a_resized_window_starts_afresh() {
        let mut ring = DedupRing::empty(WINDOW.capacity);
        ring.check_and_record(event_digest("a"), 5, WINDOW);
        let bytes = ring.encode();
        for len in 0..bytes.len() {
            assert_eq!(DedupRing::decode(&bytes[..len], 4), DedupRing::empty(4));
        }
        assert_eq!(DedupRing::decode(&bytes, 8), DedupRing::empty(8));
        let mut bad_next = bytes.clone();
        bad_next[3] = 9;
        assert_eq!(DedupRing::decode(&bad_next, 4), DedupRing::empty(4));
        assert_ne!(event_digest(""), 0);
    }

    #[test]
    fn a_slot_belongs_to_one_agent_at_a_time() {
        let mut ring = DedupRing::empty(4);
        ring.check_and_record(event_digest("a"), 5, WINDOW);
        let stored = encode_owned("key-1", &ring);
        assert_eq!(decode_owned(&stored, "key-1", 4), ring);
        assert_eq!(decode_owned(&stored, "key-2", 4), DedupRing::empty(4));
        assert_eq!(decode_owned(&[], "key-1", 4), DedupRing::empty(4));
        assert_eq!(decode_owned(&[200, 1], "key-1", 4), DedupRing::empty(4));
        assert_eq!(ring_key("key-1", 64), ring_key("key-1", 64));
        assert!(ring_key("key-1", 64).starts_with("sb.dd."));
    }

    #[test]
    fn in_place_check_matches_the_decoded_ring_step_by_step() {
        let window = DedupWindow {
            capacity: 4,
            max_age_ms: 100,
        };
        let mut model = DedupRing::empty(window.capacity);
        let mut slot: Option<Vec<u8>> = None;
        let names = ["a", "b", "a", "c", "d", "e", "a", "b", "b", "f", "e"];
        for (step, name) in names.iter().enumerate() {
            let now = step as u64 * 30;
            let id = event_digest(name);
            let expected = model.check_and_record(id, now, window);
            let (delivery, write) = deliver_in_slot(slot.clone(), "key-1", id, now, window);
            assert_eq!(delivery, expected, "step {step} ({name})");
            match write {
                Some(bytes) => slot = Some(bytes),
                None => assert_eq!(delivery, Delivery::Duplicate, "step {step}"),
            }
            assert_eq!(
                slot.as_deref(),
                Some(&encode_owned("key-1", &model)[..]),
                "step {step}"
            );
        }
    }

    #[test]
    fn in_place_check_starts_afresh_on_a_slot_it_cannot_use() {
        let mut ring = DedupRing::empty(WINDOW.capacity);
        ring.check_and_record(event_digest("a"), 5, WINDOW);
        let stored = encode_owned("key-1", &ring);
        let fresh = |owner: &str| {
            let mut ring = DedupRing::empty(WINDOW.capacity);
            ring.check_and_record(event_digest("a"), 6, WINDOW);
            encode_owned(owner, &ring)
        };
        // Another agent's ring: "a" is new for key-2, whose ring replaces it.
        let (delivery, write) =
            deliver_in_slot(Some(stored.clone()), "key-2", event_digest("a"), 6, WINDOW);
        assert_eq!((delivery, write), (Delivery::New, Some(fresh("key-2"))));
        // Every truncation of key-1's own ring is garbage: start afresh.
        for len in 0..stored.len() {
            let (delivery, write) = deliver_in_slot(
                Some(stored[..len].to_vec()),
                "key-1",
                event_digest("a"),
                6,
                WINDOW,
            );
            assert_eq!(
                (delivery, write),
                (Delivery::New, Some(fresh("key-1"))),
                "{len}"
            );
        }
        let wider = DedupWindow {
            capacity: 8,
            ..WINDOW
        };
        let (delivery, write) =
            deliver_in_slot(Some(stored.clone()), "key-1", event_digest("a"), 6, wider);
        assert_eq!(delivery, Delivery::New);
        assert_eq!(
            write.map(|w| w.len()),
            Some(1 + 5 + HEADER_BYTES + 8 * ENTRY_BYTES)
        );
        let mut bad_next = stored.clone();
        bad_next[1 + 5 + 3] = 9;
        let (delivery, _) = deliver_in_slot(Some(bad_next), "key-1", event_digest("a"), 6, WINDOW);
        assert_eq!(delivery, Delivery::New);
        let (delivery, write) =
            deliver_in_slot(Some(stored), "key-1", event_digest("a"), 6, WINDOW);
        assert_eq!((delivery, write), (Delivery::Duplicate, None));
    }
}
