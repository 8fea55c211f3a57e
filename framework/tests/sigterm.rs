//! SIGTERM under load loses no response to a request the server accepted.
//!
//! A real SIGTERM reaches the whole process, and a second one exits it (see
//! [`pollring::ServerHandle::stop_on_signals`]), so each backend's run lives
//! in a child process: the test re-runs this test binary with only the
//! `child` test selected and the backend in [`CHILD_ENV`]. The child starts
//! a server with signal handling, loads it with pipelining clients, sends
//! itself SIGTERM, and checks that every request the handler answered
//! reached its client whole and in order, and that the server stopped
//! within the grace period.
//!
//! A request the server had not read when shutdown began is not answered:
//! a connection with nothing in flight closes at once, and a request its
//! client sends after that meets a reset (the keep-alive race every server
//! has; clients retry). The child prints how many connections ended so.

#[macro_use]
mod util;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pollring::{Backend, Cx, Handler};
use util::*;

/// Names the backend the child process runs on.
const CHILD_ENV: &str = "POLLRING_SIGTERM_CHILD";
const CLIENTS: usize = 32;
/// Requests a client pipelines before it reads their responses.
const BATCH: u64 = 8;
const GRACE: Duration = Duration::from_secs(5);

/// Echoes complete lines and counts them: a counted line is a request whose
/// response the handler wrote.
struct CountingLines {
    answered: Arc<AtomicU64>,
}

impl Handler for CountingLines {
    type Conn = ();
    type Message = ();
    fn on_open(&mut self, _cx: &mut Cx<'_>) {}
    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        while let Some(end) = cx.input().find(0, b'\n') {
            cx.forward(end + 1);
            self.answered.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    /// Responses received whole and in order.
    complete: u64,
    /// How the connection ended: `None` for a clean EOF, else the error
    /// (a reset when the server closed it idle and a request followed).
    ended_by: Option<std::io::ErrorKind>,
}

/// Sends batches of numbered lines (split over two writes, so the server
/// may catch a batch half-way) and reads their echoes, until the server
/// closes. Panics on a response that is cut short or out of order.
fn client(addr: SocketAddr, id: usize, stop: &AtomicBool) -> Seen {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    let mut seen = Seen::default();
    let mut next = 0u64;
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    'batches: while !stop.load(Ordering::Relaxed) {
        let batch: Vec<u8> =
            (next..next + BATCH).flat_map(|seq| format!("{id}:{seq}\n").into_bytes()).collect();
        let half = batch.len() / 2;
        if s.write_all(&batch[..half]).and_then(|()| s.write_all(&batch[half..])).is_err() {
            // Closed while writing: read what was answered.
        }
        let want = next + BATCH;
        while seen.complete < want {
            match s.read(&mut buf) {
                Ok(0) => break 'batches,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    seen.ended_by = Some(e.kind());
                    break 'batches;
                }
            }
            while let Some(end) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=end).collect();
                let expected = format!("{id}:{}\n", seen.complete);
                assert_eq!(line, expected.as_bytes(), "client {id}: response out of order");
                seen.complete += 1;
            }
        }
        next = want;
    }
    assert!(pending.is_empty(), "client {id}: a response cut short: {pending:?}");
    seen
}

/// The child's work (see the module docs).
fn under_load(backend: Backend) {
    let answered = Arc::new(AtomicU64::new(0));
    let a = answered.clone();
    let server = start(config(backend).workers(2).shutdown_grace(GRACE), move |_| CountingLines {
        answered: a.clone(),
    });
    server.stop_on_signals().expect("signal handlers");
    let addr = server.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let stop = stop.clone();
            std::thread::spawn(move || client(addr, id, &stop))
        })
        .collect();
    eventually(IO_TIMEOUT, "load under way", || answered.load(Ordering::Relaxed) > 20_000);

    let signalled = Instant::now();
    let kill = Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(kill.success(), "kill -TERM failed");
    server.wait().expect("workers stop cleanly");
    let stopped = signalled.elapsed();
    stop.store(true, Ordering::Relaxed);

    let seen: Vec<Seen> = clients.into_iter().map(|c| c.join().expect("client")).collect();
    let received: u64 = seen.iter().map(|s| s.complete).sum();
    let answered = answered.load(Ordering::Relaxed);
    let resets = seen.iter().filter(|s| s.ended_by.is_some()).count();
    println!(
        "{backend:?}: {answered} answered, {received} received whole, stopped in {stopped:?}, \
         {resets} of {CLIENTS} connections ended by an error"
    );
    assert!(seen.iter().all(|s| s.complete > 0), "every client was served before the signal");
    assert_eq!(received, answered, "every answered request's response reached its client");
    assert!(stopped < GRACE, "stopped within the grace period: {stopped:?}");
}

#[test]
#[ignore = "run in its own process by sigterm_under_load_loses_no_response"]
fn child() {
    match std::env::var(CHILD_ENV) {
        Ok(backend) => under_load(backend.parse().expect("backend name")),
        Err(_) => eprintln!("child: {CHILD_ENV} not set; nothing to do"),
    }
}

fn sigterm_under_load_loses_no_response(backend: Backend) {
    let exe = std::env::current_exe().expect("test binary path");
    let out = Command::new(exe)
        .args(["--exact", "child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, backend.as_str())
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "child failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains("1 passed"), "the child test did not run:\n{stdout}");
    assert!(stdout.contains("received whole"), "the child did not report:\n{stdout}");
}

on_both_backends!(sigterm_under_load_loses_no_response);
