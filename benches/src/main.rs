//! `pollring-bench`: compare pollring's backends (and a tokio baseline) on
//! this machine, or generate load against a running server.
//!
//! ```sh
//! cargo run --release -p pollring-bench -- compare          # about 2 minutes
//! cargo run --release -p pollring-bench -- compare --quick  # a few seconds
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use pollring_bench::compare::{self, Plan, Workload};
use pollring_bench::load::{self, LoadSpec, Proto};
use pollring_bench::scenario;
use pollring_bench::serve::{self, Impl, Service, Shape};

/// Benchmarks for pollring.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// epoll vs io_uring vs tokio, echo, HTTP and proxy, side by side (the main job).
    Compare {
        /// A few-second smoke run (CI): one round, short windows, 1 worker.
        #[arg(long)]
        quick: bool,
        /// Interleaved rounds; the report gives medians.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Recorded seconds per run.
        #[arg(long, default_value_t = 1.5)]
        duration: f64,
        /// Unrecorded warm-up seconds per run.
        #[arg(long, default_value_t = 0.5)]
        warmup: f64,
        /// Load connections.
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Echo message size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Requests in flight per connection (1: no pipelining).
        #[arg(long, default_value_t = 1)]
        depth: usize,
        /// Workloads: echo, http, proxy (echo through an L4 proxy), proxy-bulk
        /// (64 KiB messages, depth 4, through the proxy).
        #[arg(long, value_delimiter = ',', default_value = "echo,http")]
        workloads: Vec<String>,
        /// Servers: epoll, uring, tokio.
        #[arg(long, value_delimiter = ',', default_value = "epoll,uring,tokio")]
        servers: Vec<String>,
        /// Worker counts: numbers, or `all` for every allowed CPU.
        #[arg(long, value_delimiter = ',', default_value = "1,all")]
        workers: Vec<String>,
        /// Idle connections for the RSS measurement (0: skip). Both this
        /// process and the server hold that many descriptors.
        #[arg(long, default_value_t = 10_000)]
        idle: usize,
        /// Where runs.json, summary.json and compare.svg go.
        #[arg(long, default_value = "target/pollring-bench")]
        out: PathBuf,
    },
    /// Closed-loop load against a running server.
    Load {
        /// Server address.
        #[arg(long, default_value = "127.0.0.1:7000")]
        addr: SocketAddr,
        /// Protocol: echo or http (`GET /plaintext`).
        #[arg(long, default_value = "echo")]
        proto: String,
        /// Concurrent connections.
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Echo message size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Requests in flight per connection.
        #[arg(long, default_value_t = 1)]
        depth: usize,
        /// Recorded seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Unrecorded warm-up seconds.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
    /// One server of the comparison, controlled over stdin (used by `compare`).
    Serve {
        /// epoll, uring or tokio.
        #[arg(long)]
        server: String,
        /// echo, http, chat or proxy.
        #[arg(long)]
        proto: String,
        /// Where `--proto proxy` connects each accepted connection to.
        #[arg(long)]
        upstream: Option<SocketAddr>,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: SocketAddr,
        /// CPUs to run on (comma-separated; empty: any).
        #[arg(long, value_delimiter = ',')]
        cpus: Vec<usize>,
        /// Threads of pollring's offload pool (default: the configured one).
        #[arg(long)]
        offload_threads: Option<usize>,
    },
    /// Workloads beyond one connection (chat fan-out, offload, proxy), each
    /// against its own server processes; prints Markdown tables.
    Scenario {
        #[command(subcommand)]
        which: scenario::Which,
    },
}

fn proto(s: &str) -> Result<Proto, String> {
    match s {
        "echo" => Ok(Proto::Echo),
        "http" => Ok(Proto::Http),
        _ => Err(format!("unknown protocol {s:?}: expected echo or http")),
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Compare {
            quick,
            rounds,
            duration,
            warmup,
            connections,
            size,
            depth,
            workloads,
            servers,
            workers,
            idle,
            out,
        } => {
            let cpus = pollring_backends::thread::allowed_cpus().len().max(1);
            let mut workers = workers
                .iter()
                .map(|w| {
                    if w == "all" {
                        Ok(cpus)
                    } else {
                        w.parse().map_err(|_| format!("bad --workers {w:?}"))
                    }
                })
                .collect::<Result<Vec<usize>, String>>()?;
            workers.dedup();
            let mut plan = Plan {
                workloads: workloads
                    .iter()
                    .map(|w| Workload::parse(w))
                    .collect::<Result<_, _>>()?,
                servers: servers.iter().map(|s| Impl::parse(s)).collect::<Result<_, _>>()?,
                workers,
                rounds: rounds.max(1),
                warmup: Duration::from_secs_f64(warmup),
                duration: Duration::from_secs_f64(duration),
                connections,
                size: size.max(1),
                depth: depth.max(1),
                idle,
                out,
            };
            if quick {
                plan.rounds = 1;
                plan.warmup = Duration::from_millis(200);
                plan.duration = Duration::from_millis(500);
                plan.workers = vec![1];
                plan.connections = plan.connections.min(20);
                plan.idle = plan.idle.min(500);
            }
            compare::compare(&plan).map_err(|e| e.to_string())
        }
        Command::Load { addr, proto: p, connections, size, depth, duration, warmup } => {
            let spec = LoadSpec {
                proto: proto(&p)?,
                addr,
                connections,
                size: size.max(1),
                depth: depth.max(1),
                warmup: Duration::from_secs_f64(warmup),
                duration: Duration::from_secs_f64(duration),
            };
            let r = load::run(&spec).map_err(|e| e.to_string())?;
            if r.corrupt > 0 {
                return Err(format!("{} wrong answers", r.corrupt));
            }
            let q = |p: f64| r.latency.value_at_quantile(p) as f64 / 1000.0;
            println!(
                "{:.0} req/s  p50 {:.1}us  p99 {:.1}us  p99.9 {:.1}us  requests {}  loadgen cpu {:.0}%",
                r.rate(),
                q(0.5),
                q(0.99),
                q(0.999),
                r.messages,
                100.0 * r.self_cpu.as_secs_f64() / r.elapsed.as_secs_f64()
            );
            Ok(())
        }
        Command::Serve { server, proto: p, upstream, workers, addr, cpus, offload_threads } => {
            let service = Service::parse(&p, upstream)?;
            let shape = Shape { workers: workers.max(1), cpus, offload_threads };
            serve::serve(Impl::parse(&server)?, service, &shape, addr).map_err(|e| e.to_string())
        }
        Command::Scenario { which } => scenario::run(which),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pollring-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
