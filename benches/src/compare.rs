//! `pollring-bench compare`: pollring's epoll and io_uring backends and the
//! tokio baseline, side by side, on this machine.
//!
//! Each run starts a fresh server as a child process (`pollring-bench
//! serve`), pinned to its CPUs, and drives it from this process, pinned to
//! the others where the machine has enough. Runs are interleaved (epoll,
//! uring, tokio, epoll, …) so that drift on a shared machine hits every
//! server alike, and the report gives medians over rounds.
//!
//! Per run: requests/s; latency p50/p99/p99.9; server CPU time per request
//! (all its threads, from `/proc/PID/task/*/schedstat`); system calls per
//! request from `perf stat -e raw_syscalls:sys_enter` when `perf` works here,
//! else from pollring's own driver counters (which count every system call
//! the driver makes; the tokio baseline has none, so `-`). Then, per server,
//! RSS per 10,000 idle echo connections.
//!
//! The proxy workloads put the server under test, an L4 proxy, between the
//! load generator and one upstream echo server (pollring on epoll, one per
//! `compare` run, shared by every server so that all proxy to the same
//! upstream). The upstream runs on the load generator's CPUs, so the proxy
//! has its CPU to itself, and only the proxy's CPU time is counted.
//!
//! Output: a Markdown table on stdout, `runs.json` (every raw run) and
//! `summary.json`, and `compare.svg` under the output directory.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::load::{self, LoadSpec, Phase, Proto};
use crate::serve::{Impl, Service, Shape};

/// Message size of the `proxy-bulk` workload.
pub const BULK_SIZE: usize = 64 * 1024;
/// Messages in flight per connection in the `proxy-bulk` workload.
pub const BULK_DEPTH: usize = 4;
/// Connections of the `proxy-bulk` workload (fewer if `--connections` says so).
pub const BULK_CONNECTIONS: usize = 20;

/// What the load does, and to which kind of server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Echo messages of the plan's size and depth.
    Echo,
    /// HTTP `GET /plaintext`.
    Http,
    /// The echo load (the plan's size and depth) through an L4 proxy to an
    /// upstream echo server.
    Proxy,
    /// Bulk echo through the proxy: [`BULK_SIZE`]-byte messages,
    /// [`BULK_DEPTH`] in flight, [`BULK_CONNECTIONS`] connections.
    ProxyBulk,
}

impl Workload {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Echo => "echo",
            Workload::Http => "http",
            Workload::Proxy => "proxy",
            Workload::ProxyBulk => "proxy-bulk",
        }
    }

    /// Parses a `--workloads` value.
    ///
    /// # Errors
    /// The value is none of `echo`, `http`, `proxy`, `proxy-bulk`.
    pub fn parse(s: &str) -> Result<Workload, String> {
        [Workload::Echo, Workload::Http, Workload::Proxy, Workload::ProxyBulk]
            .into_iter()
            .find(|w| w.name() == s)
            .ok_or_else(|| {
                format!("unknown workload {s:?}: expected echo, http, proxy or proxy-bulk")
            })
    }

    /// Whether the server under test is a proxy in front of an upstream.
    pub fn is_proxy(self) -> bool {
        matches!(self, Workload::Proxy | Workload::ProxyBulk)
    }

    /// The protocol the load generator speaks.
    fn proto(self) -> Proto {
        match self {
            Workload::Http => Proto::Http,
            Workload::Echo | Workload::Proxy | Workload::ProxyBulk => Proto::Echo,
        }
    }

    /// Connections, message size and depth of this workload under `plan`.
    fn shape(self, plan: &Plan) -> (usize, usize, usize) {
        match self {
            Workload::ProxyBulk => (plan.connections.min(BULK_CONNECTIONS), BULK_SIZE, BULK_DEPTH),
            _ => (plan.connections, plan.size, plan.depth),
        }
    }

    /// Payload bytes of one request, when it has a fixed size (echo).
    fn request_bytes(self, plan: &Plan) -> Option<usize> {
        (self.proto() == Proto::Echo).then(|| self.shape(plan).1)
    }
}

/// What to compare and for how long.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// Servers.
    pub servers: Vec<Impl>,
    /// Worker counts (1, and/or every allowed CPU).
    pub workers: Vec<usize>,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Unrecorded warm-up per run.
    pub warmup: Duration,
    /// Recorded window per run.
    pub duration: Duration,
    /// Load connections.
    pub connections: usize,
    /// Echo message size (echo and proxy; `proxy-bulk` has its own).
    pub size: usize,
    /// Requests in flight per connection (echo, http and proxy).
    pub depth: usize,
    /// Idle connections for the RSS measurement (0: skip it).
    pub idle: usize,
    /// Where the JSON and SVG go.
    pub out: PathBuf,
}

