//! Real third-party clients through a real Envoy with the filter: Python `websockets`, Node `ws`,
//! and headless Chromium running the agent-desktop page (`examples/agent-desktop/index.html`).
//! Each client is a script in `tests/clients/` run as a bounded subprocess; it prints one JSON
//! summary line that the test asserts on. A missing tool fails the test and names what installs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tokens::token;
use common::{gateway, Platform, Reaped};

const AGENT: &str = "agent-x";
const WANTED: usize = 5;
const INSTALL_HINT: &str =
    "run `make test-clients-setup` (installs the real clients the tests drive)";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn clients_dir() -> PathBuf {
    root().join("tests/clients")
}

/// The Python of the project's virtualenv (where `make` installs `websockets`).
fn python() -> PathBuf {
    common::env_path("SWITCHBOARD_PYTHON", ".venv/bin/python")
}

/// `name` as found on PATH, or a file path that exists.
fn which(name: &str) -> Option<PathBuf> {
    let candidate = Path::new(name);
    if candidate.components().count() > 1 {
        return candidate.is_file().then(|| candidate.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

/// Runs `command` for at most `limit`, killing it on overrun; returns (exit code, stdout, stderr).
fn run_bounded(mut command: Command, limit: Duration) -> (Option<i32>, String, String) {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let mut child = Reaped(child);
    let mut stdout = child.0.stdout.take().unwrap();
    let mut stderr = child.0.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.0.kill();
            let _ = child.0.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) => (status.code(), out, err),
        None => panic!("{command:?} ran longer than {limit:?}\nstdout: {out}\nstderr: {err}"),
    }
}

/// The client's summary: the last stdout line, as JSON.
fn summary(code: Option<i32>, out: &str, err: &str) -> serde_json::Value {
    let line = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
        panic!("client printed no JSON summary ({e}); exit {code:?}\nstdout: {out}\nstderr: {err}")
    });
    assert_ne!(
        code,
        Some(3),
        "a client tool is missing: {value}; {INSTALL_HINT}"
    );
    assert_eq!(code, Some(0), "client failed: {value}\nstderr: {err}");
    value
}

/// At least `wanted` events, every one for `AGENT`, in strictly increasing `seq`.
fn assert_events(value: &serde_json::Value, wanted: usize) {
    let seqs: Vec<u64> = value["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events list: {value}"))
        .iter()
        .map(|s| {
            s.as_u64()
                .unwrap_or_else(|| panic!("non-numeric seq in {value}"))
        })
        .collect();
    assert!(seqs.len() >= wanted, "only {} events: {value}", seqs.len());
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "seq not increasing: {value}"
    );
    let agents = value["agents"].as_array().unwrap();
    assert_eq!(agents.len(), seqs.len(), "{value}");
    assert!(
        agents.iter().all(|a| a == AGENT),
        "events for another agent: {value}"
    );
}

