//! The io_uring driver through its public API: an echo server driven by
//! `turn`, std `TcpStream` clients in threads, 127.0.0.1 only, every test
//! bounded in time.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::num::{NonZeroU32, NonZeroUsize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pollring_backends::buf::{Chain, Pool};
use pollring_backends::net::bind_reuseport;
use pollring_backends::uring::{Uring, UringConfig, UringCounters};
use pollring_backends::{Driver, Event, ListenerId, Share, Token};

const IO_TIMEOUT: Duration = Duration::from_secs(10);
const TEST_DEADLINE: Duration = Duration::from_secs(30);

/// Builds a driver, or `None` (loudly) when io_uring is deliberately disabled.
#[track_caller]
fn driver(buf_size: usize, bufs: u32, config: UringConfig) -> Option<Uring> {
    let pool =
        Pool::new(NonZeroUsize::new(buf_size).unwrap(), NonZeroU32::new(bufs).unwrap()).unwrap();
    match Uring::new(pool, &config) {
        Ok(d) => Some(d),
        Err(e) if std::env::var_os("POLLRING_NO_URING").is_some() => {
            eprintln!("!!!!!!!! SKIPPED: io_uring unavailable ({e}) and POLLRING_NO_URING is set !!!!!!!!");
            None
        }
        Err(e) => panic!("io_uring driver failed to start: {e}"),
    }
}

fn config(entries: u32, cq_entries: u32, ring: u32, reserve: usize) -> UringConfig {
    let mut c = UringConfig::default();
    c.entries = entries;
    c.cq_entries = cq_entries;
    c.buf_ring_entries = ring;
    c.recv_reserve = reserve;
    c
}

fn pattern(client: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| ((j * 7 + client * 13) % 251) as u8).collect()
}

/// A client that writes `payload` (in chunks, concurrently with reading),
/// half-closes, reads the echo to the end and checks it byte for byte.
fn echo_client(
    addr: SocketAddr,
    payload: Vec<u8>,
    chunk: usize,
    done: Arc<AtomicUsize>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut writer = stream.try_clone().unwrap();
        let to_send = payload.clone();
        let w = thread::spawn(move || {
            for chunk in to_send.chunks(chunk) {
                writer.write_all(chunk).expect("client write");
            }
            writer.shutdown(Shutdown::Write).unwrap();
        });
        let mut echoed = Vec::with_capacity(payload.len());
        stream.read_to_end(&mut echoed).expect("client read");
        w.join().unwrap();
        assert_eq!(echoed.len(), payload.len(), "echo length");
        assert!(echoed == payload, "echo bytes differ (lost or reordered data)");
        done.fetch_add(1, Ordering::SeqCst);
    })
}

#[derive(Default)]
struct Stat {
    recvd: usize,
    sent: usize,
    eof: bool,
    closing: bool,
}

/// The echo server: every received buffer is sent back without a copy.
struct Echo {
    drv: Uring,
    events: Vec<Event>,
    conns: HashMap<Token, Stat>,
    closed: usize,
    recv_events: usize,
}

impl Echo {
    fn new(drv: Uring) -> Echo {
        Echo { drv, events: Vec::new(), conns: HashMap::new(), closed: 0, recv_events: 0 }
    }

