//! The mock platform's OAuth 2.0 token endpoint (RFC 6749): client-credentials and refresh-token
//! grants with refresh-token rotation, plus switchable failure modes.
//!
//! Access tokens are opaque random strings by default, or HS256 JWTs (RFC 7519) with
//! `--token-format jwt`. Either way the authority remembers each one with its expiry and answers
//! validity by looking it up; the JWT signature is there for clients that verify or peek, never
//! checked here.
//!
//! Everything here is synchronous and takes `now_ms` and a random source as arguments; the HTTP
//! edge in `server.rs` reads the body, sleeps for the `slow` fault and drops the connection for
//! the `down` fault.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jwt_simple::prelude::{HS256Key, JWTClaims, MACLike};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// Largest token-request body read; larger ones are refused before parsing.
pub const MAX_TOKEN_BODY_BYTES: usize = 64 * 1024;
/// Most name=value pairs accepted in one form body or query string.
pub const MAX_FORM_PAIRS: usize = 64;
/// Issued access and refresh tokens remembered (each); the oldest is forgotten first.
pub const MAX_REMEMBERED_TOKENS: usize = 10_000;
/// Scope granted when a client-credentials request names none.
pub const DEFAULT_SCOPE: &str = "agent:events";
/// Delay of the `slow` fault unless told otherwise.
pub const DEFAULT_SLOW_DELAY_MS: u64 = 10_000;
/// Upper bound for the `slow` fault's delay, so a typo cannot park a request for days.
pub const MAX_SLOW_DELAY_MS: u64 = 600_000;
/// Upper bound for the access-token lifetime (ten years).
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 10 * 365 * 86_400;
/// Upper bound for `--jwt-exp-skew` (one day).
pub const MAX_JWT_EXP_SKEW_SECS: u64 = 86_400;
/// `iss` of the JWT access tokens.
pub const JWT_ISSUER: &str = "sbctl-mock";
/// RFC 7518 §3.2: an HS256 key MUST be at least as long as the hash output.
pub const JWT_KEY_BYTES: usize = 32;

/// A credential that must never reach a log line: `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for comparing or looking it up; never for a log line.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the first difference is, so response timing does
    /// not reveal how much of a guessed secret was right.
    pub fn matches(&self, candidate: &str) -> bool {
        let expected = self.0.as_bytes();
        let candidate = candidate.as_bytes();
        let mut difference = u8::from(expected.len() != candidate.len());
        for (index, expected_byte) in expected.iter().enumerate() {
            let candidate_byte = candidate.get(index).copied().unwrap_or(0);
            difference |= expected_byte ^ candidate_byte;
        }
        difference == 0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("<redacted>")
    }
}

/// How the token endpoint misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenFault {
    /// Answer per RFC 6749.
    #[default]
    None,
    /// Close the connection without answering.
    Down,
    /// Answer normally, but only after the configured delay.
    Slow,
    /// Answer 500.
    ServerError,
    /// Answer 200 with a body that is not JSON.
    Garbage,
    /// Answer 400 `invalid_grant` to every request.
    InvalidGrant,
}

impl TokenFault {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenFault::None => "none",
            TokenFault::Down => "down",
            TokenFault::Slow => "slow",
            TokenFault::ServerError => "500",
            TokenFault::Garbage => "garbage",
            TokenFault::InvalidGrant => "invalid_grant",
        }
    }
}

impl fmt::Display for TokenFault {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl std::str::FromStr for TokenFault {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "none" => Ok(TokenFault::None),
            "down" => Ok(TokenFault::Down),
            "slow" => Ok(TokenFault::Slow),
            "500" => Ok(TokenFault::ServerError),
            "garbage" => Ok(TokenFault::Garbage),
            "invalid_grant" => Ok(TokenFault::InvalidGrant),
            other => Err(format!(
                "unknown token fault {other:?} (expected none, down, slow, 500, garbage or invalid_grant)"
            )),
        }
    }
}

/// The shape of issued access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenFormat {
    /// 32 random bytes as base64url: a client can learn the expiry only from `expires_in`.
    #[default]
    Opaque,
    /// An HS256 JWT whose `exp` a client can read (and which `--jwt-exp-skew` can pull earlier
    /// than `expires_in` says).
    Jwt,
}

impl TokenFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenFormat::Opaque => "opaque",
            TokenFormat::Jwt => "jwt",
        }
    }
}

impl fmt::Display for TokenFormat {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

impl std::str::FromStr for TokenFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "opaque" => Ok(TokenFormat::Opaque),
            "jwt" => Ok(TokenFormat::Jwt),
            other => Err(format!(
                "unknown token format {other:?} (expected opaque or jwt)"
            )),
        }
    }
}

/// Signs the JWT access tokens with a key that lives as long as the process.
#[derive(Clone)]
pub struct JwtSigner {
    key: HS256Key,
    exp_skew_secs: u64,
}

/// The key is a secret: `Debug` shows only the skew.
impl fmt::Debug for JwtSigner {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("JwtSigner")
            .field("key", &"<redacted>")
            .field("exp_skew_secs", &self.exp_skew_secs)
            .finish()
    }
}

/// The claims of one JWT access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JwtClaims<'a> {
    pub subject: &'a str,
    pub scope: &'a str,
    pub issued_at_secs: u64,
    pub expires_at_secs: u64,
    pub jwt_id: &'a str,
}

/// Why a JWT could not be signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// jwt-simple could not serialize or authenticate the claims.
    #[error("signing the access token failed: {0}")]
    Jwt(String),
}

impl JwtSigner {
    /// A signer with `key_bytes` as the HS256 key; `exp_skew_secs` (cut to
    /// `MAX_JWT_EXP_SKEW_SECS`) moves `exp` that much before what `expires_in` implies.
    pub fn new(key_bytes: &[u8], exp_skew_secs: u64) -> Self {
        Self {
            key: HS256Key::from_bytes(key_bytes),
            exp_skew_secs: exp_skew_secs.min(MAX_JWT_EXP_SKEW_SECS),
        }
    }

