//! Starting, observing and stopping a server. Starting the workers is in
//! `start.rs`, restarting and the signals in `restart.rs`.

use std::fmt;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use pollring_backends::handover;
use pollring_backends::Waker;

use crate::error::{Error, Result};
use crate::exporter::Exporter;
use crate::handler::Handler;
use crate::listen::{Endpoint, Listener};
use crate::mailbox::Sender;
use crate::offload::Offload;
use crate::{Backend, Config};

mod restart;
mod start;

pub use restart::RESTART_TIMEOUT;
use restart::{catch_signals, lock, Handover};
use start::{is_uring_failure, resolve_backend};

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
        Server::activated_or(config, || Endpoint::resolve(addr))
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
        Server::activated_or(config, || Ok(endpoint.clone()))
    }

    /// The sockets passed by socket activation if there are any; otherwise
    /// `endpoint`, bound (resolved only then).
    fn activated_or(config: Config, endpoint: impl FnOnce() -> Result<Endpoint>) -> Result<Server> {
        if let Some(server) = Server::activated(&config)? {
            return Ok(server);
        }
        let listener = Listener::bind(&endpoint()?, config.workers.get(), config.backlog)?;
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

/// The first TCP endpoint's address.
///
/// # Panics
/// If there is none.
fn first_tcp<'a>(mut endpoints: impl Iterator<Item = &'a Endpoint>) -> SocketAddr {
    endpoints
        .find_map(Endpoint::tcp)
        .expect("local_addr: the server listens on Unix sockets only (see endpoints)")
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
        restart::restart(&self.shared, &self.trigger())
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

    /// Runs the thread that turns caught signals into a shutdown or a
    /// restart.
    fn watch_signals(&self, signals: signal_hook::iterator::Signals) -> Result<()> {
        restart::watch(signals, self.trigger(), self.shared.clone())
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
