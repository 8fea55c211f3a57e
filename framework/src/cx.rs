//! What a handler sees during a callback: [`Cx`] for its connection (and,
//! by [`ConnId`], the other connections of its worker), [`ConnMut`] for
//! another connection, [`WorkerCx`] for the worker, and [`Input`].

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use pollring_backends::buf::{Chain, Chunks, Pool};

use crate::conn::Flags;
use crate::mailbox::Sender;
use crate::offload::OffloadError;
use crate::state::WorkerState;
use crate::timer::Stamp;
use crate::write::{Output, Writer};
use crate::WorkerId;

/// Names a connection of one worker: a slot and a generation, so an id kept
/// after its connection closed never reaches the connection that reuses
/// the slot (operations on it return [`Gone`]). `Copy`, 8 bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    index: u32,
    /// Never zero, so `Option<ConnId>` takes no more room than a `ConnId`.
    generation: NonZeroU32,
}

impl ConnId {
    /// Generation 0 is never handed out; it is read as 1.
    pub(crate) const fn new(index: u32, generation: u32) -> ConnId {
        let generation = match NonZeroU32::new(generation) {
            Some(g) => g,
            None => NonZeroU32::MIN,
        };
        ConnId { index, generation }
    }

    pub(crate) const fn index(self) -> usize {
        self.index as usize
    }

    pub(crate) const fn generation(self) -> u32 {
        self.generation.get()
    }

    /// The id as one number (for logs and maps).
    pub const fn as_u64(self) -> u64 {
        ((self.generation.get() as u64) << 32) | self.index as u64
    }
}

impl fmt::Debug for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnId({}.{})", self.index, self.generation)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.index, self.generation)
    }
}

/// Names a connection anywhere in the server: its worker and its id there.
/// What a [`Sender`] needs to reach it from another thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnAddr {
    pub(crate) worker: WorkerId,
    pub(crate) id: ConnId,
}

impl ConnAddr {
    /// The worker the connection lives on.
    pub fn worker(self) -> WorkerId {
        self.worker
    }

    /// The connection's id on its worker.
    pub fn id(self) -> ConnId {
        self.id
    }
}

/// The connection named is closed or closing (or, for writes, has shut
/// down its writing side): the operation did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the connection is closed or closing")]
pub struct Gone;

/// Why an outbound connection ([`Cx::connect`]) did not open, as told to
/// [`Handler::on_connect_error`](crate::Handler::on_connect_error).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Nothing listens there (`ECONNREFUSED`).
    #[error("connection to {addr} refused")]
    Refused {
        /// Where to.
        addr: SocketAddr,
    },
    /// No answer within the timeout given to `connect`.
    #[error("no connection to {addr} within the connect timeout")]
    TimedOut {
        /// Where to.
        addr: SocketAddr,
    },
    /// Closed by the handler, or by a shutdown, before it connected.
    #[error("connection to {addr} aborted before it was established")]
    Aborted {
        /// Where to.
        addr: SocketAddr,
    },
    /// Any other failure (`ENETUNREACH`, `EMFILE`, …).
    #[error("cannot connect to {addr}: {source}")]
    Io {
        /// Where to.
        addr: SocketAddr,
        /// What the kernel said.
        source: std::io::Error,
    },
}

impl ConnectError {
    pub(crate) fn from_io(addr: SocketAddr, source: std::io::Error) -> ConnectError {
        match source.kind() {
            std::io::ErrorKind::ConnectionRefused => ConnectError::Refused { addr },
            std::io::ErrorKind::TimedOut => ConnectError::TimedOut { addr },
            _ => ConnectError::Io { addr, source },
        }
    }

    /// The address the connect was for.
    pub fn addr(&self) -> SocketAddr {
        match self {
            ConnectError::Refused { addr }
            | ConnectError::TimedOut { addr }
            | ConnectError::Aborted { addr }
            | ConnectError::Io { addr, .. } => *addr,
        }
    }
}

