//! Development signing keys for agent JWTs: Ed25519, RSA-2048 (RS256) and an HS256 secret.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jwt_simple::prelude::{Ed25519KeyPair, RS256KeyPair};
use rand::RngCore;

pub const ED25519_PRIVATE: &str = "agent-ed25519.pem";
pub const ED25519_PUBLIC: &str = "agent-ed25519.pub.pem";
pub const RS256_PRIVATE: &str = "agent-rs256.pem";
pub const RS256_PUBLIC: &str = "agent-rs256.pub.pem";
pub const HS256_SECRET: &str = "agent-hs256.secret";
/// RSA modulus size: the smallest RFC 7518 §3.3 allows (2048) keeps generation quick.
pub const RSA_BITS: usize = 2048;
/// HS256 secret length: RFC 7518 §3.2 asks for at least the hash size, 256 bits.
pub const HS256_SECRET_BYTES: usize = 32;
/// Private material: owner read/write only.
const PRIVATE_MODE: u32 = 0o600;
/// Public keys: readable by anyone (Envoy may run as another user).
const PUBLIC_MODE: u32 = 0o644;

/// Which keys to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyKinds {
    pub ed25519: bool,
    pub rs256: bool,
    pub hs256: bool,
}

impl KeyKinds {
    pub const ALL: KeyKinds = KeyKinds {
        ed25519: true,
        rs256: true,
        hs256: true,
    };
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyFile {
    /// Written now.
    Written(PathBuf),
    /// Already there and left alone (no `--force`).
    Kept(PathBuf),
}

/// Why key generation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeygenError {
    /// Creating the directory or writing a file failed.
    #[error("{path}")]
    Io { path: PathBuf, source: io::Error },
    /// An existing private key, kept, could not be read back to derive its public key.
    #[error("{path}: existing key is unreadable ({detail}); use --force to replace it")]
    ExistingKey { path: PathBuf, detail: String },
    /// The key library failed.
    #[error("{alg} key generation failed: {detail}")]
    Generate { alg: &'static str, detail: String },
}

/// Makes the keys of `kinds` in `dir`, keeping existing ones unless `force`.
///
/// A kept private key whose public half is missing gets it re-derived, so the pair stays usable.
pub fn generate(dir: &Path, force: bool, kinds: KeyKinds) -> Result<Vec<KeyFile>, KeygenError> {
    fs::create_dir_all(dir).map_err(|source| KeygenError::Io {
        path: dir.to_owned(),
        source,
    })?;
    let mut files = Vec::new();
    if kinds.ed25519 {
        key_pair(
            dir,
            force,
            (ED25519_PRIVATE, ED25519_PUBLIC),
            &mut files,
            || Ok(Ed25519KeyPair::generate().to_pem()),
            |private_pem| {
                Ed25519KeyPair::from_pem(private_pem)
                    .map(|pair| pair.public_key().to_pem())
                    .map_err(|error| error.to_string())
            },
        )?;
    }
    if kinds.rs256 {
        key_pair(
            dir,
            force,
            (RS256_PRIVATE, RS256_PUBLIC),
            &mut files,
            || {
                RS256KeyPair::generate(RSA_BITS)
                    .and_then(|pair| pair.to_pem())
                    .map_err(|error| KeygenError::Generate {
                        alg: "RS256",
                        detail: error.to_string(),
                    })
            },
            |private_pem| {
                RS256KeyPair::from_pem(private_pem)
                    .and_then(|pair| pair.public_key().to_pem())
                    .map_err(|error| error.to_string())
            },
        )?;
    }
    if kinds.hs256 {
        let path = dir.join(HS256_SECRET);
        if path.exists() && !force {
            files.push(KeyFile::Kept(path));
        } else {
            let mut secret = [0u8; HS256_SECRET_BYTES];
            rand::rng().fill_bytes(&mut secret);
            let text = format!("{}\n", STANDARD.encode(secret));
            write_file(&path, text.as_bytes(), PRIVATE_MODE)?;
            files.push(KeyFile::Written(path));
        }
    }
    Ok(files)
}

fn key_pair(
    dir: &Path,
    force: bool,
    (private_name, public_name): (&str, &str),
    files: &mut Vec<KeyFile>,
    new_private_pem: impl FnOnce() -> Result<String, KeygenError>,
    public_pem_of: impl FnOnce(&str) -> Result<String, String>,
) -> Result<(), KeygenError> {
    let private_path = dir.join(private_name);
    let public_path = dir.join(public_name);
    let private_pem = if private_path.exists() && !force {
        files.push(KeyFile::Kept(private_path.clone()));
        if public_path.exists() {
            files.push(KeyFile::Kept(public_path));
            return Ok(());
        }
        fs::read_to_string(&private_path).map_err(|source| KeygenError::Io {
            path: private_path.clone(),
            source,
        })?
    } else {
        let pem = new_private_pem()?;
        write_file(&private_path, pem.as_bytes(), PRIVATE_MODE)?;
        files.push(KeyFile::Written(private_path.clone()));
        pem
    };
    let public_pem = public_pem_of(&private_pem).map_err(|detail| KeygenError::ExistingKey {
        path: private_path,
        detail,
    })?;
    write_file(&public_path, public_pem.as_bytes(), PUBLIC_MODE)?;
    files.push(KeyFile::Written(public_path));
    Ok(())
}

/// Writes via a temporary file created with `mode` and renamed into place, so a private key is
/// never readable by others, not even briefly, and a crash leaves no half-written key.
fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeygenError> {
    let io_error = |source| KeygenError::Io {
        path: path.to_owned(),
        source,
    };
    let mut temporary_name = path.as_os_str().to_owned();
    temporary_name.push(format!(".tmp{}", std::process::id()));
    let temporary = PathBuf::from(temporary_name);
    let _ = fs::remove_file(&temporary);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let written = options.open(&temporary).and_then(|mut file| {
        file.write_all(contents)?;
        file.sync_all()
    });
    if let Err(error) = written.and_then(|()| fs::rename(&temporary, path)) {
        let _ = fs::remove_file(&temporary);
        return Err(io_error(error));
    }
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on an unexpected error"
)]
mod tests {
    use super::*;
    use crate::mint::{mint, MintSpec, SigningKey};
    use jwt_simple::prelude::{Ed25519PublicKey, EdDSAPublicKeyLike, NoCustomClaims};

