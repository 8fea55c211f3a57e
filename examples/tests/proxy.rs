//! The L4 proxy in front of std-thread upstreams on loopback: bytes
//! round-trip byte-exact, a FIN passes through as a FIN (100 times in a
//! row), a refused upstream closes the client promptly, a reset on one
//! side aborts the other, and a client that does not read holds the
//! upstream back at the high-water mark instead of being buffered for.

#[macro_use]
mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pollring::{Backend, ConfigBuilder, ServerHandle};
use pollring_examples::proxy::Proxy;
use util::*;

/// A std-thread server on 127.0.0.1:0, one thread per connection running
/// `serve`; stops accepting when dropped.
struct Upstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Upstream {
    fn start(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let serve = Arc::new(serve);
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopping.load(Ordering::Acquire) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                let serve = serve.clone();
                std::thread::spawn(move || serve(stream));
            }
        });
        Upstream { addr, stop, thread: Some(thread) }
    }

    /// Echoes until EOF, then sends its own FIN.
    fn echo() -> Upstream {
        Upstream::start(|mut s| {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => return,
                }
            }
            let _ = s.shutdown(Shutdown::Write);
        })
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr); // wakes the accept
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn proxy(config: ConfigBuilder, upstream: SocketAddr) -> ServerHandle {
    proxy_with_timeout(config, upstream, Duration::from_secs(5))
}

fn proxy_with_timeout(config: ConfigBuilder, upstream: SocketAddr, t: Duration) -> ServerHandle {
    start(config, move |_| Proxy::new(upstream, t))
}

/// An address where a connect neither completes nor fails for a while: a
/// listener that does not accept, its accept queue (backlog 0: one
/// connection) filled, so the kernel drops further SYNs and the connector
/// retransmits them (after 1 s, 3 s, …). `None` if this kernel answers them
/// after all. Keep the returned sockets until done.
fn unanswered() -> Option<(socket2::Socket, Vec<TcpStream>, SocketAddr)> {
    use socket2::{Domain, Socket, Type};
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(s) => fillers.push(s),
            Err(e) if e.kind() == ErrorKind::TimedOut => return Some((listener, fillers, addr)),
            Err(e) => panic!("filling the backlog: {e}"),
        }
    }
    None
}

