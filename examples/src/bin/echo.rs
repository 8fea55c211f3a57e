//! Echo server: `echo [--backend epoll|uring|auto] [--workers N] [--addr HOST:PORT]`.

use clap::Parser;
use pollring::Server;
use pollring_examples::{echo::Echo, init_logging, ServerArgs};

/// An echo server on pollring.
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
        let server = Server::bind(args.server.addr_or("127.0.0.1:7000"), args.server.config()?)?;
        eprintln!("echo listening on {}", server.local_addr());
        server.run(|_worker| Echo)
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("echo: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
