//! What a handler sees of a connection: [`Cx`] and its [`Input`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pollring_backends::buf::{Chain, Chunks, Pool};
use pollring_backends::Token;

use crate::timer::{Clock, Ms, Wheel};
use crate::WorkerId;

/// The configured per-connection time limits (from [`crate::Config`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) idle: Option<Duration>,
    pub(crate) read: Option<Duration>,
    pub(crate) write: Option<Duration>,
}

/// What is due for a connection when its wheel entry comes round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// The lingering close ran out of time.
    Linger,
    /// Nothing received or sent for the idle timeout.
    Idle,
    /// Input sat unconsumed for the read timeout.
    Read,
    /// Pending output made no progress for the write timeout.
    Write,
    /// The handler's timer.
    Timer,
}

/// The framework's per-connection state besides the handler's own.
#[derive(Debug)]
pub(crate) struct ConnIo {
    pub(crate) token: Token,
    pub(crate) peer: Option<SocketAddr>,
    /// Received, not yet consumed by the handler.
    pub(crate) input: Chain,
    /// Written by the handler this turn, not yet handed to the driver.
    pub(crate) output: Chain,
    /// Handed to the driver, not yet reported sent.
    pub(crate) in_flight: usize,
    /// Receiving paused for backpressure.
    pub(crate) paused: bool,
    /// The peer sent FIN.
    pub(crate) read_closed: bool,
    /// Close once output is drained, with this reason.
    pub(crate) close_after_drain: Option<crate::CloseReason>,
    /// `Driver::close` called; waiting for `Closed`.
    pub(crate) closing: Option<crate::CloseReason>,
    /// The handler wrote or asked to close since the last flush.
    pub(crate) dirty: bool,
    /// In the worker's list of connections to flush.
    pub(crate) listed: bool,
    /// In the worker's list of connections with new input.
    pub(crate) has_data: bool,
    /// Lingering: FIN sent after the last output, input discarded until
    /// the peer's EOF or this instant, when the connection closes anyway.
    pub(crate) linger_until: Option<Ms>,
    /// A write found the pool empty.
    pub(crate) out_of_buffers: bool,
    /// The unconsumed input was moved off the pool while it ran low (see
    /// `Worker::park`); it goes back in front of the next receive.
    pub(crate) parked: bool,
    /// Last receive or send completion, for the idle timeout.
    pub(crate) last_active: Ms,
    /// When the oldest unconsumed input arrived, restarted whenever the
    /// handler consumes: the read timeout counts from here.
    pub(crate) input_since: Option<Ms>,
    /// When pending output last made progress (or became pending): the
    /// write timeout counts from here.
    pub(crate) send_since: Ms,
    /// The handler's timer ([`Cx::set_timer`]).
    pub(crate) timer_at: Option<Ms>,
    /// Deadline of this connection's live entry in the timer wheel.
    pub(crate) wheel_at: Option<Ms>,
}

impl ConnIo {
    pub(crate) fn new(token: Token, peer: Option<SocketAddr>, now: Ms) -> ConnIo {
        ConnIo {
            token,
            peer,
            input: Chain::new(),
            output: Chain::new(),
            in_flight: 0,
            paused: false,
            read_closed: false,
            close_after_drain: None,
            closing: None,
            dirty: false,
            listed: false,
            has_data: false,
            linger_until: None,
            out_of_buffers: false,
            parked: false,
            last_active: now,
            input_since: None,
            send_since: now,
            timer_at: None,
            wheel_at: None,
        }
    }

    /// Makes sure the wheel holds an entry for this connection at or before
    /// `deadline`. Later deadlines are left to the re-arm when the entry
    /// comes round, so activity costs one comparison.
    pub(crate) fn arm(&mut self, wheel: &mut Wheel, deadline: Ms) {
        if self.wheel_at.is_none_or(|at| deadline < at) {
            self.wheel_at = Some(deadline);
            wheel.insert(deadline, self.token);
        }
    }

    /// The deadlines in force, in order of precedence. A lingering
    /// connection has only its linger deadline; one closing after its output
    /// gets no more timer calls; the read timeout waits while output is
    /// pending (the handler may be holding input back for it).
    fn deadlines(&self, limits: &Limits) -> [(Due, Option<Ms>); 5] {
        if let Some(until) = self.linger_until {
            return [
                (Due::Linger, Some(until)),
                (Due::Idle, None),
                (Due::Read, None),
                (Due::Write, None),
                (Due::Timer, None),
            ];
        }
        let pending = self.pending_output() > 0;
        [
            (Due::Linger, None),
            (Due::Idle, limits.idle.map(|t| self.last_active.after(t))),
            (Due::Read, limits.read.zip(self.input_since).map(|(t, since)| since.after(t))),
            (Due::Write, limits.write.filter(|_| pending).map(|t| self.send_since.after(t))),
            (Due::Timer, self.timer_at.filter(|_| self.close_after_drain.is_none())),
        ]
    }

