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

/// An IPv6 listener on the IPv4-mapped loopback address: its clients come
/// as `::ffff:127.0.0.1` (kept inline, as IPv4) and are reported so.
fn ipv4_mapped_peers_are_reported_mapped(backend: Backend) {
    let server = match Server::bind("[::ffff:127.0.0.1]:0", config(backend).build().unwrap()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("!!!!!!!! no IPv4-mapped IPv6 listener here ({e}): SKIPPED");
            return;
        }
    };
    let mapped = server.serve(|_| Peer).unwrap();
    let port = mapped.local_addr().port();
    let mut c = connect(([127, 0, 0, 1], port).into());
    let local = c.local_addr().unwrap();
    let SocketAddr::V4(v4) = local else { panic!("an IPv4 client: {local}") };
    let want: SocketAddr = (v4.ip().to_ipv6_mapped(), v4.port()).into();
    assert_eq!(read_line(&mut c), format!("{:?}\n", Some(want)));
}

on_both_backends!(peers_are_named_over_ipv4_and_ipv6, ipv4_mapped_peers_are_reported_mapped);
