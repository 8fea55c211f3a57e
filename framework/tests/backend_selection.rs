//! Start-up: `Backend::Auto` picks io_uring where it works.

#[macro_use]
mod util;

use pollring::{Backend, Error};
use util::*;

#[test]
fn auto_picks_uring_where_it_works() {
    let Some(_) = uring_or_skip("auto_picks_uring_where_it_works") else { return };
    let server = start(config(Backend::Auto), |_| Echo);
    assert_eq!(server.backend(), Backend::Uring);
}

#[test]
fn explicit_backends_are_honoured() {
    let server = start(config(Backend::Epoll), |_| Echo);
    assert_eq!(server.backend(), Backend::Epoll);
    if uring_or_skip("explicit_backends_are_honoured").is_some() {
        let server = start(config(Backend::Uring), |_| Echo);
        assert_eq!(server.backend(), Backend::Uring);
    }
}

/// A mistake in the io_uring settings is an error on every backend, `Auto`
/// included, not a quiet fall-back to epoll (issue 13:
/// `POLLRING_URING_ENTRIES=1000`): `build()` refuses it.
#[test]
fn a_bad_uring_config_is_refused_on_every_backend() {
    for backend in [Backend::Auto, Backend::Epoll, Backend::Uring] {
        let mut uring = pollring::UringConfig::default();
        uring.entries = 1000; // not a power of two
        match config(backend).uring(uring).build() {
            Err(Error::Config(what)) => assert!(what.contains("power of two"), "{what}"),
            Err(other) => panic!("{backend}: expected a config error, got {other}"),
            Ok(_) => panic!("{backend}: entries = 1000 accepted"),
        }
    }
}
