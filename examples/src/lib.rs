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

use pollring::Config;

/// Command-line flags every example server takes: the framework's own
/// ([`pollring::cli::ServerArgs`], feature `cli`).
pub use pollring::cli::ServerArgs;

/// The `main` of an example server: logs to stderr, builds the config from
/// `POLLRING_*` and `args`, binds (`default_addr` unless `--addr`, which may
/// be repeated and may name a Unix socket, `unix:PATH`), prints `NAME
/// listening on ADDR[, ADDR…]`, and serves until SIGINT/SIGTERM. `handlers`
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
        let server = args.bind(default_addr, config)?;
        let endpoints: Vec<String> = server.endpoints().iter().map(|e| e.to_string()).collect();
        eprintln!("{name} listening on {}", endpoints.join(", "));
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

/// Logs to stderr, filtered by `RUST_LOG` (default `info`): the
/// framework's [`pollring::log::init`].
pub fn init_logging() {
    pollring::log::init();
}
