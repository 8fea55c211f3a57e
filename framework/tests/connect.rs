//! Outbound connections: `Cx::connect` opens an ordinary connection whose
//! `on_open` names its opener, with what was written while connecting
//! delivered after; a refused, timed-out, closed-while-connecting or
//! shut-down connect reports `on_connect_error` instead.

#[macro_use]
mod util;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pollring::{Backend, ConnId, ConnectError, Cx, Handler, ServerHandle, WorkerCx};
use util::*;

#[derive(Debug, PartialEq, Eq)]
enum Report {
    /// A client connection was accepted.
    Accepted(ConnId),
    /// A client asked for an outbound connection.
    Dialing { id: ConnId, opener: ConnId },
    /// An outbound connection opened (`on_open`).
    Opened { id: ConnId, opener: Option<ConnId>, peer: Option<SocketAddr> },
    /// An outbound connection did not open (`on_connect_error`).
    Failed { id: ConnId, opener: Option<ConnId>, error: &'static str, addr: SocketAddr },
}

/// What [`ConnectError`] was reported, as a word.
fn kind(error: &ConnectError) -> &'static str {
    match error {
        ConnectError::Refused { .. } => "refused",
        ConnectError::TimedOut { .. } => "timed-out",
        ConnectError::Aborted { .. } => "aborted",
        ConnectError::Io { .. } => "io",
        _ => "other",
    }
}

/// A line protocol for clients: `dial ADDR MS` connects to ADDR with a
/// timeout of MS milliseconds and writes `hello upstream` and [`QUEUED`]
/// bytes to it at once (queued until it connects), answered `dialing`, then `open` or `error
/// KIND`; `cancel` closes the outbound connection (`cancelled`); any other
/// line goes to the outbound connection, and what it receives comes back.
/// Bytes written to an outbound connection while it connects, after its
/// `hello upstream` line.
const QUEUED: usize = 256 * 1024;

struct Dialer {
    /// Client connection → its outbound connection.
    dialed: HashMap<ConnId, ConnId>,
    report: mpsc::Sender<Report>,
}

struct Side {
    /// For an outbound connection, the client that asked for it.
    opener: Option<ConnId>,
}

impl Handler for Dialer {
    type Conn = Side;
    type Message = ();

    fn on_open(&mut self, cx: &mut Cx<'_>) -> Side {
        let Some(opener) = cx.opener() else {
            let _ = self.report.send(Report::Accepted(cx.id()));
            return Side { opener: None };
        };
        let (id, peer) = (cx.id(), cx.peer_addr());
        let _ = self.report.send(Report::Opened { id, opener: Some(opener), peer });
        if let Ok(mut client) = cx.conn(opener) {
            let _ = client.write(b"open\n");
        }
        Side { opener: Some(opener) }
    }

    fn on_data(&mut self, side: &mut Side, cx: &mut Cx<'_>) {
        if let Some(opener) = side.opener {
            let n = cx.input().len();
            if cx.forward_to(opener, n).is_err() {
                cx.consume(n);
            }
            return;
        }
        let me = cx.id();
        while let Some(end) = cx.input().find(0, b'\n') {
            let line = String::from_utf8_lossy(cx.input().peek(end + 1).unwrap()).into_owned();
            let words: Vec<&str> = line.split_whitespace().collect();
            match words[..] {
                ["dial", addr, ms] => {
                    cx.consume(end + 1);
                    let addr: SocketAddr = addr.parse().expect("an address");
                    let timeout = Duration::from_millis(ms.parse().expect("milliseconds"));
                    let id = cx.connect(addr, timeout);
                    self.dialed.insert(me, id);
                    let _ = self.report.send(Report::Dialing { id, opener: me });
                    let queued = cx.conn(id).and_then(|mut up| {
                        up.write(b"hello upstream\n")?;
                        up.write(&pattern(QUEUED, 13))
                    });
                    assert_eq!(queued, Ok(()), "a connecting connection takes writes");
                    cx.write(b"dialing\n");
                }
                ["cancel"] => {
                    cx.consume(end + 1);
                    let closed =
                        self.dialed.get(&me).map(|&id| cx.conn(id).and_then(|mut c| c.close()));
                    match closed {
                        Some(Ok(())) => cx.write(b"cancelled\n"),
                        _ => cx.write(b"nothing to cancel\n"),
                    }
                }
                _ => {
                    let Some(&up) = self.dialed.get(&me) else { return };
                    if cx.forward_to(up, end + 1).is_err() {
                        cx.consume(end + 1);
                        cx.write(b"upstream gone\n");
                    }
                }
            }
        }
    }

