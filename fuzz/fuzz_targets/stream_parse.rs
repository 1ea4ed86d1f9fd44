//! The incremental stream parser under a chunking derived from the input: chunked and
//! one-shot parsing agree, events tile each chunk, splicing keeps the messages. Input layout:
//! flags byte, two chunk-seed bytes, then the stream (see switchboard_core::ws::fuzzing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_core::ws::fuzzing;

fuzz_target!(|data: &[u8]| {
    if let Err(finding) = fuzzing::stream_parse(data) {
        panic!("{finding}");
    }
});
