//! Inputs kept from fuzzing, replayed on the stable toolchain.
//!
//! Every file in `fuzz/regressions/TARGET/` goes through the same checks as
//! the fuzz target `TARGET` (`pollring_examples::fuzzing`), so an input that
//! once found a parser bug keeps being tested by `cargo test`, without
//! nightly or cargo-fuzz. `fuzz/regressions/README.md` says how to add one.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use pollring_examples::fuzzing::{check_http_input, check_resp_input};

/// `fuzz/regressions/TARGET` in this repository.
fn regressions_dir(target: &str) -> PathBuf {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = examples.parent().expect("the examples crate lives in the workspace");
    root.join("fuzz/regressions").join(target)
}

/// Runs `check` on every file in `fuzz/regressions/TARGET`, in name order,
/// and fails naming each file whose check panicked. Also fails if the
/// directory holds no inputs, so a moved or emptied directory cannot make
/// this test pass by checking nothing.
#[track_caller]
fn replay(target: &str, check: fn(&[u8])) {
    let dir = regressions_dir(target);
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no regression inputs in {}", dir.display());

    let mut failures = Vec::new();
    for path in &files {
        let data =
            std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| check(&data))) {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(non-string panic payload)".into());
            failures.push(format!("{}: {message}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} {target} regression inputs fail:\n  {}",
        failures.len(),
        files.len(),
        failures.join("\n  ")
    );
    eprintln!("{target}: {} regression inputs pass", files.len());
}

#[test]
fn resp_parser_regressions() {
    replay("resp_parser", check_resp_input);
}

#[test]
fn http_parser_regressions() {
    replay("http_parser", check_http_input);
}