    fn turn(&mut self) {
        self.drv.turn(Some(Duration::from_millis(20)), &mut self.events).expect("turn");
        let mut events = std::mem::take(&mut self.events);
        for event in events.drain(..) {
            self.handle(event);
        }
        self.events = events;
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Accepted { fd, .. } => {
                let token = self.drv.add(fd).expect("add");
                assert!(
                    self.conns.insert(token, Stat::default()).is_none(),
                    "token reused while live"
                );
            }
            Event::Recv { token, buf } => {
                self.recv_events += 1;
                let st = self.conns.get_mut(&token).expect("recv for unknown token");
                assert!(!st.closing, "Recv after close");
                let mut chain = Chain::new();
                st.recvd += self.drv.pool().data(&buf).len();
                chain.push(self.drv.pool_mut(), buf);
                self.drv.send(token, chain);
            }
            Event::Sent { token, bytes } => {
                if let Some(st) = self.conns.get_mut(&token) {
                    st.sent += bytes;
                }
                self.maybe_close(token);
            }
            Event::Eof { token } => {
                self.conns.get_mut(&token).expect("eof for unknown token").eof = true;
                self.drv.shutdown_write(token);
                self.maybe_close(token);
            }
            Event::Error { token, error } => {
                panic!("connection error on {token:?}: {error}");
            }
            Event::Closed { token } => {
                let st = self.conns.remove(&token).expect("Closed for unknown token");
                assert!(st.closing, "Closed without close");
                self.closed += 1;
            }
            Event::AcceptError { error, .. } => panic!("accept error: {error}"),
            other => panic!("unexpected event {other:?}"),
        }
    }

    fn maybe_close(&mut self, token: Token) {
        if let Some(st) = self.conns.get_mut(&token) {
            if st.eof && st.sent == st.recvd && !st.closing {
                st.closing = true;
                self.drv.close(token);
            }
        }
    }

    /// Turns until `clients` clients finished and every connection closed.
    fn run(&mut self, clients: Vec<thread::JoinHandle<()>>, done: &AtomicUsize) {
        let n = clients.len();
        let start = Instant::now();
        while done.load(Ordering::SeqCst) < n || !self.conns.is_empty() || self.closed < n {
            assert!(start.elapsed() < TEST_DEADLINE, "echo test timed out");
            if clients.iter().any(|c| c.is_finished()) && done.load(Ordering::SeqCst) < n {
                // A client that finished without counting itself panicked.
                if clients.iter().filter(|c| c.is_finished()).count() > done.load(Ordering::SeqCst)
                {
                    break;
                }
            }
            self.turn();
        }
        for c in clients {
            c.join().expect("client failed");
        }
        assert_eq!(self.closed, n);
    }

    /// No buffer leaked: everything in use is lent to the kernel's ring.
    fn assert_no_leak(&mut self) {
        // One more turn lets the ring settle.
        self.turn();
        assert_eq!(
            self.drv.pool().in_use(),
            self.drv.ring_buffers(),
            "buffers leaked (in use beyond what the ring holds)"
        );
    }

    /// The driver's counters, printed for the test log.
    fn counters(&self) -> UringCounters {
        let c = self.drv.counters();
        eprintln!("counters: {c:?}");
        c
    }
}

fn listen(drv: &mut Uring) -> SocketAddr {
    listen_id(drv).0
}

fn listen_id(drv: &mut Uring) -> (SocketAddr, ListenerId) {
    let listener = bind_reuseport("127.0.0.1:0".parse().unwrap(), 1, 1024).unwrap().remove(0);
    let addr = listener.local_addr().unwrap();
    (addr, drv.listen(listener.into(), Share::Alone).unwrap())
}

fn run_echo(drv: Uring, clients: usize, payload_len: usize) -> Echo {
    run_echo_in_chunks(drv, clients, payload_len, 16 * 1024)
}

/// [`run_echo`] with clients that write `chunk` bytes at a time.
fn run_echo_in_chunks(drv: Uring, clients: usize, payload_len: usize, chunk: usize) -> Echo {
    let mut echo = Echo::new(drv);
    let addr = listen(&mut echo.drv);
    let done = Arc::new(AtomicUsize::new(0));
    let handles = (0..clients)
        .map(|i| echo_client(addr, pattern(i, payload_len), chunk, done.clone()))
        .collect();
    echo.run(handles, &done);
    echo.assert_no_leak();
    echo
}

#[test]
fn uring_echo_one_mebibyte_byte_exact() {
    let Some(drv) = driver(4096, 1024, config(256, 1024, 256, 64)) else { return };
    let echo = run_echo(drv, 1, 1 << 20);
    assert!(echo.drv.stats().turns > 0);
    assert!(echo.drv.stats().syscalls > 0);
}

#[test]
fn uring_enobufs_tiny_ring_many_clients_no_loss_no_reorder() {
    // 4 ring entries of 256 bytes for 50 clients: the ring runs dry
    // constantly; starved receives must re-arm without losing a byte.
    let Some(drv) = driver(256, 512, config(64, 256, 4, 0)) else { return };
    let echo = run_echo(drv, 50, 20 * 1024);
    let c = echo.counters();
    assert!(c.recv_starved > 0, "the test never hit ENOBUFS");
    assert!(c.recv_rearmed > 0, "no multishot recv was re-armed");
}

