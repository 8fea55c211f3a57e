//! Start-up: building the ring with the best flags the kernel takes, and the
//! cheap [`probe`] that says whether (and why not) the driver can run here.

use std::fmt;
use std::io;

use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;

use io_uring::types::Fd;
use io_uring::{cqueue, opcode, squeue, IoUring, Probe};

use super::bufring::{self, BufRing};
use super::UringConfig;
use crate::buf::BufId;

/// The environment variable that disables io_uring (any non-empty value
/// other than `0`), to simulate a machine without it.
pub const NO_URING_ENV: &str = "POLLRING_NO_URING";

/// Where the kernel's global io_uring switch lives.
const SYSCTL_PATH: &str = "/proc/sys/kernel/io_uring_disabled";

/// Why the io_uring driver cannot start.
#[derive(Debug)]
#[non_exhaustive]
pub enum UringError {
    /// The `POLLRING_NO_URING` environment variable is set.
    DisabledByEnv,
    /// The `kernel.io_uring_disabled` sysctl forbids io_uring (1: only for
    /// members of `kernel.io_uring_group`; 2: for everyone).
    DisabledBySysctl(u8),
    /// `io_uring_setup` failed with `EPERM`: a seccomp filter (containers
    /// often block io_uring) or another security policy.
    PermissionDenied,
    /// `io_uring_setup` failed with `ENOSYS`: the kernel has no io_uring.
    NotSupported,
    /// `io_uring_setup` failed with `ENOMEM`: most often the locked-memory
    /// limit (`RLIMIT_MEMLOCK`, shown in KiB), which recent kernels charge
    /// a ring's memory to for a process without `CAP_IPC_LOCK`.
    OutOfLockedMemory {
        /// The soft limit in KiB, `None` if unlimited or unknown.
        limit_kib: Option<u64>,
    },
    /// The kernel lacks an opcode the driver needs (named).
    MissingOpcode(&'static str),
    /// The kernel lacks a feature the driver needs (named).
    MissingFeature(&'static str),
    /// The configuration cannot work (named).
    InvalidConfig(&'static str),
    /// Every ring set-up the driver tries was refused (`EINVAL`) and the
    /// kernel is older than 6.0, which the driver needs.
    KernelTooOld {
        /// The running kernel's major and minor version.
        found: (u32, u32),
    },
    /// Another failure while setting up.
    Setup {
        /// What was being done.
        step: &'static str,
        /// What the kernel said.
        source: io::Error,
    },
}

impl fmt::Display for UringError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UringError::DisabledByEnv => write!(
                f,
                "io_uring disabled by the {NO_URING_ENV} environment variable; unset it (or set it to 0) to use io_uring"
            ),
            UringError::DisabledBySysctl(2) => write!(
                f,
                "io_uring is disabled by the kernel.io_uring_disabled sysctl (= 2); \
                 run `sysctl kernel.io_uring_disabled=0` as root, or use the epoll backend"
            ),
            UringError::DisabledBySysctl(v) => write!(
                f,
                "io_uring is restricted by the kernel.io_uring_disabled sysctl (= {v}) and this process \
                 is not in kernel.io_uring_group; set the sysctl to 0 or add the group, or use the epoll backend"
            ),
            UringError::PermissionDenied => write!(
                f,
                "io_uring_setup was denied (EPERM): a seccomp filter (e.g. Docker's default profile) or a \
                 security policy blocks io_uring; allow io_uring_setup/enter/register or use the epoll backend"
            ),
            UringError::NotSupported => write!(
                f,
                "this kernel has no io_uring (ENOSYS): it is too old or built without CONFIG_IO_URING; \
                 Linux 6.0 or newer is needed, or use the epoll backend"
            ),
            UringError::OutOfLockedMemory { limit_kib } => {
                let limit = limit_kib.map_or("unlimited".to_owned(), |k| format!("{k} KiB"));
                write!(
                    f,
                    "io_uring_setup failed for want of memory (ENOMEM): Linux charges io_uring \
                     rings to the locked-memory limit (RLIMIT_MEMLOCK, `ulimit -l`, now {limit}) \
                     of a process without CAP_IPC_LOCK, about 150 KiB per worker; raise it \
                     (LimitMEMLOCK= in a systemd unit, --ulimit memlock in Docker) or use the \
                     epoll backend"
                )
            }
            UringError::KernelTooOld { found: (major, minor) } => write!(
                f,
                "io_uring set-up refused by Linux {major}.{minor}: the driver needs Linux 6.0 or \
                 newer (multishot receive, provided buffer rings); upgrade or use the epoll backend"
            ),
            UringError::MissingOpcode(op) => write!(
                f,
                "the kernel's io_uring lacks the {op} opcode; upgrade to Linux 6.0 or newer, or use the epoll backend"
            ),
            UringError::MissingFeature(feature) => write!(
                f,
                "the kernel's io_uring lacks {feature}; upgrade to Linux 6.0 or newer, or use the epoll backend"
            ),
            UringError::InvalidConfig(what) => write!(f, "invalid io_uring configuration: {what}"),
            UringError::Setup { step, source } => {
                write!(f, "io_uring set-up failed at {step}: {source}")
            }
        }
    }
}

