//! Restarts: a clean stop and a `kill -9`, with input arriving throughout. The table after the
//! restarts equals the table of all input — nothing lost, nothing counted twice — and the
//! updates topic never shows an update of a committed epoch twice.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

fn totals(output: &str) -> BTreeMap<String, i64> {
    decode_totals(&last_values(&read_all(output)))
}

#[test]
fn a_clean_stop_and_restart_continues_exactly() {
    let app_id = unique("clean");
    let input = unique("orders");
    let output = unique("totals");
    create_topic(&input, 4);
    let (orders, _) = common::orders(4_000, 20, 3);
    let (first, second) = orders.split_at(2_000);
    let expect = |orders: &[Order]| {
        let mut totals = BTreeMap::new();
        for o in orders {
            *totals.entry(o.account.clone()).or_insert(0) += o.amount;
        }
        totals
    };

    produce(&input, &order_records(first));
    let mut process = Process::quickstart(&quickstart_flags(
        &app_id,
        &input,
        &output,
        &["--workers", "2"],
    ));
    let expected = expect(first);
    wait_for(
        "the first half to be summed",
        Duration::from_secs(90),
        || (totals(&output) == expected).then_some(()),
    );
    let status = process.terminate();
    assert!(status.success(), "a clean stop exits 0, got {status}");

    produce(&input, &order_records(second));
    let _process = Process::quickstart(&quickstart_flags(
        &app_id,
        &input,
        &output,
        &["--workers", "2"],
    ));
    let expected = expect(&orders);
    wait_for(
        "all orders to be summed after the restart",
        Duration::from_secs(90),
        || (totals(&output) == expected).then_some(()),
    );
    assert_updates_increase(&output);
}

#[test]
fn kill_9_while_input_arrives_loses_nothing_and_counts_nothing_twice() {
    let app_id = unique("kill9");
    let input = unique("orders");
    let output = unique("totals");
    create_topic(&input, 4);
    let (orders, expected) = common::orders(12_000, 50, 5);
    let mut batches: Vec<Vec<Order>> = orders.chunks(1_000).map(<[Order]>::to_vec).collect();
    // One batch per incarnation that is killed, produced once it runs: each has new input to
    // commit, however fast the others drained the background producer's input.
    let per_round: Vec<Vec<Order>> = batches.split_off(batches.len() - 3);

    // Input keeps arriving while the app is killed and restarted (the sleep paces the
    // producer; nothing waits on it).
    let producer_input = input.clone();
    let producer = std::thread::spawn(move || {
        for batch in batches {
            produce(&producer_input, &order_records(&batch));
            std::thread::sleep(Duration::from_millis(300));
        }
    });

    let args = quickstart_flags(
        &app_id,
        &input,
        &output,
        &["--workers", "2", "--commit-interval-ms", "200"],
    );
    // Every commit is held open for 300 ms after its records were sent, so the kills land
    // inside open transactions.
    let hold = [("FAUSTUS_FAULT_COMMIT_HOLD_MS", "300")];
    for (round, batch) in (0..).zip(&per_round) {
        let mut process = Process::quickstart_env(&args, &hold);
        // Wait until this incarnation has committed something new — its own batch guarantees
        // there is something — then kill it mid-stream, at a moment that varies per round.
        let before = read_all(&output).len();
        produce(&input, &order_records(batch));
        wait_for("new committed updates", Duration::from_secs(120), || {
            (read_all(&output).len() > before).then_some(())
        });
        std::thread::sleep(Duration::from_millis(100 + 100 * round));
        process.kill9();
    }
    producer.join().unwrap();

    let _process = Process::quickstart_env(&args, &hold);
    wait_for(
        "the totals of all orders after three kills",
        Duration::from_secs(120),
        || (totals(&output) == expected).then_some(()),
    );
    assert_updates_increase(&output);
    // The changelog agrees.
    let changelog = changelog_table(&app_id, "user_to_amount");
    assert_eq!(changelog, expected);
}

/// An order as the in-process runs read it.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
struct TypedOrder {
    account: String,
    amount: i64,
}

