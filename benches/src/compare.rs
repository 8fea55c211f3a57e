//! `pollring-bench compare`: pollring's epoll and io_uring backends, the
//! tokio baseline and (for RESP) `redis-server`, side by side, on this
//! machine.
//!
//! Each run starts a fresh server as a child process (`pollring-bench
//! serve`, or `redis-server`), pinned to its CPUs, and drives it from this
//! process, pinned to the others where the machine has enough. Runs are
//! interleaved (epoll, uring, tokio, epoll, …) so that drift on a shared
//! machine hits every server alike, and the report gives medians over
//! rounds with their spread (half the range, in percent).
//!
//! Two kinds of rows. **Depth 1** (echo, http): one request in flight per
//! connection; on a small machine the load generator is as busy as the
//! server, so these show latency and CPU per request more than a ceiling.
//! **Pipelined** (http-pipelined, resp-get, resp-set): each connection
//! writes a batch of 16 requests at once and the next batch when all 16
//! are answered, which costs the generator little per request, so the
//! server is the limit; they run only where the load generator has a CPU
//! of its own.
//!
//! Per run: requests/s; latency p50/p99/p99.9; server CPU time per request
//! (all its threads, from `/proc/PID/task/*/schedstat`), split into user
//! and system time (`utime`/`stime` of `/proc/PID/task/*/stat`, clock
//! ticks); system calls per request from `perf stat -e
//! raw_syscalls:sys_enter` when `perf` works here, else from pollring's own
//! driver counters (which count every system call the driver makes; tokio
//! and redis have none, so `-`). Every answer is checked: a wrong one fails
//! the run. Then, per server, RSS per 10,000 idle echo connections.
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
use crate::perf::SyscallCounter;
use crate::proc::UserSys;
use crate::serve::{Impl, Service, Shape};

/// Message size of the `proxy-bulk` workload.
pub const BULK_SIZE: usize = 64 * 1024;
/// Messages in flight per connection in the `proxy-bulk` workload.
pub const BULK_DEPTH: usize = 4;
/// Connections of the `proxy-bulk` workload (fewer if `--connections` says so).
pub const BULK_CONNECTIONS: usize = 20;
/// The window at the end of each warm-up in which `perf` counts system
/// calls (at most half the warm-up): tracing them slows every system call,
/// so it stays out of the recorded window.
pub const COUNT_WINDOW: Duration = Duration::from_millis(200);

/// What the load does, and to which kind of server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Echo messages of the plan's size and depth.
    Echo,
    /// HTTP `GET /plaintext` at the plan's depth.
    Http,
    /// HTTP `GET /plaintext`, batches of the plan's `pipeline` requests in
    /// one write: server-bound.
    HttpPipelined,
    /// RESP `GET`, batches of `pipeline` commands: server-bound.
    RespGet,
    /// RESP `SET`, batches of `pipeline` commands: server-bound.
    RespSet,
    /// The echo load (the plan's size and depth) through an L4 proxy to an
    /// upstream echo server.
    Proxy,
    /// Bulk echo through the proxy: [`BULK_SIZE`]-byte messages,
    /// [`BULK_DEPTH`] in flight, [`BULK_CONNECTIONS`] connections.
    ProxyBulk,
}

/// Every workload, in report order.
const WORKLOADS: [Workload; 7] = [
    Workload::Echo,
    Workload::Http,
    Workload::HttpPipelined,
    Workload::RespGet,
    Workload::RespSet,
    Workload::Proxy,
    Workload::ProxyBulk,
];

/// How the load of one workload is shaped under a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LoadShape {
    connections: usize,
    size: usize,
    depth: usize,
    pipelined: bool,
}

