//! The io_uring driver: completion-native, one ring per worker.
//!
//! # How it keeps the [`Driver`] contract
//!
//! * **Accepts**: one multishot `ACCEPT` per listener, one-shot on a socket
//!   other workers share ([`Share::Shared`]) so that they take turns. A
//!   completion without `IORING_CQE_F_MORE` re-arms it at the next turn. An error that
//!   concerns the listener (out of descriptors, a broken socket: see
//!   [`accept`](crate::accept)) is reported as [`Event::AcceptError`]; the
//!   accept is then re-armed only after a `TIMEOUT` of
//!   [`UringConfig::accept_backoff`] (no busy loop).
//! * **Receives**: one multishot `RECV` per connection, with buffer select
//!   from a provided buffer ring (`bufring.rs`) whose buffers are pool buffers
//!   (bid = buffer index). Each completion's buffer becomes an
//!   [`Event::Recv`]. The ring is topped up from the pool at the start of each
//!   turn, leaving [`UringConfig::recv_reserve`] buffers for writers.
//!   `-ENOBUFS` (ring empty) ends the multishot without consuming a byte: the
//!   connection is *starved* and re-armed at a later turn once the ring has
//!   buffers again, so no byte is lost or reordered. Any multishot that ends
//!   (no `F_MORE`) while the connection still wants data is re-armed.
//!   With [`UringConfig::recv_bundle`], one completion covers several
//!   consecutive ring entries; each buffer is its own `Recv`, in order.
//!   With [`UringConfig::recv_incremental`], a completion flagged
//!   `IORING_CQE_F_BUF_MORE` leaves its buffer in the ring for the next
//!   receive; its bytes come back as a view of the buffer (see
//!   [`Pool`](crate::buf::Pool#views)), and the buffer returns to the pool
//!   when the kernel is done with it and the last view is freed.
//! * **Sends**: the driver owns two chains per connection: `out` (queued by
//!   [`Driver::send`]) and `inflight` (lent to the kernel). At each turn, a
//!   connection with output and no send in flight moves `out` behind
//!   `inflight` and submits one `SEND` (one segment) or `SENDMSG` (up to 64
//!   iovecs, kept in a boxed, reused `msghdr` until the completion), with
//!   `MSG_NOSIGNAL`. New data queues in `out`, never in the buffers the
//!   kernel reads. A short send leaves the rest in `inflight` for the next turn.
//!   With [`UringConfig::send_bundle`], several segments go out as one send
//!   bundle from a send ring lent to the connection for that send
//!   (`sendring.rs`).
//! * **Close**: unsent output is freed at once; in-flight operations are
//!   cancelled with one `ASYNC_CANCEL` matching every request on the fd.
//!   Each connection counts its operations in flight; [`Event::Closed`] is
//!   emitted when the last final completion arrives, and the descriptor is
//!   closed then. The slot is freed at the start of the next turn, once the
//!   caller has seen `Closed`, so a new connection can never be given a slot
//!   the caller still holds. Buffers received for a closing connection go straight back
//!   to the pool.
//! * **Tokens and `user_data`**: slots come from a [`Slab`]; each slot keeps a
//!   generation, bumped when it is freed. `user_data` packs the operation
//!   kind, the slot and 24 bits of the generation.
//! * **Waker**: an eventfd with a multishot `POLL_ADD`; a completion is an
//!   [`Event::Wake`] and drains the counter.
//! * **Turn**: prepare (refill the buffer ring, submit cancels, re-arm,
//!   flush sends: SQEs only), one `io_uring_enter` that submits and waits
//!   (every enter goes through `io_enter`, by the registered ring index with
//!   [`UringConfig::register_ring_fd`]; with [`UringConfig::min_wait`] it
//!   waits for up to [`UringConfig::wait_batch`] completions, but at most
//!   `min_wait` once one is there),
//!   then reap every completion. With `IORING_FEAT_NODROP`, completions that
//!   did not fit the CQ wait in the kernel; the CQ-overflow flag makes us
//!   flush them and reap again, so none is lost. A full SQ is submitted to
//!   make room; no SQE is dropped.
//! * **Drop**: every operation is cancelled and its completion awaited
//!   (bounded), the buffer ring is unregistered, and only then is the pool
//!   unmapped. If the kernel does not finish in time, the memory is leaked
//!   rather than freed under it.
//!
//! The ring is set up with `SINGLE_ISSUER | DEFER_TASKRUN` when the kernel
//! takes it (see [`probe()`]), so the driver must stay on the thread that
//! created it; it is not `Send`.

