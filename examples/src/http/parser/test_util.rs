//! What the parser tests share: a chain of small buffers standing in for a
//! connection's input, a reader loop, and valid requests for proptest.

use std::ops::Range;

use proptest::prelude::*;

use super::{BodyKind, Error, Limits, Parser, Progress, RequestReader, Source, Version};

/// A chain of fixed-size buffers, as the framework's input is.
pub(super) struct TestChain {
    bufs: std::collections::VecDeque<Vec<u8>>,
    buf_size: usize,
    scratch: Vec<u8>,
}

impl TestChain {
    pub(super) fn new(buf_size: usize) -> TestChain {
        TestChain { bufs: Default::default(), buf_size, scratch: Vec::new() }
    }

    pub(super) fn push(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            match self.bufs.back_mut() {
                Some(tail) if tail.len() < self.buf_size => {
                    let n = (self.buf_size - tail.len()).min(data.len());
                    tail.extend_from_slice(&data[..n]);
                    data = &data[n..];
                }
                _ => self.bufs.push_back(Vec::with_capacity(self.buf_size)),
            }
        }
    }
}

impl Source for TestChain {
    fn len(&mut self) -> usize {
        self.bufs.iter().map(Vec::len).sum()
    }
    fn first(&mut self) -> &[u8] {
        self.bufs.front().map_or(&[], |b| &b[..])
    }
    fn find(&mut self, from: usize, byte: u8) -> Option<usize> {
        let mut base = 0;
        for b in &self.bufs {
            if from < base + b.len() {
                let start = from.saturating_sub(base);
                if let Some(i) = b[start..].iter().position(|&x| x == byte) {
                    return Some(base + start + i);
                }
            }
            base += b.len();
        }
        None
    }
    fn range(&mut self, range: Range<usize>) -> Option<&[u8]> {
        if range.end > self.len() || range.start > range.end {
            return None;
        }
        self.scratch.clear();
        for b in &self.bufs {
            self.scratch.extend_from_slice(b);
        }
        Some(&self.scratch[range])
    }
    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let front = self.bufs.front_mut().expect("consume past the end");
            if n >= front.len() {
                n -= front.len();
                self.bufs.pop_front();
            } else {
                front.drain(..n);
                n = 0;
            }
        }
        while self.bufs.front().is_some_and(Vec::is_empty) {
            self.bufs.pop_front();
        }
    }
}

/// A request as parsed, owned, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Owned {
    pub(super) method: String,
    pub(super) target: String,
    pub(super) version: Version,
    pub(super) keep_alive: bool,
    pub(super) headers: Vec<(String, Vec<u8>)>,
    pub(super) body: Vec<u8>,
}

/// Feeds `pieces` one by one into a chain of `buf_size` buffers, reading
/// every request that completes; stops at the first error.
pub(super) fn read_all(
    pieces: &[&[u8]],
    buf_size: usize,
    limits: Limits,
) -> (Vec<Owned>, Option<Error>) {
    let (mut parser, mut reader) = (Parser::new(limits), RequestReader::default());
    let mut chain = TestChain::new(buf_size);
    let mut out = Vec::new();
    let mut current: Option<Owned> = None;
    let mut body = Vec::new();
    for piece in pieces {
        chain.push(piece);
        loop {
            match reader.advance(&mut parser, &mut chain, |d| body.extend_from_slice(d)) {
                Ok(Progress::Head(req)) => {
                    let owned = Owned {
                        method: req.method.into(),
                        target: req.target.into(),
                        version: req.version,
                        keep_alive: req.keep_alive,
                        headers: req.headers().map(|h| (h.name.into(), h.value.into())).collect(),
                        body: Vec::new(),
                    };
                    // Without a body the request is complete at its head.
                    match req.body {
                        BodyKind::None => out.push(owned),
                        _ => current = Some(owned),
                    }
                }
                Ok(Progress::BodyDone) => {
                    let mut req = current.take().expect("BodyDone after Head");
                    req.body = std::mem::take(&mut body);
                    out.push(req);
                }
                Ok(Progress::NeedMore) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

pub(super) fn one(input: &[u8]) -> Result<Owned, Error> {
    let (mut reqs, err) = read_all(&[input], 16 * 1024, Limits::default());
    match err {
        Some(e) => Err(e),
        None => {
            assert_eq!(reqs.len(), 1, "expected exactly one request in {input:?}");
            Ok(reqs.remove(0))
        }
    }
}

pub(super) fn err(input: &[u8]) -> Error {
    one(input).expect_err("should be rejected")
}

/// Valid requests, rendered to bytes, with the owned form they parse to.
pub(super) fn valid_request() -> impl Strategy<Value = (Vec<u8>, Owned)> {
    let method = prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "X-CUSTOM"]);
    let target = "/[a-z0-9/._~-]{0,20}(\\?[a-z0-9=&]{0,10})?";
    let header = ("X-[A-Za-z0-9-]{1,10}", "[ -~]{0,20}")
        .prop_map(|(n, v): (String, String)| (n, v.trim_matches(' ').to_owned()));
    let headers = prop::collection::vec(header, 0..5);
    let body = prop::collection::vec(any::<u8>(), 0..200);
    let framing = 0..3u8; // none / Content-Length / chunked
    let chunk_sizes = prop::collection::vec(1..50usize, 0..6);
    let http10 = any::<bool>();
    (method, target, headers, body, framing, chunk_sizes, http10).prop_map(
        |(method, target, headers, body, framing, sizes, http10)| {
            let framing = if http10 && framing == 2 { 1 } else { framing };
            let body = if framing == 0 { Vec::new() } else { body };
            let mut out = format!(
                "{method} {target} HTTP/1.{}\r\nHost: example\r\n",
                if http10 { 0 } else { 1 }
            )
            .into_bytes();
            let mut all_headers = vec![("Host".to_owned(), b"example".to_vec())];
            for (n, v) in &headers {
                out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                all_headers.push((n.clone(), v.clone().into_bytes()));
            }
            let framing_header = match framing {
                1 => Some(("Content-Length".to_owned(), body.len().to_string())),
                2 => Some(("Transfer-Encoding".to_owned(), "chunked".to_owned())),
                _ => None,
            };
            if let Some((n, v)) = framing_header {
                out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
                all_headers.push((n, v.into_bytes()));
            }
            out.extend_from_slice(b"\r\n");
            if framing == 2 {
                let mut rest = &body[..];
                let mut sizes = sizes.into_iter().cycle();
                while !rest.is_empty() {
                    let n = sizes.next().unwrap_or(7).min(rest.len());
                    out.extend_from_slice(format!("{n:x};ext=1\r\n").as_bytes());
                    out.extend_from_slice(&rest[..n]);
                    out.extend_from_slice(b"\r\n");
                    rest = &rest[n..];
                }
                out.extend_from_slice(b"0\r\nTrailer-Field: t\r\n\r\n");
            } else {
                out.extend_from_slice(&body);
            }
            let owned = Owned {
                method: method.into(),
                target,
                version: if http10 { Version::Http10 } else { Version::Http11 },
                keep_alive: !http10,
                headers: all_headers,
                body,
            };
            (out, owned)
        },
    )
}
