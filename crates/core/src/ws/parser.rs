//! One direction of a WebSocket stream, parsed incrementally from body chunks of any size.
//!
//! # Design
//!
//! Envoy hands the filter a direction's bytes as body chunks with arbitrary boundaries: a frame
//! may span many chunks and a chunk may hold many frames. The filter must forward bytes it does
//! not act on untouched, read as little as it can, and replace only whole messages. So the parser
//! does not produce frames; it *describes the chunk*:
//!
//! * [`FrameParser::feed`] takes one chunk and appends [`Event`]s. The `chunk_range`s of the
//!   `HeaderPending`, `FrameStart` and `Payload` events tile the chunk exactly, in order, so every
//!   chunk byte is attributed to exactly one frame. `FrameStart` also carries the frame's absolute
//!   `stream_offset`, and `FrameEnd` the offset just past it, for callers that track the stream as
//!   a whole.
//! * A frame header split across chunks is the only thing the parser must copy to make progress:
//!   at most 13 bytes, reported as `HeaderPending` at the end of a chunk. Its `FrameStart` arrives
//!   with the next chunk, whose `chunk_range` then covers only the rest of the header.
//!   [`FrameHeader::encode`] reproduces a parsed header byte for byte, so a caller that held those
//!   bytes back can write them again without keeping a copy.
//! * Payload bytes are never copied unless asked for. A `Payload` event gives the range (still
//!   masked, as on the wire) and its `payload_offset` within the frame, so a caller that wants one
//!   frame's bytes can slice the chunk and call [`FrameHeader::unmask`] itself.
//! * [`Capture`] asks for whole data messages (text and/or binary). Whether a message is captured
//!   is decided when the first byte of its first frame's header is seen, and every event of that
//!   message's frames says `captured: true`. The parser then unmasks and reassembles the message
//!   across fragments (control frames may be interleaved, §5.4) into one buffer bounded by
//!   [`Limits::max_message`], checked before any byte is stored, and emits it as
//!   [`Event::Message`] right after the `Payload` event that completes it.
//! * Control frames (at most 125 bytes) are always unmasked and delivered as [`Event::Control`]:
//!   a close frame must be checked anyway, and the filter answers pings and watches closes.
//!
//! What the glue does with a chunk follows from that (see [`super::splice()`]): forward the ranges
//! of frames that are not captured, drop the ranges of captured frames, and put the replacement
//! for each captured message (re-encoded frames) where its `Message` event is. When nothing is
//! captured the chunk goes through unchanged, with no copy. Because a captured message's frames
//! are withheld until it completes and control frames pass meanwhile, the control frames move
//! ahead of the message, which §5.4 allows. Only complete frames are ever forwarded in place of
//! the withheld ones, so the peer always sees a well-formed stream.
//!
//! Every rule the parser enforces is a [`Violation`]; after the first one the parser stays failed
//! and returns it again. The events appended before the violation describe bytes that were valid.
//!
//! Compressed messages (permessage-deflate, RSV1 on the first frame) are delivered compressed with
//! `compressed: true`; UTF-8 checks and the message limit apply to what is on the wire, so the
//! glue bounds inflation itself.

use std::mem;
use std::ops::Range;

use super::close::parse_close_payload;
use super::header::{parse_header, FrameHeader, MAX_HEADER_LEN, RSV1, RSV2, RSV3};
use super::utf8::Utf8Validator;
use super::{Direction, Opcode, Violation};

/// Per-stream bounds and negotiated features.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload a single frame may declare (1009 above it).
    pub max_frame_payload: u64,
    /// Largest data message, summed over its fragments (1009 above it).
    pub max_message: u64,
    /// Check that text messages are UTF-8 (1007 otherwise), even ones not captured.
    pub validate_utf8: bool,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    pub extensions_negotiated: bool,
}

/// Which data messages the caller wants reassembled and unmasked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capture {
    pub text: bool,
    pub binary: bool,
}

