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
    std::env::var("HANDSHAKES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000)
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
        let socket = connect(url, &[("authorization", &auth)])
            .await
            .expect("handshake");
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
    let upstream = [platform.port];
    let spec_for = |filter_json: String| GatewaySpec {
        filter_json,
        upstream_ports: &upstream,
        lb_policy: "MAGLEV",
        concurrency: 1,
        log_level: None,
    };
    let bare = Envoy::start(&spec_for(String::new()));

    eprintln!("minting {n} EdDSA and {n} RS256 tokens…");
    let eddsa: Vec<String> = (0..n)
        .map(|i| token(&format!("bench-ed-{i}"), "acme"))
        .collect();
    let rs256: Vec<String> = (0..n)
        .map(|i| sign(&spec(&format!("bench-rs-{i}"), "acme", "rs-1"), &keys().rs))
        .collect();
    let same = vec![token("bench-cached", "acme"); n];
    let warm: Vec<String> = (0..50)
        .map(|i| token(&format!("warm-{i}"), "acme"))
        .collect();

    // Warm the bare path (connection setup, page cache) before measuring.
    measure(&bare.ws_url("/ws"), &warm).await;
    let baseline = measure(&bare.ws_url("/ws"), &eddsa).await;

    println!(
        "handshakes per mode: {n} (sequential, one Envoy worker, loopback; a fresh Envoy per mode)"
    );
    println!(
        "{:<22} {:>8} {:>8} {:>8} {:>12} {:>12} {:>16} {:>16}",
        "mode",
        "p50 µs",
        "p99 µs",
        "max µs",
        "added p50",
        "added p99",
        "in-filter p50",
        "in-filter p99"
    );
    let row = |name: &str, samples: &[Duration], in_filter: (String, String)| {
        let (p50, p99) = (percentile(samples, 0.5), percentile(samples, 0.99));
        println!(
            "{:<22} {:>8.0} {:>8.0} {:>8.0} {:>12.0} {:>12.0} {:>16} {:>16}",
            name,
            micros(p50),
            micros(p99),
            micros(*samples.last().unwrap()),
            micros(p50) - micros(percentile(&baseline, 0.5)),
            micros(p99) - micros(percentile(&baseline, 0.99)),
            in_filter.0,
            in_filter.1,
        );
    };
    row("bare envoy", &baseline, ("-".into(), "-".into()));
    for (name, tokens) in [
        ("filter: cache hit", &same),
        ("filter: EdDSA verify", &eddsa),
        ("filter: RS256 verify", &rs256),
    ] {
        let gateway = Envoy::start(&spec_for(filter_config(serde_json::json!({}))));
        measure(&gateway.ws_url("/ws"), &warm).await;
        measure(&gateway.ws_url("/ws"), &same[..1]).await;
        let samples = measure(&gateway.ws_url("/ws"), tokens).await;
        // Histograms reach /stats at the next flush (1 s in the test configuration).
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        row(name, &samples, filter_time(&gateway.stats().await));
    }
}

/// Cumulative p50 and p99 of the filter's own `upgrade_filter_time_us` histogram.
fn filter_time(stats: &str) -> (String, String) {
    let line = stats
        .lines()
        .find(|l| l.starts_with("wasmcustom.switchboard.upgrade_filter_time_us:"))
        .unwrap_or("");
    let quantile = |q: &str| {
        line.split_whitespace()
            .find_map(|part| part.strip_prefix(&format!("{q}(")))
            .and_then(|rest| rest.trim_end_matches(')').split(',').nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or("?".to_string(), |v| format!("{v:.0}"))
    };
    (quantile("P50"), quantile("P99"))
}
