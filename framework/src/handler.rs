//! The one trait a protocol implements.

use std::time::Duration;

use crate::cx::{ConnId, ConnectError, Cx, WorkerCx};

/// Why a connection closed, as told to [`Handler::on_close`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer finished sending and all output was written.
    PeerClosed,
    /// The handler called [`Cx::close`] and all output was written.
    Local,
    /// Nothing was received or sent for the configured idle timeout.
    IdleTimeout,
    /// Input sat unconsumed (a partial frame the handler waits to complete)
    /// for [`Config::read_timeout`]: a slow request, as in slowloris.
    ///
    /// [`Config::read_timeout`]: crate::Config::read_timeout
    ReadTimeout,
    /// Pending output made no progress for [`Config::write_timeout`]: a
    /// peer that does not read.
    ///
    /// [`Config::write_timeout`]: crate::Config::write_timeout
    WriteTimeout,
    /// Receiving or sending failed (`ECONNRESET`, `EPIPE`, …).
    Error(std::io::ErrorKind),
    /// The pool had no buffer for output the handler wrote.
    PoolExhausted,
    /// The peer sent more unconsumed input than [`Config::max_input`].
    ///
    /// [`Config::max_input`]: crate::Config::max_input
    InputLimit,
    /// The server shut down (after the grace period if output was pending).
    Shutdown,
}

/// A protocol: what to do with each connection's bytes.
///
/// One instance lives on each worker thread, built there by the factory given
/// to [`Server::serve`](crate::Server::serve), so it needs neither `Send` nor
/// locks. Its callbacks run on that thread, one at a time.
///
/// Output written through [`Cx::write`] during a callback is collected and
/// handed to the driver at the end of the turn, however many writes were
/// made: the epoll driver writes it with one `sendmsg` per connection (more
/// only past 64 buffers, or when the socket takes less); the io_uring driver
/// with one send SQE per connection, queued behind a send still in flight.
///
/// A panic in a callback closes that connection (logged with `tracing`);
/// the worker and every other connection keep going.
///
/// # Examples
/// An echo server:
/// ```
/// use pollring::{Cx, Handler};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     type Conn = ();
///     type Message = ();
///     fn on_open(&mut self, _cx: &mut Cx<'_>) {}
///     fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
///         let n = cx.input().len();
///         cx.forward(n); // moves the input buffers to the output, no copy
///     }
/// }
/// ```
pub trait Handler: 'static {
    /// Per-connection state.
    type Conn;

    /// What other threads (and other workers) send to this handler's
    /// connections and workers through a [`Sender`](crate::Sender), and
    /// what offloaded closures return ([`Cx::offload`]). `()` if unused.
    type Message: Send + 'static;

    /// A connection opened: accepted, or an outbound one ([`Cx::connect`])
    /// that connected ([`Cx::opener`] tells which). Returns its state; may
    /// already write.
    fn on_open(&mut self, cx: &mut Cx<'_, Self::Message>) -> Self::Conn;

    /// Bytes arrived (all of this turn's, appended to what was left unconsumed).
    /// Consume what was parsed with [`Cx::consume`]; leave a partial frame in
    /// place and it is still there, with more bytes behind it, next time.
    /// Also called once when the peer finishes sending
    /// ([`Cx::is_read_closed`]); unless the handler opted into half-close
    /// ([`Cx::set_half_close`]), the connection then closes once its output
    /// is written.
    fn on_data(&mut self, conn: &mut Self::Conn, cx: &mut Cx<'_, Self::Message>);

    /// Every byte written so far has been handed to the kernel.
    fn on_drained(&mut self, conn: &mut Self::Conn, cx: &mut Cx<'_, Self::Message>) {
        let _ = (conn, cx);
    }

    /// The timer set with [`Cx::set_timer`] is due. The connection may write,
    /// close, or set the timer again.
    fn on_timer(&mut self, conn: &mut Self::Conn, cx: &mut Cx<'_, Self::Message>) {
        let _ = (conn, cx);
    }

    /// A message for this connection arrived: sent from another thread with
    /// [`Sender::send`](crate::Sender::send), or the result of
    /// [`Cx::offload`]. Not called once the connection is closing (the
    /// message is dropped then).
    fn on_message(
        &mut self,
        conn: &mut Self::Conn,
        cx: &mut Cx<'_, Self::Message>,
        msg: Self::Message,
    ) {
        let _ = (conn, cx, msg);
    }

    /// A message for this worker arrived
    /// ([`Sender::send_to_worker`](crate::Sender::send_to_worker)).
    fn on_worker_message(&mut self, cx: &mut WorkerCx<'_, Self::Message>, msg: Self::Message) {
        let _ = (cx, msg);
    }

    /// An outbound connection `id` ([`Cx::connect`]) did not open: refused,
    /// timed out, closed before it connected, or another error. `opener`
    /// is the connection that asked for it, if one did. `on_open` never
    /// runs for `id`, nor `on_close`.
    fn on_connect_error(
        &mut self,
        cx: &mut WorkerCx<'_, Self::Message>,
        id: ConnId,
        opener: Option<ConnId>,
        error: ConnectError,
    ) {
        let _ = (cx, id, opener, error);
    }

    /// The connection is gone; its state is handed back for clean-up.
    /// `cx` still names it ([`Cx::id`]) and reaches the other connections
    /// (a proxy aborts the other side here); writes to this connection are
    /// discarded.
    fn on_close(&mut self, conn: Self::Conn, cx: &mut Cx<'_, Self::Message>, reason: CloseReason) {
        let _ = (conn, cx, reason);
    }

    /// The server began a graceful shutdown (SIGTERM,
    /// [`ServerHandle::shutdown`](crate::ServerHandle::shutdown), a restart
    /// handing over to a new process). With [`Drain::Close`], the default,
    /// the connection closes once its output is written, at once if it has
    /// none. A request–response protocol whose clients take a connection
    /// closed while idle for an error (keep-alive HTTP clients that do not
    /// retry, Redis clients) returns [`Drain::Finish`] and ends the
    /// connection itself at its next message boundary: it answers the
    /// request in flight or the next one, says so where the protocol can
    /// (HTTP's `Connection: close`), and closes. [`Cx::is_draining`] is
    /// true from now on. Whatever is still open when the grace period
    /// ([`Config::shutdown_grace`](crate::Config::shutdown_grace)) ends is
    /// closed.
    fn on_shutdown(&mut self, conn: &mut Self::Conn, cx: &mut Cx<'_, Self::Message>) -> Drain {
        let _ = (conn, cx);
        Drain::Close
    }

    /// A periodic call on the worker; return when to be called next
    /// (`None`: not until asked). First called when the worker starts. Any
    /// callback can ask for an earlier (or a new) tick with
    /// [`Cx::tick_in`] or [`WorkerCx::tick_in`].
    fn on_tick(&mut self, cx: &mut WorkerCx<'_, Self::Message>) -> Option<Duration> {
        let _ = cx;
        None
    }
}

/// What a connection does when the server begins a graceful shutdown
/// ([`Handler::on_shutdown`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Drain {
    /// Close once its output is written; at once if there is none.
    #[default]
    Close,
    /// Stay open: the handler closes it at a boundary of its protocol
    /// (within the grace period, after which it is closed anyway).
    Finish,
}
