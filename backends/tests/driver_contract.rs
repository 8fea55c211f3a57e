//! The `Driver` contract (see `backends/src/driver.rs`), checked the same way
//! on every driver: each test is generic over the driver and emitted once per
//! backend (`epoll::NAME`, `uring::NAME`).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::num::{NonZeroU32, NonZeroUsize};
use std::time::{Duration, Instant};

use pollring_backends::buf::{Chain, Pool};
use pollring_backends::epoll::{Epoll, EpollConfig};
use pollring_backends::uring::{Uring, UringConfig};
use pollring_backends::{net, Driver, Event, Share, Token};

const LIMIT: Duration = Duration::from_secs(20);

fn pool(buf_size: usize, count: u32) -> Box<Pool> {
    Pool::new(NonZeroUsize::new(buf_size).unwrap(), NonZeroU32::new(count).unwrap()).unwrap()
}

trait Make: Driver + Sized {
    fn make(pool: Box<Pool>) -> Self;
}

impl Make for Epoll {
    fn make(pool: Box<Pool>) -> Self {
        Epoll::new(pool, &EpollConfig::default()).expect("epoll driver")
    }
}

impl Make for Uring {
    fn make(pool: Box<Pool>) -> Self {
        Uring::new(pool, &UringConfig::default()).expect(
            "io_uring driver (set POLLRING_NO_URING=1 only where io_uring is really unavailable)",
        )
    }
}

