//! The life of one connection: one enum of phases, and every transition
//! between them in this file.
//!
//! ```text
//!                 connect ok
//!  Connecting ─────────────────┐
//!      │ timeout/fail          ▼
//!      │                     Open ──── peer FIN ───▶ ReadClosed ─┐
//!      │                       │ shutdown_write          │       │ (not opted into
//!      │                       ▼                         │       │  half-close: after
//!      │                  WriteClosed ── peer FIN ──┐    │       │  its on_data)
//!      │                                            ▼    ▼       ▼
//!      │        close() from Open/ReadClosed/WriteClosed ─▶ Draining
//!      │                                                     │ output written
//!      │                              peer FIN seen? ──no──▶ Lingering (FIN sent,
//!      │                                    │ yes               input discarded)
//!      ▼                                    ▼                    │ EOF or 2 s
//!   Closing ◀───────────────────────────────┴────────────────────┘
//!      │  (errors, timeouts, resets: from any phase, at once)
//!      ▼
//!   Closed: the driver is done; the slot is freed
//! ```
//!
//! The worker asks the phase what is allowed (receive? write? flush? call
//! `on_timer`?) and performs the side effects a transition returns; the
//! transitions themselves touch no socket, so they are unit-tested here.

use crate::handler::CloseReason;
use crate::timer::{Ms, Stamp};

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// An outbound connect is in flight; `until` is its deadline, if any
    /// (a [`Stamp`], not an 8-byte `Ms`: every connection's `Phase` is
    /// 10 bytes rather than 16).
    Connecting { until: Stamp },
    /// Reading and writing.
    Open,
    /// The peer sent FIN and the handler opted into half-close: writing
    /// goes on until the handler closes or shuts down its side.
    ReadClosed,
    /// The handler shut down its writing side (FIN after the queued
    /// output); reading goes on.
    WriteClosed,
    /// Closing once every pending byte is written; input is discarded.
    Draining { reason: CloseReason, peer_fin: bool },
    /// Output written and FIN sent; input is read and discarded until the
    /// peer's EOF or `until`, so the close cannot reset away the response.
    Lingering { reason: CloseReason, until: Stamp },
    /// The driver was told to close; waiting for it to report `Closed`.
    Closing(CloseReason),
}

/// What the worker does after the peer's FIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnFin {
    /// Call `on_data` once more (it sees `is_read_closed`).
    Deliver,
    /// Nothing to do now (already closing, or waiting for output).
    Nothing,
    /// Close now with this reason.
    CloseNow(CloseReason),
}

/// What the worker does once a draining connection's output is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnDrained {
    /// Not draining: nothing to do.
    Nothing,
    /// The peer is done too: close now.
    CloseNow(CloseReason),
    /// Send FIN and linger until the peer's EOF or the deadline.
    Linger,
}

impl Phase {
    /// The peer sent FIN. `half_close`: the handler opted into keeping the
    /// connection open for writing after it.
    pub(crate) fn peer_fin(&mut self) -> OnFin {
        match *self {
            Phase::Open => {
                *self = Phase::ReadClosed;
                OnFin::Deliver
            }
            Phase::WriteClosed => {
                // Both directions are done: close once our FIN is out.
                *self = Phase::Draining { reason: CloseReason::PeerClosed, peer_fin: true };
                OnFin::Deliver
            }
            Phase::Draining { reason, .. } => {
                *self = Phase::Draining { reason, peer_fin: true };
                OnFin::Nothing
            }
            Phase::Lingering { reason, .. } => OnFin::CloseNow(reason),
            Phase::Connecting { .. } | Phase::ReadClosed | Phase::Closing(_) => OnFin::Nothing,
        }
    }

    /// After `on_data` ran: a handler that did not opt into half-close gets
    /// today's behaviour, a close once its output is written.
    pub(crate) fn after_data(&mut self, half_close: bool) {
        if *self == Phase::ReadClosed && !half_close {
            *self = Phase::Draining { reason: CloseReason::PeerClosed, peer_fin: true };
        }
    }

    /// The handler (or shutdown) asked to close once output is written.
    /// The first reason given stays.
    pub(crate) fn close(&mut self, reason: CloseReason) {
        *self = match *self {
            Phase::Open | Phase::WriteClosed => Phase::Draining { reason, peer_fin: false },
            Phase::ReadClosed => Phase::Draining { reason, peer_fin: true },
            other => other,
        };
    }

