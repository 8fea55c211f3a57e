//! A Redis-protocol (RESP2) in-memory key-value server.
//!
//! Enough of Redis for `redis-cli` and `redis-benchmark`: strings with
//! expiry, counters, multi-key reads and writes, and the connection
//! commands clients send on connecting (see [`commands`] for the list).
//!
//! * [`parser`]: an incremental request parser over a chain of buffers,
//!   bounded by [`Limits`], reusable on its own;
//! * [`store`]: the keyspace, **shared by all workers** and lock-striped
//!   (the module docs say why: per-worker keyspaces would hide a key SET on
//!   one connection from the same client's connection on another worker);
//! * [`commands`]: the commands, with Redis's replies and error messages;
//! * [`reply`]: RESP2 reply encoding;
//! * [`Resp`]: the [`Handler`] tying them together.
//!
//! # Behaviour on the wire
//!
//! Every complete request in the input is answered, in order, in the same
//! `on_data` call (pipelining: a batch of 16 requests costs one receive and
//! one send). A malformed request is answered with
//! `-ERR Protocol error: ...` and the connection closed after the replies
//! before it, as Redis does. A request over the [`Limits`] is refused that
//! way as soon as its header says how big it is, before it is buffered.
//!
//! # Examples
//! ```no_run
//! use std::sync::Arc;
//! use pollring::{Config, Server};
//! use pollring_examples::resp::{Resp, Store};
//!
//! # fn main() -> pollring::Result<()> {
//! let config = Config::from_env()?;
//! let limits = pollring_examples::resp::limits_for(&config);
//! let store = Arc::new(Store::default());
//! let server = Server::bind("127.0.0.1:6380", config)?;
//! server.run(move |_worker| Resp::new(store.clone(), limits))
//! # }
//! ```

pub mod commands;
pub mod parser;
pub mod reply;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use pollring::{Config, Cx, Drain, Handler, WorkerCx};

pub use commands::{Flow, Session};
pub use parser::{Limits, Parser, ProtocolError};
pub use store::Store;

/// How often each worker runs the active expiry sweep.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// Shards each worker's sweep visits per tick: with the default 64 shards
/// and one worker, every shard is swept every 1.6 s.
pub const SWEEP_SHARDS_PER_TICK: usize = 4;

/// [`Limits::default`], with the request and bulk caps lowered to half of
/// what one worker's buffer pool can receive into (`buf_size ×
/// (buf_count − recv_reserve)`) when that is smaller, and never above the
/// framework's per-connection input cap ([`Config::max_input_bytes`]), so an
/// oversized request gets RESP's error rather than a silent close.
///
/// A request is buffered whole before it runs, in the pool of the worker
/// its connection lives on; one larger than the pool could never complete
/// and would starve the worker's other connections of buffers meanwhile.
pub fn limits_for(config: &Config) -> Limits {
    let reserve = config.epoll.recv_reserve.max(config.uring.recv_reserve);
    let receivable = (config.buf_count.get() as usize).saturating_sub(reserve);
    let cap = (config.buf_size.get().saturating_mul(receivable) / 2).min(config.max_input_bytes());
    let d = Limits::default();
    Limits {
        max_bulk_len: d.max_bulk_len.min(cap),
        max_request_len: d.max_request_len.min(cap),
        ..d
    }
}

/// The RESP2 server's [`Handler`]: one per worker, all sharing one
/// [`Store`].
#[derive(Debug)]
pub struct Resp {
    store: Arc<Store>,
    limits: Limits,
}

/// One connection's state: its parser (mid-request position included) and
/// its session (client id and name).
#[derive(Debug)]
pub struct Conn {
    parser: Parser,
    session: Session,
}

impl Resp {
    /// A handler serving `store` and refusing requests over `limits`.
    pub fn new(store: Arc<Store>, limits: Limits) -> Resp {
        Resp { store, limits }
    }
}

impl Handler for Resp {
    type Conn = Conn;
    type Message = ();

    fn on_open(&mut self, _cx: &mut Cx<'_>) -> Conn {
        Conn { parser: Parser::new(self.limits), session: Session::new() }
    }

    fn on_data(&mut self, conn: &mut Conn, cx: &mut Cx<'_>) {
        let now = cx.now();
        let mut answered = false;
        loop {
            let len = match conn.parser.scan(cx.input().chunks()) {
                Ok(Some(len)) => len,
                Ok(None) => {
                    // Draining: close at a command boundary, once the
                    // commands that came are answered.
                    if answered && cx.is_draining() && cx.input().is_empty() {
                        cx.close();
                    }
                    return;
                }
                Err(error) => {
                    let msg = format!("ERR Protocol error: {error}");
                    reply::error(&mut cx.writer(), msg.as_bytes());
                    tracing::debug!(id = %cx.id(), %error, "protocol error; closing");
                    cx.close();
                    return;
                }
            };
            // The request where it lies (copied once if it spans buffers),
            // its reply straight into the output's buffers.
            let Conn { parser, session } = conn;
            let store = &*self.store;
            let flow = cx.reply_to(len, |request, out| {
                let args = parser.args(request);
                if args.is_empty() {
                    Flow::Continue
                } else {
                    commands::execute(args, store, session, now, out)
                }
            });
            match flow {
                Some(Flow::Continue) => answered = true,
                Some(Flow::Close) => {
                    cx.close();
                    return;
                }
                None => {
                    // `scan` saw `len` bytes, so they are there; if not,
                    // drop the connection rather than panic.
                    tracing::error!(len, "scanned request missing from the input; closing");
                    cx.close();
                    return;
                }
            }
        }
    }

    /// The server stops (or restarts): commands already here are answered,
    /// and the connection closes after the reply to the last complete
    /// command it sends, never between a command and its reply.
    fn on_shutdown(&mut self, conn: &mut Conn, cx: &mut Cx<'_>) -> Drain {
        self.on_data(conn, cx);
        Drain::Finish
    }

    fn on_tick(&mut self, cx: &mut WorkerCx<'_>) -> Option<Duration> {
        let expired = self.store.sweep(SWEEP_SHARDS_PER_TICK, cx.now());
        if expired > 0 {
            tracing::trace!(worker = cx.worker().0, expired, "expired keys swept");
        }
        Some(SWEEP_INTERVAL)
    }
}
