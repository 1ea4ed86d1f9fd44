//! An HTTP/2 platform cluster: agents upgrade over HTTP/1.1, Envoy carries each session as an
//! RFC 8441 extended CONNECT stream, and Switchboard works the same on top (token injection,
//! frames, metrics) while many sessions share one upstream connection per worker.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::tokens::{filter_config, token};
use common::ws::{connect, echo};
use common::{Envoy, GatewaySpec, Platform};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_sessions_share_the_upstream_connections_and_keep_every_feature() {
    let platform = Platform::start(
        "h2",
        &[
            "--event-rate",
            "0",
            "--require-token",
            "--token-lifetime",
            "3600",
        ],
    );
    let spec = GatewaySpec {
        filter_json: filter_config(json!({
            "token": {
                "cluster": "platform_token",
                "client_id": "switchboard",
                "client_secret": "switchboard-dev-secret"
            }
        })),
        upstream_ports: &[platform.port],
        lb_policy: "MAGLEV",
        concurrency: 2,
        log_level: None,
    };
    let envoy = Envoy::try_start_yaml(&common::h2_upstream_yaml(&spec), 2, None)
        .unwrap_or_else(|(log, why)| panic!("envoy did not start: {why}\n{log}"));
    envoy.wait_for_platform_token().await;

    let mut sockets = Vec::new();
    for i in 0..50 {
        let auth = format!("Bearer {}", token(&format!("agent-{i}"), "acme"));
        let socket = connect(&envoy.ws_url("/v2/realtime"), &[("authorization", &auth)])
            .await
            .unwrap_or_else(|e| panic!("agent {i}: {e}\n{}", envoy.log_text()));
        sockets.push(socket);
    }
    for (i, socket) in sockets.iter_mut().enumerate() {
        echo(socket, &format!("hello-{i}")).await;
    }
    let stats = envoy.stats().await;
    let cx_total = common::stat_value(&stats, "cluster.platform.upstream_cx_total");
    let streams = common::stat_value(&stats, "cluster.platform.upstream_rq_active");
    // One connection per worker at most, carrying every session as a stream.
    assert!(
        (1..=2).contains(&cx_total),
        "upstream connections: {cx_total}"
    );
    assert_eq!(streams, 50, "upstream streams");
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.upgrades.result.accepted")
            .await,
        50
    );
    let health: serde_json::Value =
        serde_json::from_str(&common::http_get(&platform.url("/_mock/health")).await).unwrap();
    assert_eq!(health["h2_sessions"], 50, "{health}");
    assert_eq!(health["rejected_upgrades_no_token"], 0, "{health}");
    let sessions = platform.sessions().await;
    assert!(
        sessions.iter().all(|s| s["method"] == "CONNECT"),
        "{sessions:?}"
    );

    for socket in &mut sockets {
        socket.send(Message::Close(None)).await.unwrap();
    }
    drop(sockets);
    envoy.assert_no_vm_failure();
}
