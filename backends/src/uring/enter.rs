//! The driver's only way into `io_uring_enter`, and what each of its errors
//! means for the worker.
//!
//! An enter error must not end the worker unless the ring itself is gone:
//! every connection of the worker would go with it. So each error is sorted
//! once, here:
//!
//! * `EINTR`, `ETIME`: an empty wait (a signal, the timeout).
//! * `EBUSY`, `EAGAIN`, `ENOMEM`: the kernel is short of room (completions
//!   overflowed and wait to be reaped) or memory. Nothing is lost: the
//!   caller reaps, and the SQEs still queued go with the next enter.
//! * `EBADR`: the kernel dropped completions despite `IORING_FEAT_NODROP`
//!   (it could not allocate overflow entries: the machine is critically low
//!   on memory). The state is cleared by reporting it; the worker logs an
//!   error, counts it ([`UringCounters::cq_dropped`]) and goes on serving.
//!   An operation whose final completion was lost keeps its connection
//!   open until the peer or an idle timeout closes it, and at drop the
//!   driver leaks rather than free memory the kernel might still use.
//! * Anything else (`EBADF`, `EFAULT`, `EINVAL`, `ENXIO`, `EOWNERDEAD`
//!   when the SQPOLL thread died, …) means the ring cannot be used any
//!   more, or a bug: `turn()` fails and the worker stops.
//!
//! A turn's wait is chosen here too ([`Wait::for_turn`]): not at all when
//! the turn has news already, else for one completion, or, with
//! [`UringConfig::min_wait`], for [`UringConfig::wait_batch`] completions
//! but no longer than `min_wait` once one is there.
//!
//! [`UringCounters::cq_dropped`]: super::UringCounters::cq_dropped
//! [`UringConfig::min_wait`]: super::UringConfig::min_wait
//! [`UringConfig::wait_batch`]: super::UringConfig::wait_batch

use std::io;
use std::time::Duration;

use super::Uring;
use crate::sys;

/// What an `io_uring_enter` error means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EnterError {
    /// Nothing happened, or the kernel wants the CQ reaped first: go on.
    Retry,
    /// Completions were lost (`EBADR`): log, count, go on.
    Dropped,
    /// The ring cannot be used any more.
    Fatal,
}

impl EnterError {
    pub(super) fn classify(errno: i32) -> EnterError {
        match errno {
            libc::EINTR | libc::ETIME | libc::EBUSY | libc::EAGAIN | libc::ENOMEM => {
                EnterError::Retry
            }
            libc::EBADR => EnterError::Dropped,
            _ => EnterError::Fatal,
        }
    }
}

/// The timeout given to a batched wait that has none: the kernel ends a
/// `min_wait` wait without a timeout at `min_wait` even when nothing came,
/// so an idle worker would wake every few microseconds.
const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Completion batching: wait for `completions`, but once one is there, no
/// more than `min_wait_usec` microseconds (counted from the start of the
/// wait) for the rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Batch {
    pub(super) completions: u32,
    pub(super) min_wait_usec: u32,
}

/// What one `io_uring_enter` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Wait {
    /// `min_complete`.
    pub(super) want: u32,
    /// `min_wait_usec` (0: none).
    pub(super) min_wait_usec: u32,
    pub(super) timeout: Option<Duration>,
}

impl Wait {
    /// The wait of a turn that has `news` (completions or events in hand)
    /// or not, may wait `timeout` at most (`None`: as long as it takes),
    /// and batches as `batch` says. `pending` is how many completions the
    /// connections' operations in flight can bring (one each, as at depth
    /// one): a batch larger than that could only end at `min_wait`, so it
    /// is cut to `pending`. A single connection's send and next request
    /// then end the wait as soon as both are there.
    pub(super) fn for_turn(
        news: bool,
        timeout: Option<Duration>,
        batch: Option<Batch>,
        pending: u32,
    ) -> Wait {
        let one = Wait { want: u32::from(!news), min_wait_usec: 0, timeout };
        let Some(batch) = batch else { return one };
        let want = batch.completions.min(pending);
        let min_wait = Duration::from_micros(u64::from(batch.min_wait_usec));
        // A timeout no longer than `min_wait` ends the wait first anyway.
        if news || want <= 1 || timeout.is_some_and(|t| t <= min_wait) {
            return one;
        }
        Wait {
            want,
            min_wait_usec: batch.min_wait_usec,
            timeout: Some(timeout.unwrap_or(IDLE_TIMEOUT)),
        }
    }
}

impl Uring {
    /// One `io_uring_enter` that submits every queued SQE and waits for
    /// `want` completions (0 or 1), at most `timeout`. Errors that leave
    /// the ring usable are handled here (see the module's docs).
    pub(super) fn enter(&mut self, want: u32, timeout: Option<Duration>) -> io::Result<()> {
        self.enter_with(Wait { want, min_wait_usec: 0, timeout }, 0)
    }

    /// The enter of a turn: submits every queued SQE and waits as `wait` says.
    pub(super) fn enter_wait(&mut self, wait: Wait) -> io::Result<()> {
        self.enter_with(wait, 0)
    }

