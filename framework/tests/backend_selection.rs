//! Start-up: `Backend::Auto` picks io_uring where it works.

#[macro_use]
mod util;

use pollring::Backend;
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
