//! What goes out: output, receive pauses and FINs handed to the driver once
//! per connection per turn; backpressure; closing.

use pollring_backends::{Driver, Token};

use super::{Worker, LINGER};
use crate::conn::Flags;
use crate::cx::{ConnId, ConnectError, Cx, WorkerCx};
use crate::handler::{CloseReason, Handler};
use crate::lifecycle::{OnDrained, Phase};

impl<D: Driver, H: Handler> Worker<D, H> {
    /// Submits the connects and aborts callbacks asked for, then hands each
    /// dirty connection's output to the driver: one send per connection
    /// per turn.
    pub(super) fn flush(&mut self) {
        loop {
            self.settle();
            if self.st.dirty.is_empty() {
                break;
            }
            // A flush can call back into the handler (a failed connect),
            // which may list more connections: go round until none is.
            let mut dirty = std::mem::take(&mut self.st.dirty);
            self.shrink.dirty.note(dirty.len());
            for id in dirty.drain(..) {
                self.flush_one(id);
            }
            if self.st.dirty.is_empty() {
                self.st.dirty = dirty; // keep the allocation
            }
        }
    }

    fn flush_one(&mut self, id: ConnId) {
        let now = self.st.now_ms;
        let write_timeout = self.st.limits.write;
        let Some(io) = self.st.ios.get_mut(id) else { return };
        io.flags.remove(Flags::LISTED);
        if matches!(io.phase, Phase::Connecting { .. }) {
            // Output waits for the connect, bounded like any other.
            self.throttle(id);
            return;
        }
        let Some(token) = io.token() else { return };
        if !io.phase.flushes() {
            if !matches!(io.phase, Phase::Closing(_)) {
                self.sync_recv(id);
            }
            return;
        }
        if io.flags.contains(Flags::OUT_OF_BUFFERS) {
            tracing::warn!(id = %id, "buffer pool exhausted; connection closed");
            self.close_now(id, CloseReason::PoolExhausted);
            return;
        }
        if matches!(io.phase, Phase::Draining { .. })
            && (!io.input.is_empty() || io.flags.contains(Flags::PARKED))
        {
            self.discard_input(id);
        }
        let Some(io) = self.st.ios.get_mut(id) else { return };
        if !io.output.is_empty() {
            if io.in_flight() == 0 {
                // Output becomes pending: the write timeout starts.
                io.send_since = now.into();
                if let Some(timeout) = write_timeout {
                    io.arm(id, &mut self.st.wheel, now.after(timeout));
                }
            }
            let out = std::mem::take(&mut io.output);
            io.handed_over(out.len());
            self.driver.send(token, out);
        }
        if io.phase == Phase::WriteClosed && io.flags.insert(Flags::FIN_SENT) {
            self.driver.shutdown_write(token);
        }
        let pending = io.pending_output();
        self.throttle(id);
        self.sync_recv(id);
        if pending == 0 {
            self.on_drained_out(id);
        }
    }

    /// Records the buffered peak, and pauses the feeder of `id` once its
    /// pending output reaches the high-water mark.
    fn throttle(&mut self, id: ConnId) {
        let high = self.config.high_water;
        let Some(io) = self.st.ios.get_mut(id) else { return };
        let pending = io.pending_output();
        self.buffered_peak = self.buffered_peak.max(pending + io.input.len());
        if pending >= high && io.flags.insert(Flags::THROTTLING) {
            let feeder = self.st.feeder_of(id);
            self.set_backpressure(feeder, true);
        }
    }

    /// One connection that `id` feeds went over the high-water mark (`on`)
    /// or back under the low-water mark: pause or resume `id`'s reading.
    fn set_backpressure(&mut self, id: ConnId, on: bool) {
        let Some(io) = self.st.ios.get_mut(id) else { return };
        io.backpressure =
            if on { io.backpressure.saturating_add(1) } else { io.backpressure.saturating_sub(1) };
        self.sync_recv(id);
    }

