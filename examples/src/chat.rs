//! A line-based chat room across workers: every complete line a member
//! sends reaches every *other* member, whichever worker serves it.
//!
//! # Protocol
//!
//! Connect (`nc 127.0.0.1 7100`) and you are a member. Each line you send,
//! up to and including its `\n`, is delivered verbatim to every other
//! member; you get nothing back. A partial line stays with the server until
//! its `\n` arrives (for at most the server's read timeout,
//! `POLLRING_READ_TIMEOUT_MS`, 30 s by default; then the connection is
//! closed). A line longer than [`MAX_LINE`] bytes closes your connection
//! (logged at `warn`). Leaving is closing the connection; a partial line
//! left unfinished is dropped.
//!
//! # How a line travels
//!
//! Each worker's [`Chat`] keeps the [`ConnId`]s of its own members. When a
//! member's input holds complete lines, the worker copies them once into an
//! `Arc<[u8]>` and
//!
//! 1. writes them to each of its other members with
//!    [`Cx::conn`]`(id)?.write(..)` (written together at the end of the
//!    turn, one send per member), and
//! 2. sends them *once* per other worker as [`Lines`] with
//!    [`Sender::send_to_worker`]; there [`Handler::on_worker_message`] writes
//!    them to that worker's members.
//!
//! Several lines that arrive together travel as one block. Lines of one
//! member reach everyone in the order sent; whole lines of different
//! members never interleave mid-line. Nothing runs while nobody talks: no
//! tick, no timer (a member silent for the server's idle timeout,
//! `POLLRING_IDLE_TIMEOUT_MS`, 60 s by default, is disconnected; `0` turns
//! that off).
//!
//! # Slow members and full mailboxes
//!
//! * A member whose unsent output passes [`MAX_MEMBER_BACKLOG`] (it does not
//!   read) is disconnected, logged at `warn`: one reader must not make the
//!   worker buffer the whole room's traffic.
//! * A worker's mailbox that is full ([`SendError::Full`]: that worker is
//!   `Config::mailbox_capacity` messages behind) does not lose the lines:
//!   they wait in a per-worker backlog, in order, and are sent again first
//!   thing on the next broadcast and from the worker's tick every 1 ms
//!   ([`Cx::tick_in`], [`Handler::on_tick`]), which runs only while a
//!   backlog exists. This is counted ([`ChatCounters::delayed`]) and logged
//!   at `warn` once per episode.
//! * Only a backlog past [`MAX_WORKER_BACKLOG`] bytes drops lines: counted
//!   ([`ChatCounters::dropped`]) and logged at `warn`. That is the one
//!   place a line can be lost, and never silently.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pollring::{
    CloseReason, ConnAddr, ConnId, ConnMut, Cx, Gone, Handler, SendError, Sender, WorkerCx,
    WorkerId,
};

/// The longest line accepted, `\n` included; a longer one closes its
/// connection.
pub const MAX_LINE: usize = 64 * 1024;

/// Unsent output past which a member that does not read is disconnected.
pub const MAX_MEMBER_BACKLOG: usize = 1024 * 1024;

/// Bytes of lines waiting for one full worker mailbox past which further
/// lines for that worker are dropped (and counted).
pub const MAX_WORKER_BACKLOG: usize = 4 * 1024 * 1024;

/// How soon lines waiting for a full mailbox are sent again.
const RETRY: Duration = Duration::from_millis(1);

/// One or more complete lines on their way to another worker's members:
/// [`Chat`]'s [`Handler::Message`].
#[derive(Debug, Clone)]
pub struct Lines {
    /// The member who sent them (who must not get them back).
    pub from: ConnAddr,
    /// The lines, each ending in `\n`, shared by every worker they go to.
    pub bytes: Arc<[u8]>,
}

/// What the chat had to delay or drop, summed over workers; shared by the
/// workers' [`Chat`]s (see the [module docs](self)).
#[derive(Debug, Default)]
pub struct ChatCounters {
    delayed: AtomicU64,
    dropped: AtomicU64,
}

