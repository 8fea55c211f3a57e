//! [`Source`]: received bytes to parse, from a connection or a slice.

use std::ops::Range;

use crate::cx::Cx;

/// Unconsumed received bytes, held in one or more contiguous runs (pool
/// buffers), read from the front: what a protocol parser reads from.
///
/// Implemented for [`Cx`] (its [`Input`](crate::Input), consumed with
/// [`Cx::consume`]) and for `&[u8]` (consuming advances the slice), so one
/// parser serves the connection and its own unit tests, fuzz targets and
/// benches alike.
///
/// # Examples
/// A line reader that works on both:
/// ```
/// use pollring::Source;
///
/// /// The next complete line, without its `\n`, consumed.
/// fn line<S: Source + ?Sized>(s: &mut S) -> Option<Vec<u8>> {
///     let end = s.find(0, b'\n')?;
///     let line = s.range(0..end)?.to_vec();
///     s.consume(end + 1);
///     Some(line)
/// }
///
/// let mut input: &[u8] = b"one\ntwo\nthr";
/// assert_eq!(line(&mut input).as_deref(), Some(&b"one"[..]));
/// assert_eq!(line(&mut input).as_deref(), Some(&b"two"[..]));
/// assert_eq!(line(&mut input), None);
/// assert_eq!(input, b"thr");
/// ```
pub trait Source {
    /// Unconsumed bytes.
    fn len(&mut self) -> usize;

    /// Whether there are no unconsumed bytes.
    fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// The first contiguous run of bytes (empty if there are none). When a
    /// whole message lies in it, the common case, parse it there.
    fn first(&mut self) -> &[u8];

    /// Position of the first `byte` at or after `from`, across runs.
    fn find(&mut self, from: usize, byte: u8) -> Option<usize>;

    /// Bytes `range` as one slice: borrowed if they lie in one run, else
    /// copied once (into a per-worker scratch buffer for [`Cx`]). `None` if
    /// the range reaches past the input.
    fn range(&mut self, range: Range<usize>) -> Option<&[u8]>;

    /// Drops the first `n` bytes.
    ///
    /// # Panics
    /// If `n` exceeds [`Source::len`].
    fn consume(&mut self, n: usize);
}

impl<M: Send + 'static> Source for Cx<'_, M> {
    fn len(&mut self) -> usize {
        self.input().len()
    }

    fn first(&mut self) -> &[u8] {
        self.input().first()
    }

    fn find(&mut self, from: usize, byte: u8) -> Option<usize> {
        self.input().find(from, byte)
    }

    fn range(&mut self, range: Range<usize>) -> Option<&[u8]> {
        self.input().range(range)
    }

    fn consume(&mut self, n: usize) {
        Cx::consume(self, n);
    }
}

impl Source for &[u8] {
    fn len(&mut self) -> usize {
        <[u8]>::len(self)
    }

    fn first(&mut self) -> &[u8] {
        self
    }

    fn find(&mut self, from: usize, byte: u8) -> Option<usize> {
        let at = self.get(from..)?.iter().position(|&b| b == byte)?;
        Some(from + at)
    }

    fn range(&mut self, range: Range<usize>) -> Option<&[u8]> {
        self.get(range)
    }

    fn consume(&mut self, n: usize) {
        *self = &self[n..];
    }
}
