//! `sbctl bench`: simulated agent desktops against a gateway URL, with a report.
//!
//! Every agent is one tokio task with its own minted token. Connects are spread by a rate
//! limiter with jitter; each agent sends messages at its rate in the profile's envelope and times
//! their echoes, pings, and counts the platform's events. Profiles: `steady`, `ramp` (adds agents
//! until errors or p99 cross a threshold, and reports the knee), `soak` (memory and churn drift
//! from the gateway's admin), and `storm` (every agent drops at once and reconnects, following
//! `Retry-After`).

pub mod admin;
pub mod agent;
pub mod chart;
pub mod ramp;
pub mod report;
pub mod stats;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::mint::{self, MintSpec, SigningKey};
use crate::mock::Secret;
use agent::{AgentPlan, Envelope, Phase, Presentation};
use ramp::{StepResult, Thresholds};
use report::{Report, SoakSample};
use stats::{Stats, Window};

/// Agents one run may simulate.
pub const MAX_AGENTS: u32 = 100_000;
/// Envoy's default `stats_flush_interval` (5 s): how stale its memory gauges can be.
const ADMIN_FLUSH_SECS: u64 = 5;
/// Longest wait for the gateway to close the run's sessions before the end sample.
const END_CLOSE_WAIT: Duration = Duration::from_secs(10);
const END_POLL: Duration = Duration::from_millis(250);
/// How long the end of the run waits for every agent's closing handshake.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Steady,
    Ramp,
    Soak,
    Storm,
}

impl Mode {
    pub fn parse(text: &str) -> Option<Mode> {
        match text {
            "steady" => Some(Mode::Steady),
            "ramp" => Some(Mode::Ramp),
            "soak" => Some(Mode::Soak),
            "storm" => Some(Mode::Storm),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Steady => "steady",
            Mode::Ramp => "ramp",
            Mode::Soak => "soak",
            Mode::Storm => "storm",
        }
    }
}

/// Where agent tokens come from.
#[derive(Debug, Clone)]
pub enum Tokens {
    /// The target needs none (the mock platform directly).
    None,
    Mint {
        key: Arc<SigningKey>,
        kid: Option<String>,
        tenants: u32,
        ttl_secs: u64,
    },
}

#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub url: String,
    pub mode: Mode,
    /// Agents (the ramp's ceiling).
    pub agents: u32,
    pub duration: Duration,
    /// Upgrades per second while connecting; 0 connects everyone at once.
    pub connect_rate: f64,
    /// Random extra delay before each connect, up to this.
    pub jitter: Duration,
    /// Messages per agent per second (client → platform, echoed back).
    pub msg_rate: f64,
    /// Pad bytes in each message.
    pub payload: usize,
    pub envelope: Envelope,
    pub ping_interval: Option<Duration>,
    pub tokens: Tokens,
    /// Where the token goes on the upgrade, and the platform subprotocol offered.
    pub presentation: Presentation,
    /// Connection attempts per connect (refusals are retried after `Retry-After`).
    pub attempts: u32,
    /// Envoy admin `host:port` to sample.
    pub admin: Option<String>,
    pub upstream_cluster: Option<String>,
    pub step: u32,
    pub interval: Duration,
    pub max_p99_ms: f64,
    pub max_error_rate: f64,
    pub sample_every: Duration,
    pub json: Option<PathBuf>,
    pub png: Option<PathBuf>,
}

