//! Read and write timeouts against hostile peers (slowloris, a peer that
//! never reads), and the handler's own per-connection timer.

#[macro_use]
mod util;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pollring::{Backend, CloseReason, Cx, Handler};
use util::*;

/// The close reasons a server's connections ended with, in order.
type Reasons = Arc<Mutex<Vec<CloseReason>>>;

/// Wraps a handler and records why each connection closed.
struct Recorded<H> {
    inner: H,
    reasons: Reasons,
}

impl<H: Handler<Message = ()>> Handler for Recorded<H> {
    type Conn = H::Conn;
    type Message = ();
    fn on_open(&mut self, cx: &mut Cx<'_>) -> H::Conn {
        self.inner.on_open(cx)
    }
    fn on_data(&mut self, conn: &mut H::Conn, cx: &mut Cx<'_>) {
        self.inner.on_data(conn, cx)
    }
    fn on_drained(&mut self, conn: &mut H::Conn, cx: &mut Cx<'_>) {
        self.inner.on_drained(conn, cx)
    }
    fn on_timer(&mut self, conn: &mut H::Conn, cx: &mut Cx<'_>) {
        self.inner.on_timer(conn, cx)
    }
    fn on_close(&mut self, conn: H::Conn, cx: &mut Cx<'_>, reason: CloseReason) {
        self.reasons.lock().unwrap().push(reason);
        self.inner.on_close(conn, cx, reason)
    }
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

fn count(reasons: &Reasons, reason: CloseReason) -> usize {
    reasons.lock().unwrap().iter().filter(|r| **r == reason).count()
}

/// Whether the server has closed `s`: EOF or a reset, not a read timeout.
fn closed_by_server(s: &mut std::net::TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                )
            }
        }
    }
}

const READ_TIMEOUT: Duration = Duration::from_millis(300);

/// A slowloris peer trickles a request that never completes: each byte
/// resets the idle timeout, but the read timeout counts from the oldest
/// unconsumed byte, so it is closed. A peer sending complete lines just as
/// slowly (consumed each time) is kept, and so is everyone else.
fn slowloris_is_closed_by_the_read_timeout(backend: Backend) {
    let reasons = Reasons::default();
    let r = reasons.clone();
    let server = start(
        config(backend)
            .idle_timeout(Some(Duration::from_secs(10)))
            .read_timeout(Some(READ_TIMEOUT)),
        move |_| Recorded { inner: LineEcho, reasons: r.clone() },
    );
    let addr = server.local_addr();
    let mut slow = connect(addr);
    let mut polite = connect(addr);
    let started = Instant::now();
    let mut trickled = 0;
    let mut refused = false;
    // Trickle a byte every 50 ms until the server has closed the socket (a
    // write then fails), or for far longer than the read timeout.
    while started.elapsed() < Duration::from_secs(5) {
        if slow.write_all(b"G").is_err() {
            refused = true;
            break;
        }
        trickled += 1;
        polite.write_all(b"ok\n").unwrap();
        assert_eq!(read_n(&mut polite, 3), b"ok\n", "the polite peer is served meanwhile");
        std::thread::sleep(Duration::from_millis(50));
    }
    let lived = started.elapsed();
    assert!(refused, "the server still took the trickle after {lived:?} ({trickled} bytes)");
    eprintln!("slowloris closed after {lived:?}, {trickled} bytes");
    assert!(closed_by_server(&mut slow), "the slowloris peer is closed");
    assert!(trickled >= 5, "closed only after the read timeout ({trickled} bytes first)");
    eventually(IO_TIMEOUT, "ReadTimeout reported to on_close", || {
        count(&reasons, CloseReason::ReadTimeout) == 1
    });
    polite.write_all(b"still\n").unwrap();
    assert_eq!(read_n(&mut polite, 6), b"still\n");
    assert_eq!(server.stats().connections, 1, "only the slowloris peer was closed");
}

/// A partial frame that completes before the read timeout is served; the
/// timeout does not fire early.
fn read_timeout_spares_a_frame_completed_in_time(backend: Backend) {
    let server = start(config(backend).read_timeout(Some(READ_TIMEOUT)), |_| LineEcho);
    let mut s = connect(server.local_addr());
    for _ in 0..3 {
        s.write_all(b"par").unwrap();
        std::thread::sleep(READ_TIMEOUT / 2);
        s.write_all(b"tial\n").unwrap();
        assert_eq!(read_n(&mut s, 8), b"partial\n");
    }
}

const WRITE_TIMEOUT: Duration = Duration::from_millis(300);

