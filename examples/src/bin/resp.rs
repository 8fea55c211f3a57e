//! RESP2 key-value server:
//! `resp [--backend epoll|uring|auto] [--workers N] [--pin] [--addr HOST:PORT]`.
//!
//! Try it with `redis-cli -p 6380` or
//! `redis-benchmark -p 6380 -t ping,set,get -P 16 -q`.

use std::sync::Arc;

use clap::Parser;
use pollring::Server;
use pollring_examples::resp::{limits_for, Resp, Store};
use pollring_examples::{init_logging, ServerArgs};

/// A Redis-protocol (RESP2) in-memory key-value server on pollring.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> std::process::ExitCode {
    init_logging();
    let args = Args::parse();
    let run = || -> pollring::Result<()> {
        let config = args.server.config()?;
        let limits = limits_for(&config);
        let server = Server::bind(args.server.addr_or("127.0.0.1:6380"), config)?;
        eprintln!("resp listening on {}", server.local_addr());
        // One keyspace for every worker (see `resp::store` for why).
        let store = Arc::new(Store::default());
        server.run(move |_worker| Resp::new(store.clone(), limits))
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("resp: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
