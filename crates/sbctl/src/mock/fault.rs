//! Session faults: what a misbehaving platform sends, chosen per session (`?fault=`) or for the
//! whole mock (`--fault`). Pure: the bytes of each protocol violation are built here and written
//! by the session loop.

use super::frame::{self, FrameSpec, OPCODE_TEXT};

/// Of the live events on a `misrouted` session, every this-many-th names another agent.
pub const MISROUTE_EVERY: u64 = 3;
/// Longest `--oversized-bytes` accepted.
pub const MAX_OVERSIZED_BYTES: usize = 64 * 1024 * 1024;
/// Default size of the `oversized` message.
pub const DEFAULT_OVERSIZED_BYTES: usize = 2 * 1024 * 1024;
/// Default number of events before the `drop` fault closes the connection.
pub const DEFAULT_DROP_AFTER: u64 = 5;

/// Payload of the `masked`, `reserved-opcode` and `rsv` frames: the "Hello" of RFC 6455 §5.7.
pub const HELLO: &[u8] = b"Hello";
/// Masking key of the `masked` frame: the one of RFC 6455 §5.7.
pub const MASKED_KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
/// Payload of the `malformed` text frame: `{"bad":"` then FF FE (never valid in UTF-8) then `"}`.
pub const MALFORMED_PAYLOAD: &[u8] = b"{\"bad\":\"\xff\xfe\"}";
/// The opcode of the `reserved-opcode` frame: 0x3, reserved for further non-control frames.
pub const RESERVED_OPCODE: u8 = 0x3;

/// How a session misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionFault {
    /// A conforming session.
    #[default]
    None,
    /// Every third live event is another agent's event (other `agentId` and `routingKey`).
    Misrouted,
    /// A text frame whose payload is not UTF-8.
    Malformed,
    /// One text message of `--oversized-bytes`.
    Oversized,
    /// A masked frame from the server (RFC 6455 §5.1 forbids it).
    Masked,
    /// A data frame with the reserved opcode 0x3.
    ReservedOpcode,
    /// A text frame with RSV1 set though no extension defines it.
    Rsv,
    /// The TCP connection closes without a Close frame after `--drop-after` events.
    Drop,
}

impl SessionFault {
    pub const ALL: [SessionFault; 8] = [
        SessionFault::None,
        SessionFault::Misrouted,
        SessionFault::Malformed,
        SessionFault::Oversized,
        SessionFault::Masked,
        SessionFault::ReservedOpcode,
        SessionFault::Rsv,
        SessionFault::Drop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SessionFault::None => "none",
            SessionFault::Misrouted => "misrouted",
            SessionFault::Malformed => "malformed",
            SessionFault::Oversized => "oversized",
            SessionFault::Masked => "masked",
            SessionFault::ReservedOpcode => "reserved-opcode",
            SessionFault::Rsv => "rsv",
            SessionFault::Drop => "drop",
        }
    }

    /// Faults that write one hand-built frame; these sessions run on the mock's own frame loop.
    pub fn is_frame_violation(self) -> bool {
        matches!(
            self,
            SessionFault::Malformed
                | SessionFault::Oversized
                | SessionFault::Masked
                | SessionFault::ReservedOpcode
                | SessionFault::Rsv
        )
    }

    /// The bytes of the violating frame, or `None` for faults that are not one frame.
    pub fn violation_frame(self, oversized_bytes: usize) -> Option<Vec<u8>> {
        let text = FrameSpec::server(OPCODE_TEXT);
        match self {
            SessionFault::Malformed => Some(frame::encode(&text, MALFORMED_PAYLOAD)),
            SessionFault::Oversized => {
                Some(frame::encode(&text, &oversized_payload(oversized_bytes)))
            }
            SessionFault::Masked => Some(frame::encode(
                &FrameSpec {
                    mask: Some(MASKED_KEY),
                    ..text
                },
                HELLO,
            )),
            SessionFault::ReservedOpcode => {
                Some(frame::encode(&FrameSpec::server(RESERVED_OPCODE), HELLO))
            }
            SessionFault::Rsv => Some(frame::encode(&FrameSpec { rsv1: true, ..text }, HELLO)),
            SessionFault::None | SessionFault::Misrouted | SessionFault::Drop => None,
        }
    }
}

