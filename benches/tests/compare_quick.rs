//! `pollring-bench compare --quick`, the smoke run CI does: it must finish,
//! print the table, and write parseable JSON and an SVG with a row for every
//! server and workload.

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn quick_compare_writes_table_json_and_chart() {
    let out = std::env::temp_dir().join(format!("pollring-bench-quick-{}", std::process::id()));
    let start = Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_pollring-bench"))
        .args(["compare", "--quick", "--out"])
        .arg(&out)
        .output()
        .expect("run pollring-bench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "compare failed: {}\n{stdout}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(start.elapsed() < Duration::from_secs(120), "the quick mode must stay quick");
    // redis-server takes part when it is installed; when not, the report says so.
    let redis = !stdout.contains("redis-server is not on the PATH");
    let workloads = ["echo", "http", "http-pipelined", "resp-get", "resp-set"];
    let mut expected = 0;
    for server in ["pollring-epoll", "pollring-uring", "tokio", "redis"] {
        let speaks = |w: &str| match server {
            "tokio" => !w.starts_with("resp"),
            "redis" => w.starts_with("resp"),
            _ => true,
        };
        if server == "redis" && !redis {
            assert!(!stdout.contains("| redis |"), "{stdout}");
            continue;
        }
        for w in workloads {
            let rows = stdout.matches(&format!("| {w} |")).count();
            assert!(rows > 0, "no {w} rows:\n{stdout}");
            let depth =
                if w.contains("pipelined") || w.starts_with("resp") { "16 batched" } else { "1" };
            let row = format!("| {w} | {depth} | 1 | {server} |");
            assert_eq!(stdout.matches(&row).count(), usize::from(speaks(w)), "{row}:\n{stdout}");
            expected += usize::from(speaks(w));
        }
    }
    // Idle RSS rows for the echo servers.
    for server in ["pollring-epoll", "pollring-uring", "tokio"] {
        assert!(stdout.contains(&format!("| {server} | ")), "{stdout}");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let rows = summary["rows"].as_array().unwrap();
    assert_eq!(rows.len(), expected, "a row per server and workload it speaks");
    for row in rows {
        assert!(row["rps"].as_f64().unwrap() > 0.0, "every server answered: {row}");
        assert!(row["cpu_ns_per_req"].as_f64().unwrap() > 0.0, "server CPU counted: {row}");
        for key in ["user_ns_per_req", "sys_ns_per_req"] {
            assert!(row[key].as_f64().unwrap() >= 0.0, "{key}: {row}");
        }
    }
    let runs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("runs.json")).unwrap()).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), expected);
    let svg = std::fs::read_to_string(out.join("compare.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("pollring-uring"));
    let _ = std::fs::remove_dir_all(&out);
}

/// `--workloads proxy,proxy-bulk --quick`: every server proxies both loads
/// to the shared upstream, and the bulk rows carry MiB/s and CPU per KiB.
#[test]
fn quick_proxy_compare_has_small_and_bulk_rows() {
    let out =
        std::env::temp_dir().join(format!("pollring-bench-quick-proxy-{}", std::process::id()));
    let start = Instant::now();
    let run = Command::new(env!("CARGO_BIN_EXE_pollring-bench"))
        .args(["compare", "--quick", "--workloads", "proxy,proxy-bulk", "--idle", "0", "--out"])
        .arg(&out)
        .output()
        .expect("run pollring-bench");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "compare failed: {}\n{stdout}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(start.elapsed() < Duration::from_secs(30), "the quick proxy run must stay quick");
    for server in ["pollring-epoll", "pollring-uring", "tokio"] {
        for (workload, depth) in [("proxy", 1), ("proxy-bulk", 4)] {
            assert_eq!(
                stdout.matches(&format!("| {workload} | {depth} | 1 | {server} |")).count(),
                1,
                "a {workload} row for {server}:\n{stdout}"
            );
        }
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let rows = summary["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "3 servers x 2 workloads");
    for row in rows {
        assert!(row["rps"].as_f64().unwrap() > 0.0, "every proxy answered: {row}");
        assert!(row["cpu_ns_per_kib"].as_f64().unwrap() > 0.0, "CPU per KiB: {row}");
        if row["workload"] == "proxy-bulk" {
            assert!(row["mib_per_s"].as_f64().unwrap() > 1.0, "bulk moved data: {row}");
        }
    }
    let _ = std::fs::remove_dir_all(&out);
}
