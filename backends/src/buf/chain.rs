//! The chain: a byte stream as a linked list of pool buffers.

use std::fmt;

use super::pool::{Buf, BufId, Pool, PoolExhausted, PoolTag, NIL};

/// A byte stream stored in pool buffers linked head to tail.
///
/// Appending never copies what is already there; consuming from the front
/// frees each buffer as soon as its last byte is consumed. The links live in
/// the [`Pool`]'s metadata, so every method takes the pool that owns the
/// buffers — always the same pool for one chain: a chain holding buffers
/// remembers its pool, and any other pool panics instead of following the
/// links through its own buffers. A chain holds at most one pool's worth of
/// bytes, so less than [`MAX_POOL_BYTES`](super::MAX_POOL_BYTES).
///
/// # Examples
/// ```
/// # use std::num::{NonZeroU32, NonZeroUsize};
/// use pollring_backends::buf::{Chain, Pool};
/// let mut pool = Pool::new(NonZeroUsize::new(4).unwrap(), NonZeroU32::new(8).unwrap())?;
/// let mut chain = Chain::new();
/// chain.extend_from_slice(&mut pool, b"hello world")?; // spans 3 buffers
/// assert_eq!(chain.len(), 11);
/// let mut scratch = Vec::new();
/// assert_eq!(chain.contiguous(&pool, 0..7, &mut scratch), b"hello w");
/// chain.consume(&mut pool, 6);
/// assert_eq!(chain.first(&pool), b"wo"); // the rest of the second buffer
/// chain.clear(&mut pool);
/// assert_eq!(pool.in_use(), 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a Chain leaks its pool buffers unless cleared or handed on"]
pub struct Chain {
    head: u32,
    tail: u32,
    /// The pool of the linked buffers; meaningless while `head` is `NIL`.
    pool: PoolTag,
    /// Bytes linked (a pool is smaller than 4 GiB).
    len: u32,
}

impl Chain {
    /// An empty chain; holds no buffer.
    pub const fn new() -> Chain {
        Chain { head: NIL, tail: NIL, pool: 0, len: 0 }
    }

    /// Bytes in the chain.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether the chain holds no byte (and so no buffer).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks that `pool` is this chain's before its links are followed.
    ///
    /// # Panics
    /// If the chain holds another pool's buffers: following their links
    /// through `pool` would read, and free, buffers somebody else owns.
    fn check(&self, pool: &Pool) {
        assert!(self.head == NIL || self.pool == pool.tag(), "a Chain used with another pool");
    }

    /// [`Chain::check`], and makes an empty chain `pool`'s, before linking.
    fn adopt(&mut self, pool: &Pool) {
        self.check(pool);
        self.pool = pool.tag();
    }

    /// Number of buffers linked (walks the list).
    pub fn buffers(&self, pool: &Pool) -> usize {
        self.check(pool);
        let mut n = 0;
        let mut id = self.head;
        while id != NIL {
            n += 1;
            id = pool.meta(id).next;
        }
        n
    }

    /// Links `buf` (with whatever data it holds) at the tail. An empty
    /// buffer is freed instead of linked.
    ///
    /// # Panics
    /// If `buf` or the chain's buffers are another pool's.
    pub fn push(&mut self, pool: &mut Pool, buf: Buf) {
        if pool.data(&buf).is_empty() {
            return pool.free(buf);
        }
        let id = pool.disown(buf).index();
        self.link(pool, id);
    }

