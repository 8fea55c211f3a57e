//! Byte-exact echo under concurrency and with large payloads.

#[macro_use]
mod util;

use std::io::Write;

use pollring::Backend;
use util::*;

fn two_hundred_concurrent_clients(backend: Backend) {
    let server = start(config(backend).workers(2), |_| Echo);
    let addr = server.local_addr();
    let clients: Vec<_> = (0..200u64)
        .map(|i| {
            std::thread::spawn(move || {
                let mut s = connect(addr);
                for round in 0..5u64 {
                    let data = pattern(1000 + (i as usize * 37) % 3000, i * 10 + round);
                    s.write_all(&data).unwrap();
                    assert_eq!(read_n(&mut s, data.len()), data, "client {i} round {round}");
                }
            })
        })
        .collect();
    for c in clients {
        c.join().expect("client thread");
    }
    eventually(IO_TIMEOUT, "all connections closed", || server.stats().connections == 0);
}

fn four_mib_payload_byte_exact(backend: Backend) {
    let server = start(config(backend), |_| Echo);
    let s = connect(server.local_addr());
    let data = pattern(4 << 20, 7);
    let got = echo_round_trip(&s, &data);
    assert!(got == data, "4 MiB echo differs");
}

fn four_mib_through_the_copying_path(backend: Backend) {
    // Small buffers: every frame spans many of them.
    let server = start(config(backend).buf_size(1024), |_| CopyEcho);
    let s = connect(server.local_addr());
    let data = pattern(4 << 20, 8);
    assert!(echo_round_trip(&s, &data) == data, "4 MiB copy-echo differs");
}

fn buffers_return_to_the_pool(backend: Backend) {
    let server = start(config(backend), |_| Echo);
    let baseline = {
        // Let the worker publish its idle state first.
        std::thread::sleep(std::time::Duration::from_millis(50));
        server.stats().pool_in_use
    };
    for i in 0..20 {
        let s = connect(server.local_addr());
        let data = pattern(100_000, i);
        assert!(echo_round_trip(&s, &data) == data);
    }
    eventually(IO_TIMEOUT, "pool back to its idle level", || {
        let st = server.stats();
        st.connections == 0 && st.pool_in_use <= baseline
    });
}

/// Every send zero-copy on io_uring (`SEND_ZC`/`SENDMSG_ZC` from 1 byte):
/// buffers are held until the kernel's notification, and every byte still
/// arrives in order. (epoll has no such switch: the same test, copying.)
fn four_mib_with_zero_copy_sends(backend: Backend) {
    let mut uring = pollring::UringConfig::default();
    uring.send_zc_threshold = Some(1);
    let server = start(config(backend).uring(uring), |_| Echo);
    let s = connect(server.local_addr());
    let data = pattern(4 << 20, 9);
    assert!(echo_round_trip(&s, &data) == data, "4 MiB zero-copy echo differs");
    drop(s);
    eventually(IO_TIMEOUT, "closed, buffers back", || server.stats().connections == 0);
}

/// Every optional io_uring feature on at once (incremental receives into
/// shared buffers, recv and send bundles, the registered ring fd), through
/// the forwarding and the copying handler, small messages from many clients
/// and one large payload. (epoll ignores the switches: the same test.)
fn echo_with_every_uring_option(backend: Backend) {
    let mut uring = pollring::UringConfig::default();
    uring.recv_incremental = true;
    uring.recv_bundle = true;
    uring.send_bundle = true;
    uring.register_ring_fd = true;
    for copy in [false, true] {
        let config = config(backend).uring(uring.clone()).buf_size(4096);
        let server = if copy { start(config, |_| CopyEcho) } else { start(config, |_| Echo) };
        let addr = server.local_addr();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let baseline = server.stats().pool_in_use;
        let clients: Vec<_> = (0..50u64)
            .map(|i| {
                std::thread::spawn(move || {
                    let mut s = connect(addr);
                    s.set_nodelay(true).unwrap();
                    for round in 0..20u64 {
                        let data =
                            pattern(1 + (i as usize * 37 + round as usize * 11) % 300, i + round);
                        s.write_all(&data).unwrap();
                        assert_eq!(read_n(&mut s, data.len()), data, "client {i} round {round}");
                    }
                })
            })
            .collect();
        for c in clients {
            c.join().expect("client thread");
        }
        let s = connect(addr);
        let data = pattern(4 << 20, 11);
        assert!(echo_round_trip(&s, &data) == data, "4 MiB echo differs (copy: {copy})");
        drop(s);
        eventually(IO_TIMEOUT, "closed, buffers back", || {
            let st = server.stats();
            st.connections == 0 && st.pool_in_use <= baseline
        });
    }
}

on_both_backends!(
    echo_with_every_uring_option,
    four_mib_with_zero_copy_sends,
    two_hundred_concurrent_clients,
    four_mib_payload_byte_exact,
    four_mib_through_the_copying_path,
    buffers_return_to_the_pool,
);
