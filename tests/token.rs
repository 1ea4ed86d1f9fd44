//! The platform token through a real Envoy and the mock platform's real token endpoint: one fetch
//! per rotation per process, injection at the upgrade, `auth_refresh` rotation inside live
//! sessions, the endpoint failing for longer than a token lives, rotating refresh tokens, and
//! logs that never carry a secret.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::tokens::{filter_config, token};
use common::ws::{connect, refused_status, Socket};
use common::{Envoy, GatewaySpec, Platform};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const CLIENT_SECRET: &str = "switchboard-dev-secret";
const BACKOFF_CAP_MS: u64 = 2_000;

/// Short everything, so rotations happen every few seconds.
fn token_section(extra: Value) -> Value {
    let mut section = json!({
        "cluster": "platform_token",
        "client_id": "switchboard",
        "client_secret": CLIENT_SECRET,
        "scopes": ["websocket:read", "presence:read"],
        "safety_buffer": "2s",
        "clock_skew": "0s",
        "timeout": "1s",
        "lease": "1s",
        "retry_after": "2s",
        "backoff": { "base": "200ms", "cap": format!("{BACKOFF_CAP_MS}ms"), "slow": "3s" },
        "rotation": { "region": "eu-test-1" }
    });
    for (key, value) in extra.as_object().unwrap() {
        section[key] = value.clone();
    }
    section
}

fn start_gateway(
    platform: &Platform,
    token: Value,
    concurrency: u32,
    level: Option<&str>,
) -> Envoy {
    Envoy::start(&GatewaySpec {
        filter_json: filter_config(json!({ "tick": "100ms", "token": token })),
        upstream_ports: &[platform.port],
        lb_policy: "MAGLEV",
        concurrency,
        log_level: level,
    })
}

