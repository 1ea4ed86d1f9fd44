//! The network edge of the mock platform: accept loop, HTTP/1.1 and cleartext HTTP/2 routing,
//! WebSocket sessions.
//!
//! Sessions are generic over the upgraded stream: an HTTP/1.1 upgrade hands over the whole
//! connection, an HTTP/2 extended CONNECT (RFC 8441) one stream of it, and both run the same
//! `session::run`.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::timeout;

use super::clock::{parse_rfc3339_ms, unix_ms_now};
use super::deflate;
use super::envelope;
use super::fault::SessionFault;
use super::history::ResumePoint;
use super::oauth::{self, parse_form, Secret, TokenFault, TokenRequest};
use super::records::{SessionInfo, TokenRequestRecord};
use super::session::{self, SessionPlan, SHUTDOWN_GRACE};
use super::upgrade::{self, UpgradeError};
use super::{lock, MockPlatform, Shared, MAX_AGENT_BYTES, MAX_FAULT_AFTER};

/// Time allowed for a request's headers to arrive.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed for a (bounded) request body to arrive.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);
/// Largest body accepted by the `/_mock/*` endpoints.
const MAX_CONTROL_BODY_BYTES: usize = 64 * 1024;
/// The HTTP/2 connection preface's first bytes (RFC 9113 §3.4): prior-knowledge h2c.
const H2_PREFACE_START: &[u8] = b"PRI * HTTP/2.0";
/// Time allowed for a new connection's first bytes (to tell HTTP/2 from HTTP/1.1).
const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams one HTTP/2 connection may carry at once: a gateway multiplexes thousands of agent
/// sessions over one connection.
pub(super) const H2_MAX_STREAMS: u32 = 100_000;
/// Bytes a client may send on one stream before the session reads them: what an HTTP/1.1
/// session's socket buffer would hold.
const H2_STREAM_WINDOW: u32 = 1 << 20;
/// Bytes a client may send on one connection before sessions read them. Far above the stream
/// window so that sessions that stop reading (their agent stopped reading the echoes) do not
/// stall the thousands of others sharing the connection: with a connection window of N stream
/// windows, N stalled sessions would.
const H2_CONNECTION_WINDOW: u32 = 1 << 30;
/// Largest header block accepted on a stream: above the 96 KiB the gateway itself accepts, so
/// HTTP/2 refuses nothing HTTP/1.1 (hyper's default limits) would take.
const H2_MAX_HEADER_LIST_BYTES: u32 = 128 * 1024;
/// Header that carries the routing key Switchboard attaches for sticky routing.
const ROUTING_KEY_HEADER: &str = "x-agent-routing-key";

type HttpResponse = Response<Full<Bytes>>;

/// Returned by the service to make hyper close the connection without answering (the `down`
/// token fault).
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by the token fault \"down\"")]
struct DropConnection;

/// An accepted upgrade waiting for hyper to hand over the connection.
struct PendingSession {
    on_upgrade: OnUpgrade,
    plan: SessionPlan,
}

/// Set by the request handler when it answers 101, taken by the connection task afterwards.
type UpgradeSlot = Arc<Mutex<Option<PendingSession>>>;

/// How an accepted WebSocket reaches its session.
#[derive(Clone)]
enum Transport {
    /// HTTP/1.1 upgrade: the connection task runs the session once hyper lets go.
    Http1(UpgradeSlot),
    /// HTTP/2 extended CONNECT: each stream runs its session in its own task.
    Http2 {
        shared: Arc<Shared>,
        stop: watch::Receiver<bool>,
    },
}

/// Counts one open connection or session in a gauge for as long as it lives.
struct OpenGauge<'a>(&'a AtomicU64);

impl<'a> OpenGauge<'a> {
    fn new(gauge: &'a AtomicU64) -> Self {
        gauge.fetch_add(1, Ordering::Relaxed);
        Self(gauge)
    }
}

