//! The HTTP server driven by a raw std `TcpStream`: routes, pipelining,
//! requests split across writes and buffers, limits, malformed input,
//! keep-alive rules and uploads.

#[macro_use]
mod util;

use std::time::{Duration, SystemTime};

use pollring::{Backend, ServerHandle};
use pollring_examples::http::date::imf_fixdate;
use pollring_examples::http::{Http, Limits};
use util::*;

fn serve(backend: Backend) -> ServerHandle {
    start(config(backend), |_| Http::new())
}

const PLAINTEXT: &str = "GET /plaintext HTTP/1.1\r\nHost: test\r\n\r\n";

fn routes(backend: Backend) {
    let server = serve(backend);
    let mut c = Client::connect(server.local_addr());

    let r = c.request(PLAINTEXT);
    assert_eq!((r.status, &r.body[..]), (200, &b"Hello, World!"[..]));
    assert_eq!(r.header("content-type"), Some("text/plain"));
    assert_eq!(r.header("content-length"), Some("13"));
    assert_eq!(r.header("server"), Some("pollring"));
    assert_eq!(r.header("connection"), None, "HTTP/1.1 keep-alive needs no Connection header");

    let r = c.request("GET /json HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!((r.status, &r.body[..]), (200, &br#"{"message":"Hello, World!"}"#[..]));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("content-length"), Some("27"));

    let r = c.request("GET /?q=1 HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with(b"Hello"), "{:?}", String::from_utf8_lossy(&r.body));

    let r = c.request("HEAD /plaintext HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!((r.status, r.header("content-length")), (200, Some("13")));
    assert!(r.body.is_empty());

    let r = c.request("GET /nope HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(r.status, 404);

    let r = c.request("POST /plaintext HTTP/1.1\r\nHost: test\r\nContent-Length: 2\r\n\r\nhi");
    assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")));

    let r = c.request("GET /echo HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")));

    // Still the same connection after all of the above.
    assert_eq!(c.request(PLAINTEXT).status, 200);
}

fn date_header_is_current(backend: Backend) {
    let server = serve(backend);
    let mut c = Client::connect(server.local_addr());
    // Let the worker's once-a-second tick run at least once more.
    std::thread::sleep(Duration::from_millis(1100));
    let before = SystemTime::now() - Duration::from_secs(1);
    let r = c.request(PLAINTEXT);
    let after = SystemTime::now();
    let date = r.header("date").expect("Date header").to_owned();
    let acceptable: Vec<String> = (0..=(after.duration_since(before).unwrap().as_secs() + 1))
        .map(|s| String::from_utf8(imf_fixdate(before + Duration::from_secs(s)).to_vec()).unwrap())
        .collect();
    assert!(acceptable.contains(&date), "Date {date:?} not within {acceptable:?}");
}

/// An expected response: the request's method, the status, the body.
type Expected = (&'static str, u16, Vec<u8>);

/// The mixed pipeline used below, with what each response must be.
fn pipeline() -> (String, Vec<Expected>) {
    let mut requests = String::new();
    let mut expected = Vec::new();
    for i in 0..60 {
        match i % 4 {
            0 => {
                requests.push_str(PLAINTEXT);
                expected.push(("GET", 200, b"Hello, World!".to_vec()));
            }
            1 => {
                requests.push_str("GET /json HTTP/1.1\r\nHost: test\r\n\r\n");
                expected.push(("GET", 200, br#"{"message":"Hello, World!"}"#.to_vec()));
            }
            2 => {
                let body = format!("body number {i}");
                requests.push_str(&format!(
                    "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                ));
                expected.push(("POST", 200, body.into_bytes()));
            }
            _ => {
                requests.push_str("GET /missing HTTP/1.1\r\nHost: test\r\n\r\n");
                expected.push(("GET", 404, b"Not Found\n".to_vec()));
            }
        }
    }
    (requests, expected)
}

fn check_pipeline(c: &mut Client, expected: &[Expected]) {
    for (i, (method, status, body)) in expected.iter().enumerate() {
        let r = c.read_response(method);
        assert_eq!((r.status, &r.body), (*status, body), "response {i}");
    }
}

fn pipelined_requests_answered_in_order(backend: Backend) {
    let server = serve(backend);
    let mut c = Client::connect(server.local_addr());
    let (requests, expected) = pipeline();
    c.send(requests.as_bytes());
    check_pipeline(&mut c, &expected);
    assert_eq!(c.request(PLAINTEXT).status, 200);
}

fn heads_spanning_small_buffers(backend: Backend) {
    // 64-byte pool buffers: most heads span two or more of them, and most
    // responses do not fit in one either.
    let server = start(config(backend).buf_size(64), |_| Http::new());
    let mut c = Client::connect(server.local_addr());
    let (requests, expected) = pipeline();
    c.send(requests.as_bytes());
    check_pipeline(&mut c, &expected);
}

fn request_split_byte_by_byte(backend: Backend) {
    let server = serve(backend);
    let mut c = Client::connect(server.local_addr());
    let request = b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n\
                    4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nTrailer: x\r\n\r\n\
                    GET /plaintext HTTP/1.1\r\nHost: test\r\n\r\n";
    for &b in request.iter() {
        c.send(&[b]);
        std::thread::sleep(Duration::from_micros(300));
    }
    let r = c.read_response("POST");
    assert_eq!((r.status, &r.body[..]), (200, &b"abcdefg"[..]));
    assert_eq!(c.read_response("GET").body, b"Hello, World!");
}

fn content_length_upload_echoed(backend: Backend) {
    let server = serve(backend);
    let mut c = Client::connect(server.local_addr());
    let body = pattern(512 * 1024, 1);
    let mut request =
        format!("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: {}\r\n\r\n", body.len())
            .into_bytes();
    request.extend_from_slice(&body);
    c.send(&request);
    let r = c.read_response("POST");
    assert_eq!(r.status, 200);
    assert!(r.body == body, "echoed body differs");
    assert_eq!(r.header("content-length"), Some("524288"));
}

fn chunked_upload_echoed(backend: Backend) {
    let server = serve(backend);
    let mut c = Client::connect(server.local_addr());
    let body = pattern(300_000, 2);
    let mut request =
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for (i, chunk) in body.chunks(7_777).enumerate() {
        let ext = if i % 2 == 0 { ";name=\"v\"" } else { "" };
        request.extend_from_slice(format!("{:X}{ext}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\nX-Checksum: none\r\n\r\n");
    c.send(&request);
    let r = c.read_response("POST");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("300000"));
    assert!(r.body == body, "echoed body differs");
    assert_eq!(c.request(PLAINTEXT).status, 200, "connection kept alive after a chunked body");
}

fn expect_100_continue(backend: Backend) {
    let server = serve(backend);
    let mut c = Client::connect(server.local_addr());
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
    );
    let mut interim = [0u8; 25];
    std::io::Read::read_exact(&mut c.stream, &mut interim).expect("100 Continue");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send(b"hello");
    assert_eq!(c.read_response("POST").body, b"hello");
}

fn oversized_headers_get_431(backend: Backend) {
    let server = serve(backend);
    let mut c = Client::connect(server.local_addr());
    let big = "a".repeat(10 * 1024);
    let r = c.request(&format!("GET /plaintext HTTP/1.1\r\nHost: test\r\nX-Big: {big}\r\n\r\n"));
    assert_eq!((r.status, r.header("connection")), (431, Some("close")));
    c.expect_eof();
}

fn too_many_headers_get_431(backend: Backend) {
    let server = start(config(backend), |_| {
        Http::with_limits(Limits { max_headers: 8, ..Limits::default() })
    });
    let mut c = Client::connect(server.local_addr());
    let fields: String = (0..9).map(|i| format!("X-{i}: {i}\r\n")).collect();
    let r = c.request(&format!("GET / HTTP/1.1\r\nHost: test\r\n{fields}\r\n"));
    assert_eq!(r.status, 431);
    c.expect_eof();
}

fn huge_body_gets_413(backend: Backend) {
    let server = serve(backend);
    // Declared up front: refused before the body is read.
    let mut c = Client::connect(server.local_addr());
    let r = c.request("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 2000000\r\n\r\nabc");
    assert_eq!((r.status, r.header("connection")), (413, Some("close")));
    c.expect_eof();
    // Chunked: refused once the chunks add up past the limit.
    let mut c = Client::connect(server.local_addr());
    let mut request =
        b"POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..5 {
        request.extend_from_slice(b"40000\r\n");
        request.extend_from_slice(&[b'x'; 0x40000]);
        request.extend_from_slice(b"\r\n");
    }
    let writer = {
        let mut s = c.stream.try_clone().unwrap();
        // The server stops reading once it has answered: ignore write errors.
        std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut s, &request);
        })
    };
    let r = c.read_response("POST");
    assert_eq!(r.status, 413);
    c.expect_eof();
    writer.join().unwrap();
}

fn garbage_gets_400_and_close(backend: Backend) {
    let server = serve(backend);
    for garbage in [
        &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 hello tls\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: test\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n", // no Host
        b"NOT HTTP AT ALL\n\n",
    ] {
        let mut c = Client::connect(server.local_addr());
        c.send(garbage);
        let r = c.read_response("GET");
        assert_eq!((r.status, r.header("connection")), (400, Some("close")), "{garbage:?}");
        c.expect_eof();
    }
}

fn smuggling_attempts_get_400(backend: Backend) {
    let server = serve(backend);
    for attack in [
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /json HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nGET /json HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    ] {
        let mut c = Client::connect(server.local_addr());
        let r = c.request(attack);
        assert_eq!(r.status, 400, "{attack:?}");
        // Nothing smuggled behind it is answered.
        c.expect_eof();
    }
}

fn http10_closes_after_the_response(backend: Backend) {
    let server = serve(backend);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /plaintext HTTP/1.0\r\n\r\nGET /json HTTP/1.0\r\n\r\n");
    let r = c.read_response("GET");
    assert_eq!((r.status, &r.body[..]), (200, &b"Hello, World!"[..]));
    c.expect_eof();

    // Unless it asks for keep-alive.
    let mut c = Client::connect(server.local_addr());
    let r = c.request("GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(r.header("connection"), Some("keep-alive"));
    assert_eq!(c.request("GET /json HTTP/1.0\r\n\r\n").status, 200);
    c.expect_eof();
}

fn connection_close_honoured(backend: Backend) {
    let server = serve(backend);
    let mut c = Client::connect(server.local_addr());
    c.send(b"GET /plaintext HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /json HTTP/1.1\r\nHost: t\r\n\r\n");
    let r = c.read_response("GET");
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    c.expect_eof();
    eventually(IO_TIMEOUT, "connection closed on the server", || server.stats().connections == 0);
}

/// A shutdown (or a restart's drain) does not cut a keep-alive connection
/// between requests: its next request is answered with `Connection: close`,
/// then it closes; requests already pipelined are answered first.
fn draining_answers_the_next_request_with_close(backend: Backend) {
    let server = start(config(backend).shutdown_grace(Duration::from_secs(5)), |_| Http::new());
    let mut idle = Client::connect(server.local_addr());
    assert_eq!(idle.request(PLAINTEXT).header("connection"), None);
    let trigger = server.trigger();
    trigger.shutdown();
    std::thread::sleep(Duration::from_millis(200));
    let r = idle.request(PLAINTEXT);
    assert_eq!((r.status, r.header("connection")), (200, Some("close")));
    assert_eq!(r.body, b"Hello, World!");
    idle.expect_eof();
    server.wait().expect("clean stop once the connection is done");
}

fn half_closed_client_still_answered(backend: Backend) {
    let server = serve(backend);
    let mut c = Client::connect(server.local_addr());
    c.send(format!("{PLAINTEXT}{PLAINTEXT}").as_bytes());
    c.stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.read_response("GET").status, 200);
    assert_eq!(c.read_response("GET").status, 200);
    c.expect_eof();
}

fn pipeline_flood_is_served_within_a_small_pool(backend: Backend) {
    // 256 buffers of 16 KiB = 4 MiB per worker, while the answers to this
    // pipeline add up to more: the server must not queue them all at once.
    let server = start(config(backend).buf_count(256), |_| Http::new());
    let mut c = Client::connect(server.local_addr());
    let n = 40_000;
    let writer = {
        let mut s = c.stream.try_clone().unwrap();
        let requests = PLAINTEXT.repeat(n);
        std::thread::spawn(move || std::io::Write::write_all(&mut s, requests.as_bytes()))
    };
    // Not reading for a while lets requests pile up on the server.
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..n {
        let r = c.read_response("GET");
        assert_eq!((r.status, &r.body[..]), (200, &b"Hello, World!"[..]), "response {i}");
    }
    writer.join().unwrap().expect("write the pipeline");
    assert_eq!(c.request(PLAINTEXT).status, 200);
}

fn many_keep_alive_clients(backend: Backend) {
    let server = start(config(backend).workers(2), |_| Http::new());
    let addr = server.local_addr();
    let clients: Vec<_> = (0..32)
        .map(|_| {
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                for _ in 0..50 {
                    assert_eq!(c.request(PLAINTEXT).body, b"Hello, World!");
                }
            })
        })
        .collect();
    for t in clients {
        t.join().expect("client thread");
    }
    eventually(IO_TIMEOUT, "all connections closed", || server.stats().connections == 0);
}

on_both_backends!(
    routes,
    date_header_is_current,
    pipelined_requests_answered_in_order,
    heads_spanning_small_buffers,
    request_split_byte_by_byte,
    content_length_upload_echoed,
    chunked_upload_echoed,
    expect_100_continue,
    oversized_headers_get_431,
    too_many_headers_get_431,
    huge_body_gets_413,
    garbage_gets_400_and_close,
    smuggling_attempts_get_400,
    http10_closes_after_the_response,
    connection_close_honoured,
    draining_answers_the_next_request_with_close,
    half_closed_client_still_answered,
    pipeline_flood_is_served_within_a_small_pool,
    many_keep_alive_clients,
);
