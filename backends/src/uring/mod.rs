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
#[derive(Debug)]
pub enum UringError {
    /// Placeholder until the driver lands.
    NotBuilt,
}

impl std::fmt::Display for UringError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("io_uring backend not built yet")
    }
}

impl std::error::Error for UringError {}

/// Checks that io_uring can run here.
pub fn probe(_config: &UringConfig) -> Result<(), UringError> {
    Err(UringError::NotBuilt)
}

impl Uring {
    /// Builds the ring.
    pub fn new(_pool: Pool, _config: &UringConfig) -> Result<Uring, UringError> {
        Err(UringError::NotBuilt)
    }
}

impl crate::Driver for Uring {
    fn pool(&self) -> &Pool {
        &self._pool
    }
    fn pool_mut(&mut self) -> &mut Pool {
        &mut self._pool
    }
    fn listen(&mut self, _: std::net::TcpListener) -> io::Result<crate::ListenerId> {
        unreachable!()
    }
    fn unlisten(&mut self, _: crate::ListenerId) {}
    fn add(&mut self, _: std::os::fd::OwnedFd) -> io::Result<crate::Token> {
        unreachable!()
    }
    fn send(&mut self, _: crate::Token, _: crate::buf::Chain) {
        unreachable!()
    }
    fn shutdown_write(&mut self, _: crate::Token) {}
    fn pause_recv(&mut self, _: crate::Token) {}
    fn resume_recv(&mut self, _: crate::Token) {}
    fn close(&mut self, _: crate::Token) {}
    fn waker(&self) -> crate::Waker {
        unreachable!()
    }
    fn turn(
        &mut self,
        _: Option<std::time::Duration>,
        _: &mut Vec<crate::Event>,
    ) -> io::Result<()> {
        unreachable!()
    }
    fn stats(&self) -> crate::DriverStats {
        Default::default()
    }
}

/// The io_uring driver.
#[derive(Debug)]
pub struct Uring {
    _pool: Pool,
}
