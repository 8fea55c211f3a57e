//! Blocking work off the workers: a pool of threads whose results come back
//! to the connection's worker as messages.
//!
//! A worker must never block: one 20 ms call there stalls every connection
//! it serves. [`Cx::offload`] queues a closure on this pool instead; its
//! return value is delivered through the worker's mailbox to
//! [`Handler::on_message`] of the connection that asked, without polling. If
//! that connection closed meanwhile, the result is dropped on the worker.
//!
//! The pool grows on demand: a job that finds no idle thread starts one,
//! up to `Config::offload_threads`, and a thread idle for
//! [`KEEP_ALIVE`] exits. So 40 concurrent 20 ms calls take about 20 ms,
//! not 40 / threads × 20 ms, and a server that never offloads has no
//! thread at all. Past the thread limit, jobs wait in a bounded queue
//! (`Config::offload_queue`); when it is full, `offload` fails at once
//! rather than letting work pile up unseen.
//!
//! [`Cx::offload`]: crate::Cx::offload
//! [`Handler::on_message`]: crate::Handler::on_message

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender as JobSender, TrySendError};

type Job = Box<dyn FnOnce() + Send>;

/// How long an offload thread waits for a job before it exits.
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Why a closure was not offloaded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum OffloadError {
    /// `Config::offload_queue` jobs are waiting already: the pool is behind.
    #[error("the offload queue is full ({0} jobs waiting)")]
    Full(usize),
    /// The server is stopping.
    #[error("the server is stopping")]
    Stopped,
    /// No offload thread exists and none could be started.
    #[error("cannot start an offload thread: {0}")]
    Spawn(String),
}

/// The server's offload pool (one per server, shared by its workers).
#[derive(Debug)]
pub(crate) struct Offload {
    max_threads: usize,
    keep_alive: Duration,
    /// `None` once stopped.
    jobs: Mutex<Option<JobSender<Job>>>,
    queue: Receiver<Job>,
    counts: Arc<Counts>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Threads alive.
    threads: AtomicUsize,
    /// Threads waiting for a job.
    idle: AtomicUsize,
}

impl Offload {
    pub(crate) fn new(max_threads: usize, queue: usize) -> Offload {
        Offload::with_keep_alive(max_threads, queue, KEEP_ALIVE)
    }

    fn with_keep_alive(max_threads: usize, queue: usize, keep_alive: Duration) -> Offload {
        let (tx, rx) = bounded::<Job>(queue);
        Offload {
            max_threads,
            keep_alive,
            jobs: Mutex::new(Some(tx)),
            queue: rx,
            counts: Arc::new(Counts::default()),
            handles: Mutex::new(Vec::new()),
        }
    }

    /// Threads alive now.
    #[cfg(test)]
    fn threads(&self) -> usize {
        self.counts.threads.load(Ordering::Acquire)
    }

    /// Queues `job` (which delivers its own result), starting a thread if
    /// none is idle and the limit allows.
    pub(crate) fn run(&self, job: Job) -> Result<(), OffloadError> {
        {
            let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
            let Some(jobs) = jobs.as_ref() else { return Err(OffloadError::Stopped) };
            match jobs.try_send(job) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(OffloadError::Full(jobs.len())),
                Err(TrySendError::Disconnected(_)) => return Err(OffloadError::Stopped),
            }
        }
        if self.counts.idle.load(Ordering::Acquire) == 0 {
            self.spawn()?;
        }
        Ok(())
    }

    /// Starts one more thread unless the limit is reached. An error only
    /// if no thread at all is left to run the queue.
    fn spawn(&self) -> Result<(), OffloadError> {
        let counts = &self.counts;
        let started = counts.threads.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < self.max_threads).then_some(n + 1)
        });
        let Ok(n) = started else {
            return Ok(()); // at the limit: the job waits in the queue
        };
        let (rx, counts, keep_alive) = (self.queue.clone(), Arc::clone(counts), self.keep_alive);
        let max_threads = self.max_threads;
        let spawned = std::thread::Builder::new()
            .name(format!("pollring-offload-{n}"))
            .spawn(move || work(&rx, &counts, keep_alive, max_threads));
        match spawned {
            Ok(handle) => {
                let mut handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
                handles.retain(|h| !h.is_finished());
                handles.push(handle);
                Ok(())
            }
            Err(error) => {
                let left = self.counts.threads.fetch_sub(1, Ordering::AcqRel) - 1;
                tracing::error!(%error, threads = left, "cannot start an offload thread");
                if left == 0 {
                    return Err(OffloadError::Spawn(error.to_string()));
                }
                Ok(())
            }
        }
    }

    /// Refuses new jobs; the threads finish what is queued and exit.
    pub(crate) fn stop(&self) {
        self.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// Waits for the threads after [`Offload::stop`].
    pub(crate) fn join(&self) {
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in handles {
            let _ = handle.join();
        }
    }
}

