//! The part of a worker that handler callbacks reach: the connection table,
//! the timer wheel, the lists of work for the end of the turn, and the links
//! to other threads. Every operation on a connection (its own or another's)
//! is one method here, so [`Cx`](crate::Cx), [`ConnMut`](crate::ConnMut)
//! and [`WorkerCx`](crate::WorkerCx) share one implementation.
//!
//! Operations only change state and list the connection as dirty; the
//! worker hands output, pauses and FINs to the driver when the callback has
//! returned (see `worker/output.rs`), once per connection per turn.

use std::collections::HashMap;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pollring_backends::buf::Pool;

use crate::conn::{ConnIo, Flags, Limits};
use crate::cx::{ConnAddr, ConnId, Gone};
use crate::handler::CloseReason;
use crate::lifecycle::Phase;
use crate::mailbox::Sender;
use crate::offload::Offload;
use crate::slots::Slots;
use crate::timer::{Clock, Ms, Wheel};
use crate::write::{Output, Writer};
use crate::WorkerId;

/// The framework's side of a worker, as callbacks see it.
#[derive(Debug)]
pub(crate) struct WorkerState<M> {
    pub(crate) ios: Slots<ConnIo>,
    pub(crate) scratch: Vec<u8>,
    pub(crate) wheel: Wheel,
    pub(crate) clock: Clock,
    pub(crate) worker: WorkerId,
    pub(crate) now: Instant,
    pub(crate) now_ms: Ms,
    pub(crate) limits: Limits,
    /// Connections with output or state to hand to the driver this turn.
    pub(crate) dirty: Vec<ConnId>,
    /// Outbound connects asked for during a callback, submitted after it.
    pub(crate) connects: Vec<(ConnId, SocketAddr)>,
    /// Connections to close at once (output dropped) after the callback.
    pub(crate) aborts: Vec<ConnId>,
    /// Feeders and openers, for the few connections that have one: kept
    /// beside the table rather than in every `ConnIo` (16 bytes on each
    /// idle connection), read only when backpressure flips or a handler asks.
    pub(crate) links: HashMap<ConnId, Links>,
    /// The peers of IPv6 connections (an IPv4 peer is kept in its
    /// `ConnIo`): a `SocketAddr` in every `ConnIo` would cost each idle
    /// connection 24 bytes more.
    pub(crate) wide_peers: HashMap<ConnId, SocketAddrV6>,
    /// The earliest `on_tick` a callback asked for (`tick_in`).
    pub(crate) tick_wanted: Option<Instant>,
    pub(crate) sender: Sender<M>,
    pub(crate) offload: Arc<Offload>,
    /// Jobs this worker's connections handed to the offload pool (a
    /// metric).
    pub(crate) offloaded: u64,
    /// The server began a graceful shutdown ([`crate::Cx::is_draining`]).
    pub(crate) draining: bool,
}

/// What a connection is linked to besides itself.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Links {
    /// The connection whose reading pauses while this one's output is over
    /// the high-water mark ([`crate::Cx::set_feeder`]); `None`: this one.
    pub(crate) feeder: Option<ConnId>,
    /// The connection that asked for this outbound connect, if any.
    pub(crate) opener: Option<ConnId>,
}

/// Lists connection `id` for the end-of-turn flush, once per turn.
pub(crate) fn list(flags: &mut Flags, dirty: &mut Vec<ConnId>, id: ConnId) {
    if flags.insert(Flags::LISTED) {
        dirty.push(id);
    }
}

/// A connection that can still take output (not once its FIN is out: after
/// `shutdown_write` and the peer's FIN it drains, and a write would fail
/// with `EPIPE`).
fn writable(ios: &mut Slots<ConnIo>, id: ConnId) -> Result<&mut ConnIo, Gone> {
    ios.get_mut(id).filter(|io| is_writable(io)).ok_or(Gone)
}

/// Whether `io` can still take output (see [`writable`]).
pub(crate) fn is_writable(io: &ConnIo) -> bool {
    io.phase.writable() && !io.flags.contains(Flags::FIN_SENT)
}

