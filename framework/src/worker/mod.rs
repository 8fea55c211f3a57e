//! The loop that joins a [`Handler`] to a [`Driver`]: one per worker thread.
//!
//! ```text
//! loop {
//!     driver.turn(timeout, &mut events)   // submit/flush → wait once → reap
//!     dispatch events                     // input.rs: accept, receive, EOF, connect
//!     on_data for each connection with new input
//!     messages from other threads         // messages.rs
//!     deadlines, the handler's tick, shutdown   // deadlines.rs
//!     connects and aborts asked for by callbacks, then hand each
//!     connection's output, pause and FIN to the driver   // output.rs
//! }
//! ```
//!
//! A connection's phase (`lifecycle.rs`) decides what each step may do to
//! it. Generic over the driver and monomorphised: no `dyn`, no per-event
//! match on the backend.

mod deadlines;
mod input;
mod messages;
mod output;
mod shrink;

use std::collections::{HashMap, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pollring_backends::{Driver, Event, ListenerId, Token};

use crate::conn::Limits;
use crate::cx::{ConnId, Cx, WorkerCx};
use crate::handler::{CloseReason, Handler};
use crate::mailbox::{Envelope, Sender};
use crate::offload::Offload;
use crate::server::{Shared, WorkerStats};
use crate::slots::Slots;
use crate::state::WorkerState;
use crate::timer::{Clock, Ms, Wheel, TICK};
use crate::{Config, WorkerId};
use shrink::{Shrink, Watch};

/// How long a closing connection waits for the peer's EOF after sending FIN
/// (see [`Worker::on_drained_out`]).
const LINGER: Duration = Duration::from_secs(2);

/// The events a turn has room for without growing (and the least
/// capacity `events` keeps).
const EVENTS: usize = 1024;

/// Runs a handler callback, catching a panic: `Err` carries the panic's
/// message for the log.
fn guarded<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "(not a string)".to_owned()
        }
    })
}

/// What a new worker is given besides its driver and handler.
pub(crate) struct WorkerParts {
    pub(crate) id: WorkerId,
    /// Its sockets: `(listener index, socket, shared with other workers)`.
    pub(crate) listeners: Vec<(u8, std::os::fd::OwnedFd, pollring_backends::Share)>,
    pub(crate) config: Config,
    pub(crate) shared: Arc<Shared>,
    pub(crate) stats: Arc<WorkerStats>,
    pub(crate) offload: Arc<Offload>,
}

pub(crate) struct Worker<D: Driver, H: Handler> {
    driver: D,
    handler: H,
    /// The framework's side of the connections, which callbacks reach.
    st: WorkerState<H::Message>,
    /// The handler's side, by [`ConnId`] index: `Some` from `on_open` until
    /// `on_close` (`None` while connecting and after a handler panic).
    conns: Vec<Option<H::Conn>>,
    /// Driver token index → connection id.
    by_token: Vec<ConnId>,
    config: Config,
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
    /// What this worker counts on its data path (published per turn).
    counters: crate::metrics::Counters,
    /// Unconsumed input one connection may hold before it is closed.
    max_input: usize,
    /// Accepted connections allowed on this worker.
    max_conns: usize,
    /// Accepted connections open now (outbound ones are the handler's to bound).
    accepted: usize,
    /// The driver's listeners, with the server's index of each.
    listeners: Vec<(ListenerId, u8)>,
    events: Vec<Event>,
    /// Connections with new input this turn.
    data: Vec<ConnId>,
    /// The recent use of `events`, `data`, the state's `dirty` and
    /// `expired`: a burst's capacity is given back once it has passed.
    shrink: Watch,
    /// Unconsumed input moved off the pool (see [`Worker::park`]).
    parked: HashMap<ConnId, Box<[u8]>>,
    expired: Vec<(Ms, ConnId)>,
    /// Messages taken from the mailbox, delivered this turn.
    inbox: VecDeque<Envelope<H::Message>>,
    /// Outbound connects that failed, for `on_connect_error` (with their
    /// opener): reported once per turn, see `Worker::report_connect_errors`.
    connect_errors: Vec<(ConnId, Option<ConnId>, crate::cx::ConnectError)>,
    next_tick: Option<Instant>,
    /// Shutdown began: no accepting, connections close once drained.
    shutting_down: bool,
    /// When the grace period ends and remaining connections are forced
    /// closed; taken once that is done.
    shutdown_deadline: Option<Instant>,
    buffered_peak: usize,
    /// When an accept failure was last logged, and how many since were not.
    accept_warned: Option<Instant>,
    accept_errors_unlogged: u64,
}

