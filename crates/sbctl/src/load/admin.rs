//! Gateway figures from Envoy's admin interface: memory, Switchboard's metrics, and a cluster's
//! upstream connections. Plain HTTP/1.0 over a TCP stream, bounded in time and size.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BODY: usize = 32 << 20;

/// The `host:port` of `--admin`, given as that or as an `http://host:port[/]` URL.
pub fn authority(admin: &str) -> Result<String, String> {
    if admin.starts_with("https://") {
        return Err(format!(
            "--admin: {admin:?}: https is not supported; give the admin's plain host:port"
        ));
    }
    let bare = admin.strip_prefix("http://").unwrap_or(admin);
    let bare = bare.strip_suffix('/').unwrap_or(bare);
    let well_formed = bare
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !well_formed || bare.contains(['/', '?', '#', '@', ' ']) {
        return Err(format!(
            "--admin: {admin:?} is not host:port or http://host:port"
        ));
    }
    Ok(bare.to_owned())
}

/// GET `path` from `authority` (host:port); the body when the status is 200. HTTP/1.1 with
/// `Connection: close` (Envoy's admin refuses HTTP/1.0), chunked bodies decoded.
pub async fn get(authority: &str, path: &str) -> Option<String> {
    let work = async {
        let mut stream = TcpStream::connect(authority).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut bytes = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            if bytes.len() + n > MAX_BODY {
                return None;
            }
            bytes.extend_from_slice(chunk.get(..n)?);
        }
        parse_response(&bytes)
    };
    tokio::time::timeout(TIMEOUT, work).await.ok().flatten()
}

/// The body of a 200 response (plain or chunked).
fn parse_response(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_ok = head
        .lines()
        .next()
        .is_some_and(|line| line.split_whitespace().nth(1) == Some("200"));
    if !status_ok {
        return None;
    }
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase()
            .replace(' ', "")
            .starts_with("transfer-encoding:chunked")
    });
    if !chunked {
        return Some(body.to_owned());
    }
    let mut out = String::new();
    let mut rest = body;
    loop {
        let (size_line, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size_line.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct GatewaySample {
    /// Envoy's `server.memory_allocated` (bytes).
    pub memory_allocated: Option<u64>,
    /// Envoy's `server.memory_heap_size` (bytes).
    pub memory_heap_size: Option<u64>,
    /// `switchboard_sessions_active`, summed over its labels.
    pub sessions_active: Option<f64>,
    /// `switchboard_upgrades` by result, summed over the other labels.
    pub upgrades: BTreeMap<String, f64>,
    /// `cluster.<name>.upstream_cx_active` of the named cluster.
    pub upstream_cx_active: Option<u64>,
    /// `cluster.<name>.upstream_cx_total` of the named cluster.
    pub upstream_cx_total: Option<u64>,
    /// `cluster.<name>.upstream_rq_active` (streams, for HTTP/2 upstreams).
    pub upstream_rq_active: Option<u64>,
}

/// A `name: value` line of `/stats`.
pub fn stat(stats: &str, name: &str) -> Option<u64> {
    stats.lines().find_map(|line| {
        let (key, value) = line.split_once(": ")?;
        (key == name).then(|| value.trim().parse().ok()).flatten()
    })
}

/// Sums of Switchboard's Prometheus series: sessions active, and upgrades by result.
pub fn switchboard_figures(prometheus: &str) -> (Option<f64>, BTreeMap<String, f64>) {
    let mut active = None;
    let mut upgrades = BTreeMap::new();
    for line in prometheus.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        if name == "switchboard_sessions_active" {
            *active.get_or_insert(0.0) += value;
        } else if name == "switchboard_upgrades" {
            let result = series
                .split("result=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or("unknown");
            *upgrades.entry(result.to_owned()).or_insert(0.0) += value;
        }
    }
    (active, upgrades)
}

pub async fn sample(authority: &str, cluster: Option<&str>) -> GatewaySample {
    let mut sample = GatewaySample::default();
    if let Some(stats) = get(authority, "/stats").await {
        sample.memory_allocated = stat(&stats, "server.memory_allocated");
        sample.memory_heap_size = stat(&stats, "server.memory_heap_size");
        if let Some(cluster) = cluster {
            sample.upstream_cx_active =
                stat(&stats, &format!("cluster.{cluster}.upstream_cx_active"));
            sample.upstream_cx_total =
                stat(&stats, &format!("cluster.{cluster}.upstream_cx_total"));
            sample.upstream_rq_active =
                stat(&stats, &format!("cluster.{cluster}.upstream_rq_active"));
        }
    }
    if let Some(text) = get(authority, "/stats/prometheus").await {
        let (active, upgrades) = switchboard_figures(&text);
        sample.sessions_active = active;
        sample.upgrades = upgrades;
    }
    sample
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn figures_are_summed_over_labels() {
        let text = r#"# TYPE switchboard_sessions_active gauge
switchboard_sessions_active{platform="genesys",region="default",tenant="acme"} 3
switchboard_sessions_active{platform="genesys",region="default",tenant="other"} 2
switchboard_upgrades{platform="genesys",region="default",tenant="acme",result="accepted"} 5
switchboard_upgrades{platform="genesys",region="default",tenant="none",result="auth"} 1
switchboard_upgrades{platform="genesys",region="default",tenant="other",result="accepted"} 1
"#;
        let (active, upgrades) = switchboard_figures(text);
        assert_eq!(active, Some(5.0));
        assert_eq!(upgrades["accepted"], 6.0);
        assert_eq!(upgrades["auth"], 1.0);
        assert_eq!(
            stat(
                "server.memory_allocated: 123\nx: 1",
                "server.memory_allocated"
            ),
            Some(123)
        );
        assert_eq!(stat("x: y", "x"), None);
    }

    #[test]
    fn admin_is_host_port_or_an_http_url() {
        for given in [
            "127.0.0.1:9901",
            "http://127.0.0.1:9901",
            "http://127.0.0.1:9901/",
        ] {
            assert_eq!(authority(given).as_deref(), Ok("127.0.0.1:9901"), "{given}");
        }
        assert_eq!(authority("[::1]:9901").as_deref(), Ok("[::1]:9901"));
        assert_eq!(authority("localhost:9901").as_deref(), Ok("localhost:9901"));
        for bad in [
            "https://127.0.0.1:9901",
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            ":9901",
            "http://127.0.0.1:9901/stats",
            "",
        ] {
            let err = authority(bad).unwrap_err();
            assert!(err.starts_with("--admin: "), "{bad}: {err}");
        }
    }

    #[test]
    fn responses_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(parse_response(plain).as_deref(), Some("ok"));
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).as_deref(), Some("abcde"));
        assert_eq!(
            parse_response(b"HTTP/1.1 426 Upgrade Required\r\n\r\nno"),
            None
        );
        assert_eq!(parse_response(b"garbage"), None);
    }
}
