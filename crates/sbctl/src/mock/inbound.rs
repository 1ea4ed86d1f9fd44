//! What a client sends inside a session, as the mock tells it apart: `auth_refresh` frames (the
//! gateway rotating the platform token in a live session), messages that carry a `seq`, and
//! everything else. Pure functions of the message bytes; the session loop decides what follows.
//!
//! An `auth_refresh` frame is a text message holding a JSON object like
//!
//! ```json
//! {"frame_type": "auth_refresh", "target_scope": "agent:events",
//!  "token_payload": {"access_token": "...", "token_type": "Bearer", "expires_in": 3600,
//!                    "issued_at": "2024-05-01T12:00:00Z"},
//!  "proxy_metadata": {"session_id": "...", "region": "eu-west-1"}}
//! ```
//!
//! Only `frame_type` decides that a message is one; a frame with a missing or malformed
//! `token_payload` is still an `auth_refresh`, just an invalid one. The access token is kept only
//! as long as it takes to look it up; what is recorded ([`AuthRefreshSeen`]) never holds it.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::oauth::Secret;

/// `frame_type` of a token-rotation frame.
pub const AUTH_REFRESH_FRAME_TYPE: &str = "auth_refresh";
/// Largest message inspected. Larger ones are logged as "other" and echoed, so a client cannot
/// make the mock parse megabytes of JSON per message.
pub const MAX_INSPECTED_BYTES: usize = 64 * 1024;
/// Entries kept in a session's `inbound_log`; the oldest go first.
pub const INBOUND_LOG_ENTRIES: usize = 64;
/// Longest `seq` marker kept, in characters.
pub const MAX_MARKER_CHARS: usize = 64;
/// Longest recorded `auth_refresh` string field, in characters.
pub const MAX_FIELD_CHARS: usize = 128;
/// `inbound_log` marker of an `auth_refresh` frame.
pub const MARKER_AUTH_REFRESH: &str = "auth_refresh";
/// `inbound_log` marker of a message that is neither an `auth_refresh` nor carries a `seq`.
pub const MARKER_OTHER: &str = "other";

/// One inbound data message, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inspected {
    /// Consumed by the mock, never echoed.
    AuthRefresh(AuthRefresh),
    /// A JSON object with a string or number `seq`, as text (cut to `MAX_MARKER_CHARS`).
    Seq(String),
    /// Anything else: binary, not JSON, no usable `seq`, or larger than `MAX_INSPECTED_BYTES`.
    Other,
}

impl Inspected {
    /// The short, non-secret `inbound_log` entry for this message.
    pub fn marker(&self) -> &str {
        match self {
            Inspected::AuthRefresh(_) => MARKER_AUTH_REFRESH,
            Inspected::Seq(seq) => seq,
            Inspected::Other => MARKER_OTHER,
        }
    }
}

/// The content of an `auth_refresh` frame. `Debug` prints the token as `<redacted>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRefresh {
    /// `token_payload.access_token`, if it was a string.
    access_token: Option<Secret>,
    /// The non-secret fields, for the session record.
    pub seen: AuthRefreshSeen,
}

impl AuthRefresh {
    /// The token to look up; `None` when the frame carried no string `access_token`.
    pub fn access_token(&self) -> Option<&str> {
        self.access_token.as_ref().map(Secret::expose)
    }
}

/// The non-secret fields of the last `auth_refresh` frame a session received, as served in the
/// session record. String fields are cut to `MAX_FIELD_CHARS`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRefreshSeen {
    /// When it arrived (Unix ms).
    pub at_ms: u64,
    /// Its token was issued by this mock and valid on arrival.
    pub valid: bool,
    /// `token_payload.token_type`.
    pub token_type: Option<String>,
    /// `token_payload.expires_in`, a number or a decimal string.
    pub expires_in: Option<u64>,
    /// `token_payload.issued_at` was present (any value but null).
    pub issued_at_present: bool,
    /// `target_scope`.
    pub target_scope: Option<String>,
    /// `proxy_metadata.session_id`.
    pub session_id: Option<String>,
    /// `proxy_metadata.region`.
    pub region: Option<String>,
}

