//! An incremental HTTP/1.1 request parser that reads from a chain of
//! buffers.
//!
//! The pieces, from the bottom up:
//!
//! * [`HeadScanner`] finds where a request head (request line + header
//!   fields + blank line) ends, across buffer boundaries, remembering how far
//!   it got so a head arriving byte by byte is scanned once, not once per
//!   byte.
//! * [`Parser::parse_head`] parses a complete head, held as one slice: the
//!   request line, the header fields (names compared case-insensitively), the
//!   body framing (`Content-Length` / `Transfer-Encoding: chunked`) and the
//!   keep-alive rules of HTTP/1.0 and 1.1. It rejects what request smuggling
//!   is built from: conflicting `Content-Length`s, `Content-Length` together
//!   with `Transfer-Encoding`, `chunked` that is not the final coding,
//!   obsolete line folding, whitespace before the colon.
//! * [`ChunkedDecoder`] decodes a chunked body incrementally (chunk
//!   extensions and trailer fields are accepted and skipped).
//! * [`RequestReader`] ties them together over a [`Stream`] — a
//!   [`pollring::Cx`], or any other chain of bytes — and yields
//!   [`Progress::Head`] then [`Progress::BodyDone`] for every request, in
//!   order, or [`Progress::NeedMore`].
//!
//! A head that lies in one buffer is parsed where it is (borrowed); one that
//! spans buffers is copied once ([`Stream::range`]). Every size is bounded by
//! [`Limits`], and each violation maps to the status to answer with
//! ([`Error::status`]).
//!
//! # Examples
//! Parsing from a plain byte slice (a [`Stream`] of one buffer):
//! ```
//! use pollring_examples::http::parser::{Parser, Progress, RequestReader};
//!
//! let mut input: &[u8] = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi";
//! let (mut parser, mut reader) = (Parser::default(), RequestReader::default());
//! let mut body = Vec::new();
//! match reader.advance(&mut parser, &mut input, |d| body.extend_from_slice(d))? {
//!     Progress::Head(req) => assert_eq!((req.method, req.path()), ("POST", "/echo")),
//!     other => panic!("{other:?}"),
//! }
//! assert!(matches!(
//!     reader.advance(&mut parser, &mut input, |d| body.extend_from_slice(d))?,
//!     Progress::BodyDone
//! ));
//! assert_eq!(body, b"hi");
//! # Ok::<(), pollring_examples::http::parser::Error>(())
//! ```

use std::fmt;
use std::ops::Range;

use pollring::Cx;

/// Size limits. Exceeding one is an [`Error`] (431 or 413).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of request line + header fields + blank line (also bounds the
    /// trailer section of a chunked body).
    pub max_head: usize,
    /// Header fields in one request.
    pub max_headers: usize,
    /// Bytes of one request body (after chunked decoding).
    pub max_body: u64,
}

impl Default for Limits {
    /// 8 KiB of head, 64 header fields, 1 MiB of body.
    fn default() -> Self {
        Limits { max_head: 8 * 1024, max_headers: 64, max_body: 1024 * 1024 }
    }
}

/// Why a request cannot be served. Each maps to a response status
/// ([`Error::status`]); the connection must be closed after it, since where
/// the next request starts is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Not HTTP/1.x syntax, or ambiguous framing (400).
    Malformed(&'static str),
    /// The head is longer than [`Limits::max_head`] (431).
    HeadTooLarge,
    /// More header fields than [`Limits::max_headers`] (431).
    TooManyHeaders,
    /// The body is longer than [`Limits::max_body`] (413).
    BodyTooLarge,
    /// A transfer coding other than `chunked` (501).
    UnsupportedTransferCoding,
    /// An HTTP major version other than 1 (505).
    UnsupportedVersion,
}

