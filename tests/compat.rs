//! The smoke run `make test-compat` repeats on every supported Envoy release, one release at a
//! time (SWITCHBOARD_ENVOY points at that release's binary): an accepted upgrade whose frames
//! round trip, refusals with the right status, the platform token injected, and the metrics in
//! `/stats/prometheus`. Each case starts its own Envoy, so a release that breaks one feature
//! names it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::tokens::token;
use common::ws::{connect, echo, refused_status};
use common::{gateway, Platform};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

fn agent_auth() -> String {
    format!("Bearer {}", token("agent-1", "acme"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn valid_agent_token_is_accepted_and_frames_round_trip() {
    let platform = Platform::start("compat", &["--event-rate", "0"]);
    let envoy = gateway(&platform, json!({}));
    let mut socket = connect(
        &envoy.ws_url("/v2/realtime"),
        &[("authorization", &agent_auth())],
    )
    .await
    .expect("101 for a valid agent token");
    echo(&mut socket, "hello").await;
    echo(&mut socket, "again").await;
    socket.send(Message::Close(None)).await.unwrap();

    let sessions = platform.sessions().await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["agent"], "agent-1", "{sessions:?}");
    envoy.assert_no_vm_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_are_refused_with_the_right_status() {
    let platform = Platform::start("compat", &["--event-rate", "0"]);
    let envoy = gateway(
        &platform,
        json!({ "origin": { "allowed": ["https://desk.example.com"], "allow_missing": true } }),
    );
    let url = envoy.ws_url("/v2/realtime");
    let auth = agent_auth();
    // (case, request headers, expected status)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16);
    let cases: [Case; 4] = [
        ("no token", vec![], 401),
        (
            "not a JWT",
            vec![("authorization", "Bearer not.a.jwt")],
            401,
        ),
        (
            "origin not on the list",
            vec![
                ("authorization", &auth),
                ("origin", "https://evil.example.com"),
            ],
            403,
        ),
        (
            "early data (RFC 8470)",
            vec![("authorization", &auth), ("early-data", "1")],
            425,
        ),
    ];
    for (case, headers, expected) in &cases {
        let (status, _, body) = refused_status(&url, headers).await;
        assert_eq!(status, *expected, "{case}: {body}");
    }
    assert!(
        platform.sessions().await.is_empty(),
        "a refused upgrade reached the platform"
    );
    envoy.assert_no_vm_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_token_is_fetched_and_injected() {
    let platform = Platform::start("compat", &["--event-rate", "0", "--require-token"]);
    let envoy = gateway(
        &platform,
        json!({
            "token": {
                "cluster": "platform_token",
                "client_id": "switchboard",
                "client_secret": "switchboard-dev-secret"
            }
        }),
    );
    envoy.wait_for_platform_token().await;
    // The platform refuses any upgrade without a token it issued, so acceptance means the
    // filter fetched one from the `platform_token` cluster and put it on the upgrade.
    let mut socket = connect(
        &envoy.ws_url("/v2/realtime"),
        &[("authorization", &agent_auth())],
    )
    .await
    .expect("accepted by a platform that requires its own token");
    echo(&mut socket, "hello").await;
    socket.send(Message::Close(None)).await.unwrap();

    let sessions = platform.sessions().await;
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["token_required"], true, "{sessions:?}");
    assert!(
        sessions[0]["token_expires_at_ms"].as_u64().is_some(),
        "{sessions:?}"
    );
    envoy.assert_no_vm_failure();
}

/// One Prometheus sample: name, labels, value.
type Sample = (String, Vec<(String, String)>, f64);

/// Every sample in a Prometheus text exposition.
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            None => (series, Vec::new()),
            Some((name, rest)) => {
                let labels = rest
                    .trim_end_matches('}')
                    .split("\",")
                    .filter_map(|pair| {
                        let (k, v) = pair.split_once("=\"")?;
                        Some((k.to_string(), v.trim_end_matches('"').to_string()))
                    })
                    .collect();
                (name, labels)
            }
        };
        out.push((name.to_string(), labels, value));
    }
    out
}

/// The sum of every series named `name` whose labels include `result` (when given). Other
/// labels (tenant, region, platform, dir, ...) are ignored so label changes do not break the
/// smoke run.
fn total(text: &str, name: &str, result: Option<&str>) -> f64 {
    samples(text)
        .iter()
        .filter(|(n, labels, _)| {
            n == name
                && result
                    .is_none_or(|wanted| labels.iter().any(|(k, v)| k == "result" && v == wanted))
        })
        .map(|(_, _, value)| value)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exported_to_prometheus() {
    let platform = Platform::start("compat", &["--event-rate", "0"]);
    let envoy = gateway(&platform, json!({}));
    let mut socket = connect(
        &envoy.ws_url("/v2/realtime"),
        &[("authorization", &agent_auth())],
    )
    .await
    .expect("101 for a valid agent token");
    echo(&mut socket, "one").await;
    echo(&mut socket, "two").await;

    // While the session is open: one accepted upgrade, two frames each way, one active session.
    let text = envoy.prometheus().await;
    assert!(
        total(&text, "switchboard_upgrades", Some("accepted")) >= 1.0,
        "no switchboard_upgrades{{result=\"accepted\"}} sample:\n{text}"
    );
    assert!(
        total(&text, "switchboard_frames", None) >= 4.0,
        "switchboard_frames missing or short:\n{text}"
    );
    assert_eq!(
        total(&text, "switchboard_sessions_active", None),
        1.0,
        "{text}"
    );

    // After the close the gauge goes back to 0 (bounded wait).
    socket.send(Message::Close(None)).await.unwrap();
    drop(socket);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = envoy.prometheus().await;
        if total(&text, "switchboard_sessions_active", None) == 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "switchboard_sessions_active did not return to 0:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    envoy.assert_no_vm_failure();
}
