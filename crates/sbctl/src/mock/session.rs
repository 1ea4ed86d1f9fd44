//! One upgraded WebSocket session: replay, live events, bursts, echo, `auth_refresh` frames,
//! token expiry, faults and the close.
//!
//! Healthy sessions run on tungstenite. Sessions that must put bytes on the wire that tungstenite
//! will not write (the frame-violation faults) or that negotiated permessage-deflate (which
//! tungstenite 0.28 lacks) run on `RawSocket`, the mock's own frame loop over the same upgraded
//! stream. Both sit behind `Transport`, so the event logic is written once.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{interval_at, timeout, Instant, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::WebSocketStream;

use super::clock::{rfc3339_ms, unix_ms_now};
use super::deflate::{DeflateAgreement, DeflateCodec, DeflateError};
use super::envelope::{self, Envelope, EventId};
use super::fault::{self, SessionFault};
use super::frame::{self, FrameSpec};
use super::history::{ResumePoint, SentEvent};
use super::inbound::{self, AuthRefresh, Inspected};
use super::records::{LiveSession, SentKind};
use super::{lock, Shared, MAX_MESSAGE_BYTES};

/// Time allowed for one WebSocket send before the session is given up as stuck.
pub(super) const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Time open sessions get to exchange Close frames once shutdown starts.
pub(super) const SHUTDOWN_GRACE: Duration = Duration::from_millis(500);
/// Burst events sent before the session looks at its socket and the stop signal again.
const BURST_CHUNK: u64 = 64;
/// Bytes asked of the socket per read on the raw loop.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// RFC 6455 §7.4.1 close codes the raw loop sends.
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
const CLOSE_INVALID_DATA: u16 = 1007;
const CLOSE_POLICY_VIOLATION: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;

/// Close reason when the session's token expired without a valid `auth_refresh`.
const REASON_TOKEN_EXPIRED: &str = "token expired";
/// Close reason for an `auth_refresh` whose token is not a valid one from this mock.
const REASON_INVALID_AUTH_REFRESH: &str = "invalid auth_refresh";

/// Everything decided at upgrade time about how a session behaves.
#[derive(Debug)]
pub(super) struct SessionPlan {
    pub live: Arc<LiveSession>,
    pub envelope: Envelope,
    /// The agent from the upgrade headers, or `envelope::UNKNOWN_AGENT`.
    pub agent: String,
    pub routing_key: Option<String>,
    /// Where to replay the agent's history from; `None`: no replay.
    pub resume: Option<ResumePoint>,
    pub fault: SessionFault,
    /// Events sent before the fault fires.
    pub fault_after: u64,
    pub deflate: Option<DeflateAgreement>,
}

/// Runs the session to its end and marks it closed.
pub(super) async fn run<S>(shared: &Shared, io: S, plan: SessionPlan, stop: watch::Receiver<bool>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let live = Arc::clone(&plan.live);
    let _registered = Registered::new(shared, &live);
    let transport = if plan.deflate.is_some() || plan.fault.is_frame_violation() {
        Transport::Raw(RawSocket::new(
            io,
            plan.deflate
                .map(|agreement| DeflateCodec::new(agreement, MAX_MESSAGE_BYTES)),
        ))
    } else {
        Transport::Library(
            WebSocketStream::from_raw_socket(io, Role::Server, Some(shared.settings.websocket))
                .await,
        )
    };
    let mut session = Session {
        shared,
        plan,
        transport,
        live_events: 0,
        fault_done: false,
    };
    session.run(stop).await;
    live.mark_closed();
    if shared.settings.verbose {
        eprintln!("session {}: closed", live.session);
    }
}

/// Keeps the session in `Shared::live` (for `/_mock/burst`) while its task runs, including when
/// the task is aborted at shutdown.
struct Registered<'a> {
    shared: &'a Shared,
    session: u64,
}

