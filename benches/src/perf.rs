//! A server's system calls, counted by `perf stat -e raw_syscalls:sys_enter`
//! over a window the caller opens and closes.
//!
//! The `raw_syscalls` tracepoint puts every thread of the machine on the
//! slow system-call path while anyone traces it: it cost a pipelined
//! server a quarter of its requests/s here. So `compare` counts in a window
//! of its own at the end of the warm-up and stops `perf` before the
//! recorded window starts. `perf` starts with its events disabled (`-D -1`)
//! and is switched on and off through its control FIFOs (`--control
//! fifo:CTL,ACK`); each switch waits for perf's `ack`, so the window the
//! caller counts requests in is the window perf counted system calls in.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// How long perf may take to acknowledge a command (it starts up in the
/// meantime the first time).
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

/// The event counted.
const EVENT: &str = "raw_syscalls:sys_enter";

/// Whether `perf stat -e raw_syscalls:sys_enter` works here (root or a
/// permissive `perf_event_paranoid`, and linux-perf installed).
pub fn works() -> bool {
    Command::new("perf")
        .args(["stat", "-x,", "-e", EVENT, "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stderr).contains(EVENT))
        .unwrap_or(false)
}

/// A `perf stat` attached to one process, its events off until
/// [`enable`](SyscallCounter::enable).
#[derive(Debug)]
pub struct SyscallCounter {
    perf: Child,
    ctl: File,
    /// One message per `ack` perf writes.
    acks: Receiver<io::Result<()>>,
    /// Our own write end of the ACK FIFO, to wake the reader thread when
    /// perf is gone.
    ack_fifo: PathBuf,
    dir: PathBuf,
}

impl SyscallCounter {
    /// Attaches `perf stat` to every thread of `pid`, counting nothing yet.
    /// Returns at once; perf starts up while the caller goes on.
    ///
    /// # Errors
    /// If the FIFOs cannot be made or perf cannot be started.
    pub fn attach(pid: u32) -> io::Result<SyscallCounter> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("pollring-bench-perf-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let (ctl_fifo, ack_fifo) = (dir.join("ctl"), dir.join("ack"));
        let made = Command::new("mkfifo").arg(&ctl_fifo).arg(&ack_fifo).status()?;
        if !made.success() {
            return Err(io::Error::other(format!("mkfifo in {} failed", dir.display())));
        }
        // Read and write: opening a FIFO so never blocks, and reads never
        // see end-of-file while perf restarts its end.
        let rw = |p: &Path| File::options().read(true).write(true).open(p);
        let ctl = rw(&ctl_fifo)?;
        let mut ack = rw(&ack_fifo)?;
        let control = format!("fifo:{},{}", ctl_fifo.display(), ack_fifo.display());
        let perf = Command::new("perf")
            .args(["stat", "-x,", "-e", EVENT, "-D", "-1", "--control", &control])
            .args(["-p", &pid.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let (tx, acks) = mpsc::channel();
        std::thread::spawn(move || {
            // perf writes "ack\n" and a NUL per command.
            let mut buf = [0u8; 64];
            // Anything else is our own wake-up from `drop`.
            loop {
                match ack.read(&mut buf) {
                    Ok(n) if buf[..n].starts_with(b"ack") => {
                        if tx.send(Ok(())).is_err() {
                            return;
                        }
                    }
                    Ok(_) => return,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        Ok(SyscallCounter { perf, ctl, acks, ack_fifo, dir })
    }

    /// Sends `command` and waits for perf's acknowledgement.
    fn command(&mut self, command: &str) -> io::Result<()> {
        self.ctl.write_all(format!("{command}\n").as_bytes())?;
        let deadline = Instant::now() + ACK_TIMEOUT;
        loop {
            match self.acks.recv_timeout(Duration::from_millis(20)) {
                Ok(ack) => return ack,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(io::Error::other("perf's acknowledgements stopped"))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(status) = self.perf.try_wait()? {
                let mut err = String::new();
                if let Some(mut stderr) = self.perf.stderr.take() {
                    let _ = stderr.read_to_string(&mut err);
                }
                return Err(io::Error::other(format!("perf exited ({status}): {}", err.trim())));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("perf did not acknowledge {command:?} within {ACK_TIMEOUT:?}"),
                ));
            }
        }
    }

    /// Starts counting; returns once perf counts.
    ///
    /// # Errors
    /// If perf does not acknowledge (it failed to attach, or exited).
    pub fn enable(&mut self) -> io::Result<()> {
        self.command("enable")
    }

    /// Stops counting, ends perf and returns the count.
    ///
    /// # Errors
    /// If perf does not acknowledge, or prints no count.
    pub fn finish(mut self) -> io::Result<u64> {
        self.command("disable")?;
        let _ = Command::new("kill").args(["-INT", &self.perf.id().to_string()]).status();
        let mut err = String::new();
        if let Some(mut stderr) = self.perf.stderr.take() {
            stderr.read_to_string(&mut err)?;
        }
        self.perf.wait()?;
        err.lines()
            .find(|l| l.contains(EVENT))
            .and_then(|l| l.split(',').next())
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| io::Error::other(format!("no count from perf: {}", err.trim())))
    }
}

impl Drop for SyscallCounter {
    fn drop(&mut self) {
        // Still running after an error: end it.
        if self.perf.try_wait().ok().flatten().is_none() {
            let _ = self.perf.kill();
            let _ = self.perf.wait();
        }
        // Wake the reader thread so it sees the channel closed and exits.
        if let Ok(mut ack) = File::options().write(true).open(&self.ack_fifo) {
            let _ = ack.write_all(b"bye\n");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_system_calls_of_a_window() {
        if !works() {
            eprintln!("perf cannot count raw_syscalls here: skipped");
            return;
        }
        // A child that makes system calls all the time.
        let mut busy = Command::new("sh")
            .args(["-c", "while :; do : < /dev/null; done"])
            .spawn()
            .expect("spawn sh");
        let mut counter = SyscallCounter::attach(busy.id()).unwrap();
        counter.enable().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let n = counter.finish().unwrap();
        let _ = busy.kill();
        let _ = busy.wait();
        assert!(n > 100, "{n} system calls in 100 ms of a busy shell");
    }

    #[test]
    fn a_gone_process_is_an_error_not_a_hang() {
        if !works() {
            return;
        }
        let mut gone = Command::new("true").spawn().unwrap();
        let pid = gone.id();
        gone.wait().unwrap();
        let mut counter = SyscallCounter::attach(pid).unwrap();
        let start = Instant::now();
        let err = counter.enable().unwrap_err();
        assert!(start.elapsed() < ACK_TIMEOUT, "{err}");
    }
}
