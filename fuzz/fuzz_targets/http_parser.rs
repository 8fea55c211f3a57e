//! The HTTP/1.1 request reader on arbitrary bytes that arrive a few at a
//! time: it must never panic, never consume more than it was given, and
//! pass on at most `max_body` bytes of body per request.
//!
//! The checks live in `pollring_examples::fuzzing`, shared with the test
//! that replays `fuzz/regressions/http_parser/` on stable.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pollring_examples::fuzzing::check_http_input(data));
