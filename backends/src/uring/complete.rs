//! The last step of a turn: one handler per kind of completion.
//!
//! Handlers only update state, emit events and queue work for the next
//! turn's `prepare`; they never submit (so reaping never re-enters the SQ).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::cqueue;

use super::conn::{decode, op_finished, same_generation, user_data, Op, SendState, ShutdownState};
use super::{Cancel, Uring};
use crate::accept::{self, Verdict};
use crate::driver::{Event, ListenerId, Token};
use crate::sys;

/// The part of a CQE we use, copied out of the ring.
#[derive(Clone, Copy, Debug)]
pub(super) struct Cqe {
    user_data: u64,
    res: i32,
    flags: u32,
}

impl From<&cqueue::Entry> for Cqe {
    fn from(e: &cqueue::Entry) -> Cqe {
        Cqe { user_data: e.user_data(), res: e.result(), flags: e.flags() }
    }
}

impl Uring {
    /// Handles one completion.
    pub(super) fn complete(&mut self, cqe: Cqe, out: &mut Vec<Event>) {
        let (op, index, generation) = decode(cqe.user_data);
        match op {
            Some(Op::Recv) => self.complete_recv(index, generation, cqe, out),
            Some(Op::Send) => self.complete_send(index, generation, cqe, out),
            Some(Op::Shutdown) => self.complete_shutdown(index, generation, cqe, out),
            Some(Op::Connect) => self.complete_connect(index, generation, cqe, out),
            Some(Op::Accept) => self.complete_accept(index, cqe, out),
            Some(Op::AcceptBackoff) => self.complete_backoff(index),
            Some(Op::Wake) => self.complete_wake(cqe, out),
            Some(Op::Cancel) => {
                if cqe.res < 0 && !matches!(-cqe.res, libc::ENOENT | libc::EALREADY) {
                    tracing::debug!(
                        "io_uring cancel failed: {}",
                        io::Error::from_raw_os_error(-cqe.res)
                    );
                }
            }
            None => {
                tracing::warn!("io_uring completion with unknown user_data {:#x}", cqe.user_data)
            }
        }
    }

    fn complete_recv(&mut self, index: usize, generation: u32, cqe: Cqe, out: &mut Vec<Event>) {
        let more = cqueue::more(cqe.flags);
        let conn = self.conns.get_mut(index).filter(|c| same_generation(c.generation, generation));
        // Whom the bytes go to: nobody for a closing connection or (cannot
        // happen: a slot lives until its last completion) an unknown slot.
        let token =
            conn.as_ref().filter(|c| !c.closing).map(|c| Token::new(index as u32, c.generation));
        if let Some(bid) = cqueue::buffer_select(cqe.flags) {
            // A buffer comes back even when nothing was filled into it (the
            // kernel's worker-thread path can do that), or it is lost for good.
            let filled = cqe.res.max(0) as usize;
            let (pool, counters) = (&mut *self.pool, &mut self.counters);
            let mut pieces = 0u64;
            self.bufring.take(
                bid,
                filled,
                self.bundle,
                cqueue::buffer_more(cqe.flags),
                pool.buf_size(),
                |id, range, released| {
                    pieces += 1;
                    counters.shared_bufs += u64::from(!released);
                    match token {
                        Some(token) if !range.is_empty() => {
                            let buf = pool.take_lent(id, range.start, range.end, released);
                            out.push(Event::Recv { token, buf });
                        }
                        _ if released => pool.free_lent(id),
                        _ => {}
                    }
                },
            );
            self.counters.bundled_bufs += pieces.saturating_sub(1);
        } else if cqe.res > 0 {
            tracing::warn!("recv completion of {} bytes without a buffer", cqe.res);
        }
        let Some(c) = conn else {
            tracing::warn!("recv completion for unknown connection slot {index}");
            return;
        };
        let token = Token::new(index as u32, c.generation);
        if cqe.res == 0 {
            c.recv_done = true;
            if !c.closing {
                out.push(Event::Eof { token });
            }
        } else if cqe.res < 0 {
            match -cqe.res {
                // The buffer ring ran dry; nothing was consumed from the
                // socket. Re-armed below once the ring has buffers again.
                libc::ENOBUFS => {
                    tracing::trace!("recv starved (ENOBUFS) on slot {index}");
                    self.counters.recv_starved += 1;
                }
                // pause_recv or close.
                libc::ECANCELED => {}
                // Spurious: the kernel retried the receive on a worker
                // thread against the non-blocking socket. Not an error of
                // the connection: re-armed below like ENOBUFS.
                libc::EAGAIN | libc::EINTR => {
                    tracing::trace!("recv on slot {index} returned EAGAIN; re-arming");
                }
                errno => {
                    c.recv_done = true;
                    if !c.closing {
                        out.push(Event::Error {
                            token,
                            error: io::Error::from_raw_os_error(errno),
                        });
                    }
                }
            }
        }
        if !more && op_finished(&mut self.ops, Some(&mut c.ops)) {
            c.recv_armed = false;
            if c.closing {
                if c.closed_in_kernel() {
                    self.finished.push(index);
                }
            } else if c.wants_recv() && !c.rearm_queued {
                c.rearm_queued = true;
                self.rearm.push(index);
                self.counters.recv_rearmed += 1;
            }
        }
    }

