//! What operators see: metric labels (platform, region, tenant) and the one log line written
//! when a session ends.
//!
//! Labels are part of the metric name (`.platform.<p>.region.<r>.tenant.<t>`), which Envoy's
//! `stats_tags` turn into Prometheus labels. Every value is bounded: a tenant id from a token is
//! sanitized, and only a configured list (or the first `max_tenants` seen by a worker) get a
//! label of their own; the rest share `other`.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config_error::FieldError;
use crate::secret::Secret;

/// Longest label value; longer values are cut.
pub const MAX_LABEL_LEN: usize = 40;
const MAX_TENANTS_LIMIT: usize = 1_000;
const DEFAULT_MAX_TENANTS: usize = 50;
/// The tenant label of streams without an identity (rejected before authentication).
pub const NO_TENANT: &str = "none";
/// The tenant label shared by tenants past the cap or off the list.
pub const OTHER_TENANT: &str = "other";

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// The gateway's region label (default `default`).
    #[serde(default)]
    pub region: Option<String>,
    /// Tenants that get a label of their own; absent: the first `max_tenants` seen.
    #[serde(default)]
    pub tenants: Option<Vec<String>>,
    /// Distinct tenant labels per worker when `tenants` is absent; 0 turns the tenant label off.
    #[serde(default)]
    pub max_tenants: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSessionLog {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Mixed into the agent id hash so log readers cannot test guesses of agent ids.
    #[serde(default)]
    pub agent_hash_salt: Option<String>,
}

/// How tenants become labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantPolicy {
    /// Every session is `other`.
    Off,
    /// These (sanitized) tenants have their own label.
    Listed(Vec<String>),
    /// The first this many distinct tenants a worker sees.
    FirstSeen(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    pub platform: &'static str,
    pub region: String,
    pub tenants: TenantPolicy,
}

impl MetricsConfig {
    /// `switchboard.platform.<p>.region.<r>.`: the start of every metric name.
    pub fn prefix(&self) -> String {
        format!(
            "switchboard.platform.{}.region.{}.",
            self.platform, self.region
        )
    }
}

#[derive(Debug, Clone)]
pub struct SessionLogConfig {
    pub salt: Option<Secret>,
}

/// A label value: lowercase ASCII letters, digits and `_` (anything else becomes `_`), at most
/// [`MAX_LABEL_LEN`] characters; `None` when nothing is left.
pub fn label_value(raw: &str) -> Option<String> {
    let value: String = raw
        .chars()
        .take(MAX_LABEL_LEN)
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '_'
            }
        })
        .collect();
    (!value.is_empty()).then_some(value)
}

pub fn metrics_config(
    raw: Option<RawMetrics>,
    platform: &'static str,
    errors: &mut Vec<FieldError>,
) -> MetricsConfig {
    let raw = raw.unwrap_or_default();
    let region = match raw.region.as_deref() {
        None => "default".to_string(),
        Some(region) => match label_value(region) {
            Some(value) if value == region => value,
            _ => {
                errors.push(FieldError::new(
                    "metrics.region",
                    format!("must be 1..={MAX_LABEL_LEN} of a-z, 0-9 and _"),
                ));
                "default".to_string()
            }
        },
    };
    let tenants = match (raw.tenants, raw.max_tenants) {
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(
                "metrics.max_tenants",
                "cannot be combined with metrics.tenants (the list is the cap)",
            ));
            TenantPolicy::Off
        }
        (Some(list), None) => {
            if list.len() > MAX_TENANTS_LIMIT {
                errors.push(FieldError::new(
                    "metrics.tenants",
                    format!("lists more than {MAX_TENANTS_LIMIT} tenants"),
                ));
            }
            let mut labels: Vec<String> = Vec::new();
            for (i, tenant) in list.iter().enumerate() {
                match label_value(tenant) {
                    Some(label) if label == NO_TENANT || label == OTHER_TENANT => {
                        errors.push(FieldError::new(
                            format!("metrics.tenants[{i}]"),
                            format!("\"{label}\" is reserved"),
                        ))
                    }
                    Some(label) if labels.contains(&label) => errors.push(FieldError::new(
                        format!("metrics.tenants[{i}]"),
                        format!("\"{tenant}\" is listed twice (labels are lowercased)"),
                    )),
                    Some(label) => labels.push(label),
                    None => {
                        errors.push(FieldError::new(format!("metrics.tenants[{i}]"), "is empty"))
                    }
                }
            }
            TenantPolicy::Listed(labels)
        }
        (None, max) => match max.unwrap_or(DEFAULT_MAX_TENANTS) {
            0 => TenantPolicy::Off,
            n if n > MAX_TENANTS_LIMIT => {
                errors.push(FieldError::new(
                    "metrics.max_tenants",
                    format!("{n} is above {MAX_TENANTS_LIMIT}"),
                ));
                TenantPolicy::Off
            }
            n => TenantPolicy::FirstSeen(n),
        },
    };
    MetricsConfig {
        platform,
        region,
        tenants,
    }
}

