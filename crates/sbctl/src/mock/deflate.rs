//! permessage-deflate (RFC 7692): reading the client's offers, choosing the answer, and the
//! per-message codec. tungstenite 0.28 has no deflate support, so sessions that negotiate it run
//! on the mock's own frame loop (`session.rs`) with this codec.
//!
//! The compressor always uses a 32 KiB window (flate2's pure-Rust backend cannot use a smaller
//! one), so offers that demand a smaller server window are declined.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use hyper::header::{HeaderMap, SEC_WEBSOCKET_EXTENSIONS};

/// The extension token (RFC 7692 §7).
pub const EXTENSION: &str = "permessage-deflate";
/// RFC 7692 §7.2.1: a sync flush ends in these four bytes, which the sender removes and the
/// receiver appends again.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Output is grown in steps of this much while compressing or inflating.
const CHUNK_BYTES: usize = 16 * 1024;
/// The only server window size the compressor can honour.
const SERVER_WINDOW_BITS: u8 = 15;

/// What the server agreed to for one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeflateAgreement {
    /// RFC 7692 §7.1.1.1: the client asked the server to reset its compressor per message.
    pub server_no_context_takeover: bool,
}

impl DeflateAgreement {
    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    pub fn response_header(&self) -> String {
        if self.server_no_context_takeover {
            format!("{EXTENSION}; server_no_context_takeover")
        } else {
            EXTENSION.to_owned()
        }
    }
}

/// One offer from `Sec-WebSocket-Extensions`: its name and its parameters (values unquoted).
fn offers(
    headers: &HeaderMap,
) -> impl Iterator<Item = (String, Vec<(String, Option<String>)>)> + '_ {
    headers
        .get_all(SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|offer| {
            let mut parts = offer.split(';').map(str::trim);
            let name = parts.next().unwrap_or_default().to_ascii_lowercase();
            let params = parts
                .filter(|part| !part.is_empty())
                .map(|part| match part.split_once('=') {
                    Some((key, value)) => (
                        key.trim().to_ascii_lowercase(),
                        Some(value.trim().trim_matches('"').to_owned()),
                    ),
                    None => (part.to_ascii_lowercase(), None),
                })
                .collect();
            (name, params)
        })
}

/// True if the client offered permessage-deflate in any form.
pub fn offered(headers: &HeaderMap) -> bool {
    offers(headers).any(|(name, _)| name == EXTENSION)
}

/// Window bits as RFC 7692 §7.1.2 allows them: 8 to 15, decimal, no leading zero.
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') {
        return None;
    }
    value
        .parse::<u8>()
        .ok()
        .filter(|bits| (8..=15).contains(bits))
}

/// Accepts the first permessage-deflate offer the server can honour (RFC 7692 §5: the server
/// picks one offer or none). An offer is declined if it has an unknown or repeated parameter,
/// a malformed value, or asks for a server window below 32 KiB.
pub fn negotiate(headers: &HeaderMap) -> Option<DeflateAgreement> {
    offers(headers)
        .filter(|(name, _)| name == EXTENSION)
        .find_map(|(_, params)| accept_offer(&params))
}

fn accept_offer(params: &[(String, Option<String>)]) -> Option<DeflateAgreement> {
    let mut agreement = DeflateAgreement::default();
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in params {
        // RFC 7692 §7: an offer with a repeated parameter MUST be declined.
        if seen.contains(&key.as_str()) {
            return None;
        }
        seen.push(key);
        match (key.as_str(), value.as_deref()) {
            ("server_no_context_takeover", None) => agreement.server_no_context_takeover = true,
            // The client may reset its own context; inflating works either way.
            ("client_no_context_takeover", None) => {}
            // RFC 7692 §7.1.2.1: the server must compress with at most this window; only 15 is
            // possible here.
            ("server_max_window_bits", Some(bits)) => {
                if window_bits(bits)? < SERVER_WINDOW_BITS {
                    return None;
                }
            }
            // RFC 7692 §7.1.2.2: the client merely says it supports the parameter; the answer may
            // leave it out, and a 32 KiB inflate window reads any client window.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(bits)) => {
                window_bits(bits)?;
            }
            // RFC 7692 §7: an offer with an unknown parameter or an invalid value MUST be declined.
            _ => return None,
        }
    }
    Some(agreement)
}

