//! HTTP/1.1 on hyper: the `/plaintext` route of pollring's HTTP example.
//!
//! Responses carry the headers pollring's carry: `Server` and `Content-Type`
//! set here, `Content-Length` and `Date` added by hyper. hyper formats `Date`
//! at most once a second per thread and reuses it, as pollring's `DateCache`
//! does, so neither side formats a date per response.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE, SERVER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Serves HTTP/1.1 on `stream` until the peer closes it or an error occurs.
///
/// `pipeline_flush` holds responses back while more pipelined requests are
/// already buffered, so a batch of requests is answered with one write.
///
/// # Errors
///
/// hyper's error for the connection: I/O, a malformed request, a peer that
/// closed mid-message.
pub(super) async fn serve_conn(stream: TcpStream) -> hyper::Result<()> {
    http1::Builder::new()
        .pipeline_flush(true)
        .serve_connection(
            TokioIo::new(stream),
            service_fn(|req| async move { Ok::<_, Infallible>(respond(&req)) }),
        )
        .await
}

/// The response to `req`: `Hello, World!` for `GET` or `HEAD` on
/// `/plaintext` (hyper leaves out the body for `HEAD`), 405 for another method
/// there, 404 elsewhere.
fn respond<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let (status, body, allow): (_, &'static [u8], _) = match req.uri().path() {
        "/plaintext" if matches!(*req.method(), Method::GET | Method::HEAD) => {
            (StatusCode::OK, b"Hello, World!", None)
        }
        "/plaintext" => {
            (StatusCode::METHOD_NOT_ALLOWED, b"Method Not Allowed\n", Some("GET, HEAD"))
        }
        _ => (StatusCode::NOT_FOUND, b"Not Found\n", None),
    };
    let mut response = Response::new(Full::new(Bytes::from_static(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(SERVER, HeaderValue::from_static("tokio-hyper"));
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if let Some(allow) = allow {
        headers.insert(ALLOW, HeaderValue::from_static(allow));
    }
    response
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;

    use super::super::test_util::Running;
    use super::super::Proto;

    /// One response as read off the wire.
    #[derive(Debug)]
    struct Reply {
        status: u16,
        /// Header names lower-cased.
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Reply {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
        }
    }

    /// Reads one response; `head_only` for the answer to `HEAD`.
    #[track_caller]
    fn read_reply(reader: &mut BufReader<TcpStream>, head_only: bool) -> Reply {
        let mut line = String::new();
        reader.read_line(&mut line).expect("read status line");
        let status = line
            .strip_prefix("HTTP/1.1 ")
            .and_then(|rest| rest.get(..3))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {line:?}"));
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).expect("read header line");
            let line = line.trim_end_matches("\r\n");
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("header without colon");
            headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
        }
        let mut reply = Reply { status, headers, body: Vec::new() };
        if !head_only {
            let len = reply.header("content-length").expect("content-length");
            reply.body = vec![0; len.parse().expect("numeric content-length")];
            reader.read_exact(&mut reply.body).expect("read body");
        }
        reply
    }

    #[track_caller]
    fn assert_plaintext(reply: &Reply) {
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.body, b"Hello, World!");
        assert_eq!(reply.header("content-length"), Some("13"));
        assert_eq!(reply.header("content-type"), Some("text/plain"));
        assert_eq!(reply.header("server"), Some("tokio-hyper"));
        // RFC 7231 IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
        let date = reply.header("date").expect("date header");
        assert!(date.len() == 29 && date.ends_with(" GMT"), "bad date {date:?}");
    }

    #[test]
    fn plaintext() {
        let server = Running::start(Proto::Http);
        let mut client = server.connect();
        let mut reader = BufReader::new(client.try_clone().expect("clone client"));

        client.write_all(b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n").expect("write");
        assert_plaintext(&read_reply(&mut reader, false));

        // Same connection: kept alive.
        client.write_all(b"HEAD /plaintext HTTP/1.1\r\nHost: a\r\n\r\n").expect("write");
        let head = read_reply(&mut reader, true);
        assert_eq!(head.status, 200, "{head:?}");
        assert_eq!(head.header("content-length"), Some("13"));

        client.write_all(b"POST /plaintext HTTP/1.1\r\nHost: a\r\n\r\n").expect("write");
        let post = read_reply(&mut reader, false);
        assert_eq!(post.status, 405, "{post:?}");
        assert_eq!(post.header("allow"), Some("GET, HEAD"));

        server.stop();
    }

    #[test]
    fn pipelined_requests_answered_in_order() {
        let server = Running::start(Proto::Http);
        let mut client = server.connect();
        let mut reader = BufReader::new(client.try_clone().expect("clone client"));

        client
            .write_all(
                b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n\
                  GET /missing HTTP/1.1\r\nHost: a\r\n\r\n\
                  GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n",
            )
            .expect("write");
        assert_plaintext(&read_reply(&mut reader, false));
        let missing = read_reply(&mut reader, false);
        assert_eq!(missing.status, 404, "{missing:?}");
        assert_eq!(missing.body, b"Not Found\n");
        assert_plaintext(&read_reply(&mut reader, false));

        server.stop();
    }

    #[test]
    fn malformed_request_ends_only_its_connection() {
        let server = Running::start(Proto::Http);
        let mut bad = server.connect();
        bad.write_all(b"NOT HTTP AT ALL\r\n\r\n").expect("write");
        let mut rest = Vec::new();
        // hyper answers 400 and closes, or resets: either way the stream ends.
        if let Err(e) = bad.read_to_end(&mut rest) {
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
        }

        let mut good = server.connect();
        let mut reader = BufReader::new(good.try_clone().expect("clone client"));
        good.write_all(b"GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n").expect("write");
        assert_plaintext(&read_reply(&mut reader, false));

        server.stop();
    }
}
