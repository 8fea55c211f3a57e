//! One policy for accept errors, shared by both drivers.
//!
//! `accept` fails for two kinds of reasons. Some concern one pending
//! connection only: the peer reset it before it was taken
//! (`ECONNABORTED`), a firewall rule refused it (`EPERM`), or, as Linux's
//! accept(2) says, a network error already pending on the new socket
//! (`ENETDOWN`, `EPROTO`, `ENOPROTOOPT`, `EHOSTDOWN`, `ENONET`,
//! `EHOSTUNREACH`, `EOPNOTSUPP`, `ENETUNREACH`), or a signal (`EINTR`).
//! The next connection is accepted at once.
//!
//! Every other error, known or not, concerns the listener: the process or
//! the system is out of descriptors or memory (`EMFILE`, `ENFILE`,
//! `ENOBUFS`, `ENOMEM`), or the listener itself is broken (`EINVAL` once it
//! was shut down elsewhere, `ENOTSOCK`, `EBADF`). Retrying at once would
//! fail again and spin the worker, so the driver reports
//! [`Event::AcceptError`](crate::Event::AcceptError) and pauses that
//! listener for the back-off ([`DEFAULT_BACKOFF`], or the driver config's
//! `accept_backoff`) before trying again. Pending connections wait in the
//! backlog meanwhile; nothing is lost.

use std::time::Duration;

/// The pause before a listener accepts again after an error that concerns
/// the listener: short enough that a freed descriptor is used soon, long
/// enough that a lasting error costs a few system calls per second.
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(10);

/// What an accept error means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// One pending connection is lost; accept the next at once.
    Skip,
    /// The listener cannot accept now: report it and back off.
    BackOff,
}

/// Classifies the `errno` of a failed `accept`.
pub(crate) fn classify(errno: i32) -> Verdict {
    match errno {
        libc::ECONNABORTED
        | libc::EPERM
        | libc::EINTR
        | libc::ENETDOWN
        | libc::EPROTO
        | libc::ENOPROTOOPT
        | libc::EHOSTDOWN
        | libc::ENONET
        | libc::EHOSTUNREACH
        | libc::EOPNOTSUPP
        | libc::ENETUNREACH => Verdict::Skip,
        _ => Verdict::BackOff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_shortages_and_broken_listeners_back_off() {
        for errno in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert_eq!(classify(errno), Verdict::BackOff, "errno {errno}");
        }
        for errno in [libc::EINVAL, libc::ENOTSOCK, libc::EBADF, 4095] {
            assert_eq!(classify(errno), Verdict::BackOff, "errno {errno}");
        }
    }

    #[test]
    fn one_connections_errors_are_skipped() {
        for errno in [libc::ECONNABORTED, libc::EPROTO, libc::EPERM, libc::EINTR] {
            assert_eq!(classify(errno), Verdict::Skip, "errno {errno}");
        }
    }
}