impl Workload {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Echo => "echo",
            Workload::Http => "http",
            Workload::HttpPipelined => "http-pipelined",
            Workload::RespGet => "resp-get",
            Workload::RespSet => "resp-set",
            Workload::Proxy => "proxy",
            Workload::ProxyBulk => "proxy-bulk",
        }
    }

    /// Parses a `--workloads` value.
    ///
    /// # Errors
    /// The value is not the name of a workload.
    pub fn parse(s: &str) -> Result<Workload, String> {
        WORKLOADS.into_iter().find(|w| w.name() == s).ok_or_else(|| {
            let names: Vec<&str> = WORKLOADS.iter().map(|w| w.name()).collect();
            format!("unknown workload {s:?}: expected one of {}", names.join(", "))
        })
    }

    /// Whether the server under test is a proxy in front of an upstream.
    pub fn is_proxy(self) -> bool {
        matches!(self, Workload::Proxy | Workload::ProxyBulk)
    }

    /// Whether the load sends batches of pipelined requests, cheap enough
    /// per request for the load generator that the server is the limit.
    pub fn is_pipelined(self) -> bool {
        matches!(self, Workload::HttpPipelined | Workload::RespGet | Workload::RespSet)
    }

    /// The protocol the load generator speaks.
    fn proto(self) -> Proto {
        match self {
            Workload::Http | Workload::HttpPipelined => Proto::Http,
            Workload::RespGet => Proto::RespGet,
            Workload::RespSet => Proto::RespSet,
            Workload::Echo | Workload::Proxy | Workload::ProxyBulk => Proto::Echo,
        }
    }

    /// What the server speaks (`upstream`: the proxies' upstream).
    fn service(self, upstream: Option<SocketAddr>) -> io::Result<Service> {
        Ok(match self {
            Workload::Echo => Service::Echo,
            Workload::Http | Workload::HttpPipelined => Service::Http,
            Workload::RespGet | Workload::RespSet => Service::Resp,
            Workload::Proxy | Workload::ProxyBulk => Service::Proxy {
                upstream: upstream
                    .ok_or_else(|| io::Error::other("a proxy workload without its upstream"))?,
            },
        })
    }

    /// Connections, message size, depth and batching of this workload
    /// under `plan`.
    fn shape(self, plan: &Plan) -> LoadShape {
        let (connections, size, depth, pipelined) = match self {
            Workload::ProxyBulk => {
                (plan.connections.min(BULK_CONNECTIONS), BULK_SIZE, BULK_DEPTH, false)
            }
            w if w.is_pipelined() => (plan.connections, plan.size, plan.pipeline, true),
            _ => (plan.connections, plan.size, plan.depth, false),
        };
        LoadShape { connections, size, depth, pipelined }
    }

    /// Payload bytes of one request, when it has a fixed size (echo).
    fn request_bytes(self, plan: &Plan) -> Option<usize> {
        (self.proto() == Proto::Echo).then(|| self.shape(plan).size)
    }

    /// Whether `server` speaks this workload's protocol: pollring all,
    /// tokio all but RESP, redis only RESP.
    pub fn served_by(self, server: Impl) -> bool {
        let resp = matches!(self, Workload::RespGet | Workload::RespSet);
        match server {
            Impl::Epoll | Impl::Uring => true,
            Impl::Tokio => !resp,
            Impl::Redis => resp,
        }
    }

    /// The server the others are compared with: tokio where it speaks the
    /// workload, else redis.
    pub fn baseline(self) -> Impl {
        if self.served_by(Impl::Tokio) {
            Impl::Tokio
        } else {
            Impl::Redis
        }
    }
}

/// What to compare and for how long.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Workloads.
    pub workloads: Vec<Workload>,
    /// Servers (each runs the workloads it speaks).
    pub servers: Vec<Impl>,
    /// Worker counts (1, and/or every allowed CPU). Pipelined workloads run
    /// only at those that leave the load generator a CPU of its own.
    pub workers: Vec<usize>,
    /// Interleaved rounds.
    pub rounds: usize,
    /// Unrecorded warm-up per run.
    pub warmup: Duration,
    /// Recorded window per run of an unpipelined workload.
    pub duration: Duration,
    /// Recorded window per run of a pipelined workload.
    pub pipelined_duration: Duration,
    /// Load connections.
    pub connections: usize,
    /// Echo message size (echo and proxy; `proxy-bulk` has its own).
    pub size: usize,
    /// Requests in flight per connection (echo, http and proxy).
    pub depth: usize,
    /// Requests per batch of the pipelined workloads.
    pub pipeline: usize,
    /// Idle connections for the RSS measurement (0: skip it).
    pub idle: usize,
    /// Where the JSON and SVG go.
    pub out: PathBuf,
}

