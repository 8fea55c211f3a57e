//! The RESP server on the wire, driven with raw `TcpStream`s: pipelining,
//! requests cut anywhere, values spanning buffers, protocol errors, limits,
//! one keyspace across connections and workers, expiry.

#[macro_use]
mod resp_util;

use std::io::Write;
use std::net::Shutdown;
use std::time::Duration;

use pollring::Backend;
use pollring_examples::resp::Limits;
use resp_util::*;

fn pipelined_requests_answered_in_order(backend: Backend) {
    let server = start(config(backend));
    let mut c = Client::connect(server.addr());
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..2000 {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        batch.extend(encode(&[b"SET", key.as_bytes(), value.as_bytes()]));
        expected.extend_from_slice(b"+OK\r\n");
        batch.extend(encode(&[b"GET", key.as_bytes()]));
        expected.extend(format!("${}\r\n{value}\r\n", value.len()).into_bytes());
        batch.extend(encode(&[b"INCR", b"counter"]));
        expected.extend(format!(":{}\r\n", i + 1).into_bytes());
        // Inline requests mixed in.
        batch.extend_from_slice(b"PING\r\n");
        expected.extend_from_slice(b"+PONG\r\n");
    }
    // All of it in one write (from a thread, so neither side's socket
    // buffer can stall the test): the server answers whatever each receive
    // completes, in order.
    let mut writer = c.writer_clone();
    let t = std::thread::spawn(move || writer.write_all(&batch).expect("write"));
    let mut got = Vec::new();
    while got.len() < expected.len() {
        got.extend(c.reply());
    }
    t.join().unwrap();
    assert!(got == expected, "pipelined replies differ (got {} bytes)", got.len());
}

fn request_split_byte_by_byte(backend: Backend) {
    let server = start(config(backend));
    let mut c = Client::connect(server.addr());
    let request = [
        encode(&[b"SET", b"split", b"a\r\nvalue with CRLF"]),
        encode(&[b"GET", b"split"]),
        b"ECHO inline\r\n".to_vec(),
    ]
    .concat();
    for &b in &request {
        c.send(&[b]);
        // Give each byte its own receive most of the time.
        std::thread::sleep(Duration::from_micros(300));
    }
    assert_eq!(lossy(&c.reply()), "+OK\r\n");
    assert_eq!(lossy(&c.reply()), "$18\r\na\r\nvalue with CRLF\r\n");
    assert_eq!(lossy(&c.reply()), "$6\r\ninline\r\n");
}

fn values_spanning_many_buffers(backend: Backend) {
    // 1 KiB buffers: a 1 MiB value spans a thousand of them, and small
    // requests straddle buffer edges.
    let server = start(config(backend).buf_size(1024));
    let mut c = Client::connect(server.addr());
    let big = pattern(1 << 20, 1);
    let mut writer = c.writer_clone();
    let request = encode(&[b"SET", b"big", &big]);
    let t = std::thread::spawn(move || writer.write_all(&request).expect("write"));
    assert_eq!(lossy(&c.reply()), "+OK\r\n");
    t.join().unwrap();
    c.send(&encode(&[b"GET", b"big"]));
    let reply = c.reply();
    let head = format!("${}\r\n", big.len());
    assert!(reply.starts_with(head.as_bytes()), "GET big: {:?}", lossy(&reply[..40]));
    assert!(reply[head.len()..reply.len() - 2] == big[..], "GET big returned other bytes");
    // Many small requests across buffer edges, in one write.
    let mut batch = Vec::new();
    for i in 0..500 {
        batch.extend(encode(&[b"ECHO", format!("{i:0>40}").as_bytes()]));
    }
    c.send(&batch);
    for i in 0..500 {
        assert_eq!(lossy(&c.reply()), format!("$40\r\n{i:0>40}\r\n"));
    }
}