mod bufring;
mod complete;
mod conn;
mod enter;
mod probe;
mod ringmem;
mod sendring;
mod submit;

use std::fmt;
use std::io;
use std::mem::ManuallyDrop;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_uring::types::{CancelBuilder, Timespec};
use io_uring::{opcode, IoUring};
use slab::Slab;

use crate::buf::{Chain, Pool};
use crate::driver::{Driver, DriverStats, Event, ListenerId, Share, Token, Waker};
use crate::sys;

use bufring::BufRing;
use complete::Cqe;
use conn::{user_data, Conn, InFlight, Listener, Op, SendMsgState, SendState, ShutdownState};
use enter::{Batch, Wait};
pub use probe::{probe, UringError, NO_URING_ENV};
use sendring::SendRings;

/// How long `Drop` waits for cancelled operations to finish.
const DROP_DEADLINE: Duration = Duration::from_secs(2);

/// Switches of the io_uring driver. Defaults are the measured best.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UringConfig {
    /// Submission queue entries (power of two).
    pub entries: u32,
    /// Completion queue entries (power of two, at least `entries`).
    pub cq_entries: u32,
    /// Entries of the provided buffer ring (power of two, at most 32768).
    pub buf_ring_entries: u32,
    /// Poll the submission queue from a kernel thread, idle after this many
    /// milliseconds. `None`: off.
    pub sqpoll_idle_ms: Option<u32>,
    /// Receive several buffers per completion (recv bundles), if the kernel has them.
    pub recv_bundle: bool,
    /// Incremental consumption of provided buffers (`IOU_PBUF_RING_INC`,
    /// Linux 6.12), if the kernel has it: a receive takes only the bytes it
    /// needs from a ring buffer, and the next receive, of any connection,
    /// continues in the same buffer. Small messages then share buffers
    /// instead of pinning one each; receives come back as pool views.
    pub recv_incremental: bool,
    /// Send output of several segments as a send bundle (`SEND` with
    /// `IORING_RECVSEND_BUNDLE` from a provided buffer ring lent to the
    /// connection for the send, up to 256 segments) instead of a `SENDMSG`
    /// (up to 64 iovecs), if the kernel has bundles (Linux 6.10).
    pub send_bundle: bool,
    /// Most send rings (4 KiB each) the driver makes for send bundles; a
    /// send that finds none free goes out as a `SENDMSG`.
    pub send_bundle_rings: u16,
    /// Send zero-copy (`SEND_ZC`, `SENDMSG_ZC`) when at least this many
    /// bytes are sent at once. `None`: off (the default: on loopback the
    /// kernel copies anyway and the notification is pure cost; measure on
    /// a real NIC before turning it on).
    pub send_zc_threshold: Option<usize>,
    /// Register the ring's own descriptor (`IORING_REGISTER_RING_FDS`,
    /// Linux 5.18), so each `io_uring_enter` names the ring by index and the
    /// kernel skips a descriptor lookup. If registering fails, a warning is
    /// logged and the descriptor is used.
    pub register_ring_fd: bool,
    /// Buffers kept out of the receive path so writes can still get one.
    pub recv_reserve: usize,
    /// How completions are run; without SQPOLL the driver tries this mode
    /// first and falls back to the next simpler one the kernel accepts.
    pub taskrun: TaskRun,
    /// Pause of a listener after an accept error that concerns it
    /// (`EMFILE`, `EINVAL`, …: see [`accept`](crate::accept)).
    pub accept_backoff: Duration,
    /// Completions a waiting turn asks for before it wakes
    /// (`io_uring_enter`'s `min_complete`), when [`min_wait`](Self::min_wait)
    /// is set; 1: wake at the first completion. At most `cq_entries`.
    pub wait_batch: u32,
    /// How long a waiting turn may wait for [`wait_batch`](Self::wait_batch)
    /// completions (counted from the start of the wait) once a first one is
    /// there (`min_wait_usec`, `IORING_FEAT_MIN_TIMEOUT`, Linux 6.13; whole
    /// microseconds). Fewer `io_uring_enter`s per request at depth 1, for at
    /// most this much added latency per turn; at low concurrency (a few
    /// connections) it costs throughput (see docs/backends.md). A kernel
    /// without it gets a warning and waits for one completion. `None`: off.
    pub min_wait: Option<Duration>,
}

