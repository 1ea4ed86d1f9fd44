//! What the mock saw, kept in bounded rings so tests can assert on it over `/_mock/*`.
//!
//! Live counters are atomics shared with the session task, so recording a frame never takes the
//! log's lock; the lock is only taken to add a session or to snapshot the log. The token state
//! and inbound log of a session sit behind that session's own lock, which only its task and
//! snapshots take.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;
use tokio::sync::Notify;

use super::inbound::{AuthRefreshSeen, InboundLog};
use super::lock;

/// Sentinel in `LiveSession::close_code` for "no Close frame received" (codes are u16).
const NO_CLOSE_CODE: u32 = u32::MAX;
/// Sentinel in `first_seq` / `last_seq` for "no event of the session's agent sent yet"
/// (sequences start at 1).
const NO_SEQ: u64 = 0;
/// Most burst events a session can have waiting; further requests are cut to this.
pub const MAX_PENDING_BURST: u64 = 100_000;

/// What is fixed about a session at upgrade time.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub name: String,
    /// `HTTP/1.1` for an upgrade, `HTTP/2` for an extended CONNECT stream (RFC 8441).
    pub http_version: &'static str,
    pub method: String,
    /// Path and query exactly as received in the request target.
    pub path: String,
    /// Lowercase names in arrival order. hyper groups repeated names at the first occurrence.
    pub headers: Vec<(String, String)>,
    pub agent: Option<String>,
    pub routing_key: Option<String>,
    pub connected_at_ms: u64,
    /// The session's fault mode (`none` for a healthy session).
    pub fault: &'static str,
    /// The client offered permessage-deflate.
    pub deflate_offered: bool,
    /// The server accepted it (needs `--deflate`).
    pub deflate_negotiated: bool,
    /// The upgrade had to carry a valid token (`--require-token`), and the session is closed
    /// when its token expires.
    pub token_required: bool,
    /// Expiry (Unix ms) of the token the upgrade carried, when one was required.
    pub token_expires_at_ms: Option<u64>,
}

/// What kind of event a session sent, for its counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SentKind {
    /// A new event of the session's agent.
    Live { seq: u64 },
    /// A resent event of the session's agent (replay after `since` / `cursor`).
    Replayed { seq: u64 },
    /// An event of another agent (the `misrouted` fault).
    Misrouted,
}

