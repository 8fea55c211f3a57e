//! `redis-server`, the baseline of `compare`'s RESP rows.
//!
//! Started from the `PATH` on a free loopback port with persistence off
//! (`--save '' --appendonly no`), pinned to the server's CPUs like
//! `pollring-bench serve` is: the affinity of the thread that spawns it is
//! set to those CPUs for the spawn and inherited by the child. At more than
//! one worker it gets that many I/O threads (`--io-threads N
//! --io-threads-do-reads yes`); its commands still run on one thread.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `redis-server` may take to answer its first `PING`.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The `redis-server` executable on the `PATH`, if there is one.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join("redis-server")).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A running `redis-server` child process.
#[derive(Debug)]
pub struct RedisServer {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
}

impl RedisServer {
    /// Starts `exe` on a free loopback port, pinned to `cpus`, with `workers`
    /// I/O threads, and waits until it answers `PING`. The calling thread is
    /// pinned to `cpus` for the spawn and to `then` afterwards.
    ///
    /// # Errors
    /// If pinning fails, no port is free, or the server does not answer
    /// within 10 s (its log is in the message).
    pub fn start(exe: &Path, workers: usize, cpus: &[usize], then: &[usize]) -> io::Result<Self> {
        // A port the kernel says is free now; redis binds it a moment later.
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut command = Command::new(exe);
        command.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]);
        if workers > 1 {
            command.args(["--io-threads", &workers.to_string(), "--io-threads-do-reads", "yes"]);
        }
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        pollring_backends::thread::pin_to_cpus(cpus)?;
        let spawned = command.spawn();
        pollring_backends::thread::pin_to_cpus(then)?;
        let child = spawned.map_err(|e| {
            io::Error::new(e.kind(), format!("cannot start {}: {e}", exe.display()))
        })?;
        let mut server = RedisServer { child, addr };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ping(addr).is_ok() {
                return Ok(server);
            }
            let exited = server.child.try_wait()?;
            if exited.is_some() || Instant::now() > deadline {
                let log = server.log();
                let _ = server.child.kill();
                let _ = server.child.wait();
                return Err(io::Error::other(format!(
                    "redis-server did not start on {addr} ({}): {log}",
                    exited.map_or("no answer to PING in 10 s".to_string(), |s| s.to_string())
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote, for an error message (only once it exited or
    /// was killed: the pipes are read to their end).
    fn log(&mut self) -> String {
        let _ = self.child.kill();
        let mut text = String::new();
        if let Some(out) = self.child.stdout.as_mut() {
            let _ = out.read_to_string(&mut text);
        }
        if let Some(err) = self.child.stderr.as_mut() {
            let _ = err.read_to_string(&mut text);
        }
        text.trim().lines().rev().take(5).collect::<Vec<_>>().join(" / ")
    }

    /// Stops the server (SIGKILL: nothing is persisted) and waits for it.
    ///
    /// # Errors
    /// If waiting for the child fails.
    pub fn stop(mut self) -> io::Result<()> {
        let _ = self.child.kill();
        self.child.wait().map(drop)
    }
}

/// One `PING` on a new connection; `Ok` on `+PONG`.
fn ping(addr: SocketAddr) -> io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))?;
    s.write_all(b"*1\r\n$4\r\nPING\r\n")?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line)?;
    if line == "+PONG\r\n" {
        Ok(())
    } else {
        Err(io::Error::other(format!("PING answered {line:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_that_is_not_redis_is_reported_with_its_output() {
        // `sh` exits at once on redis's flags and prints why: the error
        // must say it did not start and carry that output.
        let cpus = pollring_backends::thread::allowed_cpus();
        let err = RedisServer::start(Path::new("/bin/sh"), 1, &cpus, &cpus).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("did not start"), "{msg}");
    }

    #[test]
    fn redis_answers_when_installed() {
        let Some(exe) = find() else {
            eprintln!("redis-server is not on the PATH: skipped");
            return;
        };
        let cpus = pollring_backends::thread::allowed_cpus();
        let server = RedisServer::start(&exe, 1, &cpus, &cpus).unwrap();
        ping(server.addr).unwrap();
        server.stop().unwrap();
    }
}
