//! pollring: a thread-per-core server framework over epoll or io_uring.
//!
//! Implement [`Handler`] for a protocol; pollring runs one instance per
//! worker thread, each worker with its own `SO_REUSEPORT` listener, I/O
//! driver, buffer pool and connection table. The backend — edge-triggered
//! epoll or io_uring — is a [`Config`] switch read once at start-up.
//!
//! # Quick start
//! ```no_run
//! use pollring::{Config, Cx, Handler, Server};
//!
//! /// Answers every line with its length.
//! struct LineLen;
//!
//! impl Handler for LineLen {
//!     type Conn = ();
//!     type Message = ();
//!     fn on_open(&mut self, _cx: &mut Cx<'_>) {}
//!     fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
//!         while let Some(end) = cx.input().find(0, b'\n') {
//!             cx.consume(end + 1);
//!             cx.write(format!("{end}\n").as_bytes());
//!         }
//!     }
//! }
//!
//! fn main() -> Result<(), pollring::Error> {
//!     pollring::log::init(); // warnings to stderr, RUST_LOG honoured
//!     let server = Server::bind("127.0.0.1:7000", Config::from_env()?)?;
//!     server.run(|_worker| LineLen) // until SIGINT/SIGTERM
//! }
//! ```
//!
//! Read on: [`Handler`] (the callbacks), [`Cx`] (reading and writing),
//! [`Config`] (every knob), and `docs/architecture.md` in the repository.
//!
//! # Features
//! * `log` (default): [`log::init`], a `tracing` subscriber in one call.
//! * `cli`: `cli::ServerArgs`, the `--backend/--workers/--pin/--addr`
//!   flags to flatten into a binary's own `clap` parser.
//! * `test-util`: `testing`, helpers for a server's integration tests.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "cli")]
pub mod cli;
mod config;
mod conn;
mod cx;
mod error;
mod exporter;
mod handler;
mod lifecycle;
mod listen;
#[cfg(feature = "log")]
pub mod log;
mod mailbox;
mod metrics;
mod offload;
mod server;
mod slots;
mod source;
mod state;
#[cfg(feature = "test-util")]
pub mod testing;
mod timer;
mod worker;
mod write;

pub use config::{
    Backend, Config, ConfigBuilder, EpollConfig, ParseBackendError, TaskRun, UringConfig,
};
pub use cx::{ConnAddr, ConnId, ConnMut, ConnectError, Cx, Gone, Input, WorkerCx};
pub use error::{Error, Result, UringError};
pub use exporter::prometheus_text;
pub use handler::{CloseReason, Drain, Handler};
pub use listen::Endpoint;
pub use listen::METRICS_FD_NAME;
pub use mailbox::{SendError, Sender};
pub use metrics::{WorkerMetrics, CLOSE_REASONS};
pub use offload::OffloadError;
pub use server::{
    Server, ServerHandle, ShutdownTrigger, Stats, WorkerId, MAX_LISTENERS, RESTART_TIMEOUT,
};
pub use source::Source;
pub use write::Writer;

/// The pieces of the backends crate a handler may need.
pub use pollring_backends::{buf::Chunks, Token};

#[doc = include_str!("../../README.md")]
#[cfg(doctest)]
struct ReadmeDoctests;