    fn on_connect_error(
        &mut self,
        cx: &mut WorkerCx<'_>,
        id: ConnId,
        opener: Option<ConnId>,
        error: ConnectError,
    ) {
        let _ = self.report.send(Report::Failed {
            id,
            opener,
            error: kind(&error),
            addr: error.addr(),
        });
        if let Some(mut client) = opener.and_then(|o| cx.conn(o).ok()) {
            let _ = client.write(format!("error {}\n", kind(&error)).as_bytes());
        }
    }
}

/// A server running [`Dialer`] and one client, past its greeting.
struct Setup {
    server: ServerHandle,
    client: TcpStream,
    client_id: ConnId,
    reports: mpsc::Receiver<Report>,
}

impl Setup {
    #[track_caller]
    fn start(backend: Backend) -> Setup {
        let (tx, reports) = mpsc::channel();
        let server =
            start(config(backend), move |_| Dialer { dialed: HashMap::new(), report: tx.clone() });
        let client = connect(server.local_addr());
        let Report::Accepted(client_id) = next(&reports) else { panic!("expected Accepted") };
        Setup { server, client, client_id, reports }
    }

    /// Asks for an outbound connection; returns its id.
    #[track_caller]
    fn dial(&mut self, to: SocketAddr, timeout_ms: u64) -> ConnId {
        self.client.write_all(format!("dial {to} {timeout_ms}\n").as_bytes()).unwrap();
        assert_eq!(read_line(&mut self.client), "dialing\n");
        match next(&self.reports) {
            Report::Dialing { id, opener } if opener == self.client_id => id,
            other => panic!("expected Dialing by {:?}, got {other:?}", self.client_id),
        }
    }

    /// After a failed connect: the client's lines find the upstream gone,
    /// and the pool is back to `idle` (the queued write was freed).
    #[track_caller]
    fn pool_back_to(&mut self, idle: usize) {
        // The round trip also makes the worker turn: io_uring refills its
        // buffer ring at the start of a turn, after the last stats were
        // published.
        self.client.write_all(b"ping\n").unwrap();
        assert_eq!(read_line(&mut self.client), "upstream gone\n");
        eventually(IO_TIMEOUT, "every pool buffer back", || {
            self.server.stats().pool_in_use == idle
        });
    }

    #[track_caller]
    fn failed(&self, id: ConnId, error: &'static str, addr: SocketAddr) {
        let want = Report::Failed { id, opener: Some(self.client_id), error, addr };
        assert_eq!(next(&self.reports), want);
    }
}

/// Accepts one connection, or fails after [`IO_TIMEOUT`].
#[track_caller]
fn accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let until = Instant::now() + IO_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                return s;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(Instant::now() < until, "no connection to accept");
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("accept: {e}"),
        }
    }
}

/// An address where a connect neither completes nor fails for a while: a
/// listener that never accepts, its accept queue (backlog 0: one
/// connection) filled, so the kernel drops further SYNs and the connector
/// retransmits. `None` if this kernel answers them after all. Keep the
/// returned sockets until done.
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
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Some((listener, fillers, addr));
            }
            Err(e) => panic!("filling the backlog: {e}"),
        }
    }
    None
}

/// An address nothing listens on.
fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn an_outbound_connection_opens_with_its_opener(backend: Backend) {
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = upstream.local_addr().unwrap();
    let mut t = Setup::start(backend);
    let id = t.dial(to, 2000);
    let mut up = accept(&upstream);
    assert_eq!(read_line(&mut up), "hello upstream\n", "written while connecting, sent after");
    assert!(read_n(&mut up, QUEUED) == pattern(QUEUED, 13), "all of it, byte-exact");
    assert_eq!(read_line(&mut t.client), "open\n");
    assert_eq!(
        next(&t.reports),
        Report::Opened { id, opener: Some(t.client_id), peer: Some(to) },
        "on_open runs for it, with cx.opener() the connection that asked"
    );
    up.write_all(b"hi back\n").unwrap();
    assert_eq!(read_line(&mut t.client), "hi back\n");
    t.client.write_all(b"to upstream\n").unwrap();
    assert_eq!(read_line(&mut up), "to upstream\n");
    // What the outbound connection receives is forwarded to its opener.
    let data = pattern(200_000, 9);
    let mut w = up.try_clone().unwrap();
    let sent = data.clone();
    let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
    let got = read_n(&mut t.client, data.len());
    writer.join().unwrap();
    assert!(got == data, "200 KB through the outbound connection, byte-exact");
    drop(up);
    eventually(IO_TIMEOUT, "the outbound connection closed", || t.server.stats().connections == 1);
}

