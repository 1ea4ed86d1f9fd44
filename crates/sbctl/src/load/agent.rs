//! One simulated agent desktop: connects (honouring `Retry-After`), sends messages at its rate
//! and times their echoes, pings, counts platform events, and follows the run's phase (run,
//! storm, stop).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::stats::Stats;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// Echoes outstanding per agent before the oldest is counted lost.
const MAX_PENDING: usize = 1_024;
/// Delay before a desktop reconnects after its connection was lost.
const RECONNECT_DELAY: Duration = Duration::from_millis(500);

/// What the run asks of every agent; agents watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Run,
    /// Drop the connection without a close and reconnect at once (the n-th storm).
    Storm(u32),
    Stop,
}

/// The message shapes agents send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    Genesys,
    Nice,
    Generic,
}

impl Envelope {
    pub fn parse(text: &str) -> Option<Envelope> {
        match text {
            "genesys" => Some(Envelope::Genesys),
            "nice" => Some(Envelope::Nice),
            "generic" => Some(Envelope::Generic),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Envelope::Genesys => "genesys",
            Envelope::Nice => "nice",
            Envelope::Generic => "generic",
        }
    }

    /// One client message carrying `bench_id` for echo correlation, padded to about `payload`
    /// bytes of JSON. Its event id is unique to the run (`run`), the agent and the message: a
    /// gateway that drops replayed events must not take an echo for a replay of an earlier run.
    pub fn message(self, run: u64, agent: u32, id: u64, pad: &str) -> String {
        match self {
            Envelope::Genesys => format!(
                r#"{{"type":"v2.bench.{agent}.echo","data":{{"bench_id":{id},"pad":"{pad}"}},"metadata":{{"id":"bench-{run:x}-{agent}-{id}"}}}}"#
            ),
            Envelope::Nice => format!(
                r#"{{"eventType":"benchEcho","payload":{{"bench_id":{id},"pad":"{pad}"}},"correlationId":"bench-{run:x}-{agent}-{id}"}}"#
            ),
            Envelope::Generic => {
                format!(r#"{{"kind":"bench.echo","bench_id":{id},"pad":"{pad}"}}"#)
            }
        }
    }
}

/// The correlation id in an echoed message, if it is one of ours.
pub fn bench_id(text: &str) -> Option<u64> {
    const KEY: &str = "\"bench_id\":";
    let start = text.find(KEY)? + KEY.len();
    let digits: &str = text.get(start..)?;
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits.get(..end)?.parse().ok()
}

/// `Retry-After` in seconds (RFC 9110 §10.2.3: delay-seconds; an HTTP date is not used by
/// gateways answering upgrades and counts as absent).
pub fn retry_after_secs(value: Option<&str>) -> Option<u64> {
    value?.trim().parse::<u64>().ok().filter(|s| *s <= 3_600)
}

#[derive(Debug, Clone)]
pub struct AgentPlan {
    pub index: u32,
    /// Random per run, part of every message's event id.
    pub run_id: u64,
    pub url: String,
    /// `Authorization` header value, when the gateway needs an agent token.
    pub authorization: Option<String>,
    pub envelope: Envelope,
    /// Time between messages; `None` sends none.
    pub message_every: Option<Duration>,
    pub pad: Arc<str>,
    pub ping_every: Option<Duration>,
    /// Connection attempts per (re)connect, following `Retry-After`.
    pub attempts: u32,
}

enum ConnectError {
    Refused {
        status: u16,
        retry_after: Option<u64>,
    },
    Other(&'static str),
}

async fn connect(plan: &AgentPlan) -> Result<Socket, ConnectError> {
    let mut request = plan
        .url
        .as_str()
        .into_client_request()
        .map_err(|_| ConnectError::Other("bad_url"))?;
    if let Some(auth) = &plan.authorization {
        let value = HeaderValue::from_str(auth).map_err(|_| ConnectError::Other("bad_token"))?;
        request.headers_mut().insert("authorization", value);
    }
    match tokio::time::timeout(CONNECT_TIMEOUT, tokio_tungstenite::connect_async(request)).await {
        Err(_) => Err(ConnectError::Other("connect_timeout")),
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(WsError::Http(response))) => Err(ConnectError::Refused {
            status: response.status().as_u16(),
            retry_after: retry_after_secs(
                response
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok()),
            ),
        }),
        Ok(Err(WsError::Io(err))) if err.kind() == std::io::ErrorKind::ConnectionRefused => {
            Err(ConnectError::Other("connect_refused"))
        }
        Ok(Err(WsError::Io(_))) => Err(ConnectError::Other("connect_io")),
        Ok(Err(_)) => Err(ConnectError::Other("handshake_protocol")),
    }
}

