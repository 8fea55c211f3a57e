//! Messages from any thread: a `Sender` reaches connections and workers,
//! across workers too, in order per sender, bounded (a full mailbox hands
//! the message back, nothing is dropped silently), and a message for a
//! connection that has closed is dropped on the worker, destructor and all.

#[macro_use]
mod util;

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use pollring::{
    Backend, ConnAddr, Cx, Handler, SendError, Sender, ServerHandle, WorkerCx, WorkerId,
};
use util::*;

enum Msg {
    /// Written out as a line (to a connection), reported (to a worker).
    Text(String),
    /// Written out as 5 bytes: `from`, then `seq` little-endian.
    Seq { from: u8, seq: u32 },
    /// Blocks the worker in `on_message` for this long, then writes
    /// `unblocked`.
    Block(Duration),
    /// Written out as `tracked N`; counts its drops.
    Tracked(Tracked),
}

#[derive(Debug)]
enum Report {
    /// A connection opened: its address, for senders.
    Open(ConnAddr),
    /// `on_message` began blocking its worker.
    Blocked,
    /// `on_worker_message` ran.
    WorkerMsg { at: WorkerId, thread: String, text: String },
}

/// What the handlers of one server share with the test.
#[derive(Clone)]
struct Probe {
    reports: mpsc::Sender<Report>,
    /// The first connection of each worker, which the others' lines reach.
    first: Arc<Mutex<Vec<Option<ConnAddr>>>>,
    /// `on_message` calls.
    delivered: Arc<AtomicUsize>,
}

impl Probe {
    fn new(workers: usize) -> (Probe, mpsc::Receiver<Report>) {
        let (reports, rx) = mpsc::channel();
        let first = Arc::new(Mutex::new(vec![None; workers]));
        (Probe { reports, first, delivered: Arc::default() }, rx)
    }
}

/// Greets each connection with `w<worker>`, writes out what messages
/// bring, and sends each line a connection receives to the first
/// connection of the next worker. At its first tick, greets the next
/// worker with a worker message.
struct Mail {
    worker: WorkerId,
    probe: Probe,
}

impl Mail {
    fn next_worker(&self, workers: usize) -> WorkerId {
        WorkerId((self.worker.0 + 1) % workers)
    }
}

impl Handler for Mail {
    type Conn = ();
    type Message = Msg;

    fn on_open(&mut self, cx: &mut Cx<'_, Msg>) {
        let mut first = self.probe.first.lock().unwrap();
        first[self.worker.0].get_or_insert(cx.addr());
        cx.write(format!("w{}\n", self.worker.0).as_bytes());
        let _ = self.probe.reports.send(Report::Open(cx.addr()));
    }

    fn on_data(&mut self, _: &mut (), cx: &mut Cx<'_, Msg>) {
        while let Some(end) = cx.input().find(0, b'\n') {
            let line = String::from_utf8_lossy(cx.input().peek(end).unwrap()).into_owned();
            cx.consume(end + 1);
            let sender = cx.sender();
            let to = self.probe.first.lock().unwrap()[self.next_worker(sender.workers()).0];
            let text = format!("w{} says {line}", self.worker.0);
            match to.map(|to| sender.send(to, Msg::Text(text))) {
                Some(Ok(())) => {}
                Some(Err(e)) => cx.write(format!("not sent: {e}\n").as_bytes()),
                None => cx.write(b"nobody there\n"),
            }
        }
    }

    fn on_message(&mut self, _: &mut (), cx: &mut Cx<'_, Msg>, msg: Msg) {
        self.probe.delivered.fetch_add(1, Ordering::SeqCst);
        match msg {
            Msg::Text(text) => cx.write(format!("{text}\n").as_bytes()),
            Msg::Seq { from, seq } => {
                cx.write(&[from]);
                cx.write(&seq.to_le_bytes());
            }
            Msg::Block(pause) => {
                let _ = self.probe.reports.send(Report::Blocked);
                std::thread::sleep(pause);
                cx.write(b"unblocked\n");
            }
            Msg::Tracked(t) => cx.write(format!("tracked {}\n", t.value).as_bytes()),
        }
    }

