//! Verifies an agent's JWT (RFC 7519, JWS compact serialization RFC 7515 §7.1) into the agent,
//! tenant and region the gateway routes and reports on.
//!
//! The header is decoded here, bounded, to pick the key; jwt-simple then checks the signature
//! and the time, issuer and audience claims; the identity claims are read last. The token never
//! appears in an error or a log line.

use std::collections::HashSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_simple::claims::{Audiences, JWTClaims};
use jwt_simple::common::VerificationOptions;
use jwt_simple::prelude::{Duration, UnixTimeStamp};
use jwt_simple::JWTError;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::keys::{Alg, KeySet, VerifierKey};

/// Longest base64url header accepted. Real headers (`alg`, `typ`, `kid`) are under 200 bytes.
pub const MAX_HEADER_B64_BYTES: usize = 1024;
/// Largest leeway applied, whatever the policy says (the configuration caps it far lower).
pub const MAX_LEEWAY_SECS: u64 = 86_400;
/// jwt-simple keeps times as 32.32 fixed point: whole seconds must fit in 32 bits, and `now`
/// plus the leeway must not overflow, so `now` is clamped below this (only matters after 2106).
const TIME_LIMIT_SECS: u64 = u32::MAX as u64;

/// Which claims carry the identity. A name may be a registered claim such as `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// Claim holding the agent id (often `sub`).
    pub agent_id: String,
    /// Claim holding the tenant id.
    pub tenant_id: String,
    /// Claim holding the agent's region; `None` to ignore regions. When configured, the claim may
    /// still be absent from a token.
    pub region: Option<String>,
}

/// What a token must satisfy beyond its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyPolicy {
    /// Required exact `iss` value (RFC 7519 §4.1.1), or `None` to accept any issuer.
    pub issuer: Option<String>,
    /// Required `aud` entry (RFC 7519 §4.1.3), or `None` to accept any audience.
    pub audience: Option<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// Longest token accepted, checked before any decoding.
    pub max_token_bytes: usize,
    /// Longest agent, tenant or region value accepted, in bytes.
    pub max_identity_len: usize,
    /// Where the identity is found.
    pub claims: ClaimNames,
}

/// The identity a valid token proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub agent_id: String,
    pub tenant_id: String,
    pub region: Option<String>,
    /// The token's `exp`, in Unix seconds.
    pub expires_at: u64,
}

/// Why a token was refused. The glue maps these to HTTP statuses (RFC 6750 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// No token was presented (an empty token counts as none).
    Missing,
    /// The token is longer than `max_token_bytes`; nothing of it was decoded.
    TooLarge,
    /// Not a JWS compact serialization: not three base64url segments, a header that is not a
    /// JSON object with a string `alg`, a `crit` header, a `typ` other than JWT, or claims that
    /// are not a JSON object with correctly typed registered claims.
    Malformed,
    /// The header's `alg` is `none` or not one of HS256, RS256, ES256, EdDSA.
    UnsupportedAlg,
    /// The header names a `kid` that no configured key has, and no key without a kid exists
    /// for the algorithm.
    UnknownKid,
    /// No configured key verifies the header's algorithm (or the `kid` names a key pinned to
    /// another algorithm).
    NoKeyForAlg,
    /// The signature does not verify with any candidate key.
    BadSignature,
    /// `exp` is more than the leeway in the past (RFC 7519 §4.1.4).
    Expired,
    /// `nbf` (RFC 7519 §4.1.5) or `iat` (§4.1.6) is more than the leeway in the future.
    NotYetValid,
    /// The token has no `exp`: tokens that never expire are not accepted.
    MissingExp,
    /// `iss` is absent or not the configured issuer.
    WrongIssuer,
    /// `aud` is absent or does not contain the configured audience.
    WrongAudience,
    /// The agent or tenant claim is absent (or null).
    MissingClaim,
    /// An identity claim (agent, tenant or region) is not a string or integer, is empty, is
    /// longer than `max_identity_len`, or contains a control character.
    InvalidClaim,
}

impl AuthError {
    /// A stable snake_case label, used as a metric label.
    pub const fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::TooLarge => "too_large",
            AuthError::Malformed => "malformed",
            AuthError::UnsupportedAlg => "unsupported_alg",
            AuthError::UnknownKid => "unknown_kid",
            AuthError::NoKeyForAlg => "no_key_for_alg",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::MissingExp => "missing_exp",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::MissingClaim => "missing_claim",
            AuthError::InvalidClaim => "invalid_claim",
        }
    }

    /// Every label [`AuthError::reason`] can return, for declaring metrics up front.
    pub const REASONS: [&'static str; 14] = [
        "missing",
        "too_large",
        "malformed",
        "unsupported_alg",
        "unknown_kid",
        "no_key_for_alg",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "missing_exp",
        "wrong_issuer",
        "wrong_audience",
        "missing_claim",
        "invalid_claim",
    ];
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for AuthError {}

