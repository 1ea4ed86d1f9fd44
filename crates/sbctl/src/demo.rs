//! `sbctl demo`: the whole `make run` stack in one process. Development keys, the rendered
//! Envoy configuration, the mock platform (in-process) and Envoy (a child process), started in
//! that order and stopped together on SIGINT or SIGTERM, so nothing outlives the command.

use std::fs::{self, File};
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::net::{Ipv4Addr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, Context as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::time::{sleep, timeout, Instant};

use crate::check::{self, Verdict};
use crate::keygen::{self, KeyFile};
use crate::mock::{self, MockConfig};
use crate::render::{self, RenderOptions};

/// `--base-id` unless told otherwise: Envoy's hot-restart shared memory is named after it, so
/// two Envoys on one machine need different ids.
pub const DEFAULT_BASE_ID: u32 = 7420;
/// The `kid` of the development key in envoy/switchboard.yaml; tokens must carry it.
pub const DEV_KID: &str = "dev-ed25519";
/// Name of the mock platform instance.
pub const PLATFORM_NAME: &str = "platform-1";
/// The rendered configuration and Envoy's log, inside `--dir`.
pub const RENDERED_CONFIG: &str = "switchboard.yaml";
pub const ENVOY_LOG: &str = "envoy.log";
/// Envoy worker threads: two are enough for a demo on a laptop.
const ENVOY_CONCURRENCY: &str = "2";
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const READY_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How long the demo waits for the gateway's first platform token after Envoy is live.
const TOKEN_WAIT: Duration = Duration::from_secs(10);
const READY_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);
/// Largest `/ready` response read (the real one is a few dozen bytes).
const MAX_READY_RESPONSE_BYTES: u64 = 4096;
/// How long Envoy gets to drain after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
const MOCK_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Ctrl-C in a terminal signals Envoy and sbctl together, and Envoy may exit first: a stop
/// signal arriving this soon after Envoy's exit still counts as the reason for it.
const SIGNAL_RACE_WINDOW: Duration = Duration::from_millis(500);
const LOG_TAIL_LINES: usize = 20;
/// Only the end of the log is read for the tail.
const LOG_TAIL_BYTES: u64 = 64 * 1024;
const EXIT_OK: i32 = 0;
const EXIT_FAILED: i32 = 1;

/// Everything `sbctl demo` is told.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub envoy: PathBuf,
    pub wasm: PathBuf,
    pub template: PathBuf,
    /// Keys, the rendered configuration and Envoy's log go here.
    pub dir: PathBuf,
    pub gateway_port: u16,
    pub admin_port: u16,
    pub platform_port: u16,
    /// Mock platform events per second per session.
    pub event_rate: f64,
    pub base_id: u32,
}

/// Files the demo prepared, and what the example commands need from the configuration.
#[derive(Debug)]
struct Prepared {
    config_path: PathBuf,
    log_path: PathBuf,
    query_param: String,
}

/// Runs the demo until SIGINT or SIGTERM (exit code 0) or until Envoy fails (1).
pub fn run(options: &DemoOptions) -> anyhow::Result<i32> {
    let prepared = prepare(options)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    // `block_on` polls this future on the calling (main) thread, which lives as long as the
    // process; Envoy is spawned from it, which is what PR_SET_PDEATHSIG ties the child to.
    runtime.block_on(supervise(options, &prepared))
}