/// One upgraded WebSocket session: fixed facts plus counters the session task updates.
#[derive(Debug)]
pub struct LiveSession {
    pub session: u64,
    pub info: SessionInfo,
    frames_in: AtomicU64,
    frames_out: AtomicU64,
    closed: AtomicBool,
    close_code: AtomicU32,
    events_sent: AtomicU64,
    replayed: AtomicU64,
    misrouted: AtomicU64,
    first_seq: AtomicU64,
    last_seq: AtomicU64,
    fault_fired: AtomicBool,
    burst_pending: AtomicU64,
    burst_wake: Notify,
    /// Code and reason of the Close frame the server sent first, if it sent one.
    server_close: OnceLock<(u16, &'static str)>,
    token: Mutex<TokenState>,
}

/// A session's token and inbound-message trail; never holds a token.
#[derive(Debug, Default)]
struct TokenState {
    expires_at_ms: Option<u64>,
    expired: bool,
    refreshes: u64,
    refreshes_invalid: u64,
    last_refresh: Option<AuthRefreshSeen>,
    inbound_log: InboundLog,
}

impl LiveSession {
    /// Counts one data message (text or binary) received from the client.
    pub fn count_in(&self) {
        self.frames_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one data message (echo or event) sent to the client.
    pub fn count_out(&self) {
        self.frames_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Remembers the code of the client's Close frame (RFC 6455 §5.5.1).
    pub fn set_close_code(&self, code: u16) {
        self.close_code.store(u32::from(code), Ordering::Relaxed);
    }

    /// Counts one event sent (it is also counted by `count_out`).
    pub fn count_event(&self, kind: SentKind) {
        self.events_sent.fetch_add(1, Ordering::Relaxed);
        let seq = match kind {
            SentKind::Live { seq } => seq,
            SentKind::Replayed { seq } => {
                self.replayed.fetch_add(1, Ordering::Relaxed);
                seq
            }
            SentKind::Misrouted => {
                self.misrouted.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        let _ = self
            .first_seq
            .compare_exchange(NO_SEQ, seq, Ordering::Relaxed, Ordering::Relaxed);
        self.last_seq.store(seq, Ordering::Relaxed);
    }

    /// Events sent so far (live, replayed and misrouted).
    pub fn events_sent(&self) -> u64 {
        self.events_sent.load(Ordering::Relaxed)
    }

    /// Remembers that the session's fault happened (frame written, or connection dropped).
    pub fn mark_fault_fired(&self) {
        self.fault_fired.store(true, Ordering::Relaxed);
    }

    /// Asks the session to send `count` more events as fast as it can; what is already waiting
    /// plus `count` is cut to `MAX_PENDING_BURST`.
    pub fn request_burst(&self, count: u64) {
        let _ = self
            .burst_pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |pending| {
                Some(pending.saturating_add(count).min(MAX_PENDING_BURST))
            });
        self.burst_wake.notify_one();
    }

    /// Takes up to `most` waiting burst events.
    pub fn take_burst(&self, most: u64) -> u64 {
        let mut taken = 0;
        let _ = self
            .burst_pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |pending| {
                taken = pending.min(most);
                Some(pending - taken)
            });
        taken
    }

    /// Burst events still waiting.
    pub fn burst_pending(&self) -> u64 {
        self.burst_pending.load(Ordering::Relaxed)
    }

    /// Resolves when a burst is requested (or was requested since the last wait).
    pub async fn burst_requested(&self) {
        self.burst_wake.notified().await;
    }

    /// Remembers the Close frame the server sent; only the first counts.
    pub fn set_server_close(&self, code: u16, reason: &'static str) {
        let _ = self.server_close.set((code, reason));
    }

    /// Adds the marker of one inbound data message to the bounded `inbound_log`.
    pub fn log_inbound(&self, marker: &str) {
        lock(&self.token).inbound_log.push(marker);
    }

    /// Records an `auth_refresh` frame: a valid one (`seen.valid`) counts and moves the token
    /// expiry to `expires_at_ms`; an invalid one is counted apart and changes nothing else.
    pub fn record_auth_refresh(&self, seen: AuthRefreshSeen, expires_at_ms: Option<u64>) {
        let mut token = lock(&self.token);
        if seen.valid {
            token.refreshes = token.refreshes.saturating_add(1);
            token.expires_at_ms = expires_at_ms;
        } else {
            token.refreshes_invalid = token.refreshes_invalid.saturating_add(1);
        }
        token.last_refresh = Some(seen);
    }

    /// Remembers that the session was closed because its token expired.
    pub fn mark_expired(&self) {
        lock(&self.token).expired = true;
    }

    /// Expiry (Unix ms) of the session's current token, if it has one.
    pub fn token_expires_at_ms(&self) -> Option<u64> {
        lock(&self.token).expires_at_ms
    }

    /// True once the session task has ended.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn snapshot(&self) -> SessionRecord {
        let close_code = u16::try_from(self.close_code.load(Ordering::Relaxed)).ok();
        let server_close = self.server_close.get().copied();
        let token = lock(&self.token);
        SessionRecord {
            session: self.session,
            name: self.info.name.clone(),
            http_version: self.info.http_version.to_owned(),
            method: self.info.method.clone(),
            path: self.info.path.clone(),
            headers: self.info.headers.clone(),
            agent: self.info.agent.clone(),
            routing_key: self.info.routing_key.clone(),
            connected_at_ms: self.info.connected_at_ms,
            closed: self.closed.load(Ordering::Acquire),
            close_code,
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_out: self.frames_out.load(Ordering::Relaxed),
            fault: self.info.fault.to_owned(),
            fault_fired: self.fault_fired.load(Ordering::Relaxed),
            deflate_offered: self.info.deflate_offered,
            deflate_negotiated: self.info.deflate_negotiated,
            events_sent: self.events_sent.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            misrouted: self.misrouted.load(Ordering::Relaxed),
            first_seq: Some(self.first_seq.load(Ordering::Relaxed)).filter(|seq| *seq != NO_SEQ),
            last_seq: Some(self.last_seq.load(Ordering::Relaxed)).filter(|seq| *seq != NO_SEQ),
            server_close_code: server_close.map(|(code, _)| code),
            server_close_reason: server_close.map(|(_, reason)| reason.to_owned()),
            token_required: self.info.token_required,
            token_expires_at_ms: token.expires_at_ms,
            expired: token.expired,
            auth_refreshes: token.refreshes,
            auth_refreshes_invalid: token.refreshes_invalid,
            last_auth_refresh: token.last_refresh.clone(),
            inbound_log: token.inbound_log.snapshot(),
        }
    }
}

/// A session as served by `GET /_mock/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SessionRecord {
    pub session: u64,
    pub name: String,
    /// `HTTP/1.1` (upgrade, `method` GET) or `HTTP/2` (extended CONNECT, `method` CONNECT).
    #[serde(default)]
    pub http_version: String,
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub agent: Option<String>,
    pub routing_key: Option<String>,
    pub connected_at_ms: u64,
    pub closed: bool,
    pub close_code: Option<u16>,
    /// Text and binary messages received (control frames are not counted).
    pub frames_in: u64,
    /// Text and binary messages sent: echoes plus events.
    pub frames_out: u64,
    /// Fault mode of the session (`none`, or a `--fault` / `?fault=` mode).
    pub fault: String,
    /// The fault happened: its frame was written, or the connection was dropped.
    pub fault_fired: bool,
    pub deflate_offered: bool,
    pub deflate_negotiated: bool,
    /// Events sent: live, replayed and misrouted.
    pub events_sent: u64,
    /// Of those, resent from the agent's history after `since` / `cursor`.
    pub replayed: u64,
    /// Of those, another agent's events (the `misrouted` fault).
    pub misrouted: u64,
    /// Sequence number of the first and last event of the session's agent sent (replayed ones
    /// included, misrouted ones not).
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    /// Code and reason of the Close frame the server sent first: 1001 at shutdown, 1002/1007/1009
    /// for a client's protocol violation, 1008 for an expired token or an invalid
    /// `auth_refresh`. `close_code` is the client's.
    pub server_close_code: Option<u16>,
    pub server_close_reason: Option<String>,
    /// The upgrade had to carry a valid token (`--require-token`).
    pub token_required: bool,
    /// Expiry (Unix ms) of the session's current token: the upgrade's, then that of each valid
    /// `auth_refresh`. Enforced only when `token_required`.
    pub token_expires_at_ms: Option<u64>,
    /// The server closed the session (1008) because its token expired.
    pub expired: bool,
    /// `auth_refresh` frames whose token this mock issued and was valid on arrival.
    pub auth_refreshes: u64,
    /// `auth_refresh` frames with a missing, unknown or expired token (with `token_required`
    /// the first one closes the session with 1008).
    pub auth_refreshes_invalid: u64,
    /// Non-secret fields of the last `auth_refresh` frame, valid or not.
    pub last_auth_refresh: Option<AuthRefreshSeen>,
    /// Markers of the last `inbound::INBOUND_LOG_ENTRIES` data messages from the client, oldest
    /// first: "auth_refresh", the message's `seq`, or "other".
    pub inbound_log: Vec<String>,
}

impl SessionRecord {
    /// First value of a header by lowercase name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header_name, _)| header_name == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Sessions in upgrade order; the oldest is dropped when `max_records` is reached.
#[derive(Debug)]
pub struct SessionLog {
    max_records: usize,
    next_session: u64,
    sessions: VecDeque<Arc<LiveSession>>,
}

impl SessionLog {
    pub fn new(max_records: usize) -> Self {
        Self {
            max_records: max_records.max(1),
            next_session: 1,
            sessions: VecDeque::new(),
        }
    }