/// How the kernel runs the work that posts completions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum TaskRun {
    /// `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN` (Linux 6.1): completions
    /// are produced only inside our `io_uring_enter`, on our thread: no
    /// interrupts of the worker, fewer locks.
    #[default]
    Deferred,
    /// `COOP_TASKRUN` (Linux 5.19): no inter-processor interrupt to post a
    /// completion; it is posted at the next kernel entry.
    Coop,
    /// No task-run flag: the kernel's default signalling.
    Plain,
}

impl std::str::FromStr for TaskRun {
    type Err = String;

    fn from_str(s: &str) -> Result<TaskRun, String> {
        match s {
            "deferred" | "defer" => Ok(TaskRun::Deferred),
            "coop" => Ok(TaskRun::Coop),
            "plain" | "none" => Ok(TaskRun::Plain),
            _ => Err(format!("unknown task-run mode {s:?}: expected deferred, coop or plain")),
        }
    }
}

impl Default for UringConfig {
    fn default() -> Self {
        UringConfig {
            entries: 1024,
            cq_entries: 4096,
            buf_ring_entries: 1024,
            sqpoll_idle_ms: None,
            recv_bundle: false,
            recv_incremental: false,
            send_bundle: false,
            send_bundle_rings: 256,
            register_ring_fd: false,
            send_zc_threshold: None,
            recv_reserve: 64,
            taskrun: TaskRun::Deferred,
            accept_backoff: crate::accept::DEFAULT_BACKOFF,
            wait_batch: 8,
            min_wait: None,
        }
    }
}

/// Counters of io_uring-specific events, for tests and tuning.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UringCounters {
    /// Receives that found the buffer ring empty (`ENOBUFS`).
    pub recv_starved: u64,
    /// Multishot receives re-armed after they ended (starved, CQ overflow, ...).
    pub recv_rearmed: u64,
    /// Times the CQ overflowed and the kernel's backlog was flushed.
    pub cq_overflows: u64,
    /// Times the kernel said it dropped completions (`EBADR`, out of memory).
    pub cq_dropped: u64,
    /// Buffers that arrived as the second or later buffer of a recv bundle.
    pub bundled_bufs: u64,
    /// Sends submitted zero-copy (`SEND_ZC`/`SENDMSG_ZC`).
    pub zero_copy_sends: u64,
    /// Sends submitted as send bundles.
    pub bundled_sends: u64,
    /// Send rings retired after a short or failed bundle.
    pub send_rings_retired: u64,
    /// Receives that left their buffer in the ring for the next receive
    /// (`IORING_CQE_F_BUF_MORE`, incremental consumption).
    pub shared_bufs: u64,
}

/// A cancellation to submit at the next turn.
#[derive(Clone, Copy, Debug)]
enum Cancel {
    /// The request with this `user_data`.
    Op(u64),
    /// Every request on the descriptor of connection (slot, generation).
    Conn(usize, u32),
}