impl Error {
    /// The HTTP status code to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Error::Malformed(_) => 400,
            Error::HeadTooLarge | Error::TooManyHeaders => 431,
            Error::BodyTooLarge => 413,
            Error::UnsupportedTransferCoding => 501,
            Error::UnsupportedVersion => 505,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Malformed(why) => write!(f, "malformed request: {why}"),
            Error::HeadTooLarge => f.write_str("request head too large"),
            Error::TooManyHeaders => f.write_str("too many header fields"),
            Error::BodyTooLarge => f.write_str("request body too large"),
            Error::UnsupportedTransferCoding => f.write_str("unsupported transfer coding"),
            Error::UnsupportedVersion => f.write_str("unsupported HTTP version"),
        }
    }
}

impl std::error::Error for Error {}

/// The HTTP version of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// HTTP/1.0: closes after each response unless `Connection: keep-alive`.
    Http10,
    /// HTTP/1.1 (and any later 1.x): persistent unless `Connection: close`.
    Http11,
}

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// One header field of a [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    /// The name as sent (compare with `eq_ignore_ascii_case`).
    pub name: &'a str,
    /// The value without surrounding whitespace (may hold obs-text bytes).
    pub value: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
struct Span {
    name: (usize, usize),
    value: (usize, usize),
}

/// A parsed request head, borrowed from the input and the [`Parser`].
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The method token (`GET`, `POST`, …), case-sensitive.
    pub method: &'a str,
    /// The request target as sent (`/path?query`, `*`, `http://…`).
    pub target: &'a str,
    /// The protocol version.
    pub version: Version,
    /// How the body is delimited.
    pub body: BodyKind,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request: the client waits for
    /// `100 Continue` before sending the body.
    pub expect_continue: bool,
    head: &'a [u8],
    spans: &'a [Span],
}

impl<'a> Request<'a> {
    /// The target's path: everything before `?`.
    pub fn path(&self) -> &'a str {
        self.target.split_once('?').map_or(self.target, |(path, _)| path)
    }

    /// The header fields, in the order sent.
    pub fn headers(&self) -> impl Iterator<Item = Header<'a>> + 'a {
        let head = self.head;
        self.spans.iter().map(move |s| Header {
            // Names were checked to be token characters, which are ASCII.
            name: std::str::from_utf8(&head[s.name.0..s.name.1]).unwrap_or_default(),
            value: &head[s.value.0..s.value.1],
        })
    }

    /// The first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers().find(|h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("target", &self.target)
            .field("version", &self.version)
            .field("body", &self.body)
            .field("keep_alive", &self.keep_alive)
            .field("expect_continue", &self.expect_continue)
            .field("headers", &self.spans.len())
            .finish()
    }
}

/// Parses request heads. Holds the limits and the header-position storage
/// reused from request to request (so parsing allocates nothing once warm);
/// one per worker is enough.
#[derive(Debug, Clone, Default)]
pub struct Parser {
    limits: Limits,
    spans: Vec<Span>,
}

/// Characters of a `token` (method, header name), RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A field value byte: visible ASCII, space, tab or obs-text.
fn is_value_byte(b: u8) -> bool {
    b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// Comma-separated list elements, trimmed, empty ones skipped.
fn list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows).filter(|e| !e.is_empty())
}

/// What the header fields say about framing and persistence.
#[derive(Default)]
struct Fields {
    content_length: Option<u64>,
    te_seen: bool,
    te_chunked_last: bool,
    te_chunked_count: u32,
    te_other: bool,
    close: bool,
    keep_alive: bool,
    hosts: u32,
    expect_continue: bool,
}

