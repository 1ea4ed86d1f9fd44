//! The request-header pipeline, in the order it runs: early data → origin → agent identity →
//! header hygiene → routing key. It returns a verdict; the glue only carries it out.

use crate::config::{Config, EarlyDataPolicy, TokenSource};
use crate::identity::cache::{decode_entry, encode_entry, slot_key, token_digest};
use crate::identity::jwt::{AuthError, VerifiedIdentity};
use crate::origin::OriginVerdict;
use crate::routing::routing_key;

/// Shared-data key prefix of the verified-token cache.
pub const VERIFY_CACHE_PREFIX: &str = "sb.vc.";

/// The verified-token cache as the pipeline sees it (Envoy shared data in the filter).
pub trait VerdictCache {
    fn load(&mut self, key: &str) -> Option<Vec<u8>>;
    fn store(&mut self, key: &str, value: &[u8]);
}

/// A request as Envoy presents it: lowercase names, pseudo-headers included, raw values.
pub struct RequestHead<'a> {
    pub headers: &'a [(String, Vec<u8>)],
}

impl<'a> RequestHead<'a> {
    fn values(&self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }
    fn has(&self, name: &str) -> bool {
        self.headers
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }
    fn first_str(&self, name: &'a str) -> Option<&'a str> {
        self.values(name)
            .next()
            .and_then(|v| std::str::from_utf8(v).ok())
    }
    fn method(&self) -> &'a str {
        self.first_str(":method").unwrap_or("")
    }
    fn path(&self) -> &'a str {
        self.first_str(":path").unwrap_or("")
    }

    /// A WebSocket handshake: HTTP/1.1 `GET` + `Upgrade: websocket` (RFC 6455 §4.1), or an
    /// HTTP/2 extended CONNECT with `:protocol: websocket` (RFC 8441 §4).
    pub fn is_websocket_upgrade(&self) -> bool {
        match self.method() {
            "GET" => self.values("upgrade").any(|v| {
                v.split(|b| *b == b',')
                    .any(|token| trim(token).eq_ignore_ascii_case(b"websocket"))
            }),
            "CONNECT" => self
                .first_str(":protocol")
                .is_some_and(|p| p.eq_ignore_ascii_case("websocket")),
            _ => false,
        }
    }

    /// RFC 8470 §5.1: a request received in early data carries `Early-Data: 1`.
    fn arrived_in_early_data(&self) -> bool {
        self.values("early-data").any(|v| trim(v) == b"1")
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or(&[])
}

/// RFC 9110 §9.2.1 safe methods.
fn is_safe_method(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "OPTIONS" | "TRACE")
}

/// Why a request was refused; `label()` is the metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RejectReason {
    /// Arrived in TLS early data (RFC 8470).
    EarlyData,
    /// `Origin` not on the allow-list, or missing where the policy requires one.
    Origin,
    /// The agent's JWT is missing or failed verification.
    Auth(AuthError),
}

impl RejectReason {
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::EarlyData => "early_data",
            RejectReason::Origin => "origin",
            RejectReason::Auth(_) => "auth",
        }
    }
}

/// A local reply the glue sends instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub reason: RejectReason,
    pub www_authenticate: Option<&'static str>,
    pub body: &'static str,
}

/// How the agent's identity was established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPath {
    /// A verdict for the same token was in the verified-token cache.
    Cached,
    /// The signature was checked now.
    Verified,
}

/// Who is on the other end of an accepted session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionIdentity {
    pub agent_id: String,
    pub tenant_id: String,
    pub region: Option<String>,
    pub routing_key: String,
    pub expires_at: u64,
}

/// Subprotocols as the client offered them, minus the gateway's credential entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubprotocolPlan {
    pub offered: Vec<String>,
    /// True when the client offered none and the gateway offered the profile's instead.
    pub offered_by_gateway: bool,
}

/// What the glue must do to the request before letting it continue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forward {
    pub upgrade: bool,
    /// Remove every copy of these headers first.
    pub remove_headers: Vec<String>,
    /// Then set these (replacing).
    pub set_headers: Vec<(String, String)>,
    /// A new `:path` when a credential was removed from the query.
    pub path: Option<String>,
    pub identity: Option<SessionIdentity>,
    pub auth: Option<AuthPath>,
    pub subprotocols: SubprotocolPlan,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)] // built once per request; boxing buys nothing
