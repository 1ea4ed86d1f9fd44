//! Shared-data side of backpressure and admission: process-wide counters (held bytes, sessions
//! per agent) and shared token buckets, each updated with compare-and-swap.

use switchboard_core::budget::{agent_count_update, tenant_key, Bucket, Lease, Rate};

use crate::host::{self, SharedWrite};

/// Total bytes held (paused) across every worker of this Envoy.
pub const HELD_BYTES_KEY: &str = "switchboard.queue.held_bytes";
const GLOBAL_UPGRADES_KEY: &str = "switchboard.admission.upgrades";
/// Slots of the per-tenant shared tables (buckets).
pub const TENANT_SLOTS: u32 = 4_096;
/// Slots of the per-agent session counters; each slot holds a few agents.
const AGENT_SLOTS: u32 = 16_384;
const AGENTS_PER_SLOT: usize = 8;
const CAS_ATTEMPTS: usize = 8;

fn read_i64(key: &str) -> (i64, u32) {
    match host::shared_get(key) {
        Ok(Some((bytes, cas))) => (
            bytes
                .get(..8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, i64::from_le_bytes),
            cas,
        ),
        _ => (0, 0),
    }
}

/// Adds `delta` to a shared counter (never below zero); returns the new value.
pub fn shared_add(key: &str, delta: i64) -> i64 {
    for _ in 0..CAS_ATTEMPTS {
        let (value, cas) = read_i64(key);
        let next = value.saturating_add(delta).max(0);
        match host::shared_set(key, &next.to_le_bytes(), cas) {
            Ok(SharedWrite::Written) => return next,
            Ok(SharedWrite::CasMismatch) => continue,
            Err(_) => return value,
        }
    }
    read_i64(key).0
}

pub fn shared_value(key: &str) -> i64 {
    read_i64(key).0
}

/// Read-modify-write of a shared bucket; `change` returns its verdict.
fn with_bucket<T>(
    key: &str,
    rate: Rate,
    now_ms: u64,
    fallback: T,
    mut change: impl FnMut(&mut Bucket) -> T,
) -> T {
    for _ in 0..CAS_ATTEMPTS {
        let (mut bucket, cas) = match host::shared_get(key) {
            Ok(Some((bytes, cas))) => (
                Bucket::decode(&bytes).unwrap_or_else(|| Bucket::full(rate, now_ms)),
                cas,
            ),
            Ok(None) => (Bucket::full(rate, now_ms), 0),
            Err(_) => return fallback,
        };
        let verdict = change(&mut bucket);
        match host::shared_set(key, &bucket.encode(), cas) {
            Ok(SharedWrite::Written) => return verdict,
            Ok(SharedWrite::CasMismatch) => continue,
            Err(_) => return fallback,
        }
    }
    fallback
}

/// Takes one upgrade from the global and the tenant's admission buckets. A refusal by the
/// tenant bucket leaves the global token spent: a storm is a storm either way.
pub fn admit_upgrade(global: Rate, per_tenant: Rate, tenant: &str, now_ms: u64) -> bool {
    if !global.is_unlimited()
        && !with_bucket(GLOBAL_UPGRADES_KEY, global, now_ms, true, |bucket| {
            bucket.try_take(global, 1.0, now_ms)
        })
    {
        return false;
    }
    per_tenant.is_unlimited()
        || with_bucket(
            &tenant_key("upgrades", tenant, TENANT_SLOTS),
            per_tenant,
            now_ms,
            true,
            |bucket| bucket.try_take(per_tenant, 1.0, now_ms),
        )
}

/// Settles a worker's lease with a tenant's shared budget (see `Lease::settle`); true when
/// the tenant is out of debt. A failed update counts as "wait".
pub fn settle(
    lease: &mut Lease,
    kind: &str,
    tenant: &str,
    rate: Rate,
    slice_ms: u64,
    now_ms: u64,
) -> bool {
    if rate.is_unlimited() {
        lease.tokens = 0.0;
        return true;
    }
    let mut settled = *lease;
    let ready = with_bucket(
        &tenant_key(kind, tenant, TENANT_SLOTS),
        rate,
        now_ms,
        false,
        |bucket| {
            settled = *lease;
            settled.settle(bucket, rate, slice_ms, now_ms)
        },
    );
    *lease = settled;
    ready
}

/// Live sessions per agent, in a bounded slot table: `Some((admitted, count after))`, or `None`
/// when the table could not be updated (then no cap applies rather than refusing by accident).
pub fn agent_sessions_add(routing_key: &str, delta: i64, cap: Option<u32>) -> Option<(bool, i64)> {
    let index = switchboard_core::dedup::event_digest(routing_key) % u64::from(AGENT_SLOTS);
    let slot = format!("switchboard.agents.{index}");
    for _ in 0..CAS_ATTEMPTS {
        let (stored, cas) = match host::shared_get(&slot) {
            Ok(Some((bytes, cas))) => (bytes, cas),
            Ok(None) => (Vec::new(), 0),
            Err(_) => return None,
        };
        let (encoded, admitted, count) =
            agent_count_update(&stored, routing_key, delta, cap, AGENTS_PER_SLOT);
        let Some(encoded) = encoded else {
            return Some((admitted, count));
        };
        match host::shared_set(&slot, &encoded, cas) {
            Ok(SharedWrite::Written) => return Some((admitted, count)),
            Ok(SharedWrite::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}
