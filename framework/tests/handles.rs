//! Connection handles: a connection reaches another connection of its
//! worker by `ConnId` (write, zero-copy forward, close, abort, pause and
//! resume of receiving), and an id kept after its connection closed
//! reaches nothing, not even the connection that took its slot.

#[macro_use]
mod util;

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pollring::{Backend, CloseReason, ConnId, Cx, Handler, ServerHandle};
use util::*;

/// What the pair handler tells the test.
#[derive(Debug, PartialEq, Eq)]
enum Report {
    Opened(ConnId),
    Closed(ConnId, CloseReason),
    /// `on_data` saw this much input.
    Input(ConnId, usize),
    /// The pair was gone: what `Cx::conn` and `Cx::forward_to` answered,
    /// and the input's length before and after the failed forward.
    Gone {
        peer: ConnId,
        conn_gone: bool,
        forward_gone: bool,
        before: usize,
        after: usize,
    },
}

struct Side {
    id: ConnId,
    /// After `!fwd`: every byte goes to the pair with `forward_to`.
    forward: bool,
}

/// What `!close` and `!abort` write to the pair before closing it.
const BIG: usize = 1 << 20;
/// What `!flood` writes to the pair.
const FLOOD: usize = 4 << 20;

/// The first two connections of a worker pair up, then the next two, and
/// so on. Each line a connection sends is written to its pair
/// (`ConnMut::write`), except the commands, which act on the pair:
///
/// * `!fwd`: from here on every byte is moved with `forward_to`;
/// * `!close` / `!abort`: [`BIG`] bytes to the pair, then close / abort it;
/// * `!pause` / `!resume`: its receiving, answered `paused` / `resumed`;
/// * `!feed`: this connection becomes the pair's feeder (its reading
///   pauses while the pair's output is over the high-water mark),
///   answered `feeding`;
/// * `!flood`: [`FLOOD`] bytes to the pair, answered `flooded`.
///
/// When the pair is gone, the sender gets `gone:` and its input back.
struct Pair {
    waiting: Option<ConnId>,
    peers: HashMap<ConnId, ConnId>,
    big: Vec<u8>,
    report: mpsc::Sender<Report>,
}

impl Pair {
    fn new(report: mpsc::Sender<Report>) -> Pair {
        Pair { waiting: None, peers: HashMap::new(), big: pattern(BIG, 11), report }
    }

    /// The pair is gone: checks that both ways of reaching it say so and
    /// leave the input in place, then echoes the input back.
    fn gone(&mut self, peer: ConnId, cx: &mut Cx<'_>) {
        let conn_gone = cx.conn(peer).is_err();
        let before = cx.input().len();
        let forward_gone = cx.forward_to(peer, before).is_err();
        let after = cx.input().len();
        let _ = self.report.send(Report::Gone { peer, conn_gone, forward_gone, before, after });
        cx.write(b"gone:");
        cx.forward(after);
    }
}

impl Handler for Pair {
    type Conn = Side;
    type Message = ();

    fn on_open(&mut self, cx: &mut Cx<'_>) -> Side {
        let me = cx.id();
        match self.waiting.take() {
            Some(first) if cx.conn(first).is_ok() => {
                self.peers.insert(first, me);
                self.peers.insert(me, first);
            }
            _ => self.waiting = Some(me),
        }
        let _ = self.report.send(Report::Opened(me));
        Side { id: me, forward: false }
    }

    fn on_data(&mut self, side: &mut Side, cx: &mut Cx<'_>) {
        if !cx.input().is_empty() {
            let _ = self.report.send(Report::Input(side.id, cx.input().len()));
        }
        // Unpaired: the input waits.
        let Some(&peer) = self.peers.get(&side.id) else { return };
        while !cx.input().is_empty() {
            if side.forward {
                let n = cx.input().len();
                if cx.forward_to(peer, n).is_err() {
                    self.gone(peer, cx);
                }
                return;
            }
            let Some(end) = cx.input().find(0, b'\n') else { return };
            let line = cx.input().peek(end + 1).expect("a whole line").to_vec();
            let Ok(mut pair) = cx.conn(peer) else {
                self.gone(peer, cx);
                return;
            };
            let done = match &line[..] {
                b"!fwd\n" => {
                    side.forward = true;
                    Ok(())
                }
                b"!close\n" => pair.write(&self.big).and_then(|()| pair.close()),
                b"!abort\n" => pair.write(&self.big).and_then(|()| pair.abort()),
                b"!pause\n" => pair.pause_recv(),
                b"!resume\n" => pair.resume_recv(),
                b"!feed\n" => pair.set_feeder(side.id),
                b"!flood\n" => (0..FLOOD / BIG).try_for_each(|_| pair.write(&self.big)),
                _ => pair.write(&line),
            };
            if done.is_err() {
                self.gone(peer, cx);
                return;
            }
            cx.consume(end + 1);
            match &line[..] {
                b"!pause\n" => cx.write(b"paused\n"),
                b"!resume\n" => cx.write(b"resumed\n"),
                b"!feed\n" => cx.write(b"feeding\n"),
                b"!flood\n" => cx.write(b"flooded\n"),
                _ => {}
            }
        }
    }

