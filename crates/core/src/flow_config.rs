//! The `backpressure`, `admission` and `idle_timeout` settings: per-tenant rate budgets, the
//! queue-depth caps, upgrade admission and idle sessions.

use std::collections::HashMap;

use serde::Deserialize;

use crate::budget::Rate;
use crate::config_error::FieldError;
use crate::duration::ConfigDuration;

const MAX_RATE: f64 = 1e9;

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawBudgets {
    /// Client-to-platform frames per second, per tenant (the platform's rate limit).
    #[serde(default)]
    pub up_frames_per_sec: Option<f64>,
    /// Client-to-platform bytes per second, per tenant.
    #[serde(default)]
    pub up_bytes_per_sec: Option<f64>,
    /// Platform-to-client frames per second, per agent session.
    #[serde(default)]
    pub down_frames_per_sec: Option<f64>,
    /// How much of a second's budget may go at once.
    #[serde(default)]
    pub burst: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    #[serde(default)]
    pub base: Option<ConfigDuration>,
    #[serde(default)]
    pub cap: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawBackpressure {
    #[serde(default)]
    pub default: Option<RawBudgets>,
    #[serde(default)]
    pub tenants: Option<HashMap<String, RawBudgets>>,
    #[serde(default)]
    pub max_queue_bytes: Option<u64>,
    #[serde(default)]
    pub session_hold_bytes: Option<u64>,
    #[serde(default)]
    pub admission_threshold: Option<f64>,
    #[serde(default)]
    pub retry_after: Option<RawRetry>,
    /// Budget a worker takes from a tenant's shared bucket at a time, as time at the rate.
    #[serde(default)]
    pub slice: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAdmission {
    #[serde(default)]
    pub upgrades_per_sec: Option<f64>,
    #[serde(default)]
    pub upgrade_burst: Option<f64>,
    #[serde(default)]
    pub tenant_upgrades_per_sec: Option<f64>,
    #[serde(default)]
    pub tenant_upgrade_burst: Option<f64>,
    #[serde(default)]
    pub max_sessions_per_agent: Option<u32>,
    /// `reject` (the newest gets 409) or `allow`.
    #[serde(default)]
    pub duplicate_sessions: Option<String>,
    #[serde(default)]
    pub retry_after: Option<RawRetry>,
}

/// One tenant's budgets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budgets {
    pub up_frames: Rate,
    pub up_bytes: Rate,
    pub down_frames: Rate,
}

impl Budgets {
    pub const UNLIMITED: Budgets = Budgets {
        up_frames: Rate::UNLIMITED,
        up_bytes: Rate::UNLIMITED,
        down_frames: Rate::UNLIMITED,
    };

    pub fn limits_anything(&self) -> bool {
        !(self.up_frames.is_unlimited()
            && self.up_bytes.is_unlimited()
            && self.down_frames.is_unlimited())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base_ms: u64,
    pub cap_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BackpressureConfig {
    pub default: Budgets,
    pub tenants: HashMap<String, Budgets>,
    pub max_queue_bytes: u64,
    pub session_hold_bytes: u64,
    pub admission_threshold: f64,
    pub retry: RetryPolicy,
    pub slice_ms: u64,
}

impl BackpressureConfig {
    pub fn budgets_for(&self, tenant: &str) -> Budgets {
        self.tenants.get(tenant).copied().unwrap_or(self.default)
    }

    /// Held bytes above which new upgrades are refused.
    pub fn admission_limit(&self) -> u64 {
        (self.max_queue_bytes as f64 * self.admission_threshold) as u64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuplicatePolicy {
    Reject,
    Allow,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionConfig {
    pub global: Rate,
    pub per_tenant: Rate,
    pub max_sessions_per_agent: Option<u32>,
    pub duplicates: DuplicatePolicy,
    pub retry: RetryPolicy,
}

fn rate(path: &str, per_sec: Option<f64>, burst_secs: f64, errors: &mut Vec<FieldError>) -> Rate {
    match per_sec {
        None => Rate::UNLIMITED,
        Some(value) if value.is_finite() && value > 0.0 && value <= MAX_RATE => Rate {
            per_sec: value,
            burst: (value * burst_secs).max(1.0),
        },
        Some(value) => {
            errors.push(FieldError::new(
                path,
                format!("{value} must be above 0 and at most {MAX_RATE}"),
            ));
            Rate::UNLIMITED
        }
    }
}

fn budgets(path: &str, raw: &RawBudgets, errors: &mut Vec<FieldError>) -> Budgets {
    let burst_ms = raw.burst.map_or(1_000, |b| b.as_millis());
    if !(10..=60_000).contains(&burst_ms) {
        errors.push(FieldError::new(
            format!("{path}.burst"),
            "must be between 10ms and 60s",
        ));
    }
    let burst = burst_ms as f64 / 1000.0;
    Budgets {
        up_frames: rate(
            &format!("{path}.up_frames_per_sec"),
            raw.up_frames_per_sec,
            burst,
            errors,
        ),
        up_bytes: rate(
            &format!("{path}.up_bytes_per_sec"),
            raw.up_bytes_per_sec,
            burst,
            errors,
        ),
        down_frames: rate(
            &format!("{path}.down_frames_per_sec"),
            raw.down_frames_per_sec,
            burst,
            errors,
        ),
    }
}

fn retry(path: &str, raw: Option<RawRetry>, errors: &mut Vec<FieldError>) -> RetryPolicy {
    let raw = raw.unwrap_or_default();
    let policy = RetryPolicy {
        base_ms: raw.base.map_or(1_000, |d| d.as_millis()),
        cap_ms: raw.cap.map_or(30_000, |d| d.as_millis()),
    };
    if policy.base_ms < 1_000 || policy.base_ms > policy.cap_ms || policy.cap_ms > 3_600_000 {
        errors.push(FieldError::new(
            path,
            "base must be at least 1s and at most cap; cap at most 1h",
        ));
    }
    policy
}

/// Phase two of `backpressure`; `None` when the section is absent.
pub fn backpressure_config(
    raw: Option<RawBackpressure>,
    errors: &mut Vec<FieldError>,
) -> Option<BackpressureConfig> {
    let raw = raw?;
    let default = budgets(
        "backpressure.default",
        &raw.default.clone().unwrap_or_default(),
        errors,
    );
    let mut tenants = HashMap::new();
    for (tenant, raw_budgets) in raw.tenants.unwrap_or_default() {
        let path = format!("backpressure.tenants.{tenant}");
        if tenant.is_empty() || tenant.len() > 1024 {
            errors.push(FieldError::new(&path, "tenant ids are 1 to 1024 bytes"));
        }
        tenants.insert(tenant, budgets(&path, &raw_budgets, errors));
    }
    let max_queue_bytes = raw.max_queue_bytes.unwrap_or(64 << 20);
    let session_hold_bytes = raw.session_hold_bytes.unwrap_or(512 << 10);
    if !(64 << 10..=4 << 30).contains(&max_queue_bytes) {
        errors.push(FieldError::new(
            "backpressure.max_queue_bytes",
            "must be between 64 KiB and 4 GiB",
        ));
    }
    if session_hold_bytes < 1024 || session_hold_bytes > max_queue_bytes {
        errors.push(FieldError::new(
            "backpressure.session_hold_bytes",
            "must be at least 1 KiB and at most max_queue_bytes",
        ));
    }
    let admission_threshold = raw.admission_threshold.unwrap_or(0.7);
    if !(0.05..=1.0).contains(&admission_threshold) {
        errors.push(FieldError::new(
            "backpressure.admission_threshold",
            format!("{admission_threshold} is outside 0.05..=1.0"),
        ));
    }
    // "0ms" lends nothing: every chunk settles with the shared bucket (one compare-and-swap).
    let slice_ms = raw.slice.map_or(100, |d| d.as_millis());
    if slice_ms > 5_000 {
        errors.push(FieldError::new(
            "backpressure.slice",
            "must be at most 5s (0ms: no slices, one compare-and-swap per chunk)",
        ));
    }
    Some(BackpressureConfig {
        default,
        tenants,
        max_queue_bytes,
        session_hold_bytes,
        admission_threshold,
        retry: retry("backpressure.retry_after", raw.retry_after, errors),
        slice_ms,
    })
}

/// Phase two of `admission`; `None` when the section is absent.
pub fn admission_config(
    raw: Option<RawAdmission>,
    errors: &mut Vec<FieldError>,
) -> Option<AdmissionConfig> {
    let raw = raw?;
    let bucket =
        |path: &str, per_sec: Option<f64>, burst: Option<f64>, errors: &mut Vec<FieldError>| {
            let mut shape = rate(path, per_sec, 1.0, errors);
            if let Some(burst) = burst {
                if (1.0..=MAX_RATE).contains(&burst) {
                    shape.burst = burst;
                } else {
                    errors.push(FieldError::new(
                        path.replace("per_sec", "burst"),
                        "must be at least 1",
                    ));
                }
            }
            shape
        };
    let global = bucket(
        "admission.upgrades_per_sec",
        raw.upgrades_per_sec,
        raw.upgrade_burst,
        errors,
    );
    let per_tenant = bucket(
        "admission.tenant_upgrades_per_sec",
        raw.tenant_upgrades_per_sec,
        raw.tenant_upgrade_burst,
        errors,
    );
    if raw.max_sessions_per_agent == Some(0) {
        errors.push(FieldError::new(
            "admission.max_sessions_per_agent",
            "must be at least 1 (leave it out for no cap)",
        ));
    }
    let duplicates = match raw.duplicate_sessions.as_deref() {
        None | Some("reject") => DuplicatePolicy::Reject,
        Some("allow") => DuplicatePolicy::Allow,
        Some(other) => {
            errors.push(FieldError::new(
                "admission.duplicate_sessions",
                format!("\"{other}\" is not one of reject, allow"),
            ));
            DuplicatePolicy::Reject
        }
    };
    Some(AdmissionConfig {
        global,
        per_tenant,
        max_sessions_per_agent: raw.max_sessions_per_agent,
        duplicates,
        retry: retry("admission.retry_after", raw.retry_after, errors),
    })
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDrain {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The path an operator POSTs to (from loopback only) to start draining; DELETE stops it.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub retry_after: Option<ConfigDuration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrainConfig {
    pub path: String,
    pub retry_after_ms: u64,
}

/// Phase two of `drain`: on by default at `/_switchboard/drain`.
pub fn drain_config(raw: Option<RawDrain>, errors: &mut Vec<FieldError>) -> Option<DrainConfig> {
    let raw = raw.unwrap_or_default();
    if raw.enabled == Some(false) {
        return None;
    }
    let path = raw
        .path
        .unwrap_or_else(|| "/_switchboard/drain".to_string());
    if !path.starts_with('/') || path.contains('?') || path.bytes().any(|b| b <= b' ' || b >= 0x7f)
    {
        errors.push(FieldError::new(
            "drain.path",
            format!("\"{path}\" must be an absolute path without a query"),
        ));
    }
    let retry_after_ms = raw.retry_after.map_or(5_000, |d| d.as_millis());
    if !(1_000..=600_000).contains(&retry_after_ms) {
        errors.push(FieldError::new(
            "drain.retry_after",
            "must be between 1s and 10m",
        ));
    }
    Some(DrainConfig {
        path,
        retry_after_ms,
    })
}

/// What an operator's request to the drain path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainAction {
    Start,
    Stop,
    Status,
    /// The drain path from anywhere but this host: refused with 403.
    Forbidden,
    /// The drain path with another method: 405.
    BadMethod,
}

/// `None` when the request is not for the drain path. Only loopback peers may drain: the
/// endpoint sits on the agents' listener.
pub fn drain_action(
    config: &DrainConfig,
    method: &str,
    path: &str,
    peer: Option<&str>,
) -> Option<DrainAction> {
    let bare = path.split_once('?').map_or(path, |(bare, _)| bare);
    if bare != config.path {
        return None;
    }
    if !peer.is_some_and(is_loopback) {
        return Some(DrainAction::Forbidden);
    }
    Some(match method {
        "POST" => DrainAction::Start,
        "DELETE" => DrainAction::Stop,
        "GET" => DrainAction::Status,
        _ => DrainAction::BadMethod,
    })
}

/// `127.0.0.1:5000`, `[::1]:5000`, `127.3.4.5` … (the peer address Envoy reports).
pub fn is_loopback(address: &str) -> bool {
    let host = if let Some(rest) = address.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        address.rsplit_once(':').map_or(address, |(host, _)| host)
    };
    host == "::1" || host.split('.').next() == Some("127") && host.split('.').count() == 4
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn bp(json: &str) -> (Option<BackpressureConfig>, Vec<FieldError>) {
        let mut errors = Vec::new();
        let config = backpressure_config(Some(serde_json::from_str(json).unwrap()), &mut errors);
        (config, errors)
    }

    #[test]
    fn budgets_resolve_per_tenant_with_a_default() {
        let (config, errors) = bp(r#"{"default":{"up_frames_per_sec":100,"burst":"500ms"},
                "tenants":{"big":{"up_frames_per_sec":1000,"down_frames_per_sec":50}}}"#);
        assert!(errors.is_empty(), "{errors:?}");
        let config = config.unwrap();
        let default = config.budgets_for("small");
        assert_eq!(default.up_frames.per_sec, 100.0);
        assert_eq!(default.up_frames.burst, 50.0);
        assert!(default.up_bytes.is_unlimited());
        assert_eq!(config.budgets_for("big").down_frames.per_sec, 50.0);
        assert_eq!(config.admission_limit(), (64u64 << 20) * 7 / 10);
    }

    #[test]
    fn bad_values_name_their_field() {
        for (json, path) in [
            (
                r#"{"default":{"up_frames_per_sec":0}}"#,
                "backpressure.default.up_frames_per_sec",
            ),
            (
                r#"{"default":{"burst":"2m"}}"#,
                "backpressure.default.burst",
            ),
            (
                r#"{"tenants":{"t":{"down_frames_per_sec":-1}}}"#,
                "backpressure.tenants.t.down_frames_per_sec",
            ),
            (r#"{"max_queue_bytes":10}"#, "backpressure.max_queue_bytes"),
            (
                r#"{"session_hold_bytes":10}"#,
                "backpressure.session_hold_bytes",
            ),
            (
                r#"{"admission_threshold":1.5}"#,
                "backpressure.admission_threshold",
            ),
            (
                r#"{"retry_after":{"base":"10s","cap":"1s"}}"#,
                "backpressure.retry_after",
            ),
        ] {
            let (_, errors) = bp(json);
            assert!(errors.iter().any(|e| e.path == path), "{json}: {errors:?}");
        }
        let mut errors = Vec::new();
        admission_config(
            Some(
                serde_json::from_str(r#"{"max_sessions_per_agent":0,"duplicate_sessions":"kick"}"#)
                    .unwrap(),
            ),
            &mut errors,
        );
        assert_eq!(errors.len(), 2, "{errors:?}");
    }

    #[test]
    fn drain_is_for_loopback_peers_only() {
        let mut errors = Vec::new();
        let config = drain_config(None, &mut errors).unwrap();
        assert!(errors.is_empty());
        let act = |method, path, peer| drain_action(&config, method, path, peer);
        assert_eq!(
            act("POST", "/_switchboard/drain", Some("127.0.0.1:4000")),
            Some(DrainAction::Start)
        );
        assert_eq!(
            act("DELETE", "/_switchboard/drain?x", Some("[::1]:4000")),
            Some(DrainAction::Stop)
        );
        assert_eq!(
            act("GET", "/_switchboard/drain", Some("127.0.0.9:1")),
            Some(DrainAction::Status)
        );
        assert_eq!(
            act("PUT", "/_switchboard/drain", Some("127.0.0.1:1")),
            Some(DrainAction::BadMethod)
        );
        assert_eq!(
            act("POST", "/_switchboard/drain", Some("10.0.0.1:4000")),
            Some(DrainAction::Forbidden)
        );
        assert_eq!(
            act("POST", "/_switchboard/drain", Some("[2001:db8::1]:4000")),
            Some(DrainAction::Forbidden)
        );
        assert_eq!(
            act("POST", "/_switchboard/drain", None),
            Some(DrainAction::Forbidden)
        );
        assert_eq!(act("POST", "/v2/realtime", Some("127.0.0.1:1")), None);
        assert!(!is_loopback("1270.0.0.1:1"));
        let mut errors = Vec::new();
        drain_config(
            Some(serde_json::from_str(r#"{"path":"nope"}"#).unwrap()),
            &mut errors,
        );
        assert_eq!(errors[0].path, "drain.path");
        assert!(drain_config(
            Some(serde_json::from_str(r#"{"enabled":false}"#).unwrap()),
            &mut errors
        )
        .is_none());
    }
}
