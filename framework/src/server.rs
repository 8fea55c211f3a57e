//! Starting, observing and stopping a server.

use std::fmt;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use pollring_backends::buf::Pool;
use pollring_backends::epoll::Epoll;
use pollring_backends::handover::{self, Passed};
use pollring_backends::uring::{self, Uring};
use pollring_backends::{Driver, Share, Waker};

use crate::error::{Error, Result};
use crate::exporter::Exporter;
use crate::handler::Handler;
use crate::listen::{Endpoint, Listener, METRICS_FD_NAME};
use crate::mailbox::Sender;
use crate::offload::Offload;
use crate::worker::{Worker, WorkerParts};
use crate::{Backend, Config};

/// Identifies a worker thread: `0..config.workers`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkerId(pub usize);

/// State shared by the handle and the workers.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) stop: AtomicBool,
    /// A restart is under way: one at a time.
    restarting: AtomicBool,
    /// The listening sockets a restart hands over, until shutdown begins
    /// (then they close, so that new connections are refused rather than
    /// left in a backlog nobody accepts from).
    handover: Mutex<Option<Handover>>,
}

/// The server's own copies of its listening sockets (the workers hold
/// theirs).
#[derive(Debug)]
struct Handover {
    listeners: Vec<Listener>,
    metrics: Option<OwnedFd>,
}

/// How long a restart waits for the new process to serve before giving up
/// (and killing it).
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(30);

/// Counters one worker publishes once per turn.
#[derive(Debug, Default)]
pub(crate) struct WorkerStats {
    pub(crate) connections: AtomicUsize,
    pub(crate) syscalls: AtomicU64,
    pub(crate) turns: AtomicU64,
    pub(crate) pool_in_use: AtomicUsize,
    pub(crate) buffered_peak: AtomicUsize,
    /// The worker's [`WorkerMetrics`](crate::WorkerMetrics).
    pub(crate) metrics: crate::metrics::Published,
}

/// A snapshot of a running server's counters, summed over workers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Open connections.
    pub connections: usize,
    /// System calls made by the drivers.
    pub syscalls: u64,
    /// Driver turns.
    pub turns: u64,
    /// Pool buffers in use (connections' chains, and for io_uring the
    /// buffers lent to the kernel's buffer ring).
    pub pool_in_use: usize,
    /// The most bytes one connection ever had buffered (unsent output plus
    /// unconsumed input), measured after each turn's flush.
    pub buffered_peak: usize,
}

/// A server bound to its address, not yet serving.
///
/// # Examples
/// ```no_run
/// use pollring::{Config, Cx, Handler, Server};
/// # struct Echo;
/// # impl Handler for Echo {
/// #     type Conn = ();
/// #     type Message = ();
/// #     fn on_open(&mut self, _: &mut Cx<'_>) {}
/// #     fn on_data(&mut self, _: &mut (), cx: &mut Cx<'_>) { let n = cx.input().len(); cx.forward(n); }
/// # }
/// let server = Server::bind("127.0.0.1:7000", Config::from_env()?)?;
/// server.run(|_worker| Echo)?; // until SIGINT/SIGTERM
/// # Ok::<(), pollring::Error>(())
/// ```
#[derive(Debug)]
pub struct Server {
    config: Config,
    /// Where it listens, in the order bound: [`Cx::listener`](crate::Cx::listener)
    /// is an index into this.
    listeners: Vec<Listener>,
    /// The listeners were passed by socket activation: they replace every
    /// address the program would bind.
    inherited: bool,
    /// The `/metrics` endpoint's listener ([`Config::metrics_addr`]).
    metrics: Option<TcpListener>,
    /// Started by a restart: the pipe that tells the old process this one
    /// serves.
    ready: Option<OwnedFd>,
}

/// The `/metrics` endpoint's listener, if [`Config::metrics_addr`] asks
/// for one.
fn bind_metrics(config: &Config) -> Result<Option<TcpListener>> {
    let Some(at) = config.metrics_addr else { return Ok(None) };
    TcpListener::bind(at).map(Some).map_err(|source| Error::Bind { addr: at.into(), source })
}

/// The most listeners one server has ([`Cx::listener`](crate::Cx::listener)
/// is kept in a byte of every connection).
pub const MAX_LISTENERS: usize = 255;

