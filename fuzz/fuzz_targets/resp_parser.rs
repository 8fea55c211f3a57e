//! The RESP parser on arbitrary bytes, delivered in arbitrary chunk sizes:
//! it must never panic, and every request it reports must lie inside the
//! input and have arguments that lie inside the request.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pollring_examples::resp::{Limits, Parser};

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let chunk = usize::from(split % 64) + 1;
    // Small limits, so the limit paths are reached by short inputs.
    let limits = Limits { max_args: 16, max_bulk_len: 256, max_inline_len: 128, max_request_len: 512 };
    let mut parser = Parser::new(limits);
    let mut offset = 0;
    while offset < input.len() {
        match parser.scan(input[offset..].chunks(chunk)) {
            Ok(Some(len)) => {
                assert!(len > 0 && offset + len <= input.len(), "request outside the input");
                let request = &input[offset..offset + len];
                for arg in parser.args(request).iter() {
                    assert!(arg.len() <= limits.max_bulk_len.max(limits.max_inline_len));
                }
                offset += len;
            }
            Ok(None) | Err(_) => break,
        }
    }
});