/// What one run (or the median of several) measured.
#[derive(Clone, Debug, Serialize)]
pub struct Measures {
    /// Requests (echo messages) per second.
    pub rps: f64,
    /// Latency percentiles, microseconds.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Echoed payload, MiB per second (echo workloads only).
    pub mib_per_s: Option<f64>,
    /// Server CPU time per request, nanoseconds.
    pub cpu_ns_per_req: f64,
    /// Server CPU time per KiB of echoed payload, nanoseconds (echo
    /// workloads only). Through a proxy each such KiB crosses it twice, in
    /// and back out.
    pub cpu_ns_per_kib: Option<f64>,
    /// System calls per request, if counted.
    pub syscalls_per_req: Option<f64>,
    /// `perf` or `driver` (pollring's counters), or `none`.
    pub syscalls_source: &'static str,
    /// The load generator's own CPU use, percent of one core.
    pub loadgen_cpu_pct: f64,
}

/// One measured run.
#[derive(Clone, Debug, Serialize)]
pub struct Run {
    /// Round number, from 1.
    pub round: usize,
    /// Workload.
    pub workload: Workload,
    /// Server workers.
    pub workers: usize,
    /// Server.
    pub server: &'static str,
    /// What it measured.
    #[serde(flatten)]
    pub m: Measures,
    /// Whether server and load generator had CPUs of their own.
    pub disjoint_cpus: bool,
}

/// RSS growth per idle connection, for one server.
#[derive(Clone, Debug, Serialize)]
pub struct IdleRss {
    /// Server.
    pub server: &'static str,
    /// Connections opened.
    pub connections: usize,
    /// RSS growth scaled to 10,000 connections, bytes.
    pub bytes_per_10k: f64,
}

