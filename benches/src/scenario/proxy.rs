//! The L4 proxy (`pollring_examples::proxy`, 1 worker; or the tokio
//! baseline) in front of an upstream, four checks:
//!
//! * **added latency**: 64-byte echo round trips at depth 1 on one
//!   connection straight to the upstream echo server and one through the
//!   proxy, alternated, p50 of each;
//! * **bulk**: 1 GiB through the proxy to the echo upstream and back, a
//!   writer thread sending a deterministic pattern while this thread reads
//!   and checks every byte (both directions at once);
//! * **a client that does not read**: an upstream thread here writes
//!   `FLOOD` bytes at a client that reads nothing for 5 s while the proxy's
//!   RSS is sampled; then the client reads it all (checked) up to EOF;
//! * **half-close**: 100 clients at once send a request, `shutdown(Write)`,
//!   and must read the echoed request, then EOF.
//!
//! The upstream echo server is pollring on epoll (1 worker), on the client
//! CPU as in `compare`; the proxy has its CPU to itself.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use super::{fail, histogram, servers, us, Placement};
use crate::compare::ServerProcess;
use crate::serve::{Impl, Service, Shape};

/// `scenario proxy` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Proxies: epoll, uring, tokio.
    #[arg(long, value_delimiter = ',', default_value = "epoll,uring,tokio")]
    servers: Vec<String>,
    /// Round trips per path (direct, proxied) for the added latency.
    #[arg(long, default_value_t = 20_000)]
    round_trips: usize,
    /// MiB sent through the proxy (and back) in the bulk check.
    #[arg(long, default_value_t = 1024)]
    bulk_mib: usize,
    /// Seconds the flooded client does not read.
    #[arg(long, default_value_t = 5.0)]
    stall_secs: f64,
    /// Run the proxy on the clients' CPU too (with the upstream): the added
    /// latency is then the proxy's own work, without the cost of waking a
    /// second, idle CPU twice per round trip.
    #[arg(long)]
    same_cpu: bool,
}

/// Bytes the flooding upstream writes before it closes.
const FLOOD: usize = 64 * 1024 * 1024;

/// Period of the test pattern (a prime, so it does not line up with any
/// buffer size).
const PERIOD: usize = 65_521;

/// Byte `i` of the pattern, as a slice source: `pattern()[i % PERIOD..]`.
fn pattern() -> Vec<u8> {
    let mut x = 0x9e37_79b9_u32;
    let block: Vec<u8> = (0..PERIOD)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect();
    block.repeat(2)
}

#[derive(Debug)]
struct Outcome {
    server: Impl,
    direct_p50_us: f64,
    far_p50_us: f64,
    proxied_p50_us: f64,
    proxied_p99_us: f64,
    bulk_mib_s: f64,
    flood_rss_peak: u64,
    flood_buffered_peak: Option<u64>,
    flood_read_all: bool,
    half_close_ok: usize,
}

