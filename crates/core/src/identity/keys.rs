//! The keys an agent JWT may be signed with: the raw configuration shape ([`RawKey`], a JWKS
//! document), their validation into a [`KeySet`], and the per-key verification call.
//!
//! Every key is pinned to one algorithm when it is configured. The token header never chooses
//! how a key is used, so a public key can never be mistaken for an HMAC secret (RFC 8725 §3.1).

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jwt_simple::algorithms::{
    ECDSAP256PublicKeyLike, ES256PublicKey, Ed25519PublicKey, EdDSAPublicKeyLike, HS256Key,
    MACLike, RS256PublicKey, RSAPublicKeyLike,
};
use jwt_simple::claims::JWTClaims;
use jwt_simple::common::VerificationOptions;
use jwt_simple::JWTError;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config_error::FieldError;

/// Most keys one configuration may hold (`keys` and `jwks` together). A token without `kid` is
/// tried against every key of its algorithm, so this also bounds the work one token can cause.
pub const MAX_KEYS: usize = 32;
/// RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// Longest `pem`, `base64` or `secret` text accepted (a 4096-bit RSA PEM is about 800 bytes).
pub const MAX_KEY_TEXT_BYTES: usize = 16 * 1024;
/// Longest JWKS document accepted.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Longest `kid` accepted.
pub const MAX_KID_BYTES: usize = 256;

/// A JWS algorithm Switchboard verifies. Names are the RFC 7518 §3.1 / RFC 8037 §3.1 `alg`
/// values, compared case-sensitively.
#[allow(
    clippy::upper_case_acronyms,
    reason = "the variants are spelled exactly like the JOSE alg values they stand for"
)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    /// HMAC with SHA-256 over a shared secret.
    HS256,
    /// RSASSA-PKCS1-v1_5 with SHA-256, 2048 to 4096-bit keys.
    RS256,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl Alg {
    /// The accepted names, as printed in configuration errors.
    pub const NAMES: &'static str = "HS256, RS256, ES256, EdDSA";

    /// The JOSE `alg` value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// Parses a JOSE `alg` value; `none` and every other algorithm give `None`.
    pub fn parse(name: &str) -> Option<Alg> {
        match name {
            "HS256" => Some(Alg::HS256),
            "RS256" => Some(Alg::RS256),
            "ES256" => Some(Alg::ES256),
            "EdDSA" => Some(Alg::EdDSA),
            _ => None,
        }
    }
}

/// One entry of `identity.keys` exactly as configured. Exactly one of `pem`, `base64` and
/// `secret` is set.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    /// Matched against the token header's `kid`. A key without one is tried for any token of
    /// its algorithm.
    #[serde(default)]
    pub kid: Option<String>,
    /// One of [`Alg::NAMES`].
    pub alg: String,
    /// A PEM public key (`BEGIN PUBLIC KEY`; for RS256 also `BEGIN RSA PUBLIC KEY`).
    #[serde(default)]
    pub pem: Option<String>,
    /// Base64 (standard or URL-safe, padded or not) of the raw 32-byte Ed25519 public key, or of
    /// the DER SubjectPublicKeyInfo for RS256 and ES256.
    #[serde(default)]
    pub base64: Option<String>,
    /// HS256 only: base64 of the secret bytes (at least [`MIN_HS256_SECRET_BYTES`]).
    #[serde(default)]
    pub secret: Option<String>,
}

impl std::fmt::Debug for RawKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("pem", &self.pem)
            .field("base64", &self.base64)
            .field("secret", &self.secret.as_ref().map(|_| Redacted))
            .finish()
    }
}

/// Prints `<redacted>` in place of secret material.
struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The parsed key, in the one form its algorithm allows.
#[derive(Clone)]
enum KeyMaterial {
    Hs256(HS256Key),
    Rs256 {
        /// Boxed: the RSA key is several times larger than the other variants.
        key: Box<RS256PublicKey>,
        /// Byte length of the modulus, which is the length of every valid signature.
        modulus_len: usize,
    },
    Es256(ES256PublicKey),
    EdDsa(Ed25519PublicKey),
}

/// A validated verification key, pinned to one algorithm.
#[derive(Clone)]
pub struct VerifierKey {
    /// The key id a token header names it by, if configured.
    pub kid: Option<String>,
    /// The only algorithm this key verifies.
    pub alg: Alg,
    material: KeyMaterial,
    /// SHA-256 over algorithm, kid and key bytes: feeds [`KeySet::fingerprint`].
    digest: [u8; 32],
}

impl std::fmt::Debug for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = f.debug_struct("VerifierKey");
        out.field("kid", &self.kid).field("alg", &self.alg);
        match &self.material {
            KeyMaterial::Hs256(_) => out.field("secret", &Redacted),
            KeyMaterial::Rs256 { modulus_len, .. } => {
                out.field("modulus_bits", &(modulus_len.saturating_mul(8)))
            }
            KeyMaterial::Es256(_) | KeyMaterial::EdDsa(_) => out.field("public_key", &".."),
        };
        out.finish()
    }
}

