//! A hashed timing wheel for per-connection deadlines.
//!
//! A connection keeps at most one live entry, at its earliest deadline
//! (idle, read, write, linger or the handler's timer; see
//! `ConnIo::next_deadline`). Activity that only pushes a deadline later does
//! not touch the wheel; when the entry comes round the worker works out what
//! is really due and re-arms at the next deadline. Arming and activity are
//! O(1) and allocation-free once the slots have grown.
//!
//! Slots are [`TICK`] wide. An occupancy bitmap makes [`Wheel::next_due`] the
//! end of the next non-empty slot, so a worker whose timers are far away
//! sleeps until then rather than waking every tick.

use std::num::NonZeroU64;
use std::time::{Duration, Instant};

use crate::cx::ConnId;

/// A worker's time in whole milliseconds since its epoch (plus one, so
/// `Option<Ms>` needs no extra word): 8 bytes where an `Instant` takes 16.
/// Never above [`Ms::MAX`], so every `Ms` fits a [`Stamp`] exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Ms(NonZeroU64);

impl Ms {
    /// The latest time there is: 2^48 − 1 ms, about 8,900 years after the
    /// worker started. Later deadlines saturate here (they never come).
    pub(crate) const MAX: Ms = Ms(NonZeroU64::new((1 << 48) - 1).unwrap());

    /// `d` after `self`, rounded so that it is never earlier than exact.
    pub(crate) fn after(self, d: Duration) -> Ms {
        let ms = d.as_nanos().div_ceil(1_000_000).min(Ms::MAX.0.get() as u128) as u64;
        // `self` was rounded down by up to a millisecond: add it back.
        Ms(self.0.saturating_add(ms + 1).min(Ms::MAX.0))
    }
}

/// An `Option<Ms>` in 6 bytes, for the times every connection keeps: 48
/// bits of milliseconds last 8,900 years, so a `Stamp` never wraps round
/// (4-byte milliseconds would after 49.7 days) and compares like the `Ms`
/// it holds. All zero is `None` (an `Ms` is never zero). Align 2.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Stamp([u16; 3]);

impl Stamp {
    /// No time.
    pub(crate) const NONE: Stamp = Stamp([0; 3]);

    /// The time held, if any.
    pub(crate) fn get(self) -> Option<Ms> {
        let [lo, mid, hi] = self.0.map(u64::from);
        NonZeroU64::new(lo | mid << 16 | hi << 32).map(Ms)
    }
}

impl From<Option<Ms>> for Stamp {
    fn from(ms: Option<Ms>) -> Stamp {
        // `Ms::MAX` bounds every `Ms`: the top 16 bits are always zero.
        let v = ms.map_or(0, |ms| ms.0.get());
        debug_assert!(v <= Ms::MAX.0.get());
        Stamp([v as u16, (v >> 16) as u16, (v >> 32) as u16])
    }
}

impl From<Ms> for Stamp {
    fn from(ms: Ms) -> Stamp {
        Stamp::from(Some(ms))
    }
}

impl std::fmt::Debug for Stamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

/// Converts between a worker's `Instant`s and its [`Ms`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    epoch: Instant,
}

impl Clock {
    pub(crate) fn new(epoch: Instant) -> Clock {
        Clock { epoch }
    }

    /// `t` rounded down to its millisecond.
    pub(crate) fn ms(&self, t: Instant) -> Ms {
        let since = t.saturating_duration_since(self.epoch).as_millis();
        let since = since.min(u128::from(Ms::MAX.0.get() - 1)) as u64;
        Ms(NonZeroU64::MIN.saturating_add(since))
    }

    /// The start of millisecond `ms`.
    pub(crate) fn instant(&self, ms: Ms) -> Instant {
        self.epoch + Duration::from_millis(ms.0.get() - 1)
    }
}

/// Slots per rotation.
const SLOTS: usize = 256;
/// Entries a drained slot keeps room for (4 KiB; 1 MiB over all slots).
const SLOT_KEEP: usize = 256;
/// Width of one slot: timers fire at their deadline or up to one tick later.
pub(crate) const TICK: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub(crate) struct Wheel {
    slots: Vec<Vec<(Ms, ConnId)>>,
    /// Bit `i` set: slot `i` is not empty.
    occupied: [u64; SLOTS / 64],
    /// Slot width in milliseconds.
    tick: u64,
    /// Start time of the slot at `cursor`.
    cursor_at: Ms,
    cursor: usize,
    len: usize,
}

