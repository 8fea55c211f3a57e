//! The HTTP server driven by real clients run as processes: `curl`
//! (keep-alive reuse, HTTP/1.0, uploads, malformed requests) and `wrk`
//! (a short load run, plain and pipelined). A missing client fails the test
//! with the Debian package to install; it never skips.

#[macro_use]
mod util;

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::time::Duration;

use pollring::{Backend, ServerHandle};
use pollring_examples::http::Http;
use util::*;

/// Longest any client process may run.
const PROCESS_LIMIT: Duration = Duration::from_secs(30);

fn serve(backend: Backend) -> ServerHandle {
    start(config(backend).workers(2), |_| Http::new())
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// Runs curl (silent but showing errors, bounded in time, no proxy) with
/// `args`, feeding it `stdin`.
#[track_caller]
fn curl(args: &[&str], stdin: &[u8]) -> Output {
    let curl = require("curl", "curl");
    let out = run_with_deadline(
        Command::new(curl)
            .args(["--silent", "--show-error", "--max-time", "20", "--noproxy", "*"])
            .args(args)
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY"),
        stdin,
        PROCESS_LIMIT,
    );
    assert!(
        out.status.success(),
        "curl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn curl_reuses_one_connection(backend: Backend) {
    let server = serve(backend);
    let addr = server.local_addr();
    let out = curl(
        &[
            "--verbose",
            "--write-out",
            "|connects=%{num_connects}|\n",
            &url(addr, "/plaintext"),
            &url(addr, "/json"),
        ],
        b"",
    );
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(
        stdout, "Hello, World!|connects=1|\n{\"message\":\"Hello, World!\"}|connects=0|\n",
        "stderr: {stderr}"
    );
    assert!(stderr.contains("Re-using existing connection"), "no reuse in: {stderr}");
}

fn curl_http10(backend: Backend) {
    let server = serve(backend);
    let out = curl(&["--verbose", "-0", &url(server.local_addr(), "/plaintext")], b"");
    let stderr = text(&out.stderr);
    assert_eq!(text(&out.stdout), "Hello, World!");
    assert!(stderr.contains("> GET /plaintext HTTP/1.0"), "not an HTTP/1.0 request: {stderr}");
    assert!(!stderr.to_ascii_lowercase().contains("connection: keep-alive"), "{stderr}");
    eventually(IO_TIMEOUT, "server closed the HTTP/1.0 connection", || {
        server.stats().connections == 0
    });
}

fn curl_chunked_upload(backend: Backend) {
    let server = serve(backend);
    let body = pattern(200_000, 3);
    let out = curl(
        &[
            "--verbose",
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            "@-",
            &url(server.local_addr(), "/echo"),
        ],
        &body,
    );
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Transfer-Encoding: chunked"), "{stderr}");
    assert!(out.stdout == body, "echoed body differs ({} bytes back)", out.stdout.len());
}

fn curl_content_length_upload(backend: Backend) {
    let server = serve(backend);
    // Over curl's `Expect: 100-continue` threshold.
    let body = pattern(300_000, 4);
    let out = curl(&["--data-binary", "@-", &url(server.local_addr(), "/echo")], &body);
    assert!(out.stdout == body, "echoed body differs ({} bytes back)", out.stdout.len());
}

fn curl_malformed_requests_get_4xx(backend: Backend) {
    let server = serve(backend);
    let addr = server.local_addr();
    let status = |args: &[&str]| {
        let mut all = vec!["--output", "/dev/null", "--write-out", "%{http_code}"];
        all.extend_from_slice(args);
        text(&curl(&all, b"").stdout)
    };
    assert_eq!(status(&["-H", "Content-Length: abc", &url(addr, "/plaintext")]), "400");
    assert_eq!(status(&["-H", "Host:", &url(addr, "/plaintext")]), "400"); // no Host
    let big = format!("X-Big: {}", "b".repeat(9000));
    assert_eq!(status(&["-H", &big, &url(addr, "/plaintext")]), "431");
    assert_eq!(status(&[&url(addr, "/nowhere")]), "404");
    assert_eq!(status(&["-X", "DELETE", &url(addr, "/json")]), "405");
}

/// Runs wrk for two seconds and checks it saw no socket errors and only
/// 2xx responses. Returns its output.
#[track_caller]
fn wrk(addr: SocketAddr, path: &str, script: Option<&str>) -> String {
    let wrk = require("wrk", "wrk");
    let mut cmd = Command::new(wrk);
    cmd.args(["-t1", "-c32", "-d2s", "--timeout", "5s"]);
    let script_file = script.map(|lua| {
        let path = std::env::temp_dir().join(format!(
            "pollring-http-wrk-{}-{}.lua",
            std::process::id(),
            addr.port()
        ));
        std::fs::write(&path, lua).expect("write wrk script");
        path
    });
    if let Some(path) = &script_file {
        cmd.arg("-s").arg(path);
    }
    cmd.arg(url(addr, path));
    let out = run_with_deadline(&mut cmd, b"", PROCESS_LIMIT);
    if let Some(path) = script_file {
        let _ = std::fs::remove_file(path);
    }
    let stdout = text(&out.stdout);
    eprintln!("wrk {path}:\n{stdout}");
    assert!(out.status.success(), "wrk failed ({}): {stdout}{}", out.status, text(&out.stderr));
    if let Some(line) = stdout.lines().find(|l| l.contains("Socket errors")) {
        let all_zero = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|n| !n.is_empty())
            .all(|n| n.chars().all(|c| c == '0'));
        assert!(all_zero, "wrk saw socket errors: {line}\n{stdout}");
    }
    assert!(!stdout.contains("Non-2xx or 3xx responses"), "wrk saw error responses:\n{stdout}");
    let requests: u64 = stdout
        .lines()
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk output:\n{stdout}"));
    assert!(requests > 100, "only {requests} requests in 2 s:\n{stdout}");
    stdout
}

fn wrk_plaintext(backend: Backend) {
    let server = serve(backend);
    wrk(server.local_addr(), "/plaintext", None);
}

fn wrk_json_pipelined(backend: Backend) {
    let server = serve(backend);
    // TechEmpower-style pipelining: 16 requests per write.
    let script = r#"
        init = function(args)
            local r = {}
            for i = 1, 16 do r[i] = wrk.format(nil) end
            req = table.concat(r)
        end
        request = function() return req end
    "#;
    wrk(server.local_addr(), "/json", Some(script));
}

on_both_backends!(
    curl_reuses_one_connection,
    curl_http10,
    curl_chunked_upload,
    curl_content_length_upload,
    curl_malformed_requests_get_4xx,
    wrk_plaintext,
    wrk_json_pipelined,
);
