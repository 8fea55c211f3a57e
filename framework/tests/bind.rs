//! Binding: a port another server listens on is refused with "address in
//! use", even though pollring's own listeners share their port through
//! `SO_REUSEPORT` (the kernel would let a second server of the same user
//! join the first one's group and take half its connections).

#[macro_use]
mod util;

use pollring::{Backend, Error, Server};
use util::*;

fn a_port_in_use_is_refused(backend: Backend) {
    let first = start(config(backend).workers(2), |_| Echo);
    let addr = first.local_addr();
    let second = Server::bind(addr, config(backend).workers(2).build().unwrap());
    match second {
        Err(Error::Bind { addr: named, source }) => {
            assert_eq!(
                named,
                pollring::Endpoint::Tcp(addr),
                "the error names the address asked for"
            );
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse, "{source}");
            let text = Error::Bind { addr: named, source }.to_string();
            assert!(text.contains(&addr.to_string()), "{text}");
        }
        Err(other) => panic!("expected Bind(AddrInUse), got {other}"),
        Ok(_) => panic!("a second server bound {addr}, where the first one listens"),
    }
    // The first one still serves, alone.
    let c = connect(addr);
    assert_eq!(echo_round_trip(&c, b"still here"), b"still here");
    // A port that was used and closed binds again (TIME_WAIT is not "in use").
    drop(c);
    drop(first);
    let again = Server::bind(addr, config(backend).workers(2).build().unwrap());
    assert!(again.is_ok(), "rebinding a freed port: {:?}", again.err().map(|e| e.to_string()));
}

/// An address that does not resolve is named in the error, as given (it
/// used to say `0.0.0.0:0`). No lookup leaves the machine: a missing or
/// malformed port fails before any resolver is asked.
fn an_unresolvable_address_is_named(backend: Backend) {
    for given in ["127.0.0.1", "localhost:http-alt-port"] {
        match Server::bind(given, config(backend).build().unwrap()) {
            Err(e @ Error::Resolve { .. }) => {
                let text = e.to_string();
                assert!(text.contains(&format!("{given:?}")), "{text}");
                assert!(!text.contains("0.0.0.0"), "{text}");
            }
            Err(other) => panic!("expected Resolve for {given}, got {other}"),
            Ok(_) => panic!("{given} bound"),
        }
    }
}

on_both_backends!(a_port_in_use_is_refused, an_unresolvable_address_is_named);
