//! `sbctl demo` end to end: real Envoy with the built filter, the in-process mock platform, a
//! WebSocket through the gateway, and a clean stop on SIGTERM that leaves no Envoy behind.
//! Skipped (with a note) when Envoy or the wasm module is not there.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly on an unexpected error"
)]

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use sbctl::demo::DEV_KID;
use sbctl::mint::{mint, MintSpec, SigningKey};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const SBCTL: &str = env!("CARGO_BIN_EXE_sbctl");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
/// Envoy compiles the module and binds its listeners within this.
const READY_WAIT: Duration = Duration::from_secs(60);
const WAIT: Duration = Duration::from_secs(10);

/// `$variable`, else `default` under the workspace, if that file exists.
fn input(variable: &str, default: &str) -> Option<PathBuf> {
    let path = std::env::var_os(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(WORKSPACE).join(default));
    path.is_file().then_some(path)
}

/// Distinct free ports: all bound at once, then released.
fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<TcpListener> = (0..N)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    std::array::from_fn(|index| listeners[index].local_addr().unwrap().port())
}

/// Kills the demo (by its own pid) if the test fails before it exits.
struct DemoGuard(Option<Child>);

impl Drop for DemoGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Pids of processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(needle) {
            found.push(format!(
                "{name}: {}",
                String::from_utf8_lossy(&cmdline).replace('\0', " ")
            ));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_a_websocket_and_stops_cleanly_on_sigterm() {
    let (Some(envoy), Some(wasm)) = (
        input("SWITCHBOARD_ENVOY", ".venv/bin/envoy"),
        input(
            "SWITCHBOARD_WASM",
            "target/wasm32-wasip1/release/switchboard.wasm",
        ),
    ) else {
        eprintln!(
            "skipped: needs Envoy (.venv/bin/envoy or $SWITCHBOARD_ENVOY) and the wasm module \
             (target/wasm32-wasip1/release/switchboard.wasm or $SWITCHBOARD_WASM)"
        );
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join(".dev");
    let [gateway, admin, platform] = free_ports::<3>();
    // Unique per test process, clear of the demo's default and of tests/common's range.
    let base_id = 3_000_000 + std::process::id() % 1_000_000;

    let mut child = Command::new(SBCTL)
        .arg("demo")
        .arg("--envoy")
        .arg(&envoy)
        .arg("--wasm")
        .arg(&wasm)
        .arg("--template")
        .arg(Path::new(WORKSPACE).join("envoy/switchboard.yaml"))
        .arg("--dir")
        .arg(&dir)
        .args(["--gateway-port", &gateway.to_string()])
        .args(["--admin-port", &admin.to_string()])
        .args(["--platform-port", &platform.to_string()])
        .args(["--event-rate", "20"])
        .args(["--base-id", &base_id.to_string()])
        .current_dir(work.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut guard = DemoGuard(Some(child));
    let stderr_text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&stderr_text);
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        sink.lock().unwrap().push_str(&text);
    });
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });

    let ready = tokio::task::spawn_blocking(move || {
        let line = receiver.recv_timeout(READY_WAIT);
        (line, receiver)
    })
    .await
    .unwrap();
    let (ready_line, receiver) = ready;
    let ready_line = ready_line.unwrap_or_else(|_| {
        panic!(
            "no ready line; stderr:\n{}\nenvoy.log:\n{}",
            stderr_text.lock().unwrap(),
            std::fs::read_to_string(dir.join("envoy.log")).unwrap_or_default()
        )
    });
    assert_eq!(
        ready_line,
        format!(
            "switchboard ready: gateway ws://127.0.0.1:{gateway}  admin http://127.0.0.1:{admin}  platform http://127.0.0.1:{platform}"
        )
    );
    assert_eq!(receiver.recv_timeout(WAIT).unwrap(), "try it:");
    let token_line = receiver.recv_timeout(WAIT).unwrap();
    assert!(
        token_line.contains(&format!("--kid {DEV_KID})")),
        "{token_line}"
    );

    let key = SigningKey::load(&dir.join("agent-ed25519.pem"), None).unwrap();
    let spec = MintSpec {
        kid: Some(DEV_KID.to_owned()),
        ..MintSpec::new("agent-1", "acme")
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = mint(&spec, &key, now).unwrap();
    let url = format!("ws://127.0.0.1:{gateway}/v2/realtime?access_token={token}");
    let (mut socket, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("connect timed out")
        .unwrap_or_else(|error| panic!("upgrade through the gateway failed: {error}"));
    assert_eq!(response.status(), 101);
    let event = loop {
        let message = tokio::time::timeout(WAIT, socket.next())
            .await
            .expect("no event within 10 s")
            .expect("socket closed")
            .unwrap();
        if let Message::Text(text) = message {
            break serde_json::from_str::<Value>(&text).unwrap();
        }
    };
    // The platform saw the agent the gateway took from the token.
    assert_eq!(event["data"]["agentId"], "agent-1", "{event}");
    assert_eq!(event["type"], "v2.agents.agent-1.events", "{event}");
    drop(socket);

    let demo = guard.0.as_mut().unwrap();
    let status = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + WAIT;
    let exit = loop {
        if let Some(exit) = demo.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "demo still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    guard.0 = None;
    assert_eq!(
        exit.code(),
        Some(0),
        "stderr:\n{}",
        stderr_text.lock().unwrap()
    );

    let config = dir.join("switchboard.yaml");
    let left = processes_mentioning(&config.to_string_lossy());
    assert!(left.is_empty(), "left behind: {left:#?}");
}
