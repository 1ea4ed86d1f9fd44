//! Frame header decoding: never longer than the input or 14 bytes, prefixes ask for more,
//! and a parsed header re-encodes to exactly its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_core::ws::fuzzing;

fuzz_target!(|data: &[u8]| {
    if let Err(finding) = fuzzing::header_parse(data) {
        panic!("{finding}");
    }
});
