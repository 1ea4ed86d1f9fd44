//! A mock CCaaS platform (Genesys Cloud / NICE CXone flavoured) that is a real network server:
//! WebSocket sessions that echo and emit events, an OAuth 2.0 token endpoint with failure
//! injection, and `/_mock/*` endpoints that expose what it saw.
//!
//! Events are numbered per agent (not per session), kept in a bounded per-agent history, and
//! replayed with a deliberate overlap to a client that reconnects with `since=<RFC 3339>` or
//! `cursor=<seq>`. Sessions can misbehave on request (`?fault=` or `--fault`, see
//! [`SessionFault`]), and can speak permessage-deflate (`--deflate`).
//!
//! With `--require-token` ([`MockConfig::require_token`]) the platform behaves like one that
//! owns its sessions' credentials:
//!
//! - An upgrade must carry an access token this mock issued and that has not expired, as
//!   `Authorization: Bearer <token>` (RFC 6750 §2.1) or the `access_token` query parameter
//!   (§2.3); a Bearer header wins over the parameter. Otherwise the answer is 401 with
//!   `WWW-Authenticate: Bearer error="invalid_token"` and no upgrade, counted in the
//!   `GET /_mock/health` JSON ([`MockHealth`]) as `rejected_upgrades_no_token` (split into
//!   `rejected_upgrades_token_missing` and `rejected_upgrades_token_invalid`).
//! - A session remembers its token's expiry. When that passes without a valid `auth_refresh`
//!   frame, the server closes it with 1008 (policy violation, RFC 6455 §7.4.1) and reason
//!   "token expired"; its record shows `expired: true` and `server_close_code: 1008`.
//! - An `auth_refresh` frame whose token is not a valid one from this mock closes the session
//!   with 1008 and reason "invalid auth_refresh".
//!
//! Whatever the flag, client text messages that are `auth_refresh` frames (see [`inbound`]) are
//! consumed, not echoed, and counted in the session record (`auth_refreshes`,
//! `auth_refreshes_invalid`, `last_auth_refresh` without the token, `token_expires_at_ms`), and
//! every inbound data message leaves a marker in the record's bounded `inbound_log`.
//!
//! Access tokens are opaque by default; `--token-format jwt` issues HS256 JWTs, and
//! `--jwt-exp-skew` puts their `exp` before what `expires_in` says (see [`oauth`]).
//!
//! One port speaks HTTP/1.1 and cleartext HTTP/2 (prior knowledge, h2c), told apart by the
//! connection preface. The HTTP/2 side advertises SETTINGS_ENABLE_CONNECT_PROTOCOL, and an
//! extended CONNECT with `:protocol websocket` (RFC 8441) gets 200 and then the same session as
//! an HTTP/1.1 upgrade (same checks, envelopes and records), so a gateway can carry many agent
//! sessions as streams of a few connections. Each record says which (`http_version`);
//! [`MockHealth`] counts connections and sessions by version.
//!
//! Use [`MockPlatform::new`] plus [`MockPlatform::serve`] to run it on a listener you bound, or
//! [`spawn`] to run it on a background task and stop it with [`MockHandle::shutdown`].

pub mod clock;
pub mod deflate;
pub mod envelope;
pub mod fault;
pub mod frame;
pub mod history;
pub mod inbound;
pub mod oauth;
pub mod records;
mod server;
mod session;
pub mod upgrade;

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

pub use envelope::{Envelope, EnvelopeMode};
pub use fault::SessionFault;
pub use history::{AgentHistoryView, HistoryLimits, ResumePoint, SentEvent};
pub use inbound::AuthRefreshSeen;
pub use oauth::{FaultSettings, Secret, TokenFault, TokenFormat};
pub use records::{SessionRecord, TokenRequestRecord};

use history::EventHistory;
use oauth::{JwtSigner, TokenAuthority};
use records::{LiveSession, SessionLog, TokenRequestLog};