impl Capture {
    /// Headers only: nothing is copied.
    pub const NONE: Capture = Capture {
        text: false,
        binary: false,
    };
    /// Text messages (e.g. JSON to tag or deduplicate).
    pub const TEXT: Capture = Capture {
        text: true,
        binary: false,
    };
    /// Every data message.
    pub const ALL: Capture = Capture {
        text: true,
        binary: true,
    };

    fn wants(self, opcode: Opcode) -> bool {
        match opcode {
            Opcode::Text => self.text,
            Opcode::Binary => self.binary,
            _ => false,
        }
    }
}

/// A reassembled, unmasked data message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedMessage {
    /// [`Opcode::Text`] or [`Opcode::Binary`].
    pub opcode: Opcode,
    /// RSV1 was set on the first frame (permessage-deflate): `data` is still compressed.
    pub compressed: bool,
    pub data: Vec<u8>,
}

/// What a chunk contains, in stream order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The chunk ends inside a frame header; the parser holds these bytes until the rest arrives.
    /// `captured` tells whether that frame will belong to a captured message.
    HeaderPending {
        chunk_range: Range<usize>,
        captured: bool,
    },
    /// A complete, valid header. `chunk_range` is the part of it inside this chunk: shorter than
    /// `header.header_len` when it began in an earlier chunk (reported as `HeaderPending`).
    FrameStart {
        header: FrameHeader,
        stream_offset: u64,
        chunk_range: Range<usize>,
        captured: bool,
    },
    /// Payload bytes of the current frame, as on the wire, `payload_offset` bytes into it.
    Payload {
        chunk_range: Range<usize>,
        payload_offset: u64,
        captured: bool,
    },
    /// A complete control frame's unmasked payload (a close payload has been validated).
    Control { opcode: Opcode, payload: Vec<u8> },
    /// A complete captured data message; the frame that finished it ends next.
    Message(CapturedMessage),
    /// The current frame is complete; `stream_offset` is just past its last byte.
    FrameEnd { stream_offset: u64 },
}

#[derive(Debug, Clone, Copy)]
struct CurrentFrame {
    header: FrameHeader,
    payload_seen: u64,
    captured: bool,
}

#[derive(Debug, Clone, Copy)]
struct MessageInProgress {
    opcode: Opcode,
    compressed: bool,
    /// Payload bytes declared so far by the message's frames (already checked against the limit).
    declared: u64,
    captured: bool,
    utf8: Option<Utf8Validator>,
}

/// Incremental parser for one direction of one WebSocket stream.
#[derive(Debug, Clone)]
pub struct FrameParser {
    direction: Direction,
    limits: Limits,
    capture: Capture,
    /// Bytes consumed from all chunks so far.
    stream_offset: u64,
    held_header: [u8; MAX_HEADER_LEN],
    held_header_len: usize,
    /// Capture decision for the frame whose header is being held.
    held_header_captured: bool,
    frame: Option<CurrentFrame>,
    message: Option<MessageInProgress>,
    message_data: Vec<u8>,
    control_data: Vec<u8>,
    failed: Option<Violation>,
}

impl FrameParser {
    pub fn new(direction: Direction, limits: Limits) -> FrameParser {
        FrameParser {
            direction,
            limits,
            capture: Capture::NONE,
            stream_offset: 0,
            held_header: [0; MAX_HEADER_LEN],
            held_header_len: 0,
            held_header_captured: false,
            frame: None,
            message: None,
            message_data: Vec::new(),
            control_data: Vec::new(),
            failed: None,
        }
    }

    /// Sets which messages to capture, from the next message whose first header byte arrives on.
    pub fn with_capture(mut self, capture: Capture) -> FrameParser {
        self.capture = capture;
        self
    }

    /// As [`FrameParser::with_capture`], between chunks. A message already under way keeps the
    /// decision made at its start.
    pub fn set_capture(&mut self, capture: Capture) {
        self.capture = capture;
    }

    pub fn capture(&self) -> Capture {
        self.capture
    }