/// The io_uring driver. See the [module docs](self).
pub struct Uring {
    // Declared first: dropped before the memory the kernel may touch.
    ring: IoUring,
    bufring: BufRing,
    conns: Slab<Conn>,
    /// Generation of each slot of `conns`, bumped when the slot is freed.
    generations: Vec<u32>,
    listeners: Slab<Listener>,
    waker_fd: Arc<OwnedFd>,
    wake_armed: bool,
    /// Connections whose receive may need arming (starved ones stay here).
    rearm: Vec<usize>,
    /// Connections whose output may need flushing.
    flush: Vec<usize>,
    /// Listeners whose accept (or back-off) may need arming.
    accepts: Vec<usize>,
    cancels: Vec<Cancel>,
    /// Connections whose `CONNECT` is to be submitted.
    connects: Vec<usize>,
    /// Closing connections with no operation left: `Closed` is due.
    finished: Vec<usize>,
    /// Slots whose `Closed` went out last turn: released at the start of the
    /// next turn, after the caller has seen `Closed`, so that an `Accepted`
    /// earlier in the same batch cannot be given the slot of a connection the
    /// caller still holds.
    reclaim: Vec<usize>,
    /// Completions copied out of the CQ, waiting to be handled.
    cqes: Vec<Cqe>,
    /// Reusable `sendmsg` headers. Boxed: a connection parks one (by
    /// pointer-stable box) while its send is in flight.
    #[allow(clippy::vec_box)]
    iov_free: Vec<Box<SendMsgState>>,
    /// The accept back-off delay (a `TIMEOUT` reads it).
    backoff_ts: Box<Timespec>,
    /// Operations in flight (final completion outstanding), cancels excluded.
    ops: InFlight,
    bundle: bool,
    /// Sends of at least this many bytes go zero-copy (`SEND_ZC`/`SENDMSG_ZC`).
    zc_threshold: Option<usize>,
    /// Rings for send bundles, when they are on.
    send_rings: Option<SendRings>,
    /// What `io_uring_enter` is given for the ring: its descriptor, or its
    /// registered index together with `ENTER_REGISTERED_RING` in `enter_flags`.
    enter_fd: RawFd,
    enter_flags: u32,
    /// How a waiting turn batches completions (`None`: wakes at the first).
    batch: Option<Batch>,
    recv_reserve: usize,
    sqpoll: bool,
    stats: DriverStats,
    counters: UringCounters,
    /// The memory the kernel may write. `pool_mut` cannot swap it out (the
    /// pool is unsized), so it lives exactly as long as this field: dropped
    /// by hand in `Drop` after cancel-and-wait, or leaked.
    pool: ManuallyDrop<Box<Pool>>,
}

impl Uring {
    /// Builds the ring, registers the buffer ring and fills it from `pool`.
    ///
    /// The driver owns the pool from now on (see [`Driver::pool`]); it frees
    /// it after the kernel can no longer touch it.
    ///
    /// # Errors
    /// A [`UringError`] naming why io_uring cannot be used (see [`probe()`]);
    /// [`UringError::InvalidConfig`] also if `recv_reserve` keeps the whole
    /// pool from receiving.
    pub fn new(pool: Box<Pool>, config: &UringConfig) -> Result<Uring, UringError> {
        probe::check_config(config)?;
        if config.recv_reserve >= pool.capacity() {
            return Err(UringError::InvalidConfig(
                "recv_reserve must leave pool buffers to receive into (below the pool's capacity)",
            ));
        }
        let ring = probe::build_ring(
            config.entries,
            config.cq_entries,
            config.sqpoll_idle_ms,
            config.taskrun,
        )?;
        probe::check_ring(&ring)?;
        let bundle = config.recv_bundle && ring.params().is_feature_recvsend_bundle();
        if config.recv_bundle && !bundle {
            tracing::warn!("recv bundles requested but the kernel lacks them; receiving one buffer per completion");
        }
        let send_bundle = config.send_bundle && ring.params().is_feature_recvsend_bundle();
        if config.send_bundle && !send_bundle {
            tracing::warn!(
                "send bundles requested but the kernel lacks them; sending with sendmsg"
            );
        }
        let zc_threshold = config.send_zc_threshold.filter(|_| {
            let ok = probe::supports_zero_copy(&ring);
            if !ok {
                tracing::warn!("SEND_ZC requested but the kernel lacks it; sending with copies");
            }
            ok
        });
        let waker_fd = sys::eventfd()
            .map_err(|source| UringError::Setup { step: "creating the waker eventfd", source })?;
        let mut bufring = BufRing::new(config.buf_ring_entries, pool.capacity())
            .map_err(|source| UringError::Setup { step: "mapping the buffer ring", source })?;
        let incremental = config.recv_incremental && incremental_usable(&ring);
        bufring.register(&ring.submitter(), incremental).map_err(|source| {
            match source.raw_os_error() {
                Some(libc::EINVAL) => UringError::MissingFeature(
                    "provided buffer rings (IORING_REGISTER_PBUF_RING, Linux 5.19)",
                ),
                _ => UringError::Setup { step: "registering the buffer ring", source },
            }
        })?;
        let sqpoll = ring.params().is_setup_sqpoll();
        let (enter_fd, enter_flags) = if config.register_ring_fd {
            match sys::io_uring_register_ring_fd(ring.as_raw_fd()) {
                Ok(index) => (index as RawFd, sys::ENTER_REGISTERED_RING),
                Err(e) => {
                    tracing::warn!("registering the ring fd failed ({e}); entering by descriptor");
                    (ring.as_raw_fd(), 0)
                }
            }
        } else {
            (ring.as_raw_fd(), 0)
        };
        let batch = wait_batching(&ring, config);
        let cq_entries = ring.params().cq_entries() as usize;
        let mut uring = Uring {
            ring,
            bufring,
            conns: Slab::new(),
            generations: Vec::new(),
            listeners: Slab::new(),
            waker_fd: Arc::new(waker_fd),
            wake_armed: false,
            rearm: Vec::new(),
            flush: Vec::new(),
            accepts: Vec::new(),
            cancels: Vec::new(),
            connects: Vec::new(),
            finished: Vec::new(),
            reclaim: Vec::new(),
            cqes: Vec::with_capacity(cq_entries),
            iov_free: Vec::new(),
            backoff_ts: Box::new(timespec(config.accept_backoff)),
            ops: InFlight::default(),
            bundle,
            zc_threshold,
            send_rings: send_bundle.then(|| SendRings::new(config.send_bundle_rings)),
            enter_fd,
            enter_flags,
            batch,
            recv_reserve: config.recv_reserve,
            sqpoll,
            stats: DriverStats::default(),
            counters: UringCounters::default(),
            pool: ManuallyDrop::new(pool),
        };
        uring.refill();
        Ok(uring)
    }