/// Where `sbctl mock-platform` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9001";
/// Largest WebSocket message (and frame) accepted from a client.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
/// Highest event rate accepted, per session per second.
pub const MAX_EVENT_RATE: f64 = 1000.0;
/// Highest `max_records` accepted.
pub const MAX_RECORDS_LIMIT: usize = 1_000_000;
/// Longest instance name accepted; it is repeated in every event id.
pub const MAX_NAME_CHARS: usize = 64;
/// Longest agent id accepted in an upgrade request; it keys the history and is in every event.
pub const MAX_AGENT_BYTES: usize = 256;
/// Highest `--replay-overlap` accepted.
pub const MAX_REPLAY_OVERLAP: usize = 1000;
/// Highest `--history-events` accepted.
pub const MAX_HISTORY_EVENTS: usize = 100_000;
/// Highest `--history-agents` accepted.
pub const MAX_HISTORY_AGENTS: usize = 1_000_000;
/// Most events one `POST /_mock/burst` may ask for.
pub const MAX_BURST: u64 = records::MAX_PENDING_BURST;
/// Highest `--fault-after` / `--drop-after` accepted.
pub const MAX_FAULT_AFTER: u64 = 1_000_000;

/// Everything `sbctl mock-platform` can be told, before validation.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Identifies this instance in records and event ids.
    pub name: String,
    /// Unsolicited events per second per session; 0 means echo only (protocol-conformance mode:
    /// every message the client gets is an echo, a replayed event or a burst it asked for).
    pub event_rate: f64,
    pub envelope: EnvelopeMode,
    /// Session records kept (and token-request records kept); the oldest go first.
    pub max_records: usize,
    pub token_lifetime_secs: u64,
    pub client_id: String,
    pub client_secret: Secret,
    pub token_fault: TokenFault,
    /// Delay of the `slow` token fault.
    pub token_fault_delay_ms: u64,
    /// Issued access and refresh tokens remembered (each).
    pub max_tokens: usize,
    /// Connections served at once; further clients wait in the listen backlog.
    pub max_connections: usize,
    /// Log session open/close lines to stderr.
    pub verbose: bool,
    /// Events before the resume point that a replay resends on purpose.
    pub replay_overlap: usize,
    /// Events kept per agent for replay.
    pub history_events_per_agent: usize,
    /// Agents whose history is kept; the least recently active is forgotten first.
    pub history_agents: usize,
    /// Accept permessage-deflate (RFC 7692) when the client offers it.
    pub deflate: bool,
    /// Fault of sessions that do not ask for one with `?fault=`.
    pub fault: SessionFault,
    /// Events a session sends before a frame-violation fault fires.
    pub fault_after: u64,
    /// Events a session sends before the `drop` fault closes it.
    pub drop_after: u64,
    /// Size of the `oversized` fault's message.
    pub oversized_bytes: usize,
    /// Upgrades must carry a valid access token from this mock, and sessions end (1008) when
    /// theirs expires without a valid `auth_refresh`. Off: upgrades are not checked at all.
    pub require_token: bool,
    /// Shape of issued access tokens.
    pub token_format: TokenFormat,
    /// Seconds by which a JWT's `exp` (and the token's real expiry) precede what `expires_in`
    /// says; `jwt` format only.
    pub jwt_exp_skew_secs: u64,
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            name: "platform-1".to_owned(),
            event_rate: 1.0,
            envelope: EnvelopeMode::Auto,
            max_records: 10_000,
            token_lifetime_secs: 3600,
            client_id: "switchboard".to_owned(),
            client_secret: Secret::new("switchboard-dev-secret"),
            token_fault: TokenFault::None,
            token_fault_delay_ms: oauth::DEFAULT_SLOW_DELAY_MS,
            max_tokens: oauth::MAX_REMEMBERED_TOKENS,
            max_connections: 10_000,
            verbose: false,
            replay_overlap: 3,
            history_events_per_agent: 1000,
            history_agents: 10_000,
            deflate: false,
            fault: SessionFault::None,
            fault_after: 0,
            drop_after: fault::DEFAULT_DROP_AFTER,
            oversized_bytes: fault::DEFAULT_OVERSIZED_BYTES,
            require_token: false,
            token_format: TokenFormat::Opaque,
            jwt_exp_skew_secs: 0,
        }
    }
}

