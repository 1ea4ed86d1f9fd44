//! Two-phase configuration: raw serde structs that mirror the JSON exactly, then a validated
//! [`Config`] with parsed keys and resolved profile defaults. Every error names its field path.

use serde::Deserialize;

use crate::config_error::FieldError;
use crate::duration::ConfigDuration;
use crate::identity::jwt::{ClaimNames, Verifier, VerifyPolicy};
use crate::identity::keys::{build_keys, RawKey};
use crate::origin::OriginPolicy;
use crate::profile::Profile;

/// Bounds on configured sizes, so a typo cannot ask the VM for gigabytes.
const MAX_TOKEN_BYTES_RANGE: (usize, usize) = (256, 65_536);
const MAX_IDENTITY_LEN_RANGE: (usize, usize) = (8, 1_024);
const MAX_CACHE_SLOTS: u32 = 1 << 20;
const MAX_LEEWAY_MILLIS: u64 = 600_000;
/// Root timer period when `tick` is not configured.
pub const DEFAULT_TICK_MS: u64 = 250;

/// The filter's configuration exactly as written in the Envoy YAML (JSON).
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub early_data: Option<String>,
    #[serde(default)]
    pub origin: Option<RawOrigin>,
    #[serde(default)]
    pub identity: Option<RawIdentity>,
    #[serde(default)]
    pub routing: Option<RawRouting>,
    #[serde(default)]
    pub platform: Option<RawPlatform>,
    #[serde(default)]
    pub frames: Option<RawFrames>,
    /// Period of each worker's root timer (token refresh, resuming held streams).
    #[serde(default)]
    pub tick: Option<ConfigDuration>,
    #[serde(default)]
    pub token: Option<crate::token::config::RawToken>,
    #[serde(default)]
    pub backpressure: Option<crate::flow_config::RawBackpressure>,
    #[serde(default)]
    pub admission: Option<crate::flow_config::RawAdmission>,
    /// Sessions with no data frame either way for this long are closed with 1001.
    #[serde(default)]
    pub idle_timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub drain: Option<crate::flow_config::RawDrain>,
    /// Metric labels: the gateway's region and which tenants get a label of their own.
    #[serde(default)]
    pub metrics: Option<crate::observe::RawMetrics>,
    /// The one line written when a session ends.
    #[serde(default)]
    pub session_log: Option<crate::observe::RawSessionLog>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawFrames {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub max_frame_bytes: Option<u64>,
    #[serde(default)]
    pub max_message_bytes: Option<u64>,
    #[serde(default)]
    pub validate_utf8: Option<bool>,
    #[serde(default)]
    pub deflate: Option<String>,
    #[serde(default)]
    pub tagging: Option<RawTagging>,
    #[serde(default)]
    pub dedup: Option<RawDedup>,
    #[serde(default)]
    pub resume: Option<RawResume>,
    #[serde(default)]
    pub guard: Option<bool>,
    #[serde(default)]
    pub envelope: Option<RawEnvelope>,
}

/// JSON pointers (RFC 6901) overriding where the profile's envelope keeps event facts.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEnvelope {
    #[serde(default)]
    pub id_pointers: Option<Vec<String>>,
    #[serde(default)]
    pub position_pointer: Option<String>,
    #[serde(default)]
    pub agent_pointers: Option<Vec<String>>,
    #[serde(default)]
    pub routing_key_pointers: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTagging {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub field: Option<String>,
    #[serde(default)]
    pub agent_field: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawDedup {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub window_events: Option<u16>,
    #[serde(default)]
    pub window_age: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawResume {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub query_param: Option<String>,
    #[serde(default)]
    pub ttl: Option<ConfigDuration>,
    #[serde(default)]
    pub slots: Option<u32>,
}

/// permessage-deflate (RFC 7692) handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeflatePolicy {
    /// Remove the offer from the upgrade whenever a payload feature is on, so frames stay readable.
    Strip,
    /// Let it through; a session that negotiates it skips payload features (counted).
    Pass,
}

/// Validated frame-engine settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramesConfig {
    pub enabled: bool,
    pub max_frame_bytes: u64,
    pub max_message_bytes: u64,
    pub validate_utf8: bool,
    pub deflate: DeflatePolicy,
    pub tag_field: Option<String>,
    pub tag_agent_field: Option<String>,
    pub dedup: Option<crate::dedup::DedupWindow>,
    /// Query parameter, TTL in ms and table slots of the resume cursor.
    pub resume: Option<(String, u64, u32)>,
    pub guard: bool,
    /// Where platform events keep their id, position, agent and routing key.
    pub envelope: crate::events::EnvelopeSpec,
}