    /// Records a new session and returns its shared handle. Session numbers are never reused,
    /// not even after `clear`.
    pub fn open(&mut self, info: SessionInfo) -> Arc<LiveSession> {
        let session = self.next_session;
        self.next_session = self.next_session.saturating_add(1);
        let live = Arc::new(LiveSession {
            session,
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            close_code: AtomicU32::new(NO_CLOSE_CODE),
            events_sent: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            misrouted: AtomicU64::new(0),
            first_seq: AtomicU64::new(NO_SEQ),
            last_seq: AtomicU64::new(NO_SEQ),
            fault_fired: AtomicBool::new(false),
            burst_pending: AtomicU64::new(0),
            burst_wake: Notify::new(),
            server_close: OnceLock::new(),
            token: Mutex::new(TokenState {
                expires_at_ms: info.token_expires_at_ms,
                ..TokenState::default()
            }),
            info,
        });
        while self.sessions.len() >= self.max_records {
            self.sessions.pop_front();
        }
        self.sessions.push_back(Arc::clone(&live));
        live
    }

    /// Snapshots, oldest first, optionally only those whose agent matches.
    pub fn snapshot(&self, agent: Option<&str>) -> Vec<SessionRecord> {
        self.sessions
            .iter()
            .filter(|live| agent.is_none() || live.info.agent.as_deref() == agent)
            .map(|live| live.snapshot())
            .collect()
    }