    fn complete_send(&mut self, index: usize, generation: u32, cqe: Cqe, out: &mut Vec<Event>) {
        let Some(c) =
            self.conns.get_mut(index).filter(|c| same_generation(c.generation, generation))
        else {
            tracing::warn!("send completion for unknown connection slot {index}");
            return;
        };
        let more = cqueue::more(cqe.flags);
        let notif = cqueue::notif(cqe.flags);
        match &mut c.send {
            SendState::Idle | SendState::Failed => {
                tracing::warn!("send completion for slot {index} with no send in flight; ignored");
                return;
            }
            SendState::Bundle { sent, .. } if more => {
                *sent += cqe.res.max(0) as u32;
                return;
            }
            SendState::ZeroCopy { result, .. } if more && !notif => {
                *result = Some(cqe.res);
                return;
            }
            _ => {}
        }
        // The send's final completion.
        let res = match std::mem::replace(&mut c.send, SendState::Idle) {
            SendState::Bundle { ring, sent } => {
                let sent = sent as usize + cqe.res.max(0) as usize;
                let rings = self.send_rings.as_mut().expect("a bundle's ring came from send_rings");
                let full = (cqe.res >= 0).then_some(sent);
                let submitter = self.ring.submitter();
                if rings.give_back(ring as usize, full, &submitter, self.ring.as_raw_fd()) {
                    self.counters.send_rings_retired += 1;
                }
                // An error after some bytes went out: report those; the
                // error comes back with the next send.
                if cqe.res < 0 && sent == 0 {
                    cqe.res
                } else {
                    sent as i32
                }
            }
            mut state => {
                let res = match state {
                    SendState::ZeroCopy { result, .. } if notif => result.unwrap_or(0),
                    _ => cqe.res,
                };
                self.iov_free.extend(state.take_iov());
                res
            }
        };
        if !op_finished(&mut self.ops, Some(&mut c.ops)) {
            return;
        }
        if c.closing {
            c.inflight.clear(&mut self.pool);
            if c.closed_in_kernel() {
                self.finished.push(index);
            }
            return;
        }
        let token = Token::new(index as u32, c.generation);
        if res >= 0 {
            let n = (res as usize).min(c.inflight.len());
            c.inflight.consume(&mut self.pool, n);
            if n > 0 {
                out.push(Event::Sent { token, bytes: n });
            }
            if c.has_output_work() && !c.flush_queued {
                c.flush_queued = true;
                self.flush.push(index);
            }
        } else if matches!(-res, libc::EAGAIN | libc::EINTR) {
            // Spurious (a worker-thread retry on the non-blocking socket):
            // nothing was written; send the same bytes again next turn.
            if !c.flush_queued {
                c.flush_queued = true;
                self.flush.push(index);
            }
        } else {
            c.send = SendState::Failed;
            out.push(Event::Error { token, error: io::Error::from_raw_os_error(-res) });
        }
    }

