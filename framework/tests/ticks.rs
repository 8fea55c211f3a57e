//! `tick_in`: any callback can ask for the worker's `on_tick` sooner, and a
//! handler whose `on_tick` returned `None` gets ticks again only when asked.

#[macro_use]
mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use pollring::{Backend, ConnId, Cx, Handler, WorkerCx};
use util::*;

/// Remembers the last connection that sent a line; its `on_tick` writes
/// `tick N` to it. `on_tick` never schedules itself.
#[derive(Default)]
struct Ticker {
    waiting: Option<ConnId>,
    ticks: u32,
}

impl Handler for Ticker {
    type Conn = ();
    type Message = ();

    fn on_open(&mut self, _cx: &mut Cx<'_>) {}

    fn on_data(&mut self, _: &mut (), cx: &mut Cx<'_>) {
        while let Some(end) = cx.input().find(0, b'\n') {
            cx.consume(end + 1);
            self.waiting = Some(cx.id());
            cx.tick_in(Duration::from_millis(20));
        }
    }

    fn on_tick(&mut self, cx: &mut WorkerCx<'_>) -> Option<Duration> {
        self.ticks += 1;
        if let Some(id) = self.waiting.take() {
            let line = format!("tick {}\n", self.ticks);
            let _ = cx.conn(id).and_then(|mut c| c.write(line.as_bytes()));
        }
        None
    }
}

fn a_callback_brings_the_tick_forward(backend: Backend) {
    let server = start(config(backend).workers(1), |_| Ticker::default());
    let mut c = connect(server.local_addr());
    for round in 0..3 {
        let asked = Instant::now();
        c.write_all(b"go\n").unwrap();
        let answer = String::from_utf8(read_n(&mut c, b"tick 2\n".len())).unwrap();
        let took = asked.elapsed();
        // The first tick ran at start-up; each request brings exactly one.
        assert_eq!(answer, format!("tick {}\n", round + 2));
        assert!(took >= Duration::from_millis(20), "ticked after {took:?}, asked for 20 ms");
        assert!(took < Duration::from_secs(1), "ticked after {took:?}");
    }
}

on_both_backends!(a_callback_brings_the_tick_forward);