    /// Tells the driver to receive or not, as the phase and pauses say.
    pub(super) fn sync_recv(&mut self, id: ConnId) {
        let Some(io) = self.st.ios.get_mut(id) else { return };
        let Some(token) = io.token() else { return };
        if matches!(io.phase, Phase::Closing(_) | Phase::Connecting { .. }) {
            return;
        }
        let want = io.wants_recv();
        if want == io.flags.contains(Flags::DRIVER_PAUSED) {
            io.flags.set(Flags::DRIVER_PAUSED, !want);
            if want {
                self.driver.resume_recv(token);
            } else {
                self.driver.pause_recv(token);
            }
        }
    }

    pub(super) fn on_sent(&mut self, token: Token, bytes: usize) {
        self.counters.bytes_sent += bytes as u64;
        let Some(id) = self.id_of(token) else { return };
        let (now, low) = (self.st.now_ms, self.config.low_water);
        let Some(io) = self.st.ios.get_mut(id) else { return };
        io.sent(bytes);
        io.last_active = now.into();
        io.send_since = now.into();
        if matches!(io.phase, Phase::Closing(_)) {
            return;
        }
        let pending = io.pending_output();
        if pending < low && io.flags.remove(Flags::THROTTLING) {
            let feeder = self.st.feeder_of(id);
            self.set_backpressure(feeder, false);
        }
        if pending > 0 {
            return;
        }
        // Everything written so far is out.
        if self.on_drained_out(id) {
            return;
        }
        let live = self.st.ios.get(id).is_some_and(|io| io.phase.live());
        if live {
            self.call(id, "on_drained", |h, conn, cx| h.on_drained(conn, cx));
        }
    }

    /// A connection's pending output reached zero: a draining one closes or
    /// lingers. Returns whether it was draining.
    fn on_drained_out(&mut self, id: ConnId) -> bool {
        let until = self.st.now_ms.after(LINGER);
        let Some(io) = self.st.ios.get_mut(id) else { return false };
        match io.phase.drained(until) {
            OnDrained::Nothing => false,
            OnDrained::CloseNow(reason) => {
                self.close_now(id, reason);
                true
            }
            OnDrained::Linger => {
                // If the peer may still be sending, closing now would make
                // the kernel answer with a reset, which can destroy the
                // response on its way: send FIN and read until its EOF.
                io.arm(id, &mut self.st.wheel, until);
                if let Some(token) = io.token() {
                    if io.flags.insert(Flags::FIN_SENT) {
                        self.driver.shutdown_write(token);
                    }
                }
                self.sync_recv(id);
                true
            }
        }
    }

    /// Asks the driver to close now (unsent output is dropped). A connection
    /// still connecting reports `ConnectError::Aborted`.
    pub(super) fn close_now(&mut self, id: ConnId, reason: CloseReason) {
        let Some(io) = self.st.ios.get(id) else { return };
        if let Phase::Connecting { .. } = io.phase {
            let addr = self.st.peer_or_unspecified(id);
            self.fail_connect(id, ConnectError::Aborted { addr });
            return;
        }
        self.close_inner(id, reason);
    }

    fn close_inner(&mut self, id: ConnId, reason: CloseReason) {
        self.discard_input(id);
        let pool = self.driver.pool_mut();
        let Some(io) = self.st.ios.get_mut(id) else { return };
        if !io.phase.close_now(reason) {
            return;
        }
        io.output.clear(pool);
        // Its output no longer holds its feeder back.
        let throttled = io.flags.remove(Flags::THROTTLING);
        match io.token() {
            Some(token) => self.driver.close(token),
            // Never reached the driver: nothing to wait for.
            None => self.release(id),
        }
        if throttled {
            let feeder = self.st.feeder_of(id);
            if feeder != id {
                self.set_backpressure(feeder, false);
            }
        }
    }

