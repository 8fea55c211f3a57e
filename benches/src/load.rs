//! A closed-loop load generator on one thread (mio), for echo, HTTP and
//! RESP.
//!
//! Each connection keeps `depth` requests outstanding, in one of two ways:
//!
//! * **window** (`pipelined: false`): it sends `depth` requests at the start
//!   and one more each time a whole answer has come back;
//! * **batch** (`pipelined: true`): it sends `depth` requests in one write
//!   and the next `depth` only when all of them are answered, so a batch
//!   costs the generator one write and (usually) one read: cheap enough per
//!   request that the server, not the generator, is the limit.
//!
//! Every answer is parsed and checked, and a wrong one is counted in
//! [`LoadReport::corrupt`] (the caller fails the run on it); an answer that
//! cannot be parsed at all ends the run with an error.
//!
//! * Echo: a request is `size` bytes of a fixed pattern, its answer the same
//!   bytes.
//! * HTTP: a request is `GET /plaintext`; an answer is a status line and
//!   headers, then `Content-Length` bytes of body, and must be `200` with
//!   the body `Hello, World!`.
//! * RESP: connection `i` sends `GET key:i` ([`Proto::RespGet`], after one
//!   `SET` of the key before the run starts) or `SET key:i val:i`
//!   ([`Proto::RespSet`]). Replies are framed by their type (`+OK\r\n`,
//!   `$N\r\n…\r\n`, `$-1\r\n`, `-ERR …\r\n`, `:N\r\n`); a `GET` must answer
//!   the key's value, a `SET` `+OK`.
//!
//! Latency is from a request's send to the arrival of its answer's last
//! byte, recorded in an HDR histogram. Warm-up traffic is not recorded.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// The protocol spoken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Proto {
    /// Messages of `size` bytes echoed back.
    Echo,
    /// `GET /plaintext` over HTTP/1.1 keep-alive.
    Http,
    /// RESP `GET` of a key set before the run (one key per connection).
    RespGet,
    /// RESP `SET` of a key (one per connection).
    RespSet,
}

impl Proto {
    /// Parses a `load --proto` value.
    ///
    /// # Errors
    /// The value is none of `echo`, `http`, `resp-get`, `resp-set`.
    pub fn parse(s: &str) -> Result<Proto, String> {
        match s {
            "echo" => Ok(Proto::Echo),
            "http" => Ok(Proto::Http),
            "resp-get" => Ok(Proto::RespGet),
            "resp-set" => Ok(Proto::RespSet),
            _ => Err(format!("unknown protocol {s:?}: expected echo, http, resp-get or resp-set")),
        }
    }
}

/// Where a run is, for [`run_with`]'s hook. A run goes warm-up, count
/// window (if [`LoadSpec::count`] is not zero), recorded window. Each window
/// starts when the hook returns, so time spent in the hook is in neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The count window starts: the caller may start an intrusive counter
    /// (`perf`) whose cost must stay out of the recorded window.
    CountStart,
    /// The count window is over.
    CountEnd,
    /// The recorded window starts now.
    Recording,
    /// The recorded window is over (connections still open).
    Done,
}

/// The HTTP request the load sends.
const HTTP_REQUEST: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: pollring-bench\r\n\r\n";

/// The body of every `/plaintext` answer.
const PLAINTEXT_BODY: &[u8] = b"Hello, World!";

/// Longest HTTP head or RESP line accepted before the answer is declared
/// unparseable.
const MAX_FRAME_HEAD: usize = 8 * 1024;

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Protocol.
    pub proto: Proto,
    /// Server address.
    pub addr: SocketAddr,
    /// Concurrent connections.
    pub connections: usize,
    /// Bytes per echo message (other protocols: unused).
    pub size: usize,
    /// Requests outstanding per connection (1: no pipelining).
    pub depth: usize,
    /// Send the `depth` requests as one batch, the next batch when all are
    /// answered (see the module docs).
    pub pipelined: bool,
    /// Unrecorded warm-up, the count window included.
    pub warmup: Duration,
    /// The end of the warm-up, answers counted in
    /// [`LoadReport::counted`] (zero: no count window).
    pub count: Duration,
    /// Recorded run.
    pub duration: Duration,
}

