//! Handing listening sockets to a new process of the same program (a
//! zero-downtime restart).
//!
//! The old process passes its sockets the way a service manager does
//! (systemd's `LISTEN_FDS` protocol: descriptors 3.., `LISTEN_PID`,
//! `LISTEN_FDNAMES`), so the new one finds them with
//! [`inherited_listeners`](crate::net::inherited_listeners). One more
//! descriptor, named by [`READY_FD_VAR`], is a pipe the new process writes
//! a byte to once it serves ([`announce_ready`]); [`Successor::start`]
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

/// A new process of this program, ready to start: the sockets to pass are
/// copied in [`Successor::prepare`], so the caller need not keep them
/// while [`Successor::start`] waits for it to serve.
#[derive(Debug)]
pub struct Successor {
    plan: Plan,
    /// The readiness pipe: read here, written by the new process.
    read: OwnedFd,
    write: OwnedFd,
}

impl Successor {
    /// Prepares this program to start again, with the same arguments and
    /// environment, and `sockets` passed as descriptors 3.. in order. The
    /// program is `argv[0]` as this process was started (a binary replaced
    /// at that path is the one that runs), looked up in `PATH` when it has
    /// no `/`.
    ///
    /// # Errors
    /// [`HandoverError::Spawn`]: copying a descriptor, finding the program.
    pub fn prepare(sockets: &[Passed<'_>]) -> Result<Successor, HandoverError> {
        let (read, write) = pipe().map_err(HandoverError::Spawn)?;
        let plan = Plan::new(sockets, &write).map_err(HandoverError::Spawn)?;
        Ok(Successor { plan, read, write })
    }

    /// Starts it and waits up to `limit` until it serves. Returns its
    /// process id.
    ///
    /// # Errors
    /// [`HandoverError`]: this process is unaffected either way.
    pub fn start(self, limit: Duration) -> Result<u32, HandoverError> {
        let deadline = Instant::now() + limit;
        let Successor { mut plan, read, write } = self;
        let pid = plan.spawn().map_err(HandoverError::Spawn)?;
        // Only the new process holds the write end now: its exit is our EOF.
        drop(plan);
        drop(write);
        match wait_ready(&read, deadline) {
            Ok(true) => Ok(pid),
            // The pipe closed without the byte: the process exited, or is
            // about to (or closed the pipe and lives on: then it is killed
            // at the deadline).
            Ok(false) => match reap(pid, deadline) {
                Some(status) => Err(HandoverError::Exited { pid, status }),
                None => Err(kill(pid, limit)),
            },
            Err(()) => Err(kill(pid, limit)),
        }
    }
}

/// Kills and reaps the child `pid`, which did not serve in time.
fn kill(pid: u32, limit: Duration) -> HandoverError {
    // SAFETY: `pid` is our child, not yet reaped, so the id still names it.
    unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
    let _ = reap(pid, Instant::now() + Duration::from_secs(5));
    HandoverError::TimedOut { pid, limit }
}

/// In the new process: the readiness pipe the old one passed, if this
/// process was started by [`Successor::start`]. The variable is removed.
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
    // And one this process did not open itself: Rust opens everything
    // close-on-exec, while a descriptor passed through exec is not.
    // SAFETY: F_GETFD reads flags, no pointers.
    let inherited = is_pipe && unsafe { libc::fcntl(fd, libc::F_GETFD) } & libc::FD_CLOEXEC == 0;
    if !inherited {
        tracing::warn!(fd, "{READY_FD_VAR} names no pipe; ignored");
        return None;
    }
    // SAFETY: the old process passed this descriptor to this process for it
    // to own: a pipe at the number the variable gives, inherited through
    // exec (not close-on-exec, so not opened by this process's Rust code),
    // and the variable is removed so nothing else takes it.
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
#[derive(Debug)]
struct Plan {
    program: CString,
    /// `argv`, null-terminated; points into `args`.
    argv: Vec<*const libc::c_char>,
    _args: Vec<CString>,
    /// `envp`, null-terminated; points into `env` and `listen_pid`.
    envp: Vec<*const libc::c_char>,
    _env: Vec<CString>,
    /// `LISTEN_PID=` and room for the child to write its pid;
    /// `listen_pid_at` points into it (taken once, with `as_mut_ptr`).
    _listen_pid: Vec<u8>,
    listen_pid_at: *mut u8,
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
        let mut listen_pid = vec![0u8; 32];
        listen_pid[..LISTEN_PID_PREFIX.len()].copy_from_slice(LISTEN_PID_PREFIX);
        let listen_pid_at = listen_pid.as_mut_ptr();
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
        envp.push(listen_pid_at.cast_const().cast());
        envp.push(std::ptr::null());
        Ok(Plan {
            program,
            argv,
            _args: args,
            envp,
            _env: env,
            _listen_pid: listen_pid,
            listen_pid_at,
            sources,
        })
    }

    /// Forks; the child moves the descriptors into place, writes its pid
    /// into `LISTEN_PID` and executes the program.
    fn spawn(&mut self) -> io::Result<u32> {
        let pid_at = self.listen_pid_at;
        let last_signal = libc::SIGRTMAX();
        // Signals stay blocked across the fork: the child must not run this
        // process's handlers (signal-hook's would write to a pipe it shares
        // with this process) before it resets them.
        // SAFETY: an all-zero sigset_t is a valid value for sigfillset and
        // pthread_sigmask to overwrite; both pointers are to locals.
        let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut was: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: `all` and `was` are valid sigset_t values.
        unsafe {
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut was);
        }
        // SAFETY: the child below only calls async-signal-safe functions
        // (signal, sigemptyset, pthread_sigmask, getpid, dup2, execve,
        // _exit) and writes into memory allocated before the fork
        // (`listen_pid`), so the locks other threads may have held at the
        // fork do not matter.
        let pid = unsafe { libc::fork() };
        if pid != 0 {
            let error = io::Error::last_os_error();
            // SAFETY: `was` is the mask saved above.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &was, std::ptr::null_mut()) };
            return if pid < 0 { Err(error) } else { Ok(pid as u32) };
        }
        // SAFETY: in the child, as above: every pointer is to memory the
        // plan owns (`argv`, `envp` and the strings they point to, kept
        // alive by `self`), and `pid_at` points to 32 bytes of which
        // `LISTEN_PID=` takes 11 and a pid at most 10 more and a NUL;
        // nothing else reads or writes them in the child before execve.
        unsafe {
            for signal in 1..=last_signal {
                if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                    libc::signal(signal, libc::SIG_DFL);
                }
            }
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
fn wait_ready(read: &OwnedFd, deadline: Instant) -> Result<bool, ()> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(());
        }
        let mut poll = libc::pollfd { fd: read.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        let ms = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `poll` is one valid pollfd.
        let ready = unsafe { libc::poll(&mut poll, 1, ms) };
        if ready < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return Err(());
        }
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

/// Waits until `deadline` for the child `pid` to exit; how it ended, or
/// `None` if it still runs.
fn reap(pid: u32, deadline: Instant) -> Option<String> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is valid for writes; `pid` is our child.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
        if r < 0 {
            return Some(io::Error::last_os_error().to_string());
        }
        if r > 0 {
            break;
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Some(if libc::WIFEXITED(status) {
        format!("exit status {}", libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        format!("killed by signal {}", libc::WTERMSIG(status))
    } else {
        format!("status {status:#x}")
    })
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