impl FramesConfig {
    /// A feature reads message payloads (so compressed sessions cannot be served).
    pub fn payload_features(&self) -> bool {
        self.enabled
            && (self.tag_field.is_some()
                || self.dedup.is_some()
                || self.resume.is_some()
                || self.guard)
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOrigin {
    #[serde(default)]
    pub allowed: Vec<String>,
    #[serde(default)]
    pub allow_missing: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    #[serde(default)]
    pub sources: Option<Vec<String>>,
    #[serde(default)]
    pub query_param: Option<String>,
    #[serde(default)]
    pub subprotocol_prefix: Option<String>,
    #[serde(default)]
    pub keys: Vec<RawKey>,
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub leeway: Option<ConfigDuration>,
    #[serde(default)]
    pub claims: Option<RawClaims>,
    #[serde(default)]
    pub max_token_bytes: Option<usize>,
    #[serde(default)]
    pub max_identity_len: Option<usize>,
    #[serde(default)]
    pub cache_slots: Option<u32>,
    #[serde(default)]
    pub require_for_all_requests: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawClaims {
    #[serde(default)]
    pub agent_id: Option<String>,
    #[serde(default)]
    pub tenant_id: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    #[serde(default)]
    pub header: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPlatform {
    #[serde(default)]
    pub agent_header: Option<String>,
    #[serde(default)]
    pub tenant_header: Option<String>,
    #[serde(default)]
    pub region_header: Option<String>,
    #[serde(default)]
    pub subprotocols: Option<Vec<String>>,
}

/// RFC 8470 handling of requests that arrived in TLS early data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyDataPolicy {
    /// 425 for WebSocket upgrades carrying `early-data: 1`.
    RejectUpgrades,
    /// 425 for upgrades and for every request with a non-safe method.
    RejectUnsafe,
    /// Never answer 425.
    Off,
}

impl EarlyDataPolicy {
    pub const fn as_str(self) -> &'static str {
        match self {
            EarlyDataPolicy::RejectUpgrades => "reject_upgrades",
            EarlyDataPolicy::RejectUnsafe => "reject_unsafe",
            EarlyDataPolicy::Off => "off",
        }
    }
}

/// Where the agent's JWT may be carried, tried in the configured order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenSource {
    /// `Authorization: Bearer <jwt>`.
    Authorization,
    /// `?<query_param>=<jwt>`.
    Query,
    /// A `Sec-WebSocket-Protocol` entry `<prefix><jwt>` (browsers cannot set headers).
    Subprotocol,
}

impl TokenSource {
    fn parse(text: &str) -> Option<TokenSource> {
        match text {
            "authorization" => Some(TokenSource::Authorization),
            "query" => Some(TokenSource::Query),
            "subprotocol" => Some(TokenSource::Subprotocol),
            _ => None,
        }
    }
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenSource::Authorization => "authorization",
            TokenSource::Query => "query",
            TokenSource::Subprotocol => "subprotocol",
        }
    }
}

/// Validated identity settings.
#[derive(Debug)]
pub struct IdentityConfig {
    pub sources: Vec<TokenSource>,
    pub query_param: String,
    pub subprotocol_prefix: String,
    pub verifier: Verifier,
    pub leeway_secs: u64,
    pub cache_slots: u32,
    pub require_for_all_requests: bool,
    /// Digest of everything that decides a verdict; cached verdicts from another config are ignored.
    pub fingerprint: u64,
    pub key_count: usize,
}

/// Header names the gateway sets toward the platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformHeaders {
    pub agent_header: String,
    pub tenant_header: String,
    pub region_header: String,
    pub subprotocols: Vec<String>,
}

/// The validated runtime configuration.
#[derive(Debug)]
pub struct Config {
    pub profile: Profile,
    pub early_data: EarlyDataPolicy,
    pub origin: Option<OriginPolicy>,
    pub identity: IdentityConfig,
    pub routing_header: String,
    pub platform: PlatformHeaders,
    pub frames: FramesConfig,
    pub tick_ms: u64,
    /// The platform token the gateway owns; `None` leaves platform credentials to the client.
    pub token: Option<crate::token::config::TokenConfig>,
    pub backpressure: Option<crate::flow_config::BackpressureConfig>,
    pub admission: Option<crate::flow_config::AdmissionConfig>,
    /// `None`: sessions may stay silent (Envoy's `stream_idle_timeout` still applies).
    pub idle_timeout_ms: Option<u64>,
    /// The operator's drain switch; `None` when disabled.
    pub drain: Option<crate::flow_config::DrainConfig>,
    pub metrics: crate::observe::MetricsConfig,
    /// `None` when the session log is off.
    pub session_log: Option<crate::observe::SessionLogConfig>,
}

