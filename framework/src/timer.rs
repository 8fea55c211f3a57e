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

use std::time::{Duration, Instant};

use pollring_backends::Token;

/// Slots per rotation.
const SLOTS: usize = 256;
/// Width of one slot: timers fire at their deadline or up to one tick later.
pub(crate) const TICK: Duration = Duration::from_millis(10);

#[derive(Debug)]
pub(crate) struct Wheel {
    slots: Vec<Vec<(Instant, Token)>>,
    /// Bit `i` set: slot `i` is not empty.
    occupied: [u64; SLOTS / 64],
    tick: Duration,
    /// Start time of the slot at `cursor`.
    cursor_at: Instant,
    cursor: usize,
    len: usize,
}

impl Wheel {
    pub(crate) fn new(now: Instant, tick: Duration) -> Wheel {
        Wheel {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            occupied: [0; SLOTS / 64],
            tick: tick.max(Duration::from_millis(1)),
            cursor_at: now,
            cursor: 0,
            len: 0,
        }
    }

    pub(crate) fn insert(&mut self, deadline: Instant, token: Token) {
        let ahead = deadline.saturating_duration_since(self.cursor_at);
        let ticks = (ahead.as_nanos() / self.tick.as_nanos()) as usize;
        // Deadlines past one rotation wait in the last slot's place of their
        // round; they are re-checked (and re-inserted) when it comes round.
        let slot = (self.cursor + ticks.min(SLOTS - 1)) % SLOTS;
        self.slots[slot].push((deadline, token));
        self.occupied[slot / 64] |= 1 << (slot % 64);
        self.len += 1;
    }

    /// When the next non-empty slot is due, if anything is waiting.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        let offset = self.next_occupied_offset();
        Some(self.cursor_at + self.tick * (offset as u32 + 1))
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
        now: Instant,
        expired: &mut Vec<(Instant, Token)>,
        live: impl Fn(Token, Instant) -> bool,
    ) {
        while self.cursor_at + self.tick <= now {
            let current = self.cursor;
            let mut slot = std::mem::take(&mut self.slots[current]);
            self.occupied[current / 64] &= !(1 << (current % 64));
            self.cursor = (current + 1) % SLOTS;
            self.cursor_at += self.tick;
            self.len -= slot.len();
            for (deadline, token) in slot.drain(..) {
                if !live(token, deadline) {
                    continue;
                }
                if deadline <= now {
                    expired.push((deadline, token));
                } else {
                    self.insert(deadline, token);
                }
            }
            // Give the (empty, allocated) vector back to reuse its capacity.
            if self.slots[current].is_empty() {
                self.slots[current] = slot;
            }
            if self.len == 0 {
                // Nothing waits: jump straight to now.
                let skipped = (now.saturating_duration_since(self.cursor_at).as_nanos()
                    / self.tick.as_nanos()) as u32;
                self.cursor_at += self.tick * skipped;
                self.cursor = (self.cursor + skipped as usize) % SLOTS;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(_: Token, _: Instant) -> bool {
        true
    }

    #[test]
    fn fires_at_or_after_the_deadline_not_before() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0, Duration::from_millis(10));
        let a = Token::new(1, 1);
        let b = Token::new(2, 1);
        let (at_a, at_b) = (t0 + Duration::from_millis(25), t0 + Duration::from_secs(10));
        w.insert(at_a, a);
        w.insert(at_b, b); // beyond one rotation
        let mut out = Vec::new();
        w.advance(t0 + Duration::from_millis(20), &mut out, all);
        assert!(out.is_empty());
        w.advance(t0 + Duration::from_millis(30), &mut out, all);
        assert_eq!(out, vec![(at_a, a)]);
        out.clear();
        w.advance(t0 + Duration::from_millis(9_990), &mut out, all);
        assert!(out.is_empty(), "far deadline must not fire early");
        w.advance(t0 + Duration::from_millis(10_020), &mut out, all);
        assert_eq!(out, vec![(at_b, b)]);
        assert!(w.next_due().is_none());
    }

    #[test]
    fn next_due_is_the_next_occupied_slot_not_the_next_tick() {
        let t0 = Instant::now();
        let tick = Duration::from_millis(10);
        let mut w = Wheel::new(t0, tick);
        assert_eq!(w.next_due(), None);
        // Slot 200 of 256, across bitmap words from the cursor.
        w.insert(t0 + tick * 200 + Duration::from_millis(3), Token::new(1, 1));
        assert_eq!(w.next_due(), Some(t0 + tick * 201));
        // Move the cursor past a word boundary; then an entry behind the
        // cursor's word position (wrapping round) is found too.
        let mut out = Vec::new();
        w.advance(t0 + tick * 100, &mut out, all);
        assert!(out.is_empty());
        w.insert(t0 + tick * 300, Token::new(2, 1)); // slot 300 % 256 = 44
        assert_eq!(w.next_due(), Some(t0 + tick * 201));
        w.advance(t0 + tick * 202, &mut out, all);
        assert_eq!(out.len(), 1);
        assert_eq!(w.next_due(), Some(t0 + tick * 301));
    }

    #[test]
    fn dead_entries_go_within_a_rotation_not_at_their_deadline() {
        let t0 = Instant::now();
        let tick = Duration::from_millis(10);
        let mut w = Wheel::new(t0, tick);
        let (dead, alive) = (Token::new(1, 1), Token::new(2, 1));
        // Far deadlines (a minute): they wait a rotation, then are re-filed.
        w.insert(t0 + Duration::from_secs(60), dead);
        w.insert(t0 + Duration::from_secs(60), alive);
        let mut out = Vec::new();
        w.advance(t0 + tick * (SLOTS as u32 + 1), &mut out, |t, _| t == alive);
        assert!(out.is_empty());
        assert_eq!(w.len, 1, "the dead entry was dropped at its first look");
    }
}