/// Connects, retrying refusals after their `Retry-After` (1 s when absent), up to the plan's
/// attempts. `None` when the run stopped or every attempt failed.
async fn connect_with_retry(
    plan: &AgentPlan,
    stats: &Stats,
    phase: &mut watch::Receiver<Phase>,
) -> Option<Socket> {
    for attempt in 0..plan.attempts.max(1) {
        if *phase.borrow() == Phase::Stop {
            return None;
        }
        let started = Instant::now();
        let wait = match connect(plan).await {
            Ok(socket) => {
                stats.handshake(elapsed_us(started));
                stats.counters.connects.fetch_add(1, Ordering::Relaxed);
                return Some(socket);
            }
            Err(ConnectError::Refused {
                status,
                retry_after,
            }) => {
                stats.error(&format!("http_{status}"));
                if retry_after.is_some() {
                    stats.counters.retries_after.fetch_add(1, Ordering::Relaxed);
                }
                Duration::from_secs(retry_after.unwrap_or(1))
            }
            Err(ConnectError::Other(kind)) => {
                stats.error(kind);
                Duration::from_millis(500u64.saturating_mul(1 << attempt.min(4)))
            }
        };
        if attempt + 1 == plan.attempts.max(1) {
            break;
        }
        // The wait ends early when the run stops.
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped(phase) => return None,
        }
    }
    None
}

async fn stopped(phase: &mut watch::Receiver<Phase>) {
    while *phase.borrow() != Phase::Stop {
        if phase.changed().await.is_err() {
            return;
        }
    }
}

fn elapsed_us(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_micros()).unwrap_or(u64::MAX)
}

enum SessionEnd {
    Stop,
    Storm,
    Lost,
}

