//! What comes in: accepted and connected connections, received bytes, the
//! peer's FIN, and the `on_data` calls they lead to.

use std::time::{Duration, Instant};

use pollring_backends::buf::Buf;
use pollring_backends::{Driver, Token};

use super::{guarded, Worker};
use crate::conn::{ConnIo, Flags};
use crate::cx::{ConnId, ConnectError, Cx};
use crate::handler::{CloseReason, Handler};
use crate::lifecycle::{OnFin, Phase};
use crate::timer::Stamp;

/// While the pool runs low (under half of it free), a connection left with
/// at most this much unconsumed input after `on_data` has it moved to a heap
/// allocation of its own size, so a peer that sends a byte of a frame and
/// stops pins a few bytes, not a whole pool buffer (see [`Worker::park`]).
const PARK_MAX: usize = 1024;

impl<D: Driver, H: Handler> Worker<D, H> {
    pub(super) fn on_accept(
        &mut self,
        listener: u8,
        fd: std::os::fd::OwnedFd,
        peer: Option<std::net::SocketAddr>,
    ) {
        // Accepted after shutdown began (an accept already in the kernel's
        // hands when the listener was dropped): served like the others
        // then, not reset, so a restart loses no connection.
        if self.accepted >= self.max_conns {
            tracing::debug!(?peer, open = self.accepted, "connection refused: at the limit");
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
        self.accepted += 1;
        self.counters.accepted += 1;
        let mut io = ConnIo::new(Phase::Open, self.st.now_ms);
        io.listener = listener;
        let id = self.st.ios.insert(io);
        if let Some(peer) = peer {
            self.st.set_peer(id, peer);
        }
        self.bind_token(id, token);
        self.open(id);
        if self.shutting_down {
            self.drain(id);
        }
    }

    /// Calls `on_open` for a connection that just became open (accepted, or
    /// connected) and arms its deadlines.
    fn open(&mut self, id: ConnId) {
        let limits = self.st.limits;
        if let Some(io) = self.st.ios.get_mut(id) {
            if let Some(at) = io.next_deadline(&limits) {
                io.arm(id, &mut self.st.wheel, at);
            }
        }
        if self.conns.len() <= id.index() {
            self.conns.resize_with(id.index() + 1, || None);
        }
        let mut cx = Cx { pool: self.driver.pool_mut(), st: &mut self.st, me: id };
        let handler = &mut self.handler;
        match guarded(|| handler.on_open(&mut cx)) {
            Ok(conn) => self.conns[id.index()] = Some(conn),
            Err(panic) => {
                tracing::error!(id = %id, callback = "on_open", panic, "handler panicked; connection closed");
                self.close_now(id, CloseReason::Error(std::io::ErrorKind::Other));
            }
        }
    }

    pub(super) fn on_connected(&mut self, token: Token, result: std::io::Result<()>) {
        let Some(id) = self.id_of(token) else { return };
        let Some(io) = self.st.ios.get_mut(id) else { return };
        if !matches!(io.phase, Phase::Connecting { .. }) {
            return;
        }
        match result {
            Ok(()) => {
                io.phase.connected();
                io.last_active = self.st.now_ms.into();
                io.send_since = self.st.now_ms.into();
                // Output queued while connecting, and the pause state.
                self.st.mark_dirty(id);
                self.open(id);
                // A FIN asked for while connecting follows what on_open wrote.
                if let Some(io) = self.st.ios.get_mut(id) {
                    if io.flags.remove(Flags::SHUTDOWN_ON_CONNECT) {
                        io.phase.shutdown_write();
                    }
                }
            }
            Err(error) => {
                let addr = self.st.peer_or_unspecified(id);
                self.fail_connect(id, ConnectError::from_io(addr, error));
            }
        }
    }

    pub(super) fn on_error(&mut self, token: Token, error: std::io::Error) {
        let Some(id) = self.id_of(token) else { return };
        tracing::debug!(id = %id, %error, "connection error");
        self.close_now(id, CloseReason::Error(error.kind()));
    }

    pub(super) fn on_accept_error(&mut self, error: std::io::Error) {
        self.counters.accept_errors += 1;
        // The driver retries every few milliseconds while the shortage
        // lasts: warn at most once a second.
        let now = self.st.now;
        if self.accept_warned.is_none_or(|t: Instant| now >= t + Duration::from_secs(1)) {
            let repeats = std::mem::take(&mut self.accept_errors_unlogged);
            tracing::warn!(%error, repeats, "accept failed; backing off");
            self.accept_warned = Some(now);
        } else {
            self.accept_errors_unlogged += 1;
        }
    }

    pub(super) fn on_recv(&mut self, token: Token, buf: Buf) {
        self.counters.bytes_received += self.driver.pool().data(&buf).len() as u64;
        let Some(id) = self.id_of(token) else {
            self.driver.pool_mut().free(buf);
            return;
        };
        if !self.unpark(id) {
            self.driver.pool_mut().free(buf);
            return;
        }
        let now = self.st.now_ms;
        let read_timeout = self.st.limits.read;
        let pool = self.driver.pool_mut();
        let Some(io) = self.st.ios.get_mut(id) else {
            pool.free(buf);
            return;
        };
        io.last_active = now.into();
        if !io.phase.takes_input() {
            // Lingering (or draining): read only to see the peer's EOF.
            pool.free(buf);
            return;
        }
        // Small receives are copied behind a partial frame instead of
        // pinning a buffer each.
        let copy_limit = pool.buf_size() / 4;
        if io.input_since == Stamp::NONE {
            io.input_since = now.into();
            if let Some(timeout) = read_timeout {
                io.arm(id, &mut self.st.wheel, now.after(timeout));
            }
        }
        io.input.push_or_copy(pool, buf, copy_limit);
        if io.input.len() > self.max_input {
            tracing::debug!(id = %id, bytes = io.input.len(), "input limit");
            self.close_now(id, CloseReason::InputLimit);
            return;
        }
        self.mark_data(id);
    }

    pub(super) fn on_eof(&mut self, token: Token) {
        let Some(id) = self.id_of(token) else { return };
        let Some(io) = self.st.ios.get_mut(id) else { return };
        match io.phase.peer_fin() {
            OnFin::Deliver => {
                // From WriteClosed the FIN ends the connection: the flush closes it.
                // Parked input comes back when on_data runs (`Worker::call`).
                self.st.mark_dirty(id);
                self.mark_data(id);
            }
            OnFin::Nothing => self.st.mark_dirty(id),
            OnFin::CloseNow(reason) => self.close_now(id, reason),
        }
    }

    fn mark_data(&mut self, id: ConnId) {
        if let Some(io) = self.st.ios.get_mut(id) {
            if io.flags.insert(Flags::HAS_DATA) {
                self.data.push(id);
            }
        }
    }

    /// Calls `on_data` once per connection that received this turn (or
    /// whose peer finished sending).
    pub(super) fn deliver_input(&mut self) {
        let mut data = std::mem::take(&mut self.data);
        self.shrink.data.note(data.len());
        for id in data.drain(..) {
            let Some(io) = self.st.ios.get_mut(id) else { continue };
            io.flags.remove(Flags::HAS_DATA);
            if !io.phase.live() && !io.phase.read_closed() {
                continue;
            }
            if !self.call(id, "on_data", |h, conn, cx| h.on_data(conn, cx)) {
                continue;
            }
            let Some(io) = self.st.ios.get_mut(id) else { continue };
            let before = io.phase;
            io.phase.after_data(io.flags.contains(Flags::HALF_CLOSE));
            if io.phase != before {
                self.st.mark_dirty(id);
            }
            self.park(id);
        }
        self.data = data;
    }

    /// While the pool runs low, moves a connection's small unconsumed input
    /// (a partial frame of at most [`PARK_MAX`] bytes) to the heap and frees
    /// its buffers. Without this, every peer that sends one byte of a frame
    /// and waits pins a whole buffer, and a few thousand such peers starve
    /// everyone's receives until their read timeouts. Costs nothing while
    /// the pool has room; under pressure, one copy out and one back in.
    fn park(&mut self, id: ConnId) {
        let pool = self.driver.pool_mut();
        if pool.available() >= pool.capacity() / 2 {
            return;
        }
        let Some(io) = self.st.ios.get_mut(id) else { return };
        let len = io.input.len();
        if len == 0 || len > PARK_MAX || !io.phase.live() {
            return;
        }
        let bytes: Box<[u8]> = io.input.chunks(pool).flatten().copied().collect();
        io.input.clear(pool);
        io.flags.set(Flags::PARKED, true);
        self.parked.insert(id, bytes);
    }

    /// Puts parked input back into the connection's (empty) input chain,
    /// ahead of what arrives next. `false` if the pool had no buffer for it:
    /// the connection is then closed (`PoolExhausted`).
    pub(super) fn unpark(&mut self, id: ConnId) -> bool {
        let pool = self.driver.pool_mut();
        let Some(io) = self.st.ios.get_mut(id) else { return true };
        if !io.flags.remove(Flags::PARKED) {
            return true;
        }
        let Some(bytes) = self.parked.remove(&id) else { return true };
        if io.input.extend_from_slice(pool, &bytes).is_ok() {
            return true;
        }
        tracing::warn!(id = %id, "buffer pool exhausted; connection closed");
        self.close_now(id, CloseReason::PoolExhausted);
        false
    }

    /// Drops a connection's input (parked or not): it is closing.
    pub(super) fn discard_input(&mut self, id: ConnId) {
        let pool = self.driver.pool_mut();
        let Some(io) = self.st.ios.get_mut(id) else { return };
        io.input.clear(pool);
        io.input_since = Stamp::NONE;
        if io.flags.remove(Flags::PARKED) {
            self.parked.remove(&id);
        }
    }
}
