//! A hashed timing wheel for per-connection deadlines.
//!
//! Each connection sits in the wheel once, at its deadline as last computed.
//! Activity does not touch the wheel (it only updates `last_active`); when
//! the slot comes round, the worker checks whether the connection is really
//! idle and puts it back at its new deadline otherwise. Arming and activity
//! are O(1) and allocation-free once the slots have grown.

use std::time::{Duration, Instant};

use pollring_backends::Token;

/// Slots per rotation.
const SLOTS: usize = 256;

#[derive(Debug)]
pub(crate) struct Wheel {
    slots: Vec<Vec<(Instant, Token)>>,
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
        self.len += 1;
    }

    /// When the next slot is due, if anything is waiting.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        (self.len > 0).then(|| self.cursor_at + self.tick)
    }

    /// Moves the wheel to `now`, collecting entries whose deadline passed into
    /// `expired`. Entries not yet due are put back.
    pub(crate) fn advance(&mut self, now: Instant, expired: &mut Vec<Token>) {
        while self.cursor_at + self.tick <= now {
            let mut slot = std::mem::take(&mut self.slots[self.cursor]);
            self.cursor = (self.cursor + 1) % SLOTS;
            self.cursor_at += self.tick;
            self.len -= slot.len();
            for (deadline, token) in slot.drain(..) {
                if deadline <= now {
                    expired.push(token);
                } else {
                    self.insert(deadline, token);
                }
            }
            // Give the (empty, allocated) vector back to reuse its capacity.
            let old = self.cursor.checked_sub(1).unwrap_or(SLOTS - 1);
            if self.slots[old].is_empty() {
                self.slots[old] = slot;
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

    #[test]
    fn fires_at_or_after_the_deadline_not_before() {
        let t0 = Instant::now();
        let mut w = Wheel::new(t0, Duration::from_millis(10));
        let a = Token::new(1, 1);
        let b = Token::new(2, 1);
        w.insert(t0 + Duration::from_millis(25), a);
        w.insert(t0 + Duration::from_secs(10), b); // beyond one rotation
        let mut out = Vec::new();
        w.advance(t0 + Duration::from_millis(20), &mut out);
        assert!(out.is_empty());
        w.advance(t0 + Duration::from_millis(30), &mut out);
        assert_eq!(out, vec![a]);
        out.clear();
        w.advance(t0 + Duration::from_millis(9_990), &mut out);
        assert!(out.is_empty(), "far deadline must not fire early");
        w.advance(t0 + Duration::from_millis(10_020), &mut out);
        assert_eq!(out, vec![b]);
        assert!(w.next_due().is_none());
    }
}
