//! HTTP/1.1 server: `http [--backend epoll|uring|auto] [--workers N] [--addr HOST:PORT]
//! [--max-head BYTES] [--max-headers N] [--max-body BYTES]`.
//!
//! Routes: `GET /plaintext`, `GET /json`, `GET /`, `POST /echo`, `GET /sleep?ms=N`
//! (N <= 1000: sleeps on the offload pool, then answers 200).

use clap::Parser;
use pollring_examples::http::{Http, Limits};
use pollring_examples::{run_server, ServerArgs};

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
    let args = Args::parse();
    let limits =
        Limits { max_head: args.max_head, max_headers: args.max_headers, max_body: args.max_body };
    run_server("http", &args.server, "127.0.0.1:8080", |_config| {
        move |_worker| Http::with_limits(limits)
    })
}
