//! `make bench`: `sbctl bench` against the same mock platform through each way a user could
//! front it, side by side and as ratios: directly, bare Envoy (the same bootstrap without the
//! filter), Envoy + Switchboard with every feature on, nginx, and Envoy + Switchboard with an
//! HTTP/2 upstream (RFC 8441). A benchmark, not a test: it prints figures and asserts only that
//! each run completed and reported.
//!
//! Scenarios (sizes from the environment; the defaults are the performance targets):
//! - throughput: `TPUT_AGENTS` (1,000) × `TPUT_RATE` (10) msg/s for `TPUT_SECS` (20) on every
//!   target;
//! - scale: `SCALE_AGENTS` (10,000) connecting at 500/s, then 1 msg/s each for `SCALE_SECS` (90)
//!   in all, on bare Envoy and on Switchboard: round-trip p99 (whole run, and once everyone is
//!   connected), and gateway memory per session above bare Envoy;
//! - burst: `BURST_AGENTS` (500) connecting at once through Switchboard: abnormal closes;
//! - HTTP/2 upstream: `H2_AGENTS` (1,000) through Switchboard with an h2 platform cluster:
//!   upstream connections per agent session.
//!
//! `BENCH_SMOKE=1` runs every scenario tiny (the `make bench-smoke` check inside `make test`).
//! `BENCH_FILTER='{"frames":{"dedup":{"enabled":false}}}'` merges a variant into Switchboard's
//! configuration. `BENCH_ONLY=throughput,scale` runs only the named scenarios (`throughput`,
//! `scale`, `burst`, `http2`). Every run through a proxy also reports the proxy's CPU time over
//! the run, from `/proc`.
//! Output: a table on stdout, `target/bench/report.json`, `target/bench/report.md`, and
//! `target/bench/latency.png` (the Switchboard scale run).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::tokens::{ed_key_path, filter_config};
use common::{free_port, sbctl_bin, Envoy, GatewaySpec, Platform};
use serde_json::{json, Value};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn smoke() -> bool {
    std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1")
}

/// Switchboard with every feature on: identity, routing, tagging, dedup and resume, the platform
/// token, backpressure budgets well above the load, admission, idle timeout, metrics labels.
/// `BENCH_FILTER` (a JSON object) is merged over it, to measure a variant, e.g.
/// `{"frames":{"dedup":{"enabled":false}}}`.
fn switchboard_filter() -> String {
    let mut config = json!({
        "token": {
            "cluster": "platform_token",
            "client_id": "switchboard",
            "client_secret": "switchboard-dev-secret",
            "scopes": ["websocket:read"]
        },
        "backpressure": {
            "default": {
                "up_frames_per_sec": 1000000,
                "up_bytes_per_sec": 1000000000,
                "down_frames_per_sec": 100000
            }
        },
        "admission": { "upgrades_per_sec": 100000, "max_sessions_per_agent": 5 },
        "metrics": { "region": "bench" }
    });
    if let Ok(text) = std::env::var("BENCH_FILTER") {
        let variant: Value = serde_json::from_str(&text).expect("BENCH_FILTER is a JSON object");
        merge(&mut config, variant);
        eprintln!("Switchboard variant: {text}");
    }
    filter_config(config)
}

/// Merges `over` into `base`, object member by object member.
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(base), Value::Object(over)) => {
            for (key, value) in over {
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (slot, value) => *slot = value,
    }
}

/// nginx as a user would set it up for WebSockets, two workers like Envoy's two.
struct Nginx {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn nginx(upstream: u16) -> Option<Nginx> {
    let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let root = dir.path().display().to_string();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let conf = format!(
        r#"worker_processes 2;
worker_rlimit_nofile 65000;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 30000; }}
http {{
  access_log off;
  client_body_temp_path {root}/tmp;
  proxy_temp_path {root}/tmp;
  fastcgi_temp_path {root}/tmp;
  uwsgi_temp_path {root}/tmp;
  scgi_temp_path {root}/tmp;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  upstream platform {{ server 127.0.0.1:{upstream}; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://platform;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 3600s;
      proxy_buffering off;
    }}
  }}
}}
"#
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new(binary)
        .args(["-p", &root, "-c"])
        .arg(&path)
        .args(["-g", "daemon off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(Nginx {
                child,
                port,
                _dir: dir,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

struct Run {
    target: &'static str,
    scenario: &'static str,
    report: Option<Value>,
    note: String,
    /// The proxy's CPU seconds (user + system) over the run.
    cpu_s: Option<f64>,
}

/// Whether `BENCH_ONLY` (a comma-separated list; unset is all) includes a scenario.
fn wanted(scenario: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| {
        only.split(',').any(|name| name.trim() == scenario)
    })
}

/// Clock ticks per second for `/proc/<pid>/stat` times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8_lossy(&out.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// User + system CPU seconds a process and its direct children (nginx's workers) have used so
/// far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    // Fields after the parenthesised command name: the parent is the 4th, utime and stime the
    // 14th and 15th.
    fn fields(pid: &str) -> Option<(u32, f64)> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let parent = fields.get(1)?.parse().ok()?;
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        Some((parent, utime + stime))
    }
    let (_, own) = fields(&pid.to_string())?;
    let children: f64 = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| fields(entry.file_name().to_str()?))
        .filter(|(parent, _)| *parent == pid)
        .map(|(_, ticks)| ticks)
        .sum();
    Some((own + children) / clock_ticks())
}

