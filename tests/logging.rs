//! `--log-format json`: every line an application prints is a JSON object, and lines logged
//! inside a restore or a commit carry that span and its fields. A backlog of input is logged
//! with its progress until it is caught up.
//!
//! A logger is installed once per process, so the test runs the application in a child: this
//! test binary again, with `FAUSTUS_LOGGING_CHILD` set, which makes the same test function the
//! child.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use faustus::logging::{self, LogFormat};
use faustus::prelude::*;
use serde_json::Value;

/// Set in the child: the application's id and input topic, `id/topic`.
const CHILD: &str = "FAUSTUS_LOGGING_CHILD";

/// How long any wait may take on a loaded machine.
const DEADLINE: Duration = Duration::from_secs(120);

/// The child: JSON logs at `debug` for faustus, an application that restores a table and
/// commits one epoch, then stops.
fn child(spec: &str) {
    let (app_id, input) = spec.split_once('/').expect("id/topic");
    logging::init(
        LogFormat::Json,
        "warn,faustus=debug,faustus_connectors=debug",
    )
    .expect("the first logger");
    let app = start_totals(app_id, input, Guarantee::ExactlyOnce);
    app.wait_ready(DEADLINE).expect("ready");
    produce(input, &[(Some(b"a".to_vec()), Some(b"1".to_vec()))]);
    let stats = app.commit_stats().expect("a committer");
    wait_for("a commit", DEADLINE, || (stats.commits() > 0).then_some(()));
    app.shutdown().expect("clean shutdown");
}

#[test]
fn json_logs_are_one_object_per_line_with_restore_and_commit_spans() {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec);
    }
    let app_id = unique("logging");
    let input = unique("logging-in");
    create_topic(&input, 2);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "json_logs_are_one_object_per_line_with_restore_and_commit_spans",
            "--nocapture",
        ])
        .env(CHILD, format!("{app_id}/{input}"))
        .env_remove("RUST_LOG")
        .output()
        .expect("the child runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the child failed:\n{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(!lines.is_empty(), "no JSON lines:\n{stderr}");
    // Only libtest's own lines are not JSON.
    for line in stderr.lines().filter(|l| !l.starts_with('{')) {
        assert!(
            line.is_empty() || line.starts_with("running") || line.starts_with("test "),
            "a line that is not JSON: {line}\n{stderr}"
        );
    }
    let in_span = |name: &str| {
        lines
            .iter()
            .filter(|l| l["span"]["name"] == name)
            .collect::<Vec<_>>()
    };
    let restores = in_span("restore");
    let changelog = format!("{app_id}-totals-changelog");
    assert!(
        restores
            .iter()
            .any(|l| l["span"]["changelog"] == changelog.as_str()
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("restored"))),
        "no restore line in its span:\n{stderr}"
    );
    let commits = in_span("commit");
    assert!(
        commits
            .iter()
            .any(|l| l["span"]["epoch"].as_u64().is_some_and(|e| e > 0)
                && l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("committed in"))),
        "no commit line in its span:\n{stderr}"
    );
}

/// A backlog that cannot be read (another producer holds it in an open transaction, so the
/// `read_committed` sources stop before it while the partition's end is past it) is logged as
/// a catch-up; once the transaction commits and the backlog is read, as caught up.
#[test]
fn a_backlog_is_logged_with_its_progress_until_it_is_caught_up() {
    let app = unique("catch-up");
    let input = unique("catch-up-orders");
    let output = unique("catch-up-totals");
    create_topic(&input, 1);
    let held = 20_000;
    let records: Vec<KeyValue> = (0..held)
        .map(|i| {
            (
                Some(format!("account-{}", i % 10).into_bytes()),
                Some(format!(r#"{{"account":"account-{}","amount":1}}"#, i % 10).into_bytes()),
            )
        })
        .collect();
    let holder = hold_transaction(&input, &records);
    let mut flags = quickstart_flags(&app, &input, &output, &[]);
    // HTTP on, for the overview's view of the same catch-up.
    let http = flags.iter().position(|f| f == "off").expect("--http off");
    let base = format!("http://127.0.0.1:{}", free_port());
    flags[http] = base.trim_start_matches("http://").to_string();
    let mut worker = Process::quickstart(&flags);
    let behind = wait_for("a catch-up line", DEADLINE, || {
        let log = worker.log_text();
        log.lines()
            .find(|l| l.contains("catching up: "))
            .map(str::to_string)
    });
    assert!(
        behind.contains(&format!("catching up: {held} input records behind")),
        "the held records are the backlog: {behind}"
    );
    // The overview shows the catch-up too, with the same backlog.
    let overview = format!("{base}/api/overview/");
    let shown = wait_for("the catch-up on the overview", DEADLINE, || {
        let (status, body) = http_get(&overview);
        (status == 200 && !body["processes"][0]["catch_up"].is_null())
            .then(|| body["processes"][0]["catch_up"].clone())
    });
    assert_eq!(shown["backlog"], held, "{shown}");
    assert_eq!(shown["behind"], held, "nothing can be read yet: {shown}");
    assert_eq!(shown["percent"], 0, "{shown}");
    use rdkafka::producer::Producer;
    holder
        .commit_transaction(Duration::from_secs(30))
        .expect("the held transaction commits");
    let caught_up = wait_for("a caught-up line", DEADLINE, || {
        let log = worker.log_text();
        log.lines()
            .find(|l| l.contains("caught up: "))
            .map(str::to_string)
    });
    assert!(
        caught_up.contains(&format!("caught up: {held} records of backlog in")),
        "{caught_up}"
    );
    let (status, body) = http_get(&overview);
    assert_eq!(status, 200, "{body}");
    assert!(
        body["processes"][0]["catch_up"].is_null(),
        "caught up, the overview shows no catch-up: {body}"
    );
    assert!(worker.terminate().success());
}