pub enum Verdict {
    Reject(Rejection),
    Forward(Forward),
}

/// Runs the pipeline on one request.
pub fn decide(
    config: &Config,
    request: &RequestHead<'_>,
    now: u64,
    cache: &mut dyn VerdictCache,
) -> Verdict {
    let upgrade = request.is_websocket_upgrade();

    // RFC 8470 §5.2: a server that cannot risk a replay answers 425 (Too Early).
    if request.arrived_in_early_data() {
        let reject = match config.early_data {
            EarlyDataPolicy::Off => false,
            EarlyDataPolicy::RejectUpgrades => upgrade,
            EarlyDataPolicy::RejectUnsafe => upgrade || !is_safe_method(request.method()),
        };
        if reject {
            return Verdict::Reject(Rejection {
                status: 425,
                reason: RejectReason::EarlyData,
                www_authenticate: None,
                body: "too early: retry after the TLS handshake completes\n",
            });
        }
    }

    if upgrade {
        if let Some(policy) = &config.origin {
            if policy.check(request.first_str("origin")) != OriginVerdict::Allowed {
                return Verdict::Reject(Rejection {
                    status: 403,
                    reason: RejectReason::Origin,
                    www_authenticate: None,
                    body: "origin not allowed\n",
                });
            }
        }
    }

    let mut forward = Forward {
        upgrade,
        remove_headers: config
            .gateway_owned_headers()
            .iter()
            .map(|h| h.to_string())
            .collect(),
        ..Forward::default()
    };

    if !upgrade && !config.identity.require_for_all_requests {
        forward.remove_headers.retain(|name| request.has(name));
        return Verdict::Forward(forward);
    }

    let credentials = Credentials::collect(config, request);
    let identity = match authenticate(config, credentials.token.as_deref(), now, cache) {
        Ok(found) => found,
        Err(err) => return Verdict::Reject(auth_rejection(err)),
    };
    let (verified, path) = identity;
    forward.auth = Some(path);

    // The gateway's own credential never travels upstream.
    if credentials.bearer_in_authorization {
        forward.remove_headers.push("authorization".to_string());
    }
    forward.path = credentials.rewritten_path;
    if upgrade {
        forward.subprotocols = SubprotocolPlan {
            offered: credentials.other_subprotocols.clone(),
            offered_by_gateway: credentials.other_subprotocols.is_empty()
                && !config.platform.subprotocols.is_empty(),
        };
        if credentials.had_subprotocol_header || forward.subprotocols.offered_by_gateway {
            forward
                .remove_headers
                .push("sec-websocket-protocol".to_string());
            let upstream_offer = if forward.subprotocols.offered_by_gateway {
                config.platform.subprotocols.join(", ")
            } else {
                credentials.other_subprotocols.join(", ")
            };
            if !upstream_offer.is_empty() {
                forward
                    .set_headers
                    .push(("sec-websocket-protocol".to_string(), upstream_offer));
            }
        }
    }

    // RFC 7692 frames are compressed: a gateway that reads payloads strips the offer so the
    // session stays readable (the platform then answers without the extension).
    if upgrade
        && config.frames.payload_features()
        && config.frames.deflate == crate::config::DeflatePolicy::Strip
    {
        forward
            .remove_headers
            .push("sec-websocket-extensions".to_string());
    }

    let key = routing_key(&verified.tenant_id, &verified.agent_id);
    forward
        .set_headers
        .push((config.routing_header.clone(), key.clone()));
    forward.set_headers.push((
        config.platform.agent_header.clone(),
        verified.agent_id.clone(),
    ));
    forward.set_headers.push((
        config.platform.tenant_header.clone(),
        verified.tenant_id.clone(),
    ));
    if let Some(region) = &verified.region {
        forward
            .set_headers
            .push((config.platform.region_header.clone(), region.clone()));
    }
    // Removing an absent header is a wasted hostcall on the hot path.
    forward.remove_headers.retain(|name| request.has(name));
    forward.identity = Some(SessionIdentity {
        agent_id: verified.agent_id,
        tenant_id: verified.tenant_id,
        region: verified.region,
        routing_key: key,
        expires_at: verified.expires_at,
    });
    Verdict::Forward(forward)
}