impl VerifierKey {
    fn new(alg: Alg, kid: Option<String>, material: KeyMaterial) -> VerifierKey {
        let digest = key_digest(alg, kid.as_deref(), &material);
        VerifierKey {
            kid,
            alg,
            material,
            digest,
        }
    }

    /// The exact length in bytes of a signature this key can have produced.
    pub fn signature_len(&self) -> usize {
        match &self.material {
            KeyMaterial::Hs256(_) => 32,
            KeyMaterial::Rs256 { modulus_len, .. } => *modulus_len,
            // RFC 7518 §3.4: ES256 signatures are R || S, 32 bytes each.
            KeyMaterial::Es256(_) => 64,
            KeyMaterial::EdDsa(_) => 64,
        }
    }

    /// Checks the token's signature with this key, then the claims `options` ask for.
    pub(crate) fn verify_token<Custom: DeserializeOwned>(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Result<JWTClaims<Custom>, jwt_simple::Error> {
        match &self.material {
            KeyMaterial::Hs256(key) => key.verify_token(token, Some(options)),
            KeyMaterial::Rs256 { key, .. } => key.verify_token(token, Some(options)),
            KeyMaterial::Es256(key) => key.verify_token(token, Some(options)),
            KeyMaterial::EdDsa(key) => key.verify_token(token, Some(options)),
        }
    }
}

/// The validated keys of one configuration: 1 to [`MAX_KEYS`] keys with distinct `kid`s.
#[derive(Debug, Clone)]
pub struct KeySet {
    keys: Vec<VerifierKey>,
}

impl KeySet {
    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Always false for a set built by [`build_keys`]; here for completeness.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The keys, in configuration order (`keys` first, then `jwks`).
    pub fn iter(&self) -> std::slice::Iter<'_, VerifierKey> {
        self.keys.iter()
    }

    /// A digest of every key's algorithm, kid and key bytes (secrets included, hashed), for the
    /// configuration fingerprint that scopes cached verdicts: rotating a key, HS256 secrets
    /// included, changes it. Debug output cannot serve here because it redacts secrets.
    pub fn fingerprint(&self) -> u64 {
        let digests: Vec<&[u8]> = self.keys.iter().map(|key| key.digest.as_slice()).collect();
        super::cache::fingerprint(&digests)
    }
}

/// Validates `identity.keys` and `identity.jwks` into one [`KeySet`]. `jwks` is a JWKS object
/// or a string holding one. Errors name the field, e.g.
/// `identity.keys[1].alg: "RS257" is not one of HS256, RS256, ES256, EdDSA`.
pub fn build_keys(
    raw: &[RawKey],
    jwks: Option<&Value>,
    path_prefix: &str,
) -> Result<KeySet, FieldError> {
    let keys_path = join_path(path_prefix, "keys");
    let jwks_path = join_path(path_prefix, "jwks");
    if raw.len() > MAX_KEYS {
        return Err(FieldError::new(
            keys_path,
            format!("has {} keys, at most {MAX_KEYS} are supported", raw.len()),
        ));
    }

    let mut keys: Vec<(String, VerifierKey)> = Vec::new();
    for (index, raw_key) in raw.iter().enumerate() {
        let path = format!("{keys_path}[{index}]");
        let key = key_from_raw(raw_key, &path)?;
        keys.push((path, key));
    }

    if let Some(jwks) = jwks {
        let from_jwks = match jwks {
            Value::String(doc) => jwks_from_str(doc, &jwks_path)?,
            Value::Object(_) => jwks_from_value(jwks, &jwks_path)?,
            _ => {
                return Err(FieldError::new(
                    jwks_path,
                    "must be a JWKS object or a string holding one",
                ))
            }
        };
        if from_jwks.is_empty() && keys.is_empty() {
            return Err(FieldError::new(
                format!("{jwks_path}.keys"),
                "has no signing key (every key has a \"use\" other than \"sig\")",
            ));
        }
        keys.extend(from_jwks);
    }

    if keys.is_empty() {
        return Err(FieldError::new(
            keys_path,
            format!("at least one key (or {jwks_path}) is required"),
        ));
    }
    if keys.len() > MAX_KEYS {
        return Err(FieldError::new(
            keys_path,
            format!(
                "{} keys in total with {jwks_path}, at most {MAX_KEYS} are supported",
                keys.len()
            ),
        ));
    }
    // RFC 7517 §4.5: the kid selects one key, so two keys must never share one.
    for (index, (path, key)) in keys.iter().enumerate() {
        let Some(kid) = &key.kid else { continue };
        let earlier = keys
            .iter()
            .take(index)
            .find(|(_, other)| other.kid.as_ref() == Some(kid));
        if let Some((earlier_path, _)) = earlier {
            return Err(FieldError::new(
                format!("{path}.kid"),
                format!("\"{kid}\" is already used by {earlier_path}"),
            ));
        }
    }
    Ok(KeySet {
        keys: keys.into_iter().map(|(_, key)| key).collect(),
    })
}

/// Parses a JWKS document (RFC 7517 §5) into keys. Keys whose `use` is not `sig` are skipped;
/// symmetric (`oct`) keys and keys carrying private members are refused.
pub fn keys_from_jwks(doc: &str, path: &str) -> Result<Vec<VerifierKey>, FieldError> {
    Ok(jwks_from_str(doc, path)?
        .into_iter()
        .map(|(_, key)| key)
        .collect())
}

