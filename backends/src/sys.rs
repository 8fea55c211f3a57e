//! Raw system calls, each wrapped once so the rest of the crate sees `io::Result`.
//!
//! This is the only place besides the drivers' kernel-memory code where `libc`
//! is called. `EINTR` is *not* retried here: the driver that waits decides
//! (a wait interrupted by a signal is simply an empty turn).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Turns a libc return value of `-1` into `io::Error::last_os_error()`.
/// Each caller makes its own `unsafe` call, justified where it is made.
pub(crate) fn cvt<T: MinusOne>(res: T) -> io::Result<T> {
    if res == T::MINUS_ONE {
        Err(io::Error::last_os_error())
    } else {
        Ok(res)
    }
}

/// The integer types libc functions return, with their `-1`.
pub(crate) trait MinusOne: PartialEq + Copy {
    const MINUS_ONE: Self;
}

impl MinusOne for i32 {
    const MINUS_ONE: i32 = -1;
}

impl MinusOne for i64 {
    const MINUS_ONE: i64 = -1;
}

impl MinusOne for isize {
    const MINUS_ONE: isize = -1;
}

/// Creates a non-blocking, close-on-exec eventfd with a zero counter.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers; the flags are valid constants.
    let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })?;
    // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd counter. `EAGAIN` (counter saturated) already means
/// "a wake-up is pending", so it counts as success.
pub(crate) fn eventfd_signal(fd: RawFd) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: `one` lives across the call and is 8 bytes, as eventfd requires.
    match cvt(unsafe { libc::write(fd, (&one as *const u64).cast(), 8) }) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

/// Resets an eventfd counter to zero (non-blocking read).
pub(crate) fn eventfd_drain(fd: RawFd) {
    let mut value: u64 = 0;
    // SAFETY: `value` is a writable 8-byte location for the duration of the call.
    let _ = cvt(unsafe { libc::read(fd, (&mut value as *mut u64).cast(), 8) });
}

/// `accept4` with `SOCK_NONBLOCK | SOCK_CLOEXEC`, returning the peer address.
pub(crate) fn accept(listener: RawFd) -> io::Result<(OwnedFd, Option<SocketAddr>)> {
    // SAFETY: an all-zero sockaddr_storage is a valid (empty) value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` are valid for writes and `len` holds the storage size.
    let fd = cvt(unsafe {
        libc::accept4(
            listener,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    // SAFETY: accept4 returned a fresh descriptor that nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok((fd, sockaddr_to_std(&storage)))
}

/// The peer address of a connected socket.
pub(crate) fn peer_addr(fd: &OwnedFd) -> Option<SocketAddr> {
    // SAFETY: an all-zero sockaddr_storage is a valid (empty) value.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` are valid for writes and `len` holds the storage size.
    cvt(unsafe {
        libc::getpeername(
            fd.as_raw_fd(),
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })
    .ok()?;
    sockaddr_to_std(&storage)
}

fn sockaddr_to_std(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: ss_family says the storage holds a sockaddr_in, which is
            // smaller than sockaddr_storage and has a compatible alignment.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// `recv` into `buf`; `Ok(0)` is end of stream.
pub(crate) fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
    cvt(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) }).map(|n| n as usize)
}

/// `writev` over iovecs that the caller keeps alive and unmodified for the call.
///
/// `MSG_NOSIGNAL` semantics come from `sendmsg`: a peer that vanished gives
/// `EPIPE` instead of killing the process with `SIGPIPE`.
pub(crate) fn sendmsg(fd: RawFd, iov: &[libc::iovec]) -> io::Result<usize> {
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = iov.len() as _;
    // SAFETY: `msg` and the `iov` slice it points at live across the call.
    // The kernel only reads the memory the iovecs name and fails with EFAULT
    // on an unmapped address, so no iovec can make the call unsound; which
    // bytes go out is the caller's business (the epoll driver names only
    // filled ranges of its own pool's buffers).
    cvt(unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) })
        .map(|n| n as usize)
}