impl Fields {
    fn note(&mut self, name: &[u8], value: &[u8]) -> Result<(), Error> {
        if name.eq_ignore_ascii_case(b"content-length") {
            for element in value.split(|&b| b == b',').map(trim_ows) {
                let n = parse_content_length(element)?;
                if self.content_length.is_some_and(|m| m != n) {
                    return Err(Error::Malformed("conflicting Content-Length"));
                }
                self.content_length = Some(n);
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.te_seen = true;
            for coding in list(value) {
                if coding.eq_ignore_ascii_case(b"chunked") {
                    self.te_chunked_count += 1;
                    self.te_chunked_last = true;
                } else {
                    self.te_other = true;
                    self.te_chunked_last = false;
                }
            }
        } else if name.eq_ignore_ascii_case(b"connection") {
            for option in list(value) {
                if option.eq_ignore_ascii_case(b"close") {
                    self.close = true;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    self.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case(b"host") {
            self.hosts += 1;
        } else if name.eq_ignore_ascii_case(b"expect") {
            self.expect_continue |= value.eq_ignore_ascii_case(b"100-continue");
        }
        Ok(())
    }

    fn body(&self, version: Version, limits: &Limits) -> Result<BodyKind, Error> {
        if self.te_seen {
            if self.content_length.is_some() {
                return Err(Error::Malformed("both Content-Length and Transfer-Encoding"));
            }
            if version == Version::Http10 {
                return Err(Error::Malformed("Transfer-Encoding in an HTTP/1.0 request"));
            }
            if !self.te_chunked_last || self.te_chunked_count != 1 {
                return Err(Error::Malformed("chunked is not the final transfer coding once"));
            }
            if self.te_other {
                return Err(Error::UnsupportedTransferCoding);
            }
            return Ok(BodyKind::Chunked);
        }
        match self.content_length {
            Some(n) if n > limits.max_body => Err(Error::BodyTooLarge),
            Some(0) | None => Ok(BodyKind::None),
            Some(n) => Ok(BodyKind::Length(n)),
        }
    }
}

fn parse_content_length(digits: &[u8]) -> Result<u64, Error> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(Error::Malformed("invalid Content-Length"));
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(Error::BodyTooLarge)
    })
}

/// The line starting at `pos`, without its terminator (CRLF or a bare LF),
/// and where the next begins. A CR anywhere else is rejected by the
/// callers' byte checks.
fn line(head: &[u8], pos: usize) -> Result<(Range<usize>, usize), Error> {
    let rest = head.get(pos..).unwrap_or_default();
    let nl = rest.iter().position(|&b| b == b'\n').ok_or(Error::Malformed("unterminated line"))?;
    let end = if nl > 0 && rest[nl - 1] == b'\r' { nl - 1 } else { nl };
    Ok((pos..pos + end, pos + nl + 1))
}

fn parse_version(v: &[u8]) -> Result<Version, Error> {
    match v {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            match (major, minor) {
                (b'1', b'0') => Ok(Version::Http10),
                (b'1', _) => Ok(Version::Http11),
                _ => Err(Error::UnsupportedVersion),
            }
        }
        _ => Err(Error::Malformed("invalid HTTP version")),
    }
}

