//! Ways a peer breaks RFC 6455 (or RFC 7692's framing rules), one variant per rule. The glue maps
//! a violation to a close frame with [`Violation::close_code`] and fails the connection (§7.1.7).

use std::fmt;

/// A protocol rule the peer broke. After one, a [`crate::ws::FrameParser`] stays failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Violation {
    /// A client-to-server frame without the mask bit (§5.1).
    UnmaskedClientFrame,
    /// A server-to-client frame with the mask bit (§5.1).
    MaskedServerFrame,
    /// RSV bits (given as `rsv`, RSV1 = 0b100) set without an extension that defines them (§5.2).
    ReservedBitsSet { rsv: u8 },
    /// RSV1 ("compressed") on a continuation or control frame: permessage-deflate allows it only
    /// on the first frame of a data message (RFC 7692 §6, §6.1).
    CompressedBitMisplaced,
    /// An opcode value RFC 6455 reserves (§5.2).
    ReservedOpcode { value: u8 },
    /// A 64-bit payload length with its most significant bit set (§5.2).
    LengthHighBitSet,
    /// A control frame with FIN clear (§5.5).
    FragmentedControlFrame,
    /// A control frame whose payload exceeds 125 bytes (§5.5).
    ControlPayloadTooLong { len: u64 },
    /// A continuation frame with no fragmented message in progress (§5.4).
    UnexpectedContinuation,
    /// A text or binary frame while a fragmented message is still in progress (§5.4).
    DataFrameInsideFragmentedMessage,
    /// A frame payload over the configured maximum (1009, §7.4.1).
    FrameTooLarge { len: u64, max: u64 },
    /// A (reassembled) data message over the configured maximum (1009, §7.4.1).
    MessageTooLarge { len: u64, max: u64 },
    /// A text message that is not UTF-8 (§8.1).
    InvalidUtf8Text,
    /// A close frame with exactly one payload byte: a body must start with a 2-byte code (§5.5.1).
    CloseBodyTooShort,
    /// A close code that may not appear on the wire (§7.4.1, §7.4.2).
    InvalidCloseCode { code: u16 },
    /// A close reason that is not UTF-8 (§5.5.1).
    InvalidCloseReason,
}

impl Violation {
    /// The status code to close the connection with (§7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            Violation::FrameTooLarge { .. } | Violation::MessageTooLarge { .. } => 1009,
            Violation::InvalidUtf8Text | Violation::InvalidCloseReason => 1007,
            Violation::UnmaskedClientFrame
            | Violation::MaskedServerFrame
            | Violation::ReservedBitsSet { .. }
            | Violation::CompressedBitMisplaced
            | Violation::ReservedOpcode { .. }
            | Violation::LengthHighBitSet
            | Violation::FragmentedControlFrame
            | Violation::ControlPayloadTooLong { .. }
            | Violation::UnexpectedContinuation
            | Violation::DataFrameInsideFragmentedMessage
            | Violation::CloseBodyTooShort
            | Violation::InvalidCloseCode { .. } => 1002,
        }
    }

    /// A short reason for the close frame and logs; never contains payload bytes.
    pub fn reason(&self) -> &'static str {
        match self {
            Violation::UnmaskedClientFrame => "unmasked client frame",
            Violation::MaskedServerFrame => "masked server frame",
            Violation::ReservedBitsSet { .. } => "reserved bits set",
            Violation::CompressedBitMisplaced => "RSV1 on continuation or control frame",
            Violation::ReservedOpcode { .. } => "reserved opcode",
            Violation::LengthHighBitSet => "payload length high bit set",
            Violation::FragmentedControlFrame => "fragmented control frame",
            Violation::ControlPayloadTooLong { .. } => "control frame payload over 125 bytes",
            Violation::UnexpectedContinuation => "continuation without a message",
            Violation::DataFrameInsideFragmentedMessage => "data frame inside fragmented message",
            Violation::FrameTooLarge { .. } => "frame too large",
            Violation::MessageTooLarge { .. } => "message too large",
            Violation::InvalidUtf8Text => "invalid UTF-8 in text message",
            Violation::CloseBodyTooShort => "close payload of one byte",
            Violation::InvalidCloseCode { .. } => "invalid close code",
            Violation::InvalidCloseReason => "invalid UTF-8 in close reason",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::ReservedBitsSet { rsv } => write!(f, "{} ({rsv:#05b})", self.reason()),
            Violation::ReservedOpcode { value } => write!(f, "{} ({value:#x})", self.reason()),
            Violation::ControlPayloadTooLong { len } => write!(f, "{} ({len})", self.reason()),
            Violation::FrameTooLarge { len, max } | Violation::MessageTooLarge { len, max } => {
                write!(f, "{} ({len} > {max})", self.reason())
            }
            Violation::InvalidCloseCode { code } => write!(f, "{} ({code})", self.reason()),
            _ => f.write_str(self.reason()),
        }
    }
}

impl std::error::Error for Violation {}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn close_codes_follow_rfc_7_4_1() {
        assert_eq!(Violation::UnmaskedClientFrame.close_code(), 1002);
        assert_eq!(Violation::ReservedOpcode { value: 3 }.close_code(), 1002);
        assert_eq!(Violation::InvalidCloseCode { code: 999 }.close_code(), 1002);
        assert_eq!(Violation::InvalidUtf8Text.close_code(), 1007);
        assert_eq!(Violation::InvalidCloseReason.close_code(), 1007);
        assert_eq!(
            Violation::FrameTooLarge { len: 2, max: 1 }.close_code(),
            1009
        );
        assert_eq!(
            Violation::MessageTooLarge { len: 2, max: 1 }.close_code(),
            1009
        );
    }

    #[test]
    fn display_names_the_rule_and_value() {
        assert_eq!(
            Violation::FrameTooLarge {
                len: 70_000,
                max: 65_536
            }
            .to_string(),
            "frame too large (70000 > 65536)"
        );
        assert_eq!(
            Violation::ReservedOpcode { value: 0xb }.to_string(),
            "reserved opcode (0xb)"
        );
        // Reasons go into close frames: at most 123 bytes (§5.5).
        assert!(Violation::DataFrameInsideFragmentedMessage.reason().len() <= 123);
    }
}
