//! Requests one after another from a connection's input:
//! [`RequestReader`].

use super::{BodyKind, ChunkedDecoder, Error, HeadScanner, Parser, Request, Source};
#[derive(Debug, Clone)]
enum ReadState {
    /// Waiting for a head.
    Head,
    /// The head (this many bytes) was returned and is still in the input;
    /// then the body.
    Body { head_len: usize, body: BodyKind },
    /// `Content-Length` bytes left.
    Length(u64),
    /// Decoding a chunked body.
    Chunked(ChunkedDecoder),
}

/// What [`RequestReader::advance`] found.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A request head. If its [`Request::body`] is [`BodyKind::None`] the
    /// request is complete (its head is consumed by the next call);
    /// otherwise keep calling `advance` until [`Progress::BodyDone`].
    Head(Request<'a>),
    /// The body of the last head has been passed to the sink and consumed.
    BodyDone,
    /// The input ends inside a head or body; call again when more arrived.
    NeedMore,
}

/// Reads requests one after another from a connection's [`Source`]: a
/// per-connection state machine over [`HeadScanner`], [`Parser`] and
/// [`ChunkedDecoder`].
///
/// Each request yields [`Progress::Head`] (borrowing the input, which stays
/// unconsumed until the next call) and, if it has a body, then
/// [`Progress::BodyDone`], with the body passed to the sink on the way.
/// Body bytes are consumed as they are read, so a large upload does not
/// pile up in the input. A request without a body (most of them) is one
/// step: the next call consumes its head and goes on to the next.
#[derive(Debug, Clone)]
pub struct RequestReader {
    scanner: HeadScanner,
    /// The head at the front did not parse whole in the first buffer: it is
    /// being found by the scanner (across buffers, or as it drips in).
    scanning: bool,
    state: ReadState,
}

impl Default for RequestReader {
    fn default() -> Self {
        RequestReader { scanner: HeadScanner::default(), scanning: false, state: ReadState::Head }
    }
}

impl RequestReader {
    /// Whether a request is partly read (a head without its body, or part
    /// of a body consumed). Bytes of a head still arriving do not count.
    pub fn in_message(&self) -> bool {
        !matches!(self.state, ReadState::Head)
    }

    /// Reads the next step from `s`. Body data goes to `sink` (possibly in
    /// several calls, in order).
    ///
    /// # Errors
    /// Any [`Error`]. The stream position is then unspecified: answer with
    /// [`Error::status`] and close.
    pub fn advance<'r, S: Source + ?Sized>(
        &mut self,
        parser: &'r mut Parser,
        s: &'r mut S,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<Progress<'r>, Error> {
        loop {
            match &mut self.state {
                ReadState::Head => return self.head(parser, s),
                ReadState::Body { head_len, body } => {
                    s.consume(*head_len);
                    self.state = match *body {
                        // Complete at its head: on to the next.
                        BodyKind::None => ReadState::Head,
                        BodyKind::Length(n) => ReadState::Length(n),
                        BodyKind::Chunked => {
                            ReadState::Chunked(ChunkedDecoder::new(parser.limits()))
                        }
                    };
                }
                ReadState::Length(left) => {
                    while *left > 0 {
                        let run = s.first();
                        if run.is_empty() {
                            return Ok(Progress::NeedMore);
                        }
                        let n = (*left).min(run.len() as u64) as usize;
                        sink(&run[..n]);
                        s.consume(n);
                        *left -= n as u64;
                    }
                    self.state = ReadState::Head;
                    return Ok(Progress::BodyDone);
                }
                ReadState::Chunked(decoder) => {
                    while !decoder.is_done() {
                        let run = s.first();
                        if run.is_empty() {
                            return Ok(Progress::NeedMore);
                        }
                        let n = decoder.decode(run, &mut sink)?;
                        s.consume(n);
                    }
                    self.state = ReadState::Head;
                    return Ok(Progress::BodyDone);
                }
            }
        }
    }

