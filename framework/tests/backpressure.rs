//! A peer that does not read: its buffered output stays bounded, and every
//! byte still arrives once it reads.

#[macro_use]
mod util;

use std::io::Write;
use std::time::Duration;

use pollring::{Backend, Cx, Handler};
use util::*;

const HIGH: usize = 256 * 1024;
const LOW: usize = 64 * 1024;
const BUF: usize = 16 * 1024;
/// Buffers one connection can receive in one turn.
const PER_TURN: usize = 16;

fn slow_reader_stays_under_the_high_water_mark(backend: Backend) {
    // Per turn, epoll receives at most `recv_budget` buffers per connection
    // and io_uring at most what its buffer ring holds (refilled once per
    // turn): the pause can lag the mark by one such batch.
    let mut epoll = pollring::EpollConfig::default();
    epoll.recv_budget = PER_TURN;
    let mut uring = pollring::UringConfig::default();
    uring.buf_ring_entries = PER_TURN as u32;
    let server = start(
        config(backend).buf_size(BUF).high_water(HIGH).low_water(LOW).epoll(epoll).uring(uring),
        |_| Echo,
    );
    let s = connect(server.local_addr());
    let data = pattern(16 << 20, 5);
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&sent).expect("writer"));
    // Do not read for a while: the server must stop receiving, not buffer.
    std::thread::sleep(Duration::from_millis(700));
    let stalled = server.stats();
    let bound = HIGH + PER_TURN * BUF;
    assert!(
        stalled.buffered_peak <= bound,
        "buffered {} bytes for one connection, bound {bound}",
        stalled.buffered_peak
    );
    let mut r = s.try_clone().unwrap();
    let got = read_n(&mut r, data.len());
    writer.join().unwrap();
    assert!(got == data, "every byte arrives after the stall, in order");
    let end = server.stats();
    assert!(end.buffered_peak <= bound, "peak {} over {bound} while draining", end.buffered_peak);
}

/// Echoes complete lines; a partial line stays unconsumed until its `\n`.
struct LineEcho;

impl Handler for LineEcho {
    type Conn = ();
    fn on_open(&mut self, _cx: &mut Cx<'_>) {}
    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        while let Some(end) = cx.input().find(0, b'\n') {
            cx.forward(end + 1);
        }
    }
}

/// A peer that sends a frame without end is closed at `max_input`, before it
/// can take its worker's pool; other connections are served throughout.
fn unconsumed_input_is_capped(backend: Backend) {
    const CAP: usize = 64 * 1024;
    let server = start(config(backend).max_input(Some(CAP)), |_| LineEcho);
    let addr = server.local_addr();
    let mut good = connect(addr);
    good.write_all(b"hi\n").unwrap();
    assert_eq!(read_n(&mut good, 3), b"hi\n");
    std::thread::sleep(Duration::from_millis(50));
    let pool_before = server.stats().pool_in_use;
    let mut hog = connect(addr);
    let mut w = hog.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 16 * 1024];
        for _ in 0..64 {
            if w.write_all(&chunk).is_err() {
                return;
            }
        }
    });
    let (got, err) = read_to_end(&mut hog);
    assert!(got.is_empty(), "the line never ended: nothing to echo");
    let kind = err.map(|e| e.kind());
    assert!(
        !matches!(kind, Some(std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "the hog must be closed (EOF or reset), not left waiting: {kind:?}"
    );
    writer.join().unwrap();
    good.write_all(b"still\n").unwrap();
    assert_eq!(read_n(&mut good, 6), b"still\n");
    eventually(IO_TIMEOUT, "the hog's buffers back in the pool", || {
        let s = server.stats();
        s.connections == 1 && s.pool_in_use <= pool_before
    });
}

on_both_backends!(slow_reader_stays_under_the_high_water_mark, unconsumed_input_is_capped);
