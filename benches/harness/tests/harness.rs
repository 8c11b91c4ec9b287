//! The harness end to end against the real broker (`FAUSTUS_TEST_BROKERS`, or the repository's
//! `scripts/kafka start`): `bench-gen` loads a small input, `bench-run` runs the ceiling and sees
//! its answer match, and rejects deliberately wrong systems.

use std::path::{Path, PathBuf};
use std::process::Command;

use faustus_testkit::{brokers, unique};
use serde_json::Value;

/// A suffix no other run uses, so the test's inputs sit beside any others.
fn suffix() -> String {
    format!("-{}", unique("it"))
}

const EVENTS: &str = "2000";

/// Where the systems' logs go.
fn logs(suffix: &str) -> PathBuf {
    std::env::temp_dir().join(format!("bench-logs{suffix}"))
}

/// Runs `bench-run` on the ceiling (`system`, its command) for `workload` and `guarantee`:
/// its exit status and the result row it appended to `results`.
fn bench_run(
    suffix: &str,
    results: &Path,
    workload: &str,
    guarantee: &str,
    system: &[&str],
) -> (std::process::ExitStatus, Value) {
    let status = Command::new(env!("CARGO_BIN_EXE_bench-run"))
        .args(["--system", "ceiling", "--workload", workload])
        .args(["--guarantee", guarantee])
        .args(["--brokers", &brokers(), "--events", EVENTS])
        .arg(format!("--suffix={suffix}"))
        // The idle timeout ends a run whose output stopped short (the dropping system's): it
        // must outlast any pause of a right system on a loaded machine, or a right answer that
        // is merely slow is judged wrong.
        .args(["--timeout", "120", "--idle-timeout", "20"])
        .arg("--results")
        .arg(results)
        .arg("--log-dir")
        .arg(logs(suffix))
        .arg("--")
        .args(system)
        .status()
        .expect("running bench-run");
    let text = std::fs::read_to_string(results).expect("the results file");
    let last = text.lines().last().expect("a result row");
    (status, serde_json::from_str(last).expect("a JSON row"))
}

/// `bench-gen`, loading the test's input.
fn bench_gen(suffix: &str) -> Command {
    let mut gen = Command::new(env!("CARGO_BIN_EXE_bench-gen"));
    gen.args(["--brokers", &brokers(), "--events", EVENTS])
        .arg(format!("--suffix={suffix}"));
    gen
}

/// Runs `bench-topics` with `args` on the test broker.
fn bench_topics(args: &[&str]) -> std::process::ExitStatus {
    Command::new(env!("CARGO_BIN_EXE_bench-topics"))
        .args(["--brokers", &brokers()])
        .args(args)
        .status()
        .expect("bench-topics")
}

#[test]
fn the_ceiling_matches_and_wrong_systems_are_rejected() {
    let suffix = suffix();
    let gen = bench_gen(&suffix).status().expect("running bench-gen");
    assert!(gen.success());
    // Loading again finds the topics complete and leaves them be.
    let again = bench_gen(&suffix).output().expect("running bench-gen");
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds"));

    let results: PathBuf = std::env::temp_dir().join(format!("bench-results{suffix}.jsonl"));
    let ceiling = env!("CARGO_BIN_EXE_bench-ceiling");

    let mut app_ids = Vec::new();
    for guarantee in ["at_least_once", "exactly_once"] {
        let (status, row) = bench_run(&suffix, &results, "W0", guarantee, &[ceiling]);
        app_ids.push(row["app_id"].as_str().expect("app id").to_string());
        assert!(status.success(), "{row}");
        assert_eq!(row["answer"], "ok", "{row}");
        assert_eq!(row["kind"], "throughput");
        assert!(row["events"].as_u64().expect("events") > 0);
        assert!(row["events_per_sec_wall"].as_f64().expect("a rate") > 0.0);
        assert!(row["peak_rss_mb"].as_f64().expect("RSS") > 0.0);
        assert!(row["cpu_s_per_million"].as_f64().is_some());
    }

    let dropping = [ceiling, "--drop-every", "97"];
    let (status, row) = bench_run(&suffix, &results, "W0", "at_least_once", &dropping);
    assert_eq!(status.code(), Some(2), "{row}");
    let answer = row["answer"].as_str().expect("answer");
    assert!(answer.starts_with("mismatch: "), "{answer}");
    assert!(answer.contains("records, expected"), "{answer}");
    assert!(row["events_per_sec_wall"].is_null(), "{row}");

    let duplicating = [ceiling, "--duplicate-every", "101"];
    let (status, row) = bench_run(&suffix, &results, "W0", "exactly_once", &duplicating);
    assert_eq!(status.code(), Some(2), "{row}");
    assert!(
        row["answer"]
            .as_str()
            .expect("answer")
            .starts_with("mismatch: "),
        "{row}"
    );

    // A late duplicate, written after the output was right (one per ceiling thread that read
    // input): caught while the output settles.
    let late = [ceiling, "--late-duplicate-ms", "3000"];
    let (status, row) = bench_run(&suffix, &results, "W0", "at_least_once", &late);
    assert_eq!(status.code(), Some(2), "{row}");
    let answer = row["answer"].as_str().expect("answer");
    assert!(
        answer.starts_with("mismatch: the output matched, then ")
            && answer.contains(" more records came within "),
        "{answer}"
    );

    // A system that does not support a workload says so with exit code 3.
    let (status, row) = bench_run(&suffix, &results, "W3", "at_least_once", &[ceiling]);
    assert!(status.success());
    assert_eq!(
        row["answer"],
        "unsupported: bench-ceiling: the ceiling runs W0 only"
    );

    // No output topic is left behind; then remove the inputs.
    for app_id in app_ids {
        let status = bench_topics(&["count", &format!("out-{app_id}-w0")]);
        assert_eq!(status.code(), Some(3), "out-{app_id}-w0 is still there");
    }
    for t in ["bench-person", "bench-auction", "bench-bid"] {
        let status = bench_topics(&["delete-prefix", &format!("{t}{suffix}")]);
        assert!(status.success());
    }
    let _ = std::fs::remove_file(&results);
    let _ = std::fs::remove_dir_all(logs(&suffix));
}
