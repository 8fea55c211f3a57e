//! Soak: echo, HTTP, RESP and proxied-echo clients at once against
//! in-process servers on one backend, with connection churn, for `SOAK_SECS` seconds (default
//! 10). It passes when
//!
//! * every response was byte-exact (echo, RESP) or complete and correct
//!   (HTTP): zero client errors;
//! * within [`RELEASE_LIMIT`] of the last client finishing, every
//!   connection is released (`Stats::connections` back to 0) and every pool
//!   buffer too (`Stats::pool_in_use` back to its level before the load);
//! * this process's resident memory is flat after warm-up: no sample taken
//!   after the end of warm-up (the first quarter of the run, and at least
//!   [`WARM_UP_MIN`]) exceeds the one taken at its end by
//!   [`RSS_GROWTH_LIMIT_KIB`] or more;
//! * the servers then stop cleanly (no worker error or panic).
//!
//! CI runs the 10-second form: about 20 s for both backends (the two run
//! one after the other), plus the build. The 10-minute form (20 minutes for
//! both backends), worth running after a change to a driver, the pools, the
//! timers or the connection table, and before a release:
//!
//! ```text
//! SOAK_SECS=600 cargo test --release -p pollring-examples --test soak -- --nocapture
//! ```
//!
//! Both forms print the load each protocol saw and the RSS samples. The
//! bound on RSS growth is the same for any duration, so the longer the run,
//! the more connections pass through after warm-up under it: the 10-minute
//! form finds leaks of a few bytes per connection that 10 seconds cannot.
//! `SOAK_SEED` replays a run's client choices (printed at the start; thread
//! scheduling still differs). `SOAK_URING_OPTIONS=1` turns on every optional
//! io_uring feature (incremental receives, recv and send bundles, the
//! registered ring fd), to soak them before one becomes a default.
//!
//! # The load
//!
//! Nine client threads, each with its own connections:
//!
//! * two keep-alive clients per protocol (one for the proxy): connections of
//!   20 to 200 exchanges, most ended by a plain client close;
//! * two churn clients: connections of 1 to 3 exchanges of a random
//!   protocol, each ended one of the ways that protocol allows.
//!
//! The endings: the client closes (FIN); the client half-closes and expects
//! the server's EOF (echo); the server closes (HTTP `Connection: close`,
//! RESP `QUIT`); or the client resets: it sends a request and drops the
//! socket once the response has started to arrive, unread. Linux closes a
//! socket with unread received data with RST rather than FIN (so no
//! `SO_LINGER` and no extra dependency is needed); for a large echo the
//! reset lands while the server is still sending.
//!
//! The exchanges:
//!
//! * echo: 1 B to 64 KiB of random bytes, compared byte for byte; the same
//!   through the `proxy` example in front of the echo server (an outbound
//!   connection per client, bytes forwarded both ways, FINs and resets
//!   passed on);
//! * HTTP: `GET /plaintext` and `GET /json` alone and pipelined (2 to 16),
//!   `POST /echo` with 0 to 16 KiB bodies; status, `Content-Type`,
//!   `Content-Length` and body checked;
//! * RESP: pipelined batches of SET/GET/INCR/DEL on keys private to the
//!   client, the replies compared byte for byte with what the client's model
//!   of its keys predicts.
//!
//! Every socket has read and write timeouts, and the clients stop at the
//! deadline, so the run is bounded in time.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pollring::testing::{config, start};
use pollring::{on_both_backends, Backend, ConfigBuilder, ServerHandle, Stats};
use pollring_examples::echo::Echo;
use pollring_examples::http::Http;
use pollring_examples::proxy::Proxy;
use pollring_examples::resp::{limits_for, Resp, Store};

/// The run's length when `SOAK_SECS` is not set (the CI form).
const DEFAULT_SECS: u64 = 10;