impl Server {
    /// Binds one `SO_REUSEPORT` listener per worker to `addr`, unless the
    /// process was started by socket activation (systemd's `LISTEN_FDS`
    /// naming this process): then nothing is bound and the workers serve
    /// the passed listening sockets (see [`Server::bind_to`]).
    ///
    /// # Errors
    /// [`Error::Resolve`], naming `addr` as given, if it does not resolve;
    /// [`Error::Bind`] if the kernel refuses; [`Error::Config`] if
    /// `LISTEN_FDS` is malformed or names something other than a listening
    /// stream socket.
    pub fn bind(addr: impl ToSocketAddrs + fmt::Debug, config: Config) -> Result<Server> {
        if let Some(server) = Server::activated(&config)? {
            return Ok(server);
        }
        Server::bind_to(&Endpoint::resolve(addr)?, config)
    }

    /// Listens on `endpoint`: a TCP address (one `SO_REUSEPORT` socket per
    /// worker, the kernel spreading connections over them) or a Unix socket
    /// (one socket, shared by the workers; a stale socket file left by a
    /// server that is gone is replaced, anything else at the path is an
    /// error).
    ///
    /// Under socket activation (systemd's `LISTEN_FDS` naming this
    /// process) nothing is bound: the passed sockets are the server's
    /// listeners, in the order passed, consecutive sockets of one address
    /// counting as one listener. Workers share a passed socket without a
    /// thundering herd (epoll's `EPOLLEXCLUSIVE`; one-shot accepts taking
    /// turns on io_uring).
    ///
    /// # Errors
    /// As [`Server::bind`].
    pub fn bind_to(endpoint: &Endpoint, config: Config) -> Result<Server> {
        if let Some(server) = Server::activated(&config)? {
            return Ok(server);
        }
        let listener = Listener::bind(endpoint, config.workers.get(), config.backlog)?;
        let metrics = bind_metrics(&config)?;
        Ok(Server { config, listeners: vec![listener], inherited: false, metrics, ready: None })
    }

    /// Listens on `endpoint` too: a public and an admin port, TCP and a
    /// Unix socket. [`Cx::listener`](crate::Cx::listener) tells a
    /// connection which listener accepted it: `0` for the first bound,
    /// then one more for each call. Under socket activation this binds
    /// nothing (the passed sockets are all the listeners).
    ///
    /// # Errors
    /// As [`Server::bind_to`]; [`Error::Config`] past [`MAX_LISTENERS`].
    pub fn also_listen(mut self, endpoint: &Endpoint) -> Result<Server> {
        if self.inherited {
            tracing::debug!(%endpoint, "not bound: serving the sockets passed by socket activation");
            return Ok(self);
        }
        if self.listeners.len() >= MAX_LISTENERS {
            return Err(Error::Config(format!("more than {MAX_LISTENERS} listeners")));
        }
        let config = &self.config;
        self.listeners.push(Listener::bind(endpoint, config.workers.get(), config.backlog)?);
        Ok(self)
    }

    /// The server made of the sockets passed by socket activation, if any
    /// (a service manager's, or the old process's in a restart).
    fn activated(config: &Config) -> Result<Option<Server>> {
        let Some(passed) = Listener::inherited()? else { return Ok(None) };
        let listeners = passed.listeners;
        if listeners.is_empty() || listeners.len() > MAX_LISTENERS {
            return Err(Error::Config(format!(
                "socket activation passed {} listeners; a server serves 1 to {MAX_LISTENERS}",
                listeners.len()
            )));
        }
        for l in &listeners {
            let (endpoint, sockets) = (&l.endpoint, l.sockets.len());
            tracing::info!(%endpoint, sockets, "serving the listening socket passed by socket activation");
        }
        let metrics = match passed.metrics {
            Some(socket) => Some(TcpListener::from(socket)),
            None => bind_metrics(config)?,
        };
        let ready = handover::take_ready_pipe();
        Ok(Some(Server { config: config.clone(), listeners, inherited: true, metrics, ready }))
    }

    /// The first TCP listener's address (with the port the kernel picked
    /// for port 0).
    ///
    /// # Panics
    /// If the server listens on Unix sockets only: see [`Server::endpoints`].
    pub fn local_addr(&self) -> SocketAddr {
        first_tcp(self.listeners.iter().map(|l| &l.endpoint))
    }

