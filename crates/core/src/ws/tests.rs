//! Annotated byte-vector cases for the stream parser and the splice: one or more per rule, the
//! RFC 6455 §5.7 examples, and chunk-boundary cases. Each comment spells out the frame.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::header::RSV1;
use super::*;
#[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
use wasm_bindgen_test::wasm_bindgen_test as test;

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn limits() -> Limits {
    Limits {
        max_frame_payload: 1 << 20,
        max_message: 1 << 20,
        validate_utf8: true,
        extensions_negotiated: false,
    }
}

fn client() -> FrameParser {
    FrameParser::new(Direction::ClientToServer, limits())
}

fn server() -> FrameParser {
    FrameParser::new(Direction::ServerToClient, limits())
}

/// Feeds `chunks` in order; returns the events and the first error.
fn feed_all(parser: &mut FrameParser, chunks: &[&[u8]]) -> (Vec<Event>, Result<(), Violation>) {
    let mut events = Vec::new();
    for chunk in chunks {
        if let Err(violation) = parser.feed(chunk, &mut events) {
            return (events, Err(violation));
        }
    }
    (events, Ok(()))
}

fn violation_of(mut parser: FrameParser, bytes: &[u8]) -> Violation {
    feed_all(&mut parser, &[bytes]).1.unwrap_err()
}

fn messages(events: &[Event]) -> Vec<CapturedMessage> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Message(message) => Some(message.clone()),
            _ => None,
        })
        .collect()
}

fn controls(events: &[Event]) -> Vec<(Opcode, Vec<u8>)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Control { opcode, payload } => Some((*opcode, payload.clone())),
            _ => None,
        })
        .collect()
}

fn text(data: &str) -> CapturedMessage {
    CapturedMessage {
        opcode: Opcode::Text,
        compressed: false,
        data: data.as_bytes().to_vec(),
    }
}

fn masked(mut bytes: Vec<u8>, key: [u8; 4]) -> Vec<u8> {
    apply_mask(&mut bytes, key, 0);
    bytes
}

// ---- RFC 6455 §5.7 examples ----

#[test]
fn rfc_unmasked_hello_events() {
    // FIN=1 op=text mask=0 len=5 "Hello"
    let frame = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f];
    let (events, result) = feed_all(&mut server(), &[&frame]);
    result.unwrap();
    assert_eq!(
        events,
        [
            Event::FrameStart {
                header: FrameHeader::new(true, 0, Opcode::Text, None, 5),
                stream_offset: 0,
                chunk_range: 0..2,
                captured: false,
            },
            Event::Payload {
                chunk_range: 2..7,
                payload_offset: 0,
                captured: false,
            },
            Event::FrameEnd { stream_offset: 7 },
        ]
    );
}

#[test]
fn rfc_masked_hello_is_captured_unmasked() {
    // FIN=1 op=text mask=1 len=5 key=37fa213d "Hello"
    let frame = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let mut parser = client().with_capture(Capture::TEXT);
    let (events, result) = feed_all(&mut parser, &[&frame]);
    result.unwrap();
    assert_eq!(messages(&events), [text("Hello")]);
    // The Message event comes after the last payload and before the frame ends.
    assert!(matches!(events[events.len() - 2], Event::Message(_)));
    assert_eq!(events.last(), Some(&Event::FrameEnd { stream_offset: 11 }));
}

#[test]
fn rfc_fragmented_hello_is_reassembled() {
    // FIN=0 op=text len=3 "Hel" | FIN=1 op=continuation len=2 "lo"
    let stream = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f];
    let mut parser = server().with_capture(Capture::TEXT);
    let (events, result) = feed_all(&mut parser, &[&stream]);
    result.unwrap();
    assert_eq!(messages(&events), [text("Hello")]);
    let ends: Vec<_> = events
        .iter()
        .filter(|e| matches!(e, Event::FrameEnd { .. }))
        .collect();
    assert_eq!(ends.len(), 2);
}

