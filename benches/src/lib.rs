//! Benchmarks for pollring: the backend comparison (`compare`), the servers
//! it runs as child processes (`serve`, including the tokio baseline, and
//! `redis-server` for RESP), and a closed-loop load generator (`load`). See
//! `docs/benchmarking.md`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod baseline;
pub mod chart;
pub mod compare;
pub mod load;
pub mod perf;
pub mod proc;
pub mod redis;
pub mod scenario;
pub mod serve;