    /// Appends the bytes of `buf`, without letting small receives pin a
    /// buffer each. At most `copy_limit` bytes are copied: into the spare
    /// room of the tail buffer when they fit there, or, when `buf` is a
    /// [view](Pool#views) behind a tail without room, into a fresh buffer
    /// that later small receives then fill. Anything else is linked without
    /// a copy, a small view into an empty chain included: many connections
    /// each holding one partial frame share their views' buffers.
    ///
    /// So a peer that drips bytes holds two buffers at most (its first
    /// view's and the fresh one), not one per drip: with incremental
    /// receives each drip lands in whichever buffer the kernel was filling,
    /// and linking every view pinned a buffer per drip.
    pub fn push_or_copy(&mut self, pool: &mut Pool, buf: Buf, copy_limit: usize) {
        self.check(pool);
        let n = pool.data(&buf).len();
        if n > copy_limit || n == 0 {
            return self.push(pool, buf);
        }
        let into_tail = self.tail != NIL && pool.spare_len(self.tail) >= n;
        let dst = if into_tail {
            BufId(self.tail)
        } else if self.tail != NIL && pool.is_view(buf.id()) && pool.available() > 0 {
            // A small view: copy it out, into a fresh tail.
            let fresh = pool.alloc().expect("a free buffer");
            let id = pool.disown(fresh);
            self.link(pool, id.index());
            id
        } else {
            return self.push(pool, buf);
        };
        let src = buf.id();
        let m = pool.meta(src.0);
        let at = pool.meta(dst.0).end as usize;
        pool.copy_between(src, m.start as usize..m.end as usize, dst, at);
        pool.meta_mut(dst.0).end += n as u32;
        self.len += n as u32;
        pool.free(buf);
    }

    /// Links buffer or view `id` (owned by the caller, counted in no chain
    /// yet) at the tail, with whatever data it holds.
    fn link(&mut self, pool: &mut Pool, id: u32) {
        self.adopt(pool);
        pool.meta_mut(id).next = NIL;
        if self.tail == NIL {
            self.head = id;
        } else {
            pool.meta_mut(self.tail).next = id;
        }
        self.tail = id;
        self.len += pool.meta(id).end - pool.meta(id).start;
    }

    /// Moves every buffer of `other` behind this chain's tail. No byte is
    /// copied.
    ///
    /// # Panics
    /// If either chain holds another pool's buffers.
    pub fn append(&mut self, pool: &mut Pool, mut other: Chain) {
        other.check(pool);
        if other.head == NIL {
            return;
        }
        self.adopt(pool);
        if self.tail == NIL {
            self.head = other.head;
        } else {
            pool.meta_mut(self.tail).next = other.head;
        }
        self.tail = other.tail;
        self.len += other.len;
        other.forget();
    }

    /// Copies `data` in: first into the tail buffer's spare room, then into
    /// fresh buffers.
    ///
    /// # Errors
    /// [`PoolExhausted`] if the pool ran out; the bytes that fitted stay
    /// appended.
    pub fn extend_from_slice(
        &mut self,
        pool: &mut Pool,
        mut data: &[u8],
    ) -> Result<(), PoolExhausted> {
        while !data.is_empty() {
            let n = self.write_with(pool, |spare| {
                let n = spare.len().min(data.len());
                spare[..n].copy_from_slice(&data[..n]);
                n
            })?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Lets `fill` write straight into the spare room at the tail (a fresh
    /// buffer if the tail is full) and appends the bytes it says it wrote.
    /// Returns that count. `fill` sees at least one byte of room.
    ///
    /// # Errors
    /// [`PoolExhausted`] if a fresh buffer was needed and none was free.
    ///
    /// # Panics
    /// If `fill` returns more than the room it was given.
    pub fn write_with(
        &mut self,
        pool: &mut Pool,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<usize, PoolExhausted> {
        self.adopt(pool);
        let tail_full = self.tail == NIL || pool.spare_len(self.tail) == 0;
        if tail_full {
            let buf = pool.alloc().ok_or(PoolExhausted)?;
            let id = pool.disown(buf).index();
            self.link(pool, id);
        }
        let tail = BufId(self.tail);
        let spare = pool.spare(tail);
        let room = spare.len();
        let n = fill(spare);
        assert!(n <= room, "write_with: fill wrote past its room");
        pool.meta_mut(tail.0).end += n as u32;
        self.len += n as u32;
        Ok(n)
    }

    /// The first contiguous run of bytes (the head buffer's data); empty if
    /// the chain is.
    pub fn first<'p>(&self, pool: &'p Pool) -> &'p [u8] {
        self.check(pool);
        if self.head == NIL {
            return &[];
        }
        let m = pool.meta(self.head);
        &pool.bytes(BufId(self.head))[m.start as usize..m.end as usize]
    }

    /// Every contiguous run of bytes, head to tail.
    pub fn chunks<'p>(&self, pool: &'p Pool) -> Chunks<'p> {
        self.check(pool);
        Chunks { pool, next: self.head }
    }

