//! The framework's per-connection state ([`ConnIo`]) and its deadlines.

use std::net::SocketAddrV4;
use std::time::Duration;

use pollring_backends::buf::Chain;
use pollring_backends::Token;

use crate::cx::ConnId;
use crate::lifecycle::Phase;
use crate::timer::{Ms, Wheel};

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
    /// The outbound connect ran out of time.
    Connect,
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

/// Why receiving is paused; the driver receives only when none is set and
/// the phase reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Pause {
    /// The handler paused it ([`crate::Cx::pause_recv`]).
    pub(crate) handler: bool,
    /// How many connections this one feeds have output over the
    /// high-water mark (this one itself unless [`crate::Cx::set_feeder`]
    /// named another). A count, so a connection feeding several resumes
    /// only when all of them have drained.
    pub(crate) backpressure: u16,
    /// What the driver was last told: `true` after `pause_recv`.
    pub(crate) driver: bool,
}

/// The framework's per-connection state besides the handler's own.
#[derive(Debug)]
pub(crate) struct ConnIo {
    /// The driver's token, [`NO_TOKEN`] until an outbound connect is
    /// submitted (a sentinel rather than an `Option`: 8 bytes, not 16, on
    /// every connection). Read it through [`ConnIo::token`].
    token: Token,
    /// The peer's address when it is IPv4 (8 bytes, on every connection);
    /// an IPv6 peer's is kept beside the table
    /// ([`WorkerState::peer`](crate::state::WorkerState::peer)).
    pub(crate) peer: Option<SocketAddrV4>,
    pub(crate) phase: Phase,
    /// Received, not yet consumed by the handler.
    pub(crate) input: Chain,
    /// Written by the handler, not yet handed to the driver.
    pub(crate) output: Chain,
    /// Handed to the driver, not yet reported sent.
    pub(crate) in_flight: usize,
    pub(crate) pause: Pause,
    /// This connection's output went over the high-water mark and paused
    /// its feeder; it resumes the feeder below the low-water mark.
    pub(crate) throttling: bool,
    /// The handler opted into half-close ([`crate::Cx::set_half_close`]).
    pub(crate) half_close: bool,
    /// The driver was asked to send FIN.
    pub(crate) fin_sent: bool,
    /// `shutdown_write` was asked for while connecting: done on connect.
    pub(crate) shutdown_on_connect: bool,
    /// Started by a connect, not accepted.
    pub(crate) outbound: bool,
    /// In the worker's list of connections to flush.
    pub(crate) listed: bool,
    /// In the worker's list of connections with new input.
    pub(crate) has_data: bool,
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
    /// The handler's timer ([`crate::Cx::set_timer`]).
    pub(crate) timer_at: Option<Ms>,
    /// Deadline of this connection's live entry in the timer wheel.
    pub(crate) wheel_at: Option<Ms>,
}

/// No driver token yet: no driver hands out slot index `u32::MAX`.
const NO_TOKEN: Token = Token::new(u32::MAX, 0);

impl ConnIo {
    pub(crate) fn new(phase: Phase, now: Ms) -> ConnIo {
        ConnIo {
            token: NO_TOKEN,
            peer: None,
            phase,
            input: Chain::new(),
            output: Chain::new(),
            in_flight: 0,
            pause: Pause::default(),
            throttling: false,
            half_close: false,
            fin_sent: false,
            shutdown_on_connect: false,
            outbound: false,
            listed: false,
            has_data: false,
            out_of_buffers: false,
            parked: false,
            last_active: now,
            input_since: None,
            send_since: now,
            timer_at: None,
            wheel_at: None,
        }
    }

    /// The driver's token, once the driver has the connection.
    pub(crate) fn token(&self) -> Option<Token> {
        (self.token != NO_TOKEN).then_some(self.token)
    }

    /// Records the driver's token.
    pub(crate) fn set_token(&mut self, token: Token) {
        debug_assert_ne!(token, NO_TOKEN);
        self.token = token;
    }

