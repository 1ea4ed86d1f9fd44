//! The smoke run `make test-compat` repeats on every supported Envoy release (one Envoy at a
//! time, each from its own virtualenv via SWITCHBOARD_ENVOY): an upgrade accepted with the
//! platform token injected, frames round trip, upgrades refused with the right status, and the
//! metrics present in `/stats/prometheus`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::tokens::{filter_config, token};
use common::ws::{connect, echo, refused_status};
use common::{Envoy, GatewaySpec, Platform};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smoke() {
    let platform = Platform::start("compat", &["--event-rate", "0", "--require-token"]);
    let envoy = Envoy::start(&GatewaySpec {
        filter_json: filter_config(json!({
            "origin": { "allowed": ["https://desk.example.com"], "allow_missing": true },
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
    });
    envoy.wait_for_platform_token().await;
    let url = envoy.ws_url("/v2/realtime");
    let auth = format!("Bearer {}", token("agent-1", "acme"));

    // Accepted: the platform requires its token, so the filter injected it; frames round trip.
    let mut socket = connect(&url, &[("authorization", &auth)]).await.unwrap();
    echo(&mut socket, "hello").await;
    echo(&mut socket, "again").await;

    // Refused with the right status.
    assert_eq!(refused_status(&url, &[]).await.0, 401);
    assert_eq!(
        refused_status(
            &url,
            &[
                ("authorization", &auth),
                ("origin", "https://evil.example.com")
            ]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        refused_status(&url, &[("authorization", "Bearer not.a.jwt")])
            .await
            .0,
        401
    );

    let text = envoy.prometheus().await;
    let has = |prefix: &str, needle: &str| {
        text.lines()
            .any(|l| l.starts_with(prefix) && l.contains(needle))
    };
    assert!(
        has("switchboard_upgrades{", "result=\"accepted\"")
            && has("switchboard_upgrades{", "result=\"auth\"")
            && has("switchboard_upgrades{", "result=\"origin\"")
            && has("switchboard_frames{", "dir=\"up\"")
            && has("switchboard_sessions_active{", "tenant=\"acme\"")
            && has("switchboard_token_refreshes{", "result=\"ok\""),
        "{text}"
    );
    socket.send(Message::Close(None)).await.unwrap();
    envoy.assert_no_vm_failure();
}