/// What a run measured.
#[derive(Debug)]
pub struct LoadReport {
    /// Answers received and checked in the recorded window.
    pub messages: u64,
    /// Answers received and checked in the count window.
    pub counted: u64,
    /// Length of the recorded window.
    pub elapsed: Duration,
    /// Latency in nanoseconds.
    pub latency: Histogram<u64>,
    /// CPU time the generator itself used during the window.
    pub self_cpu: Duration,
    /// Wrong answers over the whole run, warm-up included (must be 0): echoed
    /// bytes that differed from what was sent, HTTP answers other than `200
    /// Hello, World!`, RESP replies other than the expected one, answers to
    /// requests never sent.
    pub corrupt: u64,
}

impl LoadReport {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

/// One connection of the load.
struct Conn {
    stream: TcpStream,
    /// Send times of the requests not yet answered, oldest first.
    sent_at: VecDeque<Instant>,
    /// This connection's request, `depth + 1` times (a partial write
    /// resumes mid-request).
    out: Vec<u8>,
    /// Bytes of one request.
    request_len: usize,
    /// Bytes written so far, modulo `request_len`.
    offset: usize,
    /// Bytes owed to the server.
    unsent: usize,
    writable: bool,
    /// The answers' parser.
    answers: Answers,
}

/// How a connection's answers are framed and checked.
enum Answers {
    /// Echo: bytes received of the current message, and the message.
    Echo { partial: usize, message: Vec<u8> },
    /// HTTP: bytes of answers not yet complete.
    Http { pending: Vec<u8> },
    /// RESP: bytes of replies not yet complete, and the one right reply.
    Resp { pending: Vec<u8>, expect: Vec<u8> },
}

/// Runs the load and reports.
///
/// # Errors
/// If connecting fails, a connection breaks during the run, or an answer
/// cannot be parsed.
pub fn run(spec: &LoadSpec) -> io::Result<LoadReport> {
    run_with(spec, &mut |_| {})
}

/// [`run`], calling `hook` when the recorded window starts and ends, so the
/// caller can sample a server's counters over exactly that window.
///
/// # Errors
/// If connecting fails, a connection breaks during the run, or an answer
/// cannot be parsed.
pub fn run_with(spec: &LoadSpec, hook: &mut dyn FnMut(Phase)) -> io::Result<LoadReport> {
    let depth = spec.depth.max(1);
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(spec.connections);
    for i in 0..spec.connections {
        let mut std = std::net::TcpStream::connect(spec.addr)?;
        std.set_nodelay(true)?;
        if spec.proto == Proto::RespGet {
            preload(&mut std, i)?;
        }
        std.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std);
        poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        let (request, answers) = request_and_answers(spec, i);
        conns.push(Conn {
            stream,
            sent_at: VecDeque::with_capacity(depth),
            out: request.repeat(depth + 1),
            request_len: request.len(),
            offset: 0,
            unsent: 0,
            writable: true,
            answers,
        });
    }
    let mut inbuf = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(1024);
    let mut hist =
        Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).map_err(io::Error::other)?;
    let start = Instant::now();
    let count = spec.count.min(spec.warmup);
    // Where the run is, and when that stage ends.
    let mut stage = Stage::Warm;
    let mut stage_end = start + (spec.warmup - count);
    let mut record_from = stage_end;
    let mut messages = 0u64;
    let mut counted = 0u64;
    let mut corrupt = 0u64;
    let mut cpu_at_start = Duration::ZERO;
    let now = Instant::now();
    for c in &mut conns {
        for _ in 0..depth {
            c.sent_at.push_back(now);
        }
        c.unsent = c.request_len * depth;
        flush(c)?;
    }
    loop {
        let now = Instant::now();
        if now >= stage_end {
            if stage == Stage::Warm && !count.is_zero() {
                hook(Phase::CountStart);
                stage = Stage::Count;
                stage_end = Instant::now() + count;
                continue;
            }
            if stage == Stage::Count {
                hook(Phase::CountEnd);
            }
            if stage == Stage::Record {
                break;
            }
            hook(Phase::Recording);
            cpu_at_start = crate::proc::cpu_time(std::process::id())?;
            stage = Stage::Record;
            record_from = Instant::now();
            stage_end = record_from + spec.duration;
            continue;
        }
        poll.poll(&mut events, Some(stage_end - now))?;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if ev.is_writable() {
                c.writable = true;
                flush(c)?;
            }
            if !ev.is_readable() {
                continue;
            }
            loop {
                let n = match c.stream.read(&mut inbuf) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "server closed a connection",
                        ))
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                let now = Instant::now();
                let answers = c.answers.feed(&inbuf[..n], &mut corrupt)?;
                for _ in 0..answers {
                    let Some(sent) = c.sent_at.pop_front() else {
                        // An answer to a request never sent.
                        corrupt += 1;
                        continue;
                    };
                    match stage {
                        Stage::Warm => {}
                        Stage::Count => counted += 1,
                        Stage::Record => {
                            messages += 1;
                            let _ = hist.record((now - sent).as_nanos() as u64);
                        }
                    }
                    if !spec.pipelined {
                        c.sent_at.push_back(now);
                        c.unsent += c.request_len;
                    }
                }
                if spec.pipelined && c.sent_at.is_empty() {
                    // The batch is answered: send the next one. Nothing more
                    // is owed, so skip the read that would only say EAGAIN
                    // (the next batch's answers raise a new edge).
                    c.sent_at.extend(std::iter::repeat_n(now, depth));
                    c.unsent += c.request_len * depth;
                    break;
                }
            }
            if c.writable {
                flush(c)?;
            }
        }
    }
    hook(Phase::Done);
    let elapsed = Instant::now().saturating_duration_since(record_from);
    let self_cpu = crate::proc::cpu_time(std::process::id())?.saturating_sub(cpu_at_start);
    Ok(LoadReport { messages, counted, elapsed, latency: hist, self_cpu, corrupt })
}

