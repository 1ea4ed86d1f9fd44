//! The run's report: JSON (stable field names, the run's parameters included) and a table.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;

use super::admin::GatewaySample;
pub use super::ramp::StepResult;
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
    /// Agents carry minted JWTs.
    pub tokens: bool,
    /// Where the token travels: `header`, `query` or `subprotocol` (`null` without tokens).
    pub token_in: Option<&'static str>,
    /// Tenants the agents are spread over (`null` without tokens).
    pub tenants: Option<u32>,
    /// The platform subprotocol offered on the upgrade.
    pub subprotocol: Option<String>,
    pub attempts: u32,
    pub admin: Option<String>,
    pub upstream_cluster: Option<String>,
    pub step: u32,
    pub interval_s: f64,
    pub max_p99_ms: f64,
    pub max_error_rate: f64,
    pub sample_every_s: f64,
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

/// One soak sample: the gateway's figures (with `--admin`) and the client's churn so far.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SoakSample {
    pub second: u64,
    pub memory_allocated: Option<u64>,
    pub memory_heap_size: Option<u64>,
    pub sessions_active: Option<f64>,
    /// `switchboard_upgrades` with every result summed: the gateway's upgrades so far.
    pub upgrades_total: Option<f64>,
    pub upstream_cx_total: Option<u64>,
    /// The client's reconnects so far.
    pub reconnects: u64,
    /// Every agent had been connected (or had given up) for one admin stats flush (5 s): the
    /// sample counts towards the drift.
    pub settled: bool,
}

impl SoakSample {
    pub fn new(
        second: u64,
        gateway: Option<&GatewaySample>,
        reconnects: u64,
        settled: bool,
    ) -> Self {
        let mut sample = SoakSample {
            second,
            reconnects,
            settled,
            ..SoakSample::default()
        };
        if let Some(g) = gateway {
            sample.memory_allocated = g.memory_allocated;
            sample.memory_heap_size = g.memory_heap_size;
            sample.sessions_active = g.sessions_active;
            sample.upgrades_total =
                (!g.upgrades.is_empty()).then(|| g.upgrades.values().sum::<f64>());
            sample.upstream_cx_total = g.upstream_cx_total;
        }
        sample
    }
}

/// Drift over a soak, from settled samples only (the connect wave is not drift): memory from
/// the first to the last, and churn (the client's reconnects and the gateway's upgrades per
/// second) in the first sampling interval against the last.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Soak {
    pub samples: Vec<SoakSample>,
    /// (second, `server.memory_allocated`) samples.
    pub memory: Vec<(u64, u64)>,
    /// Last memory sample over the first, minus one.
    pub memory_drift: Option<f64>,
    /// Last memory sample minus the first, in bytes.
    pub memory_drift_bytes: Option<i64>,
    pub churn_per_s_first: Option<f64>,
    pub churn_per_s_last: Option<f64>,
    /// `churn_per_s_last - churn_per_s_first`.
    pub churn_drift_per_s: Option<f64>,
    pub gateway_upgrades_per_s_first: Option<f64>,
    pub gateway_upgrades_per_s_last: Option<f64>,
    /// `gateway_upgrades_per_s_last - gateway_upgrades_per_s_first`.
    pub gateway_churn_drift_per_s: Option<f64>,
}

/// The rate of a running count between two samples.
fn rate<T>(from: &T, to: &T, second: fn(&T) -> u64, count: fn(&T) -> Option<f64>) -> Option<f64> {
    let seconds = second(to).checked_sub(second(from)).filter(|s| *s > 0)?;
    Some((count(to)? - count(from)?) / seconds as f64)
}

