//! Server side of the RFC 6455 opening handshake, as pure checks over request headers, plus
//! finding the Bearer token an upgrade carries (`--require-token`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hyper::header::{
    HeaderMap, AUTHORIZATION, CONNECTION, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_PROTOCOL,
};
use hyper::header::{SEC_WEBSOCKET_VERSION, UPGRADE};
use hyper::Method;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::oauth::{parse_form, Secret};

/// RFC 6750 §2.3: the query parameter that carries a Bearer token.
pub const ACCESS_TOKEN_PARAM: &str = "access_token";

/// Subprotocols the mock speaks, in no particular order of preference: the client's order wins.
pub const KNOWN_SUBPROTOCOLS: [&str; 3] =
    ["v2.realtime-events", "nice.digital.v1", "switchboard.v1"];

/// The only WebSocket version this server accepts.
pub const WEBSOCKET_VERSION: &str = "13";

/// Why an upgrade request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpgradeError {
    /// `Connection` lacks the `upgrade` token.
    #[error("Connection header must include \"upgrade\"")]
    MissingConnectionUpgrade,
    /// No `Sec-WebSocket-Key`, or one that is not base64 of 16 bytes.
    #[error("Sec-WebSocket-Key must be base64 of 16 bytes")]
    BadKey,
    /// `Sec-WebSocket-Version` is not 13.
    #[error("unsupported Sec-WebSocket-Version (this server speaks 13)")]
    UnsupportedVersion,
}

/// What the 101 response carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub accept_key: String,
    pub subprotocol: Option<&'static str>,
}

/// True if `header` is a comma-separated token list containing `token` (case-insensitive).
fn has_token(headers: &HeaderMap, header: &hyper::header::HeaderName, token: &str) -> bool {
    headers
        .get_all(header)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// A GET asking to upgrade to WebSocket. Whether the rest of the handshake is valid is for
/// `accept` to say; this only decides that the request is meant as one.
pub fn is_websocket_request(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::GET && has_token(headers, &UPGRADE, "websocket")
}

/// RFC 8441 §4: an HTTP/2 extended CONNECT whose `:protocol` is `websocket`.
pub fn is_extended_connect(method: &Method, protocol: Option<&str>) -> bool {
    method == Method::CONNECT && protocol == Some("websocket")
}

/// Validates an extended CONNECT bootstrap (RFC 8441 §5): no key and no accept, but the
/// version and subprotocol rules of RFC 6455 still apply.
pub fn accept_extended_connect(headers: &HeaderMap) -> Result<Accepted, UpgradeError> {
    // RFC 8441 §5 keeps RFC 6455 §4.2.1 (6): Sec-WebSocket-Version MUST be 13.
    let version = headers
        .get(SEC_WEBSOCKET_VERSION)
        .and_then(|value| value.to_str().ok());
    if version.map(str::trim) != Some(WEBSOCKET_VERSION) {
        return Err(UpgradeError::UnsupportedVersion);
    }
    // A proxy that turned an HTTP/1.1 upgrade into this CONNECT (Envoy does) forwards the
    // client's key and passes our answer back as its 101: the HTTP/1.1 client needs the accept.
    let accept_key = headers
        .get(SEC_WEBSOCKET_KEY)
        .map(|key| key.as_bytes().trim_ascii())
        .filter(|key| STANDARD.decode(key).is_ok_and(|nonce| nonce.len() == 16))
        .map(derive_accept_key)
        .unwrap_or_default();
    Ok(Accepted {
        accept_key,
        subprotocol: select_subprotocol(headers),
    })
}

/// Validates the handshake and computes the response values.
pub fn accept(headers: &HeaderMap) -> Result<Accepted, UpgradeError> {
    // RFC 6455 §4.2.1 (4): the Connection header MUST include the "Upgrade" token.
    if !has_token(headers, &CONNECTION, "upgrade") {
        return Err(UpgradeError::MissingConnectionUpgrade);
    }
    // RFC 6455 §4.2.1 (6): Sec-WebSocket-Version MUST be 13; otherwise §4.2.2 asks for 426.
    let version = headers
        .get(SEC_WEBSOCKET_VERSION)
        .and_then(|value| value.to_str().ok());
    if version.map(str::trim) != Some(WEBSOCKET_VERSION) {
        return Err(UpgradeError::UnsupportedVersion);
    }
    // RFC 6455 §4.2.1 (5): Sec-WebSocket-Key MUST decode to 16 bytes.
    let key = headers
        .get(SEC_WEBSOCKET_KEY)
        .ok_or(UpgradeError::BadKey)?
        .as_bytes();
    let key = key.trim_ascii();
    match STANDARD.decode(key) {
        Ok(nonce) if nonce.len() == 16 => {}
        _ => return Err(UpgradeError::BadKey),
    }
    Ok(Accepted {
        accept_key: derive_accept_key(key),
        subprotocol: select_subprotocol(headers),
    })
}

/// RFC 6455 §4.2.2: the server answers with at most one of the offered subprotocols, and none
/// if it speaks none of them. The first offered that we know wins.
pub fn select_subprotocol(headers: &HeaderMap) -> Option<&'static str> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .find_map(|offered| {
            KNOWN_SUBPROTOCOLS
                .iter()
                .copied()
                .find(|known| *known == offered)
        })
}

