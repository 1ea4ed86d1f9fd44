//! Fuzz bodies shared by the `fuzz/` targets and the ordinary tests that replay them over a seed
//! corpus and pseudo-random inputs. Each returns `Err(description)` when the engine breaks one of
//! its own promises (the fuzz targets turn that into a crash); protocol violations in the input
//! are expected outcomes, not findings. Also the deterministic generator the tests use.

use super::header::{parse_header, MAX_HEADER_LEN};
use super::mask::{apply_mask, apply_mask_reference};
use super::message::encode_frame;
use super::parser::{Capture, CapturedMessage, Event, FrameParser, Limits};
use super::splice::{splice, Splice};
use super::{Direction, FrameHeader, Opcode, Violation};

/// Header decoding: a header is never longer than its input or 14 bytes, every proper prefix of
/// it asks for more bytes, and it encodes back to exactly the bytes it came from.
pub fn header_parse(data: &[u8]) -> Result<(), String> {
    let limit = match data.first() {
        Some(first) if first & 0x40 != 0 => 1 << 16,
        _ => u64::MAX,
    };
    let header = match parse_header(data, limit) {
        Ok(Some(header)) => header,
        Ok(None) => {
            return if data.len() >= MAX_HEADER_LEN {
                Err(format!("{} bytes still incomplete", data.len()))
            } else {
                Ok(())
            }
        }
        Err(_) => return Ok(()),
    };
    if header.header_len > data.len() || header.header_len > MAX_HEADER_LEN {
        return Err(format!(
            "header_len {} for {} bytes",
            header.header_len,
            data.len()
        ));
    }
    if header.masked != header.mask_key.is_some() || header.payload_len > limit {
        return Err(format!("inconsistent header {header:?}"));
    }
    let wire = data.get(..header.header_len).unwrap_or(&[]);
    if header.encode().as_bytes() != wire {
        return Err(format!("{header:?} re-encodes differently from {wire:x?}"));
    }
    for end in 0..header.header_len {
        let prefix = data.get(..end).unwrap_or(&[]);
        if parse_header(prefix, limit) != Ok(None) {
            return Err(format!("prefix of {end} bytes was not 'need more'"));
        }
    }
    Ok(())
}

/// Masking: the fast path equals the byte-by-byte definition, also when the data is unmasked in
/// two pieces with the second piece's offset. Input: 4 key bytes, 1 offset byte, 1 split byte,
/// then data.
pub fn unmask(data: &[u8]) -> Result<(), String> {
    let (Some(key), Some(&offset), Some(&split), Some(payload)) = (
        data.get(..4).and_then(|k| <[u8; 4]>::try_from(k).ok()),
        data.get(4),
        data.get(5),
        data.get(6..),
    ) else {
        return Ok(());
    };
    let offset = usize::from(offset);
    let mut fast = payload.to_vec();
    let mut reference = payload.to_vec();
    apply_mask(&mut fast, key, offset);
    apply_mask_reference(&mut reference, key, offset);
    if fast != reference {
        return Err(format!(
            "fast mask differs: len {} offset {offset}",
            payload.len()
        ));
    }
    let split = usize::from(split).min(payload.len());
    let mut pieces = payload.to_vec();
    let (head, tail) = pieces.split_at_mut(split);
    apply_mask(head, key, offset);
    apply_mask(tail, key, offset + split);
    if pieces != reference {
        return Err(format!("split at {split} differs"));
    }
    Ok(())
}

