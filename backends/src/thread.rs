//! Thread placement.

use std::io;

/// Pins the calling thread to CPU `cpu` (`sched_setaffinity`).
///
/// # Errors
/// `InvalidInput` if `cpu` is out of the CPU set's range; otherwise the
/// kernel's error (e.g. the CPU is not in the process's allowed set).
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    pin_to_cpus(&[cpu])
}

/// Restricts the calling thread to the CPUs in `cpus` (`sched_setaffinity`).
/// Threads it spawns afterwards inherit the set.
///
/// # Errors
/// `InvalidInput` if `cpus` is empty or names a CPU out of range; otherwise
/// the kernel's error.
pub fn pin_to_cpus(cpus: &[usize]) -> io::Result<()> {
    if cpus.is_empty() || cpus.iter().any(|&c| c >= libc::CPU_SETSIZE as usize) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty or out-of-range CPU set"));
    }
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus {
        // SAFETY: `cpu < CPU_SETSIZE`, checked above, so the bit lies inside `set`.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed, read by the kernel only.
    crate::sys::cvt(unsafe {
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    })
    .map(drop)
}

/// CPUs this process may run on, in order (`sched_getaffinity`).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is writable and of the size passed.
    if crate::sys::cvt(unsafe {
        libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set)
    })
    .is_err()
    {
        return (0..std::thread::available_parallelism().map_or(1, |n| n.get())).collect();
    }
    // SAFETY: CPU_ISSET reads one bit of an initialised set, in range.
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}
