//! The chat room over two workers: lines reach every other member on either
//! worker verbatim and never the sender, partial lines wait for their
//! newline, members leave cleanly, over-long lines close only their
//! connection, and a tiny mailbox delays lines without losing them.

#[macro_use]
mod util;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pollring::{
    Backend, CloseReason, ConfigBuilder, ConnId, ConnectError, Cx, Handler, ServerHandle, WorkerCx,
    WorkerId,
};
use pollring_examples::chat::{Chat, ChatCounters, MAX_LINE};
use util::*;

/// Which worker each client landed on, by the client's address.
type Placement = Arc<Mutex<HashMap<SocketAddr, WorkerId>>>;

/// Wraps a handler and records the worker of every accepted connection,
/// so a test can pick members on different workers (`SO_REUSEPORT`
/// spreads clients by a hash the test does not control).
struct Placed<H> {
    inner: H,
    placement: Placement,
}

impl<H: Handler> Handler for Placed<H> {
    type Conn = H::Conn;
    type Message = H::Message;

    fn on_open(&mut self, cx: &mut Cx<'_, H::Message>) -> H::Conn {
        let conn = self.inner.on_open(cx);
        if let Some(peer) = cx.peer_addr() {
            self.placement.lock().unwrap().insert(peer, cx.worker());
        }
        conn
    }
    fn on_data(&mut self, conn: &mut H::Conn, cx: &mut Cx<'_, H::Message>) {
        self.inner.on_data(conn, cx)
    }
    fn on_drained(&mut self, conn: &mut H::Conn, cx: &mut Cx<'_, H::Message>) {
        self.inner.on_drained(conn, cx)
    }
    fn on_timer(&mut self, conn: &mut H::Conn, cx: &mut Cx<'_, H::Message>) {
        self.inner.on_timer(conn, cx)
    }
    fn on_message(&mut self, conn: &mut H::Conn, cx: &mut Cx<'_, H::Message>, msg: H::Message) {
        self.inner.on_message(conn, cx, msg)
    }
    fn on_worker_message(&mut self, cx: &mut WorkerCx<'_, H::Message>, msg: H::Message) {
        self.inner.on_worker_message(cx, msg)
    }
    fn on_connect_error(
        &mut self,
        cx: &mut WorkerCx<'_, H::Message>,
        id: ConnId,
        opener: Option<ConnId>,
        error: ConnectError,
    ) {
        self.inner.on_connect_error(cx, id, opener, error)
    }
    fn on_close(&mut self, conn: H::Conn, cx: &mut Cx<'_, H::Message>, reason: CloseReason) {
        self.inner.on_close(conn, cx, reason)
    }
    fn on_tick(&mut self, cx: &mut WorkerCx<'_, H::Message>) -> Option<Duration> {
        self.inner.on_tick(cx)
    }
}

/// A chat server on two workers, its counters and where clients landed.
struct Room {
    server: ServerHandle,
    counters: Arc<ChatCounters>,
    placement: Placement,
}

impl Room {
    fn start(config: ConfigBuilder) -> Room {
        let counters = Arc::new(ChatCounters::default());
        let placement = Placement::default();
        let (c, p) = (counters.clone(), placement.clone());
        let server = start(config.workers(2), move |_| Placed {
            inner: Chat::new(c.clone()),
            placement: p.clone(),
        });
        Room { server, counters, placement }
    }

