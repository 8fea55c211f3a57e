//! The provided buffer ring: pool buffers lent to the kernel for multishot
//! receives.
//!
//! The ring is a page-aligned array of `io_uring_buf` entries shared with the
//! kernel. We write entries at the tail and publish the tail; the kernel takes
//! entries at its head, in ring order, and names each buffer it used in the
//! completion (`IORING_CQE_F_BUFFER`, the bid). A bid is the buffer's index in
//! the [`Pool`](crate::buf::Pool), so a completion turns straight back into a
//! [`Buf`](crate::buf::Buf) handle.
//!
//! # Accounting
//!
//! The kernel's head is not visible to us, but it only moves past buffers it
//! reports in completions. So `tail - reported` is an upper bound of the
//! entries still in the ring, and writing at `tail` is safe while that bound
//! is below the ring size: the slot being overwritten was consumed already.
//!
//! A recv bundle reports only its first bid and the byte count; the other
//! buffers are the entries that followed in ring order. We remember the ring
//! position of every bid to find them, and read each entry's length back
//! from the ring: the kernel may have shortened one (a truncated last
//! buffer), and then the bytes after it start in the next buffer.
//!
//! # Incremental consumption
//!
//! Registered with `IOU_PBUF_RING_INC` (Linux 6.12), the kernel takes only
//! the bytes a receive needs from the head buffer and leaves the buffer at
//! the head for the next receive, of any connection; the completion then
//! carries `IORING_CQE_F_BUF_MORE`. We keep each buffer's fill offset to know
//! where a completion's bytes start. A buffer counts as reported (out of the
//! ring) only with its last completion, the one without `BUF_MORE`.
//!
//! The kernel reports no offset, so this relies on a buffer's completions
//! arriving in the order the kernel took their bytes. The kernel keeps that
//! order: a multishot receive that cannot post to a full CQ ends, and its
//! last completion joins the overflow list, ahead of which nothing is posted
//! (`uring_incremental_cq_overflow_byte_exact`). The start-up probe turns
//! incremental consumption off on kernels that misreport a zero-length
//! receive ([`super::probe::incremental_eof_reported`]).

use std::io;
use std::ops::Range;

use io_uring::types::IOU_PBUF_RING_INC;
use io_uring::Submitter;

use super::ringmem::RingMem;
use crate::buf::BufId;

/// The buffer group id of the ring (one ring per driver).
pub(super) const BGID: u16 = 0;

/// The ring memory and our side of its bookkeeping.
pub(super) struct BufRing {
    mem: RingMem,
    /// Next position we write; published to the kernel by [`BufRing::publish`].
    tail: u16,
    /// Buffers the kernel has reported back in completions.
    reported: u16,
    /// Ring position of each bid while it is in the ring.
    pos_of: Box<[u16]>,
    /// Whether each bid is in the ring now (never put one in twice).
    in_ring: Box<[bool]>,
    /// Bytes of each bid the kernel has filled so far (incremental only).
    filled: Box<[u32]>,
    /// Registered with `IOU_PBUF_RING_INC`.
    incremental: bool,
}

impl BufRing {
    /// Maps a ring of `entries` (a power of two, at most 32768) for bids
    /// below `bids`.
    pub(super) fn new(entries: u32, bids: usize) -> io::Result<BufRing> {
        Ok(BufRing {
            mem: RingMem::new(entries)?,
            tail: 0,
            reported: 0,
            pos_of: vec![0; bids].into_boxed_slice(),
            in_ring: vec![false; bids].into_boxed_slice(),
            filled: vec![0; bids].into_boxed_slice(),
            incremental: false,
        })
    }

    /// Registers the ring with `submitter` as buffer group [`BGID`], for
    /// incremental consumption if `incremental`.
    pub(super) fn register(
        &mut self,
        submitter: &Submitter<'_>,
        incremental: bool,
    ) -> io::Result<()> {
        let flags = if incremental { IOU_PBUF_RING_INC as u16 } else { 0 };
        self.mem.register(submitter, BGID, flags)?;
        self.incremental = incremental;
        Ok(())
    }

    /// Whether the kernel consumes the buffers incrementally.
    pub(super) fn incremental(&self) -> bool {
        self.incremental
    }

    /// Unregisters the ring; the kernel no longer reads its memory.
    pub(super) fn unregister(&mut self, submitter: &Submitter<'_>) {
        self.mem.unregister(submitter);
    }

    /// Keeps the memory mapped forever (the kernel may still touch it).
    pub(super) fn leak(&mut self) {
        self.mem.leak();
    }

    /// Upper bound of the entries the kernel has not taken yet.
    pub(super) fn len(&self) -> usize {
        self.tail.wrapping_sub(self.reported) as usize
    }

    /// Slots we may write without overwriting an entry the kernel may still take.
    pub(super) fn room(&self) -> usize {
        self.mem.entries() as usize - self.len()
    }

