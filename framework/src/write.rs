//! Serialising straight into a connection's output buffers: [`Writer`].

use std::io;

use pollring_backends::buf::{Chain, Pool};

use crate::conn::{ConnIo, Flags};
use crate::cx::ConnId;
use crate::state::list;

/// Writes into a connection's output, straight into pool buffers: each
/// write fills the spare room of the output's last buffer and takes fresh
/// buffers from the pool as it goes, so a response of any size is copied
/// once, from the protocol's serialiser into the buffer the kernel sends
/// from. From [`Cx::writer`](crate::Cx::writer) or
/// [`ConnMut::writer`](crate::ConnMut::writer).
///
/// Bytes written join the output as they are written and leave with the
/// rest of it after the callback returns (in one `sendmsg` or SQE per
/// connection per turn).
///
/// It implements [`std::io::Write`], so `write!` and any serialiser that
/// takes an `io::Write` (serde_json, a template engine) write into the
/// output directly. For the fastest path, [`Writer::put_with`] hands out the
/// spare room itself.
///
/// Like [`Cx::write`](crate::Cx::write): if the pool runs out of buffers the
/// bytes that do not fit are dropped and the connection is closed with
/// [`CloseReason::PoolExhausted`](crate::CloseReason::PoolExhausted) after
/// the callback (as an `io::Write`, the write fails with
/// [`io::ErrorKind::OutOfMemory`]); once writing is over (after
/// [`Cx::shutdown_write`](crate::Cx::shutdown_write), or while the
/// connection closes) writes are discarded.
///
/// # Examples
/// ```no_run
/// use std::io::Write as _;
/// use pollring::{Cx, Handler};
///
/// /// Answers each line with its length, formatted straight into the output.
/// struct LineLen;
///
/// impl Handler for LineLen {
///     type Conn = ();
///     type Message = ();
///     fn on_open(&mut self, _cx: &mut Cx<'_>) {}
///     fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
///         while let Some(end) = cx.input().find(0, b'\n') {
///             cx.consume(end + 1);
///             let mut out = cx.writer();
///             out.put(b"length ");
///             let _ = writeln!(out, "{end}");
///         }
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Writer<'a> {
    pool: &'a mut Pool,
    /// Where the bytes go; `None` once writing is over (they are dropped).
    to: Option<Output<'a>>,
    written: usize,
}

/// A writable connection's output, and the list that gets it sent.
#[derive(Debug)]
pub(crate) struct Output<'a> {
    pub(crate) chain: &'a mut Chain,
    /// The connection's flags: `OUT_OF_BUFFERS` and `LISTED` are set here.
    pub(crate) flags: &'a mut Flags,
    pub(crate) dirty: &'a mut Vec<ConnId>,
    pub(crate) id: ConnId,
}

impl<'a> Output<'a> {
    /// `io`'s output, to be listed in `dirty` for the end-of-turn flush.
    pub(crate) fn new(io: &'a mut ConnIo, dirty: &'a mut Vec<ConnId>, id: ConnId) -> Output<'a> {
        Output { chain: &mut io.output, flags: &mut io.flags, dirty, id }
    }
}

impl<'a> Writer<'a> {
    /// A writer into `to` (`None`: one that discards), listing the
    /// connection for the end-of-turn flush once it has written.
    pub(crate) fn new(pool: &'a mut Pool, to: Option<Output<'a>>) -> Writer<'a> {
        Writer { pool, to, written: 0 }
    }

    /// Appends `data` (copied once, into the output's buffers).
    pub fn put(&mut self, data: &[u8]) {
        let Some(to) = &mut self.to else { return };
        if to.chain.extend_from_slice(self.pool, data).is_err() {
            to.flags.set(Flags::OUT_OF_BUFFERS, true);
        } else {
            self.written += data.len();
        }
    }

    /// Lets `fill` serialise into the spare room of the output's last
    /// buffer (a fresh one if it is full: at least one byte of room, at
    /// most a pool buffer) and keeps the bytes it reports. Returns that
    /// count: 0 if the pool is exhausted or writing is over.
    ///
    /// The fastest way to write a small message: serialise it into the room
    /// if it fits, and [`Writer::put`] it in pieces if not (`room.len()`
    /// says which).
    ///
    /// # Panics
    /// If `fill` reports more bytes than the room it was given.
    pub fn put_with(&mut self, fill: impl FnOnce(&mut [u8]) -> usize) -> usize {
        let Some(to) = &mut self.to else { return 0 };
        match to.chain.write_with(self.pool, fill) {
            Ok(n) => {
                self.written += n;
                n
            }
            Err(_) => {
                to.flags.set(Flags::OUT_OF_BUFFERS, true);
                0
            }
        }
    }

    /// Bytes this writer has added to the output.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Whether writes still reach the connection: `false` once writing is
    /// over or the pool ran out (what follows is dropped).
    pub fn is_open(&self) -> bool {
        self.to.as_ref().is_some_and(|to| !to.flags.contains(Flags::OUT_OF_BUFFERS))
    }
}

impl Writer<'_> {
    /// Whether this writer drops everything (its connection takes no
    /// output).
    pub(crate) fn discards(&self) -> bool {
        self.to.is_none()
    }
}

impl Drop for Writer<'_> {
    fn drop(&mut self) {
        // Listed once written to (or failed: the flush closes it then).
        if let Some(to) = &mut self.to {
            if self.written > 0 || to.flags.contains(Flags::OUT_OF_BUFFERS) {
                list(to.flags, to.dirty, to.id);
            }
        }
    }
}

impl io::Write for Writer<'_> {
    /// Writes all of `buf`, or fails with [`io::ErrorKind::OutOfMemory`] if
    /// the pool ran out of buffers. Once writing is over, the bytes are
    /// dropped and reported written (as [`Cx::write`](crate::Cx::write)
    /// does).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.put(buf);
        match &self.to {
            Some(to) if to.flags.contains(Flags::OUT_OF_BUFFERS) => {
                Err(io::Error::new(io::ErrorKind::OutOfMemory, "buffer pool exhausted"))
            }
            _ => Ok(buf.len()),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(drop)
    }

    /// Nothing to do: the output is sent after the callback returns.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