pub fn session_log_config(raw: Option<RawSessionLog>) -> Option<SessionLogConfig> {
    let raw = raw.unwrap_or_default();
    raw.enabled.unwrap_or(true).then(|| SessionLogConfig {
        salt: raw.agent_hash_salt.map(Secret::new),
    })
}

/// A worker's tenant labels: slot 0 is [`NO_TENANT`], slot 1 [`OTHER_TENANT`].
#[derive(Debug, Clone)]
pub struct TenantLabels {
    policy: TenantPolicy,
    labels: Vec<String>,
}

pub type TenantSlot = u16;
pub const NO_TENANT_SLOT: TenantSlot = 0;
pub const OTHER_TENANT_SLOT: TenantSlot = 1;

impl TenantLabels {
    pub fn new(policy: TenantPolicy) -> Self {
        let mut labels = vec![NO_TENANT.to_string(), OTHER_TENANT.to_string()];
        if let TenantPolicy::Listed(list) = &policy {
            labels.extend(list.iter().cloned());
        }
        Self { policy, labels }
    }

    /// The slot of a tenant id from a verified token.
    pub fn slot(&mut self, tenant: &str) -> TenantSlot {
        let Some(label) = label_value(tenant) else {
            return OTHER_TENANT_SLOT;
        };
        if label == NO_TENANT || label == OTHER_TENANT {
            return OTHER_TENANT_SLOT;
        }
        if let Some(i) = self.labels.iter().position(|l| *l == label) {
            return TenantSlot::try_from(i).unwrap_or(OTHER_TENANT_SLOT);
        }
        match self.policy {
            TenantPolicy::FirstSeen(max) if self.labels.len() - 2 < max => {
                self.labels.push(label);
                TenantSlot::try_from(self.labels.len() - 1).unwrap_or(OTHER_TENANT_SLOT)
            }
            _ => OTHER_TENANT_SLOT,
        }
    }

    pub fn label(&self, slot: TenantSlot) -> &str {
        self.labels
            .get(usize::from(slot))
            .map_or(OTHER_TENANT, String::as_str)
    }
}

/// The first 16 hex digits of SHA-256(salt ‖ 0x00 ‖ agent id): stable across workers and
/// restarts, so one agent's sessions can be followed without the log holding the id.
pub fn agent_hash(salt: Option<&Secret>, agent_id: &str) -> String {
    let mut hasher = Sha256::new();
    if let Some(salt) = salt {
        hasher.update(salt.expose().as_bytes());
    }
    hasher.update([0u8]);
    hasher.update(agent_id.as_bytes());
    let digest = hasher.finalize();
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Who sent the first close frame of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseSide {
    Client,
    Platform,
    /// Switchboard closed it (idle, drain, overflow, protocol violation).
    Gateway,
}

impl CloseSide {
    pub const fn as_str(self) -> &'static str {
        match self {
            CloseSide::Client => "client",
            CloseSide::Platform => "platform",
            CloseSide::Gateway => "gateway",
        }
    }
}

