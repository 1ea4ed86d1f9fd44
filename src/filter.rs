//! The proxy-wasm contexts: a root context per worker VM that owns the validated configuration,
//! and an HTTP context per stream that carries out the core's verdicts.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};
use switchboard_core::backoff::{retry_after_secs, SaltedRng};
use switchboard_core::budget::{Bucket, HoldQueue, Lease, Resume, Way};
use switchboard_core::config::Config;
use switchboard_core::dedup::{deliver_in_slot, ring_key, Delivery};
use switchboard_core::flow_config::{
    drain_action, BackpressureConfig, DrainAction, DuplicatePolicy,
};
use switchboard_core::observe::{
    agent_hash, CloseSide, EndReason, SessionSummary, TenantSlot, NO_TENANT_SLOT,
};
use switchboard_core::resume::{add_resume_param, set_key, ResumeSet};
use switchboard_core::session::{
    AgentStore, ChunkOutcome, ChunkReport, SessionFeatures, SessionOwner, WsSession,
};
use switchboard_core::token::config::{TokenConfig, MAX_RESPONSE_BYTES};
use switchboard_core::token::inject::{auth_refresh_frame, inject, FrameContext, UpgradeInjection};
use switchboard_core::token::record::{SharedToken, TokenRecord, RECORD_KEY};
use switchboard_core::token::refresh::{apply_result, plan_tick, Applied};
use switchboard_core::token::request::build_request;
use switchboard_core::token::response::{parse_response, FetchError, Issued};
use switchboard_core::upgrade::{
    self, check_answered_subprotocol, upstream_result, RejectReason, SubprotocolAnswer,
    SubprotocolPlan, Verdict, VerdictCache,
};
use switchboard_core::ws::{Direction, Limits};

use crate::flow::{self, HELD_BYTES_KEY};
use crate::host::{self, BufferKind, MapKind, SharedWrite};
use crate::metrics::{
    close_label, code_label, Family, Metrics, Scope, HELD_BYTES, HELD_STREAMS, PLATFORM_TOKEN_TTL,
    QUEUE_CAPACITY, SESSIONS_ACTIVE, UPGRADE_FILTER_TIME_US,
};

/// Slots of the shared dedup table (one ring per agent in a slot; see `core::dedup`).
const DEDUP_SLOTS: u32 = 16_384;
/// Compare-and-swap attempts on a contended shared-data value before giving up on the update.
const CAS_ATTEMPTS: usize = 3;

/// What every stream of this VM shares.
struct Shared {
    config: Config,
    metrics: RefCell<Metrics>,
    /// This VM's copy of the shared platform token, refreshed on every tick.
    token: RefCell<TokenView>,
    /// Salted per instance: `Retry-After` jitter and session ids.
    rng: RefCell<SaltedRng>,
    /// Paused stream directions of this worker, first held first.
    holds: RefCell<HoldQueue>,
    hold_states: RefCell<HashMap<(u32, Way), SharedHold>>,
    /// This worker's slices of each tenant's client-to-platform budgets (frames, bytes).
    leases: RefCell<HashMap<String, (Lease, Lease)>>,
    /// Consecutive upgrades refused for load; the exponent of the next `Retry-After`.
    refusals: std::cell::Cell<u32>,
    /// The operator asked this Envoy to drain (read from shared data every tick).
    draining: std::cell::Cell<bool>,
}

/// Shared-data key of the drain switch (one byte: 1 draining, 0 not).
const DRAINING_KEY: &str = "switchboard.draining";

fn read_draining() -> bool {
    matches!(host::shared_get(DRAINING_KEY), Ok(Some((bytes, _))) if bytes.first() == Some(&1))
}

/// A direction's hold state, shared by its stream and the root context that resumes it.
type SharedHold = Rc<RefCell<HoldState>>;

/// One direction of one stream, as the hold machinery sees it.
#[derive(Debug, Default)]
struct HoldState {
    paused: bool,
    /// The root context resumed it: Envoy forwarded the buffer, the next chunk starts afresh.
    resumed: bool,
    /// Bytes at the front of Envoy's buffer already read (and possibly rewritten).
    processed_len: usize,
    /// Bytes counted as held in the shared total.
    held_bytes: u64,
    tenant: String,
    /// The tenant's metric label slot.
    slot: TenantSlot,
    /// The platform-to-client budget of this session (per agent).
    down: Option<Bucket>,
}

/// The platform token as this VM last read it from shared data.
#[derive(Default)]
struct TokenView {
    token: Option<SharedToken>,
    /// Consecutive failed fetches, which stretch the `Retry-After` of refused upgrades.
    failures: u32,
}

impl TokenView {
    fn update(&mut self, record: &TokenRecord) {
        let newer = match (&self.token, &record.token) {
            (Some(mine), Some(theirs)) => theirs.generation != mine.generation,
            (None, Some(_)) => true,
            _ => false,
        };
        if newer {
            self.token = record.token.clone();
        }
        self.failures = record.failures;
    }
}

/// The platform-token work of one root context: leads the refresh when it holds the lease.
struct Refresher {
    /// This root context's identity in the lease (random per VM).
    me: u64,
    /// Outstanding token calls: call id to the record generation the fetch started from.
    calls: HashMap<u32, u64>,
    leader: bool,
}

pub struct Root {
    shared: Option<Rc<Shared>>,
    refresher: Refresher,
}

impl Root {
    pub fn new() -> Self {
        Root {
            shared: None,
            refresher: Refresher {
                me: 0,
                calls: HashMap::new(),
                leader: false,
            },
        }
    }
}

fn now_ms() -> u64 {
    host::now_nanos() / 1_000_000
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Without host entropy the clock still differs between VMs and instances.
        return host::now_nanos() ^ 0x9e37_79b9_7f4a_7c15;
    }
    u64::from_le_bytes(bytes)
}

/// The shared token record and its CAS token (0 when absent or unreadable).
fn read_record() -> (Option<TokenRecord>, u32) {
    match host::shared_get(RECORD_KEY) {
        Ok(Some((bytes, cas))) => (TokenRecord::decode(&bytes), cas),
        _ => (None, 0),
    }
}

impl Context for Root {
    fn on_http_call_response(
        &mut self,
        token_id: u32,
        num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(generation) = self.refresher.calls.remove(&token_id) else {
            return;
        };
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let Some(config) = &shared.config.token else {
            return;
        };
        let now = now_ms();
        let status = if num_headers == 0 {
            None
        } else {
            host::http_call_status()
        };
        let result = match host::http_call_body(body_size, MAX_RESPONSE_BYTES) {
            Ok(body) => parse_response(status, &body, now, config),
            Err(_) => Err(FetchError::NotJson),
        };
        self.store_result(&shared, config, generation, result, now);
    }
}

