//! The edge-triggered epoll driver.
//!
//! epoll reports readiness; this driver turns it into completions so the
//! worker sees the same [`Event`]s as with io_uring:
//!
//! * **Receiving.** A socket that turns readable is read until the kernel has
//!   nothing more, each `recv` into a fresh pool buffer delivered as
//!   [`Event::Recv`]. Edge-triggered epoll will not report the socket again
//!   until new data arrives, so the driver itself remembers a socket it left
//!   readable: when the per-turn budget ([`EpollConfig::recv_budget`]) runs
//!   out, or the pool runs low, or receiving is paused, the connection stays
//!   marked *ready* and is read again at a later turn. A `recv` that returns
//!   less than a full buffer has emptied the socket's receive queue, so the
//!   final `recv` that would only say `EAGAIN` is skipped: any later byte is
//!   a new edge. Except after urgent data (`MSG_OOB`, reported as
//!   `EPOLLPRI`): `recv` stops short at the urgent mark with bytes still
//!   queued behind it, so then the driver reads until `EAGAIN`.
//! * **Sending.** [`Driver::send`] queues; the next turn writes each
//!   connection's queue with one `sendmsg` (an iovec per buffer). `EPOLLOUT`
//!   is watched only while a write left data behind.
//! * **Connecting** ([`Driver::connect`]): a non-blocking `connect`, then
//!   the socket is watched for `EPOLLOUT`; when it turns writable (or
//!   reports an error) `SO_ERROR` decides between `Connected { Ok }` and
//!   `Connected { Err }`, and the socket becomes an ordinary connection.
//! * **Accepting** drains the backlog each time a listener turns readable;
//!   an error that concerns the listener (out of descriptors, a broken
//!   socket: see [`accept`]) is reported, and accepting
//!   backs off for [`EpollConfig::accept_backoff`] and then retries on its
//!   own.
//!
//! One turn is: emit owed `Closed` events → flush queued output → one
//! `epoll_wait` (zero timeout when there is already work) → reap.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::accept::{self, Verdict};
use crate::buf::{Chain, Pool};
use crate::driver::{Driver, DriverStats, Event, ListenerId, Share, Token, Waker};
use crate::sys;

/// Switches of the epoll driver.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EpollConfig {
    /// Readiness events fetched per `epoll_wait`.
    pub max_events: usize,
    /// `recv` calls per connection per turn before others get their turn.
    pub recv_budget: usize,
    /// Buffers kept out of the receive path so writes can still get one.
    pub recv_reserve: usize,
    /// Pause of a listener after an accept error that concerns it
    /// (`EMFILE`, `EINVAL`, …: see [`accept`]).
    pub accept_backoff: Duration,
}

impl Default for EpollConfig {
    fn default() -> Self {
        EpollConfig {
            max_events: 256,
            recv_budget: 16,
            recv_reserve: 64,
            accept_backoff: accept::DEFAULT_BACKOFF,
        }
    }
}

/// epoll `data` of the waker's eventfd.
const WAKER_KEY: u64 = u64::MAX;
/// Bit set in the epoll `data` of listeners (connection tokens keep it clear).
const LISTENER_BIT: u64 = 1 << 63;
/// iovecs per `sendmsg` (the rest goes in the next call of the same flush).
const MAX_IOV: usize = 64;

/// `EPOLLPRI` too: urgent data (`MSG_OOB`) makes `recv` stop short at its
/// mark, so a short read after it does not mean the queue is empty.
const CONN_EVENTS: u32 = (libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLRDHUP | libc::EPOLLET) as u32;

struct Conn {
    fd: OwnedFd,
    token: Token,
    out: Chain,
    /// The socket may hold unread data (an edge we have not consumed).
    readable: bool,
    /// The peer half-closed and we have seen `RDHUP`: read until 0.
    rdhup: bool,
    /// Urgent data was signalled (`EPOLLPRI`): a short read may have stopped
    /// at its mark, so read until `EAGAIN` before calling the socket drained.
    urgent: bool,
    paused: bool,
    /// End of stream delivered; no more reading.
    eof: bool,
    /// In `self.flush` for the next turn.
    queued: bool,
    /// In `self.ready` for the next turn.
    in_ready: bool,
    /// `EPOLLOUT` is in the interest set.
    want_out: bool,
    /// Send FIN once `out` is empty.
    shutdown: bool,
    /// `close` was called; `Closed` is owed.
    closing: bool,
    /// An outbound connect is in progress: no receiving or sending yet.
    connecting: bool,
}

