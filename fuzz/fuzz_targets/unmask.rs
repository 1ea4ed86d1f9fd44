//! Masking: the word-at-a-time fast path equals the byte-by-byte reference, also split in two.
//! Input layout: 4 key bytes, offset byte, split byte, data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_core::ws::fuzzing;

fuzz_target!(|data: &[u8]| {
    if let Err(finding) = fuzzing::unmask(data) {
        panic!("{finding}");
    }
});
