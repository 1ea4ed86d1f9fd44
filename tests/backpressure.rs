//! Backpressure and admission through a real Envoy: a platform burst held to the budget without
//! loss or reordering, 503s above the queue threshold with spread-out Retry-After values, a 1013
//! close at the hold cap, a reconnect storm admitted at the configured rate, the per-agent
//! session cap, and idle sessions closed with 1001.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::tokens::{filter_config, token};
use common::ws::{connect, Socket};
use common::{Envoy, GatewaySpec, Platform};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{Error, Message};

fn start(platform: &Platform, extra: Value) -> Envoy {
    Envoy::start(&GatewaySpec {
        filter_json: filter_config(extra),
        upstream_ports: &[platform.port],
        lb_policy: "MAGLEV",
        concurrency: 2,
        log_level: None,
    })
}

async fn agent(envoy: &Envoy, name: &str) -> Socket {
    let auth = format!("Bearer {}", token(name, "acme"));
    connect(&envoy.ws_url("/v2/realtime"), &[("authorization", &auth)])
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// One upgrade: the socket, or the refusal's status and `Retry-After`.
async fn try_agent(envoy: &Envoy, name: &str) -> Result<Socket, (u16, Option<u64>)> {
    let auth = format!("Bearer {}", token(name, "acme"));
    match connect(&envoy.ws_url("/v2/realtime"), &[("authorization", &auth)]).await {
        Ok(socket) => Ok(socket),
        Err(Error::Http(response)) => Err((
            response.status().as_u16(),
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()?.parse().ok()),
        )),
        Err(other) => panic!("{name}: upgrade failed without a status: {other}"),
    }
}

async fn burst(platform: &Platform, agent: &str, count: u64) {
    let response = reqwest::Client::new()
        .post(platform.url("/_mock/burst"))
        .json(&json!({ "agent": agent, "count": count }))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{:?}",
        response.text().await
    );
}

/// Reads events until `count` arrived, the socket closed, or `within` passed: (seq, arrival)
/// pairs and the close code if one came.
async fn read_events(
    socket: &mut Socket,
    count: usize,
    within: Duration,
) -> (Vec<(u64, Instant)>, Option<u16>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut seen = Vec::new();
    while seen.len() < count {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let value: Value = serde_json::from_str(text.as_str()).unwrap();
                if let Some(seq) = value["data"]["seq"].as_u64() {
                    seen.push((seq, Instant::now()));
                }
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return (seen, Some(frame.map_or(1005, |f| u16::from(f.code))));
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_))) | Ok(None) => return (seen, Some(1006)),
            Err(_) => break,
        }
    }
    (seen, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_far_above_the_budget_is_delivered_whole_in_order_at_the_budget() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let budget = 100.0;
    let envoy = start(
        &platform,
        json!({
            "tick": "20ms",
            "backpressure": {
                "default": { "down_frames_per_sec": budget, "burst": "20ms" },
                "session_hold_bytes": 524288
            }
        }),
    );
    let mut socket = agent(&envoy, "agent-burst").await;
    let memory_before = envoy.stat("server.memory_allocated").await;
    // 300 events at once: the platform sends them in a few milliseconds, hundreds of times the
    // budget's rate.
    let burst_at = Instant::now();
    burst(&platform, "agent-burst", 300).await;
    let sampler = {
        let admin = envoy.admin_port;
        tokio::spawn(async move {
            let mut peak = 0i64;
            for _ in 0..40 {
                let stats = common::http_get(&format!("http://127.0.0.1:{admin}/stats")).await;
                peak = peak.max(common::stat_value(
                    &stats,
                    "wasmcustom.switchboard.queue_held_bytes",
                ));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            peak
        })
    };
    let (events, close) = read_events(&mut socket, 300, Duration::from_secs(15)).await;
    assert_eq!(close, None);
    let seqs: Vec<u64> = events.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=300).collect::<Vec<u64>>(), "lost or reordered");
    // Envoy hands the filter the burst in a few large chunks, and a held chunk goes on whole
    // once its cost is paid: the budget shows over the burst, not between two frames.
    let span = events[299].1 - burst_at;
    let rate = 300.0 / span.as_secs_f64();
    assert!(
        (rate - budget).abs() <= budget * 0.1,
        "delivered at {rate:.1}/s against a budget of {budget}/s"
    );
    let peak = sampler.await.unwrap();
    assert!(peak > 0, "nothing was ever held");
    assert!(peak <= 524_288, "held {peak} bytes, above the cap");
    assert!(
        envoy
            .stat("wasmcustom.switchboard.backpressure.result.held")
            .await
            >= 1
    );
    assert!(
        envoy
            .stat("wasmcustom.switchboard.backpressure.result.resumed")
            .await
            >= 1
    );
    let memory_after = envoy.stat("server.memory_allocated").await;
    assert!(
        memory_after - memory_before < 16 << 20,
        "Envoy grew by {} bytes",
        memory_after - memory_before
    );
    // Everything released once delivered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        envoy.stat("wasmcustom.switchboard.queue_held_bytes").await,
        0
    );
    envoy.assert_no_vm_failure();
}