/// Starts the sum of orders in-process with `interval` epochs.
fn start_sum(app_id: &str, input: &str, output: &str, interval: Duration) -> faustus::Running {
    use faustus::prelude::*;
    let orders = Topic::<String, TypedOrder>::new(input.to_string()).key_codec(Str);
    let totals = Topic::<String, i64>::new(output.to_string()).key_codec(Str);
    App::new(app_id)
        .brokers(brokers())
        .http(None)
        .commit_interval(interval)
        .start(move |df| {
            df.stream(&orders)
                .map(|_, o| (o.account, o.amount))
                .sum("user_to_amount")
                .to_topic(&totals);
        })
        .expect("the app starts")
}

/// Waits until the totals in `output` equal `expected`.
fn wait_for_totals(output: &str, expected: &[(&str, i64)]) {
    let expected: BTreeMap<String, i64> =
        expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    wait_for("the totals", Duration::from_secs(60), || {
        (totals(output) == expected).then_some(())
    });
}

/// Runs the sum of orders until the totals equal `expected`, then stops cleanly.
fn run_sum(app_id: &str, input: &str, output: &str, interval: Duration, expected: &[(&str, i64)]) {
    let running = start_sum(app_id, input, output, interval);
    wait_for_totals(output, expected);
    running.shutdown().expect("a clean stop");
}

fn order(account: &str, amount: i64) -> Vec<KeyValue> {
    order_records(&[common::Order {
        account: account.into(),
        amount,
    }])
}

/// A restart whose epochs move only some partitions still records every partition's position
/// in its progress: the next restart must not read the others from the beginning and count them
/// twice.
#[test]
fn a_partition_without_new_input_keeps_its_position_across_restarts() {
    let app_id = unique("positions");
    let input = unique("orders");
    let output = unique("totals");
    create_topic(&input, 2);
    let interval = Duration::from_millis(100);
    produce_to(&input, Some(0), &order("a", 1));
    produce_to(&input, Some(1), &order("b", 10));
    run_sum(&app_id, &input, &output, interval, &[("a", 1), ("b", 10)]);
    // Only partition 0 moves in the second run ...
    produce_to(&input, Some(0), &order("a", 2));
    run_sum(&app_id, &input, &output, interval, &[("a", 3), ("b", 10)]);
    // ... and the third run must still start partition 1 where the first run left it.
    produce_to(&input, Some(0), &order("a", 4));
    run_sum(&app_id, &input, &output, interval, &[("a", 7), ("b", 10)]);
    assert_updates_increase(&output);
    assert_eq!(
        changelog_table(&app_id, "user_to_amount"),
        [("a".to_string(), 7), ("b".to_string(), 10)]
            .into_iter()
            .collect()
    );
}

/// Epochs are numbered in milliseconds whatever the commit interval: a restart with a longer
/// interval continues after the last committed epoch (numbering them `now / interval` would
/// give numbers below it, and nothing would commit again).
#[test]
fn a_restart_with_another_commit_interval_continues() {
    let app_id = unique("interval");
    let input = unique("orders");
    let output = unique("totals");
    create_topic(&input, 1);
    // (commit interval in ms, a new order's amount, the total after it)
    for (interval, amount, total) in [(50, 1, 1), (1000, 2, 3), (20, 4, 7)] {
        produce(&input, &order("a", amount));
        let interval = Duration::from_millis(interval);
        run_sum(&app_id, &input, &output, interval, &[("a", total)]);
    }
    assert_updates_increase(&output);
}

/// A second instance with the same application id fences the first: the first stops with an
/// error that says so, and the second carries on exactly.
#[test]
fn a_second_instance_fences_the_first() {
    let app_id = unique("fence");
    let input = unique("orders");
    let output = unique("totals");
    create_topic(&input, 2);
    let interval = Duration::from_millis(100);
    let start = || start_sum(&app_id, &input, &output, interval);
    produce(&input, &order("a", 1));
    let first = start();
    wait_for_totals(&output, &[("a", 1)]);

    let second = start();
    // The first instance learns it was fenced at its next commit.
    produce(&input, &order("a", 2));
    wait_for(
        "the first instance to stop",
        Duration::from_secs(60),
        || first.is_finished().then_some(()),
    );
    let error = first
        .join()
        .expect_err("a fenced instance stops with an error")
        .to_string();
    assert!(error.contains("fenced"), "{error}");

    produce(&input, &order("a", 4));
    wait_for_totals(&output, &[("a", 7)]);
    second.shutdown().expect("a clean stop");
    assert_updates_increase(&output);
}

