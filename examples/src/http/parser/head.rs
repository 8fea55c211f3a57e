//! Request heads: [`Parser`] (one complete head, with `httparse`, plus the
//! HTTP/1.1 framing rules) and [`HeadScanner`] (where a head ends, across
//! buffers).

use std::mem::MaybeUninit;

use super::{BodyKind, Error, Limits, Request, Source, Span, Version};

/// The most header fields a head may have, whatever
/// [`Limits::max_headers`] says: `httparse` fills an array of this many
/// on the stack (left uninitialised until used, so its size costs
/// nothing). hyper's default is the same.
pub const MAX_HEADERS: usize = 100;

/// Parses request heads. Holds the limits and the header-position storage
/// reused from request to request (so parsing allocates nothing once warm);
/// one per worker is enough.
#[derive(Debug, Clone, Default)]
pub struct Parser {
    limits: Limits,
    spans: Vec<Span>,
    /// The last head parsed, for [`Parser::request`].
    last: Option<Parsed>,
}

/// A parsed head as positions in it, so that parsing does not keep the
/// input borrowed (see [`Parser::parse_prefix`]).
#[derive(Debug, Clone, Copy)]
struct Parsed {
    method: (usize, usize),
    target: (usize, usize),
    version: Version,
    body: BodyKind,
    keep_alive: bool,
    expect_continue: bool,
}

impl Parser {
    /// A parser enforcing `limits`.
    pub fn new(limits: Limits) -> Parser {
        Parser { limits, spans: Vec::new(), last: None }
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
        match self.parse_prefix(head)? {
            Some(n) if n == head.len() => Ok(self.request(head)),
            Some(_) => Err(Error::Malformed("bytes after the end of the head")),
            None => Err(Error::Malformed("incomplete head")),
        }
    }

    /// Parses the head at the front of `input`: its length once it has all
    /// arrived, `None` before. The request is then [`Parser::request`] of
    /// those bytes; nothing stays borrowed meanwhile, so a caller can look
    /// at its input again to decide what to do.
    ///
    /// # Errors
    /// Any [`Error`]; [`Error::HeadTooLarge`] once more than
    /// [`Limits::max_head`] bytes hold no complete head.
    pub fn parse_prefix(&mut self, input: &[u8]) -> Result<Option<usize>, Error> {
        let max_headers = self.limits.max_headers.min(MAX_HEADERS);
        let mut storage = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(input, &mut storage[..max_headers]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if input.len() > self.limits.max_head => {
                return Err(Error::HeadTooLarge)
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::Version) => return self.parse_later_version(input),
            Err(e) => return Err(syntax_error(e)),
        };
        if len > self.limits.max_head {
            return Err(Error::HeadTooLarge);
        }
        let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
            return Err(Error::Malformed("incomplete request line"));
        };
        if !target.is_ascii() {
            return Err(Error::Malformed("invalid request target"));
        }
        let version = if minor == 0 { Version::Http10 } else { Version::Http11 };
        let mut fields = Fields::default();
        self.spans.clear();
        for h in req.headers.iter() {
            fields.note(h.name.as_bytes(), h.value)?;
            self.spans.push(Span {
                name: within(input, h.name.as_bytes()),
                value: within(input, h.value),
            });
        }
        let body = fields.body(version, &self.limits)?;
        match (version, fields.hosts) {
            (_, 2..) => return Err(Error::Malformed("more than one Host")),
            (Version::Http11, 0) => return Err(Error::Malformed("missing Host")),
            _ => {}
        }
        self.last = Some(Parsed {
            method: within(input, method.as_bytes()),
            target: within(input, target.as_bytes()),
            version,
            body,
            keep_alive: !fields.close && (version == Version::Http11 || fields.keep_alive),
            expect_continue: fields.expect_continue && version == Version::Http11,
        });
        Ok(Some(len))
    }

    /// `httparse` takes HTTP/1.0 and 1.1 only. A later 1.x is served as
    /// 1.1 (RFC 9112 §2.3): the head is parsed again from a copy that says
    /// 1.1, at the same positions. Any other version is 505 if it is one,
    /// 400 if it is not.
    #[cold]
    fn parse_later_version(&mut self, input: &[u8]) -> Result<Option<usize>, Error> {
        let start = input.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(0);
        let Some(nl) = input[start..].iter().position(|&b| b == b'\n') else {
            // The line has not ended: wait for it if what there is of the
            // version could still be one (`HTTP/1.2` before its CRLF).
            let line = &input[start..];
            let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
            if could_be_version(version) && input.len() <= self.limits.max_head {
                return Ok(None);
            }
            return Err(Error::Malformed("invalid HTTP version"));
        };
        let line = &input[start..start + nl];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let version = line.rsplit(|&b| b == b' ').next().unwrap_or_default();
        match parse_version(version)? {
            Version::Http11 if version != b"HTTP/1.1" => {
                let mut patched = input.to_vec();
                patched[start + line.len() - 1] = b'1';
                self.parse_prefix(&patched)
            }
            _ => Err(Error::Malformed("invalid HTTP version")),
        }
    }

    /// The request whose head [`Parser::parse_prefix`] last parsed, read
    /// from `head` (the same bytes).
    ///
    /// # Panics
    /// If no head was parsed.
    pub fn request<'p>(&'p self, head: &'p [u8]) -> Request<'p> {
        let p = self.last.expect("Parser::request before a head was parsed");
        // Method and target were checked: a token, and visible ASCII.
        let text = |(a, b): (usize, usize)| std::str::from_utf8(&head[a..b]).unwrap_or_default();
        let method = match &head[p.method.0..p.method.1] {
            b"GET" => "GET",
            b"HEAD" => "HEAD",
            b"POST" => "POST",
            b"PUT" => "PUT",
            b"DELETE" => "DELETE",
            _ => text(p.method),
        };
        Request {
            method,
            target: text(p.target),
            version: p.version,
            body: p.body,
            keep_alive: p.keep_alive,
            expect_continue: p.expect_continue,
            head,
            spans: &self.spans,
        }
    }
}

/// Whether `v` is a prefix of `HTTP/<digit>.<digit>` (a `\r` may follow).
fn could_be_version(v: &[u8]) -> bool {
    let v = v.strip_suffix(b"\r").unwrap_or(v);
    v.len() <= 8
        && v.iter().zip(b"HTTP/0.0").all(
            |(&b, &want)| {
                if want == b'0' {
                    b.is_ascii_digit()
                } else {
                    b == want
                }
            },
        )
}

/// Where `part`, a slice of `whole`, lies in it.
fn within(whole: &[u8], part: &[u8]) -> (usize, usize) {
    let start = (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize);
    if part.is_empty() || start > whole.len() {
        return (0, 0);
    }
    (start, start + part.len())
}

/// The [`Error`] for what `httparse` rejected (all 400 but too many fields).
fn syntax_error(e: httparse::Error) -> Error {
    match e {
        httparse::Error::TooManyHeaders => Error::TooManyHeaders,
        httparse::Error::HeaderName => Error::Malformed("invalid header field name"),
        httparse::Error::HeaderValue => Error::Malformed("invalid header field value"),
        httparse::Error::NewLine => Error::Malformed("invalid line ending"),
        httparse::Error::Token => Error::Malformed("invalid request line"),
        _ => Error::Malformed("invalid request head"),
    }
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

/// Finds the end of a request head in a [`Source`], incrementally: what was
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
    pub fn scan<S: Source + ?Sized>(
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

#[cfg(test)]
mod tests {
    use super::super::test_util::{err, one};
    use super::*;

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
}