impl std::str::FromStr for SessionFault {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        SessionFault::ALL
            .into_iter()
            .find(|fault| fault.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = SessionFault::ALL.iter().map(|f| f.as_str()).collect();
                format!(
                    "unknown fault {text:?} (expected one of {})",
                    names.join(", ")
                )
            })
    }
}

/// The agent a misrouted event names instead of the session's: `other-<agent>`.
pub fn misrouted_agent(agent: &str) -> String {
    format!("other-{agent}")
}

/// The routing key a misrouted event names: `other-<routing key>`, or `other-<agent>` when the
/// session has no routing key.
pub fn misrouted_routing_key(routing_key: Option<&str>, agent: &str) -> String {
    format!("other-{}", routing_key.unwrap_or(agent))
}

/// Valid UTF-8 JSON of exactly `size` bytes (`{"type":"oversized","data":"xxx…"}`), or `size`
/// bytes of `x` when that is too small to hold the JSON.
pub fn oversized_payload(size: usize) -> Vec<u8> {
    const HEAD: &[u8] = b"{\"type\":\"oversized\",\"data\":\"";
    const TAIL: &[u8] = b"\"}";
    if size < HEAD.len() + TAIL.len() {
        return vec![b'x'; size];
    }
    let mut payload = Vec::with_capacity(size);
    payload.extend_from_slice(HEAD);
    payload.resize(size - TAIL.len(), b'x');
    payload.extend_from_slice(TAIL);
    payload
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on an unexpected error"
)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for fault in SessionFault::ALL {
            assert_eq!(fault.as_str().parse::<SessionFault>(), Ok(fault));
        }
        assert!("sideways".parse::<SessionFault>().is_err());
    }

    #[test]
    fn violation_bytes() {
        let frame = |fault: SessionFault| fault.violation_frame(0).unwrap();
        // FIN + text, length 12, then `{"bad":"` FF FE `"}`.
        assert_eq!(
            frame(SessionFault::Malformed),
            [0x81, 0x0c, 0x7b, 0x22, 0x62, 0x61, 0x64, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]
        );
        // RFC 6455 §5.7's masked "Hello", byte for byte.
        assert_eq!(
            frame(SessionFault::Masked),
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        assert_eq!(
            frame(SessionFault::ReservedOpcode),
            [0x83, 0x05, b'H', b'e', b'l', b'l', b'o']
        );
        assert_eq!(
            frame(SessionFault::Rsv),
            [0xc1, 0x05, b'H', b'e', b'l', b'l', b'o']
        );
        for fault in [
            SessionFault::None,
            SessionFault::Misrouted,
            SessionFault::Drop,
        ] {
            assert_eq!(fault.violation_frame(10), None);
            assert!(!fault.is_frame_violation());
        }
    }

    #[test]
    fn oversized_is_one_frame_of_exactly_the_size() {
        let size = 2 * 1024 * 1024;
        let frame = SessionFault::Oversized.violation_frame(size).unwrap();
        assert_eq!(
            frame.get(..10).unwrap(),
            [0x81, 0x7f, 0, 0, 0, 0, 0, 0x20, 0x00, 0x00]
        );
        assert_eq!(frame.len(), 10 + size);
        let payload = std::str::from_utf8(frame.get(10..).unwrap()).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(payload).unwrap();
        assert_eq!(parsed["type"], "oversized");
        assert_eq!(oversized_payload(5), b"xxxxx");
        assert_eq!(oversized_payload(30).len(), 30);
    }

    #[test]
    fn misrouting_names_someone_else() {
        assert_eq!(misrouted_agent("a1"), "other-a1");
        assert_eq!(misrouted_routing_key(Some("rk"), "a1"), "other-rk");
        assert_eq!(misrouted_routing_key(None, "a1"), "other-a1");
    }
}
