//! Rate budgets and admission: token buckets that may go into debt (a chunk is charged for what
//! it really carried, after it was read), slices of a shared bucket leased by each worker so a
//! tenant's budget holds across Envoy's threads without a compare-and-swap per frame, and the
//! first-held, first-resumed queue of paused streams.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// A token bucket: `rate` per second up to `burst`; `tokens` below zero is debt.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bucket {
    pub tokens: f64,
    pub last_ms: u64,
}

/// A bucket's shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_sec: f64,
    pub burst: f64,
}

impl Rate {
    /// No limit.
    pub const UNLIMITED: Rate = Rate {
        per_sec: f64::INFINITY,
        burst: f64::INFINITY,
    };

    pub fn is_unlimited(&self) -> bool {
        !self.per_sec.is_finite()
    }
}

impl Bucket {
    /// A full bucket.
    pub fn full(rate: Rate, now_ms: u64) -> Bucket {
        Bucket {
            tokens: if rate.is_unlimited() { 0.0 } else { rate.burst },
            last_ms: now_ms,
        }
    }

    pub fn refill(&mut self, rate: Rate, now_ms: u64) {
        if rate.is_unlimited() {
            self.tokens = 0.0;
            self.last_ms = now_ms;
            return;
        }
        let elapsed = now_ms.saturating_sub(self.last_ms) as f64 / 1000.0;
        self.tokens = (self.tokens + elapsed * rate.per_sec).min(rate.burst);
        self.last_ms = self.last_ms.max(now_ms);
    }

    /// Not in debt (after refilling to `now_ms`).
    pub fn ready(&mut self, rate: Rate, now_ms: u64) -> bool {
        self.refill(rate, now_ms);
        rate.is_unlimited() || self.tokens >= 0.0
    }

    /// Charges `cost`, possibly into debt.
    pub fn charge(&mut self, rate: Rate, cost: f64) {
        if !rate.is_unlimited() {
            self.tokens -= cost;
        }
    }

    /// Takes `cost` only if that many tokens are there (admission: nothing goes into debt).
    pub fn try_take(&mut self, rate: Rate, cost: f64, now_ms: u64) -> bool {
        self.refill(rate, now_ms);
        if rate.is_unlimited() {
            return true;
        }
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16);
        out.extend_from_slice(&self.tokens.to_le_bytes());
        out.extend_from_slice(&self.last_ms.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Bucket> {
        let tokens = f64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
        let last_ms = u64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?);
        tokens.is_finite().then_some(Bucket { tokens, last_ms })
    }
}

/// A worker's local share of a shared bucket: spent locally, topped up by taking a slice from
/// the shared bucket (one compare-and-swap per slice, not per frame).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Lease {
    pub tokens: f64,
}

impl Lease {
    pub fn in_debt(&self) -> bool {
        self.tokens < 0.0
    }

    /// Settles with the tenant's shared bucket (refilled to `now_ms`): this worker's debt moves
    /// into the shared bucket, which is then repaid at the rate for everyone; when the shared
    /// bucket is not in debt, a slice of `slice_ms` of the rate (at most what it holds) is lent
    /// here so the next chunks need no compare-and-swap. Returns whether the tenant is out of
    /// debt, i.e. whether held data may go.
    pub fn settle(&mut self, shared: &mut Bucket, rate: Rate, slice_ms: u64, now_ms: u64) -> bool {
        shared.refill(rate, now_ms);
        if self.tokens < 0.0 {
            shared.tokens += self.tokens;
            self.tokens = 0.0;
        }
        if shared.tokens < 0.0 {
            return false;
        }
        let slice = rate.per_sec * slice_ms as f64 / 1000.0;
        let lend = slice.min(shared.tokens).max(0.0);
        shared.tokens -= lend;
        self.tokens += lend;
        true
    }
}

/// Which way a held chunk was going.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Way {
    /// Client to platform (request body).
    Up,
    /// Platform to client (response body).
    Down,
}

/// Paused streams of one worker in the order they were held; the tick resumes from the front.
#[derive(Debug, Default)]
pub struct HoldQueue {
    entries: VecDeque<(u32, Way)>,
}

impl HoldQueue {
    /// Adds a stream direction once (a second hold of the same one keeps its place).
    pub fn push(&mut self, context_id: u32, way: Way) {
        if !self.entries.contains(&(context_id, way)) {
            self.entries.push_back((context_id, way));
        }
    }

    /// Adds `other`'s entries after this queue's, keeping their order.
    pub fn append(&mut self, other: HoldQueue) {
        for (context_id, way) in other.entries {
            self.push(context_id, way);
        }
    }