impl Config {
    /// Parses and validates the filter configuration. All problems found are returned, first
    /// the one that stopped parsing (if any), each naming its field path.
    pub fn from_json(bytes: &[u8]) -> Result<Config, Vec<FieldError>> {
        let raw = parse_raw(bytes).map_err(|e| vec![e])?;
        Config::try_from(raw)
    }

    /// Headers a client must never supply itself: the gateway sets them.
    pub fn gateway_owned_headers(&self) -> [&str; 4] {
        [
            self.routing_header.as_str(),
            self.platform.agent_header.as_str(),
            self.platform.tenant_header.as_str(),
            self.platform.region_header.as_str(),
        ]
    }

    /// One line describing the effective configuration (no secrets).
    pub fn summary(&self) -> String {
        let sources: Vec<&str> = self.identity.sources.iter().map(|s| s.as_str()).collect();
        let platform_token = match &self.token {
            None => "off".to_string(),
            Some(token) => format!(
                "{}@{}({})",
                token.grant.as_str(),
                token.cluster,
                match &token.injection {
                    crate::token::config::Injection::Header => "header".to_string(),
                    crate::token::config::Injection::Query(name) => format!("query:{name}"),
                }
            ),
        };
        format!(
            "profile={} early_data={} origin={} keys={} token_sources={} routing_header={} cache_slots={} platform_token={platform_token}",
            self.profile.as_str(),
            self.early_data.as_str(),
            match &self.origin {
                Some(policy) => format!("{} allowed", policy.allowed_count()),
                None => "any".to_string(),
            },
            self.identity.key_count,
            sources.join(","),
            self.routing_header,
            self.identity.cache_slots,
        )
    }
}

/// Phase one: JSON into the raw structs, with the failing field's path in the error.
pub fn parse_raw(bytes: &[u8]) -> Result<RawConfig, FieldError> {
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(FieldError::new(
            "configuration",
            "is empty (identity.keys or identity.jwks is required)",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let raw: RawConfig = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let path = if path == "." || path.is_empty() {
            "configuration".to_string()
        } else {
            path
        };
        FieldError::new(path, strip_position(&err.inner().to_string()))
    })?;
    deserializer
        .end()
        .map_err(|e| FieldError::new("configuration", strip_position(&e.to_string())))?;
    Ok(raw)
}

