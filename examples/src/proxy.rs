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
//!   [`ConnId`] in its state. C relays at once: what the client sends
//!   before the upstream has connected waits in U's output (bounded by the
//!   water marks like any output). When U connects, `on_open` runs for it,
//!   and it finds its client through [`Cx::opener`].
//! * **Relay.** Each side's `on_data` moves its whole input to the other
//!   side's output with [`Cx::forward_to`]: whole pool buffers change
//!   hands, nothing is copied.
//! * **Backpressure.** Each side is the other's feeder
//!   ([`Cx::set_feeder`], set for both when C connects): while C's unsent
//!   output is over the high-water mark, U stops receiving (and the other
//!   way round), so a client that does not read holds the upstream back
//!   through TCP flow control instead of making the proxy buffer.
//! * **Half-close.** Both sides opt into half-close
//!   ([`Cx::set_half_close`]). A FIN from one peer ([`Cx::is_read_closed`]
//!   in `on_data`) is passed on as a FIN to the other
//!   ([`ConnMut::shutdown_write`], queued until U connects if need be)
//!   after the bytes before it; the other direction keeps flowing. A side
//!   closes once both of its directions are done (the framework does that).
//! * **Errors.** A connect that fails or times out
//!   ([`Handler::on_connect_error`]) aborts the client. A side that closes
//!   abnormally (a reset, a timeout, …: any [`CloseReason`] but
//!   `PeerClosed` and `Local`) aborts the other from its `on_close`
//!   ([`ConnMut::abort`]), so the other peer sees the failure instead of a
//!   clean end.

use std::net::SocketAddr;
use std::time::Duration;

use pollring::{CloseReason, ConnId, ConnMut, ConnectError, Cx, Handler, WorkerCx};

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

impl Proxy {
    /// Joins each client to a new connection to `upstream` (an address:
    /// resolve names before, never on a worker), giving up on a connect
    /// after `connect_timeout`.
    pub fn new(upstream: SocketAddr, connect_timeout: Duration) -> Proxy {
        Proxy { upstream, connect_timeout }
    }
}

/// Aborts connection `id` (dropping its unsent output) if it is still there.
fn abort(cx: &mut Cx<'_>, id: ConnId) {
    if let Ok(mut conn) = cx.conn(id) {
        let _ = conn.abort();
    }
}

impl Handler for Proxy {
    type Conn = Side;
    type Message = ();

    fn on_open(&mut self, cx: &mut Cx<'_>) -> Side {
        let me = cx.id();
        match cx.opener() {
            // A client: connect to the upstream and relay from now on.
            None => {
                let upstream = cx.connect(self.upstream, self.connect_timeout);
                cx.set_half_close(true);
                let _ = cx.set_feeder(upstream);
                if let Ok(mut up) = cx.conn(upstream) {
                    let _ = up.set_feeder(me);
                    let _ = up.set_half_close(true);
                }
                Side::Client { upstream }
            }
            // The upstream connected; its client may have left meanwhile.
            Some(client) => {
                if cx.conn(client).is_err() {
                    cx.close();
                }
                Side::Upstream { client }
            }
        }
    }

    fn on_data(&mut self, side: &mut Side, cx: &mut Cx<'_>) {
        let peer = side.peer();
        let n = cx.input().len();
        if n > 0 && cx.forward_to(peer, n).is_err() {
            // The other end is gone: nothing can carry these bytes on.
            cx.consume(n);
            let me = cx.id();
            abort(cx, me);
            return;
        }
        if cx.is_read_closed() {
            // Our peer sent FIN: pass it on, after the bytes forwarded above.
            if cx.conn(peer).and_then(|mut p| p.shutdown_write()).is_err() {
                // The other end is closing already: nothing left to relay.
                cx.close();
            }
        }
    }

    /// The upstream could not be reached: the client is closed at once.
    fn on_connect_error(
        &mut self,
        cx: &mut WorkerCx<'_>,
        _id: ConnId,
        opener: Option<ConnId>,
        error: ConnectError,
    ) {
        tracing::warn!(%error, "proxy: upstream unreachable; client closed");
        if let Some(client) = opener {
            let _ = cx.conn(client).and_then(|mut c: ConnMut<'_>| c.abort());
        }
    }

    fn on_close(&mut self, side: Side, cx: &mut Cx<'_>, reason: CloseReason) {
        match reason {
            // Both directions ended normally (or we aborted it ourselves):
            // the other side finishes on its own.
            CloseReason::PeerClosed | CloseReason::Local => {}
            _ => {
                tracing::debug!(?reason, peer = %side.peer(), "proxy: one side failed; aborting the other");
                // Gone: it closed already.
                let _ = cx.conn(side.peer()).and_then(|mut other| other.abort());
            }
        }
    }
}
