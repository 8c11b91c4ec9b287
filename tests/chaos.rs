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

use common::ChaosOutcome;

/// Runs `scripts/chaos <guarantee>` on the test broker and checks what every mode must show.
fn chaos(guarantee: &str) -> ChaosOutcome {
    let records = std::env::var("CHAOS_RECORDS").unwrap_or_else(|_| "100000".into());
    let kills = std::env::var("CHAOS_KILLS").unwrap_or_else(|_| "3".into());
    let seconds = std::env::var("CHAOS_SECONDS").unwrap_or_else(|_| "45".into());
    let outcome = common::run_chaos(
        &[guarantee],
        &[
            ("FAUSTUS_TEST_BROKERS", common::brokers()),
            ("CHAOS_RECORDS", records.clone()),
            ("CHAOS_KILLS", kills.clone()),
            ("CHAOS_SECONDS", seconds),
        ],
        1500,
    );
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

/// Part of the default test run (both modes take about 8 minutes in a debug build). Run it alone
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
    let at_least_once = chaos("at_least_once");
    assert!(
        at_least_once.get("duplicated") > 0,
        "at_least_once found no duplicates after a kill inside a commit: the verifier cannot see them? {}",
        at_least_once.line
    );
}
