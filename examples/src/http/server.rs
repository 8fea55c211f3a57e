//! The HTTP/1.1 handler: routes, responses, keep-alive and pipelining.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pollring::{Drain, Handler, WorkerCx};

use super::date::DateCache;
use super::parser::{BodyKind, Error, Limits, Parser, Progress, Request, RequestReader, Version};

/// Bodies kept in a connection's buffer above this capacity are freed after
/// the response rather than kept for the next request.
const KEEP_BODY_CAPACITY: usize = 64 * 1024;

/// Output queued for one connection past which pipelined requests wait
/// (unparsed, in the input) until it has been sent. At the framework's
/// default high-water mark, so receiving pauses too: a client that
/// pipelines without reading cannot make the server buffer without bound.
pub const OUTPUT_BUDGET: usize = 1024 * 1024;

/// The longest `GET /sleep?ms=N` accepted (longer: 400).
pub const MAX_SLEEP_MS: u64 = 1000;

/// The callbacks' view of a connection, with [`Http`]'s message type.
type Cx<'a> = pollring::Cx<'a, Slept>;

/// What an offloaded `GET /sleep` sends back to its connection's worker:
/// the time it slept. [`Http`]'s [`Handler::Message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slept(pub Duration);

/// An HTTP/1.1 server: `GET /plaintext`, `GET /json` (the TechEmpower
/// tests), `GET /`, `POST /echo` and `GET /sleep?ms=N`; `HEAD` for every
/// `GET` route.
///
/// Every complete request in a connection's input is answered in order
/// within one [`Handler::on_data`] call, so pipelined responses coalesce in
/// the output and leave in one send (up to [`OUTPUT_BUDGET`] bytes of
/// output; the rest are answered once that has been sent). Responses are serialised straight into
/// output buffer space; the plaintext and JSON paths allocate nothing.
/// A request that breaks the syntax or a [`Limits`] is answered with its
/// status (400, 413, 431, 501, 505) and the connection closed.
///
/// `GET /sleep?ms=N` (N at most [`MAX_SLEEP_MS`], else 400) stands for
/// blocking work: it sleeps on the server's offload pool
/// ([`Cx::offload`](pollring::Cx::offload)), never on the worker, and is
/// answered `200` when the result comes back in [`Handler::on_message`];
/// `503` if the offload queue is full. Responses stay in request order:
/// while a sleep is pending, its connection stops receiving
/// ([`pause_recv`](pollring::Cx::pause_recv)) and requests pipelined
/// behind it stay unparsed in the input until its answer is written.
///
/// # Examples
/// ```no_run
/// use pollring::{Config, Server};
/// use pollring_examples::http::Http;
/// let server = Server::bind("127.0.0.1:8080", Config::from_env()?)?;
/// server.run(|_worker| Http::new())
/// # ; Ok::<(), pollring::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Http {
    parser: Parser,
    date: DateCache,
    canned: Canned,
}

impl Default for Http {
    fn default() -> Self {
        Http::new()
    }
}

impl Http {
    /// A server with the default [`Limits`].
    pub fn new() -> Http {
        Http::with_limits(Limits::default())
    }

    /// A server enforcing `limits`.
    pub fn with_limits(limits: Limits) -> Http {
        let date = DateCache::new(SystemTime::now());
        Http { parser: Parser::new(limits), canned: Canned::render(date.as_bytes()), date }
    }

    /// Answers every complete request in the input, in order, until the
    /// input runs out, a response closes the connection, or the output
    /// reaches [`OUTPUT_BUDGET`] (the rest waits for `on_drained`).
    fn serve(&mut self, conn: &mut HttpConn, cx: &mut Cx<'_>) {
        loop {
            if conn.sleeping.is_some() {
                // Later requests wait for the sleep's answer (in order).
                return;
            }
            // Once the peer has finished sending no more input can come, and
            // no `on_drained` will either: answer everything.
            if conn.current.is_none()
                && cx.pending_output() >= OUTPUT_BUDGET
                && !cx.is_read_closed()
            {
                return;
            }
            let keep_body = matches!(conn.current, Some(Pending { route: Route::Echo, .. }));
            let body = &mut conn.body;
            let step = conn.reader.advance(&mut self.parser, cx, |data| {
                if keep_body {
                    body.extend_from_slice(data);
                }
            });
            match step {
                Ok(Progress::Head(req)) => {
                    let pending = route(&req);
                    if req.body != BodyKind::None {
                        // Answered once the body is in.
                        let expect_continue = req.expect_continue;
                        conn.current = Some(pending);
                        if expect_continue {
                            cx.write(b"HTTP/1.1 100 Continue\r\n\r\n");
                        }
                        continue;
                    }
                    if !self.answer(conn, cx, pending) {
                        return;
                    }
                }
                Ok(Progress::BodyDone) => {
                    let Some(pending) = conn.current.take() else { continue };
                    if !self.answer(conn, cx, pending) {
                        return;
                    }
                }
                Ok(Progress::NeedMore) => return,
                Err(error) => {
                    tracing::debug!(id = %cx.id(), %error, "bad request");
                    respond_error(cx, self.date.as_bytes(), error);
                    cx.close();
                    return;
                }
            }
        }
    }