#[test]
fn rfc_fragmented_hello_with_ping_between_fragments() {
    // FIN=0 op=text len=3 "Hel" | FIN=1 op=ping len=5 "Hello" | FIN=1 op=continuation len=2 "lo"
    let stream = [
        0x01, 0x03, 0x48, 0x65, 0x6c, 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x80, 0x02, 0x6c,
        0x6f,
    ];
    let mut parser = server().with_capture(Capture::TEXT);
    let (events, result) = feed_all(&mut parser, &[&stream]);
    result.unwrap();
    assert_eq!(controls(&events), [(Opcode::Ping, b"Hello".to_vec())]);
    assert_eq!(messages(&events), [text("Hello")]);
    // The ping is not part of the captured message.
    let ping_start = events.iter().find_map(|e| match e {
        Event::FrameStart {
            header, captured, ..
        } if header.opcode == Opcode::Ping => Some(*captured),
        _ => None,
    });
    assert_eq!(ping_start, Some(false));
}

#[test]
fn rfc_ping_and_masked_pong_are_delivered_unmasked() {
    // FIN=1 op=ping mask=0 len=5 "Hello"
    let (events, result) = feed_all(
        &mut server(),
        &[&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]],
    );
    result.unwrap();
    assert_eq!(controls(&events), [(Opcode::Ping, b"Hello".to_vec())]);
    // FIN=1 op=pong mask=1 len=5 key=37fa213d "Hello", split inside the payload
    let pong = [
        0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let (events, result) = feed_all(&mut client(), &[&pong[..8], &pong[8..]]);
    result.unwrap();
    assert_eq!(controls(&events), [(Opcode::Pong, b"Hello".to_vec())]);
}

#[test]
fn rfc_256_byte_and_64k_binary_messages() {
    let payload_256: Vec<u8> = (0..=255).collect();
    // FIN=1 op=binary mask=0 len=126 → 16-bit 0x0100, 256 bytes
    let mut stream = vec![0x82, 0x7E, 0x01, 0x00];
    stream.extend_from_slice(&payload_256);
    let payload_64k: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
    // FIN=1 op=binary mask=0 len=127 → 64-bit 0x10000, 65536 bytes
    stream.extend_from_slice(&[0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00]);
    stream.extend_from_slice(&payload_64k);
    let mut parser = server().with_capture(Capture::ALL);
    let chunks: Vec<&[u8]> = stream.chunks(1000).collect();
    let (events, result) = feed_all(&mut parser, &chunks);
    result.unwrap();
    let got = messages(&events);
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].opcode, &got[0].data),
        (Opcode::Binary, &payload_256)
    );
    assert_eq!(
        (got[1].opcode, &got[1].data),
        (Opcode::Binary, &payload_64k)
    );
    assert_eq!(parser.stream_offset(), stream.len() as u64);
    assert_eq!(parser.buffered_bytes(), 0);
}

// ---- chunk boundaries and pass-through ----

#[test]
fn header_split_across_chunks_is_held_and_attributed() {
    // FIN=1 op=text mask=1 len=5 key=37fa213d "Hello", split after 3 header bytes
    let frame = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let mut parser = client();
    let mut events = Vec::new();
    parser.feed(&frame[..3], &mut events).unwrap();
    assert_eq!(
        events,
        [Event::HeaderPending {
            chunk_range: 0..3,
            captured: false
        }]
    );
    assert_eq!(parser.held_header_bytes(), &frame[..3]);
    assert!(!parser.at_frame_boundary());
    events.clear();
    parser.feed(&frame[3..], &mut events).unwrap();
    let Event::FrameStart {
        header,
        stream_offset,
        chunk_range,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    assert_eq!((*stream_offset, chunk_range.clone()), (0, 0..3));
    // The held start of the header can be written again from the parsed header.
    assert_eq!(header.encode().as_bytes(), &frame[..6]);
    assert_eq!(
        events[1],
        Event::Payload {
            chunk_range: 3..8,
            payload_offset: 0,
            captured: false
        }
    );
    assert!(parser.at_frame_boundary());
    assert!(parser.held_header_bytes().is_empty());
}

#[test]
fn byte_at_a_time_holds_at_most_thirteen_bytes() {
    // FIN=1 op=binary mask=1 len=127 → 64-bit 5, key=01020304, payload 5 bytes
    let mut frame = vec![0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0, 5, 1, 2, 3, 4];
    frame.extend_from_slice(&masked(b"abcde".to_vec(), [1, 2, 3, 4]));
    let mut parser = client().with_capture(Capture::ALL);
    let mut events = Vec::new();
    for byte in &frame {
        parser
            .feed(std::slice::from_ref(byte), &mut events)
            .unwrap();
        assert!(parser.held_header_bytes().len() <= 13);
    }
    assert_eq!(messages(&events)[0].data, b"abcde");
    let starts: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::FrameStart { chunk_range, .. } => Some(chunk_range.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0], 0..1);
}

