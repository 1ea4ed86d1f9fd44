//! `sbctl render-config`: turns an Envoy YAML template such as envoy/switchboard.yaml into a
//! runnable configuration by plain text substitution, so everything not substituted stays
//! byte-identical (comments included) and a reader can diff the two.

use std::fs;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jwt_simple::prelude::Ed25519PublicKey;

use crate::keygen::{self, KeyFile, KeyKinds};

/// Stands for the development Ed25519 public key: base64 of its raw 32 bytes.
pub const DEV_KEY_PLACEHOLDER: &str = "SWITCHBOARD_DEV_ED25519_PUBLIC_KEY";
/// The Wasm module path the template carries, relative to the repository root.
pub const TEMPLATE_WASM_PATH: &str = "target/wasm32-wasip1/release/switchboard.wasm";
/// Ports the template listens on and forwards to.
pub const TEMPLATE_GATEWAY_PORT: u16 = 10000;
pub const TEMPLATE_ADMIN_PORT: u16 = 9901;
pub const TEMPLATE_PLATFORM_PORT: u16 = 9001;
/// Keys a rendered configuration needs: Ed25519 for the template, plus the HS256 secret because
/// it costs nothing (RSA generation is slow and nothing rendered uses it).
pub const DEV_KEY_KINDS: KeyKinds = KeyKinds {
    ed25519: true,
    rs256: false,
    hs256: true,
};
/// Largest template read.
pub const MAX_TEMPLATE_BYTES: u64 = 4 * 1024 * 1024;

/// What to substitute besides the key; `None` leaves the template's value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderOptions {
    /// Replaces [`TEMPLATE_WASM_PATH`] with this path, made absolute.
    pub wasm: Option<PathBuf>,
    /// Replaces `port_value: 10000` (the gateway listener).
    pub listen_port: Option<u16>,
    /// Replaces `port_value: 9901` (the admin interface).
    pub admin_port: Option<u16>,
    /// Replaces `port_value: 9001` (the platform endpoint).
    pub platform_port: Option<u16>,
}