/// How far this process's RSS may rise, after warm-up, above its level at
/// the end of warm-up.
///
/// Everything a soak legitimately keeps is in place by the end of warm-up:
/// each server's buffer pool is preallocated (the pages this load touches
/// are touched within the first second or two), the connection tables have
/// reached the number of concurrent connections (eight clients: a few
/// dozen), the RESP keyspace is bounded (each client uses [`RESP_SLOTS`]
/// keys and a counter), the timer wheels hold entries for open connections
/// and for closed ones of the last rotation only (2.56 s), and the allocator's per-thread
/// arenas have seen the largest message (64 KiB). What is left is
/// allocator noise: peaks 0.3 to 0.6 MiB above the warm-up level, in the
/// CI form as in the 10-minute form (1.3 million connections and 50
/// million requests per backend, in release). Meanwhile about
/// 5,000 connections pass through after warm-up even in the debug CI run
/// (the counts are printed): 512 bytes leaked per connection, injected to
/// check, grew RSS by 3 MiB and failed it. The 10-minute form sees about
/// a million connections after warm-up, so a couple of bytes per
/// connection fail it. (Leaked pool buffers do not show in RSS, the pool
/// being preallocated: the `pool_in_use` check catches those.)
const RSS_GROWTH_LIMIT_KIB: u64 = 2 * 1024;

/// The shortest warm-up. The servers run with the default timeouts (idle
/// 60 s), as users do: a worker's timer wheel drops a closed connection's
/// entry the next time it looks at it, at most one rotation (2.56 s) later,
/// so under churn the wheel reaches its steady size within that. (Before
/// that was so, entries stayed until their deadline, and RSS grew for the
/// first minute of any churning load: about 13 MiB at 2,400 connections/s.)
const WARM_UP_MIN: Duration = Duration::from_secs(4);

/// How often RSS is sampled.
const RSS_EVERY: Duration = Duration::from_millis(250);

/// The longest any single client operation may take.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// How long after the last client has finished the servers may take to
/// release every connection and buffer: far under the idle timeout, so
/// that it is the servers noticing the clients' closes that releases them,
/// not the idle timeout reaping connections they failed to notice.
const RELEASE_LIMIT: Duration = Duration::from_secs(1);

/// Keys each RESP client sets, gets and deletes.
const RESP_SLOTS: usize = 16;

/// The two soak tests (one per backend) run one at a time: RSS is
/// per-process, so one test's load would disturb the other's measurement.
static ALONE: Mutex<()> = Mutex::new(());

/// The whole soak on one backend.
fn mixed_load_with_churn_stays_flat(backend: Backend) {
    let _alone = ALONE.lock().unwrap_or_else(PoisonError::into_inner);
    let duration = soak_duration();
    let warm_up = (duration / 4).max(WARM_UP_MIN);
    let seed = soak_seed();
    println!("soak {backend:?}: {duration:?} (warm-up {warm_up:?}), SOAK_SEED={seed}");

    let servers = Servers::start(backend);
    // Let the workers settle (io_uring lends its buffer ring on the first
    // turn) before taking the pool baseline.
    std::thread::sleep(Duration::from_millis(100));
    let pool_before = servers.each().map(|(_, server)| server.stats().pool_in_use);

    let tally = Tally::default();
    let start = Instant::now();
    let deadline = start + duration;
    let rss = std::thread::scope(|scope| {
        let clients: Vec<_> = ROLES
            .iter()
            .enumerate()
            .map(|(id, &role)| {
                let client = Client { id, role, servers: &servers, deadline, tally: &tally };
                let rng = Rng::new(seed ^ (id as u64 + 1).wrapping_mul(0xA076_1D64_78BD_642F));
                scope.spawn(move || client.run(rng))
            })
            .collect();
        let rss = Rss::sample_until(start, warm_up, deadline);
        for (id, client) in clients.into_iter().enumerate() {
            if let Err(panic) = client.join() {
                let message = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("(no message)");
                tally.error(format!("client {id} ({:?}) panicked: {message}", ROLES[id]));
            }
        }
        rss
    });
    let clients_done = Instant::now();
    println!("soak {backend:?}: load ran for {:.1?}", start.elapsed());
    tally.print();
    rss.print();

    tally.assert_clean();
    for ((proto, server), before) in servers.each().into_iter().zip(pool_before) {
        if let Err(stats) = released(server, before, clients_done + RELEASE_LIMIT) {
            panic!(
                "{proto:?} server on {backend:?} did not release everything within \
                 {RELEASE_LIMIT:?} of the clients finishing: {stats:?} \
                 (pool_in_use before the load: {before})"
            );
        }
    }
    rss.assert_flat();
    servers.stop();
}

on_both_backends!(mixed_load_with_churn_stays_flat);

/// `SOAK_SECS`, or [`DEFAULT_SECS`].
fn soak_duration() -> Duration {
    let secs = match std::env::var("SOAK_SECS") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("SOAK_SECS={v:?} is not a whole number")),
        Err(_) => DEFAULT_SECS,
    };
    Duration::from_secs(secs)
}

