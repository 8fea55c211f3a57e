//! Benchmarks for pollring: a closed-loop load generator and (to come) the
//! backend comparison. See `docs/benchmarking.md`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod load;
pub mod proc;