    /// Answers a complete request (its body in `conn.body`); `false` when
    /// nothing more is to be read now (a sleep is pending, or the
    /// connection closes).
    fn answer(&mut self, conn: &mut HttpConn, cx: &mut Cx<'_>, mut pending: Pending) -> bool {
        if let Route::Sleep { ms } = pending.route {
            if start_sleep(cx, ms) {
                conn.sleeping = Some(pending);
                return false;
            }
            pending.route = Route::Unavailable;
        }
        if cx.is_draining() {
            // The server stops: this is the connection's last answer.
            pending.keep_alive = false;
        }
        respond(cx, self.date.as_bytes(), &self.canned, pending, &conn.body);
        conn.body.clear();
        if conn.body.capacity() > KEEP_BODY_CAPACITY {
            conn.body = Vec::new();
        }
        if !pending.keep_alive {
            cx.close();
            return false;
        }
        true
    }
}

/// Per-connection state of [`Http`].
#[derive(Debug, Default)]
pub struct HttpConn {
    reader: RequestReader,
    /// The request whose head was read and whose body is being read.
    current: Option<Pending>,
    /// The body of `current`, when its route needs it.
    body: Vec<u8>,
    /// A `GET /sleep` on the offload pool, answered in `on_message`; the
    /// requests behind it wait.
    sleeping: Option<Pending>,
}

/// Offloads a sleep of `ms` milliseconds and holds the connection's later
/// requests until it is answered. `false` if the offload pool refused it
/// (answer 503).
fn start_sleep(cx: &mut Cx<'_>, ms: u64) -> bool {
    let nap = Duration::from_millis(ms);
    match cx.offload(move || {
        std::thread::sleep(nap);
        Slept(nap)
    }) {
        Ok(()) => {
            // Nothing more is read until the answer is written: requests
            // pipelined behind this one stay unparsed, in order. Half-close
            // keeps the connection open for the answer if the client has
            // already sent FIN (`on_data` and `on_message` close it then).
            cx.pause_recv();
            cx.set_half_close(true);
            true
        }
        Err(error) => {
            tracing::debug!(id = %cx.id(), %error, "sleep not offloaded; 503");
            false
        }
    }
}

/// What to answer, decided from the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Index,
    Plaintext,
    Json,
    Echo,
    /// `GET /sleep?ms=N`, valid N.
    Sleep {
        ms: u64,
    },
    /// `/sleep` without a valid `ms`.
    BadSleep,
    /// A sleep the offload pool had no room for.
    Unavailable,
    NotFound,
    MethodNotAllowed {
        allow: &'static str,
    },
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    route: Route,
    /// `HEAD`: headers only.
    head_only: bool,
    keep_alive: bool,
    version: Version,
}

fn route(req: &Request<'_>) -> Pending {
    let (get, head) = (req.method == "GET", req.method == "HEAD");
    let route = match req.path() {
        "/" | "/plaintext" | "/json" | "/sleep" if !(get || head) => {
            Route::MethodNotAllowed { allow: "GET, HEAD" }
        }
        "/" => Route::Index,
        "/plaintext" => Route::Plaintext,
        "/json" => Route::Json,
        "/sleep" => match sleep_ms(req.target) {
            Some(ms) => Route::Sleep { ms },
            None => Route::BadSleep,
        },
        "/echo" if req.method == "POST" => Route::Echo,
        "/echo" => Route::MethodNotAllowed { allow: "POST" },
        _ => Route::NotFound,
    };
    Pending { route, head_only: head, keep_alive: req.keep_alive, version: req.version }
}

/// The `ms` of `/sleep?ms=N`: an integer up to [`MAX_SLEEP_MS`].
fn sleep_ms(target: &str) -> Option<u64> {
    let (_, query) = target.split_once('?')?;
    let ms = query.split('&').find_map(|pair| pair.strip_prefix("ms="))?;
    ms.parse().ok().filter(|&ms| ms <= MAX_SLEEP_MS)
}

