//! The framework's per-connection state ([`ConnIo`]) and its deadlines.

use std::net::SocketAddrV4;
use std::time::Duration;

use pollring_backends::buf::Chain;
use pollring_backends::Token;

use crate::cx::ConnId;
use crate::lifecycle::Phase;
use crate::timer::{Ms, Stamp, Wheel};

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

/// A connection's yes/no state, one bit each in one word (eleven `bool`s
/// took 11 bytes of every connection).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flags(u16);

impl Flags {
    /// This connection's output went over the high-water mark and paused
    /// its feeder; it resumes the feeder below the low-water mark.
    pub(crate) const THROTTLING: Flags = Flags(1 << 0);
    /// The handler opted into half-close ([`crate::Cx::set_half_close`]).
    pub(crate) const HALF_CLOSE: Flags = Flags(1 << 1);
    /// The driver was asked to send FIN.
    pub(crate) const FIN_SENT: Flags = Flags(1 << 2);
    /// `shutdown_write` was asked for while connecting: done on connect.
    pub(crate) const SHUTDOWN_ON_CONNECT: Flags = Flags(1 << 3);
    /// Started by a connect, not accepted.
    pub(crate) const OUTBOUND: Flags = Flags(1 << 4);
    /// In the worker's list of connections to flush.
    pub(crate) const LISTED: Flags = Flags(1 << 5);
    /// In the worker's list of connections with new input.
    pub(crate) const HAS_DATA: Flags = Flags(1 << 6);
    /// A write found the pool empty.
    pub(crate) const OUT_OF_BUFFERS: Flags = Flags(1 << 7);
    /// The unconsumed input was moved off the pool while it ran low (see
    /// `Worker::park`); it goes back in front of the next receive.
    pub(crate) const PARKED: Flags = Flags(1 << 8);
    /// The handler paused receiving ([`crate::Cx::pause_recv`]).
    pub(crate) const PAUSED_BY_HANDLER: Flags = Flags(1 << 9);
    /// What the driver was last told: set after `pause_recv`.
    pub(crate) const DRIVER_PAUSED: Flags = Flags(1 << 10);
    /// `peer` is an IPv4 address that came IPv4-mapped (`::ffff:a.b.c.d`,
    /// a dual-stack listener's IPv4 clients) and is reported that way.
    pub(crate) const PEER_V4_MAPPED: Flags = Flags(1 << 11);

    const NAMES: [(Flags, &'static str); 12] = [
        (Flags::THROTTLING, "THROTTLING"),
        (Flags::HALF_CLOSE, "HALF_CLOSE"),
        (Flags::FIN_SENT, "FIN_SENT"),
        (Flags::SHUTDOWN_ON_CONNECT, "SHUTDOWN_ON_CONNECT"),
        (Flags::OUTBOUND, "OUTBOUND"),
        (Flags::LISTED, "LISTED"),
        (Flags::HAS_DATA, "HAS_DATA"),
        (Flags::OUT_OF_BUFFERS, "OUT_OF_BUFFERS"),
        (Flags::PARKED, "PARKED"),
        (Flags::PAUSED_BY_HANDLER, "PAUSED_BY_HANDLER"),
        (Flags::DRIVER_PAUSED, "DRIVER_PAUSED"),
        (Flags::PEER_V4_MAPPED, "PEER_V4_MAPPED"),
    ];

    /// Whether `flag` is set.
    pub(crate) fn contains(self, flag: Flags) -> bool {
        self.0 & flag.0 != 0
    }

    /// Sets or clears `flag`.
    pub(crate) fn set(&mut self, flag: Flags, on: bool) {
        if on {
            self.0 |= flag.0;
        } else {
            self.0 &= !flag.0;
        }
    }

    /// Sets `flag`; `true` if it was not set before.
    pub(crate) fn insert(&mut self, flag: Flags) -> bool {
        let was = self.contains(flag);
        self.0 |= flag.0;
        !was
    }

    /// Clears `flag`; `true` if it was set before.
    pub(crate) fn remove(&mut self, flag: Flags) -> bool {
        let was = self.contains(flag);
        self.0 &= !flag.0;
        was
    }
}

impl std::fmt::Debug for Flags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = Flags::NAMES.iter().filter(|(flag, _)| self.contains(*flag));
        f.debug_set().entries(set.map(|(_, name)| name)).finish()
    }
}