/// The stream parser under arbitrary chunking. Input: a flags byte (direction, UTF-8 checks,
/// extensions, capture, limits), two bytes seeding the chunk sizes, then the stream. Checks that
/// chunked and one-shot parsing agree, that event ranges tile every chunk, that a header-only
/// parser holds at most 13 bytes between chunks, and that splicing captured messages back in
/// (re-encoded) yields a stream carrying the same messages.
pub fn stream_parse(data: &[u8]) -> Result<(), String> {
    let (Some(&flags), Some(seed), Some(stream)) = (
        data.first(),
        data.get(1..3).and_then(|s| <[u8; 2]>::try_from(s).ok()),
        data.get(3..),
    ) else {
        return Ok(());
    };
    let config = StreamConfig::from_flags(flags);
    let whole = run(&config, stream, &[stream.len()])?;
    let chunk_sizes = chunk_sizes(u64::from(u16::from_le_bytes(seed)), stream.len());
    let chunked = run(&config, stream, &chunk_sizes)?;
    if whole.result != chunked.result {
        return Err(format!(
            "one-shot {:?} vs chunked {:?}",
            whole.result, chunked.result
        ));
    }
    let (whole_events, chunked_events) = if whole.result.is_ok() {
        (&whole.logical[..], &chunked.logical[..])
    } else {
        (
            completed_frames(&whole.logical),
            completed_frames(&chunked.logical),
        )
    };
    if whole_events != chunked_events {
        return Err(format!(
            "events differ:\n one-shot {whole_events:?}\n chunked  {chunked_events:?}"
        ));
    }
    if config.capture == Capture::NONE && chunked.max_held > MAX_HEADER_LEN - 1 {
        return Err(format!("held {} bytes between chunks", chunked.max_held));
    }
    if chunked.result.is_ok() && config.capture == Capture::NONE && chunked.spliced != stream {
        return Err("pass-through changed the stream".into());
    }
    if chunked.result.is_ok() {
        // The spliced stream: same direction, so it must parse, with the same messages.
        // Re-encoding joins fragments, so the replay lifts the size limits.
        let replay = StreamConfig {
            capture: Capture::ALL,
            limits: Limits {
                max_frame_payload: u64::MAX,
                max_message: u64::MAX,
                ..config.limits
            },
            ..config.clone()
        };
        let again = run(&replay, &chunked.spliced, &[chunked.spliced.len()])?;
        if again.result.is_err() {
            return Err(format!("spliced stream invalid: {:?}", again.result));
        }
        let replayed: Vec<_> = again
            .messages
            .into_iter()
            .filter(|m| config.capture_wants(m.opcode))
            .collect();
        if chunked.messages != replayed {
            return Err("spliced stream carries different messages".into());
        }
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct StreamConfig {
    direction: Direction,
    limits: Limits,
    capture: Capture,
}

impl StreamConfig {
    fn from_flags(flags: u8) -> StreamConfig {
        StreamConfig {
            direction: if flags & 1 == 0 {
                Direction::ClientToServer
            } else {
                Direction::ServerToClient
            },
            limits: Limits {
                max_frame_payload: if flags & 0x20 != 0 { 1 << 12 } else { u64::MAX },
                max_message: if flags & 0x40 != 0 { 1 << 13 } else { u64::MAX },
                validate_utf8: flags & 2 != 0,
                extensions_negotiated: flags & 4 != 0,
            },
            capture: match (flags >> 3) & 3 {
                0 => Capture::NONE,
                1 => Capture::TEXT,
                2 => Capture {
                    text: false,
                    binary: true,
                },
                _ => Capture::ALL,
            },
        }
    }

    fn capture_wants(&self, opcode: Opcode) -> bool {
        match opcode {
            Opcode::Text => self.capture.text,
            Opcode::Binary => self.capture.binary,
            _ => false,
        }
    }
}

/// A chunking-independent view of the events.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Logical {
    Start(FrameHeader, u64, bool),
    /// Payload bytes at these absolute stream offsets (merged across chunks).
    Payload(u64, u64, bool),
    Control(Opcode, Vec<u8>),
    Message(CapturedMessage),
    End(u64),
}

struct Run {
    result: Result<(), Violation>,
    logical: Vec<Logical>,
    messages: Vec<CapturedMessage>,
    spliced: Vec<u8>,
    max_held: usize,
}

fn run(config: &StreamConfig, stream: &[u8], chunk_sizes: &[usize]) -> Result<Run, String> {
    let mut parser = FrameParser::new(config.direction, config.limits).with_capture(config.capture);
    let mut logical = Vec::new();
    let mut messages = Vec::new();
    let mut spliced = Vec::new();
    let mut max_held = 0;
    let mut events = Vec::new();
    let mut base = 0usize;
    let mut result = Ok(());
    let reencode_key = [0xA5, 0x5A, 0x0F, 0xF0];
    for &size in chunk_sizes {
        let end = base.saturating_add(size).min(stream.len());
        let chunk = stream.get(base..end).unwrap_or(&[]);
        events.clear();
        result = parser.feed(chunk, &mut events);
        let mut covered = 0usize;
        for event in &events {
            match event {
                Event::HeaderPending { chunk_range, .. } => {
                    if chunk_range.start != covered || chunk_range.end != chunk.len() {
                        return Err(format!("pending {chunk_range:?} not at the chunk's end"));
                    }
                    covered = chunk_range.end;
                }
                Event::FrameStart {
                    header,
                    stream_offset,
                    chunk_range,
                    captured,
                } => {
                    if chunk_range.start != covered || chunk_range.len() > header.header_len {
                        return Err(format!("frame start {chunk_range:?} after {covered}"));
                    }
                    covered = chunk_range.end;
                    logical.push(Logical::Start(*header, *stream_offset, *captured));
                }
                Event::Payload {
                    chunk_range,
                    captured,
                    ..
                } => {
                    if chunk_range.start != covered {
                        return Err(format!("payload {chunk_range:?} after {covered}"));
                    }
                    covered = chunk_range.end;
                    let start = (base + chunk_range.start) as u64;
                    let len = chunk_range.len() as u64;
                    match logical.last_mut() {
                        Some(Logical::Payload(at, so_far, _)) if *at + *so_far == start => {
                            *so_far += len
                        }
                        _ => logical.push(Logical::Payload(start, len, *captured)),
                    }
                }
                Event::Control { opcode, payload } => {
                    logical.push(Logical::Control(*opcode, payload.clone()))
                }
                Event::Message(message) => {
                    messages.push(message.clone());
                    logical.push(Logical::Message(message.clone()));
                }
                Event::FrameEnd { stream_offset } => logical.push(Logical::End(*stream_offset)),
            }
        }
        if result.is_ok() && covered != chunk.len() {
            return Err(format!("events cover {covered} of {} bytes", chunk.len()));
        }
        if result.is_err() {
            break;
        }
        max_held = max_held.max(parser.buffered_bytes());
        let key = config.direction.frame_mask(reencode_key);
        match splice(chunk, &events, |message, out| {
            let rsv = if message.compressed { 0b100 } else { 0 };
            encode_frame(true, rsv, message.opcode, &message.data, key, out);
        }) {
            Splice::Forward => spliced.extend_from_slice(chunk),
            Splice::Replace(bytes) => spliced.extend_from_slice(&bytes),
        }
        base = end;
    }
    if result.is_ok() && parser.stream_offset() != stream.len() as u64 {
        return Err(format!(
            "consumed {} of {}",
            parser.stream_offset(),
            stream.len()
        ));
    }
    Ok(Run {
        result,
        logical,
        messages,
        spliced,
        max_held,
    })
}

/// Events up to the last completed frame: what one-shot and chunked runs must agree on when the
/// stream breaks a rule somewhere after.
fn completed_frames(logical: &[Logical]) -> &[Logical] {
    let end = logical
        .iter()
        .rposition(|event| matches!(event, Logical::End(_)))
        .map_or(0, |index| index + 1);
    logical.get(..end).unwrap_or(&[])
}

/// Chunk sizes covering `len` bytes, mostly small, drawn from `seed`.
pub fn chunk_sizes(seed: u64, len: usize) -> Vec<usize> {
    let mut random = SplitMix64::new(seed);
    let mut sizes = Vec::new();
    let mut total = 0;
    while total < len {
        let size = match random.next_u32() % 8 {
            0 => 1,
            1..=3 => 1 + (random.next_u32() % 16) as usize,
            4..=6 => 1 + (random.next_u32() % 512) as usize,
            _ => 1 + (random.next_u32() % 70_000) as usize,
        };
        sizes.push(size);
        total += size;
    }
    sizes
}

/// SplitMix64: a tiny deterministic generator for tests and generated inputs.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    pub fn below(&mut self, bound: usize) -> usize {
        if bound == 0 {
            0
        } else {
            (self.next_u64() % bound as u64) as usize
        }
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for byte in bytes {
            *byte = self.next_u64() as u8;
        }
    }
}