impl<D: Driver, H: Handler> Worker<D, H> {
    pub(crate) fn new(
        mut driver: D,
        handler: H,
        parts: WorkerParts,
        sender: Sender<H::Message>,
    ) -> std::io::Result<Self> {
        let WorkerParts { id, listeners, config, shared, stats, offload } = parts;
        let listeners = listeners
            .into_iter()
            .map(|(index, fd, share)| Ok((driver.listen(fd, share)?, index)))
            .collect::<std::io::Result<_>>()?;
        sender.mailbox(id).set_waker(driver.waker());
        let now = Instant::now();
        let clock = Clock::new(now);
        let st = WorkerState {
            ios: Slots::new(),
            scratch: Vec::new(),
            wheel: Wheel::new(clock.ms(now), TICK),
            clock,
            worker: id,
            now,
            now_ms: clock.ms(now),
            limits: Limits {
                idle: config.idle_timeout,
                read: config.read_timeout,
                write: config.write_timeout,
            },
            dirty: Vec::new(),
            connects: Vec::new(),
            aborts: Vec::new(),
            links: std::collections::HashMap::new(),
            wide_peers: std::collections::HashMap::new(),
            tick_wanted: None,
            sender,
            offload,
            offloaded: 0,
            draining: false,
        };
        let mut worker = Worker {
            driver,
            handler,
            st,
            conns: Vec::new(),
            by_token: Vec::new(),
            max_conns: config.max_connections.div_ceil(config.workers.get()),
            max_input: config.max_input_bytes(),
            config,
            shared,
            stats,
            counters: Default::default(),
            accepted: 0,
            listeners,
            events: Vec::with_capacity(EVENTS),
            data: Vec::new(),
            shrink: Watch {
                events: Shrink::new(EVENTS),
                data: Shrink::new(0),
                dirty: Shrink::new(0),
                expired: Shrink::new(0),
            },
            parked: HashMap::new(),
            expired: Vec::new(),
            inbox: VecDeque::new(),
            connect_errors: Vec::new(),
            next_tick: Some(now),
            shutting_down: false,
            shutdown_deadline: None,
            buffered_peak: 0,
            accept_warned: None,
            accept_errors_unlogged: 0,
        };
        // The stats (e.g. the buffers lent to io_uring's ring) are readable
        // once `serve` returns, not only after a first turn.
        worker.publish_stats();
        Ok(worker)
    }

    pub(crate) fn driver_ref(&self) -> &D {
        &self.driver
    }

    /// Runs until shutdown completes.
    pub(crate) fn run(mut self) -> std::io::Result<()> {
        let _span = tracing::info_span!("worker", id = self.st.worker.0).entered();
        tracing::debug!(backend = std::any::type_name::<D>(), "worker started");
        let mut events = std::mem::take(&mut self.events);
        let result = loop {
            if self.shared.stop.load(Ordering::Acquire) && !self.shutting_down {
                self.begin_shutdown();
            }
            // Connect errors owed are reported first, unless the grace
            // period is over (a handler reconnecting on every error would
            // otherwise keep the worker alive).
            let errors_owed = !self.connect_errors.is_empty() && self.shutdown_deadline.is_some();
            if self.shutting_down && self.st.ios.len() == 0 && !errors_owed {
                break Ok(());
            }
            let timeout = self.timeout();
            if let Err(error) = self.driver.turn(timeout, &mut events) {
                // Give back any buffer the failed turn already handed out.
                for event in events.drain(..) {
                    if let Event::Recv { buf, .. } = event {
                        self.driver.pool_mut().free(buf);
                    }
                }
                break Err(error);
            }
            self.st.now = Instant::now();
            self.st.now_ms = self.st.clock.ms(self.st.now);
            self.shrink.events.note(events.len());
            self.counters.events += events.len() as u64;
            for event in events.drain(..) {
                self.on_event(event);
            }
            self.deliver_input();
            self.deliver_messages();
            self.timers();
            self.report_connect_errors();
            self.flush();
            self.publish_stats();
            self.end_turn(&mut events);
        };
        self.st.sender.mailbox(self.st.worker).stop();
        tracing::debug!("worker stopped");
        result
    }

