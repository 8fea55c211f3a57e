//! Graceful shutdown: accepts stop, queued output drains, then connections close.

#[macro_use]
mod util;

use std::io::Write;
use std::time::Duration;

use pollring::{Backend, Cx, Drain, Handler};
use util::*;

const BLOB: usize = 8 << 20;

/// On `go`, writes 8 MiB at once: far more than the socket buffers hold, so
/// most of it is still queued when shutdown begins.
struct Blob;

impl Handler for Blob {
    type Conn = ();
    type Message = ();
    fn on_open(&mut self, _cx: &mut Cx<'_>) {}
    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        if cx.input().peek(2) == Some(b"go") {
            cx.consume(2);
            let data = pattern(BLOB, 11);
            cx.write(&data);
        }
    }
}

fn graceful_shutdown_delivers_queued_output(backend: Backend) {
    let server = start(
        config(backend)
            .high_water(64 << 20)
            .low_water(1 << 20)
            .shutdown_grace(Duration::from_secs(10)),
        |_| Blob,
    );
    let addr = server.local_addr();
    let mut s = connect(addr);
    s.write_all(b"go").unwrap();
    let first = read_n(&mut s, 1000);
    // Shut down while ~8 MiB are still queued on the server.
    let trigger = server.trigger();
    trigger.shutdown();
    let (rest, err) = read_to_end(&mut s);
    assert!(err.is_none(), "clean EOF expected, got {err:?}");
    let mut got = first;
    got.extend_from_slice(&rest);
    assert_eq!(got.len(), BLOB, "every queued byte is delivered before close");
    assert!(got == pattern(BLOB, 11));
    // The server lingers for our EOF after its FIN (see close_drained): close.
    drop(s);
    let t = std::time::Instant::now();
    server.wait().expect("workers stop cleanly");
    assert!(t.elapsed() < Duration::from_secs(1), "the linger ends at the peer's EOF");
    // Accepting stopped: the port no longer takes connections.
    assert!(std::net::TcpStream::connect(addr).is_err(), "listener closed after shutdown");
}

fn shutdown_with_idle_connections_is_prompt(backend: Backend) {
    let server = start(config(backend).workers(2), |_| Echo);
    let clients: Vec<_> = (0..20).map(|_| connect(server.local_addr())).collect();
    eventually(IO_TIMEOUT, "connections registered", || server.stats().connections == 20);
    let t = std::time::Instant::now();
    server.wait_after_shutdown();
    assert!(t.elapsed() < Duration::from_secs(3), "idle connections close at once");
    drop(clients);
}

/// Answers the first input with `bye` and closes.
struct Bye;

impl Handler for Bye {
    type Conn = ();
    type Message = ();
    fn on_open(&mut self, _cx: &mut Cx<'_>) {}
    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        if !cx.input().is_empty() {
            cx.write(b"bye");
            cx.close();
        }
    }
}

fn shutdown_does_not_stall_a_lingering_close(backend: Backend) {
    let server = start(config(backend), |_| Bye);
    let mut s = connect(server.local_addr());
    s.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut s, 3), b"bye");
    // The server has sent FIN and lingers for our EOF. Shut down now, then
    // close: the linger must still see the EOF and end at once.
    std::thread::sleep(Duration::from_millis(50));
    let trigger = server.trigger();
    trigger.shutdown();
    std::thread::sleep(Duration::from_millis(50));
    drop(s);
    let t = std::time::Instant::now();
    server.wait().expect("clean stop");
    assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());
}

/// Answers each `q` with `a`, or with `A` once the server drains, and then
/// closes: it finishes its connections itself ([`Drain::Finish`]).
struct Finishes;

impl Handler for Finishes {
    type Conn = ();
    type Message = ();
    fn on_open(&mut self, _cx: &mut Cx<'_>) {}
    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        while cx.input().peek(1) == Some(b"q") {
            cx.consume(1);
            if cx.is_draining() {
                cx.write(b"A");
                cx.close();
                return;
            }
            cx.write(b"a");
        }
    }
    fn on_shutdown(&mut self, _conn: &mut (), _cx: &mut Cx<'_>) -> Drain {
        Drain::Finish
    }
}

fn a_finishing_handler_answers_once_more_then_closes(backend: Backend) {
    let server = start(config(backend).shutdown_grace(Duration::from_millis(1500)), |_| Finishes);
    let addr = server.local_addr();
    let (mut asks, mut idle) = (connect(addr), connect(addr));
    asks.write_all(b"q").unwrap();
    assert_eq!(read_n(&mut asks, 1), b"a");
    eventually(IO_TIMEOUT, "both registered", || server.stats().connections == 2);
    let trigger = server.trigger();
    trigger.shutdown();
    // Not closed while idle between requests.
    assert_silent(&mut asks, Duration::from_millis(300), "an idle connection left open");
    assert!(std::net::TcpStream::connect(addr).is_err(), "accepting stopped");
    asks.write_all(b"q").unwrap();
    let (rest, err) = read_to_end(&mut asks);
    assert!(err.is_none(), "clean EOF expected, got {err:?}");
    assert_eq!(rest, b"A", "the next request is answered, then the connection closes");
    // One that never asks again is closed when the grace period ends.
    let t = std::time::Instant::now();
    let (rest, _) = read_to_end(&mut idle);
    assert!(rest.is_empty());
    assert!(t.elapsed() > Duration::from_millis(500), "closed at the grace period's end");
    drop((asks, idle));
    server.wait().expect("clean stop");
}

trait WaitAfterShutdown {
    fn wait_after_shutdown(self);
}

impl WaitAfterShutdown for pollring::ServerHandle {
    fn wait_after_shutdown(self) {
        self.shutdown();
        self.wait().expect("clean stop");
    }
}

on_both_backends!(
    graceful_shutdown_delivers_queued_output,
    shutdown_with_idle_connections_is_prompt,
    shutdown_does_not_stall_a_lingering_close,
    a_finishing_handler_answers_once_more_then_closes,
);
