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

use std::io;
use std::ops::Range;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, IOU_PBUF_RING_INC};
use io_uring::Submitter;

use crate::buf::BufId;
use crate::sys;

/// The buffer group id of the ring (one ring per driver).
pub(super) const BGID: u16 = 0;

/// The ring memory and our side of its bookkeeping.
pub(super) struct BufRing {
    base: NonNull<BufRingEntry>,
    map_len: usize,
    entries: u16,
    mask: u16,
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
    registered: bool,
    /// Set when the kernel may still use the memory at drop: leak it then.
    leak: bool,
}

impl BufRing {
    /// Maps a ring of `entries` (a power of two, at most 32768) for bids
    /// below `bids`.
    pub(super) fn new(entries: u32, bids: usize) -> io::Result<BufRing> {
        if !entries.is_power_of_two() || entries > 1 << 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buf_ring_entries must be a power of two of at most 32768",
            ));
        }
        let page = 4096;
        let bytes = entries as usize * std::mem::size_of::<BufRingEntry>();
        let map_len = bytes.div_ceil(page) * page;
        // Zeroed by the kernel: the shared tail starts at 0.
        let base = sys::mmap_anonymous(map_len)?.cast::<BufRingEntry>();
        Ok(BufRing {
            base,
            map_len,
            entries: entries as u16,
            mask: (entries - 1) as u16,
            tail: 0,
            reported: 0,
            pos_of: vec![0; bids].into_boxed_slice(),
            in_ring: vec![false; bids].into_boxed_slice(),
            filled: vec![0; bids].into_boxed_slice(),
            incremental: false,
            registered: false,
            leak: false,
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
        // SAFETY: the mapping is page aligned, holds `entries` entries and
        // lives until `Drop`, which runs only after `unregister` (or after the
        // ring is gone, or never when leaked).
        unsafe {
            submitter.register_buf_ring_with_flags(
                self.base.as_ptr() as u64,
                self.entries,
                BGID,
                flags,
            )?
        };
        self.registered = true;
        self.incremental = incremental;
        Ok(())
    }

    /// Whether the kernel consumes the buffers incrementally.
    pub(super) fn incremental(&self) -> bool {
        self.incremental
    }

    /// Unregisters the ring; the kernel no longer reads its memory.
    pub(super) fn unregister(&mut self, submitter: &Submitter<'_>) {
        if self.registered {
            if let Err(e) = submitter.unregister_buf_ring(BGID) {
                tracing::warn!("unregistering the buffer ring failed: {e}");
                self.leak = true;
            }
            self.registered = false;
        }
    }

    /// Keeps the memory mapped forever (the kernel may still touch it).
    pub(super) fn leak(&mut self) {
        self.leak = true;
    }

    /// Upper bound of the entries the kernel has not taken yet.
    pub(super) fn len(&self) -> usize {
        self.tail.wrapping_sub(self.reported) as usize
    }

    /// The ring slot for position `pos` (taken modulo the ring size).
    fn entry(&self, pos: u16) -> *mut RawEntry {
        // SAFETY: `pos & mask < entries`, so the offset stays inside the
        // mapping of `entries` entries that `base` points at.
        unsafe { self.base.as_ptr().cast::<RawEntry>().add((pos & self.mask) as usize) }
    }

    /// Slots we may write without overwriting an entry the kernel may still take.
    pub(super) fn room(&self) -> usize {
        self.entries as usize - self.len()
    }

    /// Writes buffer `id` (at `addr`, `len` bytes) at the tail. The kernel
    /// sees it after [`BufRing::publish`].
    pub(super) fn push(&mut self, id: BufId, addr: *mut u8, len: u32) {
        let bid = id.index() as usize;
        assert!(self.room() > 0, "buffer ring overfilled");
        assert!(!self.in_ring[bid], "bid {bid} put in the buffer ring twice");
        let pos = self.tail;
        let entry = self.entry(pos);
        // SAFETY: `entry` points inside the mapping (see `entry`); the slot is
        // outside the kernel's window [head, tail) because `room() > 0`, so
        // the kernel neither reads nor writes it now. The fields are written
        // through raw pointers, creating no reference: entry 0's `resv` is the
        // ring's shared tail, which the kernel reads concurrently.
        unsafe {
            std::ptr::addr_of_mut!((*entry).addr).write(addr as u64);
            std::ptr::addr_of_mut!((*entry).len).write(len);
            std::ptr::addr_of_mut!((*entry).bid).write(bid as u16);
        }
        self.pos_of[bid] = pos;
        self.in_ring[bid] = true;
        self.tail = pos.wrapping_add(1);
    }

    /// Makes every pushed entry visible to the kernel.
    pub(super) fn publish(&self) {
        // SAFETY: the mapping is valid and page aligned; the shared tail is
        // the `resv` field of entry 0 (the kernel ABI), a u16 that the kernel
        // reads atomically. `BufRingEntry::tail` only computes its address.
        let tail = unsafe { &*BufRingEntry::tail(self.base.as_ptr()).cast::<AtomicU16>() };
        // Release: the entries written above are visible before the tail.
        tail.store(self.tail, Ordering::Release);
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
            let bid = if i == 0 {
                first
            } else {
                let entry = self.entry(start.wrapping_add(i as u16));
                // SAFETY: `entry` points inside the mapping. The kernel has
                // consumed this slot (it is reported in this completion) and
                // writes at most its `addr` and `len` (bundle truncation,
                // incremental consumption), never `bid`; we do not refill the
                // slot before counting it reported below. A raw read creates
                // no reference to memory the kernel shares.
                unsafe { std::ptr::addr_of!((*entry).bid).read() }
            };
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

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak || self.registered {
            return;
        }
        // SAFETY: the region came from `mmap_anonymous` in `new`; it is
        // unregistered (or the ring fd is closed), so the kernel no longer
        // reads it, and no reference into it outlives `self`.
        unsafe { sys::munmap(self.base.cast(), self.map_len) };
    }
}

/// The kernel's `struct io_uring_buf`, field by field, so single fields can
/// be written through raw pointers.
#[repr(C)]
struct RawEntry {
    addr: u64,
    len: u32,
    bid: u16,
    /// Entry 0's `resv` is the ring's tail, shared with the kernel.
    resv: u16,
}

const _: () = assert!(std::mem::size_of::<RawEntry>() == std::mem::size_of::<BufRingEntry>());
const _: () = assert!(std::mem::size_of::<RawEntry>() == 16);