/// Accepts one connection within 10 s.
#[track_caller]
fn accept(listener: &socket2::Socket) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                let s: TcpStream = s.into();
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                return s;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                assert!(Instant::now() < until, "no connection to accept");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// Reads to EOF, retrying `EINTR`; `Err` on a reset or a timeout.
fn read_all(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn bytes_round_trip_byte_exact(backend: Backend) {
    let upstream = Upstream::echo();
    let server = proxy(config(backend).workers(2), upstream.addr);
    // 1 MiB each way at once (a writer thread, this thread reads).
    let c = connect(server.local_addr());
    let data = pattern(1 << 20, 1);
    assert!(echo_round_trip(&c, &data) == data, "1 MiB came back changed");
    // Small exchanges on the same pair.
    let mut c = c;
    for i in 0..50u8 {
        c.write_all(&[i; 3]).unwrap();
        assert_eq!(read_n(&mut c, 3), [i; 3]);
    }
    // Several pairs at once, on both workers.
    let addr = server.local_addr();
    let clients: Vec<_> = (0..8u64)
        .map(|seed| {
            std::thread::spawn(move || {
                let c = connect(addr);
                let data = pattern(256 * 1024, seed + 10);
                assert!(echo_round_trip(&c, &data) == data, "pair {seed}: bytes changed");
            })
        })
        .collect();
    for c in clients {
        c.join().expect("pair");
    }
}

fn a_fin_passes_through_and_the_reply_still_arrives(backend: Backend) {
    let upstream = Upstream::echo();
    let server = proxy(config(backend), upstream.addr);
    let mut failures = Vec::new();
    for i in 0..100u64 {
        let mut c = connect(server.local_addr());
        let data = pattern(1 + (i as usize * 997) % (96 * 1024), i);
        c.write_all(&data).expect("write");
        c.shutdown(Shutdown::Write).expect("shutdown");
        match read_all(&mut c) {
            Ok(got) if got == data => {}
            Ok(got) => {
                failures.push(format!("#{i}: {} of {} bytes, or changed", got.len(), data.len()))
            }
            Err(e) => failures.push(format!("#{i}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of 100 failed: {failures:?}", failures.len());
    eventually(Duration::from_secs(10), "every pair closed", || server.stats().connections == 0);
}

fn a_refused_upstream_closes_the_client_promptly(backend: Backend) {
    // A port nobody listens on: bind, note, drop.
    let refused = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let server = proxy(config(backend), refused);
    for _ in 0..3 {
        let mut c = connect(server.local_addr());
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = Instant::now();
        let _ = c.write_all(b"anyone there?");
        match read_all(&mut c) {
            Ok(got) => assert!(got.is_empty(), "{got:?}"),
            Err(e) => assert!(
                matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe),
                "expected EOF or a reset, got {e}"
            ),
        }
        assert!(t.elapsed() < Duration::from_secs(3), "closed after {:?}", t.elapsed());
    }
    eventually(Duration::from_secs(10), "nothing left open", || server.stats().connections == 0);
}

fn a_reset_on_one_side_aborts_the_other(backend: Backend) {
    // The upstream hands each connection to the test.
    let (tx, rx) = mpsc::channel::<TcpStream>();
    let tx = std::sync::Mutex::new(tx);
    let upstream = Upstream::start(move |s| tx.lock().unwrap().send(s).unwrap());
    let server = proxy(config(backend), upstream.addr);
    let timeout = Duration::from_secs(10);

    // The client resets: the upstream's connection ends promptly.
    let mut c = connect(server.local_addr());
    let mut u = rx.recv_timeout(timeout).expect("upstream accepted");
    u.write_all(b"unread by the client").unwrap();
    c.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut u, 1), b"x");
    let mut byte = [0u8; 1];
    while c.peek(&mut byte).map_or(true, |n| n == 0) {}
    let t = Instant::now();
    drop(c); // unread input: RST
    u.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let end = read_all(&mut u);
    assert!(end.as_ref().map_or(true, Vec::is_empty), "{end:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "upstream closed after {:?}", t.elapsed());

    // The upstream resets: the client's connection ends promptly.
    let mut c = connect(server.local_addr());
    let u = rx.recv_timeout(timeout).expect("upstream accepted");
    c.write_all(b"unread by the upstream").unwrap();
    let u_peek = u.try_clone().unwrap();
    while u_peek.peek(&mut byte).map_or(true, |n| n == 0) {}
    let t = Instant::now();
    drop((u, u_peek));
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let end = read_all(&mut c);
    assert!(end.as_ref().map_or(true, Vec::is_empty), "{end:?}");
    assert!(t.elapsed() < Duration::from_secs(3), "client closed after {:?}", t.elapsed());
    eventually(Duration::from_secs(10), "nothing left open", || server.stats().connections == 0);
}

fn a_client_that_does_not_read_holds_the_upstream_back(backend: Backend) {
    const FLOOD: usize = 16 << 20;
    const HIGH: usize = 64 * 1024;
    let upstream = Upstream::start(|mut s| {
        let data = pattern(FLOOD, 99);
        if s.write_all(&data).is_ok() {
            let _ = s.shutdown(Shutdown::Write);
        }
        let _ = read_all(&mut s);
    });
    let server = proxy(config(backend).high_water(HIGH).low_water(HIGH / 4), upstream.addr);
    let mut c = connect(server.local_addr());
    // Not reading: the kernel's buffers fill, then the proxy's output up to
    // the high-water mark, then the upstream's reading pauses.
    std::thread::sleep(Duration::from_millis(1000));
    let peak = server.stats().buffered_peak;
    // Reading now: everything arrives, byte-exact, then EOF (no reset).
    let got = read_all(&mut c).expect("no reset when the client finally reads");
    assert_eq!(got.len(), FLOOD);
    assert!(got == pattern(FLOOD, 99), "the flood arrived changed");
    let peak_after = server.stats().buffered_peak;
    eprintln!("buffered_peak: {peak} while not reading, {peak_after} in all (high water {HIGH})");
    assert!(peak >= HIGH, "the proxy never reached its high-water mark: did the test flood it?");
    // A pause takes effect at the end of the turn that crossed the mark, so
    // one turn's receives come on top of it. The epoll driver receives at
    // most `recv_budget` (16) buffers of 16 KiB per connection per turn.
    // The io_uring driver has no such budget: a multishot receive delivers
    // what the socket holds before its cancel is submitted (1.6 MB here on
    // loopback, the same from run to run, however long the flood). Both
    // stay far below the 16 MiB the upstream sent.
    let one_turn = match backend {
        Backend::Epoll => 16 * 16 * 1024,
        _ => 4 << 20,
    };
    assert!(
        peak_after <= HIGH + one_turn + 64 * 1024,
        "a connection buffered {peak_after} bytes with a high-water mark of {HIGH}"
    );
}

fn a_connect_timeout_closes_the_client(backend: Backend) {
    let Some((_listener, _fillers, addr)) = unanswered() else {
        eprintln!("!!! SKIPPED: this kernel answers SYNs to a full accept queue");
        return;
    };
    let server = proxy_with_timeout(config(backend), addr, Duration::from_millis(200));
    let mut c = connect(server.local_addr());
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    let end = read_all(&mut c);
    let took = t.elapsed();
    assert!(end.as_ref().map_or(true, Vec::is_empty), "{end:?}");
    assert!(took < Duration::from_secs(3), "closed after {took:?}, not at the 200 ms timeout");
    eventually(Duration::from_secs(10), "nothing left open", || server.stats().connections == 0);
}

fn bytes_and_fin_sent_before_the_upstream_connects_arrive(backend: Backend) {
    let Some((listener, fillers, addr)) = unanswered() else {
        eprintln!("!!! SKIPPED: this kernel answers SYNs to a full accept queue");
        return;
    };
    let server = proxy(config(backend), addr);
    let mut c = connect(server.local_addr());
    let data = pattern(32 * 1024, 3);
    c.write_all(&data).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    // The proxy's connect is still unanswered; make room in the accept
    // queue, and its retransmitted SYN gets through.
    std::thread::sleep(Duration::from_millis(100));
    for _ in &fillers {
        drop(accept(&listener));
    }
    drop(fillers);
    let mut u = accept(&listener);
    let echo = std::thread::spawn(move || {
        let got = read_all(&mut u).expect("the upstream reads to the FIN");
        u.write_all(&got).unwrap();
        u.shutdown(Shutdown::Write).unwrap();
        got.len()
    });
    let got = read_all(&mut c).expect("reply, then EOF");
    assert_eq!(echo.join().unwrap(), data.len(), "the upstream got every byte, then the FIN");
    assert!(got == data, "{} bytes came back, or changed", got.len());
}

/// While the upstream is still connecting, what the client sends waits in
/// the upstream's output, and that output is bounded like any other: past
/// the high-water mark the client stops being read, so the client's own
/// writes stall instead of the proxy buffering them all.
fn a_client_flooding_a_connecting_upstream_is_held_back(backend: Backend) {
    const HIGH: usize = 64 * 1024;
    let Some((_listener, _fillers, addr)) = unanswered() else {
        eprintln!("!!! SKIPPED: this kernel answers SYNs to a full accept queue");
        return;
    };
    let server = proxy(config(backend).high_water(HIGH).low_water(HIGH / 4), addr);
    let mut c = connect(server.local_addr());
    c.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let chunk = vec![7u8; 64 * 1024];
    let mut written = 0usize;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(2) && written < (64 << 20) {
        match c.write(&chunk) {
            Ok(n) => written += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
            Err(e) => panic!("the client was not held back but failed: {e}"),
        }
    }
    let peak = server.stats().buffered_peak;
    eprintln!("written {written} bytes before stalling; buffered_peak {peak}");
    // The kernel's socket buffers (both directions of loopback) hold a few
    // MiB; the proxy holds the water mark plus one turn of receives.
    assert!(
        written < 32 << 20,
        "{written} bytes accepted from a client whose upstream never connected"
    );
    assert!(peak <= HIGH + (4 << 20), "buffered {peak} bytes for a connecting upstream");
}

on_both_backends!(
    a_client_flooding_a_connecting_upstream_is_held_back,
    a_connect_timeout_closes_the_client,
    bytes_and_fin_sent_before_the_upstream_connects_arrive,
    bytes_round_trip_byte_exact,
    a_fin_passes_through_and_the_reply_still_arrives,
    a_refused_upstream_closes_the_client_promptly,
    a_reset_on_one_side_aborts_the_other,
    a_client_that_does_not_read_holds_the_upstream_back,
);
