//! Server configuration: built in code or from `POLLRING_*` variables.

use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU32, NonZeroUsize};
use std::str::FromStr;
use std::time::Duration;

pub use pollring_backends::epoll::EpollConfig;
pub use pollring_backends::uring::{TaskRun, UringConfig};

use crate::error::{Error, Result};
use pollring_backends::buf::MAX_POOL_BYTES;

/// Which I/O backend the workers run on. Chosen once at start-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// Edge-triggered epoll: readiness turned into completions by the driver.
    Epoll,
    /// io_uring: multishot accept and receive, provided buffer ring.
    Uring,
    /// io_uring if this kernel and sandbox allow it, else epoll (with a warning).
    #[default]
    Auto,
}

impl Backend {
    /// The name used by `--backend` and `POLLRING_BACKEND`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Epoll => "epoll",
            Backend::Uring => "uring",
            Backend::Auto => "auto",
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `--backend` / `POLLRING_BACKEND` value that is none of `epoll`, `uring`, `auto`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend {0:?}: expected epoll, uring or auto")]
pub struct ParseBackendError(String);

impl FromStr for Backend {
    type Err = ParseBackendError;

    fn from_str(s: &str) -> Result<Backend, ParseBackendError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "epoll" => Ok(Backend::Epoll),
            "uring" | "io_uring" | "io-uring" => Ok(Backend::Uring),
            "auto" => Ok(Backend::Auto),
            _ => Err(ParseBackendError(s.to_owned())),
        }
    }
}

/// A validated server configuration. Build it with [`Config::builder`] or
/// [`Config::from_env`].
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use pollring::{Backend, Config};
/// let config = Config::builder()
///     .backend(Backend::Epoll)
///     .workers(2)
///     .idle_timeout(Some(Duration::from_secs(30)))
///     .build()?;
/// assert_eq!(config.workers.get(), 2);
/// # Ok::<(), pollring::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The I/O backend.
    pub backend: Backend,
    /// Worker threads, each with its own listener, driver and pool.
    pub workers: NonZeroUsize,
    /// Pin worker `i` to the `i`-th allowed CPU.
    pub pin_cpus: bool,
    /// Size of each pool buffer in bytes.
    pub buf_size: NonZeroUsize,
    /// Buffers per worker pool (at most 65,536).
    pub buf_count: NonZeroU32,
    /// Open connections allowed in all, split evenly over the workers;
    /// connections over the limit are accepted and closed at once.
    pub max_connections: usize,
    /// Close a connection after this long with nothing received or sent.
    pub idle_timeout: Option<Duration>,
    /// Close a connection whose input sits unconsumed this long: a partial
    /// frame the handler waits to complete (a slow request, as in
    /// slowloris). Counts from the oldest unconsumed byte's arrival and
    /// restarts whenever the handler consumes; paused while output is
    /// pending. Closes with [`CloseReason::ReadTimeout`].
    ///
    /// [`CloseReason::ReadTimeout`]: crate::CloseReason::ReadTimeout
    pub read_timeout: Option<Duration>,
    /// Close a connection whose pending output makes no progress this long
    /// (a peer that does not read). Closes with
    /// [`CloseReason::WriteTimeout`].
    ///
    /// [`CloseReason::WriteTimeout`]: crate::CloseReason::WriteTimeout
    pub write_timeout: Option<Duration>,
    /// Unconsumed input one connection may hold; past it the connection is
    /// closed ([`CloseReason::InputLimit`]), so one peer cannot take its
    /// worker's whole pool. `None`: half of the pool (`buf_size * buf_count / 2`).
    /// Protocols should bound their frames below this.
    ///
    /// [`CloseReason::InputLimit`]: crate::CloseReason::InputLimit
    pub max_input: Option<usize>,
    /// Output bytes queued for one connection at which receiving pauses.
    pub high_water: usize,
    /// Output bytes queued under which receiving resumes.
    pub low_water: usize,
    /// `listen` backlog of each worker's socket.
    pub backlog: i32,
    /// How long graceful shutdown waits for output to drain.
    pub shutdown_grace: Duration,
    /// Messages one worker's mailbox holds before [`Sender::send`] answers
    /// [`SendError::Full`].
    ///
    /// [`Sender::send`]: crate::Sender::send
    /// [`SendError::Full`]: crate::SendError::Full
    pub mailbox_capacity: usize,
    /// Most threads of the offload pool ([`Cx::offload`]). Threads start
    /// when a job finds none idle and exit after 10 s without work, so
    /// size this to the blocking calls you want in flight at once.
    ///
    /// [`Cx::offload`]: crate::Cx::offload
    pub offload_threads: usize,
    /// Offload jobs waiting at most before [`Cx::offload`] answers
    /// [`OffloadError::Full`].
    ///
    /// [`Cx::offload`]: crate::Cx::offload
    /// [`OffloadError::Full`]: crate::OffloadError::Full
    pub offload_queue: usize,
    /// Where to serve `GET /metrics` (the Prometheus text format, a
    /// `worker` label on every series), on a listener of its own; `None`:
    /// no endpoint ([`ServerHandle::metrics`](crate::ServerHandle::metrics)
    /// still reads the counters).
    pub metrics_addr: Option<SocketAddr>,
    /// Switches of the epoll backend.
    pub epoll: EpollConfig,
    /// Switches of the io_uring backend.
    pub uring: UringConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            backend: Backend::Auto,
            workers: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
            pin_cpus: false,
            buf_size: NonZeroUsize::new(16 * 1024).expect("non-zero"),
            buf_count: NonZeroU32::new(4096).expect("non-zero"),
            max_connections: 100_000,
            idle_timeout: Some(Duration::from_secs(60)),
            read_timeout: Some(Duration::from_secs(30)),
            write_timeout: Some(Duration::from_secs(60)),
            max_input: None,
            high_water: 1024 * 1024,
            low_water: 256 * 1024,
            backlog: 1024,
            shutdown_grace: Duration::from_secs(5),
            mailbox_capacity: 4096,
            offload_threads: 64,
            offload_queue: 1024,
            metrics_addr: None,
            epoll: EpollConfig::default(),
            uring: UringConfig::default(),
        }
    }
}

