//! The platform token as every worker sees it: one record in Envoy shared data holding the
//! token, its generation, the rotating refresh token, the refresh leader's lease and the retry
//! schedule. Written only with compare-and-swap.

use serde::{Deserialize, Serialize};

/// Shared-data key of the record (one per Envoy process and VM id).
pub const RECORD_KEY: &str = "switchboard.token.v1";
/// A record larger than this is treated as corrupt.
const MAX_RECORD_BYTES: usize = 32 * 1024;

/// A token that was issued, with its schedule (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedToken {
    pub generation: u64,
    pub access_token: String,
    pub token_type: String,
    pub expires_in_secs: u64,
    pub issued_at_ms: u64,
    pub expires_at_ms: u64,
    pub refresh_at_ms: u64,
}

impl SharedToken {
    /// Whether the token may still be handed to the platform: never inside the safety buffer.
    pub fn usable(&self, now_ms: u64, safety_buffer_ms: u64) -> bool {
        now_ms.saturating_add(safety_buffer_ms) < self.expires_at_ms
    }

    pub fn seconds_to_expiry(&self, now_ms: u64) -> u64 {
        self.expires_at_ms.saturating_sub(now_ms) / 1000
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Generation of the newest token stored (0: none yet). Only ever grows.
    pub generation: u64,
    pub token: Option<SharedToken>,
    /// The current link of a rotating refresh-token chain.
    pub refresh_token: Option<String>,
    /// The configuration fingerprint the token and refresh token were obtained under.
    pub fingerprint: u64,
    /// Consecutive failed fetches.
    pub failures: u32,
    /// No fetch before this time (backoff).
    pub next_attempt_ms: u64,
    /// Label of the last failure, for logs.
    pub last_error: Option<String>,
    /// The root context leading the refresh, and until when.
    pub leader: u64,
    pub lease_until_ms: u64,
    /// A fetch is outstanding until this time (so a new leader does not fetch twice).
    pub in_flight_until_ms: u64,
}

impl TokenRecord {
    pub fn decode(bytes: &[u8]) -> Option<TokenRecord> {
        if bytes.len() > MAX_RECORD_BYTES {
            return None;
        }
        serde_json::from_slice(bytes).ok()
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}
