//! The memory of a provided buffer ring, shared with the kernel: a
//! page-aligned array of `io_uring_buf` entries whose tail we publish and
//! whose head only the kernel moves. Bookkeeping of what the entries mean
//! lives with the two users: the receive ring ([`super::bufring`]) and the
//! send rings ([`super::sendring`]).

use std::io;
use std::os::fd::RawFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

use crate::sys;

/// One mapped ring of `entries` entries, registered as one buffer group.
pub(super) struct RingMem {
    base: NonNull<BufRingEntry>,
    map_len: usize,
    entries: u16,
    mask: u16,
    /// The buffer group while registered.
    bgid: Option<u16>,
    /// Set when the kernel may still use the memory at drop: leak it then.
    leak: bool,
}

impl RingMem {
    /// Maps a ring of `entries` (a power of two, at most 32768).
    pub(super) fn new(entries: u32) -> io::Result<RingMem> {
        if !entries.is_power_of_two() || entries > 1 << 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer ring entries must be a power of two of at most 32768",
            ));
        }
        let page = 4096;
        let bytes = entries as usize * std::mem::size_of::<BufRingEntry>();
        let map_len = bytes.div_ceil(page) * page;
        // Zeroed by the kernel: the shared tail starts at 0.
        let base = sys::mmap_anonymous(map_len)?.cast::<BufRingEntry>();
        Ok(RingMem {
            base,
            map_len,
            entries: entries as u16,
            mask: (entries - 1) as u16,
            bgid: None,
            leak: false,
        })
    }

    /// Number of entries.
    pub(super) fn entries(&self) -> u16 {
        self.entries
    }

    /// Registers the ring as buffer group `bgid` with `flags`
    /// (`IOU_PBUF_RING_*`).
    pub(super) fn register(
        &mut self,
        submitter: &Submitter<'_>,
        bgid: u16,
        flags: u16,
    ) -> io::Result<()> {
        debug_assert!(self.bgid.is_none(), "ring registered twice");
        // SAFETY: the mapping is page aligned, holds `entries` entries and
        // lives until `Drop`, which unmaps it only once it is unregistered
        // (and leaks it when the kernel may still use it).
        unsafe {
            submitter.register_buf_ring_with_flags(
                self.base.as_ptr() as u64,
                self.entries,
                bgid,
                flags,
            )?
        };
        self.bgid = Some(bgid);
        Ok(())
    }

    /// Unregisters the ring; the kernel no longer reads its memory.
    pub(super) fn unregister(&mut self, submitter: &Submitter<'_>) {
        if let Some(bgid) = self.bgid.take() {
            if let Err(e) = submitter.unregister_buf_ring(bgid) {
                tracing::warn!("unregistering buffer ring {bgid} failed: {e}");
                self.leak = true;
            }
        }
    }

    /// Keeps the memory mapped forever (the kernel may still touch it).
    pub(super) fn leak(&mut self) {
        self.leak = true;
    }

    /// The slot for position `pos` (taken modulo the ring size).
    fn slot(&self, pos: u16) -> *mut RawEntry {
        // SAFETY: `pos & mask < entries`, so the offset stays inside the
        // mapping of `entries` entries that `base` points at.
        unsafe { self.base.as_ptr().cast::<RawEntry>().add((pos & self.mask) as usize) }
    }

    /// Writes the entry at position `pos`; the kernel sees it once a
    /// [`RingMem::publish`] covers `pos`.
    ///
    /// # Safety
    /// The slot must be outside the kernel's window `[head, tail)`: never
    /// published, or already consumed by the kernel.
    pub(super) unsafe fn write(&self, pos: u16, addr: *const u8, len: u32, bid: u16) {
        let entry = self.slot(pos);
        // SAFETY: `entry` points inside the mapping (see `slot`) and the
        // kernel neither reads nor writes the slot now (the caller's
        // contract). The fields are written through raw pointers, creating no
        // reference: entry 0's `resv` is the shared tail, which the kernel
        // reads concurrently.
        unsafe {
            std::ptr::addr_of_mut!((*entry).addr).write(addr as u64);
            std::ptr::addr_of_mut!((*entry).len).write(len);
            std::ptr::addr_of_mut!((*entry).bid).write(bid);
        }
    }

    /// The bid of the entry at position `pos`.
    pub(super) fn bid(&self, pos: u16) -> u16 {
        let entry = self.slot(pos);
        // SAFETY: `entry` points inside the mapping. The kernel writes at
        // most an entry's `addr` and `len` (bundle truncation, incremental
        // consumption), never its `bid`; a raw read creates no reference to
        // memory the kernel shares.
        unsafe { std::ptr::addr_of!((*entry).bid).read() }
    }

    /// The length of the entry at position `pos` as it stands now: what we
    /// wrote, or less where the kernel shortened the entry (a bundle's
    /// truncated last buffer) or consumed part of it (incremental mode).
    pub(super) fn len(&self, pos: u16) -> u32 {
        let entry = self.slot(pos);
        // SAFETY: `entry` points inside the mapping. The kernel may have
        // written `len` (see above); it does so before posting the
        // completion that makes the caller look, and the read is volatile
        // and through a raw pointer, creating no reference to shared memory.
        unsafe { std::ptr::addr_of!((*entry).len).read_volatile() }
    }

    /// Makes every entry before `tail` visible to the kernel.
    pub(super) fn publish(&self, tail: u16) {
        // SAFETY: the mapping is valid and page aligned; the shared tail is
        // the `resv` field of entry 0 (the kernel ABI), a u16 that the kernel
        // reads atomically. `BufRingEntry::tail` only computes its address.
        let shared = unsafe { &*BufRingEntry::tail(self.base.as_ptr()).cast::<AtomicU16>() };
        // Release: the entries written before are visible before the tail.
        shared.store(tail, Ordering::Release);
    }

    /// The kernel's head (`IORING_REGISTER_PBUF_STATUS`, Linux 6.8): one
    /// system call, for consistency checks only.
    pub(super) fn head(&self, ring_fd: RawFd) -> io::Result<u16> {
        let bgid = self.bgid.ok_or_else(|| io::Error::from_raw_os_error(libc::EINVAL))?;
        sys::pbuf_ring_head(ring_fd, bgid)
    }
}

impl Drop for RingMem {
    fn drop(&mut self) {
        if self.leak || self.bgid.is_some() {
            return;
        }
        // SAFETY: the region came from `mmap_anonymous` in `new`; it is
        // unregistered, so the kernel no longer reads it, and no reference
        // into it outlives `self`.
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