    /// Every endpoint the server listens on, in the order of
    /// [`Cx::listener`](crate::Cx::listener).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        self.listeners.iter().map(|l| l.endpoint.clone()).collect()
    }

    /// Starts the workers, each with a handler built by `factory` on its own
    /// thread, and returns once all of them are serving.
    ///
    /// # Errors
    /// [`Error::Uring`] when `Backend::Uring` cannot start (the message names
    /// the reason); [`Error::WorkerStart`] when a worker cannot create its
    /// pool or driver. Workers already started are stopped again before
    /// they serve anything. Under `Backend::Auto`, io_uring workers that
    /// cannot set up their rings (the probe passed: e.g. `RLIMIT_MEMLOCK`,
    /// see [`UringError`](crate::UringError)) are started again on epoll,
    /// with a warning; `factory` is then called again for each worker.
    pub fn serve<H, F>(self, factory: F) -> Result<ServerHandle>
    where
        H: Handler,
        F: Fn(WorkerId) -> H + Send + Sync + 'static,
    {
        let backend = resolve_backend(&self.config)?;
        let factory = Arc::new(factory);
        let mut handle = match self.start(backend, &factory) {
            // The probe's small ring passed, the workers' rings did not
            // (e.g. RLIMIT_MEMLOCK, which Linux 6.x charges them to):
            // `Auto` falls back as it would have at the probe.
            Err(error) if self.config.backend == Backend::Auto && is_uring_failure(&error) => {
                tracing::warn!(%error, "io_uring workers cannot start; using epoll");
                self.start(Backend::Epoll, &factory)?
            }
            started => started?,
        };
        let mut metrics_copy = None;
        if let Some(listener) = self.metrics {
            metrics_copy = listener.try_clone().ok().map(OwnedFd::from);
            let workers = handle.workers.iter().map(|w| w.stats.clone()).collect();
            let addr = match listener.local_addr() {
                Ok(addr) => Endpoint::Tcp(addr),
                Err(_) => handle.endpoints[0].clone(),
            };
            match Exporter::start(listener, workers) {
                Ok(exporter) => handle.exporter = Some(exporter),
                Err(source) => {
                    handle.shutdown();
                    let _ = handle.join_all();
                    return Err(Error::Bind { addr, source });
                }
            }
        }
        for endpoint in &handle.endpoints {
            tracing::info!(%endpoint, backend = %handle.backend, workers = handle.workers.len(), "serving");
        }
        let handover = Handover { listeners: self.listeners, metrics: metrics_copy };
        *lock(&handle.shared.handover) = Some(handover);
        if let Some(pipe) = self.ready {
            handover::announce_ready(pipe);
        }
        Ok(handle)
    }

    /// Starts the workers on `backend`; returns once all serve, or stops
    /// those that started if one cannot.
    fn start<H, F>(&self, backend: Backend, factory: &Arc<F>) -> Result<ServerHandle>
    where
        H: Handler,
        F: Fn(WorkerId) -> H + Send + Sync + 'static,
    {
        let endpoints: Vec<Endpoint> = self.listeners.iter().map(|l| l.endpoint.clone()).collect();
        let shared = Arc::new(Shared::default());
        let count = self.config.workers.get();
        let sender: Sender<H::Message> = Sender::new(count, self.config.mailbox_capacity);
        let offload =
            Arc::new(Offload::new(self.config.offload_threads, self.config.offload_queue));
        let cpus = pollring_backends::thread::allowed_cpus();
        let mut workers = Vec::new();
        let (ready_tx, ready_rx) = mpsc::channel();
        let dealt = deal(&self.listeners, count)?;
        let mut spawn_failure = None;
        let gate = Arc::new(Gate::default());
        for (i, listeners) in dealt.into_iter().enumerate() {
            let id = WorkerId(i);
            let stats = Arc::new(WorkerStats::default());
            let (config, shared, factory, ready) =
                (self.config.clone(), shared.clone(), factory.clone(), ready_tx.clone());
            let (sender, offload, gate) = (sender.clone(), offload.clone(), gate.clone());
            let cpu =
                self.config.pin_cpus.then(|| cpus.get(i % cpus.len().max(1)).copied()).flatten();
            let thread_stats = stats.clone();
            let thread =
                std::thread::Builder::new().name(format!("pollring-{i}")).spawn(move || {
                    if let Some(cpu) = cpu {
                        if let Err(error) = pollring_backends::thread::pin_to_cpu(cpu) {
                            tracing::warn!(worker = i, cpu, %error, "cannot pin worker");
                        }
                    }
                    let parts =
                        WorkerParts { id, listeners, config, shared, stats: thread_stats, offload };
                    let start = WorkerStart { parts, sender, ready, gate };
                    match backend {
                        Backend::Uring => start.run(factory, |pool, c| {
                            Uring::new(pool, &c.uring).map_err(std::io::Error::other)
                        }),
                        _ => start.run(factory, |pool, c| Epoll::new(pool, &c.epoll)),
                    }
                });
            match thread {
                Ok(thread) => {
                    workers.push(WorkerThread { thread: Some(thread), waker: None, stats })
                }
                Err(source) => {
                    // Those started are stopped below, like any failure.
                    spawn_failure = Some(Error::WorkerStart { worker: i, source });
                    break;
                }
            }
        }
        drop(ready_tx);
        let mut handle = ServerHandle {
            shared,
            workers,
            endpoints,
            backend,
            sender: Arc::new(sender),
            offload,
            exporter: None,
        };
        // Every worker reports exactly once, or drops its sender by panicking
        // (e.g. in the handler factory): wait for all before deciding, so a
        // failure stops every worker that did start.
        let mut failure = spawn_failure;
        let mut reported = 0;
        while let Ok((i, result)) = ready_rx.recv() {
            reported += 1;
            match result {
                Ok(waker) => handle.workers[i].waker = Some(waker),
                Err(source) => failure = failure.or(Some(Error::WorkerStart { worker: i, source })),
            }
        }
        if reported < handle.workers.len() && failure.is_none() {
            let i = handle.workers.iter().position(|w| w.waker.is_none()).unwrap_or(0);
            failure = Some(Error::WorkerPanic(i));
        }
        gate.decide(failure.is_none());
        if let Some(error) = failure {
            handle.shutdown();
            let _ = handle.join_all();
            return Err(error);
        }
        Ok(handle)
    }

    /// [`Server::serve`], then stops gracefully on SIGINT or SIGTERM (a
    /// second signal exits at once), restarts without downtime on SIGUSR2
    /// ([`ServerHandle::restart`]), and returns when every worker is done.
    ///
    /// # Errors
    /// As [`Server::serve`] and [`ServerHandle::wait`]; [`Error::Signals`] if
    /// the signal handlers cannot be installed.
    pub fn run<H, F>(self, factory: F) -> Result<()>
    where
        H: Handler,
        F: Fn(WorkerId) -> H + Send + Sync + 'static,
    {
        // Catch the signals before any worker serves: a SIGTERM that comes
        // as soon as the first connection is answered must stop the server
        // gracefully, not kill it with the default action.
        let signals = catch_signals()?;
        let handle = self.serve(factory)?;
        handle.watch_signals(signals)?;
        handle.wait()
    }
}