/// A `MockConfig` field that is out of range. The message names the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MockConfigError {
    #[error("name: must be 1..={MAX_NAME_CHARS} characters of [A-Za-z0-9._-]")]
    Name,
    #[error("event_rate: must be a number in 0..={MAX_EVENT_RATE}, got {0}")]
    EventRate(f64),
    #[error("max_records: must be 1..={MAX_RECORDS_LIMIT}, got {0}")]
    MaxRecords(usize),
    #[error("token_lifetime: must be 1..={max} seconds, got {0}", max = oauth::MAX_TOKEN_LIFETIME_SECS)]
    TokenLifetime(u64),
    #[error("client_id: must not be empty")]
    ClientId,
    #[error("token_fault_delay_ms: must be at most {max}, got {0}", max = oauth::MAX_SLOW_DELAY_MS)]
    FaultDelay(u64),
    #[error("max_tokens: must be 1..={MAX_RECORDS_LIMIT}, got {0}")]
    MaxTokens(usize),
    #[error("max_connections: must be 1..=1000000, got {0}")]
    MaxConnections(usize),
    #[error("replay_overlap: must be 0..={MAX_REPLAY_OVERLAP}, got {0}")]
    ReplayOverlap(usize),
    #[error("history_events_per_agent: must be 1..={MAX_HISTORY_EVENTS}, got {0}")]
    HistoryEvents(usize),
    #[error("history_agents: must be 1..={MAX_HISTORY_AGENTS}, got {0}")]
    HistoryAgents(usize),
    #[error("fault_after: must be 0..={MAX_FAULT_AFTER}, got {0}")]
    FaultAfter(u64),
    #[error("drop_after: must be 0..={MAX_FAULT_AFTER}, got {0}")]
    DropAfter(u64),
    #[error("oversized_bytes: must be 1..={max}, got {0}", max = fault::MAX_OVERSIZED_BYTES)]
    OversizedBytes(usize),
    #[error("jwt_exp_skew: must be 0..={max} seconds, got {0}", max = oauth::MAX_JWT_EXP_SKEW_SECS)]
    JwtExpSkew(u64),
    /// A skew only means something for JWTs; refusing it catches a forgotten `--token-format`.
    #[error("jwt_exp_skew: needs token_format jwt")]
    JwtExpSkewNeedsJwt,
}

/// The validated, immutable part of the configuration.
#[derive(Debug)]
struct Settings {
    name: String,
    /// Interval between events on one session; `None` when events are off.
    event_period: Option<Duration>,
    envelope: EnvelopeMode,
    max_connections: usize,
    websocket: WebSocketConfig,
    verbose: bool,
    replay_overlap: usize,
    deflate: bool,
    fault: SessionFault,
    fault_after: u64,
    drop_after: u64,
    oversized_bytes: usize,
    require_token: bool,
}

/// Upgrades refused for want of a valid token (`--require-token`), and sessions and connections
/// by HTTP version.
#[derive(Debug, Default)]
struct UpgradeCounters {
    token_missing: AtomicU64,
    token_invalid: AtomicU64,
    /// HTTP/2 connections accepted (prior knowledge, h2c).
    h2_connections: AtomicU64,
    /// Of those, the ones still open; never reset.
    h2_connections_open: AtomicU64,
    /// WebSocket sessions opened by extended CONNECT (RFC 8441) on those connections.
    h2_sessions: AtomicU64,
    /// Of those, the ones whose session still runs; never reset.
    h2_sessions_open: AtomicU64,
    /// WebSocket sessions opened by an HTTP/1.1 upgrade.
    h1_sessions: AtomicU64,
}

