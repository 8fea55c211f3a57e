//! Connection churn: many connections opened and closed (or reset) in a loop
//! leave no descriptor and no buffer behind, and the server keeps serving.

#[macro_use]
mod util;

use std::io::Write;
use std::time::Duration;

use pollring::Backend;
use util::*;

/// Descriptors open in this process (server and clients share it).
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0)
}

fn ten_thousand_connections_churned_leak_nothing(backend: Backend) {
    let server = start(config(backend), |_| Echo);
    let addr = server.local_addr();
    // Let the worker settle (io_uring lends its ring on the first turn).
    std::thread::sleep(Duration::from_millis(50));
    let fds_before = open_fds();
    let pool_before = server.stats().pool_in_use;
    for i in 0..10_000u32 {
        let mut s = connect(addr);
        if i % 2 == 0 {
            // A full exchange, then a normal close.
            s.write_all(b"ping").unwrap();
            assert_eq!(read_n(&mut s, 4), b"ping");
        } else {
            // Connect-and-reset: SO_LINGER 0 sends RST at once, sometimes
            // with data the server has not read yet.
            if i % 4 == 1 {
                let _ = s.write_all(b"xx");
            }
            socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO)).unwrap();
        }
    }
    eventually(IO_TIMEOUT, "every connection released", || server.stats().connections == 0);
    // The server still serves.
    let mut s = connect(addr);
    s.write_all(b"after").unwrap();
    assert_eq!(read_n(&mut s, 5), b"after");
    drop(s);
    eventually(IO_TIMEOUT, "descriptors and buffers back to where they were", || {
        let st = server.stats();
        st.connections == 0 && st.pool_in_use <= pool_before && open_fds() <= fds_before
    });
}

on_both_backends!(ten_thousand_connections_churned_leak_nothing);