    /// An outbound connect failed: close it and tell the handler.
    /// An outbound connect failed: close it now, and tell the handler at
    /// the turn's one reporting point ([`Worker::report_connect_errors`]),
    /// never from inside the flush: a handler that reconnects from
    /// `on_connect_error` gets one attempt per turn, not a loop in here.
    pub(super) fn fail_connect(&mut self, id: ConnId, error: ConnectError) {
        let Some(io) = self.st.ios.get(id) else { return };
        if !matches!(io.phase, Phase::Connecting { .. }) {
            return;
        }
        let opener = self.st.opener_of(id);
        tracing::debug!(id = %id, %error, "connect failed");
        self.close_inner(id, CloseReason::Local);
        self.connect_errors.push((id, opener, error));
    }

    /// Calls `on_connect_error` for the connects that failed since the last
    /// report.
    pub(super) fn report_connect_errors(&mut self) {
        let mut errors = std::mem::take(&mut self.connect_errors);
        for (id, opener, error) in errors.drain(..) {
            self.call_worker("on_connect_error", |h, cx: &mut WorkerCx<'_, H::Message>| {
                h.on_connect_error(cx, id, opener, error)
            });
        }
        if self.connect_errors.is_empty() {
            self.connect_errors = errors; // keep the allocation
        }
    }

    pub(super) fn on_closed(&mut self, token: Token) {
        if let Some(id) = self.id_of(token) {
            self.release(id);
        }
    }

    /// Hands a closed connection's state back to the handler, then frees
    /// its slot. `on_close` runs while the slot still exists, so its `Cx`
    /// knows the connection's id and can reach the others.
    fn release(&mut self, id: ConnId) {
        let Some(io) = self.st.ios.get_mut(id) else { return };
        let reason = io.phase.reason().unwrap_or(CloseReason::Local);
        tracing::trace!(id = %id, ?reason, "connection closed");
        self.counters.closed(&reason);
        if let Some(conn) = self.conns.get_mut(id.index()).and_then(Option::take) {
            let mut cx = Cx { pool: self.driver.pool_mut(), st: &mut self.st, me: id };
            let handler = &mut self.handler;
            if let Err(panic) = super::guarded(|| handler.on_close(conn, &mut cx, reason)) {
                tracing::error!(id = %id, callback = "on_close", panic, "handler panicked");
            }
        }
        let Some(mut io) = self.st.ios.remove(id) else { return };
        self.st.links.remove(&id);
        self.st.wide_peers.remove(&id);
        if io.flags.contains(Flags::PARKED) {
            self.parked.remove(&id);
        }
        if !io.flags.contains(Flags::OUTBOUND) {
            self.accepted -= 1;
        }
        let pool = self.driver.pool_mut();
        io.input.clear(pool);
        io.output.clear(pool);
    }

    /// Submits the outbound connects and performs the aborts that callbacks
    /// asked for. Connect failures call back into the handler, which may
    /// ask for more: repeat until none is left.
    fn settle(&mut self) {
        while !self.st.connects.is_empty() || !self.st.aborts.is_empty() {
            let connects = std::mem::take(&mut self.st.connects);
            for (id, addr) in connects {
                // Closed (and reported) since it was asked for.
                let queued = self.st.ios.get(id).is_some_and(|io| {
                    matches!(io.phase, Phase::Connecting { .. }) && io.token().is_none()
                });
                if !queued {
                    continue;
                }
                if self.shutting_down {
                    self.fail_connect(id, ConnectError::Aborted { addr });
                    continue;
                }
                match self.driver.connect(addr) {
                    Ok(token) => self.bind_token(id, token),
                    Err(error) => self.fail_connect(id, ConnectError::from_io(addr, error)),
                }
            }
            let aborts = std::mem::take(&mut self.st.aborts);
            for id in aborts {
                self.close_now(id, CloseReason::Local);
            }
        }
    }
}
