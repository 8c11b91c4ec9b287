//! Local checkpoints on a real broker: after a `kill -9`, a restart reads its table from the
//! checkpoint instead of the changelog, and the table is exact; a checkpoint that another run
//! has made stale, or that is corrupt, is not used, and the table is still exact.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

const DEADLINE: Duration = Duration::from_secs(120);

/// The log line of a table read back from the checkpoint.
const FROM_CHECKPOINT: &str = "from the local checkpoint";

fn totals(output: &str) -> BTreeMap<String, i64> {
    decode_totals(&last_values(&read_all(output)))
}

fn sums(orders: &[Order]) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for o in orders {
        *totals.entry(o.account.clone()).or_insert(0) += o.amount;
    }
    totals
}

struct App {
    id: String,
    input: String,
    output: String,
}

impl App {
    fn new(name: &str) -> App {
        let app = App {
            id: unique(name),
            input: unique("orders"),
            output: unique("totals"),
        };
        create_topic(&app.input, 4);
        app
    }

    /// A quickstart with two workers, its checkpoints in `state` (or none).
    fn start(&self, state: Option<&Path>) -> Process {
        let state = state.map_or("off".into(), |p| p.display().to_string());
        Process::quickstart(&quickstart_flags(
            &self.id,
            &self.input,
            &self.output,
            &["--workers", "2", "--state-dir", &state],
        ))
    }

    /// Produces `orders` and waits until the totals are `expected`.
    fn feed(&self, orders: &[Order], expected: &BTreeMap<String, i64>, what: &str) {
        produce(&self.input, &order_records(orders));
        wait_for(what, DEADLINE, || {
            (totals(&self.output) == *expected).then_some(())
        });
    }

    /// The table in the changelog, which every run keeps whole.
    fn changelog(&self) -> BTreeMap<String, i64> {
        changelog_table(&self.id, "user_to_amount")
    }
}

/// Every segment file under `dir`.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "seg") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn after_a_kill_9_the_table_is_read_from_the_checkpoint_and_is_exact() {
    let app = App::new("ckpt-kill");
    let state = tempfile::tempdir().unwrap();
    let (orders, _) = common::orders(6_000, 40, 11);
    let (first, rest) = orders.split_at(2_000);
    let (second, third) = rest.split_at(2_000);

    let mut process = app.start(Some(state.path()));
    app.feed(first, &sums(first), "the first orders to be summed");
    process.kill9();

    // Restored from the checkpoint: the sums go on from the restored totals, for every account.
    let mut process = app.start(Some(state.path()));
    let upto_second = sums(&orders[..4_000]);
    app.feed(
        second,
        &upto_second,
        "the second orders to be summed after a kill -9",
    );
    let log = process.log_text();
    assert!(
        log.contains(FROM_CHECKPOINT) && !log.contains("not using checkpoint"),
        "the restart did not read the checkpoint:\n{log}"
    );
    assert_eq!(app.changelog(), upto_second);
    process.kill9();
    let log = process.log_text();

    // Twice in a row: the second restart reads the checkpoint the first restart wrote.
    let process = app.start(Some(state.path()));
    app.feed(
        third,
        &sums(&orders),
        "all orders to be summed after a second kill -9",
    );
    let second = process.log_text();
    assert!(
        second.contains(FROM_CHECKPOINT),
        "the second restart did not read the checkpoint of the first.\n\
         The first restart's log:\n{log}\nThe second restart's log:\n{second}"
    );
    assert_eq!(app.changelog(), sums(&orders));
    assert_updates_increase(&app.output);
}

#[test]
fn a_stale_or_corrupt_checkpoint_is_not_used_and_the_table_is_exact() {
    let app = App::new("ckpt-stale");
    let state = tempfile::tempdir().unwrap();
    let (orders, _) = common::orders(8_000, 40, 12);
    let parts: Vec<&[Order]> = orders.chunks(2_000).collect();

    let mut process = app.start(Some(state.path()));
    app.feed(parts[0], &sums(parts[0]), "the first orders to be summed");
    assert!(process.terminate().success());

    // Another run, without the state directory, commits more: the checkpoint is stale.
    let mut process = app.start(None);
    app.feed(
        parts[1],
        &sums(&orders[..4_000]),
        "the second orders to be summed",
    );
    assert!(process.terminate().success());

    let mut process = app.start(Some(state.path()));
    app.feed(
        parts[2],
        &sums(&orders[..6_000]),
        "the third orders to be summed",
    );
    let log = process.log_text();
    assert!(
        !log.contains(FROM_CHECKPOINT),
        "a stale checkpoint was read:\n{log}"
    );
    assert_eq!(app.changelog(), sums(&orders[..6_000]));
    process.kill9();

    // Corrupt the checkpoint this run wrote: one byte in the middle of every segment.
    let files = segments(state.path());
    assert!(!files.is_empty(), "the run wrote no checkpoint");
    for file in &files {
        let mut bytes = std::fs::read(file).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x5a;
        std::fs::write(file, bytes).unwrap();
    }
    let process = app.start(Some(state.path()));
    app.feed(parts[3], &sums(&orders), "all orders to be summed");
    let log = process.log_text();
    assert!(
        log.contains("not using checkpoint") && !log.contains(FROM_CHECKPOINT),
        "a corrupt checkpoint was read:\n{log}"
    );
    assert_eq!(app.changelog(), sums(&orders));
    assert_updates_increase(&app.output);
}

#[test]
fn a_state_dir_that_cannot_be_made_stops_the_start_with_what_to_fix() {
    let state = tempfile::tempdir().expect("a temporary directory");
    let file = state.path().join("not-a-directory");
    std::fs::write(&file, b"a file").expect("a file");
    let Err(error) = faustus::App::new(unique("ckpt-bad-dir"))
        .brokers(brokers())
        .http(None)
        .state_dir(&file)
        .start(|_df| {})
    else {
        panic!("a state directory that cannot be made is a configuration error, yet the application started");
    };
    let error = error.to_string();
    assert!(
        error.starts_with("configuration: --state-dir")
            && error.contains("not-a-directory")
            && error.contains("--state-dir off"),
        "{error}"
    );
}