impl Config {
    /// The unconsumed input one connection may hold: [`Config::max_input`],
    /// or half the pool when that is `None`. Protocols bound their frames
    /// below it.
    pub fn max_input_bytes(&self) -> usize {
        self.max_input.unwrap_or(self.buf_size.get() * self.buf_count.get() as usize / 2)
    }

    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        let config = Config::default();
        ConfigBuilder {
            buf_size_raw: config.buf_size.get(),
            buf_count_raw: config.buf_count.get(),
            config,
        }
    }

    /// The defaults, overridden by any `POLLRING_*` variable that is set:
    /// `POLLRING_BACKEND` (epoll|uring|auto), `POLLRING_WORKERS`,
    /// `POLLRING_PIN_CPUS` (0|1), `POLLRING_BUF_SIZE`, `POLLRING_BUF_COUNT`,
    /// `POLLRING_MAX_CONNECTIONS`, `POLLRING_IDLE_TIMEOUT_MS`,
    /// `POLLRING_READ_TIMEOUT_MS`, `POLLRING_WRITE_TIMEOUT_MS` (0: none),
    /// `POLLRING_MAX_INPUT` (bytes; 0: half the pool),
    /// `POLLRING_HIGH_WATER`, `POLLRING_LOW_WATER`, `POLLRING_BACKLOG`,
    /// `POLLRING_METRICS` (HOST:PORT of the `/metrics` endpoint),
    /// `POLLRING_SHUTDOWN_GRACE_MS`, `POLLRING_MAILBOX_CAPACITY`,
    /// `POLLRING_OFFLOAD_THREADS`, `POLLRING_OFFLOAD_QUEUE`; for the backends
    /// `POLLRING_EPOLL_RECV_BUDGET`, `POLLRING_URING_ENTRIES`,
    /// `POLLRING_URING_BUF_RING_ENTRIES`, `POLLRING_URING_SQPOLL_MS` (0: off),
    /// `POLLRING_URING_RECV_BUNDLE` (0|1), `POLLRING_URING_RECV_INC` (0|1),
    /// `POLLRING_URING_SEND_BUNDLE` (0|1), `POLLRING_URING_REGISTER_RING_FD` (0|1),
    /// `POLLRING_URING_TASKRUN`
    /// (deferred|coop|plain), `POLLRING_URING_SEND_ZC` (bytes from which
    /// sends go zero-copy; 0: off), `POLLRING_URING_WAIT_BATCH` and
    /// `POLLRING_URING_MIN_WAIT_US` (0: off).
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable that does not parse, or a
    /// combination that does not validate.
    pub fn from_env() -> Result<Config> {
        ConfigBuilder::from_env()?.build()
    }
}

