//! Handing listening sockets to a new process of the same program (a
//! zero-downtime restart).
//!
//! The old process passes its sockets the way a service manager does
//! (systemd's `LISTEN_FDS` protocol: descriptors 3.., `LISTEN_PID`,
//! `LISTEN_FDNAMES`), so the new one finds them with
//! [`inherited_listeners`](crate::net::inherited_listeners). One more
//! descriptor, named by [`READY_FD_VAR`], is a pipe the new process writes
//! a byte to once it serves ([`announce_ready`]); [`spawn_successor`]
//! returns then, or fails if the new process exits first or is not serving
//! in time.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::sys;

/// The variable naming the readiness pipe's descriptor in the new process.
pub const READY_FD_VAR: &str = "POLLRING_READY_FD";

/// The first descriptor passed (`SD_LISTEN_FDS_START`).
const FIRST_FD: RawFd = 3;

/// Why no new process took over.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    /// It could not be started (`fork`, descriptors, the program's path).
    #[error("cannot start the new process: {0}")]
    Spawn(#[source] io::Error),
    /// It exited (or could not execute the program) before serving.
    #[error("the new process (pid {pid}) exited before serving: {status}")]
    Exited {
        /// Its process id.
        pid: u32,
        /// How it ended.
        status: String,
    },
    /// It was not serving in time, and was killed.
    #[error("the new process (pid {pid}) was not serving after {limit:?}; killed it")]
    TimedOut {
        /// Its process id.
        pid: u32,
        /// How long it was given.
        limit: Duration,
    },
}

/// A socket to hand over, and its `LISTEN_FDNAMES` name.
#[derive(Debug)]
pub struct Passed<'a> {
    /// The socket.
    pub fd: &'a OwnedFd,
    /// Its name (no `:`).
    pub name: &'a str,
}