/// Runs the proxy checks on each server and prints the table.
///
/// # Errors
/// A server that does not start, or a check that breaks (a wrong byte, a
/// reset, a timeout) with a message naming it.
pub fn run(args: &Args) -> io::Result<()> {
    let place = Placement::pin()?;
    let up_shape = Shape { workers: 1, cpus: place.load.clone(), offload_threads: None };
    let upstream =
        ServerProcess::start_with(&place.exe, Impl::Epoll, Service::Echo, &up_shape, &[])?;
    // The same echo server on the proxy's CPU: a direct path that crosses
    // CPUs as the proxied one does.
    let far_shape = Shape { workers: 1, cpus: place.server.clone(), offload_threads: None };
    let far = ServerProcess::start_with(&place.exe, Impl::Epoll, Service::Echo, &far_shape, &[])?;
    let mut outcomes = Vec::new();
    for server in servers(&args.servers)? {
        eprintln!("proxy: {} ...", server.name());
        outcomes.push(one(args, &place, server, upstream.addr, far.addr)?);
    }
    upstream.stop()?;
    far.stop()?;
    let on = if args.same_cpu { "on the clients' CPU" } else { "on its own CPU" };
    println!("## proxy: 1 worker {on}, upstream pollring-epoll echo\n");
    println!("| proxy | echo p50 direct µs | direct to proxy's CPU µs | p50 via proxy µs | added p50 µs | p99 via proxy µs | {} MiB each way MiB/s | byte-exact | client not reading: RSS peak over baseline | buffered_peak | then read all {} MiB, no reset | FIN, reply, EOF |", args.bulk_mib, FLOOD >> 20);
    println!("|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---|---:|");
    for o in &outcomes {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | yes | {:.0} KiB | {} | {} | {} of 100 |",
            o.server.name(),
            o.direct_p50_us,
            o.far_p50_us,
            o.proxied_p50_us,
            o.proxied_p50_us - o.direct_p50_us,
            o.proxied_p99_us,
            o.bulk_mib_s,
            o.flood_rss_peak as f64 / 1024.0,
            o.flood_buffered_peak.map_or_else(|| "-".to_string(), |b| format!("{} KiB", b >> 10)),
            if o.flood_read_all { "yes" } else { "no" },
            o.half_close_ok,
        );
    }
    println!(
        "\n{}. Water marks: POLLRING_HIGH_WATER / POLLRING_LOW_WATER if set, else 1 MiB / \
         256 KiB. RSS: the proxy's VmRSS sampled every 20 ms over {} s while the client did not \
         read, minus VmRSS just before it connected. Added p50: via proxy minus direct (upstream on the \
         client's CPU); \"direct to proxy's CPU\": the same echo server placed on the proxy's CPU, \
         the cost of crossing to that CPU and back once. buffered_peak: pollring's most bytes one \
         connection held.",
        place.describe(),
        args.stall_secs
    );
    Ok(())
}

fn one(
    args: &Args,
    place: &Placement,
    server: Impl,
    upstream: std::net::SocketAddr,
    far: std::net::SocketAddr,
) -> io::Result<Outcome> {
    let cpus = if args.same_cpu { place.load.clone() } else { place.server.clone() };
    let shape = Shape { workers: 1, cpus, offload_threads: None };
    let env: Vec<(&str, String)> = ["POLLRING_HIGH_WATER", "POLLRING_LOW_WATER"]
        .into_iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k, v)))
        .collect();
    let proxy =
        ServerProcess::start_with(&place.exe, server, Service::Proxy { upstream }, &shape, &env)?;

    // (a) added latency, interleaved.
    let mut direct = connect(upstream)?;
    let mut proxied = connect(proxy.addr)?;
    let mut far_conn = connect(far)?;
    let mut hf = histogram()?;
    let msg = [b'x'; 64];
    let mut back = [0u8; 64];
    let mut hd = histogram()?;
    let mut hp = histogram()?;
    for i in 0..args.round_trips + 1000 {
        for (s, h) in [(&mut direct, &mut hd), (&mut proxied, &mut hp), (&mut far_conn, &mut hf)] {
            let t = Instant::now();
            s.write_all(&msg)?;
            s.read_exact(&mut back)?;
            if i >= 1000 {
                let _ = h.record((t.elapsed().as_nanos() as u64).max(1000));
            }
            if back != msg {
                return Err(fail("proxy: an echo came back wrong"));
            }
        }
    }
    drop((direct, proxied, far_conn));

    // (b) bulk, both directions at once.
    let bulk_mib_s = bulk(proxy.addr, args.bulk_mib << 20)?;

    // (d) half-close.
    let half_close_ok = half_close(proxy.addr)?;
    proxy.stop()?;

    // (c) a client that does not read, against a flooding upstream.
    let (flood_rss_peak, flood_buffered_peak, flood_read_all) =
        stall(args, place, server, &shape, &env)?;
    Ok(Outcome {
        server,
        direct_p50_us: us(&hd, 0.5),
        far_p50_us: us(&hf, 0.5),
        proxied_p50_us: us(&hp, 0.5),
        proxied_p99_us: us(&hp, 0.99),
        bulk_mib_s,
        flood_rss_peak,
        flood_buffered_peak,
        flood_read_all,
        half_close_ok,
    })
}