/// What `GET /_mock/health` serves.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MockHealth {
    /// Always "ok": the platform answers.
    pub status: String,
    /// `--require-token` is on.
    pub require_token: bool,
    /// `opaque` or `jwt`.
    pub token_format: String,
    /// Upgrades answered 401 for want of a valid token: the two below together.
    pub rejected_upgrades_no_token: u64,
    /// Of those, upgrades that carried no Bearer header and no `access_token` parameter.
    pub rejected_upgrades_token_missing: u64,
    /// Of those, upgrades whose token was unknown here or expired.
    pub rejected_upgrades_token_invalid: u64,
    /// HTTP/2 connections (prior knowledge, h2c) accepted since start or the last reset.
    #[serde(default)]
    pub h2_connections: u64,
    /// HTTP/2 connections open now (not zeroed by a reset).
    #[serde(default)]
    pub h2_connections_open: u64,
    /// WebSocket sessions opened as extended CONNECT streams (RFC 8441) since start or the last
    /// reset; each record of these shows `http_version: "HTTP/2"`.
    #[serde(default)]
    pub h2_sessions: u64,
    /// Of the HTTP/2 sessions, the ones running now (not zeroed by a reset).
    #[serde(default)]
    pub h2_sessions_open: u64,
    /// WebSocket sessions opened by an HTTP/1.1 upgrade since start or the last reset.
    #[serde(default)]
    pub h1_sessions: u64,
}

/// State shared by every connection of one mock platform.
#[derive(Debug)]
struct Shared {
    settings: Settings,
    sessions: Mutex<SessionLog>,
    token_requests: Mutex<TokenRequestLog>,
    authority: Mutex<TokenAuthority>,
    history: Mutex<EventHistory>,
    /// Sessions whose task is running, by number (at most `max_connections` over HTTP/1.1, plus
    /// up to `server::H2_MAX_STREAMS` per HTTP/2 connection).
    live: Mutex<HashMap<u64, Arc<LiveSession>>>,
    upgrades: UpgradeCounters,
}

/// Locks, carrying on past a poisoned lock: every critical section here leaves the data
/// consistent, so a panic elsewhere is no reason to stop serving.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One mock platform instance. Cloning shares the same state.
#[derive(Debug, Clone)]
pub struct MockPlatform {
    shared: Arc<Shared>,
}