/// The stages of a run (see [`Phase`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    Warm,
    Count,
    Record,
}

/// RESP key of connection `i`.
fn resp_key(i: usize) -> String {
    format!("key:{i:06}")
}

/// RESP value of connection `i`'s key: 16 bytes, different for each key.
fn resp_value(i: usize) -> String {
    format!("val:{i:012}")
}

/// A RESP request (an array of bulk strings).
fn resp_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

/// Connection `i`'s request, and the parser (with the right answer) for its
/// answers.
fn request_and_answers(spec: &LoadSpec, i: usize) -> (Vec<u8>, Answers) {
    match spec.proto {
        Proto::Echo => {
            // A recognisable pattern, so that corruption shows.
            let message: Vec<u8> = (0..spec.size.max(1)).map(|i| b'a' + (i % 26) as u8).collect();
            (message.clone(), Answers::Echo { partial: 0, message })
        }
        Proto::Http => (HTTP_REQUEST.to_vec(), Answers::Http { pending: Vec::new() }),
        Proto::RespGet => {
            let value = resp_value(i);
            let expect = format!("${}\r\n{value}\r\n", value.len()).into_bytes();
            (resp_command(&["GET", &resp_key(i)]), Answers::Resp { pending: Vec::new(), expect })
        }
        Proto::RespSet => (
            resp_command(&["SET", &resp_key(i), &resp_value(i)]),
            Answers::Resp { pending: Vec::new(), expect: b"+OK\r\n".to_vec() },
        ),
    }
}

/// Sets connection `i`'s key, so its `GET`s have a value to answer.
fn preload(stream: &mut std::net::TcpStream, i: usize) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(&resp_command(&["SET", &resp_key(i), &resp_value(i)]))?;
    let mut reply = [0u8; 5];
    stream.read_exact(&mut reply)?;
    stream.set_read_timeout(None)?;
    if &reply != b"+OK\r\n" {
        return Err(io::Error::other(format!(
            "SET before the GET load answered {:?}",
            String::from_utf8_lossy(&reply)
        )));
    }
    Ok(())
}

impl Answers {
    /// Takes the bytes `data` just read and returns how many answers they
    /// complete; wrong answers are also counted in `corrupt`.
    ///
    /// # Errors
    /// `InvalidData` when the bytes cannot be an answer of the protocol.
    fn feed(&mut self, data: &[u8], corrupt: &mut u64) -> io::Result<usize> {
        match self {
            Answers::Echo { partial, message } => Ok(echo_answers(partial, message, data, corrupt)),
            Answers::Http { pending } => frames(pending, data, corrupt, http_frame),
            Answers::Resp { pending, expect } => {
                frames(pending, data, corrupt, |buf| resp_frame(buf, expect))
            }
        }
    }
}

/// Counts the echo messages `data` completes, checking their bytes.
fn echo_answers(partial: &mut usize, message: &[u8], mut data: &[u8], corrupt: &mut u64) -> usize {
    let mut done = 0;
    while !data.is_empty() {
        let take = (message.len() - *partial).min(data.len());
        if data[..take] != message[*partial..*partial + take] {
            *corrupt += 1;
        }
        *partial += take;
        data = &data[take..];
        if *partial == message.len() {
            *partial = 0;
            done += 1;
        }
    }
    done
}

/// One answer at the start of a buffer: `Ok(None)` while incomplete, else
/// its length and whether it is the right answer.
type Frame = Result<Option<(usize, bool)>, String>;

