//! Socket activation: started by `systemd-socket-activate -l ADDR echo
//! --workers 2`, the echo server serves the passed listening socket on both
//! workers (it binds nothing of its own), on both backends; its metrics
//! show which worker accepted what.

#[macro_use]
mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pollring::Backend;
use util::*;

/// A loopback port nobody listens on right now.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// Connects to `addr`, retrying while the activator starts listening.
fn connect_soon(addr: SocketAddr) -> TcpStream {
    let start = Instant::now();
    loop {
        match TcpStream::connect(addr) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return s;
            }
            Err(e) if start.elapsed() < Duration::from_secs(10) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("the activated server never listened on {addr}: {e}"),
        }
    }
}

/// `GET /metrics` from `at`: the sum of `name` over workers, and how many
/// workers have a non-zero value.
fn metric(at: SocketAddr, name: &str) -> (f64, usize) {
    let mut s = connect_soon(at);
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (values.iter().sum(), values.iter().filter(|&&v| v > 0.0).count())
}

fn the_passed_socket_is_served_by_every_worker(backend: Backend) {
    let activate = require("systemd-socket-activate", "systemd");
    let (addr, metrics) = (free_port(), free_port());
    let child = Command::new(activate)
        .args(["-l", &addr.to_string(), env!("CARGO_BIN_EXE_echo")])
        .args(["--backend", backend.as_str(), "--workers", "2"])
        .args(["--metrics", &metrics.to_string()])
        // Where it would bind were it not activated: must stay unused.
        .args(["--addr", "127.0.0.1:1"])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("start systemd-socket-activate");
    let mut activated = Running(child);
    let stderr = BufReader::new(activated.0.stderr.take().unwrap());
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });

    // Connections keep coming until both workers have accepted some.
    let mut clients = Vec::new();
    let start = Instant::now();
    loop {
        for i in 0..8u8 {
            let mut c = connect_soon(addr);
            c.write_all(&[i; 100]).unwrap();
            assert_eq!(read_n(&mut c, 100), vec![i; 100]);
            clients.push(c);
        }
        let (accepted, workers) = metric(metrics, "pollring_accepted_total");
        assert_eq!(accepted as usize, clients.len(), "every connection accepted once");
        if workers == 2 {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "one worker took every connection");
        assert!(clients.len() < 2000);
    }
    let said: Vec<String> = lines_rx.try_iter().collect();
    assert!(
        said.iter().any(|l| l.contains("passed by socket activation")),
        "the server says it serves the passed socket: {said:?}"
    );
    assert!(TcpStream::connect("127.0.0.1:1").is_err(), "--addr was not bound");
}

on_both_backends!(the_passed_socket_is_served_by_every_worker);
