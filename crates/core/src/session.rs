//! One upgraded WebSocket session as the filter sees it: two directions of frames, the features
//! that act on them (tagging client messages, dropping replayed and misrouted platform events,
//! remembering the resume position), and what to do on a protocol violation. Decisions only:
//! the glue reads each body chunk, calls [`WsSession::client_chunk`] or
//! [`WsSession::platform_chunk`], and writes back what they return.

use crate::dedup::{event_digest, Delivery};
use crate::events::{inspect_text, is_misrouted, tag_object, EnvelopeSpec};
use crate::ws::{
    encode_close, encode_frame, splice, splice_with_insert, Capture, Direction, Event, FrameParser,
    Limits, Opcode, Splice, Violation,
};

/// Which features act on this session's frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionFeatures {
    /// Field names to add to client JSON messages: the routing key, and optionally the agent id.
    pub tag_field: Option<String>,
    pub tag_agent_field: Option<String>,
    /// Drop platform events already delivered to this agent within the dedup window.
    pub dedup: bool,
    /// Drop platform events that name another agent or routing key.
    pub guard: bool,
    /// Remember the last delivered event position for resume.
    pub resume: bool,
    pub envelope: EnvelopeSpec,
}

impl SessionFeatures {
    fn reads_platform_events(&self) -> bool {
        self.dedup || self.guard || self.resume
    }
}

/// Who the session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionOwner {
    pub agent_id: String,
    pub routing_key: String,
}

/// Per-agent state shared across workers (dedup window, resume positions); shared data in the
/// filter, a map in tests.
pub trait AgentStore {
    fn deliver(&mut self, routing_key: &str, event_id_digest: u64, now_ms: u64) -> Delivery;
    fn record_position(&mut self, routing_key: &str, position: &str, now_ms: u64);
}

/// What happened to one chunk's frames, for metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkReport {
    pub frames: u64,
    pub tagged: u64,
    pub untagged: u64,
    pub duplicates: u64,
    pub misrouted: u64,
    /// Close frames seen (code, 1005 when none was given).
    pub closes: Vec<u16>,
    pub violation: Option<Violation>,
    /// Gateway frames (e.g. `auth_refresh`) written into this chunk's output.
    pub injected: u64,
    /// Data frames (text, binary, continuation) among `frames`.
    pub data_frames: u64,
}

/// The bytes to send on for a chunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkOutcome {
    Forward,
    Replace(Vec<u8>),
}

/// A session after the 101.
#[derive(Debug)]
pub struct WsSession {
    owner: SessionOwner,
    features: SessionFeatures,
    client: FrameParser,
    platform: FrameParser,
    /// A close frame owed to the client, sent with the next platform chunk.
    close_for_client: Option<Vec<u8>>,
    /// A close frame owed to the platform, sent with the next client chunk.
    close_for_platform: Option<u16>,
    /// After a violation nothing more is forwarded either way.
    stopped: bool,
    /// A whole masked frame the gateway adds toward the platform at the next clean boundary.
    pending_for_platform: Option<Vec<u8>>,
    /// The client sent a close frame: no data frame may follow it (RFC 6455 §5.5.1).
    client_closed: bool,
}

const NORMAL_CLOSURE: u16 = 1000;

impl WsSession {
    pub fn new(owner: SessionOwner, features: SessionFeatures, limits: Limits) -> WsSession {
        let client_capture = if features.tag_field.is_some() {
            Capture::TEXT
        } else {
            Capture::NONE
        };
        let platform_capture = if features.reads_platform_events() {
            Capture::TEXT
        } else {
            Capture::NONE
        };
        WsSession {
            client: FrameParser::new(Direction::ClientToServer, limits)
                .with_capture(client_capture),
            platform: FrameParser::new(Direction::ServerToClient, limits)
                .with_capture(platform_capture),
            owner,
            features,
            close_for_client: None,
            close_for_platform: None,
            stopped: false,
            pending_for_platform: None,
            client_closed: false,
        }
    }

    /// Queues a complete, masked frame for the platform. It is written between whole frames,
    /// never inside a fragmented message, ahead of the next client frame; client frames of the
    /// same chunk follow it in order. A frame already queued is replaced (only the newest
    /// matters, e.g. the latest token).
    pub fn queue_for_platform(&mut self, frame: Vec<u8>) {
        if !self.stopped && !self.client_closed {
            self.pending_for_platform = Some(frame);
        }
    }

