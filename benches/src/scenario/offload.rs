//! Offload: `GET /sleep?ms=N` runs on the HTTP server's offload pool while
//! `/plaintext` load shares the same single worker.
//!
//! `sleepers` connections each send `rounds` sequential `GET /sleep`
//! (keep-alive, one at a time); at the same time `plaintext` other
//! connections run a closed loop of `GET /plaintext` at depth 1. Both are
//! driven by one mio event loop here. `/plaintext` latencies are recorded
//! only while sleeps are in progress. The run is repeated for each
//! `--offload-threads` value: with fewer threads than sleepers the sleeps
//! queue for the pool, which the `/sleep` latency shows.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::{fail, histogram, servers, us, Placement, Responses};
use crate::compare::ServerProcess;
use crate::serve::{Impl, Service, Shape};

/// `scenario offload` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Servers: epoll, uring.
    #[arg(long, value_delimiter = ',', default_value = "epoll,uring")]
    servers: Vec<String>,
    /// Offload pool limits to run with (64 is pollring's default; the pool
    /// grows to what is in flight, up to the limit).
    #[arg(long, value_delimiter = ',', default_value = "64")]
    offload_threads: Vec<usize>,
    /// Connections doing `GET /sleep`.
    #[arg(long, default_value_t = 40)]
    sleepers: usize,
    /// Sequential `/sleep` requests per sleeping connection.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Milliseconds each `/sleep` sleeps.
    #[arg(long, default_value_t = 20)]
    sleep_ms: u64,
    /// Connections running `/plaintext` at depth 1.
    #[arg(long, default_value_t = 16)]
    plaintext: usize,
}

/// The longest a run may take before it counts as failed.
const LIMIT: Duration = Duration::from_secs(60);

/// `/plaintext` alone, recorded apart, before the sleeps start.
const BASELINE: Duration = Duration::from_millis(1000);

const PLAINTEXT: &[u8] = b"GET /plaintext HTTP/1.1\r\nHost: pollring-bench\r\n\r\n";

struct Outcome {
    server: Impl,
    threads: usize,
    sleep: Histogram<u64>,
    plaintext: Histogram<u64>,
    /// `/plaintext` before the sleeps began.
    alone: Histogram<u64>,
    plaintext_rps: f64,
    wall: Duration,
    not_ok: u64,
}

struct Conn {
    stream: TcpStream,
    responses: Responses,
    sent_at: Instant,
    /// `/sleep` requests still to send (sleepers only).
    left: usize,
    sleeper: bool,
    busy: bool,
}

/// Runs the offload scenario for each server and pool size; prints the table.
///
/// # Errors
/// A server that does not start, a broken connection, or a run over 60 s.
pub fn run(args: &Args) -> io::Result<()> {
    let place = Placement::pin()?;
    let mut outcomes = Vec::new();
    for server in servers(&args.servers)? {
        for &threads in &args.offload_threads {
            eprintln!("offload: {} with {threads} offload threads ...", server.name());
            outcomes.push(one(args, &place, server, threads)?);
        }
    }
    println!(
        "## offload: 1 worker; {} connections x {} sequential `GET /sleep?ms={}` while {} connections run `GET /plaintext` at depth 1\n",
        args.sleepers, args.rounds, args.sleep_ms, args.plaintext
    );
    println!("| server | offload threads | /sleep p50 ms | /sleep p99 ms | /sleep max ms | /plaintext p50 µs | /plaintext p99 µs | /plaintext p99.9 µs | /plaintext req/s | alone: p50 µs | alone: p99 µs | sleeps took | not 200 |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for o in &outcomes {
        println!(
            "| {} | {} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2} s | {} |",
            o.server.name(),
            o.threads,
            us(&o.sleep, 0.5) / 1000.0,
            us(&o.sleep, 0.99) / 1000.0,
            o.sleep.max() as f64 / 1e6,
            us(&o.plaintext, 0.5),
            us(&o.plaintext, 0.99),
            us(&o.plaintext, 0.999),
            o.plaintext_rps,
            us(&o.alone, 0.5),
            us(&o.alone, 0.99),
            o.wall.as_secs_f64(),
            o.not_ok,
        );
    }
    println!(
        "\n{}. /sleep latency: request written to response read, per request. /plaintext: \
         recorded while sleeps were in progress; alone: the same load for 1 s before them. \
         The offload threads share the server's CPU with its worker.",
        place.describe()
    );
    Ok(())
}

