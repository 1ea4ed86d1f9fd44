//! RFC 6455 conformance of the frame engine through a real Envoy: byte-exact binary echo under
//! concurrency with fragmentation and interleaved pings, tagging of fragmented JSON text, the
//! close code of every platform-side violation, a client-side size violation, and
//! permessage-deflate strip/pass. Each test runs its own Envoy and mock platform.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::tokens::token;
use common::ws::{connect, Socket};
use common::{gateway, Envoy, Platform};
use futures_util::{SinkExt, StreamExt};
use sha2::{Digest, Sha256};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

const MIB: usize = 1 << 20;

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

async fn auth_connect(envoy: &Envoy, path: &str, agent: &str) -> Socket {
    let auth = format!("Bearer {}", token(agent, "acme"));
    connect(&envoy.ws_url(path), &[("authorization", &auth)])
        .await
        .unwrap_or_else(|e| panic!("connect {path} as {agent}: {e}"))
}

/// The next message other than Ping/Pong (≤ `secs`); None when the stream ends.
async fn next_data(socket: &mut Socket, secs: u64) -> Option<Message> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(message))) => return Some(message),
            Ok(Some(Err(e))) => panic!("websocket error: {e}"),
            Ok(None) => return None,
            Err(_) => panic!("no message within {secs} s"),
        }
    }
}

/// Reads until a Close arrives (≤ `secs`); its code, or None if the stream ended without one.
async fn close_code(socket: &mut Socket, secs: u64) -> Option<u16> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => panic!("websocket error before the close: {e}"),
            Ok(None) => return None,
            Err(_) => panic!("no close within {secs} s"),
        }
    }
}

/// Cut points splitting `len` bytes into `parts` pieces (some may be empty).
fn cuts(rng: &mut Rng, len: usize, parts: usize) -> Vec<usize> {
    let mut points: Vec<usize> = (1..parts)
        .map(|_| rng.below(len as u64 + 1) as usize)
        .collect();
    points.sort_unstable();
    let mut bounds = vec![0];
    bounds.extend(points);
    bounds.push(len);
    bounds
}

/// Sends one message as `bounds.len() - 1` frames (first with `opcode`, the rest continuations),
/// with a Ping between fragments when `pings` is set.
async fn send_fragmented(
    socket: &mut Socket,
    data: &[u8],
    bounds: &[usize],
    first: Data,
    pings: bool,
) {
    let last = bounds.len() - 2;
    for i in 0..=last {
        let opcode = if i == 0 {
            OpCode::Data(first)
        } else {
            OpCode::Data(Data::Continue)
        };
        let piece = data[bounds[i]..bounds[i + 1]].to_vec();
        socket
            .send(Message::Frame(Frame::message(piece, opcode, i == last)))
            .await
            .unwrap();
        if pings && i < last {
            socket
                .send(Message::Ping(format!("mid-{i}").into_bytes().into()))
                .await
                .unwrap();
        }
    }
}

fn message_size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=59 => rng.below(1024) as usize,
        60..=89 => 1024 + rng.below(63 * 1024) as usize,
        90..=97 => 64 * 1024 + rng.below(192 * 1024) as usize,
        _ => MIB,
    }
}

