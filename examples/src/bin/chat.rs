//! Chat room: `chat [--backend epoll|uring|auto] [--workers N] [--addr HOST:PORT]`.
//!
//! Every line a client sends reaches every other client, on any worker.
//! Try it with two or three `nc 127.0.0.1 7100` in separate terminals.
//! Silent members are disconnected after the idle timeout (60 s);
//! `POLLRING_IDLE_TIMEOUT_MS=0` keeps them.

use std::sync::Arc;

use clap::Parser;
use pollring_examples::chat::{Chat, ChatCounters};
use pollring_examples::{run_server, ServerArgs};

/// A line-based chat room on pollring.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    run_server("chat", &args.server, "127.0.0.1:7100", |_config| {
        // One set of counters for every worker (delayed and dropped lines).
        let counters = Arc::new(ChatCounters::default());
        move |_worker| Chat::new(counters.clone())
    })
}
