//! Every example binary, with `--workers 2`, on both backends, speaks its
//! protocol to a real client (curl, redis-cli, a socket) when it listens on
//! a Unix socket (`--addr unix:PATH`) and when systemd-socket-activate
//! hands it its listening socket; there its `/metrics` (curl, parsed with a
//! Prometheus client parser) counts what it served.

#[macro_use]
mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pollring::{Backend, Endpoint};
use util::*;

/// Starts `cmd` (an example, possibly behind systemd-socket-activate) and
/// reads `NAME listening on ENDPOINT` from its stderr.
fn start(mut cmd: Command, name: &str) -> (Running, Endpoint) {
    let mut child = cmd
        .env("RUST_LOG", "warn")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let running = Running(child);
    // systemd-socket-activate speaks first; the example's line follows.
    let prefix = format!("{name} listening on ");
    let mut seen = Vec::new();
    let endpoint = loop {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 || seen.len() > 20 {
            panic!("{name} never said where it listens: {seen:?}");
        }
        if let Some(endpoint) = line.trim().strip_prefix(&prefix) {
            break endpoint.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
        }
        seen.push(line);
    };
    std::thread::spawn(move || for _ in stderr.lines() {});
    (running, endpoint)
}

/// The example binary `name` with `--backend` and `--workers 2`.
fn example(name: &str, backend: Backend) -> Command {
    let bin = match name {
        "echo" => env!("CARGO_BIN_EXE_echo"),
        "http" => env!("CARGO_BIN_EXE_http"),
        "resp" => env!("CARGO_BIN_EXE_resp"),
        "chat" => env!("CARGO_BIN_EXE_chat"),
        "proxy" => env!("CARGO_BIN_EXE_proxy"),
        other => panic!("no example {other}"),
    };
    let mut cmd = Command::new(bin);
    cmd.args(["--backend", backend.as_str(), "--workers", "2"]);
    cmd
}

/// A byte stream to `endpoint`, TCP or Unix.
trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

fn open(endpoint: &Endpoint) -> Box<dyn Stream> {
    let limit = Some(Duration::from_secs(10));
    match endpoint {
        Endpoint::Tcp(addr) => {
            let s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(limit).unwrap();
            Box::new(s)
        }
        Endpoint::Unix(path) => {
            let s = UnixStream::connect(path).unwrap();
            s.set_read_timeout(limit).unwrap();
            Box::new(s)
        }
    }
}

fn echo_speaks(endpoint: &Endpoint) {
    for i in 0..8u8 {
        let mut s = open(endpoint);
        s.write_all(&[i; 64]).unwrap();
        let mut back = [0u8; 64];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, [i; 64]);
    }
}

fn http_speaks(endpoint: &Endpoint) {
    let curl = require("curl", "curl");
    for _ in 0..4 {
        let mut cmd = Command::new(&curl);
        cmd.args(["-s", "--fail", "--max-time", "10"]);
        match endpoint {
            Endpoint::Unix(path) => {
                cmd.arg("--unix-socket").arg(path).arg("http://localhost/plaintext")
            }
            Endpoint::Tcp(addr) => cmd.arg(format!("http://{addr}/plaintext")),
        };
        let out = run_with_deadline(&mut cmd, b"", Duration::from_secs(15));
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello, World!");
    }
}

