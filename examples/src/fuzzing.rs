//! The checks the parser fuzz targets make, in one place.
//!
//! `fuzz/fuzz_targets/{resp_parser,http_parser}.rs` are one call each into
//! this module, and `examples/tests/fuzz_regressions.rs` replays every input
//! kept in `fuzz/regressions/TARGET/` through the same functions on the
//! stable toolchain. So an input that once made a target fail keeps being
//! checked by `cargo test`, with exactly the checks that caught it.
//!
//! Each function panics if the parser misbehaves on `data` (a panic inside
//! the parser, or a broken invariant); on any other input it returns.
//! Hidden from the docs: it is test support, not part of the examples' API.

use crate::http::parser::{Parser as HttpParser, Progress, RequestReader};
use crate::http::Limits as HttpLimits;
use crate::resp::{Limits as RespLimits, Parser as RespParser};

/// The RESP parser on `data[1..]`, delivered in chunks of
/// `data[0] % 64 + 1` bytes: it must never panic, and every request it
/// reports must lie inside the input and have arguments within the limits.
///
/// # Panics
/// When the parser panics or breaks one of those invariants.
pub fn check_resp_input(data: &[u8]) {
    let Some((&split, input)) = data.split_first() else { return };
    let chunk = usize::from(split % 64) + 1;
    // Small limits, so the limit paths are reached by short inputs.
    let limits =
        RespLimits { max_args: 16, max_bulk_len: 256, max_inline_len: 128, max_request_len: 512 };
    let mut parser = RespParser::new(limits);
    let mut offset = 0;
    while offset < input.len() {
        match parser.scan(input[offset..].chunks(chunk)) {
            Ok(Some(len)) => {
                assert!(len > 0 && offset + len <= input.len(), "request outside the input");
                let request = &input[offset..offset + len];
                for arg in parser.args(request).iter() {
                    assert!(
                        arg.len() <= limits.max_bulk_len.max(limits.max_inline_len),
                        "argument past its limit"
                    );
                }
                offset += len;
            }
            Ok(None) | Err(_) => break,
        }
    }
}

/// The HTTP/1.1 request reader on `data[1..]`, arriving `data[0] % 32 + 1`
/// bytes at a time: it must never panic, never consume more than it was
/// given, and pass on at most `max_body` bytes of body per request.
///
/// # Panics
/// When the reader panics or breaks one of those invariants.
pub fn check_http_input(data: &[u8]) {
    let Some((&split, input)) = data.split_first() else { return };
    let step = usize::from(split % 32) + 1;
    // Small limits, so the limit paths are reached by short inputs.
    let limits = HttpLimits { max_head: 256, max_headers: 8, max_body: 512 };
    let mut parser = HttpParser::new(limits);
    let mut reader = RequestReader::default();
    let (mut start, mut available) = (0, step.min(input.len()));
    let mut body = 0u64;
    loop {
        let mut s: &[u8] = &input[start..available];
        let before = s.len();
        let progress = match reader.advance(&mut parser, &mut s, |b| body += b.len() as u64) {
            Ok(Progress::Head(request)) => {
                let _ = request.path();
                let _ = request.headers().count();
                body = 0;
                Some(true)
            }
            Ok(Progress::BodyDone) => Some(true),
            Ok(Progress::NeedMore) => Some(false),
            Err(e) => {
                let _ = e.status();
                None
            }
        };
        assert!(body <= limits.max_body, "body past its limit");
        assert!(s.len() <= before, "consumed more than the input");
        start += before - s.len();
        match progress {
            Some(true) => {}
            Some(false) if available < input.len() => {
                available = (available + step).min(input.len())
            }
            _ => break,
        }
    }
}
