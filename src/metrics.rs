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
}

impl Family {
    const fn prefix(self) -> &'static str {
        match self {
            Family::Upgrades => "switchboard.upgrades.result.",
            Family::AuthFailures => "switchboard.auth_failures.reason.",
            Family::AuthPath => "switchboard.auth.path.",
            Family::Requests => "switchboard.requests.result.",
        }
    }
}

pub const SESSIONS_ACTIVE: &str = "switchboard.sessions_active";
pub const UPGRADE_FILTER_TIME_US: &str = "switchboard.upgrade_filter_time_us";

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

    pub fn histogram(&mut self, name: &'static str, value: u64) {
        if let Some(id) = self.named_id(MetricKind::Histogram, name) {
            let _ = host::record_metric(id, value);
        }
    }
}