/// Each worker's sockets: `(listener index, socket, shared)`.
type Dealt = Vec<(u8, OwnedFd, Share)>;

/// Deals every listener's sockets out to `workers` workers.
fn deal(listeners: &[Listener], workers: usize) -> Result<Vec<Dealt>> {
    let mut dealt: Vec<Dealt> = (0..workers).map(|_| Vec::new()).collect();
    for (index, l) in listeners.iter().enumerate() {
        for (worker, sockets) in dealt.iter_mut().enumerate() {
            let failed = |source| Error::Bind { addr: l.endpoint.clone(), source };
            let mine = l.deal(worker, workers).map_err(failed)?;
            sockets.extend(mine.into_iter().map(|(fd, share)| (index as u8, fd, share)));
        }
    }
    Ok(dealt)
}

/// The first TCP endpoint's address.
///
/// # Panics
/// If there is none.
fn first_tcp<'a>(mut endpoints: impl Iterator<Item = &'a Endpoint>) -> SocketAddr {
    endpoints
        .find_map(Endpoint::tcp)
        .expect("local_addr: the server listens on Unix sockets only (see endpoints)")
}

/// Installs the SIGINT/SIGTERM/SIGUSR2 handlers; signals are held until
/// watched.
fn catch_signals() -> Result<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR2};
    signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR2]).map_err(Error::Signals)
}

/// The handover's lock; a panic elsewhere while it was held leaves nothing
/// half-done (it only holds descriptors).
fn lock(handover: &Mutex<Option<Handover>>) -> std::sync::MutexGuard<'_, Option<Handover>> {
    handover.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts a new process of this program with the listening sockets and