#[test]
fn uring_cq_overflow_tiny_queues_many_connections() {
    let Some(drv) = driver(1024, 1024, config(4, 8, 256, 16)) else { return };
    let echo = run_echo(drv, 40, 64 * 1024);
    let c = echo.counters();
    assert!(c.cq_overflows > 0, "the test never overflowed the CQ");
}

#[test]
fn uring_zero_copy_sends_hold_buffers_until_notified() {
    // Every send zero-copy: its buffers may only go back to the pool after
    // the notification, and the leak check after the run proves they do.
    let mut cfg = config(64, 256, 64, 16);
    cfg.send_zc_threshold = Some(1);
    let Some(drv) = driver(4096, 1024, cfg) else { return };
    let echo = run_echo(drv, 8, 256 * 1024);
    let c = echo.counters();
    assert!(c.zero_copy_sends > 0, "no send went zero-copy");
}

#[test]
fn uring_recv_bundles_echo_byte_exact() {
    let mut cfg = config(64, 256, 16, 0);
    cfg.recv_bundle = true;
    let Some(drv) = driver_having(512, 512, cfg, "recv bundles (6.10)", Uring::recv_bundles) else {
        return;
    };
    let echo = run_echo(drv, 20, 64 * 1024);
    let c = echo.counters();
    assert!(c.bundled_bufs > 0, "no completion carried more than one buffer");
}

/// Builds a driver whose optional kernel feature `what` was asked for in
/// `cfg`, or `None` (loudly) if `has` says the kernel lacks it or io_uring
/// is disabled.
#[track_caller]
fn driver_having(
    buf_size: usize,
    bufs: u32,
    cfg: UringConfig,
    what: &str,
    has: impl Fn(&Uring) -> bool,
) -> Option<Uring> {
    let drv = driver(buf_size, bufs, cfg)?;
    if !has(&drv) {
        eprintln!("!!!!!!!! SKIPPED: kernel lacks {what}");
        return None;
    }
    Some(drv)
}

/// A payload no buffer size in these tests divides: however the receives
/// line up (a slow CI machine lets whole buffers' worth pile up in the
/// socket), each connection's last receive leaves room in its buffer for
/// the next one, so incremental tests always see a shared buffer.
const RAGGED: usize = 64 * 1024 + 300;

/// [`driver_having`] incremental buffer consumption (Linux 6.12).
#[track_caller]
fn incremental_driver(buf_size: usize, bufs: u32, mut cfg: UringConfig) -> Option<Uring> {
    cfg.recv_incremental = true;
    driver_having(buf_size, bufs, cfg, "incremental buffer consumption (6.12)", |d| {
        d.recv_incremental()
    })
}

#[test]
fn uring_incremental_echo_byte_exact() {
    // Receives share ring buffers; each comes back as a view, is sent back
    // from the view, and the buffer returns once all its views are freed.
    let Some(drv) = incremental_driver(4096, 512, config(64, 256, 64, 8)) else { return };
    let mut echo = run_echo_in_chunks(drv, 20, RAGGED, 100);
    let c = echo.counters();
    assert!(c.shared_bufs > 0, "no receive left its buffer to the next one");
    assert_eq!(echo.drv.pool().views(), 0, "views leaked");
    echo.assert_no_leak();
}

#[test]
fn uring_incremental_enobufs_tiny_ring_no_loss_no_reorder() {
    // The ENOBUFS test with incremental consumption on: starved receives
    // re-arm and continue in the partly filled buffers without loss.
    let Some(drv) = incremental_driver(256, 512, config(64, 256, 4, 0)) else { return };
    let echo = run_echo(drv, 50, 20 * 1024);
    let c = echo.counters();
    assert!(c.recv_starved > 0, "the test never hit ENOBUFS");
    assert_eq!(echo.drv.pool().views(), 0, "views leaked");
}

