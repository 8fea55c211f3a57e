//! The built-in metrics endpoint: `GET /metrics` in the Prometheus text
//! format (version 0.0.4), on a listener of its own
//! ([`ConfigBuilder::metrics_addr`](crate::ConfigBuilder::metrics_addr)).
//!
//! One thread, apart from the workers: it reads what they publish once per
//! turn and never touches their data path. It serves one scrape at a time,
//! each bounded by time-outs, and stops with the server.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::metrics::CLOSE_REASONS;
use crate::server::WorkerStats;
use crate::{WorkerId, WorkerMetrics};

/// How often the idle endpoint looks for a scrape or a stop.
const POLL: Duration = Duration::from_millis(50);
/// How long a scraper may take to send its request or read the answer.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest request head read.
const MAX_REQUEST: usize = 8 * 1024;

/// The running endpoint.
#[derive(Debug)]
pub(crate) struct Exporter {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    /// Serves `listener` from a thread of its own, reading `workers`.
    pub(crate) fn start(
        listener: TcpListener,
        workers: Vec<Arc<WorkerStats>>,
    ) -> std::io::Result<Exporter> {
        let addr = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name("pollring-metrics".into())
            .spawn(move || serve(&listener, &workers, &thread_stop))?;
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
        Ok(Exporter { addr, stop, thread: Some(thread) })
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the thread.
    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(listener: &TcpListener, workers: &[Arc<WorkerStats>], stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, peer)) => {
                if let Err(error) = answer(stream, workers) {
                    tracing::debug!(%peer, %error, "metrics scrape failed");
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
            Err(error) => {
                tracing::warn!(%error, "metrics endpoint: accept failed");
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Reads one request and answers it, then closes.
fn answer(mut stream: TcpStream, workers: &[Arc<WorkerStats>]) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(SCRAPE_TIMEOUT))?;
    stream.set_write_timeout(Some(SCRAPE_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = stream.read(&mut buf)?;
        if n == 0 || head.len() + n > MAX_REQUEST {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|&b| b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let path = path.split(|&b| b == b'?').next().unwrap_or_default();
    let (status, content_type, body) = match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") => {
            let metrics: Vec<WorkerMetrics> =
                workers.iter().enumerate().map(|(i, w)| w.metrics.load(WorkerId(i))).collect();
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", prometheus_text(&metrics))
        }
        (b"GET" | b"HEAD", _) => {
            ("404 Not Found", "text/plain", "Not Found: try /metrics\n".into())
        }
        _ => ("405 Method Not Allowed", "text/plain", "Method Not Allowed\n".into()),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if method != b"HEAD" {
        response.push_str(&body);
    }
    stream.write_all(response.as_bytes())
}

/// `metrics` in the Prometheus text exposition format (version 0.0.4),
/// one series per worker (label `worker`), closes also by `reason`: what
/// the built-in endpoint serves, for a handler or admin server of your own
/// to serve too.
pub fn prometheus_text(metrics: &[WorkerMetrics]) -> String {
    type Field = fn(&WorkerMetrics) -> u64;
    let families: [(&str, &str, &str, Field); 14] = [
        ("connections", "gauge", "Connections open.", |m| m.connections),
        ("accepted_total", "counter", "Connections accepted.", |m| m.accepted),
        ("accept_errors_total", "counter", "Failed accepts.", |m| m.accept_errors),
        ("received_bytes_total", "counter", "Bytes received.", |m| m.bytes_received),
        ("sent_bytes_total", "counter", "Bytes the kernel reported sent.", |m| m.bytes_sent),
        ("syscalls_total", "counter", "System calls the driver made.", |m| m.syscalls),
        ("turns_total", "counter", "Driver turns.", |m| m.turns),
        ("events_total", "counter", "Events the driver reported.", |m| m.events),
        ("buffers_in_use", "gauge", "Pool buffers in use or lent to the kernel.", |m| {
            m.buffers_in_use
        }),
        ("buffers_free", "gauge", "Pool buffers free.", |m| m.buffers_free),
        ("parked_connections", "gauge", "Connections whose input was moved off the pool.", |m| {
            m.parked
        }),
        ("pool_exhausted_total", "counter", "Connections closed for want of buffers.", |m| {
            m.closed_by(crate::CloseReason::PoolExhausted)
        }),
        ("messages_total", "counter", "Messages taken from the worker's mailbox.", |m| m.messages),
        ("offloaded_total", "counter", "Jobs handed to the offload pool.", |m| m.offloaded),
    ];
    let mut out = String::new();
    for (name, kind, help, field) in families {
        let _ = writeln!(out, "# HELP pollring_{name} {help}\n# TYPE pollring_{name} {kind}");
        for m in metrics {
            let _ = writeln!(out, "pollring_{name}{{worker=\"{}\"}} {}", m.worker.0, field(m));
        }
    }
    let _ = writeln!(
        out,
        "# HELP pollring_closed_total Connections closed, by reason.\n\
         # TYPE pollring_closed_total counter"
    );
    for m in metrics {
        for (reason, count) in CLOSE_REASONS.iter().zip(m.closed) {
            let _ = writeln!(
                out,
                "pollring_closed_total{{worker=\"{}\",reason=\"{reason}\"}} {count}",
                m.worker.0
            );
        }
    }
    out
}
