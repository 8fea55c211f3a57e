//! `Cx::writer`: a message of any size serialised straight into the output's
//! pool buffers through `std::io::Write`, byte-exact across buffer
//! boundaries; an exhausted pool fails the write and closes only that
//! connection; after `shutdown_write` writes are dropped.

#[macro_use]
mod util;

use std::io::{ErrorKind, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pollring::{Backend, CloseReason, Cx, EpollConfig, Handler, UringConfig};
use util::*;

const BUF_SIZE: usize = 1024;

/// What the handler saw, for the test to check.
#[derive(Debug, Default)]
struct Seen {
    /// The error kind of every failed `io::Write` call.
    write_errors: Vec<ErrorKind>,
    closes: Vec<CloseReason>,
}

/// Answers each request line:
/// - `N SEED`: a header `N SEED\n` written with `write!`, then `pattern(N,
///   SEED)` in pieces of 1, 7, 300 and 2000 bytes, alternating `write_all`
///   and `put`, then `put_with` for a final `.\n`;
/// - `fin`: `shutdown_write`, then a write that must be dropped.
struct Serialiser {
    seen: Arc<Mutex<Seen>>,
}

fn answer(cx: &mut Cx<'_>, len: usize, seed: u64, seen: &Mutex<Seen>) {
    let body = pattern(len, seed);
    let mut out = cx.writer();
    let result = (|| -> std::io::Result<()> {
        writeln!(out, "{len} {seed}")?;
        let mut rest = &body[..];
        for (i, size) in [1, 7, 300, 2000].into_iter().cycle().enumerate() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at(size.min(rest.len()));
            if i % 2 == 0 {
                out.write_all(piece)?;
            } else {
                out.put(piece);
            }
            rest = tail;
        }
        let n = out.put_with(|room| {
            let n = room.len().min(2);
            room[..n].copy_from_slice(&b".\n"[..n]);
            n
        });
        if n < 2 {
            out.write_all(&b".\n"[n..])?;
        }
        assert_eq!(out.written(), format!("{len} {seed}\n").len() + len + 2);
        Ok(())
    })();
    if let Err(e) = result {
        seen.lock().unwrap().write_errors.push(e.kind());
    }
}

impl Handler for Serialiser {
    type Conn = ();
    type Message = ();

    fn on_open(&mut self, _cx: &mut Cx<'_>) {}

    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        while let Some(end) = cx.input().find(0, b'\n') {
            let line = String::from_utf8(cx.input().peek(end).unwrap().to_vec()).unwrap();
            cx.consume(end + 1);
            if line == "fin" {
                cx.shutdown_write();
                let mut out = cx.writer();
                assert!(!out.is_open(), "a writer after shutdown_write discards");
                out.write_all(b"dropped\n").unwrap();
                assert_eq!(out.written(), 0);
                continue;
            }
            let (len, seed) = line.split_once(' ').unwrap();
            answer(cx, len.parse().unwrap(), seed.parse().unwrap(), &self.seen);
        }
    }

    fn on_close(&mut self, _conn: (), _cx: &mut Cx<'_>, reason: CloseReason) {
        self.seen.lock().unwrap().closes.push(reason);
    }
}

fn expected(len: usize, seed: u64) -> Vec<u8> {
    [format!("{len} {seed}\n").into_bytes(), pattern(len, seed), b".\n".to_vec()].concat()
}

fn serve(backend: Backend, buf_count: u32) -> (pollring::ServerHandle, Arc<Mutex<Seen>>) {
    let mut uring = UringConfig::default();
    uring.buf_ring_entries = 16;
    uring.recv_reserve = 8;
    let mut epoll = EpollConfig::default();
    epoll.recv_reserve = 8;
    let seen = Arc::new(Mutex::new(Seen::default()));
    let factory_seen = seen.clone();
    let server = start(
        config(backend).buf_size(BUF_SIZE).buf_count(buf_count).uring(uring).epoll(epoll),
        move |_| Serialiser { seen: factory_seen.clone() },
    );
    (server, seen)
}