/// Checks the inputs, makes keys if missing, renders and validates the configuration.
fn prepare(options: &DemoOptions) -> anyhow::Result<Prepared> {
    if !options.envoy.is_file() {
        bail!(
            "envoy binary {} not found (`make envoy` installs it)",
            options.envoy.display()
        );
    }
    if !options.wasm.is_file() {
        bail!(
            "wasm module {} not found (build it with `cargo build --release --target wasm32-wasip1 -p switchboard`)",
            options.wasm.display()
        );
    }
    let ports = [
        ("gateway", options.gateway_port),
        ("admin", options.admin_port),
        ("platform", options.platform_port),
    ];
    for (index, (role, port)) in ports.iter().enumerate() {
        if let Some((other, _)) = ports.iter().skip(index + 1).find(|(_, p)| p == port) {
            bail!("the {role} and {other} ports are both {port}");
        }
    }
    // Envoy would only say so in its log; and another process answering on the admin port
    // could be mistaken for our Envoy being ready.
    for (role, port) in ports {
        StdTcpListener::bind((Ipv4Addr::LOCALHOST, port)).with_context(|| {
            format!("{role} port 127.0.0.1:{port} is not free (--{role}-port picks another)")
        })?;
    }

    for file in render::ensure_dev_keys(&options.dir)? {
        if let KeyFile::Written(path) = file {
            eprintln!("wrote {}", path.display());
        }
    }
    let template = render::read_template(&options.template)?;
    let rendered = render::render(
        &template,
        &options.dir,
        &RenderOptions {
            wasm: Some(options.wasm.clone()),
            listen_port: Some(options.gateway_port),
            admin_port: Some(options.admin_port),
            platform_port: Some(options.platform_port),
        },
    )
    .with_context(|| format!("rendering {}", options.template.display()))?;

    let checked = check::check_bytes(rendered.as_bytes())
        .with_context(|| format!("checking the rendered {}", options.template.display()))?;
    let problems: Vec<String> = checked.iter().flat_map(check::Checked::lines).collect();
    if !checked.iter().all(check::Checked::is_valid) {
        bail!(
            "the rendered {} is not a valid Switchboard configuration:\n{}",
            options.template.display(),
            problems.join("\n")
        );
    }
    let query_param = checked
        .iter()
        .find_map(|one| match &one.verdict {
            Verdict::Valid(config) => Some(config.identity.query_param.clone()),
            Verdict::Invalid(_) => None,
        })
        .unwrap_or_else(|| "access_token".to_owned());

    let config_path = options.dir.join(RENDERED_CONFIG);
    fs::write(&config_path, rendered)
        .with_context(|| format!("writing {}", config_path.display()))?;
    Ok(Prepared {
        config_path,
        log_path: options.dir.join(ENVOY_LOG),
        query_param,
    })
}

/// Starts the platform, runs Envoy, and stops the platform whatever happened to Envoy.
async fn supervise(options: &DemoOptions, prepared: &Prepared) -> anyhow::Result<i32> {
    // Installed first, so a Ctrl-C during startup is a clean stop rather than a kill.
    let mut stop = StopSignals::new().context("installing SIGINT/SIGTERM handlers")?;
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, options.platform_port))
        .await
        .with_context(|| {
            format!(
                "binding the platform port 127.0.0.1:{}",
                options.platform_port
            )
        })?;
    let platform = mock::spawn(
        MockConfig {
            name: PLATFORM_NAME.to_owned(),
            event_rate: options.event_rate,
            // The gateway owns the platform token: the platform insists on one, and a 10-minute
            // lifetime shows a rotation within minutes of starting.
            require_token: true,
            token_lifetime_secs: 600,
            ..MockConfig::default()
        },
        listener,
    )
    .context("starting the mock platform")?;

    let outcome = run_envoy(options, prepared, &mut stop).await;

    match timeout(MOCK_STOP_TIMEOUT, platform.shutdown()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("sbctl: mock platform: {error}"),
        Err(_) => eprintln!("sbctl: mock platform did not stop within 5 s; abandoning it"),
    }
    outcome
}

/// How Envoy's startup ended.
enum Startup {
    Ready,
    TimedOut,
    Exited(ExitStatus),
    Stopped(&'static str),
}

async fn run_envoy(
    options: &DemoOptions,
    prepared: &Prepared,
    stop: &mut StopSignals,
) -> anyhow::Result<i32> {
    let mut envoy = spawn_envoy(options, prepared)?;
    let startup = tokio::select! {
        status = envoy.wait() => Startup::Exited(status.context("waiting for envoy")?),
        name = stop.recv() => Startup::Stopped(name),
        ready = async {
            let live = wait_until_live(options.admin_port).await;
            if live && !wait_for_platform_token(options.admin_port).await {
                eprintln!(
                    "sbctl: the gateway has no platform token yet; upgrades get 503 until it does"
                );
            }
            live
        } => {
            if ready { Startup::Ready } else { Startup::TimedOut }
        }
    };
    match startup {
        Startup::Ready => {}
        Startup::Exited(status) => {
            eprintln!("sbctl: envoy exited during startup ({status})");
            print_log_tail(&prepared.log_path);
            return Ok(EXIT_FAILED);
        }
        Startup::TimedOut => {
            eprintln!(
                "sbctl: envoy not ready within {} s",
                READY_TIMEOUT.as_secs()
            );
            stop_envoy(&mut envoy, stop).await?;
            print_log_tail(&prepared.log_path);
            return Ok(EXIT_FAILED);
        }
        Startup::Stopped(name) => {
            eprintln!("sbctl: {name} during startup; stopping");
            stop_envoy(&mut envoy, stop).await?;
            return Ok(EXIT_OK);
        }
    }

    let text = ready_text(
        options,
        prepared,
        &sbctl_command(),
        &python_command(&options.envoy),
    );
    let mut stdout = io::stdout().lock();
    // A reader that took the ready line and left is no reason to stop the stack.
    if let Err(error) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        eprintln!("sbctl: writing the ready line: {error}");
    }
    drop(stdout);