    /// Writes buffer `id` (at `addr`, `len` bytes) at the tail. The kernel
    /// sees it after [`BufRing::publish`].
    pub(super) fn push(&mut self, id: BufId, addr: *mut u8, len: u32) {
        let bid = id.index() as usize;
        assert!(self.room() > 0, "buffer ring overfilled");
        assert!(!self.in_ring[bid], "bid {bid} put in the buffer ring twice");
        let pos = self.tail;
        // SAFETY: the slot is outside the kernel's window [head, tail):
        // `room() > 0` means fewer than `entries` entries are unreported, and
        // the kernel's head never passes an entry it has not reported.
        unsafe { self.mem.write(pos, addr, len, bid as u16) };
        self.pos_of[bid] = pos;
        self.in_ring[bid] = true;
        self.tail = pos.wrapping_add(1);
    }

    /// Makes every pushed entry visible to the kernel.
    pub(super) fn publish(&self) {
        self.mem.publish(self.tail);
    }

    /// Walks the buffer memory a receive completion reported: `res` bytes
    /// starting in buffer `first` (one buffer, or with `bundle` the entries
    /// that follow it in ring order). Calls `each(bid, start..end, released)`
    /// per buffer touched: the range the kernel filled, and whether the
    /// kernel is done with the buffer (it left the ring). `buf_more` is the
    /// completion's `IORING_CQE_F_BUF_MORE`: the last buffer stays in the ring.
    pub(super) fn take(
        &mut self,
        first: u16,
        res: usize,
        bundle: bool,
        buf_more: bool,
        buf_size: usize,
        mut each: impl FnMut(BufId, Range<usize>, bool),
    ) {
        let start = self.pos_of.get(first as usize).copied().unwrap_or(0);
        let mut left = res;
        for i in 0.. {
            // The slot is not refilled before it is counted reported below.
            let pos = start.wrapping_add(i as u16);
            let bid = if i == 0 { first } else { self.mem.bid(pos) };
            let b = bid as usize;
            if !self.in_ring.get(b).copied().unwrap_or(false) {
                tracing::warn!("completion names bid {bid}, which is not in the buffer ring");
                return;
            }
            // Where this completion's bytes start in the buffer, and how
            // many it can hold: incrementally, the rest of the buffer (the
            // kernel moves the entry's address and length along as it
            // fills, so we keep the offset); else the entry's length, which
            // the kernel may have shortened.
            let (from, room) = if self.incremental {
                let from = self.filled[b] as usize;
                (from, buf_size - from)
            } else {
                (0, (self.mem.len(pos) as usize).min(buf_size))
            };
            let n = left.min(room);
            left -= n;
            let last = left == 0 || !bundle;
            // Without incremental consumption a buffer leaves the ring with
            // its first completion; with it, only when `BUF_MORE` is absent.
            let released = !(self.incremental && last && buf_more);
            if released {
                self.in_ring[b] = false;
                self.filled[b] = 0;
                self.reported = self.reported.wrapping_add(1);
            } else {
                self.filled[b] = (from + n) as u32;
            }
            each(BufId(bid as u32), from..from + n, released);
            if last {
                return;
            }
        }
    }

    /// Bids still in the ring (for returning them to the pool at drop).
    pub(super) fn drain(&mut self, mut each: impl FnMut(BufId)) {
        for (bid, slot) in self.in_ring.iter_mut().enumerate() {
            if std::mem::take(slot) {
                self.filled[bid] = 0;
                each(BufId(bid as u32));
            }
        }
        self.reported = self.tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A bundle's bytes follow the entries' lengths as the kernel left
    /// them: after an entry it shortened, they go on in the next buffer
    /// (the walk used to assume `buf_size` for every entry and put them
    /// after the shortened entry's end).
    #[test]
    fn a_bundle_follows_a_shortened_entry() {
        let mut ring = BufRing::new(8, 16).unwrap();
        let mut memory = [0u8; 4 * 64];
        for bid in 0..4u32 {
            let addr = memory[bid as usize * 64..].as_mut_ptr();
            ring.push(BufId(bid), addr, 64);
        }
        // What the kernel does to a bundle's truncated buffer: its entry's
        // length, written back into the ring.
        let second = ring.pos_of[1];
        // SAFETY: the ring is not registered: no kernel reads the slot.
        unsafe { ring.mem.write(second, memory[64..].as_ptr(), 10, 1) };
        let mut pieces = Vec::new();
        ring.take(0, 64 + 10 + 30, true, false, 64, |id, range, released| {
            pieces.push((id.index(), range, released));
        });
        assert_eq!(pieces, [(0, 0..64, true), (1, 0..10, true), (2, 0..30, true)]);
        assert_eq!(ring.len(), 1, "one entry left in the ring");
    }
}
