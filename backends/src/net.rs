//! Listening sockets: one per worker, sharing a port with `SO_REUSEPORT`.

use std::io;
use std::net::{SocketAddr, TcpListener};

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