fn resp_speaks(endpoint: &Endpoint) {
    let cli = require("redis-cli", "redis-tools");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(&cli);
        match endpoint {
            Endpoint::Unix(path) => cmd.arg("-s").arg(path),
            Endpoint::Tcp(addr) => {
                cmd.args(["-h", &addr.ip().to_string(), "-p", &addr.port().to_string()])
            }
        };
        let out = run_with_deadline(cmd.args(args), b"", Duration::from_secs(15));
        assert!(out.status.success(), "redis-cli: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(run(&["SET", "greeting", "hello"]), "OK");
    assert_eq!(run(&["GET", "greeting"]), "hello");
}

fn chat_speaks(endpoint: &Endpoint) {
    let (mut a, mut b) = (open(endpoint), open(endpoint));
    // `b` may not be a member yet when `a` first speaks: say it again
    // until it arrives.
    let (said, heard) = (std::sync::mpsc::channel::<()>(), std::sync::mpsc::channel());
    std::thread::spawn(move || {
        let mut line = [0u8; 6];
        let _ = b.read_exact(&mut line);
        let _ = heard.0.send(line);
        drop(said.1);
    });
    let start = Instant::now();
    loop {
        a.write_all(b"hello\n").unwrap();
        if let Ok(line) = heard.1.recv_timeout(Duration::from_millis(100)) {
            assert_eq!(&line, b"hello\n");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "the other member never heard");
    }
    drop(said.0);
}

/// An echo server on TCP for the proxy to relay to.
fn upstream(backend: Backend) -> (Running, SocketAddr) {
    let mut cmd = example("echo", backend);
    cmd.args(["--addr", "127.0.0.1:0"]);
    let (running, endpoint) = start(cmd, "echo");
    (running, endpoint.tcp().unwrap())
}

/// Checks that the example `name`, started by `cmd`, speaks its protocol.
fn speaks(name: &str, endpoint: &Endpoint) {
    match name {
        "echo" | "proxy" => echo_speaks(endpoint),
        "http" => http_speaks(endpoint),
        "resp" => resp_speaks(endpoint),
        "chat" => chat_speaks(endpoint),
        other => panic!("no example {other}"),
    }
}

const EXAMPLES: [&str; 5] = ["echo", "http", "resp", "chat", "proxy"];

fn socket_path(name: &str, backend: Backend) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pollring-examples-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{backend}.sock"));
    let _ = std::fs::remove_file(&path);
    path
}

fn unix_arg(path: &Path) -> String {
    format!("unix:{}", path.display())
}

fn every_example_serves_a_unix_socket(backend: Backend) {
    let (_echo, echo_at) = upstream(backend);
    for name in EXAMPLES {
        let path = socket_path(name, backend);
        let mut cmd = example(name, backend);
        cmd.args(["--addr", &unix_arg(&path)]);
        if name == "proxy" {
            cmd.args(["--upstream", &echo_at.to_string()]);
        }
        let (_running, endpoint) = start(cmd, name);
        assert_eq!(endpoint, Endpoint::Unix(path), "{name}");
        speaks(name, &endpoint);
    }
}

/// `curl http://AT/metrics`, parsed with a Prometheus client parser: the
/// sum over workers of the counter `name`.
fn scraped(at: SocketAddr, name: &str) -> f64 {
    let out = run_with_deadline(
        Command::new(require("curl", "curl")).args([
            "-s",
            "--fail",
            &format!("http://{at}/metrics"),
        ]),
        b"",
        Duration::from_secs(15),
    );
    assert!(out.status.success(), "scraping {at}: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("the Prometheus text format");
    let values: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
            ref other => panic!("{name}: {other:?}"),
        })
        .collect();
    assert_eq!(values.len(), 2, "{name} for each of 2 workers:\n{text}");
    values.iter().sum()
}

fn every_example_serves_under_socket_activation(backend: Backend) {
    let activate = require("systemd-socket-activate", "systemd");
    let (_echo, echo_at) = upstream(backend);
    for name in EXAMPLES {
        let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let metrics = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut example = example(name, backend);
        example.args(["--metrics", &metrics.to_string()]);
        let mut cmd = Command::new(&activate);
        cmd.args(["-l", &addr.to_string()]).arg(example.get_program()).args(example.get_args());
        if name == "proxy" {
            cmd.args(["--upstream", &echo_at.to_string()]);
        }
        // The activator starts the example on the first connection.
        let knock = std::thread::spawn(move || {
            let start = Instant::now();
            while TcpStream::connect(addr).is_err() {
                assert!(start.elapsed() < Duration::from_secs(10), "nobody listens on {addr}");
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        let (_running, endpoint) = start(cmd, name);
        knock.join().unwrap();
        assert_eq!(endpoint, Endpoint::Tcp(addr), "{name} serves the passed socket");
        let before = scraped(metrics, "pollring_received_bytes_total");
        speaks(name, &endpoint);
        // Its metrics parse, and its counters rose with what it served.
        assert!(scraped(metrics, "pollring_received_bytes_total") > before, "{name}");
        assert!(scraped(metrics, "pollring_accepted_total") >= 2.0, "{name}");
    }
}

on_both_backends!(every_example_serves_a_unix_socket, every_example_serves_under_socket_activation);