impl Drop for OpenGauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// True when the connection starts with the HTTP/2 preface. Waits (bounded) until enough bytes
/// arrived to tell; anything else is HTTP/1.1.
async fn starts_with_h2_preface(stream: &TcpStream) -> bool {
    let mut buffer = [0u8; 14];
    let deadline = tokio::time::Instant::now() + PREFACE_TIMEOUT;
    loop {
        let peeked = match tokio::time::timeout_at(deadline, stream.peek(&mut buffer)).await {
            Ok(Ok(n)) => n,
            _ => return false,
        };
        let seen = buffer.get(..peeked).unwrap_or_default();
        if peeked == 0 || !H2_PREFACE_START.starts_with(seen) {
            return false;
        }
        if peeked >= H2_PREFACE_START.len() {
            return true;
        }
        // A prefix of the preface so far: wait for more without spinning.
        if tokio::time::timeout_at(deadline, tokio::time::sleep(Duration::from_millis(5)))
            .await
            .is_err()
        {
            return false;
        }
    }
}

/// Serves one prior-knowledge HTTP/2 connection with extended CONNECT enabled.
async fn serve_h2(shared: Arc<Shared>, stream: TcpStream, mut stop: watch::Receiver<bool>) {
    shared
        .upgrades
        .h2_connections
        .fetch_add(1, Ordering::Relaxed);
    let _open = OpenGauge::new(&shared.upgrades.h2_connections_open);
    let transport = Transport::Http2 {
        shared: Arc::clone(&shared),
        stop: stop.clone(),
    };
    let service = {
        let shared = Arc::clone(&shared);
        service_fn(move |request| route(Arc::clone(&shared), transport.clone(), request))
    };
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        // RFC 8441 §3: SETTINGS_ENABLE_CONNECT_PROTOCOL = 1.
        .enable_connect_protocol()
        .max_concurrent_streams(H2_MAX_STREAMS)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_header_list_size(H2_MAX_HEADER_LIST_BYTES);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = &mut connection => {
            if let Err(error) = result {
                if shared.settings.verbose {
                    eprintln!("{}: h2 connection ended: {error}", shared.settings.name);
                }
            }
        }
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = timeout(SHUTDOWN_GRACE, connection).await;
        }
    }
}

pub(super) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let (stop_sender, stop) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(shared.settings.max_connections));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => break,
            permit = Arc::clone(&permits).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_closed) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connections so the set holds at most the live ones plus a few.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, _peer)) => {
                connections.spawn(serve_connection(
                    Arc::clone(&shared),
                    stream,
                    stop.clone(),
                    permit,
                ));
            }
            Err(error) => {
                eprintln!("{}: accept failed: {error}", shared.settings.name);
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
    drop(listener);
    let _ = stop_sender.send(true);
    let _ = timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    connections.shutdown().await;
    Ok(())
}

async fn serve_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    mut stop: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    // Events are small and latency matters more than packet count.
    let _ = stream.set_nodelay(true);
    if starts_with_h2_preface(&stream).await {
        serve_h2(shared, stream, stop).await;
        return;
    }
    let slot: UpgradeSlot = Arc::new(Mutex::new(None));
    let service = {
        let shared = Arc::clone(&shared);
        let transport = Transport::Http1(Arc::clone(&slot));
        service_fn(move |request| route(Arc::clone(&shared), transport.clone(), request))
    };
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = &mut connection => {
            if let Err(error) = result {
                if shared.settings.verbose {
                    eprintln!("{}: http connection ended: {error}", shared.settings.name);
                }
            }
        }
        _ = stop.changed() => {
            connection.as_mut().graceful_shutdown();
            let _ = timeout(SHUTDOWN_GRACE, connection).await;
            return;
        }
    }
    let pending = lock(&slot).take();
    if let Some(pending) = pending {
        let live = Arc::clone(&pending.plan.live);
        match pending.on_upgrade.await {
            Ok(upgraded) => {
                session::run(&shared, TokioIo::new(upgraded), pending.plan, stop).await;
            }
            Err(error) => {
                if shared.settings.verbose {
                    eprintln!("session {}: upgrade failed: {error}", live.session);
                }
            }
        }
        live.mark_closed();
    }
}