/// Runs one agent until the phase says stop.
pub async fn run(plan: AgentPlan, stats: Arc<Stats>, mut phase: watch::Receiver<Phase>) {
    let mut storms_seen = match *phase.borrow() {
        Phase::Storm(n) => n,
        _ => 0,
    };
    let mut first = true;
    // Message ids go on across reconnects: an id is never reused within a run.
    let mut next_id = 0u64;
    loop {
        let Some(socket) = connect_with_retry(&plan, &stats, &mut phase).await else {
            if *phase.borrow() != Phase::Stop {
                stats.counters.gave_up.fetch_add(1, Ordering::Relaxed);
            }
            return;
        };
        if !first {
            stats.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        stats.counters.connected.fetch_add(1, Ordering::Relaxed);
        let end = session(
            &plan,
            &stats,
            socket,
            &mut phase,
            &mut storms_seen,
            &mut next_id,
        )
        .await;
        stats.counters.connected.fetch_sub(1, Ordering::Relaxed);
        match end {
            SessionEnd::Stop => return,
            SessionEnd::Storm => {}
            SessionEnd::Lost => {
                tokio::select! {
                    _ = tokio::time::sleep(RECONNECT_DELAY) => {}
                    _ = stopped(&mut phase) => return,
                }
            }
        }
    }
}

async fn session(
    plan: &AgentPlan,
    stats: &Stats,
    mut socket: Socket,
    phase: &mut watch::Receiver<Phase>,
    storms_seen: &mut u32,
    next_id: &mut u64,
) -> SessionEnd {
    let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
    let started = tokio::time::Instant::now();
    // Messages start at a random offset within the first period so agents do not move in step.
    let mut send_timer = plan.message_every.map(|every| {
        let offset = every.mul_f64(rand::random::<f64>());
        tokio::time::interval_at(started + offset, every)
    });
    let mut ping_timer = plan.ping_every.map(|every| {
        let offset = every.mul_f64(rand::random::<f64>());
        tokio::time::interval_at(started + offset, every)
    });
    let clock = Instant::now();
    loop {
        let send_tick = async {
            match send_timer.as_mut() {
                Some(timer) => {
                    timer.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        let ping_tick = async {
            match ping_timer.as_mut() {
                Some(timer) => {
                    timer.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            changed = phase.changed() => {
                let now = if changed.is_err() { Phase::Stop } else { *phase.borrow() };
                match now {
                    Phase::Stop => {
                        close(&mut socket, stats).await;
                        return SessionEnd::Stop;
                    }
                    Phase::Storm(n) if n != *storms_seen => {
                        *storms_seen = n;
                        // The desktop's network blips: no close frame, the TCP connection goes.
                        drop(socket);
                        return SessionEnd::Storm;
                    }
                    _ => {}
                }
            }
            _ = send_tick => {
                *next_id += 1;
                let id = *next_id;
                let text = plan.envelope.message(plan.run_id, plan.index, id, &plan.pad);
                let len = text.len() as u64;
                if pending.len() >= MAX_PENDING {
                    pending.pop_front();
                    stats.error("echo_lost");
                }
                pending.push_back((id, Instant::now()));
                if socket.send(Message::text(text)).await.is_err() {
                    stats.error("send_failed");
                    stats.close(1006);
                    return SessionEnd::Lost;
                }
                stats.counters.sent.fetch_add(1, Ordering::Relaxed);
                stats.counters.bytes_up.fetch_add(len, Ordering::Relaxed);
            }
            _ = ping_tick => {
                let stamp = u64::try_from(clock.elapsed().as_micros()).unwrap_or(0);
                if socket.send(Message::Ping(stamp.to_be_bytes().to_vec().into())).await.is_err() {
                    stats.error("send_failed");
                    stats.close(1006);
                    return SessionEnd::Lost;
                }
                stats.counters.pings.fetch_add(1, Ordering::Relaxed);
            }
            inbound = socket.next() => match inbound {
                Some(Ok(Message::Text(text))) => {
                    stats.counters.bytes_down.fetch_add(text.len() as u64, Ordering::Relaxed);
                    match bench_id(text.as_str()) {
                        Some(id) => {
                            // Echoes come back in order; anything older than `id` was lost.
                            while let Some((front, sent_at)) = pending.pop_front() {
                                if front == id {
                                    stats.round_trip(elapsed_us(sent_at));
                                    stats.counters.echoed.fetch_add(1, Ordering::Relaxed);
                                    break;
                                }
                                if front > id {
                                    pending.push_front((front, sent_at));
                                    break;
                                }
                                stats.error("echo_lost");
                            }
                        }
                        None => {
                            stats.counters.events.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Some(Ok(Message::Pong(payload))) => {
                    if let Ok(bytes) = <[u8; 8]>::try_from(payload.as_ref()) {
                        let sent = u64::from_be_bytes(bytes);
                        let now = u64::try_from(clock.elapsed().as_micros()).unwrap_or(0);
                        stats.ping(now.saturating_sub(sent));
                        stats.counters.pongs.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let code = frame.map_or(1005, |f| u16::from(f.code));
                    stats.close(code);
                    stats.error(&format!("closed_{code}"));
                    return SessionEnd::Lost;
                }
                Some(Ok(Message::Binary(bytes))) => {
                    stats.counters.bytes_down.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    stats.counters.events.fetch_add(1, Ordering::Relaxed);
                }
                Some(Ok(_)) => {}
                Some(Err(WsError::Protocol(_))) => {
                    stats.error("protocol");
                    stats.close(1006);
                    return SessionEnd::Lost;
                }
                Some(Err(_)) | None => {
                    stats.error("connection_lost");
                    stats.close(1006);
                    return SessionEnd::Lost;
                }
            }
        }
    }
}

/// The end of the run: a 1000 close, then the peer's close (bounded).
async fn close(socket: &mut Socket, stats: &Stats) {
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        stats.close(1006);
        return;
    }
    let deadline = tokio::time::Instant::now() + CLOSE_WAIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => {
                stats.close(frame.map_or(1005, |f| u16::from(f.code)));
                return;
            }
            Ok(Some(Ok(_))) => {}
            Ok(None) | Ok(Some(Err(WsError::ConnectionClosed))) => return,
            Ok(Some(Err(_))) => {
                stats.close(1006);
                return;
            }
            Err(_) => {
                stats.error("close_timeout");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_envelope_carries_a_findable_id_and_is_json() {
        for envelope in [Envelope::Genesys, Envelope::Nice, Envelope::Generic] {
            let text = envelope.message(0xabc, 7, 42, "xx");
            let _: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert_eq!(bench_id(&text), Some(42), "{text}");
        }
        // A gateway may add fields (a routing tag) around it.
        assert_eq!(
            bench_id(r#"{"tag":"k","data":{"bench_id":9,"pad":""}}"#),
            Some(9)
        );
        assert_eq!(bench_id(r#"{"data":{"seq":3}}"#), None);
        assert_eq!(bench_id(r#"{"bench_id":}"#), None);
    }

    #[test]
    fn retry_after_is_bounded_delay_seconds() {
        assert_eq!(retry_after_secs(Some("7")), Some(7));
        assert_eq!(retry_after_secs(Some(" 2 ")), Some(2));
        assert_eq!(
            retry_after_secs(Some("Wed, 21 Oct 2015 07:28:00 GMT")),
            None
        );
        assert_eq!(retry_after_secs(Some("99999")), None);
        assert_eq!(retry_after_secs(None), None);
    }
}