    /// Buffers lent to the kernel in the provided buffer ring right now (at
    /// most; some may be on their way back in completions not yet reaped).
    ///
    /// `pool().in_use()` minus this is what the caller and the send queues hold.
    pub fn ring_buffers(&self) -> usize {
        self.bufring.len()
    }

    /// Counters of io_uring-specific events.
    pub fn counters(&self) -> UringCounters {
        self.counters
    }

    /// Whether the ring receives with recv bundles (asked for and supported).
    pub fn recv_bundles(&self) -> bool {
        self.bundle
    }

    /// Whether multi-segment sends go out as send bundles (asked for and
    /// supported).
    pub fn send_bundles(&self) -> bool {
        self.send_rings.is_some()
    }

    /// Whether `io_uring_enter` names the ring by its registered index
    /// (asked for with [`UringConfig::register_ring_fd`] and accepted).
    pub fn ring_fd_registered(&self) -> bool {
        self.enter_flags & sys::ENTER_REGISTERED_RING != 0
    }

    /// The [`UringConfig::min_wait`] in effect: `None` when off, when
    /// [`UringConfig::wait_batch`] is 1, or when the kernel lacks
    /// `IORING_FEAT_MIN_TIMEOUT`.
    pub fn min_wait(&self) -> Option<Duration> {
        self.batch.map(|b| Duration::from_micros(u64::from(b.min_wait_usec)))
    }

    /// Whether send rings are reused after a full send: true unless a check
    /// of the kernel's ring head disagreed (see `uring/sendring.rs`).
    pub fn send_rings_reused(&self) -> bool {
        self.send_rings.as_ref().is_some_and(SendRings::reusing)
    }

    /// Send rings made right now (for send bundles).
    pub fn send_rings(&self) -> usize {
        self.send_rings.as_ref().map_or(0, SendRings::made)
    }

    /// Whether the buffer ring is consumed incrementally (asked for and
    /// supported).
    pub fn recv_incremental(&self) -> bool {
        self.bufring.incremental()
    }

    /// Operations of connections in flight (receives, sends, connects, …):
    /// the completions a turn can expect, at one per operation.
    fn conn_ops(&self) -> u32 {
        let listeners: u32 = self.listeners.iter().map(|(_, l)| l.ops.get()).sum();
        self.ops.get().saturating_sub(listeners + u32::from(self.wake_armed))
    }

    /// The connection behind `token`, unless stale or closing.
    fn live(&mut self, token: Token) -> Option<&mut Conn> {
        self.conns
            .get_mut(token.index())
            .filter(|c| c.generation == token.generation() && !c.closing)
    }