impl BenchConfig {
    /// One line naming the flag of the first bad setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.url.starts_with("wss://") {
            return Err(
                "--url: wss:// is not supported (this build has no TLS); put the gateway's plain listener in --url".to_owned(),
            );
        }
        if !self.url.starts_with("ws://") {
            return Err(format!("--url: {:?} is not a ws:// URL", self.url));
        }
        if self.url.contains('#') {
            return Err("--url: a WebSocket URL has no fragment (RFC 6455 §3)".to_owned());
        }
        let p = &self.presentation;
        if p.query_param.is_empty() || !p.query_param.bytes().all(is_unreserved) {
            return Err(format!(
                "--token-query-param: {:?} must be letters, digits, '-', '.', '_' or '~'",
                p.query_param
            ));
        }
        // RFC 6455 §4.1: every Sec-WebSocket-Protocol element is an RFC 7230 token.
        if p.subprotocol_prefix.is_empty() || !p.subprotocol_prefix.bytes().all(is_tchar) {
            return Err(format!(
                "--token-subprotocol-prefix: {:?} must be a non-empty HTTP token",
                p.subprotocol_prefix
            ));
        }
        if let Some(subprotocol) = &p.subprotocol {
            if subprotocol.is_empty() || !subprotocol.bytes().all(is_tchar) {
                return Err(format!(
                    "--subprotocol: {subprotocol:?} must be a non-empty HTTP token"
                ));
            }
        }
        if let Some(admin) = &self.admin {
            admin::authority(admin)?;
        }
        if self.agents == 0 || self.agents > MAX_AGENTS {
            return Err(format!("--agents: must be 1..={MAX_AGENTS}"));
        }
        if self.duration.is_zero() || self.duration > Duration::from_secs(7 * 24 * 3600) {
            return Err("--duration: must be above 0 and at most a week".to_owned());
        }
        if !(self.connect_rate.is_finite() && self.connect_rate >= 0.0) {
            return Err("--connect-rate: must be a number ≥ 0 (0: all at once)".to_owned());
        }
        if !(self.msg_rate.is_finite() && (0.0..=1_000.0).contains(&self.msg_rate)) {
            return Err("--msg-rate: must be 0..=1000 per agent per second".to_owned());
        }
        if self.payload > 1 << 20 {
            return Err("--payload: at most 1 MiB".to_owned());
        }
        if self.mode == Mode::Ramp && (self.step == 0 || self.interval.is_zero()) {
            return Err("--step and --interval: must be above 0 for a ramp".to_owned());
        }
        if self.attempts == 0 || self.attempts > 100 {
            return Err("--attempts: must be 1..=100".to_owned());
        }
        if self.sample_every.is_zero() {
            return Err("--sample-every: must be above 0".to_owned());
        }
        Ok(())
    }
}

/// RFC 3986 §2.3 unreserved characters: a query parameter name that needs no encoding.
fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// Raises the open-file soft limit to the hard limit: every agent is a socket.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read the struct passed by pointer, nothing else.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
    }
    limit.rlim_cur
}

/// The agent's own JWT: `bench-agent-<index>` of `tenant-<index mod tenants>`.
fn agent_token(tokens: &Tokens, index: u32, now: u64) -> Result<Option<Secret>, String> {
    match tokens {
        Tokens::None => Ok(None),
        Tokens::Mint {
            key,
            kid,
            tenants,
            ttl_secs,
        } => {
            let mut spec = MintSpec::new(
                format!("bench-agent-{index}"),
                format!("tenant-{}", index % (*tenants).max(1)),
            );
            spec.kid = kid.clone();
            spec.ttl_secs = *ttl_secs;
            mint::mint(&spec, key, now)
                .map(|jwt| Some(Secret::new(jwt)))
                .map_err(|err| format!("--key: minting agent tokens: {err}"))
        }
    }
}

struct Run {
    config: BenchConfig,
    stats: Arc<Stats>,
    phase: watch::Sender<Phase>,
    agents: JoinSet<()>,
    spawned: u32,
    pad: Arc<str>,
    url: Arc<str>,
    presentation: Arc<Presentation>,
    now_secs: u64,
    run_id: u64,
}

impl Run {
    /// Spawns agents `from..to`, each starting after its slot under the rate limiter.
    fn spawn(&mut self, to: u32) -> Result<(), String> {
        let from = self.spawned;
        for index in from..to {
            let plan = AgentPlan {
                index,
                run_id: self.run_id,
                url: Arc::clone(&self.url),
                token: agent_token(&self.config.tokens, index, self.now_secs)?,
                presentation: Arc::clone(&self.presentation),
                envelope: self.config.envelope,
                message_every: (self.config.msg_rate > 0.0)
                    .then(|| Duration::from_secs_f64(1.0 / self.config.msg_rate)),
                pad: Arc::clone(&self.pad),
                ping_every: self.config.ping_interval,
                attempts: self.config.attempts,
            };
            let slot = if self.config.connect_rate > 0.0 {
                Duration::from_secs_f64(f64::from(index - from) / self.config.connect_rate)
            } else {
                Duration::ZERO
            };
            let jitter = self.config.jitter.mul_f64(rand::random::<f64>());
            let stats = Arc::clone(&self.stats);
            let phase = self.phase.subscribe();
            self.agents.spawn(async move {
                tokio::time::sleep(slot + jitter).await;
                agent::run(plan, stats, phase).await;
            });
        }
        self.spawned = to;
        Ok(())
    }
}

