//! The chaos test at a reduced size: `scripts/chaos` with 100,000 events over 45 s, 3 process
//! SIGKILLs and one broker SIGKILL, three times, one after the other:
//!
//! - under `exactly_once`, on a cluster of two processes: nothing lost, nothing duplicated, and a
//!   kill landed inside an open transaction of the committing process while input arrived;
//! - under `exactly_once`, in one process, which keeps local checkpoints and restarts from them:
//!   the same, and a restart read its tables from the checkpoint;
//! - under `at_least_once`, the negative control: nothing lost, and the verifier finds the
//!   duplicates that a kill inside a commit leaves (it can see them).
//!
//! Set `CHAOS_RECORDS` / `CHAOS_KILLS` / `CHAOS_SECONDS` to change the size. It kills the test
//! broker (`FAUSTUS_TEST_BROKERS`, which must be `scripts/kafka`'s) and restarts it.

mod common;

use common::ChaosOutcome;

/// Runs `scripts/chaos <guarantee>` on the test broker, with `extra` environment variables, and
/// checks what every mode must show.
fn chaos_with(guarantee: &str, extra: &[(&str, String)]) -> ChaosOutcome {
    let records = std::env::var("CHAOS_RECORDS").unwrap_or_else(|_| "100000".into());
    let kills = std::env::var("CHAOS_KILLS").unwrap_or_else(|_| "3".into());
    let seconds = std::env::var("CHAOS_SECONDS").unwrap_or_else(|_| "45".into());
    let mut env = vec![
        ("FAUSTUS_TEST_BROKERS", common::brokers()),
        ("CHAOS_RECORDS", records.clone()),
        ("CHAOS_KILLS", kills.clone()),
        ("CHAOS_SECONDS", seconds),
    ];
    env.extend(extra.iter().cloned());
    let outcome = common::run_chaos(&[guarantee], &env, 1500);
    let last = &outcome.line;
    assert_eq!(outcome.get("records").to_string(), records, "{last}");
    assert_eq!(outcome.get("kills").to_string(), kills, "{last}");
    assert_eq!(outcome.get("broker_kills"), 1, "{last}");
    assert_eq!(outcome.get("lost"), 0, "{last}");
    // Kills are aimed at a commit of the committing process, while input arrives, until one
    // lands.
    assert!(
        outcome.get("commit_kills") >= 1,
        "no kill landed inside a commit: {last}"
    );
    outcome
}

/// [`chaos_with`] the cluster of two processes.
fn chaos(guarantee: &str) -> ChaosOutcome {
    chaos_with(guarantee, &[])
}

/// Part of the default test run (the three runs take about 5 minutes in a debug build). Run it alone
/// with `cargo test --test chaos`; `scripts/chaos` runs the full size.
#[test]
fn kill_9_of_processes_and_broker_loses_nothing_and_exactly_once_duplicates_nothing() {
    let exactly_once = chaos("exactly_once");
    assert_eq!(
        exactly_once.get("duplicated"),
        0,
        "exactly_once duplicated records: {}",
        exactly_once.line
    );
    // One process: it keeps local checkpoints, and every restart after a kill reads its tables
    // from them; the verifier checks the tables against the model.
    let logs = tempfile::tempdir().expect("a log directory");
    let single = chaos_with(
        "exactly_once",
        &[
            ("CHAOS_PROCESSES", "1".into()),
            ("CHAOS_DIR", logs.path().display().to_string()),
        ],
    );
    assert_eq!(
        single.get("duplicated"),
        0,
        "exactly_once duplicated records in one process: {}",
        single.line
    );
    let log = std::fs::read_to_string(logs.path().join("app-0.log")).expect("the app's log");
    assert!(
        log.contains("from the local checkpoint"),
        "no restart read its tables from the local checkpoint: {}",
        single.line
    );
    let at_least_once = chaos("at_least_once");
    assert!(
        at_least_once.get("duplicated") > 0,
        "at_least_once found no duplicates after a kill inside a commit: the verifier cannot see them? {}",
        at_least_once.line
    );
}