/// A message that could not be (de)compressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeflateError {
    /// The compressed data is not valid DEFLATE.
    #[error("invalid compressed data")]
    Corrupt,
    /// The message inflates past the limit.
    #[error("inflated message exceeds {0} bytes")]
    TooLarge(usize),
    /// The compressor misbehaved (it did not end its output in a sync-flush marker).
    #[error("compressor failed")]
    Compressor,
}

/// Compression state of one session, in both directions.
pub struct DeflateCodec {
    compressor: Compress,
    decompressor: Decompress,
    agreement: DeflateAgreement,
    max_message_bytes: usize,
}

impl std::fmt::Debug for DeflateCodec {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("DeflateCodec")
            .field("agreement", &self.agreement)
            .field("max_message_bytes", &self.max_message_bytes)
            .finish_non_exhaustive()
    }
}

impl DeflateCodec {
    pub fn new(agreement: DeflateAgreement, max_message_bytes: usize) -> Self {
        Self {
            compressor: Compress::new(Compression::default(), false),
            decompressor: Decompress::new(false),
            agreement,
            max_message_bytes,
        }
    }

    /// Compresses one message payload (RFC 7692 §7.2.1: raw DEFLATE, sync flush, tail removed).
    pub fn compress(&mut self, message: &[u8]) -> Result<Vec<u8>, DeflateError> {
        // DEFLATE never grows data by more than a few bytes per 16 KiB stored block.
        let limit = message.len() + message.len() / 8 + 1024;
        let mut output = Vec::with_capacity(message.len() / 2 + 64);
        let start = self.compressor.total_in();
        loop {
            let consumed = usize::try_from(self.compressor.total_in() - start)
                .map_err(|_| DeflateError::Compressor)?;
            let rest = message.get(consumed..).ok_or(DeflateError::Compressor)?;
            if output.capacity() - output.len() < 64 {
                output.reserve(CHUNK_BYTES);
            }
            self.compressor
                .compress_vec(rest, &mut output, FlushCompress::Sync)
                .map_err(|_| DeflateError::Compressor)?;
            let done = self.compressor.total_in() - start
                == u64::try_from(message.len()).map_err(|_| DeflateError::Compressor)?;
            // The flush is complete once all input is in and the output was not filled up.
            if done && output.len() < output.capacity() {
                break;
            }
            if output.len() > limit {
                return Err(DeflateError::Compressor);
            }
        }
        if !output.ends_with(&SYNC_TAIL) {
            return Err(DeflateError::Compressor);
        }
        output.truncate(output.len() - SYNC_TAIL.len());
        if self.agreement.server_no_context_takeover {
            self.compressor.reset();
        }
        Ok(output)
    }

    /// Inflates one message payload (RFC 7692 §7.2.2: append the tail, then inflate), refusing
    /// to produce more than the message limit.
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<Vec<u8>, DeflateError> {
        let mut input = Vec::with_capacity(compressed.len() + SYNC_TAIL.len());
        input.extend_from_slice(compressed);
        input.extend_from_slice(&SYNC_TAIL);
        let mut output: Vec<u8> = Vec::new();
        let start = self.decompressor.total_in();
        loop {
            let consumed = usize::try_from(self.decompressor.total_in() - start)
                .map_err(|_| DeflateError::Corrupt)?;
            let rest = input.get(consumed..).ok_or(DeflateError::Corrupt)?;
            if output.capacity() - output.len() < 64 {
                let room = (self.max_message_bytes + 1).saturating_sub(output.len());
                if room == 0 {
                    return Err(DeflateError::TooLarge(self.max_message_bytes));
                }
                output.reserve_exact(room.min(CHUNK_BYTES));
            }
            let before_out = self.decompressor.total_out();
            let status = self
                .decompressor
                .decompress_vec(rest, &mut output, FlushDecompress::Sync)
                .map_err(|_| DeflateError::Corrupt)?;
            if output.len() > self.max_message_bytes {
                return Err(DeflateError::TooLarge(self.max_message_bytes));
            }
            let consumed_all = usize::try_from(self.decompressor.total_in() - start)
                .map_err(|_| DeflateError::Corrupt)?
                == input.len();
            if status == Status::StreamEnd {
                // A final block ends the stream; the next message starts a fresh one.
                self.decompressor.reset(false);
                break;
            }
            if consumed_all && output.len() < output.capacity() {
                break;
            }
            let progressed = self.decompressor.total_out() != before_out
                || usize::try_from(self.decompressor.total_in() - start).ok() != Some(consumed);
            if !progressed && output.len() < output.capacity() {
                return Err(DeflateError::Corrupt);
            }
        }
        Ok(output)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on an unexpected error"
)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn detects_offers() {
        assert!(offered(&headers(&[
            "x-foo, permessage-deflate; client_max_window_bits"
        ])));
        assert!(offered(&headers(&["Permessage-Deflate"])));
        assert!(!offered(&headers(&["x-webkit-deflate-frame"])));
        assert!(!offered(&HeaderMap::new()));
    }

