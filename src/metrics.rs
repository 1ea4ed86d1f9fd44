//! Switchboard's metrics, defined through the host so they appear in Envoy's `/stats`.
//!
//! Names are `switchboard.<family>` plus `.<tag>.<value>` pairs; the shipped Envoy config turns the
//! pairs into Prometheus labels with `stats_tags`. Metric ids are cached per VM; defining is
//! lazy so only families that occur create stats.

use std::collections::HashMap;

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
            Family::Upgrades => "switchboard.upgrades.result.",
            Family::AuthFailures => "switchboard.auth_failures.reason.",
            Family::AuthPath => "switchboard.auth.path.",
            Family::Requests => "switchboard.requests.result.",
            Family::Frames => "switchboard.frames.dir.",
            Family::FrameBytes => "switchboard.frame_bytes.dir.",
            Family::Tagging => "switchboard.tagging.result.",
            Family::EventDrops => "switchboard.event_drops.reason.",
            Family::Violations => "switchboard.violations.code.",
            Family::Closes => "switchboard.closes.side.",
            Family::Sessions => "switchboard.sessions.result.",
            Family::TokenRefreshes => "switchboard.token_refreshes.result.",
            Family::AuthRefresh => "switchboard.auth_refresh.result.",
            Family::Backpressure => "switchboard.backpressure.result.",
        }
    }
}

pub const SESSIONS_ACTIVE: &str = "switchboard.sessions_active";
pub const UPGRADE_FILTER_TIME_US: &str = "switchboard.upgrade_filter_time_us";
/// Seconds until the shared platform token expires (0 when there is none); set by the refresh
/// leader, which is one root context per process.
/// Bytes this worker holds in paused streams (moved by increments: the gauge is the total).
pub const HELD_BYTES: &str = "switchboard.queue_held_bytes";
/// Stream directions currently paused.
pub const HELD_STREAMS: &str = "switchboard.held_streams";
/// `backpressure.max_queue_bytes`, so dashboards and alerts can show held bytes as a share.
pub const QUEUE_CAPACITY: &str = "switchboard.queue_capacity_bytes";
pub const PLATFORM_TOKEN_TTL: &str = "switchboard.platform_token_seconds_to_expiry";

/// Per-VM metric ids.
#[derive(Default)]
pub struct Metrics {
    counters: HashMap<(Family, &'static str), u32>,
    named: HashMap<&'static str, u32>,
}

impl Metrics {
    pub fn count(&mut self, family: Family, label: &'static str) {
        self.add(family, label, 1);
    }

    pub fn add(&mut self, family: Family, label: &'static str, amount: u64) {
        let id = match self.counters.get(&(family, label)) {
            Some(id) => *id,
            None => {
                let name = format!("{}{}", family.prefix(), label);
                match host::define_metric(MetricKind::Counter, &name) {
                    Ok(id) => {
                        self.counters.insert((family, label), id);
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

    fn named_id(&mut self, kind: MetricKind, name: &'static str) -> Option<u32> {
        if let Some(id) = self.named.get(name) {
            return Some(*id);
        }
        match host::define_metric(kind, name) {
            Ok(id) => {
                self.named.insert(name, id);
                Some(id)
            }
            Err(err) => {
                log::warn!("metrics: cannot define {name}: {err}");
                None
            }
        }
    }

    /// Moves a gauge that every worker contributes to: increments, never a last-writer-wins set.
    pub fn gauge_add(&mut self, name: &'static str, delta: i64) {
        if let Some(id) = self.named_id(MetricKind::Gauge, name) {
            let _ = host::increment_metric(id, delta);
        }
    }

    /// Defines the series dashboards and alert rules read, at zero, so `rate()` has them from
    /// the start instead of from the first event of each kind.
    pub fn predefine(&mut self) {
        for (family, label) in [
            (Family::Frames, "up"),
            (Family::Frames, "down"),
            (Family::FrameBytes, "up"),
            (Family::FrameBytes, "down"),
            (Family::EventDrops, "duplicate"),
            (Family::EventDrops, "misrouted"),
            (Family::Upgrades, "accepted"),
        ] {
            self.add(family, label, 0);
        }
        self.gauge_add(SESSIONS_ACTIVE, 0);
    }

    /// Sets a gauge only one writer owns at a time (the refresh leader).
    pub fn gauge_set(&mut self, name: &'static str, value: u64) {
        if let Some(id) = self.named_id(MetricKind::Gauge, name) {
            let _ = host::record_metric(id, value);
        }
    }

    pub fn histogram(&mut self, name: &'static str, value: u64) {
        if let Some(id) = self.named_id(MetricKind::Histogram, name) {
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
pub fn close_label(from_client: bool, code: u16) -> &'static str {
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
    if from_client {
        by_code!("client")
    } else {
        by_code!("platform")
    }
}
