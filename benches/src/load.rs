//! A closed-loop echo load generator on one thread (mio).
//!
//! Each connection keeps `depth` messages of `size` bytes outstanding: it
//! sends `depth` at the start and one more each time a whole message has come
//! back. Latency is from a message's send to the arrival of its last byte,
//! recorded in an HDR histogram. Warm-up traffic is not recorded.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadSpec {
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
    /// Echoed bytes that differed from what was sent (must be 0).
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
    /// Bytes of the current message received so far.
    partial: usize,
    /// Bytes still to write.
    unsent: usize,
    writable: bool,
}

/// Runs the load and reports.
///
/// # Errors
/// If connecting fails or a connection breaks during the run.
pub fn run(spec: &LoadSpec) -> io::Result<LoadReport> {
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
            unsent: 0,
            writable: true,
        });
    }
    // Every message is the same recognisable pattern, so corruption shows.
    let message: Vec<u8> = (0..spec.size).map(|i| b'a' + (i % 26) as u8).collect();
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
        c.unsent = spec.size * spec.depth;
        flush(c, &out)?;
    }
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        if cpu_at_start.is_none() && now >= record_from {
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
                let mut data = &inbuf[..n];
                while !data.is_empty() {
                    let take = (spec.size - c.partial).min(data.len());
                    if data[..take] != message[c.partial..c.partial + take] {
                        corrupt += 1;
                    }
                    c.partial += take;
                    data = &data[take..];
                    if c.partial == spec.size {
                        c.partial = 0;
                        let sent = c.sent_at.pop_front().unwrap_or(now);
                        if now >= record_from {
                            messages += 1;
                            let _ = hist.record((now - sent).as_nanos() as u64);
                        }
                        c.sent_at.push_back(now);
                        c.unsent += spec.size;
                    }
                }
            }
            if c.writable {
                flush(c, &out)?;
            }
        }
    }
    let elapsed = Instant::now().saturating_duration_since(record_from);
    let self_cpu =
        crate::proc::cpu_time(std::process::id())?.saturating_sub(cpu_at_start.unwrap_or_default());
    Ok(LoadReport { messages, elapsed, latency: hist, self_cpu, corrupt })
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
