//! The seam between the workers and the kernel: a completion-style [`Driver`].
//!
//! # The contract every driver keeps
//!
//! **Completion semantics.** The worker never sees readiness. It sees
//! completed work: bytes that arrived ([`Event::Recv`]), bytes that left
//! ([`Event::Sent`]), a connection that is gone ([`Event::Closed`]). io_uring
//! provides this natively; the epoll driver performs the `recv`/`sendmsg`
//! itself when a socket turns ready and reports the result the same way.
//!
//! **One turn.** [`Driver::turn`] submits (io_uring) or flushes (epoll)
//! everything queued since the last turn, waits at most once, and reaps
//! everything that completed into the caller's event vector. The number of
//! system calls is per turn, not per message.
//!
//! **Buffer ownership.** Every buffer belongs to the driver's [`Pool`].
//! A [`Buf`] in [`Event::Recv`] is the caller's from then on. A [`Chain`]
//! passed to [`Driver::send`] is the driver's until it is written: the driver
//! (and the kernel) only read it, nobody writes to it, and the driver frees
//! each buffer once written. The caller may call `send` again while earlier
//! data is in flight: new data is queued behind, never mixed in.
//!
//! **Ordering.** For one connection, [`Event::Recv`] events arrive in stream
//! order and bytes are sent in the order of `send` calls. [`Event::Sent`]
//! reports bytes written in order; their sum equals what was sent unless an
//! error or `close` intervened.
//!
//! **Lifetime of a token.** [`Driver::add`] hands out a [`Token`]. After
//! [`Driver::close`], the driver discards unsent output, cancels in-flight
//! operations and emits exactly one [`Event::Closed`] for the token once the
//! kernel holds no buffer of it and the descriptor is closed; only then is
//! the token free to be reused. Between `close` and `Closed` the driver
//! emits nothing else for it (events already handed out in the same turn
//! may still mention it). The driver never closes a connection by itself:
//! an I/O failure is an [`Event::Error`], end of stream an [`Event::Eof`].
//!
//! **Outbound connections.** [`Driver::connect`] hands out a token at once;
//! the outcome comes later, from a turn, as exactly one [`Event::Connected`],
//! before any other event of the token. After `Connected { result: Ok(()) }`
//! the connection is like an accepted one; after an `Err` nothing more is
//! emitted for it until `close`. A connection closed before its outcome
//! reports only `Closed`.
//!
//! **Backpressure.** [`Driver::pause_recv`] stops receiving for a connection
//! (already completed receives may still be delivered); [`Driver::resume_recv`]
//! starts again without losing or reordering bytes. When the pool runs low the
//! driver stops receiving on its own and resumes when buffers come back; no
//! byte is lost in either case.
//!
//! **Waking.** A [`Waker`] from [`Driver::waker`] makes a blocked `turn`
//! return with an [`Event::Wake`] from any thread.
//!
//! **Drop.** Dropping a driver closes every descriptor it holds; the pool is
//! freed after the kernel can no longer touch it.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use crate::buf::{Buf, Chain, Pool};

/// Names one connection inside one driver.
///
/// The low 32 bits are a dense slot index (usable to index a `Vec`); the high
/// 32 bits a generation that tells a reused slot from its previous user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(u64);

impl Token {
    /// Builds a token from a slot index and a generation.
    pub const fn new(index: u32, generation: u32) -> Token {
        Token(((generation as u64) << 32) | index as u64)
    }

    /// The dense slot index.
    pub const fn index(self) -> usize {
        (self.0 & 0xffff_ffff) as usize
    }

    /// The generation of the slot.
    pub const fn generation(self) -> u32 {
        (self.0 >> 32) as u32
    }

    /// The raw value (for logs).
    pub const fn as_u64(self) -> u64 {
        self.0
    }
}

/// Whether a listening socket is this driver's alone or shared with other
/// workers' drivers (one socket passed by socket activation, served by
/// every worker).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Share {
    /// Only this driver accepts on it (one `SO_REUSEPORT` socket per worker).
    Alone,
    /// Other drivers accept on the same socket.
    Shared,
}

/// Names one listening socket inside one driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(pub(crate) u32);

/// What a turn reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A connection was accepted; not yet registered (call [`Driver::add`],
    /// or drop `fd` to refuse it).
    Accepted {
        /// The listener that accepted it.
        listener: ListenerId,
        /// The connected, non-blocking socket.
        fd: OwnedFd,
        /// The peer's address, if the kernel told.
        peer: Option<SocketAddr>,
    },
    /// Accepting failed (`EMFILE`, `ENFILE`, `ENOBUFS`, …). The driver has
    /// already backed off; it retries on its own.
    AcceptError {
        /// The listener concerned.
        listener: ListenerId,
        /// What the kernel said.
        error: io::Error,
    },
    /// Bytes arrived: the filled part of `buf`, in stream order.
    Recv {
        /// The connection.
        token: Token,
        /// The data, now owned by the caller.
        buf: Buf,
    },
    /// The peer finished sending (read side closed). No more `Recv` follows.
    Eof {
        /// The connection.
        token: Token,
    },
    /// `bytes` more bytes of queued output were written to the socket.
    Sent {
        /// The connection.
        token: Token,
        /// How many.
        bytes: usize,
    },
    /// Receiving or sending failed; the connection should be closed.
    Error {
        /// The connection.
        token: Token,
        /// What the kernel said (`ECONNRESET`, `EPIPE`, …).
        error: io::Error,
    },
    /// An outbound connection started with [`Driver::connect`] finished
    /// connecting: `Ok` means it is established and now receives like an
    /// accepted one; `Err` carries the kernel's answer (`ECONNREFUSED`,
    /// `ENETUNREACH`, …) and the token stays live until [`Driver::close`].
    Connected {
        /// The connection.
        token: Token,
        /// Whether the connect succeeded.
        result: io::Result<()>,
    },
    /// The connection is fully gone and its token may be reused.
    Closed {
        /// The connection.
        token: Token,
    },
    /// A [`Waker`] was woken.
    Wake,
}

