//! The 4-bit frame opcode (RFC 6455 §5.2, §11.8). Reserved values never become an [`Opcode`].

use super::Violation;

/// A defined frame opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    /// Decodes the low nibble of a frame's first byte.
    pub fn from_bits(value: u8) -> Result<Opcode, Violation> {
        match value {
            0x0 => Ok(Opcode::Continuation),
            0x1 => Ok(Opcode::Text),
            0x2 => Ok(Opcode::Binary),
            0x8 => Ok(Opcode::Close),
            0x9 => Ok(Opcode::Ping),
            0xA => Ok(Opcode::Pong),
            // §5.2: 0x3-0x7 and 0xB-0xF are reserved; receiving one MUST fail the connection.
            _ => Err(Violation::ReservedOpcode { value }),
        }
    }

    /// The wire value.
    pub fn bits(self) -> u8 {
        match self {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xA,
        }
    }

    /// Close, Ping and Pong: the high bit of the opcode (§5.5).
    pub fn is_control(self) -> bool {
        self.bits() & 0x8 != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn every_nibble_is_defined_or_reserved() {
        for value in 0u8..16 {
            match Opcode::from_bits(value) {
                Ok(opcode) => {
                    assert_eq!(opcode.bits(), value);
                    assert_eq!(opcode.is_control(), value >= 8);
                }
                Err(violation) => {
                    assert!(matches!(value, 0x3..=0x7 | 0xB..=0xF), "{value}");
                    assert_eq!(violation, Violation::ReservedOpcode { value });
                    assert_eq!(violation.close_code(), 1002);
                }
            }
        }
    }
}