fn join_path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}.{field}")
    }
}

fn key_from_raw(raw: &RawKey, path: &str) -> Result<VerifierKey, FieldError> {
    let alg = Alg::parse(&raw.alg).ok_or_else(|| {
        FieldError::new(
            format!("{path}.alg"),
            format!("\"{}\" is not one of {}", raw.alg, Alg::NAMES),
        )
    })?;
    if let Some(kid) = &raw.kid {
        check_kid(kid, &format!("{path}.kid"))?;
    }

    let fields = [
        ("pem", raw.pem.as_deref()),
        ("base64", raw.base64.as_deref()),
        ("secret", raw.secret.as_deref()),
    ];
    let set: Vec<(&str, &str)> = fields
        .iter()
        .filter_map(|(name, value)| value.map(|value| (*name, value)))
        .collect();
    let (field, text) = match set.as_slice() {
        [one] => *one,
        _ => {
            let names: Vec<&str> = set.iter().map(|(name, _)| *name).collect();
            let found = match names.as_slice() {
                [] => "none".to_string(),
                [first, second] => format!("{first} and {second}"),
                _ => names.join(", "),
            };
            return Err(FieldError::new(
                path,
                format!("exactly one of pem, base64, secret must be set (found {found})"),
            ));
        }
    };
    let field_path = format!("{path}.{field}");
    if text.len() > MAX_KEY_TEXT_BYTES {
        return Err(FieldError::new(
            field_path,
            format!("is longer than {MAX_KEY_TEXT_BYTES} bytes"),
        ));
    }

    let material = match (alg, field) {
        (Alg::HS256, "secret") => {
            let secret = decode_base64(text)
                .ok_or_else(|| FieldError::new(&field_path, "is not valid base64"))?;
            if secret.len() < MIN_HS256_SECRET_BYTES {
                return Err(FieldError::new(
                    field_path,
                    format!(
                        "decodes to {} bytes, HS256 needs at least {MIN_HS256_SECRET_BYTES}",
                        secret.len()
                    ),
                ));
            }
            KeyMaterial::Hs256(HS256Key::from_bytes(&secret))
        }
        (Alg::HS256, _) => {
            return Err(FieldError::new(
                field_path,
                "HS256 takes a secret, not a public key",
            ))
        }
        (_, "secret") => {
            return Err(FieldError::new(
                field_path,
                format!(
                    "only HS256 takes a secret, {} needs pem or base64",
                    alg.as_str()
                ),
            ))
        }
        (_, "pem") => {
            if text.contains("PRIVATE KEY") {
                return Err(FieldError::new(
                    field_path,
                    "is a private key; configure the public key only",
                ));
            }
            public_key_from_pem(alg, text)
                .map_err(|err| FieldError::new(field_path, invalid_key_message(alg, &err)))?
        }
        _ => {
            let bytes = decode_base64(text)
                .ok_or_else(|| FieldError::new(&field_path, "is not valid base64"))?;
            public_key_from_bytes(alg, &bytes)
                .map_err(|err| FieldError::new(field_path, invalid_key_message(alg, &err)))?
        }
    };
    Ok(VerifierKey::new(alg, raw.kid.clone(), material))
}

fn check_kid(kid: &str, path: &str) -> Result<(), FieldError> {
    if kid.is_empty() || kid.len() > MAX_KID_BYTES || kid.chars().any(char::is_control) {
        return Err(FieldError::new(
            path,
            format!("must be 1 to {MAX_KID_BYTES} bytes without control characters"),
        ));
    }
    Ok(())
}

fn invalid_key_message(alg: Alg, err: &jwt_simple::Error) -> String {
    match err.downcast_ref::<JWTError>() {
        Some(JWTError::WeakKey | JWTError::UnsupportedRSAModulus) => format!(
            "not a valid {} public key: the RSA modulus must be 2048 to 4096 bits",
            alg.as_str()
        ),
        _ => format!("not a valid {} public key", alg.as_str()),
    }
}

fn public_key_from_pem(alg: Alg, pem: &str) -> Result<KeyMaterial, jwt_simple::Error> {
    match alg {
        Alg::RS256 => rsa_material(RS256PublicKey::from_pem(pem)?),
        Alg::ES256 => Ok(KeyMaterial::Es256(ES256PublicKey::from_pem(pem)?)),
        Alg::EdDSA => Ok(KeyMaterial::EdDsa(Ed25519PublicKey::from_pem(pem)?)),
        Alg::HS256 => Err(JWTError::InvalidPublicKey.into()),
    }
}

