//! The loop that joins a [`Handler`] to a [`Driver`]: one per worker thread.
//!
//! ```text
//! loop {
//!     driver.turn(timeout, &mut events)   // submit/flush → wait once → reap
//!     dispatch events                     // accept, input into chains, Sent, Closed
//!     on_data for each connection with new input
//!     timers (timeouts, the handler's timers, ticks), shutdown
//!     hand each connection's output to the driver (one send per connection)
//! }
//! ```
//!
//! Generic over the driver and monomorphised: no `dyn`, no per-event match on
//! the backend.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pollring_backends::buf::{Buf, Pool};
use pollring_backends::{Driver, Event, ListenerId, Token};

use crate::conn::{ConnIo, Cx, Due, Limits, WorkerCx};
use crate::handler::{CloseReason, Handler};
use crate::server::{Shared, WorkerStats};
use crate::timer::{Clock, Ms, Wheel, TICK};
use crate::{Config, WorkerId};

/// How long a closing connection waits for the peer's EOF after sending FIN
/// (see [`Worker::close_drained`]).
const LINGER: Duration = Duration::from_secs(2);

/// While the pool runs low (under half of it free), a connection left with
/// at most this much unconsumed input after `on_data` has it moved to a heap
/// allocation of its own size, so a peer that sends a byte of a frame and
/// stops pins a few bytes, not a whole pool buffer (see [`Worker::park`]).
const PARK_MAX: usize = 1024;

/// The live slot of `token` (not a stale token of a reused slot). A free
/// function over the table alone, so callers can hold other fields of the
/// worker (the driver's pool, the scratch buffer) at the same time.
fn slot_mut<C>(slots: &mut [Option<Slot<C>>], token: Token) -> Option<&mut Slot<C>> {
    slots.get_mut(token.index())?.as_mut().filter(|s| s.io.token == token)
}

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

/// One connection: the framework's part and the handler's part.
struct Slot<C> {
    io: ConnIo,
    /// `None` only after the handler panicked on this connection.
    conn: Option<C>,
}

pub(crate) struct Worker<D: Driver, H: Handler> {
    id: WorkerId,
    driver: D,
    handler: H,
    config: Config,
    shared: Arc<Shared>,
    stats: Arc<WorkerStats>,
    /// Unconsumed input one connection may hold before it is closed.
    max_input: usize,
    /// Idle, read and write timeouts.
    limits: Limits,
    /// Connections by token index (dense: the driver's slot index).
    slots: Vec<Option<Slot<H::Conn>>>,
    open: usize,
    max_conns: usize,
    listeners: Vec<ListenerId>,
    events: Vec<Event>,
    /// Connections with new input this turn.
    data: Vec<Token>,
    /// Unconsumed input moved off the pool (see [`Worker::park`]).
    parked: std::collections::HashMap<Token, Box<[u8]>>,
    /// Connections with output to hand to the driver this turn.
    dirty: Vec<Token>,
    expired: Vec<(Ms, Token)>,
    scratch: Vec<u8>,
    wheel: crate::timer::Wheel,
    next_tick: Option<Instant>,
    /// Shutdown began: no accepting, connections close once drained.
    shutting_down: bool,
    /// When the grace period ends and remaining connections are forced
    /// closed; taken once that is done.
    shutdown_deadline: Option<Instant>,
    now: Instant,
    /// `now` on the worker's millisecond clock, for connection deadlines.
    now_ms: Ms,
    clock: Clock,
    buffered_peak: usize,
    /// When an accept failure was last logged, and how many since were not.
    accept_warned: Option<Instant>,
    accept_errors_unlogged: u64,
}