/// serde_json appends "at line L column C", which points into the embedded JSON string and only
/// confuses a reader of the Envoy log; the field path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message.get(..index).unwrap_or(message).to_string(),
        None => message.to_string(),
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = Vec<FieldError>;

    fn try_from(raw: RawConfig) -> Result<Config, Vec<FieldError>> {
        let mut errors = Vec::new();

        let profile = match raw.profile.as_deref() {
            None => Profile::Generic,
            Some(name) => Profile::parse(name).unwrap_or_else(|| {
                errors.push(FieldError::new(
                    "profile",
                    format!("\"{name}\" is not one of {}", Profile::NAMES),
                ));
                Profile::Generic
            }),
        };
        let defaults = profile.defaults();

        let early_data = match raw.early_data.as_deref() {
            None | Some("reject_upgrades") => EarlyDataPolicy::RejectUpgrades,
            Some("reject_unsafe") => EarlyDataPolicy::RejectUnsafe,
            Some("off") => EarlyDataPolicy::Off,
            Some(other) => {
                errors.push(FieldError::new(
                    "early_data",
                    format!("\"{other}\" is not one of reject_upgrades, reject_unsafe, off"),
                ));
                EarlyDataPolicy::RejectUpgrades
            }
        };

        let origin = raw.origin.and_then(|raw_origin| {
            match OriginPolicy::new(
                &raw_origin.allowed,
                raw_origin.allow_missing.unwrap_or(true),
            ) {
                Ok(policy) => Some(policy),
                Err(err) => {
                    errors.push(err);
                    None
                }
            }
        });

        let raw_platform = raw.platform.unwrap_or_default();
        let platform = PlatformHeaders {
            agent_header: header_name(
                "platform.agent_header",
                raw_platform.agent_header,
                defaults.agent_header,
                &mut errors,
            ),
            tenant_header: header_name(
                "platform.tenant_header",
                raw_platform.tenant_header,
                defaults.tenant_header,
                &mut errors,
            ),
            region_header: header_name(
                "platform.region_header",
                raw_platform.region_header,
                defaults.region_header,
                &mut errors,
            ),
            subprotocols: subprotocol_list(
                raw_platform.subprotocols,
                defaults.subprotocols,
                &mut errors,
            ),
        };

        let routing_header = header_name(
            "routing.header",
            raw.routing.and_then(|r| r.header),
            "x-agent-routing-key",
            &mut errors,
        );

        let owned = [
            ("routing.header", &routing_header),
            ("platform.agent_header", &platform.agent_header),
            ("platform.tenant_header", &platform.tenant_header),
            ("platform.region_header", &platform.region_header),
        ];
        for (i, (path, name)) in owned.iter().enumerate() {
            if owned.iter().skip(i + 1).any(|(_, other)| other == name) {
                errors.push(FieldError::new(
                    *path,
                    format!("\"{name}\" is used for two different gateway headers"),
                ));
            }
        }

        let identity = match raw.identity {
            None => {
                errors.push(FieldError::new(
                    "identity",
                    "is required (at least identity.keys or identity.jwks)",
                ));
                None
            }
            Some(raw_identity) => {
                identity_config(raw_identity, defaults.token_query_param, &mut errors)
            }
        };
        let frames = frames_config(
            raw.frames.unwrap_or_default(),
            defaults.resume_query_param,
            defaults.envelope,
            &mut errors,
        );

        let tick_ms = raw.tick.map_or(DEFAULT_TICK_MS, |tick| tick.as_millis());
        if !(10..=5_000).contains(&tick_ms) {
            errors.push(FieldError::new(
                "tick",
                format!("{tick_ms}ms is outside 10ms..=5s"),
            ));
        }
        let token = crate::token::config::token_config(
            raw.token,
            defaults.platform_token_in_query,
            defaults.token_query_param,
            tick_ms,
            &mut errors,
        );
        if token.as_ref().is_some_and(|t| t.rotation.is_some()) && !frames.enabled {
            errors.push(FieldError::new(
                "token.rotation",
                "needs frames.enabled (frames are injected between whole client frames); set token.rotation.enabled to false or enable frames",
            ));
        }

        let backpressure = crate::flow_config::backpressure_config(raw.backpressure, &mut errors);
        let admission = crate::flow_config::admission_config(raw.admission, &mut errors);
        let drain = crate::flow_config::drain_config(raw.drain, &mut errors);
        let metrics = crate::observe::metrics_config(raw.metrics, profile.as_str(), &mut errors);
        let session_log = crate::observe::session_log_config(raw.session_log);
        let idle_timeout_ms = match raw.idle_timeout.map(|d| d.as_millis()) {
            None => Some(900_000),
            Some(0) => None,
            Some(ms) if ms < 1_000 => {
                errors.push(FieldError::new(
                    "idle_timeout",
                    "must be at least 1s (or \"0s\" for none)",
                ));
                None
            }
            Some(ms) => Some(ms),
        };
        if backpressure.is_some() && !frames.enabled {
            errors.push(FieldError::new(
                "backpressure",
                "needs frames.enabled (budgets count frames)",
            ));
        }

        match identity {
            Some(identity) if errors.is_empty() => Ok(Config {
                profile,
                early_data,
                origin,
                identity,
                routing_header,
                platform,
                frames,
                tick_ms,
                token,
                backpressure,
                admission,
                idle_timeout_ms,
                drain,
                metrics,
                session_log,
            }),
            _ => Err(errors),
        }
    }
}

