//! HTTP/1.1: keep-alive, pipelining, the TechEmpower plaintext and JSON
//! tests, and a body echo.
//!
//! * [`parser`] — an incremental request parser over a chain of buffers,
//!   usable on its own.
//! * [`date`] — the `Date` header value, formatted once per second.
//! * [`Http`] — the [`Handler`](pollring::Handler) serving
//!   `GET /plaintext`, `GET /json`, `GET /` and `POST /echo`.

pub mod date;
pub mod parser;
mod server;

pub use parser::Limits;
pub use server::{Http, HttpConn, OUTPUT_BUDGET};