/// A peer that sends but never reads: once its output stops moving, the
/// write timeout closes it; a peer that reads slowly but steadily is not
/// closed, and gets every byte.
fn a_peer_that_never_reads_is_closed_by_the_write_timeout(backend: Backend) {
    let reasons = Reasons::default();
    let r = reasons.clone();
    let server = start(
        config(backend)
            .idle_timeout(None)
            .write_timeout(Some(WRITE_TIMEOUT))
            .high_water(128 * 1024)
            .low_water(32 * 1024),
        move |_| Recorded { inner: Echo, reasons: r.clone() },
    );
    let addr = server.local_addr();
    // Buffers in use with no connection (io_uring lends its ring's).
    let baseline = server.stats().pool_in_use;

    let deaf = connect(addr);
    deaf.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut w = deaf.try_clone().unwrap();
    let flood = std::thread::spawn(move || {
        // Far more than the socket buffers and the high-water mark hold;
        // the writes stall, then fail once the server closes.
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..512 {
            if let Err(e) = w.write_all(&chunk) {
                return !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                );
            }
        }
        false
    });

    // Meanwhile a slow but steady reader of a large echo.
    let steady = connect(addr);
    let data = pattern(4 << 20, 9);
    let mut sw = steady.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || sw.write_all(&sent).expect("steady writer"));
    let mut got = Vec::with_capacity(data.len());
    let mut buf = vec![0u8; 256 * 1024];
    let mut sr = steady.try_clone().unwrap();
    while got.len() < data.len() {
        let n = sr.read(&mut buf).expect("steady read");
        assert!(n > 0, "steady reader closed after {} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
        std::thread::sleep(WRITE_TIMEOUT / 6);
    }
    writer.join().unwrap();
    assert!(got == data, "the steady reader gets every byte, in order");

    eventually(IO_TIMEOUT, "WriteTimeout reported to on_close", || {
        count(&reasons, CloseReason::WriteTimeout) == 1
    });
    assert!(flood.join().unwrap(), "the deaf peer's writes fail once it is closed");
    let reasons = reasons.lock().unwrap().clone();
    assert_eq!(reasons, vec![CloseReason::WriteTimeout], "only the deaf peer was closed");
    eventually(IO_TIMEOUT, "the deaf peer's buffers back in the pool", || {
        let s = server.stats();
        s.connections == 1 && s.pool_in_use <= baseline
    });
}

/// What each test connection asks of its timer, by its first line.
struct Timed;

/// Per connection: ticks so far.
impl Handler for Timed {
    type Conn = u32;
    type Message = ();
    fn on_open(&mut self, cx: &mut Cx<'_>) -> u32 {
        cx.set_timer(Duration::from_secs(30));
        0
    }
    fn on_data(&mut self, _ticks: &mut u32, cx: &mut Cx<'_>) {
        while let Some(end) = cx.input().find(0, b'\n') {
            let line = cx.input().peek(end).unwrap_or_default().to_vec();
            cx.consume(end + 1);
            match &line[..] {
                // Replace the 30 s timer with a sooner one.
                b"soon" => cx.set_timer(Duration::from_millis(100)),
                b"cancel" => cx.cancel_timer(),
                b"armed?" => {
                    let armed = if cx.timer().is_some() { "yes\n" } else { "no\n" };
                    cx.write(armed.as_bytes());
                }
                _ => cx.write(b"?\n"),
            }
        }
    }
    fn on_timer(&mut self, ticks: &mut u32, cx: &mut Cx<'_>) {
        *ticks += 1;
        assert!(cx.timer().is_none(), "a fired timer is no longer set");
        cx.write(format!("tick {ticks}\n").as_bytes());
        if *ticks < 3 {
            cx.set_timer(Duration::from_millis(50));
        } else {
            cx.close();
        }
    }
}

/// `set_timer` replaces an earlier (later-due) timer, fires no sooner than
/// asked, can re-arm from `on_timer`, and `cancel_timer` stops it.
fn handler_timers_fire_rearm_and_cancel(backend: Backend) {
    let server = start(config(backend), |_| Timed);
    let addr = server.local_addr();

    let mut s = connect(addr);
    let asked = Instant::now();
    s.write_all(b"soon\n").unwrap();
    assert_eq!(read_n(&mut s, 7), b"tick 1\n");
    let first = asked.elapsed();
    assert!(first >= Duration::from_millis(100), "fired early: {first:?}");
    assert!(first < Duration::from_secs(5), "the sooner timer replaced the 30 s one: {first:?}");
    assert_eq!(read_n(&mut s, 7), b"tick 2\n");
    assert_eq!(read_n(&mut s, 7), b"tick 3\n");
    let (rest, err) = read_to_end(&mut s);
    assert!(rest.is_empty() && err.is_none(), "closed after the third tick: {rest:?} {err:?}");
    assert!(asked.elapsed() >= Duration::from_millis(200), "two 50 ms re-arms in between");

    let mut c = connect(addr);
    c.write_all(b"soon\ncancel\narmed?\n").unwrap();
    assert_eq!(read_n(&mut c, 3), b"no\n");
    c.set_read_timeout(Some(Duration::from_millis(400))).unwrap();
    let mut buf = [0u8; 16];
    let quiet = c.read(&mut buf);
    assert!(
        matches!(&quiet, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "a cancelled timer does not fire: {quiet:?}"
    );
    c.write_all(b"armed?\n").unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    assert_eq!(read_n(&mut c, 3), b"no\n");
}

on_both_backends!(
    slowloris_is_closed_by_the_read_timeout,
    read_timeout_spares_a_frame_completed_in_time,
    a_peer_that_never_reads_is_closed_by_the_write_timeout,
    handler_timers_fire_rearm_and_cancel,
);