/// `SOAK_SEED`, or one taken from the clock.
fn soak_seed() -> u64 {
    match std::env::var("SOAK_SEED") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("SOAK_SEED={v:?} is not a number")),
        Err(_) => SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64),
    }
}

// ---------------------------------------------------------------------------
// Servers

/// The example servers, in-process on the backend under test; the proxy
/// relays to the echo server.
struct Servers {
    echo: ServerHandle,
    http: ServerHandle,
    resp: ServerHandle,
    proxy: ServerHandle,
}

impl Servers {
    /// Two workers each (so connections spread over two pools and
    /// listeners) with small pools: 2,048 buffers of 4 KiB per worker, so
    /// larger messages span chains of buffers. Timeouts: the defaults.
    fn config(backend: Backend) -> ConfigBuilder {
        let mut uring = pollring::UringConfig::default();
        if std::env::var("SOAK_URING_OPTIONS").is_ok_and(|v| v != "0") {
            uring.recv_incremental = true;
            uring.recv_bundle = true;
            uring.send_bundle = true;
            uring.register_ring_fd = true;
        }
        config(backend).workers(2).buf_size(4096).buf_count(2048).uring(uring)
    }

    fn start(backend: Backend) -> Servers {
        let built = Servers::config(backend).build().expect("valid soak config");
        let limits = limits_for(&built);
        let store = Arc::new(Store::default());
        let echo = start(Servers::config(backend), |_| Echo);
        let upstream = echo.local_addr();
        Servers {
            echo,
            http: start(Servers::config(backend), |_| Http::new()),
            resp: start(Servers::config(backend), move |_| Resp::new(store.clone(), limits)),
            proxy: start(Servers::config(backend), move |_| {
                Proxy::new(upstream, Duration::from_secs(5))
            }),
        }
    }

    fn each(&self) -> [(Proto, &ServerHandle); 4] {
        [
            (Proto::Echo, &self.echo),
            (Proto::Http, &self.http),
            (Proto::Resp, &self.resp),
            (Proto::Proxy, &self.proxy),
        ]
    }

    fn addr(&self, proto: Proto) -> SocketAddr {
        match proto {
            Proto::Echo => self.echo.local_addr(),
            Proto::Http => self.http.local_addr(),
            Proto::Resp => self.resp.local_addr(),
            Proto::Proxy => self.proxy.local_addr(),
        }
    }

    /// Stops each server gracefully; every worker must end without error.
    #[track_caller]
    fn stop(self) {
        // The proxy first: its upstream connections go to the echo server.
        for (proto, server) in [
            (Proto::Proxy, self.proxy),
            (Proto::Echo, self.echo),
            (Proto::Http, self.http),
            (Proto::Resp, self.resp),
        ] {
            server.shutdown();
            if let Err(e) = server.wait() {
                panic!("{proto:?} server did not stop cleanly: {e}");
            }
        }
    }
}

/// Waits until `server` has no connection and no more pool buffers in use
/// than `pool_before`; the last stats if that has not happened by `limit`.
fn released(server: &ServerHandle, pool_before: usize, limit: Instant) -> Result<(), Stats> {
    loop {
        let stats = server.stats();
        if stats.connections == 0 && stats.pool_in_use <= pool_before {
            return Ok(());
        }
        if Instant::now() > limit {
            return Err(stats);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------
// Clients

/// The protocols under load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Proto {
    Echo,
    Http,
    Resp,
    /// Echo through the proxy example.
    Proxy,
}

impl Proto {
    const ALL: [Proto; 4] = [Proto::Echo, Proto::Http, Proto::Resp, Proto::Proxy];

    /// The ways a connection of this protocol can end.
    fn endings(self) -> &'static [Ending] {
        match self {
            Proto::Echo | Proto::Proxy => &[Ending::ClientClose, Ending::HalfClose, Ending::Reset],
            Proto::Http | Proto::Resp => &[Ending::ClientClose, Ending::ServerClose, Ending::Reset],
        }
    }
}

/// How a connection ends, once its exchanges are done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    /// The client closes (FIN) with nothing outstanding.
    ClientClose,
    /// The client shuts down its sending side and reads the server's EOF.
    HalfClose,
    /// The client asks the server to close (`Connection: close`, `QUIT`),
    /// reads the last response and the server's EOF.
    ServerClose,
    /// The client sends a request and drops the socket once the response
    /// starts arriving, unread: Linux sends RST.
    Reset,
}

