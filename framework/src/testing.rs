//! Helpers for testing servers built on pollring (feature `test-util`):
//! run each test on every backend, start a server on 127.0.0.1:0, and talk
//! to it with std clients that time out instead of hanging.
//!
//! ```toml
//! [dev-dependencies]
//! pollring = { version = "…", features = ["test-util"] }
//! ```
//!
//! # Examples
//! ```
//! use std::io::Write;
//! use pollring::testing::*;
//! use pollring::{Backend, Cx, Handler};
//!
//! struct Echo;
//! impl Handler for Echo {
//!     type Conn = ();
//!     type Message = ();
//!     fn on_open(&mut self, _: &mut Cx<'_>) {}
//!     fn on_data(&mut self, _: &mut (), cx: &mut Cx<'_>) {
//!         let n = cx.input().len();
//!         cx.forward(n);
//!     }
//! }
//!
//! fn echoes(backend: Backend) {
//!     let server = start(config(backend), |_| Echo);
//!     let mut c = connect(server.local_addr());
//!     c.write_all(b"hi").unwrap();
//!     assert_eq!(read_n(&mut c, 2), b"hi");
//! }
//! # echoes(Backend::Epoll);
//! // In a test file: `on_both_backends!(echoes);` emits `epoll::echoes`
//! // and `uring::echoes`.
//! ```

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::{Backend, Config, ConfigBuilder, Handler, Server, ServerHandle};

/// Emits each named `fn(Backend)` as a test for every backend:
/// `epoll::NAME` and `uring::NAME` (`cargo test uring::` runs one backend).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod epoll {
            $( #[test] fn $name() { super::$name($crate::Backend::Epoll) } )*
        }
        mod uring {
            $(
                #[test]
                fn $name() {
                    if let Some(backend) = $crate::testing::uring_or_skip(stringify!($name)) {
                        super::$name(backend)
                    }
                }
            )*
        }
    };
}

/// `Some(Backend::Uring)`, unless the environment explicitly says io_uring is
/// unavailable (`POLLRING_NO_URING`), in which case the skip is announced
/// loudly. Without that variable a broken io_uring fails the test.
pub fn uring_or_skip(test: &str) -> Option<Backend> {
    match std::env::var("POLLRING_NO_URING") {
        Ok(v) if !v.is_empty() && v != "0" => {
            eprintln!("!!! SKIPPED uring::{test}: POLLRING_NO_URING={v} says io_uring is unavailable here");
            None
        }
        _ => Some(Backend::Uring),
    }
}

/// How long any single client operation may take before the test fails.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A config for tests: the given backend, one worker unless changed.
pub fn config(backend: Backend) -> ConfigBuilder {
    Config::builder().backend(backend).workers(1)
}

/// Logs to the test's output when `RUST_LOG` is set.
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Starts a server with `config` on an ephemeral loopback port.
#[track_caller]
pub fn start<H: Handler>(
    config: ConfigBuilder,
    factory: impl Fn(crate::WorkerId) -> H + Send + Sync + 'static,
) -> ServerHandle {
    init_tracing();
    let config = config.build().expect("valid test config");
    let server = Server::bind("127.0.0.1:0", config).expect("bind 127.0.0.1:0");
    server.serve(factory).expect("server starts")
}

/// A client with read and write timeouts.
#[track_caller]
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Deterministic, non-repeating-looking test bytes.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Reads exactly `n` bytes.
#[track_caller]
pub fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    s.read_exact(&mut buf).expect("read_exact");
    buf
}

/// Reads until EOF; errors (e.g. reset) end the read too and are returned.
pub fn read_to_end(s: &mut TcpStream) -> (Vec<u8>, Option<std::io::Error>) {
    let mut out = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (out, None),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return (out, Some(e)),
        }
    }
}

/// Writes `data` from a thread while the caller reads, so neither side's
/// socket buffer can deadlock the test.
pub fn echo_round_trip(s: &TcpStream, data: &[u8]) -> Vec<u8> {
    let mut writer = s.try_clone().unwrap();
    let to_send = data.to_vec();
    let t = std::thread::spawn(move || writer.write_all(&to_send).expect("write"));
    let mut reader = s.try_clone().unwrap();
    let got = read_n(&mut reader, data.len());
    t.join().unwrap();
    got
}

/// Polls `f` until it holds or `limit` passes.
#[track_caller]
pub fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}