    /// Reaps every completion into `out`, flushing CQ overflow until none is
    /// left behind in the kernel.
    fn reap(&mut self, out: &mut Vec<Event>) -> io::Result<()> {
        loop {
            self.collect_cqes();
            let mut cqes = std::mem::take(&mut self.cqes);
            for cqe in cqes.drain(..) {
                self.complete(cqe, out);
            }
            self.cqes = cqes;
            if !self.ring.submission().cq_overflow() {
                return Ok(());
            }
            self.flush_overflow()?;
        }
    }

    /// Copies the CQ into `self.cqes` (handled later, in order).
    fn collect_cqes(&mut self) {
        self.cqes.extend(self.ring.completion().map(|e| Cqe::from(&e)));
    }

    /// Emits `Closed` for every closing connection with nothing in flight.
    /// The slot itself is released by [`Uring::reclaim`] at the next turn.
    fn finish_closes(&mut self, out: &mut Vec<Event>) {
        while let Some(index) = self.finished.pop() {
            let Some(conn) = self.conns.get_mut(index) else { continue };
            if conn.reported_closed {
                continue;
            }
            conn.reported_closed = true;
            // Nothing of the kernel's refers to the socket any more: close
            // it now, so the peer sees the close when `Closed` is reported.
            conn.fd = None;
            self.stats.syscalls += 1;
            out.push(Event::Closed { token: Token::new(index as u32, conn.generation) });
            self.reclaim.push(index);
        }
    }

    /// Frees the slots of connections whose `Closed` the caller has had.
    fn reclaim(&mut self) {
        for index in self.reclaim.drain(..) {
            let Some(conn) = self.conns.try_remove(index) else { continue };
            let Conn { fd, generation, out: mut queued, mut inflight, mut send, .. } = conn;
            queued.clear(&mut self.pool);
            inflight.clear(&mut self.pool);
            self.iov_free.extend(send.take_iov());
            self.generations[index] = generation.wrapping_add(1);
            debug_assert!(fd.is_none(), "closed when Closed was emitted");
        }
    }

    /// Cancels every operation and waits (bounded) for their completions.
    /// Returns whether the kernel holds nothing of ours any more.
    #[cold]
    fn cancel_everything(&mut self) -> bool {
        for (_, conn) in self.conns.iter_mut() {
            conn.closing = true;
            conn.out.clear(&mut self.pool);
            if !conn.send.in_flight() {
                conn.inflight.clear(&mut self.pool);
            }
        }
        for (_, listener) in self.listeners.iter_mut() {
            listener.closing = true;
        }
        if self.ops.is_idle() {
            return true;
        }
        let sqe = opcode::AsyncCancel2::new(CancelBuilder::any()).build().user_data(user_data(
            Op::Cancel,
            0,
            0,
        ));
        // SAFETY: a cancel carries no pointer into our memory.
        if unsafe { self.push(&sqe) }.is_err() {
            return false;
        }
        let deadline = Instant::now() + DROP_DEADLINE;
        let mut events = Vec::new();
        while !self.ops.is_idle() && Instant::now() < deadline {
            if self.enter(1, Some(Duration::from_millis(50))).is_err() {
                break;
            }
            if self.reap(&mut events).is_err() {
                break;
            }
            self.finish_closes(&mut events);
            for event in events.drain(..) {
                if let Event::Recv { buf, .. } = event {
                    self.pool.free(buf);
                }
            }
        }
        self.ops.is_idle()
    }
}

/// Whether incremental buffer consumption, asked for, can be used on `ring`:
/// the kernel has it (Linux 6.12) and reports the end of a stream right
/// (see [`probe::incremental_eof_reported`]). Says why not in a warning.
fn incremental_usable(ring: &IoUring) -> bool {
    let why_not = match probe::incremental_eof_reported(ring) {
        Ok(true) => return true,
        Ok(false) => "the kernel reports end of stream on a partly used buffer as consumed \
            while it keeps the buffer (fixed in 2026 by \"io_uring/kbuf: fix missing BUF_MORE \
            for incremental buffers at EOF\", in stable kernels)"
            .to_string(),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            "the kernel lacks it (Linux 6.12)".to_string()
        }
        Err(e) => format!("probing it failed ({e})"),
    };
    tracing::warn!(
        "incremental buffer consumption requested but not used: {why_not}; one buffer per receive"
    );
    false
}

