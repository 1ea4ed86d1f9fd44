//! `sbctl bench` as a user runs it: the real binary against a real `sbctl mock-platform`
//! process, with minted agent tokens in each place a gateway reads them, a soak scraping an
//! admin endpoint, and Ctrl-C. It asserts that runs complete and report, never how fast.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{bench, http_get, Mock, SBCTL};
/// Base64url of `{"`: the start of every JWT header, so of every token the bench mints.
const JWT_START: &str = "eyJ";

/// The value of header `name` in a session record (`headers` is a list of [name, value]).
fn header(session: &serde_json::Value, name: &str) -> Option<String> {
    session["headers"].as_array()?.iter().find_map(|pair| {
        if pair[0].as_str()?.eq_ignore_ascii_case(name) {
            pair[1].as_str().map(str::to_owned)
        } else {
            None
        }
    })
}

/// Development keys as `sbctl keygen` (and so `make run`) writes them.
fn dev_keys(dir: &Path) {
    let status = Command::new(SBCTL)
        .args(["keygen", "--dir", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

/// A clean run of `agents`: everyone connected, round trips measured, no errors, every agent
/// closed with 1000.
fn assert_clean(report: &serde_json::Value, agents: u64) {
    assert_eq!(report["parameters"]["agents"], agents, "{report}");
    assert_eq!(report["agents"]["peak_connected"], agents, "{report}");
    assert_eq!(report["handshake"]["samples"], agents, "{report}");
    assert!(
        report["round_trip"]["samples"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(report["round_trip"]["p99_ms"].as_f64().unwrap() > 0.0);
    assert!(report["throughput"]["echoed_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(report["errors"], serde_json::json!({}), "{report}");
    assert_eq!(report["abnormal_closes"], 0, "{report}");
    assert_eq!(report["closes"]["1000"], agents, "{report}");
}

#[test]
fn minted_tokens_go_where_the_gateway_reads_them_and_are_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    dev_keys(dir.path());
    let key = dir.path().join("agent-ed25519.pem");
    for (token_in, arrived) in [
        ("header", "authorization"),
        ("query", "path"),
        ("subprotocol", "sec-websocket-protocol"),
    ] {
        // The platform also pushes events: traffic flows both ways.
        let platform = Mock::start(&["--event-rate", "2"]);
        let url = platform.url();
        let run = bench(
            dir.path(),
            &[
                "--url",
                &url,
                "--agents",
                "20",
                "--duration",
                "3s",
                "--msg-rate",
                "5",
                "--ping-interval",
                "500ms",
                "--key",
                key.to_str().unwrap(),
                "--kid",
                "dev-ed25519",
                "--tenants",
                "3",
                "--token-in",
                token_in,
            ],
        );
        let report = &run.report;
        assert_clean(report, 20);
        assert_eq!(report["parameters"]["tokens"], true);
        assert_eq!(report["parameters"]["token_in"], token_in);
        assert!(report["ping"]["samples"].as_u64().unwrap() > 0, "{report}");
        assert!(report["throughput"]["events_per_s"].as_f64().unwrap() > 0.0);
        assert!(report["throughput"]["bytes_down_per_s"].as_f64().unwrap() > 0.0);
        assert!(run.stdout().contains("round trip"), "{}", run.stdout());
        for (name, text) in [("stdout", run.stdout()), ("stderr", run.stderr())] {
            assert!(!text.contains(JWT_START), "a token on {name}: {text}");
        }
        let report_text = report.to_string();
        assert!(!report_text.contains(JWT_START), "a token in the report");

        let sessions = platform.sessions();
        assert_eq!(sessions.len(), 20, "{token_in}");
        let mut agents = std::collections::BTreeSet::new();
        for session in &sessions {
            let path = session["path"].as_str().unwrap();
            let authorization = header(session, "authorization");
            let protocols = header(session, "sec-websocket-protocol");
            let token = match token_in {
                "header" => authorization
                    .as_deref()
                    .and_then(|v| v.strip_prefix("Bearer ")),
                "query" => path.split_once("?access_token=").map(|(_, t)| t),
                _ => protocols
                    .as_deref()
                    .and_then(|v| v.strip_prefix("bearer."))
                    .and_then(|v| v.strip_suffix(", v2.realtime-events")),
            };
            let token =
                token.unwrap_or_else(|| panic!("{token_in}: no token in {arrived}: {session}"));
            assert!(token.starts_with(JWT_START), "{token_in}: {token}");
            assert_eq!(token.split('.').count(), 3, "{token_in}: {token}");
            agents.insert(token.to_owned());
            // Only in the place asked for.
            assert_eq!(authorization.is_some(), token_in == "header", "{session}");
            assert_eq!(
                path.contains("access_token="),
                token_in == "query",
                "{session}"
            );
            assert_eq!(protocols.is_some(), token_in == "subprotocol", "{session}");
        }
        // Every agent carries its own token.
        assert_eq!(agents.len(), 20, "{token_in}");
    }
}

/// A stand-in for Envoy's admin in front of `platform`: `/stats` with a cluster's upstream
/// connections and a memory gauge that moves once a second (a stats flush), `/stats/prometheus`
/// with Switchboard's series. Its active sessions are the platform's open ones as they were a
/// second earlier, the way a gateway still holds streams for a moment after their close.
fn fake_admin(platform: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let scrapes = Arc::new(AtomicU64::new(0));
    let born = Instant::now();
    let mut open_history: Vec<(Instant, usize)> = Vec::new();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && request.len() < 8192 {
                if stream.read(&mut byte).unwrap_or(0) == 0 {
                    break;
                }
                request.push(byte[0]);
            }
            let request = String::from_utf8_lossy(&request);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let body = match path {
                "/stats" => {
                    let n = scrapes.fetch_add(1, Ordering::Relaxed);
                    format!(
                        "cluster.platform.upstream_cx_active: 7\ncluster.platform.upstream_cx_total: {}\nserver.memory_allocated: {}\nserver.memory_heap_size: 4194304\n",
                        10 + n,
                        1_000_000 + 1_000 * born.elapsed().as_secs()
                    )
                }
                "/stats/prometheus" => {
                    let sessions: serde_json::Value =
                        serde_json::from_str(&http_get(platform, "/_mock/sessions")).unwrap();
                    let open = sessions
                        .as_array()
                        .unwrap()
                        .iter()
                        .filter(|s| s["closed"] == false)
                        .count();
                    let now = Instant::now();
                    open_history.push((now, open));
                    open_history
                        .retain(|(at, _)| now.duration_since(*at) < Duration::from_secs(30));
                    let open = open_history
                        .iter()
                        .rev()
                        .find(|(at, _)| now.duration_since(*at) >= Duration::from_secs(1))
                        .or(open_history.first())
                        .map_or(0, |(_, open)| *open);
                    format!(
                        concat!(
                            "# TYPE switchboard_sessions_active gauge\n",
                            "switchboard_sessions_active{{tenant=\"acme\"}} {}\n",
                            "switchboard_sessions_active{{tenant=\"other\"}} 0\n",
                            "switchboard_upgrades{{tenant=\"acme\",result=\"accepted\"}} 9\n",
                            "switchboard_upgrades{{tenant=\"none\",result=\"auth\"}} 2\n",
                        ),
                        open
                    )
                }
                _ => String::new(),
            };
            let status = if body.is_empty() {
                "404 Not Found"
            } else {
                "200 OK"
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn a_soak_samples_the_gateway_and_reports_memory_and_churn_drift() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Mock::start(&["--event-rate", "0", "--envelope", "nice"]);
    let admin = format!("http://127.0.0.1:{}/", fake_admin(platform.port));
    let url = platform.url();
    let run = bench(
        dir.path(),
        &[
            "--url",
            &url,
            "--no-token",
            "--mode",
            "soak",
            "--agents",
            "20",
            // Drift counts from one admin flush (5 s) after everyone is connected.
            "--duration",
            "8s",
            "--sample-every",
            "1s",
            "--msg-rate",
            "5",
            "--profile-envelope",
            "nice",
            "--admin",
            &admin,
            "--upstream-cluster",
            "platform",
        ],
    );
    let report = &run.report;
    assert_clean(report, 20);
    assert_eq!(report["parameters"]["envelope"], "nice");
    let soak = &report["soak"];
    let samples = soak["samples"].as_array().unwrap();
    assert!(samples.len() >= 8, "{soak}");
    assert_eq!(samples[0]["second"], 0);
    assert_eq!(samples[0]["settled"], false, "{soak}");
    assert_eq!(samples.last().unwrap()["settled"], true, "{soak}");
    // Memory grows by 1,000 B a second in the stand-in: the drift is positive.
    assert!(soak["memory_drift_bytes"].as_i64().unwrap() > 0, "{soak}");
    assert!(soak["memory_drift"].as_f64().unwrap() > 0.0, "{soak}");
    // Nobody reconnected, and the gateway's upgrade count did not move.
    assert_eq!(soak["churn_drift_per_s"], 0.0, "{soak}");
    assert_eq!(soak["gateway_churn_drift_per_s"], 0.0, "{soak}");
    assert_eq!(samples[0]["upgrades_total"], 11.0, "{soak}");
    let gateway = &report["gateway"];
    let start = &gateway["start"];
    // No session before the run, all 20 under load, none at the end: the end sample waits for
    // the gateway to close them, then for its memory gauge to move (a flush after the close).
    assert_eq!(start["sessions_active"], 0.0, "{start}");
    assert_eq!(gateway["loaded"]["sessions_active"], 20.0, "{gateway}");
    assert_eq!(gateway["end"]["sessions_active"], 0.0, "{gateway}");
    assert!(
        gateway["end"]["memory_allocated"].as_u64()
            > gateway["loaded"]["memory_allocated"].as_u64(),
        "{gateway}"
    );
    assert_eq!(start["upgrades"]["accepted"], 9.0, "{start}");
    assert_eq!(start["upstream_cx_active"], 7, "{start}");
    assert_eq!(start["memory_heap_size"], 4_194_304, "{start}");
    assert!(
        report["gateway"]["end"]["upstream_cx_total"]
            .as_u64()
            .unwrap()
            > 10
    );
    assert!(
        run.stdout().contains("soak: memory drift +"),
        "{}",
        run.stdout()
    );
}

#[test]
fn ctrl_c_ends_the_run_early_and_it_still_reports() {
    let dir = tempfile::tempdir().unwrap();
    let platform = Mock::start(&["--event-rate", "0"]);
    let json = dir.path().join("report.json");
    let mut child = Command::new(SBCTL)
        .args(["bench", "--url", &platform.url(), "--no-token"])
        .args(["--agents", "20", "--duration", "120s", "--msg-rate", "5"])
        .args(["--json", json.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until every agent is in (the run loop, and its Ctrl-C handler, are up).
    let deadline = Instant::now() + Duration::from_secs(30);
    while platform.sessions().len() < 20 {
        assert!(Instant::now() < deadline, "agents never connected");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(1_500));
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: signals the child this test spawned and still owns (not yet waited for).
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "bench did not stop after Ctrl-C");
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(status.success(), "{status:?} {stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["interrupted"], true, "{report}");
    assert!(report["elapsed_s"].as_f64().unwrap() < 120.0, "{report}");
    assert!(report["round_trip"]["samples"].as_u64().unwrap() > 0);
    // Stopped early, agents still closed cleanly.
    assert_eq!(report["closes"]["1000"], 20, "{report}");
    assert!(stdout.contains("round trip"), "{stdout}");
}

#[test]
fn bad_arguments_get_one_line_naming_the_flag() {
    let cases: [(&[&str], &str); 8] = [
        (&["--token-in", "cookie"], "--token-in"),
        (&["--url", "http://x"], "--url"),
        (&["--url", "wss://127.0.0.1:9/"], "--url"),
        (&["--mode", "sideways"], "--mode"),
        (&["--admin", "https://127.0.0.1:9901"], "--admin"),
        (&["--admin", "127.0.0.1"], "--admin"),
        (&["--token-query-param", "a b"], "--token-query-param"),
        (&["--subprotocol", "a,b"], "--subprotocol"),
    ];
    for (args, flag) in cases {
        let mut command = Command::new(SBCTL);
        command.args(["bench", "--no-token"]).args(args);
        if !args.contains(&"--url") {
            command.args(["--url", "ws://127.0.0.1:9/"]);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
    // A token offered as a subprotocol needs a platform subprotocol beside it.
    let dir = tempfile::tempdir().unwrap();
    dev_keys(dir.path());
    let key = dir.path().join("agent-ed25519.pem");
    let output = Command::new(SBCTL)
        .args(["bench", "--url", "ws://127.0.0.1:9/"])
        .args(["--key", key.to_str().unwrap()])
        .args(["--token-in", "subprotocol", "--envelope", "generic"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--subprotocol"), "{stderr}");
    // A missing key names --key.
    let output = Command::new(SBCTL)
        .args(["bench", "--url", "ws://127.0.0.1:9/"])
        .args(["--key", dir.path().join("absent.pem").to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--key"), "{stderr}");
}
