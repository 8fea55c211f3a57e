//! An incremental RESP2 request parser over a chain of buffers.
//!
//! Requests come in the two forms Redis accepts:
//!
//! * **multibulk**: an array of bulk strings,
//!   `*<n>\r\n` then `n` times `$<len>\r\n<len bytes>\r\n`;
//! * **inline**: one line of arguments separated by whitespace, ended by
//!   `\n` (a `\r` before it is whitespace too), as typed into `telnet`.
//!   Quotes are not interpreted: `SET k "a b"` has four arguments.
//!
//! # How it reads a chain
//!
//! A connection's input is a chain of fixed-size buffers, and a request may
//! be cut anywhere, even inside `\r\n`. [`Parser::scan`] walks the chain's
//! chunks ([`pollring::Input::chunks`]) as a state machine and, once the
//! whole request is there, reports its length and the byte range of every
//! argument within it. It never copies: a bulk payload is skipped by
//! arithmetic, and only header bytes (`*3`, `$5`) are looked at. When the
//! request is incomplete it keeps its place, so the next call resumes where
//! this one stopped: a 60 MiB value arriving over thousands of receives is
//! scanned once, not once per receive.
//!
//! The caller then takes the request as one slice — borrowed from its
//! buffer when it lies in one, copied once when it spans buffers
//! ([`pollring::Input::range`]) — and reads the arguments from it through
//! [`Args`]. The [`Resp`](super::Resp) handler shows the whole loop.
//!
//! # Bounds
//!
//! [`Limits`] caps the argument count, each bulk string, an inline line and
//! the whole request; a request over a cap is refused as soon as its header
//! says so, before its payload is buffered. Every malformed input is a
//! [`ProtocolError`], never a panic; after one the stream is out of sync, so
//! the server answers `-ERR Protocol error: ...` and closes, as Redis does.

use std::fmt;
use std::ops::Range;

/// Caps on what one request may claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most arguments in one request (multibulk count or inline words).
    pub max_args: usize,
    /// Longest bulk string (Redis: `proto-max-bulk-len`, 512 MiB).
    pub max_bulk_len: usize,
    /// Longest inline request line (Redis: 64 KiB).
    pub max_inline_len: usize,
    /// Longest request, headers and payloads together.
    pub max_request_len: usize,
}

impl Default for Limits {
    /// 1 Mi arguments, 64 MiB per bulk string and per request, 64 KiB
    /// inline lines.
    fn default() -> Self {
        Limits {
            max_args: 1024 * 1024,
            max_bulk_len: 64 * 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_request_len: 64 * 1024 * 1024,
        }
    }
}

/// Why a request cannot be parsed. The stream is out of sync after one of
/// these; the connection should be answered with
/// `-ERR Protocol error: <Display>` and closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// `*<n>` is not a number, is negative past `-1`, or exceeds
    /// [`Limits::max_args`].
    InvalidMultibulkLength,
    /// `$<len>` is not a number, is negative, or exceeds
    /// [`Limits::max_bulk_len`].
    InvalidBulkLength,
    /// An array element does not start with `$`; holds the byte found.
    ExpectedDollar(u8),
    /// A bulk string's payload is not followed by `\r\n`.
    ExpectedCrlf,
    /// An inline line longer than [`Limits::max_inline_len`].
    TooBigInlineRequest,
    /// An inline line with more words than [`Limits::max_args`].
    TooManyInlineArgs,
    /// A request longer than [`Limits::max_request_len`].
    TooBigRequest,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::InvalidMultibulkLength => f.write_str("invalid multibulk length"),
            ProtocolError::InvalidBulkLength => f.write_str("invalid bulk length"),
            ProtocolError::ExpectedDollar(b) if b.is_ascii_graphic() => {
                write!(f, "expected '$', got '{}'", char::from(*b))
            }
            ProtocolError::ExpectedDollar(b) => write!(f, "expected '$', got byte 0x{b:02x}"),
            ProtocolError::ExpectedCrlf => f.write_str("expected CRLF after bulk data"),
            ProtocolError::TooBigInlineRequest => f.write_str("too big inline request"),
            ProtocolError::TooManyInlineArgs => f.write_str("too many arguments in inline request"),
            ProtocolError::TooBigRequest => f.write_str("request exceeds the maximum length"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Longest `*<n>` / `$<len>` header line we look at (`-` and 19 digits
/// cover every `i64`); a longer one is an invalid length, as in Redis.
const MAX_HEADER: usize = 20;

/// Which header is being read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Header {
    /// `*<n>`: the argument count.
    Array,
    /// `$<len>`: one bulk string's length.
    Bulk,
}

/// Where the scan of the current request stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the request's first byte.
    Start,
    /// In a header line after its `*` or `$`; `cr` once its `\r` was seen.
    Header { kind: Header, cr: bool },
    /// Before an array element's `$`.
    Dollar,
    /// In the bulk string ending at `end`, then its `\r\n`.
    Payload { end: usize },
    /// In an inline line; `word` is where the current word began.
    Inline { word: Option<usize> },
}

