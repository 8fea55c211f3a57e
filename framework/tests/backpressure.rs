//! A peer that does not read: its buffered output stays bounded, and every
//! byte still arrives once it reads.

#[macro_use]
mod util;

use std::io::Write;
use std::time::Duration;

use pollring::Backend;
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

on_both_backends!(slow_reader_stays_under_the_high_water_mark);