fn identity_config(
    raw: RawIdentity,
    default_query_param: &str,
    errors: &mut Vec<FieldError>,
) -> Option<IdentityConfig> {
    let sources = match raw.sources {
        None => vec![
            TokenSource::Authorization,
            TokenSource::Subprotocol,
            TokenSource::Query,
        ],
        Some(list) => {
            let mut sources = Vec::new();
            if list.is_empty() {
                errors.push(FieldError::new(
                    "identity.sources",
                    "must name at least one of authorization, query, subprotocol",
                ));
            }
            for (i, name) in list.iter().enumerate() {
                match TokenSource::parse(name) {
                    Some(source) if sources.contains(&source) => errors.push(FieldError::new(
                        format!("identity.sources[{i}]"),
                        format!("\"{name}\" is listed twice"),
                    )),
                    Some(source) => sources.push(source),
                    None => errors.push(FieldError::new(
                        format!("identity.sources[{i}]"),
                        format!("\"{name}\" is not one of authorization, query, subprotocol"),
                    )),
                }
            }
            sources
        }
    };

    let query_param = raw
        .query_param
        .unwrap_or_else(|| default_query_param.to_string());
    if query_param.is_empty()
        || !query_param
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        errors.push(FieldError::new(
            "identity.query_param",
            format!("\"{query_param}\" must be 1+ characters of [A-Za-z0-9_.-]"),
        ));
    }

    let subprotocol_prefix = raw
        .subprotocol_prefix
        .unwrap_or_else(|| "bearer.".to_string());
    if subprotocol_prefix.is_empty() || !subprotocol_prefix.bytes().all(is_token_byte) {
        errors.push(FieldError::new(
            "identity.subprotocol_prefix",
            format!("\"{subprotocol_prefix}\" must be a non-empty HTTP token"),
        ));
    }

    let leeway = raw.leeway.unwrap_or(ConfigDuration::from_secs(30));
    if leeway.as_millis() > MAX_LEEWAY_MILLIS {
        errors.push(FieldError::new(
            "identity.leeway",
            format!("{leeway} is more than the 10m maximum"),
        ));
    }
    let max_token_bytes = bounded(
        "identity.max_token_bytes",
        raw.max_token_bytes,
        8_192,
        MAX_TOKEN_BYTES_RANGE,
        errors,
    );
    let max_identity_len = bounded(
        "identity.max_identity_len",
        raw.max_identity_len,
        128,
        MAX_IDENTITY_LEN_RANGE,
        errors,
    );
    let cache_slots = raw.cache_slots.unwrap_or(16_384);
    if cache_slots > MAX_CACHE_SLOTS {
        errors.push(FieldError::new(
            "identity.cache_slots",
            format!("{cache_slots} is more than the maximum {MAX_CACHE_SLOTS}"),
        ));
    }

    let raw_claims = raw.claims.unwrap_or_default();
    let claims = ClaimNames {
        agent_id: claim_name(
            "identity.claims.agent_id",
            raw_claims.agent_id,
            "sub",
            errors,
        ),
        tenant_id: claim_name(
            "identity.claims.tenant_id",
            raw_claims.tenant_id,
            "tenant",
            errors,
        ),
        region: Some(claim_name(
            "identity.claims.region",
            raw_claims.region,
            "region",
            errors,
        )),
    };
    for (path, value) in [
        ("identity.issuer", &raw.issuer),
        ("identity.audience", &raw.audience),
    ] {
        if value.as_deref() == Some("") {
            errors.push(FieldError::new(
                path,
                "must not be empty (omit it to skip the check)",
            ));
        }
    }

    let keys = match build_keys(&raw.keys, raw.jwks.as_ref(), "identity") {
        Ok(keys) => keys,
        Err(err) => {
            errors.push(err);
            return None;
        }
    };
    let key_count = keys.len();

    let fingerprint = crate::identity::cache::fingerprint(&[
        &keys.fingerprint().to_le_bytes(),
        raw.issuer.as_deref().unwrap_or("").as_bytes(),
        raw.audience.as_deref().unwrap_or("").as_bytes(),
        claims.agent_id.as_bytes(),
        claims.tenant_id.as_bytes(),
        claims.region.as_deref().unwrap_or("").as_bytes(),
        &max_identity_len.to_le_bytes(),
    ]);

    let policy = VerifyPolicy {
        issuer: raw.issuer,
        audience: raw.audience,
        leeway_secs: leeway.as_secs_ceil(),
        max_token_bytes,
        max_identity_len,
        claims,
    };
    Some(IdentityConfig {
        sources,
        query_param,
        subprotocol_prefix,
        verifier: Verifier::new(keys, policy),
        leeway_secs: leeway.as_secs_ceil(),
        cache_slots,
        require_for_all_requests: raw.require_for_all_requests.unwrap_or(false),
        fingerprint,
        key_count,
    })
}

fn envelope_spec(
    raw: Option<RawEnvelope>,
    envelope: crate::profile::Envelope,
    errors: &mut Vec<FieldError>,
) -> crate::events::EnvelopeSpec {
    let mut spec = crate::events::EnvelopeSpec::for_envelope(envelope);
    let Some(raw) = raw else {
        return spec;
    };
    // RFC 6901 §3: a non-empty pointer starts with "/".
    let mut check = |path: String, pointer: &str| {
        if !pointer.starts_with('/') || pointer.len() > 256 {
            errors.push(FieldError::new(
                path,
                format!("\"{pointer}\" is not a JSON pointer like \"/metadata/id\""),
            ));
        }
    };
    let mut lists = [
        ("id_pointers", raw.id_pointers, &mut spec.id_pointers),
        (
            "agent_pointers",
            raw.agent_pointers,
            &mut spec.agent_pointers,
        ),
        (
            "routing_key_pointers",
            raw.routing_key_pointers,
            &mut spec.routing_key_pointers,
        ),
    ];
    for (name, value, target) in lists.iter_mut() {
        if let Some(pointers) = value.take() {
            if pointers.is_empty() || pointers.len() > 8 {
                check(format!("frames.envelope.{name}"), "");
            }
            for (i, pointer) in pointers.iter().enumerate() {
                check(format!("frames.envelope.{name}[{i}]"), pointer);
            }
            **target = pointers;
        }
    }
    if let Some(pointer) = raw.position_pointer {
        check("frames.envelope.position_pointer".to_string(), &pointer);
        spec.position_pointer = pointer;
    }
    spec
}

