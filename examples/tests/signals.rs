//! SIGINT/SIGTERM on a real server binary (`echo`): the first signal stops
//! gracefully, a second one exits at once.

#[macro_use]
mod util;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use pollring::Backend;
use util::*;

/// Starts the echo binary on an ephemeral port; returns it and its address.
fn spawn_echo(backend: Backend, grace_ms: u64) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_echo"))
        .args(["--backend", backend.as_str(), "--workers", "1", "--addr", "127.0.0.1:0"])
        .env("POLLRING_SHUTDOWN_GRACE_MS", grace_ms.to_string())
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the echo binary");
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("echo listening on ")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected first line from echo: {line:?}"));
    // Keep draining its stderr so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr.lines() {});
    (child, addr)
}

/// Waits up to `limit` for the process to exit; its exit code if it did.
fn exit_code(child: &mut Child, limit: Duration) -> Option<i32> {
    wait_exit(child, limit).map(|status| status.code().unwrap_or(-1))
}

fn sigterm_with_idle_connections_exits_cleanly(backend: Backend) {
    let (mut child, addr) = spawn_echo(backend, 5_000);
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"ping").unwrap();
    assert_eq!(read_n(&mut c, 4), b"ping");
    signal(child.id(), "-TERM");
    let code = exit_code(&mut child, Duration::from_secs(3));
    assert_eq!(code, Some(0), "a graceful stop with nothing to drain exits 0, promptly");
}

fn second_signal_forces_exit(backend: Backend) {
    let (mut child, addr) = spawn_echo(backend, 60_000);
    // A client that sends and never reads: the server's output for it can
    // never drain, so the graceful stop would wait out its grace period.
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    for _ in 0..256 {
        if c.write_all(&chunk).is_err() {
            break; // Both directions full: the server holds queued output.
        }
    }
    signal(child.id(), "-TERM");
    assert_eq!(exit_code(&mut child, Duration::from_millis(500)), None, "still draining");
    signal(child.id(), "-TERM");
    let code = exit_code(&mut child, Duration::from_secs(3));
    assert_eq!(code, Some(130), "a second signal exits at once with 130");
    drop(c);
}

on_both_backends!(sigterm_with_idle_connections_exits_cleanly, second_signal_forces_exit);