    tokio::select! {
        status = envoy.wait() => {
            let status = status.context("waiting for envoy")?;
            if let Ok(name) = timeout(SIGNAL_RACE_WINDOW, stop.recv()).await {
                eprintln!("sbctl: {name}: stopped");
                return Ok(EXIT_OK);
            }
            eprintln!("sbctl: envoy exited on its own ({status})");
            print_log_tail(&prepared.log_path);
            Ok(EXIT_FAILED)
        }
        name = stop.recv() => {
            eprintln!("sbctl: {name}: stopping");
            stop_envoy(&mut envoy, stop).await?;
            Ok(EXIT_OK)
        }
    }
}

fn spawn_envoy(options: &DemoOptions, prepared: &Prepared) -> anyhow::Result<Child> {
    let log = File::create(&prepared.log_path)
        .with_context(|| format!("creating {}", prepared.log_path.display()))?;
    let log_for_stdout = log
        .try_clone()
        .with_context(|| format!("opening {}", prepared.log_path.display()))?;
    let mut command = Command::new(&options.envoy);
    command
        .arg("-c")
        .arg(&prepared.config_path)
        .args(["--concurrency", ENVOY_CONCURRENCY, "--log-level", "warn"])
        .arg("--base-id")
        .arg(options.base_id.to_string())
        .stdin(Stdio::null())
        .stdout(log_for_stdout)
        .stderr(log)
        // Last resort if this function's caller bails out with the child still running.
        .kill_on_drop(true);
    die_with_parent(&mut command)?;
    command
        .spawn()
        .with_context(|| format!("starting {}", options.envoy.display()))
}

/// Makes the kernel send Envoy SIGTERM when sbctl dies, even by SIGKILL, so a killed demo
/// leaves no Envoy holding the ports.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) -> anyhow::Result<()> {
    let parent = std::process::id();
    let death_signal =
        libc::c_ulong::try_from(libc::SIGTERM).context("SIGTERM as a prctl argument")?;
    // SAFETY: the closure runs in the child between fork and exec, where only
    // async-signal-safe calls are sound. prctl(2) and getppid(2) are; nothing here allocates
    // or takes a lock (the errors are built from errno values).
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal) != 0 {
                return Err(io::Error::last_os_error());
            }
            // If sbctl died before prctl took effect the signal will never come: do not start.
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) -> anyhow::Result<()> {
    Ok(())
}

/// SIGTERM, up to [`STOP_GRACE`] to exit (a second stop signal cuts that short), then SIGKILL;
/// always reaps.
async fn stop_envoy(envoy: &mut Child, stop: &mut StopSignals) -> anyhow::Result<ExitStatus> {
    if let Some(status) = envoy.try_wait().context("checking on envoy")? {
        return Ok(status);
    }
    if let Some(pid) = envoy.id().and_then(|pid| libc::pid_t::try_from(pid).ok()) {
        // SAFETY: kill(2) has no memory-safety preconditions. `pid` is our child, which
        // try_wait just found unreaped; only this Child reaps it, so the pid cannot have been
        // reused by another process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
    tokio::select! {
        status = envoy.wait() => return status.context("waiting for envoy"),
        () = sleep(STOP_GRACE) => {
            eprintln!("sbctl: envoy still running {} s after SIGTERM; killing it", STOP_GRACE.as_secs());
        }
        name = stop.recv() => eprintln!("sbctl: {name} again; killing envoy"),
    }
    // Fails only if the child is already gone, which the wait below reports either way.
    let _ = envoy.start_kill();
    envoy.wait().await.context("waiting for envoy")
}

/// Polls the admin `/ready` until it says LIVE (true) or [`READY_TIMEOUT`] passes (false).
async fn wait_until_live(admin_port: u16) -> bool {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if admin_says_live(admin_port).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(READY_POLL_INTERVAL).await;
    }
}