impl<M: Send + 'static> WorkerState<M> {
    /// Records the peer of connection `id`.
    pub(crate) fn set_peer(&mut self, id: ConnId, addr: SocketAddr) {
        let (v4, mapped) = match addr {
            SocketAddr::V4(v4) => (v4, false),
            // A dual-stack listener's IPv4 client: kept inline too.
            SocketAddr::V6(v6) if v6.flowinfo() == 0 && v6.scope_id() == 0 => {
                match v6.ip().to_ipv4_mapped() {
                    Some(ip) => (SocketAddrV4::new(ip, v6.port()), true),
                    None => {
                        self.wide_peers.insert(id, v6);
                        return;
                    }
                }
            }
            SocketAddr::V6(v6) => {
                self.wide_peers.insert(id, v6);
                return;
            }
        };
        if let Some(io) = self.ios.get_mut(id) {
            io.peer = Some(v4);
            io.flags.set(Flags::PEER_V4_MAPPED, mapped);
        }
    }

    /// The peer of connection `id`, if known.
    pub(crate) fn peer(&self, id: ConnId) -> Option<SocketAddr> {
        let io = self.ios.get(id)?;
        match io.peer {
            Some(v4) if io.flags.contains(Flags::PEER_V4_MAPPED) => {
                let ip = v4.ip().to_ipv6_mapped();
                Some(SocketAddr::V6(SocketAddrV6::new(ip, v4.port(), 0, 0)))
            }
            Some(v4) => Some(SocketAddr::V4(v4)),
            None => self.wide_peers.get(&id).copied().map(SocketAddr::V6),
        }
    }

    /// The peer of connection `id`, or the unspecified address (for error
    /// reports).
    pub(crate) fn peer_or_unspecified(&self, id: ConnId) -> SocketAddr {
        self.peer(id).unwrap_or_else(|| ([0, 0, 0, 0], 0).into())
    }

    /// Lists `id` for the end-of-turn flush (once).
    pub(crate) fn mark_dirty(&mut self, id: ConnId) {
        if let Some(io) = self.ios.get_mut(id) {
            list(&mut io.flags, &mut self.dirty, id);
        }
    }

    /// A writer into `id`'s output; one that discards if `id` cannot take
    /// output.
    pub(crate) fn writer<'a>(&'a mut self, pool: &'a mut Pool, id: ConnId) -> Writer<'a> {
        let to = writable(&mut self.ios, id).ok().map(|io| Output::new(io, &mut self.dirty, id));
        Writer::new(pool, to)
    }

    pub(crate) fn write(&mut self, pool: &mut Pool, id: ConnId, data: &[u8]) -> Result<(), Gone> {
        let mut writer = self.writer(pool, id);
        if writer.discards() {
            return Err(Gone);
        }
        writer.put(data);
        Ok(())
    }

    pub(crate) fn write_with(
        &mut self,
        pool: &mut Pool,
        id: ConnId,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Result<usize, Gone> {
        let mut writer = self.writer(pool, id);
        if writer.discards() {
            return Err(Gone);
        }
        Ok(writer.put_with(fill))
    }

    /// Moves the first `n` input bytes of `from` to the output of `to`
    /// (whole buffers without a copy).
    pub(crate) fn forward(
        &mut self,
        pool: &mut Pool,
        from: ConnId,
        to: ConnId,
        n: usize,
    ) -> Result<(), Gone> {
        writable(&mut self.ios, to)?;
        let now = self.now_ms;
        let source = self.ios.get_mut(from).ok_or(Gone)?;
        assert!(n <= source.input.len(), "forward of {n} bytes past the input's end");
        let moved = source.input.split_to(pool, n);
        source.consumed(now);
        let target = writable(&mut self.ios, to)?;
        match moved {
            Ok(chain) => target.output.append(pool, chain),
            Err(_) => target.flags.set(Flags::OUT_OF_BUFFERS, true),
        }
        list(&mut target.flags, &mut self.dirty, to);
        Ok(())
    }

    pub(crate) fn close(&mut self, id: ConnId) -> Result<(), Gone> {
        let io = self.ios.get_mut(id).ok_or(Gone)?;
        match io.phase {
            Phase::Closing(_) => return Err(Gone),
            // Nothing was sent yet: the connect is aborted (reported to the
            // handler as `ConnectError::Aborted`).
            Phase::Connecting { .. } => return self.abort(id),
            _ => io.phase.close(CloseReason::Local),
        }
        self.mark_dirty(id);
        Ok(())
    }

    /// Closes at once after the callback, dropping unsent output.
    pub(crate) fn abort(&mut self, id: ConnId) -> Result<(), Gone> {
        self.ios.get(id).filter(|io| !matches!(io.phase, Phase::Closing(_))).ok_or(Gone)?;
        self.aborts.push(id);
        Ok(())
    }

    pub(crate) fn shutdown_write(&mut self, id: ConnId) -> Result<(), Gone> {
        let io = self.ios.get_mut(id).ok_or(Gone)?;
        match io.phase {
            // FIN after the output queued while connecting.
            Phase::Connecting { .. } => io.flags.set(Flags::SHUTDOWN_ON_CONNECT, true),
            _ if io.phase.live() => {
                io.phase.shutdown_write();
                list(&mut io.flags, &mut self.dirty, id);
            }
            _ => return Err(Gone),
        }
        Ok(())
    }

    pub(crate) fn set_recv_paused(&mut self, id: ConnId, paused: bool) -> Result<(), Gone> {
        let io = self.ios.get_mut(id).filter(|io| !io.phase.is_closing()).ok_or(Gone)?;
        io.flags.set(Flags::PAUSED_BY_HANDLER, paused);
        self.mark_dirty(id);
        Ok(())
    }

    pub(crate) fn pending_output(&self, id: ConnId) -> Result<usize, Gone> {
        self.ios
            .get(id)
            .filter(|io| !matches!(io.phase, Phase::Closing(_)))
            .map(ConnIo::pending_output)
            .ok_or(Gone)
    }

    pub(crate) fn set_feeder(&mut self, id: ConnId, feeder: Option<ConnId>) -> Result<(), Gone> {
        let throttling = self.ios.get(id).ok_or(Gone)?.flags.contains(Flags::THROTTLING);
        let old = self.feeder_of(id);
        let feeder = feeder.filter(|&f| f != id);
        match (self.links.get_mut(&id), feeder) {
            (Some(links), _) => links.feeder = feeder,
            (None, Some(_)) => {
                self.links.insert(id, Links { feeder, opener: None });
            }
            (None, None) => {}
        }
        let new = self.feeder_of(id);
        if throttling && old != new {
            // The pause moves from the old feeder to the new one.
            for (conn, paused) in [(old, false), (new, true)] {
                if let Some(io) = self.ios.get_mut(conn) {
                    io.backpressure = if paused {
                        io.backpressure.saturating_add(1)
                    } else {
                        io.backpressure.saturating_sub(1)
                    };
                    list(&mut io.flags, &mut self.dirty, conn);
                }
            }
        }
        Ok(())
    }

    /// Starts an outbound connection (submitted to the driver after the
    /// callback returns).
    pub(crate) fn connect(
        &mut self,
        addr: SocketAddr,
        timeout: Duration,
        opener: Option<ConnId>,
    ) -> ConnId {
        let until = self.now_ms.after(timeout);
        let mut io = ConnIo::new(Phase::Connecting { until: until.into() }, self.now_ms);
        io.flags.set(Flags::OUTBOUND, true);
        let id = self.ios.insert(io);
        self.set_peer(id, addr);
        if opener.is_some() {
            self.links.insert(id, Links { feeder: None, opener });
        }
        if let Some(io) = self.ios.get_mut(id) {
            io.arm(id, &mut self.wheel, until);
        }
        self.connects.push((id, addr));
        id
    }

    /// The connection whose reading pauses for `id`'s output.
    pub(crate) fn feeder_of(&self, id: ConnId) -> ConnId {
        self.links.get(&id).and_then(|l| l.feeder).unwrap_or(id)
    }

    /// The connection that asked for outbound connection `id`.
    pub(crate) fn opener_of(&self, id: ConnId) -> Option<ConnId> {
        self.links.get(&id).and_then(|l| l.opener)
    }

    pub(crate) fn set_timer(&mut self, id: ConnId, after: Duration) -> Result<(), Gone> {
        let at = self.now_ms.after(after);
        let io = self.ios.get_mut(id).filter(|io| io.phase.live()).ok_or(Gone)?;
        io.timer_at = at.into();
        io.arm(id, &mut self.wheel, at);
        Ok(())
    }

    /// Asks for `on_tick` no later than `after` from now.
    pub(crate) fn tick_in(&mut self, after: Duration) {
        let at = self.now + after;
        self.tick_wanted = Some(self.tick_wanted.map_or(at, |t| t.min(at)));
    }

    pub(crate) fn addr(&self, id: ConnId) -> ConnAddr {
        ConnAddr { worker: self.worker, id }
    }
}