/// waits until it serves; then begins this one's graceful shutdown.
fn restart(shared: &Shared, trigger: &ShutdownTrigger) -> Result<u32> {
    if shared.restarting.swap(true, Ordering::AcqRel) {
        let busy = std::io::Error::other("another restart is under way");
        return Err(Error::Restart(handover::HandoverError::Spawn(busy)));
    }
    let result = hand_over(shared, trigger);
    shared.restarting.store(false, Ordering::Release);
    result
}

/// [`restart`], one at a time.
fn hand_over(shared: &Shared, trigger: &ShutdownTrigger) -> Result<u32> {
    // Copies, so the lock is not held while the new process starts (a
    // shutdown meanwhile must not wait for it).
    let (sockets, metrics) = {
        let handover = lock(&shared.handover);
        let Some(h) = handover.as_ref() else { return Err(Error::Stopping) };
        let copy = |fd: &OwnedFd| fd.try_clone().map_err(handover::HandoverError::Spawn);
        let sockets: Vec<OwnedFd> = h
            .listeners
            .iter()
            .flat_map(|l| &l.sockets)
            .map(copy)
            .collect::<std::result::Result<_, _>>()
            .map_err(Error::Restart)?;
        let metrics = h.metrics.as_ref().map(copy).transpose().map_err(Error::Restart)?;
        (sockets, metrics)
    };
    let passed: Vec<Passed<'_>> = sockets
        .iter()
        .map(|fd| Passed { fd, name: "listener" })
        .chain(metrics.iter().map(|fd| Passed { fd, name: METRICS_FD_NAME }))
        .collect();
    let pid = handover::spawn_successor(&passed, RESTART_TIMEOUT).map_err(Error::Restart)?;
    tracing::info!(pid, "restart: the new process serves; this one drains and exits");
    trigger.shutdown();
    Ok(pid)
}

/// Whether `error` is an io_uring driver that could not start.
fn is_uring_failure(error: &Error) -> bool {
    match error {
        Error::WorkerStart { source, .. } => {
            source.get_ref().is_some_and(|inner| inner.is::<pollring_backends::uring::UringError>())
        }
        _ => false,
    }
}

/// Picks the backend for `Auto` and checks that `Uring` can start.
fn resolve_backend(config: &Config) -> Result<Backend> {
    match config.backend {
        Backend::Epoll => Ok(Backend::Epoll),
        Backend::Uring => probe_uring(config).map(|()| Backend::Uring).map_err(Error::Uring),
        _ => match probe_uring(config) {
            Ok(()) => Ok(Backend::Uring),
            // A mistake in the configuration is an error on every backend:
            // falling back would hide it until io_uring is asked for.
            Err(reason @ pollring_backends::uring::UringError::InvalidConfig(_)) => {
                Err(Error::Uring(reason))
            }
            Err(reason) => {
                tracing::warn!(%reason, "io_uring unavailable; using epoll");
                Ok(Backend::Epoll)
            }
        },
    }
}

/// Runs the io_uring probe on a short-lived thread of its own. The probe's
/// ring is torn down by the kernel asynchronously, with task work queued to
/// the thread that created it; on the caller's thread that work interrupts
/// blocking socket calls that have a timeout (they fail with `EINTR`).
fn probe_uring(config: &Config) -> Result<(), pollring_backends::uring::UringError> {
    std::thread::scope(|s| {
        s.spawn(|| uring::probe(&config.uring)).join().unwrap_or_else(|_| {
            Err(pollring_backends::uring::UringError::Setup {
                step: "probing io_uring",
                source: std::io::Error::other("the probe panicked"),
            })
        })
    })
}

struct WorkerStart<M> {
    parts: WorkerParts,
    sender: Sender<M>,
    ready: mpsc::Sender<(usize, std::io::Result<Waker>)>,
    gate: Arc<Gate>,
}

/// Holds the workers that started until all have: then every one runs, or
/// none does (no handler callback runs, nothing accepted is served, for a
/// start that fails, e.g. before `Auto` falls back to epoll).
#[derive(Debug, Default)]
struct Gate {
    go: Mutex<Option<bool>>,
    decided: std::sync::Condvar,
}

impl Gate {
    fn decide(&self, go: bool) {
        *self.go.lock().unwrap_or_else(|p| p.into_inner()) = Some(go);
        self.decided.notify_all();
    }

    fn wait(&self) -> bool {
        let mut go = self.go.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(go) = *go {
                return go;
            }
            go = self.decided.wait(go).unwrap_or_else(|p| p.into_inner());
        }
    }
}