    /// The earliest deadline in force.
    pub(crate) fn next_deadline(&self, limits: &Limits) -> Option<Ms> {
        self.deadlines(limits).into_iter().filter_map(|(_, at)| at).min()
    }

    /// The first deadline (by precedence) that has passed at `now`.
    pub(crate) fn due(&self, limits: &Limits, now: Ms) -> Option<Due> {
        self.deadlines(limits)
            .into_iter()
            .find(|(_, at)| at.is_some_and(|at| at <= now))
            .map(|(due, _)| due)
    }

    /// Restarts the read timeout after the handler consumed input.
    fn consumed(&mut self, now: Ms) {
        self.input_since = (!self.input.is_empty()).then_some(now);
    }

    /// FIN sent after the last output; input is discarded until EOF.
    pub(crate) fn lingering(&self) -> bool {
        self.linger_until.is_some()
    }

    /// Output not yet reported sent (queued here or in the driver).
    pub(crate) fn pending_output(&self) -> usize {
        self.in_flight + self.output.len()
    }
}

/// The handler's view of one connection during a callback.
///
/// Reads go through [`Cx::input`]; writes ([`Cx::write`],
/// [`Cx::write_with`], [`Cx::forward`]) are collected into the connection's
/// output chain and sent at the end of the turn.
#[derive(Debug)]
pub struct Cx<'a> {
    pub(crate) pool: &'a mut Pool,
    pub(crate) io: &'a mut ConnIo,
    pub(crate) scratch: &'a mut Vec<u8>,
    pub(crate) wheel: &'a mut Wheel,
    pub(crate) clock: Clock,
    pub(crate) worker: WorkerId,
    pub(crate) now: Instant,
    pub(crate) now_ms: Ms,
}

impl<'a> Cx<'a> {
    /// The bytes received and not yet consumed.
    pub fn input(&mut self) -> Input<'_> {
        Input { chain: &self.io.input, pool: self.pool, scratch: self.scratch }
    }

    /// Drops the first `n` input bytes (parsed and done with); buffers that
    /// empty go straight back to the pool.
    ///
    /// # Panics
    /// If `n` exceeds the input's length.
    pub fn consume(&mut self, n: usize) {
        self.io.input.consume(self.pool, n);
        self.io.consumed(self.now_ms);
    }

    /// Appends `data` to the output, coalescing small writes into the tail
    /// buffer.
    ///
    /// If the pool has no buffer left, the bytes that do not fit are dropped
    /// and the connection is closed with [`CloseReason::PoolExhausted`] once
    /// the callback returns.
    ///
    /// [`CloseReason::PoolExhausted`]: crate::CloseReason::PoolExhausted
    pub fn write(&mut self, data: &[u8]) {
        if self.io.output.extend_from_slice(self.pool, data).is_err() {
            self.io.out_of_buffers = true;
        }
        self.io.dirty = true;
    }

    /// Lets `fill` serialise straight into output buffer space (at least one
    /// byte of room; the rest of the current tail buffer) and keeps the bytes
    /// it reports. Returns that count (0 if the pool is exhausted, which
    /// closes the connection like [`Cx::write`]).
    ///
    /// # Panics
    /// If `fill` reports more bytes than the room it was given.
    pub fn write_with(&mut self, fill: impl FnOnce(&mut [u8]) -> usize) -> usize {
        self.io.dirty = true;
        match self.io.output.write_with(self.pool, fill) {
            Ok(n) => n,
            Err(_) => {
                self.io.out_of_buffers = true;
                0
            }
        }
    }

    /// Moves the first `n` input bytes to the output. Whole buffers move
    /// without a copy (a pool buffer appended to the output as it is); only
    /// a buffer cut in two has its front copied. The zero-copy path of echo
    /// servers and proxies.
    ///
    /// # Panics
    /// If `n` exceeds the input's length.
    pub fn forward(&mut self, n: usize) {
        match self.io.input.split_to(self.pool, n) {
            Ok(chain) => self.io.output.append(self.pool, chain),
            Err(_) => self.io.out_of_buffers = true,
        }
        self.io.consumed(self.now_ms);
        self.io.dirty = true;
    }

    /// Closes the connection once everything written has been sent. Input
    /// still unread is discarded and receiving stops.
    pub fn close(&mut self) {
        self.io.close_after_drain.get_or_insert(crate::CloseReason::Local);
        self.io.dirty = true;
    }

    /// Calls [`Handler::on_timer`] for this connection once `after` has
    /// passed, replacing any timer set before. Timers fire at their deadline
    /// or up to one wheel tick (10 ms) later, never earlier; none fires
    /// once the connection is closing.
    ///
    /// [`Handler::on_timer`]: crate::Handler::on_timer
    pub fn set_timer(&mut self, after: Duration) {
        let at = self.now_ms.after(after);
        self.io.timer_at = Some(at);
        self.io.arm(self.wheel, at);
    }

    /// Cancels the timer set with [`Cx::set_timer`], if any.
    pub fn cancel_timer(&mut self) {
        self.io.timer_at = None;
    }

    /// When the timer set with [`Cx::set_timer`] fires, if one is set.
    pub fn timer(&self) -> Option<Instant> {
        self.io.timer_at.map(|at| self.clock.instant(at))
    }

    /// Whether the peer has finished sending (no more input will come).
    pub fn is_read_closed(&self) -> bool {
        self.io.read_closed
    }

    /// Output bytes written and not yet reported sent (held here or by the
    /// driver, including a send in flight).
    pub fn pending_output(&self) -> usize {
        self.io.pending_output()
    }

    /// The peer's address, if the kernel told.
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.io.peer
    }

    /// The connection's token within its worker (for logs).
    pub fn token(&self) -> Token {
        self.io.token
    }

    /// The worker this connection lives on.
    pub fn worker(&self) -> WorkerId {
        self.worker
    }

    /// The time at the start of this turn (cheaper than `Instant::now()`).
    pub fn now(&self) -> Instant {
        self.now
    }
}