fn protocol_error_answered_then_closed(backend: Backend) {
    let server = start(config(backend));
    let cases: &[(&[u8], &str)] = &[
        (b"PING\r\n*1\r\n$x\r\n", "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"),
        (b"*abc\r\n", "-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n+PING\r\n", "-ERR Protocol error: expected '$', got '+'\r\n"),
        (b"*1\r\n$4\r\nPINGxx", "-ERR Protocol error: expected CRLF after bulk data\r\n"),
    ];
    for (input, want) in cases {
        let mut c = Client::connect(server.addr());
        c.send(input);
        let (got, err) = c.read_to_end();
        assert!(err.is_none(), "{:?}: read ended with {err:?}", lossy(input));
        assert_eq!(lossy(&got), *want, "for {:?}", lossy(input));
    }
    // The server is fine afterwards.
    assert_eq!(Client::connect(server.addr()).cmd(&["PING"]), "+PONG\r\n");
}

fn bulk_over_the_limit_refused_before_its_payload(backend: Backend) {
    let config = config(backend).build().unwrap();
    let limits = Limits { max_bulk_len: 1000, max_request_len: 4000, ..Limits::default() };
    let server = start_with(config, limits);
    // Only the header is sent: the refusal must not wait for the payload.
    let mut c = Client::connect(server.addr());
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1001\r\n");
    let (got, _) = c.read_to_end();
    assert_eq!(lossy(&got), "-ERR Protocol error: invalid bulk length\r\n");
    // Under the bulk limit but over the request limit, in total.
    let mut c = Client::connect(server.addr());
    let v = vec![b'x'; 1000];
    c.send(&encode(&[b"MSET", b"a", &v, b"b", &v, b"c", &v, b"d", &v]));
    let (got, _) = c.read_to_end();
    assert_eq!(lossy(&got), "-ERR Protocol error: request exceeds the maximum length\r\n");
    // A too-long inline line.
    let mut c = Client::connect(server.addr());
    let _ = c.writer_clone().write_all(&vec![b'a'; 70_000]);
    let (got, _) = c.read_to_end();
    assert_eq!(lossy(&got), "-ERR Protocol error: too big inline request\r\n");
    // Exactly at the limit is fine.
    let mut c = Client::connect(server.addr());
    let v = vec![b'y'; 1000];
    c.send(&encode(&[b"SET", b"k", &v]));
    assert_eq!(lossy(&c.reply()), "+OK\r\n");
}

fn default_limits_fit_the_pool(backend: Backend) {
    // 256 buffers of 1 KiB, 64 of them the receive reserve: 192 KiB to
    // receive into, so a request may claim at most 96 KiB whatever the
    // defaults say.
    let server = start(config(backend).buf_size(1024).buf_count(256));
    let mut c = Client::connect(server.addr());
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$200000\r\n");
    let (got, _) = c.read_to_end();
    assert_eq!(lossy(&got), "-ERR Protocol error: invalid bulk length\r\n");
    let mut c = Client::connect(server.addr());
    let v = pattern(90_000, 3);
    c.send(&encode(&[b"SET", b"k", &v]));
    assert_eq!(lossy(&c.reply()), "+OK\r\n");
}

