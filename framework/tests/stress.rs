//! Many connections at once against deliberately tiny buffer resources.

#[macro_use]
mod util;

use std::io::Write;

use pollring::{Backend, EpollConfig, UringConfig};
use util::*;

const CONNS_PER_THREAD: usize = 50;
const THREADS: usize = 20;
const PAYLOAD: usize = 8 * 1024;

/// 1,000 connections send 8 KiB each at the same moment into a pool of 256
/// buffers of 512 bytes (io_uring: a buffer ring of 16 entries), so receives
/// run out of buffers again and again. Every byte must come back, in order.
fn thousand_connections_into_a_tiny_pool(backend: Backend) {
    let mut uring = UringConfig::default();
    uring.buf_ring_entries = 16;
    uring.recv_reserve = 16;
    let mut epoll = EpollConfig::default();
    epoll.recv_reserve = 16;
    let server =
        start(config(backend).buf_size(512).buf_count(256).uring(uring).epoll(epoll), |_| Echo);
    let addr = server.local_addr();
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                let mut conns: Vec<_> = (0..CONNS_PER_THREAD).map(|_| connect(addr)).collect();
                let data: Vec<Vec<u8>> = (0..CONNS_PER_THREAD)
                    .map(|i| pattern(PAYLOAD, (t * 1000 + i) as u64))
                    .collect();
                barrier.wait();
                for (c, d) in conns.iter_mut().zip(&data) {
                    c.write_all(d).unwrap();
                }
                for (i, (c, d)) in conns.iter_mut().zip(&data).enumerate() {
                    assert!(read_n(c, PAYLOAD) == *d, "thread {t} connection {i} differs");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    eventually(IO_TIMEOUT, "all closed, pool back", || server.stats().connections == 0);
}

on_both_backends!(thousand_connections_into_a_tiny_pool);