    /// A contiguous view of bytes `range` of the chain: borrowed from the
    /// buffer when the range lies in one, else copied into `scratch`.
    ///
    /// # Panics
    /// If `range` reaches past [`Chain::len`].
    pub fn contiguous<'a>(
        &self,
        pool: &'a Pool,
        range: std::ops::Range<usize>,
        scratch: &'a mut Vec<u8>,
    ) -> &'a [u8] {
        assert!(range.start <= range.end && range.end <= self.len(), "range past the chain's end");
        let mut skip = range.start;
        let want = range.end - range.start;
        if want == 0 {
            // Not `scratch`: it may still hold an earlier, unrelated copy.
            return &[];
        }
        let mut chunks = self.chunks(pool);
        for chunk in chunks.by_ref() {
            if skip < chunk.len() {
                if chunk.len() - skip >= want {
                    return &chunk[skip..skip + want];
                }
                scratch.clear();
                scratch.extend_from_slice(&chunk[skip..]);
                break;
            }
            skip -= chunk.len();
        }
        for chunk in chunks {
            let need = want - scratch.len();
            if need == 0 {
                break;
            }
            scratch.extend_from_slice(&chunk[..need.min(chunk.len())]);
        }
        &scratch[..]
    }

    /// Lends bytes `range` of this chain to `f` as one slice (borrowed from
    /// their buffer when they lie in one, else copied into `scratch`)
    /// together with the pool, mutable: `f` reads a request and writes its
    /// reply into another chain, with no copy in between. The bytes are
    /// those of [`Chain::contiguous`].
    ///
    /// # Panics
    /// If `range` reaches past [`Chain::len`].
    pub fn read_with<R>(
        &self,
        pool: &mut Pool,
        range: std::ops::Range<usize>,
        scratch: &mut Vec<u8>,
        f: impl FnOnce(&[u8], &mut Pool) -> R,
    ) -> R {
        let bytes = self.contiguous(pool, range, scratch);
        let (ptr, len) = (bytes.as_ptr(), bytes.len());
        // SAFETY: `ptr..ptr+len` is either in `scratch`, which this call
        // holds exclusively and `f` cannot reach, or the data range
        // (`start..end`) of buffers linked in `self`. Those bytes change or
        // go back to the pool only through the chain that links them
        // (`consume`, `clear`, `split_to`: every way a buffer is freed or
        // refilled starts from its owning handle), and `self` is borrowed for
        // this whole call, so nothing `f` can do with the pool touches them:
        // `spare` and `write_with` write only after a buffer's `end`, into
        // buffers of other chains or fresh ones (a buffer is linked in one
        // chain); `alloc` hands out free buffers only; a view's parent stays
        // allocated while the view lives; and `Pool` is unsized, so it cannot
        // be swapped or dropped through the `&mut`. The kernel writes only
        // into buffers lent to it, which no chain links, and into a lent
        // parent past the end of every view of it a chain links.
        let bytes = unsafe { std::slice::from_raw_parts(ptr, len) };
        f(bytes, pool)
    }

    /// Position of the first `byte` at or after `from`, searching across
    /// buffer boundaries.
    pub fn find(&self, pool: &Pool, from: usize, byte: u8) -> Option<usize> {
        let mut base = 0;
        for chunk in self.chunks(pool) {
            if from < base + chunk.len() {
                let start = from.saturating_sub(base);
                if let Some(i) = memchr::memchr(byte, &chunk[start..]) {
                    return Some(base + start + i);
                }
            }
            base += chunk.len();
        }
        None
    }

    /// Drops the first `n` bytes, freeing each buffer that empties.
    ///
    /// # Panics
    /// If `n` exceeds [`Chain::len`].
    pub fn consume(&mut self, pool: &mut Pool, mut n: usize) {
        assert!(n <= self.len(), "consume past the chain's end");
        self.check(pool);
        self.len -= n as u32;
        while n > 0 {
            let m = pool.meta_mut(self.head);
            let have = (m.end - m.start) as usize;
            if n < have {
                m.start += n as u32;
                return;
            }
            n -= have;
            let next = m.next;
            pool.free_id(BufId(self.head));
            self.head = next;
        }
        if self.len == 0 {
            // Only empty buffers can remain (a write_with that wrote nothing).
            self.clear(pool);
        }
    }

    /// Splits off the first `n` bytes as a chain of their own. Whole buffers
    /// move without a copy; only a buffer cut in two has its front part
    /// copied into a fresh buffer.
    ///
    /// # Errors
    /// [`PoolExhausted`] if that one copy needed a buffer and none was free;
    /// `self` is then unchanged.
    ///
    /// # Panics
    /// If `n` exceeds [`Chain::len`].
    pub fn split_to(&mut self, pool: &mut Pool, n: usize) -> Result<Chain, PoolExhausted> {
        assert!(n <= self.len(), "split past the chain's end");
        if n == self.len() {
            return Ok(std::mem::take(self));
        }
        // Find out first whether a buffer is cut in two, and get the buffer
        // its front part needs, so that failing leaves `self` untouched.
        let mut spare = None;
        let mut left = n;
        for chunk in self.chunks(pool) {
            if left < chunk.len() {
                if left > 0 {
                    spare = Some(pool.alloc().ok_or(PoolExhausted)?);
                }
                break;
            }
            left -= chunk.len();
        }
        let mut out = Chain::new();
        let mut left = n;
        while left > 0 {
            let m = pool.meta(self.head);
            let have = (m.end - m.start) as usize;
            if left < have {
                let part = spare.take().expect("allocated above for the cut buffer");
                pool.copy_between(
                    BufId(self.head),
                    m.start as usize..m.start as usize + left,
                    part.id(),
                    0,
                );
                pool.fill(&part, left);
                pool.meta_mut(self.head).start += left as u32;
                self.len -= left as u32;
                out.push(pool, part);
                break;
            }
            // Move the whole head buffer.
            let id = self.head;
            self.head = m.next;
            self.len -= have as u32;
            left -= have;
            let whole = pool.handle(BufId(id));
            out.push(pool, whole);
        }
        if self.head == NIL {
            self.tail = NIL;
        }
        Ok(out)
    }

    /// Frees every buffer; the chain is empty afterwards.
    pub fn clear(&mut self, pool: &mut Pool) {
        self.check(pool);
        let mut id = self.head;
        while id != NIL {
            let next = pool.meta(id).next;
            pool.free_id(BufId(id));
            id = next;
        }
        self.forget();
    }

    /// Ids and byte ranges of the chain's buffers, for building iovecs.
    pub(crate) fn segments<'p>(
        &self,
        pool: &'p Pool,
    ) -> impl Iterator<Item = (BufId, u32, u32)> + 'p {
        self.check(pool);
        let mut id = self.head;
        std::iter::from_fn(move || {
            if id == NIL {
                return None;
            }
            let m = pool.meta(id);
            let seg = (BufId(id), m.start, m.end);
            id = m.next;
            Some(seg)
        })
    }

    fn forget(&mut self) {
        self.head = NIL;
        self.tail = NIL;
        self.len = 0;
    }
}

