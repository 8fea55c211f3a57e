//! The I/O drivers and buffer pool behind [pollring](https://docs.rs/pollring).
//!
//! Most users never touch this crate: they depend on `pollring` and pick a
//! backend in its `Config`. It is public for those who want the drivers
//! without the framework, and for the framework itself.
//!
//! * [`driver`] — the completion-style [`Driver`] seam and its contract.
//! * [`buf`] — the per-worker [`Pool`](buf::Pool) and the [`Chain`](buf::Chain).
//! * [`epoll`] — the edge-triggered epoll driver.
//! * [`uring`] — the io_uring driver.
//! * [`net`] — listener set-up shared by both.
//! * [`handover`] — passing the listeners to a new process (restart).
//! * [`accept`] — the accept-error policy shared by both.
//! * [`thread`] — CPU pinning for per-core workers.
//!
//! All of pollring's `unsafe` lives in this crate, next to the kernel
//! interface that needs it.

#![deny(missing_docs)]

pub mod accept;
pub mod buf;
pub mod driver;
pub mod epoll;
pub mod handover;
pub mod net;
mod sys;
pub mod thread;
pub mod uring;

pub use driver::{Driver, DriverStats, Event, ListenerId, Share, Token, Waker};