    fn on_worker_message(&mut self, cx: &mut WorkerCx<'_, Msg>, msg: Msg) {
        if let Msg::Text(text) = msg {
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            let _ = self.probe.reports.send(Report::WorkerMsg { at: cx.worker(), thread, text });
        }
    }

    fn on_tick(&mut self, cx: &mut WorkerCx<'_, Msg>) -> Option<Duration> {
        let sender = cx.sender();
        if sender.workers() > 1 {
            let hello = Msg::Text(format!("hello from w{}", self.worker.0));
            if sender.send_to_worker(self.next_worker(sender.workers()), hello).is_err() {
                panic!("a worker message at start-up was refused");
            }
        }
        None
    }
}

fn serve(config: pollring::ConfigBuilder, probe: &Probe) -> ServerHandle {
    let probe = probe.clone();
    start(config, move |worker| Mail { worker, probe: probe.clone() })
}

/// A client, past its greeting, and its connection's address.
#[track_caller]
fn client(
    server: &ServerHandle,
    reports: &mpsc::Receiver<Report>,
) -> (std::net::TcpStream, ConnAddr) {
    let mut c = connect(server.local_addr());
    let greeting = read_line(&mut c);
    assert!(greeting.starts_with('w'), "{greeting:?}");
    match next(reports) {
        Report::Open(addr) => (c, addr),
        other => panic!("expected Open, got {other:?}"),
    }
}

fn a_sender_from_a_plain_thread_reaches_a_connection(backend: Backend) {
    let (probe, reports) = Probe::new(1);
    let server = serve(config(backend), &probe);
    assert!(server.sender::<String>().is_none(), "not the handler's message type");
    let sender: Sender<Msg> = server.sender().expect("the handler's message type");
    let (mut c, to) = client(&server, &reports);
    let from_thread = sender.clone();
    std::thread::spawn(move || {
        if from_thread.send(to, Msg::Text("hello from a thread".into())).is_err() {
            panic!("send refused");
        }
    })
    .join()
    .unwrap();
    assert_eq!(read_line(&mut c), "hello from a thread\n");
    server.shutdown();
    server.wait().unwrap();
    match sender.send(to, Msg::Text("too late".into())) {
        Err(SendError::Stopped(Msg::Text(text))) => assert_eq!(text, "too late"),
        Err(other) => panic!("expected Stopped, got {other:?}"),
        Ok(()) => panic!("a stopped server took a message"),
    }
}

fn a_sender_reaches_a_worker(backend: Backend) {
    let (probe, reports) = Probe::new(1);
    let server = serve(config(backend), &probe);
    let sender: Sender<Msg> = server.sender().unwrap();
    assert_eq!(sender.workers(), 1);
    std::thread::spawn(move || {
        if sender.send_to_worker(WorkerId(0), Msg::Text("to the worker".into())).is_err() {
            panic!("send refused");
        }
        match sender.send_to_worker(WorkerId(7), Msg::Text("to no one".into())) {
            Err(SendError::NoWorker(7, Msg::Text(text))) => assert_eq!(text, "to no one"),
            Err(other) => panic!("expected NoWorker(7), got {other:?}"),
            Ok(()) => panic!("worker 7 does not exist"),
        }
    })
    .join()
    .unwrap();
    match next(&reports) {
        Report::WorkerMsg { at, thread, text } => {
            assert_eq!(
                (at, thread.as_str(), text.as_str()),
                (WorkerId(0), "pollring-0", "to the worker")
            );
        }
        other => panic!("expected a worker message, got {other:?}"),
    }
    assert_eq!(probe.delivered.load(Ordering::SeqCst), 0, "no connection's on_message ran");
}

