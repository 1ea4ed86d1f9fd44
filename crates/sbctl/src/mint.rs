//! Agent JWTs for development and tests: what the identity stage of the filter verifies.
//!
//! [`mint`] is a pure function of the spec, the key and `now`, so the load tool can mint
//! thousands of tokens in-process and tests can mint expired or not-yet-valid ones exactly.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jwt_simple::prelude::{
    ECDSAP256KeyPairLike, ES256KeyPair, Ed25519KeyPair, EdDSAKeyPairLike, HS256Key, JWTClaims,
    MACLike, RS256KeyPair, RSAKeyPairLike,
};
use serde_json::{Map, Value};

/// Key used by `sbctl mint-token` when `--key` is not given.
pub const DEFAULT_KEY_PATH: &str = ".dev/agent-ed25519.pem";
/// RFC 7518 §3.2: an HS256 key MUST be at least as long as the hash output (256 bits).
pub const MIN_HS256_SECRET_BYTES: usize = 32;
/// Largest key or secret file read.
const MAX_KEY_FILE_BYTES: u64 = 64 * 1024;
/// Claims the spec sets itself; a custom claim name may not shadow them.
const REGISTERED_CLAIMS: [&str; 5] = ["iss", "aud", "iat", "nbf", "exp"];

/// JWS algorithms `sbctl` can sign with (RFC 7518 §3.1 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Alg {
    #[value(name = "EdDSA")]
    EdDSA,
    #[value(name = "RS256")]
    RS256,
    #[value(name = "ES256")]
    ES256,
    #[value(name = "HS256")]
    HS256,
}

impl Alg {
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::EdDSA => "EdDSA",
            Alg::RS256 => "RS256",
            Alg::ES256 => "ES256",
            Alg::HS256 => "HS256",
        }
    }

    /// Guesses from a key file name such as `agent-rs256.pem` or `agent-hs256.secret`.
    pub fn from_file_name(path: &Path) -> Option<Alg> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.contains("ed25519") || name.contains("eddsa") {
            Some(Alg::EdDSA)
        } else if name.contains("rs256") || name.contains("rsa") {
            Some(Alg::RS256)
        } else if name.contains("es256") || name.contains("p256") || name.contains("ecdsa") {
            Some(Alg::ES256)
        } else if name.contains("hs256") || name.ends_with(".secret") {
            Some(Alg::HS256)
        } else {
            None
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// Why a key could not be loaded or a token not minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The key file could not be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The key file is larger than any key we use.
    #[error("{path}: larger than {MAX_KEY_FILE_BYTES} bytes, not a key file")]
    KeyFileTooLarge { path: PathBuf },
    /// Neither `--alg`, the file name nor the PEM content says which algorithm the key is for.
    #[error("cannot tell the algorithm of this key; pass --alg")]
    UnknownAlgorithm,
    /// The PEM is not a private key for the algorithm.
    #[error("not a private key for {alg} (PKCS#8 PEM expected): {detail}")]
    BadPrivateKey { alg: Alg, detail: String },
    /// The HS256 secret file is not base64.
    #[error("HS256 secret must be base64: {0}")]
    BadSecretEncoding(base64::DecodeError),
    /// The HS256 secret is shorter than RFC 7518 §3.2 allows.
    #[error("HS256 secret has {0} bytes; at least {MIN_HS256_SECRET_BYTES} are required")]
    SecretTooShort(usize),
    /// `--hs-secret-file` was combined with `--alg` naming another algorithm.
    #[error("--hs-secret-file is for HS256, but --alg is {0}")]
    AlgMismatch(Alg),
    /// A time claim falls outside 0..=u64::MAX seconds.
    #[error("{claim}: now {now} + offset {offset} is not a valid time")]
    TimeOutOfRange {
        claim: &'static str,
        now: u64,
        offset: i64,
    },
    /// Two claims would have the same name, or a custom name shadows a registered claim.
    #[error("claim name {0:?} is used twice")]
    ClaimClash(String),
    /// jwt-simple refused to sign.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A private key ready to sign with.
pub enum SigningKey {
    EdDSA(Ed25519KeyPair),
    /// Boxed: an RSA key pair is several times larger than the others.
    RS256(Box<RS256KeyPair>),
    ES256(ES256KeyPair),
    HS256(HS256Key),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "SigningKey({}, <redacted>)", self.alg())
    }
}

impl SigningKey {
    pub fn alg(&self) -> Alg {
        match self {
            SigningKey::EdDSA(_) => Alg::EdDSA,
            SigningKey::RS256(_) => Alg::RS256,
            SigningKey::ES256(_) => Alg::ES256,
            SigningKey::HS256(_) => Alg::HS256,
        }
    }

