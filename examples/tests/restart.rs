//! Zero-downtime restart of the `http` binary on `SIGUSR2`, on both
//! backends: under `wrk -c 64 -d 6s` with the signal 2 s in, no socket
//! error and no non-2xx answer; afterwards a new process serves the port
//! and the old one has exited. And a restart whose new binary exits at
//! once leaves the old process serving.

#[macro_use]
mod util;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pollring::Backend;
use util::*;

/// A process to kill when the test ends, however it ends.
struct Killed(u32);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// The `http` binary at `program`, on an ephemeral port, `--workers 2`; its
/// address, and its stderr lines (the new process's too: it inherits them).
fn start_http(program: &Path, backend: Backend) -> (Child, SocketAddr, mpsc::Receiver<String>) {
    let mut child = Command::new(program)
        .args(["--backend", backend.as_str(), "--workers", "2", "--addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("POLLRING_SHUTDOWN_GRACE_MS", "5000")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start http");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = wait_for(&lines, "http listening on ", Duration::from_secs(10))
        .trim()
        .parse()
        .expect("an address");
    (child, addr, lines)
}

/// Waits for a line containing `marker`; what follows it.
fn wait_for(lines: &mpsc::Receiver<String>, marker: &str, limit: Duration) -> String {
    let start = Instant::now();
    let mut seen = Vec::new();
    while let Some(left) = limit.checked_sub(start.elapsed()) {
        match lines.recv_timeout(left) {
            Ok(line) => match line.find(marker) {
                Some(at) => return line[at + marker.len()..].to_owned(),
                None => seen.push(line),
            },
            Err(_) => break,
        }
    }
    panic!("no line with {marker:?} within {limit:?}; saw {seen:#?}")
}

/// `GET /plaintext` answers 200.
fn serves(addr: SocketAddr) -> bool {
    let mut c = Client::connect(addr);
    let r = c.request("GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
    r.status == 200 && r.body == b"Hello, World!"
}

fn sigusr2_under_load_loses_nothing(backend: Backend) {
    let wrk = require("wrk", "wrk");
    let (mut old, addr, lines) = start_http(Path::new(env!("CARGO_BIN_EXE_http")), backend);
    let _old_guard = Killed(old.id());
    let load = std::thread::spawn(move || {
        let mut cmd = Command::new(wrk);
        cmd.args(["-t2", "-c64", "-d6s", "--timeout", "5s"])
            .arg(format!("http://{addr}/plaintext"));
        run_with_deadline(&mut cmd, b"", Duration::from_secs(30))
    });
    std::thread::sleep(Duration::from_secs(2));
    signal(old.id(), "-USR2");
    let new_pid: u32 = wait_for(&lines, "this one drains and exits pid=", Duration::from_secs(10))
        .trim()
        .parse()
        .expect("the new process's pid");
    let _new_guard = Killed(new_pid);
    assert_ne!(new_pid, old.id());

    let out = load.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("wrk across the restart:\n{stdout}");
    assert!(out.status.success(), "wrk failed: {stdout}");
    assert!(!stdout.contains("Socket errors"), "wrk saw socket errors:\n{stdout}");
    assert!(!stdout.contains("Non-2xx"), "wrk saw error answers:\n{stdout}");
    let requests: u64 = stdout
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no request count:\n{stdout}"));
    assert!(requests > 1000, "{requests} requests:\n{stdout}");

    let status = wait_exit(&mut old, Duration::from_secs(10)).expect("the old process exits");
    assert!(status.success(), "the old process exited with {status}");
    assert!(Path::new(&format!("/proc/{new_pid}")).exists(), "the new process runs");
    assert!(serves(addr), "the new process serves the port");
    signal(new_pid, "-TERM");
}

fn a_new_binary_that_exits_leaves_the_old_one_serving(backend: Backend) {
    // A copy of the binary, so the copy can be replaced, as a deploy does.
    let dir =
        std::env::temp_dir().join(format!("pollring-restart-{}-{backend}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let program = dir.join("http");
    std::fs::copy(env!("CARGO_BIN_EXE_http"), &program).unwrap();
    let (mut old, addr, lines) = start_http(&program, backend);
    let _old_guard = Killed(old.id());
    assert!(serves(addr));

    // The "new version" fails at once.
    let broken = dir.join("http.new");
    std::fs::write(&broken, "#!/bin/sh\necho 'broken build' >&2\nexit 3\n").unwrap();
    std::fs::set_permissions(&broken, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&broken, &program).unwrap();
    signal(old.id(), "-USR2");
    let said = wait_for(&lines, "restart failed: ", Duration::from_secs(10));
    assert!(said.contains("exit status 3"), "{said}");
    assert!(wait_exit(&mut old, Duration::from_millis(300)).is_none(), "the old one serves on");
    for _ in 0..10 {
        assert!(serves(addr), "still served by the old process");
    }
    signal(old.id(), "-TERM");
    assert!(wait_exit(&mut old, Duration::from_secs(10)).is_some_and(|s| s.success()));
    let _ = std::fs::remove_dir_all(&dir);
}

on_both_backends!(
    sigusr2_under_load_loses_nothing,
    a_new_binary_that_exits_leaves_the_old_one_serving
);