/// Wakes a driver's `turn` from another thread. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Waker {
    fd: Arc<OwnedFd>,
}

impl Waker {
    pub(crate) fn new(fd: Arc<OwnedFd>) -> Waker {
        Waker { fd }
    }

    /// Makes the driver's current or next `turn` return with [`Event::Wake`].
    ///
    /// # Errors
    /// Only if the eventfd write fails, which means the driver is gone.
    pub fn wake(&self) -> io::Result<()> {
        crate::sys::eventfd_signal(self.fd.as_raw_fd())
    }
}

/// Counters a driver keeps about itself; cheap to read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// System calls made by the driver (waits, submits, recv, send, …).
    pub syscalls: u64,
    /// Turns completed.
    pub turns: u64,
}

/// A completion-style I/O driver. See the [module docs](self) for the
/// contract.
pub trait Driver {
    /// The buffer pool the driver receives into and sends from.
    fn pool(&self) -> &Pool;

    /// Mutable access to the pool, for building and consuming chains.
    ///
    /// The pool cannot be swapped or replaced through this reference
    /// ([`Pool`] is unsized): the driver has lent some of its buffers to the
    /// kernel, and the memory must stay with the driver until the kernel is
    /// done with it.
    ///
    /// ```compile_fail,E0277
    /// # use pollring_backends::{Driver, buf::Pool};
    /// fn swap(a: &mut impl Driver, b: &mut impl Driver) {
    ///     std::mem::swap(a.pool_mut(), b.pool_mut()); // Pool: !Sized
    /// }
    /// ```
    fn pool_mut(&mut self) -> &mut Pool;

    /// Starts accepting on `listener`, a non-blocking listening stream
    /// socket (TCP or Unix). `share` says whether other workers accept on
    /// the same socket, so that each connection wakes one of them and the
    /// connections spread over them.
    ///
    /// # Errors
    /// If the kernel refuses to watch the socket.
    fn listen(&mut self, listener: OwnedFd, share: Share) -> io::Result<ListenerId>;

    /// Stops accepting on `listener` and closes it. Connections it accepted
    /// are unaffected.
    fn unlisten(&mut self, listener: ListenerId);

    /// Takes over a connected, non-blocking socket and starts receiving.
    ///
    /// # Errors
    /// If the kernel refuses to watch the socket; `fd` is closed then.
    fn add(&mut self, fd: OwnedFd) -> io::Result<Token>;

    /// Starts a non-blocking connect to `addr` (io_uring: `IORING_OP_CONNECT`;
    /// epoll: `connect` then `EPOLLOUT`) from a new TCP socket with
    /// `TCP_NODELAY`, as accepted sockets have. The token is live at once; exactly
    /// one [`Event::Connected`] reports the outcome, unless the connection
    /// is closed first. Until `Connected { result: Ok(()) }` the driver
    /// neither receives nor sends for it: the caller must not call
    /// [`Driver::send`] or [`Driver::shutdown_write`] before then. A connect
    /// never times out inside the driver; the caller closes it when its own
    /// deadline passes.
    ///
    /// # Errors
    /// If the socket cannot be created or the kernel refuses the connect at
    /// once (`EMFILE`, `EADDRNOTAVAIL`, …); nothing is left to close then.
    fn connect(&mut self, addr: SocketAddr) -> io::Result<Token>;

    /// Queues `data` for sending after any earlier data. Flushed at the next
    /// turn, one `sendmsg`/SQE per connection.
    fn send(&mut self, token: Token, data: Chain);

    /// Sends FIN once every queued byte is written.
    fn shutdown_write(&mut self, token: Token);

    /// Stops receiving (backpressure).
    fn pause_recv(&mut self, token: Token);

    /// Resumes receiving after [`Driver::pause_recv`].
    fn resume_recv(&mut self, token: Token);

    /// Closes a connection: drops unsent output, cancels in-flight work;
    /// [`Event::Closed`] follows.
    fn close(&mut self, token: Token);

    /// A handle that wakes this driver from another thread.
    fn waker(&self) -> Waker;

    /// One turn: submit/flush, wait at most `timeout` (`None`: until
    /// something happens), reap into `out`.
    ///
    /// # Errors
    /// Only for a failure of the driver itself (the ring or epoll instance),
    /// never for one connection's error.
    fn turn(&mut self, timeout: Option<Duration>, out: &mut Vec<Event>) -> io::Result<()>;

    /// Counters about the driver itself.
    fn stats(&self) -> DriverStats;
}