async fn wait_for_stat(envoy: &Envoy, name: &str, at_least: i64, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        let value = envoy.stat(name).await;
        if value >= at_least || Instant::now() > deadline {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

const OK: &str = "wasmcustom.switchboard.token_refreshes.result.ok";
const INJECTED: &str = "wasmcustom.switchboard.auth_refresh.result.injected";

async fn get_json(url: &str) -> Value {
    serde_json::from_str(&common::http_get(url).await).unwrap()
}

async fn post_json(url: &str, body: Value) -> Value {
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    response.json().await.unwrap()
}

async fn token_requests(platform: &Platform) -> Vec<Value> {
    get_json(&platform.url("/_mock/token-requests"))
        .await
        .as_array()
        .unwrap()
        .clone()
}

/// A client_credentials grant straight at the mock, for a first refresh token.
async fn first_refresh_token(platform: &Platform) -> String {
    let response: Value = reqwest::Client::new()
        .post(platform.url("/oauth/token"))
        .basic_auth("switchboard", Some(CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    response["refresh_token"].as_str().unwrap().to_string()
}

async fn agent_socket(envoy: &Envoy, agent: &str) -> Socket {
    let auth = format!("Bearer {}", token(agent, "acme"));
    connect(&envoy.ws_url("/v2/realtime"), &[("authorization", &auth)])
        .await
        .unwrap_or_else(|e| panic!("{agent}: upgrade refused: {e}"))
}

/// What one chatting desktop saw.
#[derive(Debug, Default)]
struct Chat {
    sent: u64,
    echoed: Vec<u64>,
    close: Option<u16>,
    error: Option<String>,
}

/// Sends `{"seq": n}` every `period` and waits for each echo, until `stop` or the socket ends.
async fn chat(mut socket: Socket, period: Duration, stop: Arc<AtomicBool>) -> Chat {
    let mut chat = Chat::default();
    let deadline = Instant::now() + Duration::from_secs(90);
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        chat.sent += 1;
        let seq = chat.sent;
        if let Err(e) = socket
            .send(Message::text(json!({ "seq": seq }).to_string()))
            .await
        {
            chat.error = Some(format!("send: {e}"));
            return chat;
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(10), socket.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let value: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                    if let Some(echoed) = value["seq"].as_u64() {
                        chat.echoed.push(echoed);
                        if echoed == seq {
                            break;
                        }
                    }
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    chat.close = Some(frame.map_or(1005, |f| u16::from(f.code)));
                    return chat;
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(e))) => {
                    chat.error = Some(format!("read: {e}"));
                    return chat;
                }
                Ok(None) => {
                    chat.error = Some("stream ended".into());
                    return chat;
                }
                Err(_) => {
                    chat.error = Some(format!("no echo of {seq} within 10 s"));
                    return chat;
                }
            }
        }
        tokio::time::sleep(period).await;
    }
    let _ = socket.close(None).await;
    chat
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sessions_live_through_rotations_with_one_fetch_per_rotation() {
    let platform = Platform::start(
        "p1",
        &[
            "--require-token",
            "--token-lifetime",
            "6",
            "--event-rate",
            "0",
        ],
    );
    let envoy = start_gateway(&platform, token_section(json!({})), 4, None);
    let started = Instant::now();
    assert!(wait_for_stat(&envoy, OK, 1, Duration::from_secs(15)).await >= 1);

    let stop = Arc::new(AtomicBool::new(false));
    let mut chats = Vec::new();
    for i in 0..4 {
        let socket = agent_socket(&envoy, &format!("agent-{i}")).await;
        chats.push(tokio::spawn(chat(
            socket,
            Duration::from_millis(250),
            stop.clone(),
        )));
    }
    // Three rotations after the first token (one every ~3 s with these settings).
    let refreshes = wait_for_stat(&envoy, OK, 5, Duration::from_secs(40)).await;
    assert!(refreshes >= 5, "only {refreshes} refreshes");
    // Let the last token reach every session.
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::SeqCst);
    let elapsed = started.elapsed();

    for (i, handle) in chats.into_iter().enumerate() {
        let chat = handle.await.unwrap();
        assert_eq!(chat.close, None, "agent-{i} was closed: {chat:?}");
        assert_eq!(chat.error, None, "agent-{i}: {chat:?}");
        let expected: Vec<u64> = (1..=chat.sent).collect();
        assert_eq!(
            chat.echoed, expected,
            "agent-{i}: echoes out of order or missing"
        );
    }

    let sessions = platform.sessions().await;
    assert_eq!(sessions.len(), 4, "{sessions:?}");
    for session in &sessions {
        assert!(
            session["auth_refreshes"].as_u64().unwrap() >= 3,
            "fewer than three rotations reached a session: {session}"
        );
        assert_eq!(session["expired"], false, "{session}");
        assert_eq!(session["auth_refreshes_invalid"].as_u64().unwrap_or(0), 0);
        let last = &session["last_auth_refresh"];
        assert_eq!(last["token_type"], "Bearer", "{session}");
        // The agent token's region claim wins over the configured fallback.
        assert_eq!(last["region"], "eu-west", "{session}");
        assert_eq!(last["target_scope"], "websocket:read presence:read");
        assert!(last["session_id"].as_str().unwrap().starts_with("sb-"));
        // Client messages reached the platform in order around every injected frame.
        let seqs: Vec<u64> = session["inbound_log"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|entry| entry.as_str()?.parse().ok())
            .collect();
        assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    }
    let health = get_json(&platform.url("/_mock/health")).await;
    assert_eq!(health["rejected_upgrades_no_token"], 0, "{health}");

    // One fetch per rotation for the whole process (four workers plus the main thread tick).
    let requests = token_requests(&platform).await;
    let ok = envoy.stat(OK).await;
    assert_eq!(requests.len() as i64, ok, "{requests:?}");
    let rotations_possible = elapsed.as_secs_f64() / 3.0 + 2.0;
    assert!(
        (requests.len() as f64) <= rotations_possible,
        "{} token requests in {elapsed:?}",
        requests.len()
    );
    assert!(envoy.stat(INJECTED).await >= 12);
    assert!(
        envoy
            .stat("wasmcustom.switchboard.platform_token_seconds_to_expiry")
            .await
            > 0
    );
    envoy.assert_no_vm_failure();
}

/// One upgrade attempt: the socket, or the refusal's status and headers.
async fn upgrade(envoy: &Envoy, auth: &str) -> Result<Socket, (u16, Vec<(String, String)>)> {
    use tokio_tungstenite::tungstenite::Error;
    match connect(&envoy.ws_url("/v2/realtime"), &[("authorization", auth)]).await {
        Ok(socket) => Ok(socket),
        Err(Error::Http(response)) => Err((
            response.status().as_u16(),
            response
                .headers()
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
        )),
        Err(other) => panic!("upgrade failed without a status: {other}"),
    }
}

