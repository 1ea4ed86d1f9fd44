//! Agent signing keys for a test run (generated once, in a temporary folder) and tokens signed
//! with them through `sbctl`'s own minting code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::OnceLock;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use sbctl::keygen::{generate, KeyKinds};
use sbctl::mint::{mint, MintSpec, SigningKey};

pub struct TestKeys {
    _dir: tempfile::TempDir,
    pub ed: SigningKey,
    pub rs: SigningKey,
    pub hs: SigningKey,
    pub ed_public_pem: String,
    pub rs_public_pem: String,
    pub hs_secret_b64: String,
}

pub fn keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), false, KeyKinds::ALL).unwrap();
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        TestKeys {
            ed: SigningKey::load(&dir.path().join("agent-ed25519.pem"), None).unwrap(),
            rs: SigningKey::load(&dir.path().join("agent-rs256.pem"), None).unwrap(),
            hs: SigningKey::load_hs256_secret(&dir.path().join("agent-hs256.secret")).unwrap(),
            ed_public_pem: read("agent-ed25519.pub.pem"),
            rs_public_pem: read("agent-rs256.pub.pem"),
            hs_secret_b64: read("agent-hs256.secret").trim().to_string(),
            _dir: dir,
        }
    })
}

/// The EdDSA private key file (kid `ed-1` in the test configuration), for `sbctl bench --key`.
pub fn ed_key_path() -> std::path::PathBuf {
    keys()._dir.path().join("agent-ed25519.pem")
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The filter configuration the tests start from: all three key kinds, issuer and audience
/// enforced, the Genesys profile; `extra` replaces top-level fields.
pub fn filter_config(extra: serde_json::Value) -> String {
    let k = keys();
    let mut config = serde_json::json!({
        "profile": "genesys",
        "identity": {
            "keys": [
                { "kid": "ed-1", "alg": "EdDSA", "pem": k.ed_public_pem },
                { "kid": "rs-1", "alg": "RS256", "pem": k.rs_public_pem },
                { "kid": "hs-1", "alg": "HS256", "secret": k.hs_secret_b64 }
            ],
            "issuer": "switchboard-dev",
            "audience": "switchboard",
            "leeway": "5s"
        }
    });
    if let (Some(target), Some(extra)) = (config.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            target.insert(key.clone(), value.clone());
        }
    }
    config.to_string()
}

pub fn spec(agent: &str, tenant: &str, kid: &str) -> MintSpec {
    let mut spec = MintSpec::new(agent, tenant);
    spec.kid = Some(kid.to_string());
    spec.region = Some("eu-west".to_string());
    spec
}

pub fn sign(spec: &MintSpec, key: &SigningKey) -> String {
    mint(spec, key, now()).unwrap()
}

/// An EdDSA token for the agent that the test configuration accepts.
pub fn token(agent: &str, tenant: &str) -> String {
    sign(&spec(agent, tenant, "ed-1"), &keys().ed)
}

pub fn b64u(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}
