//! The upgrade path through a real Envoy 1.40 with the built filter and a real mock platform:
//! early data, origin, agent identity, header hygiene, routing key, response handling.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::tokens::{self, b64, b64u, filter_config, keys, sign, spec, token};
use common::ws::{connect, echo, next_json, refused_status};
use common::{gateway, Envoy, GatewaySpec, Platform};
use sbctl::mint::SigningKey;

fn header<'a>(record: &'a serde_json::Value, name: &str) -> Vec<&'a str> {
    record["headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|pair| pair[0].as_str() == Some(name))
        .filter_map(|pair| pair[1].as_str())
        .collect()
}

async fn session_of(platform: &Platform, agent: &str) -> serde_json::Value {
    for _ in 0..50 {
        let sessions = platform.sessions().await;
        if let Some(found) = sessions
            .into_iter()
            .rev()
            .find(|s| s["agent"].as_str() == Some(agent))
        {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the platform never saw agent {agent}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_upgrade_carries_identity_and_no_credential() {
    let platform = Platform::start("p1", &["--event-rate", "5"]);
    let envoy = gateway(&platform, serde_json::json!({}));

    // Header token, with spoofed gateway headers from the client.
    let jwt = token("agent-1", "acme");
    let auth = format!("Bearer {jwt}");
    let mut socket = connect(
        &envoy.ws_url("/v2/realtime?topic=presence"),
        &[
            ("authorization", &auth),
            ("x-agent-routing-key", "spoofed-key"),
            ("x-genesys-user-id", "someone-else"),
            ("x-genesys-organization-id", "other-tenant"),
        ],
    )
    .await
    .expect("upgrade accepted");
    echo(&mut socket, "hello platform").await;
    let event = next_json(&mut socket).await;
    assert_eq!(event["data"]["agentId"], "agent-1", "event: {event}");

    let record = session_of(&platform, "agent-1").await;
    let expected_key = switchboard_core_routing_key("acme", "agent-1");
    assert_eq!(
        header(&record, "x-agent-routing-key"),
        vec![expected_key.as_str()]
    );
    assert_eq!(header(&record, "x-genesys-user-id"), vec!["agent-1"]);
    assert_eq!(header(&record, "x-genesys-organization-id"), vec!["acme"]);
    assert_eq!(header(&record, "x-genesys-region"), vec!["eu-west"]);
    assert!(
        header(&record, "authorization").is_empty(),
        "agent token forwarded: {record}"
    );
    assert_eq!(record["path"], "/v2/realtime?topic=presence");
    let everything = record.to_string();
    assert!(!everything.contains(&jwt), "agent JWT reached the platform");
    assert!(!everything.contains("spoofed-key") && !everything.contains("someone-else"));

    // Query token: removed from the path, other parameters kept in order.
    let jwt = token("agent-2", "acme");
    let mut socket2 = connect(
        &envoy.ws_url(&format!("/v2/realtime?a=1&access_token={jwt}&b=2")),
        &[],
    )
    .await
    .expect("query-token upgrade accepted");
    echo(&mut socket2, "two").await;
    let record = session_of(&platform, "agent-2").await;
    assert_eq!(record["path"], "/v2/realtime?a=1&b=2");
    assert!(!record.to_string().contains(&jwt));

    // Subprotocol token: removed; the platform's answer is one the client offered.
    let jwt = token("agent-3", "acme");
    let offer = format!("bearer.{jwt}, v2.realtime-events");
    let mut socket3 = connect(
        &envoy.ws_url("/v2/realtime"),
        &[("sec-websocket-protocol", &offer)],
    )
    .await
    .expect("subprotocol-token upgrade accepted");
    echo(&mut socket3, "three").await;
    let record = session_of(&platform, "agent-3").await;
    assert_eq!(
        header(&record, "sec-websocket-protocol"),
        vec!["v2.realtime-events"]
    );
    assert!(!record.to_string().contains(&jwt));

    let stats = envoy.stats().await;
    assert_eq!(
        common::stat_value(&stats, "wasmcustom.switchboard.upgrades.result.accepted"),
        3
    );
    assert_eq!(
        common::stat_value(&stats, "wasmcustom.switchboard.sessions_active"),
        3
    );
    drop((socket, socket2, socket3));
    envoy.assert_no_vm_failure();
}

/// The same derivation the filter uses, recomputed here from the documented definition.
fn switchboard_core_routing_key(tenant: &str, agent: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(b"switchboard-route-v1");
    for part in [tenant, agent] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_gets_401_and_is_counted() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let k = keys();
    let good = token("agent-9", "acme");

    let mut cases: Vec<(&str, String, &str)> = Vec::new();
    let mut expired = spec("agent-9", "acme", "ed-1");
    expired.exp_offset = Some(-120);
    expired.nbf_offset = Some(-3600);
    cases.push(("expired", sign(&expired, &k.ed), "expired"));
    let mut future = spec("agent-9", "acme", "ed-1");
    future.nbf_offset = Some(600);
    cases.push(("nbf in the future", sign(&future, &k.ed), "not_yet_valid"));
    let mut iss = spec("agent-9", "acme", "ed-1");
    iss.iss = "https://evil.example".into();
    cases.push(("wrong iss", sign(&iss, &k.ed), "wrong_issuer"));
    let mut aud = spec("agent-9", "acme", "ed-1");
    aud.aud = "another-service".into();
    cases.push(("wrong aud", sign(&aud, &k.ed), "wrong_audience"));
    let payload = good.split('.').nth(1).unwrap().to_string();
    cases.push((
        "alg none",
        format!("{}.{payload}.", b64u(br#"{"alg":"none","typ":"JWT"}"#)),
        "unsupported_alg",
    ));
    // Algorithm confusion: HMAC keyed with the public keys the gateway trusts.
    let rs_as_secret =
        SigningKey::hs256_from_secret_text(&b64(k.rs_public_pem.as_bytes())).unwrap();
    cases.push((
        "HS256 with the RS256 public key",
        sign(&spec("agent-9", "acme", "rs-1"), &rs_as_secret),
        "no_key_for_alg",
    ));
    let ed_as_secret =
        SigningKey::hs256_from_secret_text(&b64(k.ed_public_pem.as_bytes())).unwrap();
    cases.push((
        "HS256 with the EdDSA public key",
        sign(&spec("agent-9", "acme", "ed-1"), &ed_as_secret),
        "no_key_for_alg",
    ));
    cases.push((
        "unknown kid",
        sign(&spec("agent-9", "acme", "nobody"), &k.ed),
        "unknown_kid",
    ));
    cases.push((
        "truncated",
        good[..good.len() - 12].to_string(),
        "malformed",
    ));
    let mut flipped = good.clone().into_bytes();
    let last = flipped.len() - 5;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    cases.push((
        "altered signature",
        String::from_utf8(flipped).unwrap(),
        "bad_signature",
    ));
    cases.push(("not base64", "%%%.!!!.***".replace('%', "a~"), "malformed"));
    cases.push(("64 KiB token", "a".repeat(64 * 1024), "too_large"));

    for (name, bad, _) in &cases {
        let auth = format!("Bearer {bad}");
        let (status, headers, body) =
            refused_status(&envoy.ws_url("/v2/realtime"), &[("authorization", &auth)]).await;
        assert_eq!(status, 401, "{name}");
        let challenge = headers
            .iter()
            .find(|(n, _)| n == "www-authenticate")
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("{name}: no WWW-Authenticate"));
        assert!(
            challenge.starts_with("Bearer ") && challenge.contains("error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert!(
            !body.contains(bad.as_str()) || bad.len() < 4,
            "{name}: body echoes the token"
        );
    }
    // No credential at all: the RFC 6750 challenge without an error code.
    let (status, headers, _) = refused_status(&envoy.ws_url("/v2/realtime"), &[]).await;
    assert_eq!(status, 401);
    assert!(headers
        .iter()
        .any(|(n, v)| n == "www-authenticate" && v == "Bearer realm=\"switchboard\""));

    let stats = envoy.stats().await;
    let mut expected: std::collections::BTreeMap<&str, i64> = Default::default();
    for (_, _, reason) in &cases {
        *expected.entry(reason).or_default() += 1;
    }
    *expected.entry("missing").or_default() += 1;
    for (reason, count) in expected {
        let name = format!("wasmcustom.switchboard.auth_failures.reason.{reason}");
        assert_eq!(common::stat_value(&stats, &name), count, "{name}\n{stats}");
    }
    assert_eq!(
        common::stat_value(&stats, "wasmcustom.switchboard.upgrades.result.auth"),
        i64::try_from(cases.len()).unwrap() + 1
    );
    assert!(
        platform.sessions().await.is_empty(),
        "a rejected upgrade reached the platform"
    );
    let log = envoy.log_text();
    for (name, bad, _) in &cases {
        if bad.len() > 20 {
            assert!(
                !log.contains(bad.as_str()),
                "{name}: token in the Envoy log"
            );
        }
    }
    envoy.assert_no_vm_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_with_the_same_token_is_a_cache_hit() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let auth = format!("Bearer {}", token("agent-5", "acme"));
    for round in 0..6 {
        let mut socket = connect(&envoy.ws_url("/v2/realtime"), &[("authorization", &auth)])
            .await
            .unwrap_or_else(|e| panic!("round {round}: {e}"));
        echo(&mut socket, "ping").await;
        drop(socket);
    }
    let stats = envoy.stats().await;
    assert_eq!(
        common::stat_value(&stats, "wasmcustom.switchboard.auth.path.verified"),
        1,
        "{stats}"
    );
    assert_eq!(
        common::stat_value(&stats, "wasmcustom.switchboard.auth.path.cached"),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_data_gets_425() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = gateway(
        &platform,
        serde_json::json!({ "early_data": "reject_unsafe" }),
    );
    let auth = format!("Bearer {}", token("agent-1", "acme"));
    let (status, _, _) = refused_status(
        &envoy.ws_url("/v2/realtime"),
        &[("authorization", &auth), ("early-data", "1")],
    )
    .await;
    assert_eq!(status, 425);
    let client = reqwest::Client::new();
    let post = client
        .post(format!("http://127.0.0.1:{}/_mock/reset", envoy.port))
        .header("early-data", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 425, "non-safe method in early data");
    let get = client
        .get(format!("http://127.0.0.1:{}/_mock/health", envoy.port))
        .header("early-data", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(get.status().as_u16(), 200, "safe method passes");
    // Without early data the same upgrade is accepted.
    connect(&envoy.ws_url("/v2/realtime"), &[("authorization", &auth)])
        .await
        .expect("accepted");
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.upgrades.result.early_data")
            .await,
        1
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.requests.result.early_data")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_early_data_policy_rejects_only_upgrades() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let auth = format!("Bearer {}", token("agent-1", "acme"));
    let (status, _, _) = refused_status(
        &envoy.ws_url("/v2/realtime"),
        &[("authorization", &auth), ("early-data", "1")],
    )
    .await;
    assert_eq!(status, 425);
    let post = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{}/_mock/reset", envoy.port))
        .header("early-data", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_allow_list_gets_403() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = gateway(
        &platform,
        serde_json::json!({ "origin": { "allowed": ["https://desk.example.com", "https://*.agents.example.com"], "allow_missing": false } }),
    );
    let auth = format!("Bearer {}", token("agent-1", "acme"));
    let url = envoy.ws_url("/v2/realtime");
    connect(
        &url,
        &[
            ("authorization", &auth),
            ("origin", "https://desk.example.com"),
        ],
    )
    .await
    .expect("listed origin");
    connect(
        &url,
        &[
            ("authorization", &auth),
            ("origin", "https://eu.agents.example.com"),
        ],
    )
    .await
    .expect("wildcard origin");
    for origin in [
        "https://evil.example",
        "null",
        "https://desk.example.com.evil.example",
    ] {
        let (status, _, _) =
            refused_status(&url, &[("authorization", &auth), ("origin", origin)]).await;
        assert_eq!(status, 403, "{origin}");
    }
    let (status, _, _) = refused_status(&url, &[("authorization", &auth)]).await;
    assert_eq!(status, 403, "missing origin refused by policy");
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.upgrades.result.origin")
            .await,
        4
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_values_too_long_are_refused() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let long = "a".repeat(200);
    let auth = format!("Bearer {}", token(&long, "acme"));
    let (status, _, _) =
        refused_status(&envoy.ws_url("/v2/realtime"), &[("authorization", &auth)]).await;
    assert_eq!(status, 401);
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.auth_failures.reason.invalid_claim")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_refusal_passes_through_and_is_counted() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let auth = format!("Bearer {}", token("agent-1", "acme"));
    // The mock serves plain HTTP under /_mock/: an upgrade there is answered 200, not 101.
    let (status, _, _) =
        refused_status(&envoy.ws_url("/_mock/health"), &[("authorization", &auth)]).await;
    assert_eq!(status, 200);
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.upgrades.result.upstream_2xx")
            .await,
        1
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.upgrades.result.accepted")
            .await,
        0
    );
    assert_eq!(
        envoy.stat("wasmcustom.switchboard.sessions_active").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_requests_pass_through() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let body = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/_mock/health", envoy.port))
        .header("x-agent-routing-key", "spoofed")
        .send()
        .await
        .unwrap();
    assert_eq!(body.status().as_u16(), 200);
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.requests.result.forwarded")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_agents_upgrade_and_exchange_messages() {
    let platform = Platform::start("p1", &["--event-rate", "1"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let url = envoy.ws_url("/v2/realtime");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let url = url.clone();
        let auth = format!("Bearer {}", token(&format!("agent-{i}"), "acme"));
        tasks.push(tokio::spawn(async move {
            let mut socket = connect(&url, &[("authorization", &auth)])
                .await
                .expect("upgrade");
            for n in 0..3 {
                echo(&mut socket, &format!("agent {i} message {n}")).await;
            }
            socket
        }));
    }
    let mut sockets = Vec::new();
    for task in tasks {
        sockets.push(task.await.unwrap());
    }
    assert_eq!(
        envoy.stat("wasmcustom.switchboard.sessions_active").await,
        200
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.upgrades.result.accepted")
            .await,
        200
    );
    let sessions = platform.sessions().await;
    assert_eq!(sessions.len(), 200);
    drop(sockets);
    // Closed sessions leave the gauge (bounded wait).
    let mut active = -1;
    for _ in 0..50 {
        active = envoy.stat("wasmcustom.switchboard.sessions_active").await;
        if active == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(active, 0);
    envoy.assert_no_vm_failure();
}

#[test]
fn bad_config_is_one_log_line_naming_the_field() {
    let bad =
        filter_config(serde_json::json!({})).replace("\"alg\":\"RS256\"", "\"alg\":\"RS257\"");
    assert!(bad.contains("RS257"));
    let result = Envoy::try_start(&GatewaySpec {
        filter_json: bad,
        upstream_ports: &[9],
        lb_policy: "MAGLEV",
        concurrency: 2,
        log_level: None,
    });
    let log = match result {
        Ok(envoy) => panic!(
            "envoy started with a bad filter config: {}",
            envoy.log_text()
        ),
        Err((log, _)) => log,
    };
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("invalid configuration:"))
        .collect();
    assert!(!lines.is_empty(), "no configuration error line in:\n{log}");
    let expected = r#"identity.keys[1].alg: "RS257" is not one of HS256, RS256, ES256, EdDSA"#;
    assert!(lines.iter().all(|l| l.contains(expected)), "{lines:#?}");
    // One line per VM that tried the configuration, never a multi-line dump.
    assert!(lines.len() <= 4, "{lines:#?}");
    let _ = tokens::now();
}
