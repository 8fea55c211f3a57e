//! The baseline a user would pick instead of pollring: tokio, one task per
//! connection, and hyper for HTTP.
//!
//! The servers here are written the way the tokio and hyper documentation
//! teach, with no tuning beyond what pollring also gets, so that the
//! comparison measures the frameworks and not the effort put into either:
//!
//! - one multi-threaded runtime with `workers` worker threads (work-stealing),
//!   one listener, one accept loop, one spawned task per connection;
//! - `TCP_NODELAY` on every connection (pollring sets it on its listeners, and
//!   accepted sockets inherit it);
//! - echo: a read / `write_all` loop over a 16 KiB buffer, pollring's default
//!   pool buffer size;
//! - HTTP: hyper's HTTP/1 server with `pipeline_flush`, so that pipelined
//!   responses leave in one write as pollring's do;
//! - proxy: per connection, a `TcpStream::connect` to the upstream (with a
//!   timeout) and `tokio::io::copy_bidirectional` between the two sockets.
//!
//! [`serve`] blocks its thread until told to stop; the compare command runs it
//! in a child process.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use tokio::net::TcpListener;

mod echo;
mod http;
mod proxy;

/// Which baseline protocol [`serve`] speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// Every byte received is sent back, in order.
    Echo,
    /// HTTP/1.1 through hyper: `GET /plaintext` answers `Hello, World!`.
    Http,
    /// An L4 proxy: each connection is joined to a new connection to
    /// `upstream`, bytes copied both ways.
    Proxy {
        /// Where every accepted connection is proxied to.
        upstream: SocketAddr,
    },
}

/// How long a proxy's connect to its upstream may take before the client
/// connection is dropped. The comparison gives pollring's proxy the same.
pub const PROXY_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the runtime waits for its threads when [`serve`] returns.
/// Connection tasks are not waited for: they are dropped, which closes their
/// sockets.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(100);

/// Pause after an accept error that is not about one connection (most likely
/// out of file descriptors), so the loop waits for connections to close
/// instead of spinning. `axum::serve` does the same.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Runs the `proto` baseline server on `listener` until a message arrives on
/// `stop` or its sender is dropped.
///
/// Builds a tokio multi-threaded runtime with `workers` worker threads and
/// accepts in a loop, spawning one task per connection. A connection's error
/// (a reset, a malformed request) ends only that connection's task. On stop
/// the listener is closed and the function returns without waiting for open
/// connections: their tasks are dropped with the runtime.
///
/// `listener` must already be bound and listening; it is switched to
/// non-blocking mode here.
///
/// # Examples
///
/// ```no_run
/// use pollring_bench::baseline::{self, Proto};
///
/// let listener = std::net::TcpListener::bind("127.0.0.1:8080")?;
/// let (stop, stopped) = std::sync::mpsc::channel();
/// let server = std::thread::spawn(move || baseline::serve(Proto::Http, listener, 2, stopped));
/// // ... load the server ...
/// stop.send(()).ok();
/// server.join().expect("server thread panicked")?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// `InvalidInput` when `workers` is 0; otherwise the error of building the
/// runtime or of handing `listener` to it.
///
/// # Panics
///
/// When called from inside a tokio runtime (tokio does not nest runtimes).
pub fn serve(
    proto: Proto,
    listener: std::net::TcpListener,
    workers: usize,
    stop: mpsc::Receiver<()>,
) -> io::Result<()> {
    if workers == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the tokio baseline needs at least one worker thread",
        ));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("baseline-worker")
        .enable_all()
        .build()?;
    listener.set_nonblocking(true)?;

    let result = runtime.block_on(async {
        let listener = TcpListener::from_std(listener)?;
        // `recv` blocks, so it waits on the blocking pool; its `Err` (the
        // sender dropped) means stop as well.
        let stopped = tokio::task::spawn_blocking(move || stop.recv());
        tokio::select! {
            biased;
            _ = stopped => Ok(()),
            never = accept(listener, proto) => match never {},
        }
    });
    runtime.shutdown_timeout(SHUTDOWN_TIMEOUT);
    result
}

/// Accepts connections forever, one task each.
async fn accept(listener: TcpListener, proto: Proto) -> Infallible {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(e) if is_connection_error(&e) => continue,
            Err(_) => {
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Fails only when the peer is already gone: nothing to serve.
        if stream.set_nodelay(true).is_err() {
            continue;
        }
        // The handles are dropped: a connection's error is the peer's
        // business and ends only its own task.
        match proto {
            Proto::Echo => drop(tokio::spawn(echo::serve_conn(stream))),
            Proto::Http => drop(tokio::spawn(http::serve_conn(stream))),
            Proto::Proxy { upstream } => drop(tokio::spawn(proxy::serve_conn(stream, upstream))),
        }
    }
}

/// An accept error about one connection (gone before it was accepted), after
/// which accepting the next one can go on at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

#[cfg(test)]
mod test_util {
    use std::net::{SocketAddr, TcpStream};
    use std::sync::mpsc;
    use std::thread::{self, JoinHandle};
    use std::time::{Duration, Instant};

    use super::Proto;

    /// Bound on every blocking client call and on the server's shutdown.
    pub(super) const TIMEOUT: Duration = Duration::from_secs(5);

    /// A baseline server running on its own thread, on a loopback port.
    pub(super) struct Running {
        pub(super) addr: SocketAddr,
        stop: mpsc::Sender<()>,
        thread: JoinHandle<std::io::Result<()>>,
    }

    impl Running {
        /// Starts `proto` on `127.0.0.1:0` with two workers.
        #[track_caller]
        pub(super) fn start(proto: Proto) -> Running {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
            let addr = listener.local_addr().expect("local_addr");
            let (stop, stopped) = mpsc::channel();
            let thread = thread::spawn(move || super::serve(proto, listener, 2, stopped));
            Running { addr, stop, thread }
        }

        /// A connected client with read and write timeouts.
        #[track_caller]
        pub(super) fn connect(&self) -> TcpStream {
            let stream = TcpStream::connect(self.addr).expect("connect");
            stream.set_read_timeout(Some(TIMEOUT)).expect("read timeout");
            stream.set_write_timeout(Some(TIMEOUT)).expect("write timeout");
            stream.set_nodelay(true).expect("nodelay");
            stream
        }

        /// Sends the stop message and asserts the server returns `Ok` within
        /// [`TIMEOUT`].
        #[track_caller]
        pub(super) fn stop(self) {
            self.stop.send(()).expect("server thread gone before stop");
            join_within(self.thread, TIMEOUT);
        }

        /// Drops the stop sender and asserts the server returns `Ok` within
        /// [`TIMEOUT`].
        #[track_caller]
        pub(super) fn drop_sender(self) {
            drop(self.stop);
            join_within(self.thread, TIMEOUT);
        }
    }

    #[track_caller]
    fn join_within(thread: JoinHandle<std::io::Result<()>>, limit: Duration) {
        let start = Instant::now();
        while !thread.is_finished() {
            assert!(start.elapsed() < limit, "server did not stop within {limit:?}");
            thread::sleep(Duration::from_millis(10));
        }
        thread.join().expect("server thread panicked").expect("server returned an error");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::{serve, Proto};

    #[test]
    fn zero_workers_is_rejected() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let (_stop, stopped) = mpsc::channel();
        let err = serve(Proto::Echo, listener, 0, stopped).expect_err("0 workers accepted");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