    /// Parses a PKCS#8 PEM private key (RSA also as PKCS#1). With `alg` unknown, tries each
    /// asymmetric algorithm in turn.
    pub fn from_pem(pem: &str, alg: Option<Alg>) -> Result<Self, MintError> {
        let parse = |alg: Alg| -> Result<SigningKey, MintError> {
            let bad = |error: jwt_simple::Error| MintError::BadPrivateKey {
                alg,
                detail: error.to_string(),
            };
            match alg {
                Alg::EdDSA => Ed25519KeyPair::from_pem(pem)
                    .map(SigningKey::EdDSA)
                    .map_err(bad),
                Alg::RS256 => RS256KeyPair::from_pem(pem)
                    .map(|pair| SigningKey::RS256(Box::new(pair)))
                    .map_err(bad),
                Alg::ES256 => ES256KeyPair::from_pem(pem)
                    .map(SigningKey::ES256)
                    .map_err(bad),
                Alg::HS256 => SigningKey::hs256_from_secret_text(pem),
            }
        };
        match alg {
            Some(alg) => parse(alg),
            None => [Alg::EdDSA, Alg::ES256, Alg::RS256]
                .into_iter()
                .find_map(|alg| parse(alg).ok())
                .ok_or(MintError::UnknownAlgorithm),
        }
    }

    /// An HS256 key from the text of a secret file: base64 (standard or URL-safe) of the raw
    /// secret bytes, surrounding whitespace ignored.
    pub fn hs256_from_secret_text(text: &str) -> Result<Self, MintError> {
        let text = text.trim();
        let secret = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
            .map_err(MintError::BadSecretEncoding)?;
        if secret.len() < MIN_HS256_SECRET_BYTES {
            return Err(MintError::SecretTooShort(secret.len()));
        }
        Ok(SigningKey::HS256(HS256Key::from_bytes(&secret)))
    }

    /// Loads `path`, taking the algorithm from `alg`, else the file name, else the PEM itself.
    pub fn load(path: &Path, alg: Option<Alg>) -> Result<Self, MintError> {
        let text = read_key_file(path)?;
        match alg.or_else(|| Alg::from_file_name(path)) {
            Some(Alg::HS256) => SigningKey::hs256_from_secret_text(&text),
            other => SigningKey::from_pem(&text, other),
        }
    }

    /// Loads an HS256 secret file (`--hs-secret-file`).
    pub fn load_hs256_secret(path: &Path) -> Result<Self, MintError> {
        SigningKey::hs256_from_secret_text(&read_key_file(path)?)
    }
}

fn read_key_file(path: &Path) -> Result<String, MintError> {
    let read_error = |source| MintError::Read {
        path: path.to_owned(),
        source,
    };
    let length = std::fs::metadata(path).map_err(read_error)?.len();
    if length > MAX_KEY_FILE_BYTES {
        return Err(MintError::KeyFileTooLarge {
            path: path.to_owned(),
        });
    }
    std::fs::read_to_string(path).map_err(read_error)
}

/// What goes into one agent token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MintSpec {
    pub agent: String,
    pub tenant: String,
    pub region: Option<String>,
    /// Lifetime: `exp = now + ttl_secs` unless `exp_offset` is set.
    pub ttl_secs: u64,
    /// `kid` header parameter (RFC 7515 §4.1.4), if any.
    pub kid: Option<String>,
    pub iss: String,
    pub aud: String,
    /// Name of the claim carrying `agent`; empty leaves the claim out.
    pub claim_agent: String,
    /// Name of the claim carrying `tenant`; empty leaves the claim out.
    pub claim_tenant: String,
    /// Name of the claim carrying `region`.
    pub claim_region: String,
    /// `nbf = now + offset` (default `now`); positive makes a not-yet-valid token.
    pub nbf_offset: Option<i64>,
    /// `exp = now + offset`, overriding `ttl_secs`; negative makes an expired token.
    pub exp_offset: Option<i64>,
}

impl MintSpec {
    /// A spec with the `sbctl mint-token` defaults.
    pub fn new(agent: impl Into<String>, tenant: impl Into<String>) -> Self {
        Self {
            agent: agent.into(),
            tenant: tenant.into(),
            region: None,
            ttl_secs: 3600,
            kid: None,
            iss: "switchboard-dev".to_owned(),
            aud: "switchboard".to_owned(),
            claim_agent: "sub".to_owned(),
            claim_tenant: "tenant".to_owned(),
            claim_region: "region".to_owned(),
            nbf_offset: None,
            exp_offset: None,
        }
    }

    /// The JWT claims set for this spec at `now` (seconds since the epoch).
    pub fn claims(&self, now: u64) -> Result<Map<String, Value>, MintError> {
        let at = |claim: &'static str, offset: i64| -> Result<u64, MintError> {
            now.checked_add_signed(offset)
                .ok_or(MintError::TimeOutOfRange { claim, now, offset })
        };
        let expires_at = match self.exp_offset {
            Some(offset) => at("exp", offset)?,
            None => {
                let offset = i64::try_from(self.ttl_secs).unwrap_or(i64::MAX);
                at("exp", offset)?
            }
        };
        let not_before = at("nbf", self.nbf_offset.unwrap_or(0))?;