    /// Members on the workers named, in that order (`[0, 1, 1]`: one on
    /// worker 0, two on worker 1): connects until each worker has enough,
    /// closes the extra clients again, and returns once the server counts
    /// exactly these members.
    fn members(&self, workers: &[usize]) -> Vec<TcpStream> {
        let wanted = |w: usize| workers.iter().filter(|&&x| x == w).count();
        let mut by_worker: [Vec<TcpStream>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..500 {
            if (0..2).all(|w| by_worker[w].len() >= wanted(w)) {
                break;
            }
            let client = connect(self.server.local_addr());
            let me = client.local_addr().unwrap();
            let mut worker = None;
            eventually(Duration::from_secs(10), "the member joins", || {
                worker = self.placement.lock().unwrap().get(&me).copied();
                worker.is_some()
            });
            by_worker[worker.unwrap().0].push(client);
        }
        assert!((0..2).all(|w| by_worker[w].len() >= wanted(w)), "500 clients, one worker");
        let members: Vec<TcpStream> = workers.iter().map(|&w| by_worker[w].remove(0)).collect();
        drop(by_worker); // the extra clients leave
        eventually(Duration::from_secs(10), "only the chosen members remain", || {
            self.server.stats().connections == workers.len()
        });
        members
    }
}

/// Asserts nothing arrives on `s` for a while.
#[track_caller]
fn assert_silent(s: &mut TcpStream) {
    s.set_read_timeout(Some(Duration::from_millis(150))).unwrap();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => panic!("unexpected EOF"),
            Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("read: {e}"),
        }
    }
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
}

#[track_caller]
fn send(s: &mut TcpStream, data: &[u8]) {
    s.write_all(data).expect("write");
}

#[track_caller]
fn expect(s: &mut TcpStream, data: &[u8]) {
    let got = read_n(s, data.len());
    assert_eq!(String::from_utf8_lossy(&got), String::from_utf8_lossy(data));
}

fn a_line_reaches_every_other_member(backend: Backend) {
    let room = Room::start(config(backend));
    let mut m = room.members(&[0, 1, 1]);
    let [a, b, c] = &mut m[..] else { unreachable!() };
    send(a, b"hello from a\n");
    expect(b, b"hello from a\n");
    expect(c, b"hello from a\n");
    send(b, b"from b \xff\x00 bytes as they are\r\n");
    expect(a, b"from b \xff\x00 bytes as they are\r\n");
    expect(c, b"from b \xff\x00 bytes as they are\r\n");
    // Several lines in one write, and an empty line.
    send(c, b"one\ntwo\n\nthree\n");
    for member in [&mut *a, &mut *b] {
        expect(member, b"one\ntwo\n\nthree\n");
    }
    // Nobody got their own lines back (they would have arrived before the
    // lines read above, or by now).
    for member in [a, b, c] {
        assert_silent(member);
    }
    assert_eq!((room.counters.delayed(), room.counters.dropped()), (0, 0));
}

fn a_partial_line_waits_for_its_newline(backend: Backend) {
    let room = Room::start(config(backend));
    let mut m = room.members(&[0, 1, 0]);
    let [a, b, c] = &mut m[..] else { unreachable!() };
    send(a, b"hel");
    assert_silent(b);
    assert_silent(c);
    // Another member's whole line overtakes the partial one, which is not
    // cut into.
    send(b, b"meanwhile\n");
    expect(c, b"meanwhile\n");
    send(a, b"l");
    send(a, b"o, world\nand a sec");
    expect(b, b"hello, world\n");
    expect(c, b"hello, world\n");
    assert_silent(c);
    send(a, b"ond\n");
    expect(c, b"and a second\n");
    expect(a, b"meanwhile\n");
    assert_silent(a);
}

fn a_member_that_leaves_stops_receiving(backend: Backend) {
    let room = Room::start(config(backend));
    let mut m = room.members(&[0, 1, 0]);
    let mut c = m.pop().unwrap();
    let [a, b] = &mut m[..] else { unreachable!() };
    // c leaves: its FIN ends its membership, and the server closes it
    // without sending it anything more.
    send(&mut c, b"bye\n");
    c.shutdown(Shutdown::Write).unwrap();
    let (rest, error) = read_to_end(&mut c);
    assert!(error.is_none() && rest.is_empty(), "{rest:?} {error:?}");
    expect(a, b"bye\n");
    expect(b, b"bye\n");
    eventually(Duration::from_secs(10), "c is gone", || room.server.stats().connections == 2);
    send(a, b"still here?\n");
    expect(b, b"still here?\n");
    send(b, b"yes\n");
    expect(a, b"yes\n");
    // A member that vanishes with a reset does not disturb the others
    // (closing a socket with unread input sends RST).
    let d = connect(room.server.local_addr());
    eventually(Duration::from_secs(10), "d joins", || room.server.stats().connections == 3);
    send(a, b"to all three\n");
    expect(b, b"to all three\n");
    let mut byte = [0u8; 1];
    while d.peek(&mut byte).map_or(true, |n| n == 0) {}
    drop(d);
    send(b, b"after the reset\n");
    expect(a, b"after the reset\n");
    assert_silent(a);
    assert_silent(b);
}

