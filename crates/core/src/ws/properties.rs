//! The fuzz bodies of `fuzz/` replayed over its seed corpus and 10,000 deterministic
//! pseudo-random inputs each (these also run under wasm-bindgen-test), and proptest properties:
//! any chunking of a valid stream yields the same frames and messages, encode→parse is the
//! identity, and the fast mask equals the reference.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::fuzzing::{self, generate_stream, SplitMix64};
use super::Direction;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

const RANDOM_INPUTS: usize = 10_000;

macro_rules! corpus {
    ($target:literal: $($name:literal),+ $(,)?) => {
        [$((
            $name,
            &include_bytes!(concat!("../../../../fuzz/corpus/", $target, "/", $name))[..],
        )),+]
    };
}

fn check_all(target: &str, inputs: &[(&str, &[u8])], body: fn(&[u8]) -> Result<(), String>) {
    for (name, input) in inputs {
        if let Err(finding) = body(input) {
            panic!("{target}/{name}: {finding}");
        }
    }
}

#[test]
fn header_parse_seed_corpus_and_random_inputs() {
    let seeds = corpus!("header_parse":
        "rfc-unmasked-hello", "rfc-masked-hello", "rfc-binary-256", "rfc-binary-64k",
        "max-header-masked-64bit", "non-minimal-16bit",
    );
    check_all("header_parse", &seeds, fuzzing::header_parse);
    let mut random = SplitMix64::new(1);
    for index in 0..RANDOM_INPUTS {
        let mut input = vec![0u8; random.below(16)];
        random.fill(&mut input);
        // Mostly plausible lengths so the 16- and 64-bit forms are reached often.
        if index % 2 == 0 && input.len() > 2 {
            input[2] = 0;
        }
        if let Err(finding) = fuzzing::header_parse(&input) {
            panic!("input {input:x?}: {finding}");
        }
    }
}

#[test]
fn unmask_seed_corpus_and_random_inputs() {
    let seeds = corpus!("unmask": "rfc-masked-hello", "offset-3-long");
    check_all("unmask", &seeds, fuzzing::unmask);
    let mut random = SplitMix64::new(2);
    for _ in 0..RANDOM_INPUTS {
        let mut input = vec![0u8; 6 + random.below(80)];
        random.fill(&mut input);
        if let Err(finding) = fuzzing::unmask(&input) {
            panic!("input {input:x?}: {finding}");
        }
    }
}

#[test]
fn stream_parse_seed_corpus() {
    let seeds = corpus!("stream_parse":
        "rfc-unmasked-hello", "rfc-masked-hello", "rfc-fragmented-hello-with-ping",
        "rfc-ping-hello", "rfc-masked-pong", "rfc-binary-256-and-close", "rfc-binary-64k",
        "rfc-binary-64k-over-limit", "invalid-utf8-split",
    );
    check_all("stream_parse", &seeds, fuzzing::stream_parse);
}

