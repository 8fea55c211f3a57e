//! Shared helpers of the examples' tests: `pollring::testing` (the backend
//! macro, server start-up), an HTTP client that times out instead of
//! hanging, client programs (curl, wrk) run with a deadline, and the
//! example binaries as child processes (signals, exits, clean-up).

#![allow(dead_code)]

#[allow(unused_imports)] // not every test file emits backend pairs
pub use pollring::on_both_backends;
pub use pollring::testing::*;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// A parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body (delimited by Content-Length).
    pub body: Vec<u8>,
}

impl Response {
    /// The first field named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP client over one connection: writes bytes as given, reads
/// responses one at a time (so pipelined answers can be checked in order).
pub struct Client {
    /// The connection.
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `addr`.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Client {
        Client { stream: connect(addr), buf: Vec::new() }
    }

    /// Writes `data`.
    #[track_caller]
    pub fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).expect("write request");
    }

    /// Reads what has arrived into the buffer; retries `EINTR` (a read
    /// with a timeout is not restarted by the kernel).
    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = loop {
            match self.stream.read(&mut chunk) {
                // Seen on the thread that started an io_uring server.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                other => break other?,
            }
        };
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads one response (to a request of `method`: `HEAD` has no body);
    /// `None` on EOF before any byte of it.
    #[track_caller]
    pub fn try_read_response(&mut self, method: &str) -> Option<Response> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.fill().expect("read response head") == 0 {
                assert!(self.buf.is_empty(), "EOF inside a response head: {:?}", self.text());
                return None;
            }
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("UTF-8 head");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        assert_eq!(parts.next(), Some("HTTP/1.1"), "status line {status_line:?}");
        let status: u16 = parts.next().and_then(|s| s.parse().ok()).expect("status code");
        let headers: Vec<(String, String)> = lines
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (n, v) = l.split_once(':').expect("header field");
                (n.to_owned(), v.trim().to_owned())
            })
            .collect();
        let mut response = Response { status, headers, body: Vec::new() };
        self.buf.drain(..head_end);
        if status == 100 {
            return self.try_read_response(method);
        }
        let len: usize =
            response.header("content-length").and_then(|v| v.parse().ok()).expect("Content-Length");
        let len = if method == "HEAD" { 0 } else { len };
        while self.buf.len() < len {
            assert!(self.fill().expect("read response body") > 0, "EOF inside a response body");
        }
        response.body = self.buf.drain(..len).collect();
        Some(response)
    }

    /// Reads one response; panics on EOF.
    #[track_caller]
    pub fn read_response(&mut self, method: &str) -> Response {
        self.try_read_response(method).expect("a response, not EOF")
    }

    /// Sends `request` and reads its response.
    #[track_caller]
    pub fn request(&mut self, request: &str) -> Response {
        self.send(request.as_bytes());
        let method = request.split(' ').next().unwrap_or_default().to_owned();
        self.read_response(&method)
    }

    /// Asserts the server closes the connection with nothing more to say.
    #[track_caller]
    pub fn expect_eof(&mut self) {
        loop {
            match self.fill() {
                Ok(0) => break,
                Ok(_) => {}
                // A reset after the response is a close too.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("expected EOF, got {e}"),
            }
        }
        assert!(self.buf.is_empty(), "unexpected bytes before EOF: {:?}", self.text());
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

/// The path of `program`, or a panic naming the Debian package to install.
/// Client tests never skip silently: CI installs these packages.
#[track_caller]
pub fn require(program: &str, debian_package: &str) -> std::path::PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join(program)).find(|p| p.is_file())
    });
    match found {
        Some(path) => path,
        None => panic!(
            "`{program}` not found on PATH: this test needs it. \
             Install it with `apt-get install {debian_package}` (Debian/Ubuntu package `{debian_package}`)."
        ),
    }
}

/// Runs `cmd` with piped output, killing it and failing the test if it
/// takes longer than `limit`.
#[track_caller]
pub fn run_with_deadline(cmd: &mut Command, stdin: &[u8], limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            break status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {limit:?}; killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = writer.join();
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Output { status, stdout, stderr }
}

/// Sends `sig` (e.g. `-TERM`) to process `pid` with kill(1).
#[track_caller]
pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill").args([sig, &pid.to_string()]).status().unwrap();
    assert!(ok.success(), "kill {sig} {pid}");
}

/// Waits up to `limit` for `child` to exit; how it ended, if it did.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A child process killed (and reaped) when the test ends, however it ends.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