/// Builds a [`Config`]; [`ConfigBuilder::build`] validates it.
#[derive(Clone, Debug)]
pub struct ConfigBuilder {
    config: Config,
    buf_size_raw: usize,
    buf_count_raw: u32,
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $ty:ty => |$c:ident, $v:ident| $set:expr;)*) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $v: $ty) -> Self {
                let $c = &mut self;
                $set;
                self
            }
        )*
    };
}

impl ConfigBuilder {
    setters! {
        /// The I/O backend.
        backend: Backend => |c, v| c.config.backend = v;
        /// Worker threads (0 means one per allowed CPU).
        workers: usize => |c, v| c.config.workers = NonZeroUsize::new(v).unwrap_or(Config::default().workers);
        /// Pin each worker to its own CPU.
        pin_cpus: bool => |c, v| c.config.pin_cpus = v;
        /// Size of each pool buffer in bytes (0 is rejected by `build`).
        buf_size: usize => |c, v| c.buf_size_raw = v;
        /// Buffers per worker pool (0 is rejected by `build`).
        buf_count: u32 => |c, v| c.buf_count_raw = v;
        /// Open connections allowed in all.
        max_connections: usize => |c, v| c.config.max_connections = v;
        /// Idle timeout (`None`: never).
        idle_timeout: Option<Duration> => |c, v| c.config.idle_timeout = v;
        /// Read timeout for a partial frame (`None`: never).
        read_timeout: Option<Duration> => |c, v| c.config.read_timeout = v;
        /// Write timeout for output that makes no progress (`None`: never).
        write_timeout: Option<Duration> => |c, v| c.config.write_timeout = v;
        /// Unconsumed input per connection before it is closed (`None`: half the pool).
        max_input: Option<usize> => |c, v| c.config.max_input = v;
        /// Queued output at which receiving pauses.
        high_water: usize => |c, v| c.config.high_water = v;
        /// Queued output under which receiving resumes.
        low_water: usize => |c, v| c.config.low_water = v;
        /// `listen` backlog.
        backlog: i32 => |c, v| c.config.backlog = v;
        /// Grace period of a graceful shutdown.
        shutdown_grace: Duration => |c, v| c.config.shutdown_grace = v;
        /// Messages a worker's mailbox holds before senders get `Full`.
        mailbox_capacity: usize => |c, v| c.config.mailbox_capacity = v;
        /// Most threads of the offload pool (started on demand).
        offload_threads: usize => |c, v| c.config.offload_threads = v;
        /// Offload jobs waiting before `offload` answers `Full`.
        offload_queue: usize => |c, v| c.config.offload_queue = v;
        /// Where to serve `GET /metrics` (`None`: nowhere).
        metrics_addr: Option<SocketAddr> => |c, v| c.config.metrics_addr = v;
        /// Switches of the epoll backend.
        epoll: EpollConfig => |c, v| c.config.epoll = v;
        /// Switches of the io_uring backend.
        uring: UringConfig => |c, v| c.config.uring = v;
    }