    pub fn clear(&mut self) {
        self.sessions.clear();
    }
}

/// One request to the token endpoint, as served by `GET /_mock/token-requests`. Never holds the
/// client secret, a refresh token or an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TokenRequestRecord {
    pub seq: u64,
    pub at_ms: u64,
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    /// `basic`, `form` or `none`: how the client tried to authenticate (RFC 6749 §2.3.1).
    pub client_auth: String,
    pub secret_matched: bool,
    /// The fault mode in force when the request arrived.
    pub fault: String,
    /// Status answered; `None` when the connection was dropped without an answer.
    pub status: Option<u16>,
    /// The OAuth `error` code answered, if any.
    pub error: Option<String>,
}

/// Token-endpoint requests in arrival order, bounded like `SessionLog`.
#[derive(Debug)]
pub struct TokenRequestLog {
    max_records: usize,
    next_seq: u64,
    requests: VecDeque<TokenRequestRecord>,
}

impl TokenRequestLog {
    pub fn new(max_records: usize) -> Self {
        Self {
            max_records: max_records.max(1),
            next_seq: 1,
            requests: VecDeque::new(),
        }
    }

    /// Stores the record, assigning its sequence number.
    pub fn push(&mut self, mut record: TokenRequestRecord) {
        record.seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        while self.requests.len() >= self.max_records {
            self.requests.pop_front();
        }
        self.requests.push_back(record);
    }

    pub fn snapshot(&self) -> Vec<TokenRequestRecord> {
        self.requests.iter().cloned().collect()
    }

