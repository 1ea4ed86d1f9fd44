//! Putting the platform token where the platform wants it: on the upgrade request, and inside a
//! live session as an `auth_refresh` text frame toward the platform.

use serde_json::json;

use super::config::{Injection, Rotation};
use super::record::SharedToken;
use crate::ws::{encode_frame, Opcode};

/// What the glue does to the upgrade request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpgradeInjection {
    /// Set `authorization` to this value.
    Header(String),
    /// Replace `:path` with this one.
    Path(String),
}

/// The request change that carries `token`. `path` is the request's current `:path`.
pub fn inject(injection: &Injection, token: &SharedToken, path: &str) -> UpgradeInjection {
    match injection {
        Injection::Header => UpgradeInjection::Header(format!("Bearer {}", token.access_token)),
        Injection::Query(name) => {
            UpgradeInjection::Path(set_query_param(path, name, &token.access_token))
        }
    }
}

/// `path` with every `name` parameter removed and `name=value` appended (value percent-encoded).
pub fn set_query_param(path: &str, name: &str, value: &str) -> String {
    let (base, query) = match path.split_once('?') {
        Some((base, query)) => (base, query),
        None => (path, ""),
    };
    let mut out = String::with_capacity(path.len() + name.len() + value.len() + 2);
    out.push_str(base);
    let mut separator = '?';
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        if key == name {
            continue;
        }
        out.push(separator);
        out.push_str(pair);
        separator = '&';
    }
    out.push(separator);
    out.push_str(name);
    out.push('=');
    out.push_str(&crate::resume::percent_encode(value));
    out
}

/// RFC 3339 UTC timestamp of Unix milliseconds, to the second.
pub fn rfc3339(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's algorithm).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Who the frame is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameContext<'a> {
    pub session_id: &'a str,
    pub region: Option<&'a str>,
}

/// The `auth_refresh` JSON text (never logged: it carries the token).
pub fn auth_refresh_json(
    rotation: &Rotation,
    token: &SharedToken,
    context: &FrameContext<'_>,
) -> String {
    let region = context.region.or(rotation.region.as_deref());
    json!({
        "frame_type": rotation.frame_type,
        "target_scope": rotation.target_scope,
        "token_payload": {
            "access_token": token.access_token,
            "token_type": token.token_type,
            "expires_in": token.expires_in_secs,
            "issued_at": rfc3339(token.issued_at_ms),
        },
        "proxy_metadata": {
            "session_id": context.session_id,
            "region": region,
        },
    })
    .to_string()
}

/// The whole masked frame toward the platform (RFC 6455 §5.3: client frames are masked).
pub fn auth_refresh_frame(
    rotation: &Rotation,
    token: &SharedToken,
    context: &FrameContext<'_>,
    mask_key: [u8; 4],
) -> Vec<u8> {
    let text = auth_refresh_json(rotation, token, context);
    let mut frame = Vec::with_capacity(text.len() + 14);
    encode_frame(
        true,
        0,
        Opcode::Text,
        text.as_bytes(),
        Some(mask_key),
        &mut frame,
    );
    frame
}
