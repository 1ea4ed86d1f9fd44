//! `sbctl`: argument parsing and dispatch only; the work lives in the `sbctl` library.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};

use clap::{Args, Parser, Subcommand};
use sbctl::keygen::{self, KeyFile, KeyKinds};
use sbctl::mint::{self, Alg, MintSpec, SigningKey};
use sbctl::mock::{
    self, EnvelopeMode, MockConfig, MockPlatform, Secret, SessionFault, TokenFault, TokenFormat,
};
use sbctl::render::{self, RenderOptions};

#[derive(Debug, Parser)]
#[command(name = "sbctl", version, about = "Switchboard developer tooling")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate development signing keys for agent JWTs (kept if present).
    Keygen(KeygenArgs),
    /// Print a signed agent JWT on stdout.
    MintToken(MintArgs),
    /// Run a mock CCaaS platform (WebSocket + OAuth token endpoint) until SIGINT/SIGTERM.
    MockPlatform(MockArgs),
    /// Validate Switchboard filter configurations: the filter JSON, or every Switchboard
    /// filter in an Envoy YAML.
    CheckConfig(CheckArgs),
    /// Render an Envoy YAML template: development key, wasm path and ports.
    RenderConfig(RenderArgs),
    /// Run the demo stack (mock platform and Envoy with the filter) until SIGINT/SIGTERM.
    #[cfg(unix)]
    Demo(DemoArgs),
    /// Simulate agent desktops against a gateway: steady, ramp, soak or storm; report latency,
    /// throughput, errors and gateway figures.
    #[cfg(unix)]
    Bench(BenchArgs),
}

#[cfg(unix)]
#[derive(Debug, Args)]
struct BenchArgs {
    /// Gateway (or platform) WebSocket URL.
    #[arg(long)]
    url: String,
    /// steady, ramp, soak or storm.
    #[arg(long, default_value = "steady")]
    mode: String,
    /// Agents (the ramp's ceiling).
    #[arg(long, default_value_t = 100)]
    agents: u32,
    /// Run time, e.g. 30s, 5m.
    #[arg(long, default_value = "30s", value_parser = duration_arg)]
    duration: Duration,
    /// Upgrades per second while connecting (0: all at once).
    #[arg(long, default_value_t = 500.0)]
    connect_rate: f64,
    /// Random extra delay before each connect, up to this.
    #[arg(long, default_value = "0s", value_parser = duration_arg)]
    jitter: Duration,
    /// Messages per agent per second, echoed back by the platform.
    #[arg(long, default_value_t = 1.0)]
    msg_rate: f64,
    /// Pad bytes per message.
    #[arg(long, default_value_t = 256)]
    payload: usize,
    /// Message envelope: genesys or nice (the mock platform's shapes), or generic.
    #[arg(long, visible_alias = "profile-envelope", default_value = "genesys")]
    envelope: String,
    /// WebSocket ping interval (0s: none).
    #[arg(long, default_value = "0s", value_parser = duration_arg)]
    ping_interval: Duration,
    /// Agent JWT signing key (PEM); every agent gets its own token.
    #[arg(long, default_value = mint::DEFAULT_KEY_PATH)]
    key: PathBuf,
    /// `kid` of the agent tokens.
    #[arg(long, default_value = "dev-ed25519")]
    kid: String,
    /// Tenants the agents are spread over (tenant-0, tenant-1, ...).
    #[arg(long, default_value_t = 1)]
    tenants: u32,
    /// Send no agent token (the mock platform directly).
    #[arg(long)]
    no_token: bool,
    /// Where the agent token goes: header (Authorization: Bearer), query or subprotocol.
    #[arg(long, default_value = "header")]
    token_in: String,
    /// Query parameter of --token-in query.
    #[arg(long, default_value = "access_token")]
    token_query_param: String,
    /// Sec-WebSocket-Protocol entry prefix of --token-in subprotocol.
    #[arg(long, default_value = "bearer.")]
    token_subprotocol_prefix: String,
    /// Platform subprotocol to offer [default: with --token-in subprotocol, the envelope's:
    /// v2.realtime-events for genesys, nice.digital.v1 for nice].
    #[arg(long)]
    subprotocol: Option<String>,
    /// Connection attempts per connect; refusals are retried after their Retry-After.
    #[arg(long, default_value_t = 5)]
    attempts: u32,
    /// Envoy admin, host:port or http://host:port, sampled for memory and Switchboard metrics.
    #[arg(long)]
    admin: Option<String>,
    /// Cluster whose upstream connections are reported.
    #[arg(long)]
    upstream_cluster: Option<String>,
    /// Ramp: agents added per step.
    #[arg(long, default_value_t = 100)]
    step: u32,
    /// Ramp: time per step.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    interval: Duration,
    /// Ramp: a step whose round-trip p99 passes this (ms) ends the ramp.
    #[arg(long, default_value_t = 15.0)]
    max_p99: f64,
    /// Ramp: a step whose errors per message pass this ends the ramp.
    #[arg(long, default_value_t = 0.01)]
    max_error_rate: f64,
    /// Soak: sample period of the gateway's memory and upgrades and the agents' reconnects.
    #[arg(long, default_value = "10s", value_parser = duration_arg)]
    sample_every: Duration,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a PNG chart of round-trip percentiles per second here.
    #[arg(long)]
    png: Option<PathBuf>,
}