    fn complete_shutdown(&mut self, index: usize, generation: u32, cqe: Cqe, out: &mut Vec<Event>) {
        let Some(c) =
            self.conns.get_mut(index).filter(|c| same_generation(c.generation, generation))
        else {
            tracing::warn!("shutdown completion for unknown connection slot {index}");
            return;
        };
        if c.shutdown != ShutdownState::Submitted {
            tracing::warn!("shutdown completion for slot {index} with none in flight; ignored");
            return;
        }
        if !op_finished(&mut self.ops, Some(&mut c.ops)) {
            return;
        }
        if c.closing {
            if c.closed_in_kernel() {
                self.finished.push(index);
            }
        } else if cqe.res < 0 {
            let token = Token::new(index as u32, c.generation);
            out.push(Event::Error { token, error: io::Error::from_raw_os_error(-cqe.res) });
        }
    }

    fn complete_connect(&mut self, index: usize, generation: u32, cqe: Cqe, out: &mut Vec<Event>) {
        let Some(c) =
            self.conns.get_mut(index).filter(|c| same_generation(c.generation, generation))
        else {
            tracing::warn!("connect completion for unknown connection slot {index}");
            return;
        };
        if c.connecting.is_none() {
            tracing::warn!("connect completion for slot {index} with none in flight; ignored");
            return;
        }
        if !op_finished(&mut self.ops, Some(&mut c.ops)) {
            return;
        }
        // The kernel is done with the address.
        c.connecting = None;
        let token = Token::new(index as u32, c.generation);
        if c.closing {
            // Cancelled by `close`: nothing but `Closed` is reported.
            if c.closed_in_kernel() {
                self.finished.push(index);
            }
        } else if cqe.res < 0 {
            c.recv_done = true;
            c.send = SendState::Failed;
            let error = io::Error::from_raw_os_error(-cqe.res);
            out.push(Event::Connected { token, result: Err(error) });
        } else {
            out.push(Event::Connected { token, result: Ok(()) });
            if c.wants_recv() && !c.rearm_queued {
                c.rearm_queued = true;
                self.rearm.push(index);
            }
            if c.has_output_work() && !c.flush_queued {
                c.flush_queued = true;
                self.flush.push(index);
            }
        }
    }

    fn complete_accept(&mut self, key: usize, cqe: Cqe, out: &mut Vec<Event>) {
        let more = cqueue::more(cqe.flags);
        let fd = (cqe.res >= 0).then(|| {
            // SAFETY: a successful accept completion is a descriptor the
            // kernel just installed for us; nobody else owns it.
            unsafe { OwnedFd::from_raw_fd(cqe.res) }
        });
        let Some(l) = self.listeners.get_mut(key) else {
            tracing::warn!("accept completion for unknown listener {key}");
            return;
        };
        let listener = ListenerId(key as u32);
        match fd {
            Some(fd) if l.closing => {
                drop(fd);
                self.stats.syscalls += 1;
            }
            Some(fd) => {
                let peer = sys::peer_addr(&fd);
                self.stats.syscalls += 1;
                out.push(Event::Accepted { listener, fd, peer });
            }
            None if cqe.res == -libc::ECANCELED => {}
            None => {
                let error = io::Error::from_raw_os_error(-cqe.res);
                match accept::classify(-cqe.res) {
                    Verdict::Skip => tracing::debug!(%error, "accept failed for one connection"),
                    // Report and back off, so a lasting error cannot spin
                    // the worker (the caller logs it, rate-limited).
                    Verdict::BackOff if !l.closing => {
                        out.push(Event::AcceptError { listener, error });
                        l.backoff = true;
                        if more {
                            self.cancels.push(Cancel::Op(user_data(Op::Accept, key, 0)));
                        }
                    }
                    Verdict::BackOff => {}
                }
            }
        }
        if !more {
            l.armed = false;
            self.listener_op_done(key);
        }
    }

    fn complete_backoff(&mut self, key: usize) {
        let Some(l) = self.listeners.get_mut(key) else {
            tracing::warn!("accept back-off completion for unknown listener {key}");
            return;
        };
        l.backoff_armed = false;
        self.listener_op_done(key);
    }