fn frames_config(
    raw: RawFrames,
    default_resume_param: &str,
    envelope: crate::profile::Envelope,
    errors: &mut Vec<FieldError>,
) -> FramesConfig {
    let envelope = envelope_spec(raw.envelope, envelope, errors);
    const MAX_LIMIT: u64 = 64 << 20;
    let mut limit = |path: &str, value: Option<u64>| {
        let value = value.unwrap_or(1 << 20);
        if !(125..=MAX_LIMIT).contains(&value) {
            errors.push(FieldError::new(
                path,
                format!("{value} is outside 125..={MAX_LIMIT}"),
            ));
        }
        value
    };
    let max_frame_bytes = limit("frames.max_frame_bytes", raw.max_frame_bytes);
    let max_message_bytes = limit("frames.max_message_bytes", raw.max_message_bytes);
    let deflate = match raw.deflate.as_deref() {
        None | Some("strip") => DeflatePolicy::Strip,
        Some("pass") => DeflatePolicy::Pass,
        Some(other) => {
            errors.push(FieldError::new(
                "frames.deflate",
                format!("\"{other}\" is not one of strip, pass"),
            ));
            DeflatePolicy::Strip
        }
    };
    let tagging = raw.tagging.unwrap_or_default();
    let tag_field = tagging.enabled.unwrap_or(true).then(|| {
        let field = tagging
            .field
            .clone()
            .unwrap_or_else(|| "routing_key".to_string());
        if field.is_empty() || field.len() > 64 {
            errors.push(FieldError::new(
                "frames.tagging.field",
                "must be 1 to 64 characters",
            ));
        }
        field
    });
    let tag_agent_field = tagging.agent_field.filter(|_| tag_field.is_some());
    let dedup_raw = raw.dedup.unwrap_or_default();
    let dedup = dedup_raw.enabled.unwrap_or(true).then(|| {
        let capacity = dedup_raw.window_events.unwrap_or(256);
        if !(1..=4096).contains(&capacity) {
            errors.push(FieldError::new(
                "frames.dedup.window_events",
                format!("{capacity} is outside 1..=4096"),
            ));
        }
        crate::dedup::DedupWindow {
            capacity,
            max_age_ms: dedup_raw
                .window_age
                .unwrap_or(ConfigDuration::from_secs(600))
                .as_millis(),
        }
    });
    let resume_raw = raw.resume.unwrap_or_default();
    let resume = resume_raw.enabled.unwrap_or(true).then(|| {
        let param = resume_raw
            .query_param
            .unwrap_or_else(|| default_resume_param.to_string());
        if param.is_empty()
            || !param
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            errors.push(FieldError::new(
                "frames.resume.query_param",
                format!("\"{param}\" must be 1+ characters of [A-Za-z0-9_-]"),
            ));
        }
        let slots = resume_raw.slots.unwrap_or(16_384);
        if !(1..=MAX_CACHE_SLOTS).contains(&slots) {
            errors.push(FieldError::new(
                "frames.resume.slots",
                format!("{slots} is outside 1..={MAX_CACHE_SLOTS}"),
            ));
        }
        (
            param,
            resume_raw
                .ttl
                .unwrap_or(ConfigDuration::from_secs(3600))
                .as_millis(),
            slots,
        )
    });
    FramesConfig {
        enabled: raw.enabled.unwrap_or(true),
        max_frame_bytes,
        max_message_bytes,
        validate_utf8: raw.validate_utf8.unwrap_or(true),
        deflate,
        tag_field,
        tag_agent_field,
        dedup,
        resume,
        guard: raw.guard.unwrap_or(true),
        envelope,
    }
}

fn bounded(
    path: &str,
    value: Option<usize>,
    default: usize,
    (min, max): (usize, usize),
    errors: &mut Vec<FieldError>,
) -> usize {
    let value = value.unwrap_or(default);
    if value < min || value > max {
        errors.push(FieldError::new(
            path,
            format!("{value} is outside {min}..={max}"),
        ));
        return default;
    }
    value
}