#[test]
fn several_frames_in_one_chunk_tile_it() {
    // FIN=1 op=text len=2 "hi" | FIN=1 op=binary len=0 | FIN=1 op=ping len=0
    // | FIN=0 op=text len=3 "ab" (2 of 3 payload bytes)
    let chunk = [
        0x81, 0x02, b'h', b'i', 0x82, 0x00, 0x89, 0x00, 0x01, 0x03, b'a', b'b',
    ];
    let (events, result) = feed_all(&mut server(), &[&chunk]);
    result.unwrap();
    let ranges: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::FrameStart { chunk_range, .. } | Event::Payload { chunk_range, .. } => {
                Some(chunk_range.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(ranges, [0..2, 2..4, 4..6, 6..8, 8..10, 10..12]);
    let ends: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::FrameEnd { stream_offset } => Some(*stream_offset),
            _ => None,
        })
        .collect();
    assert_eq!(ends, [4, 6, 8]);
}

#[test]
fn one_frame_payload_can_be_read_without_capture() {
    // FIN=1 op=text mask=1 len=5 key=37fa213d "Hello", payload split across two chunks
    let frame = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let chunks: [&[u8]; 2] = [&frame[..8], &frame[8..]];
    let mut parser = client();
    let mut header = None;
    let mut payload = Vec::new();
    for chunk in chunks {
        let mut events = Vec::new();
        parser.feed(chunk, &mut events).unwrap();
        for event in events {
            match event {
                Event::FrameStart { header: h, .. } => header = Some(h),
                Event::Payload {
                    chunk_range,
                    payload_offset,
                    captured: false,
                } => {
                    let mut piece = chunk[chunk_range].to_vec();
                    header.unwrap().unmask(&mut piece, payload_offset);
                    payload.extend_from_slice(&piece);
                }
                _ => {}
            }
        }
    }
    assert_eq!(payload, b"Hello");
    assert_eq!(parser.buffered_bytes(), 0);
}

#[test]
fn capture_is_decided_at_the_first_header_byte() {
    // FIN=1 op=text len=2 "hi", header split after its first byte; capture turned on in between
    let mut parser = server();
    let mut events = Vec::new();
    parser.feed(&[0x81], &mut events).unwrap();
    parser.set_capture(Capture::TEXT);
    parser.feed(&[0x02, b'h', b'i'], &mut events).unwrap();
    assert!(messages(&events).is_empty());
    // The next message is captured.
    parser.feed(&[0x81, 0x02, b'h', b'o'], &mut events).unwrap();
    assert_eq!(messages(&events), [text("ho")]);
}

// ---- §5.1 masking ----

