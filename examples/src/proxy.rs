//! An L4 TCP proxy: each accepted client is joined to a new connection to
//! one upstream address, and bytes are relayed both ways until both
//! directions are done.
//!
//! # How a pair works
//!
//! ```text
//!  client ──▶ [C: Side::Client] ──forward_to──▶ [U: Side::Upstream] ──▶ upstream
//!  client ◀── [C]               ◀──forward_to── [U]                 ◀── upstream
//! ```
//!
//! * **Open.** On accept, `on_open` of the client C calls
//!   [`Cx::connect`]`(upstream, timeout)` and keeps the upstream's
//!   [`ConnId`] in its state. When it connects, `on_open` runs for U, which
//!   finds its client through [`Cx::opener`]. Until then C does not
//!   receive ([`Cx::pause_recv`]): the kernel holds what the client sends,
//!   rather than the proxy's output queue of a connection that may never
//!   open.
//! * **Relay.** Each side's `on_data` moves its whole input to the other
//!   side's output with [`Cx::forward_to`]: whole pool buffers change
//!   hands, nothing is copied.
//! * **Backpressure.** Each side names the other as its feeder
//!   ([`Cx::set_feeder`]): while C's unsent output is over the high-water
//!   mark, U stops receiving (and the other way round), so a client that
//!   does not read holds the upstream back through TCP flow control
//!   instead of making the proxy buffer.
//! * **Half-close.** Both sides opt into half-close
//!   ([`Cx::set_half_close`]). A FIN from one peer ([`Cx::is_read_closed`]
//!   in `on_data`) is passed on as a FIN to the other
//!   ([`ConnMut::shutdown_write`](pollring::ConnMut::shutdown_write)) after the bytes before it; the other
//!   direction keeps flowing. A side closes once both of its directions are
//!   done (the framework does that).
//! * **Errors.** A connect that fails or times out
//!   ([`Handler::on_connect_error`]) aborts the client. A side that closes
//!   abnormally (a reset, a timeout, …: any [`CloseReason`] but
//!   `PeerClosed` and `Local`) has the other side aborted
//!   ([`ConnMut::abort`](pollring::ConnMut::abort)), so the other peer sees the failure instead of a
//!   clean end. `on_close` has no [`Cx`], so it sends the proxy's own
//!   worker an [`Abort`] message, which `on_worker_message` carries out.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use pollring::{CloseReason, ConnId, ConnectError, Cx, Gone, Handler, Sender, WorkerCx, WorkerId};

/// A proxy's handler on one worker: every client accepted there is joined
/// to a new connection to `upstream`.
///
/// # Examples
/// ```no_run
/// use std::time::Duration;
/// use pollring::{Config, Server};
/// use pollring_examples::proxy::Proxy;
///
/// let upstream = "127.0.0.1:7000".parse().unwrap();
/// let server = Server::bind("127.0.0.1:7200", Config::from_env()?)?;
/// server.run(move |_worker| Proxy::new(upstream, Duration::from_secs(5)))
/// # ; Ok::<(), pollring::Error>(())
/// ```
#[derive(Debug)]
pub struct Proxy {
    upstream: SocketAddr,
    connect_timeout: Duration,
    /// This worker's id and a sender, for [`Abort`] messages from
    /// `on_close`; set by the first `on_open`.
    mailbox: Option<(WorkerId, Sender<Abort>)>,
    /// Upstreams still connecting, by id; `true` once their client sent
    /// FIN (which then passes on when they open).
    connecting: HashMap<ConnId, bool>,
}

/// Which end of a pair a connection is, and its partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Accepted from a client; relays to `upstream`.
    Client {
        /// The connection to the upstream (connecting, at first).
        upstream: ConnId,
    },
    /// Connected to the upstream on behalf of `client`.
    Upstream {
        /// The client it serves.
        client: ConnId,
    },
}

impl Side {
    /// The other end of the pair.
    pub fn peer(self) -> ConnId {
        match self {
            Side::Client { upstream } => upstream,
            Side::Upstream { client } => client,
        }
    }
}

/// [`Proxy`]'s message, from `on_close` to its own worker: abort this
/// connection (the other end of a pair that failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abort(pub ConnId);