    /// Makes sure the wheel holds an entry for connection `id` at or before
    /// `deadline`. Later deadlines are left to the re-arm when the entry
    /// comes round, so activity costs one comparison.
    pub(crate) fn arm(&mut self, id: ConnId, wheel: &mut Wheel, deadline: Ms) {
        if self.wheel_at.is_none_or(|at| deadline < at) {
            self.wheel_at = Some(deadline);
            wheel.insert(deadline, id);
        }
    }

    /// The deadlines in force, in order of precedence. A lingering or
    /// connecting connection has only the deadline of its phase; the
    /// handler's timer runs only while the connection is live; the read
    /// timeout waits while output is pending (the handler may be holding
    /// input back for it).
    fn deadlines(&self, limits: &Limits) -> [(Due, Option<Ms>); 6] {
        match self.phase {
            Phase::Connecting { until } => {
                return [
                    (Due::Connect, until),
                    (Due::Linger, None),
                    (Due::Idle, None),
                    (Due::Read, None),
                    (Due::Write, None),
                    (Due::Timer, None),
                ]
            }
            Phase::Lingering { until, .. } => {
                return [
                    (Due::Connect, None),
                    (Due::Linger, Some(until)),
                    (Due::Idle, None),
                    (Due::Read, None),
                    (Due::Write, None),
                    (Due::Timer, None),
                ]
            }
            _ => {}
        }
        let pending = self.pending_output() > 0;
        [
            (Due::Connect, None),
            (Due::Linger, None),
            (Due::Idle, limits.idle.map(|t| self.last_active.after(t))),
            (Due::Read, limits.read.zip(self.input_since).map(|(t, since)| since.after(t))),
            (Due::Write, limits.write.filter(|_| pending).map(|t| self.send_since.after(t))),
            (Due::Timer, self.timer_at.filter(|_| self.phase.live())),
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
    pub(crate) fn consumed(&mut self, now: Ms) {
        self.input_since = (!self.input.is_empty()).then_some(now);
    }

    /// Output not yet reported sent (queued here or in the driver).
    pub(crate) fn pending_output(&self) -> usize {
        self.in_flight + self.output.len()
    }

    /// Whether the driver should be receiving for this connection. A
    /// lingering one always reads (to see the peer's EOF), pauses or not.
    pub(crate) fn wants_recv(&self) -> bool {
        match self.phase {
            Phase::Lingering { .. } => true,
            _ => self.phase.reads() && !self.pause.handler && self.pause.backpressure == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handler::CloseReason;
    use crate::timer::Clock;
    use std::time::Instant;

    #[test]
    fn pauses_stop_receiving_except_while_lingering() {
        let now = Clock::new(Instant::now()).ms(Instant::now());
        let mut io = ConnIo::new(Phase::Open, now);
        assert!(io.wants_recv());
        io.pause.handler = true;
        assert!(!io.wants_recv());
        io.pause.handler = false;
        io.pause.backpressure = 2;
        assert!(!io.wants_recv());
        io.pause.backpressure = 1;
        assert!(!io.wants_recv(), "one of two writers drained: still paused");
        io.pause.handler = true;
        io.phase = Phase::Lingering { reason: CloseReason::Local, until: now };
        assert!(io.wants_recv(), "a lingering connection reads to see the EOF");
        io.phase = Phase::Draining { reason: CloseReason::Local, peer_fin: false };
        io.pause = Pause::default();
        assert!(!io.wants_recv(), "draining discards input: no receiving");
        io.phase = Phase::Connecting { until: None };
        assert!(!io.wants_recv());
    }
}
#[cfg(test)]
mod size {
    /// Every idle connection pays for a `ConnIo`: growing it is a decision,
    /// not an accident (the idle-RSS bench measures the whole cost).
    #[test]
    fn conn_io_stays_small() {
        assert!(
            std::mem::size_of::<super::ConnIo>() <= 128,
            "{}",
            std::mem::size_of::<super::ConnIo>()
        );
    }
}