        let mut claims = Map::new();
        claims.insert("iss".to_owned(), Value::from(self.iss.as_str()));
        claims.insert("aud".to_owned(), Value::from(self.aud.as_str()));
        claims.insert("iat".to_owned(), Value::from(now));
        claims.insert("nbf".to_owned(), Value::from(not_before));
        claims.insert("exp".to_owned(), Value::from(expires_at));
        let custom = [
            (self.claim_agent.as_str(), Some(self.agent.as_str())),
            (self.claim_tenant.as_str(), Some(self.tenant.as_str())),
            (self.claim_region.as_str(), self.region.as_deref()),
        ];
        for (name, value) in custom {
            let Some(value) = value else { continue };
            if name.is_empty() {
                continue;
            }
            if REGISTERED_CLAIMS.contains(&name) || claims.contains_key(name) {
                return Err(MintError::ClaimClash(name.to_owned()));
            }
            claims.insert(name.to_owned(), Value::from(value));
        }
        Ok(claims)
    }
}

/// Mints a compact JWS for `spec`, signed with `key`, at `now` (seconds since the epoch).
pub fn mint(spec: &MintSpec, key: &SigningKey, now: u64) -> Result<String, MintError> {
    // Every claim travels in the custom map so names are exactly those of the spec (`sub` need
    // not be the agent); jwt-simple's own registered fields stay empty.
    let claims = JWTClaims {
        issued_at: None,
        expires_at: None,
        invalid_before: None,
        issuer: None,
        subject: None,
        audiences: None,
        jwt_id: None,
        nonce: None,
        custom: spec.claims(now)?,
    };
    let kid = spec.kid.as_deref();
    let signed = match key {
        SigningKey::EdDSA(pair) => match kid {
            Some(kid) => pair.clone().with_key_id(kid).sign(claims),
            None => pair.sign(claims),
        },
        SigningKey::RS256(pair) => match kid {
            Some(kid) => pair.as_ref().clone().with_key_id(kid).sign(claims),
            None => pair.sign(claims),
        },
        SigningKey::ES256(pair) => match kid {
            // ES256KeyPair is not Clone; a copy via its scalar carries the kid instead.
            Some(kid) => ES256KeyPair::from_bytes(&pair.to_bytes())
                .and_then(|copy| copy.with_key_id(kid).sign(claims)),
            None => pair.sign(claims),
        },
        SigningKey::HS256(secret) => match kid {
            Some(kid) => secret.clone().with_key_id(kid).authenticate(claims),
            None => secret.authenticate(claims),
        },
    };
    signed.map_err(|error| MintError::Sign(error.to_string()))
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on an unexpected error"
)]
mod tests {
    use super::*;
    use jwt_simple::prelude::{
        ECDSAP256PublicKeyLike, EdDSAPublicKeyLike, NoCustomClaims, VerificationOptions,
    };

    const NOW: u64 = 1_700_000_000;

