//! Running out of descriptors at accept (`EMFILE`): no busy loop, the
//! established connections keep being served, and accepting resumes once
//! descriptors are free again.
//!
//! One test in its own binary, running both backends one after the other:
//! the descriptor limit is process-wide. It is lowered with `prlimit` (from
//! util-linux) on this very process.

#[macro_use]
mod util;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use pollring::Backend;
use util::*;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn set_nofile(soft: usize, hard: usize) {
    let ok = Command::new("prlimit")
        .args(["--pid", &std::process::id().to_string(), &format!("--nofile={soft}:{hard}")])
        .status()
        .expect("prlimit (Debian package util-linux) must be installed");
    assert!(ok.success(), "prlimit failed");
}

fn hard_nofile() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    line.split_whitespace().nth(4).unwrap().parse().unwrap()
}

/// The `schedstat` file of every thread of this process, opened now: once
/// the server has used up the descriptor limit, nothing more can be opened.
fn open_schedstats() -> Vec<File> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter_map(|t| File::open(t.path().join("schedstat")).ok())
        .collect()
}

/// CPU time of this whole process (server workers included), re-read from
/// files opened beforehand.
fn cpu_time(files: &mut [File]) -> Duration {
    let mut ns = 0u64;
    for f in files {
        let mut s = String::new();
        if f.seek(SeekFrom::Start(0)).is_ok() && f.read_to_string(&mut s).is_ok() {
            ns += s.split_whitespace().next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    Duration::from_nanos(ns)
}

fn accept_backs_off_and_recovers(backend: Backend) {
    let hard = hard_nofile();
    // Leave room for 60 more descriptors in the whole process, before the
    // server starts: io_uring's accept takes the limit in force when it is
    // armed. Clients and the server's accepted sockets share the room, so
    // the server runs out while clients still connect (the kernel completes
    // their handshakes and queues them in the backlog).
    set_nofile(open_fds() + 60, hard);
    let server = start(config(backend), |_| Echo);
    let addr = server.local_addr();
    let mut first = connect(addr);
    first.write_all(b"hello").unwrap();
    assert_eq!(read_n(&mut first, 5), b"hello");
    let mut schedstats = open_schedstats();
    let mut pending = Vec::new();
    for _ in 0..50 {
        match TcpStream::connect(addr) {
            Ok(s) => pending.push(s),
            Err(_) => break,
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    // The server is now out of descriptors with connections waiting in its
    // backlog. It must not spin retrying accept.
    let (cpu0, t0) = (cpu_time(&mut schedstats), Instant::now());
    std::thread::sleep(Duration::from_millis(500));
    let busy = (cpu_time(&mut schedstats) - cpu0).as_secs_f64() / t0.elapsed().as_secs_f64();
    assert!(busy < 0.5, "{backend}: {:.0}% of a core spent while out of descriptors", busy * 100.0);
    // The established connection is still served.
    first.write_all(b"still").unwrap();
    assert_eq!(read_n(&mut first, 5), b"still");

    // Free descriptors: the waiting connections are accepted and served.
    set_nofile(hard, hard);
    for (i, s) in pending.iter_mut().enumerate() {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.write_all(b"late").unwrap();
        assert_eq!(read_n(s, 4), b"late", "{backend}: pending connection {i} was never served");
    }
    assert!(pending.len() >= 10, "the test did not exhaust the server's descriptors");
    drop(pending);
    drop(first);
    server.shutdown();
    server.wait().unwrap();
}

#[test]
fn emfile_at_accept_backs_off_and_recovers() {
    accept_backs_off_and_recovers(Backend::Epoll);
    if let Some(backend) = uring_or_skip("emfile_at_accept_backs_off_and_recovers") {
        accept_backs_off_and_recovers(backend);
    }
}