#[test]
fn uring_incremental_cq_overflow_byte_exact() {
    // The kernel reports no offset in a completion: the driver's fill
    // offsets rely on a shared buffer's completions arriving in the order
    // the kernel took the bytes, also when the CQ overflows and multishot
    // receives end and are re-armed.
    let Some(drv) = incremental_driver(16 * 1024, 256, config(4, 8, 64, 16)) else { return };
    let echo = run_echo_in_chunks(drv, 40, RAGGED, 300);
    let c = echo.counters();
    assert!(c.cq_overflows > 0, "the test never overflowed the CQ");
    assert!(c.shared_bufs > 0, "no receive left its buffer to the next one");
    assert_eq!(echo.drv.pool().views(), 0, "views leaked");
}

#[test]
fn uring_incremental_with_bundles_byte_exact() {
    let mut cfg = config(64, 256, 16, 0);
    cfg.recv_bundle = true;
    let Some(drv) = incremental_driver(512, 512, cfg) else { return };
    if !drv.recv_bundles() {
        eprintln!("!!!!!!!! SKIPPED: kernel lacks recv bundles (6.10)");
        return;
    }
    let echo = run_echo_in_chunks(drv, 20, RAGGED, 100);
    let c = echo.counters();
    assert!(c.bundled_bufs > 0, "no completion carried more than one buffer");
    assert!(c.shared_bufs > 0, "no receive left its buffer to the next one");
    assert_eq!(echo.drv.pool().views(), 0, "views leaked");
}

