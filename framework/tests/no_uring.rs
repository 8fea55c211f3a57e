//! A machine without io_uring, simulated with `POLLRING_NO_URING`: `Auto`
//! falls back to epoll and serves; `Uring` fails with an error that names
//! the reason. One test in its own binary: the variable is process-wide.

#[macro_use]
mod util;

use std::io::Write;

use pollring::{Backend, Error, Server};
use util::*;

#[test]
fn without_uring_auto_falls_back_and_uring_names_the_reason() {
    std::env::set_var("POLLRING_NO_URING", "1");

    let server = start(config(Backend::Auto), |_| Echo);
    assert_eq!(server.backend(), Backend::Epoll, "Auto must fall back to epoll");
    let mut c = connect(server.local_addr());
    c.write_all(b"still served").unwrap();
    assert_eq!(read_n(&mut c, 12), b"still served");

    let config = config(Backend::Uring).build().unwrap();
    let err = Server::bind("127.0.0.1:0", config).unwrap().serve(|_| Echo).unwrap_err();
    assert!(matches!(err, Error::Uring(_)), "got {err:?}");
    let msg = err.to_string();
    assert!(msg.contains("POLLRING_NO_URING"), "the error must name the reason: {msg}");
}