impl Plan {
    /// Whether `workload` runs at `workers` on a machine with `cpus` CPUs:
    /// a pipelined one only where the load generator keeps a CPU of its
    /// own (else the two fight over a core and the row measures that), or
    /// at the plan's smallest count if no count leaves one.
    fn runs_at(&self, workload: Workload, workers: usize, cpus: usize) -> bool {
        if !workload.is_pipelined() || workers < cpus {
            return true;
        }
        let smallest = self.workers.iter().copied().min().unwrap_or(workers);
        smallest >= cpus && workers == smallest
    }

    /// The recorded window of one run of `workload`.
    fn window(&self, workload: Workload) -> Duration {
        if workload.is_pipelined() {
            self.pipelined_duration
        } else {
            self.duration
        }
    }

    /// Every (workload, workers, server) the plan measures, in the order
    /// of one round.
    fn cells(&self, cpus: usize) -> Vec<(Workload, usize, Impl)> {
        let mut cells = Vec::new();
        for &workload in &self.workloads {
            for &workers in &self.workers {
                if !self.runs_at(workload, workers, cpus) {
                    continue;
                }
                for &server in &self.servers {
                    if workload.served_by(server) {
                        cells.push((workload, workers, server));
                    }
                }
            }
        }
        cells
    }
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
    /// Server CPU time per request, nanoseconds (`schedstat`, all threads).
    pub cpu_ns_per_req: f64,
    /// Server CPU time in user mode per request, nanoseconds (`utime`,
    /// clock ticks, all threads).
    pub user_ns_per_req: f64,
    /// Server CPU time in the kernel per request, nanoseconds (`stime`,
    /// clock ticks, all threads).
    pub sys_ns_per_req: f64,
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
    /// Requests in flight per connection.
    pub depth: usize,
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
/// A plan naming `redis` on a machine without `redis-server` on the `PATH`
/// runs without that column, and says so on stderr and in the report.
///
/// # Errors
/// If a server cannot start or a run fails (a wrong answer fails it).
pub fn compare(plan: &Plan) -> io::Result<()> {
    let exe = std::env::current_exe()?;
    let cpus = pollring_backends::thread::allowed_cpus();
    let perf = crate::perf::works();
    let redis = find_redis(plan);
    let redis_missing = wants_redis(plan) && redis.is_none();
    let mut plan = plan.clone();
    if redis.is_none() {
        plan.servers.retain(|&s| s != Impl::Redis);
    }
    let plan = &plan;
    let cells = plan.cells(cpus.len());
    let idle_servers: Vec<Impl> =
        plan.servers.iter().copied().filter(|&s| Workload::Echo.served_by(s)).collect();
    let total = plan.rounds * cells.len() + if plan.idle > 0 { idle_servers.len() } else { 0 };
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
        for &(workload, workers, server) in &cells {
            bar.set_message(format!(
                "round {round}: {} {}, {workers} worker(s)",
                server.name(),
                workload.name()
            ));
            let service = workload.service(upstream.as_ref().map(|u| u.addr))?;
            let target = Target { server, service, workers, redis: redis.as_deref() };
            let run = one_run(&exe, plan, &cpus, perf, round, workload, &target).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("{} {} at {workers} worker(s): {e}", server.name(), workload.name()),
                )
            })?;
            runs.push(run);
            bar.inc(1);
        }
    }
    if let Some(upstream) = upstream {
        upstream.stop()?;
    }
    let mut idle = Vec::new();
    if plan.idle > 0 {
        for &server in &idle_servers {
            bar.set_message(format!("{}: RSS of {} idle connections", server.name(), plan.idle));
            idle.push(idle_rss(&exe, plan, &cpus, server)?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let summary = summarise(plan, &cells, &runs);
    let skipped = plan
        .workloads
        .iter()
        .flat_map(|&w| plan.workers.iter().map(move |&n| (w, n)))
        .filter(|&(w, n)| !plan.runs_at(w, n, cpus.len()))
        .collect::<Vec<_>>();
    let report = Report { plan, cpus: &cpus, perf, redis_missing, skipped };
    report.print(&summary, &idle);
    std::fs::create_dir_all(&plan.out)?;
    write_json(&plan.out.join("runs.json"), &runs)?;
    write_json(
        &plan.out.join("summary.json"),
        &serde_json::json!({
            "rows": summary,
            "idle_rss": idle,
            "clock_tick_ns": crate::proc::clock_tick().as_nanos() as u64,
            "redis_missing": redis_missing,
        }),
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

/// The banner printed (stderr at the start, stdout with the table) when a
/// plan wants redis and `redis-server` is not on the `PATH`.
pub const NO_REDIS: &str = "**WARNING: redis-server is not on the PATH: the RESP rows run \
     without their redis column** (install it, e.g. Debian's `redis-server`, to compare with it)";

/// Whether the plan has a RESP workload and names redis among its servers.
fn wants_redis(plan: &Plan) -> bool {
    plan.servers.contains(&Impl::Redis) && plan.workloads.iter().any(|w| w.served_by(Impl::Redis))
}

/// `redis-server` if the plan wants it; if it wants it and there is none,
/// says so loudly on stderr.
fn find_redis(plan: &Plan) -> Option<PathBuf> {
    if !wants_redis(plan) {
        return None;
    }
    let found = crate::redis::find();
    if found.is_none() {
        let line = "!".repeat(78);
        eprintln!("{line}\n{NO_REDIS}\n{line}");
    }
    found
}

/// What one run starts: which server, speaking what, with how many workers.
struct Target<'a> {
    server: Impl,
    service: Service,
    workers: usize,
    /// `redis-server`, for [`Impl::Redis`].
    redis: Option<&'a Path>,
}

/// The server of one run: a `pollring-bench serve` child, or redis.
enum Running {
    Serve(ServerProcess),
    Redis(crate::redis::RedisServer),
}

impl Running {
    /// Starts `target` on `server_cpus`, and pins this thread to `load_cpus`.
    fn start(
        exe: &Path,
        target: &Target<'_>,
        server_cpus: &[usize],
        load_cpus: &[usize],
    ) -> io::Result<Running> {
        let running = match (target.server, target.redis) {
            (Impl::Redis, Some(redis)) => Running::Redis(crate::redis::RedisServer::start(
                redis,
                target.workers,
                server_cpus,
                load_cpus,
            )?),
            (Impl::Redis, None) => return Err(io::Error::other("redis-server is not on the PATH")),
            (server, _) => Running::Serve(ServerProcess::start(
                exe,
                server,
                target.service,
                target.workers,
                server_cpus,
            )?),
        };
        pollring_backends::thread::pin_to_cpus(load_cpus)?;
        Ok(running)
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Running::Serve(s) => s.addr,
            Running::Redis(r) => r.addr,
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Running::Serve(s) => s.pid(),
            Running::Redis(r) => r.pid(),
        }
    }

    /// pollring's own syscall counter; none for tokio and redis.
    fn syscalls(&mut self) -> io::Result<Option<u64>> {
        match self {
            Running::Serve(s) => s.syscalls(),
            Running::Redis(_) => Ok(None),
        }
    }

    fn stop(self) -> io::Result<()> {
        match self {
            Running::Serve(s) => s.stop(),
            Running::Redis(r) => r.stop(),
        }
    }
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

/// The server's counters at one instant.
struct Sample {
    cpu: Duration,
    user_sys: UserSys,
    syscalls: Option<u64>,
}

fn one_run(
    exe: &Path,
    plan: &Plan,
    cpus: &[usize],
    perf: bool,
    round: usize,
    workload: Workload,
    target: &Target<'_>,
) -> io::Result<Run> {
    let (server_cpus, load_cpus, disjoint) = cpu_split(cpus, target.workers);
    let mut child = Running::start(exe, target, &server_cpus, &load_cpus)?;
    let shape = workload.shape(plan);
    let spec = LoadSpec {
        proto: workload.proto(),
        addr: child.addr(),
        connections: shape.connections,
        size: shape.size,
        depth: shape.depth,
        pipelined: shape.pipelined,
        warmup: plan.warmup,
        count: if perf { COUNT_WINDOW.min(plan.warmup / 2) } else { Duration::ZERO },
        duration: plan.window(workload),
    };
    let pid = child.pid();
    let mut counter = if perf { Some(SyscallCounter::attach(pid)?) } else { None };
    let mut perf_count = None;
    let mut start = None;
    let mut end = None;
    let mut failure = None;
    let report = load::run_with(&spec, &mut |phase| {
        let result = match phase {
            Phase::CountStart => counter.as_mut().map_or(Ok(()), SyscallCounter::enable),
            Phase::CountEnd => {
                counter.take().map_or(Ok(()), |c| c.finish().map(|n| perf_count = Some(n)))
            }
            Phase::Recording | Phase::Done => (|| -> io::Result<()> {
                let sample = Sample {
                    cpu: crate::proc::cpu_time(pid)?,
                    user_sys: crate::proc::user_sys(pid)?,
                    syscalls: child.syscalls()?,
                };
                *(if phase == Phase::Recording { &mut start } else { &mut end }) = Some(sample);
                Ok(())
            })(),
        };
        if let Err(e) = result {
            failure.get_or_insert(e);
        }
    });
    drop(counter);
    child.stop()?;
    let report = report?;
    if let Some(e) = failure {
        return Err(e);
    }
    if report.corrupt > 0 {
        return Err(io::Error::other(format!("{} wrong answers", report.corrupt)));
    }
    if report.messages == 0 {
        return Err(io::Error::other("no answer in the recorded window"));
    }
    let (s0, s1) =
        start.zip(end).ok_or_else(|| io::Error::other("the run never reached its window"))?;
    let requests = report.messages as f64;
    let (syscalls_per_req, syscalls_source) = match (perf_count, s0.syscalls.zip(s1.syscalls)) {
        (Some(n), _) if report.counted > 0 => (Some(n as f64 / report.counted as f64), "perf"),
        (Some(_), _) => return Err(io::Error::other("no answer in perf's count window")),
        (None, Some((a, b))) => (Some(b.saturating_sub(a) as f64 / requests), "driver"),
        (None, None) => (None, "none"),
    };
    let q = |p: f64| report.latency.value_at_quantile(p) as f64 / 1000.0;
    let per_req = |d: Duration| d.as_nanos() as f64 / requests;
    let cpu_ns_per_req = per_req(s1.cpu.saturating_sub(s0.cpu));
    let user_sys = s1.user_sys.since(s0.user_sys);
    let kib = workload.request_bytes(plan).map(|b| b as f64 / 1024.0);
    Ok(Run {
        round,
        workload,
        depth: shape.depth,
        workers: target.workers,
        server: target.server.name(),
        m: Measures {
            rps: report.rate(),
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            mib_per_s: kib.map(|k| report.rate() * k / 1024.0),
            cpu_ns_per_req,
            user_ns_per_req: per_req(user_sys.user),
            sys_ns_per_req: per_req(user_sys.sys),
            cpu_ns_per_kib: kib.map(|k| cpu_ns_per_req / k),
            syscalls_per_req,
            syscalls_source,
            loadgen_cpu_pct: 100.0 * report.self_cpu.as_secs_f64() / report.elapsed.as_secs_f64(),
        },
        disjoint_cpus: disjoint,
    })
}

/// RSS growth of an echo server (1 worker) per idle connection, scaled to
/// 10,000. A warm-up of 1,100 connections first cycles every buffer of an
/// io_uring buffer ring (1,024 by default), so the ring's fixed footprint
/// stays out of the per-connection figure.
fn idle_rss(exe: &Path, plan: &Plan, cpus: &[usize], server: Impl) -> io::Result<IdleRss> {
    let (server_cpus, load_cpus, _) = cpu_split(cpus, 1);
    let child = ServerProcess::start(exe, server, Service::Echo, 1, &server_cpus)?;
    pollring_backends::thread::pin_to_cpus(&load_cpus)?;
    // In steps of 256, each echoed before the next step connects, so the
    // accept queue (backlog 1,024) never overflows: a dropped SYN costs a
    // 1 s retransmission.
    let open = |n: usize| -> io::Result<Vec<TcpStream>> {
        let mut conns = Vec::with_capacity(n);
        while conns.len() < n {
            let from = conns.len();
            for _ in from..n.min(from + 256) {
                let mut s = TcpStream::connect(child.addr)?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                s.write_all(b"x")?;
                conns.push(s);
            }
            for s in &mut conns[from..] {
                let mut b = [0u8; 1];
                s.read_exact(&mut b)?;
            }
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
    /// Requests in flight per connection.
    pub depth: usize,
    /// Whether they were sent in batches (pipelined workloads).
    pub pipelined: bool,
    /// Server workers.
    pub workers: usize,
    /// Server.
    pub server: &'static str,
    /// Rounds the medians are over.
    pub rounds: usize,
    /// Medians of each measure.
    #[serde(flatten)]
    pub m: Measures,
    /// How far the rounds spread around each median.
    pub spread: Spread,
}

/// Half the range (max − min) over rounds of a measure, in percent of its
/// median; `None` with fewer than two rounds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Spread {
    /// Of requests/s.
    pub rps: Option<f64>,
    /// Of the latency median.
    pub p50_us: Option<f64>,
    /// Of the 99th percentile.
    pub p99_us: Option<f64>,
    /// Of the 99.9th percentile.
    pub p999_us: Option<f64>,
    /// Of CPU per request.
    pub cpu_ns_per_req: Option<f64>,
    /// Of user CPU per request.
    pub user_ns_per_req: Option<f64>,
    /// Of system CPU per request.
    pub sys_ns_per_req: Option<f64>,
    /// Of system calls per request.
    pub syscalls_per_req: Option<f64>,
    /// Of the load generator's CPU.
    pub loadgen_cpu_pct: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Half of (max − min) of `v`, in percent of `median`.
fn spread(v: &[f64], median: f64) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let (lo, hi) =
        v.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)));
    Some(if median.abs() > 0.0 { 50.0 * (hi - lo) / median.abs() } else { 0.0 })
}

fn summarise(plan: &Plan, cells: &[(Workload, usize, Impl)], runs: &[Run]) -> Vec<Row> {
    cells
        .iter()
        .map(|&(workload, workers, server)| {
            let rs: Vec<&Run> = runs
                .iter()
                .filter(|r| {
                    r.workload == workload && r.workers == workers && r.server == server.name()
                })
                .collect();
            let values = |f: fn(&Measures) -> f64| rs.iter().map(|r| f(&r.m)).collect::<Vec<_>>();
            let some_values = |f: fn(&Measures) -> Option<f64>| {
                rs.iter().filter_map(|r| f(&r.m)).collect::<Vec<_>>()
            };
            let mut spreads = Spread::default();
            let mut med = |f: fn(&Measures) -> f64, slot: fn(&mut Spread) -> &mut Option<f64>| {
                let v = values(f);
                let m = median(v.clone());
                *slot(&mut spreads) = spread(&v, m);
                m
            };
            let rps = med(|m| m.rps, |s| &mut s.rps);
            let p50_us = med(|m| m.p50_us, |s| &mut s.p50_us);
            let p99_us = med(|m| m.p99_us, |s| &mut s.p99_us);
            let p999_us = med(|m| m.p999_us, |s| &mut s.p999_us);
            let cpu_ns_per_req = med(|m| m.cpu_ns_per_req, |s| &mut s.cpu_ns_per_req);
            let user_ns_per_req = med(|m| m.user_ns_per_req, |s| &mut s.user_ns_per_req);
            let sys_ns_per_req = med(|m| m.sys_ns_per_req, |s| &mut s.sys_ns_per_req);
            let loadgen_cpu_pct = med(|m| m.loadgen_cpu_pct, |s| &mut s.loadgen_cpu_pct);
            let some_med = |f: fn(&Measures) -> Option<f64>| {
                let v = some_values(f);
                (!v.is_empty()).then(|| median(v))
            };
            let syscalls = some_values(|m| m.syscalls_per_req);
            let syscalls_per_req = (!syscalls.is_empty()).then(|| median(syscalls.clone()));
            spreads.syscalls_per_req = syscalls_per_req.and_then(|m| spread(&syscalls, m));
            let shape = workload.shape(plan);
            Row {
                workload,
                depth: shape.depth,
                pipelined: shape.pipelined,
                workers,
                server: server.name(),
                rounds: rs.len(),
                m: Measures {
                    rps,
                    p50_us,
                    p99_us,
                    p999_us,
                    mib_per_s: some_med(|m| m.mib_per_s),
                    cpu_ns_per_req,
                    user_ns_per_req,
                    sys_ns_per_req,
                    cpu_ns_per_kib: some_med(|m| m.cpu_ns_per_kib),
                    syscalls_per_req,
                    syscalls_source: rs.first().map_or("none", |r| r.m.syscalls_source),
                    loadgen_cpu_pct,
                },
                spread: spreads,
            }
        })
        .collect()
}

/// A median with its spread: `95457 ±3%` (just the median after one round).
fn with_spread(value: f64, spread: Option<f64>, decimals: usize) -> String {
    match spread {
        Some(s) if s < 9.95 => format!("{value:.decimals$} ±{s:.1}%"),
        Some(s) => format!("{value:.decimals$} ±{s:.0}%"),
        None => format!("{value:.decimals$}"),
    }
}

/// What the report prints besides the rows.
struct Report<'a> {
    plan: &'a Plan,
    cpus: &'a [usize],
    perf: bool,
    redis_missing: bool,
    /// (workload, workers) not run: pipelined loads where the load
    /// generator would share the server's CPUs.
    skipped: Vec<(Workload, usize)>,
}

