//! Who fetches the token and when. Every worker's root context ticks; the one holding the lease
//! in the shared record fetches, and the lease lapses if it stops ticking (its worker died), so
//! another takes over. Pure functions over the record: the glue reads it, calls these, and writes
//! the result back with compare-and-swap.

use super::config::{Grant, TokenConfig};
use super::record::{SharedToken, TokenRecord};
use super::response::{FetchError, Issued};
use crate::backoff::{full_jitter_ms, SaltedRng};

/// A fetch the leader should start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchPlan {
    /// The record's generation when the fetch began; an answer to an older plan is stale.
    pub generation: u64,
    /// The refresh token to present (rotating chain), for the refresh_token grant.
    pub refresh_token: Option<String>,
}

/// What one tick decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TickPlan {
    /// The record to write (with the CAS read alongside it); `None` to leave it alone.
    pub write: Option<TokenRecord>,
    /// Whether this root context leads (valid only if the write succeeds).
    pub leader: bool,
    /// Start this fetch once the write succeeded.
    pub fetch: Option<FetchPlan>,
}

/// One tick of root context `me`.
pub fn plan_tick(
    current: Option<&TokenRecord>,
    me: u64,
    now_ms: u64,
    config: &TokenConfig,
) -> TickPlan {
    let mut record = current.cloned().unwrap_or_default();
    let lease_free = record.leader == me || record.lease_until_ms <= now_ms || record.leader == 0;
    if !lease_free {
        return TickPlan {
            write: None,
            leader: false,
            fetch: None,
        };
    }
    record.leader = me;
    record.lease_until_ms = now_ms.saturating_add(config.lease_ms);
    if record.fingerprint != config.fingerprint {
        // Settings changed: the stored refresh token belongs to the old client, and the token
        // may carry the old scopes. Keep serving the old token until a new one arrives.
        record.fingerprint = config.fingerprint;
        record.refresh_token = None;
        record.failures = 0;
        record.next_attempt_ms = 0;
        record.in_flight_until_ms = 0;
        if let Some(token) = record.token.as_mut() {
            token.refresh_at_ms = now_ms;
        }
    }
    let due = match &record.token {
        None => true,
        Some(token) => now_ms >= token.refresh_at_ms,
    };
    let fetch = if due && now_ms >= record.next_attempt_ms && now_ms >= record.in_flight_until_ms {
        // The answer gets the timeout plus a margin before another leader may try again.
        record.in_flight_until_ms = now_ms
            .saturating_add(config.timeout_ms)
            .saturating_add(config.lease_ms);
        Some(FetchPlan {
            generation: record.generation,
            refresh_token: match &config.grant {
                Grant::RefreshToken { initial } => Some(
                    record
                        .refresh_token
                        .clone()
                        .unwrap_or_else(|| initial.expose().to_string()),
                ),
                Grant::ClientCredentials => None,
            },
        })
    } else {
        None
    };
    TickPlan {
        write: Some(record),
        leader: true,
        fetch,
    }
}

/// What applying an answer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Stored {
        generation: u64,
    },
    Failed {
        error: FetchError,
        retry_in_ms: u64,
    },
    /// Another fetch already stored a newer token; this answer is dropped.
    Stale,
}

/// Folds a fetch's outcome into the record.
pub fn apply_result(
    current: Option<&TokenRecord>,
    plan_generation: u64,
    result: Result<Issued, FetchError>,
    now_ms: u64,
    config: &TokenConfig,
    rng: &mut SaltedRng,
) -> (TokenRecord, Applied) {
    let mut record = current.cloned().unwrap_or_default();
    if record.generation != plan_generation {
        return (record, Applied::Stale);
    }
    record.in_flight_until_ms = 0;
    match result {
        Ok(issued) => {
            record.generation = record.generation.saturating_add(1);
            record.token = Some(SharedToken {
                generation: record.generation,
                access_token: issued.access_token,
                token_type: issued.token_type,
                expires_in_secs: issued.expires_in_secs,
                issued_at_ms: issued.issued_at_ms,
                expires_at_ms: issued.expires_at_ms,
                refresh_at_ms: issued.refresh_at_ms,
            });
            if let Some(rotated) = issued.refresh_token {
                record.refresh_token = Some(rotated);
            }
            record.fingerprint = config.fingerprint;
            record.failures = 0;
            record.next_attempt_ms = 0;
            record.last_error = None;
            let generation = record.generation;
            (record, Applied::Stored { generation })
        }
        Err(error) => {
            let attempt = record.failures;
            record.failures = record.failures.saturating_add(1);
            let retry_in_ms = if error.needs_operator() {
                config.backoff.slow_ms
            } else {
                // At least a tenth of the base so a zero draw cannot spin.
                full_jitter_ms(config.backoff.base_ms, config.backoff.cap_ms, attempt, rng)
                    .max(config.backoff.base_ms / 10)
            };
            record.next_attempt_ms = now_ms.saturating_add(retry_in_ms);
            record.last_error = Some(error.label().to_string());
            (record, Applied::Failed { error, retry_in_ms })
        }
    }
}
