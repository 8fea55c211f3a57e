//! CPU time of a process from `/proc`, without privileges.

use std::io;
use std::time::Duration;

/// CPU time (user + system, all threads) that process `pid` has used, from
/// the per-thread `schedstat` files (nanosecond resolution).
///
/// # Errors
/// If `/proc/PID/task` cannot be read (the process is gone).
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("schedstat");
        // A thread may exit between listing and reading: skip it.
        if let Ok(s) = std::fs::read_to_string(path) {
            total += s.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    Ok(Duration::from_nanos(total))
}

/// Resident set size of process `pid`, in bytes (`VmRSS`).
///
/// # Errors
/// If `/proc/PID/status` cannot be read or has no `VmRSS` line.
pub fn rss(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in /proc status"))
}
