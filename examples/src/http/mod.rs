//! HTTP/1.1: keep-alive, pipelining, the TechEmpower plaintext and JSON
//! tests, and a body echo.
//!
//! * [`parser`] — an incremental request parser over a chain of buffers,
//!   usable on its own.
//! * [`date`] — the `Date` header value, formatted once per second.
//! * [`Http`] — the [`Handler`](pollring::Handler) serving
//!   `GET /plaintext`, `GET /json`, `GET /`, `POST /echo`, and
//!   `GET /sleep?ms=N`: blocking work on the offload pool.

pub mod date;
pub mod parser;
mod server;

pub use parser::Limits;
pub use server::{Http, HttpConn, Slept, MAX_SLEEP_MS, OUTPUT_BUDGET};
