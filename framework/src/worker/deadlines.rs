//! Time: connection deadlines from the wheel, the handler's tick, and the
//! graceful shutdown.

use pollring_backends::Driver;

use super::Worker;
use crate::conn::{Due, Flags};
use crate::cx::{ConnId, ConnectError};
use crate::handler::{CloseReason, Drain, Handler};
use crate::lifecycle::Phase;
use crate::timer::{Ms, Stamp};

impl<D: Driver, H: Handler> Worker<D, H> {
    /// Connection deadlines, the handler's tick, the shutdown deadline.
    pub(super) fn timers(&mut self) {
        let now = self.st.now;
        if self.st.wheel.next_due().is_some_and(|due| due <= self.st.now_ms) {
            let mut expired = std::mem::take(&mut self.expired);
            let ios = &self.st.ios;
            // Live: the connection's current entry, and not closing now.
            self.st.wheel.advance(self.st.now_ms, &mut expired, |id, deadline| {
                ios.get(id).is_some_and(|io| {
                    io.wheel_at.get() == Some(deadline) && !matches!(io.phase, Phase::Closing(_))
                })
            });
            self.shrink.expired.note(expired.len());
            for (deadline, id) in expired.drain(..) {
                self.on_deadline(id, deadline);
            }
            self.expired = expired;
        }
        // The handler's own schedule, or sooner if a callback asked.
        if let Some(wanted) = self.st.tick_wanted.take() {
            self.next_tick = Some(self.next_tick.map_or(wanted, |t| t.min(wanted)));
        }
        if self.next_tick.is_some_and(|t| t <= now) {
            self.next_tick = match self.call_worker("on_tick", |h, cx| h.on_tick(cx)) {
                Some(next) => next.map(|d| now + d),
                None => None, // it panicked: ticks stop
            };
            if let Some(wanted) = self.st.tick_wanted.take() {
                self.next_tick = Some(self.next_tick.map_or(wanted, |t| t.min(wanted)));
            }
        }
        if self.shutdown_deadline.is_some_and(|t| t <= now) {
            self.shutdown_deadline = None;
            let ids: Vec<ConnId> = self.st.ios.ids().collect();
            if !ids.is_empty() {
                tracing::info!(connections = ids.len(), "grace period over; closing");
            }
            for id in ids {
                self.close_now(id, CloseReason::Shutdown);
            }
        }
    }

    /// A connection's wheel entry came round: act on what is due (at most
    /// one thing per entry, by precedence) and re-arm at the next deadline.
    fn on_deadline(&mut self, id: ConnId, deadline: Ms) {
        let (now, limits) = (self.st.now_ms, self.st.limits);
        let Some(io) = self.st.ios.get_mut(id) else { return };
        if matches!(io.phase, Phase::Closing(_)) || io.wheel_at.get() != Some(deadline) {
            // Closing, or a stale entry: the connection re-armed earlier.
            return;
        }
        io.wheel_at = Stamp::NONE;
        let close = match io.due(&limits, now) {
            None => None,
            Some(Due::Connect) => {
                let addr = self.st.peer_or_unspecified(id);
                self.fail_connect(id, ConnectError::TimedOut { addr });
                return;
            }
            Some(Due::Linger) => Some(io.phase.reason().unwrap_or(CloseReason::Local)),
            Some(Due::Idle) => Some(CloseReason::IdleTimeout),
            Some(Due::Read) if io.pending_output() > 0 => {
                // The handler may be holding input back until its output
                // drains: that wait is the write timeout's business.
                io.input_since = now.into();
                None
            }
            Some(Due::Read) => Some(CloseReason::ReadTimeout),
            Some(Due::Write) => Some(CloseReason::WriteTimeout),
            Some(Due::Timer) => {
                io.timer_at = Stamp::NONE;
                self.call(id, "on_timer", |h, conn, cx| h.on_timer(conn, cx));
                None
            }
        };
        if let Some(reason) = close {
            tracing::debug!(id = %id, ?reason, "deadline passed; closing");
            self.close_now(id, reason);
            return;
        }
        if let Some(io) = self.st.ios.get_mut(id) {
            if !matches!(io.phase, Phase::Closing(_)) {
                if let Some(next) = io.next_deadline(&limits) {
                    io.arm(id, &mut self.st.wheel, next);
                }
            }
        }
    }

    /// Stops accepting; every connection closes once its output is out,
    /// or, if its handler asks to finish ([`Drain::Finish`]), when the
    /// handler closes it.
    #[cold]
    pub(super) fn begin_shutdown(&mut self) {
        tracing::debug!(open = self.st.ios.len(), "shutting down");
        self.shutting_down = true;
        self.st.draining = true;
        self.shutdown_deadline = Some(self.st.now + self.config.shutdown_grace);
        for (id, _) in self.listeners.drain(..) {
            self.driver.unlisten(id);
        }
        let ids: Vec<ConnId> = self.st.ios.ids().collect();
        for id in ids {
            self.drain(id);
        }
        self.flush();
    }

    /// A connection meets the shutdown: its handler decides
    /// ([`Handler::on_shutdown`]); by default it closes once its output is
    /// out, at once if idle.
    pub(super) fn drain(&mut self, id: ConnId) {
        let open = self.st.ios.get(id).is_some_and(|io| {
            !matches!(
                io.phase,
                Phase::Lingering { .. }
                    | Phase::Closing(_)
                    | Phase::Draining { .. }
                    | Phase::Connecting { .. }
            )
        });
        if open {
            let mut drain = Drain::Close;
            self.call(id, "on_shutdown", |h, conn, cx| drain = h.on_shutdown(conn, cx));
            if drain == Drain::Finish {
                return;
            }
        }
        let Some(io) = self.st.ios.get_mut(id) else { return };
        let idle =
            io.pending_output() == 0 && io.input.is_empty() && !io.flags.contains(Flags::PARKED);
        match io.phase {
            Phase::Lingering { .. } | Phase::Closing(_) => {}
            // Idle (or not yet connected): no answer to protect, so no
            // lingering either.
            Phase::Connecting { .. } => self.close_now(id, CloseReason::Shutdown),
            _ if idle => self.close_now(id, CloseReason::Shutdown),
            _ => {
                io.phase.close(CloseReason::Shutdown);
                self.st.mark_dirty(id);
            }
        }
    }
}