struct Listener {
    socket: OwnedFd,
    /// Accepting failed for lack of resources; retry at this instant.
    retry_at: Option<Instant>,
}

/// The edge-triggered epoll driver. See the [module docs](self).
pub struct Epoll {
    epfd: OwnedFd,
    wake_fd: Arc<OwnedFd>,
    config: EpollConfig,
    events: Vec<libc::epoll_event>,
    conns: Slab<Conn>,
    /// Generation per slab slot, bumped on reuse.
    generations: Vec<u32>,
    listeners: Slab<Listener>,
    /// Connections with output queued since the last flush.
    flush: Vec<Token>,
    /// Connections left readable (budget spent, pool low) to read next turn.
    ready: Vec<Token>,
    /// Scratch for `ready` while it is being worked through.
    ready_now: Vec<Token>,
    /// Connections closed since the last turn: `Closed` is owed.
    closed: Vec<Token>,
    /// Connects that completed at once: `Connected` is owed.
    connected: Vec<Token>,
    iov: Vec<libc::iovec>,
    stats: DriverStats,
    pool: Box<Pool>,
}

impl std::fmt::Debug for Epoll {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoll")
            .field("connections", &self.conns.len())
            .field("listeners", &self.listeners.len())
            .field("pool", &self.pool)
            .finish()
    }
}

impl EpollConfig {
    /// Checks the values: a zero `accept_backoff` would let a broken
    /// listener spin the worker.
    ///
    /// # Errors
    /// What is wrong, as a sentence.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.accept_backoff.is_zero() {
            return Err("accept_backoff must not be zero");
        }
        Ok(())
    }
}

