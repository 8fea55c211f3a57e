//! L4 TCP proxy: `proxy --upstream HOST:PORT [--connect-timeout-ms MS]
//! [--backend epoll|uring|auto] [--workers N] [--addr HOST:PORT]`.
//!
//! Every client accepted (on 127.0.0.1:7200 by default) is joined to a new
//! connection to the upstream; bytes flow both ways, FINs are passed on,
//! and a reset or a failed connect on one side closes the other. Try it in
//! front of the echo example: `echo` and `proxy --upstream 127.0.0.1:7000`,
//! then `nc 127.0.0.1 7200`.

use std::net::ToSocketAddrs;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pollring_examples::proxy::Proxy;
use pollring_examples::{run_server, ServerArgs};

/// An L4 TCP proxy on pollring.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Where to relay to (resolved once, at start-up).
    #[arg(long)]
    upstream: String,
    /// How long a connect to the upstream may take before its client is
    /// closed, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    connect_timeout_ms: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Name resolution blocks: here, once, never on a worker.
    let upstream = match args.upstream.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(addr)) => addr,
        Ok(None) => {
            eprintln!("proxy: --upstream {} resolves to no address", args.upstream);
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("proxy: cannot resolve --upstream {}: {e}", args.upstream);
            return ExitCode::FAILURE;
        }
    };
    let timeout = Duration::from_millis(args.connect_timeout_ms);
    run_server("proxy", &args.server, "127.0.0.1:7200", move |_config| {
        move |_worker| Proxy::new(upstream, timeout)
    })
}