/// A non-blocking, close-on-exec TCP socket of `addr`'s family, with
/// `TCP_NODELAY` like accepted sockets (which inherit it from their
/// listener, see [`crate::net::bind_reuseport`]).
pub(crate) fn tcp_socket(addr: &SocketAddr) -> io::Result<socket2::Socket> {
    let ty = socket2::Type::STREAM.nonblocking().cloexec();
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(*addr),
        ty,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    Ok(socket)
}

/// Starts a non-blocking connect: `Ok(true)` if it completed at once,
/// `Ok(false)` if it is in progress (`EINPROGRESS`), or the error.
pub(crate) fn start_connect(socket: &socket2::Socket, addr: &SocketAddr) -> io::Result<bool> {
    match socket.connect(&(*addr).into()) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The pending error of a socket (`SO_ERROR`), cleared by reading it.
pub(crate) fn take_socket_error(fd: &OwnedFd) -> io::Result<Option<io::Error>> {
    socket2::SockRef::from(fd).take_error()
}

/// `shutdown(fd, SHUT_WR)`: sends FIN after queued data.
pub(crate) fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown takes no pointer; a stale or foreign `fd` gives an
    // error (EBADF, ENOTSOCK), never memory unsafety.
    cvt(unsafe { libc::shutdown(fd, libc::SHUT_WR) }).map(drop)
}

/// Anonymous private mapping, lazily backed by the kernel (untouched pages
/// cost no RSS), page aligned.
pub(crate) fn mmap_anonymous(len: usize) -> io::Result<std::ptr::NonNull<u8>> {
    // SAFETY: a NULL hint with MAP_PRIVATE|MAP_ANONYMOUS maps fresh memory
    // that aliases nothing; we check MAP_FAILED below.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    std::ptr::NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned NULL"))
}

/// Unmaps a region from [`mmap_anonymous`].
///
/// # Safety
/// `ptr`/`len` must come from one successful `mmap_anonymous` call, and no
/// reference into the region (nor any kernel operation on it) may outlive this.
pub(crate) unsafe fn munmap(ptr: std::ptr::NonNull<u8>, len: usize) {
    // SAFETY: the caller guarantees the region is ours and no longer used.
    unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
}

/// The running kernel's `(major, minor)` version, from `uname(2)`.
pub(crate) fn kernel_version() -> Option<(u32, u32)> {
    // SAFETY: an all-zero utsname is a valid value (arrays of zero bytes).
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `uts` is valid for writes for the whole call.
    cvt(unsafe { libc::uname(&mut uts) }).ok()?;
    let release: Vec<u8> = uts.release.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    let release = std::str::from_utf8(&release).ok()?;
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The kernel's `struct io_uring_buf_status`.
#[repr(C)]
struct BufStatus {
    buf_group: u32,
    head: u32,
    resv: [u32; 8],
}

/// `IORING_REGISTER_PBUF_STATUS` (Linux 6.8): the head of provided buffer
/// ring `bgid` of io_uring `ring_fd`.
pub(crate) fn pbuf_ring_head(ring_fd: RawFd, bgid: u16) -> io::Result<u16> {
    const IORING_REGISTER_PBUF_STATUS: libc::c_long = 26;
    let mut status = BufStatus { buf_group: bgid as u32, head: 0, resv: [0; 8] };
    // SAFETY: `status` is a valid, writable `io_uring_buf_status` for the whole call,
    // and the kernel reads and writes only that one struct (nr_args 1).
    cvt(unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring_fd as libc::c_long,
            IORING_REGISTER_PBUF_STATUS,
            &mut status as *mut BufStatus,
            1 as libc::c_long,
        )
    })?;
    Ok(status.head as u16)
}

/// The kernel's `struct __kernel_timespec`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct KernelTimespec {
    tv_sec: i64,
    tv_nsec: i64,
}

impl From<std::time::Duration> for KernelTimespec {
    fn from(d: std::time::Duration) -> KernelTimespec {
        KernelTimespec {
            tv_sec: d.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(d.subsec_nanos()),
        }
    }
}

/// The kernel's `struct io_uring_getevents_arg` (`IORING_ENTER_EXT_ARG`).
#[repr(C)]
struct GetEventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