impl<M: Send + 'static> WorkerStart<M> {
    /// Builds the pool, driver and handler on this thread, reports readiness,
    /// then runs the worker loop.
    fn run<D, H, F>(
        self,
        factory: Arc<F>,
        driver: impl FnOnce(Box<Pool>, &Config) -> std::io::Result<D>,
    ) -> std::io::Result<()>
    where
        D: Driver,
        H: Handler<Message = M>,
        F: Fn(WorkerId) -> H,
    {
        let WorkerStart { parts, sender, ready, gate } = self;
        let id = parts.id;
        let built = Pool::new(parts.config.buf_size, parts.config.buf_count)
            .and_then(|pool| driver(pool, &parts.config))
            .and_then(|driver| {
                let handler = factory(id);
                Worker::new(driver, handler, parts, sender)
            });
        let worker = match built {
            Ok(worker) => worker,
            Err(error) => {
                let copy = std::io::Error::new(error.kind(), error.to_string());
                let _ = ready.send((id.0, Err(error)));
                return Err(copy);
            }
        };
        let _ = ready.send((id.0, Ok(worker.waker())));
        drop(ready);
        if gate.wait() {
            worker.run()
        } else {
            Ok(())
        }
    }
}

impl<D: Driver, H: Handler> Worker<D, H> {
    fn waker(&self) -> Waker {
        self.driver_ref().waker()
    }
}

#[derive(Debug)]
struct WorkerThread {
    thread: Option<JoinHandle<std::io::Result<()>>>,
    waker: Option<Waker>,
    stats: Arc<WorkerStats>,
}

/// A running server: observe it, stop it, wait for it.
///
/// Dropping the handle stops the server gracefully and waits for it.
#[derive(Debug)]
pub struct ServerHandle {
    shared: Arc<Shared>,
    workers: Vec<WorkerThread>,
    /// Where it listens, in the order of [`Cx::listener`](crate::Cx::listener).
    endpoints: Vec<Endpoint>,
    backend: Backend,
    /// The workers' `Sender<H::Message>`, typed again by `sender::<M>()`.
    sender: Arc<dyn std::any::Any + Send + Sync>,
    offload: Arc<Offload>,
    /// The `/metrics` endpoint, if configured.
    exporter: Option<Exporter>,
}

/// Stops a server from anywhere (signal handlers, other threads). Cheap to clone.
#[derive(Clone, Debug)]
pub struct ShutdownTrigger {
    shared: Arc<Shared>,
    wakers: Vec<Waker>,
}

impl ShutdownTrigger {
    /// Begins a graceful shutdown: accepting stops, output drains for up to
    /// the configured grace period, then connections close.
    pub fn shutdown(&self) {
        lock(&self.shared.handover).take();
        self.shared.stop.store(true, Ordering::Release);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
    }
}

impl ServerHandle {
    /// The first TCP listener's address (with the port the kernel picked
    /// for port 0).
    ///
    /// # Panics
    /// If the server listens on Unix sockets only: see
    /// [`ServerHandle::endpoints`].
    pub fn local_addr(&self) -> SocketAddr {
        first_tcp(self.endpoints.iter())
    }

