//! Messages from other threads, taken from the worker's mailbox once per
//! turn and delivered to the handler.

use pollring_backends::Driver;

use super::Worker;
use crate::handler::Handler;
use crate::mailbox::Envelope;

impl<D: Driver, H: Handler> Worker<D, H> {
    /// Delivers every message queued since the last turn. A message for a
    /// connection that is closing or gone is dropped here.
    pub(super) fn deliver_messages(&mut self) {
        let mailbox = self.st.sender.mailbox(self.st.worker);
        if !mailbox.has_news() {
            return;
        }
        let mut inbox = std::mem::take(&mut self.inbox);
        mailbox.take(&mut inbox);
        self.counters.messages += inbox.len() as u64;
        for envelope in inbox.drain(..) {
            match envelope {
                Envelope::Conn(id, msg) => {
                    let live = self.st.ios.get(id).is_some_and(|io| io.phase.live());
                    if live {
                        self.call(id, "on_message", |h, conn, cx| h.on_message(conn, cx, msg));
                    } else {
                        tracing::trace!(id = %id, "message for a closed connection dropped");
                    }
                }
                Envelope::Worker(msg) => {
                    self.call_worker("on_worker_message", |h, cx| h.on_worker_message(cx, msg));
                }
            }
        }
        self.inbox = inbox;
    }
}