/// One way of reaching the platform.
struct Target {
    name: &'static str,
    url: String,
    /// Agents present tokens (every target but the platform itself).
    token: bool,
    /// Envoy's admin port, for memory and cluster figures.
    admin: Option<u16>,
    /// The proxy's process id, for its CPU time.
    pid: Option<u32>,
}

impl Target {
    fn envoy(name: &'static str, envoy: &Envoy) -> Target {
        Target {
            name,
            url: envoy.ws_url("/v2/realtime"),
            token: true,
            admin: Some(envoy.admin_port),
            pid: Some(envoy.pid()),
        }
    }
}

/// One scenario's load.
struct Load {
    scenario: &'static str,
    agents: u64,
    secs: u64,
    rate: u64,
    /// Upgrades per second while connecting; 0 is everyone at once.
    connect_rate: u64,
}

fn bench(load: &Load, target: &Target, png: Option<&Path>) -> Run {
    let Load {
        scenario,
        agents,
        secs,
        rate,
        connect_rate,
    } = *load;
    let (url, token, admin) = (&target.url, target.token, target.admin);
    let out = tempfile::NamedTempFile::new().unwrap();
    let mut command = Command::new(sbctl_bin());
    command.args([
        "bench",
        "--url",
        url,
        "--agents",
        &agents.to_string(),
        "--duration",
        &format!("{secs}s"),
        "--msg-rate",
        &rate.to_string(),
        "--connect-rate",
        &connect_rate.to_string(),
        "--payload",
        "256",
        "--attempts",
        "3",
        "--json",
        out.path().to_str().unwrap(),
    ]);
    if token {
        command
            .args(["--key", ed_key_path().to_str().unwrap()])
            .args(["--kid", "ed-1"]);
    } else {
        command.arg("--no-token");
    }
    if let Some(admin) = admin {
        command
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .args(["--upstream-cluster", "platform"]);
    }
    if let Some(png) = png {
        command.arg("--png").arg(png);
    }
    eprintln!(
        "{scenario}: {}: {agents} agents × {rate} msg/s for {secs} s",
        target.name
    );
    let cpu_before = target.pid.and_then(cpu_seconds);
    let output = command.output().expect("run sbctl bench");
    let cpu_s = match (cpu_before, target.pid.and_then(cpu_seconds)) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    let report = std::fs::read_to_string(out.path())
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok());
    let note = if output.status.success() {
        String::new()
    } else {
        String::from_utf8_lossy(&output.stderr).trim().to_string()
    };
    Run {
        target: target.name,
        scenario,
        report,
        note,
        cpu_s,
    }
}

fn f(report: &Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(report, |v, key| &v[*key])
        .as_f64()
        .unwrap_or(f64::NAN)
}

fn row(run: &Run) -> String {
    match &run.report {
        None => format!(
            "| {} | {} | not run: {} | | | | | | | | |",
            run.scenario, run.target, run.note
        ),
        Some(r) => format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
            run.scenario,
            run.target,
            f(r, &["throughput", "echoed_per_s"]),
            f(r, &["handshake", "p99_ms"]),
            f(r, &["round_trip", "p50_ms"]),
            f(r, &["round_trip", "p99_ms"]),
            f(r, &["round_trip", "p999_ms"]),
            f(r, &["round_trip_steady", "p99_ms"]),
            r["errors"]
                .as_object()
                .map_or(0, |e| e.values().filter_map(Value::as_u64).sum::<u64>()),
            r["abnormal_closes"].as_u64().unwrap_or(0),
            run.cpu_s
                .map_or_else(|| "—".to_string(), |cpu| format!("{cpu:.1}")),
        ),
    }
}

fn loaded_memory(run: &Run) -> Option<(f64, f64)> {
    let r = run.report.as_ref()?;
    let start = r["gateway"]["start"]["memory_allocated"].as_f64()?;
    let loaded = r["gateway"]["loaded"]["memory_allocated"].as_f64()?;
    let sessions = r["agents"]["peak_connected"].as_f64()?;
    Some((loaded - start, sessions))
}

