//! Starting a server leaves the calling thread's own blocking I/O alone.

#[macro_use]
mod util;

use std::io::Read;
use std::time::Duration;

use pollring::Backend;
use util::*;

/// Regression: the io_uring probe's ring, created and dropped on the
/// caller's thread, made the kernel queue task work to that thread, which
/// interrupted the caller's next blocking socket read with `EINTR`.
fn callers_blocking_reads_are_not_interrupted(backend: Backend) {
    for round in 0..20 {
        let server = start(config(backend), |_| Echo);
        let mut s = connect(server.local_addr());
        s.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        match s.read(&mut [0u8; 16]) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            other => panic!("round {round}: expected a read timeout, got {other:?}"),
        }
    }
}

on_both_backends!(callers_blocking_reads_are_not_interrupted);