impl Report<'_> {
    fn print(&self, rows: &[Row], idle: &[IdleRss]) {
        let plan = self.plan;
        println!(
            "## pollring compare: {} CPU(s), {} connections, {} round(s), medians ± half the range over rounds\n",
            self.cpus.len(),
            plan.connections,
            plan.rounds,
        );
        if self.redis_missing {
            println!("{NO_REDIS}\n");
        }
        let mut unpiped: Vec<&str> =
            plan.workloads.iter().filter(|w| !w.is_pipelined()).map(|w| w.name()).collect();
        unpiped.dedup();
        let piped: Vec<&str> =
            plan.workloads.iter().filter(|w| w.is_pipelined()).map(|w| w.name()).collect();
        if !unpiped.is_empty() {
            println!(
                "{}: depth {} (a new request as each answer arrives), echo {} B; {:.1} s windows.",
                unpiped.join(", "),
                plan.depth,
                plan.size,
                plan.duration.as_secs_f64()
            );
        }
        if !piped.is_empty() {
            println!(
                "{}: batches of {} requests in one write, the next batch when all are answered \
                 (server-bound); {:.1} s windows.",
                piped.join(", "),
                plan.pipeline,
                plan.pipelined_duration.as_secs_f64()
            );
        }
        println!("Each run after {:.1} s of warm-up.\n", plan.warmup.as_secs_f64());
        let bytes = plan.workloads.iter().any(|w| w.is_proxy());
        let mut head = vec!["workload", "depth", "workers", "server", "req/s", "vs base"];
        if bytes {
            head.push("MiB/s");
        }
        head.extend(["p50 µs", "p99 µs", "p99.9 µs", "CPU ns/req", "user ns/req", "sys ns/req"]);
        if bytes {
            head.push("CPU ns/KiB");
        }
        head.extend(["CPU vs base", "syscalls/req", "loadgen CPU"]);
        println!("| {} |", head.join(" | "));
        let align: Vec<&str> = head
            .iter()
            .map(|h| if matches!(*h, "workload" | "server") { "---" } else { "---:" })
            .collect();
        println!("|{}|", align.join("|"));
        let dash = || "-".to_string();
        for r in rows {
            let base = rows.iter().find(|b| {
                b.workload == r.workload
                    && b.workers == r.workers
                    && b.server == r.workload.baseline().name()
            });
            let mut cols = vec![
                r.workload.name().to_string(),
                if r.pipelined { format!("{} batched", r.depth) } else { r.depth.to_string() },
                r.workers.to_string(),
                r.server.to_string(),
                with_spread(r.m.rps, r.spread.rps, 0),
                base.map_or_else(dash, |b| format!("{:.2}x", r.m.rps / b.m.rps)),
            ];
            if bytes {
                cols.push(r.m.mib_per_s.map_or_else(dash, |m| format!("{m:.1}")));
            }
            cols.extend([
                with_spread(r.m.p50_us, r.spread.p50_us, 0),
                with_spread(r.m.p99_us, r.spread.p99_us, 0),
                with_spread(r.m.p999_us, r.spread.p999_us, 0),
                with_spread(r.m.cpu_ns_per_req, r.spread.cpu_ns_per_req, 0),
                with_spread(r.m.user_ns_per_req, r.spread.user_ns_per_req, 0),
                with_spread(r.m.sys_ns_per_req, r.spread.sys_ns_per_req, 0),
            ]);
            if bytes {
                cols.push(r.m.cpu_ns_per_kib.map_or_else(dash, |n| format!("{n:.0}")));
            }
            cols.extend([
                base.map_or_else(dash, |b| {
                    format!("{:.2}x", r.m.cpu_ns_per_req / b.m.cpu_ns_per_req)
                }),
                r.m.syscalls_per_req
                    .map_or_else(dash, |s| with_spread(s, r.spread.syscalls_per_req, 3)),
                format!("{:.0}%", r.m.loadgen_cpu_pct),
            ]);
            println!("| {} |", cols.join(" | "));
        }
        self.notes();
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

    /// The notes under the table: what each column is.
    fn notes(&self) {
        let plan = self.plan;
        let tick = crate::proc::clock_tick();
        let shortest =
            plan.workloads.iter().map(|&w| plan.window(w)).min().unwrap_or(plan.duration);
        println!(
            "\nvs base: against tokio (echo, http, proxy) or redis-server (resp); ratios of medians. \
             CPU ns/req: every thread of the server process, from /proc/PID/task/*/schedstat (ns). \
             user and sys ns/req: utime and stime from /proc/PID/task/*/stat, counted in clock \
             ticks of {} ms, so good to about a tick per busy thread per window: {:.1}% of one \
             busy core over a {:.1} s window.",
            tick.as_secs_f64() * 1000.0,
            100.0 * tick.as_secs_f64() / shortest.as_secs_f64().max(1e-9),
            shortest.as_secs_f64()
        );
        println!(
            "syscalls/req: {}. Server and load generator on disjoint CPUs only where workers < CPUs.",
            if self.perf {
                "perf stat -e raw_syscalls:sys_enter on the server process, over the last 0.2 s \
                 of the warm-up (at most half of it), not the recorded window: tracing slows every \
                 system call"
            } else {
                "pollring's driver counters (perf unavailable here; tokio and redis have none)"
            }
        );
        for (w, n) in &self.skipped {
            println!(
                "{} at {n} worker(s) not run: the load generator would share the server's CPUs, \
                 and a server-bound row needs a CPU of its own for the load.",
                w.name()
            );
        }
        if plan.workloads.iter().any(|w| w.is_proxy()) {
            let bulk = Workload::ProxyBulk.shape(plan);
            println!(
                "proxy: the echo load through the server under test (an L4 proxy) to one upstream \
                 echo server (pollring-epoll) that shares the load generator's CPUs; only the \
                 proxy's CPU is counted. proxy-bulk: {} B messages, depth {}, \
                 {} connections. MiB/s and CPU ns/KiB count echoed payload.",
                bulk.size, bulk.depth, bulk.connections
            );
        }
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    std::fs::write(path, text)
}