    /// The next head. The fast path parses it in place in the input's first
    /// buffer, in one pass. A head cut short there (it spans buffers, or is
    /// still arriving) is left to the scanner, which remembers how far it
    /// got, and parsed once it is whole: a head arriving byte by byte is
    /// scanned once, not once per byte.
    fn head<'r, S: Source + ?Sized>(
        &mut self,
        parser: &'r mut Parser,
        s: &'r mut S,
    ) -> Result<Progress<'r>, Error> {
        if !self.scanning {
            let first = s.first();
            if first.is_empty() {
                // Nothing of the next head yet: it gets the fast path when
                // it comes.
                return Ok(Progress::NeedMore);
            }
            if let Some(n) = parser.parse_prefix(first)? {
                let req = parser.request(&s.first()[..n]);
                self.state = ReadState::Body { head_len: n, body: req.body };
                return Ok(Progress::Head(req));
            }
            self.scanning = true;
        }
        let Some(n) = self.scanner.scan(s, parser.limits().max_head)? else {
            return Ok(Progress::NeedMore);
        };
        self.scanner.reset();
        self.scanning = false;
        let head = s.range(0..n).ok_or(Error::Malformed("head vanished"))?;
        if parser.parse_prefix(head)? != Some(n) {
            return Err(Error::Malformed("bytes after the end of the head"));
        }
        let req = parser.request(head);
        self.state = ReadState::Body { head_len: n, body: req.body };
        Ok(Progress::Head(req))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{one, read_all, valid_request, Owned};
    use super::super::Limits;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partial_input_needs_more() {
        let full = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for cut in 0..full.len() {
            let (reqs, err) = read_all(&[&full[..cut]], 4, Limits::default());
            assert!(reqs.is_empty() && err.is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn content_length_body() {
        let r = one(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello").unwrap();
        assert_eq!(r.body, b"hello");
        let r = one(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc").unwrap();
        assert_eq!(r.body, b"abc");
        let r =
            one(b"POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nab")
                .unwrap();
        assert_eq!(r.body, b"ab");
    }

    #[test]
    fn pipelined_requests_in_order() {
        let input = b"GET /a HTTP/1.1\r\nHost: a\r\n\r\n\
                      POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx\
                      POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1\r\ny\r\n0\r\n\r\n\
                      GET /d HTTP/1.0\r\n\r\n";
        let (reqs, err) = read_all(&[input], 7, Limits::default());
        assert_eq!(err, None);
        let targets: Vec<_> = reqs.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(targets, ["/a", "/b", "/c", "/d"]);
        assert_eq!(reqs[1].body, b"x");
        assert_eq!(reqs[2].body, b"y");
    }

    #[test]
    fn limits() {
        let limits = Limits { max_head: 100, max_headers: 2, max_body: 10 };
        let run = |input: &[u8]| read_all(&[input], 16, limits).1;
        assert_eq!(run(&[b'a'; 101]), Some(Error::HeadTooLarge));
        assert_eq!(
            run(&[b"GET /".as_slice(), &[b'a'; 100], b" HTTP/1.1\r\n\r\n"].concat()),
            Some(Error::HeadTooLarge)
        );
        assert_eq!(
            run(b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n"),
            Some(Error::TooManyHeaders)
        );
        assert_eq!(run(b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\n\r\n"), None);
        assert_eq!(
            run(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n"),
            Some(Error::BodyTooLarge)
        );
        assert_eq!(
            run(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            Some(Error::BodyTooLarge)
        );
        assert_eq!(
            run(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789"),
            None
        );
        let chunked = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            run(&[&chunked[..], b"5\r\n01234\r\n6\r\n"].concat()),
            Some(Error::BodyTooLarge)
        );
        assert_eq!(
            run(&[&chunked[..], b"fffffffffffffffff\r\n"].concat()),
            Some(Error::BodyTooLarge)
        );
        assert_eq!(run(&[&chunked[..], b"5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n"].concat()), None);
        let long_trailer = [&chunked[..], b"0\r\nX: ", &[b'a'; 100], b"\r\n\r\n"].concat();
        assert_eq!(run(&long_trailer), Some(Error::HeadTooLarge));
    }

    #[test]
    fn head_is_borrowed_from_a_slice_stream() {
        let mut input: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
        let (mut parser, mut reader) = (Parser::default(), RequestReader::default());
        let start = input.as_ptr();
        match reader.advance(&mut parser, &mut input, |_| {}).unwrap() {
            Progress::Head(req) => assert_eq!(req.target.as_ptr(), start.wrapping_add(4)),
            other => panic!("{other:?}"),
        }
        assert!(reader.in_message(), "the head stays in the input until the next call");
        // A bodiless request is complete at its head: the next call consumes
        // it and waits for the rest of the next one.
        assert!(matches!(reader.advance(&mut parser, &mut input, |_| {}), Ok(Progress::NeedMore)));
        assert_eq!(input, b"rest");
        assert!(!reader.in_message());
    }

    #[test]
    fn a_keep_alive_request_after_the_first_is_parsed_in_place() {
        let (mut parser, mut reader) = (Parser::default(), RequestReader::default());
        let one: &[u8] = b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n";
        let mut input = one;
        assert!(matches!(reader.advance(&mut parser, &mut input, |_| {}), Ok(Progress::Head(_))));
        // The server asks again: the head is consumed and the input is
        // empty, nothing to scan yet.
        assert!(matches!(reader.advance(&mut parser, &mut input, |_| {}), Ok(Progress::NeedMore)));
        assert!(!reader.scanning, "an empty input must not send the next head to the scanner");
        let mut input: &[u8] = b"GET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
        match reader.advance(&mut parser, &mut input, |_| {}) {
            Ok(Progress::Head(req)) => assert_eq!(req.target, "/2"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_version_cut_before_its_line_end_waits_for_it() {
        let limits = Limits::default();
        let later: [&[u8]; 2] = [b"GET / HTTP/1.2", b"\r\nHost: a\r\n\r\n"];
        let (reqs, err) = read_all(&later, 1024, limits);
        assert_eq!(err, None);
        assert_eq!(reqs.len(), 1, "HTTP/1.2 is served as 1.1 however it arrives");
        let two: [&[u8]; 2] = [b"GET / HTTP/2", b".0\r\n\r\n"];
        assert_eq!(read_all(&two, 1024, limits).1, Some(Error::UnsupportedVersion));
        let bad: [&[u8]; 2] = [b"GET / XTTP/1", b".1\r\n\r\n"];
        assert_eq!(read_all(&bad, 1024, limits).1.map(|e| e.status()), Some(400));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// However the bytes of a pipeline of requests are split into
        /// arrivals, and whatever the buffer size, the same requests come
        /// out, in order.
        #[test]
        fn any_split_parses_the_same(
            reqs in prop::collection::vec(valid_request(), 1..5),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            buf_size in 1..64usize,
        ) {
            let input: Vec<u8> = reqs.iter().flat_map(|(bytes, _)| bytes.iter().copied()).collect();
            let expected: Vec<Owned> = reqs.into_iter().map(|(_, owned)| owned).collect();
            let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(input.len() + 1)).collect();
            cuts.sort_unstable();
            let mut pieces = Vec::new();
            let mut last = 0;
            for cut in cuts.into_iter().chain([input.len()]) {
                pieces.push(&input[last..cut]);
                last = cut;
            }
            let (whole, err) = read_all(&[&input], 16 * 1024, Limits::default());
            prop_assert_eq!(err, None);
            prop_assert_eq!(&whole, &expected);
            let (split, err) = read_all(&pieces, buf_size, Limits::default());
            prop_assert_eq!(err, None);
            prop_assert_eq!(&split, &expected);
        }

        /// Random bytes, in random arrivals, never panic the reader.
        #[test]
        fn random_bytes_never_panic(
            data in prop::collection::vec(any::<u8>(), 0..600),
            piece in 1..50usize,
            buf_size in 1..32usize,
        ) {
            let pieces: Vec<&[u8]> = data.chunks(piece).collect();
            let _ = read_all(&pieces, buf_size, Limits { max_head: 256, max_headers: 8, max_body: 256 });
        }

        /// Mutating a byte of a valid request never panics.
        #[test]
        fn mutated_requests_never_panic(
            (bytes, _) in valid_request(),
            at in any::<prop::sample::Index>(),
            with in any::<u8>(),
        ) {
            let mut bytes = bytes;
            let i = at.index(bytes.len());
            bytes[i] = with;
            let _ = read_all(&[&bytes], 8, Limits::default());
        }
    }
}
