//! The frame engine through a real Envoy: tagging, protocol violations, dedup and resume across a
//! reconnect, the cross-agent guard, and byte-exact pass-through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::tokens::token;
use common::ws::{connect, Socket};
use common::{gateway, Platform};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

async fn next_message(socket: &mut Socket) -> Option<Message> {
    match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
        Ok(Some(Ok(message))) => Some(message),
        Ok(_) => None,
        Err(_) => panic!("no message within 10 s"),
    }
}

/// Reads text messages (JSON) until `count` events were seen or the stream ends.
async fn events(socket: &mut Socket, count: usize) -> Vec<serde_json::Value> {
    let mut seen = Vec::new();
    while seen.len() < count {
        match next_message(socket).await {
            Some(Message::Text(text)) => {
                let value: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                if value.get("metadata").is_some() {
                    seen.push(value);
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_json_is_tagged_and_everything_else_passes_byte_exact() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let auth = format!("Bearer {}", token("agent-1", "acme"));
    let mut socket = connect(&envoy.ws_url("/v2/realtime"), &[("authorization", &auth)])
        .await
        .unwrap();

    socket
        .send(Message::text(
            r#"{"action":"ack","routing_key":"spoofed","n":[1, 2.50]}"#,
        ))
        .await
        .unwrap();
    let Some(Message::Text(echo)) = next_message(&mut socket).await else {
        panic!("no echo")
    };
    let echoed: serde_json::Value = serde_json::from_str(echo.as_str()).unwrap();
    let key = echoed["routing_key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 32, "{echoed}");
    assert_eq!(
        echoed,
        serde_json::json!({"routing_key": key, "action": "ack", "n": [1, 2.50]})
    );

    // Binary, non-JSON text and a large message come back byte-identical.
    let binary: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    socket.send(Message::binary(binary.clone())).await.unwrap();
    let Some(Message::Binary(back)) = next_message(&mut socket).await else {
        panic!("no binary echo")
    };
    assert_eq!(back.as_ref(), binary.as_slice());
    socket.send(Message::text("plain words")).await.unwrap();
    let Some(Message::Text(back)) = next_message(&mut socket).await else {
        panic!("no text echo")
    };
    assert_eq!(back.as_str(), "plain words");

    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.tagging.result.tagged")
            .await,
        1
    );
    assert!(envoy.stat("wasmcustom.switchboard.frames.dir.up").await >= 3);
    envoy.assert_no_vm_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_violation_closes_the_client_with_1002_and_others_carry_on() {
    let platform = Platform::start("p1", &["--event-rate", "2"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let healthy_auth = format!("Bearer {}", token("agent-ok", "acme"));
    let mut healthy = connect(
        &envoy.ws_url("/v2/realtime"),
        &[("authorization", &healthy_auth)],
    )
    .await
    .unwrap();

    let auth = format!("Bearer {}", token("agent-bad", "acme"));
    let mut socket = connect(
        &envoy.ws_url("/v2/realtime?fault=masked"),
        &[("authorization", &auth)],
    )
    .await
    .unwrap();
    let mut close_code = None;
    for _ in 0..20 {
        match next_message(&mut socket).await {
            Some(Message::Close(frame)) => {
                close_code = frame.map(|f| u16::from(f.code));
                break;
            }
            Some(_) => {}
            None => break,
        }
    }
    assert_eq!(close_code, Some(1002));
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.violations.code.1002")
            .await,
        1
    );

    // The other session on the same Envoy still gets its events.
    assert_eq!(events(&mut healthy, 2).await.len(), 2);
    envoy.assert_no_vm_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misrouted_events_never_reach_the_agent() {
    let platform = Platform::start("p1", &["--event-rate", "20"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let auth = format!("Bearer {}", token("agent-m", "acme"));
    let mut socket = connect(
        &envoy.ws_url("/v2/realtime?fault=misrouted"),
        &[("authorization", &auth)],
    )
    .await
    .unwrap();
    let seen = events(&mut socket, 12).await;
    assert_eq!(seen.len(), 12);
    for event in &seen {
        assert_eq!(event["data"]["agentId"], "agent-m", "{event}");
    }
    assert!(
        envoy
            .stat("wasmcustom.switchboard.event_drops.reason.misrouted")
            .await
            >= 4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_and_reconnect_loses_no_event_and_repeats_none() {
    let platform = Platform::start("p1", &["--event-rate", "20", "--replay-overlap", "3"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let url = envoy.ws_url("/v2/realtime");
    let auth = format!("Bearer {}", token("agent-r", "acme"));

    let mut first = connect(&url, &[("authorization", &auth)]).await.unwrap();
    let before = events(&mut first, 8).await;
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;

    // No since/cursor from the client: the gateway adds the last delivered position, the
    // platform replays with overlap, and the duplicates are dropped.
    let mut second = connect(&url, &[("authorization", &auth)]).await.unwrap();
    let after = events(&mut second, 12).await;
    let seqs: Vec<u64> = before
        .iter()
        .chain(after.iter())
        .map(|e| e["metadata"]["seq"].as_u64().unwrap())
        .collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "every event exactly once, in order");
    let record = platform.sessions().await.into_iter().last().unwrap();
    assert!(
        record["path"].as_str().unwrap().contains("since="),
        "{record}"
    );
    // The platform replays the three events before the cursor; exactly those are dropped.
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.event_drops.reason.duplicate")
            .await,
        3
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nice_profile_resumes_by_cursor_exactly_once() {
    let platform = Platform::start("p1", &["--event-rate", "20", "--envelope", "nice"]);
    let envoy = gateway(&platform, serde_json::json!({ "profile": "nice" }));
    let url = envoy.ws_url("/ws/events");
    let auth = format!("Bearer {}", token("agent-n", "acme"));
    let mut seqs = Vec::new();
    for round in 0..2 {
        let mut socket = connect(&url, &[("authorization", &auth)]).await.unwrap();
        let mut got = 0;
        while got < 8 {
            match next_message(&mut socket).await {
                Some(Message::Text(text)) => {
                    let event: serde_json::Value = serde_json::from_str(text.as_str()).unwrap();
                    if let Some(seq) = event["payload"]["seq"].as_u64() {
                        assert_eq!(event["payload"]["agentId"], "agent-n");
                        seqs.push(seq);
                        got += 1;
                    }
                }
                Some(_) => {}
                None => panic!("round {round}: stream ended"),
            }
        }
        drop(socket);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        seqs,
        (1..=16).collect::<Vec<u64>>(),
        "every event exactly once, in order"
    );
    let record = platform.sessions().await.into_iter().last().unwrap();
    assert!(
        record["path"].as_str().unwrap().contains("cursor=8"),
        "{record}"
    );
    // The platform replays the three events before the cursor; exactly those are dropped.
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.event_drops.reason.duplicate")
            .await,
        3
    );
}