impl ChatCounters {
    /// Messages that found a worker's mailbox full and waited for a retry.
    pub fn delayed(&self) -> u64 {
        self.delayed.load(Ordering::Relaxed)
    }

    /// Messages dropped because a worker stayed behind past
    /// [`MAX_WORKER_BACKLOG`].
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// Lines waiting for one worker's full mailbox, oldest first.
#[derive(Debug, Default)]
struct Backlog {
    queue: VecDeque<Lines>,
    bytes: usize,
    /// Lines dropped since the backlog last emptied (for the log).
    dropped: u64,
}

/// The chat room's handler on one worker. Build one per worker with
/// [`Chat::new`], all sharing one [`ChatCounters`].
///
/// # Examples
/// ```no_run
/// use std::sync::Arc;
/// use pollring::{Config, Server};
/// use pollring_examples::chat::{Chat, ChatCounters};
///
/// let counters = Arc::new(ChatCounters::default());
/// let server = Server::bind("127.0.0.1:7100", Config::from_env()?)?;
/// server.run(move |_worker| Chat::new(counters.clone()))
/// # ; Ok::<(), pollring::Error>(())
/// ```
#[derive(Debug)]
pub struct Chat {
    /// This worker's members.
    members: Vec<ConnId>,
    /// Reaches the other workers; from the first `on_open` on.
    sender: Option<Sender<Lines>>,
    /// By worker index: lines its full mailbox did not take yet.
    backlogs: Vec<Backlog>,
    counters: Arc<ChatCounters>,
}

/// Per-connection state of [`Chat`].
#[derive(Debug)]
pub struct Member {
    id: ConnId,
    /// Input bytes already searched for `\n` (a partial line).
    scanned: usize,
}

impl Chat {
    /// A worker's handler, counting into `counters`.
    pub fn new(counters: Arc<ChatCounters>) -> Chat {
        Chat { members: Vec::new(), sender: None, backlogs: Vec::new(), counters }
    }

    /// Delivers `lines` from member `cx` to everyone else: the members of
    /// this worker directly, the other workers by one message each.
    fn broadcast(&mut self, cx: &mut Cx<'_, Lines>, bytes: Arc<[u8]>) {
        let me = cx.id();
        self.members.retain(|&id| id == me || deliver(cx.conn(id), &bytes));
        let lines = Lines { from: cx.addr(), bytes };
        // Lines still waiting go first, so each member's lines stay in order.
        self.retry_backlogs();
        let Some(sender) = self.sender.clone() else { return };
        for worker in (0..sender.workers()).filter(|&w| w != cx.worker().0) {
            if self.backlogs[worker].queue.is_empty() {
                match sender.send_to_worker(WorkerId(worker), lines.clone()) {
                    Ok(()) => continue,
                    Err(SendError::Full(queued, lines)) => {
                        self.counters.delayed.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(
                            worker,
                            queued,
                            "chat: worker's mailbox full; its lines wait for a retry"
                        );
                        self.queue(worker, lines);
                    }
                    // The server is stopping: nobody is left to read them.
                    Err(_) => {}
                }
            } else {
                self.counters.delayed.fetch_add(1, Ordering::Relaxed);
                self.queue(worker, lines.clone());
            }
        }
        if self.backlogged() {
            cx.tick_in(RETRY);
        }
    }

    /// Whether lines wait for a full mailbox.
    fn backlogged(&self) -> bool {
        self.backlogs.iter().any(|b| !b.queue.is_empty())
    }

    /// Adds `lines` to `worker`'s backlog, or drops them if it is too long.
    fn queue(&mut self, worker: usize, lines: Lines) {
        let backlog = &mut self.backlogs[worker];
        if backlog.bytes + lines.bytes.len() > MAX_WORKER_BACKLOG {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            if backlog.dropped == 0 {
                tracing::warn!(
                    worker,
                    backlog = backlog.bytes,
                    "chat: worker too far behind; dropping its lines until it catches up"
                );
            }
            backlog.dropped += 1;
            return;
        }
        backlog.bytes += lines.bytes.len();
        backlog.queue.push_back(lines);
    }

