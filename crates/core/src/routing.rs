//! The routing key: a stable digest of (tenant, agent) that Envoy's consistent hash uses to pin
//! every session of one agent to one upstream host, across reconnects and Envoy restarts.

use sha2::{Digest, Sha256};

/// Hex length of the key: 128 bits is plenty to spread agents and never collide in practice.
pub const ROUTING_KEY_HEX_LEN: usize = 32;

/// Deterministic key for an agent of a tenant. Length-prefixed so ("ab","c") ≠ ("a","bc").
pub fn routing_key(tenant_id: &str, agent_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"switchboard-route-v1");
    for part in [tenant_id, agent_id] {
        let len = u64::try_from(part.len()).unwrap_or(u64::MAX);
        hasher.update(len.to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut key = String::with_capacity(ROUTING_KEY_HEX_LEN);
    for byte in digest.iter().take(ROUTING_KEY_HEX_LEN / 2) {
        key.push(hex_digit(byte >> 4));
        key.push(hex_digit(byte & 0x0f));
    }
    key
}

fn hex_digit(nibble: u8) -> char {
    char::from(if nibble < 10 {
        b'0' + nibble
    } else {
        b'a' + nibble - 10
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn stable_and_distinct() {
        let a = routing_key("acme", "agent-1");
        assert_eq!(a, routing_key("acme", "agent-1"));
        assert_eq!(a.len(), ROUTING_KEY_HEX_LEN);
        assert!(a
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, routing_key("acme", "agent-2"));
        assert_ne!(a, routing_key("other", "agent-1"));
        assert_ne!(routing_key("ab", "c"), routing_key("a", "bc"));
    }

    #[test]
    fn known_vector_never_changes() {
        // A changed derivation would silently move every agent to another upstream host.
        assert_eq!(routing_key("acme", "agent-1"), KNOWN);
    }
    const KNOWN: &str = "bceff8b277fc8acace73aef9e2262e10";
}
