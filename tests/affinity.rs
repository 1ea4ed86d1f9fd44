//! Session affinity: the routing key in Envoy's consistent hash pins every session of one agent to
//! one platform host, and spreads agents evenly across hosts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use common::tokens::{filter_config, token};
use common::ws::{connect, echo};
use common::{Envoy, GatewaySpec, Platform};

const AGENTS: usize = 1_000;

fn three_hosts() -> (Vec<Platform>, Envoy) {
    let platforms: Vec<Platform> = ["host-a", "host-b", "host-c"]
        .iter()
        .map(|name| Platform::start(name, &["--event-rate", "0"]))
        .collect();
    let ports: Vec<u16> = platforms.iter().map(|p| p.port).collect();
    let envoy = Envoy::start(&GatewaySpec {
        filter_json: filter_config(serde_json::json!({})),
        upstream_ports: &ports,
        lb_policy: "MAGLEV",
        concurrency: 2,
        log_level: None,
    });
    (platforms, envoy)
}

/// Which host saw each agent, from the hosts' own session records.
async fn hosts_by_agent(platforms: &[Platform]) -> HashMap<String, Vec<String>> {
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for platform in platforms {
        for session in platform.sessions().await {
            if let Some(agent) = session["agent"].as_str() {
                seen.entry(agent.to_string())
                    .or_default()
                    .push(platform.name.clone());
            }
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_lands_on_the_same_host_across_reconnects() {
    let (platforms, envoy) = three_hosts();
    let url = envoy.ws_url("/v2/realtime");
    for agent in ["agent-a", "agent-b", "agent-c", "agent-d"] {
        for round in 0..20 {
            // A fresh token each time: affinity must not depend on the token, only on identity.
            let auth = format!("Bearer {}", token(agent, "acme"));
            let mut socket = connect(&url, &[("authorization", &auth)])
                .await
                .unwrap_or_else(|e| panic!("{agent} round {round}: {e}"));
            echo(&mut socket, "hi").await;
            drop(socket);
        }
    }
    let seen = hosts_by_agent(&platforms).await;
    for agent in ["agent-a", "agent-b", "agent-c", "agent-d"] {
        let hosts = &seen[agent];
        assert_eq!(hosts.len(), 20, "{agent}: {hosts:?}");
        assert!(
            hosts.iter().all(|h| h == &hosts[0]),
            "{agent} moved between hosts: {hosts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_agents_spread_evenly() {
    let (platforms, envoy) = three_hosts();
    let url = envoy.ws_url("/v2/realtime");
    // Bounded concurrency: 50 agents at a time connect, exchange one message and leave.
    let agents: Vec<usize> = (0..AGENTS).collect();
    for batch in agents.chunks(50) {
        let mut tasks = Vec::new();
        for i in batch {
            let url = url.clone();
            let auth = format!("Bearer {}", token(&format!("agent-{i}"), "acme"));
            tasks.push(tokio::spawn(async move {
                let mut socket = connect(&url, &[("authorization", &auth)])
                    .await
                    .expect("upgrade");
                echo(&mut socket, "hi").await;
                drop(socket);
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    }
    let seen = hosts_by_agent(&platforms).await;
    assert_eq!(seen.len(), AGENTS);
    let mut per_host: HashMap<&str, usize> = HashMap::new();
    for hosts in seen.values() {
        assert_eq!(hosts.len(), 1);
        *per_host.entry(hosts[0].as_str()).or_default() += 1;
    }
    let even = AGENTS as f64 / 3.0;
    for platform in &platforms {
        let count = per_host.get(platform.name.as_str()).copied().unwrap_or(0) as f64;
        assert!(
            (count - even).abs() <= even * 0.2,
            "{} has {count} agents, outside ±20% of {even:.0}: {per_host:?}",
            platform.name
        );
    }
    println!("agents per host: {per_host:?}");
}
