//! `pollring-bench serve`: one server of the comparison, run as a child
//! process of `compare` and driven over stdin.
//!
//! It prints `ready ADDR` once serving, then answers each `stats` line on
//! stdin with one JSON line of counters (pollring's [`Stats`], and for the
//! chat its members per worker), and stops on `stop` or end of input.
//!
//! A pollring server takes its configuration from the `POLLRING_*`
//! environment variables ([`ConfigBuilder::from_env`]), then the flags.

use std::io::{self, BufRead, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pollring::{
    Backend, CloseReason, ConfigBuilder, ConnId, ConnectError, Cx, Handler, Server, Stats,
    WorkerCx, WorkerId,
};
use pollring_examples::chat::{Chat, ChatCounters};
use pollring_examples::echo::Echo;
use pollring_examples::http::Http;
use pollring_examples::proxy::Proxy;
use pollring_examples::resp;

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
    /// `redis-server` from the `PATH`: the baseline for RESP. `compare`
    /// starts it itself ([`crate::redis`]); `serve` does not run it.
    Redis,
}

impl Impl {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Impl::Epoll => "pollring-epoll",
            Impl::Uring => "pollring-uring",
            Impl::Tokio => "tokio",
            Impl::Redis => "redis",
        }
    }

    /// The `--server` value.
    pub fn arg(self) -> &'static str {
        match self {
            Impl::Epoll => "epoll",
            Impl::Uring => "uring",
            Impl::Tokio => "tokio",
            Impl::Redis => "redis",
        }
    }

    /// Parses a `--server` value.
    ///
    /// # Errors
    /// The value is none of `epoll`, `uring`, `tokio`, `redis`.
    pub fn parse(s: &str) -> Result<Impl, String> {
        match s {
            "epoll" => Ok(Impl::Epoll),
            "uring" => Ok(Impl::Uring),
            "tokio" => Ok(Impl::Tokio),
            "redis" => Ok(Impl::Redis),
            _ => Err(format!("unknown server {s:?}: expected epoll, uring, tokio or redis")),
        }
    }
}

/// What a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Every byte received is sent back.
    Echo,
    /// HTTP/1.1: `GET /plaintext`, `GET /json` and (pollring only)
    /// `GET /sleep?ms=N` on the offload pool.
    Http,
    /// The line chat of `pollring_examples::chat` (pollring only): each
    /// line goes to every other member, on any worker.
    Chat,
    /// An L4 TCP proxy: each accepted connection is joined to a new
    /// connection to `upstream`, bytes copied both ways.
    Proxy {
        /// Where every accepted connection is proxied to.
        upstream: SocketAddr,
    },
    /// RESP2, the key-value server of `pollring_examples::resp` (pollring
    /// only; `compare` runs `redis-server` as its baseline).
    Resp,
}

impl Service {
    /// The `--proto` value.
    pub fn arg(self) -> &'static str {
        match self {
            Service::Echo => "echo",
            Service::Http => "http",
            Service::Chat => "chat",
            Service::Proxy { .. } => "proxy",
            Service::Resp => "resp",
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
            ("chat", None) => Ok(Service::Chat),
            ("resp", None) => Ok(Service::Resp),
            ("proxy", Some(upstream)) => Ok(Service::Proxy { upstream }),
            ("proxy", None) => Err("--proto proxy needs --upstream ADDR".to_string()),
            ("echo" | "http" | "chat" | "resp", Some(_)) => {
                Err(format!("--upstream is for --proto proxy, not {proto}"))
            }
            _ => {
                Err(format!("unknown protocol {proto:?}: expected echo, http, chat, proxy or resp"))
            }
        }
    }
}

/// How a server runs, beyond what it serves.
#[derive(Clone, Debug, Default)]
pub struct Shape {
    /// Worker threads.
    pub workers: usize,
    /// CPUs to run on (empty: any).
    pub cpus: Vec<usize>,
    /// Threads of pollring's offload pool (`None`: the configured default).
    pub offload_threads: Option<usize>,
}

/// Runs one server until told to stop on stdin.
///
/// # Errors
/// If the server cannot start; the message names why.
pub fn serve(server: Impl, service: Service, shape: &Shape, addr: SocketAddr) -> io::Result<()> {
    if !shape.cpus.is_empty() {
        // Every thread started from here on inherits the set.
        pollring_backends::thread::pin_to_cpus(&shape.cpus)?;
    }
    let workers = shape.workers.max(1);
    match server {
        Impl::Epoll | Impl::Uring => serve_pollring(server, service, shape, addr),
        Impl::Tokio => serve_tokio(service, workers, addr),
        Impl::Redis => {
            Err(io::Error::other("serve does not run redis; compare starts redis-server itself"))
        }
    }
}