    pub fn direction(&self) -> Direction {
        self.direction
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Bytes consumed from all chunks so far.
    pub fn stream_offset(&self) -> u64 {
        self.stream_offset
    }

    /// The start of a frame header held from earlier chunks (at most 13 bytes).
    pub fn held_header_bytes(&self) -> &[u8] {
        self.held_header.get(..self.held_header_len).unwrap_or(&[])
    }

    /// Bytes the parser holds for the caller: a partial header and a captured message so far.
    pub fn buffered_bytes(&self) -> usize {
        self.held_header_len + self.message_data.len()
    }

    /// The stream is between frames: a frame the filter adds here lands intact.
    pub fn at_frame_boundary(&self) -> bool {
        self.failed.is_none() && self.frame.is_none() && self.held_header_len == 0
    }

    /// A fragmented data message is under way: only control frames may be added (§5.4).
    pub fn in_fragmented_message(&self) -> bool {
        self.message.is_some()
    }

    /// The next frame to start will be inside a fragmented data message: one is open and the
    /// frame under way (if any) does not end it. Only control frames may go there (§5.4).
    pub fn next_frame_inside_message(&self) -> bool {
        match (&self.message, &self.frame) {
            (None, _) => false,
            (Some(_), Some(frame)) if !frame.header.opcode.is_control() => !frame.header.fin,
            (Some(_), _) => true,
        }
    }

    /// The violation that stopped this parser, if any.
    pub fn failed(&self) -> Option<Violation> {
        self.failed
    }

    /// Parses the next chunk of the stream, appending what it contains to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Event>) -> Result<(), Violation> {
        if let Some(violation) = self.failed {
            return Err(violation);
        }
        let mut position = 0;
        let result = loop {
            if position >= chunk.len() {
                break Ok(());
            }
            let step = if self.frame.is_some() {
                self.read_payload(chunk, position, out)
            } else {
                self.read_header(chunk, position, out)
            };
            match step {
                Ok(next) => position = next,
                Err(violation) => break Err(violation),
            }
        };
        if let Err(violation) = result {
            self.failed = Some(violation);
        }
        result
    }

    /// Reads (the rest of) a header starting at `position`; returns where the chunk continues.
    fn read_header(
        &mut self,
        chunk: &[u8],
        position: usize,
        out: &mut Vec<Event>,
    ) -> Result<usize, Violation> {
        let rest = chunk.get(position..).unwrap_or(&[]);
        let held_before = self.held_header_len;
        let parsed = if held_before == 0 {
            parse_header(rest, self.limits.max_frame_payload)?
        } else {
            let take = rest.len().min(MAX_HEADER_LEN - held_before);
            let (Some(slot), Some(piece)) = (
                self.held_header.get_mut(held_before..held_before + take),
                rest.get(..take),
            ) else {
                return Ok(chunk.len());
            };
            slot.copy_from_slice(piece);
            let held = self.held_header.get(..held_before + take).unwrap_or(&[]);
            parse_header(held, self.limits.max_frame_payload)?
        };
        let Some(header) = parsed else {
            // Incomplete: rest.len() < header_len <= 14, so everything left fits the hold.
            if held_before == 0 {
                if let (Some(slot), Some(&first)) =
                    (self.held_header.get_mut(..rest.len()), rest.first())
                {
                    slot.copy_from_slice(rest);
                    self.held_header_captured = self.would_capture(first);
                }
            }
            self.held_header_len = held_before + rest.len();
            self.stream_offset += to_u64(rest.len());
            out.push(Event::HeaderPending {
                chunk_range: position..chunk.len(),
                captured: self.held_header_captured,
            });
            return Ok(chunk.len());
        };
        let captured = if held_before == 0 {
            self.would_capture(header.opcode.bits())
        } else {
            self.held_header_captured
        };
        // parse_header returned None for the held prefix, so the header is longer than it.
        let in_chunk = header.header_len.saturating_sub(held_before);
        let frame_start = self.stream_offset - to_u64(held_before);
        self.held_header_len = 0;
        self.check_frame(&header)?;
        self.stream_offset += to_u64(in_chunk);
        let captured = self.start_frame(header, captured)?;
        out.push(Event::FrameStart {
            header,
            stream_offset: frame_start,
            chunk_range: position..position + in_chunk,
            captured,
        });
        if header.payload_len == 0 {
            self.end_frame(out)?;
        }
        Ok(position + in_chunk)
    }