fn auth_rejection(err: AuthError) -> Rejection {
    // RFC 6750 §3.1: a request without credentials gets the challenge without an error code;
    // a presented token that fails gets error="invalid_token".
    let www_authenticate = if err == AuthError::Missing {
        "Bearer realm=\"switchboard\""
    } else {
        "Bearer realm=\"switchboard\", error=\"invalid_token\""
    };
    Rejection {
        status: 401,
        reason: RejectReason::Auth(err),
        www_authenticate: Some(www_authenticate),
        body: "unauthorized\n",
    }
}

fn authenticate(
    config: &Config,
    token: Option<&str>,
    now: u64,
    cache: &mut dyn VerdictCache,
) -> Result<(VerifiedIdentity, AuthPath), AuthError> {
    let token = token.ok_or(AuthError::Missing)?;
    let identity = &config.identity;
    let cache_key = (identity.cache_slots > 0).then(|| {
        let digest = token_digest(token);
        let key = slot_key(VERIFY_CACHE_PREFIX, &digest, identity.cache_slots);
        (digest, key)
    });
    if let Some((digest, key)) = &cache_key {
        if let Some(bytes) = cache.load(key) {
            if let Some(hit) = decode_entry(
                &bytes,
                digest,
                identity.fingerprint,
                now,
                identity.leeway_secs,
            ) {
                return Ok((hit, AuthPath::Cached));
            }
        }
    }
    let verified = identity.verifier.verify(token, now)?;
    if let Some((digest, key)) = &cache_key {
        cache.store(key, &encode_entry(digest, identity.fingerprint, &verified));
    }
    Ok((verified, AuthPath::Verified))
}

/// Where the agent's credential was found, and the request with it removed.
#[derive(Debug, Default)]
struct Credentials {
    token: Option<String>,
    bearer_in_authorization: bool,
    rewritten_path: Option<String>,
    had_subprotocol_header: bool,
    other_subprotocols: Vec<String>,
}

impl Credentials {
    fn collect(config: &Config, request: &RequestHead<'_>) -> Credentials {
        let identity = &config.identity;
        let mut found = Credentials::default();

        let mut from_authorization = None;
        for value in request.values("authorization") {
            if let Some(token) = bearer_token(value) {
                found.bearer_in_authorization = true;
                from_authorization.get_or_insert(token);
            }
        }

        let mut from_query = None;
        let path = request.path();
        if let Some((base, query)) = path.split_once('?') {
            let mut kept: Vec<&str> = Vec::new();
            let mut removed = false;
            for pair in query.split('&') {
                let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
                if name == identity.query_param {
                    removed = true;
                    if from_query.is_none() {
                        from_query = percent_decode(value);
                    }
                } else {
                    kept.push(pair);
                }
            }
            if removed {
                found.rewritten_path = Some(if kept.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", kept.join("&"))
                });
            }
        }

        let mut from_subprotocol = None;
        for value in request.values("sec-websocket-protocol") {
            found.had_subprotocol_header = true;
            let Ok(value) = std::str::from_utf8(value) else {
                continue;
            };
            for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                match entry.strip_prefix(identity.subprotocol_prefix.as_str()) {
                    Some(token) => {
                        from_subprotocol.get_or_insert_with(|| token.to_string());
                    }
                    None => found.other_subprotocols.push(entry.to_string()),
                }
            }
        }

        for source in &identity.sources {
            let candidate = match source {
                TokenSource::Authorization => from_authorization.take(),
                TokenSource::Query => from_query.take(),
                TokenSource::Subprotocol => from_subprotocol.take(),
            };
            if candidate.is_some() {
                found.token = candidate;
                break;
            }
        }
        found
    }
}

/// RFC 6750 §2.1: `Authorization: Bearer <b64token>`, scheme case-insensitive.
fn bearer_token(value: &[u8]) -> Option<String> {
    let value = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = rest.trim();
    (!token.is_empty()).then(|| token.to_string())
}

/// Decodes `%XX` and `+`; `None` for malformed escapes or non-UTF-8 (such a token cannot verify).
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// What to do with the subprotocol the platform answered in its 101.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubprotocolAnswer {
    /// None answered, or one the client offered: pass the response on.
    Keep,
    /// The client offered none; the platform answered one the gateway offered: remove it.
    Strip,
    /// The platform answered something the client never offered (RFC 6455 §4.1: the client
    /// would fail the connection), so the gateway fails it with a clear status instead.
    Reject,
}