fn duration_arg(text: &str) -> Result<Duration, String> {
    switchboard_core::duration::parse_duration(text).map(|d| Duration::from_millis(d.as_millis()))
}

#[derive(Debug, Args)]
struct KeygenArgs {
    /// Directory for the key files (created if missing).
    #[arg(long)]
    dir: PathBuf,
    /// Replace existing keys.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct MintArgs {
    /// Agent id (goes into --claim-agent).
    #[arg(long)]
    agent: String,
    /// Tenant id (goes into --claim-tenant).
    #[arg(long)]
    tenant: String,
    /// Region (goes into --claim-region); omitted if not given.
    #[arg(long)]
    region: Option<String>,
    /// Lifetime in seconds: exp = now + ttl.
    #[arg(long, default_value_t = 3600)]
    ttl: u64,
    /// Private key, PKCS#8 PEM (or an HS256 secret file) [default: .dev/agent-ed25519.pem].
    #[arg(long)]
    key: Option<PathBuf>,
    /// Signing algorithm [default: inferred from the key file name, then its content].
    #[arg(long, value_enum)]
    alg: Option<Alg>,
    /// HS256 secret file (base64 of at least 32 bytes); implies --alg HS256.
    #[arg(long, conflicts_with = "key")]
    hs_secret_file: Option<PathBuf>,
    /// `kid` header parameter.
    #[arg(long)]
    kid: Option<String>,
    /// `iss` claim.
    #[arg(long, default_value = "switchboard-dev")]
    iss: String,
    /// `aud` claim.
    #[arg(long, default_value = "switchboard")]
    aud: String,
    /// Claim name for the agent id (empty: leave the claim out).
    #[arg(long, default_value = "sub")]
    claim_agent: String,
    /// Claim name for the tenant id (empty: leave the claim out).
    #[arg(long, default_value = "tenant")]
    claim_tenant: String,
    /// Claim name for the region.
    #[arg(long, default_value = "region")]
    claim_region: String,
    /// nbf = now + SECS (may be negative) instead of now.
    #[arg(long, allow_negative_numbers = true, value_name = "SECS")]
    nbf_offset: Option<i64>,
    /// exp = now + SECS (may be negative, for an expired token) instead of now + ttl.
    #[arg(long, allow_negative_numbers = true, value_name = "SECS")]
    exp_offset: Option<i64>,
}