#[test]
fn unmasked_client_frame_is_1002() {
    // FIN=1 op=text mask=0 len=5 "Hello", sent by a client
    let violation = violation_of(client(), &[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
    assert_eq!(violation, Violation::UnmaskedClientFrame);
    assert_eq!(violation.close_code(), 1002);
}

#[test]
fn masked_server_frame_is_1002() {
    // FIN=1 op=text mask=1 len=5 key=37fa213d "Hello", sent by a server
    let frame = [
        0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
    ];
    let violation = violation_of(server(), &frame);
    assert_eq!(violation, Violation::MaskedServerFrame);
    assert_eq!(violation.close_code(), 1002);
}

// ---- §5.2 RSV bits and opcodes, RFC 7692 ----

#[test]
fn rsv_bits_without_extension_are_1002() {
    // FIN=1 RSV1=1 op=text len=0
    assert_eq!(
        violation_of(server(), &[0xC1, 0x00]),
        Violation::ReservedBitsSet { rsv: RSV1 }
    );
    // FIN=1 RSV2=1 op=binary len=0, even with an extension negotiated
    let with_extension = Limits {
        extensions_negotiated: true,
        ..limits()
    };
    let parser = FrameParser::new(Direction::ServerToClient, with_extension);
    let violation = violation_of(parser, &[0xA2, 0x00]);
    assert_eq!(violation, Violation::ReservedBitsSet { rsv: 0b010 });
    assert_eq!(violation.close_code(), 1002);
    // FIN=1 RSV3=1 op=ping len=0
    assert_eq!(
        violation_of(server(), &[0x99, 0x00]),
        Violation::ReservedBitsSet { rsv: 0b001 }
    );
}

#[test]
fn rsv1_with_permessage_deflate() {
    let with_extension = Limits {
        extensions_negotiated: true,
        ..limits()
    };
    // FIN=0 RSV1=1 op=text len=2 (compressed bytes, not UTF-8) | FIN=1 op=continuation len=1
    let stream = [0x41, 0x02, 0xF2, 0x48, 0x80, 0x01, 0xCD];
    let mut parser =
        FrameParser::new(Direction::ServerToClient, with_extension).with_capture(Capture::TEXT);
    let (events, result) = feed_all(&mut parser, &[&stream]);
    result.unwrap();
    assert_eq!(
        messages(&events),
        [CapturedMessage {
            opcode: Opcode::Text,
            compressed: true,
            data: vec![0xF2, 0x48, 0xCD]
        }]
    );
    // FIN=0 RSV1=1 op=text len=0 | FIN=1 RSV1=1 op=continuation len=0 (RFC 7692 §6.1)
    let parser = FrameParser::new(Direction::ServerToClient, with_extension);
    assert_eq!(
        violation_of(parser, &[0x41, 0x00, 0xC0, 0x00]),
        Violation::CompressedBitMisplaced
    );
    // FIN=1 RSV1=1 op=ping len=0 (RFC 7692 §6)
    let parser = FrameParser::new(Direction::ServerToClient, with_extension);
    let violation = violation_of(parser, &[0xC9, 0x00]);
    assert_eq!(violation, Violation::CompressedBitMisplaced);
    assert_eq!(violation.close_code(), 1002);
}

#[test]
fn reserved_opcodes_are_1002() {
    for first in [0x83u8, 0x84, 0x85, 0x86, 0x87, 0x8B, 0x8C, 0x8D, 0x8E, 0x8F] {
        // FIN=1 op=<reserved> len=0
        let violation = violation_of(server(), &[first, 0x00]);
        assert_eq!(
            violation,
            Violation::ReservedOpcode {
                value: first & 0x0F
            }
        );
        assert_eq!(violation.close_code(), 1002);
    }
}

#[test]
fn length_high_bit_is_1002() {
    // FIN=1 op=binary mask=0 len=127 → 64-bit 0x8000000000000000
    let violation = violation_of(server(), &[0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(violation, Violation::LengthHighBitSet);
    assert_eq!(violation.close_code(), 1002);
}

// ---- §5.5 control frames ----

#[test]
fn fragmented_control_frame_is_1002() {
    // FIN=0 op=ping len=0
    let violation = violation_of(server(), &[0x09, 0x00]);
    assert_eq!(violation, Violation::FragmentedControlFrame);
    assert_eq!(violation.close_code(), 1002);
}

#[test]
fn control_payload_over_125_is_1002() {
    // FIN=1 op=ping mask=0 len=126 → 16-bit 126
    let violation = violation_of(server(), &[0x89, 0x7E, 0x00, 0x7E]);
    assert_eq!(violation, Violation::ControlPayloadTooLong { len: 126 });
    assert_eq!(violation.close_code(), 1002);
}

// ---- §5.4 fragmentation ----

#[test]
fn continuation_without_a_message_is_1002() {
    // FIN=1 op=continuation len=2 "lo"
    let violation = violation_of(server(), &[0x80, 0x02, 0x6c, 0x6f]);
    assert_eq!(violation, Violation::UnexpectedContinuation);
    assert_eq!(violation.close_code(), 1002);
    // FIN=1 op=text len=2 "hi" | FIN=1 op=continuation len=0: the message already ended
    assert_eq!(
        violation_of(server(), &[0x81, 0x02, b'h', b'i', 0x80, 0x00]),
        Violation::UnexpectedContinuation
    );
}

#[test]
fn data_frame_inside_fragmented_message_is_1002() {
    // FIN=0 op=text len=3 "Hel" | FIN=1 op=binary len=2 "lo"
    let violation = violation_of(
        server(),
        &[0x01, 0x03, 0x48, 0x65, 0x6c, 0x82, 0x02, 0x6c, 0x6f],
    );
    assert_eq!(violation, Violation::DataFrameInsideFragmentedMessage);
    assert_eq!(violation.close_code(), 1002);
}

// ---- limits ----

#[test]
fn frame_over_limit_is_1009_before_its_payload_arrives() {
    let small = Limits {
        max_frame_payload: 100,
        ..limits()
    };
    // FIN=1 op=binary mask=0 len=126 → 16-bit 256; no payload sent yet
    let mut parser = FrameParser::new(Direction::ServerToClient, small).with_capture(Capture::ALL);
    let (events, result) = feed_all(&mut parser, &[&[0x82, 0x7E, 0x01, 0x00]]);
    assert_eq!(result, Err(Violation::FrameTooLarge { len: 256, max: 100 }));
    assert_eq!(
        Violation::FrameTooLarge { len: 256, max: 100 }.close_code(),
        1009
    );
    assert!(events.is_empty());
    assert_eq!(parser.buffered_bytes(), 0);
    // FIN=1 op=binary mask=1 len=127 → 64-bit 2^62, from a client: refused on the length alone
    let parser = FrameParser::new(Direction::ClientToServer, small);
    assert_eq!(
        violation_of(parser, &[0x82, 0xFF, 0x40, 0, 0, 0, 0, 0, 0, 0]),
        Violation::FrameTooLarge {
            len: 1 << 62,
            max: 100
        }
    );
}

#[test]
fn message_over_limit_is_1009_at_the_fragment_that_crosses_it() {
    let small = Limits {
        max_message: 4,
        ..limits()
    };
    // FIN=0 op=text len=3 "Hel" | FIN=1 op=continuation len=2 (header only; 3+2 > 4)
    let mut parser = FrameParser::new(Direction::ServerToClient, small).with_capture(Capture::TEXT);
    let (events, result) = feed_all(&mut parser, &[&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02]]);
    let violation = result.unwrap_err();
    assert_eq!(violation, Violation::MessageTooLarge { len: 5, max: 4 });
    assert_eq!(violation.close_code(), 1009);
    // The first fragment was fine and is described.
    assert_eq!(events.last(), Some(&Event::FrameEnd { stream_offset: 5 }));
    // Control frames do not count toward the message.
    let mut parser = FrameParser::new(Direction::ServerToClient, small).with_capture(Capture::TEXT);
    // FIN=0 op=text "Hel" | FIN=1 op=ping "Hello" | FIN=1 op=continuation "l"
    let stream = [
        0x01, 0x03, 0x48, 0x65, 0x6c, 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x80, 0x01, 0x6c,
    ];
    let (events, result) = feed_all(&mut parser, &[&stream]);
    result.unwrap();
    assert_eq!(messages(&events), [text("Hell")]);
}

// ---- §8.1 UTF-8 ----

#[test]
fn invalid_utf8_text_is_1007_captured_or_not() {
    // FIN=1 op=text len=2 c3 28 (invalid 2-byte sequence)
    let frame = [0x81, 0x02, 0xc3, 0x28];
    for capture in [Capture::NONE, Capture::TEXT] {
        let violation = violation_of(server().with_capture(capture), &frame);
        assert_eq!(violation, Violation::InvalidUtf8Text);
        assert_eq!(violation.close_code(), 1007);
    }
    // The same bytes from a client, masked with 37fa213d, checked without capture.
    let mut client_frame = vec![0x81, 0x82, 0x37, 0xfa, 0x21, 0x3d];
    client_frame.extend_from_slice(&masked(vec![0xc3, 0x28], KEY));
    assert_eq!(
        violation_of(client(), &client_frame),
        Violation::InvalidUtf8Text
    );
    // With validation off, it passes; binary messages are never checked.
    let off = Limits {
        validate_utf8: false,
        ..limits()
    };
    let mut parser = FrameParser::new(Direction::ServerToClient, off);
    assert!(feed_all(&mut parser, &[&frame]).1.is_ok());
    // FIN=1 op=binary len=2 c3 28
    assert!(feed_all(&mut server(), &[&[0x82, 0x02, 0xc3, 0x28]])
        .1
        .is_ok());
}

#[test]
fn code_point_split_across_fragments_is_valid() {
    // "é€" = c3 a9 e2 82 ac, masked with 37fa213d per frame:
    // FIN=0 op=text mask=1 len=1 c3 | FIN=1 op=ping mask=1 len=0
    // | FIN=0 op=continuation mask=1 len=3 a9 e2 82 | FIN=1 op=continuation mask=1 len=1 ac
    let mut stream = vec![0x01, 0x81];
    stream.extend_from_slice(&KEY);
    stream.extend_from_slice(&masked(vec![0xc3], KEY));
    stream.extend_from_slice(&[0x89, 0x80]);
    stream.extend_from_slice(&KEY);
    stream.extend_from_slice(&[0x00, 0x83]);
    stream.extend_from_slice(&KEY);
    stream.extend_from_slice(&masked(vec![0xa9, 0xe2, 0x82], KEY));
    stream.extend_from_slice(&[0x80, 0x81]);
    stream.extend_from_slice(&KEY);
    stream.extend_from_slice(&masked(vec![0xac], KEY));
    for capture in [Capture::NONE, Capture::TEXT] {
        for split in 0..=stream.len() {
            let mut parser = client().with_capture(capture);
            let (events, result) = feed_all(&mut parser, &[&stream[..split], &stream[split..]]);
            result.unwrap();
            if capture == Capture::TEXT {
                assert_eq!(messages(&events), [text("é€")]);
            }
        }
    }
}

#[test]
fn text_ending_inside_a_code_point_is_1007() {
    // FIN=0 op=text len=1 e2 | FIN=1 op=continuation len=1 82 (e2 82 needs a third byte)
    let violation = violation_of(server(), &[0x01, 0x01, 0xe2, 0x80, 0x01, 0x82]);
    assert_eq!(violation, Violation::InvalidUtf8Text);
}

#[test]
fn invalid_utf8_fails_before_the_message_ends() {
    // FIN=0 op=text len=2 ed a0 (surrogate prefix): reported at this fragment
    let violation = violation_of(server(), &[0x01, 0x02, 0xed, 0xa0]);
    assert_eq!(violation, Violation::InvalidUtf8Text);
}

// ---- close frames ----

#[test]
fn valid_close_frames_are_delivered() {
    // FIN=1 op=close mask=1 len=5 key=37fa213d code=1000 "bye"
    let mut frame = vec![0x88, 0x85];
    frame.extend_from_slice(&KEY);
    frame.extend_from_slice(&masked(vec![0x03, 0xE8, b'b', b'y', b'e'], KEY));
    let (events, result) = feed_all(&mut client(), &[&frame]);
    result.unwrap();
    let controls = controls(&events);
    assert_eq!(controls[0].0, Opcode::Close);
    let close = parse_close_payload(&controls[0].1).unwrap().unwrap();
    assert_eq!((close.code, close.reason), (1000, "bye"));
    // FIN=1 op=close len=0: no status code
    let (events, result) = feed_all(&mut server(), &[&[0x88, 0x00]]);
    result.unwrap();
    assert_eq!(super::tests::controls(&events), [(Opcode::Close, vec![])]);
}

#[test]
fn close_with_one_byte_payload_is_1002() {
    // FIN=1 op=close len=1 03
    let violation = violation_of(server(), &[0x88, 0x01, 0x03]);
    assert_eq!(violation, Violation::CloseBodyTooShort);
    assert_eq!(violation.close_code(), 1002);
}

#[test]
fn invalid_close_codes_are_1002() {
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        // FIN=1 op=close len=2 <code>
        let [high, low] = code.to_be_bytes();
        let violation = violation_of(server(), &[0x88, 0x02, high, low]);
        assert_eq!(violation, Violation::InvalidCloseCode { code });
        assert_eq!(violation.close_code(), 1002);
    }
}

#[test]
fn non_utf8_close_reason_is_1007() {
    // FIN=1 op=close len=4 code=1000 reason=ff fe
    let violation = violation_of(server(), &[0x88, 0x04, 0x03, 0xE8, 0xff, 0xfe]);
    assert_eq!(violation, Violation::InvalidCloseReason);
    assert_eq!(violation.close_code(), 1007);
}

// ---- after a violation ----

#[test]
fn parser_stays_failed() {
    let mut parser = server();
    // FIN=1 op=text len=2 "hi" | FIN=1 op=0x3 (reserved)
    let (events, result) = feed_all(&mut parser, &[&[0x81, 0x02, b'h', b'i', 0x83, 0x00]]);
    assert_eq!(result, Err(Violation::ReservedOpcode { value: 3 }));
    // The valid frame before it is fully described.
    assert_eq!(events.last(), Some(&Event::FrameEnd { stream_offset: 4 }));
    assert_eq!(
        parser.failed(),
        Some(Violation::ReservedOpcode { value: 3 })
    );
    assert!(!parser.at_frame_boundary());
    let mut more = Vec::new();
    // FIN=1 op=text len=0: valid, but too late
    assert_eq!(
        parser.feed(&[0x81, 0x00], &mut more),
        Err(Violation::ReservedOpcode { value: 3 })
    );
    assert!(more.is_empty());
}

// ---- parser state for the glue ----

#[test]
fn fragmented_message_state_is_visible() {
    let mut parser = server();
    let mut events = Vec::new();
    // FIN=0 op=text len=3 "Hel"
    parser
        .feed(&[0x01, 0x03, 0x48, 0x65, 0x6c], &mut events)
        .unwrap();
    assert!(parser.at_frame_boundary());
    assert!(parser.in_fragmented_message());
    // FIN=1 op=continuation len=2 "l" (1 of 2 payload bytes)
    parser.feed(&[0x80, 0x02, 0x6c], &mut events).unwrap();
    assert!(!parser.at_frame_boundary());
    parser.feed(&[0x6f], &mut events).unwrap();
    assert!(parser.at_frame_boundary());
    assert!(!parser.in_fragmented_message());
}

// ---- splice ----

#[test]
fn nothing_captured_forwards_the_chunk() {
    // FIN=1 op=text len=5 "Hello" | FIN=1 op=ping len=0, then a header split after 1 byte
    let chunk = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x89, 0x00, 0x82];
    let mut events = Vec::new();
    server().feed(&chunk, &mut events).unwrap();
    assert_eq!(
        splice(&chunk, &events, |_, _| panic!("no message")),
        Splice::Forward
    );
}

#[test]
fn captured_message_is_replaced_across_chunks_with_controls_passing() {
    // FIN=0 op=text mask=1 "Hel" | FIN=1 op=ping mask=1 "p" | FIN=1 op=continuation mask=1 "lo"
    // | FIN=1 op=binary mask=1 "b" — cut into chunks at every position pair
    let mut stream = Vec::new();
    message::encode_frame(
        false,
        0,
        Opcode::Text,
        b"Hel",
        Some([1, 2, 3, 4]),
        &mut stream,
    );
    let ping_at = stream.len();
    message::encode_frame(true, 0, Opcode::Ping, b"p", Some([5, 6, 7, 8]), &mut stream);
    let ping_end = stream.len();
    message::encode_frame(
        true,
        0,
        Opcode::Continuation,
        b"lo",
        Some([9, 9, 9, 9]),
        &mut stream,
    );
    let binary_at = stream.len();
    message::encode_frame(
        true,
        0,
        Opcode::Binary,
        b"b",
        Some([7, 7, 7, 7]),
        &mut stream,
    );
    let replacement = encode_text("{\"tagged\":\"Hello\"}", Some(KEY));
    let mut expected = stream[ping_at..ping_end].to_vec();
    expected.extend_from_slice(&replacement);
    expected.extend_from_slice(&stream[binary_at..]);
    for first in 0..=stream.len() {
        for second in first..=stream.len() {
            let mut parser = client().with_capture(Capture::TEXT);
            let mut output = Vec::new();
            let mut seen = Vec::new();
            for chunk in [&stream[..first], &stream[first..second], &stream[second..]] {
                let mut events = Vec::new();
                parser.feed(chunk, &mut events).unwrap();
                match splice(chunk, &events, |message, out| {
                    seen.push(message.clone());
                    out.extend_from_slice(&replacement);
                }) {
                    Splice::Forward => output.extend_from_slice(chunk),
                    Splice::Replace(bytes) => output.extend_from_slice(&bytes),
                }
            }
            assert_eq!(seen, [text("Hello")], "cuts {first} {second}");
            assert_eq!(output, expected, "cuts {first} {second}");
        }
    }
}

#[test]
fn a_message_can_be_dropped() {
    // FIN=1 op=text "drop me" | FIN=1 op=text "keep"; the rewrite keeps only "keep"
    let mut stream = encode_text("drop me", None);
    stream.extend_from_slice(&encode_text("keep", None));
    let mut events = Vec::new();
    server()
        .with_capture(Capture::TEXT)
        .feed(&stream, &mut events)
        .unwrap();
    let output = splice(&stream, &events, |message, out| {
        if message.data != b"drop me" {
            out.extend_from_slice(&encode_text(
                std::str::from_utf8(&message.data).unwrap(),
                None,
            ));
        }
    });
    assert_eq!(output, Splice::Replace(encode_text("keep", None)));
}