/// The framework's per-connection state besides the handler's own. Every
/// idle connection pays for one (96 bytes: see the size test), so fields
/// are packed: flags in one word, times in 6-byte [`Stamp`]s, nothing
/// 8-byte aligned.
#[derive(Debug)]
pub(crate) struct ConnIo {
    /// The driver's token as index and generation (two `u32`s rather than
    /// the 8-byte-aligned `Token`), [`NO_TOKEN`] until an outbound connect
    /// is submitted. Read it through [`ConnIo::token`].
    token: [u32; 2],
    /// The peer's address when it is IPv4, or IPv4-mapped IPv6
    /// ([`Flags::PEER_V4_MAPPED`]) (8 bytes, on every connection); another
    /// IPv6 peer's is kept beside the table
    /// ([`WorkerState::peer`](crate::state::WorkerState::peer)).
    pub(crate) peer: Option<SocketAddrV4>,
    /// Received, not yet consumed by the handler.
    pub(crate) input: Chain,
    /// Written by the handler, not yet handed to the driver.
    pub(crate) output: Chain,
    /// Handed to the driver, not yet reported sent (see
    /// [`ConnIo::in_flight`]).
    in_flight: u32,
    /// How many connections this one feeds have output over the
    /// high-water mark (this one itself unless [`crate::Cx::set_feeder`]
    /// named another). A count, so a connection feeding several resumes
    /// only when all of them have drained.
    pub(crate) backpressure: u16,
    pub(crate) flags: Flags,
    pub(crate) phase: Phase,
    /// The server's index of the listener that accepted it
    /// ([`crate::Cx::listener`]), [`NO_LISTENER`] for an outbound one (in
    /// what was padding).
    pub(crate) listener: u8,
    /// Last receive or send completion, for the idle timeout.
    pub(crate) last_active: Stamp,
    /// When the oldest unconsumed input arrived, restarted whenever the
    /// handler consumes: the read timeout counts from here.
    pub(crate) input_since: Stamp,
    /// When pending output last made progress (or became pending): the
    /// write timeout counts from here.
    pub(crate) send_since: Stamp,
    /// The handler's timer ([`crate::Cx::set_timer`]).
    pub(crate) timer_at: Stamp,
    /// Deadline of this connection's live entry in the timer wheel.
    pub(crate) wheel_at: Stamp,
}

/// Not accepted by a listener: an outbound connection.
pub(crate) const NO_LISTENER: u8 = u8::MAX;

/// No driver token yet: no driver hands out slot index `u32::MAX`.
const NO_TOKEN: [u32; 2] = [u32::MAX, 0];

impl ConnIo {
    pub(crate) fn new(phase: Phase, now: Ms) -> ConnIo {
        ConnIo {
            token: NO_TOKEN,
            peer: None,
            input: Chain::new(),
            output: Chain::new(),
            in_flight: 0,
            backpressure: 0,
            flags: Flags::default(),
            phase,
            listener: NO_LISTENER,
            last_active: now.into(),
            input_since: Stamp::NONE,
            send_since: now.into(),
            timer_at: Stamp::NONE,
            wheel_at: Stamp::NONE,
        }
    }

    /// The driver's token, once the driver has the connection.
    pub(crate) fn token(&self) -> Option<Token> {
        let [index, generation] = self.token;
        (self.token != NO_TOKEN).then(|| Token::new(index, generation))
    }

    /// Records the driver's token.
    pub(crate) fn set_token(&mut self, token: Token) {
        let token = [token.index() as u32, token.generation()];
        debug_assert_ne!(token, NO_TOKEN);
        self.token = token;
    }