    pub fn clear(&mut self) {
        self.requests.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(agent: Option<&str>) -> SessionInfo {
        SessionInfo {
            name: "platform-1".into(),
            http_version: "HTTP/1.1",
            method: "GET".into(),
            path: "/ws?x=1".into(),
            headers: vec![("host".into(), "example".into())],
            agent: agent.map(str::to_owned),
            routing_key: None,
            connected_at_ms: 5,
            fault: "none",
            deflate_offered: false,
            deflate_negotiated: false,
            token_required: false,
            token_expires_at_ms: None,
        }
    }

    #[test]
    fn ring_drops_oldest_and_never_reuses_numbers() {
        let mut log = SessionLog::new(2);
        for _ in 0..3 {
            log.open(info(None));
        }
        let numbers: Vec<u64> = log.snapshot(None).iter().map(|r| r.session).collect();
        assert_eq!(numbers, vec![2, 3]);
        log.clear();
        assert!(log.snapshot(None).is_empty());
        assert_eq!(log.open(info(None)).session, 4);
    }

    #[test]
    fn counters_show_in_snapshot() {
        let mut log = SessionLog::new(10);
        let live = log.open(info(Some("a1")));
        live.count_in();
        live.count_out();
        live.count_out();
        assert_eq!(live.snapshot().close_code, None);
        live.set_close_code(1000);
        live.mark_closed();
        let record = live.snapshot();
        assert_eq!((record.frames_in, record.frames_out), (1, 2));
        assert!(record.closed);
        assert_eq!(record.close_code, Some(1000));
        assert_eq!(record.header("host"), Some("example"));
        assert_eq!(record.http_version, "HTTP/1.1");
    }

    #[test]
    fn event_counters_track_seqs_of_the_own_agent() {
        let mut log = SessionLog::new(10);
        let live = log.open(info(Some("a1")));
        assert_eq!(
            (live.snapshot().first_seq, live.snapshot().last_seq),
            (None, None)
        );
        live.count_event(SentKind::Replayed { seq: 4 });
        live.count_event(SentKind::Live { seq: 5 });
        live.count_event(SentKind::Misrouted);
        live.count_event(SentKind::Live { seq: 6 });
        let record = live.snapshot();
        assert_eq!(record.events_sent, 4);
        assert_eq!((record.replayed, record.misrouted), (1, 1));
        assert_eq!((record.first_seq, record.last_seq), (Some(4), Some(6)));
    }

    #[test]
    fn bursts_are_bounded_and_taken_in_chunks() {
        let mut log = SessionLog::new(10);
        let live = log.open(info(None));
        live.request_burst(MAX_PENDING_BURST);
        live.request_burst(5);
        assert_eq!(live.burst_pending(), MAX_PENDING_BURST);
        assert_eq!(live.take_burst(64), 64);
        assert_eq!(live.burst_pending(), MAX_PENDING_BURST - 64);
        assert_eq!(live.take_burst(u64::MAX), MAX_PENDING_BURST - 64);
        assert_eq!(live.take_burst(64), 0);
    }

    #[test]
    fn token_trail_shows_in_snapshot() {
        let mut log = SessionLog::new(10);
        let live = log.open(SessionInfo {
            token_required: true,
            token_expires_at_ms: Some(1_000),
            ..info(None)
        });
        let record = live.snapshot();
        assert!(record.token_required);
        assert_eq!(record.token_expires_at_ms, Some(1_000));
        assert_eq!(
            (record.auth_refreshes, record.auth_refreshes_invalid),
            (0, 0)
        );
        assert!(record.inbound_log.is_empty() && record.last_auth_refresh.is_none());

        live.log_inbound("1");
        live.log_inbound("auth_refresh");
        live.record_auth_refresh(
            AuthRefreshSeen {
                valid: true,
                region: Some("eu".into()),
                ..AuthRefreshSeen::default()
            },
            Some(5_000),
        );
        live.log_inbound("auth_refresh");
        live.record_auth_refresh(AuthRefreshSeen::default(), Some(9_999));
        live.set_server_close(1008, "token expired");
        live.set_server_close(1001, "server shutting down");
        live.mark_expired();
        let record = live.snapshot();
        assert_eq!(record.inbound_log, ["1", "auth_refresh", "auth_refresh"]);
        assert_eq!(
            (record.auth_refreshes, record.auth_refreshes_invalid),
            (1, 1)
        );
        assert_eq!(
            record.token_expires_at_ms,
            Some(5_000),
            "invalid ones move nothing"
        );
        assert_eq!(record.last_auth_refresh.map(|seen| seen.valid), Some(false));
        assert_eq!(
            record.server_close_code,
            Some(1008),
            "the first server close wins"
        );
        assert_eq!(record.server_close_reason.as_deref(), Some("token expired"));
        assert!(record.expired);
        assert_eq!(record.close_code, None, "close_code stays the client's");
    }

    #[test]
    fn agent_filter() {
        let mut log = SessionLog::new(10);
        log.open(info(Some("a1")));
        log.open(info(Some("a2")));
        log.open(info(None));
        let only_a2 = log.snapshot(Some("a2"));
        assert_eq!(only_a2.len(), 1);
        assert_eq!(only_a2.first().map(|r| r.session), Some(2));
        assert_eq!(log.snapshot(None).len(), 3);
    }

    #[test]
    fn token_log_is_bounded_and_numbered() {
        let mut log = TokenRequestLog::new(2);
        for _ in 0..3 {
            log.push(TokenRequestRecord {
                seq: 0,
                at_ms: 1,
                grant_type: None,
                client_id: None,
                client_auth: "none".into(),
                secret_matched: false,
                fault: "none".into(),
                status: Some(401),
                error: Some("invalid_client".into()),
            });
        }
        let seqs: Vec<u64> = log.snapshot().iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![2, 3]);
    }
}