#[test]
fn python_websockets_client_authenticates_by_query_and_gets_tagged_echo_and_events() {
    let python = python();
    assert!(
        python.is_file(),
        "{} missing; {INSTALL_HINT} (the project virtualenv with `websockets`)",
        python.display()
    );
    let platform = Platform::start("p1", &["--event-rate", "5"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let mut command = Command::new(&python);
    command
        .arg(clients_dir().join("ws_python.py"))
        .arg(envoy.ws_url("/v2/realtime"))
        .arg(token(AGENT, "acme"))
        .arg(WANTED.to_string())
        .arg("20");
    let started = Instant::now();
    let (code, out, err) = run_bounded(command, Duration::from_secs(40));
    let value = summary(code, &out, &err);
    eprintln!("python client: {value} in {:?}", started.elapsed());
    assert_eq!(value["echo_has_routing_key"], true, "{value}");
    assert_events(&value, WANTED);
    // The library offered permessage-deflate; the gateway stripped it, so none was negotiated.
    assert!(
        value["extensions"].is_null(),
        "extension negotiated: {value}"
    );
    envoy.assert_no_vm_failure();
}

#[test]
fn node_ws_client_authenticates_by_header_and_gets_tagged_echo_and_events() {
    let node = which("node").unwrap_or_else(|| panic!("`node` not on PATH; {INSTALL_HINT}"));
    assert!(
        clients_dir().join("node_modules/ws/package.json").is_file(),
        "tests/clients/node_modules/ws missing: {INSTALL_HINT} (npm ci --prefix tests/clients)"
    );
    let platform = Platform::start("p1", &["--event-rate", "5"]);
    let envoy = gateway(&platform, serde_json::json!({}));
    let mut command = Command::new(node);
    command
        .arg(clients_dir().join("ws_node.mjs"))
        .arg(envoy.ws_url("/v2/realtime"))
        .arg(token(AGENT, "acme"))
        .arg(WANTED.to_string())
        .arg("20");
    let started = Instant::now();
    let (code, out, err) = run_bounded(command, Duration::from_secs(40));
    let value = summary(code, &out, &err);
    eprintln!("node client: {value} in {:?}", started.elapsed());
    assert_eq!(value["echo_has_routing_key"], true, "{value}");
    assert_events(&value, WANTED);
    assert!(
        value["extensions"].is_null(),
        "extension negotiated: {value}"
    );
    envoy.assert_no_vm_failure();
}

#[test]
fn chromium_runs_the_agent_desktop_page_through_the_origin_allow_list() {
    let chromium_name = std::env::var("SWITCHBOARD_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let chromium = which(&chromium_name).unwrap_or_else(|| {
        panic!("`{chromium_name}` not found; {INSTALL_HINT} (apt-get install -y chromium)")
    });
    let python = python();
    assert!(
        python.is_file(),
        "{} missing; {INSTALL_HINT}",
        python.display()
    );
    let http_port = common::free_port();
    let origin = format!("http://127.0.0.1:{http_port}");
    let platform = Platform::start("p1", &["--event-rate", "5"]);
    let envoy = gateway(
        &platform,
        serde_json::json!({ "origin": { "allowed": [origin] } }),
    );
    let wanted = 3;
    let driver = |port: u16, timeout: &str| {
        let mut command = Command::new(&python);
        command
            .arg(clients_dir().join("chromium_driver.py"))
            .arg(envoy.ws_url("/v2/realtime"))
            .arg(token(AGENT, "acme"))
            .arg(wanted.to_string())
            .args(["--http-port", &port.to_string(), "--timeout", timeout])
            .arg("--chromium")
            .arg(&chromium);
        command
    };

    // The same page served from an origin not on the list: the handshake is refused.
    let started = Instant::now();
    let (code, out, err) = run_bounded(driver(common::free_port(), "20"), Duration::from_secs(45));
    let line = out
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let refused: serde_json::Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("driver printed no JSON ({e}); exit {code:?}\n{out}\n{err}"));
    eprintln!(
        "chromium page, foreign origin: {refused} in {:?}",
        started.elapsed()
    );
    assert_ne!(
        code,
        Some(3),
        "a client tool is missing: {refused}; {INSTALL_HINT}"
    );
    assert_eq!(code, Some(1), "foreign origin was not refused: {refused}");
    assert!(
        matches!(refused["state"].as_str(), Some("closed" | "error")),
        "{refused}"
    );
    assert_eq!(refused["count"], 0, "{refused}");
    let stats = common::blocking_get(envoy.admin_port, "/stats").unwrap_or_default();
    assert_eq!(
        common::stat_value(&stats, "wasmcustom.switchboard.upgrades.result.origin"),
        1,
        "the refusal was not the origin check"
    );

    let started = Instant::now();
    let (code, out, err) = run_bounded(driver(http_port, "45"), Duration::from_secs(75));
    let value = summary(code, &out, &err);
    eprintln!("chromium page: {value} in {:?}", started.elapsed());
    assert_eq!(value["origin"], origin.as_str(), "{value}");
    assert_eq!(value["state"], "open", "{value}");
    assert_eq!(value["protocol"], "v2.realtime-events", "{value}");
    assert_eq!(value["echo_routing_key"], "yes", "{value}");
    assert!(
        value["count"].as_u64().unwrap_or(0) >= wanted as u64,
        "{value}"
    );
    assert_events(&value, wanted);
    envoy.assert_no_vm_failure();
}
