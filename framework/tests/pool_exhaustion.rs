//! A write that finds the worker's buffer pool empty closes only the
//! connection that wrote, with `CloseReason::PoolExhausted` (see
//! `Cx::write`); the worker's other connections keep being served, and every
//! buffer the greedy write took comes back to the pool.

#[macro_use]
mod util;

use std::io::{ErrorKind, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pollring::{Backend, CloseReason, Cx, EpollConfig, Handler, ServerHandle, UringConfig};
use util::*;

const BUF_SIZE: usize = 1024;
const BUF_COUNT: u32 = 64;
/// What the greedy connection writes in one call: sixteen times the whole
/// pool, so it runs dry whatever else holds buffers.
const FLOOD: usize = 16 * BUF_SIZE * BUF_COUNT as usize;
/// The first byte of the connection that asks for the flood; echo clients
/// begin their messages with anything else.
const FLOOD_REQUEST: u8 = b'!';
/// Connections echoing before and after the flood.
const ECHOERS: usize = 3;
/// Bytes each echo round sends per connection: a few pool buffers.
const ECHO_LEN: usize = 4 * BUF_SIZE + 17;

/// What a connection turned out to be, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Unknown,
    Echo,
    Flood,
}

/// Every close as (was it the flooding connection, reason).
type Closes = Arc<Mutex<Vec<(bool, CloseReason)>>>;

/// Echoes by copying (`Cx::write`, so each echo needs fresh pool buffers),
/// except on a connection whose first byte is [`FLOOD_REQUEST`]: that one is
/// answered with [`FLOOD`] bytes in a single `write`. Reports every close.
struct Greedy {
    closes: Closes,
}

impl Handler for Greedy {
    type Conn = Role;
    type Message = ();

    fn on_open(&mut self, _cx: &mut Cx<'_>) -> Role {
        Role::Unknown
    }

    fn on_data(&mut self, role: &mut Role, cx: &mut Cx<'_>) {
        // The call at EOF comes with no input: nothing to answer.
        let Some(&first) = cx.input().first().first() else { return };
        if *role == Role::Unknown {
            *role = if first == FLOOD_REQUEST { Role::Flood } else { Role::Echo };
        }
        let data = cx.input().contiguous().to_vec();
        cx.consume(data.len());
        match role {
            Role::Flood => cx.write(&vec![b'x'; FLOOD]),
            _ => cx.write(&data),
        }
    }

    fn on_close(&mut self, role: Role, _cx: &mut Cx<'_>, reason: CloseReason) {
        self.closes.lock().unwrap().push((role == Role::Flood, reason));
    }
}

/// A message for echo connection `i`: never begins with [`FLOOD_REQUEST`].
fn message(i: usize, round: &str) -> Vec<u8> {
    [format!("{round} {i}:").as_bytes(), &pattern(ECHO_LEN, i as u64)].concat()
}

/// Each connection sends its message and must get it back byte for byte.
#[track_caller]
fn echo_round(conns: &mut [TcpStream], round: &str) {
    for (i, c) in conns.iter_mut().enumerate() {
        let msg = message(i, round);
        c.write_all(&msg).unwrap();
        assert!(read_n(c, msg.len()) == msg, "{round}: connection {i} echoed different bytes");
    }
}

/// The pool's buffers in use once the idle server has stopped changing
/// the count (five equal readings in a row).
fn settled_pool_in_use(server: &ServerHandle) -> usize {
    let mut last = server.stats().pool_in_use;
    let mut same = 0;
    eventually(IO_TIMEOUT, "the pool's use settles", || {
        std::thread::sleep(Duration::from_millis(20));
        let now = server.stats().pool_in_use;
        same = if now == last { same + 1 } else { 0 };
        last = now;
        same >= 5
    });
    last
}

/// One worker with a 64 KiB pool (64 × 1 KiB; io_uring lends 16 of them to
/// its buffer ring); three echo connections are served, then a fourth
/// connection writes 1 MiB in one callback. It alone is closed, with
/// `PoolExhausted`; the three still echo byte-exact, no other connection is
/// closed, and the pool's use returns to what it was before.
fn a_write_into_an_empty_pool_closes_only_that_connection(backend: Backend) {
    let mut uring = UringConfig::default();
    uring.buf_ring_entries = 16;
    uring.recv_reserve = 8;
    let mut epoll = EpollConfig::default();
    epoll.recv_reserve = 8;
    let closes = Closes::default();
    let factory_closes = closes.clone();
    let server = start(
        config(backend).buf_size(BUF_SIZE).buf_count(BUF_COUNT).uring(uring).epoll(epoll),
        move |_| Greedy { closes: factory_closes.clone() },
    );
    let addr = server.local_addr();

    let mut echoers: Vec<TcpStream> = (0..ECHOERS).map(|_| connect(addr)).collect();
    echo_round(&mut echoers, "before");
    let baseline = settled_pool_in_use(&server);

    let mut greedy = connect(addr);
    greedy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    greedy.write_all(&[FLOOD_REQUEST]).unwrap();
    let (got, err) = read_to_end(&mut greedy);
    if let Some(e) = &err {
        assert!(
            !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
            "the greedy connection was not closed: read timed out after {} bytes",
            got.len()
        );
    }
    assert!(got.len() < FLOOD, "the flood cannot have been delivered: the pool never held it");
    eventually(IO_TIMEOUT, "on_close for the greedy connection", || {
        !closes.lock().unwrap().is_empty()
    });
    let closed = closes.lock().unwrap().clone();
    assert_eq!(
        closed,
        [(true, CloseReason::PoolExhausted)],
        "only the greedy connection closed, for want of buffers"
    );

    echo_round(&mut echoers, "after");
    eventually(IO_TIMEOUT, "the greedy write's buffers back in the pool", || {
        let s = server.stats();
        s.connections == ECHOERS && s.pool_in_use <= baseline
    });
    let closed = closes.lock().unwrap().clone();
    assert_eq!(closed.len(), 1, "an echo connection was closed: {closed:?}");
}

on_both_backends!(a_write_into_an_empty_pool_closes_only_that_connection);