    /// The SQ is full: submit what it holds. With SQPOLL the kernel thread
    /// submits, so wait (`SQ_WAIT`) until it has made room rather than spin.
    #[cold]
    pub(super) fn make_room(&mut self) -> io::Result<()> {
        let wait = if self.sqpoll { io_uring::EnterFlags::SQ_WAIT.bits() } else { 0 };
        self.enter_with(Wait { want: 0, min_wait_usec: 0, timeout: None }, wait)?;
        // The kernel may hold overflowed completions that block submission:
        // take the CQ (handled at reap time) so the next enter flushes them.
        self.collect_cqes();
        Ok(())
    }

    /// Completions overflowed the CQ: ask the kernel to move them in.
    #[cold]
    pub(super) fn flush_overflow(&mut self) -> io::Result<()> {
        tracing::debug!("io_uring CQ overflowed; flushing the kernel's backlog");
        self.counters.cq_overflows += 1;
        self.enter_with(Wait { want: 0, min_wait_usec: 0, timeout: None }, 0)
    }

    fn enter_with(&mut self, wait: Wait, flags: u32) -> io::Result<()> {
        self.stats.syscalls += 1;
        let Err(e) = self.io_enter(wait, flags) else { return Ok(()) };
        match EnterError::classify(e.raw_os_error().unwrap_or(0)) {
            EnterError::Retry => Ok(()),
            EnterError::Dropped => {
                self.counters.cq_dropped += 1;
                tracing::error!(
                    "io_uring dropped completions (EBADR: the kernel is out of memory); \
                     connections whose operations lost their completion stay open until \
                     their peer or a timeout closes them"
                );
                Ok(())
            }
            EnterError::Fatal => Err(e),
        }
    }

