//! A table kept from a topic: updates replace, tombstones delete — in the replica, the
//! changelog, and a restarted application.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use faustus::prelude::*;

fn entry(key: &str, value: Option<i64>) -> KeyValue {
    (
        Some(key.as_bytes().to_vec()),
        value.map(|v| v.to_string().into_bytes()),
    )
}

fn run_once(app_id: &str, input: &str, output: &str) -> BTreeMap<String, i64> {
    let source = Topic::<String, i64>::new(input.to_string()).key_codec(Str);
    let sink = Topic::<String, i64>::new(output.to_string()).key_codec(Str);
    let running = App::new(app_id)
        .brokers(brokers())
        .workers(2)
        .http(None)
        .start(move |df| {
            df.table(&source, "prices").to_topic(&sink);
        })
        .expect("the app starts");
    let stats = running.commit_stats().unwrap();
    // Wait until everything in the input has been committed: the sink converges.
    let expected: BTreeMap<String, i64> = [("a".to_string(), 3), ("c".to_string(), 5)]
        .into_iter()
        .collect();
    wait_for("the table to converge", Duration::from_secs(60), || {
        let got = decode_totals(&last_values(&read_all(output)));
        (got == expected).then_some(())
    });
    assert!(stats.commits() > 0);
    running.shutdown().expect("a clean stop");
    changelog_table(app_id, "prices")
}

#[test]
fn updates_replace_and_tombstones_delete() {
    let app_id = unique("upsert");
    let input = unique("prices");
    let output = unique("prices-out");
    create_topic(&input, 2);
    produce(
        &input,
        &[
            entry("a", Some(1)),
            entry("b", Some(2)),
            entry("a", Some(3)),
            entry("b", None),
            entry("c", Some(5)),
        ],
    );
    let changelog = run_once(&app_id, &input, &output);
    let expected: BTreeMap<String, i64> = [("a".to_string(), 3), ("c".to_string(), 5)]
        .into_iter()
        .collect();
    assert_eq!(changelog, expected);
    // The sink saw `b` deleted with a tombstone.
    let records = read_all(&output);
    assert!(
        records
            .iter()
            .any(|r| r.key.as_deref() == Some(b"b") && r.value.is_none())
            || !records.iter().any(|r| r.key.as_deref() == Some(b"b")),
        "b was written and never deleted"
    );

    // A restart restores the table and applies only new input: deleting `a` and re-adding `b`.
    produce(&input, &[entry("a", None), entry("b", Some(7))]);
    let source = Topic::<String, i64>::new(input.clone()).key_codec(Str);
    let sink = Topic::<String, i64>::new(output.clone()).key_codec(Str);
    let running = App::new(app_id.clone())
        .brokers(brokers())
        .http(Some("127.0.0.1:0".parse().unwrap()))
        .start(move |df| {
            df.table(&source, "prices").public().to_topic(&sink);
        })
        .expect("the app restarts");
    let expected: BTreeMap<String, i64> = [("b".to_string(), 7), ("c".to_string(), 5)]
        .into_iter()
        .collect();
    wait_for(
        "the restarted table to converge",
        Duration::from_secs(60),
        || {
            let got = decode_totals(&last_values(&read_all(&output)));
            (got == expected).then_some(())
        },
    );
    running.shutdown().expect("a clean stop");
    let changelog = changelog_table(&app_id, "prices");
    assert_eq!(changelog, expected);
}
