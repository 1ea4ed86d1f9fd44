//! `sbctl check-config`: validates Switchboard filter configurations with the validator the
//! filter itself runs (`switchboard_core::config::Config::from_json`).
//!
//! The file is either the filter's JSON configuration, or an Envoy bootstrap (YAML, or JSON)
//! holding one or more Wasm HTTP filters whose `config.configuration` is a
//! `google.protobuf.StringValue`; every such filter is found by walking the whole document, so
//! listeners, ECDS resources and anything else that embeds a filter are covered alike.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::path::Path;

use serde_json::{Map, Value};
use switchboard_core::config::Config;
use switchboard_core::token::config::{ClientAuth, Grant, Injection, TokenConfig};

/// `@type` of the Envoy Wasm HTTP filter's typed config.
pub const WASM_FILTER_TYPE: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
/// `@type` of the only `configuration` wrapper read: the filter receives its `value` verbatim.
pub const STRING_VALUE_TYPE: &str = "type.googleapis.com/google.protobuf.StringValue";
/// Every configuration is valid.
pub const EXIT_VALID: i32 = 0;
/// At least one configuration is invalid, or the file holds none.
pub const EXIT_INVALID: i32 = 1;
/// The file could not be read, so nothing was checked.
pub const EXIT_UNREADABLE: i32 = 2;
/// Largest file read; an Envoy bootstrap is kilobytes.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// One filter configuration found in a file, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundConfig {
    /// How error lines name the filter: its `config.name` (or `wasm filter #N` when unnamed);
    /// `None` when the file is the filter JSON itself.
    pub filter: Option<String>,
    /// The configuration JSON, or why none could be taken from the filter.
    pub json: Result<String, String>,
}

/// Why a file yielded no configuration to validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    /// Neither JSON nor YAML.
    #[error("not JSON, and not YAML either: {0}")]
    Syntax(String),
    /// A well-formed Envoy configuration without a Wasm HTTP filter.
    #[error("no Switchboard filter: nothing has \"@type\": {WASM_FILTER_TYPE}")]
    NoFilter,
}

/// What validation said about one configuration.
#[derive(Debug)]
pub enum Verdict {
    Valid(Box<Config>),
    /// One line per problem, `path: message`.
    Invalid(Vec<String>),
}

/// One configuration and its verdict.
#[derive(Debug)]
pub struct Checked {
    pub filter: Option<String>,
    pub verdict: Verdict,
}

impl Checked {
    /// `ok: <summary>` when valid, else one line per error, prefixed with the filter name when
    /// the configuration came from an Envoy file.
    pub fn lines(&self) -> Vec<String> {
        match &self.verdict {
            Verdict::Valid(config) => vec![format!("ok: {}", config.summary())],
            Verdict::Invalid(errors) => errors
                .iter()
                .map(|error| match &self.filter {
                    Some(filter) => format!("{filter}: {error}"),
                    None => error.clone(),
                })
                .collect(),
        }
    }

    pub fn is_valid(&self) -> bool {
        matches!(self.verdict, Verdict::Valid(_))
    }
}

/// Checks the configuration file at `path`, printing one line per filter (or per error) on
/// stdout; `print` adds the effective configuration of each valid filter.
/// Returns the exit code: [`EXIT_VALID`], [`EXIT_INVALID`] or [`EXIT_UNREADABLE`].
pub fn run(path: &Path, print: bool) -> anyhow::Result<i32> {
    let bytes = match read_bounded(path) {
        Ok(bytes) => bytes,
        Err(error) => {
            println!("cannot read {}: {error}", path.display());
            return Ok(EXIT_UNREADABLE);
        }
    };
    let checked = match check_bytes(&bytes) {
        Ok(checked) => checked,
        Err(error) => {
            println!("{error}");
            return Ok(EXIT_INVALID);
        }
    };
    let document = envoy_document(&bytes);
    let mut stdout = io::stdout().lock();
    for one in &checked {
        for line in one.lines() {
            writeln!(stdout, "{line}")?;
        }
        if let (Some(document), Verdict::Valid(config)) = (&document, &one.verdict) {
            for warning in envoy_warnings(document, config) {
                writeln!(stdout, "warning: {warning}")?;
            }
        }
        if let (true, Verdict::Valid(config)) = (print, &one.verdict) {
            // Flushed first so the two writers cannot interleave.
            stdout.flush()?;
            print_effective(config);
        }
    }
    stdout.flush()?;
    Ok(if checked.iter().all(Checked::is_valid) {
        EXIT_VALID
    } else {
        EXIT_INVALID
    })
}

