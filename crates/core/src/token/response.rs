//! Reading the token endpoint's answer (RFC 6749 §5.1 success, §5.2 error) into a token the
//! gateway may use, or a classified failure.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde_json::Value;

use super::config::{TokenConfig, MAX_RESPONSE_BYTES, MAX_TOKEN_BYTES};

/// A token as issued, with the times the gateway schedules by (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub access_token: String,
    pub token_type: String,
    /// `expires_in` as the endpoint said it (or from the JWT when it said nothing).
    pub expires_in_secs: u64,
    pub issued_at_ms: u64,
    /// The earlier of `issued_at + expires_in` and the JWT's `exp` (less the clock skew).
    pub expires_at_ms: u64,
    /// When a fresh one should be fetched.
    pub refresh_at_ms: u64,
    /// A rotated refresh token, when the endpoint sent one.
    pub refresh_token: Option<String>,
}

/// Why a fetch produced no usable token. Each maps to a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchError {
    /// The call could not be made at all (unknown cluster, host refused).
    Dispatch,
    /// No answer: connection refused or reset before a response.
    Connect,
    /// Envoy gave up waiting (its own 504).
    Timeout,
    /// Any other non-200 status without a recognised OAuth error.
    Status(u16),
    /// RFC 6749 §5.2 `invalid_client`: the client id or secret is wrong.
    InvalidClient,
    /// RFC 6749 §5.2 `invalid_grant`: the refresh token is revoked, used or expired.
    InvalidGrant,
    /// The body is not a JSON object, or is larger than we read.
    NotJson,
    /// A required member is missing or has the wrong type.
    MissingField(&'static str),
    /// The access token or refresh token is empty, too long or not header-safe.
    BadToken,
    /// `token_type` is not `Bearer`.
    UnsupportedTokenType,
    /// `expires_in` is zero, beyond `max_lifetime`, or leaves nothing past the safety buffer.
    BadLifetime,
}

impl FetchError {
    pub const fn label(self) -> &'static str {
        match self {
            FetchError::Dispatch => "dispatch_error",
            FetchError::Connect => "connect_error",
            FetchError::Timeout => "timeout",
            FetchError::Status(status) if status >= 500 => "http_5xx",
            FetchError::Status(_) => "http_4xx",
            FetchError::InvalidClient => "invalid_client",
            FetchError::InvalidGrant => "invalid_grant",
            FetchError::NotJson => "invalid_json",
            FetchError::MissingField(_) => "missing_field",
            FetchError::BadToken => "bad_token",
            FetchError::UnsupportedTokenType => "bad_token_type",
            FetchError::BadLifetime => "bad_lifetime",
        }
    }

    /// Failures only a person can fix: retried on the slow period, not the backoff.
    pub const fn needs_operator(self) -> bool {
        matches!(self, FetchError::InvalidClient | FetchError::InvalidGrant)
    }
}

/// RFC 6750 §2.1 b64token: the characters a Bearer credential may carry, which are also safe in
/// a header value and a JSON string.
fn is_b64token(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= MAX_TOKEN_BYTES
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b))
}

/// The `exp` claim of a JWT-shaped token, read without verification (the platform verifies it;
/// the gateway only needs to know when it stops working).
pub fn jwt_exp_secs(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_header, payload, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || payload.len() > MAX_TOKEN_BYTES {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .or_else(|_| URL_SAFE.decode(payload))
        .ok()?;
    let claims: Value = serde_json::from_slice(&bytes).ok()?;
    let exp = claims.get("exp")?;
    exp.as_u64().or_else(|| {
        exp.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0)
            .map(|f| f as u64)
    })
}