/// Classifies one complete data message.
pub fn inspect(text: bool, payload: &[u8]) -> Inspected {
    if !text || payload.len() > MAX_INSPECTED_BYTES {
        return Inspected::Other;
    }
    // Most echo traffic is not JSON; skip the parser for it.
    if payload.trim_ascii_start().first() != Some(&b'{') {
        return Inspected::Other;
    }
    let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(payload) else {
        return Inspected::Other;
    };
    if object.get("frame_type").and_then(Value::as_str) == Some(AUTH_REFRESH_FRAME_TYPE) {
        return Inspected::AuthRefresh(auth_refresh(&object));
    }
    match object.get("seq") {
        Some(Value::String(seq)) => Inspected::Seq(cut(seq, MAX_MARKER_CHARS)),
        Some(Value::Number(seq)) => Inspected::Seq(cut(&seq.to_string(), MAX_MARKER_CHARS)),
        _ => Inspected::Other,
    }
}

fn auth_refresh(object: &serde_json::Map<String, Value>) -> AuthRefresh {
    let field = |value: Option<&Value>| {
        value
            .and_then(Value::as_str)
            .map(|text| cut(text, MAX_FIELD_CHARS))
    };
    let payload = object.get("token_payload");
    let in_payload = |name: &str| payload.and_then(|payload| payload.get(name));
    let metadata = object.get("proxy_metadata");
    let in_metadata = |name: &str| metadata.and_then(|metadata| metadata.get(name));
    let expires_in = in_payload("expires_in").and_then(|value| {
        value
            .as_u64()
            .or_else(|| value.as_str().and_then(|text| text.trim().parse().ok()))
    });
    AuthRefresh {
        access_token: in_payload("access_token")
            .and_then(Value::as_str)
            .map(Secret::new),
        seen: AuthRefreshSeen {
            at_ms: 0,
            valid: false,
            token_type: field(in_payload("token_type")),
            expires_in,
            issued_at_present: in_payload("issued_at").is_some_and(|value| !value.is_null()),
            target_scope: field(object.get("target_scope")),
            session_id: field(in_metadata("session_id")),
            region: field(in_metadata("region")),
        },
    }
}

/// The first `most` characters of `text`.
fn cut(text: &str, most: usize) -> String {
    text.chars().take(most).collect()
}

/// The last `INBOUND_LOG_ENTRIES` markers of a session's inbound data messages, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InboundLog {
    entries: VecDeque<String>,
}

impl InboundLog {
    pub fn push(&mut self, marker: &str) {
        while self.entries.len() >= INBOUND_LOG_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back(marker.to_owned());
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.entries.iter().cloned().collect()
    }
}

#[cfg(test)]
#[allow(
    clippy::panic,
    reason = "a test should fail loudly on an unexpected error"
)]
mod tests {
    use super::*;

    fn refresh_of(json: &str) -> AuthRefresh {
        match inspect(true, json.as_bytes()) {
            Inspected::AuthRefresh(refresh) => refresh,
            other => panic!("not an auth_refresh: {other:?}"),
        }
    }