/// DER SubjectPublicKeyInfo for RS256 (or PKCS#1) and ES256 (or a SEC1 point); the raw 32 bytes
/// (or DER) for EdDSA.
fn public_key_from_bytes(alg: Alg, bytes: &[u8]) -> Result<KeyMaterial, jwt_simple::Error> {
    match alg {
        Alg::RS256 => rsa_material(RS256PublicKey::from_der(bytes)?),
        Alg::ES256 => Ok(KeyMaterial::Es256(
            ES256PublicKey::from_der(bytes).or_else(|_| ES256PublicKey::from_bytes(bytes))?,
        )),
        Alg::EdDSA if bytes.len() == 32 => {
            Ok(KeyMaterial::EdDsa(Ed25519PublicKey::from_bytes(bytes)?))
        }
        Alg::EdDSA => Ok(KeyMaterial::EdDsa(Ed25519PublicKey::from_der(bytes)?)),
        Alg::HS256 => Err(JWTError::InvalidPublicKey.into()),
    }
}

fn rsa_material(key: RS256PublicKey) -> Result<KeyMaterial, jwt_simple::Error> {
    let modulus_len = key.to_components().n.len();
    Ok(KeyMaterial::Rs256 {
        key: Box::new(key),
        modulus_len,
    })
}

/// Base64 as operators paste it: standard or URL-safe alphabet, padded or not, line breaks
/// allowed.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    let normalized: String = text
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            other => other,
        })
        .collect();
    let unpadded = normalized.trim_end_matches('=');
    if normalized.len() - unpadded.len() > 2 {
        return None;
    }
    STANDARD_NO_PAD.decode(unpadded).ok()
}

fn key_digest(alg: Alg, kid: Option<&str>, material: &KeyMaterial) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"switchboard.identity.key.v1\0");
    hasher.update(alg.as_str().as_bytes());
    match kid {
        Some(kid) => {
            hasher.update([1]);
            hasher.update((kid.len() as u64).to_le_bytes());
            hasher.update(kid.as_bytes());
        }
        None => hasher.update([0]),
    }
    match material {
        KeyMaterial::Hs256(key) => hasher.update(key.to_bytes()),
        KeyMaterial::Rs256 { key, .. } => {
            let components = key.to_components();
            hasher.update((components.n.len() as u64).to_le_bytes());
            hasher.update(&components.n);
            hasher.update(&components.e);
        }
        KeyMaterial::Es256(key) => hasher.update(key.to_bytes()),
        KeyMaterial::EdDsa(key) => hasher.update(key.to_bytes()),
    }
    hasher.finalize().into()
}

fn jwks_from_str(doc: &str, path: &str) -> Result<Vec<(String, VerifierKey)>, FieldError> {
    if doc.len() > MAX_JWKS_BYTES {
        return Err(FieldError::new(
            path,
            format!("is longer than {MAX_JWKS_BYTES} bytes"),
        ));
    }
    let value: Value =
        serde_json::from_str(doc).map_err(|_| FieldError::new(path, "is not valid JSON"))?;
    jwks_from_value(&value, path)
}

fn jwks_from_value(doc: &Value, path: &str) -> Result<Vec<(String, VerifierKey)>, FieldError> {
    let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
        return Err(FieldError::new(
            path,
            "must be a JWKS object with a \"keys\" array",
        ));
    };
    if entries.len() > MAX_KEYS {
        return Err(FieldError::new(
            format!("{path}.keys"),
            format!(
                "has {} keys, at most {MAX_KEYS} are supported",
                entries.len()
            ),
        ));
    }
    let mut keys = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let key_path = format!("{path}.keys[{index}]");
        if let Some(key) = key_from_jwk(entry, &key_path)? {
            keys.push((key_path, key));
        }
    }
    Ok(keys)
}

