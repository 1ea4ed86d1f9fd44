//! The Prometheus and Grafana assets against a live Envoy: every metric the shipped recording
//! and alert rules and the dashboard query exists in `/stats/prometheus` after a scripted
//! session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::tokens::{filter_config, token};
use common::ws::{connect, echo};
use common::{Envoy, GatewaySpec, Platform};
use serde_json::json;

/// Metric names (`switchboard_…`) a rules file queries; recorded series (`switchboard:…`) and
/// label values are not metrics.
fn queried_metrics(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices("switchboard_") {
        if start > 0
            && text[..start].ends_with(|c: char| c.is_ascii_alphanumeric() || c == ':' || c == '"')
        {
            continue;
        }
        let name: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        names.insert(name);
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_rules_and_the_dashboard_query_is_exported() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let rules =
        std::fs::read_to_string(root.join("examples/prometheus/switchboard.rules.yml")).unwrap();
    let dashboard =
        std::fs::read_to_string(root.join("examples/grafana/switchboard.json")).unwrap();
    let dashboard_json: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    assert_eq!(dashboard_json["panels"].as_array().unwrap().len(), 7);
    let from_rules = queried_metrics(&rules);
    let from_dashboard = queried_metrics(&dashboard);
    assert!(from_rules.len() >= 7, "{from_rules:?}");
    assert!(from_dashboard.len() >= 8, "{from_dashboard:?}");
    let wanted: BTreeSet<String> = from_rules.union(&from_dashboard).cloned().collect();

    let platform = Platform::start("p1", &["--event-rate", "5", "--token-lifetime", "3600"]);
    let envoy = Envoy::start(&GatewaySpec {
        filter_json: filter_config(json!({
            "token": {
                "cluster": "platform_token",
                "client_id": "switchboard",
                "client_secret": "switchboard-dev-secret"
            },
            "backpressure": { "default": { "down_frames_per_sec": 1000 } }
        })),
        upstream_ports: &[platform.port],
        lb_policy: "MAGLEV",
        concurrency: 2,
        log_level: None,
    });
    let deadline = Instant::now() + Duration::from_secs(15);
    while envoy
        .stat("wasmcustom.switchboard.token_refreshes.result.ok")
        .await
        < 1
    {
        assert!(Instant::now() < deadline, "no platform token");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let auth = format!("Bearer {}", token("agent-1", "acme"));
    let mut socket = connect(&envoy.ws_url("/v2/realtime"), &[("authorization", &auth)])
        .await
        .unwrap();
    echo(&mut socket, "hello").await;

    let exported: BTreeSet<String> = envoy
        .prometheus()
        .await
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next().map(str::to_string))
        .collect();
    let missing: Vec<&String> = wanted
        .iter()
        .filter(|name| !exported.contains(*name))
        .collect();
    assert!(missing.is_empty(), "queried but not exported: {missing:?}");
}

#[test]
fn the_name_scanner_skips_recorded_series_and_labels() {
    let names = queried_metrics(
        r#"expr: sum(rate(switchboard_frames{dir="down"}[10s])) / switchboard:active_connections + switchboard_queue_held_bytes"#,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["switchboard_frames", "switchboard_queue_held_bytes"]
    );
}