impl Ending {
    const ALL: [Ending; 4] =
        [Ending::ClientClose, Ending::HalfClose, Ending::ServerClose, Ending::Reset];
}

/// What a client thread does until the deadline.
#[derive(Clone, Copy, Debug)]
enum Role {
    /// Long connections (20 to 200 exchanges) of one protocol.
    KeepAlive(Proto),
    /// Short connections (1 to 3 exchanges) of a random protocol.
    Churn,
}

/// The client threads: two keep-alive clients per protocol (one for the
/// proxy), two churners.
const ROLES: [Role; 9] = [
    Role::KeepAlive(Proto::Echo),
    Role::KeepAlive(Proto::Echo),
    Role::KeepAlive(Proto::Http),
    Role::KeepAlive(Proto::Http),
    Role::KeepAlive(Proto::Resp),
    Role::KeepAlive(Proto::Resp),
    Role::KeepAlive(Proto::Proxy),
    Role::Churn,
    Role::Churn,
];

/// Every client check returns this: `Err` says what was wrong.
type Check<T = ()> = Result<T, String>;

/// One client thread.
struct Client<'a> {
    id: usize,
    role: Role,
    servers: &'a Servers,
    deadline: Instant,
    tally: &'a Tally,
}

impl Client<'_> {
    /// Opens, uses and ends connections until the deadline, recording each
    /// failure and carrying on with a new connection.
    fn run(&self, mut rng: Rng) {
        let mut resp = RespModel::new(self.id);
        while Instant::now() < self.deadline {
            let (proto, exchanges, ending) = match self.role {
                Role::KeepAlive(proto) => {
                    let ending = if rng.percent(70) {
                        Ending::ClientClose
                    } else {
                        rng.pick(proto.endings())
                    };
                    (proto, rng.range(20, 200), ending)
                }
                Role::Churn => {
                    let proto = rng.pick(&Proto::ALL);
                    (proto, rng.range(1, 3), rng.pick(proto.endings()))
                }
            };
            if let Err(e) = self.connection(proto, exchanges, ending, &mut rng, &mut resp) {
                self.tally.error(format!(
                    "client {} ({:?}), {proto:?} connection ending {ending:?}: {e}",
                    self.id, self.role
                ));
                // The replies lost with the connection leave the model
                // unsure of the keys: start afresh under new names.
                resp.forget();
            }
        }
    }

    /// One connection: up to `exchanges` checked exchanges (fewer if the
    /// deadline passes), then `ending`.
    fn connection(
        &self,
        proto: Proto,
        exchanges: usize,
        ending: Ending,
        rng: &mut Rng,
        resp: &mut RespModel,
    ) -> Check {
        let mut wire = Wire::connect(self.servers.addr(proto))?;
        let counts = self.tally.of(proto);
        counts.connections.fetch_add(1, Ordering::Relaxed);
        for _ in 0..exchanges {
            if Instant::now() >= self.deadline {
                break;
            }
            let requests = match proto {
                Proto::Echo | Proto::Proxy => echo_exchange(&mut wire, rng)?,
                Proto::Http => http_exchange(&mut wire, rng)?,
                Proto::Resp => resp.exchange(&mut wire, rng)?,
            };
            counts.requests.fetch_add(requests, Ordering::Relaxed);
        }
        match (ending, proto) {
            (Ending::ClientClose, _) => drop(wire),
            (Ending::HalfClose, _) => wire.half_close()?,
            (Ending::ServerClose, Proto::Http) => {
                let last = HttpRequest::Plaintext;
                wire.send(&last.encode(true))?;
                check_http_response(&mut wire, &last, true)?;
                wire.expect_eof()?;
            }
            (Ending::ServerClose, Proto::Resp) => resp.quit(&mut wire)?,
            (Ending::ServerClose, Proto::Echo | Proto::Proxy) => {
                return Err("echo servers never close".into())
            }
            (Ending::Reset, _) => {
                let request = match proto {
                    Proto::Echo | Proto::Proxy => {
                        let len = echo_size(rng);
                        random_bytes(rng, len)
                    }
                    Proto::Http => HttpRequest::Plaintext.encode(false),
                    Proto::Resp => resp_command(&[b"PING"]),
                };
                wire.send(&request)?;
                wire.reset()?;
            }
        }
        counts.endings[ending as usize].fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// One client connection: a socket with timeouts and the bytes received
/// but not yet checked.
struct Wire {
    stream: TcpStream,
    received: Vec<u8>,
}

impl Wire {
    fn connect(addr: SocketAddr) -> Check<Wire> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let set_up = |s: &TcpStream| -> std::io::Result<()> {
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            s.set_nodelay(true)
        };
        set_up(&stream).map_err(|e| format!("set up socket: {e}"))?;
        Ok(Wire { stream, received: Vec::new() })
    }

    fn send(&mut self, bytes: &[u8]) -> Check {
        self.stream.write_all(bytes).map_err(|e| format!("send {} bytes: {e}", bytes.len()))
    }

    /// Reads what has arrived (one `read`); `Ok(0)` at EOF.
    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                // A read with a timeout is not restarted by the kernel.
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
                Ok(n) => {
                    self.received.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
            }
        }
    }

    /// The next `n` bytes received.
    fn take(&mut self, n: usize) -> Check<Vec<u8>> {
        while self.received.len() < n {
            match self.fill() {
                Ok(0) => return Err(format!("EOF after {}", self.progress(n))),
                Ok(_) => {}
                Err(e) => return Err(format!("{e} after {}", self.progress(n))),
            }
        }
        Ok(self.received.drain(..n).collect())
    }

    /// The bytes received up to and including the first `delimiter`, which
    /// must come within `limit` bytes.
    fn take_through(&mut self, delimiter: &[u8], limit: usize) -> Check<Vec<u8>> {
        loop {
            if let Some(i) = self.received.windows(delimiter.len()).position(|w| w == delimiter) {
                return Ok(self.received.drain(..i + delimiter.len()).collect());
            }
            let problem = if self.received.len() > limit {
                format!("no {} within {limit} bytes", preview(delimiter))
            } else {
                match self.fill() {
                    Ok(0) => format!("EOF before {}", preview(delimiter)),
                    Ok(_) => continue,
                    Err(e) => format!("{e} before {}", preview(delimiter)),
                }
            };
            return Err(format!("{problem}: {}", preview(&self.received)));
        }
    }

    /// The server closes: EOF, with no byte nor reset before it.
    fn expect_eof(&mut self) -> Check {
        loop {
            match self.fill() {
                Ok(0) if self.received.is_empty() => return Ok(()),
                Ok(0) => {
                    return Err(format!("unexpected bytes before EOF: {}", preview(&self.received)))
                }
                Ok(_) => {}
                Err(e) => return Err(format!("{e} instead of EOF")),
            }
        }
    }

    /// Shuts down the sending side; the server must answer with EOF.
    fn half_close(mut self) -> Check {
        self.stream.shutdown(Shutdown::Write).map_err(|e| format!("shutdown(Write): {e}"))?;
        self.expect_eof()
    }

    /// Waits until a response starts arriving, then closes without reading
    /// it: with unread data in its receive queue, the socket closes with
    /// RST instead of FIN.
    fn reset(self) -> Check {
        let mut byte = [0u8; 1];
        loop {
            match self.stream.peek(&mut byte) {
                Ok(0) => return Err("EOF while waiting for a response to reset".into()),
                Ok(_) => return Ok(()), // `self` drops here: RST
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("{e} while waiting for a response to reset")),
            }
        }
    }

    fn progress(&self, n: usize) -> String {
        format!("{} of {n} bytes: {}", self.received.len(), preview(&self.received))
    }
}