/// Finds every configuration in `bytes` and validates each, in document order.
pub fn check_bytes(bytes: &[u8]) -> Result<Vec<Checked>, FindError> {
    Ok(find_configs(bytes)?
        .into_iter()
        .map(|found| {
            let verdict = match found.json {
                Err(problem) => Verdict::Invalid(vec![problem]),
                Ok(json) => match Config::from_json(json.as_bytes()) {
                    Ok(config) => Verdict::Valid(Box::new(config)),
                    Err(errors) => {
                        Verdict::Invalid(errors.iter().map(ToString::to_string).collect())
                    }
                },
            };
            Checked {
                filter: found.filter,
                verdict,
            }
        })
        .collect())
}

/// Prints the effective configuration of a valid filter, indented under its `ok:` line: every
/// default resolved, no key material.
pub fn print_effective(config: &Config) {
    let mut stdout = io::stdout().lock();
    for line in effective_lines(config) {
        // A closed stdout (`| head`) is not worth an error here; `run` reports it on its flush.
        let _ = writeln!(stdout, "  {line}");
    }
}

/// The lines [`print_effective`] prints, without indentation.
pub fn effective_lines(config: &Config) -> Vec<String> {
    let identity = &config.identity;
    let sources: Vec<&str> = identity
        .sources
        .iter()
        .map(|source| source.as_str())
        .collect();
    let subprotocols = if config.platform.subprotocols.is_empty() {
        "(none)".to_owned()
    } else {
        config.platform.subprotocols.join(", ")
    };
    let mut lines = vec![
        format!("profile: {}", config.profile.as_str()),
        format!("early_data: {}", config.early_data.as_str()),
        format!(
            "origin: {}",
            match &config.origin {
                Some(policy) => format!("{} allowed", policy.allowed_count()),
                None => "any".to_owned(),
            }
        ),
        format!("identity.sources: {}", sources.join(", ")),
        format!("identity.query_param: {}", identity.query_param),
        format!(
            "identity.subprotocol_prefix: {}",
            identity.subprotocol_prefix
        ),
        format!("identity.keys: {}", identity.key_count),
        format!("identity.leeway: {}s", identity.leeway_secs),
        format!("identity.cache_slots: {}", identity.cache_slots),
        format!(
            "identity.require_for_all_requests: {}",
            identity.require_for_all_requests
        ),
        format!("routing.header: {}", config.routing_header),
        format!("platform.agent_header: {}", config.platform.agent_header),
        format!("platform.tenant_header: {}", config.platform.tenant_header),
        format!("platform.region_header: {}", config.platform.region_header),
        format!("platform.subprotocols: {subprotocols}"),
        format!("tick: {}ms", config.tick_ms),
    ];
    lines.extend(token_lines(config.token.as_ref()));
    lines.extend(flow_lines(config));
    lines.extend(observe_lines(config));
    lines
}

