//! A closed-loop load generator on one thread (mio), for echo and HTTP.
//!
//! Each connection keeps `depth` requests outstanding: it sends `depth` at
//! the start and one more each time a whole answer has come back. For echo a
//! request is `size` bytes and its answer the same bytes (checked); for HTTP
//! a request is `GET /plaintext` and its answer a whole response (status
//! checked, body skipped by its `Content-Length`). Latency is from a
//! request's send to the arrival of its answer's last byte, recorded in an
//! HDR histogram. Warm-up traffic is not recorded.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// The protocol spoken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// Messages of `size` bytes echoed back.
    Echo,
    /// `GET /plaintext` over HTTP/1.1 keep-alive.
    Http,
}

/// Where a run is, for [`run_with`]'s hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Warm-up is over: the recorded window starts now.
    Recording,
    /// The recorded window is over (connections still open).
    Done,
}

/// The HTTP request the load sends.
const HTTP_REQUEST: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: pollring-bench\r\n\r\n";

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// Protocol.
    pub proto: Proto,
    /// Server address.
    pub addr: SocketAddr,
    /// Concurrent connections.
    pub connections: usize,
    /// Bytes per message.
    pub size: usize,
    /// Messages outstanding per connection (1: no pipelining).
    pub depth: usize,
    /// Unrecorded warm-up.
    pub warmup: Duration,
    /// Recorded run.
    pub duration: Duration,
}

/// What a run measured.
#[derive(Debug)]
pub struct LoadReport {
    /// Messages echoed in the recorded window.
    pub messages: u64,
    /// Length of the recorded window.
    pub elapsed: Duration,
    /// Latency in nanoseconds.
    pub latency: Histogram<u64>,
    /// CPU time the generator itself used during the window.
    pub self_cpu: Duration,
    /// Echoed bytes that differed from what was sent, or HTTP answers that
    /// were not `200` (must be 0).
    pub corrupt: u64,
}

impl LoadReport {
    /// Messages per second.
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }
}

struct Conn {
    stream: TcpStream,
    sent_at: VecDeque<Instant>,
    /// Bytes of the current message received so far (echo).
    partial: usize,
    /// Bytes of answers not yet complete (HTTP).
    pending: Vec<u8>,
    /// Bytes still to write.
    unsent: usize,
    writable: bool,
}

/// Runs the load and reports.
///
/// # Errors
/// If connecting fails or a connection breaks during the run.
pub fn run(spec: &LoadSpec) -> io::Result<LoadReport> {
    run_with(spec, &mut |_| {})
}

/// [`run`], calling `hook` when the recorded window starts and ends, so the
/// caller can sample a server's counters over exactly that window.
///
/// # Errors
/// If connecting fails or a connection breaks during the run.
pub fn run_with(spec: &LoadSpec, hook: &mut dyn FnMut(Phase)) -> io::Result<LoadReport> {
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(spec.connections);
    for i in 0..spec.connections {
        let std = std::net::TcpStream::connect(spec.addr)?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std);
        poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        conns.push(Conn {
            stream,
            sent_at: VecDeque::with_capacity(spec.depth),
            partial: 0,
            pending: Vec::new(),
            unsent: 0,
            writable: true,
        });
    }
    // Every echo message is the same recognisable pattern, so corruption
    // shows; every HTTP request the same GET.
    let message: Vec<u8> = match spec.proto {
        Proto::Echo => (0..spec.size).map(|i| b'a' + (i % 26) as u8).collect(),
        Proto::Http => HTTP_REQUEST.to_vec(),
    };
    let size = message.len();
    let out = message.repeat(spec.depth.max(1));
    let mut inbuf = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(1024);
    let mut hist =
        Histogram::<u64>::new_with_bounds(1_000, 60_000_000_000, 3).map_err(io::Error::other)?;
    let start = Instant::now();
    let record_from = start + spec.warmup;
    let end = record_from + spec.duration;
    let mut messages = 0u64;
    let mut corrupt = 0u64;
    let mut cpu_at_start = None;
    let now = Instant::now();
    for c in &mut conns {
        for _ in 0..spec.depth {
            c.sent_at.push_back(now);
        }
        c.unsent = size * spec.depth;
        flush(c, &out)?;
    }
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if cpu_at_start.is_none() && now >= record_from {
            hook(Phase::Recording);
            cpu_at_start = Some(crate::proc::cpu_time(std::process::id())?);
        }
        poll.poll(&mut events, Some(end - now))?;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            if ev.is_writable() {
                c.writable = true;
                flush(c, &out)?;
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
                let answers = match spec.proto {
                    Proto::Echo => echo_answers(c, &inbuf[..n], &message, &mut corrupt),
                    Proto::Http => http_answers(c, &inbuf[..n], &mut corrupt),
                };
                for _ in 0..answers {
                    let sent = c.sent_at.pop_front().unwrap_or(now);
                    if now >= record_from {
                        messages += 1;
                        let _ = hist.record((now - sent).as_nanos() as u64);
                    }
                    c.sent_at.push_back(now);
                    c.unsent += size;
                }
            }
            if c.writable {
                flush(c, &out)?;
            }
        }
    }
    hook(Phase::Done);
    let elapsed = Instant::now().saturating_duration_since(record_from);
    let self_cpu =
        crate::proc::cpu_time(std::process::id())?.saturating_sub(cpu_at_start.unwrap_or_default());
    Ok(LoadReport { messages, elapsed, latency: hist, self_cpu, corrupt })
}

/// Counts the echo messages `data` completes, checking their bytes.
fn echo_answers(c: &mut Conn, mut data: &[u8], message: &[u8], corrupt: &mut u64) -> usize {
    let mut done = 0;
    while !data.is_empty() {
        let take = (message.len() - c.partial).min(data.len());
        if data[..take] != message[c.partial..c.partial + take] {
            *corrupt += 1;
        }
        c.partial += take;
        data = &data[take..];
        if c.partial == message.len() {
            c.partial = 0;
            done += 1;
        }
    }
    done
}

/// Counts the HTTP responses `data` completes (head, then `Content-Length`
/// bytes of body); a status other than 200 counts as corrupt.
fn http_answers(c: &mut Conn, data: &[u8], corrupt: &mut u64) -> usize {
    c.pending.extend_from_slice(data);
    let mut done = 0;
    let mut at = 0;
    loop {
        let rest = &c.pending[at..];
        let Some(head_end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else { break };
        let head = &rest[..head_end];
        let body = content_length(head).unwrap_or(0);
        let total = head_end + 4 + body;
        if rest.len() < total {
            break;
        }
        if !head.starts_with(b"HTTP/1.1 200") {
            *corrupt += 1;
        }
        at += total;
        done += 1;
    }
    c.pending.drain(..at);
    done
}

/// The `Content-Length` of an HTTP head, if it has one.
pub(crate) fn content_length(head: &[u8]) -> Option<usize> {
    head.split(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|&b| b == b':')?;
        if !line[..colon].eq_ignore_ascii_case(b"content-length") {
            return None;
        }
        std::str::from_utf8(&line[colon + 1..]).ok()?.trim().parse().ok()
    })
}

/// Writes as much of the connection's owed bytes as the socket takes.
fn flush(c: &mut Conn, out: &[u8]) -> io::Result<()> {
    while c.unsent > 0 {
        let n = c.unsent.min(out.len());
        match c.stream.write(&out[..n]) {
            Ok(w) => c.unsent -= w,
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