impl Epoll {
    /// Creates the epoll instance and its waker, taking ownership of `pool`.
    ///
    /// # Errors
    /// `InvalidInput` if [`EpollConfig::check`] fails or `recv_reserve`
    /// keeps the whole pool from receiving; else the error of
    /// `epoll_create1`, `eventfd` or `epoll_ctl`.
    pub fn new(pool: Box<Pool>, config: &EpollConfig) -> io::Result<Epoll> {
        let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what);
        config.check().map_err(invalid)?;
        if config.recv_reserve >= pool.capacity() {
            return Err(invalid(
                "recv_reserve must leave pool buffers to receive into (below the pool's capacity)",
            ));
        }
        // SAFETY: epoll_create1 takes no pointer; the flag is a valid constant.
        let epfd = sys::cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: epoll_create1 just returned this descriptor; nobody else owns it.
        let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
        let wake_fd = Arc::new(sys::eventfd()?);
        ctl(
            &epfd,
            libc::EPOLL_CTL_ADD,
            wake_fd.as_raw_fd(),
            (libc::EPOLLIN | libc::EPOLLET) as u32,
            WAKER_KEY,
        )?;
        Ok(Epoll {
            epfd,
            wake_fd,
            events: Vec::with_capacity(config.max_events.max(1)),
            config: config.clone(),
            conns: Slab::new(),
            generations: Vec::new(),
            listeners: Slab::new(),
            flush: Vec::new(),
            ready: Vec::new(),
            ready_now: Vec::new(),
            closed: Vec::new(),
            connected: Vec::new(),
            iov: Vec::with_capacity(MAX_IOV),
            stats: DriverStats::default(),
            pool,
        })
    }

    fn conn(&mut self, token: Token) -> Option<&mut Conn> {
        self.conns.get_mut(token.index()).filter(|c| c.token == token)
    }

    /// Reads a ready connection until drained, out of budget or out of buffers.
    fn recv(&mut self, token: Token, out: &mut Vec<Event>) {
        let budget = self.config.recv_budget.max(1);
        let reserve = self.config.recv_reserve;
        let Some(conn) = self.conns.get_mut(token.index()).filter(|c| c.token == token) else {
            return;
        };
        if conn.paused || conn.closing || conn.eof || conn.connecting || !conn.readable {
            return;
        }
        for _ in 0..budget {
            if self.pool.available() <= reserve {
                break; // Starved: stays readable, retried when buffers return.
            }
            let Some(buf) = self.pool.alloc() else { break };
            self.stats.syscalls += 1;
            match sys::recv(conn.fd.as_raw_fd(), self.pool.spare_mut(&buf)) {
                Ok(0) => {
                    self.pool.free(buf);
                    conn.readable = false;
                    conn.eof = true;
                    out.push(Event::Eof { token });
                    return;
                }
                Ok(n) => {
                    self.pool.fill(&buf, n);
                    out.push(Event::Recv { token, buf });
                    if n < self.pool.buf_size() && !conn.rdhup && !conn.urgent {
                        // A short read emptied the receive queue: the next
                        // byte to arrive is a new edge.
                        conn.readable = false;
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.pool.free(buf);
                    conn.readable = false;
                    conn.urgent = false;
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.pool.free(buf),
                Err(error) => {
                    self.pool.free(buf);
                    conn.readable = false;
                    out.push(Event::Error { token, error });
                    return;
                }
            }
        }
        // Budget spent or pool low with data still waiting: ET will not tell
        // us again, so remember it ourselves.
        if !conn.in_ready {
            conn.in_ready = true;
            self.ready.push(token);
        }
    }

    /// Writes a connection's queued output: `sendmsg` until done or the
    /// socket is full.
    fn flush(&mut self, token: Token, out: &mut Vec<Event>) {
        let Some(conn) = self.conns.get_mut(token.index()).filter(|c| c.token == token) else {
            return;
        };
        conn.queued = false;
        if conn.closing {
            return;
        }
        while !conn.out.is_empty() {
            self.iov.clear();
            let mut total = 0;
            for (id, start, end) in conn.out.segments(&self.pool).take(MAX_IOV) {
                // SAFETY: `segments` checked that `conn.out` is this pool's
                // chain (it panics on another pool's), so `id` is one of this
                // pool's buffers or live views and `start..end` lies inside
                // its bytes (`Meta` ranges never pass `buf_size`): the offset
                // stays in the mapping. The bytes are the chain's own, which
                // nobody writes while the chain holds them.
                let base = unsafe { self.pool.raw_ptr(id).add(start as usize) };
                self.iov
                    .push(libc::iovec { iov_base: base.cast(), iov_len: (end - start) as usize });
                total += (end - start) as usize;
            }
            self.stats.syscalls += 1;
            match sys::sendmsg(conn.fd.as_raw_fd(), &self.iov) {
                Ok(n) => {
                    conn.out.consume(&mut self.pool, n);
                    out.push(Event::Sent { token, bytes: n });
                    if n < total {
                        break; // Socket buffer full: wait for EPOLLOUT.
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => {
                    conn.out.clear(&mut self.pool);
                    out.push(Event::Error { token, error });
                    break;
                }
            }
        }
        let want_out = !conn.out.is_empty();
        if want_out != conn.want_out {
            let events = if want_out { CONN_EVENTS | libc::EPOLLOUT as u32 } else { CONN_EVENTS };
            self.stats.syscalls += 1;
            if let Err(error) =
                ctl(&self.epfd, libc::EPOLL_CTL_MOD, conn.fd.as_raw_fd(), events, token.as_u64())
            {
                out.push(Event::Error { token, error });
            }
            conn.want_out = want_out;
        }
        if !want_out && conn.shutdown {
            conn.shutdown = false;
            self.stats.syscalls += 1;
            if let Err(error) = sys::shutdown_write(conn.fd.as_raw_fd()) {
                out.push(Event::Error { token, error });
            }
        }
    }

    /// Accepts until the backlog is empty.
    fn accept(&mut self, key: usize, out: &mut Vec<Event>) {
        let Some(listener) = self.listeners.get_mut(key) else { return };
        listener.retry_at = None;
        let id = ListenerId(key as u32);
        loop {
            self.stats.syscalls += 1;
            match sys::accept(listener.socket.as_raw_fd()) {
                Ok((fd, peer)) => out.push(Event::Accepted { listener: id, fd, peer }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) => match accept::classify(error.raw_os_error().unwrap_or(0)) {
                    Verdict::Skip => tracing::debug!(%error, "accept failed for one connection"),
                    Verdict::BackOff => {
                        // Pending connections stay in the backlog; ET will
                        // not report them again, so retry after a pause.
                        listener.retry_at = Some(Instant::now() + self.config.accept_backoff);
                        out.push(Event::AcceptError { listener: id, error });
                        return;
                    }
                },
            }
        }
    }

    /// The earliest accept retry, if any listener is backing off.
    fn next_accept_retry(&self) -> Option<Instant> {
        self.listeners.iter().filter_map(|(_, l)| l.retry_at).min()
    }

    #[cold]
    fn retry_accepts(&mut self, now: Instant, out: &mut Vec<Event>) {
        let due: Vec<usize> = self
            .listeners
            .iter()
            .filter(|(_, l)| l.retry_at.is_some_and(|t| t <= now))
            .map(|(k, _)| k)
            .collect();
        for key in due {
            self.accept(key, out);
        }
    }

    fn dispatch(&mut self, ev: libc::epoll_event, out: &mut Vec<Event>) {
        let key = ev.u64;
        let flags = ev.events;
        if key == WAKER_KEY {
            self.stats.syscalls += 1;
            sys::eventfd_drain(self.wake_fd.as_raw_fd());
            out.push(Event::Wake);
            return;
        }
        if key & LISTENER_BIT != 0 {
            self.accept((key & !LISTENER_BIT) as usize, out);
            return;
        }
        let token = token_from_key(key);
        let Some(conn) = self.conn(token) else { return };
        if conn.connecting {
            if conn.closing {
                return;
            }
            self.finish_connect(token, flags, out);
            return;
        }
        if flags & libc::EPOLLOUT as u32 != 0 && !conn.queued {
            self.flush(token, out);
        }
        let Some(conn) = self.conn(token) else { return };
        if note_readable(conn, flags) {
            // Already queued for a carry-over read: one budget per turn.
            if !conn.in_ready {
                self.recv(token, out);
            }
        }
    }
}

impl Epoll {
    /// A connecting socket reported writable or an error: the connect is
    /// done one way or the other (`SO_ERROR` says which).
    fn finish_connect(&mut self, token: Token, flags: u32, out: &mut Vec<Event>) {
        let Some(conn) = self.conns.get_mut(token.index()).filter(|c| c.token == token) else {
            return;
        };
        let done = (libc::EPOLLOUT | libc::EPOLLERR | libc::EPOLLHUP) as u32;
        if flags & done == 0 {
            return;
        }
        conn.connecting = false;
        self.stats.syscalls += 1;
        let error = match sys::take_socket_error(&conn.fd) {
            Ok(None) => None,
            Ok(Some(error)) | Err(error) => Some(error),
        };
        if let Some(error) = error {
            // Nothing more is reported for it until `close`.
            conn.eof = true;
            out.push(Event::Connected { token, result: Err(error) });
            return;
        }
        out.push(Event::Connected { token, result: Ok(()) });
        // Watch EPOLLOUT again only while output is pending.
        conn.want_out = false;
        self.stats.syscalls += 1;
        if let Err(error) =
            ctl(&self.epfd, libc::EPOLL_CTL_MOD, conn.fd.as_raw_fd(), CONN_EVENTS, token.as_u64())
        {
            out.push(Event::Error { token, error });
            return;
        }
        if note_readable(conn, flags) {
            self.recv(token, out);
        }
    }

    /// Registers a socket under a fresh token.
    fn register(&mut self, fd: OwnedFd, events: u32, connecting: bool) -> io::Result<Token> {
        let entry = self.conns.vacant_entry();
        let index = entry.key();
        if self.generations.len() <= index {
            self.generations.resize(index + 1, 0);
        }
        // 31 bits of generation keep LISTENER_BIT clear in the epoll key.
        let generation = (self.generations[index] + 1) & 0x7fff_ffff;
        self.generations[index] = generation;
        let token = Token::new(index as u32, generation);
        self.stats.syscalls += 1;
        ctl(&self.epfd, libc::EPOLL_CTL_ADD, fd.as_raw_fd(), events, token.as_u64())?;
        entry.insert(Conn {
            fd,
            token,
            out: Chain::new(),
            readable: false,
            rdhup: false,
            urgent: false,
            paused: false,
            eof: false,
            queued: false,
            in_ready: false,
            want_out: events & libc::EPOLLOUT as u32 != 0,
            shutdown: false,
            closing: false,
            connecting,
        });
        Ok(token)
    }
}

/// Records what a readiness event says about reading; `true` if the socket
/// may hold input (or its end, or an error) to receive.
fn note_readable(conn: &mut Conn, flags: u32) -> bool {
    let read_flags =
        (libc::EPOLLIN | libc::EPOLLPRI | libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR)
            as u32;
    if flags & read_flags == 0 {
        return false;
    }
    conn.readable = true;
    conn.rdhup |= flags & (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32 != 0;
    conn.urgent |= flags & libc::EPOLLPRI as u32 != 0;
    true
}

fn token_from_key(key: u64) -> Token {
    Token::new((key & 0xffff_ffff) as u32, (key >> 32) as u32)
}

fn ctl(epfd: &OwnedFd, op: libc::c_int, fd: RawFd, events: u32, key: u64) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: key };
    // SAFETY: `ev` is a valid epoll_event for the duration of the call; both
    // descriptors are open (borrowed from owned values by the caller).
    sys::cvt(unsafe { libc::epoll_ctl(epfd.as_raw_fd(), op, fd, &mut ev) }).map(drop)
}

impl Driver for Epoll {
    fn pool(&self) -> &Pool {
        &self.pool
    }

    fn pool_mut(&mut self) -> &mut Pool {
        &mut self.pool
    }

    fn listen(&mut self, listener: OwnedFd, _share: Share) -> io::Result<ListenerId> {
        let entry = self.listeners.vacant_entry();
        let key = entry.key();
        // EPOLLEXCLUSIVE: when workers share one listening socket (one
        // inherited through socket activation), a connection wakes one of
        // them, not all; a worker busy outside `epoll_wait` is passed over,
        // so the connections go to the workers that are free. A worker's
        // own SO_REUSEPORT socket is unaffected.
        ctl(
            &self.epfd,
            libc::EPOLL_CTL_ADD,
            listener.as_raw_fd(),
            (libc::EPOLLIN | libc::EPOLLET | libc::EPOLLEXCLUSIVE) as u32,
            LISTENER_BIT | key as u64,
        )?;
        entry.insert(Listener { socket: listener, retry_at: None });
        Ok(ListenerId(key as u32))
    }

    fn unlisten(&mut self, listener: ListenerId) {
        if let Some(l) = self.listeners.try_remove(listener.0 as usize) {
            let _ = ctl(&self.epfd, libc::EPOLL_CTL_DEL, l.socket.as_raw_fd(), 0, 0);
        }
    }

    fn add(&mut self, fd: OwnedFd) -> io::Result<Token> {
        self.register(fd, CONN_EVENTS, false)
    }

    fn connect(&mut self, addr: std::net::SocketAddr) -> io::Result<Token> {
        self.stats.syscalls += 3; // socket, setsockopt, connect
        let socket = sys::tcp_socket(&addr)?;
        let done = sys::start_connect(&socket, &addr)?;
        let fd = OwnedFd::from(socket);
        if done {
            let token = self.register(fd, CONN_EVENTS, false)?;
            self.connected.push(token);
            return Ok(token);
        }
        // Writable (or an error) once the handshake is over.
        self.register(fd, CONN_EVENTS | libc::EPOLLOUT as u32, true)
    }

    fn send(&mut self, token: Token, data: Chain) {
        let Some(conn) =
            self.conns.get_mut(token.index()).filter(|c| c.token == token && !c.closing)
        else {
            let mut data = data;
            data.clear(&mut self.pool);
            return;
        };
        conn.out.append(&mut self.pool, data);
        if !conn.queued && !conn.want_out {
            conn.queued = true;
            self.flush.push(token);
        }
    }

    fn shutdown_write(&mut self, token: Token) {
        let Some(conn) = self.conn(token) else { return };
        conn.shutdown = true;
        if !conn.queued && !conn.want_out {
            conn.queued = true;
            self.flush.push(token);
        }
    }

    fn pause_recv(&mut self, token: Token) {
        if let Some(conn) = self.conn(token) {
            conn.paused = true;
        }
    }

    fn resume_recv(&mut self, token: Token) {
        let Some(conn) = self.conn(token) else { return };
        conn.paused = false;
        if conn.readable && !conn.in_ready {
            conn.in_ready = true;
            self.ready.push(token);
        }
    }

    fn close(&mut self, token: Token) {
        let Some(conn) =
            self.conns.get_mut(token.index()).filter(|c| c.token == token && !c.closing)
        else {
            return;
        };
        conn.closing = true;
        conn.out.clear(&mut self.pool);
        // The descriptor closes at the start of the next turn, before any
        // wait, so no readiness is reported for it any more. The slot stays
        // taken until `Closed` is delivered: the token is not reused under
        // the caller's feet.
        self.closed.push(token);
    }

    fn waker(&self) -> Waker {
        Waker::new(self.wake_fd.clone())
    }

    fn turn(&mut self, timeout: Option<Duration>, out: &mut Vec<Event>) -> io::Result<()> {
        self.stats.turns += 1;
        // 1. `Closed` owed from the last turn; the descriptor closes here.
        for token in self.closed.drain(..) {
            if let Some(mut conn) = self.conns.try_remove(token.index()) {
                conn.out.clear(&mut self.pool);
                self.stats.syscalls += 1;
            }
            out.push(Event::Closed { token });
        }
        // `Connected` owed by connects that completed at once.
        for token in self.connected.drain(..) {
            if self.conns.get(token.index()).is_some_and(|c| c.token == token && !c.closing) {
                out.push(Event::Connected { token, result: Ok(()) });
            }
        }
        // 2. Flush output queued since the last turn.
        let mut flush = std::mem::take(&mut self.flush);
        for token in flush.drain(..) {
            self.flush(token, out);
        }
        self.flush = flush;
        // 3. Wait once, not at all if work is already waiting.
        let carry = !self.ready.is_empty() && self.pool.available() > self.config.recv_reserve;
        let mut timeout = if carry || !out.is_empty() { Some(Duration::ZERO) } else { timeout };
        let retry = self.next_accept_retry();
        if let Some(at) = retry {
            let until = at.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(until, |t| t.min(until)));
        }
        // The connections left readable by earlier turns. Taken now, so that
        // a connection that spends its budget in this turn's dispatch goes to
        // the next turn, not back into this one.
        if carry {
            std::mem::swap(&mut self.ready, &mut self.ready_now);
        }
        let n = self.wait(timeout)?;
        // 4. Reap: every ready socket, then the ones left ready before.
        for i in 0..n {
            let ev = self.events[i];
            self.dispatch(ev, out);
        }
        if carry {
            let mut now = std::mem::take(&mut self.ready_now);
            for token in now.drain(..) {
                if let Some(conn) = self.conn(token) {
                    conn.in_ready = false;
                    self.recv(token, out);
                }
            }
            self.ready_now = now;
        }
        if retry.is_some() {
            self.retry_accepts(Instant::now(), out);
        }
        Ok(())
    }

    fn stats(&self) -> DriverStats {
        self.stats
    }
}

impl Epoll {
    /// One `epoll_wait`; `EINTR` is an empty wait.
    fn wait(&mut self, timeout: Option<Duration>) -> io::Result<usize> {
        let ms = match timeout {
            None => -1,
            // Round up so a short timer never turns into a busy loop.
            Some(t) => t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
        };
        self.stats.syscalls += 1;
        let cap = self.events.capacity();
        // SAFETY: The kernel writes at most `cap` events into the vector's spare
        // capacity, which is valid for that many writes.
        match sys::cvt(unsafe {
            libc::epoll_wait(self.epfd.as_raw_fd(), self.events.as_mut_ptr(), cap as i32, ms)
        }) {
            Ok(n) => {
                // SAFETY: epoll_wait initialised the first `n <= cap` entries.
                unsafe { self.events.set_len(n as usize) };
                Ok(n as usize)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.events.clear();
                Ok(0)
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for Epoll {
    fn drop(&mut self) {
        for (_, conn) in self.conns.iter_mut() {
            conn.out.clear(&mut self.pool);
        }
    }
}