/// An incremental RESP2 request parser: one per connection.
///
/// # Examples
/// ```
/// use pollring_examples::resp::parser::{Limits, Parser};
///
/// let mut parser = Parser::new(Limits::default());
/// let (a, b): (&[u8], &[u8]) = (b"*2\r\n$4\r\nEC", b"HO\r\n$2\r\nhi\r\n");
/// assert_eq!(parser.scan([a]), Ok(None)); // partial: need more
/// let len = parser.scan([a, b]).unwrap().expect("complete");
/// let request = [a, b].concat();
/// let args: Vec<&[u8]> = parser.args(&request[..len]).iter().collect();
/// assert_eq!(args, [&b"ECHO"[..], b"hi"]);
/// ```
#[derive(Clone, Debug)]
pub struct Parser {
    limits: Limits,
    state: State,
    /// Offset, within the current request, of the next byte to examine.
    pos: usize,
    /// Array elements still to come.
    remaining: usize,
    /// The header line's bytes after `*` / `$`.
    header: [u8; MAX_HEADER],
    header_len: usize,
    /// Argument ranges found so far, relative to the request's start.
    args: Vec<Range<usize>>,
    /// The last scan returned a complete request: start afresh next time.
    done: bool,
}

impl Parser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            state: State::Start,
            pos: 0,
            remaining: 0,
            header: [0; MAX_HEADER],
            header_len: 0,
            args: Vec::new(),
            done: false,
        }
    }

    /// The limits this parser enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Scans the unconsumed input, given as its chunks in order, for one
    /// request.
    ///
    /// Returns `Ok(Some(len))` when the first `len` bytes are a complete
    /// request (read its arguments with [`Parser::args`], then consume the
    /// `len` bytes before scanning again), `Ok(None)` when more input is
    /// needed (call again with the same bytes and more behind them). A
    /// request with no arguments (an empty inline line, `*0`, `*-1`) is
    /// complete too, and is to be skipped.
    ///
    /// # Errors
    /// A [`ProtocolError`] when the input cannot be a request; the parser
    /// must not be used after one.
    pub fn scan<'a>(
        &mut self,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Option<usize>, ProtocolError> {
        if self.done {
            self.reset();
        }
        let mut chunks = chunks.into_iter();
        let Some(first) = chunks.next() else { return Ok(None) };
        if self.pos == 0 && self.state == State::Start {
            if let Some(len) = self.scan_whole(first) {
                self.done = true;
                return Ok(Some(len));
            }
            self.args.clear();
        }
        let mut base = 0;
        for chunk in std::iter::once(first).chain(chunks) {
            let end = base + chunk.len();
            while self.pos < end {
                if let Some(len) = self.step(&chunk[self.pos - base..])? {
                    self.done = true;
                    return Ok(Some(len));
                }
            }
            base = end;
        }
        Ok(None)
    }

    /// The fast path: a whole, well-formed multibulk request at the front
    /// of `bytes` (the input's first buffer: the common case) is read in
    /// one pass, headers by `position` rather than byte by byte through the
    /// state machine. `None` for anything else (incomplete, inline, empty,
    /// malformed, over a limit): the state machine then reads it from its
    /// first byte, with its own errors and its place kept across receives.
    fn scan_whole(&mut self, bytes: &[u8]) -> Option<usize> {
        let limits = self.limits;
        let (count, mut pos) = header_line(bytes, b'*', 0)?;
        let count = usize::try_from(count).ok().filter(|&n| n > 0 && n <= limits.max_args)?;
        for _ in 0..count {
            let (len, start) = header_line(bytes, b'$', pos)?;
            let len = usize::try_from(len).ok().filter(|&n| n <= limits.max_bulk_len)?;
            let end = start.checked_add(len)?;
            if bytes.get(end..end + 2)? != b"\r\n" || end + 2 > limits.max_request_len {
                return None;
            }
            self.args.push(start..end);
            pos = end + 2;
        }
        Some(pos)
    }

    /// The arguments of the request just completed by [`Parser::scan`],
    /// read from `request`, the request's bytes (at least the `len`
    /// reported).
    pub fn args<'r>(&'r self, request: &'r [u8]) -> Args<'r> {
        Args { request, ranges: &self.args }
    }

    fn reset(&mut self) {
        self.state = State::Start;
        self.pos = 0;
        self.remaining = 0;
        self.header_len = 0;
        self.args.clear();
        self.done = false;
    }

    /// Advances over a prefix of `rest` (the input from `self.pos` on, up to
    /// the end of one chunk; never empty). Returns the request's length
    /// when it completes.
    fn step(&mut self, rest: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let limits = self.limits;
        match self.state {
            State::Payload { end } => {
                if self.pos < end {
                    // Skip payload without looking at it.
                    self.pos += rest.len().min(end - self.pos);
                    return Ok(None);
                }
                let expected = if self.pos == end { b'\r' } else { b'\n' };
                if rest[0] != expected {
                    return Err(ProtocolError::ExpectedCrlf);
                }
                self.pos += 1;
                if expected == b'\n' {
                    self.remaining -= 1;
                    if self.remaining == 0 {
                        return Ok(Some(self.pos));
                    }
                    self.state = State::Dollar;
                }
                Ok(None)
            }
            State::Inline { word } => {
                // Word boundaries are looked at byte by byte; inline lines are
                // short (bounded by `max_inline_len`).
                let mut word = word;
                for &b in rest {
                    if self.pos >= limits.max_inline_len {
                        return Err(ProtocolError::TooBigInlineRequest);
                    }
                    let at = self.pos;
                    self.pos += 1;
                    if is_space(b) {
                        if let Some(start) = word.take() {
                            self.push_inline_arg(start..at)?;
                        }
                        if b == b'\n' {
                            return Ok(Some(self.pos));
                        }
                    } else if word.is_none() {
                        word = Some(at);
                    }
                }
                self.state = State::Inline { word };
                Ok(None)
            }
            State::Start => {
                match rest[0] {
                    b'*' => {
                        self.pos += 1;
                        self.state = State::Header { kind: Header::Array, cr: false };
                    }
                    _ => self.state = State::Inline { word: None },
                }
                Ok(None)
            }
            State::Dollar => {
                if rest[0] != b'$' {
                    return Err(ProtocolError::ExpectedDollar(rest[0]));
                }
                self.pos += 1;
                self.check_request_len(self.pos)?;
                self.state = State::Header { kind: Header::Bulk, cr: false };
                Ok(None)
            }
            State::Header { kind, cr } => {
                let invalid = match kind {
                    Header::Array => ProtocolError::InvalidMultibulkLength,
                    Header::Bulk => ProtocolError::InvalidBulkLength,
                };
                let b = rest[0];
                self.pos += 1;
                if cr {
                    if b != b'\n' {
                        return Err(invalid);
                    }
                    return self.header_done(kind);
                }
                if b == b'\r' {
                    self.state = State::Header { kind, cr: true };
                } else if self.header_len < MAX_HEADER {
                    self.header[self.header_len] = b;
                    self.header_len += 1;
                } else {
                    return Err(invalid);
                }
                Ok(None)
            }
        }
    }

    /// A complete `*<n>\r\n` or `$<len>\r\n` line was read.
    fn header_done(&mut self, kind: Header) -> Result<Option<usize>, ProtocolError> {
        let value = parse_i64(&self.header[..self.header_len]);
        self.header_len = 0;
        match kind {
            Header::Array => {
                let n = match value {
                    // `*0` and `*-1` are empty requests, skipped (as Redis does).
                    Some(n) if n <= 0 => return Ok(Some(self.pos)),
                    Some(n) => usize::try_from(n).ok().filter(|&n| n <= self.limits.max_args),
                    None => None,
                };
                let n = n.ok_or(ProtocolError::InvalidMultibulkLength)?;
                self.remaining = n;
                self.args.reserve(n.min(1024));
                self.state = State::Dollar;
            }
            Header::Bulk => {
                let len = value
                    .and_then(|n| usize::try_from(n).ok())
                    .filter(|&n| n <= self.limits.max_bulk_len)
                    .ok_or(ProtocolError::InvalidBulkLength)?;
                let end = self.pos + len;
                self.check_request_len(end + 2)?;
                self.args.push(self.pos..end);
                self.state = State::Payload { end };
            }
        }
        Ok(None)
    }

    fn push_inline_arg(&mut self, range: Range<usize>) -> Result<(), ProtocolError> {
        if self.args.len() >= self.limits.max_args {
            return Err(ProtocolError::TooManyInlineArgs);
        }
        self.args.push(range);
        Ok(())
    }

    fn check_request_len(&self, len: usize) -> Result<(), ProtocolError> {
        if len > self.limits.max_request_len {
            return Err(ProtocolError::TooBigRequest);
        }
        Ok(())
    }
}