/// Why rendering failed.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The public key file could not be read.
    #[error("reading {path}: {source}")]
    ReadKey {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The public key file is not an Ed25519 public key PEM.
    #[error("{path}: not an Ed25519 public key PEM ({detail})")]
    BadKey { path: PathBuf, detail: String },
    /// The Wasm path cannot be written into YAML as a plain scalar.
    #[error("--wasm {path}: {reason}")]
    WasmPath { path: PathBuf, reason: &'static str },
    /// A substitution was asked for but the template has nothing to substitute.
    #[error("the template has no `{pattern}` for {flag} to replace")]
    NotInTemplate { pattern: String, flag: &'static str },
    /// The template could not be read or is too large.
    #[error("reading template {path}: {detail}")]
    ReadTemplate { path: PathBuf, detail: String },
}

/// Renders `template`: the key placeholder (if present) becomes the public key from
/// `keys_dir/agent-ed25519.pub.pem`, and each option given replaces its template value. Asking
/// for a substitution the template has no place for is an error, so a flag never silently does
/// nothing.
pub fn render(template: &str, keys_dir: &Path, opts: &RenderOptions) -> anyhow::Result<String> {
    let mut substitutions = Vec::new();
    if template.contains(DEV_KEY_PLACEHOLDER) {
        substitutions.push(Substitution {
            pattern: DEV_KEY_PLACEHOLDER.to_owned(),
            replacement: dev_public_key_base64(keys_dir)?,
            flag: "the development key",
        });
    }
    if let Some(wasm) = &opts.wasm {
        substitutions.push(Substitution {
            pattern: TEMPLATE_WASM_PATH.to_owned(),
            replacement: yaml_safe_absolute(wasm)?,
            flag: "--wasm",
        });
    }
    for (port, template_port, flag) in [
        (opts.listen_port, TEMPLATE_GATEWAY_PORT, "--listen-port"),
        (opts.admin_port, TEMPLATE_ADMIN_PORT, "--admin-port"),
        (
            opts.platform_port,
            TEMPLATE_PLATFORM_PORT,
            "--platform-port",
        ),
    ] {
        if let Some(port) = port {
            substitutions.push(Substitution {
                pattern: format!("port_value: {template_port}"),
                replacement: format!("port_value: {port}"),
                flag,
            });
        }
    }
    Ok(substitute(template, &substitutions)?)
}

/// Reads a template, refusing anything implausibly large.
pub fn read_template(path: &Path) -> Result<String, RenderError> {
    let failed = |detail: String| RenderError::ReadTemplate {
        path: path.to_owned(),
        detail,
    };
    let length = fs::metadata(path)
        .map_err(|error| failed(error.to_string()))?
        .len();
    if length > MAX_TEMPLATE_BYTES {
        return Err(failed(format!("larger than {MAX_TEMPLATE_BYTES} bytes")));
    }
    fs::read_to_string(path).map_err(|error| failed(error.to_string()))
}

/// Makes the development keys in `dir` unless they exist; returns what it did.
pub fn ensure_dev_keys(dir: &Path) -> Result<Vec<KeyFile>, keygen::KeygenError> {
    keygen::generate(dir, false, DEV_KEY_KINDS)
}

/// The standard, padded base64 of the raw 32-byte Ed25519 public key in `keys_dir`: the form
/// the filter's `"base64"` key field takes for EdDSA.
pub fn dev_public_key_base64(keys_dir: &Path) -> Result<String, RenderError> {
    let path = keys_dir.join(keygen::ED25519_PUBLIC);
    let pem = fs::read_to_string(&path).map_err(|source| RenderError::ReadKey {
        path: path.clone(),
        source,
    })?;
    let key = Ed25519PublicKey::from_pem(&pem).map_err(|error| RenderError::BadKey {
        path,
        detail: error.to_string(),
    })?;
    Ok(STANDARD.encode(key.to_bytes()))
}

/// `path` made absolute, as long as it reads the same as a YAML plain scalar in block or flow
/// context (no indicators, quotes, escapes or control characters).
fn yaml_safe_absolute(path: &Path) -> Result<String, RenderError> {
    let failed = |reason| RenderError::WasmPath {
        path: path.to_owned(),
        reason,
    };
    let absolute = std::path::absolute(path).map_err(|_| failed("cannot be made absolute"))?;
    let text = absolute
        .to_str()
        .ok_or_else(|| failed("is not valid UTF-8"))?;
    let unsafe_char = |c: char| {
        c.is_control()
            || matches!(
                c,
                ':' | '#' | ',' | '[' | ']' | '{' | '}' | '"' | '\'' | '\\'
            )
    };
    if text.chars().any(unsafe_char) || text.ends_with(' ') {
        return Err(failed(
            "contains a character YAML would read differently (one of :#,[]{}\"'\\, a control character, or a trailing space)",
        ));
    }
    Ok(text.to_owned())
}

struct Substitution {
    pattern: String,
    replacement: String,
    flag: &'static str,
}

/// Replaces every occurrence of every pattern in one pass over `template`, so a replacement is
/// never itself replaced (`--listen-port 9901` must not then become the admin port). A pattern
/// ending in a digit does not match inside a longer number (`port_value: 100001`).
fn substitute(template: &str, substitutions: &[Substitution]) -> Result<String, RenderError> {
    let mut matches: Vec<(usize, usize)> = Vec::new();
    for (index, substitution) in substitutions.iter().enumerate() {
        let pattern = substitution.pattern.as_str();
        let needs_boundary = pattern.ends_with(|c: char| c.is_ascii_digit());
        let before = matches.len();
        matches.extend(
            template
                .match_indices(pattern)
                .filter(|(start, _)| {
                    !needs_boundary
                        || !template
                            .as_bytes()
                            .get(start + pattern.len())
                            .is_some_and(u8::is_ascii_digit)
                })
                .map(|(start, _)| (start, index)),
        );
        if matches.len() == before {
            return Err(RenderError::NotInTemplate {
                pattern: pattern.to_owned(),
                flag: substitution.flag,
            });
        }
    }
    matches.sort_unstable();

    let mut rendered = String::with_capacity(template.len() + 256);
    let mut copied_to = 0;
    for (start, index) in matches {
        let Some(substitution) = substitutions.get(index) else {
            continue;
        };
        // Patterns cannot overlap (none is a substring of another), but stay correct if a
        // later one ever could: a match inside text already replaced is skipped.
        if start < copied_to {
            continue;
        }
        rendered.push_str(template.get(copied_to..start).unwrap_or_default());
        rendered.push_str(&substitution.replacement);
        copied_to = start + substitution.pattern.len();
    }
    rendered.push_str(template.get(copied_to..).unwrap_or_default());
    Ok(rendered)
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
    use crate::check;

    /// The shipped template, so these tests follow it.
    const SHIPPED: &str = include_str!("../../../envoy/switchboard.yaml");

    fn keys() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        ensure_dev_keys(dir.path()).unwrap();
        dir
    }

    #[test]
    fn key_placeholder_becomes_the_raw_public_key() {
        let dir = keys();
        let rendered = render(SHIPPED, dir.path(), &RenderOptions::default()).unwrap();
        let key = dev_public_key_base64(dir.path()).unwrap();
        assert_eq!(STANDARD.decode(&key).unwrap().len(), 32);
        assert_eq!(rendered, SHIPPED.replace(DEV_KEY_PLACEHOLDER, &key));
        // And the filter accepts what came out.
        let checked = check::check_bytes(rendered.as_bytes()).unwrap();
        assert_eq!(checked.len(), 1);
        assert!(checked[0].is_valid(), "{:?}", checked[0].lines());
        // The unrendered template does not pass.
        let checked = check::check_bytes(SHIPPED.as_bytes()).unwrap();
        assert!(!checked[0].is_valid());
    }

    #[test]
    fn options_replace_the_wasm_path_and_ports_only() {
        let dir = keys();
        let options = RenderOptions {
            wasm: Some(PathBuf::from("/opt/sb/switchboard.wasm")),
            listen_port: Some(9901),
            admin_port: Some(10000),
            platform_port: Some(19001),
        };
        let rendered = render(SHIPPED, dir.path(), &options).unwrap();
        assert!(rendered.contains("filename: /opt/sb/switchboard.wasm\n"));
        assert!(!rendered.contains(TEMPLATE_WASM_PATH));
        assert!(!rendered.contains(DEV_KEY_PLACEHOLDER));
        // Swapped ports prove the single pass: nothing is replaced twice.
        let admin = rendered.find("admin:").unwrap();
        let gateway = rendered.find("- name: gateway").unwrap();
        assert!(rendered[admin..gateway].contains("port_value: 10000 }"));
        assert!(rendered[gateway..].contains("port_value: 9901 }"));
        assert!(rendered.contains("port_value: 19001 }"));
        assert!(!rendered.contains("port_value: 9001 }"));
        // Line for line, only the substituted lines differ.
        let changed: Vec<(&str, &str)> = SHIPPED
            .lines()
            .zip(rendered.lines())
            .filter(|(before, after)| before != after)
            .collect();
        let substituted = SHIPPED
            .lines()
            .filter(|line| {
                [
                    DEV_KEY_PLACEHOLDER,
                    TEMPLATE_WASM_PATH,
                    "port_value: 10000 ",
                    "port_value: 9901 ",
                    "port_value: 9001 ",
                ]
                .iter()
                .any(|pattern| line.contains(pattern))
            })
            .count();
        assert_eq!(changed.len(), substituted, "{changed:#?}");
        assert_eq!(SHIPPED.lines().count(), rendered.lines().count());
    }

    #[test]
    fn relative_wasm_paths_become_absolute() {
        let dir = keys();
        let options = RenderOptions {
            wasm: Some(PathBuf::from("target/x.wasm")),
            ..RenderOptions::default()
        };
        let rendered = render(SHIPPED, dir.path(), &options).unwrap();
        let expected = std::env::current_dir().unwrap().join("target/x.wasm");
        assert!(rendered.contains(&format!("filename: {}\n", expected.display())));
    }

    #[test]
    fn ports_match_whole_numbers_only() {
        let template =
            "a: { port_value: 10000 }\nb: { port_value: 100001 }\nc: { port_value: 10000}\n";
        let options = RenderOptions {
            listen_port: Some(7),
            ..RenderOptions::default()
        };
        let rendered = render(template, Path::new("/nonexistent"), &options).unwrap();
        assert_eq!(
            rendered,
            "a: { port_value: 7 }\nb: { port_value: 100001 }\nc: { port_value: 7}\n"
        );
    }

    #[test]
    fn substitutions_without_a_target_are_errors() {
        let options = RenderOptions {
            admin_port: Some(1234),
            ..RenderOptions::default()
        };
        let error = render("admin: {}\n", Path::new("/nonexistent"), &options).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the template has no `port_value: 9901` for --admin-port to replace"
        );
        // A template without the placeholder needs no key at all.
        assert_eq!(
            render(
                "a: 1\n",
                Path::new("/nonexistent"),
                &RenderOptions::default()
            )
            .unwrap(),
            "a: 1\n"
        );
    }

    #[test]
    fn missing_or_bad_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let error = render(SHIPPED, dir.path(), &RenderOptions::default()).unwrap_err();
        assert!(
            error.to_string().contains(keygen::ED25519_PUBLIC),
            "{error}"
        );
        fs::write(dir.path().join(keygen::ED25519_PUBLIC), "not a pem").unwrap();
        let error = render(SHIPPED, dir.path(), &RenderOptions::default()).unwrap_err();
        assert!(
            error.to_string().contains("not an Ed25519 public key PEM"),
            "{error}"
        );
    }

    #[test]
    fn yaml_hostile_wasm_paths_are_refused() {
        let dir = keys();
        for path in [
            "/tmp/a: b.wasm",
            "/tmp/#x.wasm",
            "/tmp/{x}.wasm",
            "/tmp/x\n.wasm",
        ] {
            let options = RenderOptions {
                wasm: Some(PathBuf::from(path)),
                ..RenderOptions::default()
            };
            let error = render(SHIPPED, dir.path(), &options).unwrap_err();
            assert!(error.to_string().starts_with("--wasm "), "{path}: {error}");
        }
    }
}
