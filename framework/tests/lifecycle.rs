//! Connection lifecycle: half-close, resets, idle timeout, limits, handler panics.

#[macro_use]
mod util;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use pollring::{Backend, Cx, Handler};
use util::*;

fn half_close_gets_every_byte_then_eof(backend: Backend) {
    let server = start(config(backend), |_| Echo);
    let mut s = connect(server.local_addr());
    let data = pattern(300_000, 3);
    let mut w = s.try_clone().unwrap();
    let sent = data.clone();
    let t = std::thread::spawn(move || {
        w.write_all(&sent).unwrap();
        w.shutdown(Shutdown::Write).unwrap();
    });
    let (got, err) = read_to_end(&mut s);
    t.join().unwrap();
    assert!(err.is_none(), "read ended with {err:?}");
    assert!(got == data, "got {} of {} bytes", got.len(), data.len());
    eventually(IO_TIMEOUT, "server closed its side", || server.stats().connections == 0);
}

fn client_reset_mid_stream_leaves_others_served(backend: Backend) {
    let server = start(config(backend), |_| Echo);
    let addr = server.local_addr();
    let mut keeper = connect(addr);
    for i in 0..50 {
        let mut s = connect(addr);
        s.write_all(&pattern(200_000, i)).unwrap();
        let _ = s.read(&mut [0u8; 1000]);
        // SO_LINGER 0: close sends RST with data still in flight both ways.
        socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        drop(s);
    }
    let data = pattern(50_000, 99);
    keeper.write_all(&data).unwrap();
    assert_eq!(read_n(&mut keeper, data.len()), data);
    drop(keeper);
    eventually(IO_TIMEOUT, "every reset connection released", || server.stats().connections == 0);
}

fn idle_connections_time_out(backend: Backend) {
    let server = start(config(backend).idle_timeout(Some(Duration::from_millis(300))), |_| Echo);
    let addr = server.local_addr();
    let mut idle = connect(addr);
    let mut busy = connect(addr);
    let start = Instant::now();
    // The busy one talks every 100 ms for 900 ms and must survive.
    while start.elapsed() < Duration::from_millis(900) {
        busy.write_all(b"ping").unwrap();
        assert_eq!(read_n(&mut busy, 4), b"ping");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (rest, err) = read_to_end(&mut idle);
    assert!(rest.is_empty() && err.is_none(), "idle connection should see a clean EOF");
    let closed_after = start.elapsed();
    assert!(closed_after >= Duration::from_millis(250), "closed too early: {closed_after:?}");
    busy.write_all(b"still").unwrap();
    assert_eq!(read_n(&mut busy, 5), b"still");
}

fn max_connections_refuses_extra_and_serves_the_rest(backend: Backend) {
    let server = start(config(backend).max_connections(2), |_| Echo);
    let addr = server.local_addr();
    let mut a = connect(addr);
    let mut b = connect(addr);
    a.write_all(b"a").unwrap();
    b.write_all(b"b").unwrap();
    assert_eq!(read_n(&mut a, 1), b"a");
    assert_eq!(read_n(&mut b, 1), b"b");
    let mut c = connect(addr);
    let _ = c.write_all(b"c");
    let (got, _) = read_to_end(&mut c);
    assert!(got.is_empty(), "the third connection must be refused, not served");
    a.write_all(b"still").unwrap();
    assert_eq!(read_n(&mut a, 5), b"still");
}

/// Panics when it sees a `!`, echoes otherwise.
struct Fragile;

impl Handler for Fragile {
    type Conn = ();
    type Message = ();
    fn on_open(&mut self, _cx: &mut Cx<'_>) {}
    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        if cx.input().find(0, b'!').is_some() {
            panic!("test handler asked to panic");
        }
        let n = cx.input().len();
        cx.forward(n);
    }
}

fn handler_panic_closes_only_that_connection(backend: Backend) {
    let server = start(config(backend), |_| Fragile);
    let addr = server.local_addr();
    let mut good = connect(addr);
    let mut bad = connect(addr);
    good.write_all(b"hello").unwrap();
    assert_eq!(read_n(&mut good, 5), b"hello");
    let baseline = server.stats().pool_in_use;
    bad.write_all(b"boom!").unwrap();
    let (got, _) = read_to_end(&mut bad);
    assert!(got.is_empty(), "the panicking connection is closed without output");
    good.write_all(b"after").unwrap();
    assert_eq!(read_n(&mut good, 5), b"after");
    eventually(IO_TIMEOUT, "no buffer leaked by the panic", || {
        let s = server.stats();
        s.connections == 1 && s.pool_in_use <= baseline
    });
}

/// Answers the first byte with 1 MiB and closes, whatever else arrives.
struct AnswerAndClose;

impl Handler for AnswerAndClose {
    type Conn = bool;
    type Message = ();
    fn on_open(&mut self, _cx: &mut Cx<'_>) -> bool {
        false
    }
    fn on_data(&mut self, answered: &mut bool, cx: &mut Cx<'_>) {
        if !*answered && !cx.input().is_empty() {
            *answered = true;
            cx.write(&pattern(1 << 20, 21));
            cx.close();
        }
    }
}

fn close_while_the_peer_still_sends_loses_no_response(backend: Backend) {
    let server = start(config(backend), |_| AnswerAndClose);
    let mut s = connect(server.local_addr());
    // Keep sending while the server answers and closes: without a lingering
    // close, its unread input would make the kernel reset the connection
    // and the tail of the answer would be lost.
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b'x'; 16 * 1024];
        for _ in 0..200 {
            if w.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = w.shutdown(Shutdown::Write);
    });
    let (got, err) = read_to_end(&mut s);
    writer.join().unwrap();
    assert!(
        err.is_none(),
        "the answer must end in a clean EOF, got {err:?} after {} bytes",
        got.len()
    );
    assert_eq!(got.len(), 1 << 20);
    assert!(got == pattern(1 << 20, 21));
    eventually(IO_TIMEOUT, "connection released", || server.stats().connections == 0);
}

on_both_backends!(
    close_while_the_peer_still_sends_loses_no_response,
    half_close_gets_every_byte_then_eof,
    client_reset_mid_stream_leaves_others_served,
    idle_connections_time_out,
    max_connections_refuses_extra_and_serves_the_rest,
    handler_panic_closes_only_that_connection,
);
