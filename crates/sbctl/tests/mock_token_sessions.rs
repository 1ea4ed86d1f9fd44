//! The mock platform's token-bound sessions over real sockets on 127.0.0.1: `--require-token`
//! on the upgrade, per-session token expiry (close 1008), `auth_refresh` frames that are consumed
//! and move the expiry, the inbound log, and JWT access tokens with a skewed `exp`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly on an unexpected error"
)]

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use sbctl::mock::clock::unix_ms_now;
use sbctl::mock::{self, MockConfig, MockHandle, SessionRecord, TokenFormat};
use serde_json::{json, Value};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Upper bound for any single wait that is not about expiry.
const WAIT: Duration = Duration::from_secs(10);
/// Upper bound for an expiry close to arrive once the token's lifetime has begun.
const EXPIRY_WAIT: Duration = Duration::from_secs(6);
const CLIENT_ID: &str = "switchboard";
const CLIENT_SECRET: &str = "switchboard-dev-secret";

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn start(config: MockConfig) -> MockHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    mock::spawn(config, listener).unwrap()
}

/// Echo only, tokens required, with the given lifetime.
fn token_bound(lifetime_secs: u64) -> MockConfig {
    MockConfig {
        event_rate: 0.0,
        require_token: true,
        token_lifetime_secs: lifetime_secs,
        ..MockConfig::default()
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder().timeout(WAIT).build().unwrap()
}

/// A fresh client-credentials grant: the whole JSON answer.
async fn fetch_token(handle: &MockHandle) -> Value {
    let response = http_client()
        .post(format!("{}/oauth/token", handle.http_url()))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn fresh_access_token(handle: &MockHandle) -> String {
    fetch_token(handle).await["access_token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Opens `ws://ADDR{target}` with the extra headers; `Err` is the refusal's status and its
/// `WWW-Authenticate`.
async fn connect(
    handle: &MockHandle,
    target: &str,
    headers: &[(&'static str, &str)],
) -> Result<Socket, (u16, Option<String>)> {
    let mut request = handle.ws_url(target).into_client_request().unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).unwrap());
    }
    match timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("upgrade timed out")
    {
        Ok((socket, response)) => {
            assert_eq!(response.status().as_u16(), 101);
            Ok(socket)
        }
        Err(WsError::Http(response)) => Err((
            response.status().as_u16(),
            response
                .headers()
                .get("www-authenticate")
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned),
        )),
        Err(other) => panic!("upgrade failed without a status: {other}"),
    }
}

async fn connect_with_token(handle: &MockHandle, token: &str) -> Socket {
    connect(
        handle,
        "/ws",
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
    .unwrap_or_else(|refusal| panic!("a fresh token was refused: {refusal:?}"))
}

fn auth_refresh(token: &str) -> Message {
    Message::text(
        json!({
            "frame_type": "auth_refresh",
            "target_scope": "agent:events",
            "token_payload": {
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": 3,
                "issued_at": "2024-05-01T12:00:00Z",
            },
            "proxy_metadata": { "session_id": "sb-test-1", "region": "eu-test-1" },
        })
        .to_string(),
    )
}

fn seq_message(seq: u64) -> Message {
    Message::text(json!({ "seq": seq, "body": "hello" }).to_string())
}

/// The next data message, within `WAIT`; a Close or the end of the stream fails the test.
async fn next_data(socket: &mut Socket) -> Message {
    loop {
        let message = timeout(WAIT, socket.next())
            .await
            .expect("timed out waiting for a message")
            .expect("stream ended")
            .expect("websocket error");
        match message {
            Message::Text(_) | Message::Binary(_) => return message,
            Message::Close(frame) => panic!("closed while waiting for data: {frame:?}"),
            _ => {}
        }
    }
}

/// Waits up to `within` for the server's Close frame and returns it with the time it arrived.
/// Data messages before it fail the test: in these sessions nothing else is due.
async fn expect_close(socket: &mut Socket, within: Duration) -> (CloseFrame, u64) {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = timeout(left, socket.next())
            .await
            .expect("no Close frame in time")
            .expect("stream ended without a Close frame")
            .expect("websocket error");
        match message {
            Message::Close(Some(frame)) => return (frame, unix_ms_now()),
            Message::Close(None) => panic!("Close frame without a code"),
            Message::Text(_) | Message::Binary(_) => panic!("unexpected data: {message:?}"),
            _ => {}
        }
    }
}

/// Polls the records until session `number` satisfies `done`.
async fn wait_for_session(
    handle: &MockHandle,
    number: u64,
    done: impl Fn(&SessionRecord) -> bool,
) -> SessionRecord {
    let deadline = Instant::now() + WAIT;
    loop {
        let found = handle
            .platform()
            .sessions(None)
            .into_iter()
            .find(|record| record.session == number);
        if let Some(record) = found {
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

async fn get_json(handle: &MockHandle, path: &str) -> Value {
    let response = http_client()
        .get(format!("{}{path}", handle.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn require_token_refuses_upgrades_without_a_valid_token() {
    let handle = start(token_bound(60)).await;
    let challenge = Some(r#"Bearer error="invalid_token""#.to_owned());

    assert_eq!(
        connect(&handle, "/ws", &[]).await.err(),
        Some((401, challenge.clone())),
        "no token"
    );
    assert_eq!(
        connect(&handle, "/ws", &[("authorization", "Bearer never-issued")])
            .await
            .err(),
        Some((401, challenge.clone())),
        "unknown token"
    );
    // A token from another platform is unknown here.
    let elsewhere = start(token_bound(60)).await;
    let foreign = fresh_access_token(&elsewhere).await;
    assert_eq!(
        connect(&handle, &format!("/ws?access_token={foreign}"), &[])
            .await
            .err(),
        Some((401, challenge.clone())),
        "foreign token"
    );
    elsewhere.shutdown().await.unwrap();

    let token = fresh_access_token(&handle).await;
    // A Bearer header wins over the query parameter, even when only the parameter is good.
    assert_eq!(
        connect(
            &handle,
            &format!("/ws?access_token={token}"),
            &[("authorization", "Bearer never-issued")]
        )
        .await
        .err(),
        Some((401, challenge)),
        "header wins"
    );
    assert!(
        handle.platform().sessions(None).is_empty(),
        "no refused upgrade is a session"
    );

    let mut by_header = connect_with_token(&handle, &token).await;
    let mut by_query = connect(&handle, &format!("/ws?x=1&access_token={token}"), &[])
        .await
        .expect("the query parameter carries a token too");
    for socket in [&mut by_header, &mut by_query] {
        socket.send(Message::text("ping?")).await.unwrap();
        assert_eq!(next_data(socket).await, Message::text("ping?"));
    }

    let health = get_json(&handle, "/_mock/health").await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["require_token"], true);
    assert_eq!(health["token_format"], "opaque");
    assert_eq!(health["rejected_upgrades_no_token"], 4, "{health}");
    assert_eq!(health["rejected_upgrades_token_missing"], 1, "{health}");
    assert_eq!(health["rejected_upgrades_token_invalid"], 3, "{health}");

    let expiry = handle.platform().access_token_expiry_ms(&token);
    assert!(expiry.is_some());
    let records = handle.platform().sessions(None);
    assert_eq!(records.len(), 2);
    for record in &records {
        assert!(record.token_required);
        assert_eq!(record.token_expires_at_ms, expiry);
        assert!(!record.expired);
    }

    // Reset zeroes the counters with the records.
    http_client()
        .post(format!("{}/_mock/reset", handle.http_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(handle.platform().health().rejected_upgrades_no_token, 0);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn without_require_token_upgrades_are_not_checked() {
    let handle = start(MockConfig {
        event_rate: 0.0,
        ..MockConfig::default()
    })
    .await;
    let mut socket = connect(&handle, "/ws", &[("authorization", "Bearer not-ours")])
        .await
        .expect("no token needed");
    socket.send(Message::text("x")).await.unwrap();
    assert_eq!(next_data(&mut socket).await, Message::text("x"));
    let record = wait_for_session(&handle, 1, |record| record.frames_out == 1).await;
    assert!(!record.token_required);
    assert_eq!(record.token_expires_at_ms, None);
    assert_eq!(handle.platform().health().rejected_upgrades_no_token, 0);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn session_is_closed_with_1008_when_its_token_expires() {
    let handle = start(token_bound(2)).await;
    let token = fresh_access_token(&handle).await;
    let expires_at_ms = handle.platform().access_token_expiry_ms(&token).unwrap();
    let mut socket = connect_with_token(&handle, &token).await;
    socket.send(seq_message(1)).await.unwrap();
    assert_eq!(next_data(&mut socket).await, seq_message(1));

    let (frame, arrived_ms) = expect_close(&mut socket, EXPIRY_WAIT).await;
    assert_eq!(frame.code, CloseCode::Policy, "1008");
    assert_eq!(frame.reason.as_str(), "token expired");
    assert!(
        arrived_ms >= expires_at_ms,
        "closed {} ms before the token expired",
        expires_at_ms - arrived_ms
    );

    let record = wait_for_session(&handle, 1, |record| record.closed).await;
    assert!(record.expired);
    assert_eq!(record.server_close_code, Some(1008));
    assert_eq!(record.server_close_reason.as_deref(), Some("token expired"));
    assert_eq!(record.auth_refreshes, 0);
    assert_eq!(record.inbound_log, ["1"]);
    // The same over HTTP, under the documented names.
    let records = get_json(&handle, "/_mock/sessions").await;
    assert_eq!(records[0]["expired"], true);
    assert_eq!(records[0]["server_close_code"], 1008);
    assert_eq!(records[0]["token_expires_at_ms"], expires_at_ms);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn auth_refresh_moves_the_expiry_and_is_logged_in_order() {
    let handle = start(token_bound(4)).await;
    let first = fresh_access_token(&handle).await;
    let first_expiry = handle.platform().access_token_expiry_ms(&first).unwrap();
    let mut socket = connect_with_token(&handle, &first).await;
    socket.send(seq_message(1)).await.unwrap();
    assert_eq!(next_data(&mut socket).await, seq_message(1));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = fresh_access_token(&handle).await;
    let second_expiry = handle.platform().access_token_expiry_ms(&second).unwrap();
    assert!(second_expiry > first_expiry);
    socket.send(auth_refresh(&second)).await.unwrap();
    socket.send(seq_message(2)).await.unwrap();
    // The auth_refresh is consumed: the next message is the echo of what followed it.
    assert_eq!(next_data(&mut socket).await, seq_message(2));

    // Past the first token's expiry the session still answers.
    let wait_ms = (first_expiry + 600).saturating_sub(unix_ms_now());
    tokio::time::sleep(Duration::from_millis(wait_ms)).await;
    socket.send(seq_message(3)).await.unwrap();
    assert_eq!(next_data(&mut socket).await, seq_message(3));

    let record = wait_for_session(&handle, 1, |record| record.frames_out == 3).await;
    assert!(!record.closed && !record.expired);
    assert_eq!(record.auth_refreshes, 1);
    assert_eq!(record.auth_refreshes_invalid, 0);
    assert_eq!(record.token_expires_at_ms, Some(second_expiry));
    assert_eq!(record.inbound_log, ["1", "auth_refresh", "2", "3"]);
    assert_eq!(record.frames_in, 4);
    let seen = record.last_auth_refresh.clone().unwrap();
    assert!(seen.valid);
    assert_eq!(seen.token_type.as_deref(), Some("Bearer"));
    assert_eq!(seen.expires_in, Some(3));
    assert!(seen.issued_at_present);
    assert_eq!(seen.target_scope.as_deref(), Some("agent:events"));
    assert_eq!(seen.session_id.as_deref(), Some("sb-test-1"));
    assert_eq!(seen.region.as_deref(), Some("eu-test-1"));
    // The record never holds a token.
    let records = serde_json::to_string(&get_json(&handle, "/_mock/sessions").await).unwrap();
    assert!(
        !records.contains(&second),
        "the refreshed token is in the record"
    );

    // The new deadline is enforced in turn.
    let (frame, arrived_ms) = expect_close(&mut socket, EXPIRY_WAIT).await;
    assert_eq!(frame.code, CloseCode::Policy);
    assert_eq!(frame.reason.as_str(), "token expired");
    assert!(arrived_ms >= second_expiry);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn auth_refresh_is_never_echoed_and_is_counted_without_the_flag() {
    let handle = start(MockConfig {
        event_rate: 0.0,
        ..MockConfig::default()
    })
    .await;
    let mut socket = connect(&handle, "/ws", &[]).await.unwrap();
    socket.send(auth_refresh("never-issued")).await.unwrap();
    socket.send(Message::text("after-invalid")).await.unwrap();
    assert_eq!(next_data(&mut socket).await, Message::text("after-invalid"));

    let valid = fresh_access_token(&handle).await;
    socket.send(auth_refresh(&valid)).await.unwrap();
    socket.send(seq_message(7)).await.unwrap();
    assert_eq!(next_data(&mut socket).await, seq_message(7));

    let record = wait_for_session(&handle, 1, |record| record.frames_out == 2).await;
    assert!(
        !record.closed,
        "without --require-token nothing is enforced"
    );
    assert_eq!(record.auth_refreshes_invalid, 1);
    assert_eq!(record.auth_refreshes, 1);
    assert_eq!(
        record.token_expires_at_ms,
        handle.platform().access_token_expiry_ms(&valid)
    );
    assert_eq!(
        record.inbound_log,
        ["auth_refresh", "other", "auth_refresh", "7"]
    );
    assert_eq!((record.frames_in, record.frames_out), (4, 2));

    socket
        .close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        }))
        .await
        .unwrap();
    let closed = wait_for_session(&handle, 1, |record| record.closed).await;
    assert_eq!(closed.close_code, Some(1000));
    assert_eq!(closed.server_close_code, None);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_auth_refresh_closes_with_1008_under_require_token() {
    let handle = start(token_bound(60)).await;
    let token = fresh_access_token(&handle).await;
    let mut socket = connect_with_token(&handle, &token).await;
    socket.send(auth_refresh("never-issued")).await.unwrap();
    let (frame, _) = expect_close(&mut socket, WAIT).await;
    assert_eq!(frame.code, CloseCode::Policy);
    assert_eq!(frame.reason.as_str(), "invalid auth_refresh");
    let record = wait_for_session(&handle, 1, |record| record.closed).await;
    assert_eq!(record.auth_refreshes_invalid, 1);
    assert!(!record.expired);
    assert_eq!(record.server_close_code, Some(1008));
    assert_eq!(
        record.server_close_reason.as_deref(),
        Some("invalid auth_refresh")
    );
    assert_eq!(record.last_auth_refresh.map(|seen| seen.valid), Some(false));
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn jwt_tokens_carry_a_skewed_exp_that_the_session_follows() {
    let handle = start(MockConfig {
        token_format: TokenFormat::Jwt,
        jwt_exp_skew_secs: 2,
        ..token_bound(4)
    })
    .await;
    let answer = fetch_token(&handle).await;
    assert_eq!(answer["expires_in"], 4, "expires_in is not skewed");
    let token = answer["access_token"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let decode = |part: &str| -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    };
    assert_eq!(decode(parts[0]), json!({"alg": "HS256", "typ": "JWT"}));
    let claims = decode(parts[1]);
    assert_eq!(claims["iss"], "sbctl-mock");
    assert_eq!(claims["sub"], CLIENT_ID);
    assert_eq!(claims["scope"], mock::oauth::DEFAULT_SCOPE);
    let iat = claims["iat"].as_u64().unwrap();
    let exp = claims["exp"].as_u64().unwrap();
    assert_eq!(exp, iat + 2);
    assert_eq!(
        handle.platform().access_token_expiry_ms(&token),
        Some(exp * 1000)
    );
    assert_eq!(
        get_json(&handle, "/_mock/health").await["token_format"],
        "jwt"
    );

    // The session ends at the JWT's exp, before expires_in would say.
    let mut socket = connect_with_token(&handle, &token).await;
    let (frame, arrived_ms) = expect_close(&mut socket, EXPIRY_WAIT).await;
    assert_eq!(frame.code, CloseCode::Policy);
    assert!(arrived_ms >= exp * 1000);
    assert!(
        arrived_ms < (iat + 4) * 1000,
        "closed at {arrived_ms}, not before expires_in ran out"
    );
    handle.shutdown().await.unwrap();
}