fn messages_between_workers_arrive(backend: Backend) {
    let (probe, reports) = Probe::new(2);
    let server = serve(config(backend).workers(2), &probe);
    // Each worker greeted the other from its first tick.
    let mut greetings = BTreeSet::new();
    let mut opened = Vec::new();
    while greetings.len() < 2 {
        match next(&reports) {
            Report::WorkerMsg { at, thread, text } => {
                greetings.insert((at.0, thread, text));
            }
            other => opened.push(other),
        }
    }
    assert!(opened.is_empty(), "{opened:?}");
    let want = BTreeSet::from([
        (0, "pollring-0".to_owned(), "hello from w1".to_owned()),
        (1, "pollring-1".to_owned(), "hello from w0".to_owned()),
    ]);
    assert_eq!(greetings, want);

    // Connections until each worker has one (the kernel spreads them).
    let mut first: HashMap<String, std::net::TcpStream> = HashMap::new();
    let mut others = Vec::new();
    for _ in 0..64 {
        if first.len() == 2 {
            break;
        }
        let mut c = connect(server.local_addr());
        let greeting = read_line(&mut c);
        match first.entry(greeting) {
            Entry::Occupied(_) => others.push(c),
            Entry::Vacant(slot) => {
                slot.insert(c);
            }
        }
    }
    assert_eq!(first.len(), 2, "64 connections all landed on one worker");
    let mut w0 = first.remove("w0\n").unwrap();
    let mut w1 = first.remove("w1\n").unwrap();
    w0.write_all(b"ping\n").unwrap();
    assert_eq!(read_line(&mut w1), "w0 says ping\n");
    w1.write_all(b"pong\n").unwrap();
    assert_eq!(read_line(&mut w0), "w1 says pong\n");
    let lines: String = (0..500).map(|i| format!("line {i}\n")).collect();
    w0.write_all(lines.as_bytes()).unwrap();
    let want: String = (0..500).map(|i| format!("w0 says line {i}\n")).collect();
    assert_eq!(read_n(&mut w1, want.len()), want.as_bytes(), "all of them, in order");
}

fn a_burst_of_messages_arrives_in_order_per_sender(backend: Backend) {
    const PER_SENDER: u32 = 10_000;
    const SENDERS: u8 = 2;
    let (probe, reports) = Probe::new(1);
    let server = serve(config(backend), &probe);
    let (mut c, to) = client(&server, &reports);
    let started = Instant::now();
    let senders: Vec<_> = (0..SENDERS)
        .map(|from| {
            let sender: Sender<Msg> = server.sender().unwrap();
            std::thread::spawn(move || {
                let mut full = 0u64;
                for seq in 0..PER_SENDER {
                    let mut msg = Msg::Seq { from, seq };
                    loop {
                        match sender.send(to, msg) {
                            Ok(()) => break,
                            Err(SendError::Full(_, back)) => {
                                assert!(
                                    started.elapsed() < IO_TIMEOUT,
                                    "mailbox full for too long"
                                );
                                full += 1;
                                msg = back;
                                std::thread::sleep(Duration::from_micros(50));
                            }
                            Err(other) => panic!("send failed: {other:?}"),
                        }
                    }
                }
                full
            })
        })
        .collect();
    let total = PER_SENDER as usize * SENDERS as usize;
    let got = read_n(&mut c, total * 5);
    let fulls: Vec<u64> = senders.into_iter().map(|t| t.join().unwrap()).collect();
    eprintln!("{total} messages in {:?}; Full answers per sender: {fulls:?}", started.elapsed());
    let mut next_seq = [0u32; SENDERS as usize];
    for record in got.chunks(5) {
        let from = record[0] as usize;
        let seq = u32::from_le_bytes(record[1..5].try_into().unwrap());
        assert!(from < SENDERS as usize, "no sender {from}");
        assert_eq!(seq, next_seq[from], "sender {from} out of order");
        next_seq[from] += 1;
    }
    assert_eq!(next_seq, [PER_SENDER; SENDERS as usize]);
    assert_eq!(probe.delivered.load(Ordering::SeqCst), total);
}