/// Starts this program again, with the same arguments and environment, and
/// `sockets` passed as descriptors 3.. in order; waits up to `limit` until
/// it serves. Returns its process id. The program is `argv[0]` as this
/// process was started (a binary replaced at that path is the one that
/// runs), looked up in `PATH` when it has no `/`.
///
/// # Errors
/// [`HandoverError`]: this process is unaffected either way.
pub fn spawn_successor(sockets: &[Passed<'_>], limit: Duration) -> Result<u32, HandoverError> {
    let (read, write) = pipe().map_err(HandoverError::Spawn)?;
    let plan = Plan::new(sockets, &write).map_err(HandoverError::Spawn)?;
    let pid = plan.spawn().map_err(HandoverError::Spawn)?;
    // Only the new process holds the write end now: its exit is our EOF.
    drop(plan);
    drop(write);
    match wait_ready(&read, limit) {
        Ok(true) => Ok(pid),
        Ok(false) => Err(HandoverError::Exited { pid, status: reap(pid) }),
        Err(_) => {
            // SAFETY: `pid` is our child, not yet reaped, so the id still
            // names it.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            reap(pid);
            Err(HandoverError::TimedOut { pid, limit })
        }
    }
}

/// In the new process: the readiness pipe the old one passed, if this
/// process was started by [`spawn_successor`]. The variable is removed.
pub fn take_ready_pipe() -> Option<OwnedFd> {
    let fd: RawFd = std::env::var(READY_FD_VAR).ok()?.parse().ok()?;
    std::env::remove_var(READY_FD_VAR);
    // Only a pipe is taken: the variable could be stale, inherited by a
    // process that was not started by a restart.
    // SAFETY: an all-zero `stat` is a valid value for fstat to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for writes; fstat on a closed descriptor fails.
    let is_pipe = unsafe { libc::fstat(fd, &mut st) } == 0
        && (st.st_mode & libc::S_IFMT) == libc::S_IFIFO
        && fd >= FIRST_FD;
    if !is_pipe {
        tracing::warn!(fd, "{READY_FD_VAR} names no pipe; ignored");
        return None;
    }
    // SAFETY: the old process passed this descriptor to this process for it
    // to own (it is a pipe at the number the variable gives, which was
    // removed so nothing else takes it).
    let pipe = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: F_SETFD on a descriptor we own, no pointers.
    let _ = unsafe { libc::fcntl(pipe.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    Some(pipe)
}

/// In the new process: tells the old one that this one serves.
pub fn announce_ready(pipe: OwnedFd) {
    let mut file = std::fs::File::from(pipe);
    if let Err(error) = io::Write::write_all(&mut file, b"1") {
        tracing::warn!(%error, "cannot tell the old process that this one serves");
    }
}

/// Everything the child needs, built before `fork`: after it, the child
/// only calls functions that are async-signal-safe (no allocation).
struct Plan {
    program: CString,
    /// `argv`, null-terminated; points into `args`.
    argv: Vec<*const libc::c_char>,
    _args: Vec<CString>,
    /// `envp`, null-terminated; points into `env` and `listen_pid`.
    envp: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    /// `LISTEN_PID=` and room for the child to write its pid.
    listen_pid: Box<[u8; 32]>,
    /// Copies of the sockets (and last the pipe), all numbered above the
    /// targets 3..3+n, so that moving each to its target clobbers none.
    sources: Vec<OwnedFd>,
}

const LISTEN_PID_PREFIX: &[u8] = b"LISTEN_PID=";

impl Plan {
    fn new(sockets: &[Passed<'_>], ready: &OwnedFd) -> io::Result<Plan> {
        let program = program()?;
        let program = CString::new(program.as_os_str().as_bytes())?;
        let args: Vec<CString> =
            std::env::args_os().map(|a| CString::new(a.as_bytes())).collect::<Result<_, _>>()?;
        let n = sockets.len() as RawFd;
        let names: Vec<&str> = sockets.iter().map(|s| s.name).collect();
        let ours = ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", READY_FD_VAR];
        let mut env: Vec<CString> = std::env::vars_os()
            .filter(|(k, _)| !ours.iter().any(|o| k == o))
            .map(|(k, v)| {
                let mut kv = k;
                kv.push("=");
                kv.push(v);
                CString::new(kv.as_bytes())
            })
            .collect::<Result<_, _>>()?;
        env.push(CString::new(format!("LISTEN_FDS={n}"))?);
        env.push(CString::new(format!("LISTEN_FDNAMES={}", names.join(":")))?);
        env.push(CString::new(format!("{READY_FD_VAR}={}", FIRST_FD + n))?);
        let mut listen_pid = Box::new([0u8; 32]);
        listen_pid[..LISTEN_PID_PREFIX.len()].copy_from_slice(LISTEN_PID_PREFIX);
        let above = FIRST_FD + n + 1;
        let sources = sockets
            .iter()
            .map(|s| s.fd)
            .chain(std::iter::once(ready))
            .map(|fd| dup_above(fd, above))
            .collect::<io::Result<_>>()?;
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
        envp.push(listen_pid.as_ptr().cast());
        envp.push(std::ptr::null());
        Ok(Plan { program, argv, _args: args, envp, _env: env, listen_pid, sources })
    }

    /// Forks; the child moves the descriptors into place, writes its pid
    /// into `LISTEN_PID` and executes the program.
    fn spawn(&self) -> io::Result<u32> {
        let pid_at = self.listen_pid.as_ptr().cast_mut();
        // SAFETY: the child below only calls async-signal-safe functions
        // (sigprocmask, getpid, dup2, execve, _exit) and writes into memory
        // allocated before the fork (`listen_pid`), so the locks other
        // threads may have held at the fork do not matter.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        if pid > 0 {
            return Ok(pid as u32);
        }
        // SAFETY: in the child, as above: every pointer is to memory the
        // plan owns (`argv`, `envp` and the strings they point to, kept
        // alive by `self`), and `pid_at` has 32 bytes of which
        // `LISTEN_PID=` takes 11 and a pid at most 10 more and a NUL.
        unsafe {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            write_decimal(libc::getpid() as u32, pid_at.add(LISTEN_PID_PREFIX.len()));
            for (i, source) in self.sources.iter().enumerate() {
                // dup2 clears close-on-exec on the target.
                if libc::dup2(source.as_raw_fd(), FIRST_FD + i as RawFd) < 0 {
                    libc::_exit(126);
                }
            }
            libc::execve(self.program.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr());
            libc::_exit(127)
        }
    }
}

/// Writes `n` in decimal and a NUL at `at`, without allocating.
///
/// # Safety
/// `at` must be valid for writing 11 bytes.
unsafe fn write_decimal(mut n: u32, at: *mut u8) {
    let mut digits = [0u8; 10];
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for i in 0..len {
        // SAFETY: i < len <= 10, within the 11 bytes the caller vouches for.
        unsafe { *at.add(i) = digits[len - 1 - i] };
    }
    // SAFETY: len <= 10.
    unsafe { *at.add(len) = 0 };
}

/// The program to start: `argv[0]` as the old process was started (so a
/// binary replaced at that path is the one that runs), looked up in `PATH`
/// when it has no `/`; this process's own executable if that fails.
fn program() -> io::Result<PathBuf> {
    let argv0 = std::env::args_os().next().map(PathBuf::from);
    let found = argv0.and_then(|p| {
        if p.as_os_str().as_bytes().contains(&b'/') {
            return Some(p);
        }
        let paths = std::env::var_os("PATH")?;
        std::env::split_paths(&paths).map(|dir| dir.join(&p)).find(|c| c.is_file())
    });
    match found {
        Some(path) => Ok(path),
        None => std::env::current_exe(),
    }
}

/// A close-on-exec copy of `fd` numbered `at_least` or more.
fn dup_above(fd: &OwnedFd, at_least: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we hold, no pointers.
    let copy = sys::cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, at_least) })?;
    // SAFETY: fcntl succeeded: `copy` is a new descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(copy) })
}

/// A pipe, both ends close-on-exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is valid for writing two descriptors.
    sys::cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded: both are new descriptors nobody else owns.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Waits for the new process's byte: `Ok(true)` when it came, `Ok(false)`
/// on end of file (the process is gone), `Err` on timeout.
fn wait_ready(read: &OwnedFd, limit: Duration) -> Result<bool, ()> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(());
        }
        let mut poll = libc::pollfd { fd: read.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `poll` is one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, ms) };
        if ready <= 0 {
            continue; // timeout (checked above) or EINTR
        }
        let mut byte = [0u8];
        // SAFETY: `byte` is valid for writing one byte.
        let n = unsafe { libc::read(read.as_raw_fd(), byte.as_mut_ptr().cast(), 1) };
        if n >= 0 {
            return Ok(n == 1);
        }
    }
}

/// Waits for the child `pid` to exit; how it ended.
fn reap(pid: u32) -> String {
    let mut status = 0;
    // SAFETY: `status` is valid for writes; `pid` is our child.
    let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
    if r < 0 {
        return io::Error::last_os_error().to_string();
    }
    if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status:#x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids_are_written_in_decimal() {
        for n in [0u32, 7, 42, 1_000_000, u32::MAX] {
            let mut buf = [0xffu8; 11];
            // SAFETY: 11 bytes.
            unsafe { write_decimal(n, buf.as_mut_ptr()) };
            let end = buf.iter().position(|&b| b == 0).unwrap();
            assert_eq!(std::str::from_utf8(&buf[..end]).unwrap(), n.to_string());
        }
    }
}