/// Why a session ended, as far as the gateway saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// A close handshake started by the client or the platform.
    Closed,
    IdleTimeout,
    Drain,
    /// Held data passed a backpressure cap (1013).
    Overflow,
    /// A frame broke RFC 6455 (closed with the violation's code).
    ProtocolViolation,
    /// The stream ended with no close frame (a reset, a dropped connection).
    Reset,
}

impl EndReason {
    pub const fn as_str(self) -> &'static str {
        match self {
            EndReason::Closed => "closed",
            EndReason::IdleTimeout => "idle_timeout",
            EndReason::Drain => "drain",
            EndReason::Overflow => "backpressure_overflow",
            EndReason::ProtocolViolation => "protocol_violation",
            EndReason::Reset => "reset",
        }
    }
}

/// One direction's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flow {
    pub frames: u64,
    pub bytes: u64,
}

/// What one session did, gathered while it runs.
#[derive(Debug, Clone, Default)]
pub struct SessionSummary {
    pub started_ms: u64,
    pub up: Flow,
    pub down: Flow,
    /// The first close frame: its code and side.
    pub close: Option<(u16, CloseSide)>,
    /// Set when the gateway decided the end (idle, drain, overflow, violation).
    pub reason: Option<EndReason>,
}

impl SessionSummary {
    /// Records a close frame; only the first counts.
    pub fn closed(&mut self, code: u16, side: CloseSide) {
        if self.close.is_none() {
            self.close = Some((code, side));
        }
    }

    /// The gateway ends the session with `code`; the first decision wins.
    pub fn ended_by_gateway(&mut self, reason: EndReason, code: u16) {
        if self.reason.is_none() {
            self.reason = Some(reason);
        }
        self.closed(code, CloseSide::Gateway);
    }

    pub fn reason(&self) -> EndReason {
        match (self.reason, self.close) {
            (Some(reason), _) => reason,
            (None, Some(_)) => EndReason::Closed,
            (None, None) => EndReason::Reset,
        }
    }

