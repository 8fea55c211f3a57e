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
    for server in ["pollring-epoll", "pollring-uring", "tokio"] {
        assert_eq!(
            stdout.matches(&format!("| {server} |")).count(),
            3,
            "two workloads and an RSS row for {server}:\n{stdout}"
        );
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let rows = summary["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 6, "3 servers x 2 workloads");
    for row in rows {
        assert!(row["rps"].as_f64().unwrap() > 0.0, "every server answered: {row}");
    }
    let runs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("runs.json")).unwrap()).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 6);
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
        for workload in ["proxy", "proxy-bulk"] {
            assert_eq!(
                stdout.matches(&format!("| {workload} | 1 | {server} |")).count(),
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
