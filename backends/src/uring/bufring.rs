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
//! position of every bid to find them.
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
            let bid = if i == 0 { first } else { self.mem.bid(start.wrapping_add(i as u16)) };
            let b = bid as usize;
            if !self.in_ring.get(b).copied().unwrap_or(false) {
                tracing::warn!("completion names bid {bid}, which is not in the buffer ring");
                return;
            }
            let from = if self.incremental { self.filled[b] as usize } else { 0 };
            let n = left.min(buf_size - from);
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