async fn route(
    shared: Arc<Shared>,
    transport: Transport,
    request: Request<Incoming>,
) -> Result<HttpResponse, DropConnection> {
    let path = request.uri().path();
    if path.starts_with("/_mock/") {
        return Ok(control(&shared, request).await);
    }
    if path.starts_with("/oauth/") {
        return token_endpoint(&shared, request).await;
    }
    let websocket = match &transport {
        Transport::Http1(_) => upgrade::is_websocket_request(request.method(), request.headers()),
        Transport::Http2 { .. } => upgrade::is_extended_connect(
            request.method(),
            request
                .extensions()
                .get::<hyper::ext::Protocol>()
                .map(hyper::ext::Protocol::as_str),
        ),
    };
    if websocket {
        return Ok(accept_websocket(&shared, &transport, request));
    }
    Ok(text(StatusCode::NOT_FOUND, "not found\n"))
}

fn accept_websocket(
    shared: &Shared,
    transport: &Transport,
    mut request: Request<Incoming>,
) -> HttpResponse {
    let handshake = match transport {
        Transport::Http1(_) => upgrade::accept(request.headers()),
        Transport::Http2 { .. } => upgrade::accept_extended_connect(request.headers()),
    };
    let accepted = match handshake {
        Ok(accepted) => accepted,
        Err(UpgradeError::UnsupportedVersion) => {
            // RFC 6455 §4.2.2: answer an unsupported version with 426 and the versions we speak.
            let mut response = text(
                StatusCode::UPGRADE_REQUIRED,
                "unsupported websocket version\n",
            );
            response.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static(upgrade::WEBSOCKET_VERSION),
            );
            return response;
        }
        Err(error) => return text(StatusCode::BAD_REQUEST, &format!("{error}\n")),
    };
    let options = match SessionOptions::from_query(request.uri().query(), &shared.settings) {
        Ok(options) => options,
        Err(error) => return text(StatusCode::BAD_REQUEST, &format!("{error}\n")),
    };
    let token_expires_at_ms = if shared.settings.require_token {
        let presented = upgrade::presented_access_token(request.headers(), request.uri().query());
        match token_expiry(shared, presented.as_ref(), unix_ms_now()) {
            Ok(expires_at_ms) => Some(expires_at_ms),
            Err(refusal) => return refuse_without_token(shared, refusal),
        }
    } else {
        None
    };
    let deflate_offered = deflate::offered(request.headers());
    let deflate = if shared.settings.deflate {
        deflate::negotiate(request.headers())
    } else {
        None
    };

    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let first_header = |name: &str| {
        headers
            .iter()
            .find(|(header_name, _)| header_name == name)
            .map(|(_, value)| value.clone())
    };
    let agent = [
        envelope::GENESYS_AGENT_HEADER,
        envelope::NICE_AGENT_HEADER,
        envelope::GENERIC_AGENT_HEADER,
    ]
    .into_iter()
    .find_map(first_header);
    if agent
        .as_ref()
        .is_some_and(|agent| agent.len() > MAX_AGENT_BYTES)
    {
        return text(
            StatusCode::BAD_REQUEST,
            &format!("agent id longer than {MAX_AGENT_BYTES} bytes\n"),
        );
    }
    let routing_key = first_header(ROUTING_KEY_HEADER);
    let envelope = shared
        .settings
        .envelope
        .resolve(headers.iter().map(|(name, _)| name.as_str()));
    let info = SessionInfo {
        name: shared.settings.name.clone(),
        http_version: match transport {
            Transport::Http1(_) => "HTTP/1.1",
            Transport::Http2 { .. } => "HTTP/2",
        },
        method: request.method().as_str().to_owned(),
        path: request.uri().path_and_query().map_or_else(
            || request.uri().path().to_owned(),
            |target| target.as_str().to_owned(),
        ),
        headers,
        agent: agent.clone(),
        routing_key: routing_key.clone(),
        connected_at_ms: unix_ms_now(),
        fault: options.fault.as_str(),
        deflate_offered,
        deflate_negotiated: deflate.is_some(),
        token_required: shared.settings.require_token,
        token_expires_at_ms,
    };
    let live = lock(&shared.sessions).open(info);
    if shared.settings.verbose {
        eprintln!(
            "session {}: open agent={} envelope={} fault={} deflate={} replay={}",
            live.session,
            agent.as_deref().unwrap_or(envelope::UNKNOWN_AGENT),
            envelope.as_str(),
            options.fault.as_str(),
            deflate.is_some(),
            options.resume.is_some(),
        );
    }
    let plan = SessionPlan {
        live,
        envelope,
        agent: agent.unwrap_or_else(|| envelope::UNKNOWN_AGENT.to_owned()),
        routing_key,
        resume: options.resume,
        fault: options.fault,
        fault_after: options.fault_after,
        deflate,
    };
    let on_upgrade = hyper::upgrade::on(&mut request);
    let mut response = Response::new(Full::new(Bytes::new()));
    match transport {
        Transport::Http1(slot) => {
            shared.upgrades.h1_sessions.fetch_add(1, Ordering::Relaxed);
            *lock(slot) = Some(PendingSession { on_upgrade, plan });
            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let response_headers = response.headers_mut();
            response_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            response_headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
            if let Ok(accept_key) = HeaderValue::from_str(&accepted.accept_key) {
                response_headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept_key);
            }
        }
        Transport::Http2 { shared, stop } => {
            // RFC 8441 §5: a 2xx answer opens the stream as the WebSocket; the session runs
            // in its own task once hyper hands the stream over.
            shared.upgrades.h2_sessions.fetch_add(1, Ordering::Relaxed);
            let (shared, stop) = (Arc::clone(shared), stop.clone());
            tokio::spawn(async move {
                let _open = OpenGauge::new(&shared.upgrades.h2_sessions_open);
                let live = Arc::clone(&plan.live);
                match on_upgrade.await {
                    Ok(upgraded) => {
                        session::run(&shared, TokioIo::new(upgraded), plan, stop).await;
                    }
                    Err(error) => {
                        if shared.settings.verbose {
                            eprintln!("session {}: extended CONNECT failed: {error}", live.session);
                        }
                    }
                }
                live.mark_closed();
            });
            *response.status_mut() = StatusCode::OK;
            if !accepted.accept_key.is_empty() {
                if let Ok(accept_key) = HeaderValue::from_str(&accepted.accept_key) {
                    response
                        .headers_mut()
                        .insert(header::SEC_WEBSOCKET_ACCEPT, accept_key);
                }
            }
        }
    }
    let response_headers = response.headers_mut();
    if let Some(protocol) = accepted.subprotocol {
        response_headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        );
    }
    if let Some(agreement) = deflate {
        if let Ok(value) = HeaderValue::from_str(&agreement.response_header()) {
            response_headers.insert(header::SEC_WEBSOCKET_EXTENSIONS, value);
        }
    }
    response
}

