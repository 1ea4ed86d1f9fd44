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
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::header::{
    AUTHORIZATION, RETRY_AFTER, SEC_WEBSOCKET_PROTOCOL,
};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::stats::Stats;
use crate::mock::Secret;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// Read buffer of each agent's socket.
const READ_BUFFER: usize = 4 * 1024;
/// Bytes a socket may hold unsent before a send fails: above one message of the largest
/// `--payload` (1 MiB) with its envelope.
const MAX_WRITE_BUFFER: usize = 4 << 20;
/// Echoes outstanding per agent before the oldest is counted lost.
const MAX_PENDING: usize = 1_024;
/// Wait before retrying a refused upgrade that carried no readable `Retry-After`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
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

    /// The subprotocol of the platform this envelope belongs to, as Switchboard's profiles
    /// name it; the generic profile has none.
    pub fn subprotocol(self) -> Option<&'static str> {
        match self {
            Envelope::Genesys => Some("v2.realtime-events"),
            Envelope::Nice => Some("nice.digital.v1"),
            Envelope::Generic => None,
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

/// Longest `Retry-After` wait honoured; a longer one is cut to this (the run's stop ends any wait).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3_600);

/// The wait a `Retry-After` value asks for, at `now_unix` seconds. RFC 9110 §10.2.3: either
/// delay-seconds or an HTTP-date (IMF-fixdate, §5.6.7); a date in the past means at once.
/// `None` when absent or unreadable.
pub fn retry_after(value: Option<&str>, now_unix: u64) -> Option<Duration> {
    let value = value?.trim();
    let secs = match value.parse::<u64>() {
        Ok(secs) => secs,
        Err(_) => imf_fixdate(value)?.saturating_sub(now_unix),
    };
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

/// Seconds since the epoch of an IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`
/// (RFC 9110 §5.6.7); the obsolete RFC 850 and asctime forms are not read.
fn imf_fixdate(text: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (_weekday, rest) = text.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u32 = parts.next().filter(|d| d.len() == 2)?.parse().ok()?;
    let month_name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == month_name)?;
    let year: i64 = parts.next().filter(|y| y.len() == 4)?.parse().ok()?;
    let mut clock = parts.next()?.split(':');
    if parts.next() != Some("GMT") || parts.next().is_some() {
        return None;
    }
    let mut field = |max: u64| -> Option<u64> {
        clock
            .next()
            .filter(|f| f.len() == 2)?
            .parse::<u64>()
            .ok()
            .filter(|v| *v <= max)
    };
    let (hour, minute, second) = (field(23)?, field(59)?, field(60)?);
    if !(1..=31).contains(&day) {
        return None;
    }
    let month = u32::try_from(month).ok()? + 1;
    let days = u64::try_from(days_from_civil(year, month, day)).ok()?;
    Some(days * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = i64::from((month + 9) % 12);
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Where an agent's JWT travels on the upgrade: the three places Switchboard's identity stage
/// reads (`identity.sources`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenIn {
    /// `Authorization: Bearer <jwt>` (RFC 6750 §2.1).
    Header,
    /// A query parameter, `access_token` by default (RFC 6750 §2.3).
    Query,
    /// A `Sec-WebSocket-Protocol` entry `<prefix><jwt>`, the way browsers send it.
    Subprotocol,
}

impl TokenIn {
    pub fn parse(text: &str) -> Option<TokenIn> {
        match text {
            "header" => Some(TokenIn::Header),
            "query" => Some(TokenIn::Query),
            "subprotocol" => Some(TokenIn::Subprotocol),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TokenIn::Header => "header",
            TokenIn::Query => "query",
            TokenIn::Subprotocol => "subprotocol",
        }
    }
}

/// How every agent of a run presents itself on the upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presentation {
    pub token_in: TokenIn,
    /// Query parameter of `TokenIn::Query`.
    pub query_param: String,
    /// Entry prefix of `TokenIn::Subprotocol`.
    pub subprotocol_prefix: String,
    /// The platform subprotocol offered too. A client that offers subprotocols must get one of
    /// them back (RFC 6455 §4.1, client step 6), so a token-only offer would fail the handshake.
    pub subprotocol: Option<String>,
}

impl Presentation {
    /// The presentation of a run. A token sent as a subprotocol goes with the envelope's
    /// platform subprotocol unless `subprotocol` names one, as browsers offer
    /// `["bearer.<jwt>", "v2.realtime-events"]`.
    pub fn new(
        token_in: TokenIn,
        query_param: String,
        subprotocol_prefix: String,
        subprotocol: Option<String>,
        envelope: Envelope,
    ) -> Result<Presentation, String> {
        let subprotocol = match (subprotocol, token_in) {
            (Some(named), _) => Some(named),
            (None, TokenIn::Subprotocol) => match envelope.subprotocol() {
                Some(profile) => Some(profile.to_owned()),
                None => {
                    return Err("--subprotocol: --token-in subprotocol needs a platform subprotocol to offer beside the token, and the generic envelope has none; name one".to_owned());
                }
            },
            (None, _) => None,
        };
        Ok(Presentation {
            token_in,
            query_param,
            subprotocol_prefix,
            subprotocol,
        })
    }
}

impl Default for Presentation {
    fn default() -> Self {
        Self {
            token_in: TokenIn::Header,
            query_param: "access_token".to_owned(),
            subprotocol_prefix: "bearer.".to_owned(),
            subprotocol: None,
        }
    }
}

/// One agent's upgrade request: the URL, and its token where the gateway reads it.
pub fn upgrade_request(
    url: &str,
    token: Option<&Secret>,
    presentation: &Presentation,
) -> Result<Request, &'static str> {
    let mut target = url.to_owned();
    let mut offered: Vec<String> = Vec::new();
    let mut authorization = None;
    if let Some(token) = token {
        match presentation.token_in {
            TokenIn::Header => authorization = Some(format!("Bearer {}", token.expose())),
            TokenIn::Query => {
                // A JWT is base64url and dots: nothing in it needs percent-encoding.
                target.push(if target.contains('?') { '&' } else { '?' });
                target.push_str(&presentation.query_param);
                target.push('=');
                target.push_str(token.expose());
            }
            TokenIn::Subprotocol => offered.push(format!(
                "{}{}",
                presentation.subprotocol_prefix,
                token.expose()
            )),
        }
    }
    if let Some(subprotocol) = &presentation.subprotocol {
        offered.push(subprotocol.clone());
    }
    let mut request = target
        .as_str()
        .into_client_request()
        .map_err(|_| "bad_url")?;
    if let Some(value) = authorization {
        let value = HeaderValue::from_str(&value).map_err(|_| "bad_token")?;
        request.headers_mut().insert(AUTHORIZATION, value);
    }
    if !offered.is_empty() {
        let value = HeaderValue::from_str(&offered.join(", ")).map_err(|_| "bad_token")?;
        request.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, value);
    }
    Ok(request)
}