/// Generated valid streams with random settings, a quarter of them with one byte corrupted, so
/// both the deep states and every violation path are reached.
#[test]
fn stream_parse_random_inputs() {
    let mut random = SplitMix64::new(3);
    let mut violations = 0;
    for index in 0..RANDOM_INPUTS {
        let flags = random.next_u32() as u8;
        let direction = if flags & 1 == 0 {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let messages = 1 + random.below(6);
        let large = index % 100 == 0;
        let mut input = vec![flags, random.next_u32() as u8, random.next_u32() as u8];
        input.extend_from_slice(&generate_stream(&mut random, direction, messages, large));
        if random.below(4) == 0 {
            let at = 3 + random.below(input.len() - 3);
            input[at] ^= 1 << random.below(8);
            violations += 1;
        }
        if let Err(finding) = fuzzing::stream_parse(&input) {
            panic!(
                "input #{index} ({} bytes, flags {flags:#04x}): {finding}",
                input.len()
            );
        }
    }
    assert!(violations > RANDOM_INPUTS / 5);
}

#[test]
fn generated_streams_are_valid() {
    use super::{Capture, FrameParser, Limits};
    let mut random = SplitMix64::new(4);
    for direction in [Direction::ClientToServer, Direction::ServerToClient] {
        for _ in 0..200 {
            let stream = generate_stream(&mut random, direction, 5, false);
            let limits = Limits {
                max_frame_payload: u64::MAX,
                max_message: u64::MAX,
                validate_utf8: true,
                extensions_negotiated: false,
            };
            let mut parser = FrameParser::new(direction, limits).with_capture(Capture::ALL);
            let mut events = Vec::new();
            parser.feed(&stream, &mut events).unwrap();
            assert!(parser.at_frame_boundary() && !parser.in_fragmented_message());
            let messages = events
                .iter()
                .filter(|e| matches!(e, super::Event::Message(_)))
                .count();
            assert!(messages >= 1);
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
mod proptests {
    use super::super::header::{parse_header, FrameHeader};
    use super::super::message::encode_frame;
    use super::super::{
        apply_mask, apply_mask_reference, splice, Capture, CapturedMessage, Direction, Event,
        FrameParser, Limits, Opcode, Splice,
    };
    use super::fuzzing;
    use proptest::prelude::*;

    /// One message: text or binary, its payload, where to cut it into fragments, and whether a
    /// ping goes after each non-final fragment.
    #[derive(Debug, Clone)]
    struct MessageSpec {
        text: bool,
        payload: Vec<u8>,
        cuts: Vec<usize>,
        pings: bool,
    }

    fn message_spec() -> impl Strategy<Value = MessageSpec> {
        let text = ".{0,40}".prop_map(|s: String| (true, s.into_bytes()));
        let binary = prop::collection::vec(any::<u8>(), 0..300).prop_map(|b| (false, b));
        (
            prop_oneof![text, binary],
            prop::collection::vec(any::<usize>(), 0..3),
            any::<bool>(),
        )
            .prop_map(|((text, payload), cuts, pings)| {
                let mut cuts: Vec<usize> =
                    cuts.into_iter().map(|c| c % (payload.len() + 1)).collect();
                cuts.sort_unstable();
                MessageSpec {
                    text,
                    payload,
                    cuts,
                    pings,
                }
            })
    }

    fn build(direction: Direction, specs: &[MessageSpec], key: [u8; 4]) -> Vec<u8> {
        let mask = direction.frame_mask(key);
        let mut out = Vec::new();
        for spec in specs {
            let ends: Vec<usize> = spec
                .cuts
                .iter()
                .copied()
                .chain([spec.payload.len()])
                .collect();
            let mut start = 0;
            for (index, &end) in ends.iter().enumerate() {
                let opcode = match (index, spec.text) {
                    (0, true) => Opcode::Text,
                    (0, false) => Opcode::Binary,
                    _ => Opcode::Continuation,
                };
                let fin = index + 1 == ends.len();
                encode_frame(fin, 0, opcode, &spec.payload[start..end], mask, &mut out);
                if !fin && spec.pings {
                    encode_frame(true, 0, Opcode::Ping, b"ping", mask, &mut out);
                }
                start = end;
            }
        }
        out
    }

    struct Parsed {
        messages: Vec<CapturedMessage>,
        controls: Vec<(Opcode, Vec<u8>)>,
        /// The stream after splicing every message back in as one unmasked frame.
        spliced: Vec<u8>,
    }

    fn parse_in_chunks(direction: Direction, stream: &[u8], cuts: &[usize]) -> Parsed {
        let limits = Limits {
            max_frame_payload: 1 << 20,
            max_message: 1 << 20,
            validate_utf8: true,
            extensions_negotiated: false,
        };
        let mut parser = FrameParser::new(direction, limits).with_capture(Capture::ALL);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut messages = Vec::new();
        let mut controls = Vec::new();
        let mut passed = Vec::new();
        let mut start = 0;
        for end in cuts.into_iter().chain([stream.len()]) {
            let chunk = &stream[start..end];
            let mut events = Vec::new();
            parser.feed(chunk, &mut events).unwrap();
            for event in &events {
                match event {
                    Event::Message(message) => messages.push(message.clone()),
                    Event::Control { opcode, payload } => controls.push((*opcode, payload.clone())),
                    _ => {}
                }
            }
            // Splicing each message back as one unmasked frame: controls pass, data is replaced.
            match splice(chunk, &events, |message, out| {
                encode_frame(true, 0, message.opcode, &message.data, None, out)
            }) {
                Splice::Forward => passed.extend_from_slice(chunk),
                Splice::Replace(bytes) => passed.extend_from_slice(&bytes),
            }
            start = end;
        }
        assert!(parser.at_frame_boundary());
        Parsed {
            messages,
            controls,
            spliced: passed,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_chunking_yields_the_same_messages(
            specs in prop::collection::vec(message_spec(), 0..6),
            cuts in prop::collection::vec(any::<usize>(), 0..12),
            server_to_client in any::<bool>(),
            key in any::<[u8; 4]>(),
        ) {
            let direction = if server_to_client {
                Direction::ServerToClient
            } else {
                Direction::ClientToServer
            };
            let stream = build(direction, &specs, key);
            let chunked = parse_in_chunks(direction, &stream, &cuts);
            let expected: Vec<CapturedMessage> = specs
                .iter()
                .map(|spec| CapturedMessage {
                    opcode: if spec.text { Opcode::Text } else { Opcode::Binary },
                    compressed: false,
                    data: spec.payload.clone(),
                })
                .collect();
            prop_assert_eq!(&chunked.messages, &expected);
            let pings: usize = specs.iter().filter(|s| s.pings).map(|s| s.cuts.len()).sum();
            prop_assert_eq!(chunked.controls.len(), pings);
            // Whole-stream parsing agrees with the chunked one, splice output included.
            let whole = parse_in_chunks(direction, &stream, &[]);
            prop_assert_eq!(&whole.messages, &chunked.messages);
            prop_assert_eq!(&whole.controls, &chunked.controls);
            prop_assert_eq!(&whole.spliced, &chunked.spliced);
            // The spliced stream carries the same messages and controls, unfragmented.
            if direction == Direction::ServerToClient {
                let again = parse_in_chunks(direction, &chunked.spliced, &cuts);
                prop_assert_eq!(again.messages, chunked.messages);
                prop_assert_eq!(again.controls, chunked.controls);
            }
        }

        #[test]
        fn header_encode_then_parse_is_identity(
            fin in any::<bool>(),
            rsv in 0u8..8,
            opcode_index in 0usize..6,
            key in any::<Option<[u8; 4]>>(),
            len in prop_oneof![0u64..=125, 126u64..=65_535, 65_536u64..(1 << 63)],
        ) {
            let opcode = [Opcode::Continuation, Opcode::Text, Opcode::Binary, Opcode::Close,
                Opcode::Ping, Opcode::Pong][opcode_index];
            let (fin, len) = if opcode.is_control() { (true, len % 126) } else { (fin, len) };
            let header = FrameHeader::new(fin, rsv, opcode, key, len);
            let encoded = header.encode();
            prop_assert_eq!(encoded.as_bytes().len(), header.header_len);
            prop_assert_eq!(parse_header(encoded.as_bytes(), u64::MAX), Ok(Some(header)));
        }

        #[test]
        fn frame_encode_then_parse_is_identity(
            payload in prop::collection::vec(any::<u8>(), 0..2000),
            key in any::<[u8; 4]>(),
        ) {
            let mut frame = Vec::new();
            encode_frame(true, 0, Opcode::Binary, &payload, Some(key), &mut frame);
            let limits = Limits { max_frame_payload: 4096, max_message: 4096,
                validate_utf8: true, extensions_negotiated: false };
            let mut parser = FrameParser::new(Direction::ClientToServer, limits)
                .with_capture(Capture::ALL);
            let mut events = Vec::new();
            parser.feed(&frame, &mut events).unwrap();
            let data = events.iter().find_map(|e| match e {
                Event::Message(m) => Some(m.data.clone()),
                _ => None,
            });
            prop_assert_eq!(data, Some(payload));
        }

        #[test]
        fn fast_mask_equals_reference(
            data in prop::collection::vec(any::<u8>(), 0..1100),
            key in any::<[u8; 4]>(),
            offset in any::<usize>(),
        ) {
            let mut fast = data.clone();
            let mut reference = data;
            apply_mask(&mut fast, key, offset);
            apply_mask_reference(&mut reference, key, offset);
            prop_assert_eq!(fast, reference);
        }

        #[test]
        fn fuzz_bodies_hold_on_arbitrary_bytes(data in prop::collection::vec(any::<u8>(), 0..400)) {
            prop_assert_eq!(fuzzing::header_parse(&data), Ok(()));
            prop_assert_eq!(fuzzing::unmask(&data), Ok(()));
            prop_assert_eq!(fuzzing::stream_parse(&data), Ok(()));
        }
    }
}