impl Parser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Parser {
        Parser { limits, spans: Vec::new() }
    }

    /// The limits enforced.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Parses a complete head: the request line, header fields and the
    /// blank line ending them, as found by [`HeadScanner`]. Empty lines
    /// before the request line are skipped (RFC 9112 §2.2); lines may end
    /// in CRLF or a bare LF.
    ///
    /// # Errors
    /// Any [`Error`]; all are answered with their status and a close.
    pub fn parse_head<'p>(&'p mut self, head: &'p [u8]) -> Result<Request<'p>, Error> {
        if head.len() > self.limits.max_head {
            return Err(Error::HeadTooLarge);
        }
        self.spans.clear();
        let mut pos = 0;
        while head[pos..].starts_with(b"\r\n") || head[pos..].starts_with(b"\n") {
            pos += if head[pos] == b'\r' { 2 } else { 1 };
        }

        // request-line = method SP request-target SP HTTP-version
        let (request_line, next) = line(head, pos)?;
        pos = next;
        let request_line = &head[request_line];
        let mut parts = request_line.splitn(3, |&b| b == b' ');
        let (Some(method), Some(target), Some(version)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Malformed("invalid request line"));
        };
        if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
            return Err(Error::Malformed("invalid method"));
        }
        if target.is_empty() || !target.iter().all(|&b| (b'!'..=b'~').contains(&b)) {
            return Err(Error::Malformed("invalid request target"));
        }
        let version = parse_version(version)?;
        let method = std::str::from_utf8(method).map_err(|_| Error::Malformed("method"))?;
        let target = std::str::from_utf8(target).map_err(|_| Error::Malformed("target"))?;

        let mut fields = Fields::default();
        loop {
            let (range, next) = line(head, pos)?;
            pos = next;
            if range.is_empty() {
                break;
            }
            let field = &head[range.clone()];
            if matches!(field[0], b' ' | b'\t') {
                return Err(Error::Malformed("obsolete line folding"));
            }
            let colon = field
                .iter()
                .position(|&b| !is_tchar(b))
                .filter(|&i| i > 0 && field[i] == b':')
                .ok_or(Error::Malformed("invalid header field name"))?;
            let raw_value = &field[colon + 1..];
            if !raw_value.iter().all(|&b| is_value_byte(b)) {
                return Err(Error::Malformed("invalid header field value"));
            }
            let value = trim_ows(raw_value);
            let leading = raw_value.iter().take_while(|&&b| b == b' ' || b == b'\t').count();
            let value_start = range.start + colon + 1 + leading;
            if self.spans.len() == self.limits.max_headers {
                return Err(Error::TooManyHeaders);
            }
            fields.note(&field[..colon], value)?;
            self.spans.push(Span {
                name: (range.start, range.start + colon),
                value: (value_start, value_start + value.len()),
            });
        }
        if pos != head.len() {
            return Err(Error::Malformed("bytes after the end of the head"));
        }

        let body = fields.body(version, &self.limits)?;
        match (version, fields.hosts) {
            (_, 2..) => return Err(Error::Malformed("more than one Host")),
            (Version::Http11, 0) => return Err(Error::Malformed("missing Host")),
            _ => {}
        }
        let keep_alive = !fields.close && (version == Version::Http11 || fields.keep_alive);
        Ok(Request {
            method,
            target,
            version,
            body,
            keep_alive,
            expect_continue: fields.expect_continue && version == Version::Http11,
            head,
            spans: &self.spans,
        })
    }
}

/// The input a [`RequestReader`] parses: unconsumed received bytes, held in
/// one or more contiguous runs (pool buffers), with a cursor at the front.
///
/// Implemented for [`pollring::Cx`] (its [`Input`](pollring::Input)) and
/// for `&[u8]`.
pub trait Stream {
    /// Unconsumed bytes.
    fn len(&mut self) -> usize;

    /// Whether there are no unconsumed bytes.
    fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// The first contiguous run of bytes (empty if there are none).
    fn first(&mut self) -> &[u8];

    /// Position of the first `byte` at or after `from`.
    fn find(&mut self, from: usize, byte: u8) -> Option<usize>;

    /// Bytes `range` as one slice (borrowed if they lie in one run, else
    /// copied once); `None` if the range reaches past the input.
    fn range(&mut self, range: Range<usize>) -> Option<&[u8]>;

    /// Drops the first `n` bytes.
    fn consume(&mut self, n: usize);
}

impl<M: Send + 'static> Stream for Cx<'_, M> {
    fn len(&mut self) -> usize {
        self.input().len()
    }

    fn first(&mut self) -> &[u8] {
        self.input().first()
    }

    fn find(&mut self, from: usize, byte: u8) -> Option<usize> {
        self.input().find(from, byte)
    }

    fn range(&mut self, range: Range<usize>) -> Option<&[u8]> {
        self.input().range(range)
    }

    fn consume(&mut self, n: usize) {
        Cx::consume(self, n);
    }
}