impl Root {
    /// Folds a fetch's outcome into the shared record (compare-and-swap, bounded retries).
    fn store_result(
        &mut self,
        shared: &Shared,
        config: &TokenConfig,
        generation: u64,
        result: Result<Issued, FetchError>,
        now: u64,
    ) {
        let mut applied = None;
        for _ in 0..CAS_ATTEMPTS * 2 {
            let (record, cas) = read_record();
            let (next, outcome) = apply_result(
                record.as_ref(),
                generation,
                result.clone(),
                now,
                config,
                &mut shared.rng.borrow_mut(),
            );
            if outcome == Applied::Stale {
                applied = Some(outcome);
                break;
            }
            match host::shared_set(RECORD_KEY, &next.encode(), cas) {
                Ok(SharedWrite::Written) => {
                    shared.token.borrow_mut().update(&next);
                    applied = Some(outcome);
                    break;
                }
                Ok(SharedWrite::CasMismatch) => continue,
                Err(err) => {
                    log::warn!("token: cannot store the refresh outcome: {err}");
                    break;
                }
            }
        }
        let mut metrics = shared.metrics.borrow_mut();
        match applied {
            Some(Applied::Stored { generation }) => {
                metrics.count(Scope::Gateway, Family::TokenRefreshes, "ok");
                let ttl = shared
                    .token
                    .borrow()
                    .token
                    .as_ref()
                    .map_or(0, |t| t.seconds_to_expiry(now));
                metrics.gauge_set(PLATFORM_TOKEN_TTL, ttl);
                log::info!(
                    "token: platform token generation {generation} stored, expires in {ttl}s"
                );
            }
            Some(Applied::Failed { error, retry_in_ms }) => {
                metrics.count(Scope::Gateway, Family::TokenRefreshes, error.label());
                let remaining = shared
                    .token
                    .borrow()
                    .token
                    .as_ref()
                    .filter(|t| t.usable(now, config.safety_buffer_ms))
                    .map(|t| t.seconds_to_expiry(now));
                match remaining {
                    Some(secs) => log::warn!(
                        "token: refresh failed ({}); retrying in {retry_in_ms}ms; the current token expires in {secs}s",
                        error.label()
                    ),
                    None => log::warn!(
                        "token: refresh failed ({}); retrying in {retry_in_ms}ms; no usable platform token, upgrades get 503",
                        error.label()
                    ),
                }
            }
            Some(Applied::Stale) => metrics.count(Scope::Gateway, Family::TokenRefreshes, "stale"),
            None => metrics.count(Scope::Gateway, Family::TokenRefreshes, "store_failed"),
        }
    }

