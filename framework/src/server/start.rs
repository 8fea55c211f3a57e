//! Starting the workers: dealing out the listening sockets, building each
//! worker's driver and handler on its own thread, and letting them run only
//! once every one has started.

use std::os::fd::OwnedFd;
use std::sync::{mpsc, Arc, Mutex};

use pollring_backends::buf::Pool;
use pollring_backends::epoll::Epoll;
use pollring_backends::uring::{self, Uring};
use pollring_backends::{Driver, Share, Waker};

use super::{Server, ServerHandle, Shared, WorkerId, WorkerStats, WorkerThread};
use crate::error::{Error, Result};
use crate::handler::Handler;
use crate::listen::{Endpoint, Listener};
use crate::mailbox::Sender;
use crate::offload::Offload;
use crate::worker::{Worker, WorkerParts};
use crate::{Backend, Config};

impl Server {
    /// Starts the workers on `backend`; returns once all serve, or stops
    /// those that started if one cannot.
    pub(super) fn start<H, F>(&self, backend: Backend, factory: &Arc<F>) -> Result<ServerHandle>
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

/// Whether `error` is an io_uring driver that could not start.
pub(super) fn is_uring_failure(error: &Error) -> bool {
    match error {
        Error::WorkerStart { source, .. } => {
            source.get_ref().is_some_and(|inner| inner.is::<pollring_backends::uring::UringError>())
        }
        _ => false,
    }
}

/// Picks the backend for `Auto` and checks that `Uring` can start.
pub(super) fn resolve_backend(config: &Config) -> Result<Backend> {
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
