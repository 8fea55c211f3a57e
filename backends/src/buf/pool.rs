//! The pool: fixed-size buffers carved from one lazily committed mapping.

use std::fmt;
use std::io;
use std::num::{NonZeroU32, NonZeroUsize};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys;

/// The pool's memory: one anonymous mapping, unmapped with its pool.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` come from one `mmap_anonymous` call and the
        // pool that owns this mapping is being dropped, so no slice into it
        // outlives this. A driver that lent buffers to the kernel owns its
        // pool in a `Box` that cannot be swapped out (the pool is unsized),
        // and drops it only once the kernel is done with them, or leaks it.
        unsafe { sys::munmap(self.ptr, self.len) };
    }
}

/// "No buffer" in the metadata links.
pub(crate) const NIL: u32 = u32::MAX;

/// Which pool a handle belongs to: unique among the pools of the process
/// (0 is never one).
pub(crate) type PoolTag = u32;

/// The next pool's tag.
static NEXT_TAG: AtomicU32 = AtomicU32::new(1);

/// The most bytes one pool maps: a chain's length is a `u32`, and a chain
/// never holds more than its pool.
pub const MAX_POOL_BYTES: usize = u32::MAX as usize;

/// The index of a buffer in its pool. Cheap to copy; it does not own the
/// buffer (a [`Buf`] does).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub(crate) u32);

impl BufId {
    /// The index of this buffer in the pool, `0..pool.capacity()`.
    pub fn index(self) -> u32 {
        self.0
    }
}

/// An owned pool buffer: the handle that says "these bytes are mine".
///
/// It carries no pointer. Read and write it through the [`Pool`] that made
/// it; give it back with [`Pool::free`] or by linking it into a [`Chain`].
/// It remembers its pool: any other pool refuses it with a panic, so a
/// stray handle can never name (and free, or read) another pool's buffer.
///
/// [`Chain`]: super::Chain
#[must_use = "a Buf leaks its pool buffer unless freed or linked into a Chain"]
pub struct Buf {
    id: BufId,
    pool: PoolTag,
}

impl Buf {
    /// Which buffer this is.
    pub fn id(&self) -> BufId {
        self.id
    }
}

impl fmt::Debug for Buf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Buf({})", self.id.0)
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            debug_assert!(false, "Buf {} dropped without being freed", self.id.0);
        }
    }
}

/// The pool has no free buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolExhausted;

impl fmt::Display for PoolExhausted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("buffer pool exhausted")
    }
}

impl std::error::Error for PoolExhausted {}

/// Per-buffer bookkeeping: the filled range and the link to the next buffer
/// of the chain the buffer belongs to.
#[derive(Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) next: u32,
}

/// A fixed set of equally sized buffers, owned by one worker thread.
///
/// [`Pool::new`] returns a `Box<Pool>`: the type is unsized (its last field
/// is an empty slice), so a `&mut Pool` cannot be moved out of, swapped or
/// replaced. A driver lends its pool's buffers to the kernel and hands out
/// `&mut Pool` ([`Driver::pool_mut`]); were the pool replaceable, the old one
/// could be dropped, its memory unmapped while the kernel still writes it.
/// The `Pinned` parameter exists only to build that unsized value; always
/// write plain `Pool`.
///
/// Every [`Buf`] and [`Chain`] remembers the pool it came from, and a pool
/// refuses (panics on) another pool's handles: one compare per call.
///
/// [`Driver::pool_mut`]: crate::Driver::pool_mut
/// [`Chain`]: super::Chain
///
/// The memory is one anonymous mapping of `buf_size * count` bytes: the
/// kernel commits a page only when it is first written, so a large pool of
/// which only a few buffers are ever used costs only those buffers in RSS.
/// Freed buffers are reused last-in first-out, which keeps the hot set small
/// and in cache.
///
/// # Views
///
/// With incremental buffer consumption (io_uring's `IOU_PBUF_RING_INC`) the
/// kernel fills one buffer with several receives, possibly for several
/// connections. Each receive then comes back as a *view*: a [`Buf`] whose
/// id is at or above [`Pool::capacity`] and whose bytes are a range of its
/// parent buffer. A view behaves like any other `Buf` (read it, link it into
/// a chain, free it), except that it has no spare room: nothing is ever
/// written into it. The parent goes back to the free list when the kernel has
/// finished with it and its last view is freed. The table of views grows to
/// the most views held at once; it is emptied whenever no view is alive, and
/// trimmed then to one entry per buffer. Views are few: a small one is
/// copied out at once by [`Chain::push_or_copy`](super::Chain::push_or_copy),
/// and a large one holds a large range of its buffer.
pub struct Pool<Pinned: ?Sized = [()]> {
    /// The buffers' memory; buffer `i` starts at `ptr + i * buf_size`.
    mapping: Mapping,
    tag: PoolTag,
    buf_size: u32,
    count: u32,
    free: Vec<u32>,
    meta: Box<[Meta]>,
    /// Who holds each buffer. Checked on every hand-over (a byte compare):
    /// a double free, or freeing a buffer lent to the kernel (which may
    /// write it at any moment), panics instead of corrupting the pool.
    state: Box<[State]>,
    /// Views of each buffer that are alive.
    refs: Box<[u32]>,
    /// Views; view id `count + i` is `views[i]`.
    views: Vec<View>,
    /// Unused entries of `views`.
    free_views: Vec<u32>,
    /// Makes `Pool` unsized (see the type's docs); always empty.
    _unmovable: Pinned,
}

