//! Per-connection and per-listener state, and the `user_data` encoding that
//! ties a completion back to its owner.

use std::os::fd::OwnedFd;

use crate::buf::Chain;
use crate::driver::Share;

/// Most iovecs one `sendmsg` SQE carries; the rest goes in the next one.
pub(super) const MAX_IOV: usize = 64;

/// What an SQE was for; the top byte of its `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// Multishot accept of a listener.
    Accept = 1,
    /// The back-off timeout after an accept error.
    AcceptBackoff = 2,
    /// Multishot receive of a connection.
    Recv = 3,
    /// One send or sendmsg of a connection.
    Send = 4,
    /// `shutdown(SHUT_WR)` of a connection.
    Shutdown = 5,
    /// Multishot poll on the waker's eventfd.
    Wake = 6,
    /// An `ASYNC_CANCEL`; its own completion carries no news.
    Cancel = 7,
    /// The `CONNECT` of an outbound connection.
    Connect = 8,
}

impl Op {
    fn from_u8(v: u8) -> Option<Op> {
        Some(match v {
            1 => Op::Accept,
            2 => Op::AcceptBackoff,
            3 => Op::Recv,
            4 => Op::Send,
            5 => Op::Shutdown,
            6 => Op::Wake,
            7 => Op::Cancel,
            8 => Op::Connect,
            _ => return None,
        })
    }
}

const GEN_BITS: u32 = 24;
const GEN_MASK: u32 = (1 << GEN_BITS) - 1;

/// `user_data` layout: op (8 bits) | generation (low 24 bits) | slot index (32 bits).
pub(super) fn user_data(op: Op, index: usize, generation: u32) -> u64 {
    ((op as u64) << 56) | (((generation & GEN_MASK) as u64) << 32) | (index as u32 as u64)
}

/// The inverse of [`user_data`]: op, slot index, low 24 bits of the generation.
pub(super) fn decode(user_data: u64) -> (Option<Op>, usize, u32) {
    let op = Op::from_u8((user_data >> 56) as u8);
    let generation = ((user_data >> 32) as u32) & GEN_MASK;
    (op, (user_data & 0xffff_ffff) as usize, generation)
}

/// Whether a generation matches the 24 bits carried in `user_data`.
pub(super) fn same_generation(full: u32, carried: u32) -> bool {
    full & GEN_MASK == carried
}

/// Operations submitted whose final completion has not arrived yet, of the
/// driver as a whole or of one connection or listener.
///
/// Counted up only by [`op_started`] and down only by [`op_finished`],
/// always the driver's total and the owner's together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct InFlight(u32);

impl InFlight {
    /// Whether no operation is in flight.
    pub(super) fn is_idle(self) -> bool {
        self.0 == 0
    }

    /// How many operations are in flight.
    pub(super) fn get(self) -> u32 {
        self.0
    }
}

/// Counts an operation as submitted, for the driver (`total`) and for its
/// owner (none for the driver's own waker poll).
pub(super) fn op_started(total: &mut InFlight, owner: Option<&mut InFlight>) {
    total.0 += 1;
    if let Some(owner) = owner {
        owner.0 += 1;
    }
}

/// Counts the final completion of an operation of `owner`.
///
/// Returns `false` for a final completion nobody was waiting for (a kernel
/// surprise: say, a second final completion of one operation): it is logged
/// and the counts stay as they were, where a plain `-= 1` wrapped around,
/// so the owner's `Closed` never came and drop leaked the ring. The caller
/// then ignores the completion.
#[must_use = "an unexpected completion must be ignored"]
pub(super) fn op_finished(total: &mut InFlight, owner: Option<&mut InFlight>) -> bool {
    let owed = total.0 > 0 && owner.as_ref().is_none_or(|o| o.0 > 0);
    if owed {
        total.0 -= 1;
        if let Some(owner) = owner {
            owner.0 -= 1;
        }
    } else {
        tracing::warn!("io_uring final completion for an operation not in flight; ignored");
    }
    owed
}

/// Where a connection's `shutdown(SHUT_WR)` stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ShutdownState {
    /// Not asked for.
    No,
    /// Asked for; submitted once every queued byte is written.
    Pending,
    /// Submitted (or done).
    Submitted,
}

/// Where a connection's sending stands. The kernel reads the `inflight`
/// chain (and a `sendmsg`'s header and iovecs, or a bundle's send ring)
/// while a send is in flight, that is in every state but `Idle` and
/// `Failed`.
pub(super) enum SendState {
    /// No send in flight: the next flush may submit one.
    Idle,
    /// A `SEND`, or a `SENDMSG` with its header and iovecs.
    Plain { iov: Option<Box<SendMsgState>> },
    /// A zero-copy send (or sendmsg). It completes twice: its `result`,
    /// flagged MORE, then a notification once the kernel no longer reads
    /// the buffers; only the notification ends it.
    ZeroCopy { iov: Option<Box<SendMsgState>>, result: Option<i32> },
    /// A send bundle on send ring `ring`: its bytes may come over several
    /// completions, all but the last flagged MORE (`sent` adds them up).
    Bundle { ring: u16, sent: u32 },
    /// A send failed: nothing more is sent.
    Failed,
}

