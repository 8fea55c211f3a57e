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
//! [`UringCounters::cq_dropped`]: super::UringCounters::cq_dropped

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

impl Uring {
    /// One `io_uring_enter` that submits every queued SQE and waits for
    /// `want` completions (0 or 1), at most `timeout`. Errors that leave
    /// the ring usable are handled here (see the module's docs).
    pub(super) fn enter(&mut self, want: u32, timeout: Option<Duration>) -> io::Result<()> {
        self.enter_with(want, timeout, 0)
    }

    /// The SQ is full: submit what it holds. With SQPOLL the kernel thread
    /// submits, so wait (`SQ_WAIT`) until it has made room rather than spin.
    #[cold]
    pub(super) fn make_room(&mut self) -> io::Result<()> {
        let wait = if self.sqpoll { io_uring::EnterFlags::SQ_WAIT.bits() } else { 0 };
        self.enter_with(0, None, wait)?;
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
        self.enter_with(0, None, 0)
    }

    fn enter_with(&mut self, want: u32, timeout: Option<Duration>, flags: u32) -> io::Result<()> {
        self.stats.syscalls += 1;
        let Err(e) = self.io_enter(want, timeout, flags) else { return Ok(()) };
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
    /// an enter that asks), and waits for `min_complete` completions, at
    /// most `timeout`. Goes by the registered ring index when
    /// [`UringConfig::register_ring_fd`](super::UringConfig::register_ring_fd)
    /// took.
    fn io_enter(
        &mut self,
        min_complete: u32,
        timeout: Option<Duration>,
        extra: u32,
    ) -> io::Result<usize> {
        let mut sq = self.ring.submission();
        sq.sync();
        let to_submit = sq.len() as u32;
        let mut flags = io_uring::EnterFlags::GETEVENTS.bits() | self.enter_flags | extra;
        if self.sqpoll && sq.need_wakeup() {
            flags |= io_uring::EnterFlags::SQ_WAKEUP.bits();
        }
        drop(sq);
        let ts = timeout.map(sys::KernelTimespec::from);
        sys::io_uring_enter(self.enter_fd, to_submit, min_complete, flags, ts.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::EnterError;

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
}
