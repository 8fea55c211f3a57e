//! Servers built on pollring, and the pieces they share.
//!
//! * `echo` — writes back every byte (zero-copy with [`Cx::forward`]).
//! * `http` — HTTP/1.1: keep-alive, pipelining, TechEmpower plaintext/json,
//!   and blocking work on the offload pool (`GET /sleep?ms=N`).
//! * `resp` — a Redis-protocol (RESP2) key-value server.
//! * `chat` — a chat room across workers: connection handles
//!   ([`Cx::conn`]) for the members of one worker, messages
//!   ([`Sender::send_to_worker`]) for the others.
//! * `proxy` — an L4 TCP proxy: outbound connections ([`Cx::connect`]),
//!   zero-copy relaying between two connections ([`Cx::forward_to`]),
//!   half-close and backpressure across the pair.
//!
//! Each binary takes the same flags ([`ServerArgs`]): `--backend`,
//! `--workers`, `--addr`, on top of the `POLLRING_*` environment variables.
//!
//! [`Cx::forward`]: pollring::Cx::forward
//! [`Cx::conn`]: pollring::Cx::conn
//! [`Cx::connect`]: pollring::Cx::connect
//! [`Cx::forward_to`]: pollring::Cx::forward_to
//! [`Sender::send_to_worker`]: pollring::Sender::send_to_worker

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chat;
pub mod echo;
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod proxy;
pub mod resp;

use std::net::SocketAddr;

use pollring::{Backend, Config};

/// Command-line flags every example server takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// I/O backend: epoll, uring or auto.
    #[arg(long, value_parser = parse_backend)]
    pub backend: Option<Backend>,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Pin each worker to its own CPU.
    #[arg(long)]
    pub pin: bool,
    /// Address to listen on.
    #[arg(long)]
    pub addr: Option<SocketAddr>,
}

fn parse_backend(s: &str) -> Result<Backend, String> {
    s.parse().map_err(|e: pollring::ParseBackendError| e.to_string())
}

impl ServerArgs {
    /// The config: defaults, then `POLLRING_*` variables, then these flags.
    ///
    /// # Errors
    /// A variable or flag that does not parse or validate.
    pub fn config(&self) -> pollring::Result<Config> {
        let mut b = pollring::ConfigBuilder::from_env()?;
        if let Some(backend) = self.backend {
            b = b.backend(backend);
        }
        if let Some(workers) = self.workers {
            b = b.workers(workers);
        }
        if self.pin {
            b = b.pin_cpus(true);
        }
        b.build()
    }

    /// The address to listen on, or `default`.
    pub fn addr_or(&self, default: &str) -> SocketAddr {
        self.addr.unwrap_or_else(|| default.parse().expect("valid default address"))
    }
}

/// The `main` of an example server: logs to stderr, builds the config from
/// `POLLRING_*` and `args`, binds (`default_addr` unless `--addr`), prints
/// `NAME listening on ADDR`, and serves until SIGINT/SIGTERM. `handlers`
/// sees the config and returns the per-worker handler factory. An error is
/// printed as `NAME: error` with exit status 1.
pub fn run_server<H, F>(
    name: &str,
    args: &ServerArgs,
    default_addr: &str,
    handlers: impl FnOnce(&Config) -> F,
) -> std::process::ExitCode
where
    H: pollring::Handler,
    F: Fn(pollring::WorkerId) -> H + Send + Sync + 'static,
{
    init_logging();
    let run = || -> pollring::Result<()> {
        let config = args.config()?;
        let factory = handlers(&config);
        let server = pollring::Server::bind(args.addr_or(default_addr), config)?;
        eprintln!("{name} listening on {}", server.local_addr());
        server.run(factory)
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