/// One bounded admin GET; the raw response, or `None`.
async fn admin_get(admin_port: u16, path: &str) -> Option<Vec<u8>> {
    let exchange = async {
        let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, admin_port)).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{admin_port}\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream
            .take(MAX_READY_RESPONSE_BYTES)
            .read_to_end(&mut response)
            .await?;
        Ok::<_, io::Error>(response)
    };
    match timeout(READY_REQUEST_TIMEOUT, exchange).await {
        Ok(Ok(response)) => Some(response),
        _ => None,
    }
}

async fn admin_says_live(admin_port: u16) -> bool {
    admin_get(admin_port, "/ready")
        .await
        .is_some_and(|response| is_live_response(&response))
}

/// The demo configuration owns the platform token: announcing the stack before the first token
/// is stored would hand the first agent a 503. Waits at most [`TOKEN_WAIT`].
async fn wait_for_platform_token(admin_port: u16) -> bool {
    let deadline = Instant::now() + TOKEN_WAIT;
    let path = "/stats?filter=token_refreshes.result.ok$";
    loop {
        if let Some(response) = admin_get(admin_port, path).await {
            let text = String::from_utf8_lossy(&response);
            let stored = text.lines().any(|line| {
                line.split_once(": ").is_some_and(|(name, value)| {
                    name.ends_with("switchboard.token_refreshes.result.ok")
                        && value.trim().parse::<u64>().is_ok_and(|n| n > 0)
                })
            });
            if stored {
                return true;
            }
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(READY_POLL_INTERVAL).await;
    }
}

/// Envoy's admin `/ready` answers 200 with the body `LIVE` once the server is initialised and
/// its listeners are up (503 and `PRE_INITIALIZING` or `INITIALIZING` before).
fn is_live_response(response: &[u8]) -> bool {
    let text = String::from_utf8_lossy(response);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.starts_with("HTTP/1.1 200 ") && body.lines().any(|line| line.trim() == "LIVE")
}

/// The ready line (tests wait for exactly its prefix) and copy-paste commands to try the stack.
fn ready_text(options: &DemoOptions, prepared: &Prepared, sbctl: &str, python: &str) -> String {
    let gateway = format!("127.0.0.1:{}", options.gateway_port);
    let admin = format!("http://127.0.0.1:{}", options.admin_port);
    let platform = format!("http://127.0.0.1:{}", options.platform_port);
    let key = shell_quote(&options.dir.join(keygen::ED25519_PRIVATE).to_string_lossy());
    let log = shell_quote(&prepared.log_path.to_string_lossy());
    let query_param = &prepared.query_param;
    format!(
        "switchboard ready: gateway ws://{gateway}  admin {admin}  platform {platform}\n\
         try it:\n\
         \x20 TOKEN=$({sbctl} mint-token --agent agent-1 --tenant acme --key {key} --kid {DEV_KID})\n\
         \x20 {python} -m websockets \"ws://{gateway}/v2/realtime?{query_param}=$TOKEN\"\n\
         \x20 curl -s {platform}/_mock/sessions\n\
         \x20 curl -s {admin}/stats | grep switchboard\n\
         \x20 tail -f {log}\n\
         Ctrl-C stops everything.\n"
    )
}

/// How to run this sbctl from the current directory: relative when it is below it.
fn sbctl_command() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "sbctl".to_owned();
    };
    let shown = std::env::current_dir()
        .ok()
        .and_then(|cwd| exe.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| exe.clone());
    shell_quote(&shown.to_string_lossy())
}

/// The Python next to Envoy (the virtualenv `make envoy` made, which has the `websockets`
/// package and its interactive client) or else `python3`.
fn python_command(envoy: &Path) -> String {
    let python = envoy.with_file_name("python");
    if python.is_file() {
        shell_quote(&python.to_string_lossy())
    } else {
        "python3".to_owned()
    }
}

/// `text` as one POSIX shell word.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Prints the end of Envoy's log to stderr: why it failed is almost always there.
fn print_log_tail(path: &Path) {
    match log_tail(path, LOG_TAIL_LINES) {
        Ok(lines) if lines.is_empty() => eprintln!("sbctl: {} is empty", path.display()),
        Ok(lines) => {
            eprintln!("sbctl: last lines of {}:", path.display());
            for line in lines {
                eprintln!("{line}");
            }
        }
        Err(error) => eprintln!("sbctl: cannot read {}: {error}", path.display()),
    }
}