/// The handler's view of one connection during a callback.
///
/// Reads go through [`Cx::input`]; writes ([`Cx::write`],
/// [`Cx::write_with`], [`Cx::forward`]) are collected into the connection's
/// output chain and sent at the end of the turn. Other connections of the
/// same worker are reached by their [`ConnId`] through [`Cx::conn`] and
/// [`Cx::forward_to`]; other threads through [`Cx::sender`] and
/// [`Cx::offload`].
///
/// `M` is the handler's [`Handler::Message`](crate::Handler::Message).
pub struct Cx<'a, M = ()> {
    pub(crate) pool: &'a mut Pool,
    pub(crate) st: &'a mut WorkerState<M>,
    pub(crate) me: ConnId,
}

impl<M> fmt::Debug for Cx<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cx").field("id", &self.me).field("worker", &self.st.worker).finish()
    }
}

impl<'a, M: Send + 'static> Cx<'a, M> {
    fn io(&self) -> &crate::conn::ConnIo {
        self.st.ios.get(self.me).expect("a callback's own connection is live")
    }

    fn io_mut(&mut self) -> &mut crate::conn::ConnIo {
        self.st.ios.get_mut(self.me).expect("a callback's own connection is live")
    }

    /// The bytes received and not yet consumed.
    pub fn input(&mut self) -> Input<'_> {
        let io = self.st.ios.get(self.me).expect("a callback's own connection is live");
        Input { chain: &io.input, pool: self.pool, scratch: &mut self.st.scratch }
    }

    /// Drops the first `n` input bytes (parsed and done with); buffers that
    /// empty go straight back to the pool.
    ///
    /// # Panics
    /// If `n` exceeds the input's length.
    pub fn consume(&mut self, n: usize) {
        let now = self.st.now_ms;
        let pool = &mut *self.pool;
        let io = self.st.ios.get_mut(self.me).expect("a callback's own connection is live");
        io.input.consume(pool, n);
        io.consumed(now);
    }

    /// Appends `data` to the output, coalescing small writes into the tail
    /// buffer.
    ///
    /// If the pool has no buffer left, the bytes that do not fit are dropped
    /// and the connection is closed with [`CloseReason::PoolExhausted`] once
    /// the callback returns. After [`Cx::shutdown_write`], or once the
    /// connection lingers or closes, writes are discarded.
    ///
    /// [`CloseReason::PoolExhausted`]: crate::CloseReason::PoolExhausted
    pub fn write(&mut self, data: &[u8]) {
        let _ = self.st.write(self.pool, self.me, data);
    }

    /// Lets `fill` serialise straight into output buffer space (at least one
    /// byte of room; the rest of the current tail buffer) and keeps the bytes
    /// it reports. Returns that count (0 if the pool is exhausted, which
    /// closes the connection like [`Cx::write`], or if writing is over).
    /// [`Writer::put_with`], for one write.
    ///
    /// # Panics
    /// If `fill` reports more bytes than the room it was given.
    pub fn write_with(&mut self, fill: impl FnOnce(&mut [u8]) -> usize) -> usize {
        self.st.write_with(self.pool, self.me, fill).unwrap_or(0)
    }

    /// A [`Writer`] into the output: serialise a message of any size
    /// straight into pool buffers, through [`std::io::Write`] or
    /// [`Writer::put`]. It discards once writing is over, like
    /// [`Cx::write`].
    pub fn writer(&mut self) -> Writer<'_> {
        self.st.writer(self.pool, self.me)
    }

    /// Lends the first `n` input bytes (a request) to `f` as one slice,
    /// together with a [`Writer`] into the output (for its reply), then
    /// consumes them. The bytes are borrowed where they lie when they are in
    /// one buffer, else copied once (as [`Input::peek`]); the reply goes
    /// straight into pool buffers. So a request is parsed and answered with
    /// no copy in between, which `cx.input()` and `cx.writer()` cannot do
    /// (each borrows the whole `Cx`).
    ///
    /// `None`, and `f` is not called, if fewer than `n` bytes have arrived.
    ///
    /// # Examples
    /// ```no_run
    /// use pollring::{Cx, Handler};
    ///
    /// /// Answers each line with the line reversed.
    /// struct Reverse;
    ///
    /// impl Handler for Reverse {
    ///     type Conn = ();
    ///     type Message = ();
    ///     fn on_open(&mut self, _cx: &mut Cx<'_>) {}
    ///     fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
    ///         while let Some(end) = cx.input().find(0, b'\n') {
    ///             cx.reply_to(end + 1, |line, out| {
    ///                 for &b in line[..end].iter().rev() {
    ///                     out.put(&[b]);
    ///                 }
    ///                 out.put(b"\n");
    ///             });
    ///         }
    ///     }
    /// }
    /// ```
    pub fn reply_to<R>(
        &mut self,
        n: usize,
        f: impl FnOnce(&[u8], &mut Writer<'_>) -> R,
    ) -> Option<R> {
        let id = self.me;
        let st = &mut *self.st;
        let io = st.ios.get_mut(id).expect("a callback's own connection is live");
        if n > io.input.len() {
            return None;
        }
        let writable = crate::state::is_writable(io);
        let crate::conn::ConnIo { input, output, flags, .. } = io;
        let dirty = &mut st.dirty;
        let result = input.read_with(self.pool, 0..n, &mut st.scratch, |request, pool| {
            let to = writable.then_some(Output { chain: output, flags, dirty, id });
            f(request, &mut Writer::new(pool, to))
        });
        self.consume(n);
        Some(result)
    }

    /// Moves the first `n` input bytes to the output. Whole buffers move
    /// without a copy (a pool buffer appended to the output as it is); only
    /// a buffer cut in two has its front copied. The zero-copy path of echo
    /// servers.
    ///
    /// # Panics
    /// If `n` exceeds the input's length.
    pub fn forward(&mut self, n: usize) {
        if self.st.forward(self.pool, self.me, self.me, n).is_err() {
            // Writing is over: the bytes are consumed all the same.
            self.consume(n);
        }
    }

    /// Moves the first `n` input bytes of this connection to the output of
    /// connection `to` of the same worker, without copying whole buffers:
    /// the proxy's path.
    ///
    /// # Errors
    /// [`Gone`] if `to` is closed, closing or shut for writing; the input is
    /// left in place then.
    ///
    /// # Panics
    /// If `n` exceeds the input's length.
    pub fn forward_to(&mut self, to: ConnId, n: usize) -> Result<(), Gone> {
        self.st.forward(self.pool, self.me, to, n)
    }

    /// Another connection of this worker (or this one), to write to, close,
    /// pause or resume.
    ///
    /// # Errors
    /// [`Gone`] if it has closed (its id's generation no longer matches).
    pub fn conn(&mut self, id: ConnId) -> Result<ConnMut<'_, M>, Gone> {
        self.st.ios.get(id).ok_or(Gone)?;
        Ok(ConnMut { pool: self.pool, st: self.st, id })
    }

    /// Closes the connection once everything written has been sent. Input
    /// still unread is discarded and receiving stops.
    pub fn close(&mut self) {
        let _ = self.st.close(self.me);
    }

    /// Sends FIN once everything written so far has been sent, and keeps
    /// reading: the peer sees end of stream, this side still receives. The
    /// connection closes when the peer's FIN arrives too (or on
    /// [`Cx::close`]). Later writes are discarded.
    pub fn shutdown_write(&mut self) {
        let _ = self.st.shutdown_write(self.me);
    }

    /// Keeps the connection open for writing after the peer's FIN (off by
    /// default: a connection closes once its output after the peer's FIN is
    /// written). With it on, `on_data` still sees
    /// [`Cx::is_read_closed`] once, and the connection stays until the
    /// handler calls [`Cx::close`] or [`Cx::shutdown_write`].
    pub fn set_half_close(&mut self, on: bool) {
        self.io_mut().flags.set(Flags::HALF_CLOSE, on);
    }

    /// Stops receiving on this connection until [`Cx::resume_recv`]. Bytes
    /// already received stay in the input; none are lost.
    pub fn pause_recv(&mut self) {
        let _ = self.st.set_recv_paused(self.me, true);
    }

    /// Resumes receiving after [`Cx::pause_recv`].
    pub fn resume_recv(&mut self) {
        let _ = self.st.set_recv_paused(self.me, false);
    }

    /// Names the connection whose input feeds this one's output: while this
    /// connection's pending output is at or above `Config::high_water`,
    /// *that* connection stops receiving, until this one's output drains
    /// below `Config::low_water`. By default a connection throttles its own
    /// reading. A proxy sets each side as the other's feeder, so each
    /// direction's memory stays bounded by the water marks, independently.
    ///
    /// # Errors
    /// [`Gone`] if this connection is gone (never, from its own callback).
    pub fn set_feeder(&mut self, feeder: ConnId) -> Result<(), Gone> {
        self.st.set_feeder(self.me, Some(feeder))
    }

    /// Starts an outbound TCP connection to `addr` on this worker and
    /// returns its id at once; nothing blocks (no DNS either: resolve names
    /// off the worker, e.g. with [`Cx::offload`]). Writes to it are queued
    /// until it connects. On success, [`Handler::on_open`] runs for it, with
    /// [`Cx::opener`] naming this connection; on failure or after `timeout`,
    /// [`Handler::on_connect_error`].
    ///
    /// [`Handler::on_open`]: crate::Handler::on_open
    /// [`Handler::on_connect_error`]: crate::Handler::on_connect_error
    pub fn connect(&mut self, addr: SocketAddr, timeout: Duration) -> ConnId {
        self.st.connect(addr, timeout, Some(self.me))
    }

    /// For an outbound connection, the connection that called
    /// [`Cx::connect`] (if it was one).
    pub fn opener(&self) -> Option<ConnId> {
        self.st.opener_of(self.me)
    }

    /// Calls [`Handler::on_timer`] for this connection once `after` has
    /// passed, replacing any timer set before. Timers fire at their deadline
    /// or up to one wheel tick (10 ms) later, never earlier; none fires
    /// once the connection is closing.
    ///
    /// [`Handler::on_timer`]: crate::Handler::on_timer
    pub fn set_timer(&mut self, after: Duration) {
        let _ = self.st.set_timer(self.me, after);
    }

    /// Cancels the timer set with [`Cx::set_timer`], if any.
    pub fn cancel_timer(&mut self) {
        self.io_mut().timer_at = Stamp::NONE;
    }

    /// When the timer set with [`Cx::set_timer`] fires, if one is set.
    pub fn timer(&self) -> Option<Instant> {
        self.io().timer_at.get().map(|at| self.st.clock.instant(at))
    }

    /// Whether the peer has finished sending (no more input will come).
    pub fn is_read_closed(&self) -> bool {
        self.io().phase.read_closed()
    }

    /// Output bytes written and not yet reported sent (held here or by the
    /// driver, including a send in flight).
    pub fn pending_output(&self) -> usize {
        self.io().pending_output()
    }

    /// The peer's address, if the kernel told (for an outbound connection,
    /// the address connected to).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.st.peer(self.me)
    }

    /// The server began a graceful shutdown: finish what the peer asked
    /// for and close (see [`Handler::on_shutdown`](crate::Handler::on_shutdown)).
    pub fn is_draining(&self) -> bool {
        self.st.draining
    }

    /// Which of the server's listeners accepted this connection: `0` for
    /// the one [`Server::bind`](crate::Server::bind) bound, then one more
    /// for each [`Server::also_listen`](crate::Server::also_listen), in
    /// order (under socket activation, the order the sockets were passed).
    /// `None` for an outbound connection.
    pub fn listener(&self) -> Option<usize> {
        let index = self.io().listener;
        (index != crate::conn::NO_LISTENER).then_some(index as usize)
    }

    /// This connection's id within its worker.
    pub fn id(&self) -> ConnId {
        self.me
    }

    /// This connection's address within the server, for messages from
    /// other threads ([`Sender::send`]).
    pub fn addr(&self) -> ConnAddr {
        self.st.addr(self.me)
    }

    /// A sender that reaches every connection and worker of this server
    /// from any thread.
    pub fn sender(&self) -> Sender<M> {
        self.st.sender.clone()
    }

    /// Runs `job` on the server's offload pool (blocking work: a database
    /// call, a file read, a DNS lookup) and delivers its result to this
    /// connection's [`Handler::on_message`] on this worker. If the
    /// connection has closed by then, the result is dropped.
    ///
    /// # Errors
    /// [`OffloadError::Full`] when `Config::offload_queue` jobs are waiting
    /// already; [`OffloadError::Stopped`] during shutdown.
    ///
    /// [`Handler::on_message`]: crate::Handler::on_message
    pub fn offload(
        &mut self,
        job: impl FnOnce() -> M + Send + 'static,
    ) -> Result<(), OffloadError> {
        let (sender, to) = (self.st.sender.clone(), self.addr());
        self.st.offload.run(Box::new(move || {
            let result = job();
            if let Err(error) = sender.deliver(to, result) {
                tracing::debug!(%error, "offload result not delivered");
            }
        }))?;
        self.st.offloaded += 1;
        Ok(())
    }

    /// Asks for [`Handler::on_tick`](crate::Handler::on_tick) on this
    /// worker no later than `after` from now (a tick scheduled sooner
    /// stays): work for the worker as a whole, such as retrying what a
    /// full mailbox refused, without a connection's timer.
    pub fn tick_in(&mut self, after: Duration) {
        self.st.tick_in(after);
    }

    /// The worker this connection lives on.
    pub fn worker(&self) -> WorkerId {
        self.st.worker
    }

    /// The time at the start of this turn (cheaper than `Instant::now()`).
    pub fn now(&self) -> Instant {
        self.st.now
    }
}

