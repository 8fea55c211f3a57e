//! Errors at the framework's boundary.

use std::io;

pub use pollring_backends::uring::UringError;

/// What can go wrong starting or running a server.
///
/// Its `Debug` reads like its `Display`, so a `main` that returns
/// `Result<(), pollring::Error>` prints a sentence a user can act on
/// (`Error: cannot listen on 127.0.0.1:7000: Address already in use`), not
/// the enum's fields.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of range or inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The listening sockets could not be set up.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The endpoint asked for.
        addr: crate::Endpoint,
        /// The kernel's answer.
        #[source]
        source: io::Error,
    },
    /// The address given to [`Server::bind`](crate::Server::bind) names no
    /// socket address (an unknown host, a malformed string).
    #[error("cannot resolve {name}: {source}")]
    Resolve {
        /// The address as given (its `Debug` form, so a string is quoted).
        name: String,
        /// The resolver's answer.
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
    /// A restart ([`ServerHandle::restart`](crate::ServerHandle::restart),
    /// `SIGUSR2`) did not happen: no new process serves. This one serves on.
    #[error("restart failed: {0}")]
    Restart(#[source] pollring_backends::handover::HandoverError),
    /// A restart was asked of a server that is already stopping.
    #[error("restart refused: the server is stopping")]
    Stopping,
    /// SIGINT/SIGTERM handlers could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] io::Error),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// `Result` with pollring's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_reads_like_display() {
        let e = Error::Bind {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 7000)).into(),
            source: io::Error::from(io::ErrorKind::AddrInUse),
        };
        assert_eq!(format!("{e:?}"), e.to_string());
        assert!(format!("{e:?}").starts_with("cannot listen on 127.0.0.1:7000: "), "{e:?}");
        let e = Error::Uring(UringError::DisabledByEnv);
        assert_eq!(format!("{e:?}"), e.to_string());
        assert!(!format!("{e:?}").contains("DisabledByEnv"), "{e:?}");
    }
}