    fn on_close(&mut self, side: Side, _cx: &mut Cx<'_>, reason: CloseReason) {
        if self.waiting == Some(side.id) {
            self.waiting = None;
        }
        // The pair keeps its (now stale) id of this connection on purpose.
        let _ = self.report.send(Report::Closed(side.id, reason));
    }
}

/// A server running [`Pair`] with two clients paired up.
struct Paired {
    server: ServerHandle,
    a: TcpStream,
    b: TcpStream,
    a_id: ConnId,
    b_id: ConnId,
    reports: mpsc::Receiver<Report>,
}

impl Paired {
    #[track_caller]
    fn start(backend: Backend) -> Paired {
        Paired::start_with(config(backend))
    }

    #[track_caller]
    fn start_with(config: pollring::ConfigBuilder) -> Paired {
        let (tx, reports) = mpsc::channel();
        let server = start(config, move |_| Pair::new(tx.clone()));
        let a = connect(server.local_addr());
        let a_id = opened(&reports);
        let b = connect(server.local_addr());
        let b_id = opened(&reports);
        Paired { server, a, b, a_id, b_id, reports }
    }
}

/// Waits for a report `want` picks, skipping `Input` reports.
#[track_caller]
fn expect(reports: &mpsc::Receiver<Report>, what: &str, want: impl Fn(&Report) -> bool) -> Report {
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match reports.recv_timeout(left) {
            Ok(report) if want(&report) => return report,
            Ok(Report::Input(..)) => {}
            Ok(other) => panic!("waiting for {what}, got {other:?}"),
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
}

#[track_caller]
fn opened(reports: &mpsc::Receiver<Report>) -> ConnId {
    match expect(reports, "on_open", |r| matches!(r, Report::Opened(_))) {
        Report::Opened(id) => id,
        _ => unreachable!(),
    }
}

/// The slot of an id (its low 32 bits, see `ConnId::as_u64`).
fn slot(id: ConnId) -> u32 {
    id.as_u64() as u32
}

fn lines_reach_the_pair(backend: Backend) {
    let mut t = Paired::start(backend);
    t.a.write_all(b"hello\n").unwrap();
    assert_eq!(read_line(&mut t.b), "hello\n");
    t.b.write_all(b"world\n").unwrap();
    assert_eq!(read_line(&mut t.a), "world\n");
    let lines: String = (0..1000).map(|i| format!("line {i}\n")).collect();
    t.a.write_all(lines.as_bytes()).unwrap();
    assert_eq!(read_n(&mut t.b, lines.len()), lines.as_bytes(), "every line, in order");
}

fn forward_to_moves_bytes_to_the_pair_byte_exact(backend: Backend) {
    let t = Paired::start(backend);
    let baseline = t.server.stats().pool_in_use;
    let (to_b, to_a) = (pattern(256 * 1024, 1), pattern(256 * 1024, 2));
    // Both directions at once, each from its own writer thread.
    let writers: Vec<_> = [(&t.a, to_b.clone()), (&t.b, to_a.clone())]
        .into_iter()
        .map(|(s, data)| {
            let mut w = s.try_clone().unwrap();
            std::thread::spawn(move || {
                w.write_all(b"!fwd\n").unwrap();
                w.write_all(&data).unwrap();
            })
        })
        .collect();
    let (mut a, mut b) = (t.a.try_clone().unwrap(), t.b.try_clone().unwrap());
    let at_a = std::thread::spawn(move || read_n(&mut a, 256 * 1024));
    let at_b = read_n(&mut b, to_b.len());
    drop(b);
    let at_a = at_a.join().unwrap();
    for w in writers {
        w.join().unwrap();
    }
    assert!(at_b == to_b, "A to B not byte-exact");
    assert!(at_a == to_a, "B to A not byte-exact");
    let Paired { server, a, b, .. } = t;
    drop((a, b));
    eventually(IO_TIMEOUT, "both closed, every buffer back", || {
        let s = server.stats();
        s.connections == 0 && s.pool_in_use <= baseline
    });
}

fn a_closed_pair_is_gone_and_the_input_stays(backend: Backend) {
    let mut t = Paired::start(backend);
    let b_id = t.b_id;
    drop(t.b);
    expect(&t.reports, "B closed", |r| *r == Report::Closed(b_id, CloseReason::PeerClosed));
    t.a.write_all(b"anyone?\n").unwrap();
    let gone = expect(&t.reports, "Gone", |r| matches!(r, Report::Gone { .. }));
    assert_eq!(
        gone,
        Report::Gone { peer: b_id, conn_gone: true, forward_gone: true, before: 8, after: 8 },
        "conn() and forward_to() say Gone and leave the input in place"
    );
    assert_eq!(read_n(&mut t.a, 13), b"gone:anyone?\n");
    // A command for B finds it gone too.
    t.a.write_all(b"!fwd\n").unwrap();
    assert_eq!(read_n(&mut t.a, 10), b"gone:!fwd\n");
    assert_eq!(t.server.stats().connections, 1, "A itself is untouched");
}

fn a_stale_id_does_not_reach_the_connection_in_its_slot(backend: Backend) {
    let mut t = Paired::start(backend);
    let (a_id, b_id) = (t.a_id, t.b_id);
    drop(t.b);
    expect(&t.reports, "B closed", |r| matches!(r, Report::Closed(id, _) if *id == b_id));
    let mut c = connect(t.server.local_addr());
    let c_id = opened(&t.reports);
    assert_eq!(slot(c_id), slot(b_id), "C takes B's slot ({c_id:?} after {b_id:?})");
    assert_ne!(c_id, b_id, "with a new generation");
    assert_ne!(slot(c_id), slot(a_id));
    // Every way A has of reaching B must find it gone, never reach C.
    for cmd in [&b"for b\n"[..], b"!pause\n", b"!close\n", b"!abort\n", b"!fwd\nbytes"] {
        t.a.write_all(cmd).unwrap();
        let gone = expect(&t.reports, "Gone", |r| matches!(r, Report::Gone { .. }));
        assert!(
            matches!(gone, Report::Gone { peer, conn_gone: true, forward_gone: true, .. } if peer == b_id),
            "{gone:?}"
        );
        let mut answer = b"gone:".to_vec();
        answer.extend_from_slice(cmd);
        assert_eq!(read_n(&mut t.a, answer.len()), answer);
    }
    assert_silent(&mut c, Duration::from_millis(300), "C, reached through B's stale id");
    // C is unharmed, still waiting for its own pair, and receiving from it.
    let mut d = connect(t.server.local_addr());
    opened(&t.reports);
    d.write_all(b"hi c\n").unwrap();
    assert_eq!(read_line(&mut c), "hi c\n");
}

fn close_of_the_pair_waits_for_its_output(backend: Backend) {
    let mut t = Paired::start(backend);
    let b_id = t.b_id;
    t.a.write_all(b"!close\n").unwrap();
    let (got, err) = read_to_end(&mut t.b);
    assert!(err.is_none(), "B must end with a clean EOF, got {err:?} after {} bytes", got.len());
    assert_eq!(got.len(), BIG, "B gets all of its output before the close");
    assert!(got == pattern(BIG, 11));
    expect(&t.reports, "B closed", |r| *r == Report::Closed(b_id, CloseReason::Local));
    t.a.write_all(b"x\n").unwrap();
    assert_eq!(read_n(&mut t.a, 7), b"gone:x\n", "A lives on");
}

fn abort_of_the_pair_drops_it_at_once(backend: Backend) {
    let mut t = Paired::start(backend);
    let b_id = t.b_id;
    let asked = Instant::now();
    t.a.write_all(b"!abort\n").unwrap();
    let (got, err) = read_to_end(&mut t.b);
    assert!(
        got.is_empty(),
        "output written before the abort is dropped, got {} bytes ({err:?})",
        got.len()
    );
    if let Some(err) = err {
        assert!(
            !matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            "B must be closed, not left open: {err}"
        );
    }
    assert!(asked.elapsed() < Duration::from_secs(2), "aborted after {:?}", asked.elapsed());
    expect(&t.reports, "B closed", |r| *r == Report::Closed(b_id, CloseReason::Local));
    t.a.write_all(b"x\n").unwrap();
    assert_eq!(read_n(&mut t.a, 7), b"gone:x\n", "A lives on");
}

fn pause_and_resume_the_pair(backend: Backend) {
    let mut t = Paired::start(backend);
    let b_id = t.b_id;
    t.a.write_all(b"!pause\n").unwrap();
    assert_eq!(read_line(&mut t.a), "paused\n");
    let _ = t.reports.try_iter().count();
    let lines: String = (0..200).map(|i| format!("while paused {i}\n")).collect();
    t.b.write_all(lines.as_bytes()).unwrap();
    assert_silent(&mut t.a, Duration::from_millis(300), "A, while B is paused");
    let seen: Vec<Report> = t.reports.try_iter().collect();
    assert!(
        !seen.iter().any(|r| matches!(r, Report::Input(id, _) if *id == b_id)),
        "on_data saw B's bytes while B was paused: {seen:?}"
    );
    t.a.write_all(b"!resume\n").unwrap();
    assert_eq!(read_line(&mut t.a), "resumed\n");
    assert_eq!(read_n(&mut t.a, lines.len()), lines.as_bytes(), "all of it, in order");
    // And receiving goes on as before.
    t.b.write_all(b"after\n").unwrap();
    assert_eq!(read_line(&mut t.a), "after\n");
}

/// Reads everything, however the stream ends (EOF or reset); the bytes.
fn drain(s: &mut TcpStream) -> usize {
    let (got, err) = read_to_end(s);
    if let Some(err) = err {
        assert!(
            !matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            "expected the server to end the stream: {err}"
        );
    }
    got.len()
}

/// A round trip on a fresh connection makes the worker turn (io_uring
/// refills its buffer ring at the start of a turn, after the stats of the
/// last one were published), then the pool must be back to `idle`.
#[track_caller]
fn pool_back_to(server: &ServerHandle, reports: &mpsc::Receiver<Report>, idle: usize) {
    let mut probe = connect(server.local_addr());
    opened(reports);
    let mut partner = connect(server.local_addr());
    opened(reports);
    probe.write_all(b"ping\n").unwrap();
    assert_eq!(read_line(&mut partner), "ping\n");
    drop((probe, partner));
    eventually(IO_TIMEOUT, "every pool buffer back", || {
        let s = server.stats();
        s.connections <= 1 && s.pool_in_use == idle
    });
}

fn abort_drops_output_in_flight_and_its_buffers(backend: Backend) {
    let mut t = Paired::start(backend);
    let idle = t.server.stats().pool_in_use;
    let b_id = t.b_id;
    // 16 MiB for B, whose client does not read: the kernel takes a few MiB,
    // the rest stays with the server, some of it in the driver's hands.
    t.a.write_all(&b"!flood\n".repeat(4)).unwrap();
    for _ in 0..4 {
        assert_eq!(read_line(&mut t.a), "flooded\n");
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(t.server.stats().pool_in_use > idle + 100, "B's output is held by the server");
    let asked = Instant::now();
    t.a.write_all(b"!abort\n").unwrap();
    expect(&t.reports, "B closed", |r| *r == Report::Closed(b_id, CloseReason::Local));
    assert!(asked.elapsed() < Duration::from_secs(1), "aborted after {:?}", asked.elapsed());
    let got = drain(&mut t.b);
    eprintln!("B got {got} of {} bytes before the abort", 4 * FLOOD);
    assert!(got <= 3 * FLOOD, "B got {got} bytes: its pending output was not dropped");
    t.a.write_all(b"x\n").unwrap();
    assert_eq!(read_n(&mut t.a, 7), b"gone:x\n");
    expect(&t.reports, "Gone", |r| matches!(r, Report::Gone { .. }));
    pool_back_to(&t.server, &t.reports, idle);
}

fn close_of_a_paused_pair_does_not_wait_out_the_linger(backend: Backend) {
    let mut t = Paired::start(backend);
    let b_id = t.b_id;
    t.a.write_all(b"!pause\n").unwrap();
    assert_eq!(read_line(&mut t.a), "paused\n");
    t.a.write_all(b"!close\n").unwrap();
    assert_eq!(drain(&mut t.b), BIG);
    let eof = Instant::now();
    drop(t.b);
    expect(&t.reports, "B closed", |r| *r == Report::Closed(b_id, CloseReason::Local));
    assert!(
        eof.elapsed() < Duration::from_secs(1),
        "closed {:?} after its peer's EOF: the linger did not see it",
        eof.elapsed()
    );
}

/// Forwarding into a pair whose client does not read: with the sender as
/// the pair's feeder, the sender stops receiving while the pair's output
/// is over the high-water mark, so the server holds a bounded amount;
/// every byte arrives once the pair's client reads.
fn a_slow_pair_pauses_its_feeder(backend: Backend) {
    const HIGH: usize = 256 * 1024;
    const LOW: usize = 64 * 1024;
    const BUF: usize = 16 * 1024;
    const PER_TURN: usize = 16;
    let mut epoll = pollring::EpollConfig::default();
    epoll.recv_budget = PER_TURN;
    let mut uring = pollring::UringConfig::default();
    uring.buf_ring_entries = PER_TURN as u32;
    let mut t = Paired::start_with(
        config(backend).buf_size(BUF).high_water(HIGH).low_water(LOW).epoll(epoll).uring(uring),
    );
    t.a.write_all(b"!feed\n").unwrap();
    assert_eq!(read_line(&mut t.a), "feeding\n");
    let data = pattern(16 << 20, 12);
    let mut w = t.a.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        w.write_all(b"!fwd\n").unwrap();
        w.write_all(&sent).unwrap();
    });
    std::thread::sleep(Duration::from_millis(700));
    // The pair's output, plus what one turn can receive before the pause.
    let bound = HIGH + PER_TURN * BUF;
    let stalled = t.server.stats().buffered_peak;
    assert!(stalled <= bound, "buffered {stalled} bytes for the pair, bound {bound}");
    let got = read_n(&mut t.b, data.len());
    writer.join().unwrap();
    assert!(got == data, "every byte, in order, after the stall");
    let peak = t.server.stats().buffered_peak;
    assert!(peak <= bound, "peak {peak} over {bound} while draining");
}