impl Handler for Http {
    type Conn = HttpConn;
    type Message = Slept;

    fn on_open(&mut self, _cx: &mut Cx<'_>) -> HttpConn {
        HttpConn::default()
    }

    fn on_data(&mut self, conn: &mut HttpConn, cx: &mut Cx<'_>) {
        self.serve(conn, cx);
        // A connection that ever slept opted into half-close: once the
        // client's FIN is in and nothing is pending, close it ourselves.
        if cx.is_read_closed() && conn.sleeping.is_none() {
            cx.close();
        }
    }

    /// A sleep is over: answer it, then the requests that waited behind it.
    fn on_message(&mut self, conn: &mut HttpConn, cx: &mut Cx<'_>, _slept: Slept) {
        let Some(mut pending) = conn.sleeping.take() else { return };
        if cx.is_draining() {
            pending.keep_alive = false;
        }
        respond(cx, self.date.as_bytes(), &self.canned, pending, &[]);
        if !pending.keep_alive {
            cx.close();
            return;
        }
        cx.resume_recv();
        self.on_data(conn, cx);
    }

    /// The server stops (or restarts): a request already here, or the next
    /// one, is answered with `Connection: close`, and the connection closes
    /// after it; a keep-alive client never sees it close between requests.
    /// An idle connection that sends nothing more is closed when the grace
    /// period ends.
    fn on_shutdown(&mut self, conn: &mut HttpConn, cx: &mut Cx<'_>) -> Drain {
        if conn.sleeping.is_none() {
            self.serve(conn, cx);
        }
        Drain::Finish
    }

    /// Output drained: requests left unanswered for the output budget are
    /// served now.
    fn on_drained(&mut self, conn: &mut HttpConn, cx: &mut Cx<'_>) {
        self.serve(conn, cx);
    }

    fn on_tick(&mut self, _cx: &mut WorkerCx<'_, Slept>) -> Option<Duration> {
        let now = SystemTime::now();
        if self.date.update(now) {
            self.canned = Canned::render(self.date.as_bytes());
        }
        // Wake just after the next whole second.
        let into_second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        Some(
            Duration::from_nanos(u64::from(1_000_000_000 - into_second)) + Duration::from_millis(1),
        )
    }
}

/// A response about to be serialised.
struct Response<'a> {
    status: &'static str,
    content_type: &'static str,
    body: &'a [u8],
    /// Extra header lines, each ending in CRLF.
    extra: &'a str,
    head_only: bool,
    connection: Option<&'static str>,
    date: &'a [u8],
}

impl Response<'_> {
    fn head(&self, out: &mut impl Put) {
        out.put(b"HTTP/1.1 ");
        out.put(self.status.as_bytes());
        out.put(b"\r\nServer: pollring\r\nDate: ");
        out.put(self.date);
        out.put(b"\r\nContent-Type: ");
        out.put(self.content_type.as_bytes());
        out.put(b"\r\nContent-Length: ");
        out.put_u64(self.body.len() as u64);
        out.put(b"\r\n");
        out.put(self.extra.as_bytes());
        if let Some(connection) = self.connection {
            out.put(b"Connection: ");
            out.put(connection.as_bytes());
            out.put(b"\r\n");
        }
        out.put(b"\r\n");
    }

    fn body(&self) -> &[u8] {
        if self.head_only {
            &[]
        } else {
            self.body
        }
    }

    /// Serialises straight into the output: into the spare room of its
    /// last buffer in one pass when the whole response fits there (the
    /// common case), else piece by piece through the writer. Either way
    /// the bytes are copied once, into the buffer the kernel sends from.
    fn send(&self, cx: &mut Cx<'_>) {
        let mut out = cx.writer();
        let written = out.put_with(|room| {
            let mut room = Out::new(room);
            self.head(&mut room);
            room.put(self.body());
            room.finish().unwrap_or(0)
        });
        if written == 0 {
            self.head(&mut out);
            out.put(self.body());
        }
    }
}

fn connection_header(p: &Pending) -> Option<&'static str> {
    match (p.keep_alive, p.version) {
        (false, Version::Http11) => Some("close"),
        (true, Version::Http10) => Some("keep-alive"),
        _ => None,
    }
}

/// Answers `p` (`body`: the request's, for `/echo`): a canned response
/// when there is one, else one serialised now.
fn respond(cx: &mut Cx<'_>, date: &[u8], canned: &Canned, p: Pending, body: &[u8]) {
    if let Some(response) = canned.get(&p) {
        cx.write(response);
        return;
    }
    let mut small = [0u8; 64];
    response(p, body, date, &mut small).send(cx);
}