    /// Sends what waits for full mailboxes, oldest first, until a mailbox
    /// is still full.
    fn retry_backlogs(&mut self) {
        let Some(sender) = &self.sender else { return };
        for (worker, backlog) in self.backlogs.iter_mut().enumerate() {
            let had = !backlog.queue.is_empty();
            while let Some(lines) = backlog.queue.pop_front() {
                let len = lines.bytes.len();
                match sender.send_to_worker(WorkerId(worker), lines) {
                    Ok(()) => backlog.bytes -= len,
                    Err(SendError::Full(_, lines)) => {
                        backlog.queue.push_front(lines);
                        break;
                    }
                    Err(_) => {
                        // Stopping: forget the rest.
                        backlog.queue.clear();
                        backlog.bytes = 0;
                    }
                }
            }
            if had && backlog.queue.is_empty() {
                let dropped = std::mem::take(&mut backlog.dropped);
                tracing::info!(worker, dropped, "chat: worker caught up");
            }
        }
    }
}

/// Writes `bytes` to a member; `false` if it is gone (or just got
/// disconnected for not reading), so it leaves the member list.
fn deliver(conn: Result<ConnMut<'_, Lines>, Gone>, bytes: &[u8]) -> bool {
    let Ok(mut conn) = conn else { return false };
    if conn.write(bytes).is_err() {
        return false;
    }
    match conn.pending_output() {
        Ok(pending) if pending > MAX_MEMBER_BACKLOG => {
            tracing::warn!(id = %conn.id(), pending, "chat: member does not read; disconnected");
            let _ = conn.abort();
            false
        }
        Ok(_) => true,
        Err(Gone) => false,
    }
}

impl Handler for Chat {
    type Conn = Member;
    type Message = Lines;

    fn on_open(&mut self, cx: &mut Cx<'_, Lines>) -> Member {
        if self.sender.is_none() {
            let sender = cx.sender();
            self.backlogs.resize_with(sender.workers(), Backlog::default);
            self.sender = Some(sender);
        }
        self.members.push(cx.id());
        Member { id: cx.id(), scanned: 0 }
    }

    fn on_data(&mut self, member: &mut Member, cx: &mut Cx<'_, Lines>) {
        // Find the end of the last complete line, checking each line's length.
        let (mut end, mut too_long) = (0, false);
        while let Some(newline) = cx.input().find(member.scanned.max(end), b'\n') {
            if newline + 1 - end > MAX_LINE {
                too_long = true;
                break;
            }
            end = newline + 1;
        }
        let len = cx.input().len();
        too_long |= len - end > MAX_LINE;
        if end > 0 {
            let bytes: Arc<[u8]> = cx.input().peek(end).map(Arc::from).unwrap_or_default();
            cx.consume(end);
            self.broadcast(cx, bytes);
        }
        member.scanned = len - end;
        if too_long {
            tracing::warn!(
                id = %cx.id(),
                peer = ?cx.peer_addr(),
                limit = MAX_LINE,
                "chat: line too long; connection closed"
            );
            cx.close();
        }
        // After the peer's FIN a partial line is dropped with the connection.
    }

    /// Lines from another worker: to every member here.
    fn on_worker_message(&mut self, cx: &mut WorkerCx<'_, Lines>, lines: Lines) {
        let skip = (lines.from.worker() == cx.worker()).then_some(lines.from.id());
        self.members.retain(|&id| Some(id) == skip || deliver(cx.conn(id), &lines.bytes));
    }

    /// Runs only while lines wait for a full mailbox (asked for with
    /// `tick_in`), and once at start-up.
    fn on_tick(&mut self, _cx: &mut WorkerCx<'_, Lines>) -> Option<Duration> {
        self.retry_backlogs();
        self.backlogged().then_some(RETRY)
    }

    fn on_close(&mut self, member: Member, _cx: &mut Cx<'_, Lines>, _reason: CloseReason) {
        if let Some(i) = self.members.iter().position(|&id| id == member.id) {
            self.members.swap_remove(i);
        }
    }
}
