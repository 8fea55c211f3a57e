//! Messages from any thread to a connection or a worker.
//!
//! Each worker has one bounded [`Mailbox`]; a [`Sender`] reaches all of
//! them. Sending takes a short lock and pushes; the first message after the
//! worker last looked wakes its driver (an eventfd write), later ones ride
//! on that wake, so a burst costs one wake-up however many messages it
//! holds. The worker swaps the whole queue out once per turn and delivers
//! each message to [`Handler::on_message`] or [`Handler::on_worker_message`]
//! on its own thread.
//!
//! [`Handler::on_message`]: crate::Handler::on_message
//! [`Handler::on_worker_message`]: crate::Handler::on_worker_message

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use pollring_backends::Waker;

use crate::cx::{ConnAddr, ConnId};
use crate::WorkerId;

/// Where a message goes on its worker.
#[derive(Debug)]
pub(crate) enum Envelope<M> {
    /// To one connection's `on_message`.
    Conn(ConnId, M),
    /// To the worker's `on_worker_message`.
    Worker(M),
}

/// Why a message was not sent; the message comes back with the error.
#[derive(thiserror::Error)]
pub enum SendError<M> {
    /// The worker's mailbox holds `Config::mailbox_capacity` messages
    /// already: the worker is behind. Retry later, or shed the work.
    #[error("the worker's mailbox is full ({0} messages queued)")]
    Full(usize, M),
    /// The server has stopped; nothing will receive the message.
    #[error("the server has stopped")]
    Stopped(M),
    /// No worker has this id.
    #[error("no worker {0}")]
    NoWorker(usize, M),
}

impl<M> SendError<M> {
    /// The message that was not sent.
    pub fn into_inner(self) -> M {
        match self {
            SendError::Full(_, m) | SendError::Stopped(m) | SendError::NoWorker(_, m) => m,
        }
    }
}

impl<M> fmt::Debug for SendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Full(n, _) => write!(f, "Full({n})"),
            SendError::Stopped(_) => f.write_str("Stopped"),
            SendError::NoWorker(w, _) => write!(f, "NoWorker({w})"),
        }
    }
}

/// One worker's queue of messages.
pub(crate) struct Mailbox<M> {
    queue: Mutex<VecDeque<Envelope<M>>>,
    capacity: usize,
    /// A wake is owed or under way: senders skip theirs.
    woken: AtomicBool,
    /// The worker is gone: refuse messages.
    stopped: AtomicBool,
    /// Set once the worker's driver exists.
    waker: OnceLock<Waker>,
}

impl<M> Mailbox<M> {
    fn new(capacity: usize) -> Mailbox<M> {
        Mailbox {
            queue: Mutex::new(VecDeque::new()),
            capacity,
            woken: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            waker: OnceLock::new(),
        }
    }

    /// Queues `envelope`; `force` ignores the capacity (offload results,
    /// which are bounded by the offload queue instead).
    fn push(&self, envelope: Envelope<M>, force: bool) -> Result<(), SendError<M>> {
        let unwrap = |e: Envelope<M>| match e {
            Envelope::Conn(_, m) | Envelope::Worker(m) => m,
        };
        {
            // A panic while holding this lock cannot leave the queue broken
            // (push_back either happened or not): use it anyway.
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            // Under the lock: `stop` clears the queue under it too, so a
            // message is either refused or dropped there, never stranded.
            if self.stopped.load(Ordering::Acquire) {
                return Err(SendError::Stopped(unwrap(envelope)));
            }
            if !force && queue.len() >= self.capacity {
                return Err(SendError::Full(queue.len(), unwrap(envelope)));
            }
            queue.push_back(envelope);
        }
        if !self.woken.swap(true, Ordering::AcqRel) {
            if let Some(waker) = self.waker.get() {
                // Fails only once the driver is gone; `stopped` says so next.
                let _ = waker.wake();
            }
        }
        Ok(())
    }

    /// Whether messages may be waiting (one atomic load per turn).
    pub(crate) fn has_news(&self) -> bool {
        self.woken.load(Ordering::Acquire)
    }

    /// Takes every queued message into `into` (which is empty), swapping
    /// buffers so neither side allocates in the steady state.
    pub(crate) fn take(&self, into: &mut VecDeque<Envelope<M>>) {
        // Cleared before taking: a message pushed after the swap wakes again.
        self.woken.store(false, Ordering::Release);
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::swap(&mut *queue, into);
    }

    /// Called by the worker once its driver exists.
    pub(crate) fn set_waker(&self, waker: Waker) {
        let _ = self.waker.set(waker);
        // Messages sent before the driver existed: make sure they are seen.
        if self.woken.load(Ordering::Acquire) {
            if let Some(waker) = self.waker.get() {
                let _ = waker.wake();
            }
        }
    }

    /// The worker stops: later sends fail with `Stopped`; queued messages
    /// are dropped (their connections are gone).
    pub(crate) fn stop(&self) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        self.stopped.store(true, Ordering::Release);
        queue.clear();
    }
}