    /// The session's line: JSON, one object, no token and no payload.
    pub fn log_line(&self, tenant: &str, agent_hash: &str, now_ms: u64) -> String {
        let (code, side) = match self.close {
            Some((code, side)) => (serde_json::Value::from(code), side.as_str()),
            None => (serde_json::Value::Null, "none"),
        };
        serde_json::json!({
            "event": "session_end",
            "tenant": tenant,
            "agent": agent_hash,
            "duration_ms": now_ms.saturating_sub(self.started_ms),
            "frames_up": self.up.frames,
            "bytes_up": self.up.bytes,
            "frames_down": self.down.frames,
            "bytes_down": self.down.bytes,
            "close_code": code,
            "close_side": side,
            "reason": self.reason().as_str(),
        })
        .to_string()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn config(json: &str) -> (MetricsConfig, Vec<FieldError>) {
        let raw: RawMetrics = serde_json::from_str(json).unwrap();
        let mut errors = Vec::new();
        let config = metrics_config(Some(raw), "genesys", &mut errors);
        (config, errors)
    }

    #[test]
    fn labels_are_sanitized_and_bounded() {
        assert_eq!(label_value("Acme-Corp.EU").as_deref(), Some("acme_corp_eu"));
        assert_eq!(label_value(""), None);
        let long = "x".repeat(100);
        assert_eq!(label_value(&long).map(|l| l.len()), Some(MAX_LABEL_LEN));
        assert_eq!(label_value("é").as_deref(), Some("_"));
    }

    #[test]
    fn defaults_and_prefix() {
        let (config, errors) = config("{}");
        assert!(errors.is_empty());
        assert_eq!(config.region, "default");
        assert_eq!(config.tenants, TenantPolicy::FirstSeen(DEFAULT_MAX_TENANTS));
        assert_eq!(
            config.prefix(),
            "switchboard.platform.genesys.region.default."
        );
    }

    #[test]
    fn bad_settings_name_their_field() {
        let (_, errors) = config(r#"{"region": "EU West"}"#);
        assert_eq!(errors[0].path, "metrics.region");
        let (_, errors) = config(r#"{"tenants": ["a"], "max_tenants": 3}"#);
        assert_eq!(errors[0].path, "metrics.max_tenants");
        let (_, errors) = config(r#"{"tenants": ["Acme", "acme"]}"#);
        assert_eq!(errors[0].path, "metrics.tenants[1]");
        let (_, errors) = config(r#"{"tenants": ["other"]}"#);
        assert_eq!(errors[0].path, "metrics.tenants[0]");
        let (_, errors) = config(r#"{"max_tenants": 5000}"#);
        assert_eq!(errors[0].path, "metrics.max_tenants");
    }

    #[test]
    fn first_seen_tenants_are_capped() {
        let mut labels = TenantLabels::new(TenantPolicy::FirstSeen(2));
        let a = labels.slot("acme");
        let b = labels.slot("Globex");
        assert_eq!(labels.label(a), "acme");
        assert_eq!(labels.label(b), "globex");
        assert_eq!(labels.slot("acme"), a);
        assert_eq!(labels.slot("initech"), OTHER_TENANT_SLOT);
        assert_eq!(labels.label(OTHER_TENANT_SLOT), "other");
        assert_eq!(labels.label(NO_TENANT_SLOT), "none");
        // A tenant named like a reserved label cannot take its place.
        assert_eq!(labels.slot("NONE"), OTHER_TENANT_SLOT);
        assert_eq!(labels.label(999), "other");
    }

    #[test]
    fn listed_tenants_only() {
        let mut labels = TenantLabels::new(TenantPolicy::Listed(vec!["acme".into()]));
        let acme = labels.slot("ACME");
        assert_eq!(labels.label(acme), "acme");
        assert_eq!(labels.slot("globex"), OTHER_TENANT_SLOT);
        let mut off = TenantLabels::new(TenantPolicy::Off);
        assert_eq!(off.slot("acme"), OTHER_TENANT_SLOT);
    }

    #[test]
    fn agent_hash_is_stable_salted_and_short() {
        let plain = agent_hash(None, "agent-1");
        assert_eq!(plain.len(), 16);
        assert_eq!(plain, agent_hash(None, "agent-1"));
        assert_ne!(plain, agent_hash(None, "agent-2"));
        let salt = Secret::new("pepper");
        assert_ne!(plain, agent_hash(Some(&salt), "agent-1"));
        assert!(!plain.contains("agent"));
    }

    #[test]
    fn session_line_reports_the_first_close_and_the_reason() {
        let mut summary = SessionSummary {
            started_ms: 1_000,
            ..SessionSummary::default()
        };
        summary.up = Flow {
            frames: 3,
            bytes: 120,
        };
        summary.closed(1000, CloseSide::Client);
        summary.closed(1000, CloseSide::Platform);
        let line: serde_json::Value =
            serde_json::from_str(&summary.log_line("acme", "abcd", 4_500)).unwrap();
        assert_eq!(line["event"], "session_end");
        assert_eq!(line["duration_ms"], 3_500);
        assert_eq!(line["frames_up"], 3);
        assert_eq!(line["bytes_up"], 120);
        assert_eq!(line["close_code"], 1000);
        assert_eq!(line["close_side"], "client");
        assert_eq!(line["reason"], "closed");

        let mut idle = SessionSummary::default();
        idle.ended_by_gateway(EndReason::IdleTimeout, 1001);
        idle.ended_by_gateway(EndReason::Overflow, 1013);
        assert_eq!(idle.reason(), EndReason::IdleTimeout);
        assert_eq!(idle.close, Some((1001, CloseSide::Gateway)));

        let reset: serde_json::Value =
            serde_json::from_str(&SessionSummary::default().log_line("none", "x", 0)).unwrap();
        assert_eq!(reset["reason"], "reset");
        assert_eq!(reset["close_code"], serde_json::Value::Null);
        assert_eq!(reset["close_side"], "none");
    }
}
