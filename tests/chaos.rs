//! The chaos test at a reduced size: `scripts/chaos` with 100,000 events over 45 s, 3 process
//! SIGKILLs and one broker SIGKILL, under `exactly_once` (nothing lost, nothing duplicated, and
//! a kill landed inside an open transaction of the committing process while input arrived) and
//! then `at_least_once`, the negative control (nothing lost, and the verifier finds the
//! duplicates that a kill inside a commit leaves: it can see them). Set `CHAOS_RECORDS` /
//! `CHAOS_KILLS` / `CHAOS_SECONDS` to change the size.
//!
//! It kills the test broker (`FAUSTUS_TEST_BROKERS`, which must be `scripts/kafka`'s) and
//! restarts it; the two runs go one after the other.

mod common;

use std::path::PathBuf;
use std::process::Command;

/// The chaos example binary, built by `cargo build --example chaos` (a no-op when `cargo test`
/// has just built examples; a filtered run such as `cargo test --test chaos` builds none, and
/// an old binary would test old code).
fn chaos_binary() -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let mut build = Command::new(env!("CARGO"));
    build
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--example", "chaos"]);
    if dir.ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("running cargo build");
    assert!(status.success(), "cargo build --example chaos failed");
    let binary = dir.join("examples").join("chaos");
    assert!(binary.exists(), "{} does not exist", binary.display());
    binary
}

/// The counters of the result line `records=N lost=L duplicated=D kills=K broker_kills=B
/// commit_kills=C`.
fn counters(line: &str) -> Vec<(String, u64)> {
    line.split_whitespace()
        .filter_map(|field| {
            let (name, value) = field.split_once('=')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}

/// Runs `scripts/chaos <guarantee>` and returns its result line's counters.
fn chaos(guarantee: &str) -> Vec<(String, u64)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let records = std::env::var("CHAOS_RECORDS").unwrap_or_else(|_| "100000".into());
    let kills = std::env::var("CHAOS_KILLS").unwrap_or_else(|_| "3".into());
    // A run that hangs fails (scripts/chaos cleans up on SIGTERM) instead of hanging the suite.
    let output = Command::new("timeout")
        .args(["--kill-after=60", "1500"])
        .arg(root.join("scripts/chaos"))
        .arg(guarantee)
        .env("FAUSTUS_TEST_BROKERS", common::brokers())
        .env("CHAOS_BIN", chaos_binary())
        .env("CHAOS_RECORDS", &records)
        .env("CHAOS_KILLS", &kills)
        .env(
            "CHAOS_SECONDS",
            std::env::var("CHAOS_SECONDS").unwrap_or("45".into()),
        )
        .output()
        .expect("running scripts/chaos");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stderr}{stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("records="),
        "scripts/chaos {guarantee} printed no result line (status {})",
        output.status
    );
    assert!(
        output.status.success(),
        "scripts/chaos {guarantee} failed ({}): {last}",
        output.status
    );
    let counters = counters(last);
    let get = |name: &str| {
        counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no `{name}` in `{last}`"))
    };
    assert_eq!(get("records").to_string(), records, "{last}");
    assert_eq!(get("kills").to_string(), kills, "{last}");
    assert_eq!(get("broker_kills"), 1, "{last}");
    assert_eq!(get("lost"), 0, "{last}");
    // Kills are aimed at a commit of the committing process, while input arrives, until one
    // lands.
    assert!(
        get("commit_kills") >= 1,
        "no kill landed inside a commit: {last}"
    );
    counters
}

/// Part of the default test run (both modes take about 8 minutes in a debug build). Run it alone
/// with `cargo test --test chaos`; `scripts/chaos` runs the full size.
#[test]
fn kill_9_of_processes_and_broker_loses_nothing_and_exactly_once_duplicates_nothing() {
    let exactly_once = chaos("exactly_once");
    assert!(
        exactly_once.contains(&("duplicated".to_string(), 0)),
        "exactly_once duplicated records: {exactly_once:?}"
    );
    let at_least_once = chaos("at_least_once");
    let duplicated = at_least_once
        .iter()
        .find(|(n, _)| n == "duplicated")
        .map(|(_, v)| *v);
    assert!(
        duplicated.is_some_and(|d| d > 0),
        "at_least_once found no duplicates after a kill inside a commit: the verifier cannot see them? {at_least_once:?}"
    );
}