/// Classifies an answer. `status` is `None` when the call failed without a response.
pub fn parse_response(
    status: Option<u16>,
    body: &[u8],
    now_ms: u64,
    config: &TokenConfig,
) -> Result<Issued, FetchError> {
    let Some(status) = status else {
        return Err(FetchError::Connect);
    };
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(FetchError::NotJson);
    }
    if status != 200 {
        // RFC 6749 §5.2: errors are 400 (or 401 for client authentication) with an `error` code.
        if let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) {
            match object.get("error").and_then(Value::as_str) {
                Some("invalid_client") => return Err(FetchError::InvalidClient),
                Some("invalid_grant") => return Err(FetchError::InvalidGrant),
                _ => {}
            }
        }
        // Envoy's own answers when the endpoint cannot be reached or does not answer in time.
        let text = String::from_utf8_lossy(body.get(..body.len().min(128)).unwrap_or(&[]))
            .to_ascii_lowercase();
        if status == 503
            && (text.starts_with("upstream connect error")
                || text.starts_with("no healthy upstream"))
        {
            return Err(FetchError::Connect);
        }
        if status == 504 && text.starts_with("upstream request timeout") {
            return Err(FetchError::Timeout);
        }
        return Err(FetchError::Status(status));
    }
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(body) else {
        return Err(FetchError::NotJson);
    };
    let access_token = object
        .get("access_token")
        .and_then(Value::as_str)
        .ok_or(FetchError::MissingField("access_token"))?;
    if !is_b64token(access_token) {
        return Err(FetchError::BadToken);
    }
    let token_type = object
        .get("token_type")
        .and_then(Value::as_str)
        .ok_or(FetchError::MissingField("token_type"))?;
    // RFC 6749 §7.1 / RFC 6750: only Bearer tokens can be injected as Bearer credentials.
    if !token_type.eq_ignore_ascii_case("bearer") {
        return Err(FetchError::UnsupportedTokenType);
    }
    let refresh_token = match object.get("refresh_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) if is_b64token(token) => Some(token.clone()),
        Some(_) => return Err(FetchError::BadToken),
    };
    let jwt_expiry_ms = jwt_exp_secs(access_token).map(|exp| {
        exp.saturating_mul(1000)
            .saturating_sub(config.clock_skew_ms)
    });
    let expires_in_secs = match object.get("expires_in") {
        Some(value) => {
            let secs = value
                .as_u64()
                .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or(FetchError::MissingField("expires_in"))?;
            Some(secs)
        }
        None => None,
    };
    let stated_expiry_ms =
        expires_in_secs.map(|secs| now_ms.saturating_add(secs.saturating_mul(1000)));
    let expires_at_ms = match (stated_expiry_ms, jwt_expiry_ms) {
        (Some(stated), Some(jwt)) => stated.min(jwt),
        (Some(stated), None) => stated,
        (None, Some(jwt)) => jwt,
        (None, None) => return Err(FetchError::MissingField("expires_in")),
    };
    let lifetime_ms = expires_at_ms.saturating_sub(now_ms);
    if lifetime_ms == 0
        || lifetime_ms > config.max_lifetime_ms
        || lifetime_ms <= config.safety_buffer_ms
        || expires_in_secs.is_some_and(|secs| secs.saturating_mul(1000) > config.max_lifetime_ms)
    {
        return Err(FetchError::BadLifetime);
    }
    Ok(Issued {
        access_token: access_token.to_string(),
        token_type: "Bearer".to_string(),
        expires_in_secs: expires_in_secs.unwrap_or(lifetime_ms / 1000),
        issued_at_ms: now_ms,
        expires_at_ms,
        refresh_at_ms: refresh_at(now_ms, expires_at_ms, config),
        refresh_token,
    })
}

/// The refresh point: the configured fraction of the lifetime, but never so late that a fetch
/// taking the full timeout would land after the token stops being injectable.
pub fn refresh_at(issued_at_ms: u64, expires_at_ms: u64, config: &TokenConfig) -> u64 {
    let lifetime = expires_at_ms.saturating_sub(issued_at_ms);
    let by_fraction =
        issued_at_ms.saturating_add((lifetime as f64 * config.refresh_fraction) as u64);
    let last_useful = expires_at_ms
        .saturating_sub(config.safety_buffer_ms)
        .saturating_sub(config.timeout_ms);
    by_fraction.min(last_useful).max(issued_at_ms)
}
