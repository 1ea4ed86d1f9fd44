//! The Prometheus and Grafana assets against a live Envoy: every metric the shipped recording
//! and alert rules and the dashboard query exists in `/stats/prometheus` after a scripted
//! session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
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
    envoy.wait_for_platform_token().await;
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

/// `/stats/prometheus` as (name, labels) → value.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest.trim_end_matches('}');
                let labels = body
                    .split("\",")
                    .filter_map(|pair| {
                        let (k, v) = pair.split_once("=\"")?;
                        Some((k.to_string(), v.trim_end_matches('"').to_string()))
                    })
                    .collect();
                (name.to_string(), labels)
            }
        };
        out.push((name, labels, value));
    }
    out
}

/// The value of the one series named `name` whose labels are exactly `labels` plus the
/// gateway's platform and region (0 when absent).
fn value(
    samples: &[(String, BTreeMap<String, String>, f64)],
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let mut wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    wanted.insert("platform".into(), "genesys".into());
    wanted.insert("region".into(), "eu_west".into());
    let hits: Vec<f64> = samples
        .iter()
        .filter(|(n, l, _)| n == name && *l == wanted)
        .map(|(_, _, v)| *v)
        .collect();
    assert!(
        hits.len() <= 1,
        "{name} {wanted:?} appears {} times",
        hits.len()
    );
    hits.first().copied().unwrap_or(0.0)
}

