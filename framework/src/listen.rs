//! Where a server listens: endpoints (TCP or Unix), the sockets bound or
//! passed for each, and how they are dealt out to the workers.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::str::FromStr;

use pollring_backends::{net, Share};

use crate::error::{Error, Result};

/// Where a server listens: a TCP address, or the path of a Unix socket.
///
/// Parsed from `HOST:PORT` (resolved; the first address is taken) or
/// `unix:PATH`, as the examples' `--addr` takes it; displayed the same way.
///
/// # Examples
/// ```
/// use pollring::Endpoint;
///
/// let tcp: Endpoint = "127.0.0.1:8080".parse()?;
/// assert_eq!(tcp, Endpoint::Tcp(([127, 0, 0, 1], 8080).into()));
/// let unix: Endpoint = "unix:/run/app.sock".parse()?;
/// assert_eq!(unix, Endpoint::Unix("/run/app.sock".into()));
/// assert_eq!(unix.to_string(), "unix:/run/app.sock");
/// # Ok::<(), pollring::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// A TCP address: one `SO_REUSEPORT` socket per worker.
    Tcp(SocketAddr),
    /// A Unix stream socket at this path: one socket all workers share.
    Unix(PathBuf),
}

impl Endpoint {
    /// The TCP address, if this is one.
    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Endpoint::Tcp(addr) => Some(*addr),
            Endpoint::Unix(_) => None,
        }
    }

    /// Resolves `addr` to its first socket address.
    pub(crate) fn resolve(addr: impl ToSocketAddrs + fmt::Debug) -> Result<Endpoint> {
        let unresolved = |source| Error::Resolve { name: format!("{addr:?}"), source };
        let first = addr.to_socket_addrs().map_err(unresolved)?.next();
        first.map(Endpoint::Tcp).ok_or_else(|| {
            unresolved(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "no address of a supported family",
            ))
        })
    }

    /// The endpoint a listening socket is bound to.
    fn of(socket: &OwnedFd) -> std::io::Result<Endpoint> {
        let local = socket2::SockRef::from(socket).local_addr()?;
        if let Some(addr) = local.as_socket() {
            return Ok(Endpoint::Tcp(addr));
        }
        match local.as_pathname() {
            Some(path) => Ok(Endpoint::Unix(path.to_owned())),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "an unnamed or abstract Unix socket (only paths are served)",
            )),
        }
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(s: &str) -> Result<Endpoint> {
        match s.strip_prefix("unix:") {
            Some("") => Err(Error::Resolve {
                name: format!("{s:?}"),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no path"),
            }),
            Some(path) => Ok(Endpoint::Unix(path.into())),
            None => Endpoint::resolve(s),
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(addr) => addr.fmt(f),
            Endpoint::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

impl From<SocketAddr> for Endpoint {
    fn from(addr: SocketAddr) -> Endpoint {
        Endpoint::Tcp(addr)
    }
}

/// The name (`LISTEN_FDNAMES`, systemd's `FileDescriptorName=`) of a passed
/// socket that serves `GET /metrics` rather than the handler.
pub const METRICS_FD_NAME: &str = "metrics";

/// What socket activation passed.
#[derive(Debug)]
pub(crate) struct Inherited {
    /// The handler's listeners, in the order passed.
    pub(crate) listeners: Vec<Listener>,
    /// The socket named [`METRICS_FD_NAME`], if one was.
    pub(crate) metrics: Option<OwnedFd>,
}

/// One endpoint a server listens on, and its sockets: one per worker for
/// TCP (`SO_REUSEPORT`), one for a Unix socket, or what socket activation
/// passed.
#[derive(Debug)]
pub(crate) struct Listener {
    /// Where, with the port the kernel picked for port 0.
    pub(crate) endpoint: Endpoint,
    pub(crate) sockets: Vec<OwnedFd>,
}

impl Listener {
    /// Binds `endpoint`: a TCP address gets one socket per worker.
    pub(crate) fn bind(endpoint: &Endpoint, workers: usize, backlog: i32) -> Result<Listener> {
        let failed = |source| Error::Bind { addr: endpoint.clone(), source };
        match endpoint {
            Endpoint::Tcp(addr) => {
                let sockets = net::bind_reuseport(*addr, workers, backlog).map_err(failed)?;
                let bound = sockets[0].local_addr().map_err(failed)?;
                let sockets = sockets.into_iter().map(OwnedFd::from).collect();
                Ok(Listener { endpoint: Endpoint::Tcp(bound), sockets })
            }
            Endpoint::Unix(path) => {
                let socket = net::bind_unix(path, backlog).map_err(failed)?;
                Ok(Listener { endpoint: endpoint.clone(), sockets: vec![socket] })
            }
        }
    }

    /// What socket activation passed, if anything: consecutive sockets
    /// bound to the same endpoint (the `SO_REUSEPORT` group a restarting
    /// server hands over) are one listener; a socket named
    /// [`METRICS_FD_NAME`] is the `/metrics` endpoint's.
    pub(crate) fn inherited() -> Result<Option<Inherited>> {
        let activation = |e: std::io::Error| Error::Config(format!("socket activation: {e}"));
        let Some(sockets) = net::inherited_listeners().map_err(activation)? else {
            return Ok(None);
        };
        let mut passed = Inherited { listeners: Vec::new(), metrics: None };
        for (socket, name) in sockets {
            if name == METRICS_FD_NAME {
                passed.metrics = Some(socket);
                continue;
            }
            let endpoint = Endpoint::of(&socket).map_err(activation)?;
            match passed.listeners.last_mut() {
                Some(last) if last.endpoint == endpoint => last.sockets.push(socket),
                _ => passed.listeners.push(Listener { endpoint, sockets: vec![socket] }),
            }
        }
        Ok(Some(passed))
    }

    /// Worker `worker`'s sockets of this listener, of `workers` in all:
    /// with a socket per worker (or more) each worker takes its own;
    /// with fewer, workers share them.
    pub(crate) fn deal(
        &self,
        worker: usize,
        workers: usize,
    ) -> std::io::Result<Vec<(OwnedFd, Share)>> {
        let k = self.sockets.len();
        if k >= workers {
            (worker..k)
                .step_by(workers)
                .map(|j| Ok((self.sockets[j].as_fd().try_clone_to_owned()?, Share::Alone)))
                .collect()
        } else {
            let socket = self.sockets[worker % k].as_fd().try_clone_to_owned()?;
            Ok(vec![(socket, Share::Shared)])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_and_display_alike() {
        for text in ["127.0.0.1:80", "[::1]:9", "unix:/tmp/x.sock", "unix:relative.sock"] {
            let endpoint: Endpoint = text.parse().unwrap();
            assert_eq!(endpoint.to_string(), text);
        }
        assert!("unix:".parse::<Endpoint>().is_err());
        assert!("no-port".parse::<Endpoint>().is_err());
        assert_eq!("localhost:80".parse::<Endpoint>().unwrap().tcp().unwrap().port(), 80);
    }

    #[test]
    fn workers_share_fewer_sockets_and_split_more() {
        let sockets = |n| {
            let l = Listener::bind(&"127.0.0.1:0".parse().unwrap(), n, 16).unwrap();
            assert_eq!(l.sockets.len(), n);
            l
        };
        let one = sockets(1);
        for w in 0..3 {
            let dealt = one.deal(w, 3).unwrap();
            assert_eq!(dealt.len(), 1);
            assert_eq!(dealt[0].1, Share::Shared);
        }
        let three = sockets(3);
        let counts: Vec<usize> = (0..2).map(|w| three.deal(w, 2).unwrap().len()).collect();
        assert_eq!(counts, [2, 1], "every socket has one worker");
        assert!(three.deal(0, 2).unwrap().iter().all(|(_, s)| *s == Share::Alone));
    }
}
