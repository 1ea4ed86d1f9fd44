//! The mock platform's cleartext HTTP/2 side over real sockets on 127.0.0.1: RFC 8441 extended
//! CONNECT sessions beside HTTP/1.1 on the same port, with the same handshake rules, token
//! checks, records and close behaviour, many sessions on one connection, and flow-control
//! windows that keep stalled sessions from stalling their neighbours.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly on an unexpected error"
)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http2::{Builder, SendRequest};
use hyper::ext::Protocol;
use hyper::header::HeaderMap;
use hyper::upgrade::Upgraded;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sbctl::mock::{self, MockConfig, MockHandle, MockHealth, SessionRecord};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Upper bound for any single wait.
const WAIT: Duration = Duration::from_secs(10);
const CLIENT_ID: &str = "switchboard";
const CLIENT_SECRET: &str = "switchboard-dev-secret";
/// hyper's own default for SETTINGS_MAX_CONCURRENT_STREAMS; the mock must allow far more.
const HYPER_DEFAULT_MAX_STREAMS: usize = 200;
/// The connection window the mock used to advertise: as many stalled 1 MiB stream windows
/// would have stalled the whole connection.
const OLD_CONNECTION_WINDOW: u64 = 16 << 20;
/// Time a session may stay stuck on a send before the mock gives it up (`SEND_TIMEOUT`), which
/// would free its window; neighbours must flow well before that.
const NEIGHBOUR_WAIT: Duration = Duration::from_secs(3);

/// A WebSocket carried on one HTTP/2 stream.
type H2Socket = WebSocketStream<TokioIo<Upgraded>>;

async fn start(config: MockConfig) -> MockHandle {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    mock::spawn(config, listener).unwrap()
}

/// Echo only: every message a client gets is an answer to something it sent.
fn echo_only() -> MockConfig {
    MockConfig {
        event_rate: 0.0,
        ..MockConfig::default()
    }
}

/// A refused extended CONNECT: status, headers, body.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

/// One prior-knowledge HTTP/2 connection to the mock.
struct H2 {
    send: SendRequest<Full<Bytes>>,
    authority: String,
}

impl H2 {
    /// Connects with hyper's default windows.
    async fn connect(handle: &MockHandle) -> H2 {
        Self::connect_with_windows(handle, 1 << 20, 4 << 20).await
    }

    /// Connects with the given receive windows (stream, connection), then makes one request so
    /// that the server's SETTINGS (which carry ENABLE_CONNECT_PROTOCOL) have arrived before any
    /// extended CONNECT is attempted.
    async fn connect_with_windows(handle: &MockHandle, stream: u32, connection: u32) -> H2 {
        let tcp = TcpStream::connect(handle.addr()).await.unwrap();
        let (send, connection_task) = Builder::new(TokioExecutor::new())
            .initial_stream_window_size(stream)
            .initial_connection_window_size(connection)
            .handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(async move {
            let _ = connection_task.await;
        });
        let mut h2 = H2 {
            send,
            authority: handle.addr().to_string(),
        };
        let (status, _) = h2.get("/_mock/health").await;
        assert_eq!(status, StatusCode::OK);
        h2
    }

    async fn request(&mut self, request: Request<Full<Bytes>>) -> Response<Incoming> {
        timeout(WAIT, async {
            self.send.ready().await.unwrap();
            self.send.send_request(request).await.unwrap()
        })
        .await
        .expect("no HTTP/2 response in time")
    }

    async fn get(&mut self, path: &str) -> (StatusCode, Bytes) {
        let request = Request::get(format!("http://{}{path}", self.authority))
            .body(Full::default())
            .unwrap();
        let response = self.request(request).await;
        let status = response.status();
        (status, body_of(response).await)
    }

    /// A client-credentials grant over this connection; returns the access token.
    async fn access_token(&mut self) -> String {
        let basic = STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
        let request = Request::post(format!("http://{}/oauth/token", self.authority))
            .header("authorization", format!("Basic {basic}"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(
                b"grant_type=client_credentials",
            )))
            .unwrap();
        let response = self.request(request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["cache-control"], "no-store");
        let answer: serde_json::Value = serde_json::from_slice(&body_of(response).await).unwrap();
        answer["access_token"].as_str().unwrap().to_owned()
    }