/// Metric labels and the session log.
fn observe_lines(config: &Config) -> Vec<String> {
    use switchboard_core::observe::TenantPolicy;
    vec![
        format!("metrics.platform: {}", config.metrics.platform),
        format!("metrics.region: {}", config.metrics.region),
        format!(
            "metrics.tenants: {}",
            match &config.metrics.tenants {
                TenantPolicy::Off => "off (every session is `other`)".to_owned(),
                TenantPolicy::Listed(list) => format!("{} (others are `other`)", list.join(",")),
                TenantPolicy::FirstSeen(n) => format!("the first {n} per worker (then `other`)"),
            }
        ),
        format!(
            "session_log: {}",
            match &config.session_log {
                None => "off",
                Some(log) if log.salt.is_some() => "on (agent ids hashed with a salt <redacted>)",
                Some(_) => "on (agent ids hashed, unsalted)",
            }
        ),
    ]
}

fn rate_text(rate: &switchboard_core::budget::Rate) -> String {
    if rate.is_unlimited() {
        "unlimited".to_owned()
    } else {
        format!("{}/s (burst {})", rate.per_sec, rate.burst)
    }
}

/// Backpressure, admission, idle and drain settings with defaults resolved.
fn flow_lines(config: &Config) -> Vec<String> {
    let mut lines = Vec::new();
    match &config.backpressure {
        None => lines.push("backpressure: off".to_owned()),
        Some(bp) => {
            let mut tenants: Vec<(&String, &switchboard_core::flow_config::Budgets)> =
                bp.tenants.iter().collect();
            tenants.sort_by(|a, b| a.0.cmp(b.0));
            let default = ("(default)".to_owned(), bp.default);
            for (name, budgets) in std::iter::once((&default.0, &default.1)).chain(tenants) {
                lines.push(format!(
                    "backpressure.{name}: up frames {}, up bytes {}, down frames per agent {}",
                    rate_text(&budgets.up_frames),
                    rate_text(&budgets.up_bytes),
                    rate_text(&budgets.down_frames)
                ));
            }
            lines.push(format!(
                "backpressure.max_queue_bytes: {}",
                bp.max_queue_bytes
            ));
            lines.push(format!(
                "backpressure.session_hold_bytes: {}",
                bp.session_hold_bytes
            ));
            lines.push(format!(
                "backpressure.admission_threshold: {} ({} bytes)",
                bp.admission_threshold,
                bp.admission_limit()
            ));
        }
    }
    match &config.admission {
        None => lines.push("admission: off".to_owned()),
        Some(admission) => {
            lines.push(format!(
                "admission.upgrades: {}",
                rate_text(&admission.global)
            ));
            lines.push(format!(
                "admission.tenant_upgrades: {}",
                rate_text(&admission.per_tenant)
            ));
            lines.push(format!(
                "admission.max_sessions_per_agent: {}",
                admission
                    .max_sessions_per_agent
                    .map_or("none".to_owned(), |cap| cap.to_string())
            ));
        }
    }
    lines.push(format!(
        "idle_timeout: {}",
        config
            .idle_timeout_ms
            .map_or("none".to_owned(), |ms| format!("{}s", ms / 1000))
    ));
    lines.push(format!(
        "drain: {}",
        config
            .drain
            .as_ref()
            .map_or("off".to_owned(), |drain| format!(
                "{} (loopback only)",
                drain.path
            ))
    ));
    lines
}