impl Stream for &[u8] {
    fn len(&mut self) -> usize {
        <[u8]>::len(self)
    }

    fn first(&mut self) -> &[u8] {
        self
    }

    fn find(&mut self, from: usize, byte: u8) -> Option<usize> {
        self.get(from..)?.iter().position(|&b| b == byte).map(|i| from + i)
    }

    fn range(&mut self, range: Range<usize>) -> Option<&[u8]> {
        self.get(range)
    }

    fn consume(&mut self, n: usize) {
        *self = &self[n..];
    }
}

/// Finds the end of a request head in a [`Stream`], incrementally: what was
/// scanned is not scanned again when more bytes arrive.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadScanner {
    /// Where the current line starts.
    line_start: usize,
    /// A non-empty line has been seen (blank lines before the request line
    /// do not end the head).
    content: bool,
}

impl HeadScanner {
    /// The length of the head at the front of `s` (through its blank line),
    /// or `None` if it has not all arrived. Call again with the same stream
    /// (grown, not consumed) to continue; [`HeadScanner::reset`] after
    /// consuming the head.
    ///
    /// # Errors
    /// [`Error::HeadTooLarge`] once more than `max` bytes hold no complete
    /// head.
    pub fn scan<S: Stream + ?Sized>(
        &mut self,
        s: &mut S,
        max: usize,
    ) -> Result<Option<usize>, Error> {
        while let Some(nl) = s.find(self.line_start, b'\n') {
            if nl >= max {
                return Err(Error::HeadTooLarge);
            }
            let blank = nl == self.line_start
                || (nl == self.line_start + 1 && s.range(self.line_start..nl) == Some(b"\r"));
            self.line_start = nl + 1;
            if blank && self.content {
                return Ok(Some(nl + 1));
            }
            self.content |= !blank;
        }
        if s.len() > max {
            return Err(Error::HeadTooLarge);
        }
        Ok(None)
    }

    /// Forgets the progress, for the next head.
    pub fn reset(&mut self) {
        *self = HeadScanner::default();
    }
}

/// Longest chunk-size line (size, extensions, CRLF) accepted.
const MAX_CHUNK_LINE: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading hex digits of a chunk size.
    Size { size: u64, digits: u32 },
    /// After the size: whitespace or `;` extensions up to CR.
    Ext { size: u64 },
    /// Expecting the LF of the size line.
    SizeLf { size: u64 },
    /// Chunk data bytes left.
    Data(u64),
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart,
    /// Inside a trailer field line.
    Trailer,
    /// Expecting the LF of a trailer line.
    TrailerLf,
    /// Expecting the LF of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// Decodes a `Transfer-Encoding: chunked` body incrementally, from any
/// split of its bytes. Chunk extensions and trailer fields are skipped;
/// line ends must be CRLF.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: Chunk,
    /// Data bytes decoded so far.
    total: u64,
    /// Bytes of the current size line, or of the trailer section.
    line: usize,
    max_body: u64,
    max_trailers: usize,
}

impl ChunkedDecoder {
    /// A decoder for a body of at most `limits.max_body` bytes with trailers
    /// of at most `limits.max_head` bytes.
    pub fn new(limits: &Limits) -> ChunkedDecoder {
        ChunkedDecoder {
            state: Chunk::Size { size: 0, digits: 0 },
            total: 0,
            line: 0,
            max_body: limits.max_body,
            max_trailers: limits.max_head,
        }
    }

    /// Whether the final chunk and trailers have been decoded.
    pub fn is_done(&self) -> bool {
        self.state == Chunk::Done
    }

