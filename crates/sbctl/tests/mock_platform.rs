//! The mock platform over real sockets on 127.0.0.1: handshake, echo, events in both envelopes,
//! records, the token endpoint (grants, rotation, faults) and shutdown; per-agent history and
//! replay with overlap, bursts, session faults (read byte for byte by a hand-rolled client) and
//! permessage-deflate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly on an unexpected error"
)]

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sbctl::mock::{self, EnvelopeMode, MockConfig, MockHandle, SessionRecord, TokenFault};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Upper bound for any single wait in these tests.
const WAIT: Duration = Duration::from_secs(10);
const CLIENT_ID: &str = "switchboard";
const CLIENT_SECRET: &str = "switchboard-dev-secret";
/// The RFC 6455 §1.3 sample nonce.
const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

async fn start(config: MockConfig) -> MockHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    mock::spawn(config, listener).unwrap()
}

fn fast_events() -> MockConfig {
    MockConfig {
        event_rate: 50.0,
        ..MockConfig::default()
    }
}

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header_name, _)| header_name.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// Sends `request` byte for byte and reads the response head (one byte at a time, so nothing
/// after the head is consumed).
async fn raw_exchange(handle: &MockHandle, request: &str) -> (RawResponse, TcpStream) {
    let mut stream = TcpStream::connect(handle.addr()).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 16 * 1024, "response head too long");
        let read = timeout(WAIT, stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(read, 1, "connection closed inside the response head");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter(|line| !line.is_empty())
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    (RawResponse { status, headers }, stream)
}

fn upgrade_request(target: &str, extra_headers: &[(&str, &str)]) -> String {
    let mut request = format!(
        "GET {target} HTTP/1.1\r\nHost: mock.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {SAMPLE_KEY}\r\n"
    );
    for (name, value) in extra_headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request
}

async fn raw_websocket(
    handle: &MockHandle,
    target: &str,
    extra_headers: &[(&str, &str)],
) -> (RawResponse, WebSocketStream<TcpStream>) {
    let (response, stream) = raw_exchange(handle, &upgrade_request(target, extra_headers)).await;
    assert_eq!(response.status, 101);
    let websocket = WebSocketStream::from_raw_socket(stream, Role::Client, None).await;
    (response, websocket)
}

/// Next message that satisfies `wanted`, skipping others; fails after `WAIT`.
async fn next_matching<S>(
    websocket: &mut WebSocketStream<S>,
    mut wanted: impl FnMut(&Message) -> bool,
) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = timeout(left, websocket.next())
            .await
            .expect("timed out waiting for a message")
            .expect("stream ended")
            .expect("websocket error");
        if wanted(&message) {
            return message;
        }
    }
}

fn event_json(message: &Message) -> Option<Value> {
    match message {
        Message::Text(text) => serde_json::from_str::<Value>(text.as_str()).ok(),
        _ => None,
    }
}