impl MockPlatform {
    pub fn new(config: MockConfig) -> Result<Self, MockConfigError> {
        let name_ok = !config.name.is_empty()
            && config.name.chars().count() <= MAX_NAME_CHARS
            && config
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !name_ok {
            return Err(MockConfigError::Name);
        }
        if !(config.event_rate.is_finite() && (0.0..=MAX_EVENT_RATE).contains(&config.event_rate)) {
            return Err(MockConfigError::EventRate(config.event_rate));
        }
        let event_period = if config.event_rate > 0.0 {
            let period = Duration::try_from_secs_f64(1.0 / config.event_rate)
                .map_err(|_| MockConfigError::EventRate(config.event_rate))?;
            Some(period.max(Duration::from_millis(1)))
        } else {
            None
        };
        if !(1..=MAX_RECORDS_LIMIT).contains(&config.max_records) {
            return Err(MockConfigError::MaxRecords(config.max_records));
        }
        if !(1..=oauth::MAX_TOKEN_LIFETIME_SECS).contains(&config.token_lifetime_secs) {
            return Err(MockConfigError::TokenLifetime(config.token_lifetime_secs));
        }
        if config.client_id.is_empty() {
            return Err(MockConfigError::ClientId);
        }
        if config.token_fault_delay_ms > oauth::MAX_SLOW_DELAY_MS {
            return Err(MockConfigError::FaultDelay(config.token_fault_delay_ms));
        }
        if !(1..=MAX_RECORDS_LIMIT).contains(&config.max_tokens) {
            return Err(MockConfigError::MaxTokens(config.max_tokens));
        }
        if !(1..=1_000_000).contains(&config.max_connections) {
            return Err(MockConfigError::MaxConnections(config.max_connections));
        }
        if config.replay_overlap > MAX_REPLAY_OVERLAP {
            return Err(MockConfigError::ReplayOverlap(config.replay_overlap));
        }
        if !(1..=MAX_HISTORY_EVENTS).contains(&config.history_events_per_agent) {
            return Err(MockConfigError::HistoryEvents(
                config.history_events_per_agent,
            ));
        }
        if !(1..=MAX_HISTORY_AGENTS).contains(&config.history_agents) {
            return Err(MockConfigError::HistoryAgents(config.history_agents));
        }
        if config.fault_after > MAX_FAULT_AFTER {
            return Err(MockConfigError::FaultAfter(config.fault_after));
        }
        if config.drop_after > MAX_FAULT_AFTER {
            return Err(MockConfigError::DropAfter(config.drop_after));
        }
        if !(1..=fault::MAX_OVERSIZED_BYTES).contains(&config.oversized_bytes) {
            return Err(MockConfigError::OversizedBytes(config.oversized_bytes));
        }
        if config.jwt_exp_skew_secs > oauth::MAX_JWT_EXP_SKEW_SECS {
            return Err(MockConfigError::JwtExpSkew(config.jwt_exp_skew_secs));
        }
        if config.jwt_exp_skew_secs > 0 && config.token_format != TokenFormat::Jwt {
            return Err(MockConfigError::JwtExpSkewNeedsJwt);
        }
        let websocket = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES))
            // A client that stops reading cannot make us queue more than two full messages.
            .max_write_buffer_size(2 * MAX_MESSAGE_BYTES);
        let mut authority = TokenAuthority::new(
            config.client_id,
            config.client_secret,
            config.token_lifetime_secs,
            config.token_fault,
            config.token_fault_delay_ms,
            config.max_tokens,
        );
        if config.token_format == TokenFormat::Jwt {
            // A fresh key per process: only this process ever needs to know it.
            authority = authority.with_jwt(JwtSigner::random(
                &mut rand::rng(),
                config.jwt_exp_skew_secs,
            ));
        }
        Ok(Self {
            shared: Arc::new(Shared {
                settings: Settings {
                    name: config.name,
                    event_period,
                    envelope: config.envelope,
                    max_connections: config.max_connections,
                    websocket,
                    verbose: config.verbose,
                    replay_overlap: config.replay_overlap,
                    deflate: config.deflate,
                    fault: config.fault,
                    fault_after: config.fault_after,
                    drop_after: config.drop_after,
                    oversized_bytes: config.oversized_bytes,
                    require_token: config.require_token,
                },
                sessions: Mutex::new(SessionLog::new(config.max_records)),
                token_requests: Mutex::new(TokenRequestLog::new(config.max_records)),
                authority: Mutex::new(authority),
                history: Mutex::new(EventHistory::new(HistoryLimits {
                    events_per_agent: config.history_events_per_agent,
                    agents: config.history_agents,
                })),
                live: Mutex::new(HashMap::new()),
                upgrades: UpgradeCounters::default(),
            }),
        })
    }

    /// Serves connections from `listener` until `shutdown` resolves, then closes open sessions
    /// with 1001 (going away), waits briefly for them, and returns.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> io::Result<()> {
        server::serve(Arc::clone(&self.shared), listener, shutdown).await
    }

    /// Session records, oldest first; `agent` keeps only that agent's sessions.
    pub fn sessions(&self, agent: Option<&str>) -> Vec<SessionRecord> {
        lock(&self.shared.sessions).snapshot(agent)
    }

    /// Token-endpoint requests seen, oldest first.
    pub fn token_requests(&self) -> Vec<TokenRequestRecord> {
        lock(&self.shared.token_requests).snapshot()
    }

    /// True if `token` was issued by this platform and has not expired.
    pub fn access_token_valid(&self, token: &str) -> bool {
        self.access_token_valid_at(token, clock::unix_ms_now())
    }

    /// As `access_token_valid`, at a given time.
    pub fn access_token_valid_at(&self, token: &str, now_ms: u64) -> bool {
        lock(&self.shared.authority).access_token_valid(token, now_ms)
    }

    /// When `token` expires (Unix ms), if this platform issued it and still remembers it.
    pub fn access_token_expiry_ms(&self, token: &str) -> Option<u64> {
        lock(&self.shared.authority).access_token_expiry_ms(token)
    }

    /// What `GET /_mock/health` serves: token settings, the upgrades refused for want of a
    /// valid token, and sessions and connections by HTTP version.
    pub fn health(&self) -> MockHealth {
        Self::health_of(&self.shared)
    }

    fn health_of(shared: &Shared) -> MockHealth {
        let missing = shared.upgrades.token_missing.load(Ordering::Relaxed);
        let invalid = shared.upgrades.token_invalid.load(Ordering::Relaxed);
        MockHealth {
            status: "ok".to_owned(),
            require_token: shared.settings.require_token,
            token_format: lock(&shared.authority).token_format().as_str().to_owned(),
            rejected_upgrades_no_token: missing.saturating_add(invalid),
            rejected_upgrades_token_missing: missing,
            rejected_upgrades_token_invalid: invalid,
            h2_connections: shared.upgrades.h2_connections.load(Ordering::Relaxed),
            h2_connections_open: shared.upgrades.h2_connections_open.load(Ordering::Relaxed),
            h2_sessions: shared.upgrades.h2_sessions.load(Ordering::Relaxed),
            h2_sessions_open: shared.upgrades.h2_sessions_open.load(Ordering::Relaxed),
            h1_sessions: shared.upgrades.h1_sessions.load(Ordering::Relaxed),
        }
    }

    /// Current token fault, lifetime and slow delay.
    pub fn token_fault_settings(&self) -> FaultSettings {
        lock(&self.shared.authority).fault_settings()
    }

    /// The events kept for `agent` (sequence numbers and send times), if any.
    pub fn history(&self, agent: &str) -> Option<AgentHistoryView> {
        lock(&self.shared.history).view(agent)
    }

    /// Asks every running session of `agent` (every running session when `None`) to send
    /// `count` events as fast as it can. Returns how many sessions were asked.
    pub fn burst(&self, agent: Option<&str>, count: u64) -> Result<usize, BurstError> {
        Self::burst_on(&self.shared, agent, count)
    }

    fn burst_on(shared: &Shared, agent: Option<&str>, count: u64) -> Result<usize, BurstError> {
        if count > MAX_BURST {
            return Err(BurstError::TooMany(count));
        }
        let live = lock(&shared.live);
        let mut asked = 0;
        for session in live.values() {
            let session_agent = session
                .info
                .agent
                .as_deref()
                .unwrap_or(envelope::UNKNOWN_AGENT);
            if agent.is_none_or(|wanted| wanted == session_agent) && !session.is_closed() {
                session.request_burst(count);
                asked += 1;
            }
        }
        Ok(asked)
    }

    /// Forgets session and token-request records and every agent's event history (sequences
    /// start again at 1), and zeroes the upgrade counters. Issued tokens stay valid.
    pub fn reset(&self) {
        server::reset(&self.shared);
    }
}