    fn decode_part(token: &str, index: usize) -> Value {
        let part = token.split('.').nth(index).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn default_claims() {
        let claims = MintSpec::new("agent-1", "acme").claims(NOW).unwrap();
        let expected = serde_json::json!({
            "iss": "switchboard-dev", "aud": "switchboard",
            "iat": NOW, "nbf": NOW, "exp": NOW + 3600,
            "sub": "agent-1", "tenant": "acme",
        });
        assert_eq!(Value::Object(claims), expected);
    }

    #[test]
    fn offsets_and_custom_names() {
        let spec = MintSpec {
            region: Some("eu-west".into()),
            claim_agent: "agent_id".into(),
            claim_tenant: "org".into(),
            claim_region: "geo".into(),
            nbf_offset: Some(300),
            exp_offset: Some(-60),
            ..MintSpec::new("a", "t")
        };
        let claims = spec.claims(NOW).unwrap();
        assert_eq!(claims["nbf"], NOW + 300);
        assert_eq!(claims["exp"], NOW - 60);
        assert_eq!(claims["agent_id"], "a");
        assert_eq!(claims["org"], "t");
        assert_eq!(claims["geo"], "eu-west");
        assert!(!claims.contains_key("sub"));
    }

    #[test]
    fn empty_claim_name_omits_the_claim() {
        let spec = MintSpec {
            claim_tenant: String::new(),
            ..MintSpec::new("a", "t")
        };
        let claims = spec.claims(NOW).unwrap();
        assert!(!claims.values().any(|value| value == "t"));
    }

    #[test]
    fn clashing_claim_names_are_refused() {
        let shadow = MintSpec {
            claim_agent: "iss".into(),
            ..MintSpec::new("a", "t")
        };
        assert!(matches!(shadow.claims(NOW), Err(MintError::ClaimClash(name)) if name == "iss"));
        let twice = MintSpec {
            claim_tenant: "sub".into(),
            ..MintSpec::new("a", "t")
        };
        assert!(matches!(twice.claims(NOW), Err(MintError::ClaimClash(_))));
    }

    #[test]
    fn times_before_the_epoch_are_refused() {
        let spec = MintSpec {
            exp_offset: Some(-(NOW as i64) - 1),
            ..MintSpec::new("a", "t")
        };
        assert!(matches!(
            spec.claims(NOW),
            Err(MintError::TimeOutOfRange { claim: "exp", .. })
        ));
    }

    #[test]
    fn eddsa_token_verifies_and_carries_kid() {
        let pair = Ed25519KeyPair::generate();
        let public = pair.public_key();
        let key = SigningKey::from_pem(&pair.to_pem(), None).unwrap();
        assert_eq!(key.alg(), Alg::EdDSA);
        let spec = MintSpec {
            kid: Some("dev-1".into()),
            ..MintSpec::new("agent-7", "acme")
        };
        let now = jwt_simple::prelude::Clock::now_since_epoch().as_secs();
        let token = mint(&spec, &key, now).unwrap();
        let header = decode_part(&token, 0);
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], "dev-1");
        let verified = public
            .verify_token::<Map<String, Value>>(&token, None)
            .unwrap();
        // jwt-simple files `sub` under `subject`; the rest stays custom.
        assert_eq!(verified.subject.as_deref(), Some("agent-7"));
        assert_eq!(verified.custom.get("tenant"), Some(&Value::from("acme")));
    }

    #[test]
    fn es256_and_hs256_tokens_verify() {
        let now = jwt_simple::prelude::Clock::now_since_epoch().as_secs();
        let spec = MintSpec::new("a", "t");

        let pair = ES256KeyPair::generate();
        let key = SigningKey::from_pem(&pair.to_pem().unwrap(), None).unwrap();
        assert_eq!(key.alg(), Alg::ES256);
        let token = mint(&spec, &key, now).unwrap();
        assert_eq!(decode_part(&token, 0)["alg"], "ES256");
        assert!(pair
            .public_key()
            .verify_token::<NoCustomClaims>(&token, None)
            .is_ok());

        let secret = STANDARD.encode([7u8; 32]);
        let key = SigningKey::hs256_from_secret_text(&format!("{secret}\n")).unwrap();
        let token = mint(&spec, &key, now).unwrap();
        assert_eq!(decode_part(&token, 0)["alg"], "HS256");
        let options = VerificationOptions::default();
        assert!(HS256Key::from_bytes(&[7u8; 32])
            .verify_token::<NoCustomClaims>(&token, Some(options))
            .is_ok());
        assert!(HS256Key::from_bytes(&[8u8; 32])
            .verify_token::<NoCustomClaims>(&token, None)
            .is_err());
    }

    #[test]
    fn short_or_bad_secrets_are_refused() {
        assert!(matches!(
            SigningKey::hs256_from_secret_text(&STANDARD.encode([1u8; 16])),
            Err(MintError::SecretTooShort(16))
        ));
        assert!(matches!(
            SigningKey::hs256_from_secret_text("not base64!"),
            Err(MintError::BadSecretEncoding(_))
        ));
    }

    #[test]
    fn algorithm_from_file_name() {
        let alg = |name: &str| Alg::from_file_name(Path::new(name));
        assert_eq!(alg(".dev/agent-ed25519.pem"), Some(Alg::EdDSA));
        assert_eq!(alg(".dev/agent-rs256.pem"), Some(Alg::RS256));
        assert_eq!(alg("keys/ES256.pem"), Some(Alg::ES256));
        assert_eq!(alg(".dev/agent-hs256.secret"), Some(Alg::HS256));
        assert_eq!(alg("key.pem"), None);
    }

    #[test]
    fn wrong_algorithm_for_pem_is_an_error() {
        let pem = Ed25519KeyPair::generate().to_pem();
        assert!(matches!(
            SigningKey::from_pem(&pem, Some(Alg::ES256)),
            Err(MintError::BadPrivateKey {
                alg: Alg::ES256,
                ..
            })
        ));
        assert!(matches!(
            SigningKey::from_pem("garbage", None),
            Err(MintError::UnknownAlgorithm)
        ));
    }

    #[test]
    fn debug_hides_key_material() {
        let key = SigningKey::EdDSA(Ed25519KeyPair::generate());
        assert_eq!(format!("{key:?}"), "SigningKey(EdDSA, <redacted>)");
    }
}
