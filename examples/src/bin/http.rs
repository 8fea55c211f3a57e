//! HTTP/1.1 server: `http [--backend epoll|uring|auto] [--workers N] [--addr HOST:PORT]
//! [--max-head BYTES] [--max-headers N] [--max-body BYTES]`.
//!
//! Routes: `GET /plaintext`, `GET /json`, `GET /`, `POST /echo`.

use clap::Parser;
use pollring::Server;
use pollring_examples::http::{Http, Limits};
use pollring_examples::{init_logging, ServerArgs};

/// An HTTP/1.1 server on pollring (TechEmpower plaintext and JSON).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(flatten)]
    server: ServerArgs,
    /// Largest request line + header fields, in bytes (larger: 431).
    #[arg(long, default_value_t = Limits::default().max_head)]
    max_head: usize,
    /// Most header fields in one request (more: 431).
    #[arg(long, default_value_t = Limits::default().max_headers)]
    max_headers: usize,
    /// Largest request body, in bytes (larger: 413).
    #[arg(long, default_value_t = Limits::default().max_body)]
    max_body: u64,
}

fn main() -> std::process::ExitCode {
    init_logging();
    let args = Args::parse();
    let limits =
        Limits { max_head: args.max_head, max_headers: args.max_headers, max_body: args.max_body };
    let run = || -> pollring::Result<()> {
        let server = Server::bind(args.server.addr_or("127.0.0.1:8080"), args.server.config()?)?;
        eprintln!("http listening on {}", server.local_addr());
        server.run(move |_worker| Http::with_limits(limits))
    };
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("http: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
