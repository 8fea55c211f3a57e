//! `pollring-bench`: compare pollring's backends (and a tokio baseline) on
//! this machine, or generate load against a running server.
//!
//! ```sh
//! cargo run --release -p pollring-bench -- compare          # under 2 minutes
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
    /// epoll vs io_uring vs tokio (and redis for RESP): echo and HTTP at
    /// depth 1, pipelined HTTP and RESP GET/SET, side by side (the main job).
    ///
    /// The defaults take under two minutes on 2 cores: 3 interleaved rounds
    /// of 1.0 s (depth 1) and 1.5 s (pipelined) windows, each after 0.3 s
    /// of warm-up, then RSS of 10,000 idle connections per server.
    Compare {
        /// A few-second smoke run (CI) of every row of the plan: 1 round,
        /// 0.1 s warm-up and 0.3 s windows, 1 worker, at most 20
        /// connections, at most 500 idle connections. Its figures are too
        /// short to compare; it checks that every server answers right.
        #[arg(long)]
        quick: bool,
        /// Interleaved rounds; the report gives medians and their spread.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        /// Recorded seconds per run of a depth-1 workload (echo, http, proxy).
        #[arg(long, default_value_t = 1.0)]
        duration: f64,
        /// Recorded seconds per run of a pipelined workload (http-pipelined,
        /// resp-get, resp-set): user and system CPU are counted in 10 ms
        /// ticks, so a window of a second or more.
        #[arg(long, default_value_t = 1.5)]
        pipelined_duration: f64,
        /// Unrecorded warm-up seconds per run.
        #[arg(long, default_value_t = 0.3)]
        warmup: f64,
        /// Load connections.
        #[arg(long, default_value_t = 100)]
        connections: usize,
        /// Echo message size in bytes.
        #[arg(long, default_value_t = 64)]
        size: usize,
        /// Requests in flight per connection of echo, http and proxy (1: no
        /// pipelining).
        #[arg(long, default_value_t = 1)]
        depth: usize,
        /// Requests per batch of http-pipelined, resp-get and resp-set.
        #[arg(long, default_value_t = 16)]
        pipeline: usize,
        /// Workloads: echo, http (depth 1 by default), http-pipelined,
        /// resp-get, resp-set (batches of --pipeline requests; only at
        /// worker counts that leave the load a CPU of its own), proxy (echo
        /// through an L4 proxy), proxy-bulk (64 KiB messages, depth 4,
        /// through the proxy).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "echo,http,http-pipelined,resp-get,resp-set"
        )]
        workloads: Vec<String>,
        /// Servers: epoll, uring, tokio (echo, http, proxy), redis
        /// (`redis-server` from the PATH, resp-get and resp-set; skipped
        /// with a warning when it is not there).
        #[arg(long, value_delimiter = ',', default_value = "epoll,uring,tokio,redis")]
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
        /// Protocol: echo, http (`GET /plaintext`), resp-get or resp-set.
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
        /// Send the --depth requests as one batch, the next batch when all
        /// are answered (instead of one new request per answer).
        #[arg(long)]
        pipelined: bool,
        /// Recorded seconds.
        #[arg(long, default_value_t = 5.0)]
        duration: f64,
        /// Unrecorded warm-up seconds.
        #[arg(long, default_value_t = 1.0)]
        warmup: f64,
    },
    /// One server of the comparison, controlled over stdin (used by `compare`).
    Serve {
        /// epoll, uring or tokio (redis is started by compare itself).
        #[arg(long)]
        server: String,
        /// echo, http, chat, proxy or resp.
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

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Compare {
            quick,
            rounds,
            duration,
            pipelined_duration,
            warmup,
            connections,
            size,
            depth,
            pipeline,
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
                pipelined_duration: Duration::from_secs_f64(pipelined_duration),
                connections,
                size: size.max(1),
                depth: depth.max(1),
                pipeline: pipeline.max(1),
                idle,
                out,
            };
            if quick {
                plan.rounds = 1;
                plan.warmup = Duration::from_millis(100);
                plan.duration = Duration::from_millis(300);
                plan.pipelined_duration = Duration::from_millis(300);
                plan.workers = vec![1];
                plan.connections = plan.connections.min(20);
                plan.idle = plan.idle.min(500);
            }
            compare::compare(&plan).map_err(|e| e.to_string())
        }
        Command::Load { addr, proto, connections, size, depth, pipelined, duration, warmup } => {
            let spec = LoadSpec {
                proto: Proto::parse(&proto)?,
                addr,
                connections,
                size: size.max(1),
                depth: depth.max(1),
                pipelined,
                warmup: Duration::from_secs_f64(warmup),
                count: Duration::ZERO,
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