    /// The handler shut down its writing side. Returns whether the driver
    /// must be told to send FIN after the queued output.
    pub(crate) fn shutdown_write(&mut self) -> bool {
        match *self {
            Phase::Open => {
                *self = Phase::WriteClosed;
                true
            }
            Phase::ReadClosed => {
                // Both directions are done once the output is out.
                *self = Phase::Draining { reason: CloseReason::Local, peer_fin: true };
                false
            }
            _ => false,
        }
    }

    /// Every pending byte has been written.
    pub(crate) fn drained(&mut self, until: Ms) -> OnDrained {
        match *self {
            Phase::Draining { reason, peer_fin: true } => OnDrained::CloseNow(reason),
            Phase::Draining { reason, peer_fin: false } => {
                *self = Phase::Lingering { reason, until: until.into() };
                OnDrained::Linger
            }
            _ => OnDrained::Nothing,
        }
    }

    /// The outbound connect succeeded.
    pub(crate) fn connected(&mut self) {
        if matches!(self, Phase::Connecting { .. }) {
            *self = Phase::Open;
        }
    }

    /// The driver is told to close now. `false` if it already was.
    pub(crate) fn close_now(&mut self, reason: CloseReason) -> bool {
        if let Phase::Closing(_) = self {
            return false;
        }
        *self = Phase::Closing(reason);
        true
    }

    /// The reason a close will be (or was) reported with.
    pub(crate) fn reason(&self) -> Option<CloseReason> {
        match *self {
            Phase::Draining { reason, .. }
            | Phase::Lingering { reason, .. }
            | Phase::Closing(reason) => Some(reason),
            _ => None,
        }
    }

    /// Received bytes go to the handler (rather than being discarded).
    pub(crate) fn takes_input(&self) -> bool {
        matches!(self, Phase::Open | Phase::WriteClosed)
    }

    /// The connection wants the driver to receive (pauses aside). A
    /// lingering connection reads to see the peer's EOF.
    pub(crate) fn reads(&self) -> bool {
        matches!(self, Phase::Open | Phase::WriteClosed | Phase::Lingering { .. })
    }

    /// The handler may still queue output.
    pub(crate) fn writable(&self) -> bool {
        matches!(
            self,
            Phase::Connecting { .. } | Phase::Open | Phase::ReadClosed | Phase::Draining { .. }
        )
    }

    /// Output is handed to the driver (not while connecting or closing).
    pub(crate) fn flushes(&self) -> bool {
        matches!(
            self,
            Phase::Open | Phase::ReadClosed | Phase::WriteClosed | Phase::Draining { .. }
        )
    }

    /// Handler callbacks (`on_data`, `on_timer`, messages) still run.
    pub(crate) fn live(&self) -> bool {
        matches!(self, Phase::Open | Phase::ReadClosed | Phase::WriteClosed)
    }

    /// Closing after output (draining or lingering) or closing now.
    pub(crate) fn is_closing(&self) -> bool {
        matches!(self, Phase::Draining { .. } | Phase::Lingering { .. } | Phase::Closing(_))
    }

