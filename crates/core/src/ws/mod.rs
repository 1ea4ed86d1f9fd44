//! RFC 6455 frame engine: everything Switchboard decides about WebSocket bytes after the 101.
//!
//! Reads top to bottom like the pipeline: [`opcode`] and [`header`] decode the frame prefix,
//! [`mask`] undoes client masking, [`parser`] tracks one direction of a stream across arbitrary
//! chunk boundaries and enforces the protocol's MUSTs ([`violation`] lists them with their close
//! codes), [`splice`](mod@splice) turns the parser's events into the bytes to forward for a
//! chunk, and [`close`] / [`message`] build the frames the filter itself sends. Nothing here
//! allocates more than a configured limit, panics, reads a clock or draws randomness: masking
//! keys are arguments.

pub mod close;
#[doc(hidden)]
pub mod fuzzing;
pub mod header;
pub mod mask;
pub mod message;
pub mod opcode;
pub mod parser;
#[cfg(test)]
mod properties;
pub mod splice;
#[cfg(test)]
mod tests;
mod utf8;
pub mod violation;

pub use close::{encode_close, parse_close_payload, CloseError, ClosePayload};
pub use header::{encode_header, parse_header, EncodedHeader, FrameHeader};
pub use mask::{apply_mask, apply_mask_reference};
pub use message::{encode_binary, encode_frame, encode_text};
pub use opcode::Opcode;
pub use parser::{Capture, CapturedMessage, Event, FrameParser, Limits};
pub use splice::{splice, splice_with_insert, Splice};
pub use violation::Violation;

/// Which way a stream's bytes travel. RFC 6455 §5.1 ties masking to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Downstream client to upstream server (`on_http_request_body`): every frame is masked.
    ClientToServer,
    /// Upstream server to downstream client (`on_http_response_body`): no frame is masked.
    ServerToClient,
}

impl Direction {
    /// The masking key a frame the filter sends this way must carry: `key` toward the server,
    /// none toward the client. The caller draws `key` fresh for every frame (§5.3).
    pub fn frame_mask(self, key: [u8; 4]) -> Option<[u8; 4]> {
        match self {
            Direction::ClientToServer => Some(key),
            Direction::ServerToClient => None,
        }
    }
}
