//! The RESP parser on arbitrary bytes, delivered in arbitrary chunk sizes:
//! it must never panic, and every request it reports must lie inside the
//! input and have arguments that lie inside the request.
//!
//! The checks live in `pollring_examples::fuzzing`, shared with the test
//! that replays `fuzz/regressions/resp_parser/` on stable.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pollring_examples::fuzzing::check_resp_input(data));