    /// An extended CONNECT (RFC 8441 §4) for `path` with the given `:protocol` and headers.
    fn connect_request(
        &self,
        path: &str,
        protocol: &'static str,
        headers: &[(&str, &str)],
    ) -> Request<Full<Bytes>> {
        let mut request = Request::builder()
            .method(Method::CONNECT)
            .uri(format!("http://{}{path}", self.authority));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(Full::default()).unwrap();
        request
            .extensions_mut()
            .insert(Protocol::from_static(protocol));
        request
    }

    /// Opens a WebSocket on a new stream: version 13 plus `headers`.
    async fn websocket(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<(H2Socket, HeaderMap), Refusal> {
        let mut all = vec![("sec-websocket-version", "13")];
        all.extend_from_slice(headers);
        self.websocket_raw(path, "websocket", &all).await
    }

    async fn websocket_raw(
        &mut self,
        path: &str,
        protocol: &'static str,
        headers: &[(&str, &str)],
    ) -> Result<(H2Socket, HeaderMap), Refusal> {
        let request = self.connect_request(path, protocol, headers);
        let response = self.request(request).await;
        if response.status() != StatusCode::OK {
            let status = response.status();
            let headers = response.headers().clone();
            let body = String::from_utf8_lossy(&body_of(response).await).into_owned();
            return Err(Refusal {
                status,
                headers,
                body,
            });
        }
        let headers = response.headers().clone();
        let upgraded = timeout(WAIT, hyper::upgrade::on(response))
            .await
            .expect("upgrade in time")
            .unwrap();
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
        Ok((socket, headers))
    }
}

async fn body_of(response: Response<Incoming>) -> Bytes {
    timeout(WAIT, response.into_body().collect())
        .await
        .expect("body in time")
        .unwrap()
        .to_bytes()
}

/// Sends `message` and waits for the identical echo.
async fn echo<S>(socket: &mut WebSocketStream<S>, message: Message)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    echo_within(socket, message, WAIT).await;
}

/// Sends `message` and waits at most `within` for the identical echo.
async fn echo_within<S>(socket: &mut WebSocketStream<S>, message: Message, within: Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let deadline = Instant::now() + within;
    timeout(within, socket.send(message.clone()))
        .await
        .expect("sent in time")
        .unwrap();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = timeout(left, socket.next())
            .await
            .expect("echo in time")
            .expect("stream open")
            .expect("frame");
        if next.is_ping() || next.is_pong() {
            continue;
        }
        assert_eq!(next, message, "the echo");
        return;
    }
}

/// The server's Close frame, skipping nothing else: echo-only sessions send nothing unasked.
async fn expect_close<S>(socket: &mut WebSocketStream<S>) -> Option<CloseFrame>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let message = timeout(WAIT, socket.next())
        .await
        .expect("Close in time")
        .expect("stream open")
        .expect("frame");
    match message {
        Message::Close(frame) => frame,
        other => panic!("expected a Close, got {other:?}"),
    }
}

