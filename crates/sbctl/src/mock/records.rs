//! What the mock saw, kept in bounded rings so tests can assert on it over `/_mock/*`.
//!
//! Live counters are atomics shared with the session task, so recording a frame never takes the
//! log's lock; the lock is only taken to add a session or to snapshot the log.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;

/// Sentinel in `LiveSession::close_code` for "no Close frame received" (codes are u16).
const NO_CLOSE_CODE: u32 = u32::MAX;

/// What is fixed about a session at upgrade time.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub name: String,
    pub method: String,
    /// Path and query exactly as received in the request target.
    pub path: String,
    /// Lowercase names in arrival order. hyper groups repeated names at the first occurrence.
    pub headers: Vec<(String, String)>,
    pub agent: Option<String>,
    pub routing_key: Option<String>,
    pub connected_at_ms: u64,
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

    pub fn mark_closed(&self) {
        self.closed.store(true, Ordering::Release);
    }

    pub fn snapshot(&self) -> SessionRecord {
        let close_code = u16::try_from(self.close_code.load(Ordering::Relaxed)).ok();
        SessionRecord {
            session: self.session,
            name: self.info.name.clone(),
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
        }
    }
}

/// A session as served by `GET /_mock/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct SessionRecord {
    pub session: u64,
    pub name: String,
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
            info,
            frames_in: AtomicU64::new(0),
            frames_out: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            close_code: AtomicU32::new(NO_CLOSE_CODE),
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
            method: "GET".into(),
            path: "/ws?x=1".into(),
            headers: vec![("host".into(), "example".into())],
            agent: agent.map(str::to_owned),
            routing_key: None,
            connected_at_ms: 5,
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