#[derive(Debug, Clone)]
pub struct AgentPlan {
    pub index: u32,
    /// Random per run, part of every message's event id.
    pub run_id: u64,
    pub url: Arc<str>,
    /// The agent's JWT, when the gateway needs one.
    pub token: Option<Secret>,
    pub presentation: Arc<Presentation>,
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
        retry_after: Option<Duration>,
    },
    Other(&'static str),
}

/// Small buffers: tungstenite's defaults allocate 128 KiB per socket up front for reading,
/// which is 1.3 GB at 10,000 agents. Reads grow past the buffer when a message needs it, and
/// every message is written at once.
fn socket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
}

async fn connect(plan: &AgentPlan) -> Result<Socket, ConnectError> {
    let request = upgrade_request(&plan.url, plan.token.as_ref(), &plan.presentation)
        .map_err(ConnectError::Other)?;
    let connecting = tokio_tungstenite::connect_async_with_config(
        request,
        Some(socket_config()),
        // Latency is what is measured: no Nagle delay on small frames.
        true,
    );
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Err(_) => Err(ConnectError::Other("connect_timeout")),
        Ok(Ok((socket, _))) => Ok(socket),
        Ok(Err(WsError::Http(response))) => Err(ConnectError::Refused {
            status: response.status().as_u16(),
            retry_after: retry_after(
                response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()),
                unix_now(),
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
                retry_after.unwrap_or(DEFAULT_RETRY_AFTER)
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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
    fn retry_after_is_delay_seconds_or_a_date_and_bounded() {
        let now = 784_111_777; // Sun, 06 Nov 1994 08:49:37 GMT
        let secs = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(retry_after(Some("7"), now), secs(7));
        assert_eq!(retry_after(Some(" 2 "), now), secs(2));
        assert_eq!(retry_after(Some("0"), now), secs(0));
        assert_eq!(
            retry_after(Some("Sun, 06 Nov 1994 08:49:37 GMT"), now),
            secs(0)
        );
        assert_eq!(
            retry_after(Some("Sun, 06 Nov 1994 08:50:07 GMT"), now),
            secs(30)
        );
        // A date in the past: at once.
        assert_eq!(
            retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT"), 1_445_412_480 + 60),
            secs(0)
        );
        assert_eq!(
            retry_after(Some("Wed, 21 Oct 2015 07:28:00 GMT"), 1_445_412_470),
            secs(10)
        );
        // Leap day, and the year-end boundary.
        assert_eq!(
            imf_fixdate("Thu, 29 Feb 2024 00:00:00 GMT"),
            Some(1_709_164_800)
        );
        assert_eq!(imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            imf_fixdate("Fri, 31 Dec 1999 23:59:59 GMT"),
            Some(946_684_799)
        );
        // Cut to the bound, never ignored.
        assert_eq!(retry_after(Some("99999"), now), Some(MAX_RETRY_AFTER));
        for unreadable in [
            "",
            "-1",
            "1.5",
            "soon",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 32 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 08:49:37 GMT extra",
            "Thu, 01 Jan 1960 00:00:00 GMT",
        ] {
            assert_eq!(retry_after(Some(unreadable), now), None, "{unreadable:?}");
        }
        assert_eq!(retry_after(None, now), None);
    }

    #[test]
    fn a_subprotocol_token_goes_with_the_platform_subprotocol() {
        let new = |token_in, named: Option<&str>, envelope| {
            Presentation::new(
                token_in,
                "access_token".to_owned(),
                "bearer.".to_owned(),
                named.map(str::to_owned),
                envelope,
            )
        };
        let offered = |p: Result<Presentation, String>| p.unwrap().subprotocol;
        assert_eq!(
            offered(new(TokenIn::Subprotocol, None, Envelope::Genesys)).as_deref(),
            Some("v2.realtime-events")
        );
        assert_eq!(
            offered(new(TokenIn::Subprotocol, None, Envelope::Nice)).as_deref(),
            Some("nice.digital.v1")
        );
        assert_eq!(
            offered(new(TokenIn::Subprotocol, Some("chat"), Envelope::Nice)).as_deref(),
            Some("chat")
        );
        assert_eq!(offered(new(TokenIn::Header, None, Envelope::Nice)), None);
        assert_eq!(
            offered(new(TokenIn::Query, Some("chat"), Envelope::Generic)).as_deref(),
            Some("chat")
        );
        let err = new(TokenIn::Subprotocol, None, Envelope::Generic).unwrap_err();
        assert!(err.starts_with("--subprotocol: "), "{err}");
    }

    fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
        request.headers().get(name).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn the_token_goes_where_the_gateway_reads_it() {
        let token = Secret::new("aaa.bbb.ccc");
        let mut presentation = Presentation::default();
        let url = "ws://127.0.0.1:1/v2/realtime";

        let request = upgrade_request(url, Some(&token), &presentation).unwrap();
        assert_eq!(
            header(&request, "authorization"),
            Some("Bearer aaa.bbb.ccc")
        );
        assert_eq!(request.uri().to_string(), url);
        assert_eq!(header(&request, "sec-websocket-protocol"), None);

        presentation.token_in = TokenIn::Query;
        let request = upgrade_request(url, Some(&token), &presentation).unwrap();
        assert_eq!(request.uri().query(), Some("access_token=aaa.bbb.ccc"));
        assert_eq!(header(&request, "authorization"), None);
        // Other parameters stay; a custom parameter name is used.
        presentation.query_param = "jwt".to_owned();
        let request =
            upgrade_request(&format!("{url}?topic=x"), Some(&token), &presentation).unwrap();
        assert_eq!(request.uri().query(), Some("topic=x&jwt=aaa.bbb.ccc"));

        presentation.token_in = TokenIn::Subprotocol;
        presentation.subprotocol = Some("v2.realtime-events".to_owned());
        let request = upgrade_request(url, Some(&token), &presentation).unwrap();
        assert_eq!(
            header(&request, "sec-websocket-protocol"),
            Some("bearer.aaa.bbb.ccc, v2.realtime-events")
        );
        assert_eq!(header(&request, "authorization"), None);
        assert_eq!(request.uri().query(), None);

        // No token: only the platform subprotocol, if any.
        let request = upgrade_request(url, None, &presentation).unwrap();
        assert_eq!(
            header(&request, "sec-websocket-protocol"),
            Some("v2.realtime-events")
        );
        assert_eq!(header(&request, "authorization"), None);
        assert!(upgrade_request("not a url", None, &presentation).is_err());
        // The plan's Debug never shows the token.
        assert!(!format!("{token:?}").contains("aaa"));
    }
}
