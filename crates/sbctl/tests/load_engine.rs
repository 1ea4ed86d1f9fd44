//! `sbctl bench` end to end against a real `sbctl mock-platform` process: the run completes and
//! reports (JSON, table, PNG). It asserts that the tool works, never how fast.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::Mock;

/// Runs `sbctl bench` with a JSON report and a chart; the report and the printed table.
fn bench(args: &[&str]) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let run = support::bench(dir.path(), args);
    let table = run.stdout();
    (run.report, table)
}

#[test]
fn a_steady_run_reports_latency_throughput_and_clean_closes() {
    let platform = Mock::start(&["--event-rate", "2"]);
    let url = platform.url();
    let (report, table) = bench(&[
        "--url",
        &url,
        "--no-token",
        "--agents",
        "20",
        "--duration",
        "3s",
        "--msg-rate",
        "5",
        "--ping-interval",
        "500ms",
        "--envelope",
        "nice",
    ]);
    assert_eq!(report["parameters"]["agents"], 20);
    assert_eq!(report["parameters"]["envelope"], "nice");
    assert_eq!(report["agents"]["peak_connected"], 20);
    assert_eq!(report["handshake"]["samples"], 20);
    assert!(
        report["round_trip"]["samples"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(report["ping"]["samples"].as_u64().unwrap() > 0, "{report}");
    assert!(report["throughput"]["events_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_eq!(report["abnormal_closes"], 0);
    assert_eq!(report["closes"]["1000"], 20, "{report}");
    assert!(!report["windows"].as_array().unwrap().is_empty());
    assert!(table.contains("round trip"), "{table}");
}

#[test]
fn a_storm_drops_everyone_and_reconnects_them() {
    let platform = Mock::start(&["--event-rate", "0"]);
    let url = platform.url();
    let (report, table) = bench(&[
        "--url",
        &url,
        "--no-token",
        "--mode",
        "storm",
        "--agents",
        "30",
        "--duration",
        "4s",
        "--connect-rate",
        "0",
    ]);
    assert_eq!(report["agents"]["reconnects"], 30, "{report}");
    assert_eq!(report["agents"]["connects"], 60, "{report}");
    assert!(report["storm"]["at_second"].as_u64().is_some(), "{report}");
    assert!(table.contains("storm:"), "{table}");
}

#[test]
fn a_ramp_adds_steps_until_the_ceiling_and_reports_the_knee() {
    let platform = Mock::start(&["--event-rate", "0"]);
    let url = platform.url();
    let (report, table) = bench(&[
        "--url",
        &url,
        "--no-token",
        "--mode",
        "ramp",
        "--agents",
        "15",
        "--step",
        "5",
        "--interval",
        "1s",
        "--duration",
        "10s",
        "--msg-rate",
        "5",
        // A loopback echo is far below this; the ramp ends at the ceiling, not a threshold.
        "--max-p99",
        "1000",
    ]);
    let steps = report["ramp_steps"].as_array().unwrap();
    assert_eq!(
        steps
            .iter()
            .map(|s| s["agents"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [5, 10, 15],
        "{report}"
    );
    assert!(steps.iter().all(|s| s["ok"] == true), "{report}");
    assert_eq!(report["ramp_knee_agents"], 15);
    assert!(table.contains("ramp knee: 15 agents"), "{table}");
}

#[test]
fn a_ramp_stops_at_the_first_step_over_the_threshold() {
    let platform = Mock::start(&["--event-rate", "0"]);
    let url = platform.url();
    // No round trip is under 1 µs: the first step is over the threshold and there is no knee.
    let (report, _) = bench(&[
        "--url",
        &url,
        "--no-token",
        "--mode",
        "ramp",
        "--agents",
        "50",
        "--step",
        "5",
        "--interval",
        "1s",
        "--duration",
        "10s",
        "--msg-rate",
        "20",
        "--max-p99",
        "0.001",
    ]);
    assert_eq!(
        report["ramp_steps"].as_array().unwrap().len(),
        1,
        "{report}"
    );
    assert_eq!(report["ramp_steps"][0]["ok"], false);
    assert_eq!(report["ramp_knee_agents"], serde_json::Value::Null);
    assert_eq!(report["agents"]["spawned"], 5);
}
