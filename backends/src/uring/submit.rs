//! The first step of a turn: turn the driver's work lists into SQEs.
//!
//! Nothing here waits. Every SQE that lends memory to the kernel says in its
//! `SAFETY` comment who keeps that memory alive and unmodified until the
//! completion.

use std::io;
use std::os::fd::AsRawFd;

use io_uring::types::{CancelBuilder, Fd};
use io_uring::{opcode, squeue};

use super::bufring::BGID;
use super::conn::{op_started, user_data, Op, SendMsgState, SendState, ShutdownState, MAX_IOV};
use super::sendring::SEND_RING_ENTRIES;
use super::{Cancel, Uring};

impl Uring {
    /// Refills the buffer ring, submits cancellations, arms accepts and
    /// receives, flushes output: SQEs only, no system call (unless the SQ
    /// fills up).
    pub(super) fn prepare(&mut self) -> io::Result<()> {
        self.refill();
        self.submit_cancels()?;
        self.submit_connects()?;
        self.arm_accepts()?;
        self.arm_recvs()?;
        self.flush_sends()?;
        if !self.wake_armed {
            self.arm_wake()?;
        }
        Ok(())
    }

    /// Tops the buffer ring up from the pool's free buffers, leaving
    /// `recv_reserve` of them in the pool.
    pub(super) fn refill(&mut self) {
        let size = self.pool.buf_size() as u32;
        let mut added = false;
        while self.bufring.room() > 0 && self.pool.available() > self.recv_reserve {
            let Some(buf) = self.pool.alloc() else { break };
            let id = self.pool.lend(buf);
            self.bufring.push(id, self.pool.raw_ptr(id), size);
            added = true;
        }
        if added {
            self.bufring.publish();
        }
    }