/// A range of a parent buffer, owned as a `Buf` of its own.
#[derive(Clone, Copy)]
struct View {
    /// The range (absolute offsets in the parent) and the chain link.
    meta: Meta,
    /// The buffer whose memory this is; [`NIL`] while the entry is unused.
    parent: u32,
}

/// Who holds a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// In the free list.
    Free,
    /// Owned by a `Buf` handle or a chain.
    Owned,
    /// Lent to the kernel (an io_uring buffer ring).
    Lent,
    /// Back from the kernel, but its memory is held by views: freed with
    /// the last of them.
    Shared,
}

impl Pool {
    /// Maps `count` buffers of `buf_size` bytes each.
    ///
    /// # Errors
    /// `InvalidInput` if `buf_size` exceeds 1 GiB, `count` exceeds 65,536
    /// (the io_uring buffer ring names buffers with 16 bits) or the pool
    /// would exceed [`MAX_POOL_BYTES`]; otherwise the error of `mmap`.
    pub fn new(buf_size: NonZeroUsize, count: NonZeroU32) -> io::Result<Box<Pool>> {
        let len = buf_size.get().saturating_mul(count.get() as usize);
        if buf_size.get() > 1 << 30 || count.get() > 1 << 16 || len > MAX_POOL_BYTES {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer size must be at most 1 GiB, buffer count at most 65536, \
                 and the pool less than 4 GiB",
            ));
        }
        let tag = NEXT_TAG
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| t.checked_add(1))
            .map_err(|_| io::Error::other("every pool tag has been used"))?;
        let base = sys::mmap_anonymous(len)?;
        let count = count.get();
        Ok(Box::new(Pool::<[(); 0]> {
            mapping: Mapping { ptr: base, len },
            tag,
            buf_size: buf_size.get() as u32,
            count,
            // Pop order 0, 1, 2…: the first buffers used are the first pages.
            free: (0..count).rev().collect(),
            meta: vec![Meta { start: 0, end: 0, next: NIL }; count as usize].into_boxed_slice(),
            state: vec![State::Free; count as usize].into_boxed_slice(),
            refs: vec![0; count as usize].into_boxed_slice(),
            views: Vec::new(),
            free_views: Vec::new(),
            _unmovable: [],
        }))
    }

    /// This pool's tag, which its handles carry.
    pub(crate) fn tag(&self) -> PoolTag {
        self.tag
    }

    /// Makes the handle of buffer or view `id`, which the caller owns
    /// through another record (a chain unlinking it, the pool taking back a
    /// lent buffer), once per such buffer.
    pub(crate) fn handle(&self, id: BufId) -> Buf {
        Buf { id, pool: self.tag }
    }

    /// Turns a handle into its bare id, for a record that owns the buffer
    /// from now on (a chain's links, the pool's lent state); [`Pool::handle`]
    /// makes it again.
    ///
    /// # Panics
    /// If `buf` is another pool's.
    pub(crate) fn disown(&self, buf: Buf) -> BufId {
        let id = self.check(&buf);
        std::mem::forget(buf);
        id
    }

    /// `buf`'s id, after checking that `buf` is this pool's.
    ///
    /// # Panics
    /// If it is not: its id would name one of this pool's buffers that
    /// somebody else owns.
    fn check(&self, buf: &Buf) -> BufId {
        assert!(buf.pool == self.tag, "a Buf from another pool");
        buf.id
    }

    /// Size of every buffer, in bytes.
    pub fn buf_size(&self) -> usize {
        self.buf_size as usize
    }

    /// Number of buffers in the pool.
    pub fn capacity(&self) -> usize {
        self.count as usize
    }

    /// Number of buffers free right now.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Number of buffers owned by someone (chains, drivers, the kernel).
    pub fn in_use(&self) -> usize {
        self.capacity() - self.available()
    }

    /// Takes a free buffer, empty (`data` is `&[]`), or `None` if none is left.
    pub fn alloc(&mut self) -> Option<Buf> {
        let id = self.free.pop()?;
        self.meta[id as usize] = Meta { start: 0, end: 0, next: NIL };
        self.state[id as usize] = State::Owned;
        Some(self.handle(BufId(id)))
    }

    /// Gives a buffer back.
    ///
    /// # Panics
    /// If `buf` is another pool's.
    pub fn free(&mut self, buf: Buf) {
        let id = self.disown(buf);
        self.free_id(id);
    }

    pub(crate) fn free_id(&mut self, id: BufId) {
        if id.0 >= self.count {
            return self.free_view(id.0);
        }
        // Hard checks: freeing a buffer the kernel may write (a chain built
        // from another pool, say) would hand kernel-written memory to safe
        // code; a double free would hand one buffer to two owners.
        match self.state[id.0 as usize] {
            State::Owned => {}
            State::Lent => panic!("buffer {} is lent to the kernel", id.0),
            State::Free => panic!("buffer {} freed twice", id.0),
            State::Shared => panic!("buffer {} is held by views", id.0),
        }
        self.state[id.0 as usize] = State::Free;
        self.free.push(id.0);
    }

    /// Lends `buf` to the kernel: it is neither freed nor read until
    /// [`Pool::reclaim_lent`] or [`Pool::free_lent`] takes it back.
    pub(crate) fn lend(&mut self, buf: Buf) -> BufId {
        let id = self.disown(buf);
        debug_assert_eq!(self.state[id.0 as usize], State::Owned);
        self.state[id.0 as usize] = State::Lent;
        id
    }

    /// Takes back a buffer the kernel has finished with, filled with
    /// `start..end`, as an owned handle.
    ///
    /// # Panics
    /// If `id` was not lent (a completion naming a buffer we did not lend).
    pub(crate) fn reclaim_lent(&mut self, id: BufId, start: usize, end: usize) -> Buf {
        self.unlend(id);
        self.set_filled(id, start, end);
        self.handle(id)
    }

    /// Takes back a lent buffer the kernel has finished with, straight into
    /// the free list (or, while views of it are alive, once the last goes).
    pub(crate) fn free_lent(&mut self, id: BufId) {
        self.unlend(id);
        if self.refs[id.0 as usize] == 0 {
            self.free_id(id);
        } else {
            self.state[id.0 as usize] = State::Shared;
        }
    }

    /// Takes bytes `start..end` of lent buffer `id`, which the kernel has
    /// just written, as an owned handle. `released`: the kernel is done with
    /// the buffer; otherwise it goes on filling the bytes after `end`.
    ///
    /// Returns the buffer itself when it is released and nothing else holds
    /// it, else a view of the range.
    ///
    /// # Panics
    /// If `id` was not lent.
    pub(crate) fn take_lent(&mut self, id: BufId, start: usize, end: usize, released: bool) -> Buf {
        let i = id.0 as usize;
        if released && self.refs[i] == 0 {
            return self.reclaim_lent(id, start, end);
        }
        assert_eq!(self.state[i], State::Lent, "buffer {} was not lent", id.0);
        debug_assert!(start <= end && end <= self.buf_size as usize);
        if released {
            self.state[i] = State::Shared;
        }
        self.refs[i] += 1;
        let view =
            View { meta: Meta { start: start as u32, end: end as u32, next: NIL }, parent: id.0 };
        let slot = match self.free_views.pop() {
            Some(slot) => {
                self.views[slot as usize] = view;
                slot
            }
            None => {
                self.views.push(view);
                (self.views.len() - 1) as u32
            }
        };
        self.handle(BufId(self.count + slot))
    }

    fn free_view(&mut self, id: u32) {
        let slot = id - self.count;
        let view = self.views.get_mut(slot as usize).filter(|v| v.parent != NIL);
        let view = view.unwrap_or_else(|| panic!("view {id} freed twice"));
        let parent = std::mem::replace(&mut view.parent, NIL);
        self.free_views.push(slot);
        let p = parent as usize;
        self.refs[p] -= 1;
        if self.refs[p] == 0 && self.state[p] == State::Shared {
            self.state[p] = State::Free;
            self.free.push(parent);
        }
        if self.free_views.len() == self.views.len() {
            // No view is alive: empty the table, and give back what a burst
            // made it grow to beyond one entry per buffer.
            self.views.clear();
            self.free_views.clear();
            self.views.shrink_to(self.count as usize);
            self.free_views.shrink_to(self.count as usize);
        }
    }

    /// Whether `id` names a [view](Pool#views) rather than a whole buffer.
    pub fn is_view(&self, id: BufId) -> bool {
        id.0 >= self.count
    }

    /// Views alive right now.
    pub fn views(&self) -> usize {
        self.views.len() - self.free_views.len()
    }

    fn unlend(&mut self, id: BufId) {
        assert_eq!(self.state[id.0 as usize], State::Lent, "buffer {} was not lent", id.0);
        self.state[id.0 as usize] = State::Owned;
    }

    /// The filled bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is another pool's.
    pub fn data(&self, buf: &Buf) -> &[u8] {
        let id = self.check(buf);
        let m = self.meta(id.0);
        &self.bytes(id)[m.start as usize..m.end as usize]
    }

    /// The unfilled space after the data of `buf`, to write into before
    /// [`Pool::fill`]. Empty for a view.
    ///
    /// # Panics
    /// If `buf` is another pool's.
    pub fn spare_mut(&mut self, buf: &Buf) -> &mut [u8] {
        let id = self.check(buf);
        self.spare(id)
    }

    /// Marks `n` more bytes of `buf` as filled (after writing them through
    /// [`Pool::spare_mut`], or after the kernel wrote them).
    ///
    /// # Panics
    /// If the buffer has less than `n` bytes of spare room, or is another
    /// pool's.
    pub fn fill(&mut self, buf: &Buf, n: usize) {
        let id = self.check(buf);
        assert!(n <= self.spare_len(id.0), "fill past the end of a buffer");
        self.meta_mut(id.0).end += n as u32;
    }

    /// Sets the filled range of a buffer the kernel has just written into.
    pub(crate) fn set_filled(&mut self, id: BufId, start: usize, end: usize) {
        debug_assert!(start <= end && end <= self.buf_size as usize);
        self.meta[id.0 as usize] = Meta { start: start as u32, end: end as u32, next: NIL };
    }

    /// The range and link of buffer or view `id`.
    pub(crate) fn meta(&self, id: u32) -> Meta {
        match self.meta.get(id as usize) {
            Some(m) => *m,
            None => self.views[(id - self.count) as usize].meta,
        }
    }

    pub(crate) fn meta_mut(&mut self, id: u32) -> &mut Meta {
        match self.meta.get_mut(id as usize) {
            Some(m) => m,
            None => &mut self.views[(id - self.count) as usize].meta,
        }
    }

    /// The buffer whose memory `id` is, and how many of its bytes `id` may
    /// use: the whole buffer, or a view's parent up to the view's end.
    /// Always `buffer < count` and `len <= buf_size`.
    ///
    /// # Panics
    /// If `id` is neither a buffer nor a live view (checked in release
    /// builds too: the result becomes a pointer).
    fn span(&self, id: u32) -> (u32, usize) {
        if id < self.count {
            (id, self.buf_size as usize)
        } else {
            let view = self.views.get((id - self.count) as usize).filter(|v| v.parent != NIL);
            let view = view.unwrap_or_else(|| panic!("view {id} used after free"));
            (view.parent, view.meta.end as usize)
        }
    }

    /// Room left after the data of `id` (none for a view).
    pub(crate) fn spare_len(&self, id: u32) -> usize {
        if id < self.count {
            (self.buf_size - self.meta[id as usize].end) as usize
        } else {
            0
        }
    }

    /// The memory of buffer or view `id` from its buffer's first byte up
    /// to where `id` may use it (index it with its [`Meta`] range).
    pub(crate) fn bytes(&self, id: BufId) -> &[u8] {
        let (buffer, len) = self.span(id.0);
        // SAFETY: `span` guarantees `buffer < count` and `len <= buf_size`
        // (it panics on anything else), so the range lies inside the mapping,
        // which lives as long as `self`; a shared borrow of the pool excludes
        // writers through `spare`. The kernel writes none of these bytes: ids
        // reach here from this pool's own handles (`check`) or chains (their
        // tag is checked), which own their buffer; a lent buffer is owned by
        // no handle (`lend` takes it, `State::Lent` refuses to free it) and
        // only its views are, each ending where the kernel's next write into
        // the parent begins.
        unsafe {
            std::slice::from_raw_parts(
                self.mapping.ptr.as_ptr().add(buffer as usize * self.buf_size as usize),
                len,
            )
        }
    }

    /// The spare room of buffer `id` (empty for a view: its bytes are the
    /// kernel's and its neighbours' ranges).
    pub(crate) fn spare(&mut self, id: BufId) -> &mut [u8] {
        let room = self.spare_len(id.0);
        if room == 0 {
            return &mut [];
        }
        let end = self.meta[id.0 as usize].end as usize;
        // SAFETY: `room > 0` only for a buffer (`spare_len` gives a view
        // none), so `id < count`, and `end + room == buf_size`: the range
        // lies inside buffer `id` in the mapping. The exclusive borrow of the
        // pool makes this the only reference into it. `id` comes from one of
        // this pool's own handles or chains (tags checked), which own the
        // buffer, so it is not lent to the kernel.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.mapping.ptr.as_ptr().add(id.0 as usize * self.buf_size as usize + end),
                room,
            )
        }
    }

    /// The address of the memory of buffer or view `id` (its buffer's first
    /// byte), for handing to the kernel.
    pub(crate) fn raw_ptr(&self, id: BufId) -> *mut u8 {
        let (buffer, _) = self.span(id.0);
        // SAFETY: `span` guarantees `buffer < count`, so the offset stays
        // inside the mapping.
        unsafe { self.mapping.ptr.as_ptr().add(buffer as usize * self.buf_size as usize) }
    }
}