    /// The peer's FIN has been seen.
    pub(crate) fn read_closed(&self) -> bool {
        matches!(self, Phase::ReadClosed | Phase::Draining { peer_fin: true, .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timer::Clock;
    use std::time::{Duration, Instant};

    fn later() -> Ms {
        let clock = Clock::new(Instant::now());
        clock.ms(Instant::now()).after(Duration::from_secs(2))
    }

    #[test]
    fn fin_without_half_close_delivers_then_drains() {
        let mut p = Phase::Open;
        assert_eq!(p.peer_fin(), OnFin::Deliver);
        assert_eq!(p, Phase::ReadClosed);
        assert!(p.read_closed() && p.writable() && !p.takes_input() && !p.reads());
        p.after_data(false);
        assert_eq!(p, Phase::Draining { reason: CloseReason::PeerClosed, peer_fin: true });
        assert_eq!(p.drained(later()), OnDrained::CloseNow(CloseReason::PeerClosed));
    }

    #[test]
    fn fin_with_half_close_keeps_writing_until_the_handler_closes() {
        let mut p = Phase::Open;
        p.peer_fin();
        p.after_data(true);
        assert_eq!(p, Phase::ReadClosed);
        assert!(p.writable() && p.flushes() && p.live());
        assert_eq!(p.drained(later()), OnDrained::Nothing, "not closing: stays");
        p.close(CloseReason::Local);
        assert_eq!(p, Phase::Draining { reason: CloseReason::Local, peer_fin: true });
        assert_eq!(p.drained(later()), OnDrained::CloseNow(CloseReason::Local));
    }

    #[test]
    fn shutdown_write_then_peer_fin_closes_once_written() {
        let mut p = Phase::Open;
        assert!(p.shutdown_write(), "the driver sends FIN");
        assert_eq!(p, Phase::WriteClosed);
        assert!(p.reads() && p.takes_input() && !p.writable() && p.flushes());
        assert!(!p.shutdown_write(), "only once");
        assert_eq!(p.peer_fin(), OnFin::Deliver);
        assert_eq!(p, Phase::Draining { reason: CloseReason::PeerClosed, peer_fin: true });
    }

    #[test]
    fn close_after_shutdown_write_drains_without_a_second_fin() {
        let mut p = Phase::WriteClosed;
        p.close(CloseReason::Local);
        assert_eq!(p, Phase::Draining { reason: CloseReason::Local, peer_fin: false });
        assert_eq!(p.drained(later()), OnDrained::Linger, "lingers for the peer's EOF");
    }

    #[test]
    fn shutdown_write_after_peer_fin_is_a_close() {
        let mut p = Phase::ReadClosed;
        assert!(!p.shutdown_write(), "closing sends the FIN");
        assert_eq!(p, Phase::Draining { reason: CloseReason::Local, peer_fin: true });
    }

    #[test]
    fn close_drains_then_lingers_until_eof() {
        let mut p = Phase::Open;
        p.close(CloseReason::Local);
        p.close(CloseReason::Shutdown);
        assert_eq!(p.reason(), Some(CloseReason::Local), "the first reason stays");
        assert!(!p.reads() && !p.takes_input() && p.writable() && p.is_closing());
        let until = later();
        assert_eq!(p.drained(until), OnDrained::Linger);
        assert_eq!(p, Phase::Lingering { reason: CloseReason::Local, until: until.into() });
        assert!(p.reads() && !p.takes_input() && !p.writable() && !p.flushes());
        assert_eq!(p.peer_fin(), OnFin::CloseNow(CloseReason::Local));
    }

    #[test]
    fn peer_fin_while_draining_skips_the_linger() {
        let mut p = Phase::Open;
        p.close(CloseReason::Local);
        assert_eq!(p.peer_fin(), OnFin::Nothing);
        assert_eq!(p.drained(later()), OnDrained::CloseNow(CloseReason::Local));
    }

    #[test]
    fn connecting_neither_reads_nor_flushes_but_queues_writes() {
        let until = later();
        let mut p = Phase::Connecting { until: until.into() };
        assert!(!p.reads() && !p.flushes() && p.writable() && !p.live());
        assert_eq!(p.peer_fin(), OnFin::Nothing);
        p.close(CloseReason::Local);
        assert!(matches!(p, Phase::Connecting { .. }), "close() waits for the connect");
        p.connected();
        assert_eq!(p, Phase::Open);
        p.connected();
        assert_eq!(p, Phase::Open);
    }

    #[test]
    fn close_now_happens_once_from_any_phase() {
        for mut p in [
            Phase::Connecting { until: Stamp::NONE },
            Phase::Open,
            Phase::ReadClosed,
            Phase::WriteClosed,
            Phase::Draining { reason: CloseReason::Local, peer_fin: false },
            Phase::Lingering { reason: CloseReason::Local, until: later().into() },
        ] {
            assert!(p.close_now(CloseReason::IdleTimeout));
            assert_eq!(p, Phase::Closing(CloseReason::IdleTimeout));
            assert!(!p.close_now(CloseReason::Local));
            assert_eq!(p.reason(), Some(CloseReason::IdleTimeout));
            assert!(!p.reads() && !p.writable() && !p.flushes() && !p.live());
            assert_eq!(p.peer_fin(), OnFin::Nothing);
            p.close(CloseReason::Local);
            assert_eq!(p.drained(later()), OnDrained::Nothing);
            assert_eq!(p, Phase::Closing(CloseReason::IdleTimeout));
        }
    }
}
