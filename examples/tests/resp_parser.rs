//! Properties of the RESP parser: however a stream is cut into receives
//! and buffers, it parses to the same requests; arbitrary bytes never
//! panic and give the same outcome however they are cut.

use pollring_examples::resp::parser::{Limits, Parser, ProtocolError};
use proptest::prelude::*;

/// A connection's input as the framework holds it: a chain of buffers,
/// receives appended at the tail, parsed requests consumed at the head.
#[derive(Default)]
struct Chain {
    bufs: std::collections::VecDeque<Vec<u8>>,
}

impl Chain {
    /// Appends one receive, cut into buffers of at most `buf_size`.
    fn push(&mut self, bytes: &[u8], buf_size: usize) {
        self.bufs.extend(bytes.chunks(buf_size).map(<[u8]>::to_vec));
    }

    fn chunks(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs.iter().map(Vec::as_slice)
    }

    /// The first `n` bytes as one slice (what `Input::peek` gives).
    fn peek(&self, n: usize) -> Vec<u8> {
        self.chunks().flatten().take(n).copied().collect()
    }

    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.bufs.front_mut() else { panic!("consume past the end") };
            if n < front.len() {
                front.drain(..n);
                return;
            }
            n -= front.len();
            self.bufs.pop_front();
        }
    }
}

/// What parsing a stream gave: every request's arguments, then how it
/// ended.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    requests: Vec<Vec<Vec<u8>>>,
    end: Result<(), ProtocolError>,
}

/// Feeds `stream` to a parser in receives cut at `cuts`, each held in
/// buffers of `buf_size`, parsing after every receive like `on_data`.
fn parse(stream: &[u8], cuts: &[usize], buf_size: usize, limits: Limits) -> Parsed {
    let mut cuts: Vec<usize> = cuts.iter().map(|&c| c % (stream.len() + 1)).collect();
    cuts.push(stream.len());
    cuts.sort_unstable();
    let mut parser = Parser::new(limits);
    let mut chain = Chain::default();
    let mut requests = Vec::new();
    let mut at = 0;
    for cut in cuts {
        chain.push(&stream[at..cut], buf_size);
        at = cut;
        loop {
            match parser.scan(chain.chunks()) {
                Ok(Some(len)) => {
                    let request = chain.peek(len);
                    assert_eq!(request.len(), len, "scan reported more than was there");
                    let args: Vec<Vec<u8>> =
                        parser.args(&request).iter().map(<[u8]>::to_vec).collect();
                    requests.push(args);
                    chain.consume(len);
                }
                Ok(None) => break,
                Err(e) => return Parsed { requests, end: Err(e) },
            }
        }
    }
    Parsed { requests, end: Ok(()) }
}

/// A request and its encoding, multibulk or inline.
fn request() -> impl Strategy<Value = (Vec<Vec<u8>>, Vec<u8>)> {
    let multibulk = prop::collection::vec(prop::collection::vec(any::<u8>(), 0..40), 1..6)
        .prop_map(|args| {
            let mut bytes = format!("*{}\r\n", args.len()).into_bytes();
            for a in &args {
                bytes.extend(format!("${}\r\n", a.len()).into_bytes());
                bytes.extend(a);
                bytes.extend(b"\r\n");
            }
            (args, bytes)
        });
    let inline = (prop::collection::vec("[a-zA-Z0-9_:$+-]{1,12}", 1..6), any::<bool>(), " {1,3}")
        .prop_map(|(words, crlf, sep)| {
            let mut line = words.join(&sep).into_bytes();
            line.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            (words.into_iter().map(String::into_bytes).collect(), line)
        });
    prop_oneof![3 => multibulk, 1 => inline]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_split_parses_to_the_same_requests(
        reqs in prop::collection::vec(request(), 1..20),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
        buf_size in 1usize..64,
    ) {
        let expected: Vec<Vec<Vec<u8>>> = reqs.iter().map(|(args, _)| args.clone()).collect();
        let stream: Vec<u8> = reqs.iter().flat_map(|(_, bytes)| bytes.clone()).collect();
        let got = parse(&stream, &cuts, buf_size, Limits::default());
        prop_assert_eq!(got, Parsed { requests: expected, end: Ok(()) });
    }

    #[test]
    fn byte_by_byte_parses_to_the_same_requests(
        reqs in prop::collection::vec(request(), 1..8),
    ) {
        let expected: Vec<Vec<Vec<u8>>> = reqs.iter().map(|(args, _)| args.clone()).collect();
        let stream: Vec<u8> = reqs.iter().flat_map(|(_, bytes)| bytes.clone()).collect();
        let cuts: Vec<usize> = (0..stream.len()).collect();
        let got = parse(&stream, &cuts, 1, Limits::default());
        prop_assert_eq!(got, Parsed { requests: expected, end: Ok(()) });
    }

    #[test]
    fn random_bytes_never_panic_and_ignore_the_split(
        // Mostly protocol-ish bytes, so headers and lengths get exercised.
        stream in prop::collection::vec(
            prop_oneof![
                4 => prop::sample::select(b"*$\r\n0123456789-abc ".to_vec()),
                1 => any::<u8>(),
            ],
            0..600,
        ),
        cuts in prop::collection::vec(any::<usize>(), 0..20),
        buf_size in 1usize..32,
    ) {
        let limits = Limits { max_args: 8, max_bulk_len: 64, max_inline_len: 100, max_request_len: 200 };
        let whole = parse(&stream, &[], stream.len().max(1), limits);
        let split = parse(&stream, &cuts, buf_size, limits);
        prop_assert_eq!(split, whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic(stream in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = parse(&stream, &[7, 100, 999], 16, Limits::default());
    }
}
