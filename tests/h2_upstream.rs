//! An HTTP/2 platform cluster, with the protocol options that examples/switchboard-h2.yaml
//! ships: agents upgrade over HTTP/1.1, Envoy carries each session as an RFC 8441 extended
//! CONNECT stream and turns the platform's 200 back into a 101, and Switchboard works the same
//! on top (token injection, credential stripping, subprotocols, frames, closes, metrics) while
//! many sessions share one upstream connection per worker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::tokens::{filter_config, token};
use common::ws::{connect, echo, Socket};
use common::{Envoy, GatewaySpec, Platform};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

const AGENTS: usize = 50;
/// Upper bound for any single wait.
const WAIT: Duration = Duration::from_secs(10);

fn spec_for(platform: &Platform, concurrency: u32) -> GatewaySpec<'_> {
    GatewaySpec {
        filter_json: filter_config(json!({
            "token": {
                "cluster": "platform_token",
                "client_id": "switchboard",
                "client_secret": "switchboard-dev-secret"
            }
        })),
        upstream_ports: std::slice::from_ref(&platform.port),
        lb_policy: "MAGLEV",
        concurrency,
        log_level: None,
    }
}

/// A token-bound, echo-only platform.
fn token_bound_platform(name: &str) -> Platform {
    Platform::start(
        name,
        &[
            "--event-rate",
            "0",
            "--require-token",
            "--token-lifetime",
            "3600",
        ],
    )
}

async fn start_envoy(yaml: &str, concurrency: u32) -> Envoy {
    let envoy = Envoy::try_start_yaml(yaml, concurrency, None)
        .unwrap_or_else(|(log, why)| panic!("envoy did not start: {why}\n{log}"));
    envoy.wait_for_platform_token().await;
    envoy
}

async fn mock_health(platform: &Platform) -> Value {
    serde_json::from_str(&common::http_get(&platform.url("/_mock/health")).await).unwrap()
}