/// One offload thread: runs jobs until the queue closes or it has been idle
/// for `keep_alive`.
fn work(jobs: &Receiver<Job>, counts: &Counts, keep_alive: Duration, max_threads: usize) {
    loop {
        counts.idle.fetch_add(1, Ordering::AcqRel);
        let next = jobs.recv_timeout(keep_alive);
        counts.idle.fetch_sub(1, Ordering::AcqRel);
        let job = match next {
            Ok(job) => job,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                // Leave first, then look: a job queued while this thread
                // still counted as idle (so `run` started no thread) is
                // seen here, and this thread stays for it if the limit,
                // which it no longer counts against, allows.
                counts.threads.fetch_sub(1, Ordering::AcqRel);
                if jobs.is_empty() {
                    return;
                }
                let stay = counts.threads.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < max_threads).then_some(n + 1)
                });
                if stay.is_err() {
                    return; // another thread took the place, and the job
                }
                continue;
            }
        };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(job)) {
            let panic = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(not a string)".to_owned());
            tracing::error!(panic, "offloaded closure panicked; its connection gets no result");
        }
    }
    counts.threads.fetch_sub(1, Ordering::AcqRel);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Instant;

    #[test]
    fn jobs_run_off_the_caller_and_a_full_queue_says_so() {
        let pool = Offload::new(1, 1);
        let (tx, rx) = mpsc::channel();
        let (gate_tx, gate_rx) = mpsc::channel::<()>();
        let (started_tx, started_rx) = mpsc::channel::<()>();
        let first = tx.clone();
        pool.run(Box::new(move || {
            started_tx.send(()).unwrap();
            gate_rx.recv().unwrap();
            first.send(std::thread::current().name().map(str::to_owned)).unwrap();
        }))
        .unwrap();
        started_rx.recv().unwrap();
        // The one thread holds the first job; one more fits in the queue.
        let mut queued = 0;
        let mut full = None;
        for _ in 0..3 {
            let tx = tx.clone();
            match pool.run(Box::new(move || tx.send(None).unwrap())) {
                Ok(()) => queued += 1,
                Err(e) => full = Some(e),
            }
        }
        assert_eq!(queued, 1);
        assert_eq!(full, Some(OffloadError::Full(1)));
        gate_tx.send(()).unwrap();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("pollring-offload-0"));
        pool.stop();
        assert_eq!(pool.run(Box::new(|| {})), Err(OffloadError::Stopped));
        pool.join();
    }

    #[test]
    fn a_panicking_job_does_not_take_its_thread() {
        let pool = Offload::new(1, 4);
        pool.run(Box::new(|| panic!("boom"))).unwrap();
        let (tx, rx) = mpsc::channel();
        pool.run(Box::new(move || tx.send(7).unwrap())).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(7));
        pool.stop();
        pool.join();
    }

    #[test]
    fn the_pool_grows_for_concurrent_jobs_and_shrinks_when_idle() {
        let pool = Offload::with_keep_alive(64, 256, Duration::from_millis(200));
        assert_eq!(pool.threads(), 0, "no thread before the first job");
        let (tx, rx) = mpsc::channel();
        let start = Instant::now();
        for _ in 0..40 {
            let tx = tx.clone();
            pool.run(Box::new(move || {
                std::thread::sleep(Duration::from_millis(100));
                tx.send(()).unwrap();
            }))
            .unwrap();
        }
        for _ in 0..40 {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        let took = start.elapsed();
        assert!(
            took < Duration::from_millis(1000),
            "40 × 100 ms took {took:?}: they did not overlap"
        );
        assert!(pool.threads() >= 10, "{} threads for 40 concurrent jobs", pool.threads());
        let deadline = Instant::now() + Duration::from_secs(5);
        while pool.threads() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(pool.threads(), 0, "idle threads exit after their keep-alive");
        // And it grows again.
        let (tx, rx) = mpsc::channel();
        pool.run(Box::new(move || tx.send(()).unwrap())).unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        pool.stop();
        pool.join();
    }

    #[test]
    fn the_thread_limit_holds() {
        let pool = Offload::new(3, 64);
        let (gate_tx, gate_rx) = crossbeam_channel::unbounded::<()>();
        for _ in 0..10 {
            let gate = gate_rx.clone();
            pool.run(Box::new(move || {
                let _ = gate.recv();
            }))
            .unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(pool.threads(), 3);
        drop(gate_tx);
        pool.stop();
        pool.join();
        assert_eq!(pool.threads(), 0);
    }
}
