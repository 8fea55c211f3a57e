//! Chat fan-out: `members` connections to the chat example on 2 workers;
//! one of them sends a line every `interval_ms`, each carrying its send
//! time; every other member records when it arrives.
//!
//! The members are spread over the workers by `SO_REUSEPORT` (one listener
//! per worker); the server reports how many each worker holds. All members
//! are read by one mio event loop on the client CPU, and a line's arrival
//! time is taken right after the `read` that completed it, so a figure
//! includes the client's own sequential reading of up to `members - 1`
//! sockets per line as well as the server's fan-out. After the lines, the
//! members stay connected and silent for `idle_secs` while the server's CPU
//! time (all threads, `/proc/PID/task/*/schedstat`) is sampled.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::{fail, histogram, servers, us, Placement};
use crate::compare::ServerProcess;
use crate::serve::{Impl, Service, Shape};

/// `scenario chat` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Servers: epoll, uring.
    #[arg(long, value_delimiter = ',', default_value = "epoll,uring")]
    servers: Vec<String>,
    /// Chat members, the sender included (this process and the server each
    /// hold one descriptor per member).
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// Server workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Lines recorded (after 10 unrecorded warm-up lines).
    #[arg(long, default_value_t = 200)]
    lines: usize,
    /// Milliseconds between two lines.
    #[arg(long, default_value_t = 5)]
    interval_ms: u64,
    /// Seconds of idle CPU measurement.
    #[arg(long, default_value_t = 5.0)]
    idle_secs: f64,
}

/// Lines sent before the recorded ones.
const WARMUP_LINES: usize = 10;

/// How long the last line may take to reach everyone.
const DRAIN: Duration = Duration::from_secs(5);

/// What one server measured.
#[derive(Debug)]
struct Outcome {
    server: Impl,
    per_worker: Vec<u64>,
    /// Delivery latency per (member, recorded line), ns.
    latency: Histogram<u64>,
    /// Per recorded line, the latency to its last member, ns.
    last: Histogram<u64>,
    delivered: u64,
    expected: u64,
    /// Server CPU per second of idle, ms.
    idle_cpu_ms_per_s: f64,
    idle_connections: u64,
    /// Server CPU per line sent (its whole fan-out), µs.
    server_us_per_line: f64,
    /// This process's CPU per line (reading every member), µs.
    client_us_per_line: f64,
}

/// Runs the chat scenario on each server and prints the table.
///
/// # Errors
/// A server that does not start or loses members, or a broken connection.
pub fn run(args: &Args) -> io::Result<()> {
    let place = Placement::pin()?;
    let mut outcomes = Vec::new();
    for server in servers(&args.servers)? {
        eprintln!("chat: {} ...", server.name());
        outcomes.push(one(args, &place, server)?);
    }
    println!(
        "## chat: {} members on {} workers, {} lines (+{WARMUP_LINES} warm-up) one every {} ms\n",
        args.members, args.workers, args.lines, args.interval_ms
    );
    println!("| server | members per worker | deliveries | p50 µs | p99 µs | p99.9 µs | max µs | last member per line p50 µs | p99 µs | server CPU µs/line | client CPU µs/line | idle CPU ms/s ({} s, {} members) |", args.idle_secs, args.members);
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in &outcomes {
        let per_worker = o.per_worker.iter().map(u64::to_string).collect::<Vec<_>>().join(" / ");
        println!(
            "| {} | {} | {} of {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.3} ({} open) |",
            o.server.name(),
            per_worker,
            o.delivered,
            o.expected,
            us(&o.latency, 0.5),
            us(&o.latency, 0.99),
            us(&o.latency, 0.999),
            o.latency.max() as f64 / 1000.0,
            us(&o.last, 0.5),
            us(&o.last, 0.99),
            o.server_us_per_line,
            o.client_us_per_line,
            o.idle_cpu_ms_per_s,
            o.idle_connections,
        );
    }
    println!(
        "\n{}. Latency: from the sender's write to the read that completed the line at a \
         member, over every (member, line) pair; it includes this process reading the \
         members one after another on one thread. 1,000 members need 1,000 descriptors \
         here and in the server (this machine allows 20,000 per process).",
        place.describe()
    );
    Ok(())
}

struct Member {
    stream: TcpStream,
    /// Bytes of a line not yet complete.
    partial: Vec<u8>,
    lines: u64,
}