    /// Decodes from `input`, handing each run of body data to `sink`.
    /// Returns how many bytes of `input` belong to the body: all of them,
    /// unless the body ends inside `input` (then [`ChunkedDecoder::is_done`]).
    ///
    /// # Errors
    /// [`Error::Malformed`] for bad framing, [`Error::BodyTooLarge`] past
    /// `max_body`, [`Error::HeadTooLarge`] for trailers past `max_head`.
    pub fn decode(&mut self, input: &[u8], mut sink: impl FnMut(&[u8])) -> Result<usize, Error> {
        let mut i = 0;
        while i < input.len() {
            if let Chunk::Data(left) = self.state {
                let n = left.min((input.len() - i) as u64) as usize;
                sink(&input[i..i + n]);
                i += n;
                self.state =
                    if left == n as u64 { Chunk::DataCr } else { Chunk::Data(left - n as u64) };
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match self.state {
                Chunk::Size { size, digits } => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(Error::Malformed("chunk size line too long"));
                    }
                    match (b as char).to_digit(16) {
                        Some(d) => {
                            if size >> 60 != 0 {
                                return Err(Error::BodyTooLarge);
                            }
                            Chunk::Size { size: size << 4 | u64::from(d), digits: digits + 1 }
                        }
                        None if digits == 0 => return Err(Error::Malformed("missing chunk size")),
                        None => match b {
                            b'\r' => Chunk::SizeLf { size },
                            b';' | b' ' | b'\t' => Chunk::Ext { size },
                            _ => return Err(Error::Malformed("invalid chunk size")),
                        },
                    }
                }
                Chunk::Ext { size } => {
                    self.line += 1;
                    if self.line > MAX_CHUNK_LINE {
                        return Err(Error::Malformed("chunk size line too long"));
                    }
                    match b {
                        b'\r' => Chunk::SizeLf { size },
                        b'\t' | b' '..=b'~' | 0x80.. => Chunk::Ext { size },
                        _ => return Err(Error::Malformed("invalid chunk extension")),
                    }
                }
                Chunk::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(Error::Malformed("chunk size line not ended by CRLF"));
                    }
                    self.line = 0;
                    if size == 0 {
                        Chunk::TrailerStart
                    } else {
                        self.total = self
                            .total
                            .checked_add(size)
                            .filter(|&t| t <= self.max_body)
                            .ok_or(Error::BodyTooLarge)?;
                        Chunk::Data(size)
                    }
                }
                Chunk::Data(_) => unreachable!("handled above"),
                Chunk::DataCr if b == b'\r' => Chunk::DataLf,
                Chunk::DataLf if b == b'\n' => Chunk::Size { size: 0, digits: 0 },
                Chunk::DataCr | Chunk::DataLf => {
                    return Err(Error::Malformed("chunk data not followed by CRLF"))
                }
                Chunk::TrailerStart | Chunk::Trailer | Chunk::TrailerLf | Chunk::EndLf => {
                    self.line += 1;
                    if self.line > self.max_trailers {
                        return Err(Error::HeadTooLarge);
                    }
                    match (self.state, b) {
                        (Chunk::TrailerStart, b'\r') => Chunk::EndLf,
                        (Chunk::TrailerStart, b' ' | b'\t') => {
                            return Err(Error::Malformed("obsolete line folding in trailer"))
                        }
                        (Chunk::Trailer, b'\r') => Chunk::TrailerLf,
                        (Chunk::TrailerStart | Chunk::Trailer, b'\t' | b' '..=b'~' | 0x80..) => {
                            Chunk::Trailer
                        }
                        (Chunk::TrailerLf, b'\n') => Chunk::TrailerStart,
                        (Chunk::EndLf, b'\n') => {
                            self.state = Chunk::Done;
                            return Ok(i);
                        }
                        _ => return Err(Error::Malformed("invalid trailer section")),
                    }
                }
                Chunk::Done => return Ok(i - 1),
            };
        }
        Ok(i)
    }
}

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
    /// A request head. Its body (possibly empty) follows: keep calling
    /// `advance` until [`Progress::BodyDone`].
    Head(Request<'a>),
    /// The body of the last head has been passed to the sink and consumed.
    BodyDone,
    /// The input ends inside a head or body; call again when more arrived.
    NeedMore,
}

