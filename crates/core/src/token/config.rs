//! The `token` section: where the platform's OAuth token comes from, when it is refreshed, how it
//! is injected at the upgrade and rotated inside live sessions.

use serde::Deserialize;

use crate::config_error::FieldError;
use crate::duration::ConfigDuration;
use crate::secret::Secret;

/// Longest access or refresh token accepted from the endpoint (and so stored and injected).
pub const MAX_TOKEN_BYTES: usize = 8_192;
/// Largest token endpoint answer read into the VM.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawToken {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The Envoy cluster that reaches the token endpoint.
    #[serde(default)]
    pub cluster: Option<String>,
    /// `:authority` of the token request (default: the cluster name).
    #[serde(default)]
    pub authority: Option<String>,
    #[serde(default)]
    pub path: Option<String>,
    /// `client_credentials` or `refresh_token`.
    #[serde(default)]
    pub grant: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// The first refresh token of the `refresh_token` grant; each refresh rotates it.
    #[serde(default)]
    pub refresh_token: Option<Secret>,
    /// `basic` (RFC 6749 §2.3.1 HTTP Basic) or `post` (credentials in the form body).
    #[serde(default)]
    pub client_auth: Option<String>,
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    #[serde(default)]
    pub audience: Option<String>,
    /// Fraction of the token's lifetime after which it is refreshed.
    #[serde(default)]
    pub refresh_at: Option<f64>,
    /// A token this close to expiry is never injected.
    #[serde(default)]
    pub safety_buffer: Option<ConfigDuration>,
    /// How far the issuer's clock may be from ours (applied to a JWT's `exp`).
    #[serde(default)]
    pub clock_skew: Option<ConfigDuration>,
    #[serde(default)]
    pub timeout: Option<ConfigDuration>,
    #[serde(default)]
    pub backoff: Option<RawBackoff>,
    /// Longest `expires_in` believed; anything above is treated as a broken answer.
    #[serde(default)]
    pub max_lifetime: Option<ConfigDuration>,
    /// `header` (Authorization: Bearer) or `query` (a query parameter).
    #[serde(default)]
    pub inject: Option<String>,
    #[serde(default)]
    pub query_param: Option<String>,
    /// Center of the jittered `Retry-After` sent with 503 when no usable token exists.
    #[serde(default)]
    pub retry_after: Option<ConfigDuration>,
    /// How long a worker's leadership of the refresh lasts without renewal.
    #[serde(default)]
    pub lease: Option<ConfigDuration>,
    #[serde(default)]
    pub rotation: Option<RawRotation>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawBackoff {
    #[serde(default)]
    pub base: Option<ConfigDuration>,
    #[serde(default)]
    pub cap: Option<ConfigDuration>,
    /// Retry period after `invalid_client` / `invalid_grant` (a person has to fix those).
    #[serde(default)]
    pub slow: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRotation {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub frame_type: Option<String>,
    #[serde(default)]
    pub target_scope: Option<String>,
    /// Region announced in `proxy_metadata` when the agent's token names none.
    #[serde(default)]
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    ClientCredentials,
    /// Rotating refresh tokens: every answer's `refresh_token` replaces the one used.
    RefreshToken {
        initial: Secret,
    },
}

impl Grant {
    pub const fn as_str(&self) -> &'static str {
        match self {
            Grant::ClientCredentials => "client_credentials",
            Grant::RefreshToken { .. } => "refresh_token",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    Basic,
    Post,
}

/// Where the platform token goes on the upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Injection {
    /// `Authorization: Bearer <token>`, replacing any the client sent.
    Header,
    /// This query parameter, replacing any the client sent.
    Query(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    pub base_ms: u64,
    pub cap_ms: u64,
    pub slow_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub frame_type: String,
    pub target_scope: String,
    pub region: Option<String>,
}

/// The validated `token` section.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenConfig {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub grant: Grant,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub refresh_fraction: f64,
    pub safety_buffer_ms: u64,
    pub clock_skew_ms: u64,
    pub timeout_ms: u64,
    pub backoff: BackoffPolicy,
    pub max_lifetime_ms: u64,
    pub injection: Injection,
    pub retry_after_ms: u64,
    pub lease_ms: u64,
    pub rotation: Option<Rotation>,
    /// Changes whenever anything that shapes the token request changes, so a reconfigured
    /// gateway does not keep a token or refresh token obtained under the old settings.
    pub fingerprint: u64,
}

fn is_scope_char(byte: u8) -> bool {
    // RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
    byte == 0x21 || (0x23..=0x5b).contains(&byte) || (0x5d..=0x7e).contains(&byte)
}

fn is_param_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

fn printable(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| (0x20..0x7f).contains(&b))
}