/// Why an upgrade was refused under `--require-token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
enum TokenRefusal {
    /// Neither a Bearer header nor an `access_token` parameter.
    #[error("no access token")]
    Missing,
    /// A token this mock never issued, has forgotten, or that has expired.
    #[error("unknown or expired access token")]
    Invalid,
}

/// Expiry (Unix ms) of the presented token if it is one of ours and valid at `now_ms`.
fn token_expiry(
    shared: &Shared,
    presented: Option<&Secret>,
    now_ms: u64,
) -> Result<u64, TokenRefusal> {
    let token = presented.ok_or(TokenRefusal::Missing)?;
    lock(&shared.authority)
        .access_token_expiry_ms(token.expose())
        .filter(|expires_at_ms| *expires_at_ms > now_ms)
        .ok_or(TokenRefusal::Invalid)
}

/// Counts the refusal and answers 401 without upgrading.
fn refuse_without_token(shared: &Shared, refusal: TokenRefusal) -> HttpResponse {
    let counter = match refusal {
        TokenRefusal::Missing => &shared.upgrades.token_missing,
        TokenRefusal::Invalid => &shared.upgrades.token_invalid,
    };
    counter.fetch_add(1, Ordering::Relaxed);
    if shared.settings.verbose {
        eprintln!("{}: upgrade refused: {refusal}", shared.settings.name);
    }
    let mut response = text(StatusCode::UNAUTHORIZED, &format!("{refusal}\n"));
    // RFC 6750 §3: a 401 for a Bearer-protected resource MUST carry WWW-Authenticate. §3.1
    // would leave the error code out when no token was sent; gateways under test key on
    // `invalid_token`, so every refusal carries it.
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer error=\"invalid_token\""),
    );
    response
}

