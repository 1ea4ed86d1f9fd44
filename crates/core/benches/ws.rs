//! Frame engine throughput: parsing and unmasking 16 KiB frames (target ≥ 1 GB/s) and the rate of
//! small-frame headers (target ≥ 20 M/s). Run briefly with
//! `cargo bench -p switchboard-core --bench ws -- --warm-up-time 1 --measurement-time 3`.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use std::hint::black_box;

    use criterion::{criterion_group, Criterion, Throughput};
    use switchboard_core::ws::{
        apply_mask, encode_frame, parse_header, Capture, Direction, Event, FrameParser, Limits,
        Opcode,
    };

    const FRAME_PAYLOAD: usize = 16 * 1024;
    const SMALL_FRAMES: usize = 1024;
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    fn limits() -> Limits {
        Limits {
            max_frame_payload: 1 << 20,
            max_message: 1 << 20,
            validate_utf8: true,
            extensions_negotiated: false,
        }
    }

    fn text_payload(len: usize) -> Vec<u8> {
        b"{\"agent\":\"a-17\",\"state\":\"ready\",\"queue\":[\"sales\",\"support\"]}"
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect()
    }

    /// Parses `stream` as one chunk per iteration with a fresh parser.
    fn parse_stream(stream: &[u8], opcode_capture: Capture, events: &mut Vec<Event>) -> usize {
        let mut parser =
            FrameParser::new(Direction::ClientToServer, limits()).with_capture(opcode_capture);
        events.clear();
        let ok = parser.feed(black_box(stream), events).is_ok();
        black_box(ok);
        events.len()
    }

    fn large_frames(c: &mut Criterion) {
        let mut group = c.benchmark_group("ws_16k_frame");
        group.throughput(Throughput::Bytes(FRAME_PAYLOAD as u64));

        let mut data = text_payload(FRAME_PAYLOAD);
        group.bench_function("apply_mask", |b| {
            b.iter(|| apply_mask(black_box(&mut data), KEY, 1))
        });

        let mut binary = Vec::new();
        encode_frame(
            true,
            0,
            Opcode::Binary,
            &text_payload(FRAME_PAYLOAD),
            Some(KEY),
            &mut binary,
        );
        let mut text = Vec::new();
        encode_frame(
            true,
            0,
            Opcode::Text,
            &text_payload(FRAME_PAYLOAD),
            Some(KEY),
            &mut text,
        );
        let mut events = Vec::with_capacity(16);

        group.bench_function("parse_pass_through_binary", |b| {
            b.iter(|| parse_stream(&binary, Capture::NONE, &mut events))
        });
        group.bench_function("parse_validate_utf8_text", |b| {
            b.iter(|| parse_stream(&text, Capture::NONE, &mut events))
        });
        group.bench_function("parse_capture_unmask_binary", |b| {
            b.iter(|| parse_stream(&binary, Capture::ALL, &mut events))
        });
        group.bench_function("parse_capture_unmask_validate_text", |b| {
            b.iter(|| parse_stream(&text, Capture::TEXT, &mut events))
        });
        group.finish();
    }

    fn small_frames(c: &mut Criterion) {
        let mut group = c.benchmark_group("ws_small_frames");
        group.throughput(Throughput::Elements(SMALL_FRAMES as u64));

        let mut stream = Vec::new();
        for index in 0..SMALL_FRAMES {
            let payload = [b'x'; 16];
            let len = index % 17;
            encode_frame(
                true,
                0,
                Opcode::Binary,
                &payload[..len],
                Some(KEY),
                &mut stream,
            );
        }
        let mut offsets = Vec::with_capacity(SMALL_FRAMES);
        let mut at = 0;
        while let Ok(Some(header)) = parse_header(&stream[at..], u64::MAX) {
            offsets.push(at);
            at += header.header_len + header.payload_len as usize;
        }
        assert_eq!(offsets.len(), SMALL_FRAMES);

        group.bench_function("parse_header", |b| {
            b.iter(|| {
                let mut total = 0u64;
                for &offset in &offsets {
                    if let Ok(Some(header)) = parse_header(black_box(&stream[offset..]), 1 << 20) {
                        total += header.payload_len;
                    }
                }
                total
            })
        });

        let mut events = Vec::with_capacity(SMALL_FRAMES * 3);
        group.bench_function("parser_feed_headers_only", |b| {
            b.iter(|| parse_stream(&stream, Capture::NONE, &mut events))
        });
        group.finish();
    }

    criterion_group!(ws, large_frames, small_frames);
}

#[cfg(not(target_arch = "wasm32"))]
criterion::criterion_main!(native::ws);