#[test]
fn a_sigterm_as_soon_as_the_app_answers_stops_it_cleanly() {
    let app_id = unique("early-term");
    let input = unique("orders");
    let output = unique("totals");
    create_topic(&input, 2);
    let port = free_port();
    let mut extra = quickstart_flags(&app_id, &input, &output, &[]);
    // This test serves HTTP: replace `--http off`.
    let at = extra.iter().position(|f| f == "off").expect("--http off");
    extra[at] = format!("127.0.0.1:{port}");
    let mut process = Process::quickstart(&extra);
    // The earliest moment anything outside can see the app: its liveness answers.
    let base = format!("http://127.0.0.1:{port}");
    wait_for("the app to answer", Duration::from_secs(90), || {
        (http_get(&format!("{base}/api/live")).0 == 200).then_some(())
    });
    let status = process.terminate();
    assert!(
        status.success(),
        "a SIGTERM once the app answers is a clean stop (exit 0), got {status}"
    );
}

/// Starts the final counts of orders per account and session (a gap of a second) of their
/// record timestamps, punctuated after half a second of quiet.
fn start_quiet_windows(app_id: &str, input: &str, output: &str) -> faustus::Running {
    use faustus::prelude::*;
    let orders = Topic::<String, TypedOrder>::new(input.to_string()).key_codec(Str);
    let finals = Topic::<(String, Window), i64>::new(output.to_string());
    App::new(app_id)
        .brokers(brokers())
        .http(None)
        .start(move |df| {
            df.stream(&orders)
                .punctuate_when_idle(Duration::from_millis(500))
                .session(Duration::from_secs(1))
                .emit_final()
                .count("windows")
                .to_topic(&finals);
        })
        .expect("the app starts")
}

/// The final counts written to `output`, in order.
fn final_counts(output: &str) -> Vec<((String, faustus::prelude::Window), i64)> {
    read_all(output)
        .into_iter()
        .map(|r| {
            let key = serde_json::from_slice(&r.key.expect("a key")).expect("a JSON key");
            let value = serde_json::from_slice(&r.value.expect("a value")).expect("a count");
            (key, value)
        })
        .collect()
}

/// A quiet topic still closes its windows: the wall clock moves stream time once the input
/// stops, so final counts appear without a later event; the punctuated stream time is kept, so
/// a restart neither emits a closed window again nor holds it open.
#[test]
fn a_quiet_topic_closes_its_windows_by_the_wall_clock_once_across_a_restart() {
    let app_id = unique("quiet");
    let input = unique("orders");
    let output = unique("finals");
    create_topic(&input, 2);
    let for_account = |account: &str| {
        let account = account.to_string();
        move |(key, _): &((String, faustus::prelude::Window), i64)| key.0 == account
    };

    let running = start_quiet_windows(&app_id, &input, &output);
    let orders: Vec<KeyValue> = (1..=3).flat_map(|amount| order("a", amount)).collect();
    produce(&input, &orders);
    let first = wait_for(
        "a's window to close with no later event",
        Duration::from_secs(60),
        || {
            let finals: Vec<_> = final_counts(&output)
                .into_iter()
                .filter(for_account("a"))
                .collect();
            (!finals.is_empty()).then_some(finals)
        },
    );
    assert_eq!(first.len(), 1, "one final count: {first:?}");
    assert_eq!(first[0].1, 3, "a's three orders in one session: {first:?}");
    running.shutdown().expect("a clean stop");

    // After the restart, b's window closes by punctuation too; by then the restored app has
    // passed a's window again, and emitted it no second time.
    let _running = start_quiet_windows(&app_id, &input, &output);
    produce(&input, &order("b", 7));
    wait_for(
        "b's window to close after the restart",
        Duration::from_secs(60),
        || {
            let finals = final_counts(&output);
            finals.iter().any(for_account("b")).then_some(())
        },
    );
    let finals = final_counts(&output);
    let a: Vec<_> = finals.iter().filter(|f| for_account("a")(f)).collect();
    assert_eq!(a, vec![&first[0]], "a's window, once: {finals:?}");
    let b: Vec<_> = finals.iter().filter(|f| for_account("b")(f)).collect();
    assert_eq!(b.len(), 1, "b's window, once: {finals:?}");
    assert_eq!(b[0].1, 1, "b's one order: {finals:?}");
}