impl Soak {
    pub fn from_samples(samples: Vec<SoakSample>) -> Soak {
        let settled: Vec<&SoakSample> = samples.iter().filter(|s| s.settled).collect();
        let memory: Vec<(u64, u64)> = settled
            .iter()
            .filter_map(|s| Some((s.second, s.memory_allocated?)))
            .collect();
        let (memory_drift, memory_drift_bytes) = match (memory.first(), memory.last()) {
            (Some((_, first)), Some((_, last))) if memory.len() > 1 => (
                (*first > 0).then(|| *last as f64 / *first as f64 - 1.0),
                Some(
                    i64::try_from(*last).unwrap_or(i64::MAX)
                        - i64::try_from(*first).unwrap_or(i64::MAX),
                ),
            ),
            _ => (None, None),
        };
        let second = |s: &&SoakSample| s.second;
        let first_pair = settled.first().zip(settled.get(1));
        let last_pair = settled
            .len()
            .checked_sub(2)
            .and_then(|i| settled.get(i).zip(settled.get(i + 1)));
        let churn = |pair: Option<(&&SoakSample, &&SoakSample)>| {
            pair.and_then(|(a, b)| rate(a, b, second, |s| Some(s.reconnects as f64)))
        };
        let upgrades = |pair: Option<(&&SoakSample, &&SoakSample)>| {
            pair.and_then(|(a, b)| rate(a, b, second, |s| s.upgrades_total))
        };
        let drift = |first: Option<f64>, last: Option<f64>| Some(last? - first?);
        let (churn_first, churn_last) = (churn(first_pair), churn(last_pair));
        let (upgrades_first, upgrades_last) = (upgrades(first_pair), upgrades(last_pair));
        Soak {
            memory,
            memory_drift,
            memory_drift_bytes,
            churn_per_s_first: churn_first,
            churn_per_s_last: churn_last,
            churn_drift_per_s: drift(churn_first, churn_last),
            gateway_upgrades_per_s_first: upgrades_first,
            gateway_upgrades_per_s_last: upgrades_last,
            gateway_churn_drift_per_s: drift(upgrades_first, upgrades_last),
            samples,
        }
    }
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
    pub soak_samples: Vec<SoakSample>,
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
                token_in: match &config.tokens {
                    Tokens::None => None,
                    Tokens::Mint { .. } => Some(config.presentation.token_in.as_str()),
                },
                tenants: match &config.tokens {
                    Tokens::None => None,
                    Tokens::Mint { tenants, .. } => Some(*tenants),
                },
                subprotocol: config.presentation.subprotocol.clone(),
                attempts: config.attempts,
                admin: config.admin.clone(),
                upstream_cluster: config.upstream_cluster.clone(),
                step: config.step,
                interval_s: config.interval.as_secs_f64(),
                max_p99_ms: config.max_p99_ms,
                max_error_rate: config.max_error_rate,
                sample_every_s: config.sample_every.as_secs_f64(),
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
            soak: (config.mode == super::Mode::Soak).then(|| Soak::from_samples(seen.soak_samples)),
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
        let in_order = ["start", "loaded", "end"]
            .into_iter()
            .filter_map(|name| Some((name, self.gateway.get(name)?)));
        for (name, g) in in_order {
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
            let rate = |r: Option<f64>| r.map_or("-".to_owned(), |r| format!("{r:.2}/s"));
            let _ = writeln!(
                out,
                "soak: memory drift {} ({} B), churn {} first, {} last, gateway upgrades {} first, {} last",
                soak.memory_drift
                    .map_or("-".to_owned(), |d| format!("{:+.1}%", d * 100.0)),
                soak.memory_drift_bytes
                    .map_or("-".to_owned(), |d| format!("{d:+}")),
                rate(soak.churn_per_s_first),
                rate(soak.churn_per_s_last),
                rate(soak.gateway_upgrades_per_s_first),
                rate(soak.gateway_upgrades_per_s_last),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::agent::{Envelope, Presentation};
    use super::super::Mode;
    use super::*;

    fn config(mode: Mode) -> BenchConfig {
        BenchConfig {
            url: "ws://127.0.0.1:10000/v2/realtime".to_owned(),
            mode,
            agents: 20,
            duration: Duration::from_secs(5),
            connect_rate: 100.0,
            jitter: Duration::from_millis(50),
            msg_rate: 2.0,
            payload: 64,
            envelope: Envelope::Nice,
            ping_interval: Some(Duration::from_millis(500)),
            tokens: Tokens::None,
            presentation: Presentation::default(),
            attempts: 3,
            admin: Some("127.0.0.1:9901".to_owned()),
            upstream_cluster: Some("platform".to_owned()),
            step: 5,
            interval: Duration::from_secs(2),
            max_p99_ms: 15.0,
            max_error_rate: 0.01,
            sample_every: Duration::from_secs(1),
            json: None,
            png: None,
        }
    }

    fn observed(soak_samples: Vec<SoakSample>) -> Observed {
        Observed {
            elapsed: Duration::from_secs(4),
            spawned: 20,
            windows: Vec::new(),
            gateway_start: Some(GatewaySample {
                memory_allocated: Some(1_000),
                ..GatewaySample::default()
            }),
            gateway_loaded: None,
            gateway_end: None,
            knee: None,
            steps: Vec::new(),
            storm_at: None,
            storm_recovered_s: None,
            soak_samples,
            interrupted: false,
        }
    }

    fn keys(value: &serde_json::Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        keys
    }

    /// The JSON field names are an interface (`make bench` and users' scripts read them).
    #[test]
    fn the_json_report_has_stable_field_names() {
        let stats = Stats::default();
        for us in [1_000, 2_000, 3_000, 4_000] {
            stats.round_trip(us);
        }
        stats.handshake(5_000);
        stats.error("http_503");
        stats.close(1006);
        stats.counters.sent.fetch_add(8, Ordering::Relaxed);
        stats.counters.bytes_up.fetch_add(800, Ordering::Relaxed);
        stats.counters.reconnects.fetch_add(2, Ordering::Relaxed);
        let mut sent = 0;
        let mut seen = observed(Vec::new());
        seen.windows.push(stats.take_window(1, &mut sent));
        let report = Report::build(&config(Mode::Steady), &stats, seen);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            keys(&json),
            [
                "abnormal_closes",
                "agents",
                "closes",
                "elapsed_s",
                "errors",
                "gateway",
                "handshake",
                "interrupted",
                "parameters",
                "ping",
                "ramp_knee_agents",
                "ramp_steps",
                "round_trip",
                "round_trip_steady",
                "soak",
                "storm",
                "throughput",
                "windows",
            ]
        );
        assert_eq!(
            keys(&json["parameters"]),
            [
                "admin",
                "agents",
                "attempts",
                "connect_rate",
                "duration_s",
                "envelope",
                "interval_s",
                "jitter_ms",
                "max_error_rate",
                "max_p99_ms",
                "mode",
                "msg_rate",
                "payload_bytes",
                "ping_interval_ms",
                "sample_every_s",
                "step",
                "subprotocol",
                "tenants",
                "token_in",
                "tokens",
                "upstream_cluster",
                "url",
            ]
        );
        assert_eq!(
            keys(&json["round_trip"]),
            ["max_ms", "p50_ms", "p95_ms", "p999_ms", "p99_ms", "samples"]
        );
        assert_eq!(
            keys(&json["throughput"]),
            [
                "bytes_down_per_s",
                "bytes_up_per_s",
                "echoed_per_s",
                "events_per_s",
                "sent_per_s"
            ]
        );
        assert_eq!(
            keys(&json["agents"]),
            [
                "churn_per_s",
                "connects",
                "gave_up",
                "peak_connected",
                "reconnects",
                "retried_after",
                "spawned",
                "target"
            ]
        );
        assert_eq!(
            keys(&json["windows"][0]),
            ["agents_connected", "errors", "round_trip", "second", "sent"]
        );
        // The figures themselves.
        assert_eq!(json["parameters"]["mode"], "steady");
        assert_eq!(json["parameters"]["envelope"], "nice");
        assert_eq!(json["parameters"]["ping_interval_ms"], 500);
        assert_eq!(json["parameters"]["tokens"], false);
        assert_eq!(json["parameters"]["token_in"], serde_json::Value::Null);
        assert_eq!(json["round_trip"]["samples"], 4);
        assert_eq!(json["handshake"]["samples"], 1);
        assert_eq!(json["errors"]["http_503"], 1);
        assert_eq!(json["closes"]["1006"], 1);
        assert_eq!(json["abnormal_closes"], 1);
        assert_eq!(json["throughput"]["sent_per_s"], 2.0);
        assert_eq!(json["throughput"]["bytes_up_per_s"], 200.0);
        assert_eq!(json["agents"]["churn_per_s"], 0.5);
        assert_eq!(json["gateway"]["start"]["memory_allocated"], 1_000);
        assert_eq!(json["soak"], serde_json::Value::Null);
        assert_eq!(json["windows"][0]["round_trip"]["samples"], 4);
        let table = report.table();
        assert!(table.contains("round trip"), "{table}");
        assert!(table.contains("errors: http_503=1"), "{table}");
        assert!(table.contains("abnormal 1006: 1"), "{table}");
    }

    #[test]
    fn soak_drift_compares_the_first_interval_with_the_last() {
        let sample = |second, memory, upgrades, reconnects| SoakSample {
            second,
            memory_allocated: memory,
            upgrades_total: upgrades,
            reconnects,
            settled: true,
            ..SoakSample::default()
        };
        let connecting = SoakSample {
            settled: false,
            ..sample(0, Some(10), Some(0.0), 0)
        };
        let soak = Soak::from_samples(vec![
            // The connect wave is not drift.
            connecting.clone(),
            sample(0, Some(1_000), Some(100.0), 0),
            sample(10, Some(1_100), Some(110.0), 10),
            sample(20, None, Some(130.0), 25),
            sample(30, Some(1_500), Some(160.0), 55),
        ]);
        assert_eq!(soak.samples.len(), 5);
        assert_eq!(soak.memory, [(0, 1_000), (10, 1_100), (30, 1_500)]);
        assert_eq!(soak.memory_drift, Some(0.5));
        assert_eq!(soak.memory_drift_bytes, Some(500));
        assert_eq!(soak.churn_per_s_first, Some(1.0));
        assert_eq!(soak.churn_per_s_last, Some(3.0));
        assert_eq!(soak.churn_drift_per_s, Some(2.0));
        assert_eq!(soak.gateway_upgrades_per_s_first, Some(1.0));
        assert_eq!(soak.gateway_upgrades_per_s_last, Some(3.0));
        assert_eq!(soak.gateway_churn_drift_per_s, Some(2.0));

        // Memory going down is a negative drift; no gateway figures, no gateway churn.
        let soak = Soak::from_samples(vec![
            sample(0, Some(2_000), None, 0),
            sample(5, Some(1_000), None, 0),
        ]);
        assert_eq!(soak.memory_drift, Some(-0.5));
        assert_eq!(soak.memory_drift_bytes, Some(-1_000));
        assert_eq!(soak.churn_drift_per_s, Some(0.0));
        assert_eq!(soak.gateway_upgrades_per_s_first, None);

        // One settled sample: nothing to compare.
        let soak = Soak::from_samples(vec![connecting, sample(5, Some(1), Some(1.0), 0)]);
        assert_eq!(soak.memory_drift, None);
        assert_eq!(soak.churn_per_s_first, None);
        assert_eq!(soak.churn_drift_per_s, None);

        // A soak report carries it; the table says it.
        let stats = Stats::default();
        let report = Report::build(
            &config(Mode::Soak),
            &stats,
            observed(vec![
                sample(0, Some(1_000), Some(0.0), 0),
                sample(1, Some(1_010), Some(0.0), 0),
            ]),
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["soak"]["memory_drift_bytes"], 10);
        assert_eq!(json["soak"]["samples"][1]["memory_allocated"], 1_010);
        assert!(report.table().contains("soak: memory drift +1.0% (+10 B)"));
    }
}