impl SendState {
    /// Whether the kernel may be reading the connection's output.
    pub(super) fn in_flight(&self) -> bool {
        !matches!(self, SendState::Idle | SendState::Failed)
    }

    /// The `sendmsg` storage of the send, for reuse once it is over.
    pub(super) fn take_iov(&mut self) -> Option<Box<SendMsgState>> {
        match self {
            SendState::Plain { iov } | SendState::ZeroCopy { iov, .. } => iov.take(),
            _ => None,
        }
    }
}

/// Storage for one `sendmsg`: the header and its iovecs must keep their
/// address until the completion, so they live in a box parked on the
/// connection while the send is in flight, and in a free list otherwise.
pub(super) struct SendMsgState {
    pub(super) msg: libc::msghdr,
    pub(super) iov: [libc::iovec; MAX_IOV],
}

impl SendMsgState {
    pub(super) fn new() -> Box<SendMsgState> {
        Box::new(SendMsgState {
            // SAFETY: an all-zero msghdr is valid (no name, no control data).
            msg: unsafe { std::mem::zeroed() },
            iov: [libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 }; MAX_IOV],
        })
    }
}

/// One connection.
pub(super) struct Conn {
    /// The socket; `None` once closed (the slot lives one turn longer).
    pub(super) fd: Option<OwnedFd>,
    pub(super) generation: u32,
    /// Operations submitted whose final completion has not arrived yet.
    pub(super) ops: InFlight,
    /// A multishot receive is armed (its final completion is outstanding).
    pub(super) recv_armed: bool,
    /// The caller paused receiving.
    pub(super) paused: bool,
    /// End of stream or a receive error: never receive again.
    pub(super) recv_done: bool,
    /// Already in the driver's re-arm list.
    pub(super) rearm_queued: bool,
    /// Output queued by `send`, not yet handed to the kernel.
    pub(super) out: Chain,
    /// Output the kernel is sending (or that is left after a short send).
    /// Untouched while `send.in_flight()`.
    pub(super) inflight: Chain,
    /// The send in flight, if any.
    pub(super) send: SendState,
    /// Already in the driver's flush list.
    pub(super) flush_queued: bool,
    pub(super) shutdown: ShutdownState,
    /// `close` was called; `Closed` follows once `ops` is zero.
    pub(super) closing: bool,
    /// `Closed` has been emitted; the slot is released next turn.
    pub(super) reported_closed: bool,
    /// An outbound connect not yet completed: the address its SQE points
    /// at lives here (boxed: it keeps its address) until the completion.
    pub(super) connecting: Option<Box<socket2::SockAddr>>,
}

impl Conn {
    /// The raw descriptor for an SQE (only called for live connections).
    pub(super) fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        self.fd.as_ref().map_or(-1, |fd| fd.as_raw_fd())
    }

    pub(super) fn new(fd: OwnedFd, generation: u32) -> Conn {
        Conn {
            fd: Some(fd),
            generation,
            ops: InFlight::default(),
            recv_armed: false,
            paused: false,
            recv_done: false,
            rearm_queued: false,
            out: Chain::new(),
            inflight: Chain::new(),
            send: SendState::Idle,
            flush_queued: false,
            shutdown: ShutdownState::No,
            closing: false,
            reported_closed: false,
            connecting: None,
        }
    }

    /// Whether a multishot receive should be armed now.
    pub(super) fn wants_recv(&self) -> bool {
        !self.recv_armed
            && !self.paused
            && !self.recv_done
            && !self.closing
            && self.connecting.is_none()
    }

    /// Whether the connection is closing and its last operation finished:
    /// its `Closed` can be reported.
    pub(super) fn closed_in_kernel(&self) -> bool {
        self.closing && self.ops.is_idle()
    }

    /// Whether the next flush has something to do.
    pub(super) fn has_output_work(&self) -> bool {
        !self.out.is_empty() || !self.inflight.is_empty() || self.shutdown == ShutdownState::Pending
    }
}

/// One listening socket.
pub(super) struct Listener {
    pub(super) socket: OwnedFd,
    /// Other workers accept on this socket too: accept one connection per
    /// submission (see `Uring::arm_accepts`).
    pub(super) shared: bool,
    /// Operations (accept, back-off timeout) whose final completion is outstanding.
    pub(super) ops: InFlight,
    /// The accept is armed.
    pub(super) armed: bool,
    /// A resource error was seen: wait before accepting again.
    pub(super) backoff: bool,
    /// The back-off timeout is in flight.
    pub(super) backoff_armed: bool,
    /// `unlisten` was called; dropped once `ops` is zero.
    pub(super) closing: bool,
}

impl Listener {
    pub(super) fn new(socket: OwnedFd, share: Share) -> Listener {
        Listener {
            socket,
            shared: share == Share::Shared,
            ops: InFlight::default(),
            armed: false,
            backoff: false,
            backoff_armed: false,
            closing: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips() {
        let ud = user_data(Op::Send, 12345, 0x0123_4567);
        let (op, index, generation) = decode(ud);
        assert_eq!(op, Some(Op::Send));
        assert_eq!(index, 12345);
        assert!(same_generation(0x0123_4567, generation));
        assert!(!same_generation(0x0123_4568, generation));
        assert_eq!(decode(0).0, None);
    }
}