pub fn check_answered_subprotocol(
    plan: &SubprotocolPlan,
    answered: Option<&str>,
) -> SubprotocolAnswer {
    let Some(answered) = answered.map(str::trim).filter(|a| !a.is_empty()) else {
        return SubprotocolAnswer::Keep;
    };
    if plan.offered.iter().any(|o| o == answered) {
        SubprotocolAnswer::Keep
    } else if plan.offered.is_empty() {
        SubprotocolAnswer::Strip
    } else {
        SubprotocolAnswer::Reject
    }
}

/// The upgrade result label for an upgrade the platform answered with something other than a
/// WebSocket accept, by status class.
pub fn upstream_result(status: u16) -> &'static str {
    match status {
        100..=199 => "upstream_1xx",
        200..=299 => "upstream_2xx",
        300..=399 => "upstream_3xx",
        400..=499 => "upstream_4xx",
        500..=599 => "upstream_5xx",
        _ => "upstream_other",
    }
}

/// RFC 6455 §4.2.2: the server accepts with 101 and `Upgrade: websocket`; nothing else makes a
/// stream a WebSocket session.
pub fn is_websocket_accept(status: Option<&str>, upgrade_header: Option<&[u8]>) -> bool {
    status == Some("101")
        && upgrade_header.is_some_and(|v| trim(v).eq_ignore_ascii_case(b"websocket"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::identity::fixtures::{hs_token, payload, HS_SECRET_B64, NOW};
    use std::collections::HashMap;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[derive(Default)]
    struct MapCache {
        entries: HashMap<String, Vec<u8>>,
        loads: usize,
    }
    impl VerdictCache for MapCache {
        fn load(&mut self, key: &str) -> Option<Vec<u8>> {
            self.loads += 1;
            self.entries.get(key).cloned()
        }
        fn store(&mut self, key: &str, value: &[u8]) {
            self.entries.insert(key.to_string(), value.to_vec());
        }
    }

    fn config_with(extra: serde_json::Value) -> Config {
        let mut value = serde_json::json!({
            "profile": "genesys",
            "identity": {
                "keys": [ { "kid": "hs-1", "alg": "HS256", "secret": HS_SECRET_B64 } ],
                "issuer": "https://idp.test",
                "audience": "switchboard"
            }
        });
        if let (Some(target), Some(extra)) = (value.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                target.insert(k.clone(), v.clone());
            }
        }
        Config::from_json(&serde_json::to_vec(&value).unwrap()).unwrap()
    }

    fn good_token() -> String {
        hs_token(&payload(
            Some(NOW + 600),
            serde_json::json!({ "sub": "agent-7", "tenant": "acme", "region": "eu-west",
                                "iss": "https://idp.test", "aud": "switchboard" }),
        ))
    }

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    fn upgrade_headers(extra: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
        let mut all = vec![
            (":method", "GET"),
            (":path", "/ws"),
            (":authority", "gateway"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-version", "13"),
        ];
        all.extend_from_slice(extra);
        headers(&all)
    }

    fn run(config: &Config, headers: &[(String, Vec<u8>)]) -> Verdict {
        decide(
            config,
            &RequestHead { headers },
            NOW,
            &mut MapCache::default(),
        )
    }

    fn forwarded(verdict: Verdict) -> Forward {
        match verdict {
            Verdict::Forward(f) => f,
            Verdict::Reject(r) => panic!("expected forward, got {r:?}"),
        }
    }

    fn rejected(verdict: Verdict) -> Rejection {
        match verdict {
            Verdict::Reject(r) => r,
            Verdict::Forward(f) => panic!("expected rejection, got {f:?}"),
        }
    }

    fn set(forward: &Forward, name: &str) -> Option<String> {
        forward
            .set_headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    #[test]
    fn recognises_websocket_upgrades() {
        let h = upgrade_headers(&[]);
        assert!(RequestHead { headers: &h }.is_websocket_upgrade());
        let h = headers(&[(":method", "GET"), ("upgrade", "h2c, WebSocket")]);
        assert!(RequestHead { headers: &h }.is_websocket_upgrade());
        let h = headers(&[(":method", "CONNECT"), (":protocol", "websocket")]);
        assert!(RequestHead { headers: &h }.is_websocket_upgrade());
        let h = headers(&[(":method", "POST"), ("upgrade", "websocket")]);
        assert!(!RequestHead { headers: &h }.is_websocket_upgrade());
        let h = headers(&[(":method", "GET")]);
        assert!(!RequestHead { headers: &h }.is_websocket_upgrade());
    }

    #[test]
    fn accepted_upgrade_sets_identity_and_routing_headers() {
        let config = config_with(serde_json::json!({}));
        let token = good_token();
        let auth = format!("Bearer {token}");
        let f = forwarded(run(
            &config,
            &upgrade_headers(&[
                ("authorization", &auth),
                ("x-agent-routing-key", "spoofed"),
                ("X-Genesys-User-Id", "someone-else"),
                ("x-genesys-organization-id", "other"),
                ("x-genesys-region", "mars"),
            ]),
        ));
        assert!(f.upgrade);
        let key = routing_key("acme", "agent-7");
        assert_eq!(set(&f, "x-agent-routing-key"), Some(key.clone()));
        assert_eq!(set(&f, "x-genesys-user-id").as_deref(), Some("agent-7"));
        assert_eq!(
            set(&f, "x-genesys-organization-id").as_deref(),
            Some("acme")
        );
        assert_eq!(set(&f, "x-genesys-region").as_deref(), Some("eu-west"));
        // The agent's credential and every client copy of gateway headers are removed.
        for name in [
            "authorization",
            "x-agent-routing-key",
            "x-genesys-user-id",
            "x-genesys-organization-id",
            "x-genesys-region",
        ] {
            assert!(
                f.remove_headers.iter().any(|h| h == name),
                "{name} not removed"
            );
        }
        assert_eq!(f.identity.as_ref().unwrap().routing_key, key);
        // Headers the client did not send cost no removal.
        let plain = forwarded(run(&config, &upgrade_headers(&[("authorization", &auth)])));
        assert_eq!(plain.remove_headers, vec!["authorization".to_string()]);
        assert_eq!(f.auth, Some(AuthPath::Verified));
        // The platform's subprotocol is offered when the client offered none.
        assert_eq!(
            set(&f, "sec-websocket-protocol").as_deref(),
            Some("v2.realtime-events")
        );
        assert!(f.subprotocols.offered_by_gateway);
    }

    #[test]
    fn second_upgrade_with_the_same_token_hits_the_cache() {
        let config = config_with(serde_json::json!({}));
        let auth = format!("Bearer {}", good_token());
        let h = upgrade_headers(&[("authorization", &auth)]);
        let mut cache = MapCache::default();
        let first = forwarded(decide(
            &config,
            &RequestHead { headers: &h },
            NOW,
            &mut cache,
        ));
        let second = forwarded(decide(
            &config,
            &RequestHead { headers: &h },
            NOW,
            &mut cache,
        ));
        assert_eq!(first.auth, Some(AuthPath::Verified));
        assert_eq!(second.auth, Some(AuthPath::Cached));
        assert_eq!(first.identity, second.identity);
        // After expiry the cached verdict is no longer honoured.
        let late = decide(
            &config,
            &RequestHead { headers: &h },
            NOW + 600 + 31,
            &mut cache,
        );
        assert_eq!(
            rejected(late).reason,
            RejectReason::Auth(AuthError::Expired)
        );
    }

    #[test]
    fn token_from_query_is_removed_from_the_path() {
        let config = config_with(serde_json::json!({}));
        let path = format!("/ws?topic=a&access_token={}&b=2", good_token());
        let mut h = upgrade_headers(&[]);
        h[1].1 = path.into_bytes();
        let f = forwarded(run(&config, &h));
        assert_eq!(f.path.as_deref(), Some("/ws?topic=a&b=2"));
        let mut h = upgrade_headers(&[]);
        h[1].1 = format!("/ws?access_token={}", good_token()).into_bytes();
        assert_eq!(forwarded(run(&config, &h)).path.as_deref(), Some("/ws"));
    }

    #[test]
    fn token_from_subprotocol_is_removed_and_others_kept() {
        let config = config_with(serde_json::json!({}));
        let offer = format!("bearer.{}, v2.realtime-events", good_token());
        let f = forwarded(run(
            &config,
            &upgrade_headers(&[("sec-websocket-protocol", &offer)]),
        ));
        assert_eq!(
            set(&f, "sec-websocket-protocol").as_deref(),
            Some("v2.realtime-events")
        );
        assert!(f
            .remove_headers
            .iter()
            .any(|h| h == "sec-websocket-protocol"));
        assert_eq!(
            f.subprotocols.offered,
            vec!["v2.realtime-events".to_string()]
        );
        assert!(!f.subprotocols.offered_by_gateway);
        assert_eq!(
            check_answered_subprotocol(&f.subprotocols, Some("v2.realtime-events")),
            SubprotocolAnswer::Keep
        );
        assert_eq!(
            check_answered_subprotocol(&f.subprotocols, Some("other")),
            SubprotocolAnswer::Reject
        );
        let offered_by_gateway = SubprotocolPlan {
            offered: vec![],
            offered_by_gateway: true,
        };
        assert_eq!(
            check_answered_subprotocol(&offered_by_gateway, Some("v2.realtime-events")),
            SubprotocolAnswer::Strip
        );
        assert_eq!(
            check_answered_subprotocol(&f.subprotocols, None),
            SubprotocolAnswer::Keep
        );
    }

    #[test]
    fn source_order_decides_which_token_counts() {
        let config = config_with(serde_json::json!({ "identity": {
            "keys": [ { "kid": "hs-1", "alg": "HS256", "secret": HS_SECRET_B64 } ],
            "sources": ["query"]
        }}));
        // Only the query is consulted: a valid header token does not help.
        let auth = format!("Bearer {}", good_token());
        let r = rejected(run(&config, &upgrade_headers(&[("authorization", &auth)])));
        assert_eq!(r.reason, RejectReason::Auth(AuthError::Missing));
        assert_eq!(r.www_authenticate, Some("Bearer realm=\"switchboard\""));
    }

    #[test]
    fn bad_tokens_get_401_invalid_token_without_echo() {
        let config = config_with(serde_json::json!({}));
        for token in ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30."] {
            let auth = format!("Bearer {token}");
            let r = rejected(run(&config, &upgrade_headers(&[("authorization", &auth)])));
            assert_eq!(r.status, 401);
            assert_eq!(
                r.www_authenticate,
                Some("Bearer realm=\"switchboard\", error=\"invalid_token\"")
            );
            assert!(!r.body.contains(token));
        }
    }

    #[test]
    fn early_data_policies() {
        let h = upgrade_headers(&[("early-data", "1")]);
        let post = headers(&[(":method", "POST"), (":path", "/api"), ("early-data", "1")]);
        let get = headers(&[(":method", "GET"), (":path", "/api"), ("early-data", "1")]);
        let default = config_with(serde_json::json!({}));
        let r = rejected(run(&default, &h));
        assert_eq!((r.status, r.reason), (425, RejectReason::EarlyData));
        forwarded(run(&default, &post));
        let unsafe_only = config_with(serde_json::json!({ "early_data": "reject_unsafe" }));
        assert_eq!(rejected(run(&unsafe_only, &post)).status, 425);
        assert_eq!(rejected(run(&unsafe_only, &h)).status, 425);
        forwarded(run(&unsafe_only, &get));
        let off = config_with(serde_json::json!({ "early_data": "off" }));
        // Off: the upgrade goes on to authentication (and fails there for lack of a token).
        assert_eq!(rejected(run(&off, &h)).status, 401);
        // Any value but "1" is not early data (RFC 8470 §5.1).
        let other = upgrade_headers(&[("early-data", "0")]);
        assert_eq!(rejected(run(&default, &other)).status, 401);
    }

    #[test]
    fn origin_allow_list_on_upgrades() {
        let config = config_with(serde_json::json!({
            "origin": { "allowed": ["https://desk.example.com"], "allow_missing": false }
        }));
        let auth = format!("Bearer {}", good_token());
        let ok = upgrade_headers(&[
            ("origin", "https://desk.example.com"),
            ("authorization", &auth),
        ]);
        forwarded(run(&config, &ok));
        let evil = upgrade_headers(&[("origin", "https://evil.example"), ("authorization", &auth)]);
        assert_eq!(rejected(run(&config, &evil)).status, 403);
        let missing = upgrade_headers(&[("authorization", &auth)]);
        assert_eq!(
            rejected(run(&config, &missing)).reason,
            RejectReason::Origin
        );
    }

    #[test]
    fn plain_requests_pass_with_spoofed_headers_stripped() {
        let config = config_with(serde_json::json!({}));
        let h = headers(&[
            (":method", "GET"),
            (":path", "/health"),
            ("x-agent-routing-key", "spoofed"),
        ]);
        let f = forwarded(run(&config, &h));
        assert!(!f.upgrade);
        assert!(f.remove_headers.iter().any(|h| h == "x-agent-routing-key"));
        assert!(f.set_headers.is_empty());
        let strict = config_with(serde_json::json!({ "identity": {
            "keys": [ { "kid": "hs-1", "alg": "HS256", "secret": HS_SECRET_B64 } ],
            "require_for_all_requests": true
        }}));
        assert_eq!(rejected(run(&strict, &h)).status, 401);
    }

    #[test]
    fn identity_values_with_control_characters_are_refused() {
        let config = config_with(serde_json::json!({}));
        let token = hs_token(&payload(
            Some(NOW + 600),
            serde_json::json!({ "sub": "agent\r\nx-admin: 1", "tenant": "acme",
                                "iss": "https://idp.test", "aud": "switchboard" }),
        ));
        let auth = format!("Bearer {token}");
        let r = rejected(run(&config, &upgrade_headers(&[("authorization", &auth)])));
        assert_eq!(r.status, 401);
        assert_eq!(r.reason, RejectReason::Auth(AuthError::InvalidClaim));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Eb+c").as_deref(), Some("a.b c"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%ff"), None);
    }

    #[test]
    fn websocket_accept_needs_101_and_upgrade() {
        assert!(is_websocket_accept(Some("101"), Some(b"WebSocket")));
        assert!(!is_websocket_accept(Some("200"), Some(b"websocket")));
        assert!(!is_websocket_accept(Some("101"), None));
        assert!(!is_websocket_accept(Some("101"), Some(b"h2c")));
        assert_eq!(upstream_result(503), "upstream_5xx");
        assert_eq!(upstream_result(42), "upstream_other");
    }
}