    #[test]
    fn recognises_a_full_auth_refresh_and_keeps_only_non_secret_fields() {
        let refresh = refresh_of(
            r#"{"frame_type":"auth_refresh","target_scope":"agent:events",
                "token_payload":{"access_token":"tok-123","token_type":"Bearer",
                                 "expires_in":3600,"issued_at":"2024-05-01T12:00:00Z"},
                "proxy_metadata":{"session_id":"s-9","region":"eu-west-1"}}"#,
        );
        assert_eq!(refresh.access_token(), Some("tok-123"));
        assert_eq!(
            refresh.seen,
            AuthRefreshSeen {
                at_ms: 0,
                valid: false,
                token_type: Some("Bearer".into()),
                expires_in: Some(3600),
                issued_at_present: true,
                target_scope: Some("agent:events".into()),
                session_id: Some("s-9".into()),
                region: Some("eu-west-1".into()),
            }
        );
        let debug = format!("{refresh:?}");
        assert!(!debug.contains("tok-123"), "{debug}");
        let recorded = serde_json::to_string(&refresh.seen).unwrap_or_default();
        assert!(!recorded.contains("tok-123"));
    }

    #[test]
    fn a_malformed_auth_refresh_is_still_one() {
        let refresh = refresh_of(r#"{"frame_type":"auth_refresh"}"#);
        assert_eq!(refresh.access_token(), None);
        assert_eq!(refresh.seen, AuthRefreshSeen::default());

        let refresh = refresh_of(
            r#"{"frame_type":"auth_refresh","token_payload":{"access_token":7,
                "expires_in":"60","issued_at":null},"proxy_metadata":{"region":null}}"#,
        );
        assert_eq!(refresh.access_token(), None);
        assert_eq!(refresh.seen.expires_in, Some(60));
        assert!(!refresh.seen.issued_at_present);
        assert_eq!(refresh.seen.region, None);

        let long = "r".repeat(MAX_FIELD_CHARS + 10);
        let refresh = refresh_of(&format!(
            r#"{{"frame_type":"auth_refresh","proxy_metadata":{{"region":"{long}"}}}}"#
        ));
        assert_eq!(
            refresh.seen.region.map(|region| region.len()),
            Some(MAX_FIELD_CHARS)
        );
    }

    #[test]
    fn other_messages_are_seq_markers_or_other() {
        assert_eq!(
            inspect(true, br#"{"seq":42,"x":1}"#),
            Inspected::Seq("42".into())
        );
        assert_eq!(
            inspect(true, br#"  {"seq":"a-7"}"#),
            Inspected::Seq("a-7".into())
        );
        assert_eq!(
            inspect(true, br#"{"seq":1.5}"#),
            Inspected::Seq("1.5".into())
        );
        for other in [
            &br#"{"seq":true}"#[..],
            br#"{"seq":null}"#,
            br#"{"data":{"seq":1}}"#,
            br#"[{"seq":1}]"#,
            br#"{"frame_type":"auth_refresh""#,
            b"hello",
            b"",
        ] {
            assert_eq!(inspect(true, other), Inspected::Other, "{other:?}");
        }
        // `frame_type` is compared exactly.
        assert_eq!(
            inspect(true, br#"{"frame_type":"AUTH_REFRESH","seq":3}"#),
            Inspected::Seq("3".into())
        );
        // Binary messages are never inspected, not even when they hold the same JSON.
        assert_eq!(
            inspect(false, br#"{"frame_type":"auth_refresh"}"#),
            Inspected::Other
        );
        let long_seq = format!(r#"{{"seq":"{}"}}"#, "9".repeat(MAX_MARKER_CHARS * 2));
        assert_eq!(
            inspect(true, long_seq.as_bytes()).marker().len(),
            MAX_MARKER_CHARS
        );
        // Past the inspection bound even an auth_refresh is just a message.
        let padded = format!(
            r#"{{"frame_type":"auth_refresh","pad":"{}"}}"#,
            "x".repeat(MAX_INSPECTED_BYTES)
        );
        assert_eq!(inspect(true, padded.as_bytes()), Inspected::Other);
    }

    #[test]
    fn markers() {
        assert_eq!(
            inspect(true, br#"{"frame_type":"auth_refresh"}"#).marker(),
            MARKER_AUTH_REFRESH
        );
        assert_eq!(inspect(true, br#"{"seq":5}"#).marker(), "5");
        assert_eq!(inspect(false, b"\x00").marker(), MARKER_OTHER);
    }

    #[test]
    fn inbound_log_keeps_the_newest_in_order() {
        let mut log = InboundLog::default();
        for index in 0..INBOUND_LOG_ENTRIES + 5 {
            log.push(&index.to_string());
        }
        let entries = log.snapshot();
        assert_eq!(entries.len(), INBOUND_LOG_ENTRIES);
        assert_eq!(entries.first().map(String::as_str), Some("5"));
        assert_eq!(
            entries.last().map(String::as_str),
            Some((INBOUND_LOG_ENTRIES + 4).to_string().as_str())
        );
    }
}
