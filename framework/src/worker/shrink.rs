//! Per-turn lists that give back what a burst left behind.
//!
//! The worker's per-turn lists (the driver's events, the connections with
//! new input, the connections to flush, the expired deadlines) are emptied
//! every turn and keep their allocation, so a turn allocates nothing. But a
//! burst (the epoll driver drains a listener's whole backlog in one turn:
//! 10,000 accepts are 400 KiB of events) would then pin its high-water
//! capacity for the life of the worker, 40 bytes for every connection that
//! ever arrived at once. [`Shrink`] watches one list's use over a window of
//! [`WINDOW`] turns; at the end of a window in which the list never held
//! more than a quarter of its capacity it gives back down to twice that use
//! (never below the list's floor). So a list reallocates at most once per
//! window, and only once a burst has passed; steady use keeps its capacity.

/// Turns per window.
pub(super) const WINDOW: u32 = 32;

/// The recent use of one per-turn list (see the [module docs](self)).
#[derive(Debug)]
pub(super) struct Shrink {
    /// Capacity always kept (what the list starts with).
    floor: usize,
    /// The most the list held in this window.
    peak: usize,
    /// Turns of this window so far.
    turns: u32,
}

impl Shrink {
    pub(super) const fn new(floor: usize) -> Shrink {
        Shrink { floor, peak: 0, turns: 0 }
    }

    /// Records that the list held `len` items (call before emptying it).
    pub(super) fn note(&mut self, len: usize) {
        self.peak = self.peak.max(len);
    }

    /// Ends a turn for `list`: at the end of a window, gives back capacity
    /// above four times the window's peak (down to twice it, or the floor).
    pub(super) fn end_turn<T>(&mut self, list: &mut Vec<T>) {
        self.note(list.len());
        self.turns += 1;
        if self.turns < WINDOW {
            return;
        }
        if list.capacity() > self.floor.max(self.peak.saturating_mul(4)) {
            list.shrink_to(self.floor.max(self.peak.saturating_mul(2)));
        }
        self.peak = 0;
        self.turns = 0;
    }
}

/// The worker's per-turn lists that a [`Shrink`] watches.
#[derive(Debug)]
pub(super) struct Watch {
    pub(super) events: Shrink,
    pub(super) data: Shrink,
    pub(super) dirty: Shrink,
    pub(super) expired: Shrink,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `turns` turns in which the list holds `len` items each.
    fn turns(s: &mut Shrink, list: &mut Vec<u64>, n: u32, len: usize) {
        for _ in 0..n {
            list.extend(std::iter::repeat_n(0, len));
            s.note(list.len());
            list.clear();
            s.end_turn(list);
        }
    }

    #[test]
    fn a_burst_is_given_back_once_a_quiet_window_ends() {
        let mut s = Shrink::new(16);
        let mut list = Vec::with_capacity(16);
        turns(&mut s, &mut list, 1, 10_000); // the burst
        assert!(list.capacity() >= 10_000);
        turns(&mut s, &mut list, WINDOW - 1, 3);
        // The burst's window ends: it used the capacity, nothing goes.
        assert!(list.capacity() >= 10_000);
        turns(&mut s, &mut list, WINDOW - 1, 3);
        assert!(list.capacity() >= 10_000, "not before the window ends");
        turns(&mut s, &mut list, 1, 3);
        assert_eq!(list.capacity(), 16, "down to the floor");
    }

    #[test]
    fn steady_use_keeps_its_capacity() {
        let mut s = Shrink::new(0);
        let mut list = Vec::new();
        turns(&mut s, &mut list, 1, 1_000);
        let cap = list.capacity();
        for _ in 0..10 {
            turns(&mut s, &mut list, WINDOW, 300); // over a quarter
            assert_eq!(list.capacity(), cap, "no reallocation");
        }
        turns(&mut s, &mut list, 2 * WINDOW, 100);
        assert!(list.capacity() >= 200 && list.capacity() < cap, "{}", list.capacity());
    }

    #[test]
    fn an_empty_list_with_no_floor_frees_its_allocation() {
        let mut s = Shrink::new(0);
        let mut list = Vec::new();
        turns(&mut s, &mut list, 1, 500);
        turns(&mut s, &mut list, 2 * WINDOW, 0);
        assert_eq!(list.capacity(), 0);
    }
}