#[cfg(test)]
mod deflate_tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::identity::fixtures::{hs_token, payload, HS_SECRET_B64, NOW};
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    struct NoCache;
    impl VerdictCache for NoCache {
        fn load(&mut self, _: &str) -> Option<Vec<u8>> {
            None
        }
        fn store(&mut self, _: &str, _: &[u8]) {}
    }

    fn removes_extensions(frames: serde_json::Value) -> bool {
        let config = Config::from_json(
            &serde_json::to_vec(&serde_json::json!({
                "identity": { "keys": [ { "kid": "hs-1", "alg": "HS256", "secret": HS_SECRET_B64 } ] },
                "frames": frames
            }))
            .unwrap(),
        )
        .unwrap();
        let token = hs_token(&payload(
            Some(NOW + 600),
            serde_json::json!({ "sub": "a", "tenant": "t" }),
        ));
        let auth = format!("Bearer {token}");
        let headers: Vec<(String, Vec<u8>)> = [
            (":method", "GET"),
            (":path", "/ws"),
            ("upgrade", "websocket"),
            ("authorization", auth.as_str()),
            (
                "sec-websocket-extensions",
                "permessage-deflate; client_max_window_bits",
            ),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
        .collect();
        match decide(
            &config,
            &RequestHead { headers: &headers },
            NOW,
            &mut NoCache,
        ) {
            Verdict::Forward(f) => f
                .remove_headers
                .iter()
                .any(|h| h == "sec-websocket-extensions"),
            Verdict::Reject(r) => panic!("{r:?}"),
        }
    }

    #[test]
    fn deflate_offer_is_stripped_only_when_payload_features_need_it() {
        assert!(removes_extensions(serde_json::json!({})));
        assert!(!removes_extensions(
            serde_json::json!({ "deflate": "pass" })
        ));
        assert!(!removes_extensions(serde_json::json!({ "enabled": false })));
        assert!(!removes_extensions(serde_json::json!({
            "tagging": { "enabled": false }, "dedup": { "enabled": false },
            "resume": { "enabled": false }, "guard": false
        })));
    }
}