/// What the upgrade request's query asks of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SessionOptions {
    resume: Option<ResumePoint>,
    fault: SessionFault,
    fault_after: u64,
}

/// A query parameter of the upgrade request that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum QueryError {
    #[error("query: {0}")]
    Form(String),
    #[error(
        "since: must be an RFC 3339 date-time at or after 1970, e.g. 2024-05-01T12:00:00.250Z"
    )]
    Since,
    #[error("cursor: must be the decimal seq of the last event received")]
    Cursor,
    #[error("since and cursor: give one, not both")]
    SinceAndCursor,
    #[error("fault: {0}")]
    Fault(String),
    #[error("fault_after: must be 0..={MAX_FAULT_AFTER}")]
    FaultAfter,
}

impl SessionOptions {
    /// Reads `since`, `cursor`, `fault` and `fault_after`; other parameters are the client's own
    /// business. The last of a repeated parameter wins.
    fn from_query(query: Option<&str>, settings: &super::Settings) -> Result<Self, QueryError> {
        let pairs = parse_form(query.unwrap_or_default().as_bytes())
            .map_err(|error| QueryError::Form(error.to_string()))?;
        let value = |name: &str| {
            pairs
                .iter()
                .rev()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.as_str())
        };
        let since = value("since")
            .map(|text| parse_rfc3339_ms(text).ok_or(QueryError::Since))
            .transpose()?;
        let cursor = value("cursor")
            .map(|text| {
                if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
                    return Err(QueryError::Cursor);
                }
                text.parse::<u64>().map_err(|_| QueryError::Cursor)
            })
            .transpose()?;
        let resume = match (since, cursor) {
            (Some(_), Some(_)) => return Err(QueryError::SinceAndCursor),
            (Some(unix_ms), None) => Some(ResumePoint::Since { unix_ms }),
            (None, Some(seq)) => Some(ResumePoint::Cursor { seq }),
            (None, None) => None,
        };
        let fault = match value("fault") {
            Some(name) => name.parse::<SessionFault>().map_err(QueryError::Fault)?,
            None => settings.fault,
        };
        let fault_after = match value("fault_after") {
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|after| *after <= MAX_FAULT_AFTER)
                .ok_or(QueryError::FaultAfter)?,
            None if fault == SessionFault::Drop => settings.drop_after,
            None => settings.fault_after,
        };
        Ok(Self {
            resume,
            fault,
            fault_after,
        })
    }
}

/// Forgets records and history (`POST /_mock/reset`, `MockPlatform::reset`).
pub(super) fn reset(shared: &Shared) {
    lock(&shared.sessions).clear();
    lock(&shared.token_requests).clear();
    lock(&shared.history).clear();
    let upgrades = &shared.upgrades;
    for counter in [
        &upgrades.token_missing,
        &upgrades.token_invalid,
        &upgrades.h2_connections,
        &upgrades.h2_sessions,
        &upgrades.h1_sessions,
    ] {
        counter.store(0, Ordering::Relaxed);
    }
}