/// Another connection of the worker, from [`Cx::conn`] or [`WorkerCx::conn`].
pub struct ConnMut<'a, M = ()> {
    pool: &'a mut Pool,
    st: &'a mut WorkerState<M>,
    id: ConnId,
}

impl<M> fmt::Debug for ConnMut<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnMut").field("id", &self.id).finish()
    }
}

impl<M: Send + 'static> ConnMut<'_, M> {
    /// Its id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Its address within the server, for messages from other threads.
    pub fn addr(&self) -> ConnAddr {
        self.st.addr(self.id)
    }

    /// Whether it is an outbound connection still connecting.
    pub fn is_connecting(&self) -> bool {
        self.st
            .ios
            .get(self.id)
            .is_some_and(|io| matches!(io.phase, crate::lifecycle::Phase::Connecting { .. }))
    }

    /// Whether its peer has finished sending.
    pub fn is_read_closed(&self) -> bool {
        self.st.ios.get(self.id).is_some_and(|io| io.phase.read_closed())
    }

    /// Calls [`Handler::on_timer`](crate::Handler::on_timer) for it after
    /// `after` (see [`Cx::set_timer`]).
    ///
    /// # Errors
    /// [`Gone`] if it is not open (connecting or closing).
    pub fn set_timer(&mut self, after: Duration) -> Result<(), Gone> {
        self.st.set_timer(self.id, after)
    }