/// Read-only view of a connection's unconsumed input, from [`Cx::input`].
#[derive(Debug)]
pub struct Input<'a> {
    chain: &'a Chain,
    pool: &'a Pool,
    scratch: &'a mut Vec<u8>,
}

impl<'a> Input<'a> {
    /// Unconsumed bytes.
    pub fn len(&self) -> usize {
        self.chain.len()
    }

    /// Whether there is nothing to read.
    pub fn is_empty(&self) -> bool {
        self.chain.is_empty()
    }

    /// The first contiguous run of input (borrowed from its buffer).
    pub fn first(&self) -> &'a [u8] {
        self.chain.first(self.pool)
    }

    /// Every contiguous run of input, in order.
    pub fn chunks(&self) -> Chunks<'a> {
        self.chain.chunks(self.pool)
    }

    /// The first `n` bytes as one slice: borrowed when they lie in one
    /// buffer, else copied once into a per-worker scratch buffer. `None` if
    /// fewer than `n` bytes have arrived.
    pub fn peek(self, n: usize) -> Option<&'a [u8]> {
        self.range(0..n)
    }

    /// Bytes `range` as one slice (see [`Input::peek`]). `None` if the range
    /// reaches past the input.
    pub fn range(self, range: std::ops::Range<usize>) -> Option<&'a [u8]> {
        if range.end > self.chain.len() || range.start > range.end {
            return None;
        }
        Some(self.chain.contiguous(self.pool, range, self.scratch))
    }

    /// All input as one slice (borrowed or copied once, as [`Input::peek`]).
    pub fn contiguous(self) -> &'a [u8] {
        let n = self.chain.len();
        self.chain.contiguous(self.pool, 0..n, self.scratch)
    }

    /// Position of the first `byte` at or after `from`, across buffers.
    pub fn find(&self, from: usize, byte: u8) -> Option<usize> {
        self.chain.find(self.pool, from, byte)
    }
}

/// The handler's view of its worker in [`Handler::on_tick`].
///
/// [`Handler::on_tick`]: crate::Handler::on_tick
#[derive(Debug)]
pub struct WorkerCx<'a> {
    pub(crate) worker: WorkerId,
    pub(crate) now: Instant,
    pub(crate) connections: usize,
    pub(crate) _marker: std::marker::PhantomData<&'a ()>,
}

impl WorkerCx<'_> {
    /// Which worker.
    pub fn worker(&self) -> WorkerId {
        self.worker
    }

    /// The time at the start of this turn.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Open connections on this worker.
    pub fn connections(&self) -> usize {
        self.connections
    }
}