// ---------------------------------------------------------------------------
// Echo

/// Mostly small messages, some spanning several pool buffers, a few
/// spanning many.
fn echo_size(rng: &mut Rng) -> usize {
    match rng.below(10) {
        0 => rng.range(8 * 1024 + 1, 64 * 1024),
        1..=3 => rng.range(513, 8 * 1024),
        _ => rng.range(1, 512),
    }
}

/// Sends random bytes and checks they come back exactly. Writing all before
/// reading cannot stall: 64 KiB fits in the loopback socket buffers and
/// under the server's high-water mark.
fn echo_exchange(wire: &mut Wire, rng: &mut Rng) -> Check<u64> {
    let len = echo_size(rng);
    let data = random_bytes(rng, len);
    wire.send(&data)?;
    let got = wire.take(data.len())?;
    if got != data {
        return Err(format!("echo of {} bytes: {}", data.len(), difference(&data, &got)));
    }
    Ok(1)
}

// ---------------------------------------------------------------------------
// HTTP

/// A request the HTTP example server answers with 200.
#[derive(Clone, Debug)]
enum HttpRequest {
    Plaintext,
    Json,
    /// `POST /echo` with this body.
    Upload(Vec<u8>),
}

impl HttpRequest {
    fn random_get(rng: &mut Rng) -> HttpRequest {
        if rng.percent(50) {
            HttpRequest::Plaintext
        } else {
            HttpRequest::Json
        }
    }