/// Splits `pending` + `data` into whole answers with `frame`, counts them
/// (wrong ones also into `corrupt`) and keeps an incomplete tail in
/// `pending`. Bytes are copied only when an answer spans two reads.
fn frames(
    pending: &mut Vec<u8>,
    data: &[u8],
    corrupt: &mut u64,
    mut frame: impl FnMut(&[u8]) -> Frame,
) -> io::Result<usize> {
    let mut count = |buf: &[u8]| -> io::Result<(usize, usize)> {
        let (mut at, mut done) = (0, 0);
        while at < buf.len() {
            match frame(&buf[at..]) {
                Ok(Some((len, right))) => {
                    at += len;
                    done += 1;
                    if !right {
                        *corrupt += 1;
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            }
        }
        Ok((at, done))
    };
    if pending.is_empty() {
        let (at, done) = count(data)?;
        pending.extend_from_slice(&data[at..]);
        Ok(done)
    } else {
        pending.extend_from_slice(data);
        let (at, done) = count(pending)?;
        pending.drain(..at);
        Ok(done)
    }
}

/// The position of the first `\n` in `buf`.
fn find_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|&b| b == b'\n')
}

/// One HTTP/1.1 answer to `GET /plaintext`: status line, headers up to the
/// empty line, then `Content-Length` bytes of body. Right if the status is
/// 200 and the body `Hello, World!`.
fn http_frame(buf: &[u8]) -> Frame {
    const PREFIX: &[u8] = b"HTTP/1.";
    let n = buf.len().min(PREFIX.len());
    if buf[..n] != PREFIX[..n] {
        return Err(format!("not an HTTP/1 response: {:?}", excerpt(buf)));
    }
    // Walk the head line by line: find its end and the Content-Length.
    let mut at = 0;
    let mut length = None;
    let head_end = loop {
        let Some(nl) = find_newline(&buf[at..]) else {
            if buf.len() > MAX_FRAME_HEAD {
                return Err(format!(
                    "an HTTP head over {MAX_FRAME_HEAD} bytes: {:?}",
                    excerpt(buf)
                ));
            }
            return Ok(None);
        };
        let line = &buf[at..at + nl];
        at += nl + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break at;
        }
        if length.is_none() {
            length = header_value(line, b"content-length");
        }
    };
    let length: usize = length
        .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
        .ok_or_else(|| format!("an HTTP response without Content-Length: {:?}", excerpt(buf)))?;
    let total = head_end + length;
    if buf.len() < total {
        return Ok(None);
    }
    let right =
        buf.get(9..13) == Some(b"200 ".as_slice()) && &buf[head_end..total] == PLAINTEXT_BODY;
    Ok(Some((total, right)))
}

/// The value of header `line` if its name is `name` (lower case).
fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    line[..colon].eq_ignore_ascii_case(name).then(|| &line[colon + 1..])
}

/// One RESP2 reply: a simple string, error or integer line, or a bulk
/// string (`$-1` for nil). Right if it is `expect`, byte for byte.
fn resp_frame(buf: &[u8], expect: &[u8]) -> Frame {
    let Some(&kind) = buf.first() else { return Ok(None) };
    let Some(nl) = find_newline(buf) else {
        if buf.len() > MAX_FRAME_HEAD {
            return Err(format!("a RESP line over {MAX_FRAME_HEAD} bytes: {:?}", excerpt(buf)));
        }
        return Ok(None);
    };
    if nl == 0 || buf[nl - 1] != b'\r' {
        return Err(format!("a RESP line not ended by CRLF: {:?}", excerpt(buf)));
    }
    let line_len = nl + 1;
    let total = match kind {
        b'+' | b'-' | b':' => line_len,
        b'$' => {
            let n: i64 = std::str::from_utf8(&buf[1..nl - 1])
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("a bad RESP bulk length: {:?}", excerpt(buf)))?;
            match usize::try_from(n) {
                Err(_) if n == -1 => line_len,
                Err(_) => return Err(format!("a bad RESP bulk length: {:?}", excerpt(buf))),
                Ok(n) => {
                    let total = line_len + n + 2;
                    if buf.len() < total {
                        return Ok(None);
                    }
                    if &buf[total - 2..total] != b"\r\n" {
                        return Err(format!(
                            "a RESP bulk string not ended by CRLF: {:?}",
                            excerpt(buf)
                        ));
                    }
                    total
                }
            }
        }
        _ => return Err(format!("not a RESP reply to GET or SET: {:?}", excerpt(buf))),
    };
    Ok(Some((total, &buf[..total] == expect)))
}