    const FAST: KeyKinds = KeyKinds {
        ed25519: true,
        rs256: false,
        hs256: true,
    };

    #[test]
    fn writes_usable_keys_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let files = generate(dir.path(), false, FAST).unwrap();
        assert_eq!(
            files,
            vec![
                KeyFile::Written(dir.path().join(ED25519_PRIVATE)),
                KeyFile::Written(dir.path().join(ED25519_PUBLIC)),
                KeyFile::Written(dir.path().join(HS256_SECRET)),
            ]
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |name: &str| {
                fs::metadata(dir.path().join(name))
                    .unwrap()
                    .permissions()
                    .mode()
                    & 0o777
            };
            assert_eq!(mode(ED25519_PRIVATE), 0o600);
            assert_eq!(mode(HS256_SECRET), 0o600);
            assert_eq!(mode(ED25519_PUBLIC), 0o644);
        }
        let private_pem = fs::read_to_string(dir.path().join(ED25519_PRIVATE)).unwrap();
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let public_pem = fs::read_to_string(dir.path().join(ED25519_PUBLIC)).unwrap();
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----"));

        // The pair works end to end: mint with the private key, verify with the public one.
        let key = SigningKey::load(&dir.path().join(ED25519_PRIVATE), None).unwrap();
        let now = jwt_simple::prelude::Clock::now_since_epoch().as_secs();
        let token = mint(&MintSpec::new("a", "t"), &key, now).unwrap();
        let public = Ed25519PublicKey::from_pem(&public_pem).unwrap();
        assert!(public.verify_token::<NoCustomClaims>(&token, None).is_ok());

        let secret = SigningKey::load(&dir.path().join(HS256_SECRET), None).unwrap();
        assert_eq!(secret.alg(), crate::mint::Alg::HS256);
    }

    #[test]
    fn keeps_existing_keys_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), false, FAST).unwrap();
        let before = fs::read(dir.path().join(ED25519_PRIVATE)).unwrap();
        let kept = generate(dir.path(), false, FAST).unwrap();
        assert!(kept.iter().all(|file| matches!(file, KeyFile::Kept(_))));
        assert_eq!(fs::read(dir.path().join(ED25519_PRIVATE)).unwrap(), before);

        let forced = generate(dir.path(), true, FAST).unwrap();
        assert!(forced
            .iter()
            .all(|file| matches!(file, KeyFile::Written(_))));
        assert_ne!(fs::read(dir.path().join(ED25519_PRIVATE)).unwrap(), before);
    }

    #[test]
    fn missing_public_key_is_rederived_from_kept_private_key() {
        let dir = tempfile::tempdir().unwrap();
        generate(dir.path(), false, FAST).unwrap();
        let public_path = dir.path().join(ED25519_PUBLIC);
        let original = fs::read(&public_path).unwrap();
        fs::remove_file(&public_path).unwrap();
        let files = generate(dir.path(), false, FAST).unwrap();
        assert!(files.contains(&KeyFile::Kept(dir.path().join(ED25519_PRIVATE))));
        assert!(files.contains(&KeyFile::Written(public_path.clone())));
        assert_eq!(fs::read(&public_path).unwrap(), original);
    }
}
