//! RESP2 key-value server:
//! `resp [--backend epoll|uring|auto] [--workers N] [--pin] [--addr HOST:PORT]`.
//!
//! Try it with `redis-cli -p 6380` or
//! `redis-benchmark -p 6380 -t ping,set,get -P 16 -q`.

use std::sync::Arc;

use clap::Parser;
use pollring_examples::resp::{limits_for, Resp, Store};
use pollring_examples::{run_server, ServerArgs};

/// A Redis-protocol (RESP2) in-memory key-value server on pollring.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    run_server("resp", &args.server, "127.0.0.1:6380", |config| {
        let limits = limits_for(config);
        // One keyspace for every worker (see `resp::store` for why).
        let store = Arc::new(Store::default());
        move |_worker| Resp::new(store.clone(), limits)
    })
}