/// The response to `p`; `small` holds a body made up for it.
fn response<'a>(
    p: Pending,
    body: &'a [u8],
    date: &'a [u8],
    small: &'a mut [u8; 64],
) -> Response<'a> {
    let (status, content_type, body, extra): (_, _, &[u8], _) = match p.route {
        Route::Plaintext => ("200 OK", "text/plain", b"Hello, World!", ""),
        Route::Json => {
            let mut out = Out::new(small);
            json_message(&mut out, "Hello, World!");
            let n = out.finish().unwrap_or(0);
            ("200 OK", "application/json", &small[..n], "")
        }
        Route::Index => (
            "200 OK",
            "text/plain; charset=utf-8",
            b"Hello from pollring! Try /plaintext, /json or POST /echo.\n",
            "",
        ),
        Route::Echo => ("200 OK", "application/octet-stream", body, ""),
        Route::Sleep { ms } => {
            let mut out = Out::new(small);
            out.put(b"slept ");
            out.put_u64(ms);
            out.put(b" ms\n");
            let n = out.finish().unwrap_or(0);
            ("200 OK", "text/plain", &small[..n], "")
        }
        Route::BadSleep => (
            "400 Bad Request",
            "text/plain",
            b"Bad Request: /sleep takes ms=N, N an integer up to 1000\n",
            "",
        ),
        Route::Unavailable => {
            ("503 Service Unavailable", "text/plain", b"Service Unavailable\n", "")
        }
        Route::NotFound => ("404 Not Found", "text/plain", b"Not Found\n", ""),
        Route::MethodNotAllowed { allow: "POST" } => {
            ("405 Method Not Allowed", "text/plain", b"Method Not Allowed\n", "Allow: POST\r\n")
        }
        Route::MethodNotAllowed { .. } => (
            "405 Method Not Allowed",
            "text/plain",
            b"Method Not Allowed\n",
            "Allow: GET, HEAD\r\n",
        ),
    };
    Response {
        status,
        content_type,
        body,
        extra,
        head_only: p.head_only,
        connection: connection_header(&p),
        date,
    }
}

/// Whole responses for the routes whose answer changes only with its
/// `Date` (`/plaintext`, `/json`, `/`), as sent to an HTTP/1.1 keep-alive
/// `GET`: rendered when the date changes (once a second, in `on_tick`) and
/// then copied whole into the output, one copy per request, instead of
/// being serialised piece by piece each time.
#[derive(Debug, Clone)]
struct Canned {
    plaintext: Vec<u8>,
    json: Vec<u8>,
    index: Vec<u8>,
}

impl Canned {
    fn render(date: &[u8]) -> Canned {
        let one = |route| {
            let p = Pending { route, head_only: false, keep_alive: true, version: Version::Http11 };
            let mut small = [0u8; 64];
            let res = response(p, &[], date, &mut small);
            let mut out = Vec::new();
            res.head(&mut out);
            out.put(res.body());
            out
        };
        Canned {
            plaintext: one(Route::Plaintext),
            json: one(Route::Json),
            index: one(Route::Index),
        }
    }

    /// The canned response to `p`, if it has one.
    fn get(&self, p: &Pending) -> Option<&[u8]> {
        if p.head_only || !p.keep_alive || p.version != Version::Http11 {
            return None;
        }
        match p.route {
            Route::Plaintext => Some(&self.plaintext),
            Route::Json => Some(&self.json),
            Route::Index => Some(&self.index),
            _ => None,
        }
    }
}

fn respond_error(cx: &mut Cx<'_>, date: &[u8], error: Error) {
    let (status, body): (_, &[u8]) = match error.status() {
        413 => ("413 Content Too Large", b"Content Too Large\n"),
        431 => ("431 Request Header Fields Too Large", b"Request Header Fields Too Large\n"),
        501 => ("501 Not Implemented", b"Not Implemented\n"),
        505 => ("505 HTTP Version Not Supported", b"HTTP Version Not Supported\n"),
        _ => ("400 Bad Request", b"Bad Request\n"),
    };
    Response {
        status,
        content_type: "text/plain",
        body,
        extra: "",
        head_only: false,
        connection: Some("close"),
        date,
    }
    .send(cx);
}

