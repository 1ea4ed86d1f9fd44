//! What the upgrade path costs: handshake latency through Envoy with the filter minus the same
//! Envoy without it, over sequential handshakes (a benchmark, not a test: it asserts nothing).
//!
//! Modes: a fresh EdDSA verification per handshake, a fresh RS256 verification, and a
//! verified-token cache hit (the same token every time). `make bench-handshake` runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::tokens::{filter_config, keys, sign, spec, token};
use common::ws::connect;
use common::{Envoy, GatewaySpec, Platform};

fn handshakes() -> usize {
    std::env::var("HANDSHAKES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

async fn measure(url: &str, tokens: &[String]) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(tokens.len());
    for jwt in tokens {
        let auth = format!("Bearer {jwt}");
        let started = Instant::now();
        let socket = connect(url, &[("authorization", &auth)]).await.expect("handshake");
        samples.push(started.elapsed());
        drop(socket);
    }
    samples.sort();
    samples
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n = handshakes();
    let platform = Platform::start("bench", &["--event-rate", "0"]);
    let spec_for = |filter_json: String| GatewaySpec {
        filter_json,
        upstream_ports: &[platform.port],
        lb_policy: "MAGLEV",
        concurrency: 1,
    };
    let bare = Envoy::start(&spec_for(String::new()));
    let gateway = Envoy::start(&spec_for(filter_config(serde_json::json!({}))));

    eprintln!("minting {n} EdDSA and {n} RS256 tokens…");
    let eddsa: Vec<String> = (0..n).map(|i| token(&format!("bench-ed-{i}"), "acme")).collect();
    let rs256: Vec<String> = (0..n)
        .map(|i| sign(&spec(&format!("bench-rs-{i}"), "acme", "rs-1"), &keys().rs))
        .collect();
    let same = vec![token("bench-cached", "acme"); n];

    // Warm both paths (connection pools, VM code) before measuring.
    let warm: Vec<String> = (0..50).map(|i| token(&format!("warm-{i}"), "acme")).collect();
    measure(&bare.ws_url("/ws"), &warm).await;
    measure(&gateway.ws_url("/ws"), &warm).await;
    measure(&gateway.ws_url("/ws"), &same[..1]).await;

    println!("handshakes per mode: {n} (sequential, one Envoy worker each, loopback)");
    println!(
        "{:<22} {:>10} {:>10} {:>10} {:>14} {:>14}",
        "mode", "p50 µs", "p99 µs", "max µs", "added p50 µs", "added p99 µs"
    );
    let baseline = measure(&bare.ws_url("/ws"), &eddsa).await;
    let row = |name: &str, samples: &[Duration]| {
        let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
        let added50 = micros(p50) - micros(percentile(&baseline, 0.5));
        let added99 = micros(p99) - micros(percentile(&baseline, 0.99));
        println!(
            "{:<22} {:>10.0} {:>10.0} {:>10.0} {:>14.0} {:>14.0}",
            name,
            micros(p50),
            micros(p99),
            micros(*samples.last().unwrap()),
            added50,
            added99
        );
    };
    row("bare envoy", &baseline);
    for (name, tokens) in [
        ("filter: cache hit", &same),
        ("filter: EdDSA verify", &eddsa),
        ("filter: RS256 verify", &rs256),
    ] {
        let samples = measure(&gateway.ws_url("/ws"), tokens).await;
        row(name, &samples);
    }
    let stats = gateway.stats().await;
    println!(
        "auth paths: verified={} cached={}",
        common::stat_value(&stats, "wasmcustom.switchboard.auth.path.verified"),
        common::stat_value(&stats, "wasmcustom.switchboard.auth.path.cached")
    );
    if let Some(line) = stats.lines().find(|l| l.starts_with("wasmcustom.switchboard.upgrade_filter_time_us:")) {
        println!("filter time per upgrade (Envoy histogram, µs): {}", line.split_once(": ").map_or("", |x| x.1));
    }
}