    /// A queued frame has not found its place yet.
    pub fn has_pending_for_platform(&self) -> bool {
        self.pending_for_platform.is_some()
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Bytes held for incomplete frames or messages, both directions.
    pub fn held_bytes(&self) -> usize {
        self.client.buffered_bytes() + self.platform.buffered_bytes()
    }

    /// A chunk from the agent's desktop. `mask_key` is fresh randomness for any frame the gateway
    /// writes toward the platform (RFC 6455 §5.3).
    pub fn client_chunk(
        &mut self,
        chunk: &[u8],
        mask_key: [u8; 4],
        report: &mut ChunkReport,
    ) -> ChunkOutcome {
        if self.stopped {
            return self.owed_close(Direction::ClientToServer, mask_key);
        }
        let clean_start = self.client.at_frame_boundary();
        let in_message = self.client.next_frame_inside_message();
        let mut events = Vec::new();
        let result = self.client.feed(chunk, &mut events);
        count_frames(&events, report);
        let insert_at = match &self.pending_for_platform {
            Some(_) if !self.client_closed => {
                clean_insertion_point(&events, clean_start, in_message)
            }
            _ => None,
        };
        if events.iter().any(|event| {
            matches!(
                event,
                Event::Control {
                    opcode: Opcode::Close,
                    ..
                }
            )
        }) {
            self.client_closed = true;
        }
        let pending = match insert_at {
            Some(index) => self.pending_for_platform.take().map(|frame| (index, frame)),
            None => None,
        };
        if pending.is_some() {
            report.injected += 1;
        }
        if self.client_closed {
            self.pending_for_platform = None;
        }
        let owner = &self.owner;
        let features = &self.features;
        let insert = pending
            .as_ref()
            .map(|(index, frame)| (*index, frame.as_slice()));
        let spliced = splice_with_insert(chunk, &events, insert, |message, out| {
            let tagged = match (&features.tag_field, message.opcode, message.compressed) {
                (Some(field), Opcode::Text, false) => {
                    let mut tags = vec![(field.as_str(), owner.routing_key.as_str())];
                    if let Some(agent_field) = &features.tag_agent_field {
                        tags.push((agent_field.as_str(), owner.agent_id.as_str()));
                    }
                    tag_object(&message.data, &tags)
                }
                _ => None,
            };
            match tagged {
                Some(payload) => {
                    report.tagged += 1;
                    encode_frame(true, 0, Opcode::Text, &payload, Some(mask_key), out);
                }
                None => {
                    report.untagged += 1;
                    let rsv = if message.compressed { 0x4 } else { 0 };
                    encode_frame(
                        true,
                        rsv,
                        message.opcode,
                        &message.data,
                        Some(mask_key),
                        out,
                    );
                }
            }
        });
        match result {
            Ok(()) => outcome(spliced, chunk),
            Err(violation) => {
                report.violation = Some(violation);
                self.stop(violation, Direction::ClientToServer);
                // What was valid goes on, then a normal close toward the platform.
                let mut out = into_bytes(spliced, chunk);
                out.extend(close_frame(
                    NORMAL_CLOSURE,
                    Direction::ClientToServer,
                    mask_key,
                ));
                ChunkOutcome::Replace(out)
            }
        }
    }

    /// A chunk from the platform.
    pub fn platform_chunk(
        &mut self,
        chunk: &[u8],
        now_ms: u64,
        store: &mut dyn AgentStore,
        report: &mut ChunkReport,
    ) -> ChunkOutcome {
        if self.stopped {
            return self.owed_close(Direction::ServerToClient, [0; 4]);
        }
        let mut events = Vec::new();
        let result = self.platform.feed(chunk, &mut events);
        count_frames(&events, report);
        let owner = &self.owner;
        let features = &self.features;
        let spliced = splice(chunk, &events, |message, out| {
            if message.opcode == Opcode::Text && !message.compressed {
                let facts = inspect_text(&message.data, &features.envelope);
                if features.guard && is_misrouted(&facts, &owner.agent_id, &owner.routing_key) {
                    report.misrouted += 1;
                    return;
                }
                if features.dedup {
                    if let Some(id) = &facts.id {
                        if store.deliver(&owner.routing_key, event_digest(id), now_ms)
                            == Delivery::Duplicate
                        {
                            report.duplicates += 1;
                            return;
                        }
                    }
                }
                if features.resume {
                    if let Some(position) = &facts.position {
                        store.record_position(&owner.routing_key, position, now_ms);
                    }
                }
            }
            let rsv = if message.compressed { 0x4 } else { 0 };
            encode_frame(true, rsv, message.opcode, &message.data, None, out);
        });
        match result {
            Ok(()) => outcome(spliced, chunk),
            Err(violation) => {
                report.violation = Some(violation);
                self.stop(violation, Direction::ServerToClient);
                let mut out = into_bytes(spliced, chunk);
                if let Some(close) = self.close_for_client.take() {
                    out.extend(close);
                }
                ChunkOutcome::Replace(out)
            }
        }
    }

    fn stop(&mut self, violation: Violation, from: Direction) {
        self.stopped = true;
        match from {
            // The client broke the protocol: it gets the violation's code, the platform a
            // normal close (sent by the caller right away).
            Direction::ClientToServer => {
                self.close_for_client = Some(close_frame(
                    violation.close_code(),
                    Direction::ServerToClient,
                    [0; 4],
                ));
            }
            // The platform broke it: the client gets the code now, the platform a normal close
            // with the next client chunk.
            Direction::ServerToClient => {
                self.close_for_client = Some(close_frame(
                    violation.close_code(),
                    Direction::ServerToClient,
                    [0; 4],
                ));
                self.close_for_platform = Some(NORMAL_CLOSURE);
            }
        }
    }

    /// After a violation: the owed close frame, once, then nothing.
    fn owed_close(&mut self, direction: Direction, mask_key: [u8; 4]) -> ChunkOutcome {
        let owed = match direction {
            Direction::ServerToClient => self.close_for_client.take(),
            Direction::ClientToServer => self
                .close_for_platform
                .take()
                .map(|code| close_frame(code, Direction::ClientToServer, mask_key)),
        };
        ChunkOutcome::Replace(owed.unwrap_or_default())
    }

    /// Ends the session from the gateway's side (overload, idle, drain): the client is owed a
    /// close with `client_code`, the platform one with `platform_code`. Called between chunks
    /// of direction `current`; returns the close frame to append to that direction's bytes now
    /// (the other side gets its close with its next chunk). Nothing else passes afterwards.
    pub fn shut(
        &mut self,
        client_code: u16,
        platform_code: u16,
        current: Direction,
        mask_key: [u8; 4],
    ) -> Vec<u8> {
        if self.stopped {
            return Vec::new();
        }
        self.stopped = true;
        self.pending_for_platform = None;
        match current {
            Direction::ClientToServer => {
                self.close_for_client =
                    Some(close_frame(client_code, Direction::ServerToClient, [0; 4]));
                close_frame(platform_code, Direction::ClientToServer, mask_key)
            }
            Direction::ServerToClient => {
                self.close_for_platform = Some(platform_code);
                close_frame(client_code, Direction::ServerToClient, [0; 4])
            }
        }
    }

    /// Both directions stand between whole frames, so a close frame can be appended cleanly.
    pub fn at_frame_boundary(&self, direction: Direction) -> bool {
        match direction {
            Direction::ClientToServer => self.client.at_frame_boundary(),
            Direction::ServerToClient => self.platform.at_frame_boundary(),
        }
    }
}

/// The first place in a chunk where a whole frame may be added: before the first frame that
/// starts in this chunk while no fragmented data message is under way (RFC 6455 §5.4: only
/// control frames may appear between fragments), and never after a close frame (§5.5.1).
/// `events.len()` means "after everything", allowed only when the chunk ends on a clean boundary.
fn clean_insertion_point(events: &[Event], clean_start: bool, in_message: bool) -> Option<usize> {
    if clean_start && !in_message {
        return Some(0);
    }
    let mut in_message = in_message;
    for (index, event) in events.iter().enumerate() {
        match event {
            Event::HeaderPending { .. } if !in_message => return Some(index),
            Event::FrameStart {
                header,
                chunk_range,
                ..
            } => {
                let starts_here = chunk_range.len() == header.header_len;
                if starts_here && !in_message {
                    return Some(index);
                }
                if !header.opcode.is_control() {
                    if header.opcode != Opcode::Continuation {
                        in_message = !header.fin;
                    } else if header.fin {
                        in_message = false;
                    }
                }
            }
            Event::Control {
                opcode: Opcode::Close,
                ..
            } => return None,
            // The chunk ends right here, between frames.
            Event::FrameEnd { .. } if !in_message && index + 1 == events.len() => {
                return Some(events.len());
            }
            _ => {}
        }
    }
    None
}

fn close_frame(code: u16, direction: Direction, mask_key: [u8; 4]) -> Vec<u8> {
    encode_close(code, "", direction.frame_mask(mask_key)).unwrap_or_default()
}

/// What to do with a chunk. Output identical to the chunk (platform events inspected and all
/// kept, say) is forwarded as it is, which spares the host a rewrite of the body buffer.
fn outcome(spliced: Splice, chunk: &[u8]) -> ChunkOutcome {
    match spliced {
        Splice::Forward => ChunkOutcome::Forward,
        Splice::Replace(bytes) if bytes == chunk => ChunkOutcome::Forward,
        Splice::Replace(bytes) => ChunkOutcome::Replace(bytes),
    }
}

fn into_bytes(spliced: Splice, chunk: &[u8]) -> Vec<u8> {
    match spliced {
        Splice::Forward => chunk.to_vec(),
        Splice::Replace(bytes) => bytes,
    }
}

fn count_frames(events: &[Event], report: &mut ChunkReport) {
    for event in events {
        match event {
            Event::FrameStart { header, .. } if !header.opcode.is_control() => {
                report.data_frames += 1;
            }
            Event::FrameEnd { .. } => report.frames += 1,
            Event::Control {
                opcode: Opcode::Close,
                payload,
            } => {
                let code = payload
                    .get(..2)
                    .and_then(|b| <[u8; 2]>::try_from(b).ok())
                    .map_or(1005, u16::from_be_bytes);
                report.closes.push(code);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::dedup::{DedupRing, DedupWindow};
    use crate::profile::Envelope;
    use crate::ws::{encode_text, parse_close_payload};
    use std::collections::HashMap;
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const LIMITS: Limits = Limits {
        max_frame_payload: 1 << 20,
        max_message: 1 << 20,
        validate_utf8: true,
        extensions_negotiated: false,
    };

    #[derive(Default)]
    struct MapStore {
        rings: HashMap<String, DedupRing>,
        positions: HashMap<String, String>,
    }
    impl AgentStore for MapStore {
        fn deliver(&mut self, key: &str, id: u64, now_ms: u64) -> Delivery {
            let window = DedupWindow {
                capacity: 16,
                max_age_ms: 60_000,
            };
            self.rings
                .entry(key.to_string())
                .or_insert_with(|| DedupRing::empty(16))
                .check_and_record(id, now_ms, window)
        }
        fn record_position(&mut self, key: &str, position: &str, _now_ms: u64) {
            self.positions.insert(key.to_string(), position.to_string());
        }
    }

    fn session(tag: bool) -> WsSession {
        WsSession::new(
            SessionOwner {
                agent_id: "a1".into(),
                routing_key: "k1".into(),
            },
            SessionFeatures {
                tag_field: tag.then(|| "routing_key".to_string()),
                tag_agent_field: None,
                dedup: true,
                guard: true,
                resume: true,
                envelope: EnvelopeSpec::for_envelope(Envelope::Genesys),
            },
            LIMITS,
        )
    }

    /// Parses unmasked or masked frames back into (opcode, payload) pairs.
    fn frames(bytes: &[u8], direction: Direction) -> Vec<(Opcode, Vec<u8>)> {
        let mut parser = FrameParser::new(direction, LIMITS).with_capture(Capture::ALL);
        let mut events = Vec::new();
        parser.feed(bytes, &mut events).unwrap();
        events
            .into_iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some((m.opcode, m.data)),
                Event::Control { opcode, payload } => Some((opcode, payload)),
                _ => None,
            })
            .collect()
    }

    fn bytes_of(outcome: ChunkOutcome, chunk: &[u8]) -> Vec<u8> {
        match outcome {
            ChunkOutcome::Forward => chunk.to_vec(),
            ChunkOutcome::Replace(bytes) => bytes,
        }
    }

    fn event(id: &str, agent: &str) -> String {
        format!(
            r#"{{"type":"t","data":{{"agentId":"{agent}"}},"metadata":{{"id":"{id}","timestamp":"ts-{id}"}}}}"#
        )
    }

    #[test]
    fn client_json_is_tagged_across_any_chunking() {
        let wire = [
            encode_text(r#"{"action":"ack","routing_key":"spoofed"}"#, Some(KEY)),
            encode_text("not json", Some(KEY)),
        ]
        .concat();
        for split in 1..wire.len() {
            let mut s = session(true);
            let mut out = Vec::new();
            for part in [&wire[..split], &wire[split..]] {
                let mut report = ChunkReport::default();
                out.extend(bytes_of(s.client_chunk(part, KEY, &mut report), part));
            }
            let got = frames(&out, Direction::ClientToServer);
            assert_eq!(got.len(), 2, "split {split}");
            assert_eq!(got[0].1, br#"{"routing_key":"k1","action":"ack"}"#.to_vec());
            assert_eq!(got[1].1, b"not json".to_vec());
        }
    }

    #[test]
    fn without_features_chunks_pass_untouched() {
        let mut s = WsSession::new(
            SessionOwner {
                agent_id: "a1".into(),
                routing_key: "k1".into(),
            },
            SessionFeatures {
                tag_field: None,
                tag_agent_field: None,
                dedup: false,
                guard: false,
                resume: false,
                envelope: EnvelopeSpec::for_envelope(Envelope::Genesys),
            },
            LIMITS,
        );
        let wire = encode_text("{}", Some(KEY));
        let mut report = ChunkReport::default();
        assert_eq!(
            s.client_chunk(&wire, KEY, &mut report),
            ChunkOutcome::Forward
        );
        assert_eq!(report.frames, 1);
        let down = encode_text(&event("e1", "a1"), None);
        assert_eq!(
            s.platform_chunk(&down, 0, &mut MapStore::default(), &mut report),
            ChunkOutcome::Forward
        );
    }

    #[test]
    fn duplicates_and_misrouted_events_are_dropped_and_positions_kept() {
        let mut s = session(false);
        let mut store = MapStore::default();
        let wire = [
            encode_text(&event("e1", "a1"), None),
            encode_text(&event("e1", "a1"), None),
            encode_text(&event("e2", "someone-else"), None),
            encode_text(&event("e3", "a1"), None),
        ]
        .concat();
        let mut report = ChunkReport::default();
        let out = bytes_of(
            s.platform_chunk(&wire, 1_000, &mut store, &mut report),
            &wire,
        );
        let got = frames(&out, Direction::ServerToClient);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (report.duplicates, report.misrouted, report.frames),
            (1, 1, 4)
        );
        assert_eq!(store.positions["k1"], "ts-e3");
        // A reconnect (a new session, same agent) still sees e1 as delivered.
        let mut again = session(false);
        let replay = encode_text(&event("e1", "a1"), None);
        let out = bytes_of(
            again.platform_chunk(&replay, 2_000, &mut store, &mut report),
            &replay,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn events_inspected_and_all_kept_are_forwarded_without_a_rewrite() {
        let mut s = session(false);
        let mut store = MapStore::default();
        let wire = [
            encode_text(&event("e1", "a1"), None),
            encode_text(&event("e2", "a1"), None),
        ]
        .concat();
        let mut report = ChunkReport::default();
        let outcome = s.platform_chunk(&wire, 1_000, &mut store, &mut report);
        assert_eq!(outcome, ChunkOutcome::Forward);
        assert_eq!(store.positions["k1"], "ts-e2", "both were inspected");
        // Split across chunks, the first part is withheld and the rest is rewritten.
        let mut s = session(false);
        let mut store = MapStore::default();
        let again = encode_text(&event("e3", "a1"), None);
        let first = s.platform_chunk(&again[..10], 2_000, &mut store, &mut report);
        assert_eq!(first, ChunkOutcome::Replace(Vec::new()));
        let rest = s.platform_chunk(&again[10..], 2_000, &mut store, &mut report);
        assert_eq!(rest, ChunkOutcome::Replace(again.clone()));
    }

    #[test]
    fn a_client_violation_closes_both_sides_with_the_right_codes() {
        let mut s = session(true);
        let good = encode_text("{}", Some(KEY));
        let unmasked = encode_text("{}", None);
        let chunk = [good.clone(), unmasked].concat();
        let mut report = ChunkReport::default();
        let out = bytes_of(s.client_chunk(&chunk, KEY, &mut report), &chunk);
        assert_eq!(report.violation.map(|v| v.close_code()), Some(1002));
        let upstream = frames(&out, Direction::ClientToServer);
        assert_eq!(upstream.len(), 2, "the valid message, then a close");
        assert_eq!(upstream[1].0, Opcode::Close);
        assert_eq!(
            parse_close_payload(&upstream[1].1).unwrap().unwrap().code,
            1000
        );
        // The client's close rides on the next platform chunk, which is otherwise not forwarded.
        let platform = encode_text(&event("e9", "a1"), None);
        let out = bytes_of(
            s.platform_chunk(&platform, 0, &mut MapStore::default(), &mut report),
            &platform,
        );
        let to_client = frames(&out, Direction::ServerToClient);
        assert_eq!(to_client.len(), 1);
        assert_eq!(
            parse_close_payload(&to_client[0].1).unwrap().unwrap().code,
            1002
        );
        // Afterwards nothing passes either way.
        assert_eq!(
            s.client_chunk(&good, KEY, &mut report),
            ChunkOutcome::Replace(Vec::new())
        );
        assert!(s.stopped());
    }

    #[test]
    fn a_platform_violation_closes_the_client_at_once() {
        let mut s = session(false);
        let masked = encode_text("hi", Some(KEY));
        let mut report = ChunkReport::default();
        let out = bytes_of(
            s.platform_chunk(&masked, 0, &mut MapStore::default(), &mut report),
            &masked,
        );
        let to_client = frames(&out, Direction::ServerToClient);
        assert_eq!(
            parse_close_payload(&to_client[0].1).unwrap().unwrap().code,
            1002
        );
        let next = encode_text("{}", Some(KEY));
        let out = bytes_of(s.client_chunk(&next, KEY, &mut report), &next);
        let upstream = frames(&out, Direction::ClientToServer);
        assert_eq!(
            parse_close_payload(&upstream[0].1).unwrap().unwrap().code,
            1000
        );
    }

    fn fragmented_wire() -> Vec<u8> {
        let mut wire = encode_text(r#"{"seq":1}"#, Some(KEY));
        encode_frame(false, 0, Opcode::Text, b"{\"seq\":", Some(KEY), &mut wire);
        encode_frame(true, 0, Opcode::Ping, b"p", Some(KEY), &mut wire);
        encode_frame(true, 0, Opcode::Continuation, b"2}", Some(KEY), &mut wire);
        encode_frame(true, 0, Opcode::Binary, &[7; 300], Some(KEY), &mut wire);
        wire
    }

    fn injected() -> Vec<u8> {
        encode_text(r#"{"frame_type":"auth_refresh"}"#, Some([9, 9, 9, 9]))
    }

    /// Data messages in order, as text markers; a violation in the output fails the test.
    fn data_messages(out: &[u8]) -> Vec<String> {
        frames(out, Direction::ClientToServer)
            .into_iter()
            .filter(|(opcode, _)| !opcode.is_control())
            .map(|(opcode, data)| match opcode {
                Opcode::Binary => format!("binary:{}", data.len()),
                _ => String::from_utf8(data).unwrap(),
            })
            .collect()
    }

    #[test]
    fn a_queued_frame_lands_between_whole_messages_at_any_split() {
        let wire = fragmented_wire();
        for tag in [false, true] {
            for split in 0..=wire.len() {
                for queue_before_second in [false, true] {
                    let mut s = session(tag);
                    let mut out = Vec::new();
                    let mut injected_count = 0;
                    for (i, part) in [&wire[..split], &wire[split..]].into_iter().enumerate() {
                        if (i == 1) == queue_before_second && !s.has_pending_for_platform() {
                            s.queue_for_platform(injected());
                        }
                        let mut report = ChunkReport::default();
                        out.extend(bytes_of(s.client_chunk(part, KEY, &mut report), part));
                        injected_count += report.injected;
                    }
                    let messages = data_messages(&out);
                    let without: Vec<&String> = messages
                        .iter()
                        .filter(|m| !m.contains("auth_refresh"))
                        .collect();
                    let expected_seq = if tag {
                        [
                            r#"{"routing_key":"k1","seq":1}"#,
                            r#"{"routing_key":"k1","seq":2}"#,
                        ]
                    } else {
                        [r#"{"seq":1}"#, r#"{"seq":2}"#]
                    };
                    assert_eq!(
                        without,
                        [expected_seq[0], expected_seq[1], "binary:300"],
                        "tag {tag} split {split}"
                    );
                    let refreshes = messages
                        .iter()
                        .filter(|m| m.contains("auth_refresh"))
                        .count();
                    assert_eq!(refreshes as u64, injected_count, "split {split}");
                    // The wire always ends on a clean boundary, so the frame always finds a place.
                    assert_eq!(
                        refreshes, 1,
                        "tag {tag} split {split} q2 {queue_before_second}"
                    );
                    assert!(!s.has_pending_for_platform());
                }
            }
        }
    }

    #[test]
    fn a_queued_frame_waits_while_a_fragmented_message_is_open() {
        let mut s = session(false);
        let mut first = Vec::new();
        encode_frame(false, 0, Opcode::Text, b"part-", Some(KEY), &mut first);
        let mut report = ChunkReport::default();
        let out1 = bytes_of(s.client_chunk(&first, KEY, &mut report), &first);
        s.queue_for_platform(injected());
        let mut ping = Vec::new();
        encode_frame(true, 0, Opcode::Ping, b"", Some(KEY), &mut ping);
        let out2 = bytes_of(s.client_chunk(&ping, KEY, &mut report), &ping);
        assert_eq!(report.injected, 0, "not between fragments");
        assert!(s.has_pending_for_platform());
        let mut last = Vec::new();
        encode_frame(true, 0, Opcode::Continuation, b"end", Some(KEY), &mut last);
        let out3 = bytes_of(s.client_chunk(&last, KEY, &mut report), &last);
        assert_eq!(report.injected, 1);
        let all = [out1, out2, out3].concat();
        assert_eq!(
            data_messages(&all),
            ["part-end", r#"{"frame_type":"auth_refresh"}"#]
        );
    }

    #[test]
    fn nothing_is_added_after_the_client_closed() {
        let mut s = session(false);
        let close = encode_close(1000, "", Some(KEY)).unwrap();
        let mut report = ChunkReport::default();
        let out = bytes_of(s.client_chunk(&close, KEY, &mut report), &close);
        s.queue_for_platform(injected());
        assert!(!s.has_pending_for_platform());
        let more = encode_text("late", Some(KEY));
        let out2 = bytes_of(s.client_chunk(&more, KEY, &mut report), &more);
        assert_eq!(report.injected, 0);
        assert_eq!(out, close);
        assert_eq!(out2, more);
        // Queued before a chunk that carries the close: it goes in front of the close.
        let mut s = session(false);
        s.queue_for_platform(injected());
        let mut report = ChunkReport::default();
        let out = bytes_of(s.client_chunk(&close, KEY, &mut report), &close);
        assert_eq!(report.injected, 1);
        assert_eq!(out, [injected(), close].concat());
    }

    #[test]
    fn shutting_owes_each_side_its_close() {
        let mut s = session(false);
        let wire = encode_text("hello", Some(KEY));
        let mut report = ChunkReport::default();
        let _ = s.client_chunk(&wire, KEY, &mut report);
        assert_eq!(report.data_frames, 1);
        assert!(s.at_frame_boundary(Direction::ClientToServer));
        let upstream = s.shut(1013, 1000, Direction::ClientToServer, KEY);
        let got = frames(&upstream, Direction::ClientToServer);
        assert_eq!(parse_close_payload(&got[0].1).unwrap().unwrap().code, 1000);
        assert!(s
            .shut(1001, 1001, Direction::ClientToServer, KEY)
            .is_empty());
        // The platform's reply is replaced by the client's 1013.
        let reply = encode_close(1000, "", None).unwrap();
        let mut store = MapStore::default();
        let out = bytes_of(s.platform_chunk(&reply, 0, &mut store, &mut report), &reply);
        let got = frames(&out, Direction::ServerToClient);
        assert_eq!(parse_close_payload(&got[0].1).unwrap().unwrap().code, 1013);

        let mut s = session(false);
        let down = s.shut(1001, 1001, Direction::ServerToClient, KEY);
        let got = frames(&down, Direction::ServerToClient);
        assert_eq!(parse_close_payload(&got[0].1).unwrap().unwrap().code, 1001);
        let late = encode_text("late", Some(KEY));
        let out = bytes_of(s.client_chunk(&late, KEY, &mut report), &late);
        let got = frames(&out, Direction::ClientToServer);
        assert_eq!(got.len(), 1);
        assert_eq!(parse_close_payload(&got[0].1).unwrap().unwrap().code, 1001);
    }
}
