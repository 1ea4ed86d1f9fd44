//! What a feature costs on the frame path: echo throughput (frames/s) through Envoy with the
//! filter and the feature off, then on, in the same run on the same mock platform, alternating
//! rounds so machine noise hits both alike. A benchmark, not a test: it asserts nothing.
//!
//! A second phase measures what a hold adds: one client's messages are each held by a bytes
//! budget for a known time, and the round trip beyond that time is the tick's share, for
//! several tick periods.
//!
//! `make bench-features` runs it. Environment: `CONNECTIONS` (default 50), `ROUND_SECS` (5),
//! `ROUNDS` (4 per variant), `PAYLOAD` bytes (512), `HOLD_SAMPLES` (40 per tick period).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tokens::{filter_config, token};
use common::ws::connect;
use common::{Envoy, GatewaySpec, Platform};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The variants compared, each a filter configuration; the first is the baseline.
fn variants() -> Vec<(&'static str, Value)> {
    vec![
        ("token off", json!({})),
        (
            "backpressure on, nothing held",
            json!({
                "backpressure": {
                    "default": {
                        "up_frames_per_sec": 1000000,
                        "up_bytes_per_sec": 1000000000,
                        "down_frames_per_sec": 1000000
                    }
                }
            }),
        ),
        (
            "same, no slices (CAS/chunk)",
            json!({
                "backpressure": {
                    "default": {
                        "up_frames_per_sec": 1000000,
                        "up_bytes_per_sec": 1000000000,
                        "down_frames_per_sec": 1000000
                    },
                    "slice": "0ms"
                }
            }),
        ),
        (
            "token on",
            json!({
                "token": {
                    "cluster": "platform_token",
                    "client_id": "switchboard",
                    "client_secret": "switchboard-dev-secret",
                    "scopes": ["websocket:read"]
                }
            }),
        ),
    ]
}

/// Ping-pong on `connections` sockets for `duration`; returns echoed frames per second.
async fn round(envoy: &Envoy, connections: u64, duration: Duration, payload: usize) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..connections {
        let auth = format!("Bearer {}", token(&format!("bench-{i}"), "acme"));
        let mut socket = connect(&envoy.ws_url("/ws"), &[("authorization", &auth)])
            .await
            .expect("upgrade");
        let (stop, echoed) = (stop.clone(), echoed.clone());
        let text = json!({ "action": "ack", "pad": "x".repeat(payload) }).to_string();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if socket.send(Message::text(text.clone())).await.is_err() {
                    return;
                }
                loop {
                    match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
                        Ok(Some(Ok(Message::Text(_)))) => break,
                        Ok(Some(Ok(_))) => {}
                        _ => return,
                    }
                }
                echoed.fetch_add(1, Ordering::Relaxed);
            }
            let _ = socket.close(None).await;
        }));
    }
    let started = Instant::now();
    let before = echoed.load(Ordering::Relaxed);
    tokio::time::sleep(duration).await;
    let count = echoed.load(Ordering::Relaxed) - before;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    count as f64 / elapsed.as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let connections = env_or("CONNECTIONS", 50);
    let round_secs = env_or("ROUND_SECS", 5);
    let rounds = env_or("ROUNDS", 4);
    let payload = env_or("PAYLOAD", 512) as usize;
    let platform = Platform::start("bench", &["--event-rate", "0", "--token-lifetime", "86400"]);
    let upstream = [platform.port];
    let variants = variants();
    let envoys: Vec<Envoy> = variants
        .iter()
        .map(|(_, extra)| {
            Envoy::start(&GatewaySpec {
                filter_json: filter_config(extra.clone()),
                upstream_ports: &upstream,
                lb_policy: "MAGLEV",
                concurrency: 1,
                log_level: None,
            })
        })
        .collect();
    // Let the token-owning variant fetch its token before traffic.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for envoy in &envoys {
        round(envoy, connections, Duration::from_secs(1), payload).await;
    }
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for r in 0..rounds {
        for (i, envoy) in envoys.iter().enumerate() {
            let rate = round(envoy, connections, Duration::from_secs(round_secs), payload).await;
            eprintln!("round {r}: {:<30} {rate:>10.0} frames/s", variants[i].0);
            results[i].push(rate);
        }
    }
    println!(
        "echo round trips, {connections} connections × {payload} B JSON, {rounds} rounds of {round_secs} s per variant, one Envoy worker each, alternating"
    );
    println!(
        "{:<14} {:>14} {:>10}",
        "variant", "median msgs/s", "vs first"
    );
    let baseline = median(&mut results[0].clone());
    for (i, (name, _)) in variants.iter().enumerate() {
        let value = median(&mut results[i]);
        println!(
            "{:<30} {:>14.0} {:>9.1}%",
            name,
            value,
            value / baseline * 100.0
        );
    }
    drop(envoys);
    hold_latency(&platform, payload).await;
}

