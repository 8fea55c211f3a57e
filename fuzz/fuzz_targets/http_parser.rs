//! The HTTP/1.1 request reader on arbitrary bytes that arrive a few at a
//! time: it must never panic, never consume more than it was given, and
//! pass on at most `max_body` bytes of body per request.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pollring_examples::http::parser::{Parser, Progress, RequestReader};
use pollring_examples::http::Limits;

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else { return };
    let step = usize::from(split % 32) + 1;
    // Small limits, so the limit paths are reached by short inputs.
    let limits = Limits { max_head: 256, max_headers: 8, max_body: 512 };
    let mut parser = Parser::new(limits);
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
        assert!(s.len() <= before);
        start += before - s.len();
        match progress {
            Some(true) => {}
            Some(false) if available < input.len() => available = (available + step).min(input.len()),
            _ => break,
        }
    }
});
