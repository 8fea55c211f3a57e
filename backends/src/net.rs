//! Listening sockets: one per worker, sharing a port with `SO_REUSEPORT`,
//! a Unix socket, or the ones a service manager passed (socket activation).

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `count` non-blocking listeners to `addr` with `SO_REUSEPORT`, so the
/// kernel spreads incoming connections over them (one per worker).
///
/// When `addr` has port 0, the first listener picks the port and the others
/// join it.
///
/// A port someone else listens on is refused, even when that listener has
/// `SO_REUSEPORT` too: the kernel would otherwise let this server join its
/// group (same user) and split the connections between two unrelated
/// servers. A plain bind first checks that the port is free.
///
/// # Errors
/// The error of `socket`, `setsockopt`, `bind` or `listen`, e.g.
/// `AddrInUse` when another socket listens on the port.
pub fn bind_reuseport(
    addr: SocketAddr,
    count: usize,
    backlog: i32,
) -> io::Result<Vec<TcpListener>> {
    if addr.port() != 0 {
        // Without SO_REUSEPORT this bind fails if anyone listens there
        // (SO_REUSEADDR only passes over connections in TIME_WAIT).
        let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        probe.set_reuse_address(true)?;
        probe.bind(&addr.into())?;
    }
    let mut listeners = Vec::with_capacity(count);
    let mut addr = addr;
    for _ in 0..count.max(1) {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        // Inherited by accepted sockets on Linux: saves a setsockopt per accept.
        socket.set_tcp_nodelay(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        let listener: TcpListener = socket.into();
        addr = listener.local_addr()?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// The first descriptor a service manager passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: RawFd = 3;

/// Set once the passed descriptors have been taken: they have one owner.
static TAKEN: AtomicBool = AtomicBool::new(false);

/// The listening sockets passed to this process by socket activation
/// (systemd's `LISTEN_FDS` protocol): when `LISTEN_PID` names this process,
/// descriptors 3 to 3 + `LISTEN_FDS` − 1, made non-blocking and
/// close-on-exec, in the order passed, each with its name from
/// `LISTEN_FDNAMES` (`"unknown"` where none is given). The variables are
/// removed, so children do not see them. `None` when nothing was passed
/// (or it was meant for another process), and on every call after the
/// first that took them.
///
/// # Errors
/// `InvalidInput` for a malformed `LISTEN_FDS`, or a passed descriptor that
/// is not a listening stream socket (TCP or Unix).
pub fn inherited_listeners() -> io::Result<Option<Vec<(OwnedFd, String)>>> {
    let for_us = std::env::var("LISTEN_PID").ok().and_then(|p| p.trim().parse::<u32>().ok())
        == Some(std::process::id());
    if !for_us || TAKEN.swap(true, Ordering::AcqRel) {
        return Ok(None);
    }
    let count = std::env::var("LISTEN_FDS").unwrap_or_default();
    let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let count: RawFd =
        count.trim().parse().map_err(|_| invalid(format!("LISTEN_FDS={count:?}")))?;
    for var in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        std::env::remove_var(var);
    }
    // An empty name keeps its place: names pair with descriptors by position.
    let mut names = names.split(':').filter(|_| !names.is_empty());
    let mut listeners = Vec::new();
    for fd in LISTEN_FDS_START..LISTEN_FDS_START.saturating_add(count.max(0)) {
        // SAFETY: LISTEN_PID names this process, so the service manager
        // passed descriptors 3.. to it for it to own, and `TAKEN` lets this
        // happen once per process: no other owner of `fd` exists.
        let socket = unsafe { Socket::from_raw_fd(fd) };
        let listening = socket.is_listener().unwrap_or(false);
        if !listening || socket.r#type().ok() != Some(Type::STREAM) {
            // Not ours to close: give the descriptor back as it was.
            std::mem::forget(socket);
            return Err(invalid(format!(
                "descriptor {fd} passed by LISTEN_FDS is not a listening stream socket"
            )));
        }
        socket.set_cloexec(true)?;
        socket.set_nonblocking(true)?;
        let name = names.next().filter(|n| !n.is_empty()).unwrap_or("unknown").to_owned();
        listeners.push((OwnedFd::from(socket), name));
    }
    Ok((!listeners.is_empty()).then_some(listeners))
}

/// Binds a non-blocking Unix stream listener at `path`.
///
/// A socket file left at `path` by a server that is gone (connecting to it
/// is refused) is removed first. Anything else there is left alone: a
/// socket someone listens on fails with `AddrInUse`, a file that is not a
/// socket with `AlreadyExists`.
///
/// # Errors
/// Those above, and the error of `socket`, `bind` or `listen`.
pub fn bind_unix(path: &Path, backlog: i32) -> io::Result<OwnedFd> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match probe_unix(path) {
            // A connect that is taken or queued (EAGAIN: a full backlog).
            Ok(()) => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("a server listens on {}", path.display()),
                ))
            }
            // Nobody listens: a stale socket file, safe to replace.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path)?;
            }
            Err(e) => return Err(e),
        },
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a socket; not removing it", path.display()),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    // Between the check above and this bind another process could do the
    // same: run one server per path (a service manager, a lock file).
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.bind(&socket2::SockAddr::unix(path)?)?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

/// Whether something listens on the Unix socket at `path`: `Ok` if a
/// non-blocking connect is taken or would wait (a full backlog),
/// `ConnectionRefused` if nobody listens.
fn probe_unix(path: &Path) -> io::Result<()> {
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    match socket.connect(&socket2::SockAddr::unix(path)?) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::{UnixListener, UnixStream};

    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("pollring-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        let _ = std::fs::remove_file(&path);
        path
    }

    #[test]
    fn a_stale_socket_file_is_replaced() {
        let path = scratch("stale.sock");
        drop(UnixListener::bind(&path).unwrap()); // leaves the file behind
        assert!(path.exists());
        let fd = bind_unix(&path, 16).unwrap();
        UnixStream::connect(&path).expect("the new listener answers");
        drop(fd);
    }

    #[test]
    fn a_live_socket_is_not_taken_over() {
        let path = scratch("live.sock");
        let live = UnixListener::bind(&path).unwrap();
        let error = bind_unix(&path, 16).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{error}");
        drop(live);
    }

    #[test]
    fn a_file_that_is_not_a_socket_is_left_alone() {
        let path = scratch("plain-file");
        std::fs::write(&path, b"keep me").unwrap();
        let error = bind_unix(&path, 16).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::AlreadyExists, "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), b"keep me");
    }
}