/// Polls until `done` holds for the folded stats, then returns them.
async fn wait_for_stats(envoy: &Envoy, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = envoy.stats().await;
        if done(&stats) {
            return stats;
        }
        assert!(Instant::now() < deadline, "{what}:\n{stats}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads until the peer's Close frame; `None` when the stream ended without one.
async fn until_close(socket: &mut Socket) -> Option<Option<u16>> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("a Close or the end in time")
        {
            Some(Ok(Message::Close(frame))) => return Some(frame.map(|f| u16::from(f.code))),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_agents_share_at_most_two_upstream_connections_and_keep_every_feature() {
    let platform = token_bound_platform("h2");
    let spec = spec_for(&platform, 2);
    let envoy = start_envoy(&common::h2_upstream_yaml(&spec), 2).await;

    // Every fifth agent presents its token as a subprotocol, offering the platform's beside it;
    // the rest as a Bearer header.
    let mut sockets = Vec::new();
    let mut agent_tokens = Vec::new();
    for i in 0..AGENTS {
        let jwt = token(&format!("agent-{i}"), "acme");
        let (name, value) = if i % 5 == 0 {
            (
                "sec-websocket-protocol",
                format!("bearer.{jwt}, v2.realtime-events"),
            )
        } else {
            ("authorization", format!("Bearer {jwt}"))
        };
        let socket = connect(&envoy.ws_url("/v2/realtime?view=queue"), &[(name, &value)])
            .await
            .unwrap_or_else(|e| panic!("agent {i}: {e}\n{}", envoy.log_text()));
        sockets.push(socket);
        agent_tokens.push(jwt);
    }
    for (i, socket) in sockets.iter_mut().enumerate() {
        echo(socket, &format!("hello-{i}")).await;
    }

    // All sessions live: a stream each, on at most one connection per worker.
    let stats = envoy.stats().await;
    let stat = |name: &str| common::stat_value(&stats, name);
    let cx_total = stat("cluster.platform.upstream_cx_total");
    eprintln!(
        "{AGENTS} live sessions over {cx_total} upstream connection(s) (http2 {}, http1 {})",
        stat("cluster.platform.upstream_cx_http2_total"),
        stat("cluster.platform.upstream_cx_http1_total"),
    );
    assert!(
        (1..=2).contains(&cx_total),
        "upstream connections: {cx_total}"
    );
    assert_eq!(stat("cluster.platform.upstream_cx_http2_total"), cx_total);
    assert_eq!(stat("cluster.platform.upstream_cx_http1_total"), 0);
    assert_eq!(stat("cluster.platform.upstream_cx_active"), cx_total);
    assert_eq!(stat("cluster.platform.upstream_rq_active"), AGENTS as i64);
    // The platform's 200 reached the filter as a 101 with `Upgrade: websocket`.
    assert_eq!(
        stat("wasmcustom.switchboard.upgrades.result.accepted"),
        AGENTS as i64
    );
    assert_eq!(
        stat("wasmcustom.switchboard.upgrades.result.upstream_2xx"),
        0
    );
    assert_eq!(
        stat("wasmcustom.switchboard.sessions_active"),
        AGENTS as i64
    );

    // The platform saw HTTP/2 streams on as many connections as Envoy opened, each with the
    // injected platform token (it refused none) and without the agent's credential.
    let health = mock_health(&platform).await;
    assert_eq!(health["h2_connections"], cx_total, "{health}");
    assert_eq!(health["h2_connections_open"], cx_total, "{health}");
    assert_eq!(health["h2_sessions"], AGENTS, "{health}");
    assert_eq!(health["h2_sessions_open"], AGENTS, "{health}");
    assert_eq!(health["h1_sessions"], 0, "{health}");
    assert_eq!(health["rejected_upgrades_no_token"], 0, "{health}");
    let sessions = platform.sessions().await;
    assert_eq!(sessions.len(), AGENTS);
    let header = |record: &Value, name: &str| -> Vec<String> {
        record["headers"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|pair| pair[0] == name)
            .map(|pair| pair[1].as_str().unwrap().to_string())
            .collect()
    };
    for record in &sessions {
        assert_eq!(record["http_version"], "HTTP/2", "{record}");
        assert_eq!(record["method"], "CONNECT", "{record}");
        assert_eq!(record["path"], "/v2/realtime?view=queue", "{record}");
        assert_eq!(record["token_required"], true, "{record}");
        assert!(record["token_expires_at_ms"].is_u64(), "{record}");
        let authorization = header(record, "authorization");
        assert_eq!(authorization.len(), 1, "{record}");
        assert!(authorization[0].starts_with("Bearer "), "{record}");
        assert_eq!(header(record, "x-agent-routing-key").len(), 1, "{record}");
        // Envoy forwards the agent's key on the CONNECT; RFC 8441 has no use for it.
        assert_eq!(header(record, "sec-websocket-key").len(), 1, "{record}");
        let text = record.to_string();
        assert!(
            agent_tokens.iter().all(|jwt| !text.contains(jwt.as_str())),
            "an agent credential reached the platform: {record}"
        );
    }
    // The agents that offered a subprotocol beside their credential have only the platform's
    // left; for the others the gateway offers the profile's own: the platform sees one offer on
    // every stream, never a `bearer.` entry.
    for record in &sessions {
        assert_eq!(
            header(record, "sec-websocket-protocol"),
            ["v2.realtime-events"],
            "{record}"
        );
    }

    // The closing handshake runs through the stream both ways.
    for (i, socket) in sockets.iter_mut().enumerate() {
        socket
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            })))
            .await
            .unwrap();
        assert_eq!(until_close(socket).await, Some(Some(1000)), "agent {i}");
    }
    drop(sockets);
    let stats = wait_for_stats(&envoy, "sessions did not end", |stats| {
        common::stat_value(stats, "wasmcustom.switchboard.sessions_active") == 0
            && common::stat_value(stats, "cluster.platform.upstream_rq_active") == 0
    })
    .await;
    let stat = |name: &str| common::stat_value(&stats, name);
    assert_eq!(
        stat("wasmcustom.switchboard.closes.side.client.code.1000"),
        AGENTS as i64,
        "{stats}"
    );
    // Streams end, their connections stay for the next agents.
    assert_eq!(stat("cluster.platform.upstream_cx_active"), cx_total);
    let deadline = Instant::now() + WAIT;
    while mock_health(&platform).await["h2_sessions_open"] != 0 {
        assert!(
            Instant::now() < deadline,
            "{}",
            mock_health(&platform).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let auth = format!("Bearer {}", token("agent-late", "acme"));
    let mut late = connect(&envoy.ws_url("/v2/realtime"), &[("authorization", &auth)])
        .await
        .unwrap();
    echo(&mut late, "late").await;
    assert_eq!(
        envoy.stat("cluster.platform.upstream_cx_total").await,
        cx_total
    );
    drop(late);
    envoy.assert_no_vm_failure();
}

/// One scripted set of sessions through a gateway to `platform`: clean closes, a platform that
/// breaks the protocol, an agent that vanishes, and an upgrade the platform refuses. Returns
/// the filter's counters once every session has ended.
async fn scripted_sessions(envoy: &Envoy) -> BTreeMap<String, i64> {
    let bearer = |agent: &str| format!("Bearer {}", token(agent, "acme"));
    for agent in ["a1", "a2"] {
        let auth = bearer(agent);
        let mut socket = connect(&envoy.ws_url("/v2/realtime"), &[("authorization", &auth)])
            .await
            .unwrap();
        for n in 0..3 {
            echo(&mut socket, &format!("{agent} {n}")).await;
        }
        socket.send(Message::Close(None)).await.unwrap();
        assert_eq!(until_close(&mut socket).await, Some(None), "{agent}");
    }
    // The platform sends a masked frame: the gateway closes the agent with 1002.
    let auth = bearer("b1");
    let mut violated = connect(
        &envoy.ws_url("/v2/realtime?fault=masked"),
        &[("authorization", &auth)],
    )
    .await
    .unwrap();
    assert_eq!(until_close(&mut violated).await, Some(Some(1002)));
    drop(violated);
    // The agent goes without a Close.
    let auth = bearer("c1");
    let mut vanished = connect(&envoy.ws_url("/v2/realtime"), &[("authorization", &auth)])
        .await
        .unwrap();
    echo(&mut vanished, "then gone").await;
    drop(vanished);
    // The platform refuses the upgrade (a query it cannot honour): the agent sees its 400.
    let auth = bearer("d1");
    let (status, _, _) = common::ws::refused_status(
        &envoy.ws_url("/v2/realtime?fault=nonsense"),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(status, 400);

    let stats = wait_for_stats(envoy, "sessions did not end", |stats| {
        common::stat_value(stats, "wasmcustom.switchboard.sessions_active") == 0
            && common::stat_value(stats, "wasmcustom.switchboard.upgrades.result.accepted") == 4
    })
    .await;
    // Counters of what happened to sessions and frames; timings and token refreshes vary.
    stats
        .lines()
        .filter_map(|line| line.split_once(": "))
        .filter(|(name, _)| {
            [
                "upgrades.",
                "closes.",
                "frames.",
                "violations.",
                "sessions_active",
            ]
            .iter()
            .any(|family| {
                name.strip_prefix("wasmcustom.switchboard.")
                    .is_some_and(|rest| rest.starts_with(family))
            })
        })
        .filter_map(|(name, value)| Some((name.to_string(), value.trim().parse::<i64>().ok()?)))
        .filter(|(_, value)| *value != 0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_filter_counts_the_same_over_http2_as_over_http1() {
    let mut counted = Vec::new();
    for h2 in [false, true] {
        let platform = token_bound_platform(if h2 { "h2" } else { "h1" });
        let spec = spec_for(&platform, 1);
        let yaml = if h2 {
            common::h2_upstream_yaml(&spec)
        } else {
            common::gateway_yaml(&spec, &common::wasm_path())
        };
        let envoy = start_envoy(&yaml, 1).await;
        let counters = scripted_sessions(&envoy).await;
        let http2 = envoy.stat("cluster.platform.upstream_cx_http2_total").await;
        assert_eq!(http2, i64::from(h2), "upstream HTTP/2 connections");
        let health = mock_health(&platform).await;
        let (sessions_h2, sessions_h1) = if h2 { (4, 0) } else { (0, 4) };
        assert_eq!(health["h2_sessions"], sessions_h2, "{health}");
        assert_eq!(health["h1_sessions"], sessions_h1, "{health}");
        envoy.assert_no_vm_failure();
        counted.push(counters);
    }
    let (over_h1, over_h2) = (&counted[0], &counted[1]);
    eprintln!("filter counters over HTTP/1.1: {over_h1:#?}");
    assert_eq!(
        over_h1.get("wasmcustom.switchboard.upgrades.result.accepted"),
        Some(&4)
    );
    assert_eq!(over_h1, over_h2, "HTTP/1.1 (left) and HTTP/2 (right)");
}