/// Phase two for `token`: `None` when absent or disabled.
pub fn token_config(
    raw: Option<RawToken>,
    profile_query: bool,
    default_query_param: &str,
    tick_ms: u64,
    errors: &mut Vec<FieldError>,
) -> Option<TokenConfig> {
    let raw = raw?;
    if raw.enabled == Some(false) {
        return None;
    }
    let before = errors.len();
    let mut push = |path: &str, message: String| errors.push(FieldError::new(path, message));

    let cluster = raw.cluster.unwrap_or_default();
    if !printable(&cluster) || cluster.contains(' ') {
        push(
            "token.cluster",
            "is required: the name of the Envoy cluster that reaches the token endpoint".into(),
        );
    }
    let authority = raw.authority.unwrap_or_else(|| cluster.clone());
    if !printable(&authority) || authority.contains(' ') {
        push(
            "token.authority",
            format!("\"{authority}\" is not a host[:port]"),
        );
    }
    let path = raw.path.unwrap_or_else(|| "/oauth/token".to_string());
    if !path.starts_with('/') || !printable(&path) || path.contains(' ') {
        push(
            "token.path",
            format!("\"{path}\" must start with / and have no spaces"),
        );
    }
    let client_id = raw.client_id.unwrap_or_default();
    if !printable(&client_id) {
        push("token.client_id", "is required (printable ASCII)".into());
    }
    let client_secret = raw.client_secret.filter(|s| !s.is_empty());
    if let Some(secret) = &client_secret {
        if !printable(secret.expose()) {
            push("token.client_secret", "must be printable ASCII".into());
        }
    }
    let grant = match raw.grant.as_deref() {
        None | Some("client_credentials") => {
            if client_secret.is_none() {
                push(
                    "token.client_secret",
                    "is required for the client_credentials grant".into(),
                );
            }
            Grant::ClientCredentials
        }
        Some("refresh_token") => match raw.refresh_token.filter(|t| !t.is_empty()) {
            Some(initial)
                if initial.expose().len() <= MAX_TOKEN_BYTES && printable(initial.expose()) =>
            {
                Grant::RefreshToken { initial }
            }
            Some(_) => {
                push(
                    "token.refresh_token",
                    format!("must be printable ASCII of at most {MAX_TOKEN_BYTES} bytes"),
                );
                Grant::ClientCredentials
            }
            None => {
                push(
                    "token.refresh_token",
                    "is required for the refresh_token grant".into(),
                );
                Grant::ClientCredentials
            }
        },
        Some(other) => {
            push(
                "token.grant",
                format!("\"{other}\" is not one of client_credentials, refresh_token"),
            );
            Grant::ClientCredentials
        }
    };
    let client_auth = match raw.client_auth.as_deref() {
        None | Some("basic") => ClientAuth::Basic,
        Some("post") => ClientAuth::Post,
        Some(other) => {
            push(
                "token.client_auth",
                format!("\"{other}\" is not one of basic, post"),
            );
            ClientAuth::Basic
        }
    };
    let scopes = raw.scopes.unwrap_or_default();
    for (i, scope) in scopes.iter().enumerate() {
        if scope.is_empty() || !scope.bytes().all(is_scope_char) {
            push(
                &format!("token.scopes[{i}]"),
                format!("\"{scope}\" is not an RFC 6749 scope token"),
            );
        }
    }
    let audience = raw.audience.filter(|a| !a.is_empty());
    if let Some(audience) = &audience {
        if !printable(audience) {
            push("token.audience", "must be printable ASCII".into());
        }
    }
    let refresh_fraction = raw.refresh_at.unwrap_or(0.85);
    if !(0.1..=0.95).contains(&refresh_fraction) {
        push(
            "token.refresh_at",
            format!("{refresh_fraction} is outside 0.1..=0.95 (a fraction of the lifetime)"),
        );
    }
    let ms = |value: Option<ConfigDuration>, default: u64| value.map_or(default, |d| d.as_millis());
    let safety_buffer_ms = ms(raw.safety_buffer, 300_000);
    let clock_skew_ms = ms(raw.clock_skew, 30_000);
    let timeout_ms = ms(raw.timeout, 5_000);
    let max_lifetime_ms = ms(raw.max_lifetime, 86_400_000);
    let retry_after_ms = ms(raw.retry_after, 5_000);
    let lease_ms = ms(raw.lease, 5_000);
    let raw_backoff = raw.backoff.unwrap_or_default();
    let backoff = BackoffPolicy {
        base_ms: ms(raw_backoff.base, 1_000),
        cap_ms: ms(raw_backoff.cap, 60_000),
        slow_ms: ms(raw_backoff.slow, 300_000),
    };
    if !(100..=60_000).contains(&timeout_ms) {
        push(
            "token.timeout",
            format!("{timeout_ms}ms is outside 100ms..=60s"),
        );
    }
    if clock_skew_ms > 600_000 {
        push("token.clock_skew", "must be at most 10m".into());
    }
    if !(60_000..=31_536_000_000).contains(&max_lifetime_ms) {
        push(
            "token.max_lifetime",
            "must be between 1m and 365 days".into(),
        );
    }
    if safety_buffer_ms >= max_lifetime_ms {
        push(
            "token.safety_buffer",
            "must be shorter than token.max_lifetime".into(),
        );
    }
    if backoff.base_ms == 0 || backoff.base_ms > backoff.cap_ms {
        push(
            "token.backoff.base",
            "must be above zero and at most token.backoff.cap".into(),
        );
    }
    if backoff.cap_ms > 3_600_000 || backoff.slow_ms > 3_600_000 || backoff.slow_ms == 0 {
        push(
            "token.backoff",
            "cap and slow must be between 1ms and 1h".into(),
        );
    }
    if !(1_000..=600_000).contains(&retry_after_ms) {
        push("token.retry_after", "must be between 1s and 10m".into());
    }
    if lease_ms < tick_ms.saturating_mul(3) || lease_ms > 300_000 {
        push(
            "token.lease",
            format!(
                "must be at least three ticks ({}ms) and at most 5m",
                tick_ms.saturating_mul(3)
            ),
        );
    }
    let query = match raw.inject.as_deref() {
        None => profile_query,
        Some("header") => false,
        Some("query") => true,
        Some(other) => {
            push(
                "token.inject",
                format!("\"{other}\" is not one of header, query"),
            );
            false
        }
    };
    let injection = if query {
        let name = raw
            .query_param
            .unwrap_or_else(|| default_query_param.to_string());
        if !is_param_name(&name) {
            push(
                "token.query_param",
                format!("\"{name}\" must be 1+ characters of [A-Za-z0-9_.-]"),
            );
        }
        Injection::Query(name)
    } else {
        Injection::Header
    };
    let rotation = raw.rotation.unwrap_or_default();
    let rotation = if rotation.enabled == Some(false) {
        None
    } else {
        let frame_type = rotation
            .frame_type
            .unwrap_or_else(|| "auth_refresh".to_string());
        if !printable(&frame_type) {
            push(
                "token.rotation.frame_type",
                "must be printable ASCII".into(),
            );
        }
        let target_scope = rotation.target_scope.unwrap_or_else(|| scopes.join(" "));
        if !target_scope.is_empty() && !printable(&target_scope) {
            push(
                "token.rotation.target_scope",
                "must be printable ASCII".into(),
            );
        }
        let region = rotation.region.filter(|r| !r.is_empty());
        if region.as_deref().is_some_and(|r| !printable(r)) {
            push("token.rotation.region", "must be printable ASCII".into());
        }
        Some(Rotation {
            frame_type,
            target_scope,
            region,
        })
    };
    if errors.len() != before {
        return None;
    }
    let fingerprint = {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        for part in [
            cluster.as_str(),
            authority.as_str(),
            path.as_str(),
            grant.as_str(),
            client_id.as_str(),
            client_secret.as_ref().map_or("", Secret::expose),
            match &grant {
                Grant::RefreshToken { initial } => initial.expose(),
                Grant::ClientCredentials => "",
            },
            &scopes.join(" "),
            audience.as_deref().unwrap_or(""),
        ] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        let digest = hash.finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
        u64::from_le_bytes(first)
    };
    Some(TokenConfig {
        cluster,
        authority,
        path,
        grant,
        client_id,
        client_secret,
        client_auth,
        scopes,
        audience,
        refresh_fraction,
        safety_buffer_ms,
        clock_skew_ms,
        timeout_ms,
        backoff,
        max_lifetime_ms,
        injection,
        retry_after_ms,
        lease_ms,
        rotation,
        fingerprint,
    })
}
