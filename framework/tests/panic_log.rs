//! A handler that panics, in `on_data` or in `on_timer`, has that one
//! connection closed and the panic logged with `tracing` at error level,
//! naming the callback and carrying the panic's message; the worker keeps
//! serving and no buffer leaks.
//!
//! The log is captured by a process-wide subscriber (workers log from their
//! own threads), so this file holds only these tests; each backend's panic
//! message is distinct, so the two can run side by side.

#[macro_use]
mod util;

use std::io::Write;
use std::sync::{Mutex, Once};
use std::time::Duration;

use pollring::{Backend, Cx, Handler};
use util::*;

/// Everything logged in this process.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing::Level::ERROR)
            .init();
    });
}

fn logged() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned()
}

/// Echoes, except: `data!` panics in `on_data`; `timer!` sets a 20 ms
/// timer whose `on_timer` panics. Messages name the backend.
struct Fragile {
    tag: &'static str,
}

impl Handler for Fragile {
    type Conn = ();
    type Message = ();
    fn on_open(&mut self, _cx: &mut Cx<'_>) {}
    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        if cx.input().peek(5) == Some(b"data!") {
            panic!("data-panic-{}", self.tag);
        }
        if cx.input().peek(6) == Some(b"timer!") {
            cx.consume(6);
            cx.set_timer(Duration::from_millis(20));
            return;
        }
        let n = cx.input().len();
        cx.forward(n);
    }
    fn on_timer(&mut self, _conn: &mut (), _cx: &mut Cx<'_>) {
        panic!("timer-panic-{}", self.tag);
    }
}

fn handler_panics_are_logged_and_close_only_their_connection(backend: Backend) {
    capture_logs();
    let tag = match backend {
        Backend::Epoll => "epoll",
        _ => "uring",
    };
    let server = start(config(backend), move |_| Fragile { tag });
    let addr = server.local_addr();
    let mut good = connect(addr);
    good.write_all(b"hello").unwrap();
    assert_eq!(read_n(&mut good, 5), b"hello");
    let baseline = server.stats().pool_in_use;

    for (request, callback, message) in [
        (&b"data!"[..], "on_data", format!("data-panic-{tag}")),
        (&b"timer!"[..], "on_timer", format!("timer-panic-{tag}")),
    ] {
        let mut bad = connect(addr);
        bad.write_all(request).unwrap();
        let (got, _) = read_to_end(&mut bad);
        assert!(got.is_empty(), "{callback}: the panicking connection is closed, no output");
        eventually(IO_TIMEOUT, "the panic logged", || logged().contains(&message));
        let log = logged();
        let line = log.lines().find(|l| l.contains(&message)).expect("the log line");
        assert!(line.contains("ERROR"), "logged at error level: {line}");
        assert!(line.contains("handler panicked"), "says what happened: {line}");
        assert!(line.contains(callback), "names the callback: {line}");

        good.write_all(b"after").unwrap();
        assert_eq!(read_n(&mut good, 5), b"after", "{callback}: others still served");
    }
    eventually(IO_TIMEOUT, "no buffer leaked by the panics", || {
        let s = server.stats();
        s.connections == 1 && s.pool_in_use <= baseline
    });
}

on_both_backends!(handler_panics_are_logged_and_close_only_their_connection);
