//! Send bundles: rings of provided buffers that one `SEND` with
//! `IORING_RECVSEND_BUNDLE` sends in ring order, with one completion.
//!
//! A buffer group belongs to a ring, not to a request, so a connection needs
//! a ring of its own while its send is in flight. Rings are lent per send: a
//! connection takes one from the free list when it submits, pushes its
//! output's segments into it, and gives it back at the final completion.
//! A ring is reused only when the completion reports every pushed byte sent:
//! the kernel's head is then at our tail, so the ring is empty. After a short
//! send, an error or a cancel the head is not known without asking the
//! kernel, and the ring is unregistered instead (one system call, off the
//! common path).
//!
//! "Every byte sent, so the head is at our tail" is the kernel's behaviour,
//! not something we can see: the head is not in shared memory. So, in
//! release builds too, the driver asks the kernel for the head
//! (`IORING_REGISTER_PBUF_STATUS`, one system call) on each of the first
//! [`VERIFIED_REUSES`] reuses; once that many agreed, it trusts the rule on
//! this kernel. A disagreement retires the ring and turns reuse off for good
//! (every bundle then gets a fresh ring: slower, never wrong); so does a
//! kernel that cannot report the head. Debug builds check every reuse.
//!
//! Rings are created on demand, up to [`UringConfig::send_bundle_rings`];
//! a send that finds none free goes out as a `SENDMSG` instead.
//!
//! [`UringConfig::send_bundle_rings`]: super::UringConfig::send_bundle_rings

use io_uring::Submitter;

use super::ringmem::RingMem;

/// Entries of one send ring: one page, and the most segments one bundle sends.
pub(super) const SEND_RING_ENTRIES: u16 = 256;

/// Reuses checked against the kernel's head before the rule is trusted.
pub(super) const VERIFIED_REUSES: u32 = 64;

/// Whether a ring whose send reported every byte may be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reuse {
    /// Yes, after asking the kernel where its head is; this many agreed.
    Checking(u32),
    /// Yes: [`VERIFIED_REUSES`] checks agreed.
    Trusted,
    /// No: the kernel's head once disagreed, or could not be read.
    Never,
}

/// Buffer group of send ring `i` (group 0 is the receive ring).
fn bgid(i: usize) -> u16 {
    (i + 1) as u16
}

/// One registered send ring.
struct SendRing {
    mem: RingMem,
    /// Next position we write; equal to the kernel's head whenever the ring
    /// is in the free list.
    tail: u16,
}

/// The driver's send rings.
pub(super) struct SendRings {
    /// Ring `i` is buffer group `i + 1`; `None` until first needed, and after
    /// it was retired.
    rings: Vec<Option<SendRing>>,
    /// Indexes of registered rings that are empty and lent to nobody.
    free: Vec<usize>,
    /// Rings that were retired or never made, ready to be (re)made.
    unmade: Vec<usize>,
    /// Bytes pushed into each ring for the send in flight.
    pushed: Vec<usize>,
    reuse: Reuse,
}

impl SendRings {
    /// Room for at most `max` rings (at most 65,535 groups minus the receive ring).
    pub(super) fn new(max: u16) -> SendRings {
        let max = usize::from(max.min(u16::MAX - 1));
        SendRings {
            rings: (0..max).map(|_| None).collect(),
            free: Vec::new(),
            unmade: (0..max).rev().collect(),
            pushed: vec![0; max],
            reuse: Reuse::Checking(0),
        }
    }

    /// Lends an empty registered ring, making one if allowed; `None` when all
    /// are in use (or one cannot be made: the caller sends without).
    pub(super) fn take(&mut self, submitter: &Submitter<'_>) -> Option<usize> {
        if let Some(i) = self.free.pop() {
            return Some(i);
        }
        let i = self.unmade.pop()?;
        match RingMem::new(u32::from(SEND_RING_ENTRIES)).and_then(|mut mem| {
            mem.register(submitter, bgid(i), 0)?;
            Ok(mem)
        }) {
            Ok(mem) => {
                self.rings[i] = Some(SendRing { mem, tail: 0 });
                Some(i)
            }
            Err(e) => {
                tracing::debug!("making send ring {i} failed: {e}; sending without a bundle");
                self.unmade.push(i);
                None
            }
        }
    }