impl std::error::Error for UringError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            UringError::Setup { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Checks, cheaply, that the io_uring driver can run here with `config`:
/// sets up a tiny ring and checks every opcode and feature the driver uses.
///
/// Optional switches (`recv_bundle`, `send_zc_threshold`) that the kernel
/// lacks are not errors: the driver turns them off with a warning.
///
/// # Errors
/// A [`UringError`] naming the reason: the `POLLRING_NO_URING` variable, the
/// `io_uring_disabled` sysctl, `EPERM` (seccomp), `ENOSYS` (no io_uring), a
/// missing opcode or feature, or another set-up failure.
pub fn probe(config: &UringConfig) -> Result<(), UringError> {
    check_config(config)?;
    let ring = build_ring(8, 16, config.sqpoll_idle_ms, config.taskrun)?;
    check_ring(&ring)?;
    // The buffer ring: register a tiny one and take it back.
    let mut bufring = BufRing::new(1, 1)
        .map_err(|source| UringError::Setup { step: "mmap of a buffer ring", source })?;
    bufring.register(&ring.submitter(), false).map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOSYS) => UringError::MissingFeature(
            "provided buffer rings (IORING_REGISTER_PBUF_RING, Linux 5.19)",
        ),
        _ => UringError::Setup { step: "registering a buffer ring", source: e },
    })?;
    bufring.unregister(&ring.submitter());
    Ok(())
}

/// Fails if the environment variable [`NO_URING_ENV`] disables io_uring.
pub(super) fn check_env() -> Result<(), UringError> {
    match std::env::var_os(NO_URING_ENV) {
        Some(v) if !v.is_empty() && v != "0" => Err(UringError::DisabledByEnv),
        _ => Ok(()),
    }
}

/// Validates the sizes in `config` (and the environment switch).
pub(super) fn check_config(config: &UringConfig) -> Result<(), UringError> {
    check_env()?;
    config.check().map_err(UringError::InvalidConfig)
}

impl UringConfig {
    /// Checks the values, whatever the machine: a size no kernel accepts,
    /// a zero `accept_backoff` (a broken listener would spin the worker),
    /// a `wait_batch` of zero or above `cq_entries`, a `min_wait` that does
    /// not fit the kernel's 32-bit microseconds.
    ///
    /// # Errors
    /// What is wrong, as a sentence.
    pub fn check(&self) -> Result<(), &'static str> {
        if self.accept_backoff.is_zero() {
            return Err("accept_backoff must not be zero");
        }
        if !self.entries.is_power_of_two() || self.entries > 32768 {
            return Err("entries must be a power of two of at most 32768");
        }
        if !self.cq_entries.is_power_of_two() || self.cq_entries < self.entries {
            return Err("cq_entries must be a power of two and at least entries");
        }
        if !self.buf_ring_entries.is_power_of_two() || self.buf_ring_entries > 32768 {
            return Err("buf_ring_entries must be a power of two of at most 32768");
        }
        if self.wait_batch == 0 || self.wait_batch > self.cq_entries {
            return Err("wait_batch must be at least 1 and at most cq_entries");
        }
        if self.min_wait.is_some_and(|d| d.as_micros() > u128::from(u32::MAX)) {
            return Err("min_wait must be below 4295 seconds (whole microseconds in 32 bits)");
        }
        Ok(())
    }
}

/// The opcodes the driver submits, with their names for the error.
const REQUIRED_OPCODES: [(u8, &str); 9] = [
    (opcode::AcceptMulti::CODE, "ACCEPT"),
    (opcode::RecvMulti::CODE, "RECV"),
    (opcode::Send::CODE, "SEND"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::Timeout::CODE, "TIMEOUT"),
    (opcode::Shutdown::CODE, "SHUTDOWN"),
    (opcode::Connect::CODE, "CONNECT"),
];