    fn encode(&self, close: bool) -> Vec<u8> {
        let connection = if close { "Connection: close\r\n" } else { "" };
        match self {
            HttpRequest::Plaintext => {
                format!("GET /plaintext HTTP/1.1\r\nHost: soak\r\n{connection}\r\n").into_bytes()
            }
            HttpRequest::Json => {
                format!("GET /json HTTP/1.1\r\nHost: soak\r\n{connection}\r\n").into_bytes()
            }
            HttpRequest::Upload(body) => {
                let mut out = format!(
                    "POST /echo HTTP/1.1\r\nHost: soak\r\nContent-Length: {}\r\n{connection}\r\n",
                    body.len()
                )
                .into_bytes();
                out.extend_from_slice(body);
                out
            }
        }
    }

    /// The `Content-Type` and body of the 200 response.
    fn expected(&self) -> (&'static str, &[u8]) {
        match self {
            HttpRequest::Plaintext => ("text/plain", b"Hello, World!"),
            HttpRequest::Json => ("application/json", br#"{"message":"Hello, World!"}"#),
            HttpRequest::Upload(body) => ("application/octet-stream", body),
        }
    }
}

/// One request, or a pipeline of them, and their responses in order.
fn http_exchange(wire: &mut Wire, rng: &mut Rng) -> Check<u64> {
    let requests: Vec<HttpRequest> = match rng.below(10) {
        0..=3 => vec![HttpRequest::random_get(rng)],
        4..=6 => (0..rng.range(2, 16))
            .map(|_| {
                if rng.percent(80) {
                    HttpRequest::random_get(rng)
                } else {
                    let len = rng.range(0, 2048);
                    HttpRequest::Upload(random_bytes(rng, len))
                }
            })
            .collect(),
        _ => {
            let len = rng.range(0, 16 * 1024);
            vec![HttpRequest::Upload(random_bytes(rng, len))]
        }
    };
    let bytes: Vec<u8> = requests.iter().flat_map(|r| r.encode(false)).collect();
    wire.send(&bytes)?;
    for (i, request) in requests.iter().enumerate() {
        check_http_response(wire, request, false)
            .map_err(|e| format!("response {} of {}: {e}", i + 1, requests.len()))?;
    }
    Ok(requests.len() as u64)
}

/// Reads one response and checks it answers `request`; with `close`, it
/// must say `Connection: close`.
fn check_http_response(wire: &mut Wire, request: &HttpRequest, close: bool) -> Check {
    let head = wire.take_through(b"\r\n\r\n", 8 * 1024)?;
    let head = std::str::from_utf8(&head)
        .map_err(|_| format!("response head is not UTF-8: {}", preview(&head)))?;
    let mut lines = head.split("\r\n").filter(|l| !l.is_empty());
    let status = lines.next().unwrap_or_default();
    if status != "HTTP/1.1 200 OK" {
        return Err(format!("status line {status:?} in {head:?}"));
    }
    let (mut content_type, mut length, mut connection) = (None, None, None);
    for line in lines {
        let (name, value) =
            line.split_once(':').ok_or_else(|| format!("header line {line:?} in {head:?}"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-type") {
            content_type = Some(value);
        } else if name.eq_ignore_ascii_case("content-length") {
            length = value.parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("connection") {
            connection = Some(value);
        }
    }
    let (want_type, want_body) = request.expected();
    if content_type != Some(want_type) {
        return Err(format!("Content-Type {content_type:?}, expected {want_type:?}: {head:?}"));
    }
    if length != Some(want_body.len()) {
        return Err(format!("Content-Length {length:?}, expected {}: {head:?}", want_body.len()));
    }
    if close != (connection == Some("close")) {
        return Err(format!("Connection {connection:?} after a request with close={close}"));
    }
    let body = wire.take(want_body.len())?;
    if body != want_body {
        return Err(format!("body: {}", difference(want_body, &body)));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// RESP

/// A request as RESP2 multibulk.
fn resp_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// One RESP client's keys and what they hold, so that every reply can be
/// predicted byte for byte. The keys are private to the client (named
/// after its id), so no other client changes them.
struct RespModel {
    client: usize,
    /// Bumped when replies were lost and the model may be wrong: the keys
    /// of the next generation are fresh.
    generation: u32,
    values: [Option<Vec<u8>>; RESP_SLOTS],
    counter: i64,
}

impl RespModel {
    fn new(client: usize) -> RespModel {
        RespModel { client, generation: 0, values: Default::default(), counter: 0 }
    }

    fn forget(&mut self) {
        *self = RespModel { generation: self.generation + 1, ..RespModel::new(self.client) };
    }

    fn key(&self, slot: usize) -> Vec<u8> {
        format!("soak:{}:{}:{slot}", self.client, self.generation).into_bytes()
    }

    fn counter_key(&self) -> Vec<u8> {
        format!("soak:{}:{}:counter", self.client, self.generation).into_bytes()
    }

    /// A pipelined batch of 1 to 8 commands; the replies must be exactly
    /// the predicted bytes.
    fn exchange(&mut self, wire: &mut Wire, rng: &mut Rng) -> Check<u64> {
        let count = rng.range(1, 8);
        let (mut request, mut expected) = (Vec::new(), Vec::new());
        for _ in 0..count {
            let slot = rng.below(RESP_SLOTS);
            let key = self.key(slot);
            match rng.below(4) {
                0 => {
                    let len = rng.range(0, 1500);
                    let value = random_bytes(rng, len);
                    request.extend(resp_command(&[b"SET", &key, &value]));
                    expected.extend_from_slice(b"+OK\r\n");
                    self.values[slot] = Some(value);
                }
                1 => {
                    request.extend(resp_command(&[b"GET", &key]));
                    match &self.values[slot] {
                        Some(value) => {
                            expected.extend(format!("${}\r\n", value.len()).into_bytes());
                            expected.extend_from_slice(value);
                            expected.extend_from_slice(b"\r\n");
                        }
                        None => expected.extend_from_slice(b"$-1\r\n"),
                    }
                }
                2 => {
                    request.extend(resp_command(&[b"INCR", &self.counter_key()]));
                    self.counter += 1;
                    expected.extend(format!(":{}\r\n", self.counter).into_bytes());
                }
                _ => {
                    request.extend(resp_command(&[b"DEL", &key]));
                    let existed = self.values[slot].take().is_some();
                    expected.extend_from_slice(if existed { b":1\r\n" } else { b":0\r\n" });
                }
            }
        }
        wire.send(&request)?;
        let got = wire.take(expected.len())?;
        if got != expected {
            return Err(format!("replies to {count} commands: {}", difference(&expected, &got)));
        }
        Ok(count as u64)
    }

    /// `QUIT`: `+OK`, then the server closes.
    fn quit(&mut self, wire: &mut Wire) -> Check {
        wire.send(&resp_command(&[b"QUIT"]))?;
        let got = wire.take(5)?;
        if got != b"+OK\r\n" {
            return Err(format!("QUIT answered {}", preview(&got)));
        }
        wire.expect_eof()
    }
}

// ---------------------------------------------------------------------------
// Bookkeeping

/// What the clients did, per protocol, and what went wrong.
#[derive(Default)]
struct Tally {
    protos: [Counts; 4],
    errors: AtomicU64,
    /// The first few error messages.
    first_errors: Mutex<Vec<String>>,
}

#[derive(Default)]
struct Counts {
    /// Requests answered correctly.
    requests: AtomicU64,
    connections: AtomicU64,
    /// Connections ended each way, indexed by `Ending as usize`.
    endings: [AtomicU64; 4],
}

impl Tally {
    fn of(&self, proto: Proto) -> &Counts {
        &self.protos[proto as usize]
    }

    fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_errors.lock().unwrap_or_else(PoisonError::into_inner);
        if first.len() < 10 {
            first.push(message);
        }
    }

    fn print(&self) {
        for proto in Proto::ALL {
            let c = self.of(proto);
            let endings: Vec<String> = Ending::ALL
                .iter()
                .filter(|&&e| proto.endings().contains(&e))
                .map(|&e| format!("{e:?} {}", c.endings[e as usize].load(Ordering::Relaxed)))
                .collect();
            println!(
                "  {proto:?}: {} requests on {} connections (ended: {})",
                c.requests.load(Ordering::Relaxed),
                c.connections.load(Ordering::Relaxed),
                endings.join(", ")
            );
        }
        println!("  client errors: {}", self.errors.load(Ordering::Relaxed));
    }

    /// No client error, and the load really ran: every protocol served
    /// requests and saw every one of its endings.
    #[track_caller]
    fn assert_clean(&self) {
        let errors = self.errors.load(Ordering::Relaxed);
        let first = self.first_errors.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(errors == 0, "{errors} client errors; the first ones:\n{}", first.join("\n"));
        for proto in Proto::ALL {
            let c = self.of(proto);
            assert!(c.requests.load(Ordering::Relaxed) > 0, "no {proto:?} request was made");
            for &ending in proto.endings() {
                assert!(
                    c.endings[ending as usize].load(Ordering::Relaxed) > 0,
                    "no {proto:?} connection ended by {ending:?}"
                );
            }
        }
    }
}

/// This process's resident set size over the run.
struct Rss {
    /// (time since the start, KiB), every [`RSS_EVERY`].
    samples: Vec<(Duration, u64)>,
    warm_up: Duration,
}

impl Rss {
    /// Samples until `deadline`, the load running meanwhile.
    fn sample_until(start: Instant, warm_up: Duration, deadline: Instant) -> Rss {
        let mut samples = vec![(start.elapsed(), rss_kib())];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(RSS_EVERY));
            samples.push((start.elapsed(), rss_kib()));
        }
        Rss { samples, warm_up }
    }

    /// The first sample after warm-up (the last one if the run was too
    /// short to have one).
    fn after_warm_up(&self) -> (Duration, u64) {
        let last = *self.samples.last().expect("at least one sample");
        self.samples.iter().copied().find(|&(t, _)| t >= self.warm_up).unwrap_or(last)
    }

    /// The highest sample from the end of warm-up on. The peak rather than
    /// the last sample: as the clients stop at the deadline their memory is
    /// freed, and the last sample often dips (by up to 1 MiB) below the
    /// level the load held.
    fn peak_after_warm_up(&self) -> (Duration, u64) {
        let from = self.after_warm_up();
        let later = self.samples.iter().copied().filter(|&(t, _)| t >= from.0);
        later.max_by_key(|&(_, kib)| kib).unwrap_or(from)
    }

    /// How far the peak after warm-up rose above the level at its end.
    fn growth_kib(&self) -> i64 {
        self.peak_after_warm_up().1 as i64 - self.after_warm_up().1 as i64
    }

    fn print(&self) {
        // At most about 20 samples, evenly spread, and always the last.
        let step = self.samples.len().div_ceil(20).max(1);
        let shown: Vec<String> = self
            .samples
            .iter()
            .enumerate()
            .filter(|&(i, _)| i % step == 0 || i + 1 == self.samples.len())
            .map(|(_, (t, kib))| format!("{:.2}s {kib}", t.as_secs_f64()))
            .collect();
        println!("  RSS KiB: {}", shown.join(", "));
        let ((t0, warm), (t1, peak)) = (self.after_warm_up(), self.peak_after_warm_up());
        let end = self.samples.last().map_or(0, |&(_, kib)| kib);
        println!(
            "  RSS at the end of warm-up {warm} KiB ({t0:.2?}), peak after it {peak} KiB \
             ({t1:.2?}): {:+} KiB (limit +{RSS_GROWTH_LIMIT_KIB} KiB); at the end {end} KiB",
            self.growth_kib(),
        );
    }

    #[track_caller]
    fn assert_flat(&self) {
        let growth = self.growth_kib();
        assert!(
            growth < RSS_GROWTH_LIMIT_KIB as i64,
            "RSS grew by {growth} KiB after warm-up (limit {RSS_GROWTH_LIMIT_KIB} KiB): \
             from {:?} to {:?}",
            self.after_warm_up(),
            self.peak_after_warm_up()
        );
    }
}

/// `VmRSS` of `/proc/self/status`, in KiB.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line in /proc/self/status")
}

/// A small xorshift generator: deterministic per seed, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Where `got` first differs from `expected`, for messages.
fn difference(expected: &[u8], got: &[u8]) -> String {
    let at =
        expected.iter().zip(got).position(|(a, b)| a != b).unwrap_or(expected.len().min(got.len()));
    let around = at.saturating_sub(16);
    format!(
        "{} bytes, expected {}; first difference at byte {at}: expected {} got {}",
        got.len(),
        expected.len(),
        preview(&expected[around.min(expected.len())..]),
        preview(&got[around.min(got.len())..]),
    )
}

/// The start of `bytes`, escaped, for messages.
fn preview(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(64)];
    let more = if bytes.len() > shown.len() { "..." } else { "" };
    format!("\"{}\"{more}", shown.escape_ascii())
}
