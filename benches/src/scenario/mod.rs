//! `pollring-bench scenario`: workloads beyond one connection, each measured
//! against fresh server processes on both of pollring's backends.
//!
//! * [`chat`]: one line broadcast to 1,000 chat members over two workers;
//!   delivery latency per (member, line), then the server's CPU while the
//!   members sit idle.
//! * [`offload`]: `GET /sleep` on the HTTP server's offload pool while
//!   `/plaintext` load runs on the same worker; both latencies.
//! * [`proxy`]: the L4 proxy's added latency, 1 GiB each way byte-exact,
//!   memory under a client that does not read, and half-close.
//!
//! Placement is `compare`'s: servers run as `pollring-bench serve` child
//! processes on the first allowed CPU, this process (the clients, and any
//! helper upstream) on the others. Every scenario stops by itself in
//! bounded time and prints Markdown tables on stdout.

use std::io;
use std::path::PathBuf;

use hdrhistogram::Histogram;

use crate::compare::cpu_split;
use crate::load::content_length;
use crate::serve::Impl;

pub mod chat;
pub mod offload;
pub mod proxy;

/// The scenarios.
#[derive(Debug, clap::Subcommand)]
pub enum Which {
    /// Chat fan-out: delivery latency to 1,000 members on 2 workers, then
    /// idle CPU.
    Chat(chat::Args),
    /// `/sleep` on the offload pool during `/plaintext` load, 1 worker.
    Offload(offload::Args),
    /// The L4 proxy: added latency, 1 GiB byte-exact, a client that does
    /// not read, half-close.
    Proxy(proxy::Args),
}

/// Runs one scenario.
///
/// # Errors
/// A message naming what failed (a server that did not start, a broken
/// connection, a wrong byte).
pub fn run(which: Which) -> Result<(), String> {
    let res = match which {
        Which::Chat(args) => chat::run(&args),
        Which::Offload(args) => offload::run(&args),
        Which::Proxy(args) => proxy::run(&args),
    };
    res.map_err(|e| e.to_string())
}

/// Where the servers and this process run.
#[derive(Clone, Debug)]
pub(crate) struct Placement {
    /// This executable, started as `serve` children.
    pub(crate) exe: PathBuf,
    /// The servers' CPUs.
    pub(crate) server: Vec<usize>,
    /// The clients' (and helper upstreams') CPUs.
    pub(crate) load: Vec<usize>,
    /// Whether the two sets are disjoint.
    pub(crate) disjoint: bool,
}

impl Placement {
    /// Servers on the first allowed CPU, this process pinned to the rest
    /// (threads it starts later inherit that).
    pub(crate) fn pin() -> io::Result<Placement> {
        let cpus = pollring_backends::thread::allowed_cpus();
        let (server, load, disjoint) = cpu_split(&cpus, 1);
        pollring_backends::thread::pin_to_cpus(&load)?;
        Ok(Placement { exe: std::env::current_exe()?, server, load, disjoint })
    }

    /// One line for the report.
    pub(crate) fn describe(&self) -> String {
        format!(
            "server on CPU {:?}, clients on CPU {:?}{}",
            self.server,
            self.load,
            if self.disjoint { "" } else { " (shared: this machine has one CPU)" }
        )
    }
}

/// Parses `--servers`.
pub(crate) fn servers(list: &[String]) -> io::Result<Vec<Impl>> {
    list.iter()
        .map(|s| match Impl::parse(s) {
            Ok(Impl::Redis) => Err(fail("redis takes part in compare's RESP rows only")),
            parsed => parsed.map_err(io::Error::other),
        })
        .collect()
}

/// A latency histogram in nanoseconds, 1 µs to 60 s.
pub(crate) fn histogram() -> io::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1_000, 60_000_000_000, 3).map_err(io::Error::other)
}

/// A quantile of a nanosecond histogram, in microseconds.
pub(crate) fn us(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1000.0
}

/// A bench failure with a message.
pub(crate) fn fail(msg: impl Into<String>) -> io::Error {
    io::Error::other(msg.into())
}

/// HTTP/1.1 responses read off one connection: head, then
/// `Content-Length` bytes of body.
#[derive(Debug, Default)]
pub(crate) struct Responses {
    pending: Vec<u8>,
}

impl Responses {
    /// Adds `data` and returns the status codes of the responses it
    /// completes, in order.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Vec<u16> {
        self.pending.extend_from_slice(data);
        let mut statuses = Vec::new();
        let mut at = 0;
        loop {
            let rest = &self.pending[at..];
            let Some(head_end) = rest.windows(4).position(|w| w == b"\r\n\r\n") else { break };
            let head = &rest[..head_end];
            let total = head_end + 4 + content_length(head).unwrap_or(0);
            if rest.len() < total {
                break;
            }
            let status = std::str::from_utf8(head.get(9..12).unwrap_or_default())
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            statuses.push(status);
            at += total;
        }
        self.pending.drain(..at);
        statuses
    }
}

#[cfg(test)]
mod tests {
    use super::Responses;

    #[test]
    fn responses_complete_across_reads() {
        let mut r = Responses::default();
        let one = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        let two = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n";
        let mut all = one.to_vec();
        all.extend_from_slice(two);
        assert!(r.feed(&all[..10]).is_empty());
        assert_eq!(r.feed(&all[10..one.len() - 1]), Vec::<u16>::new());
        assert_eq!(r.feed(&all[one.len() - 1..]), vec![200, 503]);
    }
}