impl<D: Driver, H: Handler> Worker<D, H> {
    pub(crate) fn new(
        id: WorkerId,
        mut driver: D,
        handler: H,
        listener: std::net::TcpListener,
        config: Config,
        shared: Arc<Shared>,
        stats: Arc<WorkerStats>,
    ) -> std::io::Result<Self> {
        let listeners = vec![driver.listen(listener)?];
        let workers = config.workers.get();
        let max_conns = config.max_connections.div_ceil(workers);
        let max_input = config.max_input_bytes();
        let now = Instant::now();
        let clock = Clock::new(now);
        let limits = Limits {
            idle: config.idle_timeout,
            read: config.read_timeout,
            write: config.write_timeout,
        };
        let mut worker = Worker {
            id,
            driver,
            handler,
            config,
            shared,
            stats,
            slots: Vec::new(),
            open: 0,
            max_conns,
            max_input,
            limits,
            listeners,
            events: Vec::with_capacity(1024),
            data: Vec::new(),
            parked: std::collections::HashMap::new(),
            dirty: Vec::new(),
            expired: Vec::new(),
            scratch: Vec::new(),
            wheel: Wheel::new(clock.ms(now), TICK),
            next_tick: Some(now),
            shutting_down: false,
            shutdown_deadline: None,
            now,
            now_ms: clock.ms(now),
            clock,
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
        let _span = tracing::info_span!("worker", id = self.id.0).entered();
        tracing::debug!(backend = std::any::type_name::<D>(), "worker started");
        let mut events = std::mem::take(&mut self.events);
        loop {
            if self.shared.stop.load(Ordering::Acquire) && !self.shutting_down {
                self.begin_shutdown();
            }
            if self.shutting_down && self.open == 0 {
                break;
            }
            let timeout = self.timeout();
            if let Err(error) = self.driver.turn(timeout, &mut events) {
                // Give back any buffer the failed turn already handed out.
                for event in events.drain(..) {
                    if let Event::Recv { buf, .. } = event {
                        self.driver.pool_mut().free(buf);
                    }
                }
                return Err(error);
            }
            self.now = Instant::now();
            self.now_ms = self.clock.ms(self.now);
            for event in events.drain(..) {
                self.on_event(event);
            }
            self.deliver_input();
            self.timers();
            self.flush();
            self.publish_stats();
        }
        tracing::debug!("worker stopped");
        Ok(())
    }

    /// How long the next turn may wait: until the next timer, tick or
    /// shutdown deadline.
    fn timeout(&self) -> Option<Duration> {
        let wheel = self.wheel.next_due().map(|ms| self.clock.instant(ms));
        [wheel, self.next_tick, self.shutdown_deadline]
            .into_iter()
            .flatten()
            .min()
            .map(|at| at.saturating_duration_since(Instant::now()))
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Recv { token, buf } => self.on_recv(token, buf),
            Event::Sent { token, bytes } => self.on_sent(token, bytes),
            Event::Accepted { fd, peer, .. } => self.on_accept(fd, peer),
            Event::Eof { token } => {
                if let Some(slot) = self.slot(token) {
                    slot.io.read_closed = true;
                    if slot.io.lingering() {
                        let reason = slot.io.close_after_drain.unwrap_or(CloseReason::Local);
                        self.close_now(token, reason);
                    } else if slot.io.closing.is_none()
                        && slot.io.close_after_drain.is_none()
                        && self.unpark(token)
                    {
                        self.mark_data(token);
                    }
                }
            }
            Event::Error { token, error } => {
                tracing::debug!(token = token.as_u64(), %error, "connection error");
                self.close_now(token, CloseReason::Error(error.kind()));
            }
            Event::Closed { token } => self.on_closed(token),
            Event::AcceptError { error, .. } => {
                // The driver retries every few milliseconds while the
                // shortage lasts: warn at most once a second.
                if self.accept_warned.is_none_or(|t| self.now >= t + Duration::from_secs(1)) {
                    let repeats = std::mem::take(&mut self.accept_errors_unlogged);
                    tracing::warn!(%error, repeats, "accept failed; backing off");
                    self.accept_warned = Some(self.now);
                } else {
                    self.accept_errors_unlogged += 1;
                }
            }
            Event::Wake => {}
            other => tracing::debug!(?other, "unhandled driver event"),
        }
    }

    fn slot(&mut self, token: Token) -> Option<&mut Slot<H::Conn>> {
        slot_mut(&mut self.slots, token)
    }