    /// A builder seeded with [`Config::from_env`]'s variables, to which
    /// code (or command-line flags) can add.
    ///
    /// # Errors
    /// [`Error::Config`] naming a variable that does not parse.
    pub fn from_env() -> Result<ConfigBuilder> {
        let mut b = Config::builder();
        if let Some(v) = env_var("POLLRING_BACKEND")? {
            b = b.backend(v);
        }
        if let Some(v) = env_var("POLLRING_WORKERS")? {
            b = b.workers(v);
        }
        if let Some(v) = env_var::<u8>("POLLRING_PIN_CPUS")? {
            b = b.pin_cpus(v != 0);
        }
        if let Some(v) = env_var("POLLRING_BUF_SIZE")? {
            b = b.buf_size(v);
        }
        if let Some(v) = env_var("POLLRING_BUF_COUNT")? {
            b = b.buf_count(v);
        }
        if let Some(v) = env_var("POLLRING_MAX_CONNECTIONS")? {
            b = b.max_connections(v);
        }
        if let Some(ms) = env_var::<u64>("POLLRING_IDLE_TIMEOUT_MS")? {
            b = b.idle_timeout((ms > 0).then(|| Duration::from_millis(ms)));
        }
        if let Some(ms) = env_var::<u64>("POLLRING_READ_TIMEOUT_MS")? {
            b = b.read_timeout((ms > 0).then(|| Duration::from_millis(ms)));
        }
        if let Some(ms) = env_var::<u64>("POLLRING_WRITE_TIMEOUT_MS")? {
            b = b.write_timeout((ms > 0).then(|| Duration::from_millis(ms)));
        }
        if let Some(v) = env_var::<usize>("POLLRING_MAX_INPUT")? {
            b = b.max_input((v > 0).then_some(v));
        }
        if let Some(v) = env_var("POLLRING_HIGH_WATER")? {
            b = b.high_water(v);
        }
        if let Some(v) = env_var("POLLRING_LOW_WATER")? {
            b = b.low_water(v);
        }
        if let Some(v) = env_var("POLLRING_BACKLOG")? {
            b = b.backlog(v);
        }
        if let Some(v) = env_var::<String>("POLLRING_METRICS")? {
            let addr = (!v.is_empty()).then(|| v.parse()).transpose();
            b = b.metrics_addr(addr.map_err(|e| {
                Error::Config(format!("POLLRING_METRICS={v:?}: {e}: expected HOST:PORT"))
            })?);
        }
        if let Some(v) = env_var("POLLRING_MAILBOX_CAPACITY")? {
            b = b.mailbox_capacity(v);
        }
        if let Some(v) = env_var("POLLRING_OFFLOAD_THREADS")? {
            b = b.offload_threads(v);
        }
        if let Some(v) = env_var("POLLRING_OFFLOAD_QUEUE")? {
            b = b.offload_queue(v);
        }
        if let Some(ms) = env_var("POLLRING_SHUTDOWN_GRACE_MS")? {
            b = b.shutdown_grace(Duration::from_millis(ms));
        }
        let mut uring = b.config.uring.clone();
        if let Some(v) = env_var("POLLRING_URING_ENTRIES")? {
            uring.entries = v;
            uring.cq_entries = uring.cq_entries.max(v);
        }
        if let Some(v) = env_var("POLLRING_URING_BUF_RING_ENTRIES")? {
            uring.buf_ring_entries = v;
        }
        if let Some(ms) = env_var::<u32>("POLLRING_URING_SQPOLL_MS")? {
            uring.sqpoll_idle_ms = (ms > 0).then_some(ms);
        }
        if let Some(v) = env_var::<u8>("POLLRING_URING_RECV_BUNDLE")? {
            uring.recv_bundle = v != 0;
        }
        if let Some(v) = env_var::<u8>("POLLRING_URING_RECV_INC")? {
            uring.recv_incremental = v != 0;
        }
        if let Some(v) = env_var::<u8>("POLLRING_URING_SEND_BUNDLE")? {
            uring.send_bundle = v != 0;
        }
        if let Some(v) = env_var::<u8>("POLLRING_URING_REGISTER_RING_FD")? {
            uring.register_ring_fd = v != 0;
        }
        if let Some(v) = env_var("POLLRING_URING_TASKRUN")? {
            uring.taskrun = v;
        }
        if let Some(bytes) = env_var::<usize>("POLLRING_URING_SEND_ZC")? {
            uring.send_zc_threshold = (bytes > 0).then_some(bytes);
        }
        if let Some(v) = env_var("POLLRING_URING_WAIT_BATCH")? {
            uring.wait_batch = v;
        }
        if let Some(us) = env_var::<u64>("POLLRING_URING_MIN_WAIT_US")? {
            uring.min_wait = (us > 0).then(|| Duration::from_micros(us));
        }
        let mut epoll = b.config.epoll.clone();
        if let Some(v) = env_var("POLLRING_EPOLL_RECV_BUDGET")? {
            epoll.recv_budget = v;
        }
        Ok(b.uring(uring).epoll(epoll))
    }