    /// Queues one SQE, submitting first if the SQ is full.
    ///
    /// # Safety
    /// Every pointer in `sqe` (buffers, iovecs, headers, timespecs) must stay
    /// valid, and buffers the kernel reads must stay unmodified, until the
    /// operation's final completion is reaped.
    pub(super) unsafe fn push(&mut self, sqe: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: forwarded to our caller (see `# Safety`).
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            self.make_room()?;
        }
    }

    fn submit_cancels(&mut self) -> io::Result<()> {
        let mut list = std::mem::take(&mut self.cancels);
        for cancel in list.drain(..) {
            let sqe = match cancel {
                Cancel::Op(ud) => opcode::AsyncCancel::new(ud).build(),
                Cancel::Conn(index, generation) => match self.conns.get(index) {
                    // Only while the fd is still this connection's (it is
                    // closed once `ops` reaches zero).
                    Some(c) if c.generation == generation && !c.ops.is_idle() => {
                        let fd = Fd(c.raw_fd());
                        opcode::AsyncCancel2::new(CancelBuilder::fd(fd).all()).build()
                    }
                    _ => continue,
                },
            };
            let sqe = sqe.user_data(user_data(Op::Cancel, 0, 0));
            // SAFETY: a cancel carries no pointer into our memory.
            unsafe { self.push(&sqe)? };
        }
        self.cancels = list;
        Ok(())
    }

    /// One `CONNECT` per outbound connection asked for since the last turn.
    fn submit_connects(&mut self) -> io::Result<()> {
        let mut list = std::mem::take(&mut self.connects);
        for index in list.drain(..) {
            let Some(c) = self.conns.get_mut(index) else { continue };
            let Some(addr) = c.connecting.as_deref() else { continue };
            if c.closing {
                // Closed before it was submitted: `close` saw no operation
                // in flight and has already queued the `Closed`.
                c.connecting = None;
                continue;
            }
            let sqe = opcode::Connect::new(Fd(c.raw_fd()), addr.as_ptr().cast(), addr.len())
                .build()
                .user_data(user_data(Op::Connect, index, c.generation));
            op_started(&mut self.ops, Some(&mut c.ops));
            // SAFETY: the kernel reads the address from the box in
            // `c.connecting`, which stays on the connection (its heap
            // contents do not move) until the connect's completion clears it.
            unsafe { self.push(&sqe)? };
        }
        self.connects = list;
        Ok(())
    }

    fn arm_accepts(&mut self) -> io::Result<()> {
        let mut list = std::mem::take(&mut self.accepts);
        for &key in &list {
            let Some(l) = self.listeners.get_mut(key) else { continue };
            if l.closing || l.armed || l.backoff_armed {
                continue;
            }
            let sqe = if l.backoff {
                l.backoff = false;
                l.backoff_armed = true;
                opcode::Timeout::new(&*self.backoff_ts).build().user_data(user_data(
                    Op::AcceptBackoff,
                    key,
                    0,
                ))
            } else {
                l.armed = true;
                let fd = Fd(l.socket.as_raw_fd());
                let flags = libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC;
                // A multishot accept keeps its place in the socket's wait
                // queue, and the kernel wakes the first exclusive waiter:
                // on a socket other workers share, one worker would take
                // every connection. A one-shot accept re-queues behind the
                // others after each connection, so they take turns.
                if l.shared {
                    opcode::Accept::new(fd, std::ptr::null_mut(), std::ptr::null_mut())
                        .flags(flags)
                        .build()
                } else {
                    opcode::AcceptMulti::new(fd).flags(flags).build()
                }
                .user_data(user_data(Op::Accept, key, 0))
            };
            op_started(&mut self.ops, Some(&mut l.ops));
            // SAFETY: the accept passes no address buffer; the timeout reads
            // `backoff_ts`, boxed in the driver, which outlives the ring's
            // operations (`Drop` waits for them).
            unsafe { self.push(&sqe)? };
        }
        list.clear();
        self.accepts = list;
        Ok(())
    }

    /// Arms a multishot receive for connections that want one, oldest first,
    /// at most as many as the buffer ring holds buffers: arming more would
    /// only have them fail with `ENOBUFS` at once (an SQE and a CQE each,
    /// for nothing). The rest stay queued (starved) for a later turn.
    fn arm_recvs(&mut self) -> io::Result<()> {
        let mut list = std::mem::take(&mut self.rearm);
        let mut budget = self.bufring.len();
        let mut kept = 0;
        for i in 0..list.len() {
            let index = list[i];
            debug_assert!(kept <= i);
            let Some(c) = self.conns.get_mut(index) else { continue };
            if !c.wants_recv() {
                c.rearm_queued = false;
                continue;
            }
            if budget == 0 {
                list[kept] = index;
                kept += 1;
                continue;
            }
            budget -= 1;
            c.rearm_queued = false;
            c.recv_armed = true;
            op_started(&mut self.ops, Some(&mut c.ops));
            let fd = Fd(c.raw_fd());
            let sqe = if self.bundle {
                opcode::RecvMultiBundle::new(fd, BGID).build()
            } else {
                opcode::RecvMulti::new(fd, BGID).build()
            };
            let sqe = sqe.user_data(user_data(Op::Recv, index, c.generation));
            // SAFETY: the receive writes only into buffers of the registered
            // buffer ring: pool buffers lent to the kernel (marked lent in the
            // pool until the completion gives them back), in memory the
            // driver keeps mapped until every operation has completed.
            // A failed push ends the worker (the ring itself is broken).
            unsafe { self.push(&sqe)? };
        }
        list.truncate(kept);
        debug_assert!(self.rearm.is_empty());
        self.rearm = list;
        Ok(())
    }

    /// For each connection with output and no send in flight: one send SQE,
    /// or the `shutdown` once everything is written.
    fn flush_sends(&mut self) -> io::Result<()> {
        let mut list = std::mem::take(&mut self.flush);
        for &index in &list {
            let Some(c) = self.conns.get_mut(index) else { continue };
            c.flush_queued = false;
            if c.closing || !matches!(c.send, SendState::Idle) || c.connecting.is_some() {
                continue;
            }
            // Nothing is in flight, so the kernel reads neither chain: join them.
            let queued = std::mem::take(&mut c.out);
            c.inflight.append(&mut self.pool, queued);
            if !c.inflight.is_empty() {
                self.submit_send(index)?;
            } else if c.shutdown == ShutdownState::Pending {
                c.shutdown = ShutdownState::Submitted;
                op_started(&mut self.ops, Some(&mut c.ops));
                let sqe = opcode::Shutdown::new(Fd(c.raw_fd()), libc::SHUT_WR)
                    .build()
                    .user_data(user_data(Op::Shutdown, index, c.generation));
                // SAFETY: shutdown carries no pointer.
                unsafe { self.push(&sqe)? };
            }
        }
        list.clear();
        self.flush = list;
        Ok(())
    }

    /// Submits one `SEND` (one segment), send bundle (up to
    /// [`SEND_RING_ENTRIES`] segments, when on and a send ring is free) or
    /// `SENDMSG` (up to [`MAX_IOV`] segments) of the connection's `inflight` chain.
    fn submit_send(&mut self, index: usize) -> io::Result<()> {
        let Some(c) = self.conns.get_mut(index) else { return Ok(()) };
        let fd = Fd(c.raw_fd());
        let mut segments = c.inflight.segments(&self.pool).filter(|&(_, start, end)| end > start);
        let Some((first, start, end)) = segments.next() else { return Ok(()) };
        let second = segments.next();
        let first_ptr = self.pool.raw_ptr(first).wrapping_add(start as usize);
        // Zero-copy only for sends of at least the threshold: below it, the
        // notification costs more than the copy it saves.
        let zc = self.zc_threshold.is_some_and(|t| c.inflight.len() >= t);
        self.counters.zero_copy_sends += u64::from(zc);
        let mut iov = None;
        let sqe = match second {
            None if zc => {
                opcode::SendZc::new(fd, first_ptr, end - start).flags(libc::MSG_NOSIGNAL).build()
            }
            None => opcode::Send::new(fd, first_ptr, end - start).flags(libc::MSG_NOSIGNAL).build(),
            Some(second) => {
                let bundle_ring = match &mut self.send_rings {
                    Some(rings) if !zc => rings.take(&self.ring.submitter()),
                    _ => None,
                };
                if let Some(i) = bundle_ring {
                    let rings = self.send_rings.as_mut().expect("a ring was lent");
                    let all = [(first, start, end), second].into_iter().chain(segments.by_ref());
                    for (id, start, end) in all.take(SEND_RING_ENTRIES as usize) {
                        let addr = self.pool.raw_ptr(id).wrapping_add(start as usize);
                        // SAFETY: ring `i` was just lent to this send, at
                        // most SEND_RING_ENTRIES segments go in, and the bytes
                        // are the `inflight` chain's, untouched until the
                        // final completion (see below).
                        unsafe { rings.push(i, addr, end - start) };
                    }
                    rings.publish(i);
                    self.counters.bundled_sends += 1;
                    c.send = SendState::Bundle { ring: i as u16, sent: 0 };
                    opcode::SendBundle::new(fd, rings.bgid(i)).flags(libc::MSG_NOSIGNAL).build()
                } else {
                    let mut state = self.iov_free.pop().unwrap_or_else(SendMsgState::new);
                    state.iov[0] =
                        libc::iovec { iov_base: first_ptr.cast(), iov_len: (end - start) as usize };
                    let mut n = 1;
                    for (id, start, end) in
                        std::iter::once(second).chain(segments.by_ref()).take(MAX_IOV - 1)
                    {
                        state.iov[n] = libc::iovec {
                            iov_base: self.pool.raw_ptr(id).wrapping_add(start as usize).cast(),
                            iov_len: (end - start) as usize,
                        };
                        n += 1;
                    }
                    // SAFETY: an all-zero msghdr is valid (no name, no control data).
                    state.msg = unsafe { std::mem::zeroed() };
                    state.msg.msg_iov = state.iov.as_mut_ptr();
                    state.msg.msg_iovlen = n as _;
                    let sqe = if zc {
                        opcode::SendMsgZc::new(fd, &state.msg)
                            .flags(libc::MSG_NOSIGNAL as u32)
                            .build()
                    } else {
                        opcode::SendMsg::new(fd, &state.msg)
                            .flags(libc::MSG_NOSIGNAL as u32)
                            .build()
                    };
                    // The box moves, its heap contents (header and iovecs) do not.
                    iov = Some(state);
                    sqe
                }
            }
        };
        drop(segments);
        if !matches!(c.send, SendState::Bundle { .. }) {
            c.send = if zc {
                SendState::ZeroCopy { iov, result: None }
            } else {
                SendState::Plain { iov }
            };
        }
        op_started(&mut self.ops, Some(&mut c.ops));
        let sqe = sqe.user_data(user_data(Op::Send, index, c.generation));
        // SAFETY: the bytes sent are the `inflight` chain's pool buffers,
        // which nobody writes or frees while `c.send.in_flight()` (new output
        // goes to `out`; `close` leaves `inflight` alone) and the pool
        // outlives the ring's operations. The msghdr and iovecs live in the
        // box parked in `c.send` until the completion; a send bundle's ring
        // entries stay in the send ring, lent to this connection until the
        // final completion. A zero-copy send stays in flight until its
        // notification (see `complete_send`), when the kernel has let go of
        // the buffers.
        unsafe { self.push(&sqe) }
    }

    fn arm_wake(&mut self) -> io::Result<()> {
        self.wake_armed = true;
        op_started(&mut self.ops, None);
        let sqe = opcode::PollAdd::new(Fd(self.waker_fd.as_raw_fd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(user_data(Op::Wake, 0, 0));
        // SAFETY: a poll carries no pointer; the eventfd lives in the driver
        // (and its wakers) longer than the ring.
        unsafe { self.push(&sqe) }
    }
}