impl<P: ?Sized> fmt::Debug for Pool<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("buf_size", &self.buf_size)
            .field("capacity", &self.count)
            .field("available", &self.free.len())
            .finish()
    }
}

impl Pool {
    /// Copies `src_range` of buffer `src` to offset `dst_at` of buffer `dst`.
    pub(crate) fn copy_between(
        &mut self,
        src: BufId,
        src_range: std::ops::Range<usize>,
        dst: BufId,
        dst_at: usize,
    ) {
        let (from_buffer, from_len) = self.span(src.0);
        assert!(dst.0 < self.count, "copy_between writes into a buffer, not a view");
        assert!(from_buffer != dst.0, "copy_between needs two different buffers");
        assert!(src_range.end <= from_len && dst_at + src_range.len() <= self.buf_size as usize);
        let from = self.raw_ptr(src);
        let to = self.raw_ptr(dst);
        // SAFETY: both ranges lie inside their own buffer (asserted above,
        // with `span` bounding `from_len`) and two different buffers never
        // overlap; `&mut self` excludes any other reference into the mapping
        // during the copy. Neither range is one the kernel writes: both ids
        // come from chains or handles of this pool (tags checked), which own
        // their buffers, `dst` a whole one and `src` a filled range.
        unsafe {
            std::ptr::copy_nonoverlapping(
                from.add(src_range.start),
                to.add(dst_at),
                src_range.len(),
            )
        };
    }
}