    /// Checks the combination and returns the config.
    ///
    /// # Errors
    /// [`Error::Config`] saying which value is wrong and why.
    pub fn build(self) -> Result<Config> {
        let mut c = self.config;
        let fail = |msg: String| Err(Error::Config(msg));
        let (Some(size), Some(count)) =
            (NonZeroUsize::new(self.buf_size_raw), NonZeroU32::new(self.buf_count_raw))
        else {
            return fail("buf_size and buf_count must be at least 1".into());
        };
        c.buf_size = size;
        c.buf_count = count;
        let reserve = c.epoll.recv_reserve.max(c.uring.recv_reserve);
        if reserve >= count.get() as usize / 2 {
            return fail(format!(
                "buf_count {count} leaves too little beyond the receive reserve of {reserve} buffers \
                 (need more than twice the reserve)"
            ));
        }
        if c.buf_count.get() > 65_536 {
            return fail(format!("buf_count {} exceeds 65536", c.buf_count));
        }
        if c.buf_size.get() > 1 << 30 {
            return fail(format!("buf_size {} exceeds 1 GiB", c.buf_size));
        }
        if c.buf_size.get() * c.buf_count.get() as usize > MAX_POOL_BYTES {
            return fail(format!(
                "buf_size {} x buf_count {} reaches 4 GiB; a worker's pool must be smaller",
                c.buf_size, c.buf_count
            ));
        }
        if c.low_water >= c.high_water {
            return fail(format!(
                "low_water ({}) must be below high_water ({})",
                c.low_water, c.high_water
            ));
        }
        for (name, value) in [
            ("mailbox_capacity", c.mailbox_capacity),
            ("offload_threads", c.offload_threads),
            ("offload_queue", c.offload_queue),
        ] {
            if value == 0 {
                return fail(format!("{name} must be at least 1"));
            }
        }
        // Checked for every backend: `Auto` must not hide a mistake behind
        // a fall-back to epoll.
        if let Err(what) = c.uring.check() {
            return fail(format!("io_uring: {what}"));
        }
        if let Err(what) = c.epoll.check() {
            return fail(format!("epoll: {what}"));
        }
        if c.max_connections == 0 {
            return fail("max_connections must be at least 1".into());
        }
        if c.backlog <= 0 {
            return fail(format!("backlog must be positive, not {}", c.backlog));
        }
        if c.max_input == Some(0) {
            return fail(
                "max_input of zero would close every connection: use None for the default".into(),
            );
        }
        for (name, timeout) in [
            ("idle_timeout", c.idle_timeout),
            ("read_timeout", c.read_timeout),
            ("write_timeout", c.write_timeout),
        ] {
            if timeout == Some(Duration::ZERO) {
                return fail(format!("{name} of zero: use None for no timeout"));
            }
        }
        Ok(c)
    }
}

