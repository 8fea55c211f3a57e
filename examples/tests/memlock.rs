//! A locked-memory limit too small for the workers' io_uring rings (Linux
//! charges them to `RLIMIT_MEMLOCK` for a process without `CAP_IPC_LOCK`):
//! `--backend uring` fails at start naming the limit, `--backend auto`
//! serves on epoll. Run as an unprivileged user (nobody, via `setpriv`)
//! when the tests run as root, whose `CAP_IPC_LOCK` ignores the limit.

mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use util::*;

/// The echo binary, started with a 64 KiB locked-memory limit and without
/// `CAP_IPC_LOCK`: its exit status (if it exited) and its stderr lines
/// until it said where it listens and what it serves with.
fn echo_with_little_locked_memory(backend: &str) -> (Option<i32>, Vec<String>) {
    // A copy nobody may run, outside a possibly private build directory.
    let dir = std::env::temp_dir().join(format!("pollring-memlock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let echo = dir.join(format!("echo-{backend}"));
    std::fs::copy(env!("CARGO_BIN_EXE_echo"), &echo).unwrap();
    let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&echo, mode).unwrap();
    // Root has CAP_IPC_LOCK, which the limit does not bind.
    let root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    let run = format!(
        "ulimit -l 64 && exec {} {} --backend {backend} --workers 2 --addr 127.0.0.1:0",
        if root {
            require("setpriv", "util-linux");
            "setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all"
        } else {
            ""
        },
        echo.display()
    );
    let mut child = Command::new("sh")
        .args(["-c", &run])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while lines.len() < 20 && stderr.read_line(&mut line).unwrap_or(0) > 0 {
        let done = line.contains("serving endpoint") || line.starts_with("echo: ");
        lines.push(std::mem::take(&mut line));
        if done {
            break;
        }
    }
    let served = lines.iter().find_map(|l| l.strip_prefix("echo listening on "));
    if let (Some(addr), true) = (served, lines.iter().any(|l| l.contains("serving endpoint"))) {
        let mut c = TcpStream::connect(addr.trim()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"ping").unwrap();
        assert_eq!(read_n(&mut c, 4), b"ping");
    }
    // A server exits by itself once it failed to start; one that serves
    // is stopped here.
    let status = wait_exit(&mut child, Duration::from_secs(2)).unwrap_or_else(|| {
        let _ = child.kill();
        child.wait().unwrap()
    });
    let _ = std::fs::remove_dir_all(&dir);
    (status.code(), lines)
}

#[test]
fn too_little_locked_memory_is_named_and_auto_falls_back() {
    if pollring::testing::uring_or_skip("too_little_locked_memory").is_none() {
        return;
    }
    let (status, said) = echo_with_little_locked_memory("uring");
    assert_eq!(status, Some(1), "uring cannot start: {said:?}");
    let said = said.concat();
    assert!(said.contains("RLIMIT_MEMLOCK") && said.contains("64 KiB"), "{said}");

    let (_, said) = echo_with_little_locked_memory("auto");
    let said = said.concat();
    assert!(said.contains("io_uring workers cannot start; using epoll"), "{said}");
    assert!(said.contains("backend=epoll"), "serves on epoll: {said}");
}