/// Runs the plan: progress on stderr, the table on stdout, files in `plan.out`.
///
/// # Errors
/// If a server cannot start or a run fails.
pub fn compare(plan: &Plan) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let cpus = pollring_backends::thread::allowed_cpus();
    let perf = perf_works();
    let total = plan.rounds * plan.workloads.len() * plan.workers.len() * plan.servers.len()
        + if plan.idle > 0 { plan.servers.len() } else { 0 };
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}")
            .map_err(io::Error::other)?
            .progress_chars("=> "),
    );
    let upstream = if plan.workloads.iter().any(|w| w.is_proxy()) {
        bar.set_message("starting the upstream echo server");
        let (_, load_cpus, _) = cpu_split(&cpus, 1);
        Some(ServerProcess::start(&exe, Impl::Epoll, Service::Echo, load_cpus.len(), &load_cpus)?)
    } else {
        None
    };
    let mut runs = Vec::new();
    for round in 1..=plan.rounds {
        for &workload in &plan.workloads {
            for &workers in &plan.workers {
                for &server in &plan.servers {
                    bar.set_message(format!(
                        "round {round}: {} {}, {workers} worker(s)",
                        server.name(),
                        workload.name()
                    ));
                    let service = match (workload, &upstream) {
                        (Workload::Echo, _) => Service::Echo,
                        (Workload::Http, _) => Service::Http,
                        (Workload::Proxy | Workload::ProxyBulk, Some(u)) => {
                            Service::Proxy { upstream: u.addr }
                        }
                        (Workload::Proxy | Workload::ProxyBulk, None) => {
                            return Err(io::Error::other("a proxy workload without its upstream"))
                        }
                    };
                    let run = one_run(
                        &exe, plan, &cpus, perf, round, workload, service, workers, server,
                    )?;
                    runs.push(run);
                    bar.inc(1);
                }
            }
        }
    }
    if let Some(upstream) = upstream {
        upstream.stop()?;
    }
    let mut idle = Vec::new();
    if plan.idle > 0 {
        for &server in &plan.servers {
            bar.set_message(format!("{}: RSS of {} idle connections", server.name(), plan.idle));
            idle.push(idle_rss(&exe, plan, &cpus, server)?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let summary = summarise(plan, &runs);
    print_table(plan, &cpus, perf, &summary, &idle);
    std::fs::create_dir_all(&plan.out)?;
    write_json(&plan.out.join("runs.json"), &runs)?;
    write_json(
        &plan.out.join("summary.json"),
        &serde_json::json!({ "rows": summary, "idle_rss": idle }),
    )?;
    crate::chart::bars(&plan.out.join("compare.svg"), &summary)?;
    eprintln!(
        "raw runs: {}, summary: {}, chart: {}",
        plan.out.join("runs.json").display(),
        plan.out.join("summary.json").display(),
        plan.out.join("compare.svg").display()
    );
    Ok(())
}

/// A server child process (`pollring-bench serve`) and its control pipe;
/// the scenarios use it too.
pub(crate) struct ServerProcess {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
}

impl ServerProcess {
    fn start(
        exe: &Path,
        server: Impl,
        service: Service,
        workers: usize,
        cpus: &[usize],
    ) -> io::Result<ServerProcess> {
        let shape = Shape { workers, cpus: cpus.to_vec(), offload_threads: None };
        ServerProcess::start_with(exe, server, service, &shape, &[])
    }

    /// Starts `exe serve` with `shape`, and `env` added to its environment.
    pub(crate) fn start_with(
        exe: &Path,
        server: Impl,
        service: Service,
        shape: &Shape,
        env: &[(&str, String)],
    ) -> io::Result<ServerProcess> {
        let cpu_list = shape.cpus.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",");
        let mut command = Command::new(exe);
        command.args(["serve", "--server", server.arg(), "--proto", service.arg()]);
        if let Service::Proxy { upstream } = service {
            command.args(["--upstream", &upstream.to_string()]);
        }
        if let Some(threads) = shape.offload_threads {
            command.args(["--offload-threads", &threads.to_string()]);
        }
        command.envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = command
            .args([
                "--workers",
                &shape.workers.max(1).to_string(),
                "--addr",
                "127.0.0.1:0",
                "--cpus",
                &cpu_list,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().ok_or_else(|| io::Error::other("no stdin"))?;
        let mut stdout =
            BufReader::new(child.stdout.take().ok_or_else(|| io::Error::other("no stdout"))?);
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        let addr =
            line.trim().strip_prefix("ready ").and_then(|a| a.parse().ok()).ok_or_else(|| {
                io::Error::other(format!("{} did not start: {line:?}", server.name()))
            })?;
        Ok(ServerProcess { child, stdin, stdout, addr })
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's counters: one JSON object (see `serve`).
    pub(crate) fn stats(&mut self) -> io::Result<serde_json::Value> {
        writeln!(self.stdin, "stats")?;
        self.stdin.flush()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line)?;
        serde_json::from_str(&line).map_err(io::Error::other)
    }

    /// The server's own syscall counter (pollring's drivers), if it has one.
    fn syscalls(&mut self) -> io::Result<Option<u64>> {
        Ok(self.stats()?["syscalls"].as_u64())
    }

    /// Asks the server to stop and waits (10 s at most, then kills it).
    pub(crate) fn stop(mut self) -> io::Result<()> {
        let _ = writeln!(self.stdin, "stop");
        drop(self.stdin);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(io::Error::other("a server did not stop within 10 s"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Server and load CPU sets: disjoint when the machine allows it.
pub(crate) fn cpu_split(cpus: &[usize], workers: usize) -> (Vec<usize>, Vec<usize>, bool) {
    if cpus.len() > workers {
        (cpus[..workers].to_vec(), cpus[workers..].to_vec(), true)
    } else {
        (cpus.to_vec(), cpus.to_vec(), false)
    }
}

#[allow(clippy::too_many_arguments)]
fn one_run(
    exe: &Path,
    plan: &Plan,
    cpus: &[usize],
    perf: bool,
    round: usize,
    workload: Workload,
    service: Service,
    workers: usize,
    server: Impl,
) -> io::Result<Run> {
    let (server_cpus, load_cpus, disjoint) = cpu_split(cpus, workers);
    let mut child = ServerProcess::start(exe, server, service, workers, &server_cpus)?;
    pollring_backends::thread::pin_to_cpus(&load_cpus)?;
    let (connections, size, depth) = workload.shape(plan);
    let spec = LoadSpec {
        proto: workload.proto(),
        addr: child.addr,
        connections,
        size,
        depth,
        warmup: plan.warmup,
        duration: plan.duration,
    };
    let pid = child.pid();
    let mut start = None;
    let mut end = None;
    let mut perf_child = None;
    let mut failure = None;
    let report = load::run_with(&spec, &mut |phase| {
        let sample = (|| -> io::Result<(Duration, Option<u64>)> {
            Ok((crate::proc::cpu_time(pid)?, child.syscalls()?))
        })();
        match (phase, sample) {
            (Phase::Recording, Ok(s)) => {
                if perf {
                    perf_child = start_perf(pid).ok();
                }
                start = Some(s);
            }
            (Phase::Done, Ok(s)) => end = Some(s),
            (_, Err(e)) => failure = Some(e),
        }
    })?;
    let perf_count = perf_child.and_then(stop_perf);
    child.stop()?;
    if let Some(e) = failure {
        return Err(e);
    }
    if report.corrupt > 0 {
        return Err(io::Error::other(format!(
            "{}: {} wrong answers",
            server.name(),
            report.corrupt
        )));
    }
    let ((cpu0, sys0), (cpu1, sys1)) =
        start.zip(end).ok_or_else(|| io::Error::other("the run never reached its window"))?;
    let requests = report.messages.max(1) as f64;
    let (syscalls_per_req, syscalls_source) = match (perf_count, sys0.zip(sys1)) {
        (Some(n), _) => (Some(n as f64 / requests), "perf"),
        (None, Some((a, b))) => (Some(b.saturating_sub(a) as f64 / requests), "driver"),
        (None, None) => (None, "none"),
    };
    let q = |p: f64| report.latency.value_at_quantile(p) as f64 / 1000.0;
    let cpu_ns_per_req = cpu1.saturating_sub(cpu0).as_nanos() as f64 / requests;
    let kib = workload.request_bytes(plan).map(|b| b as f64 / 1024.0);
    Ok(Run {
        round,
        workload,
        workers,
        server: server.name(),
        m: Measures {
            rps: report.rate(),
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            mib_per_s: kib.map(|k| report.rate() * k / 1024.0),
            cpu_ns_per_req,
            cpu_ns_per_kib: kib.map(|k| cpu_ns_per_req / k),
            syscalls_per_req,
            syscalls_source,
            loadgen_cpu_pct: 100.0 * report.self_cpu.as_secs_f64() / report.elapsed.as_secs_f64(),
        },
        disjoint_cpus: disjoint,
    })
}

/// Whether `perf stat -e raw_syscalls:sys_enter` works here (root or a
/// permissive `perf_event_paranoid`, and linux-perf installed).
fn perf_works() -> bool {
    Command::new("perf")
        .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stderr).contains("raw_syscalls"))
        .unwrap_or(false)
}

fn start_perf(pid: u32) -> io::Result<Child> {
    Command::new("perf")
        .args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
}

/// Ends a `perf stat -p` with SIGINT and reads its count.
fn stop_perf(mut perf: Child) -> Option<u64> {
    let _ = Command::new("kill").args(["-INT", &perf.id().to_string()]).status();
    let mut err = String::new();
    perf.stderr.take()?.read_to_string(&mut err).ok()?;
    let _ = perf.wait();
    err.lines()
        .find(|l| l.contains("raw_syscalls:sys_enter"))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.trim().parse().ok())
}

/// RSS growth of an echo server (1 worker) per idle connection, scaled to
/// 10,000. A warm-up of 1,100 connections first cycles every buffer of an
/// io_uring buffer ring (1,024 by default), so the ring's fixed footprint
/// stays out of the per-connection figure.
fn idle_rss(exe: &Path, plan: &Plan, cpus: &[usize], server: Impl) -> io::Result<IdleRss> {
    let (server_cpus, load_cpus, _) = cpu_split(cpus, 1);
    let child = ServerProcess::start(exe, server, Service::Echo, 1, &server_cpus)?;
    pollring_backends::thread::pin_to_cpus(&load_cpus)?;
    let open = |n: usize| -> io::Result<Vec<TcpStream>> {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            let mut s = TcpStream::connect(child.addr)?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.write_all(b"x")?;
            conns.push(s);
        }
        for s in &mut conns {
            let mut b = [0u8; 1];
            s.read_exact(&mut b)?;
        }
        Ok(conns)
    };
    let warm = open(plan.idle.min(1100))?;
    std::thread::sleep(Duration::from_millis(200));
    let before = crate::proc::rss(child.pid())?;
    let conns = open(plan.idle)?;
    std::thread::sleep(Duration::from_millis(500));
    let after = crate::proc::rss(child.pid())?;
    drop(conns);
    drop(warm);
    child.stop()?;
    Ok(IdleRss {
        server: server.name(),
        connections: plan.idle,
        bytes_per_10k: after.saturating_sub(before) as f64 / plan.idle as f64 * 10_000.0,
    })
}

/// Medians over rounds for one (workload, workers, server).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Workload.
    pub workload: Workload,
    /// Server workers.
    pub workers: usize,
    /// Server.
    pub server: &'static str,
    /// Medians of each measure.
    #[serde(flatten)]
    pub m: Measures,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn summarise(plan: &Plan, runs: &[Run]) -> Vec<Row> {
    let mut rows = Vec::new();
    for &workload in &plan.workloads {
        for &workers in &plan.workers {
            for &server in &plan.servers {
                let rs: Vec<&Run> = runs
                    .iter()
                    .filter(|r| {
                        r.workload == workload && r.workers == workers && r.server == server.name()
                    })
                    .collect();
                let med = |f: fn(&Measures) -> f64| median(rs.iter().map(|r| f(&r.m)).collect());
                let sys: Vec<f64> = rs.iter().filter_map(|r| r.m.syscalls_per_req).collect();
                let some_med = |f: fn(&Measures) -> Option<f64>| {
                    let v: Vec<f64> = rs.iter().filter_map(|r| f(&r.m)).collect();
                    (!v.is_empty()).then(|| median(v))
                };
                rows.push(Row {
                    workload,
                    workers,
                    server: server.name(),
                    m: Measures {
                        rps: med(|m| m.rps),
                        p50_us: med(|m| m.p50_us),
                        p99_us: med(|m| m.p99_us),
                        p999_us: med(|m| m.p999_us),
                        mib_per_s: some_med(|m| m.mib_per_s),
                        cpu_ns_per_req: med(|m| m.cpu_ns_per_req),
                        cpu_ns_per_kib: some_med(|m| m.cpu_ns_per_kib),
                        syscalls_per_req: (!sys.is_empty()).then(|| median(sys)),
                        syscalls_source: rs.first().map_or("none", |r| r.m.syscalls_source),
                        loadgen_cpu_pct: med(|m| m.loadgen_cpu_pct),
                    },
                });
            }
        }
    }
    rows
}

fn print_table(plan: &Plan, cpus: &[usize], perf: bool, rows: &[Row], idle: &[IdleRss]) {
    println!(
        "## pollring compare: {} CPU(s), {} connections, depth {}, echo {} B, {} round(s) of {:.1} s (medians)\n",
        cpus.len(),
        plan.connections,
        plan.depth,
        plan.size,
        plan.rounds,
        plan.duration.as_secs_f64()
    );
    println!("| workload | workers | server | req/s | vs tokio | MiB/s | p50 µs | p99 µs | p99.9 µs | CPU ns/req | CPU ns/KiB | CPU vs tokio | syscalls/req | loadgen CPU |");
    println!("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let dash = || "-".to_string();
    for r in rows {
        let tokio = rows
            .iter()
            .find(|t| t.workload == r.workload && t.workers == r.workers && t.server == "tokio");
        let ratio = tokio.map_or_else(dash, |t| format!("{:.2}x", r.m.rps / t.m.rps));
        let cpu_ratio =
            tokio.map_or_else(dash, |t| format!("{:.2}x", r.m.cpu_ns_per_req / t.m.cpu_ns_per_req));
        let sys = r.m.syscalls_per_req.map_or_else(dash, |s| format!("{s:.3}"));
        let mib = r.m.mib_per_s.map_or_else(dash, |m| format!("{m:.1}"));
        let per_kib = r.m.cpu_ns_per_kib.map_or_else(dash, |n| format!("{n:.0}"));
        println!(
            "| {} | {} | {} | {:.0} | {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {:.0}% |",
            r.workload.name(),
            r.workers,
            r.server,
            r.m.rps,
            ratio,
            mib,
            r.m.p50_us,
            r.m.p99_us,
            r.m.p999_us,
            r.m.cpu_ns_per_req,
            per_kib,
            cpu_ratio,
            sys,
            r.m.loadgen_cpu_pct
        );
    }
    println!(
        "\nsyscalls/req: {}. Server and load generator on disjoint CPUs only where workers < CPUs. \
         CPU: the server process's, per request and per KiB of echoed payload.",
        if perf {
            "perf stat -e raw_syscalls:sys_enter on the server process"
        } else {
            "pollring's driver counters (perf unavailable here; the tokio baseline has none)"
        }
    );
    if plan.workloads.iter().any(|w| w.is_proxy()) {
        let (connections, size, depth) = Workload::ProxyBulk.shape(plan);
        println!(
            "proxy: the echo load through the server under test (an L4 proxy) to one upstream \
             echo server (pollring-epoll) that shares the load generator's CPUs; only the \
             proxy's CPU is counted. proxy-bulk: {size} B messages, depth {depth}, \
             {connections} connections."
        );
    }
    if !idle.is_empty() {
        println!("\n| server | RSS per 10,000 idle echo connections |");
        println!("|---|---:|");
        for i in idle {
            println!(
                "| {} | {:.0} KiB (measured over {} connections) |",
                i.server,
                i.bytes_per_10k / 1024.0,
                i.connections
            );
        }
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    std::fs::write(path, text)
}