/// What a `POLLRING_*` variable accepts, for the error when it does not
/// parse.
fn accepted(name: &str) -> &'static str {
    match name {
        "POLLRING_BACKEND" => "epoll, uring or auto",
        "POLLRING_URING_TASKRUN" => "deferred, coop or plain",
        "POLLRING_WORKERS" => "a whole number of threads (0: one per CPU)",
        "POLLRING_BACKLOG" => "a positive whole number",
        "POLLRING_METRICS" => "an address, HOST:PORT (empty: off)",
        "POLLRING_URING_SEND_ZC" => "a whole number of bytes (0: off)",
        "POLLRING_URING_MIN_WAIT_US" => "a whole number of microseconds (0: off)",
        "POLLRING_URING_WAIT_BATCH" => "a whole number of completions (at least 1)",
        "POLLRING_MAX_INPUT" => "a whole number of bytes (0: half the pool)",
        "POLLRING_PIN_CPUS"
        | "POLLRING_URING_RECV_BUNDLE"
        | "POLLRING_URING_RECV_INC"
        | "POLLRING_URING_SEND_BUNDLE"
        | "POLLRING_URING_REGISTER_RING_FD" => "0 (off) or 1 (on)",
        _ if name.ends_with("_MS") => "a whole number of milliseconds (0: none)",
        _ => "a whole number",
    }
}

fn env_var<T: FromStr>(name: &str) -> Result<Option<T>>
where
    T::Err: fmt::Display,
{
    match std::env::var(name) {
        Ok(v) if v.trim().is_empty() => Ok(None),
        Ok(v) => {
            v.trim().parse().map(Some).map_err(|e| {
                Error::Config(format!("{name}={v:?}: {e}; expected {}", accepted(name)))
            })
        }
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(e) => Err(Error::Config(format!("{name}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_variable_names_itself_and_what_it_accepts() {
        let e = env_var::<usize>("POLLRING_TEST_UNSET_VARIABLE").unwrap();
        assert_eq!(e, None);
        // A variable of this test's own, read back at once.
        std::env::set_var("POLLRING_TEST_BAD_WORKERS", "-1");
        let err = env_var::<usize>("POLLRING_TEST_BAD_WORKERS").unwrap_err().to_string();
        std::env::remove_var("POLLRING_TEST_BAD_WORKERS");
        assert!(err.contains("POLLRING_TEST_BAD_WORKERS=\"-1\""), "{err}");
        assert!(err.contains("expected a whole number"), "{err}");
        assert_eq!(accepted("POLLRING_PIN_CPUS"), "0 (off) or 1 (on)");
        assert_eq!(
            accepted("POLLRING_IDLE_TIMEOUT_MS"),
            "a whole number of milliseconds (0: none)"
        );
    }

    #[test]
    fn backend_names_round_trip() {
        for b in [Backend::Epoll, Backend::Uring, Backend::Auto] {
            assert_eq!(b.as_str().parse::<Backend>().unwrap(), b);
        }
        assert_eq!("io_uring".parse::<Backend>().unwrap(), Backend::Uring);
        let err = "kqueue".parse::<Backend>().unwrap_err();
        assert!(err.to_string().contains("expected epoll, uring or auto"));
    }

    #[test]
    fn build_rejects_inverted_water_marks() {
        let err = Config::builder().high_water(100).low_water(200).build().unwrap_err();
        assert!(
            err.to_string().contains("low_water (200) must be below high_water (100)"),
            "{err}"
        );
    }

    #[test]
    fn build_rejects_oversized_pool() {
        assert!(Config::builder().buf_count(70_000).build().is_err());
        assert!(Config::builder().buf_count(0).build().is_err());
        assert!(Config::builder().buf_size(0).build().is_err());
        let too_big = Config::builder().buf_size(64 << 10).buf_count(1 << 16).build();
        assert!(too_big.unwrap_err().to_string().contains("4 GiB"));
        let small = Config::builder().buf_count(100).build().unwrap_err();
        assert!(small.to_string().contains("receive reserve"), "{small}");
        assert!(Config::builder().idle_timeout(Some(Duration::ZERO)).build().is_err());
        let read = Config::builder().read_timeout(Some(Duration::ZERO)).build().unwrap_err();
        assert!(read.to_string().contains("read_timeout of zero"), "{read}");
    }
}
