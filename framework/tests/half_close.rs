//! Half-close is a state, not a close: by default a connection closes once
//! its answer to the peer's FIN is written; with `set_half_close(true)` it
//! keeps writing after the FIN until the handler ends it; and
//! `shutdown_write` sends FIN while reading goes on.

#[macro_use]
mod util;

use std::io::Write;
use std::net::Shutdown;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pollring::{Backend, CloseReason, Cx, Gone, Handler};
use util::*;

#[derive(Debug, PartialEq, Eq)]
enum Report {
    /// `on_data` saw the peer's FIN, after this many bytes.
    Fin(usize),
    /// After `shutdown_write`: what writing to itself through `ConnMut`
    /// answered.
    WriteAfterShutdown(Result<(), Gone>),
    Closed(CloseReason),
}

/// How a connection ends after the peer's FIN, with half-close on.
#[derive(Clone, Copy)]
enum End {
    Close,
    ShutdownWrite,
}

/// Counts the bytes a connection receives. At the peer's FIN it answers
/// `got N` and sets a timer; the timer writes `later`, and the next one
/// `last` and ends the connection (`end`). A line `bye` is answered
/// `bye to you`, then the connection shuts down its writing side and
/// counts on.
struct Tally {
    half_close: bool,
    end: End,
    /// Whether a connection that shut down its writing side still tries
    /// to answer the FIN (the write must be discarded).
    answer_after_shutdown: bool,
    report: mpsc::Sender<Report>,
}

#[derive(Default)]
struct Count {
    bytes: usize,
    timers: u32,
    shut: bool,
}

impl Handler for Tally {
    type Conn = Count;
    type Message = ();

    fn on_open(&mut self, cx: &mut Cx<'_>) -> Count {
        cx.set_half_close(self.half_close);
        Count::default()
    }

    fn on_data(&mut self, count: &mut Count, cx: &mut Cx<'_>) {
        if !count.shut && cx.input().peek(4) == Some(b"bye\n") {
            cx.consume(4);
            cx.write(b"bye to you\n");
            cx.shutdown_write();
            count.shut = true;
            cx.write(b"discarded\n");
            let me = cx.id();
            let answer = cx.conn(me).and_then(|mut c| c.write(b"discarded too\n"));
            let _ = self.report.send(Report::WriteAfterShutdown(answer));
        }
        count.bytes += cx.input().len();
        let n = cx.input().len();
        cx.consume(n);
        if cx.is_read_closed() {
            let _ = self.report.send(Report::Fin(count.bytes));
            if !count.shut || self.answer_after_shutdown {
                cx.write(format!("got {}\n", count.bytes).as_bytes());
            }
            cx.set_timer(Duration::from_millis(100));
        }
    }

    fn on_timer(&mut self, count: &mut Count, cx: &mut Cx<'_>) {
        count.timers += 1;
        if count.timers == 1 {
            cx.write(b"later\n");
            cx.set_timer(Duration::from_millis(50));
            return;
        }
        cx.write(b"last\n");
        match self.end {
            End::Close => cx.close(),
            End::ShutdownWrite => cx.shutdown_write(),
        }
    }

    fn on_close(&mut self, _: Count, _cx: &mut Cx<'_>, reason: CloseReason) {
        let _ = self.report.send(Report::Closed(reason));
    }
}

fn serve(
    backend: Backend,
    half_close: bool,
    end: End,
    answer_after_shutdown: bool,
) -> (pollring::ServerHandle, mpsc::Receiver<Report>) {
    let (tx, rx) = mpsc::channel();
    let server = start(config(backend), move |_| Tally {
        half_close,
        end,
        answer_after_shutdown,
        report: tx.clone(),
    });
    (server, rx)
}

/// Sends `n` bytes, then FIN; reads the whole answer, which must end in a
/// clean EOF. Returns it and when it ended.
#[track_caller]
fn send_then_fin(addr: std::net::SocketAddr, n: usize) -> (String, Duration) {
    let mut c = connect(addr);
    c.write_all(&pattern(n, 4)).unwrap();
    let fin = Instant::now();
    c.shutdown(Shutdown::Write).unwrap();
    let (got, err) = read_to_end(&mut c);
    assert!(err.is_none(), "the answer must end in a clean EOF: {err:?}");
    (String::from_utf8(got).unwrap(), fin.elapsed())
}

