//! The RESP server driven by the real Redis clients, `redis-cli` and
//! `redis-benchmark` (Debian package redis-tools), run as child processes
//! with a deadline. A missing client fails the test, naming the package.

#[macro_use]
mod resp_util;

use std::time::Duration;

use pollring::Backend;
use resp_util::*;

/// How long one client process may run.
const CLI_LIMIT: Duration = Duration::from_secs(20);
const BENCH_LIMIT: Duration = Duration::from_secs(180);

fn redis_cli_runs_every_command(backend: Backend) {
    let cli = client_binary("redis-cli");
    let server = start(config(backend).workers(2));
    let port = server.addr().port().to_string();
    // (arguments, what redis-cli prints when stdout is not a terminal).
    let script: &[(&[&str], &str)] = &[
        (&["PING"], "PONG\n"),
        (&["PING", "hello"], "hello\n"),
        (&["ECHO", "a b"], "a b\n"),
        (&["SET", "k", "v"], "OK\n"),
        (&["GET", "k"], "v\n"),
        (&["GET", "missing"], "\n"),
        (&["SET", "k", "w", "NX"], "\n"),
        (&["SET", "k", "w", "XX", "GET"], "v\n"),
        (&["SET", "k2", "x", "EX", "100"], "OK\n"),
        (&["TTL", "k2"], "100\n"),
        (&["TTL", "k"], "-1\n"),
        (&["TTL", "missing"], "-2\n"),
        (&["EXPIRE", "k", "50"], "1\n"),
        (&["TTL", "k"], "50\n"),
        (&["EXPIRE", "missing", "50"], "0\n"),
        (&["PTTL", "missing"], "-2\n"),
        (&["PERSIST", "k"], "1\n"),
        (&["INCR", "n"], "1\n"),
        (&["INCRBY", "n", "41"], "42\n"),
        (&["DECR", "n"], "41\n"),
        (&["DECRBY", "n", "1"], "40\n"),
        (&["MSET", "a", "1", "b", "2"], "OK\n"),
        (&["MGET", "a", "b", "nope"], "1\n2\n\n"),
        (&["EXISTS", "a", "b", "nope", "a"], "3\n"),
        (&["DEL", "a", "b", "nope"], "2\n"),
        (&["DBSIZE"], "3\n"),
        (&["CLIENT", "SETNAME", "me"], "OK\n"),
        (&["CLIENT", "GETNAME"], "\n"), // a new connection per run
        (&["SELECT", "0"], "OK\n"),
        (&["FLUSHALL"], "OK\n"),
        (&["DBSIZE"], "0\n"),
        (&["COMMAND", "DOCS"], "\n"),
        // Error replies.
        (&["GET"], "ERR wrong number of arguments for 'get' command\n\n"),
        (&["FOO", "bar"], "ERR unknown command 'FOO', with args beginning with: 'bar' \n\n"),
        (&["SET", "s", "text"], "OK\n"),
        (&["INCR", "s"], "ERR value is not an integer or out of range\n\n"),
        (&["SET", "s", "v", "EX", "0"], "ERR invalid expire time in 'set' command\n\n"),
        (&["SET", "s", "v", "BOGUS"], "ERR syntax error\n\n"),
        (&["HELLO", "3"], "NOPROTO sorry, this protocol version is not supported\n\n"),
        (&["QUIT"], "OK\n"),
    ];
    for (args, want) in script {
        let mut argv = vec!["-h", "127.0.0.1", "-p", &port];
        argv.extend_from_slice(args);
        let out = run(&cli, &argv, CLI_LIMIT);
        assert_eq!(out.code, Some(0), "redis-cli {args:?} failed: {out:?}");
        assert_eq!(out.stdout, *want, "redis-cli {args:?} (stderr: {:?})", out.stderr);
    }
}

fn redis_cli_hello_2_lists_server_info(backend: Backend) {
    let cli = client_binary("redis-cli");
    let server = start(config(backend));
    let port = server.addr().port().to_string();
    let out = run(&cli, &["-h", "127.0.0.1", "-p", &port, "HELLO", "2"], CLI_LIMIT);
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 14, "{lines:?}");
    assert_eq!(&lines[..6], ["server", "redis", "version", "7.0.0", "proto", "2"]);
    assert_eq!(&lines[8..13], ["mode", "standalone", "role", "master", "modules"]);
}

fn redis_benchmark_runs_without_errors(backend: Backend) {
    let bench = client_binary("redis-benchmark");
    let server = start(config(backend).workers(2));
    let port = server.addr().port().to_string();
    let args =
        ["-h", "127.0.0.1", "-p", &port, "-t", "ping,set,get", "-P", "16", "-n", "100000", "-q"];
    let out = run(&bench, &args, BENCH_LIMIT);
    let all = format!("{}\n{}", out.stdout, out.stderr);
    assert_eq!(out.code, Some(0), "redis-benchmark failed: {all}");
    // -q redraws its progress with \r; the last segment of each line is the
    // result.
    let results: Vec<&str> =
        out.stdout.lines().filter_map(|l| l.rsplit('\r').next()).map(str::trim).collect();
    for test in ["PING_INLINE", "PING_MBULK", "SET", "GET"] {
        let prefix = format!("{test}: ");
        assert!(
            results.iter().any(|l| l.starts_with(&prefix) && l.contains("requests per second")),
            "no result line for {test} in: {all}"
        );
    }
    assert!(!all.contains("ERR") && !all.to_lowercase().contains("error"), "errors: {all}");
    assert!(!all.contains("WARNING"), "warnings: {all}");
    // Every SET landed in the one shared keyspace (-r not given: one key).
    assert_eq!(server.store.len(), 1, "redis-benchmark's SET writes key:__rand_int__");
}

on_both_backends!(
    redis_cli_runs_every_command,
    redis_cli_hello_2_lists_server_info,
    redis_benchmark_runs_without_errors,
);