/// Runs the benchmark and returns its report (also written as JSON and PNG when asked).
pub async fn run(config: BenchConfig) -> Result<Report, String> {
    config.validate()?;
    let fd_limit = raise_fd_limit();
    let needed = u64::from(config.agents) + 64;
    if fd_limit != 0 && fd_limit < needed {
        return Err(format!(
            "--agents: {} agents need {needed} open files and the limit is {fd_limit} (raise it with ulimit -n)",
            config.agents
        ));
    }
    let (phase, _) = watch::channel(Phase::Run);
    let now_secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut run = Run {
        pad: Arc::from("x".repeat(config.payload)),
        url: Arc::from(config.url.as_str()),
        presentation: Arc::new(config.presentation.clone()),
        stats: Arc::new(Stats::default()),
        phase,
        agents: JoinSet::new(),
        spawned: 0,
        now_secs,
        run_id: rand::random::<u64>(),
        config,
    };
    let config = run.config.clone();
    let admin = config.admin.as_deref().map(admin::authority).transpose()?;
    let cluster = config.upstream_cluster.clone();
    let sample = |admin: Option<String>, cluster: Option<String>| async move {
        match admin {
            Some(authority) => Some(admin::sample(&authority, cluster.as_deref()).await),
            None => None,
        }
    };
    let gateway_start = sample(admin.clone(), cluster.clone()).await;
    let progress = std::io::stderr().is_terminal();
    let started = Instant::now();
    let mut windows: Vec<Window> = Vec::new();
    let mut soak_samples: Vec<SoakSample> = Vec::new();
    if config.mode == Mode::Soak {
        soak_samples.push(SoakSample::new(0, gateway_start.as_ref(), 0, false));
    }
    let mut steps: Vec<StepResult> = Vec::new();
    let mut storm_at: Option<u64> = None;
    let mut storm_recovered_s: Option<f64> = None;
    let mut gateway_loaded = None;
    let mut sent_before = 0u64;
    // The second since which every agent has been connected, if they still are.
    let mut settled_since: Option<u64> = None;
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let first = match config.mode {
        Mode::Ramp => config.step.min(config.agents),
        _ => config.agents,
    };
    run.spawn(first)?;
    let total_secs = config.duration.as_secs().max(1);
    let interval_secs = config.interval.as_secs().max(1);
    let sample_secs = config.sample_every.as_secs().max(1);
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut interrupted = false;
    for second in 1..=total_secs {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut interrupt => { interrupted = true; }
        }
        if interrupted {
            break;
        }
        let window = run.stats.take_window(second, &mut sent_before);
        // Steady state: everyone spawned so far is connected or has given up (a ramp step or a
        // storm's reconnect wave ends it until they are back).
        let settled = window.agents_connected + run.stats.counters.gave_up.load(Ordering::Relaxed);
        let all_connected = settled >= u64::from(run.spawned);
        run.stats.set_all_connected(all_connected);
        settled_since = match (all_connected, settled_since) {
            (false, _) => None,
            (true, None) => Some(second),
            (true, since) => since,
        };
        if progress {
            eprint!(
                "\r{:>5}s/{total_secs}s  agents {:>6}/{:<6}  sent/s {:>7}  p99 {:>8.2} ms  errors {:>6}   ",
                second,
                window.agents_connected,
                run.spawned,
                window.sent,
                window.round_trip.p99_ms,
                run.stats.counters.errors.load(Ordering::Relaxed),
            );
        }
        windows.push(window);
        if config.mode == Mode::Soak && second % sample_secs == 0 {
            let gateway = sample(admin.clone(), cluster.clone()).await;
            let reconnects = run.stats.counters.reconnects.load(Ordering::Relaxed);
            // Envoy refreshes `server.memory_allocated` once per stats flush: a sample taken
            // sooner after the connect wave can still show the memory from before it.
            let settled =
                settled_since.is_some_and(|since| second >= since.saturating_add(ADMIN_FLUSH_SECS));
            soak_samples.push(SoakSample::new(
                second,
                gateway.as_ref(),
                reconnects,
                settled,
            ));
        }
        if config.mode == Mode::Ramp && second % interval_secs == 0 {
            let recent = windows
                .len()
                .saturating_sub(usize::try_from(interval_secs).unwrap_or(1));
            let step = ramp::judge_step(
                run.spawned,
                run.stats.counters.connected.load(Ordering::Relaxed),
                windows.get(recent..).unwrap_or_default(),
                Thresholds {
                    max_p99_ms: config.max_p99_ms,
                    max_error_rate: config.max_error_rate,
                },
            );
            let ok = step.ok;
            steps.push(step);
            if !ok {
                break;
            }
            if run.spawned >= config.agents {
                break;
            }
            run.spawn(run.spawned.saturating_add(config.step).min(config.agents))?;
        }
        if config.mode == Mode::Storm {
            let half = total_secs / 2;
            if second == half.max(1) && storm_at.is_none() {
                gateway_loaded = sample(admin.clone(), cluster.clone()).await;
                storm_at = Some(second);
                run.stats.set_all_connected(false);
                let _ = run.phase.send(Phase::Storm(1));
            }
            if let (Some(at), None) = (storm_at, storm_recovered_s) {
                if second > at
                    && run.stats.counters.connected.load(Ordering::Relaxed)
                        >= u64::from(run.spawned)
                {
                    storm_recovered_s = Some((second - at) as f64);
                }
            }
        }
        if second + 1 == total_secs && gateway_loaded.is_none() {
            gateway_loaded = sample(admin.clone(), cluster.clone()).await;
        }
    }
    if progress {
        eprintln!();
    }
    if gateway_loaded.is_none() {
        gateway_loaded = sample(admin.clone(), cluster.clone()).await;
    }
    let elapsed = started.elapsed();
    let _ = run.phase.send(Phase::Stop);
    // Every agent closes with 1000 and waits (bounded) for the answer; a second Ctrl-C, or
    // the bound, gives up on the stragglers.
    let shutdown = async { while run.agents.join_next().await.is_some() {} };
    let finished = tokio::select! {
        result = tokio::time::timeout(SHUTDOWN_WAIT, shutdown) => result.is_ok(),
        _ = tokio::signal::ctrl_c() => false,
    };
    if !finished {
        run.agents.abort_all();
    }
    let gateway_end = match &admin {
        Some(authority) => Some(settled_end_sample(authority, cluster.as_deref()).await),
        None => None,
    };
    let report = Report::build(
        &config,
        &run.stats,
        report::Observed {
            elapsed,
            spawned: run.spawned,
            windows,
            gateway_start,
            gateway_loaded,
            gateway_end,
            knee: ramp::knee(&steps),
            steps,
            storm_at,
            storm_recovered_s,
            soak_samples,
            interrupted,
        },
    );
    if let Some(path) = &config.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|err| format!("--json: cannot encode the report: {err}"))?;
        std::fs::write(path, text).map_err(|err| format!("--json: {}: {err}", path.display()))?;
    }
    if let Some(path) = &config.png {
        chart::write(path, &report.windows)
            .map_err(|err| format!("--png: {}: {err}", path.display()))?;
    }
    Ok(report)
}

