//! Regressions found in review of the lifecycle / connect / feeder change
//! (89ff113..). Each test fails on the code it was written against; each
//! names the failing sequence in its doc comment.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pollring::testing::{config, connect, eventually, start};
use pollring::{Backend, ConnId, ConnectError, Cx, Handler, WorkerCx};

/// A loopback address nothing listens on.
fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Shared between a test and its handler.
#[derive(Default)]
struct Shared {
    /// The test asks the handler to start connecting.
    go: AtomicBool,
    /// The handler must stop reconnecting (the test's own escape hatch).
    give_up: AtomicBool,
    /// `on_connect_error` calls per outbound id.
    errors: Mutex<HashMap<ConnId, usize>>,
    error_calls: AtomicUsize,
}

/// Never consumes input: a client that sends a byte makes its connection
/// non-idle, so a shutdown drains and lingers it until the grace deadline.
struct Dialer {
    shared: Arc<Shared>,
    target: SocketAddr,
    /// Reconnect from `on_connect_error` (a pool keeping an upstream).
    reconnect: bool,
    /// Connect from every tick once `go` is set.
    connect_on_tick: bool,
}

impl Handler for Dialer {
    type Conn = ();
    type Message = ();

    fn on_open(&mut self, cx: &mut Cx<'_>) {
        if self.reconnect && cx.opener().is_none() && self.shared.go.load(Ordering::SeqCst) {
            cx.connect(self.target, Duration::from_secs(5));
        }
    }

    fn on_data(&mut self, _: &mut (), _: &mut Cx<'_>) {}

    fn on_connect_error(
        &mut self,
        cx: &mut WorkerCx<'_>,
        id: ConnId,
        _opener: Option<ConnId>,
        _error: ConnectError,
    ) {
        *self.shared.errors.lock().unwrap().entry(id).or_default() += 1;
        self.shared.error_calls.fetch_add(1, Ordering::SeqCst);
        if self.reconnect && !self.shared.give_up.load(Ordering::SeqCst) {
            cx.connect(self.target, Duration::from_secs(5));
        }
    }

    fn on_tick(&mut self, cx: &mut WorkerCx<'_>) -> Option<Duration> {
        if self.connect_on_tick && self.shared.go.load(Ordering::SeqCst) {
            cx.connect(self.target, Duration::from_secs(5));
        }
        // Every turn: so the tick always runs in the turn the shutdown
        // grace period ends, just before its forced closes.
        Some(Duration::ZERO)
    }
}

/// Sequence: shutdown begins with a lingering connection (grace 300 ms);
/// in the turn the grace period ends, `on_tick` calls `connect` (queued in
/// `st.connects`, no token yet), then `timers()` force-closes every id,
/// including the new one: `fail_connect` -> release -> `on_connect_error`
/// (1st); then `flush()` -> `settle()` finds it still in `st.connects` and,
/// shutting down, calls `fail_connect` for the freed id -> `on_connect_error`
/// (2nd) for the same `ConnId`.
/// Expected: one `on_connect_error` per outbound connection.
fn connect_made_in_the_grace_deadline_turn_fails_once(backend: Backend) {
    let shared = Arc::new(Shared::default());
    let target = refused_addr();
    let s2 = shared.clone();
    let server = start(config(backend).shutdown_grace(Duration::from_millis(300)), move |_| {
        Dialer { shared: s2.clone(), target, reconnect: false, connect_on_tick: true }
    });
    let mut client = connect(server.local_addr());
    client.write_all(b"x").unwrap();
    eventually(Duration::from_secs(5), "the client is open", || server.stats().connections == 1);
    server.shutdown();
    shared.go.store(true, Ordering::SeqCst);
    server.wait().unwrap();
    drop(client);
    let errors = shared.errors.lock().unwrap();
    assert!(!errors.is_empty(), "connects were attempted during shutdown");
    let twice: Vec<_> = errors.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "on_connect_error more than once for {twice:?}");
}