    /// A signer with a fresh random key.
    pub fn random(rng: &mut impl RngCore, exp_skew_secs: u64) -> Self {
        let mut key = [0u8; JWT_KEY_BYTES];
        rng.fill_bytes(&mut key);
        Self::new(&key, exp_skew_secs)
    }

    /// The `exp` claim of a token issued at `issued_at_secs` that `expires_in` says lives
    /// `lifetime_secs`. A skew of the whole lifetime or more makes a token that is expired on
    /// arrival, which is a case worth testing too.
    pub fn exp_secs(&self, issued_at_secs: u64, lifetime_secs: u64) -> u64 {
        issued_at_secs.saturating_add(lifetime_secs.saturating_sub(self.exp_skew_secs))
    }

    /// `base64url(header).base64url(claims).base64url(HMAC-SHA256)` with header
    /// `{"alg":"HS256","typ":"JWT"}` (RFC 7515 §7.1, RFC 7518 §3.2).
    pub fn sign(&self, claims: &JwtClaims<'_>) -> Result<String, SignError> {
        let mut custom = serde_json::Map::new();
        custom.insert("iss".into(), JWT_ISSUER.into());
        custom.insert("sub".into(), claims.subject.into());
        custom.insert("scope".into(), claims.scope.into());
        custom.insert("iat".into(), claims.issued_at_secs.into());
        custom.insert("exp".into(), claims.expires_at_secs.into());
        custom.insert("jti".into(), claims.jwt_id.into());
        // Every claim travels in the custom map so the payload is exactly these six; jwt-simple's
        // own registered fields would add `nbf` and read the clock.
        let claims = JWTClaims {
            issued_at: None,
            expires_at: None,
            invalid_before: None,
            issuer: None,
            subject: None,
            audiences: None,
            jwt_id: None,
            nonce: None,
            custom,
        };
        self.key
            .authenticate(claims)
            .map_err(|error| SignError::Jwt(error.to_string()))
    }
}

/// Why a form body or query string could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// More than `MAX_FORM_PAIRS` pairs.
    #[error("more than {MAX_FORM_PAIRS} form fields")]
    TooManyPairs,
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding")]
    BadPercentEncoding,
    /// A decoded name or value is not UTF-8.
    #[error("form field is not UTF-8")]
    NotUtf8,
}

/// Decodes `application/x-www-form-urlencoded` (WHATWG URL §5.1): pairs split on `&`, name and
/// value on the first `=`, `+` is a space, `%HH` a byte. Empty segments are skipped.
pub fn parse_form(input: &[u8]) -> Result<Vec<(String, String)>, FormError> {
    let mut pairs = Vec::new();
    for segment in input.split(|byte| *byte == b'&') {
        if segment.is_empty() {
            continue;
        }
        if pairs.len() >= MAX_FORM_PAIRS {
            return Err(FormError::TooManyPairs);
        }
        let (name, value) = match segment.iter().position(|byte| *byte == b'=') {
            Some(at) => (
                segment.get(..at).unwrap_or_default(),
                segment.get(at + 1..).unwrap_or_default(),
            ),
            None => (segment, &[][..]),
        };
        pairs.push((form_decode(name)?, form_decode(value)?));
    }
    Ok(pairs)
}

fn form_decode(encoded: &[u8]) -> Result<String, FormError> {
    let mut decoded = Vec::with_capacity(encoded.len());
    let mut bytes = encoded.iter();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'+' => decoded.push(b' '),
            b'%' => {
                let high = bytes.next().and_then(|digit| hex_value(*digit));
                let low = bytes.next().and_then(|digit| hex_value(*digit));
                match (high, low) {
                    (Some(high), Some(low)) => decoded.push(high << 4 | low),
                    _ => return Err(FormError::BadPercentEncoding),
                }
            }
            other => decoded.push(other),
        }
    }
    String::from_utf8(decoded).map_err(|_| FormError::NotUtf8)
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// The only value of a form field; `Err` if it is repeated (RFC 6749 §3.2: parameters MUST NOT
/// be included more than once).
fn single<'a>(form: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, OAuthError> {
    let mut values = form.iter().filter(|(field, _)| field == name);
    let first = values.next().map(|(_, value)| value.as_str());
    if values.next().is_some() {
        return Err(OAuthError::InvalidRequest);
    }
    Ok(first)
}

/// An OAuth error response (RFC 6749 §5.2), one variant per `error` code the mock answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// Malformed request: wrong content type, bad form, repeated or missing parameter.
    #[error("invalid_request")]
    InvalidRequest,
    /// Client authentication failed; `basic_attempted` asks for a `WWW-Authenticate` challenge.
    #[error("invalid_client")]
    InvalidClient { basic_attempted: bool },
    /// Unknown, reused or foreign refresh token (or the `invalid_grant` fault).
    #[error("invalid_grant")]
    InvalidGrant,
    /// A grant type other than client_credentials or refresh_token.
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// A refresh asked for scope beyond what was originally granted.
    #[error("invalid_scope")]
    InvalidScope,
    /// The token could not be minted (signing failed); nothing was issued.
    #[error("server_error")]
    ServerError,
}

impl OAuthError {
    pub fn code(self) -> &'static str {
        match self {
            OAuthError::InvalidRequest => "invalid_request",
            OAuthError::InvalidClient { .. } => "invalid_client",
            OAuthError::InvalidGrant => "invalid_grant",
            OAuthError::UnsupportedGrantType => "unsupported_grant_type",
            OAuthError::InvalidScope => "invalid_scope",
            OAuthError::ServerError => "server_error",
        }
    }

    /// RFC 6749 §5.2: 400, except 401 for a failed client authentication; 500 when the server
    /// itself failed.
    pub fn status(self) -> u16 {
        match self {
            OAuthError::InvalidClient { .. } => 401,
            OAuthError::ServerError => 500,
            _ => 400,
        }
    }

    fn reply(self) -> TokenReply {
        TokenReply {
            status: self.status(),
            content_type: "application/json",
            body: json!({ "error": self.code() }).to_string(),
            basic_challenge: matches!(
                self,
                OAuthError::InvalidClient {
                    basic_attempted: true
                }
            ),
        }
    }
}

