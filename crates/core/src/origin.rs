//! Origin allow-list against cross-site WebSocket hijacking: a browser always sends `Origin` on a
//! WebSocket handshake (RFC 6455 §4.1 step 8 / §10.2), so a page on another site is refused here.

use crate::config_error::FieldError;

/// One allowed origin: exact, or any subdomain of a suffix (`https://*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowedOrigin {
    Exact(String),
    Subdomains { scheme: String, suffix: String },
}

/// The validated allow-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginPolicy {
    allowed: Vec<AllowedOrigin>,
    allow_missing: bool,
}

/// What the check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OriginVerdict {
    Allowed,
    /// No `Origin` header and the policy refuses that.
    Missing,
    /// An `Origin` that is not on the list (including `null`).
    NotAllowed,
}

impl OriginPolicy {
    pub fn new(allowed: &[String], allow_missing: bool) -> Result<OriginPolicy, FieldError> {
        let mut parsed = Vec::with_capacity(allowed.len());
        for (i, entry) in allowed.iter().enumerate() {
            let path = format!("origin.allowed[{i}]");
            let normalized = normalize(entry).ok_or_else(|| {
                FieldError::new(
                    &path,
                    format!("\"{entry}\" is not an origin like \"https://desk.example.com\""),
                )
            })?;
            let (scheme, host) = normalized.split_once("://").unwrap_or(("", ""));
            if let Some(suffix) = host.strip_prefix("*.") {
                if suffix.is_empty() || suffix.contains('*') {
                    return Err(FieldError::new(
                        path,
                        format!("\"{entry}\" has a bad wildcard"),
                    ));
                }
                parsed.push(AllowedOrigin::Subdomains {
                    scheme: scheme.to_string(),
                    suffix: format!(".{suffix}"),
                });
            } else if host.contains('*') {
                return Err(FieldError::new(
                    path,
                    format!("\"{entry}\": a wildcard is only allowed as the first label (\"https://*.example.com\")"),
                ));
            } else {
                parsed.push(AllowedOrigin::Exact(normalized));
            }
        }
        if parsed.is_empty() && !allow_missing {
            return Err(FieldError::new(
                "origin.allowed",
                "is empty and allow_missing is false: every upgrade would be refused",
            ));
        }
        Ok(OriginPolicy {
            allowed: parsed,
            allow_missing,
        })
    }

    pub fn allowed_count(&self) -> usize {
        self.allowed.len()
    }

    pub fn check(&self, origin: Option<&str>) -> OriginVerdict {
        let Some(origin) = origin else {
            return if self.allow_missing {
                OriginVerdict::Allowed
            } else {
                OriginVerdict::Missing
            };
        };
        let Some(normalized) = normalize(origin) else {
            return OriginVerdict::NotAllowed;
        };
        let allowed = self.allowed.iter().any(|entry| match entry {
            AllowedOrigin::Exact(exact) => *exact == normalized,
            AllowedOrigin::Subdomains { scheme, suffix } => {
                normalized.split_once("://").is_some_and(|(s, host)| {
                    s == scheme && host.len() > suffix.len() && host.ends_with(suffix.as_str())
                })
            }
        });
        if allowed {
            OriginVerdict::Allowed
        } else {
            OriginVerdict::NotAllowed
        }
    }
}

/// `scheme://host[:port]`, lowercased, default ports dropped; `None` for anything else
/// (paths, userinfo, `null`, other schemes).
fn normalize(origin: &str) -> Option<String> {
    let origin = origin.trim().to_ascii_lowercase();
    let (scheme, rest) = origin.split_once("://")?;
    if scheme != "https" && scheme != "http" {
        return None;
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty()
        || rest.len() > 255
        || !rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:*[]".contains(&b))
    {
        return None;
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(literal) => {
            let (address, after) = literal.split_once(']')?;
            let port = match after {
                "" => None,
                tail => Some(tail.strip_prefix(':')?),
            };
            (format!("[{address}]"), port)
        }
        None => match rest.split_once(':') {
            Some((host, port)) => (host.to_string(), Some(port)),
            None => (rest.to_string(), None),
        },
    };
    if host.is_empty() || (!host.starts_with('[') && host.contains(['[', ']'])) {
        return None;
    }
    let default_port = if scheme == "https" { "443" } else { "80" };
    let host = match port {
        None => host,
        Some(port) if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) => return None,
        Some(port) if port == default_port => host,
        Some(port) => format!("{host}:{port}"),
    };
    Some(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn policy(list: &[&str], allow_missing: bool) -> OriginPolicy {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        OriginPolicy::new(&list, allow_missing).unwrap()
    }

    #[test]
    fn exact_match_ignores_case_default_port_and_trailing_slash() {
        let p = policy(&["https://Desk.Example.com"], true);
        assert_eq!(
            p.check(Some("https://desk.example.com")),
            OriginVerdict::Allowed
        );
        assert_eq!(
            p.check(Some("https://desk.example.com:443")),
            OriginVerdict::Allowed
        );
        assert_eq!(
            p.check(Some("https://desk.example.com/")),
            OriginVerdict::Allowed
        );
        assert_eq!(
            p.check(Some("http://desk.example.com")),
            OriginVerdict::NotAllowed
        );
        assert_eq!(
            p.check(Some("https://desk.example.com:8443")),
            OriginVerdict::NotAllowed
        );
        assert_eq!(p.check(Some("https://evil.com")), OriginVerdict::NotAllowed);
        assert_eq!(
            p.check(Some("https://desk.example.com.evil.com")),
            OriginVerdict::NotAllowed
        );
        assert_eq!(p.check(Some("null")), OriginVerdict::NotAllowed);
    }

    #[test]
    fn wildcard_matches_subdomains_only() {
        let p = policy(&["https://*.example.com"], true);
        assert_eq!(
            p.check(Some("https://a.example.com")),
            OriginVerdict::Allowed
        );
        assert_eq!(
            p.check(Some("https://a.b.example.com")),
            OriginVerdict::Allowed
        );
        assert_eq!(
            p.check(Some("https://example.com")),
            OriginVerdict::NotAllowed
        );
        assert_eq!(
            p.check(Some("https://badexample.com")),
            OriginVerdict::NotAllowed
        );
        assert_eq!(
            p.check(Some("http://a.example.com")),
            OriginVerdict::NotAllowed
        );
    }

    #[test]
    fn missing_origin_follows_the_policy() {
        assert_eq!(
            policy(&["https://a.com"], true).check(None),
            OriginVerdict::Allowed
        );
        assert_eq!(
            policy(&["https://a.com"], false).check(None),
            OriginVerdict::Missing
        );
    }

    #[test]
    fn ports_and_ipv6_are_kept() {
        let p = policy(&["http://localhost:8080", "http://[::1]:3000"], true);
        assert_eq!(
            p.check(Some("http://localhost:8080")),
            OriginVerdict::Allowed
        );
        assert_eq!(p.check(Some("http://localhost")), OriginVerdict::NotAllowed);
        assert_eq!(p.check(Some("http://[::1]:3000")), OriginVerdict::Allowed);
    }

    #[test]
    fn bad_entries_name_their_index() {
        let list = vec!["https://ok.com".to_string(), "desk.example.com".to_string()];
        let err = OriginPolicy::new(&list, true).unwrap_err();
        assert_eq!(err.path, "origin.allowed[1]");
        let list = vec!["https://a.*.com".to_string()];
        assert!(OriginPolicy::new(&list, true).is_err());
        assert!(OriginPolicy::new(&[], false).is_err());
        let list = vec!["https://a.com/path".to_string()];
        assert!(OriginPolicy::new(&list, true).is_err());
    }
}