/// Reads until the close frame (≤ 10 s); the close code.
async fn until_close(socket: &mut common::ws::Socket) -> Option<u16> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while let Ok(Some(next)) = tokio::time::timeout_at(deadline, socket.next()).await {
        match next {
            Ok(Message::Close(frame)) => return frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_sessions_leave_exact_metric_values_and_one_log_line_each() {
    use futures_util::SinkExt;
    use sha2::Digest;
    use tokio_tungstenite::tungstenite::Message;

    // No unsolicited platform events: every frame is one the script sends or provokes.
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = Envoy::start(&GatewaySpec {
        filter_json: filter_config(json!({
            "origin": { "allowed": ["https://desk.example.com"], "allow_missing": true },
            "admission": { "max_sessions_per_agent": 1 },
            "metrics": { "region": "eu_west", "tenants": ["acme"] }
        })),
        upstream_ports: &[platform.port],
        lb_policy: "MAGLEV",
        concurrency: 2,
        log_level: None,
    });
    let url = envoy.ws_url("/v2/realtime");
    let acme_token = token("agent-1", "acme");
    let acme = format!("Bearer {acme_token}");

    // acme, agent-1: three echoes, then the client closes with 1000.
    let mut session = connect(&url, &[("authorization", &acme)]).await.unwrap();
    for text in ["one", "two", "three"] {
        echo(&mut session, text).await;
    }
    // A second session of the same agent passes the cap: 409, counted under acme.
    let (status, _, _) = common::ws::refused_status(&url, &[("authorization", &acme)]).await;
    assert_eq!(status, 409);
    session.send(Message::Close(None)).await.unwrap();
    assert_eq!(
        until_close(&mut session).await,
        None,
        "the platform answers an empty close"
    );
    drop(session);

    // globex is not on the tenant list: its series are `other`. The platform sends a masked
    // frame at once; the gateway closes the client with 1002.
    let globex = format!("Bearer {}", token("agent-2", "globex"));
    let mut violated = connect(
        &envoy.ws_url("/v2/realtime?fault=masked"),
        &[("authorization", &globex)],
    )
    .await
    .unwrap();
    assert_eq!(until_close(&mut violated).await, Some(1002));
    drop(violated);

    // Refused before authentication: no tenant.
    let (status, _, _) = common::ws::refused_status(&url, &[]).await;
    assert_eq!(status, 401);
    let (status, _, _) = common::ws::refused_status(
        &url,
        &[
            ("authorization", &acme),
            ("origin", "https://evil.example.com"),
        ],
    )
    .await;
    assert_eq!(status, 403);

    // Both sessions end; the gauge goes back down by increments on whichever worker ran them.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = envoy.prometheus().await;
        let all = samples(&text);
        let active: f64 = all
            .iter()
            .filter(|(n, _, _)| n == "switchboard_sessions_active")
            .map(|(_, _, v)| v)
            .sum();
        let closes: f64 = all
            .iter()
            .filter(|(n, _, _)| n == "switchboard_closes")
            .map(|(_, _, v)| v)
            .sum();
        if active == 0.0 && closes >= 3.0 {
            break;
        }
        assert!(Instant::now() < deadline, "sessions did not end:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let text = envoy.prometheus().await;
    let all = samples(&text);
    let v = |name: &str, labels: &[(&str, &str)]| value(&all, name, labels);
    type Check<'a> = (&'a str, Vec<(&'a str, &'a str)>, f64);
    let checks: Vec<Check> = vec![
        (
            "switchboard_upgrades",
            vec![("tenant", "acme"), ("result", "accepted")],
            1.0,
        ),
        (
            "switchboard_upgrades",
            vec![("tenant", "acme"), ("result", "duplicate")],
            1.0,
        ),
        (
            "switchboard_upgrades",
            vec![("tenant", "other"), ("result", "accepted")],
            1.0,
        ),
        (
            "switchboard_upgrades",
            vec![("tenant", "none"), ("result", "origin")],
            1.0,
        ),
        (
            "switchboard_upgrades",
            vec![("tenant", "none"), ("result", "auth")],
            1.0,
        ),
        (
            "switchboard_auth_failures",
            vec![("tenant", "none"), ("reason", "missing")],
            1.0,
        ),
        (
            "switchboard_backpressure",
            vec![("tenant", "acme"), ("result", "duplicate")],
            1.0,
        ),
        ("switchboard_sessions_active", vec![("tenant", "acme")], 0.0),
        (
            "switchboard_sessions_active",
            vec![("tenant", "other")],
            0.0,
        ),
        // 3 texts + the close each way.
        (
            "switchboard_frames",
            vec![("tenant", "acme"), ("dir", "up")],
            4.0,
        ),
        (
            "switchboard_frames",
            vec![("tenant", "acme"), ("dir", "down")],
            4.0,
        ),
        (
            "switchboard_closes",
            vec![("tenant", "acme"), ("side", "client"), ("code", "1005")],
            1.0,
        ),
        (
            "switchboard_closes",
            vec![("tenant", "acme"), ("side", "platform"), ("code", "1005")],
            1.0,
        ),
        (
            "switchboard_violations",
            vec![("tenant", "other"), ("code", "1002")],
            1.0,
        ),
        (
            "switchboard_closes",
            vec![("tenant", "other"), ("side", "gateway"), ("code", "1002")],
            1.0,
        ),
        (
            "switchboard_event_drops",
            vec![("tenant", "acme"), ("reason", "duplicate")],
            0.0,
        ),
    ];
    let mut wrong = Vec::new();
    for (name, labels, expected) in &checks {
        let got = v(name, labels);
        if got != *expected {
            wrong.push(format!("{name} {labels:?}: {got}, expected {expected}"));
        }
    }
    // No series carries an agent or a session id.
    for (name, labels, _) in &all {
        if name.starts_with("switchboard_") {
            for k in labels.keys() {
                assert!(
                    [
                        "platform",
                        "region",
                        "tenant",
                        "result",
                        "reason",
                        "dir",
                        "code",
                        "side",
                        "auth_path",
                        "le",
                        "quantile"
                    ]
                    .contains(&k.as_str()),
                    "{name} has label {k}"
                );
            }
        }
    }
    assert!(wrong.is_empty(), "{}\n\n{text}", wrong.join("\n"));

    // One session line per ended session: tenant, hashed agent, totals, first close, reason.
    let log = envoy.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| l.find("{\"").map(|i| &l[i..]))
        .filter_map(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        .filter(|v| v["event"] == "session_end")
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    let digest = sha2::Sha256::digest([&[0u8][..], b"agent-1"].concat());
    let hash: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let acme_line = lines.iter().find(|l| l["tenant"] == "acme").unwrap();
    assert_eq!(acme_line["agent"], hash.as_str());
    assert_eq!(acme_line["frames_up"], 4);
    assert_eq!(acme_line["frames_down"], 4);
    assert_eq!(acme_line["close_side"], "client");
    assert_eq!(acme_line["close_code"], 1005);
    assert_eq!(acme_line["reason"], "closed");
    // Masked client frames: 3 texts (2 + 4 + len) and an empty close (2 + 4).
    assert_eq!(acme_line["bytes_up"], (6 + 3) + (6 + 3) + (6 + 5) + 6);
    assert_eq!(acme_line["bytes_down"], (2 + 3) + (2 + 3) + (2 + 5) + 2);
    let other_line = lines.iter().find(|l| l["tenant"] == "other").unwrap();
    assert_eq!(other_line["reason"], "protocol_violation");
    assert_eq!(other_line["close_side"], "gateway");
    assert_eq!(other_line["close_code"], 1002);
    assert!(!log.contains(&acme_token), "an agent token reached the log");
    assert!(
        !log.contains("agent-1\""),
        "an agent id reached the session log"
    );
    envoy.assert_no_vm_failure();
}