/// Body of `POST /_mock/burst`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BurstRequest {
    /// Only this agent's sessions; `null` or absent: every session.
    #[serde(default)]
    agent: Option<String>,
    count: u64,
}

async fn token_endpoint(
    shared: &Shared,
    request: Request<Incoming>,
) -> Result<HttpResponse, DropConnection> {
    if request.uri().path() != "/oauth/token" {
        return Ok(text(StatusCode::NOT_FOUND, "not found\n"));
    }
    if request.method() != Method::POST {
        return Ok(method_not_allowed("POST"));
    }
    let content_type = header_text(&request, header::CONTENT_TYPE);
    let authorization = header_text(&request, header::AUTHORIZATION);
    let body = match read_body(request, oauth::MAX_TOKEN_BODY_BYTES).await {
        Ok(body) => body,
        Err(status) => return Ok(json_error(status, "invalid_request")),
    };

    let (fault, delay_ms) = {
        let authority = lock(&shared.authority);
        (authority.fault(), authority.fault_settings().delay_ms)
    };
    if fault == TokenFault::Slow {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    }
    let outcome = {
        let mut rng = rand::rng();
        lock(&shared.authority).handle(
            &TokenRequest {
                content_type: content_type.as_deref(),
                authorization: authorization.as_deref(),
                body: &body,
            },
            unix_ms_now(),
            &mut rng,
        )
    };
    let summary = outcome.summary;
    lock(&shared.token_requests).push(TokenRequestRecord {
        seq: 0,
        at_ms: unix_ms_now(),
        grant_type: summary.grant_type,
        client_id: summary.client_id,
        client_auth: summary.client_auth.to_owned(),
        secret_matched: summary.secret_matched,
        fault: summary.fault.to_owned(),
        status: outcome.reply.as_ref().map(|reply| reply.status),
        error: summary.error.map(str::to_owned),
    });
    let Some(reply) = outcome.reply else {
        return Err(DropConnection);
    };
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = with_body(status, reply.content_type, reply.body);
    let headers = response.headers_mut();
    // RFC 6749 §5.1: token responses MUST carry Cache-Control: no-store (and Pragma: no-cache).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    if reply.basic_challenge {
        // RFC 6749 §5.2: a 401 after Basic client auth MUST include WWW-Authenticate.
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mock-platform\""),
        );
    }
    Ok(response)
}

/// The `agent` query parameter of a control request; `Err` is the message for a 400.
fn agent_param(request: &Request<Incoming>) -> Result<Option<String>, String> {
    let query = request.uri().query().unwrap_or_default().as_bytes();
    match parse_form(query) {
        Ok(pairs) => Ok(pairs
            .into_iter()
            .find(|(name, _)| name == "agent")
            .map(|(_, value)| value)),
        Err(error) => Err(format!("{error}\n")),
    }
}