/// A valid stream for `direction`: data messages (some fragmented, with control frames between
/// fragments; text split at arbitrary bytes, so code points straddle frames) and control frames.
/// `large` allows messages over 64 KiB (64-bit lengths).
pub fn generate_stream(
    random: &mut SplitMix64,
    direction: Direction,
    messages: usize,
    large: bool,
) -> Vec<u8> {
    const TEXT: [&str; 6] = ["a", "{\"k\":1}", "é", "€", "𝄞", " κόσμε "];
    let mut out = Vec::new();
    for _ in 0..messages {
        match random.below(10) {
            0 => {
                let len = random.below(126);
                let payload = random_bytes(random, len);
                let key = direction.frame_mask(random_key(random));
                let opcode = if random.below(2) == 0 {
                    Opcode::Ping
                } else {
                    Opcode::Pong
                };
                encode_frame(true, 0, opcode, &payload, key, &mut out);
            }
            _ => {
                let text = random.below(2) == 0;
                let size = match random.below(20) {
                    0 if large => 65_536 + random.below(300),
                    1..=4 => 126 + random.below(400),
                    _ => random.below(40),
                };
                let payload = if text {
                    let mut text = String::new();
                    while text.len() < size {
                        text.push_str(TEXT[random.below(TEXT.len())]);
                    }
                    text.into_bytes()
                } else {
                    random_bytes(random, size)
                };
                let fragments = 1 + random.below(3);
                let mut cuts: Vec<usize> = (1..fragments)
                    .map(|_| random.below(payload.len() + 1))
                    .collect();
                cuts.sort_unstable();
                let mut start = 0;
                for (index, end) in cuts.into_iter().chain([payload.len()]).enumerate() {
                    let opcode = match (index, text) {
                        (0, true) => Opcode::Text,
                        (0, false) => Opcode::Binary,
                        _ => Opcode::Continuation,
                    };
                    let fin = index + 1 == fragments;
                    let key = direction.frame_mask(random_key(random));
                    let piece = payload.get(start..end).unwrap_or(&[]);
                    encode_frame(fin, 0, opcode, piece, key, &mut out);
                    if !fin && random.below(3) == 0 {
                        let key = direction.frame_mask(random_key(random));
                        encode_frame(true, 0, Opcode::Ping, b"between", key, &mut out);
                    }
                    start = end;
                }
            }
        }
    }
    if random.below(4) == 0 {
        let key = direction.frame_mask(random_key(random));
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice("bye ✓".as_bytes());
        encode_frame(true, 0, Opcode::Close, &payload, key, &mut out);
    }
    out
}

fn random_key(random: &mut SplitMix64) -> [u8; 4] {
    random.next_u32().to_le_bytes()
}

fn random_bytes(random: &mut SplitMix64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    random.fill(&mut bytes);
    bytes
}