    fn on_accept(&mut self, fd: std::os::fd::OwnedFd, peer: Option<std::net::SocketAddr>) {
        if self.shutting_down || self.open >= self.max_conns {
            tracing::debug!(?peer, open = self.open, "connection refused: at the limit");
            drop(fd);
            return;
        }
        let token = match self.driver.add(fd) {
            Ok(token) => token,
            Err(error) => {
                tracing::warn!(%error, "cannot register an accepted connection");
                return;
            }
        };
        let index = token.index();
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || None);
        }
        self.open += 1;
        let mut io = ConnIo::new(token, peer, self.now_ms);
        if let Some(at) = io.next_deadline(&self.limits) {
            io.arm(&mut self.wheel, at);
        }
        let mut cx = Cx {
            pool: self.driver.pool_mut(),
            io: &mut io,
            scratch: &mut self.scratch,
            wheel: &mut self.wheel,
            clock: self.clock,
            worker: self.id,
            now: self.now,
            now_ms: self.now_ms,
        };
        let handler = &mut self.handler;
        let opened = guarded(|| handler.on_open(&mut cx));
        let dirty = io.dirty;
        let (conn, panic) = match opened {
            Ok(conn) => (Some(conn), None),
            Err(panic) => (None, Some(panic)),
        };
        self.slots[index] = Some(Slot { io, conn });
        if let Some(panic) = panic {
            tracing::error!(
                token = token.as_u64(),
                callback = "on_open",
                panic,
                "handler panicked; connection closed"
            );
            self.close_now(token, CloseReason::Error(std::io::ErrorKind::Other));
        } else if dirty {
            self.mark_dirty(token);
        }
    }

    fn on_recv(&mut self, token: Token, buf: Buf) {
        if !self.unpark(token) {
            self.driver.pool_mut().free(buf);
            return;
        }
        let now = self.now_ms;
        let pool = self.driver.pool_mut();
        let Some(slot) = slot_mut(&mut self.slots, token) else {
            pool.free(buf);
            return;
        };
        if slot.io.closing.is_some() || slot.io.close_after_drain.is_some() {
            pool.free(buf);
            return;
        }
        // Small receives are copied behind a partial frame instead of
        // pinning a buffer each.
        let copy_limit = pool.buf_size() / 4;
        if slot.io.input_since.is_none() {
            slot.io.input_since = Some(now);
            if let Some(timeout) = self.limits.read {
                slot.io.arm(&mut self.wheel, now.after(timeout));
            }
        }
        slot.io.input.push_or_copy(pool, buf, copy_limit);
        slot.io.last_active = now;
        if slot.io.input.len() > self.max_input {
            tracing::debug!(token = token.as_u64(), bytes = slot.io.input.len(), "input limit");
            self.close_now(token, CloseReason::InputLimit);
            return;
        }
        self.mark_data(token);
    }

    fn mark_data(&mut self, token: Token) {
        if let Some(slot) = self.slot(token) {
            if !slot.io.has_data {
                slot.io.has_data = true;
                self.data.push(token);
            }
        }
    }

    fn mark_dirty(&mut self, token: Token) {
        if let Some(slot) = self.slot(token) {
            if !slot.io.listed {
                slot.io.listed = true;
                self.dirty.push(token);
            }
        }
    }

    /// Calls `on_data` once per connection that received this turn.
    fn deliver_input(&mut self) {
        let mut data = std::mem::take(&mut self.data);
        for token in data.drain(..) {
            let Some(slot) = slot_mut(&mut self.slots, token) else {
                continue;
            };
            slot.io.has_data = false;
            if slot.io.closing.is_some() {
                continue;
            }
            if !self.call(token, "on_data", |h, conn, cx| h.on_data(conn, cx)) {
                continue;
            }
            let slot = slot_mut(&mut self.slots, token).expect("the callback's connection");
            if slot.io.read_closed && slot.io.close_after_drain.is_none() {
                // The peer is done sending: finish writing, then close.
                slot.io.close_after_drain = Some(CloseReason::PeerClosed);
            }
            if slot.io.dirty || slot.io.close_after_drain.is_some() {
                self.mark_dirty(token);
            }
            self.park(token);
        }
        self.data = data;
    }

    /// While the pool runs low, moves a connection's small unconsumed input
    /// (a partial frame of at most [`PARK_MAX`] bytes) to the heap and frees
    /// its buffers. Without this, every peer that sends one byte of a frame
    /// and waits pins a whole buffer, and a few thousand such peers starve
    /// everyone's receives until their read timeouts. Costs nothing while
    /// the pool has room; under pressure, one copy out and one back in.
    fn park(&mut self, token: Token) {
        let pool = self.driver.pool_mut();
        if pool.available() >= pool.capacity() / 2 {
            return;
        }
        let Some(slot) = slot_mut(&mut self.slots, token) else { return };
        let io = &mut slot.io;
        let len = io.input.len();
        if len == 0 || len > PARK_MAX || io.closing.is_some() || io.close_after_drain.is_some() {
            return;
        }
        let bytes: Box<[u8]> = io.input.chunks(pool).flatten().copied().collect();
        io.input.clear(pool);
        io.parked = true;
        self.parked.insert(token, bytes);
    }

    /// Puts parked input back into the connection's (empty) input chain,
    /// ahead of what arrives next. `false` if the pool had no buffer for it:
    /// the connection is then closed (`PoolExhausted`).
    fn unpark(&mut self, token: Token) -> bool {
        let pool = self.driver.pool_mut();
        let Some(slot) = slot_mut(&mut self.slots, token) else { return true };
        if !slot.io.parked {
            return true;
        }
        slot.io.parked = false;
        let bytes = self.parked.remove(&token).expect("parked input of a parked connection");
        if slot.io.input.extend_from_slice(pool, &bytes).is_ok() {
            return true;
        }
        tracing::warn!(token = token.as_u64(), "buffer pool exhausted; connection closed");
        self.close_now(token, CloseReason::PoolExhausted);
        false
    }

    /// Hands each dirty connection's output to the driver: one send per
    /// connection per turn. Applies backpressure and deferred closes.
    fn flush(&mut self) {
        let mut dirty = std::mem::take(&mut self.dirty);
        for token in dirty.drain(..) {
            let high = self.config.high_water;
            let pool = self.driver.pool_mut();
            let Some(slot) = slot_mut(&mut self.slots, token) else {
                continue;
            };
            let io = &mut slot.io;
            io.listed = false;
            io.dirty = false;
            if io.closing.is_some() {
                continue;
            }
            if io.out_of_buffers {
                tracing::warn!(token = token.as_u64(), "buffer pool exhausted; connection closed");
                self.close_now(token, CloseReason::PoolExhausted);
                continue;
            }
            if io.close_after_drain.is_some() && (!io.input.is_empty() || io.parked) {
                io.input.clear(pool);
                io.input_since = None;
                if std::mem::take(&mut io.parked) {
                    self.parked.remove(&token);
                }
            }
            if !io.output.is_empty() {
                if io.in_flight == 0 {
                    // Output becomes pending: the write timeout starts.
                    io.send_since = self.now_ms;
                    if let Some(timeout) = self.limits.write {
                        io.arm(&mut self.wheel, self.now_ms.after(timeout));
                    }
                }
                let out = std::mem::take(&mut io.output);
                io.in_flight += out.len();
                self.driver.send(token, out);
            }
            let pending = io.pending_output();
            self.buffered_peak = self.buffered_peak.max(pending + io.input.len());
            if pending >= high && !io.paused {
                io.paused = true;
                self.driver.pause_recv(token);
            }
            if let Some(reason) = io.close_after_drain {
                // A lingering connection keeps receiving: it waits for EOF.
                if !io.paused && !io.lingering() {
                    io.paused = true;
                    self.driver.pause_recv(token);
                }
                if pending == 0 && !io.lingering() {
                    self.close_drained(token, reason);
                }
            }
        }
        self.dirty = dirty;
    }

    fn on_sent(&mut self, token: Token, bytes: usize) {
        let now = self.now_ms;
        let low = self.config.low_water;
        let Some(slot) = self.slot(token) else { return };
        slot.io.in_flight = slot.io.in_flight.saturating_sub(bytes);
        slot.io.last_active = now;
        slot.io.send_since = now;
        if slot.io.pending_output() > 0 || slot.io.closing.is_some() {
            if slot.io.paused
                && slot.io.close_after_drain.is_none()
                && slot.io.pending_output() < low
            {
                slot.io.paused = false;
                self.driver.resume_recv(token);
            }
            return;
        }
        // Everything written so far is out.
        if let Some(reason) = slot.io.close_after_drain {
            if !slot.io.lingering() {
                self.close_drained(token, reason);
            }
            return;
        }
        if slot.io.paused {
            slot.io.paused = false;
            self.driver.resume_recv(token);
        }
        if self.call(token, "on_drained", |h, conn, cx| h.on_drained(conn, cx)) {
            self.mark_dirty_if_written(token);
        }
    }

    /// Runs one handler callback on a live connection. A panic closes the
    /// connection (logged) and returns `false`, as does a connection whose
    /// handler state was lost to an earlier panic.
    fn call(
        &mut self,
        token: Token,
        callback: &'static str,
        f: impl FnOnce(&mut H, &mut H::Conn, &mut Cx<'_>),
    ) -> bool {
        let Some(slot) = slot_mut(&mut self.slots, token) else { return false };
        let Some(conn) = slot.conn.as_mut() else { return false };
        let mut cx = Cx {
            pool: self.driver.pool_mut(),
            io: &mut slot.io,
            scratch: &mut self.scratch,
            wheel: &mut self.wheel,
            clock: self.clock,
            worker: self.id,
            now: self.now,
            now_ms: self.now_ms,
        };
        let handler = &mut self.handler;
        let Err(panic) = guarded(|| f(handler, conn, &mut cx)) else { return true };
        slot.conn = None;
        tracing::error!(
            token = token.as_u64(),
            callback,
            panic,
            "handler panicked; connection closed"
        );
        self.close_now(token, CloseReason::Error(std::io::ErrorKind::Other));
        false
    }

    /// Lists a connection for the flush if its callback wrote or closed.
    fn mark_dirty_if_written(&mut self, token: Token) {
        if let Some(slot) = self.slot(token) {
            if slot.io.dirty || slot.io.close_after_drain.is_some() {
                self.mark_dirty(token);
            }
        }
    }

    /// Closes a connection whose output is all written. If the peer may still
    /// be sending, closing now would make the kernel answer with a reset,
    /// which can destroy the response on its way; so first send FIN and
    /// *linger*: read and discard until the peer's EOF or [`LINGER`] passes.
    fn close_drained(&mut self, token: Token, reason: CloseReason) {
        let now = self.now_ms;
        let Some(slot) = slot_mut(&mut self.slots, token) else { return };
        if slot.io.read_closed {
            self.close_now(token, reason);
            return;
        }
        let io = &mut slot.io;
        let until = now.after(LINGER);
        io.linger_until = Some(until);
        let resume = std::mem::take(&mut io.paused);
        io.arm(&mut self.wheel, until);
        self.driver.shutdown_write(token);
        if resume {
            self.driver.resume_recv(token);
        }
    }

    /// Asks the driver to close now (unsent output is dropped).
    fn close_now(&mut self, token: Token, reason: CloseReason) {
        let pool = self.driver.pool_mut();
        let Some(slot) = slot_mut(&mut self.slots, token) else {
            return;
        };
        if slot.io.closing.is_some() {
            return;
        }
        slot.io.closing = Some(reason);
        slot.io.input.clear(pool);
        slot.io.output.clear(pool);
        if std::mem::take(&mut slot.io.parked) {
            self.parked.remove(&token);
        }
        self.driver.close(token);
    }

    fn on_closed(&mut self, token: Token) {
        let Some(entry) = self.slots.get_mut(token.index()) else { return };
        if entry.as_ref().is_none_or(|s| s.io.token != token) {
            return;
        }
        let Some(mut slot) = entry.take() else { return };
        self.open -= 1;
        if slot.io.parked {
            self.parked.remove(&token);
        }
        let pool = self.driver.pool_mut();
        slot.io.input.clear(pool);
        slot.io.output.clear(pool);
        let reason = slot.io.closing.unwrap_or(CloseReason::Local);
        tracing::trace!(token = token.as_u64(), ?reason, "connection closed");
        if let Some(conn) = slot.conn {
            let handler = &mut self.handler;
            if let Err(panic) = guarded(|| handler.on_close(conn, reason)) {
                tracing::error!(
                    token = token.as_u64(),
                    callback = "on_close",
                    panic,
                    "handler panicked"
                );
            }
        }
    }

    /// Connection deadlines, the handler's tick, the shutdown deadline.
    fn timers(&mut self) {
        let now = self.now;
        if self.wheel.next_due().is_some_and(|due| due <= self.now_ms) {
            let mut expired = std::mem::take(&mut self.expired);
            let slots = &self.slots;
            // Live: the connection's current entry, and not closing.
            self.wheel.advance(self.now_ms, &mut expired, |token, deadline| {
                slots.get(token.index()).and_then(Option::as_ref).is_some_and(|s| {
                    s.io.token == token && s.io.wheel_at == Some(deadline) && s.io.closing.is_none()
                })
            });
            for (deadline, token) in expired.drain(..) {
                self.on_deadline(token, deadline);
            }
            self.expired = expired;
        }
        if self.next_tick.is_some_and(|t| t <= now) {
            let mut cx = WorkerCx {
                worker: self.id,
                now,
                connections: self.open,
                _marker: std::marker::PhantomData,
            };
            let handler = &mut self.handler;
            self.next_tick = match guarded(|| handler.on_tick(&mut cx)) {
                Ok(next) => next.map(|d| now + d),
                Err(panic) => {
                    tracing::error!(callback = "on_tick", panic, "handler panicked; ticks stopped");
                    None
                }
            };
        }
        if self.shutdown_deadline.is_some_and(|t| t <= now) {
            self.shutdown_deadline = None;
            let tokens: Vec<Token> = self.slots.iter().flatten().map(|s| s.io.token).collect();
            if !tokens.is_empty() {
                tracing::info!(connections = tokens.len(), "grace period over; closing");
            }
            for token in tokens {
                self.close_now(token, CloseReason::Shutdown);
            }
        }
    }

    /// A connection's wheel entry came round: act on what is due (at most
    /// one thing per entry, by precedence) and re-arm at the next deadline.
    fn on_deadline(&mut self, token: Token, deadline: Ms) {
        let (now, limits) = (self.now_ms, self.limits);
        let Some(slot) = self.slot(token) else { return };
        if slot.io.closing.is_some() || slot.io.wheel_at != Some(deadline) {
            // Closing, or a stale entry: the connection re-armed earlier.
            return;
        }
        slot.io.wheel_at = None;
        let io = &mut slot.io;
        let close = match io.due(&limits, now) {
            None => None,
            Some(Due::Linger) => Some(io.close_after_drain.unwrap_or(CloseReason::Local)),
            Some(Due::Idle) => Some(CloseReason::IdleTimeout),
            Some(Due::Read) if io.pending_output() > 0 => {
                // The handler may be holding input back until its output
                // drains: that wait is the write timeout's business.
                io.input_since = Some(now);
                None
            }
            Some(Due::Read) => Some(CloseReason::ReadTimeout),
            Some(Due::Write) => Some(CloseReason::WriteTimeout),
            Some(Due::Timer) => {
                io.timer_at = None;
                if self.call(token, "on_timer", |h, conn, cx| h.on_timer(conn, cx)) {
                    self.mark_dirty_if_written(token);
                }
                None
            }
        };
        if let Some(reason) = close {
            tracing::debug!(token = token.as_u64(), ?reason, "deadline passed; closing");
            self.close_now(token, reason);
            return;
        }
        if let Some(slot) = slot_mut(&mut self.slots, token) {
            if slot.io.closing.is_none() {
                if let Some(next) = slot.io.next_deadline(&limits) {
                    slot.io.arm(&mut self.wheel, next);
                }
            }
        }
    }

    /// Stops accepting; every connection closes once its output is out.
    #[cold]
    fn begin_shutdown(&mut self) {
        tracing::debug!(open = self.open, "shutting down");
        self.shutting_down = true;
        self.shutdown_deadline = Some(self.now + self.config.shutdown_grace);
        for id in self.listeners.drain(..) {
            self.driver.unlisten(id);
        }
        let tokens: Vec<Token> = self.slots.iter().flatten().map(|s| s.io.token).collect();
        for token in tokens {
            let Some(slot) = self.slot(token) else { continue };
            if slot.io.pending_output() == 0 && slot.io.input.is_empty() && !slot.io.lingering() {
                // Idle: no answer to protect, so no lingering either.
                self.close_now(token, CloseReason::Shutdown);
                continue;
            }
            slot.io.close_after_drain.get_or_insert(CloseReason::Shutdown);
            self.mark_dirty(token);
        }
        self.flush();
    }

    fn publish_stats(&mut self) {
        let s = &self.stats;
        let d = self.driver.stats();
        s.connections.store(self.open, Ordering::Relaxed);
        s.syscalls.store(d.syscalls, Ordering::Relaxed);
        s.turns.store(d.turns, Ordering::Relaxed);
        s.pool_in_use.store(self.driver.pool().in_use(), Ordering::Relaxed);
        // Only this worker writes its counters: a plain store, and only when
        // the peak grew (no locked instruction per turn).
        if self.buffered_peak > s.buffered_peak.load(Ordering::Relaxed) {
            s.buffered_peak.store(self.buffered_peak, Ordering::Relaxed);
        }
    }
}

impl<D: Driver, H: Handler> Drop for Worker<D, H> {
    fn drop(&mut self) {
        let pool: &mut Pool = self.driver.pool_mut();
        for slot in self.slots.iter_mut().flatten() {
            slot.io.input.clear(pool);
            slot.io.output.clear(pool);
        }
    }
}
