//! The pipelined load generators against the servers `compare` runs: each
//! answer is counted and checked, on both of pollring's backends (and the
//! tokio baseline for HTTP), and a wrong answer is caught, not counted as
//! throughput.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use pollring_bench::load::{self, LoadReport, LoadSpec, Proto};

/// A `pollring-bench serve` child, stopped on drop.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    addr: SocketAddr,
}

impl Server {
    #[track_caller]
    fn start(server: &str, proto: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pollring-bench"))
            .args(["serve", "--server", server, "--proto", proto, "--workers", "1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn pollring-bench serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("ready ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{server} {proto} did not start: {line:?}"));
        Server { stdin: child.stdin.take(), child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "stop");
        }
        let _ = self.child.wait();
    }
}

/// 4 connections, batches of 16, 0.1 s warm-up and 0.3 s recorded.
fn spec(proto: Proto, addr: SocketAddr) -> LoadSpec {
    LoadSpec {
        proto,
        addr,
        connections: 4,
        size: 64,
        depth: 16,
        pipelined: true,
        warmup: Duration::from_millis(100),
        count: Duration::from_millis(50),
        duration: Duration::from_millis(300),
    }
}

#[track_caller]
fn assert_answered(report: &LoadReport, what: &str) {
    assert_eq!(report.corrupt, 0, "{what}: wrong answers");
    // At least a few batches on every connection, in each window.
    assert!(report.messages >= 4 * 16 * 4, "{what}: only {} answers", report.messages);
    assert!(report.counted > 0, "{what}: nothing in the count window");
    assert!(report.latency.len() == report.messages, "{what}: a latency per answer");
}

/// Every pipelined workload of `compare` against `server`.
#[track_caller]
fn pipelined_workloads_are_answered_right(server: &str) {
    let http = Server::start(server, "http");
    let report = load::run(&spec(Proto::Http, http.addr)).expect("http load");
    assert_answered(&report, &format!("{server} http"));
    let resp = Server::start(server, "resp");
    for proto in [Proto::RespSet, Proto::RespGet] {
        let report = load::run(&spec(proto, resp.addr)).expect("resp load");
        assert_answered(&report, &format!("{server} {proto:?}"));
    }
}

#[test]
fn epoll_pipelined_workloads_are_answered_right() {
    pipelined_workloads_are_answered_right("epoll");
}

#[test]
fn uring_pipelined_workloads_are_answered_right() {
    pipelined_workloads_are_answered_right("uring");
}

#[test]
fn tokio_pipelined_http_is_answered_right() {
    let http = Server::start("tokio", "http");
    let report = load::run(&spec(Proto::Http, http.addr)).expect("http load");
    assert_answered(&report, "tokio http");
}

/// A server speaking the wrong protocol ends the run with an error.
#[test]
fn an_unparseable_answer_fails_the_run() {
    let echo = Server::start("epoll", "echo");
    // Echoed RESP requests are arrays, never a reply to GET or SET.
    let err = load::run(&spec(Proto::RespSet, echo.addr)).unwrap_err();
    assert!(err.to_string().contains("not a RESP reply"), "{err}");
    let resp = Server::start("epoll", "resp");
    // A RESP server answers an HTTP request with RESP errors.
    let err = load::run(&spec(Proto::Http, resp.addr)).unwrap_err();
    assert!(err.to_string().contains("not an HTTP/1 response"), "{err}");
}

/// A test server (a thread per connection) that answers each whole request
/// with `reply(request)`: well-framed answers, right or wrong.
fn liar(reply: fn(&[u8]) -> &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut pending = Vec::new();
                loop {
                    let n = match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buf[..n]);
                    // Requests are whole once their last line ends; every
                    // request here ends with "\r\n" and starts with '*' or 'G'.
                    let mut out = Vec::new();
                    while let Some(end) = request_end(&pending) {
                        out.extend_from_slice(reply(&pending[..end]));
                        pending.drain(..end);
                    }
                    if stream.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The length of the first whole request in `buf` (the load's own
/// requests: a RESP array of 2 or 3 short bulk strings, or an HTTP GET).
fn request_end(buf: &[u8]) -> Option<usize> {
    let lines = match buf.first()? {
        b'*' => 1 + 2 * usize::from(buf.get(1)? - b'0'),
        _ => {
            let text = std::str::from_utf8(buf).ok()?;
            return text.find("\r\n\r\n").map(|i| i + 4);
        }
    };
    let mut at = 0;
    for _ in 0..lines {
        at += buf[at..].windows(2).position(|w| w == b"\r\n")? + 2;
    }
    Some(at)
}

#[test]
fn a_wrong_but_well_formed_answer_is_counted_as_corrupt() {
    // GET answers nil (the key was SET just before), SET answers +OK.
    let addr = liar(|req| if req.starts_with(b"*3") { b"+OK\r\n" } else { b"$-1\r\n" });
    let report = load::run(&spec(Proto::RespGet, addr)).expect("resp-get against a liar");
    assert!(report.corrupt > 0, "nil answers to GET were taken as right");
    // Another key's value.
    let addr =
        liar(
            |req| {
                if req.starts_with(b"*3") {
                    b"+OK\r\n"
                } else {
                    b"$16\r\nval:999999999999\r\n"
                }
            },
        );
    let report = load::run(&spec(Proto::RespGet, addr)).expect("resp-get against a liar");
    assert!(report.corrupt > 0, "another key's value was taken as right");
    // HTTP: a 404 with the right body, and a 200 with the wrong one.
    let not_found = liar(|_| b"HTTP/1.1 404 Not Found\r\nContent-Length: 13\r\n\r\nHello, World!");
    let report = load::run(&spec(Proto::Http, not_found)).expect("http against a liar");
    assert!(report.corrupt > 0, "a 404 was taken as right");
    let wrong_body = liar(|_| b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, Wrong!");
    let report = load::run(&spec(Proto::Http, wrong_body)).expect("http against a liar");
    assert!(report.corrupt > 0, "a wrong body was taken as right");
}

#[test]
fn a_stream_of_right_answers_from_a_test_server_counts_clean() {
    // The same server shape as the liars, answering right: shows that the
    // liars fail on their answers and not on the harness.
    let addr = liar(|req| {
        if req.starts_with(b"*3") {
            b"+OK\r\n"
        } else {
            b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, World!"
        }
    });
    assert_answered(&load::run(&spec(Proto::RespSet, addr)).unwrap(), "test server SET");
    assert_answered(&load::run(&spec(Proto::Http, addr)).unwrap(), "test server HTTP");
}