/// The `token` section with every default resolved; secrets print as `<redacted>`.
fn token_lines(token: Option<&TokenConfig>) -> Vec<String> {
    let Some(token) = token else {
        return vec!["token: off (platform credentials are the client's business)".to_owned()];
    };
    let secs = |ms: u64| format!("{}ms", ms);
    let mut lines = vec![
        format!("token.cluster: {}", token.cluster),
        format!("token.authority: {}", token.authority),
        format!("token.path: {}", token.path),
        format!("token.grant: {}", token.grant.as_str()),
        format!("token.client_id: {}", token.client_id),
        format!(
            "token.client_secret: {}",
            if token.client_secret.is_some() {
                "<redacted>"
            } else {
                "(none)"
            }
        ),
        format!(
            "token.client_auth: {}",
            match token.client_auth {
                ClientAuth::Basic => "basic",
                ClientAuth::Post => "post",
            }
        ),
        format!("token.scopes: {}", token.scopes.join(" ")),
        format!(
            "token.audience: {}",
            token.audience.as_deref().unwrap_or("(none)")
        ),
        format!("token.refresh_at: {}", token.refresh_fraction),
        format!("token.safety_buffer: {}", secs(token.safety_buffer_ms)),
        format!("token.clock_skew: {}", secs(token.clock_skew_ms)),
        format!("token.timeout: {}", secs(token.timeout_ms)),
        format!(
            "token.backoff: base {} cap {} slow {}",
            secs(token.backoff.base_ms),
            secs(token.backoff.cap_ms),
            secs(token.backoff.slow_ms)
        ),
        format!("token.max_lifetime: {}", secs(token.max_lifetime_ms)),
        format!(
            "token.inject: {}",
            match &token.injection {
                Injection::Header => "header (Authorization: Bearer)".to_owned(),
                Injection::Query(name) => format!("query ({name})"),
            }
        ),
        format!("token.retry_after: {}", secs(token.retry_after_ms)),
        format!("token.lease: {}", secs(token.lease_ms)),
    ];
    if let Grant::RefreshToken { .. } = token.grant {
        lines.push("token.refresh_token: <redacted>".to_owned());
    }
    lines.push(match &token.rotation {
        None => "token.rotation: off".to_owned(),
        Some(rotation) => format!(
            "token.rotation: frame_type {} target_scope \"{}\" region {}",
            rotation.frame_type,
            rotation.target_scope,
            rotation
                .region
                .as_deref()
                .unwrap_or("(from the agent token)")
        ),
    });
    lines
}

/// The Envoy bootstrap in `bytes` (JSON or YAML), when it is one (it has Wasm filters).
fn envoy_document(bytes: &[u8]) -> Option<Value> {
    let document = serde_json::from_slice::<Value>(bytes).ok().or_else(|| {
        serde_norway::from_slice::<serde_norway::Value>(bytes)
            .ok()
            .and_then(|yaml| serde_json::to_value(yaml).ok())
    })?;
    (!wasm_filters(&document).is_empty()).then_some(document)
}

/// Every value of `key` anywhere in `value`, depth first.
fn values_of<'a>(value: &'a Value, key: &str, found: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => {
            for (name, inner) in map {
                if name == key {
                    found.push(inner);
                }
                values_of(inner, key, found);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| values_of(item, key, found)),
        _ => {}
    }
}

/// Envoy's duration strings as the bootstrap spells them (`"960s"`, `"1.5s"`).
fn envoy_duration_ms(value: &Value) -> Option<u64> {
    let text = value.as_str()?.strip_suffix('s')?;
    let seconds: f64 = text.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then_some((seconds * 1000.0) as u64)
}

/// Envoy's default buffer limit per connection, and its default stream idle timeout.
const ENVOY_DEFAULT_BUFFER_LIMIT: u64 = 1 << 20;
const ENVOY_DEFAULT_STREAM_IDLE_MS: u64 = 300_000;