fn an_over_long_line_closes_only_its_connection(backend: Backend) {
    let room = Room::start(config(backend));
    let mut m = room.members(&[1, 0, 1]);
    let [a, b, c] = &mut m[..] else { unreachable!() };
    // Exactly the limit, newline included: delivered.
    let mut longest = pattern(MAX_LINE - 1, 7);
    longest.iter_mut().filter(|b| **b == b'\n').for_each(|b| *b = b'.');
    longest.push(b'\n');
    let reader = {
        let mut b = b.try_clone().unwrap();
        let n = longest.len();
        std::thread::spawn(move || read_n(&mut b, n))
    };
    send(a, &longest);
    assert!(reader.join().unwrap() == longest, "the longest line arrived changed");
    expect(c, &longest);
    // One byte more, without a newline yet: the sender is disconnected.
    send(c, &vec![b'x'; MAX_LINE + 1]);
    let (_, _) = read_to_end(c); // EOF or reset, promptly
    let _ = c.shutdown(Shutdown::Write); // the server need not linger
    eventually(Duration::from_secs(10), "c is closed", || room.server.stats().connections == 2);
    assert_silent(a);
    send(b, b"the others go on\n");
    expect(a, b"the others go on\n");
}

fn a_full_mailbox_delays_lines_without_losing_them(backend: Backend) {
    // A mailbox of one message: lines from worker 0 for worker 1 find it
    // full whenever worker 1 has not caught up, and wait in a backlog.
    let room = Room::start(config(backend).mailbox_capacity(1));
    let mut m = room.members(&[1, 0, 0, 0]);
    let mut b = m.remove(0);
    // Until a mailbox was found full at least once (a few rounds at most).
    for round in 0..20 {
        // Three senders on worker 0, each sending 1000 numbered lines.
        const LINES: usize = 1000;
        let threads: Vec<_> = m
            .iter()
            .enumerate()
            .map(|(s, stream)| {
                let mut stream = stream.try_clone().unwrap();
                std::thread::spawn(move || {
                    for chunk in (0..LINES).collect::<Vec<_>>().chunks(10) {
                        let text: String = chunk.iter().map(|i| format!("{s}:{i}\n")).collect();
                        stream.write_all(text.as_bytes()).expect("write");
                    }
                })
            })
            .collect();
        // b, on worker 1, receives every line once, each sender's in order.
        let total: usize = (0..m.len())
            .map(|s| (0..LINES).map(|i| format!("{s}:{i}\n").len()).sum::<usize>())
            .sum();
        let got = String::from_utf8(read_n(&mut b, total)).unwrap();
        for t in threads {
            t.join().unwrap();
        }
        let mut next = vec![0; m.len()];
        for line in got.lines() {
            let (s, i) = line.split_once(':').expect("s:i");
            let (s, i): (usize, usize) = (s.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[s], "sender {s}'s lines out of order");
            next[s] += 1;
        }
        assert_eq!(room.counters.dropped(), 0);
        if room.counters.delayed() > 0 {
            eprintln!("round {round}: {} messages delayed", room.counters.delayed());
            return;
        }
    }
    panic!("the mailbox of one message was never full: the retry path went untested");
}

on_both_backends!(
    a_line_reaches_every_other_member,
    a_partial_line_waits_for_its_newline,
    a_member_that_leaves_stops_receiving,
    an_over_long_line_closes_only_its_connection,
    a_full_mailbox_delays_lines_without_losing_them,
);
