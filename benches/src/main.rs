//! `pollring-bench`: load generation and (soon) backend comparison.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pollring_bench::load::{self, LoadSpec};

/// Benchmarks for pollring.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Closed-loop echo load against a running server.
    Load {
        /// Server address.
        #[arg(long, default_value = "127.0.0.1:7000")]
        addr: SocketAddr,
        /// Concurrent connections.
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Message size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Messages in flight per connection.
        #[arg(long, default_value_t = 1)]
        depth: usize,
        /// Recorded seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Unrecorded warm-up seconds.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
        /// Print only the message count (for scripts).
        #[arg(long)]
        count_only: bool,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Load { addr, connections, size, depth, duration, warmup, count_only } => {
            let spec = LoadSpec {
                addr,
                connections,
                size: size.max(1),
                depth: depth.max(1),
                warmup: Duration::from_secs_f64(warmup),
                duration: Duration::from_secs_f64(duration),
            };
            match load::run(&spec) {
                Ok(r) if r.corrupt > 0 => {
                    eprintln!("load: {} corrupt chunks echoed", r.corrupt);
                    ExitCode::FAILURE
                }
                Ok(r) => {
                    if count_only {
                        println!("{}", r.messages);
                    } else {
                        let q = |p: f64| r.latency.value_at_quantile(p) as f64 / 1000.0;
                        println!(
                            "{:.0} msg/s  p50 {:.1}us  p99 {:.1}us  p99.9 {:.1}us  messages {}  loadgen cpu {:.0}%",
                            r.rate(),
                            q(0.5),
                            q(0.99),
                            q(0.999),
                            r.messages,
                            100.0 * r.self_cpu.as_secs_f64() / r.elapsed.as_secs_f64()
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("load: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