fn connect(addr: std::net::SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

/// Reads `len` bytes from `s`, checking them against the pattern.
fn read_pattern(s: &mut TcpStream, len: usize, pat: &[u8]) -> io::Result<()> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut at = 0usize;
    while at < len {
        let want = buf.len().min(len - at);
        let n = s.read(&mut buf[..want])?;
        if n == 0 {
            return Err(fail(format!("proxy: EOF after {at} of {len} bytes")));
        }
        let mut off = 0;
        while off < n {
            let p = (at + off) % PERIOD;
            let k = (n - off).min(PERIOD);
            if buf[off..off + k] != pat[p..p + k] {
                return Err(fail(format!("proxy: a wrong byte near offset {}", at + off)));
            }
            off += k;
        }
        at += n;
    }
    Ok(())
}

/// Writes `len` pattern bytes to `s`.
fn write_pattern(s: &mut TcpStream, len: usize, pat: &[u8]) -> io::Result<()> {
    let mut at = 0usize;
    while at < len {
        let p = at % PERIOD;
        let k = (len - at).min(PERIOD);
        s.write_all(&pat[p..p + k])?;
        at += k;
    }
    Ok(())
}

/// `len` bytes out and back through the proxy; MiB/s of each direction.
fn bulk(addr: std::net::SocketAddr, len: usize) -> io::Result<f64> {
    let pat = pattern();
    let mut reader = connect(addr)?;
    let mut writer = reader.try_clone()?;
    let pat2 = pat.clone();
    let start = Instant::now();
    let writing = std::thread::spawn(move || write_pattern(&mut writer, len, &pat2));
    read_pattern(&mut reader, len, &pat)?;
    let secs = start.elapsed().as_secs_f64();
    writing.join().map_err(|_| fail("proxy: the bulk writer panicked"))??;
    Ok(len as f64 / (1 << 20) as f64 / secs)
}

/// 100 clients: request, FIN, then the echoed request and EOF. How many did.
fn half_close(addr: std::net::SocketAddr) -> io::Result<usize> {
    let mut clients = Vec::new();
    for i in 0..100 {
        let mut s = connect(addr)?;
        let req = format!("request {i} {}\n", "y".repeat(i * 10));
        s.write_all(req.as_bytes())?;
        s.shutdown(Shutdown::Write)?;
        clients.push((s, req));
    }
    let mut ok = 0;
    for (mut s, req) in clients {
        let mut got = Vec::new();
        if s.read_to_end(&mut got).is_ok() && got == req.as_bytes() {
            ok += 1;
        }
    }
    Ok(ok)
}

/// The stalled client: (RSS peak over baseline, buffered_peak, read all).
fn stall(
    args: &Args,
    place: &Placement,
    server: Impl,
    shape: &Shape,
    env: &[(&str, String)],
) -> io::Result<(u64, Option<u64>, bool)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let upstream = listener.local_addr()?;
    let flooder = std::thread::spawn(move || -> io::Result<()> {
        let (mut s, _) = listener.accept()?;
        write_pattern(&mut s, FLOOD, &pattern())?;
        s.shutdown(Shutdown::Write)
    });
    let mut proxy =
        ServerProcess::start_with(&place.exe, server, Service::Proxy { upstream }, shape, env)?;
    std::thread::sleep(Duration::from_millis(200));
    let pid = proxy.pid();
    let before = crate::proc::rss(pid)?;
    let mut client = connect(proxy.addr)?;
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let end = Instant::now() + Duration::from_secs_f64(args.stall_secs);
    let mut peak = before;
    while Instant::now() < end {
        peak = peak.max(crate::proc::rss(pid)?);
        std::thread::sleep(Duration::from_millis(20));
    }
    let buffered = proxy.stats()?["buffered_peak"].as_u64();
    let pat = pattern();
    let read_all = read_pattern(&mut client, FLOOD, &pat).is_ok() && {
        let mut rest = Vec::new();
        matches!(client.read_to_end(&mut rest), Ok(0))
    };
    let flooded = flooder.join().map_err(|_| fail("proxy: the flooder panicked"))?;
    proxy.stop()?;
    Ok((peak - before, buffered, read_all && flooded.is_ok()))
}