/// A burst request that cannot be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BurstError {
    #[error("count: must be 0..={MAX_BURST}, got {0}")]
    TooMany(u64),
}

/// A mock platform running on a background task.
#[derive(Debug)]
pub struct MockHandle {
    addr: SocketAddr,
    platform: MockPlatform,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

/// Starts a mock platform on `listener` in a background task (needs a Tokio runtime).
pub fn spawn(config: MockConfig, listener: TcpListener) -> Result<MockHandle, SpawnError> {
    let platform = MockPlatform::new(config)?;
    let addr = listener.local_addr().map_err(SpawnError::LocalAddr)?;
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = platform.clone();
    let task = tokio::spawn(async move {
        serving
            .serve(listener, async move {
                // A dropped handle counts as a stop request too.
                let _ = stopped.await;
            })
            .await
    });
    Ok(MockHandle {
        addr,
        platform,
        stop: Some(stop),
        task,
    })
}

/// Why `spawn` failed.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error(transparent)]
    Config(#[from] MockConfigError),
    #[error("listener has no local address: {0}")]
    LocalAddr(io::Error),
}

impl MockHandle {
    /// The address actually bound (useful after binding port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn platform(&self) -> &MockPlatform {
        &self.platform
    }

    /// `http://ADDR`, for the token and `/_mock/*` endpoints.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://ADDR` followed by `path_and_query` (which should start with `/`).
    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.addr, path_and_query)
    }

    /// Stops accepting, closes sessions, and waits for the server task.
    pub async fn shutdown(mut self) -> io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(join_error) => Err(io::Error::other(join_error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(MockPlatform::new(MockConfig::default()).is_ok());
    }

    #[test]
    fn out_of_range_fields_are_named() {
        let invalid = |config: MockConfig| MockPlatform::new(config).err();
        assert_eq!(
            invalid(MockConfig {
                event_rate: f64::NAN,
                ..MockConfig::default()
            })
            .map(|e| e.to_string().starts_with("event_rate:")),
            Some(true)
        );
        assert!(matches!(
            invalid(MockConfig {
                event_rate: -1.0,
                ..MockConfig::default()
            }),
            Some(MockConfigError::EventRate(_))
        ));
        assert_eq!(
            invalid(MockConfig {
                max_records: 0,
                ..MockConfig::default()
            }),
            Some(MockConfigError::MaxRecords(0))
        );
        assert_eq!(
            invalid(MockConfig {
                name: "a b".into(),
                ..MockConfig::default()
            }),
            Some(MockConfigError::Name)
        );
        assert_eq!(
            invalid(MockConfig {
                token_lifetime_secs: 0,
                ..MockConfig::default()
            }),
            Some(MockConfigError::TokenLifetime(0))
        );
    }

    #[test]
    fn jwt_skew_is_bounded_and_needs_jwt() {
        let invalid = |config: MockConfig| MockPlatform::new(config).err();
        assert_eq!(
            invalid(MockConfig {
                token_format: TokenFormat::Jwt,
                jwt_exp_skew_secs: oauth::MAX_JWT_EXP_SKEW_SECS + 1,
                ..MockConfig::default()
            }),
            Some(MockConfigError::JwtExpSkew(
                oauth::MAX_JWT_EXP_SKEW_SECS + 1
            ))
        );
        assert_eq!(
            invalid(MockConfig {
                jwt_exp_skew_secs: 1,
                ..MockConfig::default()
            }),
            Some(MockConfigError::JwtExpSkewNeedsJwt)
        );
        let platform = MockPlatform::new(MockConfig {
            token_format: TokenFormat::Jwt,
            jwt_exp_skew_secs: oauth::MAX_JWT_EXP_SKEW_SECS,
            require_token: true,
            ..MockConfig::default()
        });
        assert!(platform.is_ok_and(|p| {
            let health = p.health();
            health.require_token
                && health.token_format == "jwt"
                && health.rejected_upgrades_no_token == 0
        }));
    }

    #[test]
    fn zero_rate_means_no_events() {
        let platform = MockPlatform::new(MockConfig {
            event_rate: 0.0,
            ..MockConfig::default()
        });
        assert!(platform.is_ok_and(|p| p.shared.settings.event_period.is_none()));
    }
}