/// How the client tried to authenticate (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    Basic,
    Form,
    None,
}

impl ClientAuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAuthMethod::Basic => "basic",
            ClientAuthMethod::Form => "form",
            ClientAuthMethod::None => "none",
        }
    }
}

/// Client id and secret as presented, whichever way.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PresentedClient {
    method: ClientAuthMethod,
    client_id: Option<String>,
    secret: Option<Secret>,
    /// The Authorization header was present but not decodable Basic credentials.
    malformed: bool,
}

fn presented_client(
    authorization: Option<&str>,
    form: &[(String, String)],
) -> Result<PresentedClient, OAuthError> {
    let form_id = single(form, "client_id")?;
    let form_secret = single(form, "client_secret")?;
    if let Some(header) = authorization {
        // RFC 6749 §2.3: a client MUST NOT use more than one authentication method per request.
        if form_secret.is_some() {
            return Err(OAuthError::InvalidRequest);
        }
        return Ok(match decode_basic(header) {
            Some((client_id, secret)) => PresentedClient {
                method: ClientAuthMethod::Basic,
                client_id: Some(client_id),
                secret: Some(Secret::new(secret)),
                malformed: false,
            },
            None => PresentedClient {
                method: ClientAuthMethod::Basic,
                client_id: None,
                secret: None,
                malformed: true,
            },
        });
    }
    let method = if form_id.is_some() || form_secret.is_some() {
        ClientAuthMethod::Form
    } else {
        ClientAuthMethod::None
    };
    Ok(PresentedClient {
        method,
        client_id: form_id.map(str::to_owned),
        secret: form_secret.map(Secret::new),
        malformed: false,
    })
}

/// Decodes `Basic base64(id:secret)`; RFC 6749 §2.3.1 form-encodes id and secret before base64.
fn decode_basic(header: &str) -> Option<(String, String)> {
    let (scheme, credentials) = header.trim().split_once(' ')?;
    // RFC 7235 §2.1: the auth-scheme is case-insensitive.
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(credentials.trim()).ok()?;
    let colon = decoded.iter().position(|byte| *byte == b':')?;
    let client_id = form_decode(decoded.get(..colon)?).ok()?;
    let secret = form_decode(decoded.get(colon + 1..)?).ok()?;
    Some((client_id, secret))
}

/// A token request as the HTTP edge saw it.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest<'a> {
    pub content_type: Option<&'a str>,
    pub authorization: Option<&'a str>,
    pub body: &'a [u8],
}

/// The HTTP answer to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenReply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// RFC 6749 §5.2: a 401 after Basic auth MUST carry `WWW-Authenticate`.
    pub basic_challenge: bool,
}

/// What one request amounted to, for the token-request log. Holds no secret and no token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TokenRequestSummary {
    pub grant_type: Option<String>,
    pub client_id: Option<String>,
    pub client_auth: &'static str,
    pub secret_matched: bool,
    pub fault: &'static str,
    pub error: Option<&'static str>,
}

/// The decision for one request: `reply` is `None` when the connection must be dropped.
#[derive(Debug, Clone)]
pub struct TokenOutcome {
    pub reply: Option<TokenReply>,
    pub summary: TokenRequestSummary,
}

/// The fault and lifetime settings, as served and accepted by `/_mock/token-fault`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FaultSettings {
    pub mode: &'static str,
    pub lifetime: u64,
    pub delay_ms: u64,
}

/// Body of `POST /_mock/token-fault`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultUpdate {
    mode: String,
    lifetime: Option<u64>,
    delay_ms: Option<u64>,
}

/// Why a `/_mock/token-fault` update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FaultUpdateError {
    /// Not JSON of the expected shape.
    #[error("body must be {{\"mode\": ..., \"lifetime\"?: secs, \"delay_ms\"?: ms}}: {0}")]
    Malformed(String),
    /// `mode` is not one of the fault names.
    #[error("{0}")]
    UnknownMode(String),
    /// `lifetime` is 0 or above `MAX_TOKEN_LIFETIME_SECS`.
    #[error("lifetime must be 1..={MAX_TOKEN_LIFETIME_SECS} seconds")]
    LifetimeOutOfRange,
    /// `delay_ms` above `MAX_SLOW_DELAY_MS`.
    #[error("delay_ms must be at most {MAX_SLOW_DELAY_MS}")]
    DelayOutOfRange,
}

/// Insertion-ordered map that forgets its oldest keys beyond `max_entries`.
///
/// Removed keys stay in `order` until they reach the front, so the map may hold fewer than
/// `max_entries` live entries; the bound on memory is what matters here.
struct BoundedMap<V> {
    max_entries: usize,
    entries: HashMap<String, V>,
    order: VecDeque<String>,
}

/// Keys are tokens, so `Debug` shows only how many there are.
impl<V> fmt::Debug for BoundedMap<V> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("BoundedMap")
            .field("max_entries", &self.max_entries)
            .field("len", &self.entries.len())
            .finish()
    }
}