/// Sequence: a handler reconnects from `on_connect_error` (an upstream pool).
/// Shutdown: `begin_shutdown` aborts the connecting one -> `on_connect_error`
/// -> `cx.connect` -> `flush` -> `settle` (shutting down) -> `fail_connect`
/// -> `on_connect_error` -> `cx.connect` -> ... all inside one `settle()`
/// call: the worker spins and never finishes shutting down (the handler
/// here gives up after 3 s so the test ends).
/// Expected: shutdown completes within its grace period (connects asked for
/// during shutdown fail without re-entering the handler in the same loop,
/// e.g. on the next turn, so the worker reaches its exit check).
fn reconnect_on_error_does_not_spin_shutdown(backend: Backend) {
    let shared = Arc::new(Shared::default());
    let target = refused_addr();
    let s2 = shared.clone();
    let server = start(config(backend).shutdown_grace(Duration::from_millis(300)), move |_| {
        Dialer { shared: s2.clone(), target, reconnect: true, connect_on_tick: false }
    });
    shared.go.store(true, Ordering::SeqCst);
    let client = connect(server.local_addr());
    // Refused, reconnected, refused, ... one connect per turn or so.
    eventually(Duration::from_secs(5), "reconnecting", || {
        shared.error_calls.load(Ordering::SeqCst) >= 3
    });
    let watchdog = {
        let shared = shared.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(3));
            shared.give_up.store(true, Ordering::SeqCst);
        })
    };
    let started = Instant::now();
    server.shutdown();
    server.wait().unwrap();
    let took = started.elapsed();
    drop(client);
    watchdog.join().unwrap();
    let calls = shared.error_calls.load(Ordering::SeqCst);
    assert!(
        took < Duration::from_secs(2),
        "shutdown took {took:?} ({calls} on_connect_error calls: the worker spun in settle)"
    );
}

/// Echoes, after a timer, the input it left unconsumed: the shape of a
/// handler that answers one request later (offload, timer) and then parses
/// the pipelined rest outside `on_data`. Connections that send `H...`
/// (hogs) are never consumed: they hold pool buffers.
struct Later;

impl Handler for Later {
    type Conn = bool;
    type Message = ();

    fn on_open(&mut self, _: &mut Cx<'_>) -> bool {
        false
    }

    fn on_data(&mut self, started: &mut bool, cx: &mut Cx<'_>) {
        if *started || cx.input().first().first() == Some(&b'H') {
            return;
        }
        if cx.input().len() >= 9 && cx.input().peek(5) == Some(b"hold\n") {
            *started = true;
            cx.consume(5);
            cx.pause_recv();
            cx.set_timer(Duration::from_millis(50));
        }
    }

    fn on_timer(&mut self, _: &mut bool, cx: &mut Cx<'_>) {
        let rest: Vec<u8> = cx.input().chunks().flatten().copied().collect();
        let n = rest.len();
        cx.consume(n);
        cx.write(format!("rest {n}:").as_bytes());
        cx.write(&rest);
        cx.write(b"\n");
        cx.resume_recv();
    }
}

/// Sequence: the pool is under half free (a hog holds 300 of 512 buffers);
/// a client sends `hold\nREST`; `on_data` consumes `hold\n`, pauses and sets
/// a timer, leaving `REST`; after `on_data`, `Worker::park` moves `REST` to
/// the heap and empties the input chain. `on_timer` then sees an empty
/// `cx.input()`: parked input is only put back on the next receive (or
/// FIN), which a paused connection, or a client waiting for its answer,
/// never produces.
/// Expected: `on_timer` (and `on_message`) see the unconsumed input.
fn parked_input_is_visible_outside_on_data(backend: Backend) {
    let server =
        start(config(backend).buf_size(4096).buf_count(512).max_input(Some(8 << 20)), |_| Later);
    let mut hog = connect(server.local_addr());
    hog.write_all(&vec![b'H'; 300 * 4096]).unwrap();
    eventually(Duration::from_secs(5), "the hog holds most of the pool", || {
        server.stats().pool_in_use >= 300
    });
    let mut client = connect(server.local_addr());
    client.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    client.write_all(b"hold\nREST").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.ends_with(b"\n") {
        match client.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    assert_eq!(String::from_utf8_lossy(&got), "rest 4:REST\n");
    drop(hog);
}

pollring::on_both_backends!(
    connect_made_in_the_grace_deadline_turn_fails_once,
    reconnect_on_error_does_not_spin_shutdown,
    parked_input_is_visible_outside_on_data,
);
