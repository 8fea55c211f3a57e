//! `ServerHandle::metrics`: each worker's counters rise with the traffic it
//! serves: accepts, closes by reason, bytes both ways, turns and events.

#[macro_use]
mod util;

use std::io::Write;

use pollring::{Backend, CloseReason, WorkerMetrics};
use util::*;

fn one_worker(server: &pollring::ServerHandle) -> WorkerMetrics {
    let mut all = server.metrics();
    assert_eq!(all.len(), 1, "one worker");
    all.remove(0)
}

fn counters_follow_the_traffic(backend: Backend) {
    let server = start(config(backend), |_| Echo);
    let addr = server.local_addr();
    let before = one_worker(&server);
    assert_eq!((before.accepted, before.bytes_received, before.closed_total()), (0, 0, 0));

    let mut clients: Vec<_> = (0..3).map(|_| connect(addr)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        let msg = pattern(1000, i as u64);
        assert!(echo_round_trip(c, &msg) == msg);
    }
    // Two clients leave; the server sees their FIN and closes them.
    drop(clients.drain(..2));
    let mut m = one_worker(&server);
    eventually(IO_TIMEOUT, "two closes counted", || {
        m = one_worker(&server);
        m.closed_by(CloseReason::PeerClosed) == 2
    });
    assert_eq!(m.accepted, 3);
    assert_eq!(m.connections, 1);
    assert_eq!(m.closed_total(), 2, "{m:?}");
    assert_eq!(m.bytes_received, 3000);
    assert_eq!(m.bytes_sent, 3000);
    assert!(m.turns > 0 && m.events >= 3 + 3 + 2, "{m:?}");
    assert!(m.syscalls > 0, "{m:?}");
    assert!(m.buffers_free > 0, "{m:?}");

    // More traffic, higher counts.
    clients[0].write_all(&[7u8; 500]).unwrap();
    assert_eq!(read_n(&mut clients[0], 500), vec![7u8; 500]);
    eventually(IO_TIMEOUT, "the bytes counted", || {
        let later = one_worker(&server);
        later.bytes_received == 3500 && later.bytes_sent == 3500 && later.turns > m.turns
    });
}

/// An HTTP GET of `path` from the metrics endpoint: (status line, body).
fn scrape(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    use std::io::Read;
    let mut s = connect(addr);
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a complete answer");
    let status = head.lines().next().unwrap_or_default().to_owned();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.parse().ok())
        .expect("Content-Length");
    assert_eq!(body.len(), length);
    (status, body.to_owned())
}

/// The value of `name{worker="0"[, reason]}` in a parsed scrape.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, reason: Option<&str>) -> f64 {
    let found = scrape.samples.iter().find(|s| {
        s.metric == name
            && s.labels.get("worker") == Some("0")
            && reason.is_none_or(|r| s.labels.get("reason") == Some(r))
    });
    match found.map(|s| &s.value) {
        Some(prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v)) => *v,
        other => panic!("{name} {reason:?}: {other:?}"),
    }
}

fn parse(body: &str) -> prometheus_parse::Scrape {
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines).expect("the Prometheus text format")
}

/// `GET /metrics` parses with a Prometheus client parser, names each
/// worker, and its counters rise under load; other paths are 404.
fn the_endpoint_serves_prometheus_text(backend: Backend) {
    let config = config(backend).metrics_addr(Some("127.0.0.1:0".parse().unwrap()));
    let server = start(config, |_| Echo);
    let at = server.metrics_addr().expect("an endpoint");
    let (status, body) = scrape(at, "/metrics");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let first = parse(&body);
    let before = sample(&first, "pollring_received_bytes_total", None);

    let mut c = connect(server.local_addr());
    assert!(echo_round_trip(&c, &pattern(4096, 1)) == pattern(4096, 1));
    c.write_all(b"x").unwrap();
    assert_eq!(read_n(&mut c, 1), b"x");
    drop(c);
    eventually(IO_TIMEOUT, "the scrape shows the load", || {
        let now = parse(&scrape(at, "/metrics").1);
        sample(&now, "pollring_received_bytes_total", None) >= before + 4097.0
            && sample(&now, "pollring_sent_bytes_total", None) >= 4097.0
            && sample(&now, "pollring_accepted_total", None) >= 1.0
            && sample(&now, "pollring_closed_total", Some("peer_closed")) >= 1.0
            && sample(&now, "pollring_turns_total", None) > 0.0
    });
    assert!(scrape(at, "/nope").0.starts_with("HTTP/1.1 404"));
}

/// Another process's port for the endpoint fails `bind`, naming it.
fn a_taken_metrics_port_fails_bind(backend: Backend) {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = taken.local_addr().unwrap();
    let config = config(backend).metrics_addr(Some(at)).build().unwrap();
    let err = pollring::Server::bind("127.0.0.1:0", config).unwrap_err().to_string();
    assert!(err.contains(&at.to_string()), "{err}");
}

/// Answers each byte through the offload pool: the job's result comes back
/// as a message.
struct Offloader;

impl pollring::Handler for Offloader {
    type Conn = ();
    type Message = u8;

    fn on_open(&mut self, _cx: &mut pollring::Cx<'_, u8>) {}

    fn on_data(&mut self, _conn: &mut (), cx: &mut pollring::Cx<'_, u8>) {
        let bytes = cx.input().contiguous().to_vec();
        cx.consume(bytes.len());
        for b in bytes {
            cx.offload(move || b.wrapping_add(1)).expect("room in the offload queue");
        }
    }

    fn on_message(&mut self, _conn: &mut (), cx: &mut pollring::Cx<'_, u8>, b: u8) {
        cx.write(&[b]);
    }
}

/// Offloaded jobs and the messages that bring their results back are
/// counted.
fn offload_jobs_and_messages_are_counted(backend: Backend) {
    let server = start(config(backend), |_| Offloader);
    let mut c = connect(server.local_addr());
    c.write_all(b"abc").unwrap();
    let mut got = read_n(&mut c, 3);
    got.sort_unstable();
    assert_eq!(got, b"bcd");
    eventually(IO_TIMEOUT, "three jobs and three messages counted", || {
        let m = one_worker(&server);
        m.offloaded == 3 && m.messages == 3
    });
}

on_both_backends!(
    offload_jobs_and_messages_are_counted,
    counters_follow_the_traffic,
    the_endpoint_serves_prometheus_text,
    a_taken_metrics_port_fails_bind
);
