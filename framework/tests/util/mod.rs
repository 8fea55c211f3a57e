//! Test helpers: `pollring::testing` (feature `test-util`: the backend
//! macro, server start-up, clients with time-outs), plus the handlers these
//! tests share.

#![allow(dead_code)]

#[allow(unused_imports)] // not every test file emits backend pairs
pub use pollring::on_both_backends;
pub use pollring::testing::*;

use pollring::{Cx, Handler};

/// Echoes every byte back, zero-copy.
#[derive(Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    type Conn = ();
    type Message = ();
    fn on_open(&mut self, _cx: &mut Cx<'_>) {}
    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        let n = cx.input().len();
        cx.forward(n);
    }
}

/// Echoes by copying (`write`) instead of forwarding, to cover that path.
#[derive(Debug, Default)]
pub struct CopyEcho;

impl Handler for CopyEcho {
    type Conn = ();
    type Message = ();
    fn on_open(&mut self, _cx: &mut Cx<'_>) {}
    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        let data = cx.input().contiguous().to_vec();
        cx.consume(data.len());
        cx.write(&data);
    }
}

/// Asserts that nothing (no byte, no EOF) arrives on `s` for `quiet`.
#[track_caller]
pub fn assert_silent(s: &mut std::net::TcpStream, quiet: std::time::Duration, what: &str) {
    use std::io::Read;
    s.set_read_timeout(Some(quiet)).unwrap();
    let mut buf = [0u8; 4096];
    let got = s.read(&mut buf);
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    match got {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        Ok(0) => panic!("{what}: expected silence, got EOF"),
        Ok(n) => {
            let shown = String::from_utf8_lossy(&buf[..n.min(120)]).into_owned();
            panic!("{what}: expected silence, got {n} bytes: {shown:?}…")
        }
        Err(e) => panic!("{what}: expected silence, got {e}"),
    }
}

/// Reads one line, `\n` included (byte by byte: small lines only).
#[track_caller]
pub fn read_line(s: &mut std::net::TcpStream) -> String {
    use std::io::Read;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.last() != Some(&b'\n') {
        match s.read(&mut byte) {
            Ok(0) => panic!("EOF after {:?}", String::from_utf8_lossy(&line)),
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("reading a line: {e} after {:?}", String::from_utf8_lossy(&line)),
        }
    }
    String::from_utf8(line).expect("utf-8 line")
}

/// The next report from a server's handler, or a failure after [`IO_TIMEOUT`].
#[track_caller]
pub fn next<T>(rx: &std::sync::mpsc::Receiver<T>) -> T {
    rx.recv_timeout(IO_TIMEOUT).expect("a report from the handler")
}

/// A value that counts its drops: shows a message or result was dropped,
/// not leaked, when no callback received it.
#[derive(Debug)]
pub struct Tracked {
    pub value: u64,
    drops: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Tracked {
    pub fn new(value: u64, drops: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Tracked {
        Tracked { value, drops: drops.clone() }
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.drops.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}