/// Checks the features and opcodes of a built ring.
pub(super) fn check_ring(ring: &IoUring) -> Result<(), UringError> {
    let params = ring.params();
    if !params.is_feature_nodrop() {
        return Err(UringError::MissingFeature(
            "IORING_FEAT_NODROP (no lost completions, Linux 5.5)",
        ));
    }
    if !params.is_feature_ext_arg() {
        return Err(UringError::MissingFeature("IORING_FEAT_EXT_ARG (timed waits, Linux 5.11)"));
    }
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) => UringError::MissingFeature("IORING_REGISTER_PROBE (Linux 5.6)"),
        _ => UringError::Setup { step: "probing opcodes", source: e },
    })?;
    for (code, name) in REQUIRED_OPCODES {
        if !probe.is_supported(code) {
            return Err(UringError::MissingOpcode(name));
        }
    }
    check_multishot_recv(ring)?;
    Ok(())
}

/// Whether the kernel has the zero-copy send opcodes (Linux 6.0/6.1).
pub(super) fn supports_zero_copy(ring: &IoUring) -> bool {
    let mut probe = Probe::new();
    ring.submitter().register_probe(&mut probe).is_ok()
        && probe.is_supported(opcode::SendZc::CODE)
        && probe.is_supported(opcode::SendMsgZc::CODE)
}

/// Multishot recv (Linux 6.0) is a flag, not an opcode, so the opcode probe
/// cannot see it: submit one on a socketpair against a buffer group that
/// does not exist. A kernel that knows multishot recv fails it with
/// `ENOBUFS` (no buffer to select); one that does not, with `EINVAL`.
/// (Multishot accept, Linux 5.19, is older, so it is covered too.)
fn check_multishot_recv(ring: &IoUring) -> Result<(), UringError> {
    let step = "probing multishot recv";
    let (a, _b) = UnixStream::pair()
        .map_err(|source| UringError::Setup { step: "socketpair for the probe", source })?;
    let sqe = opcode::RecvMulti::new(Fd(a.as_raw_fd()), u16::MAX - 1).build();
    // A buffer-select recv carries no buffer pointer; `a` outlives the call.
    let (res, _) = submit_one(ring, &sqe).map_err(|source| UringError::Setup { step, source })?;
    match -res {
        libc::ENOBUFS => Ok(()),
        libc::EINVAL => {
            Err(UringError::MissingFeature("multishot recv (IORING_RECV_MULTISHOT, Linux 6.0)"))
        }
        errno => Err(UringError::Setup { step, source: io::Error::from_raw_os_error(errno) }),
    }
}

/// Whether the kernel reports a zero-length receive (end of stream) from an
/// incrementally consumed buffer ring right: with `IORING_CQE_F_BUF_MORE`,
/// since no byte of the buffer was used and it stays at the ring's head.
/// Kernels from 6.12 until the fix "io_uring/kbuf: fix missing BUF_MORE for
/// incremental buffers at EOF" (2026, taken into stable kernels) leave it at
/// the head but report it consumed; believing that would return to the pool
/// a buffer the kernel goes on filling. Tried with a multishot receive on a
/// socket already at end of stream, from a one-entry ring registered as the
/// driver's buffer group before the driver registers its own. (A kernel that
/// names no buffer in that completion, as 6.18 does, passes.)
///
/// # Errors
/// `EINVAL` when the kernel has no incremental consumption (before 6.12);
/// any other failure of the probe.
pub(super) fn incremental_eof_reported(ring: &IoUring) -> io::Result<bool> {
    let mut buf = vec![0u8; 64].into_boxed_slice();
    let mut bufring = BufRing::new(1, 1)?;
    bufring.register(&ring.submitter(), true)?;
    bufring.push(BufId(0), buf.as_mut_ptr(), buf.len() as u32);
    bufring.publish();
    let outcome = (|| {
        let (a, b) = UnixStream::pair()?;
        b.shutdown(Shutdown::Write)?;
        // The driver's receive, as the driver submits it.
        let sqe = opcode::RecvMulti::new(Fd(a.as_raw_fd()), bufring::BGID).build();
        submit_one(ring, &sqe)
    })();
    // Nothing else selects from the probe's ring, so once the receive has
    // completed (or was never submitted) the kernel has no use for `buf`.
    bufring.unregister(&ring.submitter());
    drop(buf);
    let (res, flags) = outcome?;
    if res != 0 {
        return Err(io::Error::other(format!("a receive at end of stream returned {res}")));
    }
    Ok(cqueue::buffer_select(flags).is_none() || cqueue::buffer_more(flags))
}

