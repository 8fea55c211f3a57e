//! Zero-downtime restart and the signals that ask for it: the server
//! keeps its own copies of the listening sockets, and SIGUSR2 (or
//! [`ServerHandle::restart`](super::ServerHandle::restart)) hands them to a
//! new process of the same program (`pollring_backends::handover`).

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::Duration;

use pollring_backends::handover::{self, Passed, Successor};

use super::{Shared, ShutdownTrigger};
use crate::error::{Error, Result};
use crate::listen::{Listener, METRICS_FD_NAME};

/// The server's own copies of its listening sockets (the workers hold
/// theirs).
#[derive(Debug)]
pub(super) struct Handover {
    pub(super) listeners: Vec<Listener>,
    pub(super) metrics: Option<OwnedFd>,
}

/// How long a restart waits for the new process to serve before giving up
/// (and killing it).
pub const RESTART_TIMEOUT: Duration = Duration::from_secs(30);

/// Installs the SIGINT/SIGTERM/SIGUSR2 handlers; signals are held until
/// watched.
pub(super) fn catch_signals() -> Result<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGINT, SIGTERM, SIGUSR2};
    signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGUSR2]).map_err(Error::Signals)
}

/// Runs the thread that turns caught signals into a shutdown (SIGINT,
/// SIGTERM; a second one exits at once) or a restart (SIGUSR2).
pub(super) fn watch(
    mut signals: signal_hook::iterator::Signals,
    trigger: ShutdownTrigger,
    shared: std::sync::Arc<Shared>,
) -> Result<()> {
    std::thread::Builder::new()
        .name("pollring-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for signal in signals.forever() {
                if signal == signal_hook::consts::SIGUSR2 {
                    tracing::info!("SIGUSR2: restarting");
                    if let Err(error) = restart(&shared, &trigger) {
                        tracing::error!(%error, "still serving");
                    }
                    continue;
                }
                seen += 1;
                if seen == 1 {
                    tracing::info!(signal, "stopping gracefully (signal again to force)");
                    trigger.shutdown();
                } else {
                    tracing::warn!(signal, "second signal: exiting now");
                    std::process::exit(130);
                }
            }
        })
        .map_err(Error::Signals)?;
    Ok(())
}

/// The handover's lock; a panic elsewhere while it was held leaves nothing
/// half-done (it only holds descriptors).
pub(super) fn lock(
    handover: &Mutex<Option<Handover>>,
) -> std::sync::MutexGuard<'_, Option<Handover>> {
    handover.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Starts a new process of this program with the listening sockets and
/// waits until it serves; then begins this one's graceful shutdown.
pub(super) fn restart(shared: &Shared, trigger: &ShutdownTrigger) -> Result<u32> {
    if shared.restarting.swap(true, Ordering::AcqRel) {
        let busy = std::io::Error::other("another restart is under way");
        return Err(Error::Restart(handover::HandoverError::Spawn(busy)));
    }
    let result = hand_over(shared, trigger);
    shared.restarting.store(false, Ordering::Release);
    result
}

/// [`restart`], one at a time.
fn hand_over(shared: &Shared, trigger: &ShutdownTrigger) -> Result<u32> {
    // The successor copies the sockets under the lock, which is then
    // released: a shutdown while the new process starts must not wait.
    let successor = {
        let handover = lock(&shared.handover);
        let Some(h) = handover.as_ref() else { return Err(Error::Stopping) };
        let passed: Vec<Passed<'_>> = h
            .listeners
            .iter()
            .flat_map(|l| &l.sockets)
            .map(|fd| Passed { fd, name: "listener" })
            .chain(h.metrics.iter().map(|fd| Passed { fd, name: METRICS_FD_NAME }))
            .collect();
        Successor::prepare(&passed).map_err(Error::Restart)?
    };
    let pid = successor.start(RESTART_TIMEOUT).map_err(Error::Restart)?;
    tracing::info!(pid, "restart: the new process serves; this one drains and exits");
    trigger.shutdown();
    Ok(pid)
}