/// Serialises `{"message":"<msg>"}`, escaping as JSON requires.
fn json_message(out: &mut impl Put, msg: &str) {
    out.put(br#"{"message":""#);
    for &b in msg.as_bytes() {
        match b {
            b'"' => out.put(br#"\""#),
            b'\\' => out.put(br"\\"),
            0..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.put(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 15)],
                ]);
            }
            _ => out.put(&[b]),
        }
    }
    out.put(br#""}"#);
}

/// Where responses are serialised: a pool-backed [`pollring::Writer`], or
/// [`Out`] over a slice of it.
trait Put {
    fn put(&mut self, data: &[u8]);

    fn put_u64(&mut self, n: u64) {
        self.put(itoa::Buffer::new().format(n).as_bytes());
    }
}

impl Put for Vec<u8> {
    fn put(&mut self, data: &[u8]) {
        self.extend_from_slice(data);
    }
}

impl Put for pollring::Writer<'_> {
    fn put(&mut self, data: &[u8]) {
        pollring::Writer::put(self, data);
    }
}

/// A cursor writing into a fixed slice, remembering overflow instead of
/// panicking.
struct Out<'a> {
    buf: &'a mut [u8],
    len: usize,
    overflow: bool,
}

impl<'a> Out<'a> {
    fn new(buf: &'a mut [u8]) -> Out<'a> {
        Out { buf, len: 0, overflow: false }
    }

    /// Bytes written, or `None` if some did not fit.
    fn finish(self) -> Option<usize> {
        (!self.overflow).then_some(self.len)
    }
}

impl Put for Out<'_> {
    fn put(&mut self, data: &[u8]) {
        match self.buf.get_mut(self.len..self.len + data.len()) {
            Some(dst) if !self.overflow => {
                dst.copy_from_slice(data);
                self.len += data.len();
            }
            _ => self.overflow = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(f: impl FnOnce(&mut Out<'_>)) -> String {
        let mut buf = [0u8; 256];
        let mut out = Out::new(&mut buf);
        f(&mut out);
        let n = out.finish().expect("fits");
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    #[test]
    fn json_is_escaped() {
        assert_eq!(render(|o| json_message(o, "Hello, World!")), r#"{"message":"Hello, World!"}"#);
        assert_eq!(render(|o| json_message(o, "a\"b\\c\n")), r#"{"message":"a\"b\\c\u000a"}"#);
    }

    #[test]
    fn numbers() {
        for n in [0, 7, 10, 1234567890, u64::MAX] {
            assert_eq!(render(|o| o.put_u64(n)), n.to_string());
        }
    }

    #[test]
    fn overflow_is_reported_not_panicked() {
        let mut buf = [0u8; 4];
        let mut out = Out::new(&mut buf);
        out.put(b"abc");
        out.put(b"de");
        out.put(b"f");
        assert_eq!(out.finish(), None);
    }

    #[test]
    fn canned_responses_are_what_would_be_serialised() {
        let date = b"Sun, 06 Nov 1994 08:49:37 GMT";
        let canned = Canned::render(date);
        for route in [Route::Plaintext, Route::Json, Route::Index] {
            let p = Pending { route, head_only: false, keep_alive: true, version: Version::Http11 };
            let mut small = [0u8; 64];
            let res = response(p, &[], date, &mut small);
            let want = render(|o| {
                res.head(o);
                o.put(res.body());
            });
            assert_eq!(canned.get(&p), Some(want.as_bytes()), "{route:?}");
            // Not for HEAD, a close, or HTTP/1.0: those differ.
            for other in [
                Pending { head_only: true, ..p },
                Pending { keep_alive: false, ..p },
                Pending { version: Version::Http10, ..p },
            ] {
                assert_eq!(canned.get(&other), None);
            }
        }
        assert!(canned.get(&Pending { route: Route::NotFound, ..p_plain() }).is_none());
        assert!(String::from_utf8_lossy(&canned.plaintext).ends_with("\r\n\r\nHello, World!"));
    }

    fn p_plain() -> Pending {
        Pending {
            route: Route::Plaintext,
            head_only: false,
            keep_alive: true,
            version: Version::Http11,
        }
    }

    #[test]
    fn response_head() {
        let res = Response {
            status: "200 OK",
            content_type: "text/plain",
            body: b"Hello, World!",
            extra: "",
            head_only: false,
            connection: Some("close"),
            date: b"Sun, 06 Nov 1994 08:49:37 GMT",
        };
        assert_eq!(
            render(|o| res.head(o)),
            "HTTP/1.1 200 OK\r\nServer: pollring\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain\r\nContent-Length: 13\r\nConnection: close\r\n\r\n"
        );
    }
}