    pub fn remove(&mut self, context_id: u32) {
        self.entries.retain(|(id, _)| *id != context_id);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Visits the entries front to back; `resume` says whether it resumed one (then it leaves
    /// the queue). Stops at the first entry that could not go when `strict` (so later arrivals
    /// never overtake an earlier one waiting on the same budget).
    pub fn drain_ready(&mut self, mut resume: impl FnMut(u32, Way) -> Resume) {
        let mut kept = VecDeque::with_capacity(self.entries.len());
        let mut blocked = false;
        while let Some((id, way)) = self.entries.pop_front() {
            if blocked {
                kept.push_back((id, way));
                continue;
            }
            match resume(id, way) {
                Resume::Resumed | Resume::Gone => {}
                Resume::Wait => kept.push_back((id, way)),
                Resume::WaitAndBlock => {
                    kept.push_back((id, way));
                    blocked = true;
                }
            }
        }
        self.entries = kept;
    }
}

/// What the tick did with one held stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    Resumed,
    /// The stream no longer exists.
    Gone,
    /// Still over budget; others may still go.
    Wait,
    /// Still over a budget later entries share: they wait too.
    WaitAndBlock,
}

/// Live sessions per agent in one shared slot (a few agents share a slot; the least recently
/// changed one is forgotten when it is full, which can only under-count, never refuse wrongly).
/// Returns the new encoding (`None`: refused, nothing to write), whether the change was
/// admitted, and the agent's count after it.
pub fn agent_count_update(
    stored: &[u8],
    routing_key: &str,
    delta: i64,
    cap: Option<u32>,
    per_slot: usize,
) -> (Option<Vec<u8>>, bool, i64) {
    let mut entries: Vec<(String, i64)> = serde_json::from_slice(stored).unwrap_or_default();
    let current = entries
        .iter()
        .find(|(key, _)| key == routing_key)
        .map_or(0, |(_, count)| *count);
    if delta > 0 && cap.is_some_and(|cap| current >= i64::from(cap)) {
        return (None, false, current);
    }
    let next = current.saturating_add(delta).max(0);
    entries.retain(|(key, _)| key != routing_key);
    if next > 0 {
        while entries.len() >= per_slot.max(1) {
            entries.remove(0);
        }
        entries.push((routing_key.to_string(), next));
    }
    (
        Some(serde_json::to_vec(&entries).unwrap_or_default()),
        true,
        next,
    )
}

/// Slot key of a tenant's shared bucket (bounded table; a colliding tenant shares the slot).
pub fn tenant_key(kind: &str, tenant: &str, slots: u32) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(tenant.as_bytes());
    let mut first = [0u8; 4];
    first.copy_from_slice(digest.get(..4).unwrap_or(&[0; 4]));
    format!(
        "switchboard.budget.{kind}.{}",
        u32::from_le_bytes(first) % slots.max(1)
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const RATE: Rate = Rate {
        per_sec: 100.0,
        burst: 10.0,
    };

    #[test]
    fn debt_is_repaid_at_the_rate() {
        let mut bucket = Bucket::full(RATE, 0);
        assert!(bucket.ready(RATE, 0));
        bucket.charge(RATE, 60.0);
        assert!(!bucket.ready(RATE, 100)); // 10 - 60 + 10 = -40
        assert!(!bucket.ready(RATE, 499));
        assert!(bucket.ready(RATE, 500));
        // Never above the burst.
        assert!(bucket.ready(RATE, 60_000));
        assert_eq!(bucket.tokens, 10.0);
    }

    #[test]
    fn delivery_rate_converges_to_the_budget_for_any_chunking() {
        // 10,000 frames in chunks of 1..=37 frames, held whenever in debt, 10 ms ticks.
        let mut bucket = Bucket::full(RATE, 0);
        let mut now = 0;
        let mut sent = 0u64;
        let mut size = 1;
        while sent < 10_000 {
            if bucket.ready(RATE, now) {
                bucket.charge(RATE, size as f64);
                sent += size;
                size = size % 37 + 1;
            } else {
                now += 10;
            }
        }
        let rate = sent as f64 / (now as f64 / 1000.0);
        assert!((rate - 100.0).abs() < 10.0, "rate {rate}");
    }

    #[test]
    fn leases_share_one_rate_between_workers() {
        // Three workers each send 5-frame chunks whenever their tenant is not in debt; ticks of
        // 10 ms. Together they get the tenant's rate, not three times it.
        let mut shared = Bucket::full(RATE, 0);
        let mut workers = [Lease::default(), Lease::default(), Lease::default()];
        let mut held = [false; 3];
        let mut now = 0;
        let mut sent = 0.0;
        while now < 20_000 {
            for (lease, held) in workers.iter_mut().zip(held.iter_mut()) {
                if *held {
                    *held = !lease.settle(&mut shared, RATE, 100, now);
                    continue;
                }
                lease.tokens -= 5.0;
                sent += 5.0;
                if lease.in_debt() {
                    *held = !lease.settle(&mut shared, RATE, 100, now);
                }
            }
            now += 10;
        }
        let rate = sent / 20.0;
        assert!(rate < 110.0 && rate > 90.0, "rate {rate}");
    }

    #[test]
    fn a_large_debt_is_repaid_by_time_not_forgiven() {
        let mut shared = Bucket::full(RATE, 0);
        let mut lease = Lease::default();
        lease.tokens -= 210.0;
        assert!(!lease.settle(&mut shared, RATE, 100, 0));
        assert!(!lease.settle(&mut shared, RATE, 100, 1_900));
        assert!(lease.settle(&mut shared, RATE, 100, 2_000));
    }

    #[test]
    fn admission_never_goes_into_debt() {
        let mut bucket = Bucket::full(RATE, 0);
        let admitted = (0..100).filter(|_| bucket.try_take(RATE, 1.0, 0)).count();
        assert_eq!(admitted, 10);
        assert!(bucket.try_take(RATE, 1.0, 10));
        assert!(!bucket.try_take(RATE, 1.0, 10));
        let mut open = Bucket::full(Rate::UNLIMITED, 0);
        assert!((0..1000).all(|_| open.try_take(Rate::UNLIMITED, 1.0, 0)));
    }

    #[test]
    fn buckets_round_trip_and_reject_garbage() {
        let bucket = Bucket {
            tokens: -3.5,
            last_ms: 77,
        };
        assert_eq!(Bucket::decode(&bucket.encode()), Some(bucket));
        assert_eq!(Bucket::decode(b"short"), None);
        assert_eq!(Bucket::decode(&[0xff; 16]), None);
    }

    #[test]
    fn the_queue_resumes_in_order_and_blocks_behind_a_shared_budget() {
        let mut queue = HoldQueue::default();
        for id in [5, 6, 7] {
            queue.push(id, Way::Up);
        }
        queue.push(5, Way::Up);
        queue.push(5, Way::Down);
        assert_eq!(queue.len(), 4);
        let mut order = Vec::new();
        queue.drain_ready(|id, way| {
            order.push((id, way));
            if id == 6 {
                Resume::WaitAndBlock
            } else {
                Resume::Resumed
            }
        });
        assert_eq!(order, [(5, Way::Up), (6, Way::Up)]);
        assert_eq!(queue.len(), 3);
        queue.remove(5);
        let mut order = Vec::new();
        queue.drain_ready(|id, _| {
            order.push(id);
            Resume::Resumed
        });
        assert_eq!(order, [6, 7]);
        assert!(queue.is_empty());
        let mut later = HoldQueue::default();
        later.push(9, Way::Down);
        later.push(8, Way::Up);
        queue.push(8, Way::Up);
        queue.append(later);
        let mut order = Vec::new();
        queue.drain_ready(|id, _| {
            order.push(id);
            Resume::Resumed
        });
        assert_eq!(order, [8, 9]);
    }

    #[test]
    fn agent_counts_cap_and_forget_the_oldest() {
        let (stored, ok, count) = agent_count_update(b"", "a", 1, Some(1), 2);
        assert!(ok && count == 1);
        let stored = stored.unwrap();
        let (refused, ok, count) = agent_count_update(&stored, "a", 1, Some(1), 2);
        assert!(refused.is_none() && !ok && count == 1);
        let (stored, _, _) = agent_count_update(&stored, "b", 1, Some(1), 2);
        let (stored, _, _) = agent_count_update(&stored.unwrap(), "c", 1, Some(1), 2);
        // "a" was forgotten: it may connect again (under-count, never a wrong refusal).
        let (_, ok, _) = agent_count_update(&stored.clone().unwrap(), "a", 1, Some(1), 2);
        assert!(ok);
        let (stored, ok, count) = agent_count_update(&stored.unwrap(), "c", -1, Some(1), 2);
        assert!(ok && count == 0);
        assert!(!String::from_utf8(stored.unwrap())
            .unwrap()
            .contains("\"c\""));
        let (_, ok, _) = agent_count_update(b"garbage", "z", 1, Some(1), 2);
        assert!(ok);
    }

    #[test]
    fn tenant_keys_are_bounded() {
        let key = tenant_key("up_frames", "acme", 64);
        assert!(key.starts_with("switchboard.budget.up_frames."));
        let slot: u32 = key.rsplit('.').next().unwrap().parse().unwrap();
        assert!(slot < 64);
        assert_eq!(key, tenant_key("up_frames", "acme", 64));
    }
}
