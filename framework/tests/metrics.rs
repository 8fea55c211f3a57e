//! `ServerHandle::metrics`: each worker's counters rise with the traffic it
//! serves: accepts, closes by reason, bytes both ways, turns and events.

#[macro_use]
mod util;

use std::io::Write;

use pollring::{Backend, CloseReason, WorkerMetrics};
use util::*;

fn one_worker(server: &pollring::ServerHandle) -> WorkerMetrics {
    let mut all = server.metrics();
    assert_eq!(all.len(), 1, "one worker");
    all.remove(0)
}

fn counters_follow_the_traffic(backend: Backend) {
    let server = start(config(backend), |_| Echo);
    let addr = server.local_addr();
    let before = one_worker(&server);
    assert_eq!((before.accepted, before.bytes_received, before.closed_total()), (0, 0, 0));

    let mut clients: Vec<_> = (0..3).map(|_| connect(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let msg = pattern(1000, i as u64);
        assert!(echo_round_trip(c, &msg) == msg);
    }
    // Two clients leave; the server sees their FIN and closes them.
    drop(clients.drain(..2));
    let mut m = one_worker(&server);
    eventually(IO_TIMEOUT, "two closes counted", || {
        m = one_worker(&server);
        m.closed_by(CloseReason::PeerClosed) == 2
    });
    assert_eq!(m.accepted, 3);
    assert_eq!(m.connections, 1);
    assert_eq!(m.closed_total(), 2, "{m:?}");
    assert_eq!(m.bytes_received, 3000);
    assert_eq!(m.bytes_sent, 3000);
    assert!(m.turns > 0 && m.events >= 3 + 3 + 2, "{m:?}");
    assert!(m.syscalls > 0, "{m:?}");
    assert!(m.buffers_free > 0, "{m:?}");

    // More traffic, higher counts.
    clients[0].write_all(&[7u8; 500]).unwrap();
    assert_eq!(read_n(&mut clients[0], 500), vec![7u8; 500]);
    eventually(IO_TIMEOUT, "the bytes counted", || {
        let later = one_worker(&server);
        later.bytes_received == 3500 && later.bytes_sent == 3500 && later.turns > m.turns
    });
}

on_both_backends!(counters_follow_the_traffic);