impl<V> BoundedMap<V> {
    fn new(max_entries: usize) -> Self {
        Self {
            max_entries: max_entries.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn insert(&mut self, key: String, value: V) {
        while self.order.len() >= self.max_entries {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
        self.order.push_back(key.clone());
        self.entries.insert(key, value);
    }

    fn get(&self, key: &str) -> Option<&V> {
        self.entries.get(key)
    }

    fn remove(&mut self, key: &str) -> Option<V> {
        self.entries.remove(key)
    }
}

#[derive(Debug)]
struct AccessGrant {
    expires_at_ms: u64,
}

#[derive(Debug)]
struct RefreshGrant {
    client_id: String,
    scope: String,
}

/// The one registered client, the issued tokens, and the current fault settings.
#[derive(Debug)]
pub struct TokenAuthority {
    client_id: String,
    client_secret: Secret,
    lifetime_secs: u64,
    fault: TokenFault,
    slow_delay_ms: u64,
    access_tokens: BoundedMap<AccessGrant>,
    refresh_tokens: BoundedMap<RefreshGrant>,
    /// `Some`: access tokens are JWTs signed by it; `None`: opaque.
    jwt: Option<JwtSigner>,
}

impl TokenAuthority {
    pub fn new(
        client_id: impl Into<String>,
        client_secret: Secret,
        lifetime_secs: u64,
        fault: TokenFault,
        slow_delay_ms: u64,
        max_tokens: usize,
    ) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret,
            lifetime_secs: lifetime_secs.clamp(1, MAX_TOKEN_LIFETIME_SECS),
            fault,
            slow_delay_ms: slow_delay_ms.min(MAX_SLOW_DELAY_MS),
            access_tokens: BoundedMap::new(max_tokens),
            refresh_tokens: BoundedMap::new(max_tokens),
            jwt: None,
        }
    }

    /// Issues JWT access tokens signed by `signer` from now on.
    pub fn with_jwt(mut self, signer: JwtSigner) -> Self {
        self.jwt = Some(signer);
        self
    }

    pub fn token_format(&self) -> TokenFormat {
        match self.jwt {
            Some(_) => TokenFormat::Jwt,
            None => TokenFormat::Opaque,
        }
    }

    pub fn fault_settings(&self) -> FaultSettings {
        FaultSettings {
            mode: self.fault.as_str(),
            lifetime: self.lifetime_secs,
            delay_ms: self.slow_delay_ms,
        }
    }

    pub fn fault(&self) -> TokenFault {
        self.fault
    }

    /// Applies a `/_mock/token-fault` body; nothing changes unless all of it is valid.
    pub fn update_fault(&mut self, body: &[u8]) -> Result<FaultSettings, FaultUpdateError> {
        let update: FaultUpdate = serde_json::from_slice(body)
            .map_err(|error| FaultUpdateError::Malformed(error.to_string()))?;
        let fault: TokenFault = update.mode.parse().map_err(FaultUpdateError::UnknownMode)?;
        if let Some(lifetime) = update.lifetime {
            if lifetime == 0 || lifetime > MAX_TOKEN_LIFETIME_SECS {
                return Err(FaultUpdateError::LifetimeOutOfRange);
            }
        }
        if update
            .delay_ms
            .is_some_and(|delay| delay > MAX_SLOW_DELAY_MS)
        {
            return Err(FaultUpdateError::DelayOutOfRange);
        }
        self.fault = fault;
        if let Some(lifetime) = update.lifetime {
            self.lifetime_secs = lifetime;
        }
        if let Some(delay) = update.delay_ms {
            self.slow_delay_ms = delay;
        }
        Ok(self.fault_settings())
    }

    /// True if `token` was issued here, is still remembered, and expires after `now_ms`.
    pub fn access_token_valid(&self, token: &str, now_ms: u64) -> bool {
        self.access_token_expiry_ms(token)
            .is_some_and(|expires_at_ms| expires_at_ms > now_ms)
    }

    /// When `token` expires (Unix ms), if it was issued here and is still remembered, expired
    /// or not. For a JWT this is its `exp` claim.
    pub fn access_token_expiry_ms(&self, token: &str) -> Option<u64> {
        self.access_tokens
            .get(token)
            .map(|grant| grant.expires_at_ms)
    }

    /// Decides the answer to one token request under the current fault mode.
    pub fn handle(
        &mut self,
        request: &TokenRequest<'_>,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> TokenOutcome {
        let mut summary = TokenRequestSummary {
            client_auth: ClientAuthMethod::None.as_str(),
            fault: self.fault.as_str(),
            ..TokenRequestSummary::default()
        };
        let result = self.process(request, now_ms, rng, &mut summary);
        let (reply, error) = match self.fault {
            TokenFault::Down => (None, None),
            TokenFault::ServerError => (
                Some(TokenReply {
                    status: 500,
                    content_type: "application/json",
                    body: json!({ "error": "server_error" }).to_string(),
                    basic_challenge: false,
                }),
                Some("server_error"),
            ),
            TokenFault::Garbage => (
                Some(TokenReply {
                    status: 200,
                    content_type: "application/json",
                    body: "<html><body>502 Bad Gateway</body></html>\n".to_owned(),
                    basic_challenge: false,
                }),
                None,
            ),
            TokenFault::InvalidGrant => (
                Some(OAuthError::InvalidGrant.reply()),
                Some(OAuthError::InvalidGrant.code()),
            ),
            TokenFault::None | TokenFault::Slow => match result {
                Ok(reply) => (Some(reply), None),
                Err(error) => (Some(error.reply()), Some(error.code())),
            },
        };
        summary.error = error;
        TokenOutcome { reply, summary }
    }

    /// The RFC 6749 behaviour. Under a fault that does not answer normally nothing is issued,
    /// so a faulted request never consumes a refresh token.
    fn process(
        &mut self,
        request: &TokenRequest<'_>,
        now_ms: u64,
        rng: &mut impl RngCore,
        summary: &mut TokenRequestSummary,
    ) -> Result<TokenReply, OAuthError> {
        let form = parse_form(request.body).map_err(|_| OAuthError::InvalidRequest)?;
        let grant_type = single(&form, "grant_type")?;
        summary.grant_type = grant_type.map(bounded_for_log);
        let client = presented_client(request.authorization, &form)?;
        summary.client_auth = client.method.as_str();
        summary.client_id = client.client_id.as_deref().map(bounded_for_log);
        summary.secret_matched = client.client_id.as_deref() == Some(self.client_id.as_str())
            && client
                .secret
                .as_ref()
                .is_some_and(|secret| self.client_secret.matches(&secret.0));

        // RFC 6749 §3.2: the token endpoint takes application/x-www-form-urlencoded.
        let is_form = request.content_type.is_some_and(|value| {
            value.split(';').next().is_some_and(|media| {
                media
                    .trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
        if !is_form {
            return Err(OAuthError::InvalidRequest);
        }
        if !summary.secret_matched || client.malformed {
            return Err(OAuthError::InvalidClient {
                basic_attempted: client.method == ClientAuthMethod::Basic,
            });
        }
        let answers_normally = matches!(self.fault, TokenFault::None | TokenFault::Slow);
        match grant_type {
            None => Err(OAuthError::InvalidRequest),
            Some("client_credentials") => {
                let scope = single(&form, "scope")?.unwrap_or(DEFAULT_SCOPE).to_owned();
                if !answers_normally {
                    return Err(OAuthError::InvalidGrant);
                }
                self.issue(&scope, now_ms, rng)
            }
            Some("refresh_token") => {
                let presented =
                    single(&form, "refresh_token")?.ok_or(OAuthError::InvalidRequest)?;
                let requested_scope = single(&form, "scope")?;
                let grant = self
                    .refresh_tokens
                    .get(presented)
                    .ok_or(OAuthError::InvalidGrant)?;
                // RFC 6749 §6: the refresh token MUST be bound to the client it was issued to.
                if grant.client_id != self.client_id {
                    return Err(OAuthError::InvalidGrant);
                }
                // RFC 6749 §6: the requested scope MUST NOT include scope not originally granted.
                let scope = match requested_scope {
                    None => grant.scope.clone(),
                    Some(requested) => {
                        let granted: Vec<&str> = grant.scope.split(' ').collect();
                        if requested.split(' ').any(|item| !granted.contains(&item)) {
                            return Err(OAuthError::InvalidScope);
                        }
                        requested.to_owned()
                    }
                };
                if !answers_normally {
                    return Err(OAuthError::InvalidGrant);
                }
                // Mint first, so a signing failure leaves the presented token usable.
                let reply = self.issue(&scope, now_ms, rng)?;
                // Rotation: the presented token dies here; reusing it is `invalid_grant`.
                self.refresh_tokens.remove(presented);
                Ok(reply)
            }
            Some(_) => Err(OAuthError::UnsupportedGrantType),
        }
    }

    fn issue(
        &mut self,
        scope: &str,
        now_ms: u64,
        rng: &mut impl RngCore,
    ) -> Result<TokenReply, OAuthError> {
        let (access_token, expires_at_ms) = match &self.jwt {
            None => (
                random_token(rng, 32),
                now_ms.saturating_add(self.lifetime_secs.saturating_mul(1000)),
            ),
            Some(signer) => {
                let issued_at_secs = now_ms / 1000;
                let expires_at_secs = signer.exp_secs(issued_at_secs, self.lifetime_secs);
                let jwt_id = random_token(rng, 16);
                let token = signer
                    .sign(&JwtClaims {
                        subject: &self.client_id,
                        scope,
                        issued_at_secs,
                        expires_at_secs,
                        jwt_id: &jwt_id,
                    })
                    .map_err(|_| OAuthError::ServerError)?;
                // The table follows the claim, so a client that trusts `exp` is right to.
                (token, expires_at_secs.saturating_mul(1000))
            }
        };
        let refresh_token = random_token(rng, 32);
        self.access_tokens
            .insert(access_token.clone(), AccessGrant { expires_at_ms });
        self.refresh_tokens.insert(
            refresh_token.clone(),
            RefreshGrant {
                client_id: self.client_id.clone(),
                scope: scope.to_owned(),
            },
        );
        Ok(TokenReply {
            status: 200,
            content_type: "application/json",
            body: json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": self.lifetime_secs,
                "scope": scope,
                "refresh_token": refresh_token,
            })
            .to_string(),
            basic_challenge: false,
        })
    }
}

/// `byte_count` random bytes as unpadded base64url.
fn random_token(rng: &mut impl RngCore, byte_count: usize) -> String {
    let mut bytes = vec![0u8; byte_count];
    rng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Client-chosen strings go into the request log truncated, so the log stays bounded.
fn bounded_for_log(value: &str) -> String {
    const MAX_LOGGED_CHARS: usize = 128;
    value.chars().take(MAX_LOGGED_CHARS).collect()
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on an unexpected error"
)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use serde_json::Value;

    const FORM: &str = "application/x-www-form-urlencoded";
    const NOW_MS: u64 = 1_700_000_000_000;

    fn authority() -> TokenAuthority {
        TokenAuthority::new(
            "switchboard",
            Secret::new("s3cret"),
            3600,
            TokenFault::None,
            DEFAULT_SLOW_DELAY_MS,
            100,
        )
    }

    fn post(authority: &mut TokenAuthority, body: &str, rng: &mut StdRng) -> TokenOutcome {
        authority.handle(
            &TokenRequest {
                content_type: Some(FORM),
                authorization: None,
                body: body.as_bytes(),
            },
            NOW_MS,
            rng,
        )
    }

    fn json_of(outcome: &TokenOutcome) -> Value {
        serde_json::from_str(&outcome.reply.as_ref().unwrap().body).unwrap()
    }

    fn status_of(outcome: &TokenOutcome) -> u16 {
        outcome.reply.as_ref().unwrap().status
    }

    const CLIENT_FORM: &str = "client_id=switchboard&client_secret=s3cret";

    #[test]
    fn form_decoding() {
        assert_eq!(
            parse_form(b"a=1&b=x+y&c=%41%2b%3D&&d&e=").unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "x y".into()),
                ("c".into(), "A+=".into()),
                ("d".into(), String::new()),
                ("e".into(), String::new()),
            ]
        );
        assert_eq!(parse_form(b"").unwrap(), vec![]);
        assert_eq!(parse_form(b"a=%4"), Err(FormError::BadPercentEncoding));
        assert_eq!(parse_form(b"a=%zz"), Err(FormError::BadPercentEncoding));
        assert_eq!(parse_form(b"a=%ff"), Err(FormError::NotUtf8));
        assert_eq!(parse_form("k=%C3%A9".as_bytes()).unwrap()[0].1, "é");
        let many = "a=1&".repeat(MAX_FORM_PAIRS + 1);
        assert_eq!(parse_form(many.as_bytes()), Err(FormError::TooManyPairs));
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        // "my+client:p%40ss" → id "my client", secret "p@ss".
        let header = format!("basic {}", STANDARD.encode("my+client:p%40ss"));
        assert_eq!(
            decode_basic(&header),
            Some(("my client".into(), "p@ss".into()))
        );
        assert_eq!(decode_basic("Bearer abc"), None);
        assert_eq!(decode_basic("Basic !!!"), None);
        assert_eq!(
            decode_basic(&format!("Basic {}", STANDARD.encode("nocolon"))),
            None
        );
    }

    #[test]
    fn secret_comparison() {
        let secret = Secret::new("abc");
        assert!(secret.matches("abc"));
        assert!(!secret.matches("abd"));
        assert!(!secret.matches("ab"));
        assert!(!secret.matches("abcd"));
        assert!(!secret.matches(""));
        assert_eq!(format!("{secret:?}"), "<redacted>");
    }

    #[test]
    fn client_credentials_grant_issues_tokens() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut authority = authority();
        let outcome = post(
            &mut authority,
            &format!("grant_type=client_credentials&{CLIENT_FORM}&scope=a+b"),
            &mut rng,
        );
        assert_eq!(status_of(&outcome), 200);
        let body = json_of(&outcome);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        assert_eq!(body["scope"], "a b");
        let access = body["access_token"].as_str().unwrap();
        // Opaque by default: 32 random bytes, nothing a client could parse.
        assert!(!access.contains('.'));
        assert_eq!(URL_SAFE_NO_PAD.decode(access).unwrap().len(), 32);
        assert_eq!(
            authority.access_token_expiry_ms(access),
            Some(NOW_MS + 3_600_000)
        );
        assert_eq!(authority.access_token_expiry_ms("nope"), None);
        assert!(authority.access_token_valid(access, NOW_MS));
        assert!(authority.access_token_valid(access, NOW_MS + 3_599_000));
        assert!(!authority.access_token_valid(access, NOW_MS + 3_600_000));
        assert!(!authority.access_token_valid("nope", NOW_MS));
        assert_eq!(outcome.summary.client_auth, "form");
        assert!(outcome.summary.secret_matched);
        assert_eq!(
            outcome.summary.grant_type.as_deref(),
            Some("client_credentials")
        );
        assert_eq!(outcome.summary.error, None);
    }

