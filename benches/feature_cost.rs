//! What a feature costs on the frame path: echo throughput (frames/s) through Envoy with the
//! filter and the feature off, then on, in the same run on the same mock platform, alternating
//! rounds so machine noise hits both alike. A benchmark, not a test: it asserts nothing.
//!
//! `make bench-features` runs it. Environment: `CONNECTIONS` (default 50), `ROUND_SECS` (5),
//! `ROUNDS` (4 per variant), `PAYLOAD` bytes (512).
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
            eprintln!("round {r}: {:<12} {rate:>10.0} frames/s", variants[i].0);
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
            "{:<14} {:>14.0} {:>9.1}%",
            name,
            value,
            value / baseline * 100.0
        );
    }
}
