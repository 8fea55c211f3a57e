//! An incremental HTTP/1.1 request parser that reads from a chain of
//! buffers: a connection's input, or any other [`Source`].
//!
//! The pieces, each in its own file with its tests:
//!
//! * [`head`]: [`Parser`] parses a request head (request line, header
//!   fields, blank line) with [`httparse`], the SIMD parser hyper uses, then
//!   applies what HTTP/1.1 framing needs on top: the body framing
//!   (`Content-Length` / `Transfer-Encoding: chunked`), the keep-alive rules
//!   of HTTP/1.0 and 1.1, and the defences against request smuggling
//!   (conflicting `Content-Length`s, `Content-Length` together with
//!   `Transfer-Encoding`, `chunked` that is not the final coding once,
//!   obsolete line folding, whitespace before the colon, a missing or
//!   repeated `Host`). [`HeadScanner`] finds where a head ends across buffer
//!   boundaries, remembering how far it got.
//! * [`chunked`]: [`ChunkedDecoder`] decodes a chunked body incrementally
//!   (chunk extensions and trailer fields are accepted and skipped).
//! * [`reader`]: [`RequestReader`] ties them together over a [`Source`] and
//!   yields [`Progress::Head`] for every request, in order, then
//!   [`Progress::BodyDone`] if it has a body, or [`Progress::NeedMore`].
//!
//! A head that lies in the input's first buffer, the common case, is parsed
//! there, in place, in one pass; one that spans buffers (or arrives in
//! pieces) is found by the scanner and then copied once
//! ([`Source::range`]). Every size is bounded by [`Limits`], and each
//! violation maps to the status to answer with ([`Error::status`]).
//!
//! # Examples
//! Parsing from a plain byte slice (a [`Source`] of one buffer):
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

pub use pollring::Source;

pub mod chunked;
pub mod head;
pub mod reader;
#[cfg(test)]
mod test_util;

pub use chunked::ChunkedDecoder;
pub use head::{HeadScanner, Parser, MAX_HEADERS};
pub use reader::{Progress, RequestReader};

/// Size limits. Exceeding one is an [`Error`] (431 or 413).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of request line + header fields + blank line (also bounds the
    /// trailer section of a chunked body).
    pub max_head: usize,
    /// Header fields in one request (at most [`MAX_HEADERS`]: the fields
    /// are parsed into an array of that size on the stack).
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

/// Where a header field's name and value lie in its head.
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
        let end = self.target.bytes().position(|b| b == b'?').unwrap_or(self.target.len());
        &self.target[..end]
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