fn claim_name(
    path: &str,
    value: Option<String>,
    default: &str,
    errors: &mut Vec<FieldError>,
) -> String {
    let value = value.unwrap_or_else(|| default.to_string());
    if value.is_empty() || value.len() > 64 || value.chars().any(char::is_control) {
        errors.push(FieldError::new(
            path,
            format!("\"{value}\" must be a claim name of 1 to 64 printable characters"),
        ));
    }
    value
}

/// RFC 9110 §5.6.2 token characters.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A header the gateway sets: a lowercase token, never a pseudo-header or a header Envoy owns.
fn header_name(
    path: &str,
    value: Option<String>,
    default: &str,
    errors: &mut Vec<FieldError>,
) -> String {
    let name = value.unwrap_or_else(|| default.to_string());
    const RESERVED: [&str; 9] = [
        "host",
        "connection",
        "upgrade",
        "authorization",
        "content-length",
        "transfer-encoding",
        "te",
        "sec-websocket-key",
        "sec-websocket-protocol",
    ];
    if name.is_empty() || name.len() > 128 || !name.bytes().all(is_token_byte) {
        errors.push(FieldError::new(
            path,
            format!("\"{name}\" is not a valid header name"),
        ));
    } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
        errors.push(FieldError::new(
            path,
            format!("\"{name}\" must be lowercase"),
        ));
    } else if RESERVED.contains(&name.as_str()) {
        errors.push(FieldError::new(
            path,
            format!("\"{name}\" is reserved and cannot carry gateway identity"),
        ));
    }
    name
}

