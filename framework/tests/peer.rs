//! `Cx::peer_addr` names the client, over IPv4 and over IPv6 (an IPv6 peer
//! is kept beside the connection table, an IPv4 one inside it).

#[macro_use]
mod util;

use std::io::Write;
use std::net::SocketAddr;

use pollring::{Backend, Cx, Handler, Server};
use util::*;

/// Writes `peer_addr` as text and a newline when a connection opens, and
/// again on each byte received.
struct Peer;

impl Handler for Peer {
    type Conn = ();
    type Message = ();

    fn on_open(&mut self, cx: &mut Cx<'_>) {
        let peer = format!("{:?}\n", cx.peer_addr());
        cx.write(peer.as_bytes());
    }

    fn on_data(&mut self, _conn: &mut (), cx: &mut Cx<'_>) {
        let n = cx.input().len();
        cx.consume(n);
        let peer = format!("{:?}\n", cx.peer_addr());
        cx.write(peer.as_bytes());
    }
}

fn peer_reported(addr: SocketAddr) {
    let mut c = connect(addr);
    let want = format!("{:?}\n", Some(c.local_addr().unwrap()));
    assert_eq!(read_line(&mut c), want);
    c.write_all(b"x").unwrap();
    assert_eq!(read_line(&mut c), want);
}

fn peers_are_named_over_ipv4_and_ipv6(backend: Backend) {
    let v4 = start(config(backend), |_| Peer);
    peer_reported(v4.local_addr());
    let server = match Server::bind("[::1]:0", config(backend).build().unwrap()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("!!!!!!!! no IPv6 loopback here ({e}): the IPv6 half is SKIPPED");
            return;
        }
    };
    let v6 = server.serve(|_| Peer).unwrap();
    for _ in 0..3 {
        peer_reported(v6.local_addr());
    }
}

on_both_backends!(peers_are_named_over_ipv4_and_ipv6);
