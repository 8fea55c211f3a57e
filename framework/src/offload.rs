//! Blocking work off the workers: a pool of threads whose results come back
//! to the connection's worker as messages.
//!
//! A worker must never block: one 20 ms call there stalls every connection
//! it serves. [`Cx::offload`] queues a closure on this pool instead; its
//! return value is delivered through the worker's mailbox to
//! [`Handler::on_message`] of the connection that asked, without polling. If
//! that connection closed meanwhile, the result is dropped on the worker.
//!
//! The threads start with the first job (a server that never offloads has
//! none). The queue is bounded (`Config::offload_queue`): when it is full,
//! `offload` fails at once rather than letting work pile up unseen.
//!
//! [`Cx::offload`]: crate::Cx::offload
//! [`Handler::on_message`]: crate::Handler::on_message

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Mutex, OnceLock};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender as JobSender, TrySendError};

type Job = Box<dyn FnOnce() + Send>;

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
    /// A pool thread could not be started.
    #[error("cannot start an offload thread: {0}")]
    Spawn(String),
}

/// The server's offload pool (one per server, shared by its workers).
#[derive(Debug)]
pub(crate) struct Offload {
    threads: usize,
    queue: usize,
    started: OnceLock<Result<Started, String>>,
}

#[derive(Debug)]
struct Started {
    jobs: Mutex<Option<JobSender<Job>>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl Offload {
    pub(crate) fn new(threads: usize, queue: usize) -> Offload {
        Offload { threads, queue, started: OnceLock::new() }
    }

    /// Queues `job` (which delivers its own result).
    pub(crate) fn run(&self, job: Job) -> Result<(), OffloadError> {
        let started = self.started.get_or_init(|| self.start());
        let started = started.as_ref().map_err(|e| OffloadError::Spawn(e.clone()))?;
        let jobs = started.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let Some(jobs) = jobs.as_ref() else { return Err(OffloadError::Stopped) };
        match jobs.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => Err(OffloadError::Full(jobs.len())),
            Err(TrySendError::Disconnected(_)) => Err(OffloadError::Stopped),
        }
    }

    fn start(&self) -> Result<Started, String> {
        let (tx, rx) = bounded::<Job>(self.queue);
        let mut handles = Vec::with_capacity(self.threads);
        for i in 0..self.threads {
            let rx: Receiver<Job> = rx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("pollring-offload-{i}"))
                .spawn(move || {
                    for job in rx {
                        if let Err(payload) = catch_unwind(AssertUnwindSafe(job)) {
                            let panic = payload
                                .downcast_ref::<&str>()
                                .map(|s| (*s).to_owned())
                                .or_else(|| payload.downcast_ref::<String>().cloned())
                                .unwrap_or_else(|| "(not a string)".to_owned());
                            tracing::error!(
                                panic,
                                "offloaded closure panicked; its connection gets no result"
                            );
                        }
                    }
                })
                .map_err(|e| e.to_string())?;
            handles.push(handle);
        }
        Ok(Started { jobs: Mutex::new(Some(tx)), handles: Mutex::new(handles) })
    }

    /// Refuses new jobs; the threads finish what is queued and exit.
    pub(crate) fn stop(&self) {
        if let Some(Ok(started)) = self.started.get() {
            started.jobs.lock().unwrap_or_else(|p| p.into_inner()).take();
        }
    }

    /// Waits for the threads after [`Offload::stop`].
    pub(crate) fn join(&self) {
        if let Some(Ok(started)) = self.started.get() {
            let handles =
                std::mem::take(&mut *started.handles.lock().unwrap_or_else(|p| p.into_inner()));
            for handle in handles {
                let _ = handle.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

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
        // The thread holds the first job; one more fits in the queue.
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
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(5)), Ok(7));
        pool.stop();
        pool.join();
    }
}