    /// Whether a frame whose first byte is `first` would belong to a captured message.
    fn would_capture(&self, first: u8) -> bool {
        match Opcode::from_bits(first & 0x0F) {
            Ok(Opcode::Continuation) => self.message.is_some_and(|message| message.captured),
            Ok(opcode) => self.capture.wants(opcode),
            Err(_) => false,
        }
    }

    /// Rules that need the direction, the negotiated extensions or earlier frames.
    fn check_frame(&self, header: &FrameHeader) -> Result<(), Violation> {
        match self.direction {
            // §5.1: a server MUST close the connection upon receiving a frame that is not masked.
            Direction::ClientToServer if !header.masked => {
                return Err(Violation::UnmaskedClientFrame)
            }
            // §5.1: a client MUST close a connection if it detects a masked frame.
            Direction::ServerToClient if header.masked => return Err(Violation::MaskedServerFrame),
            _ => {}
        }
        // §5.2: RSV bits MUST be 0 unless an extension defining them was negotiated.
        if header.rsv & (RSV2 | RSV3) != 0
            || (header.rsv & RSV1 != 0 && !self.limits.extensions_negotiated)
        {
            return Err(Violation::ReservedBitsSet { rsv: header.rsv });
        }
        let starts_message = matches!(header.opcode, Opcode::Text | Opcode::Binary);
        // RFC 7692 §6.1: RSV1 only on a message's first frame; §6: never on control frames.
        if header.rsv & RSV1 != 0 && !starts_message {
            return Err(Violation::CompressedBitMisplaced);
        }
        if header.opcode.is_control() {
            return Ok(());
        }
        let declared_before = match (self.message, starts_message) {
            // §5.4: a continuation frame MUST follow a non-final data frame.
            (None, false) => return Err(Violation::UnexpectedContinuation),
            // §5.4: fragments of one message MUST NOT be interleaved with another's.
            (Some(_), true) => return Err(Violation::DataFrameInsideFragmentedMessage),
            (Some(message), false) => message.declared,
            (None, true) => 0,
        };
        let total = declared_before.saturating_add(header.payload_len);
        if total > self.limits.max_message {
            return Err(Violation::MessageTooLarge {
                len: total,
                max: self.limits.max_message,
            });
        }
        Ok(())
    }

    /// Opens the frame (and its message); returns whether its bytes are captured.
    fn start_frame(&mut self, header: FrameHeader, captured: bool) -> Result<bool, Violation> {
        let captured = if header.opcode.is_control() {
            self.control_data.clear();
            false
        } else {
            let message = match (header.opcode, self.message) {
                (Opcode::Continuation, Some(message)) => message,
                _ => {
                    let compressed = header.rsv & RSV1 != 0;
                    self.message_data.clear();
                    MessageInProgress {
                        opcode: header.opcode,
                        compressed,
                        declared: 0,
                        captured,
                        utf8: (header.opcode == Opcode::Text
                            && self.limits.validate_utf8
                            && !compressed)
                            .then(Utf8Validator::default),
                    }
                }
            };
            let declared = message.declared.saturating_add(header.payload_len);
            // The message buffer grows with the bytes that arrive; its bound was checked above
            // and must also fit this platform's address space (wasm32).
            if message.captured && usize::try_from(declared).is_err() {
                return Err(Violation::MessageTooLarge {
                    len: declared,
                    max: self.limits.max_message,
                });
            }
            self.message = Some(MessageInProgress {
                declared,
                ..message
            });
            message.captured
        };
        self.frame = Some(CurrentFrame {
            header,
            payload_seen: 0,
            captured,
        });
        Ok(captured)
    }