fn one(args: &Args, place: &Placement, server: Impl, threads: usize) -> io::Result<Outcome> {
    let shape = Shape { workers: 1, cpus: place.server.clone(), offload_threads: Some(threads) };
    let child = ServerProcess::start_with(&place.exe, server, Service::Http, &shape, &[])?;
    let sleep_request =
        format!("GET /sleep?ms={} HTTP/1.1\r\nHost: pollring-bench\r\n\r\n", args.sleep_ms);
    let mut poll = Poll::new()?;
    let mut conns = Vec::new();
    for i in 0..args.sleepers + args.plaintext {
        let std = std::net::TcpStream::connect(child.addr)?;
        std.set_nodelay(true)?;
        std.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std);
        poll.registry().register(&mut stream, Token(i), Interest::READABLE)?;
        let sleeper = i < args.sleepers;
        conns.push(Conn {
            stream,
            responses: Responses::default(),
            sent_at: Instant::now(),
            left: if sleeper { args.rounds } else { 0 },
            sleeper,
            busy: false,
        });
    }
    let mut sleep = histogram()?;
    let mut plaintext = histogram()?;
    let mut plaintext_done = 0u64;
    let mut not_ok = 0u64;
    let start = Instant::now();
    let mut alone = histogram()?;
    // Plaintext first, alone for BASELINE (recorded apart), then the sleeps.
    for c in conns.iter_mut().filter(|c| !c.sleeper) {
        send(c, PLAINTEXT)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut sleeping = args.sleepers;
    let mut started = false;
    let mut sleeps_from = start;
    while sleeping > 0 {
        if !started && start.elapsed() >= BASELINE {
            started = true;
            plaintext_done = 0;
            sleeps_from = Instant::now();
            for c in conns.iter_mut().filter(|c| c.sleeper) {
                c.left -= 1;
                send(c, sleep_request.as_bytes())?;
            }
        }
        if start.elapsed() > LIMIT {
            return Err(fail("offload: the sleeps did not finish within 60 s"));
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            loop {
                let n = match c.stream.read(&mut buf) {
                    Ok(0) => return Err(fail("offload: the server closed a connection")),
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(fail(format!("offload: {e}"))),
                };
                let now = Instant::now();
                for status in c.responses.feed(&buf[..n]) {
                    not_ok += u64::from(status != 200);
                    c.busy = false;
                    let took = (now - c.sent_at).as_nanos() as u64;
                    if c.sleeper {
                        let _ = sleep.record(took.max(1000));
                        if c.left > 0 {
                            c.left -= 1;
                            send(c, sleep_request.as_bytes())?;
                        } else {
                            sleeping -= 1;
                        }
                    } else {
                        let h = if started { &mut plaintext } else { &mut alone };
                        let _ = h.record(took.max(1000));
                        plaintext_done += 1;
                        send(c, PLAINTEXT)?;
                    }
                }
            }
        }
    }
    let wall = sleeps_from.elapsed();
    drop(conns);
    child.stop()?;
    Ok(Outcome {
        server,
        threads,
        sleep,
        plaintext,
        alone,
        plaintext_rps: plaintext_done as f64 / wall.as_secs_f64(),
        wall,
        not_ok,
    })
}

/// Sends one request (a few dozen bytes: a socket with nothing in flight
/// takes it whole) and notes when.
fn send(c: &mut Conn, request: &[u8]) -> io::Result<()> {
    if c.busy {
        return Err(fail("offload: a request sent before the previous answer"));
    }
    let mut data = request;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !data.is_empty() {
        match c.stream.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail(format!("offload: could not send a request: {e}"))),
        }
    }
    c.sent_at = Instant::now();
    c.busy = true;
    Ok(())
}