fn one_keyspace_across_connections_and_workers(backend: Backend) {
    let server = start(config(backend).workers(2));
    let mut writer = Client::connect(server.addr());
    assert_eq!(writer.cmd(&["SET", "shared", "yes"]), "+OK\r\n");
    // SO_REUSEPORT spreads these over both workers: each must see the key.
    for _ in 0..20 {
        let mut reader = Client::connect(server.addr());
        assert_eq!(reader.cmd(&["GET", "shared"]), "$3\r\nyes\r\n");
        assert!(reader.cmd(&["INCR", "visits"]).starts_with(':'));
    }
    assert_eq!(writer.cmd(&["GET", "visits"]), "$2\r\n20\r\n");
    // Concurrent INCRs from many connections lose nothing.
    let addr = server.addr();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..200 {
                    c.cmd(&["INCR", "hits"]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
    assert_eq!(writer.cmd(&["GET", "hits"]), "$4\r\n1600\r\n");
    assert_eq!(writer.cmd(&["DBSIZE"]), ":3\r\n");
}

fn quit_replies_then_closes(backend: Backend) {
    let server = start(config(backend));
    let mut c = Client::connect(server.addr());
    // Requests after QUIT in the same batch are not run.
    c.send(b"PING\r\nQUIT\r\nSET after quit\r\n");
    let (got, err) = c.read_to_end();
    assert!(err.is_none(), "read ended with {err:?}");
    assert_eq!(lossy(&got), "+PONG\r\n+OK\r\n");
    assert_eq!(Client::connect(server.addr()).cmd(&["EXISTS", "after"]), ":0\r\n");
}

fn half_close_still_gets_its_replies(backend: Backend) {
    let server = start(config(backend));
    let mut c = Client::connect(server.addr());
    c.send(b"SET a 1\r\nGET a\r\n");
    c.writer_clone().shutdown(Shutdown::Write).unwrap();
    let (got, err) = c.read_to_end();
    assert!(err.is_none(), "read ended with {err:?}");
    assert_eq!(lossy(&got), "+OK\r\n$1\r\n1\r\n");
}

fn keys_expire_lazily_and_by_sweep(backend: Backend) {
    let server = start(config(backend));
    let mut c = Client::connect(server.addr());
    assert_eq!(c.cmd(&["SET", "short", "v", "PX", "100"]), "+OK\r\n");
    assert_eq!(c.cmd(&["GET", "short"]), "$1\r\nv\r\n");
    std::thread::sleep(Duration::from_millis(250));
    assert_eq!(c.cmd(&["GET", "short"]), "$-1\r\n");
    assert_eq!(c.cmd(&["TTL", "short"]), ":-2\r\n");
    // Keys nobody reads again are removed by the on_tick sweep.
    for i in 0..200 {
        assert_eq!(c.cmd(&["SET", &format!("t{i}"), "v", "PX", "50"]), "+OK\r\n");
    }
    assert_eq!(c.cmd(&["SET", "kept", "v"]), "+OK\r\n");
    eventually(Duration::from_secs(10), "expired keys swept", || server.store.len() == 1);
    assert_eq!(c.cmd(&["DBSIZE"]), ":1\r\n");
}

fn garbage_never_takes_the_server_down(backend: Backend) {
    let server = start(config(backend).buf_size(512));
    for seed in 0..30 {
        let mut c = connect(server.addr());
        let _ = c.write_all(&pattern(5000, seed));
        let _ = c.shutdown(Shutdown::Write);
        let (got, _) = read_to_end(&mut c);
        // Whatever was answered ends with a protocol error or is empty.
        let text = lossy(&got);
        assert!(got.is_empty() || text.contains("-ERR"), "seed {seed}: {text:?}");
    }
    assert_eq!(Client::connect(server.addr()).cmd(&["PING"]), "+PONG\r\n");
}

/// A shutdown (or a restart's drain) closes a connection at a command
/// boundary: the next command is answered, then the connection closes.
fn draining_closes_after_the_next_reply(backend: Backend) {
    let server = start(config(backend).shutdown_grace(Duration::from_secs(5)));
    let mut c = Client::connect(server.addr());
    assert_eq!(c.cmd(&["SET", "k", "v"]), "+OK\r\n");
    server.handle.shutdown();
    std::thread::sleep(Duration::from_millis(200));
    // Half a command, then the rest: answered whole, then closed.
    c.send(b"*2\r\n$3\r\nGET\r\n");
    std::thread::sleep(Duration::from_millis(50));
    c.send(b"$1\r\nk\r\n");
    assert_eq!(c.reply(), b"$1\r\nv\r\n");
    c.expect_closed();
    server.handle.wait().expect("clean stop once the connection is done");
}

on_both_backends!(
    draining_closes_after_the_next_reply,
    pipelined_requests_answered_in_order,
    request_split_byte_by_byte,
    values_spanning_many_buffers,
    protocol_error_answered_then_closed,
    bulk_over_the_limit_refused_before_its_payload,
    default_limits_fit_the_pool,
    one_keyspace_across_connections_and_workers,
    quit_replies_then_closes,
    half_close_still_gets_its_replies,
    keys_expire_lazily_and_by_sweep,
    garbage_never_takes_the_server_down,
);
