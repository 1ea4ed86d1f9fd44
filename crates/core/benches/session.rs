//! The per-message work a session does on the frame path, natively: a client message tagged with
//! the routing key, and the platform's echo checked against the agent's dedup window (kept as a
//! shared-data slot would hold it) and the cross-agent guard. Run briefly with
//! `cargo bench -p switchboard-core --bench session -- --warm-up-time 1 --measurement-time 3`.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::collections::HashMap;
    use std::hint::black_box;

    use criterion::{criterion_group, Criterion};
    use switchboard_core::dedup::{deliver_in_slot, event_digest, DedupWindow, Delivery};
    use switchboard_core::events::EnvelopeSpec;
    use switchboard_core::profile::Envelope;
    use switchboard_core::session::{
        AgentStore, ChunkReport, SessionFeatures, SessionOwner, WsSession,
    };
    use switchboard_core::ws::{encode_text, Limits};

    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];
    const WINDOW: DedupWindow = DedupWindow {
        capacity: 256,
        max_age_ms: 600_000,
    };

    /// Slots as Envoy shared data holds them: bytes in, bytes out.
    #[derive(Default)]
    struct SlotStore {
        slots: HashMap<String, Vec<u8>>,
    }

    impl AgentStore for SlotStore {
        fn deliver(&mut self, routing_key: &str, id: u64, now_ms: u64) -> Delivery {
            let stored = self.slots.get(routing_key).cloned();
            let (delivery, write) = deliver_in_slot(stored, routing_key, id, now_ms, WINDOW);
            if let Some(bytes) = write {
                self.slots.insert(routing_key.to_string(), bytes);
            }
            delivery
        }
        fn record_position(&mut self, _routing_key: &str, _position: &str, _now_ms: u64) {}
    }

    fn session() -> WsSession {
        WsSession::new(
            SessionOwner {
                agent_id: "agent-17".into(),
                routing_key: "rk-0123456789abcdef".into(),
            },
            SessionFeatures {
                tag_field: Some("routing_key".into()),
                tag_agent_field: None,
                dedup: true,
                guard: true,
                resume: true,
                envelope: EnvelopeSpec::for_envelope(Envelope::Genesys),
            },
            Limits {
                max_frame_payload: 1 << 20,
                max_message: 1 << 20,
                validate_utf8: true,
                extensions_negotiated: false,
            },
        )
    }

    /// The load engine's message: the Genesys envelope with 256 B of padding.
    fn message(id: u64) -> String {
        let pad = "x".repeat(256);
        format!(
            r#"{{"type":"v2.bench.17.echo","data":{{"bench_id":{id},"pad":"{pad}"}},"metadata":{{"id":"bench-1-17-{id}"}}}}"#
        )
    }

    /// The echo as it comes back: tagged with the session's routing key.
    fn echo(id: u64) -> String {
        let pad = "x".repeat(256);
        format!(
            r#"{{"routing_key":"rk-0123456789abcdef","type":"v2.bench.17.echo","data":{{"bench_id":{id},"pad":"{pad}"}},"metadata":{{"id":"bench-1-17-{id}"}}}}"#
        )
    }

    fn per_message(c: &mut Criterion) {
        let mut group = c.benchmark_group("session_per_message");
        let up = encode_text(&message(1), Some(KEY));
        group.bench_function("client_message_tagged", |b| {
            let mut s = session();
            b.iter(|| {
                let mut report = ChunkReport::default();
                black_box(s.client_chunk(black_box(&up), KEY, &mut report));
                report.tagged
            })
        });
        // Distinct ids, so every echo is new and recorded in the ring (the common case).
        let echoes: Vec<Vec<u8>> = (0..4096).map(|i| encode_text(&echo(i), None)).collect();
        group.bench_function("platform_echo_dedup_guard", |b| {
            let mut s = session();
            let mut store = SlotStore::default();
            let mut next = 0usize;
            let mut now = 1_000u64;
            b.iter(|| {
                let chunk = &echoes[next % echoes.len()];
                next += 1;
                now += 1;
                let mut report = ChunkReport::default();
                black_box(s.platform_chunk(black_box(chunk), now, &mut store, &mut report));
                report.duplicates
            })
        });
        group.bench_function("dedup_slot_check_and_record", |b| {
            let mut slot: Option<Vec<u8>> = None;
            let mut id = 0u64;
            b.iter(|| {
                id += 1;
                let (delivery, write) =
                    deliver_in_slot(slot.take(), "rk-0123456789abcdef", id, id, WINDOW);
                slot = write;
                delivery
            })
        });
        group.bench_function("event_digest", |b| {
            b.iter(|| event_digest(black_box("bench-1-17-123456")))
        });
        group.finish();
    }

    criterion_group!(session_benches, per_message);
}

#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_main!(native::session_benches);