    #[test]
    fn default_scope_applies() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut authority = authority();
        let outcome = post(
            &mut authority,
            &format!("grant_type=client_credentials&{CLIENT_FORM}"),
            &mut rng,
        );
        assert_eq!(json_of(&outcome)["scope"], DEFAULT_SCOPE);
    }

    #[test]
    fn refresh_rotates_and_reuse_is_invalid_grant() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut authority = authority();
        let first = json_of(&post(
            &mut authority,
            &format!("grant_type=client_credentials&{CLIENT_FORM}"),
            &mut rng,
        ));
        let old_refresh = first["refresh_token"].as_str().unwrap().to_owned();
        let refreshed = post(
            &mut authority,
            &format!("grant_type=refresh_token&refresh_token={old_refresh}&{CLIENT_FORM}"),
            &mut rng,
        );
        assert_eq!(status_of(&refreshed), 200);
        let second = json_of(&refreshed);
        assert_ne!(second["refresh_token"], first["refresh_token"]);
        assert_ne!(second["access_token"], first["access_token"]);
        assert_eq!(second["scope"], DEFAULT_SCOPE);

        let reused = post(
            &mut authority,
            &format!("grant_type=refresh_token&refresh_token={old_refresh}&{CLIENT_FORM}"),
            &mut rng,
        );
        assert_eq!(status_of(&reused), 400);
        assert_eq!(json_of(&reused), json!({"error": "invalid_grant"}));
        assert_eq!(reused.summary.error, Some("invalid_grant"));

        let new_refresh = second["refresh_token"].as_str().unwrap();
        let again = post(
            &mut authority,
            &format!("grant_type=refresh_token&refresh_token={new_refresh}&{CLIENT_FORM}"),
            &mut rng,
        );
        assert_eq!(status_of(&again), 200);
    }

    #[test]
    fn refresh_cannot_widen_scope() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut authority = authority();
        let first = json_of(&post(
            &mut authority,
            &format!("grant_type=client_credentials&{CLIENT_FORM}&scope=a+b"),
            &mut rng,
        ));
        let refresh = first["refresh_token"].as_str().unwrap();
        let widened = post(
            &mut authority,
            &format!("grant_type=refresh_token&refresh_token={refresh}&scope=a+c&{CLIENT_FORM}"),
            &mut rng,
        );
        assert_eq!(json_of(&widened)["error"], "invalid_scope");
        // A refused refresh leaves the refresh token usable.
        let narrowed = post(
            &mut authority,
            &format!("grant_type=refresh_token&refresh_token={refresh}&scope=b&{CLIENT_FORM}"),
            &mut rng,
        );
        assert_eq!(json_of(&narrowed)["scope"], "b");
    }

    #[test]
    fn client_authentication_failures() {
        let mut rng = StdRng::seed_from_u64(5);
        let mut authority = authority();
        let wrong = post(
            &mut authority,
            "grant_type=client_credentials&client_id=switchboard&client_secret=nope",
            &mut rng,
        );
        assert_eq!(status_of(&wrong), 401);
        assert_eq!(json_of(&wrong)["error"], "invalid_client");
        assert!(!wrong.reply.as_ref().unwrap().basic_challenge);
        assert!(!wrong.summary.secret_matched);

        let missing = post(&mut authority, "grant_type=client_credentials", &mut rng);
        assert_eq!(status_of(&missing), 401);
        assert_eq!(missing.summary.client_auth, "none");

        let basic_wrong = authority.handle(
            &TokenRequest {
                content_type: Some(FORM),
                authorization: Some(&format!("Basic {}", STANDARD.encode("switchboard:x"))),
                body: b"grant_type=client_credentials",
            },
            NOW_MS,
            &mut rng,
        );
        assert_eq!(status_of(&basic_wrong), 401);
        assert!(basic_wrong.reply.as_ref().unwrap().basic_challenge);
        assert_eq!(basic_wrong.summary.client_auth, "basic");
        assert_eq!(
            basic_wrong.summary.client_id.as_deref(),
            Some("switchboard")
        );
    }

    #[test]
    fn basic_authentication_succeeds() {
        let mut rng = StdRng::seed_from_u64(6);
        let mut authority = authority();
        let outcome = authority.handle(
            &TokenRequest {
                content_type: Some("application/x-www-form-urlencoded; charset=UTF-8"),
                authorization: Some(&format!("Basic {}", STANDARD.encode("switchboard:s3cret"))),
                body: b"grant_type=client_credentials",
            },
            NOW_MS,
            &mut rng,
        );
        assert_eq!(status_of(&outcome), 200);
        assert!(outcome.summary.secret_matched);
    }

    #[test]
    fn malformed_requests() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut authority = authority();
        let unsupported = post(
            &mut authority,
            &format!("grant_type=password&{CLIENT_FORM}"),
            &mut rng,
        );
        assert_eq!(status_of(&unsupported), 400);
        assert_eq!(json_of(&unsupported)["error"], "unsupported_grant_type");

        let no_grant = post(&mut authority, CLIENT_FORM, &mut rng);
        assert_eq!(json_of(&no_grant)["error"], "invalid_request");

        let repeated = post(
            &mut authority,
            &format!("grant_type=client_credentials&grant_type=client_credentials&{CLIENT_FORM}"),
            &mut rng,
        );
        assert_eq!(json_of(&repeated)["error"], "invalid_request");

        let json_body = authority.handle(
            &TokenRequest {
                content_type: Some("application/json"),
                authorization: None,
                body: format!("grant_type=client_credentials&{CLIENT_FORM}").as_bytes(),
            },
            NOW_MS,
            &mut rng,
        );
        assert_eq!(json_of(&json_body)["error"], "invalid_request");

        let two_methods = authority.handle(
            &TokenRequest {
                content_type: Some(FORM),
                authorization: Some(&format!("Basic {}", STANDARD.encode("switchboard:s3cret"))),
                body: b"grant_type=client_credentials&client_secret=s3cret",
            },
            NOW_MS,
            &mut rng,
        );
        assert_eq!(json_of(&two_methods)["error"], "invalid_request");

        let no_refresh = post(
            &mut authority,
            &format!("grant_type=refresh_token&{CLIENT_FORM}"),
            &mut rng,
        );
        assert_eq!(json_of(&no_refresh)["error"], "invalid_request");
    }

    #[test]
    fn faults_shape_the_answer_and_issue_nothing() {
        let mut rng = StdRng::seed_from_u64(8);
        let mut authority = authority();
        let body = format!("grant_type=client_credentials&{CLIENT_FORM}");
        let refresh = json_of(&post(&mut authority, &body, &mut rng))["refresh_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let refresh_body =
            format!("grant_type=refresh_token&refresh_token={refresh}&{CLIENT_FORM}");

        authority.update_fault(br#"{"mode":"down"}"#).unwrap();
        let down = post(&mut authority, &refresh_body, &mut rng);
        assert!(down.reply.is_none());
        assert_eq!(down.summary.fault, "down");
        assert!(down.summary.secret_matched);

        authority.update_fault(br#"{"mode":"500"}"#).unwrap();
        assert_eq!(
            status_of(&post(&mut authority, &refresh_body, &mut rng)),
            500
        );

        authority.update_fault(br#"{"mode":"garbage"}"#).unwrap();
        let garbage = post(&mut authority, &refresh_body, &mut rng);
        assert_eq!(status_of(&garbage), 200);
        assert!(serde_json::from_str::<Value>(&garbage.reply.unwrap().body).is_err());

        authority
            .update_fault(br#"{"mode":"invalid_grant"}"#)
            .unwrap();
        let invalid = post(&mut authority, &body, &mut rng);
        assert_eq!(status_of(&invalid), 400);
        assert_eq!(json_of(&invalid)["error"], "invalid_grant");

        // None of the faulted requests consumed the refresh token.
        authority
            .update_fault(br#"{"mode":"slow","delay_ms":5}"#)
            .unwrap();
        assert_eq!(authority.fault_settings().delay_ms, 5);
        let slow = post(&mut authority, &refresh_body, &mut rng);
        assert_eq!(status_of(&slow), 200);
        assert_eq!(slow.summary.fault, "slow");
    }

    #[test]
    fn fault_updates_are_validated_whole() {
        let mut authority = authority();
        assert_eq!(
            authority.update_fault(br#"{"mode":"500","lifetime":60}"#),
            Ok(FaultSettings {
                mode: "500",
                lifetime: 60,
                delay_ms: DEFAULT_SLOW_DELAY_MS
            })
        );
        assert!(matches!(
            authority.update_fault(br#"{"mode":"bogus"}"#),
            Err(FaultUpdateError::UnknownMode(_))
        ));
        assert_eq!(
            authority.update_fault(br#"{"mode":"none","lifetime":0}"#),
            Err(FaultUpdateError::LifetimeOutOfRange)
        );
        assert_eq!(
            authority.update_fault(br#"{"mode":"slow","delay_ms":999999999}"#),
            Err(FaultUpdateError::DelayOutOfRange)
        );
        assert!(matches!(
            authority.update_fault(br#"{"mode":"none","extra":1}"#),
            Err(FaultUpdateError::Malformed(_))
        ));
        // The refused updates changed nothing.
        assert_eq!(authority.fault(), TokenFault::ServerError);
        assert_eq!(authority.fault_settings().lifetime, 60);
    }

    #[test]
    fn remembered_tokens_are_bounded() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut authority = TokenAuthority::new(
            "switchboard",
            Secret::new("s3cret"),
            3600,
            TokenFault::None,
            0,
            2,
        );
        let body = format!("grant_type=client_credentials&{CLIENT_FORM}");
        let tokens: Vec<String> = (0..3)
            .map(|_| {
                json_of(&post(&mut authority, &body, &mut rng))["access_token"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert!(!authority.access_token_valid(&tokens[0], NOW_MS));
        assert!(authority.access_token_valid(&tokens[1], NOW_MS));
        assert!(authority.access_token_valid(&tokens[2], NOW_MS));
    }

    fn jwt_parts(token: &str) -> (Value, Value, Vec<u8>) {
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "three base64url parts");
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).unwrap();
        (
            serde_json::from_slice(&decode(parts[0])).unwrap(),
            serde_json::from_slice(&decode(parts[1])).unwrap(),
            decode(parts[2]),
        )
    }

    #[test]
    fn jwt_tokens_are_signed_hs256_with_the_exact_claims() {
        let mut rng = StdRng::seed_from_u64(10);
        let key = [7u8; JWT_KEY_BYTES];
        let mut authority = authority().with_jwt(JwtSigner::new(&key, 0));
        assert_eq!(authority.token_format(), TokenFormat::Jwt);
        // Not on a whole second, so `iat` shows the truncation.
        let now_ms = NOW_MS + 750;
        let outcome = authority.handle(
            &TokenRequest {
                content_type: Some(FORM),
                authorization: None,
                body: format!("grant_type=client_credentials&{CLIENT_FORM}&scope=a+b").as_bytes(),
            },
            now_ms,
            &mut rng,
        );
        let body = json_of(&outcome);
        assert_eq!(body["expires_in"], 3600);
        let access = body["access_token"].as_str().unwrap();
        let (header, claims, signature) = jwt_parts(access);
        assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
        let object = claims.as_object().unwrap();
        let mut names: Vec<&str> = object.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["exp", "iat", "iss", "jti", "scope", "sub"]);
        assert_eq!(claims["iss"], JWT_ISSUER);
        assert_eq!(claims["sub"], "switchboard");
        assert_eq!(claims["scope"], "a b");
        assert_eq!(claims["iat"], NOW_MS / 1000);
        assert_eq!(claims["exp"], NOW_MS / 1000 + 3600);
        assert!(!claims["jti"].as_str().unwrap().is_empty());
        assert_eq!(signature.len(), 32, "HMAC-SHA256 output");
        // An independent verifier accepts the signature; another key does not.
        let verify = |key: &[u8]| {
            // jwt-simple checks `exp` against the real clock; the claims were checked above.
            let options = jwt_simple::prelude::VerificationOptions {
                time_tolerance: Some(jwt_simple::prelude::Duration::from_days(365 * 10)),
                ..Default::default()
            };
            HS256Key::from_bytes(key)
                .verify_token::<jwt_simple::prelude::NoCustomClaims>(access, Some(options))
                .is_ok()
        };
        assert!(verify(&key));
        assert!(!verify(&[8u8; JWT_KEY_BYTES]));
        // The table follows `exp`.
        assert_eq!(
            authority.access_token_expiry_ms(access),
            Some((NOW_MS / 1000 + 3600) * 1000)
        );
        assert!(authority.access_token_valid(access, NOW_MS + 3_599_999));
        assert!(!authority.access_token_valid(access, NOW_MS + 3_600_000));
    }

    #[test]
    fn jwt_exp_skew_pulls_exp_and_the_expiry_earlier() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut authority = TokenAuthority::new(
            "switchboard",
            Secret::new("s3cret"),
            4,
            TokenFault::None,
            0,
            100,
        )
        .with_jwt(JwtSigner::random(&mut rng, 3));
        let outcome = post(
            &mut authority,
            &format!("grant_type=client_credentials&{CLIENT_FORM}"),
            &mut rng,
        );
        let body = json_of(&outcome);
        assert_eq!(body["expires_in"], 4, "expires_in is not skewed");
        let access = body["access_token"].as_str().unwrap();
        let (_, claims, _) = jwt_parts(access);
        assert_eq!(claims["exp"], NOW_MS / 1000 + 1);
        assert_eq!(
            authority.access_token_expiry_ms(access),
            Some(NOW_MS + 1000)
        );
        assert!(!authority.access_token_valid(access, NOW_MS + 1000));

        // A skew of the whole lifetime or more gives a token expired on arrival.
        let signer = JwtSigner::new(&[1u8; JWT_KEY_BYTES], 10);
        assert_eq!(signer.exp_secs(100, 4), 100);
        assert_eq!(signer.exp_secs(100, 60), 150);
        // The skew is bounded.
        let signer = JwtSigner::new(&[1u8; JWT_KEY_BYTES], u64::MAX);
        assert_eq!(
            signer.exp_secs(0, u64::MAX),
            u64::MAX - MAX_JWT_EXP_SKEW_SECS
        );
        assert!(format!("{signer:?}").contains("<redacted>"));
    }

    #[test]
    fn short_lifetimes_work() {
        let mut rng = StdRng::seed_from_u64(12);
        let mut authority = TokenAuthority::new(
            "switchboard",
            Secret::new("s3cret"),
            0,
            TokenFault::None,
            0,
            100,
        );
        // A lifetime of 0 is raised to the 1 s minimum.
        assert_eq!(authority.fault_settings().lifetime, 1);
        authority
            .update_fault(br#"{"mode":"none","lifetime":4}"#)
            .unwrap();
        let body = json_of(&post(
            &mut authority,
            &format!("grant_type=client_credentials&{CLIENT_FORM}"),
            &mut rng,
        ));
        assert_eq!(body["expires_in"], 4);
        let access = body["access_token"].as_str().unwrap();
        assert!(authority.access_token_valid(access, NOW_MS + 3_999));
        assert!(!authority.access_token_valid(access, NOW_MS + 4_000));
    }

    #[test]
    fn format_names_round_trip() {
        for format in [TokenFormat::Opaque, TokenFormat::Jwt] {
            assert_eq!(format.as_str().parse::<TokenFormat>(), Ok(format));
        }
        assert!("JWT".parse::<TokenFormat>().is_err());
        assert_eq!(TokenFormat::default(), TokenFormat::Opaque);
    }

    #[test]
    fn fault_names_round_trip() {
        for fault in [
            TokenFault::None,
            TokenFault::Down,
            TokenFault::Slow,
            TokenFault::ServerError,
            TokenFault::Garbage,
            TokenFault::InvalidGrant,
        ] {
            assert_eq!(fault.as_str().parse::<TokenFault>(), Ok(fault));
        }
    }
}
