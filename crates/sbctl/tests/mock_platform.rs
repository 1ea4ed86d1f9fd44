//! The mock platform over real sockets on 127.0.0.1: handshake, echo, events in both envelopes,
//! records, the token endpoint (grants, rotation, faults) and shutdown.
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
    assert_eq!(first["metadata"]["id"], "platform-1-1-1");
    let timestamp = first["metadata"]["timestamp"].as_str().unwrap();
    assert_eq!(timestamp.len(), "2024-01-01T00:00:00.000Z".len());
    assert!(timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b'T');
    assert_eq!(seen[1]["data"]["seq"], 2);
    assert_eq!(seen[1]["metadata"]["id"], "platform-1-1-2");

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
    assert_eq!(event["correlationId"], "platform-1-1-1");
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
    assert_eq!(event["correlationId"], "platform-b-1-1");
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
    assert_eq!(health.text().await.unwrap(), "ok");

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
    assert_eq!(access.split('.').count(), 3);
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