    /// Appends `data` to its output (see [`Cx::write`]).
    ///
    /// # Errors
    /// [`Gone`] if it is closing or shut for writing.
    pub fn write(&mut self, data: &[u8]) -> Result<(), Gone> {
        self.st.write(self.pool, self.id, data)
    }

    /// Serialises into its output (see [`Cx::write_with`]).
    ///
    /// # Errors
    /// [`Gone`] if it is closing or shut for writing.
    pub fn write_with(&mut self, fill: impl FnOnce(&mut [u8]) -> usize) -> Result<usize, Gone> {
        self.st.write_with(self.pool, self.id, fill)
    }

    /// A [`Writer`] into its output (see [`Cx::writer`]).
    ///
    /// # Errors
    /// [`Gone`] if it is closed, closing or shut for writing.
    pub fn writer(&mut self) -> Result<Writer<'_>, Gone> {
        let writer = self.st.writer(self.pool, self.id);
        if writer.discards() {
            return Err(Gone);
        }
        Ok(writer)
    }

    /// Closes it once its output is written (see [`Cx::close`]).
    ///
    /// # Errors
    /// [`Gone`] if it is already closing.
    pub fn close(&mut self) -> Result<(), Gone> {
        self.st.close(self.id)
    }

    /// Closes it at once, dropping unsent output (a peer that reset, an
    /// upstream that failed).
    ///
    /// # Errors
    /// [`Gone`] if it is already closing.
    pub fn abort(&mut self) -> Result<(), Gone> {
        self.st.abort(self.id)
    }

    /// Sends FIN after its queued output, reading on (see
    /// [`Cx::shutdown_write`]). On a connection still connecting, the FIN
    /// goes out once it connects, after the output queued meanwhile.
    ///
    /// # Errors
    /// [`Gone`] if it is closing.
    pub fn shutdown_write(&mut self) -> Result<(), Gone> {
        self.st.shutdown_write(self.id)
    }

    /// Stops receiving on it.
    ///
    /// # Errors
    /// [`Gone`] if it is closing.
    pub fn pause_recv(&mut self) -> Result<(), Gone> {
        self.st.set_recv_paused(self.id, true)
    }

    /// Resumes receiving on it.
    ///
    /// # Errors
    /// [`Gone`] if it is closing.
    pub fn resume_recv(&mut self) -> Result<(), Gone> {
        self.st.set_recv_paused(self.id, false)
    }

    /// Its output not yet reported sent.
    ///
    /// # Errors
    /// [`Gone`] if it has closed.
    pub fn pending_output(&self) -> Result<usize, Gone> {
        self.st.pending_output(self.id)
    }

    /// Names the connection whose reading pauses while this one's output is
    /// over the high-water mark (see [`Cx::set_feeder`]).
    ///
    /// # Errors
    /// [`Gone`] if it has closed.
    pub fn set_feeder(&mut self, feeder: ConnId) -> Result<(), Gone> {
        self.st.set_feeder(self.id, Some(feeder))
    }

    /// Keeps it open for writing after its peer's FIN (see
    /// [`Cx::set_half_close`]).
    ///
    /// # Errors
    /// [`Gone`] if it has closed.
    pub fn set_half_close(&mut self, on: bool) -> Result<(), Gone> {
        self.st.ios.get_mut(self.id).ok_or(Gone)?.flags.set(Flags::HALF_CLOSE, on);
        Ok(())
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

/// The handler's view of its worker, in callbacks that concern no single
/// connection ([`Handler::on_tick`], [`Handler::on_worker_message`],
/// [`Handler::on_connect_error`]).
///
/// [`Handler::on_tick`]: crate::Handler::on_tick
/// [`Handler::on_worker_message`]: crate::Handler::on_worker_message
/// [`Handler::on_connect_error`]: crate::Handler::on_connect_error
pub struct WorkerCx<'a, M = ()> {
    pub(crate) pool: &'a mut Pool,
    pub(crate) st: &'a mut WorkerState<M>,
}

