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
    type Message = ();
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

/// Echoes complete lines, and at the peer's EOF whatever is left.
struct LinesThenRest;

impl Handler for LinesThenRest {
    type Conn = ();
    type Message = ();
    fn on_open(&mut self, _cx: &mut Cx<'_>) {}
    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        while let Some(end) = cx.input().find(0, b'\n') {
            cx.forward(end + 1);
        }
        if cx.is_read_closed() {
            let rest = cx.input().len();
            cx.forward(rest);
        }
    }
}

/// Many peers that each send a byte or two of a frame and stop cannot pin
/// the pool (one whole buffer each) and starve everyone's receives: once
/// the pool runs low their partial frames move off it. Not a byte is lost:
/// each frame completes later, by more bytes or by EOF, byte-exact.
fn partial_frames_do_not_pin_the_pool(backend: Backend) {
    const BUFS: u32 = 512;
    const HOGS: usize = 600; // more than the pool has buffers
    let server =
        start(config(backend).buf_count(BUFS).read_timeout(Some(Duration::from_secs(60))), |_| {
            LinesThenRest
        });
    let addr = server.local_addr();
    let baseline = server.stats().pool_in_use;
    let mut hogs: Vec<_> = (0..HOGS)
        .map(|i| {
            let mut s = connect(addr);
            s.write_all(format!("{i}-").as_bytes()).unwrap();
            s
        })
        .collect();
    eventually(IO_TIMEOUT, "every partial frame received", || server.stats().connections == HOGS);
    std::thread::sleep(Duration::from_millis(200));

    // Another peer is served at once, not after the hogs' read timeouts.
    let mut good = connect(addr);
    let asked = std::time::Instant::now();
    good.write_all(b"hello\n").unwrap();
    assert_eq!(read_n(&mut good, 6), b"hello\n");
    assert!(asked.elapsed() < Duration::from_secs(2), "served after {:?}", asked.elapsed());

    // Every parked frame completes, byte-exact: half by more bytes, half by EOF.
    for (i, s) in hogs.iter_mut().enumerate() {
        if i % 2 == 0 {
            s.write_all(b"tail\n").unwrap();
        } else {
            s.write_all(b"tail").unwrap();
            s.shutdown(std::net::Shutdown::Write).unwrap();
        }
    }
    for (i, s) in hogs.iter_mut().enumerate() {
        let want = if i % 2 == 0 { format!("{i}-tail\n") } else { format!("{i}-tail") };
        assert_eq!(read_n(s, want.len()), want.as_bytes(), "hog {i}");
    }
    drop(hogs);
    drop(good);
    eventually(IO_TIMEOUT, "every buffer back", || {
        let s = server.stats();
        s.connections == 0 && s.pool_in_use <= baseline
    });
}

on_both_backends!(
    slow_reader_stays_under_the_high_water_mark,
    unconsumed_input_is_capped,
    partial_frames_do_not_pin_the_pool,
);