#[derive(Debug, Args)]
struct MockArgs {
    /// Address to listen on (port 0 picks a free port; the ready line shows the real one).
    #[arg(long, default_value = mock::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Instance name, used in records and event ids.
    #[arg(long, default_value = "platform-1")]
    name: String,
    /// Unsolicited events per second per session. 0 is the protocol-conformance mode: echo
    /// only, so every message a client receives is the echo of one it sent, a replay it asked
    /// for (since/cursor) or a burst requested over POST /_mock/burst.
    #[arg(long, default_value_t = 1.0)]
    event_rate: f64,
    /// Event envelope: auto, genesys or nice.
    #[arg(long, default_value = "auto")]
    envelope: EnvelopeMode,
    /// Session (and token-request) records kept.
    #[arg(long, default_value_t = 10_000)]
    max_records: usize,
    /// Access-token lifetime in seconds (`expires_in`), at least 1.
    #[arg(long, default_value_t = 3600)]
    token_lifetime: u64,
    /// Access-token shape: opaque (random base64url) or jwt (HS256 JWT with iss, sub, scope,
    /// iat, exp and jti, signed with a random per-process key).
    #[arg(long, default_value = "opaque")]
    token_format: TokenFormat,
    /// Make the JWT `exp` claim, and the token's real expiry, this many seconds earlier than
    /// `expires_in` implies (0..=86400; needs --token-format jwt).
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    jwt_exp_skew: u64,
    /// Require a valid access token from /oauth/token on every WebSocket upgrade
    /// (`Authorization: Bearer` or `?access_token=`; otherwise 401, counted in GET /_mock/health),
    /// and close a session with 1008 "token expired" when its token expires before an
    /// `auth_refresh` frame brings a valid one. An invalid `auth_refresh` closes it with 1008
    /// "invalid auth_refresh". Without this flag `auth_refresh` frames are still consumed and
    /// recorded, never enforced.
    #[arg(long)]
    require_token: bool,
    /// OAuth client id accepted by /oauth/token.
    #[arg(long, default_value = "switchboard")]
    client_id: String,
    /// OAuth client secret accepted by /oauth/token.
    #[arg(
        long,
        default_value = "switchboard-dev-secret",
        hide_default_value = true
    )]
    client_secret: String,
    /// Token endpoint fault: none, down, slow, 500, garbage or invalid_grant.
    #[arg(long, default_value = "none")]
    token_fault: TokenFault,
    /// Delay of the `slow` token fault, in milliseconds.
    #[arg(long, default_value_t = mock::oauth::DEFAULT_SLOW_DELAY_MS)]
    token_fault_delay_ms: u64,
    /// Connections served at once.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
    /// Log session open/close to stderr (never tokens, secrets or payloads).
    #[arg(long, short)]
    verbose: bool,
    /// On a replay, also resend this many events from before the resume point, so duplicates
    /// really arrive. A replay is asked for in the upgrade query: since=<RFC 3339 time> (the
    /// client has every event sent at or before it) or cursor=<seq> (the decimal per-agent seq,
    /// Genesys metadata.seq / NICE payload.seq, of the last event the client processed).
    #[arg(long, default_value_t = 3)]
    replay_overlap: usize,
    /// Events kept per agent for replay.
    #[arg(long, default_value_t = 1000)]
    history_events: usize,
    /// Agents whose event history is kept; the least recently active is forgotten first.
    #[arg(long, default_value_t = 10_000)]
    history_agents: usize,
    /// Accept permessage-deflate (RFC 7692) when a client offers it, and compress what is sent.
    #[arg(long)]
    deflate: bool,
    /// Fault of every session that does not choose one with ?fault=: none, misrouted,
    /// malformed, oversized, masked, reserved-opcode, rsv or drop.
    #[arg(long, default_value = "none")]
    fault: SessionFault,
    /// Events a session sends before a frame fault (malformed, oversized, masked,
    /// reserved-opcode, rsv) is written; ?fault_after= overrides it per session.
    #[arg(long, default_value_t = 0)]
    fault_after: u64,
    /// Events a `drop` session sends before closing TCP without a Close frame; ?fault_after=
    /// overrides it per session.
    #[arg(long, default_value_t = mock::fault::DEFAULT_DROP_AFTER)]
    drop_after: u64,
    /// Size in bytes of the `oversized` fault's single text message.
    #[arg(long, default_value_t = mock::fault::DEFAULT_OVERSIZED_BYTES)]
    oversized_bytes: usize,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The filter's JSON configuration, or an Envoy YAML with Switchboard filters.
    path: PathBuf,
    /// Also print the effective configuration of each valid filter.
    #[arg(long)]
    print: bool,
}

#[derive(Debug, Args)]
struct RenderArgs {
    /// Envoy YAML template (e.g. envoy/switchboard.yaml).
    #[arg(long)]
    template: PathBuf,
    /// Development keys directory; keys are generated there if absent.
    #[arg(long)]
    dir: PathBuf,
    /// Where to write the rendered YAML.
    #[arg(long)]
    out: PathBuf,
    /// Wasm module to load instead of the template's (written as an absolute path).
    #[arg(long)]
    wasm: Option<PathBuf>,
    /// Gateway listener port (replaces `port_value: 10000`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    listen_port: Option<u16>,
    /// Envoy admin port (replaces `port_value: 9901`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    admin_port: Option<u16>,
    /// Platform port (replaces `port_value: 9001`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    platform_port: Option<u16>,
}