/// Reads requests one after another from a connection's [`Stream`]: a
/// per-connection state machine over [`HeadScanner`], [`Parser`] and
/// [`ChunkedDecoder`].
///
/// Each request yields [`Progress::Head`] (borrowing the input, which stays
/// unconsumed until the next call) and then [`Progress::BodyDone`], with the
/// body passed to the sink on the way. Body bytes are consumed as they are
/// read, so a large upload does not pile up in the input.
#[derive(Debug, Clone)]
pub struct RequestReader {
    scanner: HeadScanner,
    state: ReadState,
}

impl Default for RequestReader {
    fn default() -> Self {
        RequestReader { scanner: HeadScanner::default(), state: ReadState::Head }
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
    pub fn advance<'r, S: Stream + ?Sized>(
        &mut self,
        parser: &'r mut Parser,
        s: &'r mut S,
        mut sink: impl FnMut(&[u8]),
    ) -> Result<Progress<'r>, Error> {
        loop {
            match &mut self.state {
                ReadState::Head => {
                    let max = parser.limits.max_head;
                    let Some(n) = self.scanner.scan(s, max)? else {
                        return Ok(Progress::NeedMore);
                    };
                    self.scanner.reset();
                    let head = s.range(0..n).ok_or(Error::Malformed("head vanished"))?;
                    let req = parser.parse_head(head)?;
                    self.state = ReadState::Body { head_len: n, body: req.body };
                    return Ok(Progress::Head(req));
                }
                ReadState::Body { head_len, body } => {
                    s.consume(*head_len);
                    self.state = match *body {
                        BodyKind::None => ReadState::Head,
                        BodyKind::Length(n) => ReadState::Length(n),
                        BodyKind::Chunked => {
                            ReadState::Chunked(ChunkedDecoder::new(&parser.limits))
                        }
                    };
                    if matches!(self.state, ReadState::Head) {
                        return Ok(Progress::BodyDone);
                    }
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A chain of fixed-size buffers, as the framework's input is.
    struct TestChain {
        bufs: std::collections::VecDeque<Vec<u8>>,
        buf_size: usize,
        scratch: Vec<u8>,
    }

    impl TestChain {
        fn new(buf_size: usize) -> TestChain {
            TestChain { bufs: Default::default(), buf_size, scratch: Vec::new() }
        }

        fn push(&mut self, mut data: &[u8]) {
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

    impl Stream for TestChain {
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
    struct Owned {
        method: String,
        target: String,
        version: Version,
        keep_alive: bool,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
    }

    /// Feeds `pieces` one by one into a chain of `buf_size` buffers, reading
    /// every request that completes; stops at the first error.
    fn read_all(pieces: &[&[u8]], buf_size: usize, limits: Limits) -> (Vec<Owned>, Option<Error>) {
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
                        current = Some(Owned {
                            method: req.method.into(),
                            target: req.target.into(),
                            version: req.version,
                            keep_alive: req.keep_alive,
                            headers: req
                                .headers()
                                .map(|h| (h.name.into(), h.value.into()))
                                .collect(),
                            body: Vec::new(),
                        })
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

    fn one(input: &[u8]) -> Result<Owned, Error> {
        let (mut reqs, err) = read_all(&[input], 16 * 1024, Limits::default());
        match err {
            Some(e) => Err(e),
            None => {
                assert_eq!(reqs.len(), 1, "expected exactly one request in {input:?}");
                Ok(reqs.remove(0))
            }
        }
    }

    fn err(input: &[u8]) -> Error {
        one(input).expect_err("should be rejected")
    }

    #[test]
    fn simple_get() {
        let r = one(b"GET /plaintext?x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/plaintext?x=1");
        assert_eq!(r.version, Version::Http11);
        assert!(r.keep_alive);
        assert_eq!(
            r.headers,
            vec![("Host".into(), b"a".to_vec()), ("Accept".into(), b"*/*".to_vec())]
        );
        assert!(r.body.is_empty());
    }

    #[test]
    fn header_names_case_insensitive_and_values_trimmed() {
        let mut parser = Parser::default();
        let head = b"GET / HTTP/1.1\r\nhOsT: \t a b \t\r\nCONTENT-length: 0\r\n\r\n";
        let req = parser.parse_head(head).unwrap();
        assert_eq!(req.header("host"), Some(&b"a b"[..]));
        assert_eq!(req.header("Content-Length"), Some(&b"0"[..]));
        assert_eq!(req.header("missing"), None);
        assert_eq!(req.path(), "/");
        assert_eq!(req.body, BodyKind::None);
    }

    #[test]
    fn bare_lf_and_leading_blank_lines() {
        let r = one(b"\r\n\nGET / HTTP/1.1\nHost: a\n\n").unwrap();
        assert_eq!(r.target, "/");
    }

    #[test]
    fn partial_input_needs_more() {
        let full = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
        for cut in 0..full.len() {
            let (reqs, err) = read_all(&[&full[..cut]], 4, Limits::default());
            assert!(reqs.is_empty() && err.is_none(), "cut at {cut}");
        }
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |s: &[u8]| one(s).unwrap().keep_alive;
        assert!(ka(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, CLOSE\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!ka(b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"));
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
    fn chunked_body_with_extensions_and_trailers() {
        let r = one(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;name=value\r\nhello\r\n1 ; x\r\n \r\nA\r\n0123456789\r\n0\r\nX-Trailer: yes\r\nY: 2\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"hello 0123456789");
        let r = one(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n")
            .unwrap();
        assert!(r.body.is_empty());
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
    fn smuggling_defences() {
        let bad = [
            &b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx"[..],
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1, 2\r\n\r\nx",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x1\r\n\r\nx",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
        ];
        for input in bad {
            assert_eq!(err(input).status(), 400, "{:?}", String::from_utf8_lossy(input));
        }
        assert_eq!(
            err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Error::UnsupportedTransferCoding
        );
    }

    #[test]
    fn malformed_request_lines() {
        for input in [
            &b"garbage\r\n\r\n"[..],
            b"GET /\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1\r\nHost: a\r\n\r\n",
            b"GET / http/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert_eq!(err(input).status(), 400, "{:?}", String::from_utf8_lossy(input));
        }
        assert_eq!(err(b"GET / HTTP/2.0\r\n\r\n"), Error::UnsupportedVersion);
    }

    #[test]
    fn malformed_chunked_bodies() {
        let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for body in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\r\nhelloXX",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\r",
            b"1;\x01\r\n",
            b"0\r\n folded\r\n\r\n",
        ] {
            let input = [&head[..], body].concat();
            assert_eq!(err(&input).status(), 400, "{:?}", String::from_utf8_lossy(body));
        }
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
            Progress::Head(req) => assert_eq!(req.method.as_ptr(), start),
            other => panic!("{other:?}"),
        }
        assert!(matches!(reader.advance(&mut parser, &mut input, |_| {}), Ok(Progress::BodyDone)));
        assert_eq!(input, b"rest");
        assert!(!reader.in_message());
    }

    /// Valid requests, rendered to bytes, with the owned form they parse to.
    fn valid_request() -> impl Strategy<Value = (Vec<u8>, Owned)> {
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

        /// Random bytes after a valid chunked head never panic the decoder.
        #[test]
        fn random_chunked_bodies_never_panic(data in prop::collection::vec(any::<u8>(), 0..300)) {
            let head = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n";
            let input = [&head[..], &data].concat();
            let pieces: Vec<&[u8]> = input.chunks(3).collect();
            let _ = read_all(&pieces, 5, Limits::default());
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