/// Holds a session's platform→client direction until `held` bytes wait in the queue.
async fn fill_queue(envoy: &Envoy, platform: &Platform, name: &str, events: u64) -> Socket {
    let socket = agent(envoy, name).await;
    burst(platform, name, events).await;
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn above_the_threshold_upgrades_get_503_with_spread_retry_after() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = start(
        &platform,
        json!({
            "backpressure": {
                "default": { "down_frames_per_sec": 1, "burst": "10ms" },
                "max_queue_bytes": 65536,
                "session_hold_bytes": 65536,
                "retry_after": { "base": "1s", "cap": "60s" }
            }
        }),
    );
    // About 240 B per event: 215 events hold ~51 KB, above 70 % of 64 KiB and below the cap.
    let _held = fill_queue(&envoy, &platform, "agent-slow", 215).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while envoy.stat("wasmcustom.switchboard.queue_held_bytes").await < 47_000 {
        assert!(
            Instant::now() < deadline,
            "the queue never filled: {}",
            envoy
                .stats()
                .await
                .lines()
                .filter(|l| l.contains("switchboard"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut values = Vec::new();
    for i in 0..200 {
        match try_agent(&envoy, &format!("agent-{i}")).await {
            Ok(_) => panic!("upgrade {i} admitted above the threshold"),
            Err((status, retry_after)) => {
                assert_eq!(status, 503);
                values.push(retry_after.expect("Retry-After") as f64);
            }
        }
    }
    let mean = values.iter().sum::<f64>() / values.len() as f64;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
    assert!(sd / mean >= 0.25, "coefficient of variation {}", sd / mean);
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.upgrades.result.backpressure")
            .await,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn held_data_over_the_cap_closes_the_session_with_1013() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = start(
        &platform,
        json!({
            "backpressure": {
                "default": { "down_frames_per_sec": 1, "burst": "10ms" },
                "session_hold_bytes": 16384
            }
        }),
    );
    let mut socket = fill_queue(&envoy, &platform, "agent-over", 1000).await;
    // Read until the close. Envoy may read the whole burst as one chunk; then the overflow
    // forwards all 1,000 events before the close, so the read must not stop at 1,000.
    let (events, close) = read_events(&mut socket, 2000, Duration::from_secs(15)).await;
    assert_eq!(close, Some(1013), "after {} events", events.len());
    // Let the client's close reply go out.
    let _ = tokio::time::timeout(Duration::from_secs(2), socket.next()).await;
    let seqs: Vec<u64> = events.iter().map(|(seq, _)| *seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.backpressure.result.overflow")
            .await,
        1
    );
    // The platform was told normally.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sessions = platform.sessions().await;
    assert_eq!(sessions[0]["close_code"], 1000, "{}", sessions[0]);
    envoy.assert_no_vm_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconnect_storm_is_admitted_at_the_configured_rate() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let (rate, burst_size) = (300.0, 30.0);
    let envoy = start(
        &platform,
        json!({
            "admission": {
                "upgrades_per_sec": rate,
                "upgrade_burst": burst_size,
                "retry_after": { "base": "1s", "cap": "3s" }
            }
        }),
    );
    let memory_before = envoy.stat("server.memory_allocated").await;
    let admitted: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let refused: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let agents = 2_000;
    let mut tasks = Vec::new();
    for i in 0..agents {
        let url = envoy.ws_url("/v2/realtime");
        let admitted = admitted.clone();
        let refused = refused.clone();
        tasks.push(tokio::spawn(async move {
            // All 2,000 arrive within the first second.
            tokio::time::sleep(Duration::from_micros(i * 500)).await;
            let auth = format!("Bearer {}", token(&format!("storm-{i}"), "acme"));
            for _ in 0..30 {
                match connect(&url, &[("authorization", &auth)]).await {
                    Ok(socket) => {
                        admitted.lock().unwrap().push(Instant::now());
                        return Some(socket);
                    }
                    Err(Error::Http(response)) => {
                        assert_eq!(response.status().as_u16(), 429);
                        refused.lock().unwrap().push(Instant::now());
                        let wait: u64 = response
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok()?.parse().ok())
                            .expect("Retry-After");
                        tokio::time::sleep(Duration::from_secs(wait)).await;
                    }
                    Err(other) => panic!("storm-{i}: {other}"),
                }
            }
            None
        }));
    }
    let mut sockets = Vec::new();
    for task in tasks {
        sockets.push(
            task.await
                .unwrap()
                .expect("every agent connects in the end"),
        );
    }
    let times = admitted.lock().unwrap().clone();
    assert_eq!(times.len(), agents as usize);
    // The gateway never admits faster than its bucket: 2,000 admissions need at least
    // (2,000 - burst) / rate seconds. Client-side timestamps can only be late, never early, so
    // this bound holds on a loaded machine; a per-second check from the client's clock does not
    // (completions bunch up when the load generator is starved).
    let first = *times.iter().min().unwrap();
    let last = *times.iter().max().unwrap();
    let floor = (agents as f64 - burst_size) / rate;
    let span = (last - first).as_secs_f64();
    assert!(
        span >= floor * 0.9,
        "2,000 admitted in {span:.2} s; the bucket allows no less than {floor:.2} s"
    );
    // Refusals were answered with 429 and every agent got in by honouring Retry-After.
    assert!(!refused.lock().unwrap().is_empty());
    let memory_after = envoy.stat("server.memory_allocated").await;
    let per_session = (memory_after - memory_before) / agents as i64;
    assert!(per_session < 64 << 10, "{per_session} bytes per session");
    drop(sockets);
    envoy.assert_no_vm_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_tab_of_the_same_agent_gets_409() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = start(
        &platform,
        json!({ "admission": { "max_sessions_per_agent": 1 } }),
    );
    let mut first = agent(&envoy, "agent-tabs").await;
    match try_agent(&envoy, "agent-tabs").await {
        Err((status, _)) => assert_eq!(status, 409),
        Ok(_) => panic!("second session admitted"),
    }
    // Another agent is not affected.
    let _other = agent(&envoy, "agent-other").await;
    first.close(None).await.unwrap();
    drop(first);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match try_agent(&envoy, "agent-tabs").await {
            Ok(_) => break,
            Err((409, _)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => panic!("after the first tab closed: {other:?}"),
        }
    }
    assert!(
        envoy
            .stat("wasmcustom.switchboard.upgrades.result.duplicate")
            .await
            >= 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_session_is_closed_with_1001() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = start(&platform, json!({ "idle_timeout": "2s" }));
    let mut socket = agent(&envoy, "agent-idle").await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    // A keepalive ping is the first chance to say goodbye.
    socket.send(Message::Ping(vec![1].into())).await.unwrap();
    let (_, close) = read_events(&mut socket, 1, Duration::from_secs(5)).await;
    assert_eq!(close, Some(1001));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sessions = platform.sessions().await;
    assert_eq!(sessions[0]["close_code"], 1001, "{}", sessions[0]);
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.sessions.result.idle_closed")
            .await,
        1
    );
    // An active session is left alone.
    let mut busy = agent(&envoy, "agent-busy").await;
    for i in 0..6 {
        common::ws::echo(&mut busy, &format!("still here {i}")).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn draining_refuses_new_upgrades_and_closes_live_sessions_with_1001() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = start(&platform, json!({ "tick": "50ms" }));
    let mut live = agent(&envoy, "agent-live").await;
    common::ws::echo(&mut live, "before the drain").await;
    let drain_url = format!("http://127.0.0.1:{}/_switchboard/drain", envoy.port);
    let client = reqwest::Client::new();
    let status = client
        .get(&drain_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(status, "not draining\n");
    let response = client.put(&drain_url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let response = client.post(&drain_url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "draining\n");
    // Every worker picks the switch up on its next tick.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..4 {
        match try_agent(&envoy, &format!("agent-new-{i}")).await {
            Err((503, Some(seconds))) => assert!(seconds >= 1),
            other => panic!("upgrade during the drain: {:?}", other.map(|_| ())),
        }
    }
    // The live session is told at its next frame, and the platform too.
    live.send(Message::text("after the drain")).await.unwrap();
    let (_, close) = read_events(&mut live, 1, Duration::from_secs(5)).await;
    assert_eq!(close, Some(1001));
    let _ = tokio::time::timeout(Duration::from_secs(2), live.next()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sessions = platform.sessions().await;
    assert_eq!(sessions[0]["close_code"], 1001, "{}", sessions[0]);
    // Undo: upgrades are admitted again.
    let response = client.delete(&drain_url).send().await.unwrap();
    assert_eq!(response.text().await.unwrap(), "not draining\n");
    tokio::time::sleep(Duration::from_millis(300)).await;
    agent(&envoy, "agent-after").await;
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.upgrades.result.draining")
            .await,
        4
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.sessions.result.drained")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenants_client_budget_holds_across_its_sessions() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let budget = 50.0;
    let envoy = start(
        &platform,
        json!({
            "tick": "20ms",
            "backpressure": {
                "default": { "up_frames_per_sec": 1000 },
                "tenants": { "acme": { "up_frames_per_sec": budget, "burst": "20ms" } }
            }
        }),
    );
    // Two desktops of the same tenant (likely on both workers) send 100 messages each at once.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for name in ["agent-a", "agent-b"] {
        let mut socket = agent(&envoy, name).await;
        tasks.push(tokio::spawn(async move {
            for i in 1..=100 {
                socket.send(Message::text(format!("m {i}"))).await.unwrap();
            }
            let mut echoed = Vec::new();
            while echoed.len() < 100 {
                match tokio::time::timeout(Duration::from_secs(20), socket.next()).await {
                    Ok(Some(Ok(Message::Text(text)))) => echoed.push(text.to_string()),
                    Ok(Some(Ok(_))) => {}
                    other => panic!("after {} echoes: {other:?}", echoed.len()),
                }
            }
            echoed
        }));
    }
    for task in tasks {
        let echoed = task.await.unwrap();
        let expected: Vec<String> = (1..=100).map(|i| format!("m {i}")).collect();
        assert_eq!(echoed, expected, "lost or reordered");
    }
    let rate = 200.0 / started.elapsed().as_secs_f64();
    assert!(
        (rate - budget).abs() <= budget * 0.1,
        "the tenant's messages reached the platform at {rate:.1}/s against {budget}/s\n{}",
        envoy
            .stats()
            .await
            .lines()
            .filter(|l| l.contains("switchboard"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    envoy.assert_no_vm_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_desktop_that_stops_reading_loses_nothing_and_slows_nobody_else() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = start(
        &platform,
        json!({
            "backpressure": {
                "default": { "down_frames_per_sec": 2000 },
                // Above the whole burst (3,000 events of about 240 B): Envoy may read the burst
                // in one chunk, and all of it may then be held at once.
                "session_hold_bytes": 1_000_000
            }
        }),
    );
    let mut slow = agent(&envoy, "agent-slow-reader").await;
    let memory_before = envoy.stat("server.memory_allocated").await;
    burst(&platform, "agent-slow-reader", 3_000).await;
    // The slow desktop reads nothing for 3 s; another agent's session is unaffected meanwhile.
    let mut other = agent(&envoy, "agent-other").await;
    // Every echo completes (the helper allows 10 s) while the slow reader holds its backlog:
    // no head-of-line blocking. How fast is a benchmark's question, not this test's.
    let started = Instant::now();
    let mut echoes = 0;
    while started.elapsed() < Duration::from_secs(3) {
        common::ws::echo(&mut other, "still here").await;
        echoes += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(echoes >= 2, "{echoes} echoes in 3 s");
    let memory_held = envoy.stat("server.memory_allocated").await;
    let (events, close) = read_events(&mut slow, 3_000, Duration::from_secs(30)).await;
    assert_eq!(close, None);
    let seqs: Vec<u64> = events.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=3_000).collect::<Vec<u64>>(), "lost or reordered");
    assert!(
        memory_held - memory_before < 32 << 20,
        "Envoy grew by {} bytes while the desktop did not read",
        memory_held - memory_before
    );
    envoy.assert_no_vm_failure();
}