/// The `<mark><number>\r\n` line at `at`: the number and where the next
/// line starts. `None` if it is not all there or not a number.
fn header_line(bytes: &[u8], mark: u8, at: usize) -> Option<(i64, usize)> {
    if *bytes.get(at)? != mark {
        return None;
    }
    let digits = bytes.get(at + 1..)?;
    let cr = digits.iter().take(MAX_HEADER + 1).position(|&b| b == b'\r')?;
    if *digits.get(cr + 1)? != b'\n' {
        return None;
    }
    Some((parse_i64(&digits[..cr])?, at + 1 + cr + 2))
}

/// Whitespace between inline words (C's `isspace`, as Redis uses).
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Parses a decimal `i64` the way Redis does (`string2ll`): an optional `-`,
/// then digits with no leading zero (except `0` itself), nothing else; no
/// `+`, no spaces, no overflow.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] if !negative => return Some(0),
        [b'0', ..] => return None,
        _ => {}
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut n: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_sub(i64::from(d - b'0'))?;
    }
    if negative {
        Some(n)
    } else {
        n.checked_neg()
    }
}

/// The arguments of one request, borrowed from its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Args<'r> {
    request: &'r [u8],
    ranges: &'r [Range<usize>],
}

impl<'r> Args<'r> {
    /// How many arguments (the command name included).
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// Whether there are none (an empty request, to be skipped).
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&'r [u8]> {
        self.ranges.get(i).and_then(|r| self.request.get(r.clone()))
    }

    /// Every argument in order.
    pub fn iter(&self) -> impl Iterator<Item = &'r [u8]> + Clone + 'r {
        let args = *self;
        (0..args.len()).filter_map(move |i| args.get(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses every request in `input`, delivered in one chunk.
    fn parse_all(input: &[u8]) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        parse_all_with(Limits::default(), input)
    }

    fn parse_all_with(
        limits: Limits,
        mut input: &[u8],
    ) -> Result<Vec<Vec<Vec<u8>>>, ProtocolError> {
        let mut parser = Parser::new(limits);
        let mut out = Vec::new();
        while let Some(len) = parser.scan([input])? {
            out.push(parser.args(&input[..len]).iter().map(<[u8]>::to_vec).collect());
            input = &input[len..];
        }
        Ok(out)
    }

    fn words(ws: &[&str]) -> Vec<Vec<u8>> {
        ws.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    #[test]
    fn multibulk_request() {
        let got = parse_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nv\r\n\0x\r\n").unwrap();
        assert_eq!(got, vec![vec![b"SET".to_vec(), b"k".to_vec(), b"v\r\n\0x".to_vec()]]);
    }

    #[test]
    fn empty_bulk_and_binary_payload() {
        let got = parse_all(b"*2\r\n$0\r\n\r\n$2\r\n\xff\x00\r\n").unwrap();
        assert_eq!(got, vec![vec![vec![], vec![0xff, 0]]]);
    }

    #[test]
    fn inline_requests() {
        let got = parse_all(b"PING\r\nset  k\tv\nGET k \r\n").unwrap();
        assert_eq!(got, vec![words(&["PING"]), words(&["set", "k", "v"]), words(&["GET", "k"])]);
    }

    #[test]
    fn empty_requests_are_complete_and_empty() {
        let got = parse_all(b"\r\n*0\r\n*-1\r\n \n").unwrap();
        assert_eq!(got, vec![Vec::<Vec<u8>>::new(); 4]);
    }

    #[test]
    fn partial_requests_need_more() {
        let full = b"*2\r\n$4\r\nECHO\r\n$3\r\nabc\r\n";
        for cut in 0..full.len() {
            let mut parser = Parser::new(Limits::default());
            assert_eq!(parser.scan([&full[..cut]]), Ok(None), "cut at {cut}");
            // Resuming with the same bytes plus the rest completes it.
            assert_eq!(parser.scan([&full[..cut], &full[cut..]]), Ok(Some(full.len())));
        }
        let mut parser = Parser::new(Limits::default());
        assert_eq!(parser.scan([&b"PING"[..]]), Ok(None));
    }

    #[test]
    fn pipelined_requests_one_at_a_time() {
        let input = b"*1\r\n$4\r\nPING\r\nPING\r\n*1\r\n$4\r\nPING\r\n";
        let got = parse_all(input).unwrap();
        assert_eq!(got, vec![words(&["PING"]); 3]);
    }

    #[test]
    fn malformed_headers_are_errors() {
        use ProtocolError::*;
        let cases: &[(&[u8], ProtocolError)] = &[
            (b"*x\r\n", InvalidMultibulkLength),
            (b"*+1\r\n", InvalidMultibulkLength),
            (b"*01\r\n", InvalidMultibulkLength),
            (b"*1\rx", InvalidMultibulkLength),
            (b"*99999999999999999999999\r\n", InvalidMultibulkLength),
            (b"*2000000\r\n", InvalidMultibulkLength),
            (b"*1\r\n$-1\r\n", InvalidBulkLength),
            (b"*1\r\n$abc\r\n", InvalidBulkLength),
            (b"*1\r\n$999999999999\r\n", InvalidBulkLength),
            (b"*1\r\n:1\r\n", ExpectedDollar(b':')),
            (b"*1\r\n$1\r\nab\r\n", ExpectedCrlf),
            (b"*1\r\n$1\r\na\rX", ExpectedCrlf),
        ];
        for (input, want) in cases {
            assert_eq!(parse_all(input), Err(*want), "{}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn limits_refuse_before_the_payload_arrives() {
        let limits =
            Limits { max_args: 2, max_bulk_len: 10, max_inline_len: 8, max_request_len: 30 };
        assert_eq!(parse_all_with(limits, b"*3\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(parse_all_with(limits, b"*1\r\n$11\r\n"), Err(ProtocolError::InvalidBulkLength));
        assert_eq!(
            parse_all_with(limits, b"*2\r\n$10\r\n0123456789\r\n$10\r\n"),
            Err(ProtocolError::TooBigRequest)
        );
        assert_eq!(parse_all_with(limits, b"123456789"), Err(ProtocolError::TooBigInlineRequest));
        assert_eq!(parse_all_with(limits, b"a b c\n"), Err(ProtocolError::TooManyInlineArgs));
        assert!(parse_all_with(limits, b"1234567\n").is_ok());
    }

    #[test]
    fn error_messages_match_redis() {
        assert_eq!(ProtocolError::InvalidBulkLength.to_string(), "invalid bulk length");
        assert_eq!(ProtocolError::ExpectedDollar(b'x').to_string(), "expected '$', got 'x'");
        assert_eq!(ProtocolError::ExpectedDollar(b'\n').to_string(), "expected '$', got byte 0x0a");
    }

    #[test]
    fn integers_parse_like_string2ll() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in
            [&b""[..], b"-", b"-0", b"+1", b"01", b" 1", b"1 ", b"1a", b"9223372036854775808"]
        {
            assert_eq!(parse_i64(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