/// A feeder paused for its pair's output must not stay paused when that
/// pair goes away with the output still pending.
fn a_feeder_resumes_when_its_pair_goes(backend: Backend) {
    let mut t = Paired::start(backend);
    let b_id = t.b_id;
    t.a.write_all(b"!feed\n").unwrap();
    assert_eq!(read_line(&mut t.a), "feeding\n");
    // 16 MiB for B, whose client does not read: far over the high-water
    // mark, so A stops receiving.
    t.a.write_all(&b"!flood\n".repeat(4)).unwrap();
    for _ in 0..4 {
        assert_eq!(read_line(&mut t.a), "flooded\n");
    }
    t.a.write_all(b"y\n").unwrap();
    assert_silent(&mut t.a, Duration::from_millis(300), "A, paused while B's output is high");
    // B's client resets: B closes, its pending output dropped.
    socket2::SockRef::from(&t.b).set_linger(Some(Duration::ZERO)).unwrap();
    drop(t.b);
    expect(&t.reports, "B closed", |r| matches!(r, Report::Closed(id, _) if *id == b_id));
    t.a.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut answer = [0u8; 7];
    let read = std::io::Read::read_exact(&mut t.a, &mut answer);
    assert!(read.is_ok(), "A is still paused 2 s after its pair closed: {read:?}");
    assert_eq!(&answer, b"gone:y\n");
}

on_both_backends!(
    lines_reach_the_pair,
    forward_to_moves_bytes_to_the_pair_byte_exact,
    a_closed_pair_is_gone_and_the_input_stays,
    a_stale_id_does_not_reach_the_connection_in_its_slot,
    close_of_the_pair_waits_for_its_output,
    abort_of_the_pair_drops_it_at_once,
    pause_and_resume_the_pair,
    abort_drops_output_in_flight_and_its_buffers,
    close_of_a_paused_pair_does_not_wait_out_the_linger,
    a_slow_pair_pauses_its_feeder,
    a_feeder_resumes_when_its_pair_goes,
);
