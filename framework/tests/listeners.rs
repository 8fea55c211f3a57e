//! Several listeners per server, TCP and Unix: every one is served by every
//! worker, and a connection knows which listener accepted it.

#[macro_use]
mod util;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use pollring::{Backend, Cx, Endpoint, Error, Handler, Server};
use util::*;

/// Says `listener peer` on open, then echoes.
struct Which;

impl Handler for Which {
    type Conn = ();
    type Message = ();

    fn on_open(&mut self, cx: &mut Cx<'_>) {
        let said = format!("{:?} {:?}\n", cx.listener(), cx.peer_addr().is_some());
        cx.write(said.as_bytes());
    }

    fn on_data(&mut self, _: &mut (), cx: &mut Cx<'_>) {
        let n = cx.input().len();
        cx.forward(n);
    }
}

/// A fresh socket path for this test and backend.
fn socket_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pollring-listeners-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

/// Reads one line, then checks an echo round trip.
fn greeted_then_echoed(mut s: impl Read + Write) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while byte[0] != b'\n' {
        s.read_exact(&mut byte).unwrap();
        line.push(byte[0]);
    }
    s.write_all(b"ping").unwrap();
    let mut echo = [0u8; 4];
    s.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"ping");
    String::from_utf8(line).unwrap()
}

fn unix(path: &PathBuf) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn each_listener_is_served_and_named(backend: Backend) {
    let path = socket_path(&format!("{backend}.sock"));
    let server = Server::bind("127.0.0.1:0", config(backend).workers(2).build().unwrap())
        .unwrap()
        .also_listen(&Endpoint::Unix(path.clone()))
        .unwrap()
        .also_listen(&"127.0.0.1:0".parse().unwrap())
        .unwrap();
    let endpoints = server.endpoints();
    assert_eq!(endpoints.len(), 3);
    assert_eq!(endpoints[1], Endpoint::Unix(path.clone()));
    let (first, third) = (endpoints[0].tcp().unwrap(), endpoints[2].tcp().unwrap());
    assert_ne!(first.port(), third.port());
    let handle = server.serve(|_| Which).unwrap();
    assert_eq!(handle.endpoints(), &endpoints[..]);
    assert_eq!(handle.local_addr(), first, "local_addr is the first TCP listener");

    // Enough connections on each that both workers take some of each.
    for _ in 0..8 {
        assert_eq!(greeted_then_echoed(connect(first)), "Some(0) true\n");
        assert_eq!(greeted_then_echoed(unix(&path)), "Some(1) false\n");
        assert_eq!(greeted_then_echoed(connect(third)), "Some(2) true\n");
    }
    let accepted: Vec<u64> = handle.metrics().iter().map(|m| m.accepted).collect();
    assert_eq!(accepted.iter().sum::<u64>(), 24, "{accepted:?}");
    assert!(accepted.iter().all(|&n| n > 0), "both workers accepted: {accepted:?}");
}

fn a_unix_only_server_serves_its_socket(backend: Backend) {
    let path = socket_path(&format!("only-{backend}.sock"));
    // A stale file, as a server that was killed leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let endpoint: Endpoint = format!("unix:{}", path.display()).parse().unwrap();
    let handle = Server::bind_to(&endpoint, config(backend).workers(2).build().unwrap())
        .unwrap()
        .serve(|_| Which)
        .unwrap();
    let clients: Vec<UnixStream> = (0..16).map(|_| unix(&path)).collect();
    for c in clients {
        assert_eq!(greeted_then_echoed(c), "Some(0) false\n");
    }
    // A second server on the same path is refused, not given the socket.
    let again = Server::bind_to(&endpoint, config(backend).build().unwrap()).unwrap_err();
    match &again {
        Error::Bind { addr, source } => {
            assert_eq!(addr, &endpoint);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse, "{again}");
        }
        other => panic!("expected a bind error, got {other}"),
    }
    assert!(again.to_string().contains(&endpoint.to_string()), "{again}");
    drop(handle);
}

fn a_file_in_the_way_is_not_removed(backend: Backend) {
    let path = socket_path(&format!("file-{backend}"));
    std::fs::write(&path, "data").unwrap();
    let error = Server::bind_to(&Endpoint::Unix(path.clone()), config(backend).build().unwrap())
        .unwrap_err();
    assert!(error.to_string().contains("not a socket"), "{error}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
}

on_both_backends!(
    each_listener_is_served_and_named,
    a_unix_only_server_serves_its_socket,
    a_file_in_the_way_is_not_removed
);