/// Peers that each send a small message and wait, the handler keeping the
/// bytes (a partial frame): how many pool buffers they pin.
fn buffers_pinned_by_small_partial_frames(mut drv: Uring, peers: usize) -> usize {
    let addr = listen(&mut drv);
    let go = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..peers)
        .map(|i| {
            let go = go.clone();
            thread::spawn(move || {
                let mut stream = TcpStream::connect(addr).expect("connect");
                stream.write_all(format!("partial frame {i:04}").as_bytes()).unwrap();
                let start = Instant::now();
                while go.load(Ordering::SeqCst) == 0 && start.elapsed() < TEST_DEADLINE {
                    thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    let mut held: HashMap<Token, Chain> = HashMap::new();
    let mut bytes = 0;
    let mut events = Vec::new();
    let start = Instant::now();
    while bytes < peers * 18 {
        assert!(start.elapsed() < TEST_DEADLINE, "only {bytes} bytes arrived");
        drv.turn(Some(Duration::from_millis(20)), &mut events).unwrap();
        for event in events.drain(..) {
            match event {
                Event::Accepted { fd, .. } => {
                    held.insert(drv.add(fd).unwrap(), Chain::new());
                }
                Event::Recv { token, buf } => {
                    bytes += drv.pool().data(&buf).len();
                    let chain = held.get_mut(&token).expect("recv for unknown token");
                    chain.push_or_copy(drv.pool_mut(), buf, 1024);
                }
                other => panic!("unexpected event {other:?}"),
            }
        }
    }
    assert_eq!(bytes, peers * 18);
    let pinned = drv.pool().in_use() - drv.ring_buffers();
    go.store(1, Ordering::SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    for (token, mut chain) in held {
        chain.clear(drv.pool_mut());
        drv.close(token);
    }
    for _ in 0..10 {
        drv.turn(Some(Duration::from_millis(10)), &mut events).unwrap();
        events.clear();
    }
    assert_eq!(drv.pool().views(), 0, "views leaked");
    assert_eq!(drv.pool().in_use(), drv.ring_buffers(), "buffers leaked");
    pinned
}

#[test]
fn uring_incremental_small_partial_frames_share_buffers() {
    // 200 peers x 18 bytes = 3.6 KB: one buffer's worth with incremental
    // consumption, 200 buffers without.
    let peers = 200;
    let Some(drv) = incremental_driver(4096, 1024, config(256, 1024, 512, 16)) else { return };
    let pinned = buffers_pinned_by_small_partial_frames(drv, peers);
    let Some(plain) = driver(4096, 1024, config(256, 1024, 512, 16)) else { return };
    let pinned_plain = buffers_pinned_by_small_partial_frames(plain, peers);
    eprintln!(
        "buffers pinned by {peers} partial frames: {pinned} incremental, {pinned_plain} without"
    );
    assert_eq!(pinned_plain, peers, "without incremental consumption, one buffer per peer");
    assert!(pinned <= 4, "{pinned} buffers pinned by {peers} partial frames of 18 bytes");
}

#[test]
fn uring_incremental_drips_beside_a_stream_pin_two_buffers() {
    // Peer A sends 100 single bytes, each followed by 1,000 bytes of peer
    // B's: every drip lands in whichever buffer the kernel is filling with
    // B's stream. A's bytes are held (a frame still incomplete), B's are
    // consumed. Linking A's views pinned a buffer per 4 drips (25 here);
    // `push_or_copy` copies them into one buffer behind the first.
    let Some(mut drv) = incremental_driver(4096, 1024, config(256, 1024, 64, 16)) else { return };
    let addr = listen(&mut drv);
    let mut a = TcpStream::connect(addr).expect("connect");
    let mut b = TcpStream::connect(addr).expect("connect");
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    let a_addr = a.local_addr().unwrap();
    let (mut held, mut a_token, mut b_token, mut b_bytes) = (Chain::new(), None, None, 0);
    let mut events = Vec::new();
    let start = Instant::now();
    for drip in 0..100 {
        a.write_all(b"x").unwrap();
        b.write_all(&[7; 1000]).unwrap();
        while held.len() < drip + 1 || b_bytes < (drip + 1) * 1000 {
            assert!(start.elapsed() < TEST_DEADLINE, "drip {drip} did not arrive");
            drv.turn(Some(Duration::from_millis(20)), &mut events).unwrap();
            for event in events.drain(..) {
                match event {
                    Event::Accepted { fd, peer, .. } => {
                        let token = drv.add(fd).unwrap();
                        if peer == Some(a_addr) {
                            a_token = Some(token);
                        } else {
                            b_token = Some(token);
                        }
                    }
                    Event::Recv { token, buf } if Some(token) == a_token => {
                        held.push_or_copy(drv.pool_mut(), buf, 1024);
                    }
                    Event::Recv { token, buf } if Some(token) == b_token => {
                        b_bytes += drv.pool().data(&buf).len();
                        drv.pool_mut().free(buf);
                    }
                    other => panic!("unexpected event {other:?}"),
                }
            }
        }
    }
    let pinned = drv.pool().in_use() - drv.ring_buffers();
    eprintln!("buffers pinned by 100 drips: {pinned}, views alive: {}", drv.pool().views());
    assert_eq!(held.len(), 100);
    assert!(pinned <= 2, "{pinned} buffers pinned by 100 one-byte receives");
    assert!(drv.pool().views() <= 1, "{} views alive", drv.pool().views());
    held.clear(drv.pool_mut());
}

#[test]
fn uring_incremental_end_of_stream_after_a_partial_buffer_loses_nothing() {
    // Each peer sends a few bytes (into the head buffer, which stays in the
    // ring) and half-closes, so the end of stream is a zero-length receive
    // while that buffer is partly used. The buffer must stay the kernel's:
    // were it returned to the pool and the ring, the next peer's bytes would
    // land past its old fill offset and be read from the wrong place. (Linux
    // 6.18 names no buffer in that completion; kernels that name one without
    // BUF_MORE get incremental consumption turned off by the start-up probe.)
    let Some(mut drv) = incremental_driver(4096, 64, config(64, 256, 8, 0)) else { return };
    let addr = listen(&mut drv);
    let mut events = Vec::new();
    for round in 0..40 {
        let sent = pattern(round, 10 + round * 3);
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.write_all(&sent).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let (mut token, mut got, mut eof) = (None, Vec::new(), false);
        let start = Instant::now();
        while !eof {
            assert!(start.elapsed() < TEST_DEADLINE, "round {round}: no end of stream");
            drv.turn(Some(Duration::from_millis(20)), &mut events).unwrap();
            for event in events.drain(..) {
                match event {
                    Event::Accepted { fd, .. } => token = Some(drv.add(fd).unwrap()),
                    Event::Recv { token: t, buf } => {
                        assert_eq!(Some(t), token);
                        got.extend_from_slice(drv.pool().data(&buf));
                        drv.pool_mut().free(buf);
                    }
                    Event::Eof { token: t } if Some(t) == token => eof = true,
                    other => panic!("round {round}: unexpected event {other:?}"),
                }
            }
        }
        assert_eq!(got, sent, "round {round}: bytes differ");
        drv.close(token.unwrap());
        while !events.drain(..).any(|e| matches!(e, Event::Closed { .. })) {
            assert!(start.elapsed() < TEST_DEADLINE, "round {round}: no Closed");
            drv.turn(Some(Duration::from_millis(20)), &mut events).unwrap();
        }
    }
    let c = drv.counters();
    eprintln!("counters: {c:?}");
    assert!(c.shared_bufs > 0, "no receive left its buffer in the ring");
    assert_eq!(drv.pool().views(), 0, "views leaked");
    assert_eq!(drv.pool().in_use(), drv.ring_buffers(), "buffers leaked");
}

#[test]
fn uring_registered_ring_fd_is_released_with_its_driver() {
    // A thread has 16 registered ring slots; each driver must give its
    // slot back when dropped, or the 17th on a thread cannot register.
    let mut cfg = config(8, 16, 8, 0);
    cfg.register_ring_fd = true;
    for i in 0..20 {
        let Some(drv) = driver(4096, 16, cfg.clone()) else { return };
        assert!(
            drv.ring_fd_registered(),
            "driver {i} on this thread could not register its ring fd"
        );
    }
}

#[test]
fn uring_registered_ring_fd_echo_byte_exact() {
    // Every enter goes by the registered index: an echo that waits, times
    // out and submits works the same.
    let mut cfg = config(64, 256, 64, 16);
    cfg.register_ring_fd = true;
    let Some(drv) = driver(4096, 1024, cfg) else { return };
    assert!(drv.ring_fd_registered(), "the ring fd was not registered");
    let echo = run_echo(drv, 10, 256 * 1024);
    assert!(echo.drv.stats().syscalls > 0);
}

#[test]
fn uring_close_during_inflight_send_frees_every_buffer() {
    let Some(drv) = driver(64 * 1024, 256, config(64, 256, 16, 8)) else { return };
    close_during_inflight_send(drv);
}

#[test]
fn uring_close_during_inflight_send_bundle_frees_every_buffer() {
    let Some(drv) = send_bundle_driver(64 * 1024, 256, config(64, 256, 16, 8)) else { return };
    let drv = close_during_inflight_send(drv);
    assert!(drv.counters().bundled_sends > 0, "the send was not a bundle");
    assert!(drv.counters().send_rings_retired > 0, "a cancelled bundle's ring must be retired");
}

/// Sends 12 MiB to a peer that never reads, closes while the send is in
/// flight, and checks that exactly one `Closed` comes and no buffer leaks.
fn close_during_inflight_send(mut drv: Uring) -> Uring {
    let addr = listen(&mut drv);
    // A client that never reads, and holds the connection open for a while.
    let client = thread::spawn(move || {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        thread::sleep(Duration::from_secs(2));
        drop(stream);
    });
    let mut events = Vec::new();
    let start = Instant::now();
    let token = loop {
        assert!(start.elapsed() < TEST_DEADLINE, "no accept");
        drv.turn(Some(Duration::from_millis(50)), &mut events).unwrap();
        if let Some(Event::Accepted { fd, .. }) = events.pop() {
            break drv.add(fd).unwrap();
        }
    };
    events.clear();
    // 12 MiB: far more than the socket buffers hold.
    let mut chain = Chain::new();
    let data = vec![0x5a; 64 * 1024];
    for _ in 0..192 {
        chain.extend_from_slice(drv.pool_mut(), &data).unwrap();
    }
    drv.send(token, chain);
    let mut sent = 0;
    let start = Instant::now();
    while sent == 0 || start.elapsed() < Duration::from_millis(200) {
        assert!(start.elapsed() < TEST_DEADLINE, "nothing was sent");
        drv.turn(Some(Duration::from_millis(50)), &mut events).unwrap();
        for e in events.drain(..) {
            match e {
                Event::Sent { bytes, .. } => sent += bytes,
                // The partial send completes when the peer goes away, and the
                // peer's end of stream may come in the same turn (always so
                // when the turn waits for a batch of completions).
                Event::Eof { .. } if sent > 0 => {}
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert!(sent < 192 * 64 * 1024, "the peer does not read: the send must still be in flight");
    drv.close(token);
    let start = Instant::now();
    let mut closed = 0;
    while closed == 0 {
        assert!(start.elapsed() < TEST_DEADLINE, "Closed never came");
        drv.turn(Some(Duration::from_millis(50)), &mut events).unwrap();
        for e in events.drain(..) {
            match e {
                Event::Closed { token: t } => {
                    assert_eq!(t, token);
                    closed += 1;
                }
                Event::Sent { .. } => {} // handed out before close took effect is allowed only in the same turn
                other => panic!("event after close: {other:?}"),
            }
        }
    }
    // Exactly one Closed: nothing more comes.
    for _ in 0..3 {
        drv.turn(Some(Duration::from_millis(20)), &mut events).unwrap();
        assert!(events.is_empty(), "events after Closed: {events:?}");
    }
    assert_eq!(drv.pool().in_use(), drv.ring_buffers(), "buffers of the closed send leaked");
    client.join().unwrap();
    drv
}

/// [`driver_having`] send bundles (Linux 6.10).
#[track_caller]
fn send_bundle_driver(buf_size: usize, bufs: u32, mut cfg: UringConfig) -> Option<Uring> {
    cfg.send_bundle = true;
    driver_having(buf_size, bufs, cfg, "send bundles (6.10)", Uring::send_bundles)
}

#[test]
fn uring_send_bundles_echo_byte_exact() {
    // Small buffers: each turn's output is many segments, sent as bundles.
    let mut cfg = config(64, 256, 64, 16);
    cfg.send_bundle_rings = 4; // fewer than the clients: the rest use sendmsg
    let Some(drv) = send_bundle_driver(512, 2048, cfg) else { return };
    let echo = run_echo(drv, 20, 256 * 1024);
    let c = echo.drv.counters();
    eprintln!("counters: {c:?}, send rings: {}", echo.drv.send_rings());
    assert!(c.bundled_sends > 0, "no send went out as a bundle");
    assert!(echo.drv.send_rings() <= 4, "more send rings than allowed");
    // Each full send's ring was checked against the kernel's head (release
    // builds too, for the first reuses) and found empty.
    assert!(echo.drv.send_rings_reused(), "a reused ring was not empty");
    assert!(c.send_rings_retired < c.bundled_sends, "rings were retired instead of reused");
}

#[test]
fn uring_send_bundles_to_a_slow_reader_byte_exact() {
    // The peer reads slowly, so bundles meet a full socket buffer: the
    // kernel sends them in parts (in debug builds the driver checks the
    // ring's head with the kernel after every full send).
    let Some(mut drv) = send_bundle_driver(4096, 2048, config(64, 256, 64, 16)) else { return };
    let addr = listen(&mut drv);
    let total = 6 << 20;
    let client = thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut got = Vec::with_capacity(total);
        let mut buf = vec![0; 64 * 1024];
        while got.len() < total {
            let n = stream.read(&mut buf).expect("client read");
            assert!(n > 0, "EOF after {} bytes", got.len());
            got.extend_from_slice(&buf[..n]);
            thread::sleep(Duration::from_micros(300));
        }
        assert!(got == pattern(7, total), "bytes lost, duplicated or reordered");
    });
    let mut events = Vec::new();
    let start = Instant::now();
    let token = loop {
        assert!(start.elapsed() < TEST_DEADLINE, "no accept");
        drv.turn(Some(Duration::from_millis(50)), &mut events).unwrap();
        if let Some(Event::Accepted { fd, .. }) = events.pop() {
            break drv.add(fd).unwrap();
        }
    };
    events.clear();
    // Queue the payload in slices as the pool allows, as a server would.
    let payload = pattern(7, total);
    let (mut queued, mut sent) = (0, 0);
    while sent < total {
        assert!(start.elapsed() < TEST_DEADLINE, "sent only {sent} of {total}");
        if queued < total && drv.pool().available() > 64 {
            let n = (total - queued).min(128 * 1024);
            let mut chain = Chain::new();
            chain.extend_from_slice(drv.pool_mut(), &payload[queued..queued + n]).unwrap();
            drv.send(token, chain);
            queued += n;
        }
        drv.turn(Some(Duration::from_millis(5)), &mut events).unwrap();
        for e in events.drain(..) {
            match e {
                Event::Sent { bytes, .. } => sent += bytes,
                Event::Recv { buf, .. } => drv.pool_mut().free(buf),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    client.join().expect("client");
    let c = drv.counters();
    eprintln!("counters: {c:?}");
    assert!(c.bundled_sends > 0, "no send went out as a bundle");
    drv.close(token);
    for _ in 0..5 {
        drv.turn(Some(Duration::from_millis(10)), &mut events).unwrap();
        events.clear();
    }
    assert_eq!(drv.pool().in_use(), drv.ring_buffers(), "buffers leaked");
}

#[test]
fn uring_pause_resume_loses_no_bytes() {
    let Some(drv) = driver(1024, 1024, config(64, 256, 64, 16)) else { return };
    let mut echo = Echo::new(drv);
    let addr = listen(&mut echo.drv);
    let done = Arc::new(AtomicUsize::new(0));
    let client = echo_client(addr, pattern(3, 512 * 1024), 16 * 1024, done.clone());
    // Echo until some bytes arrived, then pause.
    let start = Instant::now();
    while echo.conns.values().all(|s| s.recvd == 0) {
        assert!(start.elapsed() < TEST_DEADLINE, "nothing received");
        echo.turn();
    }
    let token = *echo.conns.keys().next().unwrap();
    echo.drv.pause_recv(token);
    // A paused connection may still deliver receives completed before the
    // pause took effect; after that, nothing.
    for _ in 0..5 {
        echo.turn();
    }
    let recv_events = echo.recv_events;
    for _ in 0..10 {
        echo.turn();
    }
    assert_eq!(echo.recv_events, recv_events, "Recv while paused");
    echo.drv.resume_recv(token);
    echo.run(vec![client], &done);
    echo.assert_no_leak();
}

#[test]
fn uring_waker_wakes_a_blocked_turn() {
    let Some(mut drv) = driver(1024, 64, config(64, 256, 16, 0)) else { return };
    let waker = drv.waker();
    let t = thread::spawn(move || {
        thread::sleep(Duration::from_millis(100));
        waker.wake().unwrap();
    });
    let mut events = Vec::new();
    let start = Instant::now();
    while !events.iter().any(|e| matches!(e, Event::Wake)) {
        assert!(start.elapsed() < Duration::from_secs(10), "no Wake");
        drv.turn(Some(Duration::from_secs(5)), &mut events).unwrap();
    }
    assert!(start.elapsed() < Duration::from_secs(4), "turn was not woken");
    t.join().unwrap();
    // A second wake works too (the poll stays armed or is re-armed).
    events.clear();
    drv.waker().wake().unwrap();
    drv.turn(Some(Duration::from_secs(5)), &mut events).unwrap();
    assert!(events.iter().any(|e| matches!(e, Event::Wake)));
}

#[test]
fn uring_unlisten_and_drop_with_live_connections() {
    let Some(mut drv) = driver(1024, 256, config(64, 256, 64, 0)) else { return };
    let (addr, listener) = listen_id(&mut drv);
    let client = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.write_all(b"hello").unwrap();
        let mut buf = Vec::new();
        // The server drops the driver: EOF (or reset).
        let _ = s.read_to_end(&mut buf);
    });
    let mut events = Vec::new();
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < 5 {
        assert!(start.elapsed() < TEST_DEADLINE, "no data");
        drv.turn(Some(Duration::from_millis(50)), &mut events).unwrap();
        for e in events.drain(..) {
            match e {
                Event::Accepted { fd, .. } => {
                    drv.add(fd).unwrap();
                }
                Event::Recv { buf, .. } => {
                    got.extend_from_slice(drv.pool().data(&buf));
                    drv.pool_mut().free(buf);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }
    assert_eq!(got, b"hello");
    drv.unlisten(listener);
    // The listener is closed once its accept is cancelled: connecting fails.
    let start = Instant::now();
    while TcpStream::connect(addr).is_ok() {
        assert!(start.elapsed() < TEST_DEADLINE, "listener still open after unlisten");
        drv.turn(Some(Duration::from_millis(20)), &mut events).unwrap();
        for e in events.drain(..) {
            if let Event::Accepted { fd, .. } = e {
                drop(fd);
            }
        }
    }
    // Dropping the driver with a live connection closes it (the client sees EOF).
    drop(drv);
    client.join().unwrap();
}
