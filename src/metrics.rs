//! Switchboard's metrics, defined through the host so they appear in Envoy's `/stats`.
//!
//! Names are `switchboard.platform.<p>.region.<r>[.tenant.<t>].<family>` plus `.<tag>.<value>`
//! pairs; the shipped Envoy config turns the pairs into Prometheus labels with `stats_tags`.
//! Session metrics carry the tenant (bounded by `metrics.tenants`/`max_tenants`); gateway-wide
//! ones (token refresh, queue depth, filter time) do not. Metric ids are cached per VM; defining
//! is lazy so only series that occur create stats.

use std::collections::HashMap;

use switchboard_core::observe::{
    CloseSide, MetricsConfig, TenantLabels, TenantSlot, NO_TENANT_SLOT,
};

use crate::host::{self, MetricKind};

/// Counter families with one label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// `switchboard.upgrades.result.<result>`
    Upgrades,
    /// `switchboard.auth_failures.reason.<reason>`
    AuthFailures,
    /// `switchboard.auth.path.<cached|verified>`
    AuthPath,
    /// `switchboard.requests.result.<result>` for requests that are not upgrades.
    Requests,
    /// `switchboard.frames.dir.<up|down>`
    Frames,
    /// `switchboard.frame_bytes.dir.<up|down>` (chunk bytes seen)
    FrameBytes,
    /// `switchboard.tagging.result.<tagged|untouched>`
    Tagging,
    /// `switchboard.event_drops.reason.<duplicate|misrouted>`
    EventDrops,
    /// `switchboard.violations.code.<code>`
    Violations,
    /// `switchboard.closes.side.<client|platform>.code.<code>`
    Closes,
    /// `switchboard.sessions.result.<result>` for session-level outcomes
    Sessions,
    /// `switchboard.token_refreshes.result.<ok|connect_error|timeout|invalid_grant|...>`
    TokenRefreshes,
    /// `switchboard.auth_refresh.result.<injected|undelivered>`
    AuthRefresh,
    /// `switchboard.backpressure.result.<held|resumed|overflow|refused|rate_limited|duplicate>`
    Backpressure,
}

impl Family {
    const fn prefix(self) -> &'static str {
        match self {
            Family::Upgrades => "upgrades.result.",
            Family::AuthFailures => "auth_failures.reason.",
            Family::AuthPath => "auth.path.",
            Family::Requests => "requests.result.",
            Family::Frames => "frames.dir.",
            Family::FrameBytes => "frame_bytes.dir.",
            Family::Tagging => "tagging.result.",
            Family::EventDrops => "event_drops.reason.",
            Family::Violations => "violations.code.",
            Family::Closes => "closes.side.",
            Family::Sessions => "sessions.result.",
            Family::TokenRefreshes => "token_refreshes.result.",
            Family::AuthRefresh => "auth_refresh.result.",
            Family::Backpressure => "backpressure.result.",
        }
    }
}

/// Agent sessions open now, per tenant (moved by increments).
pub const SESSIONS_ACTIVE: &str = "sessions_active";
pub const UPGRADE_FILTER_TIME_US: &str = "upgrade_filter_time_us";
/// Bytes this worker holds in paused streams (moved by increments: the gauge is the total).
pub const HELD_BYTES: &str = "queue_held_bytes";
/// Stream directions currently paused.
pub const HELD_STREAMS: &str = "held_streams";
/// `backpressure.max_queue_bytes`, so dashboards and alerts can show held bytes as a share.
pub const QUEUE_CAPACITY: &str = "queue_capacity_bytes";
/// Seconds until the shared platform token expires (0 when there is none); set by the refresh
/// leader, which is one root context per process.
pub const PLATFORM_TOKEN_TTL: &str = "platform_token_seconds_to_expiry";

/// Whose series a metric is: the gateway's, or one tenant's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Gateway,
    Tenant(TenantSlot),
}