impl<'a> Registered<'a> {
    fn new(shared: &'a Shared, live: &Arc<LiveSession>) -> Self {
        lock(&shared.live).insert(live.session, Arc::clone(live));
        Self {
            shared,
            session: live.session,
        }
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.shared.live).remove(&self.session);
    }
}

/// What the session does after a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Continue,
    /// The peer is gone or stuck: stop without further writes.
    End,
    /// The `drop` fault: close the TCP connection without a Close frame.
    Drop,
}

struct Session<'a, S> {
    shared: &'a Shared,
    plan: SessionPlan,
    transport: Transport<S>,
    /// Live events sent (not replayed), for `misrouted`'s every-third rule.
    live_events: u64,
    fault_done: bool,
}

impl<S> Session<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    async fn run(&mut self, mut stop: watch::Receiver<bool>) {
        let mut flow = self.fire_fault_if_due().await;
        if flow == Flow::Continue {
            flow = self.replay().await;
        }
        if flow == Flow::Continue {
            flow = self.serve(&mut stop).await;
        }
        if flow == Flow::Drop {
            self.transport.abort().await;
        }
    }

    /// Resends the agent's history after the resume point, overlap included.
    async fn replay(&mut self) -> Flow {
        let Some(point) = self.plan.resume else {
            return Flow::Continue;
        };
        let events = lock(&self.shared.history).replay(
            &self.plan.agent,
            point,
            self.shared.settings.replay_overlap,
        );
        for event in events {
            let text = self.own_event_text(event);
            let flow = self
                .send_event(text, SentKind::Replayed { seq: event.seq })
                .await;
            if flow != Flow::Continue {
                return flow;
            }
        }
        Flow::Continue
    }

    /// Echoes, consumes `auth_refresh` frames, emits events at the configured rate and on burst
    /// requests, and answers the close, until the client goes, a send stalls, the fault drops
    /// the connection, the token expires (`--require-token`), or the server shuts down.
    async fn serve(&mut self, stop: &mut watch::Receiver<bool>) -> Flow {
        let mut ticker = self.shared.settings.event_period.map(|period| {
            let mut ticker = interval_at(Instant::now() + period, period);
            // A slow client gets fewer events, not a burst of catch-up events.
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticker
        });
        let live = Arc::clone(&self.plan.live);
        let token_required = live.info.token_required;
        let mut closing = false;
        loop {
            let next_tick = async {
                match ticker.as_mut() {
                    Some(ticker) => {
                        ticker.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            // Re-read every turn: a valid auth_refresh moves the deadline.
            let token_deadline = if token_required {
                live.token_expires_at_ms()
            } else {
                None
            };
            let token_expiry = async move {
                match token_deadline {
                    Some(expires_at_ms) => {
                        let left_ms = expires_at_ms.saturating_sub(unix_ms_now());
                        tokio::time::sleep(Duration::from_millis(left_ms)).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                inbound = self.transport.recv() => match inbound {
                    Inbound::Ended => return Flow::End,
                    Inbound::Data { text, payload } => {
                        live.count_in();
                        let inspected = inbound::inspect(text, &payload);
                        live.log_inbound(inspected.marker());
                        if closing {
                            continue;
                        }
                        if let Inspected::AuthRefresh(refresh) = inspected {
                            if self.auth_refresh(refresh).await != Flow::Continue {
                                return Flow::End;
                            }
                            continue;
                        }
                        if !self.transport.send_data(text, payload).await {
                            return Flow::End;
                        }
                        live.count_out();
                    }
                    Inbound::Ping(payload) => {
                        if !self.transport.pong(payload).await {
                            return Flow::End;
                        }
                    }
                    Inbound::Pong => {}
                    Inbound::Close(code) => {
                        if let Some(code) = code {
                            live.set_close_code(code);
                        }
                        closing = true;
                        if self.transport.answer_close(code).await {
                            return Flow::End;
                        }
                    }
                    Inbound::Violation { code, reason } => {
                        if self.shared.settings.verbose {
                            eprintln!("session {}: client broke the protocol: {reason}", live.session);
                        }
                        self.close(code, reason).await;
                        return Flow::End;
                    }
                },
                () = token_expiry, if !closing => {
                    // The timer and the wall clock may disagree by a hair; the wall clock,
                    // which the token table uses, decides. Early: the next turn sleeps again.
                    if token_deadline.is_some_and(|expires_at_ms| unix_ms_now() >= expires_at_ms) {
                        if self.shared.settings.verbose {
                            eprintln!("session {}: token expired, closing", live.session);
                        }
                        live.mark_expired();
                        // RFC 6455 §7.4.1: 1008 is a policy violation (here, no valid token).
                        self.close(CLOSE_POLICY_VIOLATION, REASON_TOKEN_EXPIRED).await;
                        return Flow::End;
                    }
                }
                () = next_tick, if !closing => {
                    let flow = self.send_live_event().await;
                    if flow != Flow::Continue {
                        return flow;
                    }
                }
                () = live.burst_requested(), if !closing => {
                    let count = live.take_burst(BURST_CHUNK);
                    for _ in 0..count {
                        let flow = self.send_live_event().await;
                        if flow != Flow::Continue {
                            return flow;
                        }
                    }
                    if live.burst_pending() > 0 {
                        // Come back for the rest after serving the socket and the stop signal.
                        live.request_burst(0);
                    }
                }
                _ = stop.changed() => {
                    // RFC 6455 §7.4.1: 1001 means the endpoint is going away (server shutdown).
                    self.close(CLOSE_GOING_AWAY, "server shutting down").await;
                    return Flow::End;
                }
            }
        }
    }

    /// Sends a Close frame, records it as the server's, and gives up the connection.
    async fn close(&mut self, code: u16, reason: &'static str) {
        self.plan.live.set_server_close(code, reason);
        self.transport.close(code, reason).await;
    }

    /// Consumes an `auth_refresh` frame. A token this mock issued that is still valid moves the
    /// session's expiry to its own; any other is counted, and under `--require-token` ends the
    /// session with 1008.
    async fn auth_refresh(&mut self, refresh: AuthRefresh) -> Flow {
        let now_ms = unix_ms_now();
        let expires_at_ms = refresh.access_token().and_then(|token| {
            lock(&self.shared.authority)
                .access_token_expiry_ms(token)
                .filter(|expires_at_ms| *expires_at_ms > now_ms)
        });
        let valid = expires_at_ms.is_some();
        let mut seen = refresh.seen;
        seen.at_ms = now_ms;
        seen.valid = valid;
        let live = Arc::clone(&self.plan.live);
        live.record_auth_refresh(seen, expires_at_ms);
        if self.shared.settings.verbose {
            eprintln!(
                "session {}: auth_refresh {}",
                live.session,
                if valid { "accepted" } else { "invalid" }
            );
        }
        if !valid && live.info.token_required {
            // RFC 6455 §7.4.1: 1008 is a policy violation (here, a bad credential).
            self.close(CLOSE_POLICY_VIOLATION, REASON_INVALID_AUTH_REFRESH)
                .await;
            return Flow::End;
        }
        Flow::Continue
    }

    /// An event of the session's agent, as first sent (same id, sequence and timestamp) but in
    /// this session's envelope and with its routing key.
    fn own_event_text(&self, event: SentEvent) -> String {
        let id = EventId {
            instance: &self.shared.settings.name,
            agent: &self.plan.agent,
            seq: event.seq,
            routing_key: self.plan.routing_key.as_deref(),
        };
        envelope::event_text(self.plan.envelope, &id, &rfc3339_ms(event.at_ms))
    }

    /// Sends the next live event: the agent's own, or on a `misrouted` session every third one
    /// belongs to another agent (recorded in that agent's history).
    async fn send_live_event(&mut self) -> Flow {
        self.live_events = self.live_events.saturating_add(1);
        let now_ms = unix_ms_now();
        let misroute = self.plan.fault == SessionFault::Misrouted
            && self.live_events % fault::MISROUTE_EVERY == 0;
        if misroute {
            let other_agent = fault::misrouted_agent(&self.plan.agent);
            let other_key =
                fault::misrouted_routing_key(self.plan.routing_key.as_deref(), &self.plan.agent);
            let event = lock(&self.shared.history).append(&other_agent, now_ms);
            let id = EventId {
                instance: &self.shared.settings.name,
                agent: &other_agent,
                seq: event.seq,
                routing_key: Some(&other_key),
            };
            let text = envelope::event_text(self.plan.envelope, &id, &rfc3339_ms(event.at_ms));
            if !self.fault_done {
                self.fault_done = true;
                self.plan.live.mark_fault_fired();
            }
            self.send_event(text, SentKind::Misrouted).await
        } else {
            let event = lock(&self.shared.history).append(&self.plan.agent, now_ms);
            let text = self.own_event_text(event);
            self.send_event(text, SentKind::Live { seq: event.seq })
                .await
        }
    }

    async fn send_event(&mut self, text: String, kind: SentKind) -> Flow {
        if !self.transport.send_data(true, Bytes::from(text)).await {
            return Flow::End;
        }
        self.plan.live.count_out();
        self.plan.live.count_event(kind);
        self.fire_fault_if_due().await
    }

    /// Fires a frame-violation or `drop` fault once the session has sent `fault_after` events.
    async fn fire_fault_if_due(&mut self) -> Flow {
        let fires_once =
            self.plan.fault == SessionFault::Drop || self.plan.fault.is_frame_violation();
        let due =
            fires_once && !self.fault_done && self.plan.live.events_sent() >= self.plan.fault_after;
        if !due {
            return Flow::Continue;
        }
        self.fault_done = true;
        if self.plan.fault == SessionFault::Drop {
            self.plan.live.mark_fault_fired();
            return Flow::Drop;
        }
        let Some(bytes) = self
            .plan
            .fault
            .violation_frame(self.shared.settings.oversized_bytes)
        else {
            return Flow::Continue;
        };
        if !self.transport.send_raw(&bytes).await {
            return Flow::End;
        }
        self.plan.live.mark_fault_fired();
        Flow::Continue
    }
}

/// What the client sent, as the session loop needs it.
#[derive(Debug)]
enum Inbound {
    /// A complete text (valid UTF-8) or binary message, inflated if it was compressed.
    Data {
        text: bool,
        payload: Bytes,
    },
    Ping(Bytes),
    Pong,
    /// A Close frame and its code, if it had one.
    Close(Option<u16>),
    /// The client broke the protocol; the connection is failed with this code.
    Violation {
        code: u16,
        reason: &'static str,
    },
    /// The stream ended or failed.
    Ended,
}

enum Transport<S> {
    Library(WebSocketStream<S>),
    Raw(RawSocket<S>),
}

impl<S> Transport<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    /// Cancel-safe: nothing is lost if another `select!` branch wins.
    async fn recv(&mut self) -> Inbound {
        match self {
            Transport::Library(websocket) => loop {
                return match websocket.next().await {
                    None | Some(Err(_)) => Inbound::Ended,
                    Some(Ok(Message::Text(text))) => Inbound::Data {
                        text: true,
                        payload: Bytes::from(text),
                    },
                    Some(Ok(Message::Binary(payload))) => Inbound::Data {
                        text: false,
                        payload,
                    },
                    Some(Ok(Message::Close(frame))) => {
                        Inbound::Close(frame.map(|frame| u16::from(frame.code)))
                    }
                    // tungstenite answers pings itself; pongs and raw frames need nothing.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                };
            },
            Transport::Raw(raw) => raw.recv().await,
        }
    }

    /// Sends one data message within `SEND_TIMEOUT`; false means the session should end.
    async fn send_data(&mut self, text: bool, payload: Bytes) -> bool {
        match self {
            Transport::Library(websocket) => {
                let message = if text {
                    match Utf8Bytes::try_from(payload) {
                        Ok(text) => Message::Text(text),
                        Err(_) => return false,
                    }
                } else {
                    Message::Binary(payload)
                };
                matches!(
                    timeout(SEND_TIMEOUT, websocket.send(message)).await,
                    Ok(Ok(()))
                )
            }
            Transport::Raw(raw) => raw.send_data(text, &payload).await,
        }
    }

    /// Writes hand-built frame bytes. Only the raw loop can; the plan routes faults there.
    async fn send_raw(&mut self, bytes: &[u8]) -> bool {
        match self {
            Transport::Library(_) => false,
            Transport::Raw(raw) => raw.write(bytes).await,
        }
    }

    async fn pong(&mut self, payload: Bytes) -> bool {
        match self {
            // tungstenite queued the Pong already.
            Transport::Library(_) => true,
            // RFC 6455 §5.5.2: a Pong carries the Ping's application data.
            Transport::Raw(raw) => {
                raw.write(&frame::encode(
                    &FrameSpec::server(frame::OPCODE_PONG),
                    &payload,
                ))
                .await
            }
        }
    }

    /// Answers the client's Close. True when the session is over; tungstenite needs the stream
    /// polled until it has flushed its answer, so there it is false.
    async fn answer_close(&mut self, code: Option<u16>) -> bool {
        match self {
            Transport::Library(_) => false,
            Transport::Raw(raw) => {
                // RFC 6455 §5.5.1: the answer to a Close typically echoes its status code.
                let payload = code
                    .map(|code| frame::close_payload(code, ""))
                    .unwrap_or_default();
                raw.write(&frame::encode(
                    &FrameSpec::server(frame::OPCODE_CLOSE),
                    &payload,
                ))
                .await;
                // RFC 6455 §7.1.1: after the closing handshake the server closes TCP first.
                let _ = timeout(SEND_TIMEOUT, raw.io.shutdown()).await;
                true
            }
        }
    }

    /// Sends a Close frame and gives up the connection.
    async fn close(&mut self, code: u16, reason: &str) {
        match self {
            Transport::Library(websocket) => {
                let close = CloseFrame {
                    code: CloseCode::from(code),
                    reason: reason.to_owned().into(),
                };
                let _ = timeout(SHUTDOWN_GRACE, websocket.close(Some(close))).await;
            }
            Transport::Raw(raw) => {
                let payload = frame::close_payload(code, reason);
                let frame = frame::encode(&FrameSpec::server(frame::OPCODE_CLOSE), &payload);
                let _ = timeout(SHUTDOWN_GRACE, async {
                    raw.write(&frame).await;
                    raw.io.shutdown().await
                })
                .await;
            }
        }
    }

    /// Ends the TCP connection without a Close frame (the `drop` fault).
    async fn abort(&mut self) {
        let io = match self {
            Transport::Library(websocket) => websocket.get_mut(),
            Transport::Raw(raw) => &mut raw.io,
        };
        let _ = timeout(SHUTDOWN_GRACE, io.shutdown()).await;
    }
}

/// A fragmented message being reassembled.
struct Partial {
    text: bool,
    compressed: bool,
    payload: Vec<u8>,
}

/// Server side of RFC 6455 framing on the raw upgraded stream, with optional permessage-deflate.
struct RawSocket<S> {
    io: S,
    /// Bytes read but not yet parsed; at most one frame plus one read.
    buffer: Vec<u8>,
    partial: Option<Partial>,
    deflate: Option<DeflateCodec>,
}

impl<S> RawSocket<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    fn new(io: S, deflate: Option<DeflateCodec>) -> Self {
        Self {
            io,
            buffer: Vec::new(),
            partial: None,
            deflate,
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> bool {
        let io = &mut self.io;
        matches!(
            timeout(SEND_TIMEOUT, async {
                io.write_all(bytes).await?;
                io.flush().await
            })
            .await,
            Ok(Ok(()))
        )
    }

    /// One message frame, compressed (RSV1 set) when deflate was negotiated.
    async fn send_data(&mut self, text: bool, payload: &[u8]) -> bool {
        let opcode = if text {
            frame::OPCODE_TEXT
        } else {
            frame::OPCODE_BINARY
        };
        let frame = match self.deflate.as_mut() {
            Some(codec) => match codec.compress(payload) {
                Ok(compressed) => frame::encode(
                    &FrameSpec {
                        rsv1: true,
                        ..FrameSpec::server(opcode)
                    },
                    &compressed,
                ),
                Err(_) => return false,
            },
            None => frame::encode(&FrameSpec::server(opcode), payload),
        };
        self.write(&frame).await
    }

    /// Cancel-safe: the only await is a read into `buffer`.
    async fn recv(&mut self) -> Inbound {
        loop {
            match self.next_frame() {
                Ok(Some(inbound)) => return inbound,
                Ok(None) => {}
                Err(violation) => return violation,
            }
            self.buffer.reserve(READ_CHUNK_BYTES);
            match self.io.read_buf(&mut self.buffer).await {
                Ok(0) | Err(_) => return Inbound::Ended,
                Ok(_) => {}
            }
        }
    }

    /// Takes the next complete frame out of `buffer`: `Ok(None)` when more bytes are needed,
    /// `Ok(Some(_))` when a message or control frame is complete.
    fn next_frame(&mut self) -> Result<Option<Inbound>, Inbound> {
        loop {
            let header = match frame::parse_header(&self.buffer) {
                Ok(Some(header)) => header,
                Ok(None) => return Ok(None),
                Err(_) => return Err(violation(CLOSE_PROTOCOL_ERROR, "bad frame length")),
            };
            let control = frame::is_control(header.opcode);
            // RFC 6455 §5.1: the server MUST close the connection on an unmasked client frame.
            let Some(key) = header.mask else {
                return Err(violation(CLOSE_PROTOCOL_ERROR, "unmasked client frame"));
            };
            // RFC 6455 §5.2: RSV bits MUST be 0 unless an extension defines them; RFC 7692 §6
            // defines RSV1 on the first frame of a data message only.
            let first_data_frame =
                matches!(header.opcode, frame::OPCODE_TEXT | frame::OPCODE_BINARY);
            if header.rsv2
                || header.rsv3
                || (header.rsv1 && !(self.deflate.is_some() && first_data_frame))
            {
                return Err(violation(CLOSE_PROTOCOL_ERROR, "reserved bit set"));
            }
            let known = matches!(
                header.opcode,
                frame::OPCODE_CONTINUATION
                    | frame::OPCODE_TEXT
                    | frame::OPCODE_BINARY
                    | frame::OPCODE_CLOSE
                    | frame::OPCODE_PING
                    | frame::OPCODE_PONG
            );
            // RFC 6455 §5.2: a reserved opcode MUST fail the connection.
            if !known {
                return Err(violation(CLOSE_PROTOCOL_ERROR, "reserved opcode"));
            }
            // RFC 6455 §5.5: control frames MUST have a payload of at most 125 bytes and MUST
            // NOT be fragmented.
            if control && (!header.fin || header.payload_len > 125) {
                return Err(violation(CLOSE_PROTOCOL_ERROR, "bad control frame"));
            }
            let held = self.partial.as_ref().map_or(0, |p| p.payload.len());
            let length = match usize::try_from(header.payload_len) {
                Ok(length) if held.saturating_add(length) <= MAX_MESSAGE_BYTES => length,
                _ => return Err(violation(CLOSE_TOO_BIG, "message too big")),
            };
            let end = header.header_len.saturating_add(length);
            if self.buffer.len() < end {
                return Ok(None);
            }
            let mut payload: Vec<u8> = self.buffer.drain(..end).skip(header.header_len).collect();
            frame::apply_mask(&mut payload, key);
            match header.opcode {
                frame::OPCODE_CLOSE => {
                    return close_code(&payload).map(|code| Some(Inbound::Close(code)))
                }
                frame::OPCODE_PING => return Ok(Some(Inbound::Ping(Bytes::from(payload)))),
                frame::OPCODE_PONG => return Ok(Some(Inbound::Pong)),
                frame::OPCODE_CONTINUATION => {
                    // RFC 6455 §5.4: a continuation frame continues a started message.
                    let Some(partial) = self.partial.as_mut() else {
                        return Err(violation(
                            CLOSE_PROTOCOL_ERROR,
                            "continuation without a start",
                        ));
                    };
                    partial.payload.extend_from_slice(&payload);
                    if !header.fin {
                        continue;
                    }
                    let Some(done) = self.partial.take() else {
                        continue;
                    };
                    return self.finish(done).map(Some);
                }
                _ => {
                    // RFC 6455 §5.4: a new data frame cannot start inside a fragmented message.
                    if self.partial.is_some() {
                        return Err(violation(
                            CLOSE_PROTOCOL_ERROR,
                            "data frame inside a fragmented message",
                        ));
                    }
                    let started = Partial {
                        text: header.opcode == frame::OPCODE_TEXT,
                        compressed: header.rsv1,
                        payload,
                    };
                    if header.fin {
                        return self.finish(started).map(Some);
                    }
                    self.partial = Some(started);
                }
            }
        }
    }

    fn finish(&mut self, message: Partial) -> Result<Inbound, Inbound> {
        let payload = match (message.compressed, self.deflate.as_mut()) {
            (true, Some(codec)) => {
                codec
                    .decompress(&message.payload)
                    .map_err(|error| match error {
                        DeflateError::TooLarge(_) => violation(CLOSE_TOO_BIG, "message too big"),
                        DeflateError::Corrupt | DeflateError::Compressor => {
                            violation(CLOSE_INVALID_DATA, "bad compressed data")
                        }
                    })?
            }
            _ => message.payload,
        };
        // RFC 6455 §8.1: a text message that is not UTF-8 MUST fail the connection (1007).
        if message.text && std::str::from_utf8(&payload).is_err() {
            return Err(violation(CLOSE_INVALID_DATA, "text message is not UTF-8"));
        }
        Ok(Inbound::Data {
            text: message.text,
            payload: Bytes::from(payload),
        })
    }
}

fn violation(code: u16, reason: &'static str) -> Inbound {
    Inbound::Violation { code, reason }
}

/// The status code of a Close payload (RFC 6455 §5.5.1): none, or two bytes of code then a
/// UTF-8 reason.
fn close_code(payload: &[u8]) -> Result<Option<u16>, Inbound> {
    match payload {
        [] => Ok(None),
        [_] => Err(violation(CLOSE_PROTOCOL_ERROR, "one-byte close payload")),
        [high, low, reason @ ..] => {
            // RFC 6455 §5.5.1: the reason is UTF-8.
            if std::str::from_utf8(reason).is_err() {
                return Err(violation(CLOSE_INVALID_DATA, "close reason is not UTF-8"));
            }
            Ok(Some(u16::from_be_bytes([*high, *low])))
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test should fail loudly on an unexpected error"
)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    fn client_frame(opcode: u8, fin: bool, rsv1: bool, payload: &[u8]) -> Vec<u8> {
        frame::encode(
            &FrameSpec {
                fin,
                rsv1,
                mask: Some([1, 2, 3, 4]),
                ..FrameSpec::server(opcode)
            },
            payload,
        )
    }

    async fn feed(bytes: &[u8], deflate: bool) -> Inbound {
        let (mut client, server) = duplex(1 << 20);
        client.write_all(bytes).await.unwrap();
        drop(client);
        let codec = deflate.then(|| DeflateCodec::new(DeflateAgreement::default(), 1 << 20));
        RawSocket::new(server, codec).recv().await
    }

    #[tokio::test]
    async fn reassembles_fragments_with_control_frames_between() {
        let mut bytes = client_frame(frame::OPCODE_TEXT, false, false, b"Hel");
        bytes.extend(client_frame(frame::OPCODE_PING, true, false, b"p"));
        bytes.extend(client_frame(frame::OPCODE_CONTINUATION, true, false, b"lo"));
        let (mut client, server) = duplex(1 << 16);
        client.write_all(&bytes).await.unwrap();
        let mut raw = RawSocket::new(server, None);
        assert!(matches!(raw.recv().await, Inbound::Ping(p) if p.as_ref() == b"p"));
        match raw.recv().await {
            Inbound::Data { text, payload } => {
                assert!(text);
                assert_eq!(payload.as_ref(), b"Hello");
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn refuses_protocol_violations() {
        let unmasked = frame::encode(&FrameSpec::server(frame::OPCODE_TEXT), b"x");
        let cases: Vec<(Vec<u8>, u16)> = vec![
            (unmasked, CLOSE_PROTOCOL_ERROR),
            (client_frame(0x3, true, false, b"x"), CLOSE_PROTOCOL_ERROR),
            (
                client_frame(frame::OPCODE_TEXT, true, true, b"x"),
                CLOSE_PROTOCOL_ERROR,
            ),
            (
                client_frame(frame::OPCODE_TEXT, true, false, b"\xff"),
                CLOSE_INVALID_DATA,
            ),
            (
                client_frame(frame::OPCODE_PING, false, false, b""),
                CLOSE_PROTOCOL_ERROR,
            ),
            (
                client_frame(frame::OPCODE_CONTINUATION, true, false, b"x"),
                CLOSE_PROTOCOL_ERROR,
            ),
            (
                client_frame(frame::OPCODE_CLOSE, true, false, b"\x03"),
                CLOSE_PROTOCOL_ERROR,
            ),
        ];
        for (bytes, expected) in cases {
            match feed(&bytes, false).await {
                Inbound::Violation { code, .. } => assert_eq!(code, expected, "{bytes:02x?}"),
                other => panic!("{bytes:02x?}: {other:?}"),
            }
        }
        // A length past the message limit is refused before its payload arrives.
        let mut huge = vec![0x82, 0xff];
        huge.extend_from_slice(&(u64::try_from(MAX_MESSAGE_BYTES).unwrap() + 1).to_be_bytes());
        huge.extend_from_slice(&[1, 2, 3, 4]);
        assert!(matches!(
            feed(&huge, false).await,
            Inbound::Violation {
                code: CLOSE_TOO_BIG,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn inflates_compressed_messages_when_negotiated() {
        // RFC 7692 §7.2.3.1's compressed "Hello", sent with RSV1 by a client.
        let compressed = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
        let bytes = client_frame(frame::OPCODE_TEXT, true, true, &compressed);
        match feed(&bytes, true).await {
            Inbound::Data { text, payload } => {
                assert!(text);
                assert_eq!(payload.as_ref(), b"Hello");
            }
            other => panic!("{other:?}"),
        }
        // RSV1 on a continuation frame is never allowed (RFC 7692 §6.1).
        let mut bytes = client_frame(frame::OPCODE_TEXT, false, true, &compressed);
        bytes.extend(client_frame(frame::OPCODE_CONTINUATION, true, true, b""));
        assert!(matches!(
            feed(&bytes, true).await,
            Inbound::Violation {
                code: CLOSE_PROTOCOL_ERROR,
                ..
            }
        ));
    }

    #[tokio::test]
    async fn close_codes_and_end_of_stream() {
        let bytes = client_frame(
            frame::OPCODE_CLOSE,
            true,
            false,
            &frame::close_payload(4001, "bye"),
        );
        assert!(matches!(
            feed(&bytes, false).await,
            Inbound::Close(Some(4001))
        ));
        let bytes = client_frame(frame::OPCODE_CLOSE, true, false, b"");
        assert!(matches!(feed(&bytes, false).await, Inbound::Close(None)));
        assert!(matches!(feed(b"", false).await, Inbound::Ended));
    }
}