#[cfg(unix)]
#[derive(Debug, Args)]
struct DemoArgs {
    /// Envoy binary.
    #[arg(long, default_value = ".venv/bin/envoy")]
    envoy: PathBuf,
    /// The filter's wasm module.
    #[arg(long, default_value = sbctl::render::TEMPLATE_WASM_PATH)]
    wasm: PathBuf,
    /// Envoy YAML template.
    #[arg(long, default_value = "envoy/switchboard.yaml")]
    template: PathBuf,
    /// Directory for keys, the rendered switchboard.yaml and envoy.log.
    #[arg(long, default_value = ".dev")]
    dir: PathBuf,
    /// Gateway (WebSocket) port on 127.0.0.1.
    #[arg(long, default_value_t = sbctl::render::TEMPLATE_GATEWAY_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    gateway_port: u16,
    /// Envoy admin port on 127.0.0.1.
    #[arg(long, default_value_t = sbctl::render::TEMPLATE_ADMIN_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    admin_port: u16,
    /// Mock platform port on 127.0.0.1.
    #[arg(long, default_value_t = sbctl::render::TEMPLATE_PLATFORM_PORT, value_parser = clap::value_parser!(u16).range(1..))]
    platform_port: u16,
    /// Mock platform events per second per session (0: echo only).
    #[arg(long, default_value_t = 1.0)]
    event_rate: f64,
    /// Envoy --base-id; two Envoys on one machine need different ones.
    #[arg(long, default_value_t = sbctl::demo::DEFAULT_BASE_ID)]
    base_id: u32,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Keygen(args) => run_keygen(&args).map(|()| 0),
        Command::MintToken(args) => run_mint(&args).map(|()| 0),
        Command::MockPlatform(args) => run_mock(args).map(|()| 0),
        Command::CheckConfig(args) => sbctl::check::run(&args.path, args.print),
        Command::RenderConfig(args) => run_render(&args).map(|()| 0),
        #[cfg(unix)]
        Command::Demo(args) => run_demo(args),
        #[cfg(unix)]
        Command::Bench(args) => run_bench(args),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => {
            eprintln!("sbctl: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(unix)]
fn run_bench(args: BenchArgs) -> anyhow::Result<i32> {
    use sbctl::load::agent::{Envelope, Presentation, TokenIn};
    use sbctl::load::{self, BenchConfig, Mode, Tokens};
    let Some(mode) = Mode::parse(&args.mode) else {
        bail!(
            "--mode: {:?} is not one of steady, ramp, soak, storm",
            args.mode
        );
    };
    let Some(envelope) = Envelope::parse(&args.envelope) else {
        bail!(
            "--envelope: {:?} is not one of genesys, nice, generic",
            args.envelope
        );
    };
    let Some(token_in) = TokenIn::parse(&args.token_in) else {
        bail!(
            "--token-in: {:?} is not one of header, query, subprotocol",
            args.token_in
        );
    };
    let presentation = Presentation::new(
        // Without a token there is nothing to place.
        if args.no_token {
            TokenIn::Header
        } else {
            token_in
        },
        args.token_query_param,
        args.token_subprotocol_prefix,
        args.subprotocol,
        envelope,
    )
    .map_err(anyhow::Error::msg)?;
    let tokens = if args.no_token {
        Tokens::None
    } else {
        let key = SigningKey::load(&args.key, None)
            .with_context(|| format!("--key: loading {}", args.key.display()))?;
        Tokens::Mint {
            key: std::sync::Arc::new(key),
            kid: (!args.kid.is_empty()).then_some(args.kid),
            tenants: args.tenants.max(1),
            ttl_secs: 24 * 3600,
        }
    };
    let config = BenchConfig {
        url: args.url,
        mode,
        agents: args.agents,
        duration: args.duration,
        connect_rate: args.connect_rate,
        jitter: args.jitter,
        msg_rate: args.msg_rate,
        payload: args.payload,
        envelope,
        ping_interval: (!args.ping_interval.is_zero()).then_some(args.ping_interval),
        tokens,
        presentation,
        attempts: args.attempts,
        admin: args.admin,
        upstream_cluster: args.upstream_cluster,
        step: args.step,
        interval: args.interval,
        max_p99_ms: args.max_p99,
        max_error_rate: args.max_error_rate,
        sample_every: args.sample_every,
        json: args.json,
        png: args.png,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let report = runtime
        .block_on(load::run(config))
        .map_err(anyhow::Error::msg)?;
    print!("{}", report.table());
    Ok(0)
}

fn run_keygen(args: &KeygenArgs) -> anyhow::Result<()> {
    let files = keygen::generate(&args.dir, args.force, KeyKinds::ALL)?;
    for file in files {
        match file {
            KeyFile::Written(path) => println!("wrote {}", path.display()),
            KeyFile::Kept(path) => {
                eprintln!("kept {} (exists; --force replaces it)", path.display());
            }
        }
    }
    Ok(())
}

fn run_render(args: &RenderArgs) -> anyhow::Result<()> {
    for file in render::ensure_dev_keys(&args.dir)? {
        if let KeyFile::Written(path) = file {
            eprintln!("wrote {}", path.display());
        }
    }
    let template = render::read_template(&args.template)?;
    let options = RenderOptions {
        wasm: args.wasm.clone(),
        listen_port: args.listen_port,
        admin_port: args.admin_port,
        platform_port: args.platform_port,
    };
    let rendered = render::render(&template, &args.dir, &options)
        .with_context(|| format!("rendering {}", args.template.display()))?;
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&args.out, rendered)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

#[cfg(unix)]
fn run_demo(args: DemoArgs) -> anyhow::Result<i32> {
    sbctl::demo::run(&sbctl::demo::DemoOptions {
        envoy: args.envoy,
        wasm: args.wasm,
        template: args.template,
        dir: args.dir,
        gateway_port: args.gateway_port,
        admin_port: args.admin_port,
        platform_port: args.platform_port,
        event_rate: args.event_rate,
        base_id: args.base_id,
    })
}

fn run_mint(args: &MintArgs) -> anyhow::Result<()> {
    let key = match &args.hs_secret_file {
        Some(path) => {
            if let Some(alg) = args.alg.filter(|alg| *alg != Alg::HS256) {
                bail!(mint::MintError::AlgMismatch(alg));
            }
            SigningKey::load_hs256_secret(path)?
        }
        None => {
            let path = args
                .key
                .clone()
                .unwrap_or_else(|| PathBuf::from(mint::DEFAULT_KEY_PATH));
            SigningKey::load(&path, args.alg)
                .with_context(|| format!("loading key {}", path.display()))?
        }
    };
    let spec = MintSpec {
        agent: args.agent.clone(),
        tenant: args.tenant.clone(),
        region: args.region.clone(),
        ttl_secs: args.ttl,
        kid: args.kid.clone(),
        iss: args.iss.clone(),
        aud: args.aud.clone(),
        claim_agent: args.claim_agent.clone(),
        claim_tenant: args.claim_tenant.clone(),
        claim_region: args.claim_region.clone(),
        nbf_offset: args.nbf_offset,
        exp_offset: args.exp_offset,
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("system clock is before 1970")?
        .as_secs();
    println!("{}", mint::mint(&spec, &key, now)?);
    Ok(())
}

fn run_mock(args: MockArgs) -> anyhow::Result<()> {
    let platform = MockPlatform::new(MockConfig {
        name: args.name,
        event_rate: args.event_rate,
        envelope: args.envelope,
        max_records: args.max_records,
        token_lifetime_secs: args.token_lifetime,
        client_id: args.client_id,
        client_secret: Secret::new(args.client_secret),
        token_fault: args.token_fault,
        token_fault_delay_ms: args.token_fault_delay_ms,
        max_connections: args.max_connections,
        verbose: args.verbose,
        replay_overlap: args.replay_overlap,
        history_events_per_agent: args.history_events,
        history_agents: args.history_agents,
        deflate: args.deflate,
        fault: args.fault,
        fault_after: args.fault_after,
        drop_after: args.drop_after,
        oversized_bytes: args.oversized_bytes,
        require_token: args.require_token,
        token_format: args.token_format,
        jwt_exp_skew_secs: args.jwt_exp_skew,
        ..MockConfig::default()
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let bound = listener.local_addr().context("reading the bound address")?;
        // Tests wait for exactly this line to learn the port.
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "mock-platform listening on {bound}")?;
        stdout.flush()?;
        drop(stdout);
        platform.serve(listener, shutdown_signal()).await?;
        Ok(())
    })
}

/// Resolves on SIGINT or SIGTERM. If a handler cannot be installed, that signal keeps its
/// default action (terminate), which is still a stop.
async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                terminate.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
}