/// Delivers messages to connections and workers of one server from any
/// thread: other workers, an offload pool, a tokio runtime. `Send + Sync`,
/// cheap to clone (one `Arc`).
///
/// Bounded: each worker queues at most `Config::mailbox_capacity` messages;
/// past that [`Sender::send`] returns [`SendError::Full`] with the message,
/// and nothing is ever dropped silently. A message for a connection that
/// has closed by the time it arrives is dropped on the worker (its
/// connection is gone; the drop runs the message's destructor there).
///
/// # Examples
/// ```
/// # use pollring::{ConnAddr, Sender, SendError};
/// fn notify(sender: &Sender<String>, to: ConnAddr) {
///     match sender.send(to, "done".to_owned()) {
///         Ok(()) => {}
///         Err(SendError::Full(queued, msg)) => eprintln!("{queued} queued; dropped {msg}"),
///         Err(other) => eprintln!("{other}"),
///     }
/// }
/// ```
pub struct Sender<M> {
    boxes: Arc<[Mailbox<M>]>,
}

impl<M> Clone for Sender<M> {
    fn clone(&self) -> Self {
        Sender { boxes: Arc::clone(&self.boxes) }
    }
}

impl<M> fmt::Debug for Sender<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender").field("workers", &self.boxes.len()).finish()
    }
}

impl<M: Send + 'static> Sender<M> {
    pub(crate) fn new(workers: usize, capacity: usize) -> Sender<M> {
        Sender { boxes: (0..workers).map(|_| Mailbox::new(capacity)).collect() }
    }

    pub(crate) fn mailbox(&self, worker: WorkerId) -> &Mailbox<M> {
        &self.boxes[worker.0]
    }

    /// Sends `msg` to connection `to`: [`Handler::on_message`] runs with it
    /// on that connection's worker.
    ///
    /// # Errors
    /// [`SendError::Full`] when that worker's mailbox is full,
    /// [`SendError::Stopped`] after the server stopped. The message comes
    /// back in the error.
    ///
    /// [`Handler::on_message`]: crate::Handler::on_message
    pub fn send(&self, to: ConnAddr, msg: M) -> Result<(), SendError<M>> {
        self.push(to.worker, Envelope::Conn(to.id, msg), false)
    }

    /// Sends `msg` to a worker: [`Handler::on_worker_message`] runs with it
    /// there.
    ///
    /// # Errors
    /// As [`Sender::send`]; [`SendError::NoWorker`] for an unknown worker.
    ///
    /// [`Handler::on_worker_message`]: crate::Handler::on_worker_message
    pub fn send_to_worker(&self, worker: WorkerId, msg: M) -> Result<(), SendError<M>> {
        self.push(worker, Envelope::Worker(msg), false)
    }

    /// How many workers this sender reaches (`WorkerId(0..n)`).
    pub fn workers(&self) -> usize {
        self.boxes.len()
    }

    /// An offload result: past the capacity if need be (the offload queue
    /// bounds these).
    pub(crate) fn deliver(&self, to: ConnAddr, msg: M) -> Result<(), SendError<M>> {
        self.push(to.worker, Envelope::Conn(to.id, msg), true)
    }

    fn push(
        &self,
        worker: WorkerId,
        envelope: Envelope<M>,
        force: bool,
    ) -> Result<(), SendError<M>> {
        match self.boxes.get(worker.0) {
            Some(mailbox) => mailbox.push(envelope, force),
            None => Err(SendError::NoWorker(
                worker.0,
                match envelope {
                    Envelope::Conn(_, m) | Envelope::Worker(m) => m,
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(worker: usize) -> ConnAddr {
        ConnAddr { worker: WorkerId(worker), id: ConnId::new(3, 1) }
    }

    #[test]
    fn a_full_mailbox_returns_the_message() {
        let sender: Sender<u32> = Sender::new(1, 2);
        sender.send(addr(0), 1).unwrap();
        sender.send_to_worker(WorkerId(0), 2).unwrap();
        match sender.send(addr(0), 3) {
            Err(SendError::Full(2, 3)) => {}
            other => panic!("{other:?}"),
        }
        let mut got = VecDeque::new();
        sender.mailbox(WorkerId(0)).take(&mut got);
        assert_eq!(got.len(), 2);
        assert!(matches!(got[0], Envelope::Conn(_, 1)));
        assert!(matches!(got[1], Envelope::Worker(2)));
        sender.send(addr(0), 4).expect("room again");
        assert!(sender.deliver(addr(0), 5).is_ok());
    }

    #[test]
    fn one_wake_per_batch() {
        let sender: Sender<u32> = Sender::new(1, 16);
        let mailbox = sender.mailbox(WorkerId(0));
        assert!(!mailbox.has_news());
        sender.send(addr(0), 1).unwrap();
        assert!(mailbox.has_news());
        sender.send(addr(0), 2).unwrap();
        let mut got = VecDeque::new();
        mailbox.take(&mut got);
        assert!(!mailbox.has_news(), "taken: the next message wakes again");
        sender.send(addr(0), 3).unwrap();
        assert!(mailbox.has_news());
    }

    #[test]
    fn stopped_and_unknown_workers_refuse() {
        let sender: Sender<u32> = Sender::new(1, 4);
        assert!(matches!(sender.send(addr(1), 1), Err(SendError::NoWorker(1, 1))));
        sender.mailbox(WorkerId(0)).stop();
        assert_eq!(sender.send(addr(0), 2).unwrap_err().into_inner(), 2);
    }
}