/// Disagreements between the filter's settings and the Envoy file around it: each would make
/// Envoy act before the filter can (reset a held stream, cut an idle session), or point the
/// filter at a cluster that does not exist.
pub fn envoy_warnings(document: &Value, config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    if let Some(backpressure) = &config.backpressure {
        let mut limits = Vec::new();
        values_of(document, "per_connection_buffer_limit_bytes", &mut limits);
        let smallest = limits
            .iter()
            .filter_map(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .min()
            .unwrap_or(ENVOY_DEFAULT_BUFFER_LIMIT);
        if backpressure.session_hold_bytes >= smallest {
            warnings.push(format!(
                "backpressure.session_hold_bytes ({}) is not below per_connection_buffer_limit_bytes ({smallest}): Envoy resets a held stream before the filter can close it with 1013",
                backpressure.session_hold_bytes
            ));
        }
    }
    if let Some(idle_ms) = config.idle_timeout_ms {
        let mut timeouts = Vec::new();
        values_of(document, "stream_idle_timeout", &mut timeouts);
        let envoy_idle = timeouts
            .iter()
            .filter_map(|v| envoy_duration_ms(v))
            .filter(|ms| *ms > 0)
            .min()
            .or(timeouts.is_empty().then_some(ENVOY_DEFAULT_STREAM_IDLE_MS));
        if let Some(envoy_idle) = envoy_idle {
            if envoy_idle <= idle_ms {
                warnings.push(format!(
                    "stream_idle_timeout ({}s) is not above idle_timeout ({}s): Envoy resets silent sessions before the filter closes them with 1001",
                    envoy_idle / 1000,
                    idle_ms / 1000
                ));
            }
        }
    }
    let mut tags = Vec::new();
    values_of(document, "tag_name", &mut tags);
    let missing: Vec<&str> = ["platform", "region", "tenant", "result"]
        .into_iter()
        .filter(|tag| !tags.iter().any(|t| t.as_str() == Some(*tag)))
        .collect();
    if !missing.is_empty() {
        warnings.push(format!(
            "stats_config.stats_tags has no {} tag: Prometheus sees Switchboard's labels as part of metric names (copy the stats_tags of envoy/switchboard.yaml)",
            missing.join(", ")
        ));
    }
    if let Some(token) = &config.token {
        let mut names = Vec::new();
        values_of(document, "clusters", &mut names);
        let defined = names
            .iter()
            .filter_map(|clusters| clusters.as_array())
            .flatten()
            .filter_map(|cluster| cluster.get("name")?.as_str())
            .any(|name| name == token.cluster);
        if !defined {
            warnings.push(format!(
                "token.cluster \"{}\" is not a static cluster in this file (the token fetch fails unless it comes from CDS)",
                token.cluster
            ));
        }
    }
    warnings
}

/// Tells the filter JSON from an Envoy file and extracts every filter configuration.
///
/// JSON is tried first: a JSON document with Wasm filters in it is an Envoy bootstrap, any
/// other JSON document is the filter configuration. Otherwise the file is read as YAML. Text
/// that is neither but starts like a JSON object is handed to the filter's own parser, whose
/// error says what is wrong with it.
pub fn find_configs(bytes: &[u8]) -> Result<Vec<FoundConfig>, FindError> {
    let as_filter_json = || {
        vec![FoundConfig {
            filter: None,
            json: Ok(String::from_utf8_lossy(bytes).into_owned()),
        }]
    };
    if let Ok(document) = serde_json::from_slice::<Value>(bytes) {
        let filters = wasm_filters(&document);
        return Ok(if filters.is_empty() {
            as_filter_json()
        } else {
            filters
        });
    }
    let looks_like_json = bytes
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_none_or(|first| *first == b'{');
    let yaml = serde_norway::from_slice::<serde_norway::Value>(bytes)
        .map_err(|error| error.to_string())
        .and_then(|document| serde_json::to_value(document).map_err(|error| error.to_string()));
    match yaml {
        Ok(document) => {
            let filters = wasm_filters(&document);
            if !filters.is_empty() {
                Ok(filters)
            } else if looks_like_json {
                Ok(as_filter_json())
            } else {
                Err(FindError::NoFilter)
            }
        }
        Err(_) if looks_like_json => Ok(as_filter_json()),
        // One line, like every other problem reported.
        Err(error) => Err(FindError::Syntax(error.replace('\n', " "))),
    }
}

/// Every Wasm HTTP filter typed config in `document`, in document order.
fn wasm_filters(document: &Value) -> Vec<FoundConfig> {
    let mut typed_configs = Vec::new();
    collect_wasm_typed_configs(document, &mut typed_configs);
    typed_configs
        .into_iter()
        .enumerate()
        .map(|(index, typed_config)| {
            let config = typed_config.get("config");
            let filter = config
                .and_then(|config| config.get("name"))
                .and_then(Value::as_str)
                .filter(|name| !name.is_empty())
                .map_or_else(|| format!("wasm filter #{}", index + 1), str::to_owned);
            let json = match config.and_then(|config| config.get("configuration")) {
                // Envoy hands the filter an empty configuration; the validator says what it lacks.
                None => Ok(String::new()),
                Some(configuration) => string_value(configuration).map(str::to_owned).ok_or_else(|| {
                    format!("config.configuration: must be {{\"@type\": {STRING_VALUE_TYPE}, \"value\": \"<JSON>\"}}")
                }),
            };
            FoundConfig {
                filter: Some(filter),
                json,
            }
        })
        .collect()
}

fn collect_wasm_typed_configs<'a>(value: &'a Value, found: &mut Vec<&'a Map<String, Value>>) {
    match value {
        Value::Object(map) => {
            if map.get("@type").and_then(Value::as_str) == Some(WASM_FILTER_TYPE) {
                found.push(map);
                return;
            }
            for child in map.values() {
                collect_wasm_typed_configs(child, found);
            }
        }
        Value::Array(items) => {
            for item in items {
                collect_wasm_typed_configs(item, found);
            }
        }
        _ => {}
    }
}