/// Per-VM metric ids.
pub struct Metrics {
    /// `switchboard.platform.<p>.region.<r>.`
    prefix: String,
    tenants: TenantLabels,
    counters: HashMap<(Family, &'static str, Scope), u32>,
    named: HashMap<(&'static str, Scope), u32>,
}

impl Metrics {
    pub fn new(config: &MetricsConfig) -> Self {
        Self {
            prefix: config.prefix(),
            tenants: TenantLabels::new(config.tenants.clone()),
            counters: HashMap::new(),
            named: HashMap::new(),
        }
    }

    /// The label slot of a verified tenant id (bounded: past the cap, `other`).
    pub fn tenant_slot(&mut self, tenant_id: &str) -> TenantSlot {
        self.tenants.slot(tenant_id)
    }

    pub fn tenant_label(&self, slot: TenantSlot) -> &str {
        self.tenants.label(slot)
    }

    fn name(&self, scope: Scope, rest: &str) -> String {
        match scope {
            Scope::Gateway => format!("{}{rest}", self.prefix),
            Scope::Tenant(slot) => {
                format!("{}tenant.{}.{rest}", self.prefix, self.tenants.label(slot))
            }
        }
    }

    pub fn count(&mut self, scope: Scope, family: Family, label: &'static str) {
        self.add(scope, family, label, 1);
    }

    pub fn add(&mut self, scope: Scope, family: Family, label: &'static str, amount: u64) {
        let id = match self.counters.get(&(family, label, scope)) {
            Some(id) => *id,
            None => {
                let name = self.name(scope, &format!("{}{}", family.prefix(), label));
                match host::define_metric(MetricKind::Counter, &name) {
                    Ok(id) => {
                        self.counters.insert((family, label, scope), id);
                        id
                    }
                    Err(err) => {
                        log::warn!("metrics: cannot define {name}: {err}");
                        return;
                    }
                }
            }
        };
        let _ = host::increment_metric(id, i64::try_from(amount).unwrap_or(i64::MAX));
    }

    fn named_id(&mut self, kind: MetricKind, scope: Scope, name: &'static str) -> Option<u32> {
        if let Some(id) = self.named.get(&(name, scope)) {
            return Some(*id);
        }
        let full = self.name(scope, name);
        match host::define_metric(kind, &full) {
            Ok(id) => {
                self.named.insert((name, scope), id);
                Some(id)
            }
            Err(err) => {
                log::warn!("metrics: cannot define {full}: {err}");
                None
            }
        }
    }

    /// Moves a gauge that every worker contributes to: increments, never a last-writer-wins set.
    pub fn gauge_add(&mut self, scope: Scope, name: &'static str, delta: i64) {
        if let Some(id) = self.named_id(MetricKind::Gauge, scope, name) {
            let _ = host::increment_metric(id, delta);
        }
    }

    /// Defines the series dashboards and alert rules read, at zero, so `rate()` has them from
    /// the start instead of from the first event of each kind.
    pub fn predefine(&mut self) {
        let scope = Scope::Tenant(NO_TENANT_SLOT);
        for (family, label) in [
            (Family::Frames, "up"),
            (Family::Frames, "down"),
            (Family::FrameBytes, "up"),
            (Family::FrameBytes, "down"),
            (Family::EventDrops, "duplicate"),
            (Family::EventDrops, "misrouted"),
            (Family::Upgrades, "accepted"),
        ] {
            self.add(scope, family, label, 0);
        }
        self.gauge_add(scope, SESSIONS_ACTIVE, 0);
    }

    /// Sets a gateway gauge only one writer owns at a time (the refresh leader).
    pub fn gauge_set(&mut self, name: &'static str, value: u64) {
        if let Some(id) = self.named_id(MetricKind::Gauge, Scope::Gateway, name) {
            let _ = host::record_metric(id, value);
        }
    }

    pub fn histogram(&mut self, name: &'static str, value: u64) {
        if let Some(id) = self.named_id(MetricKind::Histogram, Scope::Gateway, name) {
            let _ = host::record_metric(id, value);
        }
    }
}

/// A close code as a metric label (codes outside the registered set count as `other`).
pub fn code_label(code: u16) -> &'static str {
    match code {
        1000 => "1000",
        1001 => "1001",
        1002 => "1002",
        1003 => "1003",
        1005 => "1005",
        1006 => "1006",
        1007 => "1007",
        1008 => "1008",
        1009 => "1009",
        1010 => "1010",
        1011 => "1011",
        1012 => "1012",
        1013 => "1013",
        1014 => "1014",
        _ => "other",
    }
}

/// `<side>.code.<code>` for the closes family.
pub fn close_label(side: CloseSide, code: u16) -> &'static str {
    macro_rules! by_code {
        ($side:literal) => {
            match code {
                1000 => concat!($side, ".code.1000"),
                1001 => concat!($side, ".code.1001"),
                1002 => concat!($side, ".code.1002"),
                1003 => concat!($side, ".code.1003"),
                1005 => concat!($side, ".code.1005"),
                1006 => concat!($side, ".code.1006"),
                1007 => concat!($side, ".code.1007"),
                1008 => concat!($side, ".code.1008"),
                1009 => concat!($side, ".code.1009"),
                1011 => concat!($side, ".code.1011"),
                1013 => concat!($side, ".code.1013"),
                _ => concat!($side, ".code.other"),
            }
        };
    }
    match side {
        CloseSide::Client => by_code!("client"),
        CloseSide::Platform => by_code!("platform"),
        CloseSide::Gateway => by_code!("gateway"),
    }
}