/// Messages from 0 bytes to 40 pool buffers, several per request batch,
/// arrive byte-exact: writes that straddle buffer boundaries lose nothing.
fn writes_span_pool_buffers_byte_exact(backend: Backend) {
    let (server, seen) = serve(backend, 256);
    let mut c = connect(server.local_addr());
    let sizes = [0, 1, BUF_SIZE - 8, BUF_SIZE, BUF_SIZE + 1, 5 * BUF_SIZE + 3, 40 * BUF_SIZE];
    let mut want = Vec::new();
    let mut ask = String::new();
    for (seed, &len) in sizes.iter().enumerate() {
        ask.push_str(&format!("{len} {seed}\n"));
        want.extend(expected(len, seed as u64));
    }
    c.write_all(ask.as_bytes()).unwrap();
    let got = read_n(&mut c, want.len());
    assert!(got == want, "the serialised answers differ from what was written");
    let seen = seen.lock().unwrap();
    assert!(seen.write_errors.is_empty(), "write errors: {:?}", seen.write_errors);
}

/// With a 64-buffer pool, a 1 MiB answer fails as an `io::Write` with
/// `OutOfMemory` and closes that connection with `PoolExhausted`; another
/// connection is served after it.
fn an_exhausted_pool_fails_the_write_and_closes_only_that_connection(backend: Backend) {
    let (server, seen) = serve(backend, 64);
    let mut greedy = connect(server.local_addr());
    greedy.write_all(format!("{} 9\n", 1024 * 1024).as_bytes()).unwrap();
    let (got, _) = read_to_end(&mut greedy);
    assert!(got.len() < 1024 * 1024, "the answer cannot have fitted the pool");
    eventually(IO_TIMEOUT, "the greedy connection closes", || {
        !seen.lock().unwrap().closes.is_empty()
    });
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.closes, [CloseReason::PoolExhausted]);
        assert_eq!(seen.write_errors, [ErrorKind::OutOfMemory]);
    }
    let mut other = connect(server.local_addr());
    other.write_all(b"3000 4\n").unwrap();
    assert!(read_n(&mut other, expected(3000, 4).len()) == expected(3000, 4));
}

/// After `shutdown_write` the writer discards: the peer reads what came
/// before, then EOF.
fn a_writer_after_shutdown_write_discards(backend: Backend) {
    let (server, _seen) = serve(backend, 256);
    let mut c = connect(server.local_addr());
    c.write_all(b"10 1\nfin\n").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).unwrap();
    assert_eq!(got, expected(10, 1));
}

/// Answers each line with the line reversed and repeated three times,
/// through `Cx::reply_to`: the request read where it lies while the reply
/// fills fresh pool buffers.
struct Reverser;

impl Handler for Reverser {
    type Conn = ();
    type Message = ();

    fn on_open(&mut self, _cx: &mut Cx<'_>) {}

    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        while let Some(end) = cx.input().find(0, b'\n') {
            let len = cx.reply_to(end + 1, |line, out| {
                let reversed: Vec<u8> = line[..end].iter().rev().copied().collect();
                for _ in 0..3 {
                    out.put(&reversed);
                }
                out.put(b"\n");
                line.len()
            });
            assert_eq!(len, Some(end + 1));
        }
        let n = cx.input().len();
        assert!(cx.reply_to(n + 1, |_, _| ()).is_none(), "no request past the input");
    }
}

fn reversed3(line: &[u8]) -> Vec<u8> {
    let r: Vec<u8> = line.iter().rev().copied().collect();
    [&r[..], &r, &r, b"\n"].concat()
}

/// Lines from 1 byte to several pool buffers, pipelined: each reply is the
/// line read in place (or copied once when it spans buffers), byte-exact.
fn reply_to_reads_requests_while_replies_fill_buffers(backend: Backend) {
    let mut uring = UringConfig::default();
    uring.buf_ring_entries = 16;
    let server =
        start(config(backend).buf_size(BUF_SIZE).buf_count(256).uring(uring), |_| Reverser);
    let mut c = connect(server.local_addr());
    let lines: Vec<Vec<u8>> = [1, 10, BUF_SIZE - 1, BUF_SIZE + 5, 3 * BUF_SIZE + 7]
        .iter()
        .enumerate()
        .map(|(i, &len)| pattern(len, i as u64).iter().map(|b| b'a' + b % 26).collect())
        .collect();
    let mut ask = Vec::new();
    let mut want = Vec::new();
    for line in &lines {
        ask.extend_from_slice(line);
        ask.push(b'\n');
        want.extend(reversed3(line));
    }
    c.write_all(&ask).unwrap();
    assert!(read_n(&mut c, want.len()) == want, "replies differ from the reversed requests");
}

on_both_backends!(
    reply_to_reads_requests_while_replies_fill_buffers,
    writes_span_pool_buffers_byte_exact,
    an_exhausted_pool_fails_the_write_and_closes_only_that_connection,
    a_writer_after_shutdown_write_discards
);