/// The gateway figures after the run, once it has let go of it. Envoy refreshes its memory gauges
/// only at a stats flush, so a sample taken as the agents leave still shows the memory under
/// load. Waits (bounded) until the gateway's sessions and upstream streams are closed, then for the
/// memory gauge to move, which marks a flush after the close.
async fn settled_end_sample(authority: &str, cluster: Option<&str>) -> admin::GatewaySample {
    let open = |s: &admin::GatewaySample| {
        s.sessions_active.is_some_and(|n| n > 0.0) || s.upstream_rq_active.is_some_and(|n| n > 0)
    };
    let closing_until = Instant::now() + END_CLOSE_WAIT;
    let mut latest = admin::sample(authority, cluster).await;
    while open(&latest) && Instant::now() < closing_until {
        tokio::time::sleep(END_POLL).await;
        latest = admin::sample(authority, cluster).await;
    }
    let closed_memory = latest.memory_allocated;
    let flush_until = Instant::now() + Duration::from_secs(ADMIN_FLUSH_SECS + 1);
    while closed_memory.is_some() && Instant::now() < flush_until {
        tokio::time::sleep(END_POLL).await;
        let next = admin::sample(authority, cluster).await;
        let flushed = next.memory_allocated != closed_memory;
        latest = next;
        if flushed {
            break;
        }
    }
    latest
}