/// Round trips of messages that each wait `expected_ms` for the bytes budget, per tick period.
async fn hold_latency(platform: &Platform, payload: usize) {
    let samples = env_or("HOLD_SAMPLES", 40);
    let bytes_per_sec = 100_000.0;
    let text = json!({ "action": "ack", "pad": "x".repeat(payload * 20) }).to_string();
    let size = text.len() as f64 + 14.0;
    // A 10 ms burst and 10 ms slices: a message costs `size`, the bucket holds 1,000 bytes, so
    // each message waits about (size - 1000) / rate for its budget.
    let expected_ms = (size - 1_000.0) / bytes_per_sec * 1000.0;
    println!();
    println!(
        "hold latency: {samples} messages of {} B, each held ~{expected_ms:.0} ms by a {bytes_per_sec} B/s budget",
        text.len()
    );
    println!(
        "{:<12} {:>14} {:>14} {:>18}",
        "tick", "median rtt ms", "p90 rtt ms", "beyond budget ms"
    );
    let upstream = [platform.port];
    let bare = Envoy::start(&GatewaySpec {
        filter_json: filter_config(json!({})),
        upstream_ports: &upstream,
        lb_policy: "MAGLEV",
        concurrency: 1,
        log_level: None,
    });
    let baseline = rtts(&bare, &text, samples).await;
    let base_median = baseline[baseline.len() / 2];
    println!(
        "{:<12} {:>14.1} {:>14.1} {:>18}",
        "no budget",
        base_median,
        baseline[baseline.len() * 9 / 10],
        "-"
    );
    drop(bare);
    for tick in ["10ms", "50ms", "250ms"] {
        let envoy = Envoy::start(&GatewaySpec {
            filter_json: filter_config(json!({
                "tick": tick,
                "backpressure": {
                    "default": { "up_bytes_per_sec": bytes_per_sec, "burst": "10ms" },
                    "slice": "10ms"
                }
            })),
            upstream_ports: &upstream,
            lb_policy: "MAGLEV",
            concurrency: 1,
            log_level: None,
        });
        let held = rtts(&envoy, &text, samples).await;
        let median = held[held.len() / 2];
        println!(
            "{:<12} {:>14.1} {:>14.1} {:>18.1}",
            tick,
            median,
            held[held.len() * 9 / 10],
            median - base_median - expected_ms
        );
    }
}

/// Sorted round trips (ms) of `samples` messages sent 400 ms apart, so the budget refills.
async fn rtts(envoy: &Envoy, text: &str, samples: u64) -> Vec<f64> {
    let auth = format!("Bearer {}", token("hold-bench", "acme"));
    let mut socket = connect(&envoy.ws_url("/ws"), &[("authorization", &auth)])
        .await
        .expect("upgrade");
    let mut out = Vec::new();
    for _ in 0..samples {
        let started = Instant::now();
        socket.send(Message::text(text.to_string())).await.unwrap();
        loop {
            match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
                Ok(Some(Ok(Message::Text(_)))) => break,
                Ok(Some(Ok(_))) => {}
                other => panic!("no echo: {other:?}"),
            }
        }
        out.push(started.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    out.sort_by(|a, b| a.total_cmp(b));
    out
}
