//! The chaos test's broker-kill mode at a reduced size: `scripts/chaos --brokers 3 exactly_once`
//! on a 3-node KRaft cluster of its own (`scripts/kafka start --brokers 3`), with 30,000 events
//! over 80 s and 2 node SIGKILLs. Each kill is aimed at an open transaction and at the node that
//! leads the application's progress partition or the one that is the transaction coordinator of
//! its transactional id (one kill for each role, or both on one node), and the node is
//! restarted under the running application: every topic has 3 replicas with 2 in sync, so the
//! application must commit on with the node down, and in the end nothing is lost and nothing
//! duplicated. Set `CHAOS_RECORDS` / `CHAOS_SECONDS` / `CHAOS_BROKER_KILLS` to change the size.
//!
//! The cluster serves clients on `FAUSTUS_TEST_CLUSTER_PORT` and the two ports after it (its
//! controllers on the three after those); by default the port of `FAUSTUS_TEST_BROKERS` plus 10,
//! or 9102. `scripts/chaos` starts it if it does not run, and then stops it at the end; its
//! state is kept (`scripts/kafka reset --brokers 3` with `KAFKA_PORT` set deletes it).

mod common;

/// The cluster's first client port.
fn cluster_port() -> u16 {
    if let Ok(port) = std::env::var("FAUSTUS_TEST_CLUSTER_PORT") {
        return port
            .parse()
            .expect("FAUSTUS_TEST_CLUSTER_PORT is a port number");
    }
    std::env::var("FAUSTUS_TEST_BROKERS")
        .ok()
        .and_then(|brokers| brokers.rsplit_once(':')?.1.parse::<u16>().ok())
        .unwrap_or(9092)
        + 10
}

/// Part of the default test run (about 3 minutes in a debug build, most of it the brokers
/// starting). Run it alone with `cargo test --test broker_chaos`; `scripts/chaos --brokers 3`
/// runs the full size.
#[test]
fn kill_9_of_the_leader_and_the_transaction_coordinator_loses_and_duplicates_nothing() {
    let env = |name: &str, default: &str| std::env::var(name).unwrap_or_else(|_| default.into());
    let records = env("CHAOS_RECORDS", "30000");
    let kills = env("CHAOS_BROKER_KILLS", "2");
    let outcome = common::run_chaos(
        &["--brokers", "3", "exactly_once"],
        &[
            ("KAFKA_PORT", cluster_port().to_string()),
            ("CHAOS_RECORDS", records.clone()),
            ("CHAOS_SECONDS", env("CHAOS_SECONDS", "80")),
            ("CHAOS_KILLS", "0".into()),
            ("CHAOS_BROKER_KILLS", kills.clone()),
        ],
        900,
    );
    let last = &outcome.line;
    assert_eq!(outcome.get("records").to_string(), records, "{last}");
    assert_eq!(outcome.get("broker_kills").to_string(), kills, "{last}");
    assert_eq!(outcome.get("lost"), 0, "{last}");
    assert_eq!(outcome.get("duplicated"), 0, "{last}");
    assert!(
        outcome.get("leader_kills") >= 1,
        "no kill hit the progress partition's leader: {last}"
    );
    assert!(
        outcome.get("coordinator_kills") >= 1,
        "no kill hit the transaction coordinator: {last}"
    );
}
