//! What to send on for one chunk, given the parser's events for it (see the design in
//! [`super::parser`]): bytes of frames that are not captured pass unchanged and in order, bytes
//! of captured frames are withheld, and each completed captured message is replaced by whatever
//! the caller writes for it, at the place where it completed. Stateless: the `captured` flags on
//! the events carry the decision across chunks.

use super::parser::{CapturedMessage, Event};

/// The bytes to send on for a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Splice {
    /// Send the chunk as it is (nothing captured or replaced): no copy was made.
    Forward,
    /// Send these bytes instead of the chunk (possibly none, while a message is withheld).
    Replace(Vec<u8>),
}

/// Builds the output for `chunk` from the events `feed` appended for it. `replace` writes the
/// frames that stand in for a captured message (e.g. the re-encoded, tagged JSON; for the
/// client-to-server direction masked with a fresh key); writing nothing drops the message.
///
/// After a violation, the events describe only the bytes before the offending frame; the output
/// then ends there, and the glue closes the connection.
pub fn splice<F>(chunk: &[u8], events: &[Event], replace: F) -> Splice
where
    F: FnMut(&CapturedMessage, &mut Vec<u8>),
{
    splice_with_insert(chunk, events, None, replace)
}

/// As [`splice`], and writes `insert.1` just before the bytes of event `insert.0` (or at the end
/// when that index is past the last event): how the gateway adds a whole frame of its own.
pub fn splice_with_insert<F>(
    chunk: &[u8],
    events: &[Event],
    insert: Option<(usize, &[u8])>,
    mut replace: F,
) -> Splice
where
    F: FnMut(&CapturedMessage, &mut Vec<u8>),
{
    let touches_chunk = events.iter().any(|event| match event {
        Event::HeaderPending { captured, .. }
        | Event::FrameStart { captured, .. }
        | Event::Payload { captured, .. } => *captured,
        Event::Message(_) => true,
        Event::Control { .. } | Event::FrameEnd { .. } => false,
    });
    let tiles_chunk = events
        .iter()
        .filter_map(range_of)
        .map(|range| range.len())
        .sum::<usize>()
        == chunk.len();
    if !touches_chunk && tiles_chunk && insert.is_none() {
        return Splice::Forward;
    }
    let mut out = Vec::with_capacity(chunk.len() + insert.map_or(0, |(_, bytes)| bytes.len()));
    for (index, event) in events.iter().enumerate() {
        if let Some((at, bytes)) = insert {
            if at == index {
                out.extend_from_slice(bytes);
            }
        }
        match event {
            Event::HeaderPending {
                chunk_range,
                captured: false,
            }
            | Event::FrameStart {
                chunk_range,
                captured: false,
                ..
            }
            | Event::Payload {
                chunk_range,
                captured: false,
                ..
            } => out.extend_from_slice(chunk.get(chunk_range.clone()).unwrap_or(&[])),
            Event::Message(message) => replace(message, &mut out),
            _ => {}
        }
    }
    if let Some((at, bytes)) = insert {
        if at >= events.len() {
            out.extend_from_slice(bytes);
        }
    }
    Splice::Replace(out)
}

fn range_of(event: &Event) -> Option<&std::ops::Range<usize>> {
    match event {
        Event::HeaderPending { chunk_range, .. }
        | Event::FrameStart { chunk_range, .. }
        | Event::Payload { chunk_range, .. } => Some(chunk_range),
        _ => None,
    }
}