async fn control(shared: &Shared, request: Request<Incoming>) -> HttpResponse {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    match (path.as_str(), method) {
        ("/_mock/health", Method::GET) => json(StatusCode::OK, &MockPlatform::health_of(shared)),
        ("/_mock/sessions", Method::GET) => {
            let agent = match agent_param(&request) {
                Ok(agent) => agent,
                Err(message) => return text(StatusCode::BAD_REQUEST, &message),
            };
            json(
                StatusCode::OK,
                &lock(&shared.sessions).snapshot(agent.as_deref()),
            )
        }
        ("/_mock/reset", Method::POST) => {
            reset(shared);
            text(StatusCode::OK, "ok")
        }
        ("/_mock/history", Method::GET) => {
            let agent = match agent_param(&request) {
                Ok(agent) => agent,
                Err(message) => return text(StatusCode::BAD_REQUEST, &message),
            };
            let Some(agent) = agent else {
                return text(StatusCode::BAD_REQUEST, "agent: required\n");
            };
            match lock(&shared.history).view(&agent) {
                Some(view) => json(StatusCode::OK, &view),
                None => json(
                    StatusCode::NOT_FOUND,
                    &serde_json::json!({ "error": "no history for this agent" }),
                ),
            }
        }
        ("/_mock/burst", Method::POST) => {
            let body = match read_body(request, MAX_CONTROL_BODY_BYTES).await {
                Ok(body) => body,
                Err(status) => return text(status, "body too large or too slow\n"),
            };
            let burst: BurstRequest = match serde_json::from_slice(&body) {
                Ok(burst) => burst,
                Err(error) => {
                    return json(
                        StatusCode::BAD_REQUEST,
                        &serde_json::json!({ "error": error.to_string() }),
                    )
                }
            };
            match MockPlatform::burst_on(shared, burst.agent.as_deref(), burst.count) {
                Ok(sessions) => json(
                    StatusCode::OK,
                    &serde_json::json!({ "sessions": sessions, "count": burst.count }),
                ),
                Err(error) => json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": error.to_string() }),
                ),
            }
        }
        ("/_mock/token-requests", Method::GET) => {
            json(StatusCode::OK, &lock(&shared.token_requests).snapshot())
        }
        ("/_mock/token-fault", Method::GET) => {
            json(StatusCode::OK, &lock(&shared.authority).fault_settings())
        }
        ("/_mock/token-fault", Method::POST) => {
            let body = match read_body(request, MAX_CONTROL_BODY_BYTES).await {
                Ok(body) => body,
                Err(status) => return text(status, "body too large or too slow\n"),
            };
            let updated = lock(&shared.authority).update_fault(&body);
            match updated {
                Ok(settings) => {
                    eprintln!(
                        "{}: token fault now {} (lifetime {}s, delay {}ms)",
                        shared.settings.name, settings.mode, settings.lifetime, settings.delay_ms
                    );
                    json(StatusCode::OK, &settings)
                }
                Err(error) => json(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": error.to_string() }),
                ),
            }
        }
        ("/_mock/health" | "/_mock/sessions" | "/_mock/token-requests" | "/_mock/history", _) => {
            method_not_allowed("GET")
        }
        ("/_mock/reset" | "/_mock/burst", _) => method_not_allowed("POST"),
        ("/_mock/token-fault", _) => method_not_allowed("GET, POST"),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Reads at most `limit` bytes of body within `BODY_READ_TIMEOUT`; the error is the status to
/// answer (413 too large, 408 too slow, 400 broken).
async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, StatusCode> {
    let declared_too_large = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .is_some_and(|length| usize::try_from(length).map_or(true, |length| length > limit));
    if declared_too_large {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let collected = timeout(
        BODY_READ_TIMEOUT,
        Limited::new(request.into_body(), limit).collect(),
    )
    .await;
    match collected {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
            Err(StatusCode::PAYLOAD_TOO_LARGE)
        }
        Ok(Err(_)) => Err(StatusCode::BAD_REQUEST),
        Err(_elapsed) => Err(StatusCode::REQUEST_TIMEOUT),
    }
}

fn header_text(request: &Request<Incoming>, name: header::HeaderName) -> Option<String> {
    request
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
}

fn with_body(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> HttpResponse {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text(status: StatusCode, body: &str) -> HttpResponse {
    with_body(status, "text/plain; charset=utf-8", body.to_owned())
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> HttpResponse {
    match serde_json::to_vec(value) {
        Ok(body) => with_body(status, "application/json", body),
        Err(error) => text(StatusCode::INTERNAL_SERVER_ERROR, &format!("{error}\n")),
    }
}

fn json_error(status: StatusCode, code: &str) -> HttpResponse {
    json(status, &serde_json::json!({ "error": code }))
}

fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}