fn one(args: &Args, place: &Placement, server: Impl) -> io::Result<Outcome> {
    let shape = Shape { workers: args.workers, cpus: place.server.clone(), offload_threads: None };
    let mut child = ServerProcess::start_with(&place.exe, server, Service::Chat, &shape, &[])?;
    let mut poll = Poll::new()?;
    let mut members = Vec::with_capacity(args.members);
    for i in 0..args.members.max(2) {
        let std = std::net::TcpStream::connect(child.addr)
            .map_err(|e| fail(format!("chat: member {i} could not connect: {e}")))?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std);
        poll.registry().register(&mut stream, Token(i), Interest::READABLE)?;
        members.push(Member { stream, partial: Vec::new(), lines: 0 });
    }
    // Every member must be a member (accepted and opened) before a line
    // goes out, or it would miss lines.
    let deadline = Instant::now() + Duration::from_secs(10);
    let per_worker = loop {
        let stats = child.stats()?;
        if stats["connections"].as_u64() == Some(members.len() as u64) {
            break stats["per_worker"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
                .unwrap_or_default();
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "chat: the server holds {} of {} members after 10 s",
                stats["connections"],
                members.len()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    };

    let pid = child.pid();
    let server_cpu0 = crate::proc::cpu_time(pid)?;
    let own_cpu0 = crate::proc::cpu_time(std::process::id())?;
    let base = Instant::now();
    let total_lines = WARMUP_LINES + args.lines;
    let interval = Duration::from_millis(args.interval_ms.max(1));
    let mut latency = histogram()?;
    let mut last = histogram()?;
    // Per line: the latest arrival so far.
    let mut slowest = vec![0u64; total_lines];
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut sent = 0usize;
    let mut next_send = Instant::now();
    let receivers = (members.len() - 1) as u64;
    let mut received = 0u64;
    let mut drain_until = None;
    loop {
        let now = Instant::now();
        if sent < total_lines && now >= next_send {
            let line = format!("{sent} {}\n", now.duration_since(base).as_nanos());
            write_all_nonblocking(&mut members[0].stream, line.as_bytes())?;
            sent += 1;
            next_send += interval;
            if sent == total_lines {
                drain_until = Some(Instant::now() + DRAIN);
            }
        }
        if received == receivers * total_lines as u64 {
            break;
        }
        let wait = match drain_until {
            Some(until) if now >= until => break,
            Some(until) => until - now,
            None => next_send.saturating_duration_since(now),
        };
        poll.poll(&mut events, Some(wait))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let m = &mut members[i];
            loop {
                let n = match m.stream.read(&mut buf) {
                    Ok(0) => return Err(fail(format!("chat: the server closed member {i}"))),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(fail(format!("chat: member {i}: {e}"))),
                };
                if i == 0 {
                    return Err(fail("chat: the sender got its own line back"));
                }
                let at = base.elapsed().as_nanos() as u64;
                m.partial.extend_from_slice(&buf[..n]);
                let mut start = 0;
                while let Some(nl) = m.partial[start..].iter().position(|&b| b == b'\n') {
                    let line = &m.partial[start..start + nl];
                    let (seq, stamp) = parse_line(line)
                        .ok_or_else(|| fail(format!("chat: member {i} got a bad line")))?;
                    m.lines += 1;
                    received += 1;
                    let took = at.saturating_sub(stamp);
                    if seq >= WARMUP_LINES {
                        let _ = latency.record(took.max(1000));
                    }
                    if let Some(s) = slowest.get_mut(seq) {
                        *s = (*s).max(took);
                    }
                    start += nl + 1;
                }
                m.partial.drain(..start);
                if n < buf.len() {
                    // Drained: a short read means the socket is empty now,
                    // and new bytes bring a new edge (saves a read per line).
                    break;
                }
            }
        }
    }
    for &s in &slowest[WARMUP_LINES.min(slowest.len())..] {
        let _ = last.record(s.max(1000));
    }
    let delivered = members.iter().skip(1).map(|m| m.lines).sum::<u64>();
    let per_line = |cpu: Duration| cpu.as_secs_f64() * 1e6 / total_lines as f64;
    let server_us_per_line = per_line(crate::proc::cpu_time(pid)?.saturating_sub(server_cpu0));
    let client_us_per_line =
        per_line(crate::proc::cpu_time(std::process::id())?.saturating_sub(own_cpu0));

    // Idle: everyone connected, nobody talks.
    std::thread::sleep(Duration::from_millis(300));
    let cpu0 = crate::proc::cpu_time(pid)?;
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.idle_secs.max(0.1)));
    let cpu1 = crate::proc::cpu_time(pid)?;
    let idle_secs = t0.elapsed().as_secs_f64();
    let idle_connections = child.stats()?["connections"].as_u64().unwrap_or(0);
    drop(members);
    child.stop()?;
    Ok(Outcome {
        server,
        per_worker,
        latency,
        last,
        delivered,
        expected: receivers * total_lines as u64,
        idle_cpu_ms_per_s: cpu1.saturating_sub(cpu0).as_secs_f64() * 1000.0 / idle_secs,
        idle_connections,
        server_us_per_line,
        client_us_per_line,
    })
}

/// `SEQ NANOS` of one line (without its `\n`).
fn parse_line(line: &[u8]) -> Option<(usize, u64)> {
    let text = std::str::from_utf8(line).ok()?;
    let (seq, stamp) = text.split_once(' ')?;
    Some((seq.parse().ok()?, stamp.parse().ok()?))
}

/// Writes a short line on a non-blocking socket, waiting out a full send
/// buffer (which a sender of a few bytes every few ms never meets).
fn write_all_nonblocking(stream: &mut TcpStream, mut data: &[u8]) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !data.is_empty() {
        match stream.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(format!("chat: the sender could not write: {e}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_line;

    #[test]
    fn lines_carry_sequence_and_stamp() {
        assert_eq!(parse_line(b"12 3456789"), Some((12, 3_456_789)));
        assert_eq!(parse_line(b"12"), None);
        assert_eq!(parse_line(b"x 1"), None);
    }
}