    /// Every endpoint the server listens on, in the order of
    /// [`Cx::listener`](crate::Cx::listener).
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// The backend the workers run on (`Auto` resolved).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A sender that reaches this server's connections and workers from any
    /// thread (a tokio runtime, a thread of your own). `M` must be the
    /// handler's [`Handler::Message`]; `None` if it is not.
    pub fn sender<M: Send + 'static>(&self) -> Option<Sender<M>> {
        self.sender.downcast_ref::<Sender<M>>().cloned()
    }

    /// A handle that can stop the server from another thread.
    pub fn trigger(&self) -> ShutdownTrigger {
        ShutdownTrigger {
            shared: self.shared.clone(),
            wakers: self.workers.iter().filter_map(|w| w.waker.clone()).collect(),
        }
    }

    /// A zero-downtime restart: starts a new process of this program (its
    /// `argv[0]`, so a binary replaced at that path is the one that runs)
    /// with the same arguments and environment, hands it every listening
    /// socket (systemd's `LISTEN_FDS` protocol, which [`Server::bind`]
    /// takes up), waits until it serves (at most [`RESTART_TIMEOUT`]), then
    /// begins this server's graceful shutdown: accepting stops, open
    /// connections finish ([`Handler::on_shutdown`]). Connections waiting
    /// in the listening sockets' backlogs are the new process's. Returns
    /// the new process's id. `SIGUSR2` does this under [`Server::run`].
    ///
    /// # Errors
    /// [`Error::Restart`] if the new process cannot start, exits, or does
    /// not serve in time: this server serves on as before.
    /// [`Error::Stopping`] once a shutdown has begun.
    pub fn restart(&self) -> Result<u32> {
        restart(&self.shared, &self.trigger())
    }

    /// Begins a graceful shutdown (see [`ShutdownTrigger::shutdown`]).
    pub fn shutdown(&self) {
        self.trigger().shutdown();
    }

    /// Counters summed over the workers (published once per turn).
    pub fn stats(&self) -> Stats {
        let mut s = Stats::default();
        for w in &self.workers {
            s.connections += w.stats.connections.load(Ordering::Relaxed);
            s.syscalls += w.stats.syscalls.load(Ordering::Relaxed);
            s.turns += w.stats.turns.load(Ordering::Relaxed);
            s.pool_in_use += w.stats.pool_in_use.load(Ordering::Relaxed);
            s.buffered_peak = s.buffered_peak.max(w.stats.buffered_peak.load(Ordering::Relaxed));
        }
        s
    }

    /// Where `GET /metrics` is served ([`Config::metrics_addr`], with the
    /// port the kernel picked for port 0), if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.exporter.as_ref().map(Exporter::addr)
    }

    /// Each worker's counters, as it last published them (once per turn):
    /// connections, accepts and closes by reason, bytes, system calls,
    /// turns and events, buffers.
    pub fn metrics(&self) -> Vec<crate::WorkerMetrics> {
        self.workers.iter().enumerate().map(|(i, w)| w.stats.metrics.load(WorkerId(i))).collect()
    }

    /// Installs SIGINT/SIGTERM handlers: the first signal begins a graceful
    /// shutdown, a second one exits the process at once (status 130). And
    /// SIGUSR2: a zero-downtime restart ([`ServerHandle::restart`]); one
    /// that fails is logged, and this process serves on.
    ///
    /// # Errors
    /// [`Error::Signals`] if the handlers cannot be installed.
    pub fn stop_on_signals(&self) -> Result<()> {
        self.watch_signals(catch_signals()?)
    }

    /// Runs the thread that turns caught signals into a shutdown.
    fn watch_signals(&self, mut signals: signal_hook::iterator::Signals) -> Result<()> {
        let trigger = self.trigger();
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("pollring-signals".into())
            .spawn(move || {
                let mut seen = 0;
                for signal in signals.forever() {
                    if signal == signal_hook::consts::SIGUSR2 {
                        tracing::info!("SIGUSR2: restarting");
                        if let Err(error) = restart(&shared, &trigger) {
                            tracing::error!(%error, "still serving");
                        }
                        continue;
                    }
                    seen += 1;
                    if seen == 1 {
                        tracing::info!(signal, "stopping gracefully (signal again to force)");
                        trigger.shutdown();
                    } else {
                        tracing::warn!(signal, "second signal: exiting now");
                        std::process::exit(130);
                    }
                }
            })
            .map_err(Error::Signals)?;
        Ok(())
    }

    /// Waits until every worker has stopped (after a shutdown).
    ///
    /// # Errors
    /// The first worker failure: [`Error::Worker`] or [`Error::WorkerPanic`].
    pub fn wait(mut self) -> Result<()> {
        self.join_all()
    }

    fn join_all(&mut self) -> Result<()> {
        let mut first = Ok(());
        // Workers first (they may still offload while draining), then the
        // offload pool, which finishes its queue.
        let offload = self.offload.clone();
        for (i, w) in self.workers.iter_mut().enumerate() {
            let Some(thread) = w.thread.take() else { continue };
            let res = match thread.join() {
                Ok(Ok(())) => Ok(()),
                Ok(Err(source)) => Err(Error::Worker { worker: i, source }),
                Err(_) => Err(Error::WorkerPanic(i)),
            };
            if first.is_ok() {
                first = res;
            }
        }
        offload.stop();
        offload.join();
        // Metrics stay served while the workers drain.
        if let Some(exporter) = &mut self.exporter {
            exporter.stop();
        }
        first
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if self.workers.iter().any(|w| w.thread.is_some()) {
            self.shutdown();
            let _ = self.join_all();
        }
    }
}
