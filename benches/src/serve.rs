//! `pollring-bench serve`: one server of the comparison, run as a child
//! process of `compare` and driven over stdin.
//!
//! It prints `ready ADDR` once serving, then answers each `stats` line on
//! stdin with one JSON line of counters, and stops on `stop` or end of input.

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;

use pollring::{Backend, Config, Server};
use pollring_examples::echo::Echo;
use pollring_examples::http::Http;
use pollring_examples::proxy::Proxy;

use crate::baseline;

/// Which server implementation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Impl {
    /// pollring on its epoll backend.
    Epoll,
    /// pollring on its io_uring backend.
    Uring,
    /// The tokio (and hyper) baseline.
    Tokio,
}

impl Impl {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Epoll => "pollring-epoll",
            Impl::Uring => "pollring-uring",
            Impl::Tokio => "tokio",
        }
    }

    /// The `--server` value.
    pub fn arg(self) -> &'static str {
        match self {
            Impl::Epoll => "epoll",
            Impl::Uring => "uring",
            Impl::Tokio => "tokio",
        }
    }

    /// Parses a `--server` value.
    ///
    /// # Errors
    /// The value is none of `epoll`, `uring`, `tokio`.
    pub fn parse(s: &str) -> Result<Impl, String> {
        match s {
            "epoll" => Ok(Impl::Epoll),
            "uring" => Ok(Impl::Uring),
            "tokio" => Ok(Impl::Tokio),
            _ => Err(format!("unknown server {s:?}: expected epoll, uring or tokio")),
        }
    }
}

/// What a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Every byte received is sent back.
    Echo,
    /// HTTP/1.1: `GET /plaintext` and `GET /json`.
    Http,
    /// An L4 TCP proxy: each accepted connection is joined to a new
    /// connection to `upstream`, bytes copied both ways.
    Proxy {
        /// Where every accepted connection is proxied to.
        upstream: SocketAddr,
    },
}

impl Service {
    /// The `--proto` value.
    pub fn arg(self) -> &'static str {
        match self {
            Service::Echo => "echo",
            Service::Http => "http",
            Service::Proxy { .. } => "proxy",
        }
    }

    /// Parses `--proto` (and `--upstream`, which `proxy` needs).
    ///
    /// # Errors
    /// An unknown protocol, `proxy` without an upstream, or an upstream
    /// given to a protocol that has none.
    pub fn parse(proto: &str, upstream: Option<SocketAddr>) -> Result<Service, String> {
        match (proto, upstream) {
            ("echo", None) => Ok(Service::Echo),
            ("http", None) => Ok(Service::Http),
            ("proxy", Some(upstream)) => Ok(Service::Proxy { upstream }),
            ("proxy", None) => Err("--proto proxy needs --upstream ADDR".to_string()),
            ("echo" | "http", Some(_)) => {
                Err(format!("--upstream is for --proto proxy, not {proto}"))
            }
            _ => Err(format!("unknown protocol {proto:?}: expected echo, http or proxy")),
        }
    }
}

/// Runs one server until told to stop on stdin.
///
/// # Errors
/// If the server cannot start; the message names why.
pub fn serve(
    server: Impl,
    service: Service,
    workers: usize,
    addr: SocketAddr,
    cpus: &[usize],
) -> io::Result<()> {
    if !cpus.is_empty() {
        // Every thread started from here on inherits the set.
        pollring_backends::thread::pin_to_cpus(cpus)?;
    }
    match server {
        Impl::Epoll | Impl::Uring => serve_pollring(server, service, workers, addr),
        Impl::Tokio => serve_tokio(service, workers, addr),
    }
}

fn serve_pollring(
    server: Impl,
    service: Service,
    workers: usize,
    addr: SocketAddr,
) -> io::Result<()> {
    let backend = if server == Impl::Uring { Backend::Uring } else { Backend::Epoll };
    let config = Config::builder()
        .backend(backend)
        .workers(workers)
        .idle_timeout(None)
        .max_connections(1_000_000)
        .build()
        .map_err(io::Error::other)?;
    let bound = Server::bind(addr, config).map_err(io::Error::other)?;
    let local = bound.local_addr();
    let handle = match service {
        Service::Echo => bound.serve(|_| Echo),
        Service::Http => bound.serve(|_| Http::new()),
        Service::Proxy { upstream } => {
            bound.serve(move |_| Proxy::new(upstream, baseline::PROXY_CONNECT_TIMEOUT))
        }
    }
    .map_err(io::Error::other)?;
    control(local, || Some(handle.stats().syscalls))?;
    handle.shutdown();
    handle.wait().map_err(io::Error::other)
}

fn serve_tokio(service: Service, workers: usize, addr: SocketAddr) -> io::Result<()> {
    let listener = std::net::TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let (stop, stopped) = std::sync::mpsc::channel();
    let proto = match service {
        Service::Echo => baseline::Proto::Echo,
        Service::Http => baseline::Proto::Http,
        Service::Proxy { upstream } => baseline::Proto::Proxy { upstream },
    };
    let thread = std::thread::spawn(move || baseline::serve(proto, listener, workers, stopped));
    control(local, || None)?;
    let _ = stop.send(());
    thread.join().map_err(|_| io::Error::other("baseline server panicked"))?
}

/// Prints `ready ADDR`, then answers `stats` until `stop` or end of input.
fn control(addr: SocketAddr, syscalls: impl Fn() -> Option<u64>) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "ready {addr}")?;
    out.flush()?;
    for line in io::stdin().lock().lines() {
        match line?.trim() {
            "stats" => {
                let v = serde_json::json!({ "syscalls": syscalls() });
                writeln!(out, "{v}")?;
                out.flush()?;
            }
            "stop" => break,
            _ => {}
        }
    }
    Ok(())
}
