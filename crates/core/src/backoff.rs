//! Randomness the gateway spreads retries with: a small seeded generator, full-jitter exponential
//! backoff for the token endpoint, and jittered `Retry-After` values for refused clients.
//!
//! The seed is salted per Envoy instance by the glue (node id and host entropy), so a fleet of
//! gateways that fail together does not retry together.

/// SplitMix64: tiny, fast and good enough to de-correlate retry times (not for secrets).
#[derive(Debug, Clone)]
pub struct SaltedRng {
    state: u64,
}

impl SaltedRng {
    pub fn new(seed: u64) -> SaltedRng {
        SaltedRng { state: seed }
    }

    /// Mixes a salt (e.g. the Envoy node id) into a seed.
    pub fn from_salt(salt: &[u8], seed: u64) -> SaltedRng {
        let mut state = seed ^ 0x5357_4954_4348_424f;
        for chunk in salt.chunks(8) {
            let mut word = [0u8; 8];
            for (slot, byte) in word.iter_mut().zip(chunk) {
                *slot = *byte;
            }
            state = mix(state ^ u64::from_le_bytes(word));
        }
        SaltedRng { state }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.state)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        // 53 random bits into the mantissa: exact and uniform.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..=max`.
    pub fn up_to(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        self.next_u64() % (max + 1)
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `min(cap, base * 2^attempt)`, saturating; `attempt` counts from 0.
pub fn exponential_ms(base_ms: u64, cap_ms: u64, attempt: u32) -> u64 {
    let factor = 1u64.checked_shl(attempt.min(63)).unwrap_or(u64::MAX);
    base_ms.saturating_mul(factor).min(cap_ms)
}

/// Full jitter (uniform in `0..=min(cap, base * 2^attempt)`): the spread that empties a thundering
/// herd fastest.
pub fn full_jitter_ms(base_ms: u64, cap_ms: u64, attempt: u32, rng: &mut SaltedRng) -> u64 {
    rng.up_to(exponential_ms(base_ms, cap_ms, attempt))
}

/// A `Retry-After` in whole seconds: `min(cap, base * 2^attempt) * (0.5 + random)`, at least 1.
pub fn retry_after_secs(base_ms: u64, cap_ms: u64, attempt: u32, rng: &mut SaltedRng) -> u64 {
    let center = exponential_ms(base_ms, cap_ms, attempt) as f64;
    let millis = center * (0.5 + rng.unit());
    ((millis / 1000.0).ceil() as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn exponential_growth_is_capped_and_saturates() {
        assert_eq!(exponential_ms(1_000, 60_000, 0), 1_000);
        assert_eq!(exponential_ms(1_000, 60_000, 3), 8_000);
        assert_eq!(exponential_ms(1_000, 60_000, 6), 60_000);
        assert_eq!(exponential_ms(1_000, 60_000, 200), 60_000);
        assert_eq!(exponential_ms(u64::MAX, u64::MAX, 5), u64::MAX);
    }

    #[test]
    fn full_jitter_stays_in_range_and_spreads() {
        let mut rng = SaltedRng::new(7);
        let draws: Vec<u64> = (0..1_000)
            .map(|_| full_jitter_ms(1_000, 60_000, 2, &mut rng))
            .collect();
        assert!(draws.iter().all(|d| *d <= 4_000));
        assert!(draws.iter().any(|d| *d < 1_000));
        assert!(draws.iter().any(|d| *d > 3_000));
    }

    #[test]
    fn salts_give_different_sequences() {
        let mut a = SaltedRng::from_salt(b"envoy-node-a", 1);
        let mut b = SaltedRng::from_salt(b"envoy-node-b", 1);
        let mut same = SaltedRng::from_salt(b"envoy-node-a", 1);
        let first = a.next_u64();
        assert_ne!(first, b.next_u64());
        assert_eq!(first, same.next_u64());
    }

    #[test]
    fn retry_after_spread_has_a_real_coefficient_of_variation() {
        let mut rng = SaltedRng::from_salt(b"node", 42);
        let values: Vec<f64> = (0..200)
            .map(|_| retry_after_secs(10_000, 60_000, 0, &mut rng) as f64)
            .collect();
        assert!(values.iter().all(|v| (5.0..=15.0).contains(v)));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64;
        // Uniform on [0.5, 1.5) has CV 1/sqrt(12) ~ 0.29.
        assert!(var.sqrt() / mean > 0.25, "cv {}", var.sqrt() / mean);
    }

    #[test]
    fn unit_is_in_range() {
        let mut rng = SaltedRng::new(0);
        for _ in 0..10_000 {
            let u = rng.unit();
            assert!((0.0..1.0).contains(&u));
        }
        assert!(SaltedRng::new(3).up_to(0) == 0);
    }
}