macro_rules! on_both_drivers {
    ($($name:ident),* $(,)?) => {
        mod epoll { $( #[test] fn $name() { super::$name::<pollring_backends::epoll::Epoll>() } )* }
        mod uring {
            $(
                #[test]
                fn $name() {
                    if let Ok(v) = std::env::var("POLLRING_NO_URING") {
                        if !v.is_empty() && v != "0" {
                            eprintln!("!!! SKIPPED uring::{}: POLLRING_NO_URING={v}", stringify!($name));
                            return;
                        }
                    }
                    super::$name::<pollring_backends::uring::Uring>()
                }
            )*
        }
    };
}

/// A driver with one listener on 127.0.0.1:0. Pools must leave room beyond
/// what io_uring lends its buffer ring (1,024 buffers by default).
fn listening<D: Make>(pool: Box<Pool>) -> (D, SocketAddr) {
    let mut d = D::make(pool);
    let l = net::bind_reuseport("127.0.0.1:0".parse().unwrap(), 1, 128).unwrap().remove(0);
    let addr = l.local_addr().unwrap();
    d.listen(l.into(), Share::Alone).unwrap();
    (d, addr)
}

fn client(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(LIMIT)).unwrap();
    s
}

/// Turns until `f` says stop, with every event passed to it.
fn turn_until<D: Driver>(d: &mut D, what: &str, mut f: impl FnMut(&mut D, Event) -> bool) {
    let start = Instant::now();
    let mut events = Vec::new();
    loop {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        d.turn(Some(Duration::from_millis(50)), &mut events).unwrap();
        let mut done = false;
        for ev in events.drain(..) {
            done |= f(d, ev);
        }
        if done {
            return;
        }
    }
}

/// Accepts one connection and registers it.
fn accept_one<D: Driver>(d: &mut D) -> Token {
    let mut token = None;
    turn_until(d, "accept", |d, ev| match ev {
        Event::Accepted { fd, .. } => {
            token = Some(d.add(fd).unwrap());
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    token.unwrap()
}

fn free_event<D: Driver>(d: &mut D, ev: Event) {
    if let Event::Recv { buf, .. } = ev {
        d.pool_mut().free(buf);
    }
}

/// Edge-triggered or not, bytes that arrived are reported once and nothing
/// more is reported until new bytes arrive.
fn recv_reports_bytes_once<D: Make>() {
    let (mut d, addr) = listening::<D>(pool(4096, 256));
    let mut c = client(addr);
    let t = accept_one(&mut d);
    c.write_all(b"hello").unwrap();
    let mut got = Vec::new();
    turn_until(&mut d, "5 bytes", |d, ev| match ev {
        Event::Recv { token, buf } => {
            assert_eq!(token, t);
            got.extend_from_slice(d.pool().data(&buf));
            d.pool_mut().free(buf);
            got.len() == 5
        }
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(got, b"hello");
    let mut events = Vec::new();
    for _ in 0..3 {
        d.turn(Some(Duration::from_millis(20)), &mut events).unwrap();
    }
    assert!(events.is_empty(), "no event without new bytes: {events:?}");
    c.write_all(b"!").unwrap();
    turn_until(&mut d, "the new byte", |d, ev| {
        let is_recv = matches!(ev, Event::Recv { .. });
        free_event(d, ev);
        is_recv
    });
}

/// `Sent` events add up to what was sent, and the peer gets it in order.
fn sent_adds_up_and_arrives_in_order<D: Make>() {
    let (mut d, addr) = listening::<D>(pool(4096, 4096));
    let mut c = client(addr);
    let t = accept_one(&mut d);
    let mut expected = Vec::new();
    for i in 0..50u32 {
        let mut chain = Chain::new();
        let part: Vec<u8> = (0..10_000u32).map(|j| (i * 7 + j) as u8).collect();
        chain.extend_from_slice(d.pool_mut(), &part).unwrap();
        expected.extend_from_slice(&part);
        d.send(t, chain);
    }
    let reader = std::thread::spawn(move || {
        let mut got = vec![0; 500_000];
        c.read_exact(&mut got).unwrap();
        got
    });
    let mut sent = 0;
    turn_until(&mut d, "all Sent", |_, ev| match ev {
        Event::Sent { token, bytes } => {
            assert_eq!(token, t);
            sent += bytes;
            sent == 500_000
        }
        // The reader closes once it has everything; that may share the turn.
        Event::Eof { .. } => false,
        other => panic!("unexpected {other:?}"),
    });
    assert!(reader.join().unwrap() == expected);
}

/// After `close`, exactly one `Closed` and nothing else; every buffer back.
fn close_emits_one_closed_and_frees_buffers<D: Make>() {
    let (mut d, addr) = listening::<D>(pool(4096, 4096));
    // io_uring lends buffers to its ring on the first turn: measure after it.
    d.turn(Some(Duration::ZERO), &mut Vec::new()).unwrap();
    let idle = d.pool().in_use();
    let c = client(addr);
    let t = accept_one(&mut d);
    // Output the peer never reads, so some is still queued at close.
    let mut chain = Chain::new();
    chain.extend_from_slice(d.pool_mut(), &vec![7u8; 1 << 20]).unwrap();
    d.send(t, chain);
    let mut events = Vec::new();
    d.turn(Some(Duration::from_millis(10)), &mut events).unwrap();
    for ev in events.drain(..) {
        free_event(&mut d, ev);
    }
    d.close(t);
    let mut closed = 0;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) || closed == 0 {
        assert!(start.elapsed() < LIMIT, "no Closed");
        d.turn(Some(Duration::from_millis(20)), &mut events).unwrap();
        for ev in events.drain(..) {
            match ev {
                Event::Closed { token } => {
                    assert_eq!(token, t);
                    closed += 1;
                }
                other => panic!("nothing but Closed after close: {other:?}"),
            }
        }
    }
    assert_eq!(closed, 1);
    let mut events = Vec::new();
    d.turn(Some(Duration::ZERO), &mut events).unwrap();
    assert_eq!(d.pool().in_use(), idle, "buffers of the closed connection returned");
    drop(c);
}

/// Paused connections get no new bytes; resume delivers them all, in order.
fn pause_and_resume_lose_nothing<D: Make>() {
    let (mut d, addr) = listening::<D>(pool(1024, 512));
    let mut c = client(addr);
    let t = accept_one(&mut d);
    d.pause_recv(t);
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut got = Vec::new();
    let mut events = Vec::new();
    // Completions already under way may still arrive; then silence.
    c.write_all(&data).unwrap();
    for _ in 0..10 {
        d.turn(Some(Duration::from_millis(20)), &mut events).unwrap();
        for ev in events.drain(..) {
            if let Event::Recv { buf, .. } = ev {
                got.extend_from_slice(d.pool().data(&buf));
                d.pool_mut().free(buf);
            }
        }
    }
    let during_pause = got.len();
    d.turn(Some(Duration::from_millis(50)), &mut events).unwrap();
    assert!(events.is_empty(), "paused: no further receive ({} bytes before)", during_pause);
    assert!(during_pause < data.len(), "pause must hold data back");
    d.resume_recv(t);
    turn_until(&mut d, "the rest after resume", |d, ev| match ev {
        Event::Recv { buf, .. } => {
            got.extend_from_slice(d.pool().data(&buf));
            d.pool_mut().free(buf);
            got.len() == data.len()
        }
        other => panic!("unexpected {other:?}"),
    });
    assert!(got == data, "no byte lost or reordered across pause/resume");
}

/// A waker from another thread ends a blocked turn.
fn waker_ends_a_blocked_turn<D: Make>() {
    let mut d = D::make(pool(4096, 128));
    let w = d.waker();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(50));
        w.wake().unwrap();
    });
    let start = Instant::now();
    turn_until(&mut d, "wake", |_, ev| matches!(ev, Event::Wake));
    assert!(start.elapsed() < Duration::from_secs(5));
    t.join().unwrap();
}

/// A peer that half-closes produces `Eof` after its bytes.
fn eof_follows_the_last_bytes<D: Make>() {
    let (mut d, addr) = listening::<D>(pool(4096, 256));
    let mut c = client(addr);
    let t = accept_one(&mut d);
    c.write_all(b"last words").unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    turn_until(&mut d, "eof", |d, ev| match ev {
        Event::Recv { buf, .. } => {
            got.extend_from_slice(d.pool().data(&buf));
            d.pool_mut().free(buf);
            false
        }
        Event::Eof { token } => {
            assert_eq!(token, t);
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(got, b"last words");
}

/// A closed connection's slot is not handed to a new connection before the
/// caller has seen its `Closed` (regression: io_uring once freed the slot
/// while an `Accepted` earlier in the same batch was still to be added).
fn slot_not_reused_before_closed_is_seen<D: Make>() {
    let (mut d, addr) = listening::<D>(pool(4096, 4096));
    for round in 0..20 {
        let _a = client(addr);
        let a = accept_one(&mut d);
        d.close(a);
        let _b = client(addr); // accepted in the same turn as a's close completes
        let mut closed_seen = false;
        let mut b = None;
        turn_until(&mut d, "Closed and Accepted", |d, ev| {
            match ev {
                Event::Closed { token } => {
                    assert_eq!(token, a);
                    closed_seen = true;
                }
                Event::Accepted { fd, .. } => {
                    let t = d.add(fd).unwrap();
                    assert!(
                        closed_seen || t.index() != a.index(),
                        "round {round}: slot {} reused before its Closed",
                        a.index()
                    );
                    b = Some(t);
                }
                other => free_event(d, other),
            }
            closed_seen && b.is_some()
        });
        d.close(b.unwrap());
        turn_until(&mut d, "Closed of b", |_, ev| matches!(ev, Event::Closed { .. }));
    }
}

/// Urgent data (`MSG_OOB`) in the middle of a stream: `recv` stops short at
/// the urgent mark, which must not be taken for "drained" (an
/// edge-triggered driver would then never read what follows). Both drivers
/// deliver the same bytes: the stream without the urgent byte.
fn urgent_data_does_not_stall_the_stream<D: Make>() {
    let (mut d, addr) = listening::<D>(pool(4096, 2048));
    let c = client(addr);
    let t = accept_one(&mut d);
    let sock = socket2::SockRef::from(&c);
    sock.send(b"abc").unwrap();
    sock.send_out_of_band(b"X").unwrap();
    sock.send(b"def").unwrap();
    std::thread::sleep(Duration::from_millis(50)); // all of it queued first
    let mut got = Vec::new();
    turn_until(&mut d, "abcdef", |d, ev| match ev {
        Event::Recv { token, buf } => {
            assert_eq!(token, t);
            got.extend_from_slice(d.pool().data(&buf));
            d.pool_mut().free(buf);
            got.len() >= 6
        }
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(got, b"abcdef");
}

/// Turns until `Connected` for `t` arrives; returns its result.
fn connected<D: Driver>(d: &mut D, t: Token) -> std::io::Result<()> {
    let mut result = None;
    turn_until(d, "Connected", |d, ev| match ev {
        Event::Connected { token, result: r } => {
            assert_eq!(token, t);
            result = Some(r);
            true
        }
        other => {
            free_event(d, other);
            false
        }
    });
    result.unwrap()
}

/// An outbound connection carries bytes both ways and sees the peer's EOF.
fn connect_then_both_ways<D: Make>() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut d = D::make(pool(4096, 2048));
    let t = d.connect(listener.local_addr().unwrap()).unwrap();
    // The handshake completes in the listener's backlog, before `accept`.
    connected(&mut d, t).expect("connected");
    let (mut peer, _) = listener.accept().unwrap();
    peer.set_read_timeout(Some(LIMIT)).unwrap();
    let mut out = Chain::new();
    out.extend_from_slice(d.pool_mut(), b"ping").unwrap();
    d.send(t, out);
    let mut got = [0u8; 4];
    let mut events = Vec::new();
    let start = Instant::now();
    while start.elapsed() < LIMIT {
        d.turn(Some(Duration::from_millis(10)), &mut events).unwrap();
        for ev in events.drain(..) {
            free_event(&mut d, ev);
        }
        peer.set_nonblocking(true).unwrap();
        let n = peer.peek(&mut got).unwrap_or(0);
        peer.set_nonblocking(false).unwrap();
        if n == 4 {
            break;
        }
    }
    peer.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    peer.write_all(b"pong").unwrap();
    drop(peer);
    let mut bytes = Vec::new();
    turn_until(&mut d, "pong and EOF", |d, ev| match ev {
        Event::Recv { token, buf } => {
            assert_eq!(token, t);
            bytes.extend_from_slice(d.pool().data(&buf));
            d.pool_mut().free(buf);
            false
        }
        Event::Eof { token } => {
            assert_eq!(token, t);
            true
        }
        Event::Sent { .. } => false,
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(bytes, b"pong");
    d.close(t);
    turn_until(&mut d, "Closed", |_, ev| matches!(ev, Event::Closed { .. }));
}

/// A refused connect reports `ConnectionRefused`, then closes cleanly.
fn connect_refused_then_closed<D: Make>() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let mut d = D::make(pool(4096, 2048));
    let idle = d.pool().in_use();
    let t = d.connect(port).unwrap();
    let error = connected(&mut d, t).expect_err("nothing listens");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
    d.close(t);
    let mut closed = 0;
    turn_until(&mut d, "Closed", |_, ev| match ev {
        Event::Closed { token } => {
            assert_eq!(token, t);
            closed += 1;
            true
        }
        other => panic!("unexpected {other:?}"),
    });
    let mut events = Vec::new();
    d.turn(Some(Duration::from_millis(20)), &mut events).unwrap();
    assert!(events.is_empty(), "nothing after Closed: {events:?}");
    assert_eq!(closed, 1);
    assert_eq!(d.pool().in_use(), idle);
}

/// Closed before any turn: one `Closed`, never a `Connected`.
fn close_while_connecting<D: Make>() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut d = D::make(pool(4096, 2048));
    let t = d.connect(listener.local_addr().unwrap()).unwrap();
    d.close(t);
    let mut events = Vec::new();
    let mut closed = 0;
    for _ in 0..10 {
        d.turn(Some(Duration::from_millis(10)), &mut events).unwrap();
        for ev in events.drain(..) {
            match ev {
                Event::Closed { token } => {
                    assert_eq!(token, t);
                    closed += 1;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(closed, 1);
}

/// Closed while the kernel is really still connecting: a listener with
/// backlog 0 whose queue is full drops the SYN, so the connect stays in
/// flight (its first retransmit is a second away). One `Closed`, no
/// `Connected`.
fn close_while_in_flight<D: Make>() {
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let _waiting = TcpStream::connect(addr).unwrap(); // fills the queue
    let mut d = D::make(pool(4096, 2048));
    let t = d.connect(addr).unwrap();
    let mut events = Vec::new();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(150) {
        d.turn(Some(Duration::from_millis(10)), &mut events).unwrap();
    }
    assert!(events.is_empty(), "the full accept queue holds the connect back: {events:?}");
    d.close(t);
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        d.turn(Some(Duration::from_millis(10)), &mut events).unwrap();
    }
    assert!(
        matches!(events[..], [Event::Closed { token }] if token == t),
        "exactly one Closed and no Connected: {events:?}"
    );
}

/// 200 concurrent connects to one listener all connect.
fn many_concurrent_connects<D: Make>() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let accepter = std::thread::spawn(move || {
        (0..200).map(|_| listener.accept().unwrap().0).collect::<Vec<_>>()
    });
    let mut d = D::make(pool(4096, 2048));
    let mut pending: std::collections::HashSet<Token> =
        (0..200).map(|_| d.connect(addr).unwrap()).collect();
    turn_until(&mut d, "200 Connected", |_, ev| match ev {
        Event::Connected { token, result } => {
            result.expect("connected");
            assert!(pending.remove(&token));
            pending.is_empty()
        }
        other => panic!("unexpected {other:?}"),
    });
    assert_eq!(accepter.join().unwrap().len(), 200);
}

/// A chain of another pool's buffers is refused before the driver follows
/// its links through its own pool (which would send, then free, buffers
/// other connections own); the driver goes on serving.
fn a_chain_from_another_pool_is_refused<D: Make>() {
    let (mut d, addr) = listening::<D>(pool(4096, 2048));
    let mut c = client(addr);
    let t = accept_one(&mut d);
    let mut other = pool(4096, 4);
    let mut foreign = Chain::new();
    foreign.extend_from_slice(&mut other, b"not yours").unwrap();
    let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| d.send(t, foreign)));
    let message = refused.expect_err("a foreign chain was sent");
    let message = message.downcast_ref::<&str>().copied().unwrap_or_default();
    assert!(message.contains("another pool"), "panic said {message:?}");
    let in_use = d.pool().in_use();
    let mut own = Chain::new();
    own.extend_from_slice(d.pool_mut(), b"yours").unwrap();
    d.send(t, own);
    turn_until(&mut d, "the own chain sent", |_, ev| matches!(ev, Event::Sent { bytes: 5, .. }));
    let mut got = [0; 5];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"yours", "only the driver's own bytes reach the peer");
    assert_eq!(d.pool().in_use(), in_use, "the own chain's buffer came back");
}

/// A listener broken for good (here shut down through another descriptor,
/// so every `accept` says `EINVAL`) is reported and retried at the back-off
/// pace, never in a loop: the turn returns and the system calls stay few.
/// epoll used to retry unknown errors at once, inside one endless `turn()`.
fn a_broken_listener_backs_off<D: Make + 'static>() {
    use std::os::fd::AsRawFd;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut d = D::make(pool(4096, 2048));
        let l = net::bind_reuseport("127.0.0.1:0".parse().unwrap(), 1, 128).unwrap().remove(0);
        let other = l.try_clone().unwrap();
        d.listen(l.into(), Share::Alone).unwrap();
        // SAFETY: `other` is an open socket owned by this test.
        assert_eq!(unsafe { libc::shutdown(other.as_raw_fd(), libc::SHUT_RDWR) }, 0);
        let (mut errors, mut events) = (0, Vec::new());
        let before = d.stats().syscalls;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            d.turn(Some(Duration::from_millis(5)), &mut events).unwrap();
            for ev in events.drain(..) {
                match ev {
                    Event::AcceptError { error, .. } => {
                        assert_eq!(error.raw_os_error(), Some(libc::EINVAL), "{error}");
                        errors += 1;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        tx.send((errors, d.stats().syscalls - before)).unwrap();
    });
    let (errors, syscalls) =
        rx.recv_timeout(Duration::from_secs(5)).expect("turn() spun on a broken listener");
    // 300 ms at a 10 ms back-off: about 30 retries, each a few calls.
    assert!((1..=45).contains(&errors), "{errors} accept errors reported");
    assert!(syscalls < 400, "{syscalls} system calls in 300 ms");
}

on_both_drivers!(
    a_broken_listener_backs_off,
    a_chain_from_another_pool_is_refused,
    slot_not_reused_before_closed_is_seen,
    recv_reports_bytes_once,
    sent_adds_up_and_arrives_in_order,
    close_emits_one_closed_and_frees_buffers,
    pause_and_resume_lose_nothing,
    waker_ends_a_blocked_turn,
    eof_follows_the_last_bytes,
    urgent_data_does_not_stall_the_stream,
    connect_then_both_ways,
    connect_refused_then_closed,
    close_while_connecting,
    close_while_in_flight,
    many_concurrent_connects,
);

/// Used directly, without `Config`, each driver refuses settings that would
/// leave it deaf: a receive reserve as large as the pool (it then never
/// received a byte), or a zero accept back-off (a broken listener spun).
#[test]
fn direct_drivers_refuse_settings_that_never_receive_or_spin() {
    let mut epoll = EpollConfig::default();
    epoll.recv_reserve = 16;
    let err = Epoll::new(pool(4096, 16), &epoll).unwrap_err();
    assert!(err.to_string().contains("recv_reserve"), "{err}");
    assert!(Epoll::new(pool(4096, 17), &epoll).is_ok());
    epoll.accept_backoff = Duration::ZERO;
    let err = Epoll::new(pool(4096, 64), &epoll).unwrap_err();
    assert!(err.to_string().contains("accept_backoff"), "{err}");

    if std::env::var("POLLRING_NO_URING").is_ok_and(|v| !v.is_empty() && v != "0") {
        eprintln!("!!! SKIPPED the io_uring half: POLLRING_NO_URING is set");
        return;
    }
    let mut uring = UringConfig::default();
    uring.recv_reserve = 2048;
    let err = Uring::new(pool(4096, 2048), &uring).unwrap_err();
    assert!(err.to_string().contains("recv_reserve"), "{err}");
    assert!(Uring::new(pool(4096, 2049), &uring).is_ok());
    uring.accept_backoff = Duration::ZERO;
    let err = Uring::new(pool(4096, 4096), &uring).unwrap_err();
    assert!(err.to_string().contains("accept_backoff"), "{err}");
}