#[cfg(test)]
impl Pool {
    /// The whole of buffer `id`, writable, as the kernel would write it.
    pub(crate) fn bytes_for_test(&mut self, id: BufId) -> &mut [u8] {
        assert!(id.0 < self.count);
        // SAFETY: as in `spare`: inside the mapping, exclusive borrow.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.mapping.ptr.as_ptr().add(id.0 as usize * self.buf_size as usize),
                self.buf_size as usize,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn pool(size: usize, count: u32) -> Box<Pool> {
        Pool::new(NonZeroUsize::new(size).unwrap(), NonZeroU32::new(count).unwrap()).unwrap()
    }

    #[test]
    fn alloc_until_exhausted_then_reuse_lifo() {
        let mut p = pool(64, 3);
        let a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        let c = p.alloc().unwrap();
        assert!(p.alloc().is_none());
        assert_eq!(p.in_use(), 3);
        let b_id = b.id();
        p.free(b);
        let again = p.alloc().unwrap();
        assert_eq!(again.id(), b_id, "the most recently freed buffer is reused first");
        for buf in [a, again, c] {
            p.free(buf);
        }
        assert_eq!(p.available(), 3);
    }

    #[test]
    fn fill_and_read_back_without_crosstalk() {
        let mut p = pool(8, 2);
        let a = p.alloc().unwrap();
        let b = p.alloc().unwrap();
        p.spare_mut(&a)[..3].copy_from_slice(b"abc");
        p.fill(&a, 3);
        p.spare_mut(&b).copy_from_slice(b"01234567");
        p.fill(&b, 8);
        assert_eq!(p.data(&a), b"abc");
        assert_eq!(p.data(&b), b"01234567");
        assert!(p.spare_mut(&b).is_empty());
        p.free(a);
        p.free(b);
    }

    #[test]
    #[should_panic(expected = "lent to the kernel")]
    fn a_lent_buffer_cannot_be_freed() {
        let mut p = pool(64, 2);
        let buf = p.alloc().unwrap();
        let id = p.lend(buf);
        // What a chain built from another pool would do with this id.
        p.free_id(id);
    }

    #[test]
    #[should_panic(expected = "freed twice")]
    fn a_double_free_panics() {
        let mut p = pool(64, 2);
        let buf = p.alloc().unwrap();
        let id = p.disown(buf);
        p.free_id(id);
        p.free_id(id);
    }

    #[test]
    fn lent_buffers_come_back_filled() {
        let mut p = pool(64, 2);
        let buf = p.alloc().unwrap();
        let id = p.lend(buf);
        assert_eq!(p.available(), 1);
        let buf = p.reclaim_lent(id, 0, 10);
        assert_eq!(p.data(&buf).len(), 10);
        p.free(buf);
        assert_eq!(p.available(), 2);
    }

    /// What an incremental receive ring does: one lent buffer comes back in
    /// pieces, for different owners, while the kernel still fills the rest.
    #[test]
    fn views_share_a_lent_buffer_and_free_it_with_the_last() {
        let mut p = pool(64, 2);
        let buf = p.alloc().unwrap();
        let id = p.lend(buf);
        p.bytes_for_test(id)[..10].copy_from_slice(b"helloworld");
        let a = p.take_lent(id, 0, 5, false);
        let b = p.take_lent(id, 5, 10, false);
        assert!(a.id().index() >= 2 && b.id().index() >= 2, "pieces are views");
        assert_eq!(p.data(&a), b"hello");
        assert_eq!(p.data(&b), b"world");
        assert!(p.spare_mut(&a).is_empty(), "nothing is ever written into a view");
        assert_eq!(p.views(), 2);
        // Freed views do not free a buffer the kernel still fills.
        p.free(a);
        assert_eq!(p.available(), 1);
        // The kernel's last piece: the buffer is released but `b` holds it.
        let c = p.take_lent(id, 10, 64, true);
        assert!(c.id().index() >= 2);
        p.free(c);
        assert_eq!(p.available(), 1, "still held by a view");
        p.free(b);
        assert_eq!(p.available(), 2, "the last view frees its buffer");
        assert_eq!(p.views(), 0);
        // With no view alive, a released piece is the buffer itself.
        let buf = p.alloc().unwrap();
        let id = p.lend(buf);
        let whole = p.take_lent(id, 3, 9, true);
        assert_eq!(whole.id(), id);
        assert_eq!(p.data(&whole).len(), 6);
        p.free(whole);
        assert_eq!(p.available(), 2);
    }

    #[test]
    fn a_view_in_a_chain_is_linked_not_written() {
        let mut p = pool(16, 4);
        let buf = p.alloc().unwrap();
        let id = p.lend(buf);
        p.bytes_for_test(id)[..4].copy_from_slice(b"abcd");
        let view = p.take_lent(id, 0, 4, false);
        let mut chain = crate::buf::Chain::new();
        chain.push(&mut p, view);
        // Small writes after a view go to a fresh buffer, never into the view.
        chain.extend_from_slice(&mut p, b"ef").unwrap();
        let mut scratch = Vec::new();
        assert_eq!(chain.contiguous(&p, 0..6, &mut scratch), b"abcdef");
        chain.consume(&mut p, 6);
        assert_eq!(p.views(), 0);
        p.free_lent(id);
        assert_eq!(p.available(), 4);
    }

    #[test]
    #[should_panic(expected = "freed twice")]
    fn a_view_freed_twice_panics() {
        let mut p = pool(64, 1);
        let buf = p.alloc().unwrap();
        let id = p.lend(buf);
        let view = p.take_lent(id, 0, 1, false);
        let raw = p.disown(view);
        p.free_id(raw);
        p.free_id(raw);
    }

    /// Before pools had tags, buffer 0 of `b` was freed while its owner
    /// still held it: lent to the kernel again, refilled with another
    /// peer's bytes, read by the owner.
    #[test]
    #[should_panic(expected = "a Buf from another pool")]
    fn a_buf_from_another_pool_is_refused() {
        let mut a = pool(64, 2);
        let mut b = pool(64, 2);
        let _owned_in_b = b.alloc().unwrap();
        let foreign = a.alloc().unwrap();
        assert_eq!(foreign.id(), _owned_in_b.id(), "the same index in both pools");
        b.free(foreign);
    }

    #[test]
    #[should_panic(expected = "a Buf from another pool")]
    fn reading_another_pools_buf_is_refused() {
        let mut a = pool(64, 2);
        let b = pool(64, 2);
        let foreign = a.alloc().unwrap();
        let _ = b.data(&foreign);
    }

    #[test]
    #[should_panic(expected = "a Chain used with another pool")]
    fn a_chain_from_another_pool_is_refused() {
        let mut a = pool(64, 2);
        let mut b = pool(64, 2);
        let mut chain = crate::buf::Chain::new();
        chain.extend_from_slice(&mut a, b"abc").unwrap();
        chain.clear(&mut b);
    }

    #[test]
    fn an_empty_chain_serves_any_pool() {
        let mut a = pool(64, 2);
        let mut b = pool(64, 2);
        let mut chain = crate::buf::Chain::new();
        chain.extend_from_slice(&mut a, b"abc").unwrap();
        chain.clear(&mut a);
        chain.extend_from_slice(&mut b, b"de").unwrap();
        assert_eq!(chain.first(&b), b"de");
        chain.clear(&mut b);
    }

    /// What a forged id of a freed view did: `span` gave the parent `NIL`
    /// and `bytes` pointed 4 billion buffers past the mapping. Release
    /// builds check too.
    #[test]
    #[should_panic(expected = "used after free")]
    fn a_freed_view_is_never_read() {
        let mut p = pool(64, 1);
        let buf = p.alloc().unwrap();
        let id = p.lend(buf);
        let view = p.take_lent(id, 0, 1, false);
        let raw = view.id();
        p.free(view);
        let _ = p.bytes(raw);
    }

    #[test]
    fn rejects_oversized_pools() {
        let err = Pool::new(NonZeroUsize::new(64).unwrap(), NonZeroU32::new(70_000).unwrap());
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::InvalidInput);
        // 64 KiB x 65,536 = 4 GiB: one byte too many for a chain's length.
        let err =
            Pool::new(NonZeroUsize::new(64 << 10).unwrap(), NonZeroU32::new(1 << 16).unwrap());
        assert_eq!(err.unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