impl Default for Chain {
    fn default() -> Chain {
        Chain::new()
    }
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chain").field("len", &self.len).finish()
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            debug_assert!(self.head == NIL, "Chain of {} bytes dropped without clear()", self.len);
        }
    }
}

/// Iterator over a chain's contiguous runs, from [`Chain::chunks`].
#[derive(Debug)]
pub struct Chunks<'p> {
    pool: &'p Pool,
    next: u32,
}

impl<'p> Iterator for Chunks<'p> {
    type Item = &'p [u8];

    fn next(&mut self) -> Option<&'p [u8]> {
        if self.next == NIL {
            return None;
        }
        let id = self.next;
        let m = self.pool.meta(id);
        self.next = m.next;
        Some(&self.pool.bytes(BufId(id))[m.start as usize..m.end as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::{NonZeroU32, NonZeroUsize};

    fn pool(size: usize, count: u32) -> Box<Pool> {
        Pool::new(NonZeroUsize::new(size).unwrap(), NonZeroU32::new(count).unwrap()).unwrap()
    }

    fn collect(c: &Chain, p: &Pool) -> Vec<u8> {
        c.chunks(p).flatten().copied().collect()
    }

    #[test]
    fn frame_split_across_buffers_reads_contiguously() {
        let mut p = pool(4, 8);
        let mut c = Chain::new();
        c.extend_from_slice(&mut p, b"GET /a\r\n").unwrap();
        assert_eq!(c.buffers(&p), 2);
        let mut scratch = Vec::new();
        // Borrowed when inside one buffer, copied when it spans two.
        let inside = c.contiguous(&p, 0..3, &mut scratch);
        assert_eq!(inside, b"GET");
        assert!(scratch.is_empty(), "no copy for a range inside one buffer");
        assert_eq!(c.contiguous(&p, 2..7, &mut scratch), b"T /a\r");
        assert_eq!(scratch, b"T /a\r");
        // An empty range is empty, whatever an earlier copy left behind.
        assert_eq!(c.contiguous(&p, 8..8, &mut scratch), b"");
        assert_eq!(Chain::new().contiguous(&p, 0..0, &mut scratch), b"");
        assert_eq!(c.find(&p, 0, b'\n'), Some(7));
        assert_eq!(c.find(&p, 5, b'G'), None);
        c.clear(&mut p);
    }

    #[test]
    fn consume_across_a_boundary_frees_emptied_buffers() {
        let mut p = pool(4, 8);
        let mut c = Chain::new();
        c.extend_from_slice(&mut p, b"0123456789").unwrap();
        assert_eq!(p.in_use(), 3);
        c.consume(&mut p, 5);
        assert_eq!(p.in_use(), 2, "the first buffer went back as soon as it emptied");
        assert_eq!(collect(&c, &p), b"56789");
        c.consume(&mut p, 5);
        assert!(c.is_empty());
        assert_eq!(p.in_use(), 0, "an empty chain holds no buffer");
        // The emptied chain is usable again.
        c.extend_from_slice(&mut p, b"ab").unwrap();
        assert_eq!(collect(&c, &p), b"ab");
        c.clear(&mut p);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn small_writes_coalesce_into_the_tail_buffer() {
        let mut p = pool(16, 4);
        let mut c = Chain::new();
        for _ in 0..4 {
            c.extend_from_slice(&mut p, b"abcd").unwrap();
        }
        assert_eq!(c.buffers(&p), 1);
        c.extend_from_slice(&mut p, b"x").unwrap();
        assert_eq!(c.buffers(&p), 2);
        c.clear(&mut p);
    }

    #[test]
    fn append_and_split_move_buffers_without_copying() {
        let mut p = pool(4, 8);
        let mut a = Chain::new();
        let mut b = Chain::new();
        a.extend_from_slice(&mut p, b"abcdef").unwrap();
        b.extend_from_slice(&mut p, b"ghij").unwrap();
        let before = p.in_use();
        a.append(&mut p, b);
        assert_eq!(p.in_use(), before);
        assert_eq!(collect(&a, &p), b"abcdefghij");
        let head = a.split_to(&mut p, 5).unwrap();
        assert_eq!(collect(&head, &p), b"abcde");
        assert_eq!(collect(&a, &p), b"fghij");
        // One extra buffer for the copied part of the buffer cut in two.
        assert_eq!(p.in_use(), before + 1);
        let mut head = head;
        head.clear(&mut p);
        a.clear(&mut p);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn exhaustion_is_reported_and_keeps_what_fitted() {
        let mut p = pool(4, 2);
        let mut c = Chain::new();
        assert_eq!(c.extend_from_slice(&mut p, b"0123456789"), Err(PoolExhausted));
        assert_eq!(collect(&c, &p), b"01234567");
        c.clear(&mut p);
    }

    #[test]
    fn failed_split_leaves_the_chain_untouched() {
        let mut p = pool(4, 3);
        let mut c = Chain::new();
        c.extend_from_slice(&mut p, b"0123456789").unwrap(); // all 3 buffers
        assert_eq!(c.split_to(&mut p, 5).unwrap_err(), PoolExhausted);
        assert_eq!(collect(&c, &p), b"0123456789");
        assert_eq!(p.in_use(), 3);
        let whole = c.split_to(&mut p, 8).unwrap(); // on a boundary: no copy needed
        assert_eq!(collect(&whole, &p), b"01234567");
        let mut whole = whole;
        whole.clear(&mut p);
        c.clear(&mut p);
    }

    /// One peer drips a byte at a time while others stream: with
    /// incremental receives each drip is a view of whichever buffer the
    /// kernel was filling. Linked, the views pinned a buffer per drip (24-27
    /// of them for 100 drips); copied out, the drips share one buffer.
    #[test]
    fn a_request_is_read_while_its_reply_fills_the_pool() {
        let mut p = pool(8, 16);
        let mut input = Chain::new();
        input.extend_from_slice(&mut p, b"GET k\r\nSET a b\r\n").unwrap();
        let mut output = Chain::new();
        let mut scratch = Vec::new();
        // Inside the first buffer: borrowed, not copied.
        let got = input.read_with(&mut p, 0..5, &mut scratch, |req, pool| {
            // Fill every free buffer: none of them is the request's.
            while output.extend_from_slice(pool, b"reply!").is_ok() {}
            req.to_vec()
        });
        assert_eq!(got, b"GET k");
        assert!(scratch.is_empty());
        assert_eq!(p.available(), 0);
        output.clear(&mut p);
        // Across buffers: copied once, and equally stable.
        let got = input.read_with(&mut p, 7..16, &mut scratch, |req, pool| {
            output.extend_from_slice(pool, &[b'x'; 40]).unwrap();
            req.to_vec()
        });
        assert_eq!(got, b"SET a b\r\n");
        assert_eq!(collect(&output, &p), [b'x'; 40]);
        assert_eq!(collect(&input, &p), b"GET k\r\nSET a b\r\n", "the input is untouched");
        input.clear(&mut p);
        output.clear(&mut p);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn dripped_views_share_one_buffer() {
        let mut p = pool(64, 64);
        let mut c = Chain::new();
        for i in 0..40u8 {
            let buf = p.alloc().unwrap();
            let parent = p.lend(buf);
            p.bytes_for_test(parent)[0] = b'a' + i % 26;
            let drip = p.take_lent(parent, 0, 1, false);
            c.push_or_copy(&mut p, drip, 16);
            // The other peers' bytes filled the rest; the kernel is done.
            p.free_lent(parent);
        }
        assert_eq!(c.len(), 40);
        // The first drip, linked as a view, and one buffer for the rest.
        assert_eq!(c.buffers(&p), 2, "the drips were copied into one buffer");
        assert_eq!(p.in_use(), 2, "one parent buffer is pinned, by the first drip");
        assert_eq!(p.views(), 1);
        let expected: Vec<u8> = (0..40u8).map(|i| b'a' + i % 26).collect();
        assert_eq!(collect(&c, &p), expected);
        // A large view is still linked, not copied.
        let buf = p.alloc().unwrap();
        let parent = p.lend(buf);
        let big = p.take_lent(parent, 0, 40, false);
        c.push_or_copy(&mut p, big, 16);
        assert_eq!((c.buffers(&p), p.views()), (3, 2));
        c.clear(&mut p);
        p.free_lent(parent);
        assert_eq!(p.in_use(), 0);
    }

    #[test]
    fn small_receives_are_copied_into_the_tail() {
        let mut p = pool(16, 4);
        let mut c = Chain::new();
        c.extend_from_slice(&mut p, b"head").unwrap();
        let rx = p.alloc().unwrap();
        p.spare_mut(&rx)[..3].copy_from_slice(b"abc");
        p.fill(&rx, 3);
        c.push_or_copy(&mut p, rx, 8);
        assert_eq!(p.in_use(), 1, "the received buffer went back to the pool");
        assert_eq!(collect(&c, &p), b"headabc");
        c.clear(&mut p);
    }
}