    /// How long the next turn may wait: until the next timer, tick or
    /// shutdown deadline; not at all if messages are waiting.
    fn timeout(&self) -> Option<Duration> {
        if self.st.sender.mailbox(self.st.worker).has_news() || !self.connect_errors.is_empty() {
            return Some(Duration::ZERO);
        }
        let wheel = self.st.wheel.next_due().map(|ms| self.st.clock.instant(ms));
        [wheel, self.next_tick, self.st.tick_wanted, self.shutdown_deadline]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Gives back per-turn list capacity a burst left (see `shrink.rs`).
    fn end_turn(&mut self, events: &mut Vec<Event>) {
        self.shrink.events.end_turn(events);
        self.shrink.data.end_turn(&mut self.data);
        self.shrink.dirty.end_turn(&mut self.st.dirty);
        self.shrink.expired.end_turn(&mut self.expired);
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Recv { token, buf } => self.on_recv(token, buf),
            Event::Sent { token, bytes } => self.on_sent(token, bytes),
            Event::Accepted { listener, fd, peer } => {
                let index = self.listeners.iter().find(|l| l.0 == listener).map_or(0, |l| l.1);
                self.on_accept(index, fd, peer)
            }
            Event::Eof { token } => self.on_eof(token),
            Event::Connected { token, result } => self.on_connected(token, result),
            Event::Error { token, error } => self.on_error(token, error),
            Event::Closed { token } => self.on_closed(token),
            Event::AcceptError { error, .. } => self.on_accept_error(error),
            Event::Wake => {}
            other => tracing::debug!(?other, "unhandled driver event"),
        }
    }

    /// The connection a driver token belongs to, if it is still that one's.
    fn id_of(&self, token: Token) -> Option<ConnId> {
        let id = *self.by_token.get(token.index())?;
        let io = self.st.ios.get(id)?;
        (io.token() == Some(token)).then_some(id)
    }

    /// Records that driver token `token` is connection `id`'s.
    fn bind_token(&mut self, id: ConnId, token: Token) {
        let index = token.index();
        if self.by_token.len() <= index {
            self.by_token.resize(index + 1, ConnId::new(u32::MAX, 1));
        }
        self.by_token[index] = id;
        if let Some(io) = self.st.ios.get_mut(id) {
            io.set_token(token);
        }
    }

    /// Runs one handler callback on a connection that has handler state. A
    /// panic closes the connection (logged) and returns `false`, as does a
    /// connection whose state was lost to an earlier panic.
    fn call(
        &mut self,
        id: ConnId,
        callback: &'static str,
        f: impl FnOnce(&mut H, &mut H::Conn, &mut Cx<'_, H::Message>),
    ) -> bool {
        // Parked input goes back first: a callback sees all of its input.
        if !self.unpark(id) {
            return false;
        }
        let Some(conn) = self.conns.get_mut(id.index()).and_then(Option::as_mut) else {
            return false;
        };
        let mut cx = Cx { pool: self.driver.pool_mut(), st: &mut self.st, me: id };
        let handler = &mut self.handler;
        let Err(panic) = guarded(|| f(handler, conn, &mut cx)) else { return true };
        self.conns[id.index()] = None;
        tracing::error!(id = %id, callback, panic, "handler panicked; connection closed");
        self.close_now(id, CloseReason::Error(std::io::ErrorKind::Other));
        false
    }

    /// Runs one handler callback that concerns the worker, not a connection.
    fn call_worker<R>(
        &mut self,
        callback: &'static str,
        f: impl FnOnce(&mut H, &mut WorkerCx<'_, H::Message>) -> R,
    ) -> Option<R> {
        let mut cx = WorkerCx { pool: self.driver.pool_mut(), st: &mut self.st };
        let handler = &mut self.handler;
        match guarded(|| f(handler, &mut cx)) {
            Ok(r) => Some(r),
            Err(panic) => {
                tracing::error!(callback, panic, "handler panicked");
                None
            }
        }
    }

    fn publish_stats(&mut self) {
        let s = &self.stats;
        let d = self.driver.stats();
        s.connections.store(self.st.ios.len(), Ordering::Relaxed);
        s.syscalls.store(d.syscalls, Ordering::Relaxed);
        s.turns.store(d.turns, Ordering::Relaxed);
        s.pool_in_use.store(self.driver.pool().in_use(), Ordering::Relaxed);
        let c = &self.counters;
        s.metrics.store(&crate::WorkerMetrics {
            worker: self.st.worker,
            connections: self.st.ios.len() as u64,
            accepted: c.accepted,
            closed: c.closed,
            accept_errors: c.accept_errors,
            bytes_received: c.bytes_received,
            bytes_sent: c.bytes_sent,
            syscalls: d.syscalls,
            turns: d.turns,
            events: c.events,
            buffers_in_use: self.driver.pool().in_use() as u64,
            buffers_free: self.driver.pool().available() as u64,
            parked: self.parked.len() as u64,
            messages: c.messages,
            offloaded: self.st.offloaded,
        });
        // Only this worker writes its counters: a plain store, and only when
        // the peak grew (no locked instruction per turn).
        if self.buffered_peak > s.buffered_peak.load(Ordering::Relaxed) {
            s.buffered_peak.store(self.buffered_peak, Ordering::Relaxed);
        }
    }
}

impl<D: Driver, H: Handler> Drop for Worker<D, H> {
    fn drop(&mut self) {
        let pool = self.driver.pool_mut();
        for io in self.st.ios.values_mut() {
            io.input.clear(pool);
            io.output.clear(pool);
        }
    }
}
