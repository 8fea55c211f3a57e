//! Helpers for the RESP server's tests: start it in-process on 127.0.0.1:0
//! with a given backend, talk to it with a std client that times out, run
//! client binaries with a deadline. (Copied in part from
//! `framework/tests/util`, which examples cannot use.)

#![allow(dead_code)]

#[allow(unused_imports)] // not every test file emits backend pairs
pub use pollring::on_both_backends;
pub use pollring::testing::*;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pollring::{Config, ConfigBuilder, Server, ServerHandle};
use pollring_examples::resp::{Limits, Resp, Store};

/// A running RESP server and the store its workers share.
pub struct TestServer {
    /// Stops the server when dropped.
    pub handle: ServerHandle,
    /// The keyspace, to look at from the test.
    pub store: Arc<Store>,
}

impl TestServer {
    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.handle.local_addr()
    }
}

/// Starts the RESP server with `config` and the limits the binary would use.
#[track_caller]
pub fn start(config: ConfigBuilder) -> TestServer {
    let config = config.build().expect("valid test config");
    let limits = pollring_examples::resp::limits_for(&config);
    start_with(config, limits)
}

/// Starts the RESP server with `config` and `limits`.
#[track_caller]
pub fn start_with(config: Config, limits: Limits) -> TestServer {
    init_tracing();
    let store = Arc::new(Store::default());
    let shared = store.clone();
    let server = Server::bind("127.0.0.1:0", config).expect("bind 127.0.0.1:0");
    let handle = server.serve(move |_| Resp::new(shared.clone(), limits)).expect("server starts");
    TestServer { handle, store }
}

/// A request as RESP2 multibulk.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A RESP2 client over a std `TcpStream`: sends requests, reads whole
/// replies (as their raw bytes).
pub struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    /// Connects with timeouts.
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Client {
        let s = connect(addr);
        Client { writer: s.try_clone().unwrap(), reader: BufReader::new(s) }
    }

    /// Another handle on the socket, for writing from a thread or
    /// shutting down.
    pub fn writer_clone(&self) -> TcpStream {
        self.writer.try_clone().expect("clone socket")
    }

    /// Sends raw bytes.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send");
    }

    /// Sends `args` as one multibulk request and returns the reply.
    #[track_caller]
    pub fn cmd(&mut self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send(&encode(&args));
        String::from_utf8(self.reply()).expect("utf-8 reply")
    }

    /// Expects the server to close the connection, with nothing more sent.
    #[track_caller]
    pub fn expect_closed(&mut self) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "bytes before the close: {:?}", lossy(&rest)),
            Err(e) => panic!("expected a clean close, got {e}"),
        }
    }

    /// Reads one complete reply, nested arrays included.
    #[track_caller]
    pub fn reply(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.read_reply(&mut out);
        out
    }

    #[track_caller]
    fn read_reply(&mut self, out: &mut Vec<u8>) {
        let start = out.len();
        let n = self.reader.read_until(b'\n', out).expect("read reply line");
        assert!(n > 0, "connection closed before a reply");
        let line = &out[start..];
        assert!(line.ends_with(b"\r\n"), "reply line without CRLF: {:?}", lossy(line));
        let count = || -> i64 {
            std::str::from_utf8(&line[1..line.len() - 2])
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("bad length in {:?}", lossy(line)))
        };
        match line[0] {
            b'+' | b'-' | b':' => {}
            b'$' => {
                let n = count();
                if n >= 0 {
                    let mut payload = vec![0; n as usize + 2];
                    self.reader.read_exact(&mut payload).expect("read bulk payload");
                    out.extend_from_slice(&payload);
                }
            }
            b'*' => {
                for _ in 0..count().max(0) {
                    self.read_reply(out);
                }
            }
            other => panic!("unexpected reply type byte {other:#x} in {:?}", lossy(line)),
        }
    }

    /// Reads to EOF: what the server sent before closing.
    pub fn read_to_end(&mut self) -> (Vec<u8>, Option<std::io::Error>) {
        let mut out = self.reader.buffer().to_vec();
        self.reader.consume(out.len());
        let (rest, err) = read_to_end(self.reader.get_mut());
        out.extend_from_slice(&rest);
        (out, err)
    }
}

/// Bytes as text for messages.
pub fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The path of a client binary, or a failure naming the package that has it.
#[track_caller]
pub fn client_binary(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not on PATH: this test needs the Debian package redis-tools \
             (apt-get install redis-tools)"
        )
    })
}

/// What a child process printed and how it ended.
#[derive(Debug)]
pub struct Output {
    /// Exit status (`None`: killed by a signal).
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

/// Runs `program args`, waiting at most `limit`; past it the child is
/// killed and the test fails.
#[track_caller]
pub fn run(program: &PathBuf, args: &[&str], limit: Duration) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    // Drain both pipes on threads so a chatty child cannot block on them.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let start = Instant::now();
    let status = loop {
        match child.try_wait().expect("wait for child") {
            Some(status) => break status,
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                let (out, err) = (stdout.join(), stderr.join());
                panic!(
                    "{} {args:?} did not finish within {limit:?}; killed.\nstdout: {out:?}\nstderr: {err:?}",
                    program.display()
                );
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    Output {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}
