//! What each worker counts ([`WorkerMetrics`]), for
//! [`ServerHandle::metrics`](crate::ServerHandle::metrics).
//!
//! A worker bumps plain integers of its own on the data path and publishes
//! them once per turn into atomics only it writes (relaxed stores, no
//! locked instruction); a reader sums or exports what was last published.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::handler::CloseReason;
use crate::WorkerId;

/// The names metrics give the kinds of [`CloseReason`], in the order
/// [`WorkerMetrics::closed`] counts them.
pub const CLOSE_REASONS: [&str; 9] = [
    "peer_closed",
    "local",
    "idle_timeout",
    "read_timeout",
    "write_timeout",
    "error",
    "pool_exhausted",
    "input_limit",
    "shutdown",
];

/// The position of `reason`'s kind in [`CLOSE_REASONS`].
fn reason_index(reason: &CloseReason) -> usize {
    match reason {
        CloseReason::PeerClosed => 0,
        CloseReason::Local => 1,
        CloseReason::IdleTimeout => 2,
        CloseReason::ReadTimeout => 3,
        CloseReason::WriteTimeout => 4,
        CloseReason::Error(_) => 5,
        CloseReason::PoolExhausted => 6,
        CloseReason::InputLimit => 7,
        CloseReason::Shutdown => 8,
    }
}

/// One worker's counters, as it last published them (once per turn).
/// Counts run from the worker's start; gauges are as of that turn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkerMetrics {
    /// Which worker.
    pub worker: WorkerId,
    /// Connections open (gauge; outbound ones included).
    pub connections: u64,
    /// Connections accepted.
    pub accepted: u64,
    /// Connections closed, by [`CloseReason`] kind, in the order of
    /// [`CLOSE_REASONS`] (see [`WorkerMetrics::closed_by`]).
    pub closed: [u64; 9],
    /// Failed `accept`s (each backs the listener off).
    pub accept_errors: u64,
    /// Bytes received.
    pub bytes_received: u64,
    /// Bytes the kernel reported sent.
    pub bytes_sent: u64,
    /// System calls the driver made.
    pub syscalls: u64,
    /// Driver turns.
    pub turns: u64,
    /// Events the driver reported (receives, sends, accepts, ...): over
    /// `turns`, the events per turn.
    pub events: u64,
    /// Pool buffers in use (gauge): connections' chains, and for io_uring
    /// the buffers lent to the kernel's ring.
    pub buffers_in_use: u64,
    /// Pool buffers free (gauge).
    pub buffers_free: u64,
    /// Connections whose unconsumed input was moved off the pool while it
    /// ran low (gauge).
    pub parked: u64,
    /// Messages taken from this worker's mailbox (from [`Sender`]s and
    /// offload results).
    ///
    /// [`Sender`]: crate::Sender
    pub messages: u64,
    /// Jobs this worker's connections handed to the offload pool.
    pub offloaded: u64,
}

impl WorkerMetrics {
    /// Connections closed for `reason`'s kind (all [`CloseReason::Error`]s
    /// together).
    pub fn closed_by(&self, reason: CloseReason) -> u64 {
        self.closed[reason_index(&reason)]
    }

    /// Connections closed, for every reason.
    pub fn closed_total(&self) -> u64 {
        self.closed.iter().sum()
    }
}

/// What a worker counts on its data path: plain integers, its own.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: u64,
    pub(crate) closed: [u64; 9],
    pub(crate) accept_errors: u64,
    pub(crate) bytes_received: u64,
    pub(crate) bytes_sent: u64,
    pub(crate) events: u64,
    pub(crate) messages: u64,
}

impl Counters {
    pub(crate) fn closed(&mut self, reason: &CloseReason) {
        self.closed[reason_index(reason)] += 1;
    }
}

/// A worker's published counters: written by it alone, once per turn.
#[derive(Debug, Default)]
pub(crate) struct Published {
    values: [AtomicU64; FIELDS],
}

/// Counters in [`Published`]: the [`WorkerMetrics`] fields but `worker`,
/// with `closed` taking nine.
const FIELDS: usize = 22;

impl Published {
    /// Stores `m` (all but `worker`). Only the owning worker calls this.
    pub(crate) fn store(&self, m: &WorkerMetrics) {
        for (slot, value) in self.values.iter().zip(flatten(m)) {
            slot.store(value, Ordering::Relaxed);
        }
    }

    /// What was last stored, as worker `worker`'s.
    pub(crate) fn load(&self, worker: WorkerId) -> WorkerMetrics {
        let v: Vec<u64> = self.values.iter().map(|a| a.load(Ordering::Relaxed)).collect();
        let mut closed = [0; 9];
        closed.copy_from_slice(&v[2..11]);
        WorkerMetrics {
            worker,
            connections: v[0],
            accepted: v[1],
            closed,
            accept_errors: v[11],
            bytes_received: v[12],
            bytes_sent: v[13],
            syscalls: v[14],
            turns: v[15],
            events: v[16],
            buffers_in_use: v[17],
            buffers_free: v[18],
            parked: v[19],
            messages: v[20],
            offloaded: v[21],
        }
    }
}

/// `m`'s counters in [`Published`] order.
fn flatten(m: &WorkerMetrics) -> [u64; FIELDS] {
    let mut v = [0; FIELDS];
    v[0] = m.connections;
    v[1] = m.accepted;
    v[2..11].copy_from_slice(&m.closed);
    v[11] = m.accept_errors;
    v[12] = m.bytes_received;
    v[13] = m.bytes_sent;
    v[14] = m.syscalls;
    v[15] = m.turns;
    v[16] = m.events;
    v[17] = m.buffers_in_use;
    v[18] = m.buffers_free;
    v[19] = m.parked;
    v[20] = m.messages;
    v[21] = m.offloaded;
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_metrics_read_back_field_by_field() {
        let mut m = WorkerMetrics { worker: WorkerId(3), ..WorkerMetrics::default() };
        let fields: [&mut u64; 13] = [
            &mut m.connections,
            &mut m.accepted,
            &mut m.accept_errors,
            &mut m.bytes_received,
            &mut m.bytes_sent,
            &mut m.syscalls,
            &mut m.turns,
            &mut m.events,
            &mut m.buffers_in_use,
            &mut m.buffers_free,
            &mut m.parked,
            &mut m.messages,
            &mut m.offloaded,
        ];
        for (i, f) in fields.into_iter().enumerate() {
            *f = 100 + i as u64;
        }
        for (i, c) in m.closed.iter_mut().enumerate() {
            *c = 1000 + i as u64;
        }
        let p = Published::default();
        p.store(&m);
        assert_eq!(p.load(WorkerId(3)), m);
    }

    #[test]
    fn every_close_reason_has_its_own_count() {
        let reasons = [
            CloseReason::PeerClosed,
            CloseReason::Local,
            CloseReason::IdleTimeout,
            CloseReason::ReadTimeout,
            CloseReason::WriteTimeout,
            CloseReason::Error(std::io::ErrorKind::ConnectionReset),
            CloseReason::PoolExhausted,
            CloseReason::InputLimit,
            CloseReason::Shutdown,
        ];
        let mut c = Counters::default();
        for (i, r) in reasons.iter().enumerate() {
            for _ in 0..=i {
                c.closed(r);
            }
        }
        let m = WorkerMetrics { closed: c.closed, ..WorkerMetrics::default() };
        for (i, r) in reasons.into_iter().enumerate() {
            assert_eq!(m.closed_by(r), i as u64 + 1, "{r:?}");
        }
        assert_eq!(m.closed_total(), (1..=9).sum::<u64>());
    }
}