fn subprotocol_list(
    value: Option<Vec<String>>,
    default: &[&str],
    errors: &mut Vec<FieldError>,
) -> Vec<String> {
    let list = value.unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect());
    for (i, entry) in list.iter().enumerate() {
        if entry.is_empty() || !entry.bytes().all(is_token_byte) {
            errors.push(FieldError::new(
                format!("platform.subprotocols[{i}]"),
                format!("\"{entry}\" is not a valid subprotocol token"),
            ));
        }
    }
    list
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::identity::fixtures::HS_SECRET_B64;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn base() -> serde_json::Value {
        serde_json::json!({
            "identity": { "keys": [ { "kid": "hs-1", "alg": "HS256", "secret": HS_SECRET_B64 } ] }
        })
    }

    fn errors_of(value: serde_json::Value) -> Vec<String> {
        let bytes = serde_json::to_vec(&value).unwrap();
        match Config::from_json(&bytes) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn minimal_config_takes_generic_defaults() {
        let config = Config::from_json(&serde_json::to_vec(&base()).unwrap()).unwrap();
        assert_eq!(config.profile, Profile::Generic);
        assert_eq!(config.early_data, EarlyDataPolicy::RejectUpgrades);
        assert_eq!(config.routing_header, "x-agent-routing-key");
        assert_eq!(config.platform.agent_header, "x-agent-id");
        assert_eq!(
            config.identity.sources,
            vec![
                TokenSource::Authorization,
                TokenSource::Subprotocol,
                TokenSource::Query
            ]
        );
        assert_eq!(config.identity.leeway_secs, 30);
        assert!(config.summary().contains("profile=generic"));
    }

    #[test]
    fn profiles_set_defaults_and_overrides_win() {
        let mut value = base();
        value["profile"] = "nice".into();
        let config = Config::from_json(&serde_json::to_vec(&value).unwrap()).unwrap();
        assert_eq!(config.platform.agent_header, "x-nice-agent-id");
        assert_eq!(
            config.platform.subprotocols,
            vec!["nice.digital.v1".to_string()]
        );
        value["profile"] = "genesys".into();
        value["platform"] = serde_json::json!({ "agent_header": "x-user", "subprotocols": [] });
        let config = Config::from_json(&serde_json::to_vec(&value).unwrap()).unwrap();
        assert_eq!(config.platform.agent_header, "x-user");
        assert_eq!(config.platform.tenant_header, "x-genesys-organization-id");
        assert!(config.platform.subprotocols.is_empty());
    }

    #[test]
    fn errors_name_the_field_path() {
        let mut value = base();
        value["identity"]["keys"] = serde_json::json!([
            { "kid": "hs-1", "alg": "HS256", "secret": HS_SECRET_B64 },
            { "kid": "x", "alg": "RS257", "pem": "x" }
        ]);
        assert_eq!(
            errors_of(value),
            vec![
                r#"identity.keys[1].alg: "RS257" is not one of HS256, RS256, ES256, EdDSA"#
                    .to_string()
            ]
        );

        let mut value = base();
        value["identity"]["colour"] = "red".into();
        let errors = errors_of(value);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("identity.colour: unknown field `colour`"),
            "{errors:?}"
        );

        let mut value = base();
        value["identity"]["leeway"] = "30".into();
        let errors = errors_of(value);
        assert!(
            errors[0].starts_with("identity.leeway: \"30\" has no unit"),
            "{errors:?}"
        );

        let mut value = base();
        value["identity"]["max_token_bytes"] = "big".into();
        assert!(errors_of(value)[0].starts_with("identity.max_token_bytes: invalid type"));
    }

    #[test]
    fn every_semantic_error_is_reported() {
        let mut value = base();
        value["profile"] = "avaya".into();
        value["early_data"] = "sometimes".into();
        value["routing"] = serde_json::json!({ "header": "X-Key" });
        value["identity"]["sources"] = serde_json::json!(["cookie", "query", "query"]);
        value["identity"]["max_token_bytes"] = 10.into();
        value["origin"] = serde_json::json!({ "allowed": ["desk.example.com"] });
        let errors = errors_of(value);
        let expected = [
            "profile: \"avaya\" is not one of generic, genesys, nice",
            "early_data: \"sometimes\" is not one of reject_upgrades, reject_unsafe, off",
            "origin.allowed[0]: ",
            "routing.header: \"X-Key\" must be lowercase",
            "identity.sources[0]: \"cookie\" is not one of",
            "identity.sources[2]: \"query\" is listed twice",
            "identity.max_token_bytes: 10 is outside 256..=65536",
        ];
        assert_eq!(errors.len(), expected.len(), "{errors:#?}");
        for (error, prefix) in errors.iter().zip(expected) {
            assert!(
                error.starts_with(prefix),
                "{error} does not start with {prefix}"
            );
        }
    }

    #[test]
    fn identity_is_required_and_headers_must_differ() {
        assert_eq!(
            errors_of(serde_json::json!({})),
            vec!["identity: is required (at least identity.keys or identity.jwks)".to_string()]
        );
        let mut value = base();
        value["platform"] = serde_json::json!({ "agent_header": "x-agent-routing-key" });
        assert!(errors_of(value)[0].contains("used for two different gateway headers"));
        let mut value = base();
        value["platform"] = serde_json::json!({ "tenant_header": "authorization" });
        assert!(errors_of(value)[0].contains("reserved"));
    }

    #[test]
    fn garbage_and_empty_input_are_refused_with_one_line() {
        for input in [
            &b""[..],
            b"   ",
            b"{",
            b"[]",
            b"null",
            b"{\"identity\":{}} trailing",
            b"\xff\xfe",
        ] {
            let errors = Config::from_json(input).unwrap_err();
            assert!(!errors.is_empty());
            assert!(
                errors.iter().all(|e| !e.to_string().contains('\n')),
                "{errors:?}"
            );
        }
    }

    #[test]
    fn envelope_pointers_default_per_profile_and_can_be_overridden() {
        let mut value = base();
        value["profile"] = "nice".into();
        let config = Config::from_json(&serde_json::to_vec(&value).unwrap()).unwrap();
        assert_eq!(config.frames.envelope.position_pointer, "/cursor");
        value["frames"] = serde_json::json!({ "envelope": {
            "id_pointers": ["/meta/eventId"], "position_pointer": "/meta/offset"
        }});
        let config = Config::from_json(&serde_json::to_vec(&value).unwrap()).unwrap();
        assert_eq!(
            config.frames.envelope.id_pointers,
            vec!["/meta/eventId".to_string()]
        );
        assert_eq!(config.frames.envelope.position_pointer, "/meta/offset");
        assert_eq!(
            config.frames.envelope.agent_pointers,
            vec!["/payload/agentId".to_string()]
        );
        value["frames"] =
            serde_json::json!({ "envelope": { "agent_pointers": ["payload.agentId"] } });
        assert!(errors_of(value)[0].starts_with("frames.envelope.agent_pointers[0]: "));
    }

    #[test]
    fn the_fingerprint_follows_the_keys() {
        let one = Config::from_json(&serde_json::to_vec(&base()).unwrap()).unwrap();
        let mut value = base();
        value["identity"]["keys"][0]["secret"] = crate::identity::fixtures::OTHER_SECRET_B64.into();
        let two = Config::from_json(&serde_json::to_vec(&value).unwrap()).unwrap();
        assert_ne!(one.identity.fingerprint, two.identity.fingerprint);
        let again = Config::from_json(&serde_json::to_vec(&base()).unwrap()).unwrap();
        assert_eq!(one.identity.fingerprint, again.identity.fingerprint);
    }
}