    #[test]
    fn accepts_what_it_can_honour() {
        let plain = negotiate(&headers(&["permessage-deflate; client_max_window_bits"])).unwrap();
        assert_eq!(plain.response_header(), "permessage-deflate");
        let reset = negotiate(&headers(&[
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        ]))
        .unwrap();
        assert_eq!(
            reset.response_header(),
            "permessage-deflate; server_no_context_takeover"
        );
        assert!(negotiate(&headers(&["permessage-deflate; server_max_window_bits=15"])).is_some());
        assert!(negotiate(&headers(&[
            "permessage-deflate; client_max_window_bits=\"10\""
        ]))
        .is_some());
    }

    #[test]
    fn declines_what_it_cannot() {
        for offer in [
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=010",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
            "permessage-deflate; server_no_context_takeover=1",
            "x-other",
        ] {
            assert_eq!(negotiate(&headers(&[offer])), None, "{offer}");
        }
        // A declined offer does not stop a later acceptable one.
        let agreement = negotiate(&headers(&[
            "permessage-deflate; server_max_window_bits=9, permessage-deflate",
        ]));
        assert_eq!(agreement, Some(DeflateAgreement::default()));
    }

    #[test]
    fn inflates_the_rfc_example() {
        // RFC 7692 §7.2.3.1: "Hello" compressed in one message.
        let mut codec = DeflateCodec::new(DeflateAgreement::default(), 1024);
        let inflated = codec
            .decompress(&[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])
            .unwrap();
        assert_eq!(inflated, b"Hello");
        // RFC 7692 §7.2.3.2: a second "Hello" that refers back into the shared window.
        let inflated = codec.decompress(&[0xf2, 0x00, 0x11, 0x00, 0x00]).unwrap();
        assert_eq!(inflated, b"Hello");
    }

    #[test]
    fn round_trips_with_and_without_context_takeover() {
        for server_no_context_takeover in [false, true] {
            let agreement = DeflateAgreement {
                server_no_context_takeover,
            };
            let mut sender = DeflateCodec::new(agreement, 1 << 20);
            let mut receiver = DeflateCodec::new(agreement, 1 << 20);
            let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            for message in [&b"Hello"[..], b"", &big[..], b"Hello"] {
                let compressed = sender.compress(message).unwrap();
                assert!(!compressed.ends_with(&SYNC_TAIL));
                assert_eq!(receiver.decompress(&compressed).unwrap(), message);
            }
        }
    }

    #[test]
    fn inflating_is_bounded() {
        let mut sender = DeflateCodec::new(DeflateAgreement::default(), 1 << 20);
        let bomb = sender.compress(&vec![b'a'; 100_000]).unwrap();
        assert!(bomb.len() < 1000);
        let mut receiver = DeflateCodec::new(DeflateAgreement::default(), 10_000);
        assert_eq!(
            receiver.decompress(&bomb),
            Err(DeflateError::TooLarge(10_000))
        );
    }

    #[test]
    fn garbage_is_refused() {
        let mut receiver = DeflateCodec::new(DeflateAgreement::default(), 1 << 20);
        assert_eq!(
            receiver.decompress(&[0xff, 0xff, 0xff, 0xff]),
            Err(DeflateError::Corrupt)
        );
    }
}