    fn read_payload(
        &mut self,
        chunk: &[u8],
        position: usize,
        out: &mut Vec<Event>,
    ) -> Result<usize, Violation> {
        let Some(frame) = self.frame else {
            return Ok(position);
        };
        let remaining = frame.header.payload_len - frame.payload_seen;
        let available = chunk.len() - position;
        let take = usize::try_from(remaining).map_or(available, |left| left.min(available));
        let range = position..position + take;
        let data = chunk.get(range.clone()).unwrap_or(&[]);
        let header = frame.header;
        let offset = frame.payload_seen;
        if header.opcode.is_control() {
            let start = self.control_data.len();
            self.control_data.extend_from_slice(data);
            if let Some(fresh) = self.control_data.get_mut(start..) {
                header.unmask(fresh, offset);
            }
        } else if let Some(message) = self.message.as_mut() {
            if frame.captured {
                let start = self.message_data.len();
                self.message_data.extend_from_slice(data);
                let fresh = self.message_data.get_mut(start..).unwrap_or(&mut []);
                header.unmask(fresh, offset);
                if let Some(validator) = message.utf8.as_mut() {
                    // §8.1: text data MUST be valid UTF-8; checked as it arrives (fail fast).
                    validator
                        .feed(fresh)
                        .map_err(|_| Violation::InvalidUtf8Text)?;
                }
            } else if let Some(validator) = message.utf8.as_mut() {
                // §8.1: as above, without keeping the bytes: unmask through a small scratch.
                validate_in_place(validator, &header, data, offset)?;
            }
        }
        out.push(Event::Payload {
            chunk_range: range,
            payload_offset: offset,
            captured: frame.captured,
        });
        self.stream_offset += to_u64(take);
        let payload_seen = offset + to_u64(take);
        self.frame = Some(CurrentFrame {
            payload_seen,
            ..frame
        });
        if payload_seen == header.payload_len {
            self.end_frame(out)?;
        }
        Ok(position + take)
    }

    fn end_frame(&mut self, out: &mut Vec<Event>) -> Result<(), Violation> {
        let Some(frame) = self.frame.take() else {
            return Ok(());
        };
        let header = frame.header;
        if header.opcode.is_control() {
            if header.opcode == Opcode::Close {
                parse_close_payload(&self.control_data)?;
            }
            out.push(Event::Control {
                opcode: header.opcode,
                payload: self.control_data.clone(),
            });
        } else if header.fin {
            if let Some(message) = self.message.take() {
                if let Some(validator) = message.utf8 {
                    // §8.1: a text message MUST NOT end inside a code point.
                    validator.finish().map_err(|_| Violation::InvalidUtf8Text)?;
                }
                if message.captured {
                    out.push(Event::Message(CapturedMessage {
                        opcode: message.opcode,
                        compressed: message.compressed,
                        data: mem::take(&mut self.message_data),
                    }));
                }
            }
        }
        out.push(Event::FrameEnd {
            stream_offset: self.stream_offset,
        });
        Ok(())
    }
}

/// Validates masked text without keeping it: unmask block by block on the stack.
fn validate_in_place(
    validator: &mut Utf8Validator,
    header: &FrameHeader,
    data: &[u8],
    offset: u64,
) -> Result<(), Violation> {
    if header.mask_key.is_none() {
        return validator.feed(data).map_err(|_| Violation::InvalidUtf8Text);
    }
    const BLOCK: usize = 512;
    let mut scratch = [0u8; BLOCK];
    let mut block_offset = offset;
    for piece in data.chunks(BLOCK) {
        let Some(block) = scratch.get_mut(..piece.len()) else {
            continue;
        };
        block.copy_from_slice(piece);
        header.unmask(block, block_offset);
        validator
            .feed(block)
            .map_err(|_| Violation::InvalidUtf8Text)?;
        block_offset += to_u64(piece.len());
    }
    Ok(())
}

/// usize is at most 64 bits on every target this crate builds for.
fn to_u64(len: usize) -> u64 {
    len as u64
}
