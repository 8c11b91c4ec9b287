//! The harness end to end against the real broker (`FAUSTUS_TEST_BROKERS`, or the repository's
//! `scripts/kafka start`): `bench-gen` loads a small input, `bench-run` runs the ceiling and sees
//! its answer match, and rejects deliberately wrong systems.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn brokers() -> String {
    faustus_bench::kafka::test_brokers()
}

/// A suffix no other run uses, so the test's inputs sit beside any others.
fn suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_nanos();
    format!("-it{}-{nanos}", std::process::id())
}

const EVENTS: &str = "2000";

fn bench_run(
    suffix: &str,
    results: &Path,
    guarantee: &str,
    system: &[&str],
) -> (std::process::ExitStatus, Value) {
    let logs = std::env::temp_dir().join(format!("bench-logs{suffix}"));
    let status = Command::new(env!("CARGO_BIN_EXE_bench-run"))
        .args([
            "--system",
            "ceiling",
            "--workload",
            "W0",
            "--guarantee",
            guarantee,
        ])
        .args(["--brokers", &brokers(), "--events", EVENTS])
        .arg(format!("--suffix={suffix}"))
        // The idle timeout ends a run whose output stopped short (the dropping system's): it
        // must outlast any pause of a right system on a loaded machine, or a right answer that
        // is merely slow is judged wrong.
        .args(["--timeout", "120", "--idle-timeout", "20"])
        .arg("--results")
        .arg(results)
        .arg("--log-dir")
        .arg(&logs)
        .arg("--")
        .args(system)
        .status()
        .expect("running bench-run");
    let text = std::fs::read_to_string(results).expect("the results file");
    let last = text.lines().last().expect("a result row");
    (status, serde_json::from_str(last).expect("a JSON row"))
}

#[test]
fn the_ceiling_matches_and_wrong_systems_are_rejected() {
    let suffix = suffix();
    let gen = Command::new(env!("CARGO_BIN_EXE_bench-gen"))
        .args(["--brokers", &brokers(), "--events", EVENTS])
        .arg(format!("--suffix={suffix}"))
        .status()
        .expect("running bench-gen");
    assert!(gen.success());
    // Loading again finds the topics complete and leaves them be.
    let again = Command::new(env!("CARGO_BIN_EXE_bench-gen"))
        .args(["--brokers", &brokers(), "--events", EVENTS])
        .arg(format!("--suffix={suffix}"))
        .output()
        .expect("running bench-gen");
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));

    let results: PathBuf = std::env::temp_dir().join(format!("bench-results{suffix}.jsonl"));
    let ceiling = env!("CARGO_BIN_EXE_bench-ceiling");

    let mut app_ids = Vec::new();
    for guarantee in ["at_least_once", "exactly_once"] {
        let (status, row) = bench_run(&suffix, &results, guarantee, &[ceiling]);
        app_ids.push(row["app_id"].as_str().expect("app id").to_string());
        assert!(status.success(), "{row}");
        assert_eq!(row["answer"], "ok", "{row}");
        assert_eq!(row["kind"], "throughput");
        assert!(row["events"].as_u64().expect("events") > 0);
        assert!(row["events_per_sec"].as_f64().expect("a rate") > 0.0);
        assert!(row["peak_rss_mb"].as_f64().expect("RSS") > 0.0);
        assert!(row["cpu_s_per_million"].as_f64().is_some());
    }

    let (status, row) = bench_run(
        &suffix,
        &results,
        "at_least_once",
        &[ceiling, "--drop-every", "97"],
    );
    assert_eq!(status.code(), Some(2), "{row}");
    let answer = row["answer"].as_str().expect("answer");
    assert!(answer.starts_with("mismatch: "), "{answer}");
    assert!(answer.contains("records, expected"), "{answer}");
    assert!(row["events_per_sec"].is_null(), "{row}");

    let (status, row) = bench_run(
        &suffix,
        &results,
        "exactly_once",
        &[ceiling, "--duplicate-every", "101"],
    );
    assert_eq!(status.code(), Some(2), "{row}");
    assert!(
        row["answer"]
            .as_str()
            .expect("answer")
            .starts_with("mismatch: "),
        "{row}"
    );

    // A system that does not support a workload says so with exit code 3.
    let logs = std::env::temp_dir().join(format!("bench-logs{suffix}"));
    let status = Command::new(env!("CARGO_BIN_EXE_bench-run"))
        .args([
            "--system",
            "ceiling",
            "--workload",
            "W3",
            "--guarantee",
            "at_least_once",
        ])
        .args(["--brokers", &brokers(), "--events", EVENTS])
        .arg(format!("--suffix={suffix}"))
        .arg("--results")
        .arg(&results)
        .arg("--log-dir")
        .arg(&logs)
        .args(["--", ceiling])
        .status()
        .expect("running bench-run");
    assert!(status.success());
    let text = std::fs::read_to_string(&results).expect("results");
    let row: Value = serde_json::from_str(text.lines().last().expect("row")).expect("JSON");
    assert_eq!(
        row["answer"],
        "unsupported: bench-ceiling: the ceiling runs W0 only"
    );

    // No output topic is left behind; then remove the inputs.
    for app_id in app_ids {
        let status = Command::new(env!("CARGO_BIN_EXE_bench-topics"))
            .args(["--brokers", &brokers(), "count"])
            .arg(format!("out-{app_id}-w0"))
            .status()
            .expect("bench-topics");
        assert_eq!(status.code(), Some(3), "out-{app_id}-w0 is still there");
    }
    for t in ["bench-person", "bench-auction", "bench-bid"] {
        let status = Command::new(env!("CARGO_BIN_EXE_bench-topics"))
            .args(["--brokers", &brokers(), "delete-prefix"])
            .arg(format!("{t}{suffix}"))
            .status()
            .expect("bench-topics");
        assert!(status.success());
    }
    let _ = std::fs::remove_file(&results);
    let _ = std::fs::remove_dir_all(&logs);
}