fn main() {
    let quick = smoke();
    let size = |name: &str, full: u64, small: u64| if quick { small } else { env_or(name, full) };
    let (tput_agents, tput_rate, tput_secs) = (
        size("TPUT_AGENTS", 1_000, 20),
        size("TPUT_RATE", 10, 5),
        size("TPUT_SECS", 20, 3),
    );
    let (scale_agents, scale_secs) = (size("SCALE_AGENTS", 10_000, 30), size("SCALE_SECS", 90, 3));
    let burst_agents = size("BURST_AGENTS", 500, 20);
    let h2_agents = size("H2_AGENTS", 1_000, 20);
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out_dir).unwrap();

    // Two identical mock platforms: one for the targets that carry no platform token, one that
    // requires the token Switchboard fetches and injects.
    // No unsolicited events: "1 msg/s each way" is the message and its echo.
    let open = Platform::start("open", &["--event-rate", "0", "--max-records", "100000"]);
    let strict = Platform::start(
        "strict",
        &[
            "--event-rate",
            "0",
            "--max-records",
            "100000",
            "--require-token",
            "--token-lifetime",
            "86400",
        ],
    );
    let bare = Envoy::start(&GatewaySpec {
        filter_json: String::new(),
        upstream_ports: &[open.port],
        lb_policy: "MAGLEV",
        concurrency: 2,
        log_level: Some("warning"),
    });
    let filter = switchboard_filter();
    let switchboard = Envoy::start(&GatewaySpec {
        filter_json: filter.clone(),
        upstream_ports: &[strict.port],
        lb_policy: "MAGLEV",
        concurrency: 2,
        log_level: Some("warning"),
    });
    let nginx = nginx(open.port);
    // The platform token lands within a tick or two.
    std::thread::sleep(Duration::from_secs(2));

    let direct = Target {
        name: "direct",
        url: format!("ws://127.0.0.1:{}/v2/realtime", open.port),
        token: false,
        admin: None,
        pid: None,
    };
    let bare_target = Target::envoy("bare Envoy", &bare);
    let switchboard_target = Target::envoy("Envoy + Switchboard", &switchboard);
    let nginx_target = nginx.as_ref().map(|nginx| Target {
        name: "nginx",
        url: format!("ws://127.0.0.1:{}/v2/realtime", nginx.port),
        token: true,
        admin: None,
        pid: Some(nginx.child.id()),
    });
    let mut runs = Vec::new();
    let throughput = Load {
        scenario: "throughput",
        agents: tput_agents,
        secs: tput_secs,
        rate: tput_rate,
        connect_rate: 1000,
    };
    if wanted("throughput") {
        for target in [&direct, &bare_target, &switchboard_target] {
            runs.push(bench(&throughput, target, None));
        }
        match &nginx_target {
            Some(target) => runs.push(bench(&throughput, target, None)),
            None => runs.push(Run {
                target: "nginx",
                scenario: "throughput",
                report: None,
                note: "nginx not installed (make bench installs Debian's nginx)".into(),
                cpu_s: None,
            }),
        }
    }
    let scale = Load {
        scenario: "scale",
        agents: scale_agents,
        secs: scale_secs,
        rate: 1,
        connect_rate: 500,
    };
    let png = out_dir.join("latency.png");
    if wanted("scale") {
        runs.push(bench(&scale, &bare_target, None));
        runs.push(bench(&scale, &switchboard_target, Some(&png)));
    }
    let burst = Load {
        scenario: "burst",
        agents: burst_agents,
        secs: 5,
        rate: 1,
        connect_rate: 0,
    };
    if wanted("burst") {
        runs.push(bench(&burst, &switchboard_target, None));
    }
    drop(bare);

    // HTTP/2 upstream: one more Switchboard whose platform cluster speaks h2.
    let h2_spec = GatewaySpec {
        filter_json: filter,
        upstream_ports: &[strict.port],
        lb_policy: "MAGLEV",
        concurrency: 2,
        log_level: Some("warning"),
    };
    let h2_load = Load {
        scenario: "http2 upstream",
        agents: h2_agents,
        secs: scale_secs.clamp(3, 20),
        rate: 1,
        connect_rate: 1000,
    };
    let mut h2_ratio = None;
    let h2_envoy = wanted("http2")
        .then(|| Envoy::try_start_yaml(&common::h2_upstream_yaml(&h2_spec), 2, Some("warning")));
    match h2_envoy {
        None => {}
        Some(Ok(envoy)) => {
            std::thread::sleep(Duration::from_secs(2));
            let run = bench(
                &h2_load,
                &Target::envoy("Envoy + Switchboard (h2)", &envoy),
                None,
            );
            if let Some(r) = &run.report {
                let cx = r["gateway"]["loaded"]["upstream_cx_active"].as_f64();
                let sessions = r["agents"]["peak_connected"].as_f64();
                if let (Some(cx), Some(sessions)) = (cx, sessions) {
                    if sessions > 0.0 {
                        h2_ratio = Some((cx, sessions));
                    }
                }
            }
            runs.push(run);
        }
        Some(Err((_, why))) => runs.push(Run {
            target: "Envoy + Switchboard (h2)",
            scenario: "http2 upstream",
            report: None,
            note: format!("Envoy did not start: {why}"),
            cpu_s: None,
        }),
    }

    let mut md = String::new();
    let _ = writeln!(md, "| scenario | target | echoes/s | handshake p99 ms | rtt p50 ms | rtt p99 ms | rtt p99.9 ms | rtt p99 ms, all connected | errors | 1006 | proxy CPU s |");
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for run in &runs {
        let _ = writeln!(md, "{}", row(run));
    }
    let echoes = |scenario: &str, target: &str| {
        runs.iter()
            .find(|r| r.scenario == scenario && r.target == target)
            .and_then(|r| r.report.as_ref())
            .map(|r| f(r, &["throughput", "echoed_per_s"]))
    };
    let _ = writeln!(md);
    if let Some(bare_tput) = echoes("throughput", "bare Envoy") {
        for target in ["direct", "Envoy + Switchboard", "nginx"] {
            if let Some(value) = echoes("throughput", target) {
                let _ = writeln!(
                    md,
                    "- throughput, {target} / bare Envoy: {:.1} %",
                    value / bare_tput * 100.0
                );
            }
        }
    }
    // Proxy CPU per echo (a message up and its echo down), from the throughput runs.
    let per_echo: Vec<String> = runs
        .iter()
        .filter(|r| r.scenario == "throughput")
        .filter_map(|r| {
            let report = r.report.as_ref()?;
            let echoed = report["round_trip"]["samples"]
                .as_f64()
                .filter(|n| *n > 0.0)?;
            Some(format!("{} {:.1} µs", r.target, r.cpu_s? / echoed * 1e6))
        })
        .collect();
    if !per_echo.is_empty() {
        let _ = writeln!(
            md,
            "- proxy CPU per echo (one message up and its echo down), throughput runs: {}",
            per_echo.join(", ")
        );
    }
    let scale_bare = runs
        .iter()
        .find(|r| r.scenario == "scale" && r.target == "bare Envoy");
    let scale_sb = runs
        .iter()
        .find(|r| r.scenario == "scale" && r.target == "Envoy + Switchboard");
    if let (Some((bare_bytes, bare_sessions)), Some((sb_bytes, sb_sessions))) = (
        scale_bare.and_then(loaded_memory),
        scale_sb.and_then(loaded_memory),
    ) {
        if bare_sessions > 0.0 && sb_sessions > 0.0 {
            let per_bare = bare_bytes / bare_sessions;
            let per_sb = sb_bytes / sb_sessions;
            let _ = writeln!(md, "- memory per session (Envoy `server.memory_allocated` under load minus idle): bare Envoy {:.1} KiB, Envoy + Switchboard {:.1} KiB, Switchboard's share {:.1} KiB", per_bare / 1024.0, per_sb / 1024.0, (per_sb - per_bare) / 1024.0);
        }
    }
    if let Some((cx, sessions)) = h2_ratio {
        let _ = writeln!(
            md,
            "- HTTP/2 upstream: {cx:.0} upstream connections for {sessions:.0} sessions ({:.2} %)",
            cx / sessions * 100.0
        );
    }
    let machine = format!(
        "{} CPUs, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(
                |c| c.lines().find(|l| l.starts_with("model name")).map(|l| l
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_string())
            )
            .unwrap_or_default()
    );
    let _ = writeln!(md, "\nmachine: {machine}; load generator, mock platform and proxies on the same machine; Envoy --concurrency 2, nginx 2 workers.");
    println!("{md}");
    std::fs::write(out_dir.join("report.md"), &md).unwrap();
    let all: Vec<Value> = runs
        .iter()
        .map(|r| json!({ "scenario": r.scenario, "target": r.target, "note": r.note, "proxy_cpu_s": r.cpu_s, "report": r.report }))
        .collect();
    std::fs::write(
        out_dir.join("report.json"),
        serde_json::to_string_pretty(&all).unwrap(),
    )
    .unwrap();

    // The tool must have run and reported for the targets that exist here.
    let mut missing = Vec::new();
    for run in &runs {
        let optional = run.target == "nginx" && nginx.is_none();
        if run.report.is_none() && !optional {
            missing.push(format!("{} / {}: {}", run.scenario, run.target, run.note));
        }
    }
    assert!(
        missing.is_empty(),
        "runs without a report:\n{}",
        missing.join("\n")
    );
}
