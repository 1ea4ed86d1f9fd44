//! The `sbctl` binary as a user runs it: keygen, mint-token, the mock platform's ready line and
//! signal handling (check-config has tests/check_config.rs).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly on an unexpected error"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_simple::prelude::*;
use serde_json::Value;

const SBCTL: &str = env!("CARGO_BIN_EXE_sbctl");
const WAIT: Duration = Duration::from_secs(10);

fn sbctl(args: &[&str], dir: &Path) -> Output {
    Command::new(SBCTL)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

fn mint(dir: &Path, args: &[&str]) -> String {
    let mut full = vec!["mint-token", "--agent", "agent-7", "--tenant", "acme"];
    full.extend_from_slice(args);
    let output = sbctl(&full, dir);
    assert!(
        output.status.success(),
        "mint-token {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap();
    assert!(token.ends_with('\n'));
    token.trim_end().to_owned()
}

fn part(token: &str, index: usize) -> Value {
    let encoded = token.split('.').nth(index).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap()
}

fn strict() -> VerificationOptions {
    VerificationOptions {
        time_tolerance: Some(Duration::from_secs(0).into()),
        allowed_issuers: Some(HashSet::from_strings(&["switchboard-dev"])),
        allowed_audiences: Some(HashSet::from_strings(&["switchboard"])),
        ..VerificationOptions::default()
    }
}

#[test]
fn keygen_then_mint_with_every_key() {
    let work = tempfile::tempdir().unwrap();
    let output = sbctl(&["keygen", "--dir", ".dev"], work.path());
    assert!(output.status.success());
    let written = String::from_utf8(output.stdout).unwrap();
    assert_eq!(
        written.lines().count(),
        5,
        "one line per key written:\n{written}"
    );
    let dev = work.path().join(".dev");
    let read = |name: &str| std::fs::read_to_string(dev.join(name)).unwrap();

    // Default key is .dev/agent-ed25519.pem, relative to the working directory.
    let token = mint(work.path(), &["--region", "eu-1", "--kid", "k-ed"]);
    assert_eq!(part(&token, 0)["alg"], "EdDSA");
    assert_eq!(part(&token, 0)["kid"], "k-ed");
    let ed_public = Ed25519PublicKey::from_pem(&read("agent-ed25519.pub.pem")).unwrap();
    let claims = ed_public
        .verify_token::<serde_json::Map<String, Value>>(&token, Some(strict()))
        .unwrap();
    assert_eq!(claims.subject.as_deref(), Some("agent-7"));
    assert_eq!(claims.custom.get("tenant"), Some(&Value::from("acme")));
    assert_eq!(claims.custom.get("region"), Some(&Value::from("eu-1")));
    let payload = part(&token, 1);
    assert_eq!(
        payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap(),
        3600
    );
    assert_eq!(payload["nbf"], payload["iat"]);

    let token = mint(work.path(), &["--key", ".dev/agent-rs256.pem"]);
    assert_eq!(part(&token, 0)["alg"], "RS256");
    let rs_public = RS256PublicKey::from_pem(&read("agent-rs256.pub.pem")).unwrap();
    assert!(rs_public
        .verify_token::<NoCustomClaims>(&token, Some(strict()))
        .is_ok());

    let token = mint(
        work.path(),
        &["--hs-secret-file", ".dev/agent-hs256.secret"],
    );
    assert_eq!(part(&token, 0)["alg"], "HS256");
    let secret = base64::engine::general_purpose::STANDARD
        .decode(read("agent-hs256.secret").trim())
        .unwrap();
    assert_eq!(secret.len(), 32);
    let hs_key = HS256Key::from_bytes(&secret);
    assert!(hs_key
        .verify_token::<NoCustomClaims>(&token, Some(strict()))
        .is_ok());

    // Tokens the filter must refuse.
    let expired = mint(
        work.path(),
        &["--exp-offset", "-120", "--nbf-offset", "-300"],
    );
    let payload = part(&expired, 1);
    assert_eq!(
        payload["iat"].as_u64().unwrap() - payload["exp"].as_u64().unwrap(),
        120
    );
    assert!(ed_public
        .verify_token::<NoCustomClaims>(&expired, Some(strict()))
        .is_err());
    let future = mint(work.path(), &["--nbf-offset", "600"]);
    assert_eq!(
        part(&future, 1)["nbf"].as_u64().unwrap() - part(&future, 1)["iat"].as_u64().unwrap(),
        600
    );
    assert!(ed_public
        .verify_token::<NoCustomClaims>(&future, Some(strict()))
        .is_err());
    let wrong_iss = mint(work.path(), &["--iss", "evil"]);
    assert!(ed_public
        .verify_token::<NoCustomClaims>(&wrong_iss, Some(strict()))
        .is_err());
    let wrong_aud = mint(work.path(), &["--aud", "elsewhere"]);
    assert!(ed_public
        .verify_token::<NoCustomClaims>(&wrong_aud, Some(strict()))
        .is_err());
    let renamed = mint(
        work.path(),
        &[
            "--claim-agent",
            "agent_id",
            "--claim-tenant",
            "org",
            "--ttl",
            "60",
        ],
    );
    let payload = part(&renamed, 1);
    assert_eq!(payload["agent_id"], "agent-7");
    assert_eq!(payload["org"], "acme");
    assert!(payload.get("sub").is_none());

    // keygen keeps what exists.
    let before = read("agent-ed25519.pem");
    let output = sbctl(&["keygen", "--dir", ".dev"], work.path());
    assert!(output.status.success());
    assert!(output.stdout.is_empty(), "nothing written the second time");
    assert_eq!(read("agent-ed25519.pem"), before);
}

#[test]
fn mint_token_errors_exit_nonzero() {
    let work = tempfile::tempdir().unwrap();
    let output = sbctl(
        &[
            "mint-token",
            "--agent",
            "a",
            "--tenant",
            "t",
            "--key",
            "missing.pem",
        ],
        work.path(),
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.pem"));
}

/// Kills the child (by its own pid) if a test fails before it exits.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn start_mock(extra: &[&str]) -> (ChildGuard, String) {
    let mut args = vec!["mock-platform", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child = Command::new(SBCTL)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = ChildGuard(Some(child));
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let line = receiver.recv_timeout(WAIT).expect("no ready line");
    (guard, line)
}

fn http_get(addr: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn signal_and_wait(guard: &mut ChildGuard, signal: &str) {
    let child = guard.0.as_mut().unwrap();
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + WAIT;
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "mock-platform ignored {signal}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(0), "exit after {signal}");
    guard.0 = None;
}

#[test]
fn mock_platform_prints_ready_line_and_stops_on_signals() {
    for signal in ["-TERM", "-INT"] {
        let (mut guard, line) = start_mock(&["--name", "platform-x", "--event-rate", "0"]);
        let addr = line
            .strip_suffix('\n')
            .and_then(|line| line.strip_prefix("mock-platform listening on "))
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        assert!(addr.starts_with("127.0.0.1:"));
        assert_ne!(addr, "127.0.0.1:0", "the real port is printed");
        let response = http_get(addr, "/_mock/health");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains(r#""status":"ok""#), "{response}");
        signal_and_wait(&mut guard, signal);
    }
}

#[test]
fn mock_platform_rejects_bad_flags() {
    let work = tempfile::tempdir().unwrap();
    for args in [
        &[
            "mock-platform",
            "--listen",
            "127.0.0.1:0",
            "--event-rate",
            "-1",
        ][..],
        &[
            "mock-platform",
            "--listen",
            "127.0.0.1:0",
            "--token-fault",
            "sometimes",
        ][..],
        &[
            "mock-platform",
            "--listen",
            "127.0.0.1:0",
            "--envelope",
            "avaya",
        ][..],
        &[
            "mock-platform",
            "--listen",
            "127.0.0.1:0",
            "--token-format",
            "macaroon",
        ][..],
        &[
            "mock-platform",
            "--listen",
            "127.0.0.1:0",
            "--token-format",
            "jwt",
            "--jwt-exp-skew",
            "86401",
        ][..],
        // A skew only applies to JWTs.
        &[
            "mock-platform",
            "--listen",
            "127.0.0.1:0",
            "--jwt-exp-skew",
            "5",
        ][..],
        &[
            "mock-platform",
            "--listen",
            "127.0.0.1:0",
            "--token-lifetime",
            "0",
        ][..],
    ] {
        let output = sbctl(args, work.path());
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(output.stdout.is_empty());
    }
}