    /// The buffer group of ring `i`.
    pub(super) fn bgid(&self, i: usize) -> u16 {
        bgid(i)
    }

    /// Writes one segment at the tail of lent ring `i`; visible to the kernel
    /// after [`SendRings::publish`].
    ///
    /// # Safety
    /// Ring `i` must be lent to the caller with no send in flight on it, and
    /// hold fewer than [`SEND_RING_ENTRIES`] entries pushed since it was lent.
    /// The kernel reads `len` bytes at `addr` when the send runs: they must
    /// stay valid and unmodified until its final completion.
    pub(super) unsafe fn push(&mut self, i: usize, addr: *const u8, len: u32) {
        let ring = self.rings[i].as_mut().expect("a lent send ring is made");
        let pos = ring.tail;
        // SAFETY: a lent ring is empty when lent (head == tail): it is
        // either fresh or went back to the free list after a send that
        // reported every pushed byte, with the kernel's head checked against
        // our tail (`give_back`; see the module docs for when the check is
        // trusted). The caller pushes at most `entries` entries before the
        // send, so the slot is outside the kernel's window.
        unsafe { ring.mem.write(pos, addr, len, pos % SEND_RING_ENTRIES) };
        ring.tail = pos.wrapping_add(1);
        self.pushed[i] += len as usize;
    }

    /// Publishes what was pushed into ring `i`.
    pub(super) fn publish(&self, i: usize) {
        let ring = self.rings[i].as_ref().expect("a lent send ring is made");
        ring.mem.publish(ring.tail);
    }

    /// The send on ring `i` is over, having sent `sent` bytes in all (or
    /// failed: `None`). Reused if it sent everything pushed; else retired,
    /// and `true` is returned.
    pub(super) fn give_back(
        &mut self,
        i: usize,
        sent: Option<usize>,
        submitter: &Submitter<'_>,
        ring_fd: std::os::fd::RawFd,
    ) -> bool {
        let pushed = std::mem::take(&mut self.pushed[i]);
        let Some(ring) = self.rings[i].as_mut() else { return false };
        if sent == Some(pushed) && self.reuse != Reuse::Never {
            let check = cfg!(debug_assertions) || self.reuse != Reuse::Trusted;
            let empty = !check || ring.mem.head(ring_fd).is_ok_and(|head| head == ring.tail);
            self.reuse = match self.reuse {
                _ if !empty => {
                    tracing::warn!(
                        "send ring {i}: the kernel's head is not at our tail after a full send \
                         (or cannot be read); send rings are no longer reused"
                    );
                    Reuse::Never
                }
                Reuse::Checking(n) if n + 1 >= VERIFIED_REUSES => Reuse::Trusted,
                Reuse::Checking(n) => Reuse::Checking(n + 1),
                trusted => trusted,
            };
            if empty {
                self.free.push(i);
                return false;
            }
        }
        ring.mem.unregister(submitter);
        self.rings[i] = None;
        self.unmade.push(i);
        true
    }

    /// Whether rings are still reused (no check of the kernel's head failed).
    pub(super) fn reusing(&self) -> bool {
        self.reuse != Reuse::Never
    }

    /// Rings made right now (lent or free).
    pub(super) fn made(&self) -> usize {
        self.rings.iter().filter(|r| r.is_some()).count()
    }

    /// Unregisters every ring (at drop, once no operation is in flight).
    pub(super) fn unregister_all(&mut self, submitter: &Submitter<'_>) {
        for ring in self.rings.iter_mut().flatten() {
            ring.mem.unregister(submitter);
        }
    }

    /// Keeps every ring's memory mapped forever (the kernel may still read it).
    pub(super) fn leak_all(&mut self) {
        for ring in self.rings.iter_mut().flatten() {
            ring.mem.leak();
        }
    }
}

impl std::fmt::Debug for SendRings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendRings")
            .field("made", &self.made())
            .field("free", &self.free.len())
            .finish()
    }
}