async fn binary_session(url: String, index: u64) -> (usize, u64) {
    let agent = format!("agent-{index}");
    let auth = format!("Bearer {}", token(&agent, "acme"));
    let mut socket = connect(&url, &[("authorization", &auth)])
        .await
        .unwrap_or_else(|e| panic!("session {index}: connect: {e}"));
    let mut rng = Rng::new(0x5EED_0000 + index);
    let mut bytes = 0;
    let mut frames = 0u64;
    for n in 0..20u64 {
        // Boundaries forced in a few sessions: exactly 1 MiB (the default limit) and empty.
        let size = match (index, n) {
            (0, 0) | (1, 7) => MIB,
            (2, 3) => 0,
            _ => message_size(&mut rng),
        };
        let data = rng.bytes(size);
        if rng.below(4) == 0 {
            socket
                .send(Message::Ping(format!("p{index}-{n}").into_bytes().into()))
                .await
                .unwrap();
        }
        let fragmented = (index, n) == (0, 0) || rng.below(3) == 0;
        if fragmented {
            let parts = 2 + rng.below(3) as usize;
            let bounds = cuts(&mut rng, size, parts);
            let pings = rng.below(2) == 0;
            send_fragmented(&mut socket, &data, &bounds, Data::Binary, pings).await;
            frames += parts as u64;
        } else {
            socket.send(Message::binary(data.clone())).await.unwrap();
            frames += 1;
        }
        match next_data(&mut socket, 15).await {
            Some(Message::Binary(back)) => {
                assert_eq!(
                    sha(&back),
                    sha(&data),
                    "session {index} message {n}: {} bytes sent, {} back (fragmented {fragmented})",
                    data.len(),
                    back.len()
                );
            }
            other => panic!("session {index} message {n} ({size} B): got {other:?}"),
        }
        bytes += size;
    }
    socket.close(None).await.ok();
    (bytes, frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_sessions_echo_fragmented_binary_byte_exact() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let url = envoy.ws_url("/v2/realtime");
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..50u64)
        .map(|i| tokio::spawn(binary_session(url.clone(), i)))
        .collect();
    let mut total = 0;
    let mut data_frames = 0;
    let all = async {
        for task in tasks {
            let (bytes, frames) = task.await.unwrap();
            total += bytes;
            data_frames += frames;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("50 sessions within 60 s");
    eprintln!(
        "echoed {total} bytes in {data_frames} data frames over 50 sessions in {:?}",
        started.elapsed()
    );
    // Fragments really crossed the gateway as separate frames (pings and closes count too).
    let up = envoy.stat("wasmcustom.switchboard.frames.dir.up").await;
    assert!(
        up >= data_frames as i64 && data_frames > 1000,
        "{up} < {data_frames}"
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.tagging.result.tagged")
            .await,
        0
    );
    let stats = envoy.stats().await;
    let violations: Vec<&str> = stats
        .lines()
        .filter(|l| l.starts_with("wasmcustom.switchboard.violations"))
        .collect();
    assert!(
        violations.iter().all(|l| l.ends_with(": 0")),
        "{violations:?}"
    );
    envoy.assert_no_vm_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fragmented_json_text_gets_exactly_the_routing_key_added() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let mut socket = auth_connect(&envoy, "/v2/realtime", "agent-json").await;
    let messages = [
        r#"{"action":"ack","n":[1,2.5,-3,1e3],"nested":{"a":{"b":[true,false,null]}},"s":"héllo wörld ✓ 🎧"}"#,
        r#"{"conversationId":"c-123","participants":[{"id":"p1","purpose":"agent"},{"id":"p2","purpose":"customer"}],"empty":{},"list":[]}"#,
        r#"{}"#,
        r#"{"unicode":"\u00e9\ud83c\udfa7","escaped":"a\"b\\c\n","big":18446744073709551615,"neg":-9223372036854775808}"#,
    ];
    let mut rng = Rng::new(42);
    let mut key: Option<String> = None;
    let mut sent = 0;
    for (i, text) in messages.iter().enumerate() {
        for fragmented in [false, true] {
            let bytes = text.as_bytes();
            if fragmented {
                // Three frames; for the first message, cut inside a multi-byte character.
                let bounds = if i == 0 {
                    let accent = text.find('é').unwrap() + 1;
                    let emoji = text.find('🎧').unwrap() + 2;
                    vec![0, accent, emoji, bytes.len()]
                } else {
                    cuts(&mut rng, bytes.len(), 3)
                };
                send_fragmented(&mut socket, bytes, &bounds, Data::Text, i % 2 == 1).await;
            } else {
                socket.send(Message::text(*text)).await.unwrap();
            }
            sent += 1;
            let Some(Message::Text(echo)) = next_data(&mut socket, 10).await else {
                panic!("no text echo for message {i} (fragmented {fragmented})")
            };
            let mut echoed: serde_json::Value = serde_json::from_str(echo.as_str())
                .unwrap_or_else(|e| panic!("echo of {i} is not JSON ({e}): {echo}"));
            let original: serde_json::Value = serde_json::from_str(text).unwrap();
            let object = echoed.as_object_mut().unwrap();
            assert_eq!(
                object.len(),
                original.as_object().unwrap().len() + 1,
                "exactly one field added: {echo}"
            );
            let tag = object
                .remove("routing_key")
                .unwrap_or_else(|| panic!("no routing_key in {echo}"));
            let tag = tag.as_str().unwrap().to_string();
            assert_eq!(tag.len(), 32, "{echo}");
            match &key {
                Some(k) => assert_eq!(k, &tag, "one routing key per session"),
                None => key = Some(tag),
            }
            assert_eq!(echoed, original, "message {i} fragmented {fragmented}");
        }
    }
    // Non-JSON text, fragmented, still passes untouched.
    let plain = "not json, fragmented: ünïcödé";
    let bounds = cuts(&mut rng, plain.len(), 3);
    let bounds: Vec<usize> = bounds
        .into_iter()
        .map(|mut b| {
            while !plain.is_char_boundary(b) {
                b += 1;
            }
            b
        })
        .collect();
    send_fragmented(&mut socket, plain.as_bytes(), &bounds, Data::Text, true).await;
    let Some(Message::Text(echo)) = next_data(&mut socket, 10).await else {
        panic!("no echo of plain text")
    };
    assert_eq!(echo.as_str(), plain);
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.tagging.result.tagged")
            .await,
        sent
    );
    envoy.assert_no_vm_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_platform_violation_gets_its_close_code_while_others_carry_on() {
    let platform = Platform::start("p1", &["--event-rate", "0", "--oversized-bytes", "2097152"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let mut healthy = auth_connect(&envoy, "/v2/realtime", "agent-ok").await;
    socket_echo_probe(&mut healthy, r#"{"probe":"before"}"#, "before").await;

    let cases = [
        ("malformed", 1007u16),
        ("oversized", 1009),
        ("reserved-opcode", 1002),
        ("rsv", 1002),
        ("masked", 1002),
    ];
    let mut failures = Vec::new();
    for (i, (fault, expected)) in cases.iter().enumerate() {
        let path = format!("/v2/realtime?fault={fault}");
        let mut socket = auth_connect(&envoy, &path, &format!("agent-bad-{i}")).await;
        let code = close_code(&mut socket, 10).await;
        if code != Some(*expected) {
            failures.push(format!("{fault}: expected {expected}, got {code:?}"));
        }
        // The healthy session is unaffected.
        let probe = format!("{{\"probe\":\"after-{fault}\"}}");
        socket_echo_probe(&mut healthy, &probe, &format!("after-{fault}")).await;
    }
    assert!(failures.is_empty(), "{failures:?}");
    for (code, count) in [(1007, 1), (1009, 1), (1002, 3)] {
        assert_eq!(
            envoy
                .stat(&format!("wasmcustom.switchboard.violations.code.{code}"))
                .await,
            count,
            "violations.code.{code}"
        );
    }
    envoy.assert_no_vm_failure();
}

async fn socket_echo_probe(socket: &mut Socket, json: &str, probe: &str) {
    socket.send(Message::text(json)).await.unwrap();
    match next_data(socket, 10).await {
        Some(Message::Text(back)) => {
            let value: serde_json::Value = serde_json::from_str(back.as_str()).unwrap();
            assert_eq!(value["probe"], probe, "{back}");
        }
        other => panic!("healthy session: expected the echo of {probe}, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_message_over_the_limit_is_closed_with_1009() {
    let platform = Platform::start("p1", &["--event-rate", "0"]);
    let envoy = gateway(
        &platform,
        serde_json::json!({ "frames": { "max_message_bytes": 65536 } }),
    );
    let mut rng = Rng::new(7);

    // Exactly at the limit is fine, both ways.
    let mut ok = auth_connect(&envoy, "/v2/realtime", "agent-limit").await;
    let at_limit = rng.bytes(65536);
    ok.send(Message::binary(at_limit.clone())).await.unwrap();
    match next_data(&mut ok, 10).await {
        Some(Message::Binary(back)) => assert_eq!(sha(&back), sha(&at_limit)),
        other => panic!("65536 B echo: got {other:?}"),
    }

    // One frame over the limit.
    let mut single = auth_connect(&envoy, "/v2/realtime", "agent-big-1").await;
    single
        .send(Message::binary(rng.bytes(65537)))
        .await
        .unwrap();
    let single_code = close_code(&mut single, 10).await;

    // Fragments that are each small but sum over the limit.
    let mut fragmented = auth_connect(&envoy, "/v2/realtime", "agent-big-2").await;
    let data = rng.bytes(100_000);
    send_fragmented(
        &mut fragmented,
        &data,
        &[0, 30_000, 60_000, 100_000],
        Data::Binary,
        false,
    )
    .await;
    let fragmented_code = close_code(&mut fragmented, 10).await;

    assert_eq!(
        (single_code, fragmented_code),
        (Some(1009), Some(1009)),
        "close codes (single frame, fragmented)"
    );
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.violations.code.1009")
            .await,
        2
    );
    // The platform was closed normally (1000), not with the client's code.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let records = platform.sessions().await;
        let codes: Vec<(String, serde_json::Value)> = records
            .iter()
            .filter(|r| {
                r["agent"]
                    .as_str()
                    .is_some_and(|a| a.starts_with("agent-big"))
            })
            .map(|r| {
                (
                    r["agent"].as_str().unwrap().to_string(),
                    r["close_code"].clone(),
                )
            })
            .collect();
        if codes.len() == 2 && codes.iter().all(|(_, c)| c == 1000) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "platform close codes: {codes:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The session at the limit still works.
    let again = rng.bytes(1000);
    ok.send(Message::binary(again.clone())).await.unwrap();
    match next_data(&mut ok, 10).await {
        Some(Message::Binary(back)) => assert_eq!(back.as_ref(), again.as_slice()),
        other => panic!("echo after the others closed: got {other:?}"),
    }
    envoy.assert_no_vm_failure();
}

/// A raw upgrade through the gateway: returns the response head and the open stream.
fn raw_upgrade(envoy: &Envoy, agent: &str, extensions: &str) -> (String, TcpStream, Vec<u8>) {
    let mut stream = TcpStream::connect(("127.0.0.1", envoy.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "GET /v2/realtime HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: {extensions}\r\n\
         Authorization: Bearer {token}\r\n\r\n",
        port = envoy.port,
        token = token(agent, "acme"),
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream
            .read(&mut chunk)
            .expect("upgrade response within 10 s");
        assert!(n > 0, "connection closed before the response head");
        buffer.extend_from_slice(&chunk[..n]);
        assert!(buffer.len() < 64 * 1024, "response head too long");
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).to_string();
    let rest = buffer[head_end..].to_vec();
    (head, stream, rest)
}

/// A masked client frame.
fn client_frame(opcode: u8, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let key = [0x11, 0x22, 0x33, 0x44];
    let mut out = vec![0x80 | if rsv1 { 0x40 } else { 0 } | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Reads one unmasked server frame: (first header byte, payload).
fn read_server_frame(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> (u8, Vec<u8>) {
    let mut chunk = [0u8; 4096];
    loop {
        if buffer.len() >= 2 {
            let b1 = buffer[1];
            assert_eq!(b1 & 0x80, 0, "server frames are unmasked");
            let (len, header) = match b1 & 0x7f {
                126 if buffer.len() >= 4 => {
                    (u16::from_be_bytes([buffer[2], buffer[3]]) as usize, 4)
                }
                127 if buffer.len() >= 10 => (
                    u64::from_be_bytes(buffer[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => (usize::MAX, 0),
                n => (n as usize, 2),
            };
            if len != usize::MAX && buffer.len() >= header + len {
                let first = buffer[0];
                let payload = buffer[header..header + len].to_vec();
                buffer.drain(..header + len);
                return (first, payload);
            }
        }
        let n = stream.read(&mut chunk).expect("a server frame within 10 s");
        assert!(n > 0, "connection closed before a frame");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn extensions_header(head: &str) -> Option<String> {
    head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("sec-websocket-extensions")
            .then(|| value.trim().to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permessage_deflate_is_stripped_by_default() {
    let platform = Platform::start("p1", &["--event-rate", "0", "--deflate"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let env = &envoy;
    let (head, mut stream, mut buffer) = tokio::task::block_in_place(|| {
        raw_upgrade(
            env,
            "agent-deflate",
            "permessage-deflate; client_max_window_bits",
        )
    });
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("permessage-deflate"),
        "{head}"
    );
    let records = platform.sessions().await;
    let record = records.last().unwrap();
    assert_eq!(record["deflate_offered"], false, "{record}");
    // Payload features work on the uncompressed session: JSON is tagged.
    let (first, payload) = tokio::task::block_in_place(|| {
        stream
            .write_all(&client_frame(0x1, false, br#"{"hello":"world"}"#))
            .unwrap();
        read_server_frame(&mut stream, &mut buffer)
    });
    assert_eq!(first, 0x81, "FIN text, no RSV1");
    let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(value["hello"], "world");
    assert!(value["routing_key"].is_string(), "{value}");
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.sessions.result.deflate_passthrough")
            .await,
        0
    );
    drop(stream);
    envoy.assert_no_vm_failure();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permessage_deflate_passes_when_configured() {
    let platform = Platform::start("p1", &["--event-rate", "0", "--deflate"]);
    let envoy = gateway(
        &platform,
        serde_json::json!({ "frames": { "deflate": "pass" } }),
    );
    let env = &envoy;
    let (head, mut stream, mut buffer) = tokio::task::block_in_place(|| {
        raw_upgrade(
            env,
            "agent-deflate",
            "permessage-deflate; client_max_window_bits",
        )
    });
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let answered = extensions_header(&head).unwrap_or_default();
    assert!(
        answered.to_ascii_lowercase().contains("permessage-deflate"),
        "{head}"
    );
    let records = platform.sessions().await;
    let record = records.last().unwrap();
    assert_eq!(record["deflate_offered"], true, "{record}");
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.sessions.result.deflate_passthrough")
            .await,
        1
    );
    // A compressed message (one non-final stored deflate block, RFC 7692 §7.2.1 without the
    // trailing 00 00 ff ff) reaches the platform and comes back compressed (RSV1), not closed.
    let text = br#"{"hello":"deflate"}"#;
    let len = text.len() as u16;
    let mut compressed = vec![0x00];
    compressed.extend_from_slice(&len.to_le_bytes());
    compressed.extend_from_slice(&(!len).to_le_bytes());
    compressed.extend_from_slice(text);
    let (first, payload) = tokio::task::block_in_place(|| {
        stream
            .write_all(&client_frame(0x1, true, &compressed))
            .unwrap();
        read_server_frame(&mut stream, &mut buffer)
    });
    assert_eq!(
        first, 0xC1,
        "FIN + RSV1 text (a compressed echo), got {first:#x}"
    );
    assert!(!payload.is_empty());
    assert_eq!(
        envoy
            .stat("wasmcustom.switchboard.tagging.result.tagged")
            .await,
        0,
        "compressed sessions are never tagged"
    );
    drop(stream);
    envoy.assert_no_vm_failure();
}