fn log_tail(path: &Path, count: usize) -> io::Result<Vec<String>> {
    let mut file = File::open(path)?;
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES)))?;
    let mut bytes = Vec::new();
    file.take(LOG_TAIL_BYTES).read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(count);
    Ok(lines.into_iter().skip(skip).map(str::to_owned).collect())
}

/// SIGINT and SIGTERM, handled (not fatal) from the moment this exists.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn new() -> io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Resolves with the signal's name when either arrives.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly on an unexpected error"
)]
mod tests {
    use super::*;

    fn options() -> DemoOptions {
        DemoOptions {
            envoy: PathBuf::from(".venv/bin/envoy"),
            wasm: PathBuf::from("target/wasm32-wasip1/release/switchboard.wasm"),
            template: PathBuf::from("envoy/switchboard.yaml"),
            dir: PathBuf::from(".dev"),
            gateway_port: 10000,
            admin_port: 9901,
            platform_port: 9001,
            event_rate: 1.0,
            base_id: DEFAULT_BASE_ID,
        }
    }

    #[test]
    fn ready_text_is_the_ready_line_then_commands() {
        let prepared = Prepared {
            config_path: PathBuf::from(".dev/switchboard.yaml"),
            log_path: PathBuf::from(".dev/envoy.log"),
            query_param: "access_token".to_owned(),
        };
        let text = ready_text(
            &options(),
            &prepared,
            "target/release/sbctl",
            ".venv/bin/python",
        );
        assert_eq!(
            text,
            "switchboard ready: gateway ws://127.0.0.1:10000  admin http://127.0.0.1:9901  platform http://127.0.0.1:9001\n\
             try it:\n\
             \x20 TOKEN=$(target/release/sbctl mint-token --agent agent-1 --tenant acme --key .dev/agent-ed25519.pem --kid dev-ed25519)\n\
             \x20 .venv/bin/python -m websockets \"ws://127.0.0.1:10000/v2/realtime?access_token=$TOKEN\"\n\
             \x20 curl -s http://127.0.0.1:9001/_mock/sessions\n\
             \x20 curl -s http://127.0.0.1:9901/stats | grep switchboard\n\
             \x20 tail -f .dev/envoy.log\n\
             Ctrl-C stops everything.\n"
        );
    }

    #[test]
    fn live_only_on_200_with_live_body() {
        assert!(is_live_response(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 5\r\n\r\nLIVE\n"
        ));
        assert!(!is_live_response(
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 17\r\n\r\nPRE_INITIALIZING\n"
        ));
        assert!(!is_live_response(b"HTTP/1.1 200 OK\r\n\r\nDRAINING\n"));
        assert!(!is_live_response(b"HTTP/1.1 200 OK\r\ncontent-le"));
    }

    #[test]
    fn shell_words() {
        assert_eq!(
            shell_quote(".dev/agent-ed25519.pem"),
            ".dev/agent-ed25519.pem"
        );
        assert_eq!(shell_quote("my dir/x"), "'my dir/x'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("envoy.log");
        let text: String = (1..=30).map(|n| format!("line {n}\n")).collect();
        fs::write(&path, text).unwrap();
        let tail = log_tail(&path, 20).unwrap();
        assert_eq!(tail.len(), 20);
        assert_eq!(tail.first().map(String::as_str), Some("line 11"));
        assert_eq!(tail.last().map(String::as_str), Some("line 30"));
    }

    #[test]
    fn prepare_refuses_clashing_ports_and_missing_binaries() {
        let dir = tempfile::tempdir().unwrap();
        let envoy = dir.path().join("envoy");
        let wasm = dir.path().join("switchboard.wasm");
        let mut options = DemoOptions {
            envoy: envoy.clone(),
            wasm: wasm.clone(),
            dir: dir.path().join(".dev"),
            ..options()
        };
        let error = prepare(&options).unwrap_err().to_string();
        assert!(error.starts_with("envoy binary "), "{error}");
        fs::write(&envoy, "").unwrap();
        let error = prepare(&options).unwrap_err().to_string();
        assert!(error.starts_with("wasm module "), "{error}");
        fs::write(&wasm, "").unwrap();
        options.admin_port = options.platform_port;
        let error = prepare(&options).unwrap_err().to_string();
        assert_eq!(error, "the admin and platform ports are both 9001");
    }
}