fn a_full_mailbox_hands_the_message_back(backend: Backend) {
    let (probe, reports) = Probe::new(1);
    let server = serve(config(backend).mailbox_capacity(4), &probe);
    let (mut c, to) = client(&server, &reports);
    let sender: Sender<Msg> = server.sender().unwrap();
    if sender.send(to, Msg::Block(Duration::from_millis(300))).is_err() {
        panic!("the first message was refused");
    }
    assert!(matches!(next(&reports), Report::Blocked), "the worker is blocked now");
    let mut sent = Vec::new();
    for seq in 0..20 {
        match sender.send(to, Msg::Seq { from: 0, seq }) {
            Ok(()) => sent.push(seq),
            Err(SendError::Full(4, Msg::Seq { from: 0, seq: back })) => assert_eq!(back, seq),
            Err(other) => panic!("expected Full(4) with message {seq}, got {other:?}"),
        }
    }
    assert_eq!(sent, [0, 1, 2, 3], "the mailbox holds 4 while its worker is blocked");
    assert_eq!(read_line(&mut c), "unblocked\n");
    // Room again once the worker has taken them.
    let mut more = 100;
    let deadline = Instant::now() + IO_TIMEOUT;
    while sent.len() < 8 {
        match sender.send(to, Msg::Seq { from: 0, seq: more }) {
            Ok(()) => sent.push(more),
            Err(SendError::Full(..)) => assert!(Instant::now() < deadline, "never room again"),
            Err(other) => panic!("{other:?}"),
        }
        more += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
    let got = read_n(&mut c, sent.len() * 5);
    let seqs: Vec<u32> =
        got.chunks(5).map(|r| u32::from_le_bytes(r[1..5].try_into().unwrap())).collect();
    assert_eq!(seqs, sent, "every message sent OK was delivered, in order");
    assert_silent(&mut c, Duration::from_millis(200), "no message refused with Full arrives");
    assert_eq!(probe.delivered.load(Ordering::SeqCst), 1 + sent.len());
}

fn a_message_for_a_closed_connection_is_dropped(backend: Backend) {
    let (probe, reports) = Probe::new(1);
    let server = serve(config(backend), &probe);
    let sender: Sender<Msg> = server.sender().unwrap();
    let drops = Arc::new(AtomicUsize::new(0));
    let (mut c, to) = client(&server, &reports);
    if sender.send(to, Msg::Tracked(Tracked::new(1, &drops))).is_err() {
        panic!("refused");
    }
    assert_eq!(read_line(&mut c), "tracked 1\n");
    eventually(IO_TIMEOUT, "the delivered message dropped", || drops.load(Ordering::SeqCst) == 1);
    drop(c);
    eventually(IO_TIMEOUT, "the connection closed", || server.stats().connections == 0);
    if sender.send(to, Msg::Tracked(Tracked::new(2, &drops))).is_err() {
        panic!("the mailbox refuses only when full or stopped");
    }
    eventually(IO_TIMEOUT, "the undeliverable message dropped on the worker", || {
        drops.load(Ordering::SeqCst) == 2
    });
    assert_eq!(probe.delivered.load(Ordering::SeqCst), 1, "on_message ran for the live one only");
    // Nor does the connection that takes its slot.
    let (mut d, _) = client(&server, &reports);
    if sender.send(to, Msg::Tracked(Tracked::new(3, &drops))).is_err() {
        panic!("refused");
    }
    eventually(IO_TIMEOUT, "the stale message dropped", || drops.load(Ordering::SeqCst) == 3);
    assert_silent(&mut d, Duration::from_millis(200), "the slot's next connection");
    assert_eq!(probe.delivered.load(Ordering::SeqCst), 1);
}

on_both_backends!(
    a_sender_from_a_plain_thread_reaches_a_connection,
    a_sender_reaches_a_worker,
    messages_between_workers_arrive,
    a_burst_of_messages_arrives_in_order_per_sender,
    a_full_mailbox_hands_the_message_back,
    a_message_for_a_closed_connection_is_dropped,
);