    /// Bytes handed to the driver and not yet reported sent.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight as usize
    }

    /// Records `n` more bytes handed to the driver. A `u32` suffices: they
    /// are pool bytes, and a pool holds less than 4 GiB (it saturates
    /// rather than wraps, all the same).
    pub(crate) fn handed_over(&mut self, n: usize) {
        self.in_flight = self.in_flight.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// Records `n` bytes reported sent by the driver.
    pub(crate) fn sent(&mut self, n: usize) {
        self.in_flight = self.in_flight.saturating_sub(u32::try_from(n).unwrap_or(u32::MAX));
    }

    /// Makes sure the wheel holds an entry for connection `id` at or before
    /// `deadline`. Later deadlines are left to the re-arm when the entry
    /// comes round, so activity costs one comparison.
    pub(crate) fn arm(&mut self, id: ConnId, wheel: &mut Wheel, deadline: Ms) {
        if self.wheel_at.get().is_none_or(|at| deadline < at) {
            self.wheel_at = deadline.into();
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
                    (Due::Connect, until.get()),
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
                    (Due::Linger, until.get()),
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
            (Due::Idle, limits.idle.zip(self.last_active.get()).map(|(t, at)| at.after(t))),
            (Due::Read, limits.read.zip(self.input_since.get()).map(|(t, at)| at.after(t))),
            (
                Due::Write,
                limits
                    .write
                    .zip(self.send_since.get())
                    .filter(|_| pending)
                    .map(|(t, at)| at.after(t)),
            ),
            (Due::Timer, self.timer_at.get().filter(|_| self.phase.live())),
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
        self.input_since = (!self.input.is_empty()).then_some(now).into();
    }

    /// Output not yet reported sent (queued here or in the driver).
    pub(crate) fn pending_output(&self) -> usize {
        self.in_flight() + self.output.len()
    }

    /// Whether the driver should be receiving for this connection. A
    /// lingering one always reads (to see the peer's EOF), pauses or not.
    pub(crate) fn wants_recv(&self) -> bool {
        match self.phase {
            Phase::Lingering { .. } => true,
            _ => {
                self.phase.reads()
                    && !self.flags.contains(Flags::PAUSED_BY_HANDLER)
                    && self.backpressure == 0
            }
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
        io.flags.set(Flags::PAUSED_BY_HANDLER, true);
        assert!(!io.wants_recv());
        io.flags.set(Flags::PAUSED_BY_HANDLER, false);
        io.backpressure = 2;
        assert!(!io.wants_recv());
        io.backpressure = 1;
        assert!(!io.wants_recv(), "one of two writers drained: still paused");
        io.flags.set(Flags::PAUSED_BY_HANDLER, true);
        io.phase = Phase::Lingering { reason: CloseReason::Local, until: now.into() };
        assert!(io.wants_recv(), "a lingering connection reads to see the EOF");
        io.phase = Phase::Draining { reason: CloseReason::Local, peer_fin: false };
        io.flags.set(Flags::PAUSED_BY_HANDLER, false);
        io.backpressure = 0;
        assert!(!io.wants_recv(), "draining discards input: no receiving");
        io.phase = Phase::Connecting { until: Stamp::NONE };
        assert!(!io.wants_recv());
    }
}
#[cfg(test)]
mod packing {
    use super::*;
    use crate::timer::Clock;
    use std::time::{Duration, Instant};

    const ALL: [Flags; 11] = [
        Flags::THROTTLING,
        Flags::HALF_CLOSE,
        Flags::FIN_SENT,
        Flags::SHUTDOWN_ON_CONNECT,
        Flags::OUTBOUND,
        Flags::LISTED,
        Flags::HAS_DATA,
        Flags::OUT_OF_BUFFERS,
        Flags::PARKED,
        Flags::PAUSED_BY_HANDLER,
        Flags::DRIVER_PAUSED,
    ];

    #[test]
    fn each_flag_is_its_own_bit() {
        for (i, &a) in ALL.iter().enumerate() {
            let mut f = Flags::default();
            assert!(f.insert(a), "newly set");
            assert!(!f.insert(a), "already set");
            for (j, &b) in ALL.iter().enumerate() {
                assert_eq!(f.contains(b), i == j, "setting {i} shows as {j}");
            }
            // Clearing one leaves the others as they were.
            let mut all = Flags::default();
            ALL.iter().for_each(|&b| all.set(b, true));
            assert!(all.remove(a));
            assert!(!all.remove(a), "already clear");
            for (j, &b) in ALL.iter().enumerate() {
                assert_eq!(all.contains(b), i != j);
            }
            all.set(a, true);
            assert!(all.contains(a));
        }
        assert_eq!(format!("{:?}", Flags::LISTED), r#"{"LISTED"}"#);
    }

    #[test]
    fn the_token_round_trips_and_none_until_set() {
        let now = Clock::new(Instant::now()).ms(Instant::now());
        let mut io = ConnIo::new(Phase::Open, now);
        assert_eq!(io.token(), None);
        for token in [Token::new(0, 0), Token::new(7, u32::MAX), Token::new(u32::MAX - 1, 3)] {
            io.set_token(token);
            assert_eq!(io.token(), Some(token));
        }
    }

    #[test]
    fn in_flight_counts_up_and_down_without_wrapping() {
        let now = Clock::new(Instant::now()).ms(Instant::now());
        let mut io = ConnIo::new(Phase::Open, now);
        io.handed_over(10);
        io.handed_over(5);
        io.sent(12);
        assert_eq!(io.in_flight(), 3);
        io.sent(100);
        assert_eq!(io.in_flight(), 0, "saturates at zero");
        io.handed_over(u32::MAX as usize);
        io.handed_over(1);
        assert_eq!(io.in_flight(), u32::MAX as usize, "saturates at the top");
    }

    /// Times far past 2^32 ms (49.7 days into a worker's life) keep their
    /// order in a connection's deadlines: nothing wraps.
    #[test]
    fn deadlines_after_fifty_days_are_not_early() {
        let t0 = Instant::now();
        let clock = Clock::new(t0);
        let day = Duration::from_secs(86_400);
        let limits = Limits { idle: Some(Duration::from_secs(60)), read: None, write: None };
        let start = clock.ms(t0 + 60 * day);
        let io = ConnIo::new(Phase::Open, start);
        let idle_at = io.next_deadline(&limits).unwrap();
        assert!(idle_at > start);
        assert_eq!(io.due(&limits, clock.ms(t0 + 60 * day + Duration::from_secs(59))), None);
        let at = clock.ms(t0 + 60 * day + Duration::from_secs(61));
        assert_eq!(io.due(&limits, at), Some(Due::Idle));
        // A timer a year out, set 60 days in, is not due a day later.
        let mut io = ConnIo::new(Phase::Open, start);
        io.timer_at = start.after(365 * day).into();
        assert_eq!(io.due(&limits, clock.ms(t0 + 61 * day)), Some(Due::Idle));
        io.last_active = clock.ms(t0 + 61 * day).into();
        assert_eq!(io.due(&limits, clock.ms(t0 + 61 * day)), None);
    }
}

#[cfg(test)]
mod size {
    /// Every idle connection pays for a `ConnIo`: growing it is a decision,
    /// not an accident (the idle-RSS bench measures the whole cost).
    #[test]
    fn conn_io_stays_small() {
        assert!(
            std::mem::size_of::<super::ConnIo>() <= 96,
            "{}",
            std::mem::size_of::<super::ConnIo>()
        );
        // 4-byte aligned, so the slot table's 4-byte generation adds 4
        // bytes, not 8.
        assert_eq!(std::mem::align_of::<super::ConnIo>(), 4);
    }
}
