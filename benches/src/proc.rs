//! CPU time and memory of a process from `/proc`, without privileges.

use std::io;
use std::sync::OnceLock;
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

/// User and system CPU time of a process, summed over its threads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserSys {
    /// Time in user mode.
    pub user: Duration,
    /// Time in the kernel on the process's behalf (system calls, and the
    /// network stack work done on its threads).
    pub sys: Duration,
}

impl UserSys {
    /// The CPU time from `earlier` to `self`, field by field (0 where a
    /// thread that exited took its time with it).
    pub fn since(self, earlier: UserSys) -> UserSys {
        UserSys {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }
}

/// User and system CPU time that process `pid` has used: `utime` and
/// `stime` (fields 14 and 15 of `/proc/PID/task/TID/stat`) summed over its
/// threads. These count whole clock ticks ([`clock_tick`], 10 ms on
/// Linux), so a difference of two samples is good to about a tick per
/// thread: measure over windows of a second or more.
///
/// # Errors
/// If `/proc/PID/task` cannot be read (the process is gone).
pub fn user_sys(pid: u32) -> io::Result<UserSys> {
    let (mut user, mut sys) = (0u64, 0u64);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = task?.path().join("stat");
        // A thread may exit between listing and reading: skip it.
        if let Some((u, s)) = std::fs::read_to_string(path).ok().as_deref().and_then(stat_ticks) {
            user += u;
            sys += s;
        }
    }
    let tick = clock_tick().as_nanos() as u64;
    Ok(UserSys {
        user: Duration::from_nanos(tick.saturating_mul(user)),
        sys: Duration::from_nanos(tick.saturating_mul(sys)),
    })
}

/// `utime` and `stime` (fields 14 and 15, in clock ticks) of one
/// `/proc/.../stat` line. The command name (field 2) is in parentheses and
/// may itself hold spaces and parentheses, so fields are counted from the
/// last `)`.
fn stat_ticks(stat: &str) -> Option<(u64, u64)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the `)`, field 3 (state) comes first: field N is at N - 3.
    let mut fields = rest.split_whitespace().skip(14 - 3);
    let utime = fields.next()?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// The length of one clock tick, the unit of `utime` and `stime`: what
/// `sysconf(_SC_CLK_TCK)` returns, read the way glibc reads it, from the
/// `AT_CLKTCK` entry of the auxiliary vector (`/proc/self/auxv`), which
/// needs no `unsafe` (this crate forbids it). 100 Hz, Linux's fixed
/// `USER_HZ`, if that cannot be read.
pub fn clock_tick() -> Duration {
    static TICK: OnceLock<Duration> = OnceLock::new();
    *TICK.get_or_init(|| {
        let hz = std::fs::read("/proc/self/auxv").ok().and_then(|a| auxv_clktck(&a)).unwrap_or(100);
        Duration::from_nanos(1_000_000_000 / hz.max(1))
    })
}

/// The `AT_CLKTCK` (17) value of a native-endian auxiliary vector of
/// pointer-sized (type, value) pairs.
fn auxv_clktck(auxv: &[u8]) -> Option<u64> {
    const AT_NULL: u64 = 0;
    const AT_CLKTCK: u64 = 17;
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |b: &[u8]| -> u64 {
        let mut w = [0u8; WORD];
        w.copy_from_slice(b);
        usize::from_ne_bytes(w) as u64
    };
    for pair in auxv.chunks_exact(2 * WORD) {
        match word(&pair[..WORD]) {
            AT_NULL => return None,
            AT_CLKTCK => return Some(word(&pair[WORD..])),
            _ => {}
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // Field 2 with a space and a ')' in it; utime 1234, stime 56.
        let line = "4242 (we ir) d) S 1 4242 4242 0 -1 4194560 100 0 0 0 1234 56 0 0 20 0 3 0 99";
        assert_eq!(stat_ticks(line), Some((1234, 56)));
        assert_eq!(stat_ticks("4242 (short) S 1"), None);
    }

    #[test]
    fn clock_tick_is_read_from_the_auxiliary_vector() {
        let mut auxv = Vec::new();
        for (t, v) in [(6usize, 4096usize), (17, 250), (0, 0)] {
            auxv.extend_from_slice(&t.to_ne_bytes());
            auxv.extend_from_slice(&v.to_ne_bytes());
        }
        assert_eq!(auxv_clktck(&auxv), Some(250));
        assert_eq!(auxv_clktck(&auxv[2 * std::mem::size_of::<usize>()..]), Some(250));
        assert_eq!(auxv_clktck(&auxv[4 * std::mem::size_of::<usize>()..]), None);
        // This machine's: 100 Hz on every Linux this runs on.
        let tick = clock_tick();
        assert!(
            tick >= Duration::from_micros(100) && tick <= Duration::from_millis(100),
            "{tick:?}"
        );
    }

    #[test]
    fn user_and_system_time_of_this_process_grow() {
        let pid = std::process::id();
        let before = user_sys(pid).unwrap();
        let schedstat_before = cpu_time(pid).unwrap();
        // Burn user time and some system time until a few ticks show.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        let used = loop {
            // Mostly user time: the kernel charges a tick to user or
            // system by where it lands, so a loop of mostly system calls
            // could show no user time at all.
            for _ in 0..200_000 {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            let _ = std::fs::metadata("/proc/self/stat");
            let used = user_sys(pid).unwrap().since(before);
            if used.user >= 2 * clock_tick() && used.user + used.sys >= 3 * clock_tick() {
                break used;
            }
            assert!(start.elapsed() < Duration::from_secs(10), "no ticks counted: {used:?}");
        };
        std::hint::black_box(x);
        assert!(used.user > Duration::ZERO, "{used:?}");
        // schedstat (ns) saw at least the same time, give or take a tick.
        let schedstat = cpu_time(pid).unwrap() - schedstat_before;
        assert!(schedstat + 2 * clock_tick() >= used.user + used.sys, "{schedstat:?} {used:?}");
    }
}