/// The completion batching `config` asks for, if `ring`'s kernel has
/// `IORING_FEAT_MIN_TIMEOUT` (else a warning, and none).
fn wait_batching(ring: &IoUring, config: &UringConfig) -> Option<Batch> {
    let min_wait_usec = config.min_wait.map_or(0, |d| d.as_micros().min(u32::MAX.into()) as u32);
    if min_wait_usec == 0 || config.wait_batch <= 1 {
        return None;
    }
    if !ring.params().is_feature_min_timeout() {
        // Once per process, not once per worker.
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "min_wait is set but the kernel lacks IORING_FEAT_MIN_TIMEOUT (Linux 6.13); \
                 each wait ends at the first completion"
            );
        });
        return None;
    }
    Some(Batch { completions: config.wait_batch, min_wait_usec })
}

/// A `Duration` as the kernel's timespec.
fn timespec(d: Duration) -> Timespec {
    Timespec::new().sec(d.as_secs()).nsec(d.subsec_nanos())
}

impl Driver for Uring {
    fn pool(&self) -> &Pool {
        &self.pool
    }

    fn pool_mut(&mut self) -> &mut Pool {
        &mut self.pool
    }

    fn listen(&mut self, listener: OwnedFd, share: Share) -> io::Result<ListenerId> {
        let key = self.listeners.insert(Listener::new(listener, share));
        self.accepts.push(key);
        Ok(ListenerId(key as u32))
    }

    fn unlisten(&mut self, id: ListenerId) {
        let key = id.0 as usize;
        let Some(listener) = self.listeners.get_mut(key) else { return };
        if listener.closing {
            return;
        }
        listener.closing = true;
        if listener.ops.is_idle() {
            self.listeners.remove(key);
            self.stats.syscalls += 1;
            return;
        }
        if listener.armed {
            self.cancels.push(Cancel::Op(user_data(Op::Accept, key, 0)));
        }
        if listener.backoff_armed {
            self.cancels.push(Cancel::Op(user_data(Op::AcceptBackoff, key, 0)));
        }
    }

    fn add(&mut self, fd: OwnedFd) -> io::Result<Token> {
        let index = self.conns.vacant_key();
        if index >= self.generations.len() {
            self.generations.resize(index + 1, 0);
        }
        let generation = self.generations[index];
        let mut conn = Conn::new(fd, generation);
        conn.rearm_queued = true;
        self.conns.insert(conn);
        self.rearm.push(index);
        Ok(Token::new(index as u32, generation))
    }

    fn connect(&mut self, addr: std::net::SocketAddr) -> io::Result<Token> {
        self.stats.syscalls += 2; // socket, setsockopt
        let socket = sys::tcp_socket(&addr)?;
        let index = self.conns.vacant_key();
        if index >= self.generations.len() {
            self.generations.resize(index + 1, 0);
        }
        let generation = self.generations[index];
        let mut conn = Conn::new(OwnedFd::from(socket), generation);
        conn.connecting = Some(Box::new(addr.into()));
        self.conns.insert(conn);
        self.connects.push(index);
        Ok(Token::new(index as u32, generation))
    }

    fn send(&mut self, token: Token, mut data: Chain) {
        let index = token.index();
        let Some(conn) = self.conns.get_mut(index).filter(|c| {
            c.generation == token.generation() && !c.closing && !matches!(c.send, SendState::Failed)
        }) else {
            data.clear(&mut self.pool);
            return;
        };
        conn.out.append(&mut self.pool, data);
        if !conn.flush_queued {
            conn.flush_queued = true;
            self.flush.push(index);
        }
    }

    fn shutdown_write(&mut self, token: Token) {
        let Some(conn) = self.live(token) else { return };
        if conn.shutdown != ShutdownState::No {
            return;
        }
        conn.shutdown = ShutdownState::Pending;
        if !conn.flush_queued {
            conn.flush_queued = true;
            self.flush.push(token.index());
        }
    }

    fn pause_recv(&mut self, token: Token) {
        let Some(conn) = self.live(token) else { return };
        if conn.paused {
            return;
        }
        conn.paused = true;
        if conn.recv_armed {
            let ud = user_data(Op::Recv, token.index(), token.generation());
            self.cancels.push(Cancel::Op(ud));
        }
    }