async fn sessions(
    client: &reqwest::Client,
    handle: &MockHandle,
    query: &str,
) -> Vec<SessionRecord> {
    let response = client
        .get(format!("{}/_mock/sessions{query}", handle.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Polls the session records until `done` holds for session `number`.
async fn wait_for_session(
    client: &reqwest::Client,
    handle: &MockHandle,
    number: u64,
    done: impl Fn(&SessionRecord) -> bool,
) -> SessionRecord {
    let deadline = Instant::now() + WAIT;
    loop {
        let records = sessions(client, handle, "").await;
        if let Some(record) = records.into_iter().find(|r| r.session == number) {
            if done(&record) {
                return record;
            }
        }
        assert!(
            Instant::now() < deadline,
            "session {number} never reached the state"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

#[tokio::test]
async fn genesys_session_echoes_emits_events_and_is_recorded_exactly() {
    let handle = start(fast_events()).await;
    let client = http_client();
    let target = "/api/v2/notifications/channels/ch-1?token=a%20b&x=1&x=2";
    let extra = [
        ("X-Genesys-User-Id", "agent-1"),
        ("X-Agent-Routing-Key", "rk-77"),
        (
            "Sec-WebSocket-Protocol",
            "chat, v2.realtime-events, switchboard.v1",
        ),
        ("Authorization", "Bearer upstream-token"),
        ("X-Custom", "  spaced value"),
    ];
    let (response, mut websocket) = raw_websocket(&handle, target, &extra).await;
    assert_eq!(
        response.header("sec-websocket-accept"),
        Some(derive_accept_key(SAMPLE_KEY.as_bytes()).as_str())
    );
    assert_eq!(
        response.header("sec-websocket-protocol"),
        Some("v2.realtime-events")
    );
    assert!(response
        .header("upgrade")
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket")));

    // Echo keeps opcode and bytes.
    websocket
        .send(Message::text("hello, platform"))
        .await
        .unwrap();
    let echoed = next_matching(
        &mut websocket,
        |m| matches!(m, Message::Text(t) if t.as_str() == "hello, platform"),
    )
    .await;
    assert_eq!(echoed, Message::text("hello, platform"));
    let payload = vec![0u8, 1, 2, 0xff, 0x80];
    websocket
        .send(Message::binary(payload.clone()))
        .await
        .unwrap();
    let echoed = next_matching(&mut websocket, |m| matches!(m, Message::Binary(_))).await;
    assert_eq!(echoed, Message::binary(payload));

    // Events in the Genesys envelope, numbered from 1 in order.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let message = next_matching(&mut websocket, |m| event_json(m).is_some()).await;
        seen.push(event_json(&message).unwrap());
    }
    let first = &seen[0];
    assert_eq!(first["type"], "v2.agents.agent-1.events");
    assert_eq!(first["data"]["agentId"], "agent-1");
    assert_eq!(first["data"]["state"], "available");
    assert_eq!(first["data"]["seq"], 1);
    assert_eq!(first["metadata"]["seq"], 1);
    assert_eq!(first["metadata"]["id"], "platform-1-agent-1-1");
    assert_eq!(first["data"]["routingKey"], "rk-77");
    let timestamp = first["metadata"]["timestamp"].as_str().unwrap();
    assert_eq!(timestamp.len(), "2024-01-01T00:00:00.000Z".len());
    assert!(timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T');
    assert_eq!(seen[1]["data"]["seq"], 2);
    assert_eq!(seen[1]["metadata"]["id"], "platform-1-agent-1-2");

    // frames_out is counted once a send completes, which may trail the client's receipt.
    wait_for_session(&client, &handle, 1, |r| r.frames_out >= 4).await;
    let records = sessions(&client, &handle, "").await;
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.session, 1);
    assert_eq!(record.name, "platform-1");
    assert_eq!(record.method, "GET");
    assert_eq!(record.path, target);
    let expected_headers: Vec<(String, String)> = [
        ("host", "mock.test"),
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", SAMPLE_KEY),
        ("x-genesys-user-id", "agent-1"),
        ("x-agent-routing-key", "rk-77"),
        (
            "sec-websocket-protocol",
            "chat, v2.realtime-events, switchboard.v1",
        ),
        ("authorization", "Bearer upstream-token"),
        // HTTP/1.1 drops leading whitespace of a field value (RFC 9110 §5.5).
        ("x-custom", "spaced value"),
    ]
    .iter()
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect();
    assert_eq!(record.headers, expected_headers);
    assert_eq!(record.agent.as_deref(), Some("agent-1"));
    assert_eq!(record.routing_key.as_deref(), Some("rk-77"));
    assert!(!record.closed);
    assert_eq!(record.close_code, None);
    assert_eq!(record.first_seq, Some(1));
    assert!(record.events_sent >= 2);
    assert_eq!((record.replayed, record.misrouted), (0, 0));
    assert_eq!(record.fault, "none");
    assert!(!record.deflate_offered && !record.deflate_negotiated);
    assert_eq!(record.frames_in, 2);
    assert!(
        record.frames_out >= 4,
        "2 echoes + 2 events, got {}",
        record.frames_out
    );

    // A client Close is recorded with its code.
    websocket
        .close(Some(CloseFrame {
            code: CloseCode::Library(4001),
            reason: "bye".into(),
        }))
        .await
        .unwrap();
    let closed = wait_for_session(&client, &handle, 1, |r| r.closed).await;
    assert_eq!(closed.close_code, Some(4001));
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn nice_session_gets_nice_envelope() {
    let handle = start(fast_events()).await;
    let (response, mut websocket) = raw_websocket(
        &handle,
        "/nice/agent",
        &[
            ("x-nice-agent-id", "nice-9"),
            ("sec-websocket-protocol", "nice.digital.v1"),
        ],
    )
    .await;
    assert_eq!(
        response.header("sec-websocket-protocol"),
        Some("nice.digital.v1")
    );
    let event =
        event_json(&next_matching(&mut websocket, |m| event_json(m).is_some()).await).unwrap();
    assert_eq!(event["eventType"], "agentState");
    assert_eq!(event["payload"]["agentId"], "nice-9");
    assert_eq!(event["payload"]["state"], "Available");
    assert_eq!(event["payload"]["seq"], 1);
    assert_eq!(event["correlationId"], "platform-1-nice-9-1");
    assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn forced_envelope_and_instance_name() {
    let handle = start(MockConfig {
        envelope: EnvelopeMode::Nice,
        name: "platform-b".into(),
        ..fast_events()
    })
    .await;
    let (_, mut websocket) = raw_websocket(&handle, "/", &[("x-genesys-user-id", "g-1")]).await;
    let event =
        event_json(&next_matching(&mut websocket, |m| event_json(m).is_some()).await).unwrap();
    assert_eq!(event["eventType"], "agentState");
    assert_eq!(event["correlationId"], "platform-b-g-1-1");
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn standard_client_and_echo_only_mode() {
    let handle = start(MockConfig {
        event_rate: 0.0,
        ..MockConfig::default()
    })
    .await;
    let mut request = handle.ws_url("/ws?agent=1").into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "unknown.v9, switchboard.v1".parse().unwrap(),
    );
    let (mut websocket, response) = timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(response.status(), 101);
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        "switchboard.v1"
    );
    for index in 0..5 {
        let text = format!("message {index}");
        websocket.send(Message::text(text.clone())).await.unwrap();
        let reply = timeout(WAIT, websocket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        // Echo only: the next message is always our own.
        assert_eq!(reply, Message::text(text));
    }
    // RFC 6455 §5.5.3: a Pong carries the Ping's application data.
    websocket
        .send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = timeout(WAIT, websocket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong(b"are you there".to_vec().into()));
    // Nothing unsolicited arrives.
    assert!(timeout(Duration::from_millis(300), websocket.next())
        .await
        .is_err());
    let record = wait_for_session(&http_client(), &handle, 1, |r| r.frames_out == 5).await;
    assert_eq!(record.frames_in, 5);
    assert_eq!(record.agent, None);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn records_filter_bound_and_reset() {
    let handle = start(MockConfig {
        event_rate: 0.0,
        max_records: 2,
        ..MockConfig::default()
    })
    .await;
    let client = http_client();
    let mut open = Vec::new();
    for agent in ["a1", "a2", "a3"] {
        open.push(
            raw_websocket(&handle, "/ws", &[("x-agent-id", agent)])
                .await
                .1,
        );
    }
    let all = sessions(&client, &handle, "").await;
    let numbers: Vec<u64> = all.iter().map(|r| r.session).collect();
    assert_eq!(numbers, vec![2, 3], "the ring keeps the newest two");

    let only = sessions(&client, &handle, "?agent=a3").await;
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].agent.as_deref(), Some("a3"));
    assert!(sessions(&client, &handle, "?agent=a1").await.is_empty());

    let health = client
        .get(format!("{}/_mock/health", handle.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["require_token"], false);
    assert_eq!(health["rejected_upgrades_no_token"], 0);

    let reset = client
        .post(format!("{}/_mock/reset", handle.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(reset.status(), 200);
    assert!(sessions(&client, &handle, "").await.is_empty());
    drop(open);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_handshakes_and_unknown_paths() {
    let handle = start(MockConfig::default()).await;
    let request = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    let (response, _) = raw_exchange(&handle, request).await;
    assert_eq!(response.status, 426);
    assert_eq!(response.header("sec-websocket-version"), Some("13"));

    let request = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
    assert_eq!(raw_exchange(&handle, request).await.0.status, 400);

    // None of the offered subprotocols is known: accepted, with none selected.
    let (response, _) = raw_exchange(
        &handle,
        &upgrade_request("/ws", &[("sec-websocket-protocol", "chat, superchat")]),
    )
    .await;
    assert_eq!(response.status, 101);
    assert_eq!(response.header("sec-websocket-protocol"), None);

    let request = "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(raw_exchange(&handle, request).await.0.status, 404);

    // Upgrades under /_mock/ are not WebSocket sessions.
    let (response, _) = raw_exchange(&handle, &upgrade_request("/_mock/health", &[])).await;
    assert_eq!(response.status, 200);
    let (response, _) = raw_exchange(&handle, &upgrade_request("/_mock/other", &[])).await;
    assert_eq!(response.status, 404);
    assert_eq!(
        handle.platform().sessions(None).len(),
        1,
        "only the valid upgrade"
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_sessions_with_going_away() {
    let handle = start(MockConfig {
        event_rate: 0.0,
        ..MockConfig::default()
    })
    .await;
    let platform = handle.platform().clone();
    let (_, mut websocket) = raw_websocket(&handle, "/ws", &[]).await;
    let started = Instant::now();
    timeout(WAIT, handle.shutdown()).await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    let close = next_matching(&mut websocket, |m| matches!(m, Message::Close(_))).await;
    match close {
        Message::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::Away),
        other => panic!("expected a Close frame, got {other:?}"),
    }
    assert!(platform.sessions(None)[0].closed);
}

struct TokenClient {
    client: reqwest::Client,
    url: String,
}

struct TokenAnswer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl TokenAnswer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

impl TokenClient {
    fn new(handle: &MockHandle) -> Self {
        Self {
            client: http_client(),
            url: format!("{}/oauth/token", handle.http_url()),
        }
    }

    async fn try_post(
        &self,
        form: &str,
        basic: Option<(&str, &str)>,
    ) -> reqwest::Result<TokenAnswer> {
        let mut request = self
            .client
            .post(&self.url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_owned());
        if let Some((id, secret)) = basic {
            request = request.basic_auth(id, Some(secret));
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await?;
        Ok(TokenAnswer {
            status,
            headers,
            body,
        })
    }

    async fn post(&self, form: &str, basic: Option<(&str, &str)>) -> TokenAnswer {
        self.try_post(form, basic).await.unwrap()
    }

    async fn client_credentials(&self) -> TokenAnswer {
        self.post(
            "grant_type=client_credentials",
            Some((CLIENT_ID, CLIENT_SECRET)),
        )
        .await
    }

    async fn refresh(&self, refresh_token: &str) -> TokenAnswer {
        let form = format!(
            "grant_type=refresh_token&refresh_token={refresh_token}&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"
        );
        self.post(&form, None).await
    }
}

async fn set_fault(handle: &MockHandle, body: &str) -> Value {
    let response = http_client()
        .post(format!("{}/_mock/token-fault", handle.http_url()))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "fault update {body} refused");
    response.json().await.unwrap()
}

#[tokio::test]
async fn token_grants_rotation_and_request_log() {
    let handle = start(MockConfig {
        token_lifetime_secs: 120,
        ..MockConfig::default()
    })
    .await;
    let tokens = TokenClient::new(&handle);

    let granted = tokens.client_credentials().await;
    assert_eq!(granted.status, 200);
    assert_eq!(granted.headers["cache-control"], "no-store");
    let first = granted.json();
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 120);
    assert_eq!(first["scope"], mock::oauth::DEFAULT_SCOPE);
    let access = first["access_token"].as_str().unwrap().to_owned();
    assert!(!access.contains('.'), "opaque by default");
    assert!(handle.platform().access_token_valid(&access));
    assert!(!handle.platform().access_token_valid("forged.token.value"));
    let expires_at_ms = (mock::clock::unix_ms_now() / 1000 + 121) * 1000;
    assert!(!handle
        .platform()
        .access_token_valid_at(&access, expires_at_ms));

    let scoped = tokens
        .post(
            &format!("grant_type=client_credentials&scope=events+presence&client_id={CLIENT_ID}&client_secret={CLIENT_SECRET}"),
            None,
        )
        .await;
    assert_eq!(scoped.json()["scope"], "events presence");

    // Refresh rotates: new access and refresh tokens, and the old refresh token dies.
    let old_refresh = first["refresh_token"].as_str().unwrap().to_owned();
    let refreshed = tokens.refresh(&old_refresh).await;
    assert_eq!(refreshed.status, 200);
    let second = refreshed.json();
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    assert_ne!(second["access_token"], first["access_token"]);
    assert!(handle
        .platform()
        .access_token_valid(second["access_token"].as_str().unwrap()));
    let reused = tokens.refresh(&old_refresh).await;
    assert_eq!(reused.status, 400);
    assert_eq!(reused.json(), serde_json::json!({"error": "invalid_grant"}));
    let again = tokens
        .refresh(second["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(again.status, 200);

    let wrong_secret = tokens
        .post("grant_type=client_credentials", Some((CLIENT_ID, "wrong")))
        .await;
    assert_eq!(wrong_secret.status, 401);
    assert_eq!(wrong_secret.json()["error"], "invalid_client");
    assert!(wrong_secret.headers.contains_key("www-authenticate"));

    let unknown_grant = tokens
        .post(
            "grant_type=password&username=u&password=p",
            Some((CLIENT_ID, CLIENT_SECRET)),
        )
        .await;
    assert_eq!(unknown_grant.status, 400);
    assert_eq!(unknown_grant.json()["error"], "unsupported_grant_type");

    let log_response = http_client()
        .get(format!("{}/_mock/token-requests", handle.http_url()))
        .send()
        .await
        .unwrap();
    let log_text = log_response.text().await.unwrap();
    let log: Vec<Value> = serde_json::from_str(&log_text).unwrap();
    let summary: Vec<(String, bool, u64)> = log
        .iter()
        .map(|entry| {
            (
                entry["grant_type"].as_str().unwrap().to_owned(),
                entry["secret_matched"].as_bool().unwrap(),
                entry["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, bool, u64)> = [
        ("client_credentials", true, 200),
        ("client_credentials", true, 200),
        ("refresh_token", true, 200),
        ("refresh_token", true, 400),
        ("refresh_token", true, 200),
        ("client_credentials", false, 401),
        ("password", true, 400),
    ]
    .iter()
    .map(|(g, m, s)| ((*g).to_owned(), *m, *s))
    .collect();
    assert_eq!(summary, expected);
    assert_eq!(log[0]["client_auth"], "basic");
    assert_eq!(log[0]["client_id"], CLIENT_ID);
    assert_eq!(log[2]["client_auth"], "form");
    assert_eq!(log[3]["error"], "invalid_grant");
    // The log never holds the secret or any token.
    for secret in [
        CLIENT_SECRET,
        access.as_str(),
        old_refresh.as_str(),
        second["access_token"].as_str().unwrap(),
        second["refresh_token"].as_str().unwrap(),
    ] {
        assert!(
            !log_text.contains(secret),
            "request log leaks a secret or token"
        );
    }
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn token_fault_modes() {
    let handle = start(MockConfig {
        token_fault: TokenFault::ServerError,
        ..MockConfig::default()
    })
    .await;
    let tokens = TokenClient::new(&handle);

    // Set at start-up.
    let answer = tokens.client_credentials().await;
    assert_eq!(answer.status, 500);

    let settings = set_fault(&handle, r#"{"mode":"down"}"#).await;
    assert_eq!(settings["mode"], "down");
    assert!(
        tokens
            .try_post(
                "grant_type=client_credentials",
                Some((CLIENT_ID, CLIENT_SECRET))
            )
            .await
            .is_err(),
        "down must close the connection without an answer"
    );

    set_fault(&handle, r#"{"mode":"garbage"}"#).await;
    let answer = tokens.client_credentials().await;
    assert_eq!(answer.status, 200);
    assert!(serde_json::from_str::<Value>(&answer.body).is_err());

    set_fault(&handle, r#"{"mode":"invalid_grant"}"#).await;
    let answer = tokens.client_credentials().await;
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["error"], "invalid_grant");

    set_fault(&handle, r#"{"mode":"500"}"#).await;
    assert_eq!(tokens.client_credentials().await.status, 500);

    let settings = set_fault(&handle, r#"{"mode":"slow","delay_ms":400,"lifetime":30}"#).await;
    assert_eq!(settings["delay_ms"], 400);
    let started = Instant::now();
    let answer = tokens.client_credentials().await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["expires_in"], 30);

    set_fault(&handle, r#"{"mode":"none"}"#).await;
    let started = Instant::now();
    let answer = tokens.client_credentials().await;
    assert!(started.elapsed() < Duration::from_millis(400));
    assert_eq!(answer.status, 200);

    // Malformed updates are refused and change nothing.
    let refused = http_client()
        .post(format!("{}/_mock/token-fault", handle.http_url()))
        .body(r#"{"mode":"sideways"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert_eq!(handle.platform().token_fault_settings().mode, "none");

    let log = handle.platform().token_requests();
    let faults: Vec<(&str, Option<u16>)> = log
        .iter()
        .map(|entry| (entry.fault.as_str(), entry.status))
        .collect();
    assert_eq!(
        faults,
        vec![
            ("500", Some(500)),
            ("down", None),
            ("garbage", Some(200)),
            ("invalid_grant", Some(400)),
            ("500", Some(500)),
            ("slow", Some(200)),
            ("none", Some(200)),
        ]
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn token_endpoint_bounds_body_and_method() {
    let handle = start(MockConfig::default()).await;
    let tokens = TokenClient::new(&handle);
    let huge = format!(
        "grant_type=client_credentials&pad={}",
        "x".repeat(mock::oauth::MAX_TOKEN_BODY_BYTES)
    );
    let answer = tokens.post(&huge, Some((CLIENT_ID, CLIENT_SECRET))).await;
    assert_eq!(answer.status, 413);

    let get = http_client()
        .get(format!("{}/oauth/token", handle.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    handle.shutdown().await.unwrap();
}

/// Echo-only mock: every event in these tests is one a test asked for.
fn quiet() -> MockConfig {
    MockConfig {
        event_rate: 0.0,
        ..MockConfig::default()
    }
}

/// Bursts `count` events to `agent`'s sessions once at least one is running (a session is
/// registered just after its 101 is written, so the first try may find none).
async fn burst(handle: &MockHandle, agent: &str, count: u64) {
    let deadline = Instant::now() + WAIT;
    while handle.platform().burst(Some(agent), count).unwrap() == 0 {
        assert!(Instant::now() < deadline, "no running session for {agent}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The next `count` events, parsed.
async fn events<S>(websocket: &mut WebSocketStream<S>, count: usize) -> Vec<Value>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut seen = Vec::with_capacity(count);
    while seen.len() < count {
        let message = next_matching(websocket, |m| event_json(m).is_some()).await;
        seen.push(event_json(&message).unwrap());
    }
    seen
}

fn nice_seqs(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["payload"]["seq"].as_u64().unwrap())
        .collect()
}

fn genesys_seqs(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["metadata"]["seq"].as_u64().unwrap())
        .collect()
}

async fn close_normally<S>(mut websocket: WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    websocket
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await
        .unwrap();
    // Drain until the server's answer ends the stream.
    while let Ok(Some(Ok(_))) = timeout(WAIT, websocket.next()).await {}
}

#[tokio::test]
async fn cursor_replay_overlaps_then_continues_the_agents_sequence() {
    let handle = start(quiet()).await;
    let agent = [("x-nice-agent-id", "n-1")];
    let (_, mut first) = raw_websocket(&handle, "/nice", &agent).await;
    burst(&handle, "n-1", 10).await;
    let original = events(&mut first, 10).await;
    assert_eq!(nice_seqs(&original), (1..=10).collect::<Vec<_>>());
    for (event, seq) in original.iter().zip(1..) {
        assert_eq!(event["correlationId"], format!("platform-1-n-1-{seq}"));
        assert_eq!(event["payload"]["agentId"], "n-1");
    }
    close_normally(first).await;

    // The client processed up to seq 7: it gets 5, 6, 7 again (overlap 3), then 8..10.
    let (_, mut second) = raw_websocket(&handle, "/nice?cursor=7", &agent).await;
    let replayed = events(&mut second, 6).await;
    assert_eq!(nice_seqs(&replayed), vec![5, 6, 7, 8, 9, 10]);
    // Replayed events are the same events: same id, same timestamp.
    for event in &replayed {
        let seq = event["payload"]["seq"].as_u64().unwrap();
        let before = &original[usize::try_from(seq - 1).unwrap()];
        assert_eq!(event["correlationId"], before["correlationId"]);
        assert_eq!(event["timestamp"], before["timestamp"]);
    }
    let duplicates = replayed
        .iter()
        .filter(|e| {
            original
                .iter()
                .any(|o| o["correlationId"] == e["correlationId"])
        })
        .count();
    assert_eq!(duplicates, 6, "everything replayed here was seen before");
    // New events continue the agent's sequence across sessions.
    burst(&handle, "n-1", 2).await;
    assert_eq!(nice_seqs(&events(&mut second, 2).await), vec![11, 12]);

    let record = wait_for_session(&http_client(), &handle, 2, |r| r.events_sent == 8).await;
    assert_eq!(record.replayed, 6);
    assert_eq!((record.first_seq, record.last_seq), (Some(5), Some(12)));
    let first_record = &handle.platform().sessions(None)[0];
    assert_eq!(
        (first_record.first_seq, first_record.last_seq),
        (Some(1), Some(10))
    );
    assert_eq!(first_record.close_code, Some(1000));

    // A cursor at the newest event still gets the overlap; an old one gets everything kept.
    let (_, mut third) = raw_websocket(&handle, "/nice?cursor=12", &agent).await;
    assert_eq!(nice_seqs(&events(&mut third, 3).await), vec![10, 11, 12]);
    let (_, mut fourth) = raw_websocket(&handle, "/nice?cursor=0", &agent).await;
    assert_eq!(
        nice_seqs(&events(&mut fourth, 12).await),
        (1..=12).collect::<Vec<_>>()
    );

    // The history is visible over HTTP.
    let history: Value = http_client()
        .get(format!("{}/_mock/history?agent=n-1", handle.http_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(history["next_seq"], 13);
    assert_eq!(history["events"].as_array().unwrap().len(), 12);
    let unknown = http_client()
        .get(format!("{}/_mock/history?agent=nobody", handle.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn since_replay_overlaps_then_continues() {
    let handle = start(quiet()).await;
    let agent = [("x-genesys-user-id", "g-7")];
    let (_, mut first) = raw_websocket(&handle, "/api/v2/notifications", &agent).await;
    // One event at a time, a few ms apart, so every event has its own timestamp.
    let mut original = Vec::new();
    for _ in 0..6 {
        burst(&handle, "g-7", 1).await;
        original.extend(events(&mut first, 1).await);
        tokio::time::sleep(Duration::from_millis(4)).await;
    }
    assert_eq!(genesys_seqs(&original), (1..=6).collect::<Vec<_>>());
    drop(first);

    // The client has everything up to event 4's timestamp: 2, 3, 4 again, then 5, 6.
    let since = original[3]["metadata"]["timestamp"].as_str().unwrap();
    assert_ne!(
        since,
        original[4]["metadata"]["timestamp"].as_str().unwrap()
    );
    let target = format!("/api/v2/notifications?since={since}");
    let (_, mut second) = raw_websocket(&handle, &target, &agent).await;
    let replayed = events(&mut second, 5).await;
    assert_eq!(genesys_seqs(&replayed), vec![2, 3, 4, 5, 6]);
    for event in &replayed {
        let seq = event["metadata"]["seq"].as_u64().unwrap();
        let before = &original[usize::try_from(seq - 1).unwrap()];
        assert_eq!(event["metadata"]["id"], before["metadata"]["id"]);
        assert_eq!(
            event["metadata"]["timestamp"],
            before["metadata"]["timestamp"]
        );
        assert_eq!(event["data"]["agentId"], "g-7");
    }
    burst(&handle, "g-7", 1).await;
    assert_eq!(genesys_seqs(&events(&mut second, 1).await), vec![7]);

    // Offsets are understood: the same instant written in +02:00.
    let since_ms = mock::clock::parse_rfc3339_ms(since).unwrap();
    let shifted = mock::clock::rfc3339_ms(since_ms + 2 * 3_600_000).replace('Z', "%2B02:00");
    let target = format!("/api/v2/notifications?since={shifted}");
    let (_, mut third) = raw_websocket(&handle, &target, &agent).await;
    assert_eq!(
        genesys_seqs(&events(&mut third, 6).await),
        vec![2, 3, 4, 5, 6, 7]
    );

    // Without since/cursor there is no replay.
    let (_, mut fresh) = raw_websocket(&handle, "/api/v2/notifications", &agent).await;
    assert!(timeout(Duration::from_millis(300), fresh.next())
        .await
        .is_err());

    // Unusable resume points are refused at the upgrade.
    for query in [
        "since=yesterday",
        "cursor=-1",
        "cursor=1&since=2024-01-01T00:00:00Z",
        "fault=sideways",
    ] {
        let (response, _) =
            raw_exchange(&handle, &upgrade_request(&format!("/ws?{query}"), &agent)).await;
        assert_eq!(response.status, 400, "{query}");
    }
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn overlap_is_configurable() {
    let handle = start(MockConfig {
        replay_overlap: 0,
        ..quiet()
    })
    .await;
    let agent = [("x-agent-id", "a-0")];
    let (_, mut first) = raw_websocket(&handle, "/ws", &agent).await;
    burst(&handle, "a-0", 4).await;
    events(&mut first, 4).await;
    let (_, mut second) = raw_websocket(&handle, "/ws?cursor=2", &agent).await;
    assert_eq!(genesys_seqs(&events(&mut second, 2).await), vec![3, 4]);
    assert!(timeout(Duration::from_millis(300), second.next())
        .await
        .is_err());
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn misrouted_sessions_name_another_agent_beside_healthy_ones() {
    let handle = start(quiet()).await;
    let (_, mut faulty) = raw_websocket(
        &handle,
        "/ws?fault=misrouted",
        &[("x-agent-id", "m-1"), ("x-agent-routing-key", "rk-m1")],
    )
    .await;
    let (_, mut healthy) = raw_websocket(
        &handle,
        "/ws",
        &[("x-agent-id", "h-1"), ("x-agent-routing-key", "rk-h1")],
    )
    .await;
    burst(&handle, "m-1", 6).await;
    burst(&handle, "h-1", 6).await;
    let seen = events(&mut faulty, 6).await;
    let agents: Vec<&str> = seen
        .iter()
        .map(|e| e["data"]["agentId"].as_str().unwrap())
        .collect();
    assert_eq!(
        agents,
        vec!["m-1", "m-1", "other-m-1", "m-1", "m-1", "other-m-1"]
    );
    let keys: Vec<&str> = seen
        .iter()
        .map(|e| e["data"]["routingKey"].as_str().unwrap())
        .collect();
    assert_eq!(
        keys,
        vec![
            "rk-m1",
            "rk-m1",
            "other-rk-m1",
            "rk-m1",
            "rk-m1",
            "other-rk-m1"
        ]
    );
    // The session's own agent keeps a gapless sequence; the stray events are the other
    // agent's, with that agent's ids and topic.
    assert_eq!(genesys_seqs(&seen), vec![1, 2, 1, 3, 4, 2]);
    assert_eq!(seen[2]["metadata"]["id"], "platform-1-other-m-1-1");
    assert_eq!(seen[2]["type"], "v2.agents.other-m-1.events");

    let clean = events(&mut healthy, 6).await;
    assert!(clean.iter().all(|e| e["data"]["agentId"] == "h-1"));
    assert_eq!(genesys_seqs(&clean), (1..=6).collect::<Vec<_>>());

    let records = handle.platform().sessions(None);
    assert_eq!(records[0].fault, "misrouted");
    assert_eq!(records[1].fault, "none");
    let record = wait_for_session(&http_client(), &handle, 1, |r| r.events_sent == 6).await;
    assert_eq!(record.misrouted, 2);
    assert!(record.fault_fired);
    assert_eq!((record.first_seq, record.last_seq), (Some(1), Some(4)));
    assert_eq!(handle.platform().history("other-m-1").unwrap().next_seq, 3);
    handle.shutdown().await.unwrap();
}

/// One frame as read from the wire by a test client that knows no WebSocket library.
#[derive(Debug)]
struct WireFrame {
    /// Header bytes exactly as received.
    head: Vec<u8>,
    /// Payload as received (still masked if the frame was).
    payload: Vec<u8>,
}

impl WireFrame {
    fn bytes(&self) -> Vec<u8> {
        [self.head.as_slice(), self.payload.as_slice()].concat()
    }

    fn opcode(&self) -> u8 {
        self.head[0] & 0x0f
    }
}

/// Reads one frame; `None` on a clean end of stream before its first byte.
async fn read_wire_frame(stream: &mut TcpStream) -> Option<WireFrame> {
    let mut head = vec![0u8; 2];
    match timeout(WAIT, stream.read_exact(&mut head)).await.unwrap() {
        Ok(_) => {}
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return None,
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return None,
        Err(error) => panic!("reading a frame: {error}"),
    }
    let extra = match head[1] & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    } + if head[1] & 0x80 != 0 { 4 } else { 0 };
    let mut rest = vec![0u8; extra];
    timeout(WAIT, stream.read_exact(&mut rest))
        .await
        .unwrap()
        .unwrap();
    head.extend_from_slice(&rest);
    let header = mock::frame::parse_header(&head).unwrap().unwrap();
    let mut payload = vec![0u8; usize::try_from(header.payload_len).unwrap()];
    timeout(WAIT, stream.read_exact(&mut payload))
        .await
        .unwrap()
        .unwrap();
    Some(WireFrame { head, payload })
}

/// A masked client frame, as a conforming client would send it.
fn client_frame(opcode: u8, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    mock::frame::encode(
        &mock::frame::FrameSpec {
            rsv1,
            mask: Some([0x11, 0x22, 0x33, 0x44]),
            ..mock::frame::FrameSpec::server(opcode)
        },
        payload,
    )
}

#[tokio::test]
async fn violation_faults_write_exactly_their_bytes() {
    let handle = start(quiet()).await;
    let hello = b"Hello";
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "malformed",
            [&[0x81u8, 0x0c][..], b"{\"bad\":\"", &[0xff, 0xfe], b"\"}"].concat(),
        ),
        // RFC 6455 §5.7's masked "Hello": a server must never mask.
        (
            "masked",
            vec![
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ],
        ),
        ("reserved-opcode", [&[0x83u8, 0x05][..], hello].concat()),
        ("rsv", [&[0xc1u8, 0x05][..], hello].concat()),
    ];
    for (index, (fault, expected)) in cases.iter().enumerate() {
        let agent = format!("v-{index}");
        let (response, mut stream) = raw_exchange(
            &handle,
            &upgrade_request(&format!("/ws?fault={fault}"), &[("x-agent-id", &agent)]),
        )
        .await;
        assert_eq!(response.status, 101, "{fault}");
        let frame = read_wire_frame(&mut stream).await.unwrap();
        assert_eq!(&frame.bytes(), expected, "{fault}");

        // The session goes on: a client Close (1002, as a client failing the connection
        // would send) is recorded and answered with the same code.
        stream
            .write_all(&client_frame(0x8, false, &[0x03, 0xea]))
            .await
            .unwrap();
        let answer = read_wire_frame(&mut stream).await.unwrap();
        assert_eq!(answer.bytes(), [0x88, 0x02, 0x03, 0xea], "{fault}");
        assert!(
            read_wire_frame(&mut stream).await.is_none(),
            "{fault}: server closes TCP"
        );
        let number = u64::try_from(index).unwrap() + 1;
        let record = wait_for_session(&http_client(), &handle, number, |r| r.closed).await;
        assert_eq!(record.fault, *fault);
        assert!(record.fault_fired);
        assert_eq!(record.close_code, Some(1002));
    }
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn fault_after_lets_good_events_through_first() {
    let handle = start(quiet()).await;
    let (_, mut stream) = raw_exchange(
        &handle,
        &upgrade_request("/ws?fault=rsv&fault_after=2", &[("x-agent-id", "fa-1")]),
    )
    .await;
    burst(&handle, "fa-1", 3).await;
    for seq in 1..=2 {
        let frame = read_wire_frame(&mut stream).await.unwrap();
        assert_eq!(frame.head[0], 0x81, "event {seq} is a plain text frame");
        let event: Value = serde_json::from_slice(&frame.payload).unwrap();
        assert_eq!(event["metadata"]["seq"], seq);
    }
    let violation = read_wire_frame(&mut stream).await.unwrap();
    assert_eq!(
        violation.bytes(),
        [0xc1, 0x05, b'H', b'e', b'l', b'l', b'o']
    );
    let third = read_wire_frame(&mut stream).await.unwrap();
    assert_eq!(third.head[0], 0x81);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn oversized_fault_is_one_text_frame_of_the_configured_size() {
    let handle = start(quiet()).await;
    let (_, mut stream) = raw_exchange(&handle, &upgrade_request("/ws?fault=oversized", &[])).await;
    let frame = read_wire_frame(&mut stream).await.unwrap();
    // FIN + text, 64-bit length 0x200000 (2 MiB), unmasked.
    assert_eq!(frame.head, [0x81, 0x7f, 0, 0, 0, 0, 0, 0x20, 0x00, 0x00]);
    assert_eq!(frame.payload.len(), 2 * 1024 * 1024);
    let parsed: Value = serde_json::from_slice(&frame.payload).unwrap();
    assert_eq!(parsed["type"], "oversized");
    handle.shutdown().await.unwrap();

    let handle = start(MockConfig {
        oversized_bytes: 70_000,
        fault: mock::SessionFault::Oversized,
        ..quiet()
    })
    .await;
    let (_, mut stream) = raw_exchange(&handle, &upgrade_request("/ws", &[])).await;
    let frame = read_wire_frame(&mut stream).await.unwrap();
    assert_eq!(frame.head, [0x81, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]);
    assert_eq!(handle.platform().sessions(None)[0].fault, "oversized");
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn drop_fault_closes_tcp_without_a_close_frame() {
    let handle = start(fast_events()).await;
    let (_, mut stream) = raw_exchange(
        &handle,
        &upgrade_request("/ws?fault=drop", &[("x-agent-id", "d-1")]),
    )
    .await;
    let mut frames = Vec::new();
    while let Some(frame) = read_wire_frame(&mut stream).await {
        assert!(frames.len() < 100, "the connection was never dropped");
        frames.push(frame);
    }
    assert_eq!(frames.len(), 5, "--drop-after defaults to 5 events");
    assert!(frames.iter().all(|f| f.opcode() == 0x1), "no Close frame");
    let record = wait_for_session(&http_client(), &handle, 1, |r| r.closed).await;
    assert!(record.fault_fired);
    assert_eq!(record.events_sent, 5);
    assert_eq!(record.close_code, None);

    // Per session: fault_after=0 drops right after the handshake; the global flag works too.
    let (_, mut stream) = raw_exchange(
        &handle,
        &upgrade_request("/ws?fault=drop&fault_after=0", &[]),
    )
    .await;
    assert!(read_wire_frame(&mut stream).await.is_none());
    handle.shutdown().await.unwrap();

    let handle = start(MockConfig {
        fault: mock::SessionFault::Drop,
        drop_after: 2,
        ..fast_events()
    })
    .await;
    let (_, mut stream) = raw_exchange(&handle, &upgrade_request("/ws", &[])).await;
    let mut count = 0;
    while read_wire_frame(&mut stream).await.is_some() {
        count += 1;
        assert!(count < 100);
    }
    assert_eq!(count, 2);
    handle.shutdown().await.unwrap();
}

/// Inflates a permessage-deflate payload (RFC 7692 §7.2.2) with flate2 directly.
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    let mut inflater = flate2::Decompress::new(false);
    let mut output = Vec::with_capacity(64 * 1024);
    inflater
        .decompress_vec(&input, &mut output, flate2::FlushDecompress::Sync)
        .unwrap();
    assert_eq!(inflater.total_in(), input.len() as u64);
    output
}

#[tokio::test]
async fn deflate_is_negotiated_and_used_when_enabled() {
    let handle = start(MockConfig {
        deflate: true,
        ..quiet()
    })
    .await;
    let (response, mut stream) = raw_exchange(
        &handle,
        &upgrade_request(
            "/ws",
            &[
                ("x-agent-id", "z-1"),
                (
                    "Sec-WebSocket-Extensions",
                    "permessage-deflate; client_max_window_bits",
                ),
            ],
        ),
    )
    .await;
    assert_eq!(response.status, 101);
    assert_eq!(
        response.header("sec-websocket-extensions"),
        Some("permessage-deflate")
    );
    // RFC 7692 §7.2.3.1's compressed "Hello" from the client comes back compressed.
    stream
        .write_all(&client_frame(
            0x1,
            true,
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
        ))
        .await
        .unwrap();
    let echo = read_wire_frame(&mut stream).await.unwrap();
    assert_eq!(echo.head[0], 0xc1, "FIN + RSV1 + text");
    assert_eq!(inflate(&echo.payload), b"Hello");

    burst(&handle, "z-1", 1).await;
    let event = read_wire_frame(&mut stream).await.unwrap();
    assert_eq!(event.head[0], 0xc1);
    // The server keeps its compression context (no server_no_context_takeover was asked), so
    // the event may refer back into the echo: inflate both with one inflater, in order.
    let mut both = flate2::Decompress::new(false);
    let mut output = Vec::with_capacity(64 * 1024);
    for payload in [&echo.payload, &event.payload] {
        let mut input = payload.clone();
        input.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
        output.clear();
        both.decompress_vec(&input, &mut output, flate2::FlushDecompress::Sync)
            .unwrap();
    }
    let parsed: Value = serde_json::from_slice(&output).unwrap();
    assert_eq!(parsed["data"]["agentId"], "z-1");

    // A client that does not offer deflate gets a plain session from the same mock.
    let (plain_response, mut plain) = raw_websocket(&handle, "/ws", &[("x-agent-id", "z-2")]).await;
    assert_eq!(plain_response.header("sec-websocket-extensions"), None);
    plain.send(Message::text("plain")).await.unwrap();
    assert_eq!(
        next_matching(&mut plain, |m| m.is_text()).await,
        Message::text("plain")
    );

    let records = handle.platform().sessions(None);
    assert!(records[0].deflate_offered && records[0].deflate_negotiated);
    assert!(!records[1].deflate_offered && !records[1].deflate_negotiated);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn deflate_offer_is_recorded_but_declined_when_disabled() {
    let handle = start(quiet()).await;
    let (response, mut websocket) = raw_websocket(
        &handle,
        "/ws",
        &[("Sec-WebSocket-Extensions", "permessage-deflate")],
    )
    .await;
    assert_eq!(response.header("sec-websocket-extensions"), None);
    websocket.send(Message::text("x")).await.unwrap();
    next_matching(&mut websocket, |m| m.is_text()).await;
    let record = &handle.platform().sessions(None)[0];
    assert!(record.deflate_offered);
    assert!(!record.deflate_negotiated);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn burst_endpoint_reaches_every_live_session() {
    let handle = start(quiet()).await;
    let client = http_client();
    let (_, mut a) = raw_websocket(&handle, "/ws", &[("x-agent-id", "b-1")]).await;
    let (_, mut b) = raw_websocket(&handle, "/ws", &[("x-agent-id", "b-2")]).await;
    // Wait until both sessions run, so the burst reaches both.
    let deadline = Instant::now() + WAIT;
    loop {
        let asked = handle.platform().burst(None, 0).unwrap();
        if asked == 2 {
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let answer: Value = client
        .post(format!("{}/_mock/burst", handle.http_url()))
        .body(r#"{"agent": null, "count": 300}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer, serde_json::json!({"sessions": 2, "count": 300}));
    assert_eq!(
        genesys_seqs(&events(&mut a, 300).await),
        (1..=300).collect::<Vec<_>>()
    );
    assert_eq!(events(&mut b, 300).await.len(), 300);

    let answer: Value = client
        .post(format!("{}/_mock/burst", handle.http_url()))
        .body(r#"{"agent": "b-2", "count": 1}"#)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["sessions"], 1);
    assert_eq!(genesys_seqs(&events(&mut b, 1).await), vec![301]);

    for body in [
        r#"{"agent": null, "count": 100001}"#,
        r#"{"count": -1}"#,
        r#"{"agent": "b-1", "count": 1, "extra": true}"#,
    ] {
        let refused = client
            .post(format!("{}/_mock/burst", handle.http_url()))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{body}");
    }
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn reset_restarts_sequences() {
    let handle = start(quiet()).await;
    let agent = [("x-agent-id", "r-1")];
    let (_, mut first) = raw_websocket(&handle, "/ws", &agent).await;
    burst(&handle, "r-1", 2).await;
    events(&mut first, 2).await;
    handle.platform().reset();
    assert!(handle.platform().history("r-1").is_none());
    burst(&handle, "r-1", 1).await;
    assert_eq!(genesys_seqs(&events(&mut first, 1).await), vec![1]);
    handle.shutdown().await.unwrap();
}
