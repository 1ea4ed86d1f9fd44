//! One upgraded WebSocket session as the filter sees it: two directions of frames, the features
//! that act on them (tagging client messages, dropping replayed and misrouted platform events,
//! remembering the resume position), and what to do on a protocol violation. Decisions only:
//! the glue reads each body chunk, calls [`WsSession::client_chunk`] or
//! [`WsSession::platform_chunk`], and writes back what they return.

use crate::dedup::{event_digest, Delivery};
use crate::events::{inspect, is_misrouted, tag_object, EnvelopeSpec};
use crate::ws::{
    encode_close, encode_frame, splice, Capture, Direction, Event, FrameParser, Limits, Opcode,
    Splice, Violation,
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
    close_for_platform: bool,
    /// After a violation nothing more is forwarded either way.
    stopped: bool,
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
            close_for_platform: false,
            stopped: false,
        }
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
        let mut events = Vec::new();
        let result = self.client.feed(chunk, &mut events);
        count_frames(&events, report);
        let owner = &self.owner;
        let features = &self.features;
        let spliced = splice(chunk, &events, |message, out| {
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
            Ok(()) => outcome(spliced),
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
                if let Ok(event) = serde_json::from_slice::<serde_json::Value>(&message.data) {
                    let facts = inspect(&event, &features.envelope);
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
            }
            let rsv = if message.compressed { 0x4 } else { 0 };
            encode_frame(true, rsv, message.opcode, &message.data, None, out);
        });
        match result {
            Ok(()) => outcome(spliced),
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
                self.close_for_platform = true;
            }
        }
    }

    /// After a violation: the owed close frame, once, then nothing.
    fn owed_close(&mut self, direction: Direction, mask_key: [u8; 4]) -> ChunkOutcome {
        let owed = match direction {
            Direction::ServerToClient => self.close_for_client.take(),
            Direction::ClientToServer => std::mem::take(&mut self.close_for_platform)
                .then(|| close_frame(NORMAL_CLOSURE, Direction::ClientToServer, mask_key)),
        };
        ChunkOutcome::Replace(owed.unwrap_or_default())
    }
}

fn close_frame(code: u16, direction: Direction, mask_key: [u8; 4]) -> Vec<u8> {
    encode_close(code, "", direction.frame_mask(mask_key)).unwrap_or_default()
}

fn outcome(spliced: Splice) -> ChunkOutcome {
    match spliced {
        Splice::Forward => ChunkOutcome::Forward,
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
}