impl Proxy {
    /// Joins each client to a new connection to `upstream` (an address:
    /// resolve names before, never on a worker), giving up on a connect
    /// after `connect_timeout`.
    pub fn new(upstream: SocketAddr, connect_timeout: Duration) -> Proxy {
        Proxy { upstream, connect_timeout, mailbox: None, connecting: HashMap::new() }
    }

    /// The client side: connect to the upstream, and wait for it.
    fn open_client(&mut self, cx: &mut Cx<'_, Abort>) -> Side {
        let upstream = cx.connect(self.upstream, self.connect_timeout);
        self.connecting.insert(upstream, false);
        cx.set_half_close(true);
        let _ = cx.set_feeder(upstream);
        cx.pause_recv(); // resumed by the upstream's on_open
        Side::Client { upstream }
    }

    /// The upstream side has connected: start relaying.
    fn open_upstream(&mut self, cx: &mut Cx<'_, Abort>, client: ConnId) -> Side {
        let client_fin = self.connecting.remove(&cx.id()).unwrap_or(false);
        cx.set_half_close(true);
        let _ = cx.set_feeder(client);
        match cx.conn(client) {
            Ok(mut c) => {
                let _ = c.resume_recv();
            }
            // The client left while we connected (its on_close asked for
            // our abort too; this is sooner).
            Err(Gone) => {
                let me = cx.id();
                abort(cx, me);
            }
        }
        if client_fin {
            // What the client sent before its FIN is queued; the FIN follows it.
            cx.shutdown_write();
        }
        Side::Upstream { client }
    }
}

/// Aborts connection `id` (dropping its unsent output) if it is still there.
fn abort(cx: &mut Cx<'_, Abort>, id: ConnId) {
    if let Ok(mut conn) = cx.conn(id) {
        let _ = conn.abort();
    }
}

impl Handler for Proxy {
    type Conn = Side;
    type Message = Abort;

    fn on_open(&mut self, cx: &mut Cx<'_, Abort>) -> Side {
        if self.mailbox.is_none() {
            self.mailbox = Some((cx.worker(), cx.sender()));
        }
        match cx.opener() {
            None => self.open_client(cx),
            Some(client) => self.open_upstream(cx, client),
        }
    }

    fn on_data(&mut self, side: &mut Side, cx: &mut Cx<'_, Abort>) {
        let peer = side.peer();
        let n = cx.input().len();
        if n > 0 && cx.forward_to(peer, n).is_err() {
            // The other end is gone: nothing can carry these bytes on.
            cx.consume(n);
            let me = cx.id();
            abort(cx, me);
            return;
        }
        if !cx.is_read_closed() {
            return;
        }
        // Our peer sent FIN: pass it on, after the bytes forwarded above.
        if let Some(fin) = self.connecting.get_mut(&peer) {
            *fin = true; // the upstream sends it once connected
        } else if cx.conn(peer).and_then(|mut p| p.shutdown_write()).is_err() {
            // The other end is closing already: nothing left to relay.
            cx.close();
        }
    }

    /// Carries out an [`Abort`] sent by `on_close`.
    fn on_worker_message(&mut self, cx: &mut WorkerCx<'_, Abort>, Abort(id): Abort) {
        if let Ok(mut conn) = cx.conn(id) {
            let _ = conn.abort();
        }
    }

    /// The upstream could not be reached: the client is closed at once.
    fn on_connect_error(
        &mut self,
        cx: &mut WorkerCx<'_, Abort>,
        id: ConnId,
        opener: Option<ConnId>,
        error: ConnectError,
    ) {
        self.connecting.remove(&id);
        tracing::warn!(%error, "proxy: upstream unreachable; client closed");
        if let Some(client) = opener {
            if let Ok(mut conn) = cx.conn(client) {
                let _ = conn.abort();
            }
        }
    }

    fn on_close(&mut self, side: Side, reason: CloseReason) {
        match reason {
            // Both directions ended normally (or we aborted it ourselves):
            // the other side finishes on its own.
            CloseReason::PeerClosed | CloseReason::Local => {}
            _ => {
                tracing::debug!(?reason, peer = %side.peer(), "proxy: one side failed; aborting the other");
                if let Some((worker, sender)) = &self.mailbox {
                    if let Err(error) = sender.send_to_worker(*worker, Abort(side.peer())) {
                        // Stopping, or a mailbox full of work: the other side
                        // then ends with its own timeouts.
                        tracing::warn!(%error, "proxy: cannot abort the other side");
                    }
                }
            }
        }
    }
}