/// True when a token expiring at `expires_at` is still accepted at `now`: the one expiry rule,
/// shared by the verifier and the verdict cache.
pub fn accepts_expiry(expires_at: u64, now: u64, leeway_secs: u64) -> bool {
    now <= expires_at.saturating_add(leeway_secs.min(MAX_LEEWAY_SECS))
}

/// The JOSE header fields the key choice depends on (RFC 7515 §4.1).
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

/// Claims besides the registered ones, where custom identity claims live.
type CustomClaims = Map<String, Value>;

/// Verifies tokens against one configuration's keys and policy.
#[derive(Debug, Clone)]
pub struct Verifier {
    keys: KeySet,
    policy: VerifyPolicy,
}

impl Verifier {
    pub fn new(keys: KeySet, policy: VerifyPolicy) -> Self {
        Verifier { keys, policy }
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    pub fn policy(&self) -> &VerifyPolicy {
        &self.policy
    }

    /// Verifies `token` at `now_unix_secs` and returns the identity it proves.
    pub fn verify(&self, token: &str, now_unix_secs: u64) -> Result<VerifiedIdentity, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > self.policy.max_token_bytes {
            return Err(AuthError::TooLarge);
        }

        // RFC 7515 §7.1: BASE64URL(header) '.' BASE64URL(payload) '.' BASE64URL(signature).
        let mut segments = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(AuthError::Malformed);
        };
        if header_b64.len() > MAX_HEADER_B64_BYTES {
            return Err(AuthError::Malformed);
        }
        // RFC 7515 §2: base64url without padding; strict decoding refuses '=' and stray bits.
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| AuthError::Malformed)?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| AuthError::Malformed)?;
        if !is_base64url(payload_b64) {
            return Err(AuthError::Malformed);
        }
        // RFC 7515 §4: the header is a JSON object (serde would also take an array for a struct).
        if header_json.trim_ascii_start().first() != Some(&b'{') {
            return Err(AuthError::Malformed);
        }
        let header: JoseHeader =
            serde_json::from_slice(&header_json).map_err(|_| AuthError::Malformed)?;
        // RFC 7515 §4.1.11: a recipient MUST reject a token whose "crit" lists extensions it
        // does not understand; Switchboard understands none.
        if header.crit.is_some() {
            return Err(AuthError::Malformed);
        }
        // RFC 8725 §3.1 / §2.1: only the algorithms configured keys are pinned to; never "none".
        let alg = Alg::parse(&header.alg).ok_or(AuthError::UnsupportedAlg)?;

        let candidates = self.candidates(alg, header.kid.as_deref())?;
        let options = self.options(now_unix_secs);
        for key in candidates {
            if signature.len() != key.signature_len() {
                continue;
            }
            match key.verify_token::<CustomClaims>(token, options.clone()) {
                Ok(claims) => return self.identity(&claims, now_unix_secs),
                Err(err) => match map_error(&err) {
                    // Without a kid the next key of the algorithm may be the signer.
                    AuthError::BadSignature => continue,
                    other => return Err(other),
                },
            }
        }
        Err(AuthError::BadSignature)
    }

    /// The keys that may have signed a token with this header, at most [`super::keys::MAX_KEYS`].
    fn candidates(&self, alg: Alg, kid: Option<&str>) -> Result<Vec<&VerifierKey>, AuthError> {
        if !self.keys.iter().any(|key| key.alg == alg) {
            return Err(AuthError::NoKeyForAlg);
        }
        let Some(kid) = kid else {
            return Ok(self.keys.iter().filter(|key| key.alg == alg).collect());
        };
        if let Some(named) = self.keys.iter().find(|key| key.kid.as_deref() == Some(kid)) {
            // The key is pinned to its own algorithm, whatever the header claims.
            return if named.alg == alg {
                Ok(vec![named])
            } else {
                Err(AuthError::NoKeyForAlg)
            };
        }
        // A key configured without a kid stands for any kid of its algorithm.
        let unnamed: Vec<&VerifierKey> = self
            .keys
            .iter()
            .filter(|key| key.alg == alg && key.kid.is_none())
            .collect();
        if unnamed.is_empty() {
            Err(AuthError::UnknownKid)
        } else {
            Ok(unnamed)
        }
    }

    fn options(&self, now: u64) -> VerificationOptions {
        let leeway = self.policy.leeway_secs.min(MAX_LEEWAY_SECS);
        let clamped_now = now.min(TIME_LIMIT_SECS - MAX_LEEWAY_SECS);
        VerificationOptions {
            artificial_time: Some(UnixTimeStamp::from_secs(clamped_now)),
            time_tolerance: Some(Duration::from_secs(leeway)),
            allowed_issuers: self
                .policy
                .issuer
                .as_ref()
                .map(|issuer| HashSet::from([issuer.clone()])),
            allowed_audiences: self
                .policy
                .audience
                .as_ref()
                .map(|audience| HashSet::from([audience.clone()])),
            max_token_length: Some(self.policy.max_token_bytes),
            max_header_length: Some(MAX_HEADER_B64_BYTES),
            ..VerificationOptions::default()
        }
    }

    /// The identity in claims whose signature, time window, issuer and audience are verified.
    fn identity(
        &self,
        claims: &JWTClaims<CustomClaims>,
        now: u64,
    ) -> Result<VerifiedIdentity, AuthError> {
        let expires_at = claims.expires_at.ok_or(AuthError::MissingExp)?.as_secs();
        // jwt-simple applied the same rule; restated with the real `now` so the cache agrees.
        if !accepts_expiry(expires_at, now, self.policy.leeway_secs) {
            return Err(AuthError::Expired);
        }
        let names = &self.policy.claims;
        let max_len = self.policy.max_identity_len;
        let agent_id =
            identity_value(claims, &names.agent_id, max_len)?.ok_or(AuthError::MissingClaim)?;
        let tenant_id =
            identity_value(claims, &names.tenant_id, max_len)?.ok_or(AuthError::MissingClaim)?;
        let region = match &names.region {
            Some(name) => identity_value(claims, name, max_len)?,
            None => None,
        };
        Ok(VerifiedIdentity {
            agent_id,
            tenant_id,
            region,
            expires_at,
        })
    }
}

