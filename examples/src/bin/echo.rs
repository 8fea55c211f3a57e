//! Echo server: `echo [--backend epoll|uring|auto] [--workers N] [--addr HOST:PORT]`.

use clap::Parser;
use pollring_examples::{echo::Echo, run_server, ServerArgs};

/// An echo server on pollring.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    run_server("echo", &args.server, "127.0.0.1:7000", |_config| |_worker| Echo)
}