/// The access token an upgrade presents: from the first `Authorization: Bearer` header
/// (RFC 6750 §2.1), else from the last `access_token` query parameter (§2.3). A Bearer header
/// wins even when its token is bad, so a client cannot fall back to a second credential; a header
/// of another scheme is not a Bearer credential and is passed over. An undecodable query counts
/// as carrying no parameter.
pub fn presented_access_token(headers: &HeaderMap, query: Option<&str>) -> Option<Secret> {
    let from_header = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(bearer_credentials);
    if let Some(token) = from_header {
        return Some(Secret::new(token));
    }
    let pairs = parse_form(query.unwrap_or_default().as_bytes()).ok()?;
    pairs
        .into_iter()
        .rev()
        .find(|(name, value)| name == ACCESS_TOKEN_PARAM && !value.is_empty())
        .map(|(_, value)| Secret::new(value))
}

/// The token of `Bearer <token>`; RFC 7235 §2.1: the scheme is case-insensitive.
fn bearer_credentials(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on an unexpected error"
)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn handshake(extra: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        // The sample nonce of RFC 6455 §1.3.
        headers.insert(
            SEC_WEBSOCKET_KEY,
            HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ=="),
        );
        for (name, value) in extra {
            headers.append(*name, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn rfc_sample_accept_key() {
        let accepted = accept(&handshake(&[])).unwrap();
        // RFC 6455 §1.3 gives this exact Sec-WebSocket-Accept for the sample nonce.
        assert_eq!(accepted.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(accepted.subprotocol, None);
    }

    #[test]
    fn extended_connect_needs_version_13_and_answers_a_forwarded_key() {
        assert!(is_extended_connect(&Method::CONNECT, Some("websocket")));
        assert!(!is_extended_connect(&Method::CONNECT, None));
        assert!(!is_extended_connect(&Method::GET, Some("websocket")));
        // Envoy forwards the HTTP/1.1 client's key: the answer is the RFC 6455 accept.
        let accepted = accept_extended_connect(&handshake(&[])).unwrap();
        assert_eq!(accepted.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        // A native RFC 8441 client sends no key, and gets no accept.
        let mut headers = handshake(&[]);
        headers.remove(SEC_WEBSOCKET_KEY);
        assert_eq!(accept_extended_connect(&headers).unwrap().accept_key, "");
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert_eq!(
            accept_extended_connect(&headers),
            Err(UpgradeError::UnsupportedVersion)
        );
    }

    #[test]
    fn detects_upgrade_requests() {
        let headers = handshake(&[]);
        assert!(is_websocket_request(&Method::GET, &headers));
        assert!(!is_websocket_request(&Method::POST, &headers));
        assert!(!is_websocket_request(&Method::GET, &HeaderMap::new()));
    }

    #[test]
    fn rejects_bad_handshakes() {
        let mut headers = handshake(&[]);
        headers.insert(CONNECTION, HeaderValue::from_static("keep-alive"));
        assert_eq!(
            accept(&headers),
            Err(UpgradeError::MissingConnectionUpgrade)
        );

        let mut headers = handshake(&[]);
        headers.insert(SEC_WEBSOCKET_VERSION, HeaderValue::from_static("8"));
        assert_eq!(accept(&headers), Err(UpgradeError::UnsupportedVersion));

        let mut headers = handshake(&[]);
        headers.insert(SEC_WEBSOCKET_KEY, HeaderValue::from_static("c2hvcnQ="));
        assert_eq!(accept(&headers), Err(UpgradeError::BadKey));

        let mut headers = handshake(&[]);
        headers.remove(SEC_WEBSOCKET_KEY);
        assert_eq!(accept(&headers), Err(UpgradeError::BadKey));
    }

    #[test]
    fn finds_the_presented_access_token() {
        let token = |headers: &[(&'static str, &'static str)], query: Option<&str>| {
            let mut map = HeaderMap::new();
            for (name, value) in headers {
                map.append(*name, HeaderValue::from_static(value));
            }
            presented_access_token(&map, query).map(|secret| secret.expose().to_owned())
        };
        assert_eq!(token(&[], None), None);
        assert_eq!(
            token(&[("authorization", "Bearer abc")], None).as_deref(),
            Some("abc")
        );
        assert_eq!(
            token(&[("authorization", "bearer  abc ")], None).as_deref(),
            Some("abc")
        );
        assert_eq!(
            token(&[], Some("a=1&access_token=q%2B1&b=2")).as_deref(),
            Some("q+1")
        );
        assert_eq!(
            token(&[], Some("access_token=first&access_token=last")).as_deref(),
            Some("last")
        );
        // The header wins over the query parameter.
        assert_eq!(
            token(
                &[("authorization", "Bearer head")],
                Some("access_token=query")
            )
            .as_deref(),
            Some("head")
        );
        // Another scheme is no Bearer credential; the query still counts.
        assert_eq!(
            token(
                &[("authorization", "Basic eDp5")],
                Some("access_token=query")
            )
            .as_deref(),
            Some("query")
        );
        assert_eq!(token(&[("authorization", "Bearer ")], None), None);
        assert_eq!(token(&[], Some("access_token=")), None);
        assert_eq!(token(&[], Some("access_token=%zz")), None);
    }

    #[test]
    fn picks_first_known_offered_subprotocol() {
        let headers = handshake(&[
            ("sec-websocket-protocol", "chat, nice.digital.v1"),
            ("sec-websocket-protocol", "switchboard.v1"),
        ]);
        assert_eq!(select_subprotocol(&headers), Some("nice.digital.v1"));
        let headers = handshake(&[("sec-websocket-protocol", "chat, superchat")]);
        assert_eq!(select_subprotocol(&headers), None);
    }
}
