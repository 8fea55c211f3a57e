//! `GET /sleep?ms=N`: blocking work on the offload pool, answered in
//! `on_message`, without stalling the worker or reordering pipelined
//! responses.

#[macro_use]
mod util;

use std::net::Shutdown;
use std::time::{Duration, Instant};

use pollring::{Backend, ConfigBuilder, ServerHandle};
use pollring_examples::http::Http;
use util::*;

fn serve(config: ConfigBuilder) -> ServerHandle {
    start(config, |_| Http::new())
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n")
}

fn sleep_answers_after_the_sleep(backend: Backend) {
    let server = serve(config(backend));
    let mut c = Client::connect(server.local_addr());
    let t = Instant::now();
    let r = c.request(&get("/sleep?ms=50"));
    let took = t.elapsed();
    assert_eq!((r.status, &r.body[..]), (200, &b"slept 50 ms\n"[..]));
    assert!(took >= Duration::from_millis(50), "answered after {took:?}, before the sleep ended");
    // The connection goes on as usual.
    assert_eq!(c.request(&get("/plaintext")).status, 200);
}

fn sleeps_run_on_the_pool_not_the_worker(backend: Backend) {
    // One worker: if a sleep ran on it, everything would queue behind it.
    let server = serve(config(backend).offload_threads(20));
    let addr = server.local_addr();
    let t = Instant::now();
    let sleepers: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                let r = c.request(&get("/sleep?ms=100"));
                (r.status, t.elapsed())
            })
        })
        .collect();
    // Meanwhile the worker answers other requests at once.
    std::thread::sleep(Duration::from_millis(20));
    let mut c = Client::connect(addr);
    let asked = Instant::now();
    assert_eq!(c.request(&get("/plaintext")).status, 200);
    let plaintext = asked.elapsed();
    for sleeper in sleepers {
        let (status, done) = sleeper.join().expect("sleeper thread");
        assert_eq!(status, 200);
        assert!(done >= Duration::from_millis(100), "a sleep answered after {done:?}");
        // One after another they would take 2 s.
        assert!(done < Duration::from_millis(1000), "20 sleeps of 100 ms took {done:?}");
    }
    assert!(plaintext < Duration::from_millis(500), "/plaintext took {plaintext:?} meanwhile");
}

fn sleep_limits(backend: Backend) {
    let server = serve(config(backend));
    let mut c = Client::connect(server.local_addr());
    for path in ["/sleep?ms=5000", "/sleep?ms=1001", "/sleep?ms=-1", "/sleep?ms=ten", "/sleep"] {
        let t = Instant::now();
        let r = c.request(&get(path));
        assert_eq!(r.status, 400, "{path}");
        assert!(t.elapsed() < Duration::from_millis(900), "{path} slept before refusing");
    }
    let r = c.request("POST /sleep?ms=1 HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\n\r\n");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));
    let r = c.request("HEAD /sleep?ms=1&x=y HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!((r.status, r.header("content-length")), (200, Some("11")));
    assert_eq!(c.request(&get("/sleep?x=1&ms=0")).status, 200);
}

fn pipelined_requests_wait_for_the_sleep(backend: Backend) {
    let server = serve(config(backend));
    let mut c = Client::connect(server.local_addr());
    let pipeline =
        [get("/sleep?ms=60"), get("/plaintext"), get("/sleep?ms=10"), get("/json"), get("/nope")]
            .concat();
    c.send(pipeline.as_bytes());
    let bodies: Vec<(u16, Vec<u8>)> = (0..5)
        .map(|_| {
            let r = c.read_response("GET");
            (r.status, r.body)
        })
        .collect();
    assert_eq!(
        bodies,
        vec![
            (200, b"slept 60 ms\n".to_vec()),
            (200, b"Hello, World!".to_vec()),
            (200, b"slept 10 ms\n".to_vec()),
            (200, br#"{"message":"Hello, World!"}"#.to_vec()),
            (404, b"Not Found\n".to_vec()),
        ]
    );
    // `Connection: close` behind a sleep: answered, then closed.
    c.send(
        [get("/sleep?ms=10"), "GET /json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".into()]
            .concat()
            .as_bytes(),
    );
    assert_eq!(c.read_response("GET").status, 200);
    assert_eq!(c.read_response("GET").header("connection"), Some("close"));
    c.expect_eof();
}

fn sleep_answered_after_the_clients_fin(backend: Backend) {
    let server = serve(config(backend));
    let mut c = Client::connect(server.local_addr());
    c.send([get("/sleep?ms=30"), get("/plaintext")].concat().as_bytes());
    c.stream.shutdown(Shutdown::Write).expect("shutdown");
    assert_eq!(c.read_response("GET").body, b"slept 30 ms\n");
    assert_eq!(c.read_response("GET").body, b"Hello, World!");
    c.expect_eof();
}

fn a_full_offload_queue_answers_503(backend: Backend) {
    // One thread and room for one more job: of three sleeps at once, at
    // least one finds the queue full.
    let server = serve(config(backend).offload_threads(1).offload_queue(1));
    let addr = server.local_addr();
    let mut clients: Vec<Client> = (0..3).map(|_| Client::connect(addr)).collect();
    for c in &mut clients {
        c.send(get("/sleep?ms=300").as_bytes());
    }
    let statuses: Vec<u16> = clients.iter_mut().map(|c| c.read_response("GET").status).collect();
    assert!(statuses.iter().all(|s| [200, 503].contains(s)), "{statuses:?}");
    assert!(statuses.contains(&503), "no 503 with a full offload queue: {statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    // A refused sleep leaves its connection usable.
    for c in &mut clients {
        assert_eq!(c.request(&get("/plaintext")).status, 200);
    }
}

on_both_backends!(
    sleep_answers_after_the_sleep,
    sleeps_run_on_the_pool_not_the_worker,
    sleep_limits,
    pipelined_requests_wait_for_the_sleep,
    sleep_answered_after_the_clients_fin,
    a_full_offload_queue_answers_503,
);