fn a_refused_connect_reports_refused(backend: Backend) {
    let mut t = Setup::start(backend);
    let idle = t.server.stats().pool_in_use;
    let to = closed_port();
    let id = t.dial(to, 2000);
    assert_eq!(read_line(&mut t.client), "error refused\n");
    t.failed(id, "refused", to);
    eventually(IO_TIMEOUT, "only the client is left", || t.server.stats().connections == 1);
    // The client goes on, and can dial again.
    let id = t.dial(to, 2000);
    assert_eq!(read_line(&mut t.client), "error refused\n");
    t.failed(id, "refused", to);
    t.pool_back_to(idle);
}

fn a_connect_that_hangs_times_out(backend: Backend) {
    let Some((_listener, _fillers, to)) = unanswered() else {
        panic!("this kernel answers SYNs past a full accept queue: no hanging connect here");
    };
    let mut t = Setup::start(backend);
    let idle = t.server.stats().pool_in_use;
    let asked = Instant::now();
    let id = t.dial(to, 200);
    assert_eq!(read_line(&mut t.client), "error timed-out\n");
    let took = asked.elapsed();
    eprintln!("connect timeout of 200 ms reported after {took:?}");
    assert!(
        (Duration::from_millis(150)..Duration::from_millis(1000)).contains(&took),
        "TimedOut after {took:?}"
    );
    t.failed(id, "timed-out", to);
    eventually(IO_TIMEOUT, "only the client is left", || t.server.stats().connections == 1);
    t.pool_back_to(idle);
}

fn closing_a_connecting_connection_reports_aborted(backend: Backend) {
    let mut t = Setup::start(backend);
    let idle = t.server.stats().pool_in_use;
    // Closed in the same callback that asked for it: before any turn.
    let upstream = TcpListener::bind("127.0.0.1:0").unwrap();
    let to = upstream.local_addr().unwrap();
    t.client.write_all(format!("dial {to} 2000\ncancel\n").as_bytes()).unwrap();
    assert_eq!(read_line(&mut t.client), "dialing\n");
    assert_eq!(read_line(&mut t.client), "cancelled\n");
    assert_eq!(read_line(&mut t.client), "error aborted\n");
    let Report::Dialing { id, .. } = next(&t.reports) else { panic!("expected Dialing") };
    t.failed(id, "aborted", to);
    // Closed while the kernel is still trying.
    let Some((_listener, _fillers, to)) = unanswered() else {
        panic!("this kernel answers SYNs past a full accept queue: no hanging connect here");
    };
    let id = t.dial(to, 10_000);
    std::thread::sleep(Duration::from_millis(100));
    t.client.write_all(b"cancel\n").unwrap();
    assert_eq!(read_line(&mut t.client), "cancelled\n");
    assert_eq!(read_line(&mut t.client), "error aborted\n");
    t.failed(id, "aborted", to);
    eventually(IO_TIMEOUT, "only the client is left", || t.server.stats().connections == 1);
    assert_silent(&mut t.client, Duration::from_millis(100), "one report per connect");
    t.pool_back_to(idle);
}

fn shutdown_aborts_a_connecting_connection(backend: Backend) {
    let Some((_listener, _fillers, to)) = unanswered() else {
        panic!("this kernel answers SYNs past a full accept queue: no hanging connect here");
    };
    let mut t = Setup::start(backend);
    let id = t.dial(to, 10_000);
    let asked = Instant::now();
    t.server.shutdown();
    match t.reports.recv_timeout(Duration::from_secs(5)) {
        Ok(report) => {
            assert_eq!(
                report,
                Report::Failed { id, opener: Some(t.client_id), error: "aborted", addr: to }
            )
        }
        Err(e) => panic!("no on_connect_error within 5 s of the shutdown: {e}"),
    }
    let Setup { server, .. } = t;
    server.wait().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(5), "shutdown took {:?}", asked.elapsed());
}

on_both_backends!(
    an_outbound_connection_opens_with_its_opener,
    a_refused_connect_reports_refused,
    a_connect_that_hangs_times_out,
    closing_a_connecting_connection_reports_aborted,
    shutdown_aborts_a_connecting_connection,
);