fn is_base64url(segment: &str) -> bool {
    segment.len() % 4 != 1
        && segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// jwt-simple reports failures as `anyhow` errors around [`JWTError`]; anything else (base64,
/// JSON or key-type errors from inside it) means the token is malformed.
fn map_error(err: &jwt_simple::Error) -> AuthError {
    match err.downcast_ref::<JWTError>() {
        Some(JWTError::InvalidSignature | JWTError::InvalidAuthenticationTag) => {
            AuthError::BadSignature
        }
        Some(JWTError::TokenHasExpired) => AuthError::Expired,
        // iat after now + leeway is reported as clock drift: the token is from the future.
        Some(JWTError::TokenNotValidYet | JWTError::ClockDrift) => AuthError::NotYetValid,
        Some(JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing) => {
            AuthError::WrongIssuer
        }
        Some(JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing) => {
            AuthError::WrongAudience
        }
        Some(JWTError::TokenTooLong) => AuthError::TooLarge,
        Some(JWTError::AlgorithmMismatch) => AuthError::UnsupportedAlg,
        _ => AuthError::Malformed,
    }
}

/// The value of claim `name` as an identity string: `Ok(None)` when absent or null.
fn identity_value(
    claims: &JWTClaims<CustomClaims>,
    name: &str,
    max_len: usize,
) -> Result<Option<String>, AuthError> {
    let invalid = AuthError::InvalidClaim;
    // jwt-simple moves the registered claims out of the map into typed fields.
    let value = match name {
        "sub" => claims.subject.clone(),
        "iss" => claims.issuer.clone(),
        "jti" => claims.jwt_id.clone(),
        "nonce" => claims.nonce.clone(),
        "aud" => match &claims.audiences {
            None => None,
            Some(Audiences::AsString(audience)) => Some(audience.clone()),
            Some(Audiences::AsSet(set)) if set.len() == 1 => set.iter().next().cloned(),
            Some(Audiences::AsSet(_)) => return Err(invalid),
        },
        "exp" => claims.expires_at.map(|t| t.as_secs().to_string()),
        "nbf" => claims.invalid_before.map(|t| t.as_secs().to_string()),
        "iat" => claims.issued_at.map(|t| t.as_secs().to_string()),
        _ => match claims.custom.get(name) {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Number(number)) if number.is_u64() || number.is_i64() => {
                Some(number.to_string())
            }
            Some(_) => return Err(invalid),
        },
    };
    let Some(value) = value else {
        return Ok(None);
    };
    if value.is_empty() || value.len() > max_len || value.chars().any(char::is_control) {
        return Err(invalid);
    }
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;
    use crate::identity::fixtures::*;
    use crate::identity::keys::{build_keys, RawKey};

    fn verifier_with(keys: Vec<RawKey>, policy: VerifyPolicy) -> Verifier {
        Verifier::new(build_keys(&keys, None, "identity").unwrap(), policy)
    }

    fn fixture_verifier() -> Verifier {
        verifier_with(all_fixture_keys(), policy())
    }

    fn fixture_identity(expires_at: u64) -> VerifiedIdentity {
        VerifiedIdentity {
            agent_id: "agent-7".to_string(),
            tenant_id: "acme".to_string(),
            region: Some("eu-west".to_string()),
            expires_at,
        }
    }

    /// An HS256 fixture token whose claims are the fixture claims changed by `extra`.
    fn hs_with(extra: serde_json::Value) -> String {
        hs_token(&payload(Some(FAR_EXP), extra))
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn every_algorithm_verifies_its_fixture_token() {
        let verifier = fixture_verifier();
        for token in [TOKEN_HS256, TOKEN_RS256, TOKEN_ES256, TOKEN_EDDSA_ED2] {
            assert_eq!(verifier.verify(token, NOW), Ok(fixture_identity(FAR_EXP)));
        }
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn fixture_tokens_expire_for_every_asymmetric_algorithm() {
        let verifier = fixture_verifier();
        for token in [TOKEN_RS256_SOON, TOKEN_ES256_SOON, TOKEN_EDDSA_ED1_SOON] {
            // RFC 7519 §4.1.4: accepted up to exp plus the leeway, refused one second later.
            assert_eq!(
                verifier.verify(token, SOON_EXP + 30),
                Ok(fixture_identity(SOON_EXP))
            );
            assert_eq!(
                verifier.verify(token, SOON_EXP + 31),
                Err(AuthError::Expired)
            );
        }
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn token_without_kid_is_tried_against_each_key_of_its_algorithm() {
        let keys = vec![
            pem_key(Some("ed-2"), "EdDSA", ED2_PUBLIC_PEM),
            pem_key(Some("rs-1"), "RS256", RS_PUBLIC_PEM),
            pem_key(Some("ed-1"), "EdDSA", ED1_PUBLIC_PEM),
        ];
        let verifier = verifier_with(keys, policy());
        assert_eq!(
            verifier.verify(TOKEN_EDDSA_ED1_NO_KID, NOW),
            Ok(fixture_identity(FAR_EXP))
        );

        let only_other_key = verifier_with(
            vec![pem_key(Some("ed-2"), "EdDSA", ED2_PUBLIC_PEM)],
            policy(),
        );
        assert_eq!(
            only_other_key.verify(TOKEN_EDDSA_ED1_NO_KID, NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn kid_selects_exactly_the_named_key() {
        assert_eq!(
            fixture_verifier().verify(TOKEN_EDDSA_ED2, NOW),
            Ok(fixture_identity(FAR_EXP))
        );
        // "ed-2" now names ed-1's key: the real ed-2 key (kid-less here) must not be tried.
        let swapped = vec![
            pem_key(Some("ed-2"), "EdDSA", ED1_PUBLIC_PEM),
            pem_key(None, "EdDSA", ED2_PUBLIC_PEM),
        ];
        assert_eq!(
            verifier_with(swapped, policy()).verify(TOKEN_EDDSA_ED2, NOW),
            Err(AuthError::BadSignature)
        );
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn unknown_kid_is_refused_unless_a_kidless_key_exists() {
        let named_only = verifier_with(
            vec![pem_key(Some("ed-1"), "EdDSA", ED1_PUBLIC_PEM)],
            policy(),
        );
        assert_eq!(
            named_only.verify(TOKEN_EDDSA_ED2, NOW),
            Err(AuthError::UnknownKid)
        );
        let kidless = verifier_with(vec![pem_key(None, "EdDSA", ED2_PUBLIC_PEM)], policy());
        assert_eq!(
            kidless.verify(TOKEN_EDDSA_ED2, NOW),
            Ok(fixture_identity(FAR_EXP))
        );
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn hs256_token_keyed_with_a_public_key_is_refused() {
        let public_only = vec![
            pem_key(Some("rs-1"), "RS256", RS_PUBLIC_PEM),
            pem_key(Some("ed-1"), "EdDSA", ED1_PUBLIC_PEM),
        ];
        let verifier = verifier_with(public_only, policy());
        let ed_raw = base64::engine::general_purpose::STANDARD
            .decode(ED1_PUBLIC_RAW_B64)
            .unwrap();
        let payload_json = payload(Some(FAR_EXP), json!({}));
        for (header, secret) in [
            (r#"{"alg":"HS256","typ":"JWT"}"#, RS_PUBLIC_PEM.as_bytes()),
            (r#"{"alg":"HS256","kid":"rs-1"}"#, RS_PUBLIC_PEM.as_bytes()),
            (r#"{"alg":"HS256","typ":"JWT"}"#, ed_raw.as_slice()),
            (r#"{"alg":"HS256","kid":"ed-1"}"#, ed_raw.as_slice()),
            (r#"{"alg":"HS256"}"#, ED1_PUBLIC_PEM.as_bytes()),
        ] {
            let forged = hs256_token(header, &payload_json, secret);
            assert_eq!(verifier.verify(&forged, NOW), Err(AuthError::NoKeyForAlg));
        }

        // With an HS256 key configured, the kid of a public key still cannot redirect the token.
        let mut mixed = all_fixture_keys();
        mixed.retain(|key| key.kid.as_deref() != Some("hs-1"));
        mixed.push(secret_key(Some("hs-2"), OTHER_SECRET_B64));
        let verifier = verifier_with(mixed, policy());
        let forged = hs256_token(
            r#"{"alg":"HS256","kid":"rs-1"}"#,
            &payload_json,
            RS_PUBLIC_PEM.as_bytes(),
        );
        assert_eq!(verifier.verify(&forged, NOW), Err(AuthError::NoKeyForAlg));
        let forged = hs256_token(r#"{"alg":"HS256"}"#, &payload_json, &ed_raw);
        assert_eq!(verifier.verify(&forged, NOW), Err(AuthError::BadSignature));
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn alg_none_and_unknown_algorithms_are_unsupported() {
        let verifier = fixture_verifier();
        let payload_b64 = b64u(payload(Some(FAR_EXP), json!({})).as_bytes());
        for alg in [
            "none", "None", "NONE", "HS512", "RS512", "PS256", "ES384", "Ed25519", "",
        ] {
            let header = b64u(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
            let unsigned = format!("{header}.{payload_b64}.");
            assert_eq!(
                verifier.verify(&unsigned, NOW),
                Err(AuthError::UnsupportedAlg),
                "{alg}"
            );
            let with_signature = format!("{header}.{payload_b64}.{}", b64u(&[7u8; 32]));
            assert_eq!(
                verifier.verify(&with_signature, NOW),
                Err(AuthError::UnsupportedAlg),
                "{alg}"
            );
        }
        let not_a_string = format!("{}.{payload_b64}.", b64u(br#"{"alg":null}"#));
        assert_eq!(
            verifier.verify(&not_a_string, NOW),
            Err(AuthError::Malformed)
        );
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn no_key_for_the_header_algorithm() {
        let verifier = verifier_with(vec![pem_key(None, "EdDSA", ED1_PUBLIC_PEM)], policy());
        assert_eq!(
            verifier.verify(TOKEN_RS256, NOW),
            Err(AuthError::NoKeyForAlg)
        );
        assert_eq!(
            verifier.verify(TOKEN_HS256, NOW),
            Err(AuthError::NoKeyForAlg)
        );
        // The kid names a key, but that key is pinned to another algorithm.
        let token = hs256_token(
            r#"{"alg":"HS256","kid":"rs-1"}"#,
            &payload(Some(FAR_EXP), json!({})),
            &hs_secret(),
        );
        assert_eq!(
            fixture_verifier().verify(&token, NOW),
            Err(AuthError::NoKeyForAlg)
        );
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn every_truncation_of_a_token_is_refused() {
        let verifier = fixture_verifier();
        for token in [TOKEN_EDDSA_ED2, TOKEN_HS256] {
            for len in 0..token.len() {
                let truncated = token.get(..len).unwrap();
                let result = verifier.verify(truncated, NOW);
                assert!(result.is_err(), "accepted a {len}-byte prefix");
            }
        }
        assert_eq!(verifier.verify("", NOW), Err(AuthError::Missing));
        // A well-encoded signature one byte short.
        let (signing_input, signature) = TOKEN_HS256.rsplit_once('.').unwrap();
        let signature = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap();
        let short = format!("{signing_input}.{}", b64u(&signature[..31]));
        assert_eq!(verifier.verify(&short, NOW), Err(AuthError::BadSignature));
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn malformed_tokens() {
        let verifier = fixture_verifier();
        let payload_b64 = b64u(payload(Some(FAR_EXP), json!({})).as_bytes());
        let header_b64 = b64u(br#"{"alg":"HS256","kid":"hs-1"}"#);
        let signature_b64 = b64u(&[0u8; 32]);
        let cases = [
            "not a token".to_string(),
            "!!!.???.***".to_string(),
            "a.b".to_string(),
            format!("{header_b64}.{payload_b64}"),
            format!("{header_b64}.{payload_b64}.{signature_b64}.extra"),
            format!("{header_b64}=.{payload_b64}.{signature_b64}"),
            format!("{header_b64}.{payload_b64}.{signature_b64}="),
            format!("{header_b64}.{payload_b64}!.{signature_b64}"),
            format!("{header_b64}.{payload_b64}.{signature_b64}+/"),
            format!("{}.{payload_b64}.{signature_b64}", b64u(b"not json")),
            format!("{}.{payload_b64}.{signature_b64}", b64u(b"[\"HS256\"]")),
            format!(
                "{}.{payload_b64}.{signature_b64}",
                b64u(br#"{"kid":"hs-1"}"#)
            ),
            format!(
                "{}.{payload_b64}.{signature_b64}",
                b64u(br#"{"alg":"HS256","alg":"HS256"}"#)
            ),
            format!("{}.{payload_b64}.{signature_b64}", "A".repeat(1025)),
        ];
        for token in &cases {
            assert_eq!(
                verifier.verify(token, NOW),
                Err(AuthError::Malformed),
                "{token}"
            );
        }
        // RFC 7515 §4.1.11: an unknown critical extension makes the token invalid.
        let crit = hs256_token(
            r#"{"alg":"HS256","crit":["exp"],"exp":1}"#,
            &payload(Some(FAR_EXP), json!({})),
            &hs_secret(),
        );
        assert_eq!(verifier.verify(&crit, NOW), Err(AuthError::Malformed));
        // A typ that is not a JWT (here an encrypted-content hint) is refused.
        let typ = hs256_token(
            r#"{"alg":"HS256","typ":"JOSE+JSON"}"#,
            &payload(Some(FAR_EXP), json!({})),
            &hs_secret(),
        );
        assert_eq!(verifier.verify(&typ, NOW), Err(AuthError::Malformed));
        // A correctly signed payload that is not a JSON object.
        let not_object = hs256_token(r#"{"alg":"HS256"}"#, "[1,2]", &hs_secret());
        assert_eq!(verifier.verify(&not_object, NOW), Err(AuthError::Malformed));
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn oversized_token_is_refused_before_decoding() {
        let verifier = fixture_verifier();
        let huge = "A".repeat(64 * 1024);
        assert_eq!(verifier.verify(&huge, NOW), Err(AuthError::TooLarge));
        let padded = hs_with(json!({ "pad": "x".repeat(8192) }));
        assert_eq!(verifier.verify(&padded, NOW), Err(AuthError::TooLarge));
        let mut policy = policy();
        policy.max_token_bytes = TOKEN_HS256.len();
        let exact = verifier_with(all_fixture_keys(), policy.clone());
        assert!(exact.verify(TOKEN_HS256, NOW).is_ok());
        policy.max_token_bytes = TOKEN_HS256.len() - 1;
        let one_short = verifier_with(all_fixture_keys(), policy);
        assert_eq!(one_short.verify(TOKEN_HS256, NOW), Err(AuthError::TooLarge));
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn expiry_and_leeway_boundaries() {
        let verifier = fixture_verifier();
        let token = hs_token(&payload(Some(NOW), json!({})));
        assert!(verifier.verify(&token, NOW - 1).is_ok());
        assert!(verifier.verify(&token, NOW).is_ok());
        assert!(verifier.verify(&token, NOW + 30).is_ok());
        assert_eq!(verifier.verify(&token, NOW + 31), Err(AuthError::Expired));

        let mut strict = policy();
        strict.leeway_secs = 0;
        let strict = verifier_with(all_fixture_keys(), strict);
        assert!(strict.verify(&token, NOW).is_ok());
        assert_eq!(strict.verify(&token, NOW + 1), Err(AuthError::Expired));
        assert!(accepts_expiry(NOW, NOW + 30, 30));
        assert!(!accepts_expiry(NOW, NOW + 31, 30));
        assert!(accepts_expiry(u64::MAX, u64::MAX, u64::MAX));
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn not_before_and_issued_at_in_the_future() {
        let verifier = fixture_verifier();
        let nbf_edge = hs_with(json!({ "nbf": NOW + 30, "iat": NOW }));
        assert!(verifier.verify(&nbf_edge, NOW).is_ok());
        let nbf_late = hs_with(json!({ "nbf": NOW + 31, "iat": NOW }));
        assert_eq!(verifier.verify(&nbf_late, NOW), Err(AuthError::NotYetValid));
        assert!(verifier.verify(&nbf_late, NOW + 1).is_ok());
        let iat_late = hs_with(json!({ "nbf": null, "iat": NOW + 31 }));
        assert_eq!(verifier.verify(&iat_late, NOW), Err(AuthError::NotYetValid));
        let no_times = hs_with(json!({ "nbf": null, "iat": null }));
        assert!(verifier.verify(&no_times, NOW).is_ok());
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn missing_exp_is_never_accepted() {
        let verifier = fixture_verifier();
        let token = hs_token(&payload(None, json!({})));
        assert_eq!(verifier.verify(&token, NOW), Err(AuthError::MissingExp));
        let mut lenient = policy();
        lenient.issuer = None;
        lenient.audience = None;
        let lenient = verifier_with(all_fixture_keys(), lenient);
        assert_eq!(lenient.verify(&token, NOW), Err(AuthError::MissingExp));
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn issuer_must_match_exactly() {
        let verifier = fixture_verifier();
        for iss in [
            json!("https://evil.test"),
            json!("https://idp.test/"),
            json!(null),
        ] {
            let token = hs_with(json!({ "iss": iss }));
            assert_eq!(verifier.verify(&token, NOW), Err(AuthError::WrongIssuer));
        }
        let mut any_issuer = policy();
        any_issuer.issuer = None;
        let token = hs_with(json!({ "iss": "https://evil.test" }));
        assert!(verifier_with(all_fixture_keys(), any_issuer)
            .verify(&token, NOW)
            .is_ok());
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn audience_must_contain_ours() {
        let verifier = fixture_verifier();
        for aud in [json!("other"), json!(["other", "more"]), json!(null)] {
            let token = hs_with(json!({ "aud": aud }));
            assert_eq!(verifier.verify(&token, NOW), Err(AuthError::WrongAudience));
        }
        let listed = hs_with(json!({ "aud": ["other", AUDIENCE] }));
        assert!(verifier.verify(&listed, NOW).is_ok());
        let mut any_audience = policy();
        any_audience.audience = None;
        let token = hs_with(json!({ "aud": "other" }));
        assert!(verifier_with(all_fixture_keys(), any_audience)
            .verify(&token, NOW)
            .is_ok());
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn missing_identity_claims() {
        let verifier = fixture_verifier();
        let no_sub = hs_with(json!({ "sub": null }));
        assert_eq!(verifier.verify(&no_sub, NOW), Err(AuthError::MissingClaim));
        let no_tenant = hs_with(json!({ "tenant": null }));
        assert_eq!(
            verifier.verify(&no_tenant, NOW),
            Err(AuthError::MissingClaim)
        );
        let no_region = hs_with(json!({ "region": null }));
        assert_eq!(
            verifier.verify(&no_region, NOW),
            Ok(VerifiedIdentity {
                region: None,
                ..fixture_identity(FAR_EXP)
            })
        );
        let mut no_region_claim = policy();
        no_region_claim.claims.region = None;
        let verifier = verifier_with(all_fixture_keys(), no_region_claim);
        assert_eq!(
            verifier.verify(TOKEN_HS256, NOW),
            Ok(VerifiedIdentity {
                region: None,
                ..fixture_identity(FAR_EXP)
            })
        );
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn invalid_identity_claims() {
        let verifier = fixture_verifier();
        let invalid = AuthError::InvalidClaim;
        let cases = [
            (json!({ "sub": "" }), invalid),
            (json!({ "sub": "agent\u{0}7" }), invalid),
            (json!({ "sub": "agent\n7" }), invalid),
            (json!({ "sub": "agent\u{7f}" }), invalid),
            (json!({ "sub": "agent\u{85}" }), invalid),
            (json!({ "sub": "a".repeat(65) }), invalid),
            (json!({ "tenant": "ac\tme" }), AuthError::InvalidClaim),
            (json!({ "tenant": ["acme"] }), AuthError::InvalidClaim),
            (json!({ "tenant": 1.5 }), AuthError::InvalidClaim),
            (json!({ "tenant": true }), AuthError::InvalidClaim),
            (json!({ "region": "eu\rwest" }), AuthError::InvalidClaim),
            (json!({ "region": {} }), AuthError::InvalidClaim),
            // RFC 7519 §4.1.2: "sub" is a StringOrURI, so a number there is malformed.
            (json!({ "sub": 42 }), AuthError::Malformed),
        ];
        for (extra, expected) in cases {
            let token = hs_with(extra.clone());
            assert_eq!(verifier.verify(&token, NOW), Err(expected), "{extra}");
        }
        let longest = hs_with(json!({ "sub": "a".repeat(64) }));
        assert_eq!(
            verifier.verify(&longest, NOW).unwrap().agent_id,
            "a".repeat(64)
        );
        let unicode = hs_with(json!({ "sub": "agënt-7" }));
        assert_eq!(verifier.verify(&unicode, NOW).unwrap().agent_id, "agënt-7");
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn claim_names_are_configurable_and_integers_are_decimal() {
        let mut custom = policy();
        custom.claims = ClaimNames {
            agent_id: "agent".to_string(),
            tenant_id: "org".to_string(),
            region: Some("iss".to_string()),
        };
        let verifier = verifier_with(all_fixture_keys(), custom);
        let token = hs_with(json!({ "agent": 12345, "org": -7 }));
        assert_eq!(
            verifier.verify(&token, NOW),
            Ok(VerifiedIdentity {
                agent_id: "12345".to_string(),
                tenant_id: "-7".to_string(),
                region: Some(ISSUER.to_string()),
                expires_at: FAR_EXP,
            })
        );
        let big = hs_with(json!({ "agent": u64::MAX, "org": "acme" }));
        assert_eq!(
            verifier.verify(&big, NOW).unwrap().agent_id,
            u64::MAX.to_string()
        );
        let missing = hs_with(json!({ "org": "acme" }));
        assert_eq!(verifier.verify(&missing, NOW), Err(AuthError::MissingClaim));
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn registered_claims_can_carry_identity() {
        let mut registered = policy();
        registered.claims = ClaimNames {
            agent_id: "jti".to_string(),
            tenant_id: "aud".to_string(),
            region: Some("sub".to_string()),
        };
        let verifier = verifier_with(all_fixture_keys(), registered);
        let token = hs_with(json!({ "jti": "agent-9" }));
        assert_eq!(
            verifier.verify(&token, NOW),
            Ok(VerifiedIdentity {
                agent_id: "agent-9".to_string(),
                tenant_id: AUDIENCE.to_string(),
                region: Some("agent-7".to_string()),
                expires_at: FAR_EXP,
            })
        );
        let two_audiences = hs_with(json!({ "jti": "agent-9", "aud": [AUDIENCE, "other"] }));
        assert_eq!(
            verifier.verify(&two_audiences, NOW),
            Err(AuthError::InvalidClaim)
        );
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn tampered_signature_and_payload_are_bad_signatures() {
        let verifier = fixture_verifier();
        for token in [TOKEN_HS256, TOKEN_RS256, TOKEN_ES256, TOKEN_EDDSA_ED2] {
            let (signing_input, signature) = token.rsplit_once('.').unwrap();
            let mut bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(signature)
                .unwrap();
            bytes[0] ^= 1;
            let flipped = format!("{signing_input}.{}", b64u(&bytes));
            assert_eq!(verifier.verify(&flipped, NOW), Err(AuthError::BadSignature));

            let (header, _) = signing_input.split_once('.').unwrap();
            let other_payload = b64u(payload(Some(FAR_EXP), json!({ "sub": "admin" })).as_bytes());
            let swapped = format!("{header}.{other_payload}.{signature}");
            assert_eq!(verifier.verify(&swapped, NOW), Err(AuthError::BadSignature));
        }
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn reasons_are_distinct_and_listed() {
        let all = [
            AuthError::Missing,
            AuthError::TooLarge,
            AuthError::Malformed,
            AuthError::UnsupportedAlg,
            AuthError::UnknownKid,
            AuthError::NoKeyForAlg,
            AuthError::BadSignature,
            AuthError::Expired,
            AuthError::NotYetValid,
            AuthError::MissingExp,
            AuthError::WrongIssuer,
            AuthError::WrongAudience,
            AuthError::MissingClaim,
            AuthError::InvalidClaim,
        ];
        let reasons: Vec<&str> = all.iter().map(AuthError::reason).collect();
        assert_eq!(reasons, AuthError::REASONS);
        let distinct: HashSet<&str> = reasons.iter().copied().collect();
        assert_eq!(distinct.len(), reasons.len());
        assert_eq!(AuthError::InvalidClaim.to_string(), "invalid_claim");
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn debug_output_has_no_secret() {
        let verifier = fixture_verifier();
        let debug = format!("{verifier:?}");
        assert!(debug.contains("<redacted>"));
        assert!(!debug.contains(HS_SECRET_B64));
        let secret = hs_secret();
        assert!(!debug.contains(&format!("{:?}", secret.as_slice())));
    }

    /// Keys generated at run time; needs a randomness source, so native only.
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    mod generated {
        use std::sync::OnceLock;

        use jwt_simple::prelude::*;
        use serde_json::{json, Map, Value};

        use super::*;

        fn rsa() -> &'static RS256KeyPair {
            static RSA: OnceLock<RS256KeyPair> = OnceLock::new();
            RSA.get_or_init(|| RS256KeyPair::generate(2048).unwrap().with_key_id("gen-rs"))
        }

        fn claims(exp: u64) -> JWTClaims<Map<String, Value>> {
            let mut custom = Map::new();
            custom.insert("tenant".into(), json!("acme"));
            JWTClaims {
                issued_at: Some(UnixTimeStamp::from_secs(ISSUED_AT)),
                expires_at: Some(UnixTimeStamp::from_secs(exp)),
                invalid_before: Some(UnixTimeStamp::from_secs(ISSUED_AT)),
                issuer: Some(ISSUER.into()),
                subject: Some("agent-7".into()),
                audiences: Some(Audiences::AsString(AUDIENCE.into())),
                jwt_id: None,
                nonce: None,
                custom,
            }
        }

        #[test]
        fn generated_keys_verify_and_expire_for_every_algorithm() {
            let ed = Ed25519KeyPair::generate().with_key_id("gen-ed");
            let es = ES256KeyPair::generate().with_key_id("gen-es");
            let hs = HS256Key::generate().with_key_id("gen-hs");
            let keys = vec![
                pem_key(Some("gen-ed"), "EdDSA", &ed.public_key().to_pem()),
                pem_key(Some("gen-es"), "ES256", &es.public_key().to_pem().unwrap()),
                pem_key(
                    Some("gen-rs"),
                    "RS256",
                    &rsa().public_key().to_pem().unwrap(),
                ),
                secret_key(Some("gen-hs"), &b64(&hs.to_bytes())),
            ];
            let verifier = verifier_with(keys, policy());
            let exp = NOW + 600;
            let tokens = [
                (
                    ed.sign(claims(exp)).unwrap(),
                    ed.sign(claims(NOW - 31)).unwrap(),
                ),
                (
                    es.sign(claims(exp)).unwrap(),
                    es.sign(claims(NOW - 31)).unwrap(),
                ),
                (
                    rsa().sign(claims(exp)).unwrap(),
                    rsa().sign(claims(NOW - 31)).unwrap(),
                ),
                (
                    hs.authenticate(claims(exp)).unwrap(),
                    hs.authenticate(claims(NOW - 31)).unwrap(),
                ),
            ];
            let expected = VerifiedIdentity {
                region: None,
                ..fixture_identity(exp)
            };
            for (valid, expired) in &tokens {
                assert_eq!(verifier.verify(valid, NOW), Ok(expected.clone()));
                assert_eq!(verifier.verify(expired, NOW), Err(AuthError::Expired));
            }
        }

        #[test]
        fn another_generated_key_of_the_same_algorithm_is_a_bad_signature() {
            let configured = ES256KeyPair::generate();
            let attacker = ES256KeyPair::generate();
            let verifier = verifier_with(
                vec![pem_key(
                    None,
                    "ES256",
                    &configured.public_key().to_pem().unwrap(),
                )],
                policy(),
            );
            let token = attacker.sign(claims(NOW + 600)).unwrap();
            assert_eq!(verifier.verify(&token, NOW), Err(AuthError::BadSignature));
        }
    }
}