fn serve_pollring(
    server: Impl,
    service: Service,
    shape: &Shape,
    addr: SocketAddr,
) -> io::Result<()> {
    let backend = if server == Impl::Uring { Backend::Uring } else { Backend::Epoll };
    let mut builder = ConfigBuilder::from_env()
        .map_err(io::Error::other)?
        .backend(backend)
        .workers(shape.workers.max(1))
        .idle_timeout(None)
        .max_connections(1_000_000);
    if let Some(threads) = shape.offload_threads {
        builder = builder.offload_threads(threads);
    }
    let config = builder.build().map_err(io::Error::other)?;
    let resp_limits = resp::limits_for(&config);
    let bound = Server::bind(addr, config).map_err(io::Error::other)?;
    let local = bound.local_addr();
    let per_worker: Arc<[AtomicUsize]> =
        (0..shape.workers.max(1)).map(|_| AtomicUsize::new(0)).collect();
    let handle = match service {
        Service::Echo => bound.serve(|_| Echo),
        Service::Http => bound.serve(|_| Http::new()),
        Service::Chat => {
            let counters = Arc::new(ChatCounters::default());
            let members = per_worker.clone();
            bound.serve(move |worker| Counted {
                inner: Chat::new(counters.clone()),
                open: members.clone(),
                worker,
            })
        }
        Service::Proxy { upstream } => {
            bound.serve(move |_| Proxy::new(upstream, baseline::PROXY_CONNECT_TIMEOUT))
        }
        Service::Resp => {
            // One keyspace for every worker, as the `resp` binary has it.
            let store = Arc::new(resp::Store::default());
            bound.serve(move |_| resp::Resp::new(store.clone(), resp_limits))
        }
    }
    .map_err(io::Error::other)?;
    control(local, || {
        let s: Stats = handle.stats();
        let mut v = serde_json::json!({
            "syscalls": s.syscalls,
            "connections": s.connections,
            "buffered_peak": s.buffered_peak,
            "pool_in_use": s.pool_in_use,
        });
        if service == Service::Chat {
            v["per_worker"] =
                per_worker.iter().map(|n| n.load(Ordering::Relaxed)).collect::<Vec<_>>().into();
        }
        v
    })?;
    handle.shutdown();
    handle.wait().map_err(io::Error::other)
}

/// A handler that counts its worker's open connections into `open` and
/// otherwise is `inner`: how `stats` reports the chat's members per worker.
struct Counted<H> {
    inner: H,
    open: Arc<[AtomicUsize]>,
    worker: WorkerId,
}

impl<H: std::fmt::Debug> std::fmt::Debug for Counted<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counted").field("inner", &self.inner).field("worker", &self.worker).finish()
    }
}

impl<H: Handler> Counted<H> {
    fn count(&self) -> &AtomicUsize {
        &self.open[self.worker.0 % self.open.len()]
    }
}

impl<H: Handler> Handler for Counted<H> {
    type Conn = H::Conn;
    type Message = H::Message;

    fn on_open(&mut self, cx: &mut Cx<'_, H::Message>) -> H::Conn {
        self.count().fetch_add(1, Ordering::Relaxed);
        self.inner.on_open(cx)
    }

    fn on_data(&mut self, conn: &mut H::Conn, cx: &mut Cx<'_, H::Message>) {
        self.inner.on_data(conn, cx);
    }

    fn on_drained(&mut self, conn: &mut H::Conn, cx: &mut Cx<'_, H::Message>) {
        self.inner.on_drained(conn, cx);
    }

    fn on_timer(&mut self, conn: &mut H::Conn, cx: &mut Cx<'_, H::Message>) {
        self.inner.on_timer(conn, cx);
    }

    fn on_message(&mut self, conn: &mut H::Conn, cx: &mut Cx<'_, H::Message>, msg: H::Message) {
        self.inner.on_message(conn, cx, msg);
    }

    fn on_worker_message(&mut self, cx: &mut WorkerCx<'_, H::Message>, msg: H::Message) {
        self.inner.on_worker_message(cx, msg);
    }

    fn on_connect_error(
        &mut self,
        cx: &mut WorkerCx<'_, H::Message>,
        id: ConnId,
        opener: Option<ConnId>,
        error: ConnectError,
    ) {
        self.inner.on_connect_error(cx, id, opener, error);
    }

    fn on_close(&mut self, conn: H::Conn, cx: &mut Cx<'_, H::Message>, reason: CloseReason) {
        self.count().fetch_sub(1, Ordering::Relaxed);
        self.inner.on_close(conn, cx, reason);
    }

    fn on_tick(&mut self, cx: &mut WorkerCx<'_, H::Message>) -> Option<Duration> {
        self.inner.on_tick(cx)
    }
}

fn serve_tokio(service: Service, workers: usize, addr: SocketAddr) -> io::Result<()> {
    let listener = std::net::TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let (stop, stopped) = std::sync::mpsc::channel();
    let proto = match service {
        Service::Echo => baseline::Proto::Echo,
        Service::Http => baseline::Proto::Http,
        Service::Proxy { upstream } => baseline::Proto::Proxy { upstream },
        Service::Chat => {
            return Err(io::Error::other("the tokio baseline has no chat; use epoll or uring"))
        }
        Service::Resp => {
            return Err(io::Error::other(
                "the tokio baseline has no RESP server; compare runs redis-server instead",
            ))
        }
    };
    let thread = std::thread::spawn(move || baseline::serve(proto, listener, workers, stopped));
    control(local, || serde_json::json!({ "syscalls": null }))?;
    let _ = stop.send(());
    thread.join().map_err(|_| io::Error::other("baseline server panicked"))?
}

/// Prints `ready ADDR`, then answers `stats` until `stop` or end of input.
fn control(addr: SocketAddr, stats: impl Fn() -> serde_json::Value) -> io::Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "ready {addr}")?;
    out.flush()?;
    for line in io::stdin().lock().lines() {
        match line?.trim() {
            "stats" => {
                writeln!(out, "{}", stats())?;
                out.flush()?;
            }
            "stop" => break,
            _ => {}
        }
    }
    Ok(())
}