fn string_value(configuration: &Value) -> Option<&str> {
    if configuration.get("@type").and_then(Value::as_str) != Some(STRING_VALUE_TYPE) {
        return None;
    }
    configuration.get("value").and_then(Value::as_str)
}

fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > MAX_FILE_BYTES {
        return Err(io::Error::other(format!(
            "larger than {MAX_FILE_BYTES} bytes"
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test should fail loudly on an unexpected error"
)]
mod tests {
    use super::*;

    /// base64 of 32 bytes: an HS256 secret the validator accepts.
    const SECRET: &str = "c3dpdGNoYm9hcmQtY2hlY2stY29uZmlnLXRlc3QtMzI=";

    fn filter_json(alg: &str) -> String {
        format!(
            r#"{{"profile": "genesys", "identity": {{"keys": [{{"kid": "hs-1", "alg": "{alg}", "secret": "{SECRET}"}}]}}}}"#
        )
    }

    /// An Envoy listener with one Wasm filter per `(name, configuration JSON)`, the JSON as a
    /// block scalar the way envoy/switchboard.yaml carries it.
    fn envoy_yaml(filters: &[(&str, &str)]) -> String {
        let mut yaml = String::from(
            "static_resources:\n  listeners:\n    - name: gateway\n      filter_chains:\n        - filters:\n            - name: envoy.filters.network.http_connection_manager\n              typed_config:\n                http_filters:\n",
        );
        for (name, json) in filters {
            yaml.push_str(&format!(
                "                  - name: envoy.filters.http.wasm\n                    typed_config:\n                      \"@type\": {WASM_FILTER_TYPE}\n                      config:\n                        name: {name}\n                        configuration:\n                          \"@type\": {STRING_VALUE_TYPE}\n                          value: |\n                            {json}\n"
            ));
        }
        yaml.push_str("                  - name: envoy.filters.http.router\n");
        yaml
    }

    fn lines_of(bytes: &[u8]) -> Vec<String> {
        check_bytes(bytes)
            .unwrap()
            .iter()
            .flat_map(Checked::lines)
            .collect()
    }

    #[test]
    fn yaml_with_two_filters_reports_each_in_order() {
        let yaml = envoy_yaml(&[
            ("switchboard", &filter_json("RS257")),
            ("second", &filter_json("HS256")),
        ]);
        let found = find_configs(yaml.as_bytes()).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].filter.as_deref(), Some("switchboard"));
        assert_eq!(found[1].filter.as_deref(), Some("second"));
        assert_eq!(
            found[1].json.as_deref().map(str::trim),
            Ok(filter_json("HS256").as_str())
        );

        let checked = check_bytes(yaml.as_bytes()).unwrap();
        assert!(!checked[0].is_valid());
        assert!(checked[1].is_valid());
        let lines = lines_of(yaml.as_bytes());
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with(r#"switchboard: identity.keys[0].alg: "RS257" is not one of"#),
            "{lines:#?}"
        );
        assert!(lines[1].starts_with("ok: profile=genesys "), "{lines:#?}");
        assert!(lines[1].contains(" keys=1 "), "{lines:#?}");
    }

    #[test]
    fn yaml_without_the_filter_is_one_error() {
        let yaml =
            "admin:\n  address:\n    socket_address: { address: 127.0.0.1, port_value: 9901 }\n";
        assert_eq!(find_configs(yaml.as_bytes()), Err(FindError::NoFilter));
        assert_eq!(
            check_bytes(yaml.as_bytes()).unwrap_err().to_string(),
            format!("no Switchboard filter: nothing has \"@type\": {WASM_FILTER_TYPE}")
        );
    }

    #[test]
    fn filter_json_is_checked_directly() {
        let json = filter_json("HS256");
        let found = find_configs(json.as_bytes()).unwrap();
        assert_eq!(
            found,
            vec![FoundConfig {
                filter: None,
                json: Ok(json.clone())
            }]
        );
        let lines = lines_of(json.as_bytes());
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("ok: profile=genesys early_data=reject_upgrades "));

        // Errors carry no filter prefix, and every one is reported.
        let bad = r#"{"profile": "avaya", "early_data": "sometimes", "identity": {"keys": []}}"#;
        let lines = lines_of(bad.as_bytes());
        assert!(lines.len() >= 3, "{lines:#?}");
        assert!(lines[0].starts_with("profile: \"avaya\""), "{lines:#?}");
        assert!(
            lines[1].starts_with("early_data: \"sometimes\""),
            "{lines:#?}"
        );
    }

    #[test]
    fn broken_json_gets_the_validators_error() {
        let lines = lines_of(br#"{"identity": {"keys": ["#);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines, vec!["identity.keys: EOF while parsing a list"]);
        let lines = lines_of(b"  \n");
        assert_eq!(
            lines,
            vec!["configuration: is empty (identity.keys or identity.jwks is required)"]
        );
    }

    #[test]
    fn envoy_json_bootstrap_is_walked_too() {
        let bootstrap = serde_json::json!({
            "static_resources": { "listeners": [ { "filter_chains": [ { "filters": [ {
                "typed_config": { "http_filters": [ { "typed_config": {
                    "@type": WASM_FILTER_TYPE,
                    "config": { "configuration": { "@type": STRING_VALUE_TYPE, "value": filter_json("HS256") } }
                } } ] }
            } ] } ] } ] }
        });
        let lines = lines_of(&serde_json::to_vec(&bootstrap).unwrap());
        assert_eq!(lines.len(), 1);
        assert!(lines[0].starts_with("ok: "), "{lines:#?}");
    }

    #[test]
    fn unreadable_configurations_are_named() {
        let yaml = format!(
            "filters:\n  - typed_config:\n      \"@type\": {WASM_FILTER_TYPE}\n      config:\n        configuration:\n          \"@type\": type.googleapis.com/google.protobuf.BytesValue\n          value: e30=\n  - typed_config:\n      \"@type\": {WASM_FILTER_TYPE}\n      config:\n        name: bare\n"
        );
        let lines = lines_of(yaml.as_bytes());
        assert_eq!(
            lines,
            vec![
                format!("wasm filter #1: config.configuration: must be {{\"@type\": {STRING_VALUE_TYPE}, \"value\": \"<JSON>\"}}"),
                "bare: configuration: is empty (identity.keys or identity.jwks is required)"
                    .to_owned(),
            ]
        );
    }

    #[test]
    fn neither_json_nor_yaml_is_a_syntax_error() {
        let error = find_configs(b"key: [unclosed\n").unwrap_err();
        assert!(matches!(error, FindError::Syntax(_)), "{error:?}");
        assert!(error
            .to_string()
            .starts_with("not JSON, and not YAML either: "));
    }

    #[test]
    fn effective_lines_resolve_defaults() {
        let config = Config::from_json(filter_json("HS256").as_bytes()).unwrap();
        let lines = effective_lines(&config);
        assert!(lines.contains(&"profile: genesys".to_owned()), "{lines:#?}");
        assert!(lines.contains(&"identity.keys: 1".to_owned()));
        assert!(lines.contains(&"routing.header: x-agent-routing-key".to_owned()));
        assert!(lines.iter().all(|line| !line.contains(SECRET)));
    }

    #[test]
    fn effective_token_lines_redact_secrets() {
        let mut json: serde_json::Value = serde_json::from_str(&filter_json("HS256")).unwrap();
        json["profile"] = "nice".into();
        json["token"] = serde_json::json!({
            "cluster": "idp",
            "client_id": "sb",
            "client_secret": "client-secret-value",
            "grant": "refresh_token",
            "refresh_token": "refresh-token-value"
        });
        let config = Config::from_json(json.to_string().as_bytes()).unwrap();
        let lines = effective_lines(&config);
        assert!(
            lines.contains(&"token.grant: refresh_token".to_owned()),
            "{lines:#?}"
        );
        assert!(lines.contains(&"token.inject: query (access_token)".to_owned()));
        assert!(lines.contains(&"token.client_secret: <redacted>".to_owned()));
        assert!(lines.contains(&"token.refresh_token: <redacted>".to_owned()));
        assert!(lines.contains(&"token.refresh_at: 0.85".to_owned()));
        let all = lines.join("\n");
        assert!(!all.contains("client-secret-value") && !all.contains("refresh-token-value"));
        assert!(!format!("{config:?}").contains("client-secret-value"));
    }

    #[test]
    fn envoy_disagreements_are_warned_about() {
        let mut json: serde_json::Value = serde_json::from_str(&filter_json("HS256")).unwrap();
        json["backpressure"] =
            serde_json::json!({ "session_hold_bytes": 2097152, "max_queue_bytes": 8388608 });
        json["idle_timeout"] = "900s".into();
        json["token"] =
            serde_json::json!({ "cluster": "idp", "client_id": "a", "client_secret": "b" });
        let config = Config::from_json(json.to_string().as_bytes()).unwrap();
        let document = serde_json::json!({
            "static_resources": {
                "listeners": [{ "per_connection_buffer_limit_bytes": 1048576,
                    "stream_idle_timeout": "300s" }],
                "clusters": [{ "name": "platform" }]
            }
        });
        let warnings = envoy_warnings(&document, &config);
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        assert!(warnings[0].starts_with("backpressure.session_hold_bytes (2097152)"));
        assert!(
            warnings[1].starts_with("stream_idle_timeout (300s) is not above idle_timeout (900s)")
        );
        assert!(warnings[2]
            .starts_with("stats_config.stats_tags has no platform, region, tenant, result tag"));
        assert!(warnings[3].starts_with("token.cluster \"idp\""));
        let agreeing = serde_json::json!({
            "stats_config": { "stats_tags": [
                { "tag_name": "platform" }, { "tag_name": "region" },
                { "tag_name": "tenant" }, { "tag_name": "result" }
            ] },
            "static_resources": {
                "listeners": [{ "per_connection_buffer_limit_bytes": 4194304,
                    "stream_idle_timeout": "960s" }],
                "clusters": [{ "name": "idp" }]
            }
        });
        assert!(envoy_warnings(&agreeing, &config).is_empty());
    }
}
