//! The run's report: JSON (stable field names, the run's parameters included) and a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::admin::GatewaySample;
use super::stats::{Percentiles, Stats, Window};
use super::{BenchConfig, Tokens};

#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    pub url: String,
    pub mode: &'static str,
    pub agents: u32,
    pub duration_s: f64,
    pub connect_rate: f64,
    pub jitter_ms: u128,
    pub msg_rate: f64,
    pub payload_bytes: usize,
    pub envelope: &'static str,
    pub ping_interval_ms: Option<u128>,
    pub tokens: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StepResult {
    pub agents: u32,
    pub connected: u64,
    pub p99_ms: f64,
    pub error_rate: f64,
    pub ok: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Throughput {
    pub sent_per_s: f64,
    pub echoed_per_s: f64,
    pub events_per_s: f64,
    pub bytes_up_per_s: f64,
    pub bytes_down_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Agents {
    pub target: u32,
    pub spawned: u32,
    pub peak_connected: u64,
    pub connects: u64,
    pub reconnects: u64,
    /// Agents that used up their connection attempts.
    pub gave_up: u64,
    /// Reconnects per second over the run.
    pub churn_per_s: f64,
    pub retried_after: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Soak {
    /// (second, `server.memory_allocated`) samples.
    pub memory: Vec<(u64, u64)>,
    /// Last sample over the first, minus one.
    pub memory_drift: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Storm {
    pub at_second: Option<u64>,
    /// Seconds from the drop until every agent was connected again (`None`: not within the run).
    pub recovered_in_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub parameters: Parameters,
    pub elapsed_s: f64,
    pub interrupted: bool,
    pub agents: Agents,
    pub handshake: Percentiles,
    pub round_trip: Percentiles,
    /// Round trips while every agent was connected: the steady state, without connect waves.
    pub round_trip_steady: Percentiles,
    pub ping: Percentiles,
    pub throughput: Throughput,
    pub errors: BTreeMap<String, u64>,
    pub closes: BTreeMap<String, u64>,
    pub abnormal_closes: u64,
    pub gateway: BTreeMap<&'static str, GatewaySample>,
    pub ramp_knee_agents: Option<u32>,
    pub ramp_steps: Vec<StepResult>,
    pub soak: Option<Soak>,
    pub storm: Option<Storm>,
    pub windows: Vec<Window>,
}

/// What the run loop saw besides the shared counters.
pub struct Observed {
    pub elapsed: Duration,
    pub spawned: u32,
    pub windows: Vec<Window>,
    pub gateway_start: Option<GatewaySample>,
    pub gateway_loaded: Option<GatewaySample>,
    pub gateway_end: Option<GatewaySample>,
    pub knee: Option<u32>,
    pub steps: Vec<StepResult>,
    pub storm_at: Option<u64>,
    pub storm_recovered_s: Option<f64>,
    pub memory: Vec<(u64, u64)>,
    pub interrupted: bool,
}

impl Report {
    pub fn build(config: &BenchConfig, stats: &Stats, seen: Observed) -> Report {
        let secs = seen.elapsed.as_secs_f64().max(0.001);
        let c = &stats.counters;
        let per_s = |n: u64| n as f64 / secs;
        let mut gateway = BTreeMap::new();
        for (name, sample) in [
            ("start", seen.gateway_start),
            ("loaded", seen.gateway_loaded),
            ("end", seen.gateway_end),
        ] {
            if let Some(sample) = sample {
                gateway.insert(name, sample);
            }
        }
        let memory_drift = match (seen.memory.first(), seen.memory.last()) {
            (Some((_, first)), Some((_, last))) if *first > 0 && seen.memory.len() > 1 => {
                Some(*last as f64 / *first as f64 - 1.0)
            }
            _ => None,
        };
        let reconnects = c.reconnects.load(Ordering::Relaxed);
        Report {
            parameters: Parameters {
                url: config.url.clone(),
                mode: config.mode.as_str(),
                agents: config.agents,
                duration_s: config.duration.as_secs_f64(),
                connect_rate: config.connect_rate,
                jitter_ms: config.jitter.as_millis(),
                msg_rate: config.msg_rate,
                payload_bytes: config.payload,
                envelope: config.envelope.as_str(),
                ping_interval_ms: config.ping_interval.map(|d| d.as_millis()),
                tokens: !matches!(config.tokens, Tokens::None),
            },
            elapsed_s: secs,
            interrupted: seen.interrupted,
            agents: Agents {
                target: config.agents,
                spawned: seen.spawned,
                peak_connected: seen
                    .windows
                    .iter()
                    .map(|w| w.agents_connected)
                    .max()
                    .unwrap_or(0),
                connects: c.connects.load(Ordering::Relaxed),
                reconnects,
                gave_up: c.gave_up.load(Ordering::Relaxed),
                churn_per_s: per_s(reconnects),
                retried_after: c.retries_after.load(Ordering::Relaxed),
            },
            handshake: stats.handshake_percentiles(),
            round_trip: stats.round_trip_percentiles(),
            round_trip_steady: stats.steady_percentiles(),
            ping: stats.ping_percentiles(),
            throughput: Throughput {
                sent_per_s: per_s(c.sent.load(Ordering::Relaxed)),
                echoed_per_s: per_s(c.echoed.load(Ordering::Relaxed)),
                events_per_s: per_s(c.events.load(Ordering::Relaxed)),
                bytes_up_per_s: per_s(c.bytes_up.load(Ordering::Relaxed)),
                bytes_down_per_s: per_s(c.bytes_down.load(Ordering::Relaxed)),
            },
            errors: stats.errors(),
            closes: stats.closes(),
            abnormal_closes: c.abnormal_closes.load(Ordering::Relaxed),
            gateway,
            ramp_knee_agents: seen.knee,
            ramp_steps: seen.steps,
            soak: (config.mode == super::Mode::Soak).then_some(Soak {
                memory: seen.memory,
                memory_drift,
            }),
            storm: (config.mode == super::Mode::Storm).then_some(Storm {
                at_second: seen.storm_at,
                recovered_in_s: seen.storm_recovered_s,
            }),
            windows: seen.windows,
        }
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let p = &self.parameters;
        let _ = writeln!(
            out,
            "sbctl bench {} against {}: {} agents, {:.0} s, {} msg/s each, {} B payload ({})",
            p.mode, p.url, p.agents, p.duration_s, p.msg_rate, p.payload_bytes, p.envelope
        );
        let _ = writeln!(
            out,
            "{:<18} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "latency (ms)", "p50", "p95", "p99", "p99.9", "max", "samples"
        );
        for (name, q) in [
            ("handshake", &self.handshake),
            ("round trip", &self.round_trip),
            ("  all connected", &self.round_trip_steady),
            ("ping", &self.ping),
        ] {
            let _ = writeln!(
                out,
                "{:<18} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10}",
                name, q.p50_ms, q.p95_ms, q.p99_ms, q.p999_ms, q.max_ms, q.samples
            );
        }
        let t = &self.throughput;
        let _ = writeln!(
            out,
            "throughput: {:.0} msgs/s up, {:.0} echoes/s, {:.0} events/s, {:.0} B/s up, {:.0} B/s down",
            t.sent_per_s, t.echoed_per_s, t.events_per_s, t.bytes_up_per_s, t.bytes_down_per_s
        );
        let a = &self.agents;
        let _ = writeln!(
            out,
            "agents: peak {} connected of {}, {} gave up, {} connects, {} reconnects ({:.2}/s), {} retries after Retry-After",
            a.peak_connected, a.target, a.gave_up, a.connects, a.reconnects, a.churn_per_s, a.retried_after
        );
        let join = |map: &BTreeMap<String, u64>| {
            if map.is_empty() {
                "none".to_owned()
            } else {
                map.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        };
        let _ = writeln!(out, "errors: {}", join(&self.errors));
        let _ = writeln!(
            out,
            "closes: {} (abnormal 1006: {})",
            join(&self.closes),
            self.abnormal_closes
        );
        for (name, g) in &self.gateway {
            let _ =
                writeln!(
                out,
                "gateway {name}: memory {} B, sessions {}, upstream cx {} (total {}), upgrades {}",
                g.memory_allocated.map_or("-".to_owned(), |v| v.to_string()),
                g.sessions_active.map_or("-".to_owned(), |v| format!("{v:.0}")),
                g.upstream_cx_active.map_or("-".to_owned(), |v| v.to_string()),
                g.upstream_cx_total.map_or("-".to_owned(), |v| v.to_string()),
                g.upgrades
                    .iter()
                    .map(|(k, v)| format!("{k}={v:.0}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        if let Some(knee) = self.ramp_knee_agents {
            let _ = writeln!(out, "ramp knee: {knee} agents");
        } else if !self.ramp_steps.is_empty() {
            let _ = writeln!(out, "ramp knee: below the first step");
        }
        if let Some(soak) = &self.soak {
            let _ = writeln!(
                out,
                "soak: memory drift {}",
                soak.memory_drift
                    .map_or("-".to_owned(), |d| format!("{:+.1}%", d * 100.0))
            );
        }
        if let Some(storm) = &self.storm {
            let _ = writeln!(
                out,
                "storm: at {}s, everyone back in {}",
                storm.at_second.map_or("-".to_owned(), |s| s.to_string()),
                storm
                    .recovered_in_s
                    .map_or("(not within the run)".to_owned(), |s| format!("{s:.0} s"))
            );
        }
        out
    }
}