    /// Every tick: follow the shared record; lead the refresh if this context holds the lease.
    fn token_tick(&mut self, shared: &Rc<Shared>, config: &TokenConfig) {
        let now = now_ms();
        let (record, cas) = read_record();
        let Some(record) = record else {
            // First sight (or an unreadable record): publish an empty one without a leader.
            // Leadership is then decided by compare-and-swap on the next tick, so two workers
            // starting together cannot both fetch.
            let _ = host::shared_set(RECORD_KEY, &TokenRecord::default().encode(), cas);
            return;
        };
        shared.token.borrow_mut().update(&record);
        let plan = plan_tick(Some(&record), self.refresher.me, now, config);
        let Some(write) = plan.write else {
            self.refresher.leader = false;
            return;
        };
        match host::shared_set(RECORD_KEY, &write.encode(), cas) {
            Ok(SharedWrite::Written) => {}
            Ok(SharedWrite::CasMismatch) | Err(_) => {
                self.refresher.leader = false;
                return;
            }
        }
        if !self.refresher.leader {
            log::debug!("token: this worker now leads the platform token refresh");
            self.refresher.leader = true;
        }
        let ttl = write.token.as_ref().map_or(0, |t| t.seconds_to_expiry(now));
        shared
            .metrics
            .borrow_mut()
            .gauge_set(PLATFORM_TOKEN_TTL, ttl);
        let Some(fetch) = plan.fetch else {
            return;
        };
        let request = build_request(config, fetch.refresh_token.as_deref());
        match host::dispatch_http_call(
            &config.cluster,
            &request.headers,
            &request.body,
            config.timeout_ms,
        ) {
            Ok(call) => {
                log::debug!(
                    "token: fetching a platform token from cluster {} ({} grant)",
                    config.cluster,
                    config.grant.as_str()
                );
                self.refresher.calls.insert(call, fetch.generation);
            }
            Err(err) => {
                log::warn!(
                    "token: cannot call cluster {}: {err} (is the cluster defined?)",
                    config.cluster
                );
                self.store_result(
                    shared,
                    config,
                    fetch.generation,
                    Err(FetchError::Dispatch),
                    now,
                );
            }
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        host::refresh_log_level();
        let bytes = match host::plugin_configuration(plugin_configuration_size) {
            Ok(bytes) => bytes,
            Err(err) => {
                log::error!("configure: the plugin configuration cannot be read: {err}");
                return false;
            }
        };
        match Config::from_json(&bytes) {
            Ok(config) => {
                log::info!("configure: {}", config.summary());
                // Salted per Envoy instance so a fleet does not retry in lockstep.
                let node = host::property(&["node", "id"])
                    .ok()
                    .flatten()
                    .unwrap_or_default();
                let rng = SaltedRng::from_salt(&node, random_u64());
                self.refresher.me = random_u64().max(1);
                if config.token.is_some() || config.backpressure.is_some() || config.drain.is_some()
                {
                    if let Err(err) = host::set_tick_period(config.tick_ms) {
                        log::error!("configure: cannot start the root timer: {err}");
                        return false;
                    }
                }
                let needs_tick = config.token.is_some()
                    || config.backpressure.is_some()
                    || config.drain.is_some();
                let metrics = Metrics::new(&config.metrics);
                self.shared = Some(Rc::new(Shared {
                    config,
                    metrics: RefCell::new(metrics),
                    token: RefCell::new(TokenView::default()),
                    rng: RefCell::new(rng),
                    holds: RefCell::new(HoldQueue::default()),
                    hold_states: RefCell::new(HashMap::new()),
                    leases: RefCell::new(HashMap::new()),
                    refusals: std::cell::Cell::new(0),
                    draining: std::cell::Cell::new(read_draining()),
                }));
                if let Some(shared) = &self.shared {
                    let mut metrics = shared.metrics.borrow_mut();
                    metrics.predefine();
                    if let Some(backpressure) = &shared.config.backpressure {
                        metrics.gauge_set(QUEUE_CAPACITY, backpressure.max_queue_bytes);
                        metrics.gauge_add(Scope::Gateway, HELD_BYTES, 0);
                        metrics.add(
                            Scope::Tenant(NO_TENANT_SLOT),
                            Family::Backpressure,
                            "held",
                            0,
                        );
                    }
                    if shared.config.token.is_some() {
                        metrics.add(Scope::Gateway, Family::TokenRefreshes, "ok", 0);
                    }
                }
                if !needs_tick {
                    return true;
                }
                true
            }
            Err(errors) => {
                let first = errors
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_else(|| "configuration: invalid".to_string());
                let more = errors.len().saturating_sub(1);
                if more == 0 {
                    log::error!("invalid configuration: {first}");
                } else {
                    log::error!(
                        "invalid configuration: {first} (and {more} more; run sbctl check-config)"
                    );
                }
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        if let Some(config) = &shared.config.token {
            self.token_tick(&shared, config);
        }
        if let Some(config) = &shared.config.backpressure {
            resume_held(&shared, config);
        }
        if shared.config.drain.is_some() {
            shared.draining.set(read_draining());
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        let shared = self.shared.clone()?;
        Some(Box::new(Stream {
            context_id,
            shared,
            upgrade_requested: false,
            upgrade_attempt: false,
            upgraded: false,
            subprotocols: SubprotocolPlan::default(),
            identity: None,
            session: None,
            platform_token: None,
            up: Rc::new(RefCell::new(HoldState::default())),
            down: Rc::new(RefCell::new(HoldState::default())),
            last_data_ms: 0,
            agent_counted: false,
            tenant: NO_TENANT_SLOT,
            summary: SessionSummary::default(),
            slot_keys: SlotKeys::default(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// The verified-token cache in Envoy shared data (one map per process, all workers).
struct SharedDataCache;

impl VerdictCache for SharedDataCache {
    fn load(&mut self, key: &str) -> Option<Vec<u8>> {
        host::shared_get(key).ok().flatten().map(|(value, _)| value)
    }
    fn store(&mut self, key: &str, value: &[u8]) {
        // A lost write only costs a later signature check.
        let _ = host::shared_set(key, value, 0);
    }
}

struct Stream {
    context_id: u32,
    shared: Rc<Shared>,
    upgrade_requested: bool,
    /// The request asked for a WebSocket upgrade (admitted or not): its filter time is recorded.
    upgrade_attempt: bool,
    upgraded: bool,
    subprotocols: SubprotocolPlan,
    identity: Option<upgrade::SessionIdentity>,
    session: Option<WsSession>,
    /// The platform token this session runs on, when the gateway injects it.
    platform_token: Option<SessionToken>,
    up: Rc<RefCell<HoldState>>,
    down: Rc<RefCell<HoldState>>,
    /// Last data frame either way (idle timeout).
    last_data_ms: u64,
    /// This stream counts in its agent's session total.
    agent_counted: bool,
    /// The tenant's metric label slot (`none` until authenticated).
    tenant: TenantSlot,
    /// Totals for the session log line.
    summary: SessionSummary,
    /// Where this agent's dedup ring and resume position live in shared data.
    slot_keys: SlotKeys,
}

/// Resumes held streams whose budget allows, first held first (the root context's tick).
fn resume_held(shared: &Shared, config: &BackpressureConfig) {
    if shared.holds.borrow().is_empty() {
        return;
    }
    let now = now_ms();
    // Resumed streams per tenant label slot (a handful of tenants at most per tick).
    let mut resumed: Vec<(TenantSlot, u64)> = Vec::new();
    let mut left = 0i64;
    let mut released = 0u64;
    // The queue is taken out while the host resumes streams: resuming can run Envoy's filter
    // chain synchronously, and a stream that ends there (`on_done`) updates the queue and its
    // hold state, which must not be borrowed at that moment.
    let mut queue = std::mem::take(&mut *shared.holds.borrow_mut());
    queue.drain_ready(|context_id, way| {
        let Some(state) = shared.hold_states.borrow().get(&(context_id, way)).cloned() else {
            return Resume::Gone;
        };
        let ready = {
            let mut state = state.borrow_mut();
            let tenant = state.tenant.clone();
            match way {
                Way::Up => {
                    let budgets = config.budgets_for(&tenant);
                    let mut leases = shared.leases.borrow_mut();
                    let (frames, bytes) = leases.entry(tenant.clone()).or_default();
                    // Both settle every tick: a short-circuit would leave one lease's debt out
                    // of its shared bucket.
                    let frames_ready = flow::settle(
                        frames,
                        "up_frames",
                        &tenant,
                        budgets.up_frames,
                        config.slice_ms,
                        now,
                    );
                    let bytes_ready = flow::settle(
                        bytes,
                        "up_bytes",
                        &tenant,
                        budgets.up_bytes,
                        config.slice_ms,
                        now,
                    );
                    frames_ready && bytes_ready
                }
                Way::Down => {
                    let rate = config.budgets_for(&tenant).down_frames;
                    state
                        .down
                        .as_mut()
                        .is_none_or(|bucket| bucket.ready(rate, now))
                }
            }
        };
        if !ready {
            return Resume::Wait;
        }
        shared.hold_states.borrow_mut().remove(&(context_id, way));
        let slot = {
            let mut state = state.borrow_mut();
            released += std::mem::take(&mut state.held_bytes);
            state.paused = false;
            state.resumed = true;
            state.slot
        };
        left += 1;
        match host::set_effective_context(context_id).and_then(|()| host::resume(way == Way::Down))
        {
            Ok(()) => {
                match resumed.iter_mut().find(|(s, _)| *s == slot) {
                    Some((_, count)) => *count += 1,
                    None => resumed.push((slot, 1)),
                }
                Resume::Resumed
            }
            Err(_) => Resume::Gone,
        }
    });
    // Streams held while the tick ran go after the ones still waiting.
    let added = std::mem::replace(&mut *shared.holds.borrow_mut(), queue);
    shared.holds.borrow_mut().append(added);
    if released > 0 {
        flow::shared_add(HELD_BYTES_KEY, -i64::try_from(released).unwrap_or(i64::MAX));
    }
    let mut metrics = shared.metrics.borrow_mut();
    if released > 0 {
        metrics.gauge_add(
            Scope::Gateway,
            HELD_BYTES,
            -i64::try_from(released).unwrap_or(i64::MAX),
        );
    }
    for (slot, count) in resumed {
        metrics.add(Scope::Tenant(slot), Family::Backpressure, "resumed", count);
    }
    if left > 0 {
        metrics.gauge_add(Scope::Gateway, HELD_STREAMS, -left);
    }
}

/// Which platform token a session holds, so a newer one can be rotated in.
struct SessionToken {
    generation: u64,
    refresh_at_ms: u64,
    /// Announced in `auth_refresh` frames; random, never the agent id.
    session_id: String,
}

/// Per-agent dedup windows and resume positions in Envoy shared data, shared by every worker.
struct SharedAgentStore<'a> {
    config: &'a Config,
    keys: &'a mut SlotKeys,
}

/// The shared-data keys of a session's dedup ring and resume set, worked out once per agent
/// rather than hashed again for every event.
#[derive(Default)]
struct SlotKeys {
    routing_key: String,
    dedup: String,
    resume: String,
}

impl SlotKeys {
    fn for_agent(&mut self, routing_key: &str, resume_slots: u32) -> &SlotKeys {
        if self.dedup.is_empty() || self.routing_key != routing_key {
            *self = SlotKeys {
                routing_key: routing_key.to_string(),
                dedup: ring_key(routing_key, DEDUP_SLOTS),
                resume: set_key(routing_key, resume_slots),
            };
        }
        self
    }
}

impl SharedAgentStore<'_> {
    /// Read-modify-write of one shared value with compare-and-swap, a bounded number of times.
    /// `change` gets the stored bytes and returns what to write back (`None`: leave it).
    fn update<T>(
        key: &str,
        mut change: impl FnMut(Option<Vec<u8>>) -> (Option<Vec<u8>>, T),
        fallback: T,
    ) -> T {
        for _ in 0..CAS_ATTEMPTS {
            let (current, cas) = match host::shared_get(key) {
                Ok(Some((bytes, cas))) => (Some(bytes), cas),
                Ok(None) => (None, 0),
                Err(_) => return fallback,
            };
            let (next, result) = change(current);
            let Some(next) = next else {
                return result;
            };
            match host::shared_set(key, &next, cas) {
                Ok(SharedWrite::Written) => return result,
                Ok(SharedWrite::CasMismatch) => continue,
                Err(_) => return result,
            }
        }
        fallback
    }
}

impl AgentStore for SharedAgentStore<'_> {
    fn deliver(&mut self, routing_key: &str, event_id_digest: u64, now_ms: u64) -> Delivery {
        let Some(window) = self.config.frames.dedup else {
            return Delivery::New;
        };
        let slots = self.config.frames.resume.as_ref().map_or(1, |r| r.2);
        let key = &self.keys.for_agent(routing_key, slots).dedup;
        Self::update(
            key,
            |stored| {
                let (delivery, write) =
                    deliver_in_slot(stored, routing_key, event_id_digest, now_ms, window);
                (write, delivery)
            },
            Delivery::New,
        )
    }

    fn record_position(&mut self, routing_key: &str, position: &str, now_ms: u64) {
        let Some((_, ttl_ms, slots)) = &self.config.frames.resume else {
            return;
        };
        let key = &self.keys.for_agent(routing_key, *slots).resume;
        Self::update(
            key,
            |stored| {
                let mut set = ResumeSet::decode(stored.as_deref().unwrap_or(&[]));
                set.record(routing_key, position, now_ms, *ttl_ms);
                (Some(set.encode()), ())
            },
            (),
        );
    }
}

impl Stream {
    /// The session's one log line (tenant, hashed agent, totals, first close, reason).
    fn log_session_end(&self) {
        let Some(log_config) = &self.shared.config.session_log else {
            return;
        };
        let agent = self.identity.as_ref().map_or_else(String::new, |identity| {
            agent_hash(log_config.salt.as_ref(), &identity.agent_id)
        });
        let tenant = self
            .shared
            .metrics
            .borrow()
            .tenant_label(self.tenant)
            .to_string();
        log::info!("{}", self.summary.log_line(&tenant, &agent, now_ms()));
    }

    /// This stream's metric scope: its tenant once authenticated, `none` before.
    fn scope(&self) -> Scope {
        Scope::Tenant(self.tenant)
    }

    fn count(&self, family: Family, label: &'static str) {
        self.shared
            .metrics
            .borrow_mut()
            .count(self.scope(), family, label);
    }

    /// Sends a local reply; if even that fails the stream is left paused and Envoy times it out,
    /// which still never forwards the request.
    fn reply(&self, status: u16, headers: &[(&str, &str)], body: &str, details: &str) -> Action {
        if let Err(err) = host::send_local_reply(status, headers, body, details) {
            log::error!("{}: cannot send {status}: {err}", self.context_id);
        }
        Action::Pause
    }

    fn fail_closed(&self, what: &str, err: host::HostError) -> Action {
        log::error!("{}: {what}: {err}; refusing the request", self.context_id);
        self.count(Family::Upgrades, "internal_error");
        self.reply(500, &[], "gateway error\n", "switchboard_internal_error")
    }

    /// A platform token that may be injected now: this VM's copy, or a fresher read of the
    /// shared record when the copy is too old (a refresh may have landed since the last tick).
    fn usable_token(&self, config: &TokenConfig) -> Option<SharedToken> {
        let now = now_ms();
        let usable = |view: &TokenView| {
            view.token
                .as_ref()
                .filter(|token| token.usable(now, config.safety_buffer_ms))
                .cloned()
        };
        if let Some(token) = usable(&self.shared.token.borrow()) {
            return Some(token);
        }
        if let (Some(record), _) = read_record() {
            self.shared.token.borrow_mut().update(&record);
        }
        usable(&self.shared.token.borrow())
    }

    /// The operator's drain switch on the drain path (loopback peers only); `None` for every
    /// other request.
    fn drain_request(&self, headers: &[(String, Vec<u8>)]) -> Option<Action> {
        let drain = self.shared.config.drain.as_ref()?;
        let path = request_path(headers)?;
        if !path.starts_with(drain.path.as_str()) {
            return None;
        }
        let method = headers
            .iter()
            .find(|(name, _)| name == ":method")
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
            .unwrap_or("");
        let peer = host::property(&["source", "address"])
            .ok()
            .flatten()
            .and_then(|bytes| String::from_utf8(bytes).ok());
        let action = drain_action(drain, method, &path, peer.as_deref())?;
        let state = |draining: bool| {
            if draining {
                "draining\n"
            } else {
                "not draining\n"
            }
        };
        let switch = |on: bool| {
            let written = host::shared_set(DRAINING_KEY, &[u8::from(on)], 0);
            self.shared.draining.set(on);
            log::info!(
                "{}: drain {} by the operator{}",
                self.context_id,
                if on { "started" } else { "stopped" },
                if written.is_err() {
                    " (not shared with other workers)"
                } else {
                    ""
                }
            );
        };
        Some(match action {
            DrainAction::Start => {
                switch(true);
                self.reply(
                    200,
                    &[("cache-control", "no-store")],
                    state(true),
                    "switchboard_drain",
                )
            }
            DrainAction::Stop => {
                switch(false);
                self.reply(
                    200,
                    &[("cache-control", "no-store")],
                    state(false),
                    "switchboard_drain",
                )
            }
            DrainAction::Status => self.reply(
                200,
                &[("cache-control", "no-store")],
                state(read_draining()),
                "switchboard_drain",
            ),
            DrainAction::Forbidden => {
                self.reply(403, &[], "forbidden\n", "switchboard_drain_forbidden")
            }
            DrainAction::BadMethod => self.reply(
                405,
                &[("allow", "GET, POST, DELETE")],
                "method not allowed\n",
                "switchboard_drain_method",
            ),
        })
    }

    /// Load and admission checks for an authenticated upgrade: the queue above its admission
    /// threshold (503), the upgrade rate (429), the agent's session cap (409). `Ok(true)` when
    /// the session now counts against its agent's cap.
    fn admit(
        &self,
        config: &Config,
        identity: Option<&upgrade::SessionIdentity>,
    ) -> Result<bool, Action> {
        let tenant = identity.map_or("", |i| i.tenant_id.as_str());
        if let (Some(drain), true) = (&config.drain, self.shared.draining.get()) {
            return Err(self.refuse_for_load(
                503,
                "draining",
                drain.retry_after_ms,
                drain.retry_after_ms,
                "gateway draining\n",
            ));
        }
        if let Some(backpressure) = &config.backpressure {
            let held = u64::try_from(flow::shared_value(HELD_BYTES_KEY)).unwrap_or(0);
            if held > backpressure.admission_limit() {
                self.count(Family::Backpressure, "refused");
                return Err(self.refuse_for_load(
                    503,
                    "backpressure",
                    backpressure.retry.base_ms,
                    backpressure.retry.cap_ms,
                    "gateway busy\n",
                ));
            }
        }
        let Some(admission) = config.admission.as_ref() else {
            self.shared.refusals.set(0);
            return Ok(false);
        };
        if !flow::admit_upgrade(admission.global, admission.per_tenant, tenant, now_ms()) {
            self.count(Family::Backpressure, "rate_limited");
            return Err(self.refuse_for_load(
                429,
                "admission",
                admission.retry.base_ms,
                admission.retry.cap_ms,
                "too many upgrades\n",
            ));
        }
        let mut counted = false;
        if let (Some(cap), DuplicatePolicy::Reject, Some(identity)) = (
            admission.max_sessions_per_agent,
            admission.duplicates,
            identity,
        ) {
            match flow::agent_sessions_add(&identity.routing_key, 1, Some(cap)) {
                Some((true, _)) => counted = true,
                Some((false, _)) => {
                    self.count(Family::Backpressure, "duplicate");
                    self.count(Family::Upgrades, "duplicate");
                    return Err(self.reply(
                        409,
                        &[("cache-control", "no-store")],
                        "this agent already has the maximum number of sessions\n",
                        "switchboard_duplicate_session",
                    ));
                }
                None => {}
            }
        }
        self.shared.refusals.set(0);
        Ok(counted)
    }

    /// 503 or 429 with `Retry-After` = min(cap, base·2^k)·(0.5 + random), k the refusals in a
    /// row on this worker, salted per instance.
    fn refuse_for_load(
        &self,
        status: u16,
        label: &'static str,
        base_ms: u64,
        cap_ms: u64,
        body: &str,
    ) -> Action {
        let streak = self.shared.refusals.get();
        self.shared.refusals.set(streak.saturating_add(1));
        let retry_after = retry_after_secs(
            base_ms,
            cap_ms,
            streak.min(16),
            &mut self.shared.rng.borrow_mut(),
        )
        .to_string();
        self.count(Family::Upgrades, label);
        self.reply(
            status,
            &[("retry-after", &retry_after), ("cache-control", "no-store")],
            body,
            label,
        )
    }

    fn refuse_without_token(&self, config: &TokenConfig) -> Action {
        let failures = self.shared.token.borrow().failures;
        let retry_after = retry_after_secs(
            config.retry_after_ms,
            config.backoff.cap_ms.max(config.retry_after_ms),
            failures,
            &mut self.shared.rng.borrow_mut(),
        )
        .to_string();
        self.count(Family::Upgrades, "no_token");
        log::debug!(
            "{}: no usable platform token; upgrade refused, retry after {retry_after}s",
            self.context_id
        );
        self.reply(
            503,
            &[("retry-after", &retry_after), ("cache-control", "no-store")],
            "platform token unavailable\n",
            "switchboard_no_platform_token",
        )
    }

    fn handle_request_headers(&mut self) -> Action {
        let headers = match host::header_pairs(MapKind::RequestHeaders) {
            Ok(headers) => headers,
            Err(err) => return self.fail_closed("reading request headers", err),
        };
        let request = upgrade::RequestHead { headers: &headers };
        self.upgrade_attempt = request.is_websocket_upgrade();
        let config = &self.shared.config;
        if let Some(action) = self.drain_request(&headers) {
            return action;
        }
        let verdict = upgrade::decide(config, &request, host::now_secs(), &mut SharedDataCache);
        let forward = match verdict {
            Verdict::Reject(rejection) => {
                let upgrade = request.is_websocket_upgrade();
                let family = if upgrade {
                    Family::Upgrades
                } else {
                    Family::Requests
                };
                self.count(family, rejection.reason.label());
                if let RejectReason::Auth(err) = &rejection.reason {
                    self.count(Family::AuthFailures, err.reason());
                    log::debug!("{}: rejected: auth {}", self.context_id, err.reason());
                } else {
                    log::debug!(
                        "{}: rejected: {}",
                        self.context_id,
                        rejection.reason.label()
                    );
                }
                let mut reply_headers: Vec<(&str, &str)> = vec![("cache-control", "no-store")];
                if let Some(challenge) = rejection.www_authenticate {
                    reply_headers.push(("www-authenticate", challenge));
                }
                return self.reply(
                    rejection.status,
                    &reply_headers,
                    rejection.body,
                    rejection.reason.label(),
                );
            }
            Verdict::Forward(forward) => forward,
        };
        if let Some(identity) = &forward.identity {
            self.tenant = self
                .shared
                .metrics
                .borrow_mut()
                .tenant_slot(&identity.tenant_id);
        }
        if forward.upgrade {
            match self.admit(config, forward.identity.as_ref()) {
                Ok(counted) => self.agent_counted = counted,
                Err(refusal) => return refusal,
            }
        }
        // An upgrade the platform would refuse (or that would carry an expired token) is
        // answered here instead: 503 with a jittered Retry-After.
        let platform_token = match (&config.token, forward.upgrade) {
            (Some(token_config), true) => match self.usable_token(token_config) {
                Some(token) => Some(token),
                None => return self.refuse_without_token(token_config),
            },
            _ => None,
        };

        for name in &forward.remove_headers {
            if let Err(err) = host::remove_header(MapKind::RequestHeaders, name) {
                return self.fail_closed("removing a client-supplied header", err);
            }
        }
        for (name, value) in &forward.set_headers {
            if let Err(err) = host::set_header(MapKind::RequestHeaders, name, value) {
                return self.fail_closed("setting a gateway header", err);
            }
        }
        let mut path = forward.path.clone();
        if let (Some(identity), Some((param, ttl_ms, slots))) =
            (&forward.identity, &config.frames.resume)
        {
            if forward.upgrade && config.frames.enabled {
                let now_ms = host::now_nanos() / 1_000_000;
                let stored = host::shared_get(&set_key(&identity.routing_key, *slots))
                    .ok()
                    .flatten();
                let set = ResumeSet::decode(stored.as_ref().map_or(&[][..], |(bytes, _)| bytes));
                if let Some(position) = set.position(&identity.routing_key, now_ms, *ttl_ms) {
                    let current = path.clone().unwrap_or_else(|| {
                        request_path(&headers).unwrap_or_else(|| "/".to_string())
                    });
                    if let Some(resumed) = add_resume_param(&current, param, position) {
                        self.count(Family::Sessions, "resumed");
                        path = Some(resumed);
                    }
                }
            }
        }
        if let (Some(token), Some(token_config)) = (&platform_token, &config.token) {
            let current = path
                .clone()
                .unwrap_or_else(|| request_path(&headers).unwrap_or_else(|| "/".to_string()));
            match inject(&token_config.injection, token, &current) {
                UpgradeInjection::Header(value) => {
                    if let Err(err) =
                        host::set_header(MapKind::RequestHeaders, "authorization", &value)
                    {
                        return self.fail_closed("injecting the platform token", err);
                    }
                }
                UpgradeInjection::Path(with_token) => path = Some(with_token),
            }
            self.platform_token = Some(SessionToken {
                generation: token.generation,
                refresh_at_ms: token.refresh_at_ms,
                session_id: format!("sb-{:016x}", self.shared.rng.borrow_mut().next_u64()),
            });
        }
        if let Some(path) = &path {
            if let Err(err) = host::set_header(MapKind::RequestHeaders, ":path", path) {
                return self.fail_closed("rewriting the path", err);
            }
        }
        if let Some(path) = forward.auth {
            self.count(
                Family::AuthPath,
                match path {
                    upgrade::AuthPath::Cached => "cached",
                    upgrade::AuthPath::Verified => "verified",
                },
            );
        }
        if forward.upgrade {
            self.upgrade_requested = true;
            self.subprotocols = forward.subprotocols;
            self.identity = forward.identity.clone();
            if let Some(identity) = &forward.identity {
                log::debug!(
                    "{}: upgrade admitted for routing key {}",
                    self.context_id,
                    identity.routing_key
                );
            }
        } else {
            self.count(Family::Requests, "forwarded");
        }
        Action::Continue
    }

    fn handle_response_headers(&mut self) -> Action {
        let status = host::header(MapKind::ResponseHeaders, ":status")
            .ok()
            .flatten();
        let status_text = status.as_deref().and_then(|s| std::str::from_utf8(s).ok());
        let upgrade_header = host::header(MapKind::ResponseHeaders, "upgrade")
            .ok()
            .flatten();
        if !upgrade::is_websocket_accept(status_text, upgrade_header.as_deref()) {
            let label = status_text
                .and_then(|s| s.parse::<u16>().ok())
                .map_or("upstream_other", upstream_result);
            self.count(Family::Upgrades, label);
            return Action::Continue;
        }
        let answered = host::header(MapKind::ResponseHeaders, "sec-websocket-protocol")
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok());
        match check_answered_subprotocol(&self.subprotocols, answered.as_deref()) {
            SubprotocolAnswer::Keep => {}
            SubprotocolAnswer::Strip => {
                if let Err(err) =
                    host::remove_header(MapKind::ResponseHeaders, "sec-websocket-protocol")
                {
                    log::error!(
                        "{}: cannot strip the answered subprotocol: {err}",
                        self.context_id
                    );
                    self.count(Family::Upgrades, "upstream_protocol");
                    return self.reply(502, &[], "bad gateway\n", "switchboard_subprotocol");
                }
            }
            SubprotocolAnswer::Reject => {
                log::debug!(
                    "{}: platform answered a subprotocol the client never offered",
                    self.context_id
                );
                self.count(Family::Upgrades, "upstream_protocol");
                return self.reply(502, &[], "bad gateway\n", "switchboard_subprotocol");
            }
        }
        self.upgraded = true;
        self.summary.started_ms = now_ms();
        self.count(Family::Upgrades, "accepted");
        self.start_session();
        self.shared
            .metrics
            .borrow_mut()
            .gauge_add(self.scope(), SESSIONS_ACTIVE, 1);
        Action::Continue
    }
}

/// Queues an `auth_refresh` frame when a newer platform token exists and the session's own is
/// inside its refresh window. It rides on this (or the next) client chunk: proxy-wasm cannot
/// write into a stream that sends nothing.
fn queue_rotation(
    session: &mut WsSession,
    held: &mut SessionToken,
    config: &TokenConfig,
    view: &TokenView,
    identity: Option<&upgrade::SessionIdentity>,
) {
    let (Some(rotation), Some(token)) = (&config.rotation, &view.token) else {
        return;
    };
    if token.generation <= held.generation || session.stopped() {
        return;
    }
    let now = now_ms();
    if now < held.refresh_at_ms || !token.usable(now, config.safety_buffer_ms) {
        return;
    }
    let context = FrameContext {
        session_id: &held.session_id,
        region: identity.and_then(|i| i.region.as_deref()),
    };
    session.queue_for_platform(auth_refresh_frame(
        rotation,
        token,
        &context,
        host::mask_key(),
    ));
    held.generation = token.generation;
    held.refresh_at_ms = token.refresh_at_ms;
}

fn request_path(headers: &[(String, Vec<u8>)]) -> Option<String> {
    headers
        .iter()
        .find(|(name, _)| name == ":path")
        .and_then(|(_, value)| String::from_utf8(value.clone()).ok())
}

impl Stream {
    /// After the 101: frame features start, unless the platform negotiated permessage-deflate
    /// (then payloads are compressed and only protocol checks run).
    fn start_session(&mut self) {
        let config = &self.shared.config;
        let (Some(identity), true) = (&self.identity, config.frames.enabled) else {
            return;
        };
        let deflate = host::header(MapKind::ResponseHeaders, "sec-websocket-extensions")
            .ok()
            .flatten()
            .is_some_and(|v| {
                String::from_utf8_lossy(&v)
                    .to_ascii_lowercase()
                    .contains("permessage-deflate")
            });
        let frames = &config.frames;
        let payload_features = !deflate;
        if deflate && frames.payload_features() {
            self.count(Family::Sessions, "deflate_passthrough");
        }
        let features = SessionFeatures {
            tag_field: frames.tag_field.clone().filter(|_| payload_features),
            tag_agent_field: frames.tag_agent_field.clone().filter(|_| payload_features),
            dedup: frames.dedup.is_some() && payload_features,
            guard: frames.guard && payload_features,
            resume: frames.resume.is_some() && payload_features,
            envelope: frames.envelope.clone(),
        };
        let limits = Limits {
            max_frame_payload: frames.max_frame_bytes,
            max_message: frames.max_message_bytes,
            validate_utf8: frames.validate_utf8 && !deflate,
            extensions_negotiated: deflate,
        };
        self.session = Some(WsSession::new(
            SessionOwner {
                agent_id: identity.agent_id.clone(),
                routing_key: identity.routing_key.clone(),
            },
            features,
            limits,
        ));
    }

    /// One body chunk of an upgraded stream, either direction. While a direction is held,
    /// Envoy buffers and calls again with the whole buffer: only the bytes past what was already
    /// read are new.
    fn on_chunk(&mut self, from_client: bool, body_size: usize) -> Action {
        if self.session.is_none() {
            return Action::Continue;
        }
        let (kind, way) = if from_client {
            (BufferKind::RequestBody, Way::Up)
        } else {
            (BufferKind::ResponseBody, Way::Down)
        };
        let state = Rc::clone(if from_client { &self.up } else { &self.down });
        let start = {
            let mut state = state.borrow_mut();
            if state.resumed {
                state.resumed = false;
                state.processed_len = 0;
            }
            if state.paused {
                state.processed_len.min(body_size)
            } else {
                0
            }
        };
        if state.borrow().paused && start >= body_size {
            return Action::Pause;
        }
        let chunk = match host::body_range(kind, start, body_size - start) {
            Ok(chunk) => chunk,
            Err(err) => {
                // Without the bytes the parser would lose its place: stop inspecting, keep forwarding.
                log::warn!(
                    "{}: cannot read a body chunk ({err}); frame features off for this session",
                    self.context_id
                );
                self.session = None;
                self.release_holds();
                self.count(Family::Sessions, "inspection_lost");
                return Action::Continue;
            }
        };
        let Some(session) = self.session.as_mut() else {
            return Action::Continue;
        };
        if from_client {
            if let (Some(held), Some(config)) =
                (self.platform_token.as_mut(), &self.shared.config.token)
            {
                queue_rotation(
                    session,
                    held,
                    config,
                    &self.shared.token.borrow(),
                    self.identity.as_ref(),
                );
            }
        }
        let now = now_ms();
        let mut report = ChunkReport::default();
        let outcome = if from_client {
            session.client_chunk(&chunk, host::mask_key(), &mut report)
        } else {
            let mut store = SharedAgentStore {
                config: &self.shared.config,
                keys: &mut self.slot_keys,
            };
            session.platform_chunk(&chunk, now, &mut store, &mut report)
        };
        let mut output = match outcome {
            ChunkOutcome::Forward => None,
            ChunkOutcome::Replace(bytes) => Some(bytes),
        };
        // Idle (no data frame either way for the configured time) or draining: this chunk (a
        // ping, say) is the chance to say goodbye with 1001 both ways.
        let idle = if report.data_frames > 0 || self.last_data_ms == 0 {
            self.last_data_ms = now;
            false
        } else {
            self.shared
                .config
                .idle_timeout_ms
                .is_some_and(|idle_ms| now.saturating_sub(self.last_data_ms) >= idle_ms)
        };
        let goodbye = if idle {
            Some("idle_closed")
        } else if self.shared.draining.get() {
            Some("drained")
        } else {
            None
        };
        let direction = if from_client {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        if let Some(label) = goodbye {
            if !session.stopped() && session.at_frame_boundary(direction) {
                let close = session.shut(1001, 1001, direction, host::mask_key());
                output
                    .get_or_insert_with(|| chunk.clone())
                    .extend_from_slice(&close);
                let mut metrics = self.shared.metrics.borrow_mut();
                metrics.count(Scope::Tenant(self.tenant), Family::Sessions, label);
                metrics.count(
                    Scope::Tenant(self.tenant),
                    Family::Closes,
                    close_label(CloseSide::Gateway, 1001),
                );
                drop(metrics);
                self.summary.ended_by_gateway(
                    if idle {
                        EndReason::IdleTimeout
                    } else {
                        EndReason::Drain
                    },
                    1001,
                );
            }
        }
        let stopped = session.stopped();
        let processed_len = match &output {
            None => body_size,
            Some(bytes) => start + bytes.len(),
        };
        if let Some(bytes) = output.take() {
            let whole = if start == 0 {
                Ok(bytes)
            } else {
                host::body_range(kind, 0, start).map(|mut prefix| {
                    prefix.extend_from_slice(&bytes);
                    prefix
                })
            };
            if let Err(err) = whole.and_then(|whole| host::replace_body(kind, body_size, &whole)) {
                log::error!("{}: cannot rewrite a body chunk: {err}", self.context_id);
                self.count(Family::Sessions, "rewrite_failed");
            }
        }
        self.record(from_client, chunk.len(), &report);
        let shared = Rc::clone(&self.shared);
        let Some(config) = &shared.config.backpressure else {
            return Action::Continue;
        };
        if stopped {
            self.release_holds();
            return Action::Continue;
        }
        let in_debt = self.charge(config, way, &report, chunk.len(), now);
        if !(state.borrow().paused || in_debt) {
            return Action::Continue;
        }
        self.hold(config, way, &state, processed_len)
    }

    /// Charges a chunk to its budgets; true when they are now in debt (the direction waits).
    fn charge(
        &self,
        config: &BackpressureConfig,
        way: Way,
        report: &ChunkReport,
        bytes: usize,
        now: u64,
    ) -> bool {
        let tenant = self.identity.as_ref().map_or("", |i| i.tenant_id.as_str());
        let budgets = config.budgets_for(tenant);
        match way {
            Way::Up => {
                if budgets.up_frames.is_unlimited() && budgets.up_bytes.is_unlimited() {
                    return false;
                }
                let mut leases = self.shared.leases.borrow_mut();
                if !leases.contains_key(tenant) {
                    leases.insert(tenant.to_string(), Default::default());
                }
                let Some((frames, bytes_lease)) = leases.get_mut(tenant) else {
                    return false;
                };
                frames.tokens -= report.frames as f64;
                bytes_lease.tokens -= bytes as f64;
                let frames_ok = !frames.in_debt()
                    || flow::settle(
                        frames,
                        "up_frames",
                        tenant,
                        budgets.up_frames,
                        config.slice_ms,
                        now,
                    );
                let bytes_ok = !bytes_lease.in_debt()
                    || flow::settle(
                        bytes_lease,
                        "up_bytes",
                        tenant,
                        budgets.up_bytes,
                        config.slice_ms,
                        now,
                    );
                !(frames_ok && bytes_ok)
            }
            Way::Down => {
                if budgets.down_frames.is_unlimited() {
                    return false;
                }
                let mut state = self.down.borrow_mut();
                let bucket = state
                    .down
                    .get_or_insert_with(|| Bucket::full(budgets.down_frames, now));
                bucket.charge(budgets.down_frames, report.frames as f64);
                !bucket.ready(budgets.down_frames, now)
            }
        }
    }

    /// Keeps a direction paused with `processed_len` bytes in Envoy's buffer, or closes the
    /// session with 1013 when that would pass the session's or the gateway's cap.
    fn hold(
        &mut self,
        config: &BackpressureConfig,
        way: Way,
        state: &Rc<RefCell<HoldState>>,
        processed_len: usize,
    ) -> Action {
        let held = u64::try_from(processed_len).unwrap_or(u64::MAX);
        let delta = i64::try_from(held).unwrap_or(i64::MAX)
            - i64::try_from(state.borrow().held_bytes).unwrap_or(i64::MAX);
        let total = flow::shared_value(HELD_BYTES_KEY).saturating_add(delta);
        if held > config.session_hold_bytes
            || u64::try_from(total).unwrap_or(0) > config.max_queue_bytes
        {
            return self.overflow(way, processed_len);
        }
        {
            let mut state = state.borrow_mut();
            state.processed_len = processed_len;
            state.held_bytes = held;
            state.tenant = self
                .identity
                .as_ref()
                .map_or_else(String::new, |i| i.tenant_id.clone());
            state.slot = self.tenant;
        }
        flow::shared_add(HELD_BYTES_KEY, delta);
        let mut metrics = self.shared.metrics.borrow_mut();
        metrics.gauge_add(Scope::Gateway, HELD_BYTES, delta);
        if !state.borrow().paused {
            state.borrow_mut().paused = true;
            self.shared
                .hold_states
                .borrow_mut()
                .insert((self.context_id, way), Rc::clone(state));
            self.shared.holds.borrow_mut().push(self.context_id, way);
            metrics.count(self.scope(), Family::Backpressure, "held");
            metrics.gauge_add(Scope::Gateway, HELD_STREAMS, 1);
        }
        Action::Pause
    }

    /// The held data would pass a cap: what is buffered goes on, followed by a close (1013 to
    /// the client, 1000 to the platform), and the session ends cleanly instead of Envoy
    /// resetting it.
    fn overflow(&mut self, way: Way, buffered: usize) -> Action {
        let (kind, direction) = match way {
            Way::Up => (BufferKind::RequestBody, Direction::ClientToServer),
            Way::Down => (BufferKind::ResponseBody, Direction::ServerToClient),
        };
        if let Some(session) = self.session.as_mut() {
            if session.at_frame_boundary(direction) {
                let close = session.shut(1013, 1000, direction, host::mask_key());
                let appended = host::body_range(kind, 0, buffered).map(|mut body| {
                    body.extend_from_slice(&close);
                    body
                });
                if let Err(err) =
                    appended.and_then(|body| host::replace_body(kind, buffered, &body))
                {
                    log::error!("{}: cannot append the 1013 close: {err}", self.context_id);
                }
            } else {
                // Mid-frame: the close follows with the next chunk each way.
                let _ = session.shut(1013, 1000, direction, host::mask_key());
            }
        }
        log::debug!(
            "{}: held data over the cap; session closed with 1013",
            self.context_id
        );
        self.count(Family::Backpressure, "overflow");
        self.count(Family::Closes, close_label(CloseSide::Gateway, 1013));
        self.summary.ended_by_gateway(EndReason::Overflow, 1013);
        self.release_holds();
        Action::Continue
    }

    /// Forgets both directions' holds (resumed, overflowed or ended) and their held bytes.
    fn release_holds(&mut self) {
        let mut released = 0u64;
        let mut streams = 0i64;
        for (way, state) in [(Way::Up, &self.up), (Way::Down, &self.down)] {
            let mut state = state.borrow_mut();
            released += std::mem::take(&mut state.held_bytes);
            if std::mem::take(&mut state.paused) {
                streams += 1;
            }
            state.processed_len = 0;
            self.shared
                .hold_states
                .borrow_mut()
                .remove(&(self.context_id, way));
        }
        self.shared.holds.borrow_mut().remove(self.context_id);
        let mut metrics = self.shared.metrics.borrow_mut();
        if released > 0 {
            let released = i64::try_from(released).unwrap_or(i64::MAX);
            flow::shared_add(HELD_BYTES_KEY, -released);
            metrics.gauge_add(Scope::Gateway, HELD_BYTES, -released);
        }
        if streams > 0 {
            metrics.gauge_add(Scope::Gateway, HELD_STREAMS, -streams);
        }
    }

    fn record(&mut self, from_client: bool, bytes: usize, report: &ChunkReport) {
        let flow = if from_client {
            &mut self.summary.up
        } else {
            &mut self.summary.down
        };
        flow.frames = flow.frames.saturating_add(report.frames);
        flow.bytes = flow
            .bytes
            .saturating_add(u64::try_from(bytes).unwrap_or(u64::MAX));
        if let Some(violation) = report.violation {
            self.summary
                .ended_by_gateway(EndReason::ProtocolViolation, violation.close_code());
        }
        let side = if from_client {
            CloseSide::Client
        } else {
            CloseSide::Platform
        };
        for code in &report.closes {
            self.summary.closed(*code, side);
        }
        let scope = self.scope();
        let mut metrics = self.shared.metrics.borrow_mut();
        let dir = if from_client { "up" } else { "down" };
        if report.frames > 0 {
            metrics.add(scope, Family::Frames, dir, report.frames);
        }
        metrics.add(
            scope,
            Family::FrameBytes,
            dir,
            u64::try_from(bytes).unwrap_or(u64::MAX),
        );
        if report.tagged > 0 {
            metrics.add(scope, Family::Tagging, "tagged", report.tagged);
        }
        if report.untagged > 0 {
            metrics.add(scope, Family::Tagging, "untouched", report.untagged);
        }
        if report.duplicates > 0 {
            metrics.add(scope, Family::EventDrops, "duplicate", report.duplicates);
        }
        if report.injected > 0 {
            metrics.add(scope, Family::AuthRefresh, "injected", report.injected);
        }
        if report.misrouted > 0 {
            metrics.add(scope, Family::EventDrops, "misrouted", report.misrouted);
        }
        for code in &report.closes {
            metrics.count(scope, Family::Closes, close_label(side, *code));
        }
        if let Some(violation) = report.violation {
            metrics.count(
                scope,
                Family::Violations,
                code_label(violation.close_code()),
            );
            metrics.count(
                scope,
                Family::Closes,
                close_label(CloseSide::Gateway, violation.close_code()),
            );
            log::debug!(
                "{}: protocol violation from the {}: {violation:?}",
                self.context_id,
                if from_client { "client" } else { "platform" }
            );
        }
    }
}

impl Context for Stream {
    fn on_done(&mut self) -> bool {
        self.release_holds();
        if std::mem::take(&mut self.agent_counted) {
            if let Some(identity) = &self.identity {
                let _ = flow::agent_sessions_add(&identity.routing_key, -1, None);
            }
        }
        if self
            .session
            .as_ref()
            .is_some_and(WsSession::has_pending_for_platform)
        {
            self.count(Family::AuthRefresh, "undelivered");
        }
        if self.upgraded {
            self.upgraded = false;
            self.shared
                .metrics
                .borrow_mut()
                .gauge_add(self.scope(), SESSIONS_ACTIVE, -1);
            if self.summary.close.is_none() {
                // Ended with no close frame either way: what a client sees as 1006.
                self.count(Family::Closes, "none.code.1006");
            }
            self.log_session_end();
        }
        true
    }
}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let started = host::now_nanos();
        let action = self.handle_request_headers();
        if self.upgrade_attempt {
            let elapsed_us = host::now_nanos().saturating_sub(started) / 1_000;
            self.shared
                .metrics
                .borrow_mut()
                .histogram(UPGRADE_FILTER_TIME_US, elapsed_us);
        }
        action
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if !self.upgrade_requested {
            return Action::Continue;
        }
        self.handle_response_headers()
    }

    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.on_chunk(true, body_size)
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.on_chunk(false, body_size)
    }
}