    /// A listener's accept or back-off timer is over: re-arm the accept, or,
    /// if the listener is closing and this was its last operation, drop it
    /// (closing the socket).
    fn listener_op_done(&mut self, key: usize) {
        let Some(l) = self.listeners.get_mut(key) else { return };
        if !op_finished(&mut self.ops, Some(&mut l.ops)) {
            return;
        }
        if !l.closing {
            self.accepts.push(key);
        } else if l.ops.is_idle() {
            self.listeners.remove(key);
            self.stats.syscalls += 1;
        }
    }

    fn complete_wake(&mut self, cqe: Cqe, out: &mut Vec<Event>) {
        if cqe.res > 0 {
            sys::eventfd_drain(self.waker_fd.as_raw_fd());
            self.stats.syscalls += 1;
            out.push(Event::Wake);
        } else if cqe.res < 0 && cqe.res != -libc::ECANCELED {
            tracing::warn!("waker poll failed: {}", io::Error::from_raw_os_error(-cqe.res));
        }
        if !cqueue::more(cqe.flags) && op_finished(&mut self.ops, None) {
            // Re-armed by the next `prepare`.
            self.wake_armed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::num::{NonZeroU32, NonZeroUsize};

    use super::*;
    use crate::buf::Pool;
    use crate::uring::UringConfig;
    use crate::Driver;

    /// A final completion for an operation that is not in flight (a
    /// second final completion of one send, say) is ignored: the counts
    /// used to wrap around (a panic in debug builds), so `Closed` never
    /// came and drop leaked the ring.
    #[test]
    fn an_unexpected_final_completion_is_ignored() {
        if crate::uring::probe::check_env().is_err() {
            eprintln!("!!!!!!!! SKIPPED: POLLRING_NO_URING is set");
            return;
        }
        let pool = Pool::new(NonZeroUsize::new(4096).unwrap(), NonZeroU32::new(2048).unwrap());
        let mut d = Uring::new(pool.unwrap(), &UringConfig::default()).expect("io_uring driver");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (socket, _) = listener.accept().unwrap();
        let token = d.add(socket.into()).unwrap();
        let (index, generation) = (token.index(), token.generation());
        let mut out = Vec::new();
        // Arms the connection's receive and the waker's poll: two in flight.
        d.turn(Some(std::time::Duration::ZERO), &mut out).unwrap();
        assert!(d.conns[index].recv_armed);
        assert_eq!((d.conns[index].ops.get(), d.ops.get()), (1, 2));
        for op in [Op::Send, Op::Shutdown, Op::Connect] {
            let user_data = user_data(op, index, generation);
            d.complete(Cqe { user_data, res: 5, flags: 0 }, &mut out);
        }
        let c = &d.conns[index];
        assert_eq!((c.ops.get(), d.ops.get()), (1, 2), "the receive is still counted");
        assert!(!c.send.in_flight() && c.recv_armed);
        // With nothing in flight at all, no count goes below zero.
        let mut idle = Uring::new(
            Pool::new(NonZeroUsize::new(4096).unwrap(), NonZeroU32::new(2048).unwrap()).unwrap(),
            &UringConfig::default(),
        )
        .unwrap();
        idle.complete(Cqe { user_data: user_data(Op::Wake, 0, 0), res: 0, flags: 0 }, &mut out);
        assert_eq!(idle.ops.get(), 0);
        // Only real news got through: no Sent for bytes never sent.
        assert!(out.is_empty(), "{out:?}");
        // The connection still closes and reports Closed once.
        d.close(token);
        let mut closed = 0;
        for _ in 0..100 {
            d.turn(Some(std::time::Duration::from_millis(10)), &mut out).unwrap();
            closed += out.drain(..).filter(|e| matches!(e, Event::Closed { .. })).count();
            if closed > 0 {
                break;
            }
        }
        assert_eq!(closed, 1);
        assert_eq!(d.ops.get(), 1, "only the waker's poll is left");
    }
}