impl<M> fmt::Debug for WorkerCx<'_, M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerCx").field("worker", &self.st.worker).finish()
    }
}

impl<M: Send + 'static> WorkerCx<'_, M> {
    /// Which worker.
    pub fn worker(&self) -> WorkerId {
        self.st.worker
    }

    /// The time at the start of this turn.
    pub fn now(&self) -> Instant {
        self.st.now
    }

    /// Open connections on this worker (outbound ones included).
    pub fn connections(&self) -> usize {
        self.st.ios.len()
    }

    /// A connection of this worker, to write to, close, pause or resume.
    ///
    /// # Errors
    /// [`Gone`] if it has closed.
    pub fn conn(&mut self, id: ConnId) -> Result<ConnMut<'_, M>, Gone> {
        self.st.ios.get(id).ok_or(Gone)?;
        Ok(ConnMut { pool: self.pool, st: self.st, id })
    }

    /// Starts an outbound connection (see [`Cx::connect`]); its
    /// [`Cx::opener`] is `None`.
    pub fn connect(&mut self, addr: SocketAddr, timeout: Duration) -> ConnId {
        self.st.connect(addr, timeout, None)
    }

    /// A sender that reaches every connection and worker of this server.
    pub fn sender(&self) -> Sender<M> {
        self.st.sender.clone()
    }

    /// Asks for [`Handler::on_tick`](crate::Handler::on_tick) no later than
    /// `after` from now (see [`Cx::tick_in`]). From `on_tick` itself, the
    /// earlier of this and its return value wins.
    pub fn tick_in(&mut self, after: Duration) {
        self.st.tick_in(after);
    }
}