fn by_default_the_answer_to_the_fin_is_the_last(backend: Backend) {
    let (server, reports) = serve(backend, false, End::Close, false);
    let (answer, took) = send_then_fin(server.local_addr(), 50_000);
    assert_eq!(answer, "got 50000\n", "the timer never fires: the connection closed");
    assert!(took < Duration::from_millis(100), "closed {took:?} after the FIN, not at once");
    assert_eq!(next(&reports), Report::Fin(50_000));
    assert_eq!(next(&reports), Report::Closed(CloseReason::PeerClosed));
    eventually(IO_TIMEOUT, "released", || server.stats().connections == 0);
}

fn half_close_keeps_writing_after_the_fin(backend: Backend) {
    let (server, reports) = serve(backend, true, End::Close, false);
    let (answer, took) = send_then_fin(server.local_addr(), 50_000);
    assert_eq!(answer, "got 50000\nlater\nlast\n", "written after the FIN, from timers");
    assert!(took >= Duration::from_millis(150), "ended {took:?} after the FIN, before its timers");
    assert_eq!(next(&reports), Report::Fin(50_000), "on_data sees the FIN once");
    assert_eq!(next(&reports), Report::Closed(CloseReason::Local));
    eventually(IO_TIMEOUT, "released", || server.stats().connections == 0);
}

fn half_close_ends_with_shutdown_write_too(backend: Backend) {
    let (server, reports) = serve(backend, true, End::ShutdownWrite, false);
    let (answer, _) = send_then_fin(server.local_addr(), 10);
    assert_eq!(answer, "got 10\nlater\nlast\n");
    assert_eq!(next(&reports), Report::Fin(10));
    assert_eq!(next(&reports), Report::Closed(CloseReason::Local), "both sides done: closed");
    eventually(IO_TIMEOUT, "released", || server.stats().connections == 0);
}

/// After `shutdown_write` the server's side is done (its answer, then EOF)
/// while it still reads; the peer's FIN then closes the connection, whether
/// or not `on_data` tries to write at that FIN (a write that is discarded).
fn shutdown_write_then_the_peers_fin(backend: Backend, answer_after_shutdown: bool) {
    let (server, reports) = serve(backend, false, End::Close, answer_after_shutdown);
    let mut c = connect(server.local_addr());
    c.write_all(b"bye\n").unwrap();
    let mut r = c.try_clone().unwrap();
    let (got, err) = read_to_end(&mut r);
    assert!(err.is_none(), "a clean EOF: {err:?}");
    assert_eq!(got, b"bye to you\n", "writes after shutdown_write are discarded");
    assert_eq!(next(&reports), Report::WriteAfterShutdown(Err(Gone)));
    // It still reads what this side sends.
    let data = pattern(100_000, 6);
    c.write_all(&data).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(server.stats().connections, 1, "still open for reading");
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(next(&reports), Report::Fin(100_000), "every byte counted after shutdown_write");
    let closed = reports.recv_timeout(Duration::from_secs(2));
    assert_eq!(
        closed,
        Ok(Report::Closed(CloseReason::PeerClosed)),
        "both sides are done: closed at once, cleanly"
    );
    eventually(IO_TIMEOUT, "released", || server.stats().connections == 0);
}

fn shutdown_write_sends_fin_and_reading_goes_on(backend: Backend) {
    shutdown_write_then_the_peers_fin(backend, false);
}

fn a_write_at_the_fin_after_shutdown_write_is_discarded(backend: Backend) {
    shutdown_write_then_the_peers_fin(backend, true);
}

on_both_backends!(
    by_default_the_answer_to_the_fin_is_the_last,
    half_close_keeps_writing_after_the_fin,
    half_close_ends_with_shutdown_write_too,
    shutdown_write_sends_fin_and_reading_goes_on,
    a_write_at_the_fin_after_shutdown_write_is_discarded,
);
