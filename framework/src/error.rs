//! Errors at the framework's boundary.

use std::io;
use std::net::SocketAddr;

pub use pollring_backends::uring::UringError;

/// What can go wrong starting or running a server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The listening sockets could not be set up.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// `Backend::Uring` was asked for and io_uring cannot start here.
    #[error("the io_uring backend cannot start: {0}")]
    Uring(#[source] UringError),
    /// A worker could not create its pool or driver.
    #[error("worker {worker} failed to start: {source}")]
    WorkerStart {
        /// Which worker.
        worker: usize,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A worker's driver failed while running.
    #[error("worker {worker} stopped on an I/O error: {source}")]
    Worker {
        /// Which worker.
        worker: usize,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A worker thread panicked outside any handler callback.
    #[error("worker {0} panicked")]
    WorkerPanic(usize),
    /// SIGINT/SIGTERM handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] io::Error),
}

/// `Result` with pollring's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