    /// Submits every queued SQE, has the kernel post what is ready
    /// (`GETEVENTS`: with `DEFER_TASKRUN`, completions are only posted by
    /// an enter that asks), and waits as `wait` says. Goes by the
    /// registered ring index when
    /// [`UringConfig::register_ring_fd`](super::UringConfig::register_ring_fd)
    /// took.
    fn io_enter(&mut self, wait: Wait, extra: u32) -> io::Result<usize> {
        let mut sq = self.ring.submission();
        sq.sync();
        let to_submit = sq.len() as u32;
        let mut flags = io_uring::EnterFlags::GETEVENTS.bits() | self.enter_flags | extra;
        if self.sqpoll && sq.need_wakeup() {
            flags |= io_uring::EnterFlags::SQ_WAKEUP.bits();
        }
        drop(sq);
        let ts = wait.timeout.map(sys::KernelTimespec::from);
        sys::io_uring_enter(
            self.enter_fd,
            to_submit,
            wait.want,
            flags,
            ts.as_ref(),
            wait.min_wait_usec,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::num::{NonZeroU32, NonZeroUsize};
    use std::os::fd::OwnedFd;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    use super::{Batch, EnterError, Wait, IDLE_TIMEOUT};
    use crate::buf::Pool;
    use crate::driver::{Driver, Event};
    use crate::uring::{Uring, UringConfig};

    const BATCH: Option<Batch> = Some(Batch { completions: 32, min_wait_usec: 20 });

    #[test]
    fn a_turn_with_news_does_not_wait() {
        let ms = Some(Duration::from_millis(5));
        for batch in [None, BATCH] {
            for timeout in [None, ms] {
                let wait = Wait::for_turn(true, timeout, batch, 100);
                assert_eq!(wait, Wait { want: 0, min_wait_usec: 0, timeout });
            }
        }
    }

    #[test]
    fn without_batching_a_turn_waits_for_one() {
        let ms = Some(Duration::from_millis(5));
        for timeout in [None, ms] {
            let wait = Wait::for_turn(false, timeout, None, 100);
            assert_eq!(wait, Wait { want: 1, min_wait_usec: 0, timeout });
        }
        // A batch of one is no batch.
        let one = Some(Batch { completions: 1, min_wait_usec: 20 });
        assert_eq!(
            Wait::for_turn(false, ms, one, 100),
            Wait { want: 1, min_wait_usec: 0, timeout: ms }
        );
    }

    #[test]
    fn a_batched_wait_is_bounded_and_never_spins_when_idle() {
        let ms = Some(Duration::from_millis(5));
        assert_eq!(
            Wait::for_turn(false, ms, BATCH, 100),
            Wait { want: 32, min_wait_usec: 20, timeout: ms }
        );
        // No timeout: the kernel would end the wait at min_wait with
        // nothing to show; a long timeout keeps an idle worker asleep.
        assert_eq!(
            Wait::for_turn(false, None, BATCH, 100),
            Wait { want: 32, min_wait_usec: 20, timeout: Some(IDLE_TIMEOUT) }
        );
    }

    #[test]
    fn a_timeout_within_min_wait_waits_for_one() {
        for us in [0, 5, 20] {
            let timeout = Some(Duration::from_micros(us));
            assert_eq!(
                Wait::for_turn(false, timeout, BATCH, 100),
                Wait { want: 1, min_wait_usec: 0, timeout },
                "{us} µs"
            );
        }
        let just_over = Some(Duration::from_micros(21));
        assert_eq!(Wait::for_turn(false, just_over, BATCH, 100).want, 32);
    }

    #[test]
    fn a_batch_is_cut_to_the_completions_that_can_come() {
        let ms = Some(Duration::from_millis(5));
        // One connection: its send and its next request.
        assert_eq!(
            Wait::for_turn(false, ms, BATCH, 2),
            Wait { want: 2, min_wait_usec: 20, timeout: ms }
        );
        // One operation (or none): no batch, no min_wait.
        for pending in [0, 1] {
            assert_eq!(
                Wait::for_turn(false, ms, BATCH, pending),
                Wait { want: 1, min_wait_usec: 0, timeout: ms },
                "{pending} pending"
            );
        }
    }

    #[test]
    fn only_a_broken_ring_ends_the_worker() {
        for errno in [libc::EINTR, libc::ETIME, libc::EBUSY, libc::EAGAIN, libc::ENOMEM] {
            assert_eq!(EnterError::classify(errno), EnterError::Retry, "errno {errno}");
        }
        // Used to fail `turn()` and take every connection of the worker down.
        assert_eq!(EnterError::classify(libc::EBADR), EnterError::Dropped);
        for errno in [libc::EBADF, libc::EFAULT, libc::EINVAL, libc::ENXIO, libc::EOWNERDEAD] {
            assert_eq!(EnterError::classify(errno), EnterError::Fatal, "errno {errno}");
        }
    }

    /// A driver batching up to 32 completions for at most `min_wait`, with
    /// two connections (so that a batch of two can come) whose far ends
    /// are returned, after a first turn that has armed everything.
    fn batched(min_wait: Duration) -> (Uring, [UnixStream; 2]) {
        let pool =
            Pool::new(NonZeroUsize::new(4096).unwrap(), NonZeroU32::new(256).unwrap()).unwrap();
        let config =
            UringConfig { wait_batch: 32, min_wait: Some(min_wait), ..UringConfig::default() };
        let mut uring = Uring::new(pool, &config).expect("io_uring driver");
        let peers = [(); 2].map(|()| {
            let (ours, theirs) = UnixStream::pair().unwrap();
            uring.add(OwnedFd::from(ours)).unwrap();
            theirs
        });
        let mut events = Vec::new();
        uring.turn(Some(Duration::ZERO), &mut events).unwrap();
        assert!(events.is_empty(), "{events:?}");
        (uring, peers)
    }

    fn free(uring: &mut Uring, events: &mut Vec<Event>) {
        for event in events.drain(..) {
            if let Event::Recv { buf, .. } = event {
                uring.pool_mut().free(buf);
            }
        }
    }

    #[test]
    fn an_idle_batched_turn_sleeps_until_its_timeout() {
        let (mut uring, _peers) = batched(Duration::from_millis(1));
        let mut events = Vec::new();
        let start = Instant::now();
        uring.turn(Some(Duration::from_millis(100)), &mut events).unwrap();
        // Past `min_wait` with nothing to show, the kernel goes on waiting
        // for the turn's own timeout.
        assert!(start.elapsed() >= Duration::from_millis(90), "{:?}", start.elapsed());
        assert!(events.is_empty(), "{events:?}");
    }

    #[test]
    fn an_idle_batched_turn_without_timeout_sleeps_until_woken() {
        let (mut uring, _peers) = batched(Duration::from_millis(1));
        let waker = uring.waker();
        let wake = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            waker.wake().unwrap();
        });
        let mut events = Vec::new();
        let start = Instant::now();
        // Without a timeout of its own the kernel would end the wait at
        // `min_wait`, empty: the worker would wake every millisecond.
        let mut turns = 0;
        while events.is_empty() {
            uring.turn(None, &mut events).unwrap();
            turns += 1;
            assert!(start.elapsed() < Duration::from_secs(10), "never woken");
        }
        assert!(start.elapsed() >= Duration::from_millis(90), "{:?}", start.elapsed());
        assert_eq!(turns, 1, "idle turns that came back empty");
        assert!(matches!(events[..], [Event::Wake]), "{events:?}");
        wake.join().unwrap();
    }

    #[test]
    fn a_lone_completion_waits_no_longer_than_min_wait() {
        let min_wait = Duration::from_millis(20);
        let (mut uring, mut peers) = batched(min_wait);
        if uring.min_wait().is_none() {
            eprintln!("kernel without IORING_FEAT_MIN_TIMEOUT: waits end at the first completion");
        }
        let mut events = Vec::new();
        let start = Instant::now();
        peers[0].write_all(b"ping").unwrap();
        uring.turn(Some(Duration::from_secs(5)), &mut events).unwrap();
        let waited = start.elapsed();
        assert!(matches!(events[..], [Event::Recv { .. }]), "{events:?}");
        free(&mut uring, &mut events);
        // One of the two completions that could come: the wait ends at
        // `min_wait`, far before the turn's timeout.
        assert!(waited < Duration::from_secs(1), "{waited:?}");
        if uring.min_wait().is_some() {
            assert!(waited >= min_wait - Duration::from_millis(2), "{waited:?}");
        }
    }
}