/// Members that only a private or symmetric JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4.1, RFC 8037).
const PRIVATE_JWK_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// One JWK. `Ok(None)` for a key that is not for signatures.
fn key_from_jwk(jwk: &Value, path: &str) -> Result<Option<VerifierKey>, FieldError> {
    let Some(members) = jwk.as_object() else {
        return Err(FieldError::new(path, "must be a JSON object"));
    };
    // RFC 7517 §4.2: "use" says what the key is for; only "sig" keys verify tokens.
    if let Some(key_use) = members.get("use") {
        match key_use.as_str() {
            Some("sig") => {}
            Some(_) => return Ok(None),
            None => return Err(FieldError::new(format!("{path}.use"), "must be a string")),
        }
    }
    let kty = jwk_string(members, "kty", path)?
        .ok_or_else(|| FieldError::new(format!("{path}.kty"), "is required"))?;
    if kty == "oct" {
        return Err(FieldError::new(
            format!("{path}.kty"),
            "\"oct\" keys are refused: a shared secret is never taken from a JWKS",
        ));
    }
    if let Some(member) = PRIVATE_JWK_MEMBERS
        .iter()
        .find(|member| members.contains_key(**member))
    {
        return Err(FieldError::new(
            path,
            format!(
                "contains private key material (\"{member}\"); a JWKS must hold public keys only"
            ),
        ));
    }
    let kid = jwk_string(members, "kid", path)?;
    if let Some(kid) = kid {
        check_kid(kid, &format!("{path}.kid"))?;
    }

    let (alg, required_crv) = match kty {
        "RSA" => (Alg::RS256, None),
        "EC" => (Alg::ES256, Some("P-256")),
        "OKP" => (Alg::EdDSA, Some("Ed25519")),
        other => {
            return Err(FieldError::new(
                format!("{path}.kty"),
                format!("\"{other}\" is not one of RSA, EC, OKP"),
            ))
        }
    };
    // RFC 7517 §4.4: "alg" is optional; when present it must be the one the key type implies.
    if let Some(declared) = jwk_string(members, "alg", path)? {
        // RFC 9864 names Ed25519 keys' algorithm "Ed25519"; it verifies the same signatures.
        let parsed = if declared == "Ed25519" {
            Some(Alg::EdDSA)
        } else {
            Alg::parse(declared)
        };
        match parsed {
            None => {
                return Err(FieldError::new(
                    format!("{path}.alg"),
                    format!("\"{declared}\" is not one of {}", Alg::NAMES),
                ))
            }
            Some(parsed) if parsed != alg => {
                return Err(FieldError::new(
                    format!("{path}.alg"),
                    format!("\"{declared}\" does not fit kty \"{kty}\""),
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(required_crv) = required_crv {
        let crv = jwk_string(members, "crv", path)?
            .ok_or_else(|| FieldError::new(format!("{path}.crv"), "is required"))?;
        if crv != required_crv {
            return Err(FieldError::new(
                format!("{path}.crv"),
                format!("\"{crv}\" is not supported ({kty} keys must be {required_crv})"),
            ));
        }
    }

    let invalid = |err: jwt_simple::Error| FieldError::new(path, invalid_key_message(alg, &err));
    let material = match alg {
        Alg::RS256 => {
            let n = jwk_bytes(members, "n", path, None)?;
            let e = jwk_bytes(members, "e", path, None)?;
            RS256PublicKey::from_components(&n, &e)
                .map_err(invalid)
                .and_then(|key| rsa_material(key).map_err(invalid))?
        }
        Alg::ES256 => {
            // RFC 7518 §6.2.1.2: x and y are the full-length 32-byte coordinates.
            let x = jwk_bytes(members, "x", path, Some(32))?;
            let y = jwk_bytes(members, "y", path, Some(32))?;
            let mut point = Vec::with_capacity(65);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            KeyMaterial::Es256(ES256PublicKey::from_bytes(&point).map_err(invalid)?)
        }
        Alg::EdDSA => {
            // RFC 8037 §2: x is the 32-byte public key.
            let x = jwk_bytes(members, "x", path, Some(32))?;
            KeyMaterial::EdDsa(Ed25519PublicKey::from_bytes(&x).map_err(invalid)?)
        }
        Alg::HS256 => return Err(FieldError::new(format!("{path}.kty"), "is not supported")),
    };
    Ok(Some(VerifierKey::new(
        alg,
        kid.map(str::to_string),
        material,
    )))
}

fn jwk_string<'a>(
    members: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Option<&'a str>, FieldError> {
    match members.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(FieldError::new(
            format!("{path}.{name}"),
            "must be a string",
        )),
    }
}

fn jwk_bytes(
    members: &Map<String, Value>,
    name: &str,
    path: &str,
    exact_len: Option<usize>,
) -> Result<Vec<u8>, FieldError> {
    let member_path = format!("{path}.{name}");
    let text = jwk_string(members, name, path)?
        .ok_or_else(|| FieldError::new(&member_path, "is required"))?;
    if text.len() > MAX_KEY_TEXT_BYTES {
        return Err(FieldError::new(
            member_path,
            format!("is longer than {MAX_KEY_TEXT_BYTES} bytes"),
        ));
    }
    // RFC 7515 §2: JWK members are base64url without padding.
    let bytes = URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| FieldError::new(&member_path, "is not valid base64url"))?;
    if let Some(expected) = exact_len {
        if bytes.len() != expected {
            return Err(FieldError::new(
                member_path,
                format!("must decode to {expected} bytes, not {}", bytes.len()),
            ));
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use serde_json::json;

    use super::*;
    use crate::identity::fixtures::*;
    use crate::identity::jwt::{AuthError, Verifier};

    fn error_of(raw: &[RawKey], jwks: Option<&Value>) -> String {
        build_keys(raw, jwks, "identity").unwrap_err().to_string()
    }

    fn jwks_fixture() -> Value {
        json!({ "keys": [
            { "kty": "RSA", "kid": "rs-1", "use": "sig", "alg": "RS256",
              "n": RS_PUBLIC_N, "e": RS_PUBLIC_E },
            { "kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": ED1_PUBLIC_X },
            { "kty": "EC", "kid": "es-1", "crv": "P-256", "alg": "ES256",
              "x": ES_PUBLIC_X, "y": ES_PUBLIC_Y, "key_ops": ["verify"] },
            { "kty": "RSA", "kid": "enc-1", "use": "enc", "alg": "RSA-OAEP",
              "n": RS_PUBLIC_N, "e": RS_PUBLIC_E },
        ]})
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn alg_names_round_trip() {
        for alg in [Alg::HS256, Alg::RS256, Alg::ES256, Alg::EdDSA] {
            assert_eq!(Alg::parse(alg.as_str()), Some(alg));
        }
        for name in ["none", "hs256", "RS512", "Ed25519", ""] {
            assert_eq!(Alg::parse(name), None, "{name}");
        }
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn every_key_form_is_accepted() {
        let ed_raw_url_safe = ED1_PUBLIC_X;
        let raw = vec![
            secret_key(Some("hs-1"), HS_SECRET_B64),
            pem_key(Some("rs-1"), "RS256", RS_PUBLIC_PEM),
            base64_key(Some("rs-2"), "RS256", RS_PUBLIC_DER_B64),
            pem_key(Some("es-1"), "ES256", ES_PUBLIC_PEM),
            base64_key(Some("es-2"), "ES256", ES_PUBLIC_DER_B64),
            pem_key(Some("ed-1"), "EdDSA", ED1_PUBLIC_PEM),
            base64_key(Some("ed-3"), "EdDSA", ED1_PUBLIC_RAW_B64),
            base64_key(Some("ed-4"), "EdDSA", ed_raw_url_safe),
            base64_key(None, "EdDSA", &format!(" {}\n", ED1_PUBLIC_RAW_B64)),
        ];
        let keys = build_keys(&raw, None, "identity").unwrap();
        assert_eq!(keys.len(), 9);
        let algs: Vec<Alg> = keys.iter().map(|key| key.alg).collect();
        use Alg::*;
        assert_eq!(
            algs,
            [HS256, RS256, RS256, ES256, ES256, EdDSA, EdDSA, EdDSA, EdDSA]
        );
        let lengths: Vec<usize> = keys.iter().map(VerifierKey::signature_len).collect();
        assert_eq!(lengths, [32, 256, 256, 64, 64, 64, 64, 64, 64]);
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn key_configuration_errors_name_the_field() {
        let cases: Vec<(Vec<RawKey>, &str)> = vec![
            (
                vec![
                    pem_key(None, "EdDSA", ED1_PUBLIC_PEM),
                    pem_key(None, "RS257", RS_PUBLIC_PEM),
                ],
                r#"identity.keys[1].alg: "RS257" is not one of HS256, RS256, ES256, EdDSA"#,
            ),
            (
                vec![pem_key(None, "none", RS_PUBLIC_PEM)],
                r#"identity.keys[0].alg: "none" is not one of HS256, RS256, ES256, EdDSA"#,
            ),
            (
                vec![pem_key(None, "EdDSA", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")],
                "identity.keys[0].pem: not a valid EdDSA public key",
            ),
            (
                vec![pem_key(None, "EdDSA", RS_PUBLIC_PEM)],
                "identity.keys[0].pem: not a valid EdDSA public key",
            ),
            (
                vec![pem_key(None, "RS256", ES_PUBLIC_PEM)],
                "identity.keys[0].pem: not a valid RS256 public key",
            ),
            (
                vec![pem_key(None, "ES256", "garbage")],
                "identity.keys[0].pem: not a valid ES256 public key",
            ),
            (
                vec![pem_key(None, "EdDSA", ED_PRIVATE_PEM)],
                "identity.keys[0].pem: is a private key; configure the public key only",
            ),
            (
                vec![RawKey {
                    base64: Some(ED1_PUBLIC_RAW_B64.to_string()),
                    ..pem_key(None, "EdDSA", ED1_PUBLIC_PEM)
                }],
                "identity.keys[0]: exactly one of pem, base64, secret must be set (found pem and base64)",
            ),
            (
                vec![RawKey {
                    base64: Some(ED1_PUBLIC_RAW_B64.to_string()),
                    secret: Some(HS_SECRET_B64.to_string()),
                    ..pem_key(None, "EdDSA", ED1_PUBLIC_PEM)
                }],
                "identity.keys[0]: exactly one of pem, base64, secret must be set (found pem, base64, secret)",
            ),
            (
                vec![raw_key(Some("k"), "EdDSA")],
                "identity.keys[0]: exactly one of pem, base64, secret must be set (found none)",
            ),
            (
                vec![secret_key(None, &b64(&[1u8; 16]))],
                "identity.keys[0].secret: decodes to 16 bytes, HS256 needs at least 32",
            ),
            (
                vec![secret_key(None, &b64(&[1u8; 31]))],
                "identity.keys[0].secret: decodes to 31 bytes, HS256 needs at least 32",
            ),
            (
                vec![secret_key(None, "not base64!")],
                "identity.keys[0].secret: is not valid base64",
            ),
            (
                vec![pem_key(None, "HS256", RS_PUBLIC_PEM)],
                "identity.keys[0].pem: HS256 takes a secret, not a public key",
            ),
            (
                vec![base64_key(None, "HS256", HS_SECRET_B64)],
                "identity.keys[0].base64: HS256 takes a secret, not a public key",
            ),
            (
                vec![RawKey {
                    secret: Some(HS_SECRET_B64.to_string()),
                    ..raw_key(None, "EdDSA")
                }],
                "identity.keys[0].secret: only HS256 takes a secret, EdDSA needs pem or base64",
            ),
            (
                vec![base64_key(None, "EdDSA", "***")],
                "identity.keys[0].base64: is not valid base64",
            ),
            (
                vec![base64_key(None, "EdDSA", &b64(&[9u8; 31]))],
                "identity.keys[0].base64: not a valid EdDSA public key",
            ),
            (
                vec![
                    pem_key(Some("k1"), "EdDSA", ED1_PUBLIC_PEM),
                    pem_key(Some("k1"), "EdDSA", ED2_PUBLIC_PEM),
                ],
                r#"identity.keys[1].kid: "k1" is already used by identity.keys[0]"#,
            ),
            (
                vec![pem_key(Some(""), "EdDSA", ED1_PUBLIC_PEM)],
                "identity.keys[0].kid: must be 1 to 256 bytes without control characters",
            ),
            (
                vec![pem_key(Some("k\n1"), "EdDSA", ED1_PUBLIC_PEM)],
                "identity.keys[0].kid: must be 1 to 256 bytes without control characters",
            ),
            (
                vec![],
                "identity.keys: at least one key (or identity.jwks) is required",
            ),
            (
                vec![pem_key(None, "EdDSA", &"A".repeat(MAX_KEY_TEXT_BYTES + 1))],
                "identity.keys[0].pem: is longer than 16384 bytes",
            ),
            (
                vec![pem_key(None, "EdDSA", ED1_PUBLIC_PEM); MAX_KEYS + 1],
                "identity.keys: has 33 keys, at most 32 are supported",
            ),
        ];
        for (raw, expected) in cases {
            assert_eq!(error_of(&raw, None), expected);
        }
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn weak_rsa_key_is_refused() {
        // A 1024-bit modulus with exponent 65537.
        let n = b64u(&[0xc5; 128]);
        let jwks = json!({ "keys": [{ "kty": "RSA", "n": n, "e": "AQAB" }] });
        assert_eq!(
            error_of(&[], Some(&jwks)),
            "identity.jwks.keys[0]: not a valid RS256 public key: the RSA modulus must be 2048 to 4096 bits"
        );
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn jwks_keys_are_imported_and_verify() {
        let jwks = jwks_fixture();
        let keys = build_keys(&[], Some(&jwks), "identity").unwrap();
        let summary: Vec<(Option<&str>, Alg)> = keys
            .iter()
            .map(|key| (key.kid.as_deref(), key.alg))
            .collect();
        assert_eq!(
            summary,
            [
                (Some("rs-1"), Alg::RS256),
                (Some("ed-1"), Alg::EdDSA),
                (Some("es-1"), Alg::ES256),
            ]
        );
        let verifier = Verifier::new(keys, policy());
        assert!(verifier.verify(TOKEN_RS256, NOW).is_ok());
        assert!(verifier.verify(TOKEN_ES256, NOW).is_ok());
        assert!(verifier.verify(TOKEN_EDDSA_ED1_SOON, SOON_EXP).is_ok());
        assert_eq!(
            verifier.verify(TOKEN_HS256, NOW),
            Err(AuthError::NoKeyForAlg)
        );

        // The same document as a string, through the public helper and through build_keys.
        let text = jwks.to_string();
        assert_eq!(keys_from_jwks(&text, "jwks").unwrap().len(), 3);
        let as_string = Value::String(text);
        assert_eq!(
            build_keys(&[], Some(&as_string), "identity").unwrap().len(),
            3
        );

        // Static keys and a JWKS together.
        let mixed = build_keys(
            &[secret_key(Some("hs-1"), HS_SECRET_B64)],
            Some(&jwks),
            "identity",
        )
        .unwrap();
        assert_eq!(mixed.len(), 4);
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn jwks_errors_name_the_member() {
        let rsa = json!({ "kty": "RSA", "n": RS_PUBLIC_N, "e": RS_PUBLIC_E });
        let with = |extra: Value| {
            let mut key = rsa.clone();
            for (name, value) in extra.as_object().unwrap() {
                key.as_object_mut()
                    .unwrap()
                    .insert(name.clone(), value.clone());
            }
            json!({ "keys": [rsa.clone(), key] })
        };
        let cases = [
            (
                json!({ "keys": [rsa.clone(), { "kty": "oct", "k": "c2VjcmV0" }] }),
                r#"identity.jwks.keys[1].kty: "oct" keys are refused: a shared secret is never taken from a JWKS"#,
            ),
            (
                with(json!({ "alg": "HS256" })),
                r#"identity.jwks.keys[1].alg: "HS256" does not fit kty "RSA""#,
            ),
            (
                with(json!({ "alg": "RS512" })),
                r#"identity.jwks.keys[1].alg: "RS512" is not one of HS256, RS256, ES256, EdDSA"#,
            ),
            (
                with(json!({ "d": "AQAB" })),
                r#"identity.jwks.keys[1]: contains private key material ("d"); a JWKS must hold public keys only"#,
            ),
            (
                with(json!({ "n": "***" })),
                "identity.jwks.keys[1].n: is not valid base64url",
            ),
            (
                with(json!({ "kid": 7 })),
                "identity.jwks.keys[1].kid: must be a string",
            ),
            (
                json!({ "keys": [{ "kty": "EC", "crv": "P-384", "x": ES_PUBLIC_X, "y": ES_PUBLIC_Y }] }),
                r#"identity.jwks.keys[0].crv: "P-384" is not supported (EC keys must be P-256)"#,
            ),
            (
                json!({ "keys": [{ "kty": "EC", "crv": "P-256", "x": ES_PUBLIC_X }] }),
                "identity.jwks.keys[0].y: is required",
            ),
            (
                json!({ "keys": [{ "kty": "OKP", "crv": "Ed25519", "x": b64u(&[1; 31]) }] }),
                "identity.jwks.keys[0].x: must decode to 32 bytes, not 31",
            ),
            (
                json!({ "keys": [{ "kty": "OKP", "crv": "X25519", "x": ED1_PUBLIC_X }] }),
                r#"identity.jwks.keys[0].crv: "X25519" is not supported (OKP keys must be Ed25519)"#,
            ),
            (
                json!({ "keys": [{ "kty": "AKP", "pub": "AAAA" }] }),
                r#"identity.jwks.keys[0].kty: "AKP" is not one of RSA, EC, OKP"#,
            ),
            (
                json!({ "keys": [{ "n": RS_PUBLIC_N }] }),
                "identity.jwks.keys[0].kty: is required",
            ),
            (
                json!({ "keys": [7] }),
                "identity.jwks.keys[0]: must be a JSON object",
            ),
            (
                json!({ "key": [] }),
                r#"identity.jwks: must be a JWKS object with a "keys" array"#,
            ),
            (
                json!({ "keys": [{ "kty": "RSA", "use": "enc", "n": RS_PUBLIC_N, "e": "AQAB" }] }),
                r#"identity.jwks.keys: has no signing key (every key has a "use" other than "sig")"#,
            ),
            (
                json!(42),
                "identity.jwks: must be a JWKS object or a string holding one",
            ),
            (
                Value::String("{not json".to_string()),
                "identity.jwks: is not valid JSON",
            ),
        ];
        for (jwks, expected) in cases {
            assert_eq!(error_of(&[], Some(&jwks)), expected);
        }
        assert_eq!(
            error_of(
                &[pem_key(Some("rs-1"), "RS256", RS_PUBLIC_PEM)],
                Some(&jwks_fixture())
            ),
            r#"identity.jwks.keys[0].kid: "rs-1" is already used by identity.keys[0]"#
        );
        assert_eq!(
            keys_from_jwks("[]", "jwks").unwrap_err().to_string(),
            r#"jwks: must be a JWKS object with a "keys" array"#
        );
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn too_many_keys_in_total() {
        let raw = vec![pem_key(None, "EdDSA", ED1_PUBLIC_PEM); MAX_KEYS - 1];
        assert_eq!(
            error_of(&raw, Some(&jwks_fixture())),
            "identity.keys: 34 keys in total with identity.jwks, at most 32 are supported"
        );
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn secrets_never_reach_debug_output() {
        let raw = secret_key(Some("hs-1"), HS_SECRET_B64);
        let raw_debug = format!("{raw:?}");
        assert!(raw_debug.contains("<redacted>"), "{raw_debug}");
        assert!(!raw_debug.contains(HS_SECRET_B64));
        let keys = build_keys(&[raw], None, "identity").unwrap();
        let keys_debug = format!("{keys:?}");
        assert!(keys_debug.contains("<redacted>"), "{keys_debug}");
        assert!(!keys_debug.contains(HS_SECRET_B64));
        let no_secret = format!("{:?}", pem_key(None, "EdDSA", ED1_PUBLIC_PEM));
        assert!(no_secret.contains("secret: None"), "{no_secret}");
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn fingerprint_follows_key_material() {
        let fingerprint = |raw: &[RawKey]| build_keys(raw, None, "").unwrap().fingerprint();
        let base = fingerprint(&all_fixture_keys());
        assert_eq!(base, fingerprint(&all_fixture_keys()));

        let mut rotated_secret = all_fixture_keys();
        rotated_secret[0] = secret_key(Some("hs-1"), OTHER_SECRET_B64);
        assert_ne!(base, fingerprint(&rotated_secret));

        let mut renamed = all_fixture_keys();
        renamed[1].kid = Some("rs-2".to_string());
        assert_ne!(base, fingerprint(&renamed));

        let mut fewer = all_fixture_keys();
        fewer.pop();
        assert_ne!(base, fingerprint(&fewer));

        // The same key written as PEM or as base64 DER is the same key.
        let pem = fingerprint(&[pem_key(None, "RS256", RS_PUBLIC_PEM)]);
        let der = fingerprint(&[base64_key(None, "RS256", RS_PUBLIC_DER_B64)]);
        assert_eq!(pem, der);
    }

    #[test]
    #[cfg_attr(
        all(target_arch = "wasm32", target_os = "unknown"),
        wasm_bindgen_test::wasm_bindgen_test
    )]
    fn raw_keys_deserialize_strictly() {
        let key: RawKey =
            serde_json::from_value(json!({ "kid": "a", "alg": "EdDSA", "pem": ED1_PUBLIC_PEM }))
                .unwrap();
        assert_eq!(key.kid.as_deref(), Some("a"));
        let unknown = serde_json::from_value::<RawKey>(json!({ "alg": "EdDSA", "pm": "x" }));
        assert!(unknown.is_err());
    }
}