/// `IORING_ENTER_REGISTERED_RING`: `fd` is an index from
/// [`io_uring_register_ring_fd`], not a descriptor.
pub(crate) const ENTER_REGISTERED_RING: u32 = 1 << 4;
const ENTER_EXT_ARG: u32 = 1 << 3;

/// `io_uring_enter(2)`: submits `to_submit` SQEs and waits for
/// `min_complete` completions, at most `timeout` when one is given.
/// `flags` are `IORING_ENTER_*` bits; `EXT_ARG` is added for a timeout or a
/// `min_wait_usec`: once that many microseconds have passed, the wait ends
/// as soon as one completion is there (`IORING_FEAT_MIN_TIMEOUT`, Linux 6.13;
/// without a `timeout` the kernel ends it then even with none).
pub(crate) fn io_uring_enter(
    fd: RawFd,
    to_submit: u32,
    min_complete: u32,
    flags: u32,
    timeout: Option<&KernelTimespec>,
    min_wait_usec: u32,
) -> io::Result<usize> {
    let arg = (timeout.is_some() || min_wait_usec > 0).then(|| GetEventsArg {
        sigmask: 0,
        sigmask_sz: 0,
        min_wait_usec,
        ts: timeout.map_or(0, |ts| ts as *const KernelTimespec as u64),
    });
    let (flags, arg_ptr, arg_len) = match &arg {
        Some(arg) => {
            (flags | ENTER_EXT_ARG, arg as *const GetEventsArg, std::mem::size_of::<GetEventsArg>())
        }
        None => (flags, std::ptr::null(), 0),
    };
    // SAFETY: `arg` and the timespec it points at (or null: no timeout)
    // outlive the call; without EXT_ARG the argument is null with length 0
    // (no signal mask). The SQEs
    // submitted were queued under the driver's own memory contract.
    let n = cvt(unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            fd as libc::c_long,
            to_submit as libc::c_long,
            min_complete as libc::c_long,
            flags as libc::c_long,
            arg_ptr,
            arg_len as libc::c_long,
        )
    })?;
    Ok(n as usize)
}

/// The kernel's `struct io_uring_rsrc_update`.
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// `IORING_REGISTER_RING_FDS` (Linux 5.18): registers io_uring `ring_fd`
/// with itself and returns the index to pass with
/// [`ENTER_REGISTERED_RING`], which spares the kernel a descriptor lookup
/// on every enter. The registration belongs to the calling thread (at most
/// 16 per thread) and holds a reference to the ring: it lasts until
/// [`io_uring_unregister_ring_fd`] or the thread's exit, not the ring's close.
pub(crate) fn io_uring_register_ring_fd(ring_fd: RawFd) -> io::Result<u32> {
    const IORING_REGISTER_RING_FDS: libc::c_long = 20;
    // Offset u32::MAX: let the kernel pick a free slot.
    let mut update = RsrcUpdate { offset: u32::MAX, resv: 0, data: ring_fd as u64 };
    ring_fd_update(ring_fd, IORING_REGISTER_RING_FDS, &mut update)?;
    Ok(update.offset)
}

/// `IORING_UNREGISTER_RING_FDS`: gives back the calling thread's
/// registration `index` from [`io_uring_register_ring_fd`].
pub(crate) fn io_uring_unregister_ring_fd(ring_fd: RawFd, index: u32) -> io::Result<()> {
    const IORING_UNREGISTER_RING_FDS: libc::c_long = 21;
    let mut update = RsrcUpdate { offset: index, resv: 0, data: 0 };
    ring_fd_update(ring_fd, IORING_UNREGISTER_RING_FDS, &mut update)
}

/// `io_uring_register(ring_fd, opcode, update, 1)` for the ring fd
/// registration opcodes, which take one `io_uring_rsrc_update`.
fn ring_fd_update(ring_fd: RawFd, opcode: libc::c_long, update: &mut RsrcUpdate) -> io::Result<()> {
    // SAFETY: `update` is a valid, writable `io_uring_rsrc_update` for the whole
    // call; the kernel reads and writes that one entry (nr_args 1).
    cvt(unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring_fd as libc::c_long,
            opcode,
            update as *mut RsrcUpdate,
            1 as libc::c_long,
        )
    })?;
    Ok(())
}
