//! What the sbctl process tests share: a real `sbctl mock-platform` child process and
//! `sbctl bench` run to completion.
#![allow(
    dead_code,
    reason = "each test binary compiles this module and uses part of it"
)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub const SBCTL: &str = env!("CARGO_BIN_EXE_sbctl");
pub const PNG_SIGNATURE: &[u8; 8] = b"\x89PNG\r\n\x1a\n";

/// `sbctl mock-platform` on a free port of 127.0.0.1, killed on drop.
pub struct Mock {
    child: Child,
    pub port: u16,
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mock {
    pub fn start(extra: &[&str]) -> Mock {
        let mut child = Command::new(SBCTL)
            .args(["mock-platform", "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("mock-platform listening on 127.0.0.1:")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        Mock { child, port }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/v2/realtime", self.port)
    }

    /// `GET /_mock/sessions`: every session with its request line and headers as they arrived.
    pub fn sessions(&self) -> Vec<serde_json::Value> {
        let body = http_get(self.port, "/_mock/sessions");
        serde_json::from_str::<serde_json::Value>(&body)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

/// A plain HTTP/1.1 GET on 127.0.0.1; the body of a 200.
pub fn http_get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    body.to_owned()
}

/// A finished `sbctl bench`: its JSON report and its output.
pub struct Run {
    pub report: serde_json::Value,
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

/// Runs `sbctl bench` to completion with a JSON report and a chart, and checks both exist.
pub fn bench(dir: &Path, args: &[&str]) -> Run {
    let json = dir.join("report.json");
    let png = dir.join("chart.png");
    let output = Command::new(SBCTL)
        .arg("bench")
        .args(args)
        .args(["--json", json.to_str().unwrap()])
        .args(["--png", png.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run = Run {
        report: serde_json::Value::Null,
        output,
    };
    assert!(
        run.output.status.success(),
        "{}{}",
        run.stdout(),
        run.stderr()
    );
    let report = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let chart = std::fs::read(&png).unwrap();
    assert_eq!(chart.get(..8), Some(&PNG_SIGNATURE[..]));
    Run { report, ..run }
}
