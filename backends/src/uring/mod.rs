//! The io_uring driver (being written; see `UringConfig` for its switches).

use std::io;

use crate::buf::Pool;

/// Switches of the io_uring driver. Defaults are the measured best.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UringConfig {
    /// Submission queue entries (power of two).
    pub entries: u32,
    /// Completion queue entries (power of two, at least `entries`).
    pub cq_entries: u32,
    /// Entries of the provided buffer ring (power of two, at most 32768).
    pub buf_ring_entries: u32,
    /// Poll the submission queue from a kernel thread, idle after this many
    /// milliseconds. `None`: off.
    pub sqpoll_idle_ms: Option<u32>,
    /// Receive several buffers per completion (recv bundles), if the kernel has them.
    pub recv_bundle: bool,
    /// Use `SEND_ZC` for sends of at least this many bytes. `None`: off.
    pub send_zc_threshold: Option<usize>,
    /// Buffers kept out of the receive path so writes can still get one.
    pub recv_reserve: usize,
}

impl Default for UringConfig {
    fn default() -> Self {
        UringConfig {
            entries: 1024,
            cq_entries: 4096,
            buf_ring_entries: 1024,
            sqpoll_idle_ms: None,
            recv_bundle: false,
            send_zc_threshold: None,
            recv_reserve: 64,
        }
    }
}

/// Why io_uring cannot be used here.
pub fn probe() -> io::Result<()> {
    Err(io::Error::new(io::ErrorKind::Unsupported, "io_uring backend not built yet"))
}

/// The io_uring driver.
#[derive(Debug)]
pub struct Uring {
    _pool: Pool,
}