/// The start of `buf`, for an error message.
fn excerpt(buf: &[u8]) -> String {
    String::from_utf8_lossy(&buf[..buf.len().min(80)]).into_owned()
}

/// The `Content-Length` of an HTTP head, if it has one.
pub(crate) fn content_length(head: &[u8]) -> Option<usize> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        std::str::from_utf8(header_value(line, b"content-length")?).ok()?.trim().parse().ok()
    })
}

/// Writes as much of the connection's owed bytes as the socket takes.
fn flush(c: &mut Conn) -> io::Result<()> {
    while c.unsent > 0 {
        let n = c.unsent.min(c.out.len() - c.offset);
        match c.stream.write(&c.out[c.offset..c.offset + n]) {
            Ok(w) => {
                c.unsent -= w;
                c.offset = (c.offset + w) % c.request_len;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                c.writable = false;
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` to `answers` in pieces of every size from 1 up, and
    /// returns (answers, corrupt) for each split, which must all agree.
    fn feed_split(make: impl Fn() -> Answers, wire: &[u8]) -> (usize, u64) {
        let mut first = None;
        for piece in 1..=wire.len() {
            let mut a = make();
            let (mut done, mut corrupt) = (0, 0);
            for chunk in wire.chunks(piece) {
                done += a.feed(chunk, &mut corrupt).unwrap();
            }
            let got = (done, corrupt);
            assert_eq!(*first.get_or_insert(got), got, "split into pieces of {piece}");
        }
        first.unwrap_or((0, 0))
    }

    fn http() -> Answers {
        Answers::Http { pending: Vec::new() }
    }

    const OK_200: &[u8] = b"HTTP/1.1 200 OK\r\nServer: x\r\ncontent-length: 13\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\nHello, World!";

    #[test]
    fn http_answers_are_counted_across_any_split() {
        let wire = [OK_200, OK_200, OK_200].concat();
        assert_eq!(feed_split(http, &wire), (3, 0));
    }

    #[test]
    fn wrong_http_answers_are_corrupt() {
        let not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\n\r\nHello, World!";
        let wrong_body = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!";
        let wire = [OK_200, not_found, wrong_body, OK_200].concat();
        assert_eq!(feed_split(http, &wire), (4, 2));
        let mut corrupt = 0;
        let err = http().feed(b"SSH-2.0-OpenSSH\r\n", &mut corrupt).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        let no_length = b"HTTP/1.1 200 OK\r\n\r\n";
        assert!(http().feed(no_length, &mut corrupt).is_err());
    }

    fn get_reply() -> Answers {
        Answers::Resp { pending: Vec::new(), expect: b"$16\r\nval:000000000007\r\n".to_vec() }
    }

    #[test]
    fn resp_replies_are_counted_and_checked_across_any_split() {
        let right = b"$16\r\nval:000000000007\r\n".as_slice();
        let wire =
            [right, right, b"$-1\r\n", b"+OK\r\n", b"-ERR no\r\n", b":1\r\n", right].concat();
        assert_eq!(feed_split(get_reply, &wire), (7, 4));
        let other_value = b"$16\r\nval:000000000008\r\n";
        assert_eq!(feed_split(get_reply, other_value), (1, 1));
        // A bulk string holding CRLF and a `$` is one reply.
        let tricky = Answers::Resp { pending: Vec::new(), expect: Vec::new() };
        let mut corrupt = 0;
        let mut t = tricky;
        assert_eq!(t.feed(b"$6\r\n\r\n$1\r\n\r\n", &mut corrupt).unwrap(), 1);
        assert_eq!(corrupt, 1);
        assert!(get_reply().feed(b"*2\r\n", &mut corrupt).is_err());
        assert!(get_reply().feed(b"$3\r\nabcde\r\n", &mut corrupt).is_err());
    }

    #[test]
    fn resp_requests_are_well_formed() {
        assert_eq!(
            resp_command(&["SET", &resp_key(7), &resp_value(7)]),
            b"*3\r\n$3\r\nSET\r\n$10\r\nkey:000007\r\n$16\r\nval:000000000007\r\n"
        );
    }

    #[test]
    fn content_length_is_found_in_any_case() {
        assert_eq!(content_length(b"HTTP/1.1 200 OK\r\nCONTENT-length:  42\r\n"), Some(42));
        assert_eq!(content_length(b"HTTP/1.1 200 OK\r\nX: 1\r\n"), None);
    }
}
