//! Benchmarks: load generator and backend comparison (see docs/benchmarking.md).