    fn resume_recv(&mut self, token: Token) {
        let Some(conn) = self.live(token) else { return };
        conn.paused = false;
        if conn.wants_recv() && !conn.rearm_queued {
            conn.rearm_queued = true;
            self.rearm.push(token.index());
        }
    }

    fn close(&mut self, token: Token) {
        let index = token.index();
        let Some(conn) = self.live(token) else { return };
        conn.closing = true;
        let (idle, sending) = (conn.ops.is_idle(), conn.send.in_flight());
        let mut queued = std::mem::take(&mut conn.out);
        let mut inflight = if sending { Chain::new() } else { std::mem::take(&mut conn.inflight) };
        queued.clear(&mut self.pool);
        inflight.clear(&mut self.pool);
        if idle {
            self.finished.push(index);
        } else {
            self.cancels.push(Cancel::Conn(index, token.generation()));
        }
    }

    fn waker(&self) -> Waker {
        Waker::new(Arc::clone(&self.waker_fd))
    }

    fn turn(&mut self, timeout: Option<Duration>, out: &mut Vec<Event>) -> io::Result<()> {
        // 0. Release the slots of connections reported closed last turn.
        self.reclaim();
        // 1. Refill the buffer ring, cancel, re-arm, flush sends: SQEs only.
        self.prepare()?;
        // 2. One enter: submit everything, wait unless there is news already
        //    (for a batch of completions, if asked: see `enter::Wait`).
        let news = !self.finished.is_empty()
            || !self.cqes.is_empty()
            || !self.ring.completion().is_empty()
            || timeout == Some(Duration::ZERO);
        self.enter_wait(Wait::for_turn(news, timeout, self.batch, self.conn_ops()))?;
        // 3. Reap every completion (overflow included), then due `Closed`s.
        self.reap(out)?;
        self.finish_closes(out);
        self.stats.turns += 1;
        Ok(())
    }

    fn stats(&self) -> DriverStats {
        self.stats
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        let clean = self.cancel_everything();
        let mut leftovers = Vec::new();
        self.finish_closes(&mut leftovers);
        for (_, mut conn) in std::mem::take(&mut self.conns) {
            conn.out.clear(&mut self.pool);
            if !clean {
                // A connect the kernel may still read the address of.
                std::mem::forget(conn.connecting.take());
            }
            if clean || !conn.send.in_flight() {
                conn.inflight.clear(&mut self.pool);
            } else {
                // The kernel may still read these buffers and the msghdr and
                // iovecs that point at them: never free either.
                std::mem::forget(std::mem::take(&mut conn.inflight));
                std::mem::forget(conn.send.take_iov());
            }
        }
        if clean {
            if let Some(rings) = &mut self.send_rings {
                rings.unregister_all(&self.ring.submitter());
            }
            self.bufring.unregister(&self.ring.submitter());
            let pool = &mut **self.pool;
            self.bufring.drain(|id| pool.free_lent(id));
            // SAFETY: every operation has completed and the buffer ring is
            // unregistered, so the kernel holds no pointer into the pool; the
            // pool is not used after this (the remaining fields do not touch it).
            unsafe { ManuallyDrop::drop(&mut self.pool) };
        } else {
            tracing::warn!(
                "io_uring operations still in flight at drop; leaking the buffer pool and ring memory"
            );
            self.bufring.leak();
            if let Some(rings) = &mut self.send_rings {
                rings.leak_all();
            }
        }
        // The registration holds the ring open until the thread exits: give
        // it back, so closing the ring below tears it down.
        if self.enter_flags & sys::ENTER_REGISTERED_RING != 0 {
            let index = self.enter_fd as u32;
            if let Err(e) = sys::io_uring_unregister_ring_fd(self.ring.as_raw_fd(), index) {
                tracing::warn!("unregistering the ring fd failed: {e}");
            }
        }
    }
}

impl fmt::Debug for Uring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Uring")
            .field("ring_fd", &self.ring.as_raw_fd())
            .field("connections", &self.conns.len())
            .field("listeners", &self.listeners.len())
            .field("ops_in_flight", &self.ops.get())
            .field("ring_buffers", &self.bufring.len())
            .field("pool", &*self.pool)
            .finish()
    }
}