/// Submits `sqe` on the probe's `ring` and waits for its completion:
/// `(result, flags)`. Whatever memory `sqe` points at must outlive the call.
fn submit_one(ring: &IoUring, sqe: &squeue::Entry) -> io::Result<(i32, u32)> {
    // SAFETY: during set-up this thread is the ring's only user, so no other
    // submission queue handle exists; the caller keeps what `sqe` points at
    // alive until the completion, awaited below.
    unsafe { ring.submission_shared().push(sqe) }.map_err(|_| io::Error::other("SQ full"))?;
    for _ in 0..2 {
        ring.submitter().submit_and_wait(1)?;
        // SAFETY: this thread is the ring's only user during set-up.
        if let Some(cqe) = unsafe { ring.completion_shared() }.next() {
            return Ok((cqe.result(), cqe.flags()));
        }
    }
    Err(io::Error::other("no completion"))
}

/// Builds the ring with the best set-up flags the kernel accepts, falling
/// back (on `EINVAL`) to fewer.
///
/// Without SQPOLL: `SINGLE_ISSUER | DEFER_TASKRUN | COOP_TASKRUN` (completions
/// are posted only when we wait, in our thread: no interrupts, no locking),
/// then `COOP_TASKRUN`, then nothing. With SQPOLL (which excludes
/// `DEFER_TASKRUN`): `SQPOLL | SINGLE_ISSUER`, then `SQPOLL`.
pub(super) fn build_ring(
    entries: u32,
    cq_entries: u32,
    sqpoll_idle_ms: Option<u32>,
    taskrun: super::TaskRun,
) -> Result<IoUring, UringError> {
    #[derive(Clone, Copy)]
    enum Flags {
        Deferred,
        Coop,
        Plain,
        SqpollSingle(u32),
        Sqpoll(u32),
    }
    let ladder = [Flags::Deferred, Flags::Coop, Flags::Plain];
    let from = match taskrun {
        super::TaskRun::Deferred => 0,
        super::TaskRun::Coop => 1,
        super::TaskRun::Plain => 2,
    };
    let sqpoll;
    let attempts: &[Flags] = match sqpoll_idle_ms {
        None => &ladder[from..],
        Some(idle) => {
            sqpoll = [Flags::SqpollSingle(idle), Flags::Sqpoll(idle)];
            &sqpoll
        }
    };
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    for &attempt in attempts {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cq_entries).setup_submit_all();
        match attempt {
            Flags::Deferred => {
                builder.setup_single_issuer().setup_defer_taskrun().setup_coop_taskrun();
            }
            Flags::Coop => {
                builder.setup_coop_taskrun();
            }
            Flags::Plain => {}
            Flags::SqpollSingle(idle) => {
                builder.setup_sqpoll(idle).setup_single_issuer();
            }
            Flags::Sqpoll(idle) => {
                builder.setup_sqpoll(idle);
            }
        }
        match builder.build(entries) {
            Ok(ring) => return Ok(ring),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!("io_uring_setup refused a flag set (EINVAL); trying fewer flags");
                last = e;
            }
            Err(e) => return Err(classify_setup_error(e)),
        }
    }
    match crate::sys::kernel_version() {
        Some(found) if found < (6, 0) => Err(UringError::KernelTooOld { found }),
        _ => Err(UringError::Setup { step: "io_uring_setup", source: last }),
    }
}

/// Names the reason behind an `io_uring_setup` failure.
#[cold]
fn classify_setup_error(e: io::Error) -> UringError {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => UringError::NotSupported,
        Some(libc::ENOMEM) => UringError::OutOfLockedMemory { limit_kib: memlock_kib() },
        Some(libc::EPERM) | Some(libc::EACCES) => match sysctl_value() {
            Some(v) if v > 0 => UringError::DisabledBySysctl(v),
            _ => UringError::PermissionDenied,
        },
        _ => UringError::Setup { step: "io_uring_setup", source: e },
    }
}

/// This process's soft `RLIMIT_MEMLOCK` in KiB; `None` if unlimited.
fn memlock_kib() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max locked memory"))?;
    let soft = line["Max locked memory".len()..].split_whitespace().next()?;
    soft.parse::<u64>().ok().map(|bytes| bytes / 1024)
}

/// The value of `kernel.io_uring_disabled`, if the kernel has that sysctl.
fn sysctl_value() -> Option<u8> {
    std::fs::read_to_string(SYSCTL_PATH).ok()?.trim().parse().ok()
}