fn retry_after(headers: &[(String, String)]) -> u64 {
    headers
        .iter()
        .find(|(name, _)| name == "retry-after")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or_else(|| panic!("no Retry-After in {headers:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn endpoint_down_longer_than_a_lifetime_refuses_then_recovers() {
    let platform = Platform::start(
        "p1",
        &[
            "--require-token",
            "--token-lifetime",
            "5",
            "--event-rate",
            "0",
        ],
    );
    let envoy = start_gateway(&platform, token_section(json!({})), 2, None);
    assert!(wait_for_stat(&envoy, OK, 1, Duration::from_secs(15)).await >= 1);
    let stop = Arc::new(AtomicBool::new(false));
    let session = tokio::spawn(chat(
        agent_socket(&envoy, "agent-live").await,
        Duration::from_millis(250),
        stop.clone(),
    ));

    post_json(
        &platform.url("/_mock/token-fault"),
        json!({ "mode": "down" }),
    )
    .await;
    let down_at = Instant::now();
    let mut refused = Vec::new();
    // Longer than a whole token lifetime.
    while down_at.elapsed() < Duration::from_secs(7) {
        let auth = format!("Bearer {}", token("agent-new", "acme"));
        match upgrade(&envoy, &auth).await {
            Ok(mut socket) => {
                let _ = socket.close(None).await;
            }
            Err((status, headers)) => {
                assert_eq!(status, 503);
                let seconds = retry_after(&headers);
                assert!((1..=10).contains(&seconds), "Retry-After {seconds}");
                refused.push(seconds);
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(
        !refused.is_empty(),
        "no upgrade was refused while the endpoint was down"
    );
    // The live session could not be given a token that does not exist: the platform ended it
    // when its token expired, and nothing expired was ever sent.
    let live = session.await.unwrap();
    assert_eq!(live.close, Some(1008), "{live:?}");
    stop.store(true, Ordering::SeqCst);

    post_json(
        &platform.url("/_mock/token-fault"),
        json!({ "mode": "none" }),
    )
    .await;
    let up_at = Instant::now();
    let recovered = loop {
        let auth = format!("Bearer {}", token("agent-back", "acme"));
        match upgrade(&envoy, &auth).await {
            Ok(mut socket) => {
                let _ = socket.close(None).await;
                break up_at.elapsed();
            }
            Err((status, headers)) => {
                assert_eq!(status, 503);
                refused.push(retry_after(&headers));
            }
        }
        assert!(
            up_at.elapsed() < Duration::from_secs(15),
            "no recovery within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // One backoff cap, plus a tick and the fetch itself.
    assert!(
        recovered <= Duration::from_millis(BACKOFF_CAP_MS + 1_500),
        "recovered after {recovered:?}"
    );

    let health = get_json(&platform.url("/_mock/health")).await;
    assert_eq!(
        health["rejected_upgrades_no_token"], 0,
        "an invalid token reached the platform"
    );
    for session in platform.sessions().await {
        assert_eq!(
            session["auth_refreshes_invalid"].as_u64().unwrap_or(0),
            0,
            "{session}"
        );
    }
    assert!(
        envoy
            .stat("wasmcustom.switchboard.token_refreshes.result.connect_error")
            .await
            >= 1
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.upgrades.result.no_token")
            .await,
        refused.len() as i64
    );
    envoy.assert_no_vm_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_tokens_rotate_and_invalid_grant_is_counted() {
    let platform = Platform::start("p1", &["--token-lifetime", "5", "--event-rate", "0"]);
    let first = first_refresh_token(&platform).await;
    let envoy = start_gateway(
        &platform,
        token_section(json!({ "grant": "refresh_token", "refresh_token": first })),
        2,
        None,
    );
    let refreshes = wait_for_stat(&envoy, OK, 4, Duration::from_secs(30)).await;
    assert!(
        refreshes >= 4,
        "only {refreshes} refreshes: {:?}\n{}",
        token_requests(&platform).await,
        envoy.log_text()
    );
    let requests = token_requests(&platform).await;
    let refresh_grants: Vec<&Value> = requests
        .iter()
        .filter(|r| r["grant_type"] == "refresh_token")
        .collect();
    assert!(refresh_grants.len() >= 4, "{requests:?}");
    // The mock refuses a reused refresh token: every answer 200 proves each was the new one.
    assert!(
        refresh_grants.iter().all(|r| r["status"] == 200),
        "{refresh_grants:?}"
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.token_refreshes.result.invalid_grant")
            .await,
        0
    );
    drop(envoy);

    let revoked = start_gateway(
        &platform,
        token_section(json!({ "grant": "refresh_token", "refresh_token": "revoked-or-unknown" })),
        2,
        None,
    );
    let invalid = wait_for_stat(
        &revoked,
        "wasmcustom.switchboard.token_refreshes.result.invalid_grant",
        1,
        Duration::from_secs(15),
    )
    .await;
    assert!(invalid >= 1);
    let auth = format!("Bearer {}", token("agent-1", "acme"));
    let (status, headers, _) =
        refused_status(&revoked.ws_url("/v2/realtime"), &[("authorization", &auth)]).await;
    assert_eq!(status, 503);
    retry_after(&headers);
    // Retried on the slow period, not hammered.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let attempts = token_requests(&platform)
        .await
        .iter()
        .filter(|r| r["error"] == "invalid_grant")
        .count();
    assert!(
        attempts <= 2,
        "{attempts} invalid_grant attempts within ~1 s"
    );
    revoked.assert_no_vm_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn query_injection_replaces_the_clients_parameter() {
    let platform = Platform::start(
        "p1",
        &[
            "--require-token",
            "--token-lifetime",
            "60",
            "--event-rate",
            "0",
        ],
    );
    let envoy = start_gateway(
        &platform,
        token_section(json!({ "inject": "query" })),
        1,
        None,
    );
    assert!(wait_for_stat(&envoy, OK, 1, Duration::from_secs(15)).await >= 1);
    let auth = format!("Bearer {}", token("agent-q", "acme"));
    let mut socket = connect(
        &envoy.ws_url("/v2/realtime?access_token=client-supplied&topic=x"),
        &[("authorization", &auth)],
    )
    .await
    .expect("upgrade with the gateway's token");
    socket.send(Message::text("{\"seq\":1}")).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
    let sessions = platform.sessions().await;
    let path = sessions[0]["path"].as_str().unwrap();
    assert_eq!(path.matches("access_token=").count(), 1, "{path}");
    assert!(!path.contains("client-supplied"), "{path}");
    assert!(path.contains("topic=x"), "{path}");
    let headers = sessions[0]["headers"].as_array().unwrap();
    assert!(
        !headers.iter().any(|pair| pair[0] == "authorization"),
        "the agent's credential must not reach the platform: {headers:?}"
    );
}

/// Runs a session through one rotation with Envoy logging at `level`; returns the log and the
/// secrets that must not be in it.
async fn rotation_log(level: &str) -> (String, Vec<(&'static str, String)>) {
    let platform = Platform::start(
        "p1",
        &[
            "--require-token",
            "--token-lifetime",
            "5",
            "--token-format",
            "jwt",
            "--event-rate",
            "0",
        ],
    );
    let first = first_refresh_token(&platform).await;
    let envoy = start_gateway(
        &platform,
        token_section(json!({ "grant": "refresh_token", "refresh_token": first })),
        1,
        Some(level),
    );
    assert!(wait_for_stat(&envoy, OK, 1, Duration::from_secs(15)).await >= 1);
    let agent_jwt = token("agent-t", "acme");
    let stop = Arc::new(AtomicBool::new(false));
    let socket = connect(
        &envoy.ws_url("/v2/realtime"),
        &[("authorization", &format!("Bearer {agent_jwt}"))],
    )
    .await
    .unwrap();
    let session = tokio::spawn(chat(socket, Duration::from_millis(250), stop.clone()));
    assert!(wait_for_stat(&envoy, INJECTED, 1, Duration::from_secs(20)).await >= 1);
    stop.store(true, Ordering::SeqCst);
    let chat = session.await.unwrap();
    assert_eq!(chat.error, None);
    envoy.assert_no_vm_failure();
    let log = envoy.log_text();
    assert!(
        log.contains("token: platform token generation"),
        "the filter logged nothing?"
    );
    let basic = common::tokens::b64(format!("switchboard:{CLIENT_SECRET}").as_bytes());
    // Every access token the mock issues starts with this JWT header.
    let jwt_header = common::tokens::b64u(br#"{"alg":"HS256","typ":"JWT"}"#);
    let secrets = vec![
        ("client secret", CLIENT_SECRET.to_string()),
        ("basic credentials", basic),
        ("refresh token", first),
        ("platform access token", jwt_header),
        ("agent token", agent_jwt),
    ];
    (log, secrets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_filter_logs_no_secret_or_token_at_trace_level() {
    // Switchboard at trace, the rest of Envoy at info: the whole output is clean.
    let (log, secrets) = rotation_log("info --component-log-level wasm:trace").await;
    assert!(log.contains("[trace][wasm]") || log.contains("[debug][wasm]"));
    for (what, needle) in &secrets {
        let hit = log.lines().find(|line| line.contains(needle.as_str()));
        assert!(hit.is_none(), "{what} in the Envoy log: {hit:?}");
    }
    // Everything at trace: Envoy's own config dump and header dumps (http, router) do print
    // credentials; no line the filter writes does.
    let (log, secrets) = rotation_log("trace").await;
    let filter_lines: Vec<&str> = log.lines().filter(|l| l.contains("wasm log ")).collect();
    assert!(filter_lines.len() > 5);
    for (what, needle) in &secrets {
        let hit = filter_lines
            .iter()
            .find(|line| line.contains(needle.as_str()));
        assert!(hit.is_none(), "{what} in a filter log line: {hit:?}");
    }
}