impl Wheel {
    pub(crate) fn new(now: Ms, tick: Duration) -> Wheel {
        Wheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; SLOTS / 64],
            tick: (tick.as_millis() as u64).max(1),
            cursor_at: now,
            cursor: 0,
            len: 0,
        }
    }

    pub(crate) fn insert(&mut self, deadline: Ms, id: ConnId) {
        let ahead = deadline.0.get().saturating_sub(self.cursor_at.0.get());
        let ticks = (ahead / self.tick).min(SLOTS as u64) as usize;
        // Deadlines past one rotation wait in the last slot's place of their
        // round; they are re-checked (and re-inserted) when it comes round.
        let slot = (self.cursor + ticks.min(SLOTS - 1)) % SLOTS;
        self.slots[slot].push((deadline, id));
        self.occupied[slot / 64] |= 1 << (slot % 64);
        self.len += 1;
    }

    /// When the next non-empty slot is due, if anything is waiting.
    pub(crate) fn next_due(&self) -> Option<Ms> {
        if self.len == 0 {
            return None;
        }
        let offset = self.next_occupied_offset() as u64;
        Some(self.ticks_after_cursor(offset + 1))
    }

    fn ticks_after_cursor(&self, ticks: u64) -> Ms {
        Ms(self.cursor_at.0.saturating_add(self.tick * ticks))
    }

    /// Slots from the cursor to the first non-empty one (`len > 0`).
    fn next_occupied_offset(&self) -> usize {
        let mut i = self.cursor;
        let mut scanned = 0;
        while scanned < SLOTS {
            let bits = self.occupied[i / 64] >> (i % 64);
            if bits != 0 {
                let found = i + bits.trailing_zeros() as usize;
                return (found + SLOTS - self.cursor) % SLOTS;
            }
            let step = 64 - i % 64;
            scanned += step;
            i = (i + step) % SLOTS;
        }
        unreachable!("the wheel holds entries but no slot is marked")
    }

    /// Moves the wheel to `now`, collecting entries whose deadline passed into
    /// `expired` (with the deadline they were inserted at). Entries not yet
    /// due are put back, unless `live` says they are dead (their connection
    /// closed, or re-armed sooner): every entry is looked at least once a
    /// rotation, so a dead one is gone within one rotation rather than
    /// lingering until its deadline (a minute, for an idle timeout) while
    /// connections come and go.
    pub(crate) fn advance(
        &mut self,
        now: Ms,
        expired: &mut Vec<(Ms, ConnId)>,
        live: impl Fn(ConnId, Ms) -> bool,
    ) {
        while self.ticks_after_cursor(1) <= now {
            let current = self.cursor;
            let mut slot = std::mem::take(&mut self.slots[current]);
            self.occupied[current / 64] &= !(1 << (current % 64));
            self.cursor = (current + 1) % SLOTS;
            self.cursor_at = self.ticks_after_cursor(1);
            self.len -= slot.len();
            for (deadline, id) in slot.drain(..) {
                if !live(id, deadline) {
                    continue;
                }
                if deadline <= now {
                    expired.push((deadline, id));
                } else {
                    self.insert(deadline, id);
                }
            }
            // Give the (empty, allocated) vector back to reuse its capacity,
            // unless a burst made it large: 10,000 connections armed in the
            // same tick would otherwise leave 160 KiB in this slot for good.
            // A slot that often holds more reallocates once per rotation.
            if self.slots[current].is_empty() && slot.capacity() <= SLOT_KEEP {
                self.slots[current] = slot;
            }
            if self.len == 0 {
                // Nothing waits: jump straight to now.
                let skipped = (now.0.get() - self.cursor_at.0.get()) / self.tick;
                self.cursor_at = self.ticks_after_cursor(skipped);
                self.cursor = (self.cursor + (skipped % SLOTS as u64) as usize) % SLOTS;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: ConnId, _: Ms) -> bool {
        true
    }

    /// Millisecond `n` of a clock.
    fn ms(n: u64) -> Ms {
        Ms(NonZeroU64::new(n + 1).unwrap())
    }

    #[test]
    fn ms_round_so_that_deadlines_are_never_early() {
        let t0 = Instant::now();
        let clock = Clock::new(t0);
        let now = clock.ms(t0 + Duration::from_micros(10_900)); // 10.9 ms
        assert_eq!(now, ms(10));
        let at = now.after(Duration::from_micros(300_100)); // exact: 311.0 ms
        assert!(clock.instant(at) >= t0 + Duration::from_micros(311_000));
        assert!(clock.instant(at) <= t0 + Duration::from_millis(313));
        assert_eq!(std::mem::size_of::<Option<Ms>>(), 8);
    }

    #[test]
    fn stamps_hold_any_ms_exactly_in_six_bytes() {
        assert_eq!(std::mem::size_of::<Stamp>(), 6);
        assert_eq!(Stamp::NONE.get(), None);
        assert_eq!(Stamp::default(), Stamp::NONE);
        // Past 2^32 ms (49.7 days) and 2^47: no wrap-around, no truncation.
        for n in
            [0, 1, 65_535, 65_536, u32::MAX as u64 - 1, u32::MAX as u64, 1 << 40, (1 << 48) - 2]
        {
            assert_eq!(Stamp::from(ms(n)).get(), Some(ms(n)), "{n}");
        }
        assert_eq!(Stamp::from(Ms::MAX).get(), Some(Ms::MAX));
        assert_eq!(Stamp::from(None).get(), None);
        // Stamps of later times hold later times.
        let (a, b) = (ms(u32::MAX as u64 + 5), ms(7));
        assert!(Stamp::from(a).get() > Stamp::from(b).get());
    }

    #[test]
    fn far_deadlines_saturate_at_max_and_fit_a_stamp() {
        let now = ms(60 * 24 * 3_600_000); // 60 days in
        assert_eq!(now.after(Duration::MAX), Ms::MAX);
        assert_eq!(Ms::MAX.after(Duration::from_millis(1)), Ms::MAX);
        let later = now.after(Duration::from_secs(30));
        assert_eq!(Stamp::from(later).get(), Some(later));
        assert!(later > now);
        let clock = Clock::new(Instant::now());
        assert!(clock.ms(Instant::now() + Duration::from_secs(1)) <= Ms::MAX);
    }

    #[test]
    fn fires_at_or_after_the_deadline_not_before() {
        let tick = Duration::from_millis(10);
        let mut w = Wheel::new(ms(0), tick);
        let a = ConnId::new(1, 1);
        let b = ConnId::new(2, 1);
        let (at_a, at_b) = (ms(25), ms(10_000));
        w.insert(at_a, a);
        w.insert(at_b, b); // beyond one rotation
        let mut out = Vec::new();
        w.advance(ms(20), &mut out, all);
        assert!(out.is_empty());
        w.advance(ms(30), &mut out, all);
        assert_eq!(out, vec![(at_a, a)]);
        out.clear();
        w.advance(ms(9_990), &mut out, all);
        assert!(out.is_empty(), "far deadline must not fire early");
        w.advance(ms(10_020), &mut out, all);
        assert_eq!(out, vec![(at_b, b)]);
        assert!(w.next_due().is_none());
    }

    #[test]
    fn next_due_is_the_next_occupied_slot_not_the_next_tick() {
        let mut w = Wheel::new(ms(0), Duration::from_millis(10));
        assert_eq!(w.next_due(), None);
        // Slot 200 of 256, across bitmap words from the cursor.
        w.insert(ms(2_003), ConnId::new(1, 1));
        assert_eq!(w.next_due(), Some(ms(2_010)));
        // Move the cursor past a word boundary; then an entry behind the
        // cursor's word position (wrapping round) is found too.
        let mut out = Vec::new();
        w.advance(ms(1_000), &mut out, all);
        assert!(out.is_empty());
        w.insert(ms(3_000), ConnId::new(2, 1)); // slot 300 % 256 = 44
        assert_eq!(w.next_due(), Some(ms(2_010)));
        w.advance(ms(2_020), &mut out, all);
        assert_eq!(out.len(), 1);
        assert_eq!(w.next_due(), Some(ms(3_010)));
    }

    #[test]
    fn a_drained_slot_keeps_a_small_allocation_not_a_burst() {
        let mut w = Wheel::new(ms(0), Duration::from_millis(10));
        for i in 0..1_000 {
            w.insert(ms(15), ConnId::new(i, 1)); // all in slot 1
        }
        w.insert(ms(25), ConnId::new(0, 2)); // slot 2
        let mut out = Vec::new();
        w.advance(ms(40), &mut out, all);
        assert_eq!(out.len(), 1_001);
        assert_eq!(w.slots[1].capacity(), 0, "the burst's room is given back");
        assert!(w.slots[2].capacity() > 0, "a small slot keeps its room");
    }

    #[test]
    fn dead_entries_go_within_a_rotation_not_at_their_deadline() {
        let mut w = Wheel::new(ms(0), Duration::from_millis(10));
        let (dead, alive) = (ConnId::new(1, 1), ConnId::new(2, 1));
        // Far deadlines (a minute): they wait a rotation, then are re-filed.
        w.insert(ms(60_000), dead);
        w.insert(ms(60_000), alive);
        let mut out = Vec::new();
        w.advance(ms(10 * (SLOTS as u64 + 1)), &mut out, |t, _| t == alive);
        assert!(out.is_empty());
        assert_eq!(w.len, 1, "the dead entry was dropped at its first look");
    }
}