async fn wait_for_health(handle: &MockHandle, done: impl Fn(&MockHealth) -> bool) -> MockHealth {
    let deadline = Instant::now() + WAIT;
    loop {
        let health = handle.platform().health();
        if done(&health) {
            return health;
        }
        assert!(
            Instant::now() < deadline,
            "health never got there: {health:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

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
        if let Some(record) = found.filter(|record| done(record)) {
            return record;
        }
        assert!(
            Instant::now() < deadline,
            "session {number} never got there"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn extended_connect_session_beside_http1_on_one_port() {
    let handle = start(echo_only()).await;
    let mut h2 = H2::connect(&handle).await;

    let (mut socket, headers) = h2
        .websocket(
            "/v2/realtime?view=queue",
            &[
                ("sec-websocket-protocol", "chat, v2.realtime-events"),
                ("x-agent-id", "agent-7"),
                ("x-agent-routing-key", "0123abcd"),
            ],
        )
        .await
        .expect("extended CONNECT accepted");
    // RFC 6455 §4.2.2 as on HTTP/1.1: the first offered subprotocol the server speaks.
    assert_eq!(headers["sec-websocket-protocol"], "v2.realtime-events");
    // RFC 8441 §5: no key was sent, so no accept comes back.
    assert!(headers.get("sec-websocket-accept").is_none());
    echo(&mut socket, Message::text("hello over h2")).await;
    echo(&mut socket, Message::binary(vec![0u8, 1, 2, 255])).await;
    socket.send(Message::Ping("p".into())).await.unwrap();
    let pong = timeout(WAIT, socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong("p".into()));

    // HTTP/1.1 on the same port: a WebSocket upgrade and a control request.
    let (mut h1_socket, response) = timeout(
        WAIT,
        tokio_tungstenite::connect_async(handle.ws_url("/ws?agent=1")),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(response.status().as_u16(), 101);
    echo(&mut h1_socket, Message::text("hello over h1")).await;
    let h1_health: MockHealth = reqwest::get(format!("{}/_mock/health", handle.http_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            h1_health.h2_connections,
            h1_health.h2_connections_open,
            h1_health.h2_sessions,
            h1_health.h2_sessions_open,
            h1_health.h1_sessions
        ),
        (1, 1, 1, 1, 1),
        "{h1_health:?}"
    );

    let records = handle.platform().sessions(None);
    assert_eq!(records.len(), 2);
    let (over_h2, over_h1) = (&records[0], &records[1]);
    assert_eq!(over_h2.http_version, "HTTP/2");
    assert_eq!(over_h2.method, "CONNECT");
    assert_eq!(over_h2.path, "/v2/realtime?view=queue");
    assert_eq!(over_h2.agent.as_deref(), Some("agent-7"));
    assert_eq!(over_h2.routing_key.as_deref(), Some("0123abcd"));
    assert_eq!(over_h2.frames_in, 2);
    assert_eq!(over_h2.frames_out, 2);
    assert_eq!(over_h1.http_version, "HTTP/1.1");
    assert_eq!(over_h1.method, "GET");

    // The closing handshake over the stream: the server answers the Close, then ends the stream.
    socket
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        })))
        .await
        .unwrap();
    let answer = expect_close(&mut socket).await;
    assert_eq!(answer.map(|frame| frame.code), Some(CloseCode::Normal));
    let end = timeout(WAIT, socket.next()).await.expect("stream ends");
    assert!(
        !matches!(end, Some(Ok(Message::Text(_) | Message::Binary(_)))),
        "{end:?}"
    );
    let record = wait_for_session(&handle, over_h2.session, |record| record.closed).await;
    assert_eq!(record.close_code, Some(1000));
    wait_for_health(&handle, |health| health.h2_sessions_open == 0).await;

    // The connection outlives its streams and takes new ones.
    let (mut again, _) = h2.websocket("/ws", &[]).await.unwrap();
    echo(&mut again, Message::text("again")).await;
    assert_eq!(handle.platform().health().h2_connections, 1);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn hundreds_of_sessions_share_one_connection() {
    let handle = start(echo_only()).await;
    let mut h2 = H2::connect(&handle).await;
    let count = HYPER_DEFAULT_MAX_STREAMS + 100;
    let mut sockets = Vec::with_capacity(count);
    for agent in 0..count {
        let agent_header = format!("agent-{agent}");
        let (socket, _) = h2
            .websocket("/ws", &[("x-agent-id", &agent_header)])
            .await
            .unwrap_or_else(|refusal| panic!("session {agent}: {refusal:?}"));
        sockets.push(socket);
    }
    for (agent, socket) in sockets.iter_mut().enumerate() {
        echo(socket, Message::text(format!("echo-{agent}"))).await;
    }
    let health = handle.platform().health();
    assert_eq!(
        (
            health.h2_connections,
            health.h2_connections_open,
            health.h2_sessions,
            health.h2_sessions_open,
            health.h1_sessions
        ),
        (1, 1, count as u64, count as u64, 0),
        "{health:?}"
    );
    let records = handle.platform().sessions(None);
    assert_eq!(records.len(), count);
    assert!(records
        .iter()
        .all(|record| record.http_version == "HTTP/2" && record.frames_out == 1 && !record.closed));

    // A reset zeroes the totals; the open gauges keep telling the truth.
    handle.platform().reset();
    let health = handle.platform().health();
    assert_eq!(
        (
            health.h2_connections,
            health.h2_connections_open,
            health.h2_sessions,
            health.h2_sessions_open
        ),
        (0, 1, 0, count as u64),
        "{health:?}"
    );
    drop(sockets);
    wait_for_health(&handle, |health| health.h2_sessions_open == 0).await;
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn require_token_is_enforced_on_extended_connect_and_the_token_endpoint_speaks_h2() {
    let handle = start(MockConfig {
        require_token: true,
        ..echo_only()
    })
    .await;
    let mut h2 = H2::connect(&handle).await;
    let token = h2.access_token().await;
    assert!(handle.platform().access_token_valid(&token));

    let refusal = h2.websocket("/ws", &[]).await.expect_err("refused");
    assert_eq!(refusal.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        refusal.headers["www-authenticate"],
        r#"Bearer error="invalid_token""#
    );
    let refusal = h2
        .websocket("/ws", &[("authorization", "Bearer not-one-of-ours")])
        .await
        .expect_err("refused");
    assert_eq!(refusal.status, StatusCode::UNAUTHORIZED);
    let health = handle.platform().health();
    assert_eq!(
        (
            health.rejected_upgrades_token_missing,
            health.rejected_upgrades_token_invalid,
            health.h2_sessions
        ),
        (1, 1, 0),
        "{health:?}"
    );

    let bearer = format!("Bearer {token}");
    let (mut by_header, _) = h2
        .websocket("/ws", &[("authorization", &bearer)])
        .await
        .expect("a fresh token in the header is accepted");
    echo(&mut by_header, Message::text("with a header token")).await;
    let (mut by_query, _) = h2
        .websocket(&format!("/ws?access_token={token}"), &[])
        .await
        .expect("a fresh token in the query is accepted");
    echo(&mut by_query, Message::text("with a query token")).await;

    let records = handle.platform().sessions(None);
    assert_eq!(records.len(), 2);
    let expiry = handle.platform().access_token_expiry_ms(&token);
    assert!(expiry.is_some());
    assert!(records.iter().all(|record| record.token_required
        && record.token_expires_at_ms == expiry
        && record.http_version == "HTTP/2"));
    let requests = handle.platform().token_requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].status, Some(200));
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn handshake_rules_are_those_of_http1() {
    let handle = start(MockConfig {
        deflate: true,
        ..echo_only()
    })
    .await;
    let mut h2 = H2::connect(&handle).await;

    // RFC 6455 §4.2.2 (kept by RFC 8441 §5): version 13 only, else 426 naming it.
    for version in [None, Some("8")] {
        let headers: Vec<(&str, &str)> = version
            .map(|version| ("sec-websocket-version", version))
            .into_iter()
            .collect();
        let refusal = h2
            .websocket_raw("/ws", "websocket", &headers)
            .await
            .expect_err("refused");
        assert_eq!(refusal.status, StatusCode::UPGRADE_REQUIRED, "{version:?}");
        assert_eq!(refusal.headers["sec-websocket-version"], "13");
    }
    // Another :protocol is no WebSocket, and neither is a GET on the WebSocket path.
    let refusal = h2
        .websocket_raw("/ws", "not-websocket", &[("sec-websocket-version", "13")])
        .await
        .expect_err("refused");
    assert_eq!(refusal.status, StatusCode::NOT_FOUND);
    let (status, _) = h2.get("/ws").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A query the session cannot honour is a 400, as on HTTP/1.1.
    let refusal = h2
        .websocket("/ws?fault=nonsense", &[])
        .await
        .expect_err("refused");
    assert_eq!(refusal.status, StatusCode::BAD_REQUEST);
    assert!(refusal.body.starts_with("fault:"), "{}", refusal.body);

    // A gateway that turned an HTTP/1.1 upgrade into this CONNECT forwards the client's key and
    // passes the answer back in its 101: the accept is that of RFC 6455 §1.3's sample nonce.
    let (socket, headers) = h2
        .websocket(
            "/ws",
            &[
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                (
                    "sec-websocket-extensions",
                    "permessage-deflate; client_max_window_bits",
                ),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        headers["sec-websocket-accept"],
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    // RFC 7692 as on HTTP/1.1: the offer is accepted when --deflate is on.
    assert!(headers["sec-websocket-extensions"]
        .to_str()
        .unwrap()
        .starts_with("permessage-deflate"));
    drop(socket);
    let records = handle.platform().sessions(None);
    assert_eq!(records.len(), 1, "refused handshakes leave no record");
    assert!(records[0].deflate_offered && records[0].deflate_negotiated);
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn stalled_sessions_do_not_stall_their_neighbours() {
    const STALLED: usize = 32;
    const MESSAGE_BYTES: usize = 64 * 1024;
    const MESSAGES: usize = 64;
    let handle = start(echo_only()).await;
    // Small stream windows on the client so the mock's echoes stall quickly; a connection window
    // large enough that the client itself never stalls the connection.
    let mut h2 = H2::connect_with_windows(&handle, 64 * 1024, 1 << 30).await;
    let (mut neighbour, _) = h2.websocket("/ws", &[]).await.unwrap();

    // Sessions whose client sends and never reads: the mock's echoes back up, the session stops
    // reading, and what the client keeps sending sits in the mock's receive window.
    let sent_bytes = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for _ in 0..STALLED {
        let (mut socket, _) = h2.websocket("/ws", &[]).await.unwrap();
        let sent_bytes = Arc::clone(&sent_bytes);
        writers.push(tokio::spawn(async move {
            for _ in 0..MESSAGES {
                if socket
                    .send(Message::binary(vec![7u8; MESSAGE_BYTES]))
                    .await
                    .is_err()
                {
                    return;
                }
                sent_bytes.fetch_add(MESSAGE_BYTES as u64, Ordering::Relaxed);
            }
        }));
    }
    // Until the writers are stuck: nothing sent for a second.
    let deadline = Instant::now() + WAIT;
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = sent_bytes.load(Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
        assert!(Instant::now() < deadline, "writers never stalled");
    }
    // The neighbours on the same connection carry on: an old session and a new one.
    echo_within(
        &mut neighbour,
        Message::text("still flowing"),
        NEIGHBOUR_WAIT,
    )
    .await;
    let (mut newcomer, _) = h2.websocket("/ws", &[]).await.unwrap();
    echo_within(
        &mut newcomer,
        Message::text("new and flowing"),
        NEIGHBOUR_WAIT,
    )
    .await;
    assert_eq!(handle.platform().health().h2_connections, 1);
    eprintln!("stalled writers sent {last} bytes");
    // Each stalled stream filled its whole 1 MiB window at the mock, beyond what the client
    // buffers itself (a few messages per stream): together far more than the old window.
    let client_side = (STALLED * 4 * MESSAGE_BYTES) as u64;
    assert!(
        last.saturating_sub(client_side) > OLD_CONNECTION_WINDOW,
        "only {last} bytes sent: the stall did not test the connection window"
    );
    assert!(
        writers.iter().all(|writer| !writer.is_finished()),
        "every stalled writer is still blocked"
    );

    for writer in &writers {
        writer.abort();
    }
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_h2_sessions_with_going_away() {
    let handle = start(echo_only()).await;
    let mut h2 = H2::connect(&handle).await;
    let (mut socket, _) = h2.websocket("/ws", &[]).await.unwrap();
    echo(&mut socket, Message::text("before shutdown")).await;
    let stopping = tokio::spawn(handle.shutdown());
    // RFC 6455 §7.4.1: 1001, the endpoint is going away.
    let close = expect_close(&mut socket).await;
    assert_eq!(close.map(|frame| frame.code), Some(CloseCode::Away));
    timeout(WAIT, stopping)
        .await
        .expect("shutdown in time")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn broken_prefaces_leave_the_server_serving() {
    let handle = start(echo_only()).await;
    // A preface cut short, a preface followed by garbage, and a lone "P".
    for bytes in [
        &b"PRI * HTTP/2.0\r\n"[..],
        &b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff"[..],
        &b"P"[..],
    ] {
        let mut tcp = TcpStream::connect(handle.addr()).await.unwrap();
        tcp.write_all(bytes).await.unwrap();
        drop(tcp);
    }
    let mut h2 = H2::connect(&handle).await;
    let (mut socket, _) = h2.websocket("/ws", &[]).await.unwrap();
    echo(&mut socket, Message::text("still here")).await;
    let (mut h1_socket, _) = timeout(WAIT, tokio_tungstenite::connect_async(handle.ws_url("/ws")))
        .await
        .unwrap()
        .unwrap();
    echo(&mut h1_socket, Message::text("h1 still here")).await;
    handle.shutdown().await.unwrap();
}
