//! The engine's operators on the test driver (`faustus::driver`): running aggregates, joins,
//! windows and nested tables, each through a restart where they keep state, and tables that
//! map, filter and regroup under updates and deletions, checked against what the documented
//! semantics say the outputs must be; a record that does not encode is a dead letter. Each step of input is one epoch.
//! (Restoring from real changelog topics, and HTTP, are tested against the broker:
//! `tests/restart.rs`, `tests/windows_http.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use faustus::driver::{Record, TestDriver};
use faustus::prelude::*;
use serde::de::DeserializeOwned;

/// A record as raw bytes: key and value (`None`: a tombstone).
type KeyValue = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Starts the dataflow `build` makes on a driver with two workers.
fn start(
    app_id: &str,
    build: impl for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static,
) -> TestDriver {
    TestDriver::builder(app_id)
        .workers(2)
        .partitions(2)
        .start(build)
        .expect("the dataflow starts")
}

/// Pipes `records` into `topic`.
fn produce(driver: &mut TestDriver, topic: &str, records: &[KeyValue]) {
    for (key, value) in records {
        let record = Record {
            key: key.clone(),
            value: value.clone(),
            ..Record::default()
        };
        driver.pipe_record(topic, record);
    }
}

/// Closes an epoch.
fn close(driver: &mut TestDriver) {
    driver.close_epoch().expect("the epoch closes");
}

/// JSON-encoded `(key, value)` records.
fn json<K: Serialize, V: Serialize>(records: &[(K, V)]) -> Vec<KeyValue> {
    records
        .iter()
        .map(|(k, v)| {
            (
                Some(serde_json::to_vec(k).unwrap()),
                Some(serde_json::to_vec(v).unwrap()),
            )
        })
        .collect()
}

/// Every record written to `topic`, decoded, in order (`None`: a tombstone).
fn decoded<K: DeserializeOwned, V: DeserializeOwned>(
    driver: &TestDriver,
    topic: &str,
) -> Vec<(K, Option<V>)> {
    driver
        .records(topic)
        .into_iter()
        .map(|w| {
            let key = serde_json::from_slice(&w.record.key.expect("keyed")).expect("a JSON key");
            let value = w
                .record
                .value
                .map(|v| serde_json::from_slice(&v).expect("a JSON value"));
            (key, value)
        })
        .collect()
}

/// The table a topic of changes converges to.
fn table<K: DeserializeOwned + Ord, V: DeserializeOwned>(
    driver: &TestDriver,
    topic: &str,
) -> BTreeMap<K, V> {
    let mut table = BTreeMap::new();
    for (k, v) in decoded::<K, V>(driver, topic) {
        match v {
            Some(v) => table.insert(k, v),
            None => table.remove(&k),
        };
    }
    table
}

#[test]
fn scan_emits_the_running_total_after_every_event_across_a_restart() {
    let build = |df: &Dataflow<'_>| {
        let amounts = Topic::<String, i64>::new("amounts");
        let (_table, running) = df
            .stream(&amounts)
            .scan("running", |_, total: Option<&i64>, v| {
                total.copied().unwrap_or(0) + v
            });
        running.to_topic(&Topic::new("running-totals"));
    };
    let events: Vec<(String, i64)> = (0..300)
        .map(|i| (format!("k{}", i % 7), (i * 13 % 10 + 1) as i64))
        .collect();
    // The expected running totals per key, in input order (a key's events share a partition).
    let running_totals = |events: &[(String, i64)]| {
        let mut expected: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut totals: BTreeMap<String, i64> = BTreeMap::new();
        for (k, v) in events {
            let t = totals.entry(k.clone()).or_insert(0);
            *t += v;
            expected.entry(k.clone()).or_default().push(*t);
        }
        expected
    };
    let per_key = |driver: &TestDriver| {
        let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (k, v) in decoded::<String, i64>(driver, "running-totals") {
            seen.entry(k).or_default().push(v.expect("running totals"));
        }
        seen
    };
    let (first, second) = events.split_at(150);

    let mut driver = start("scan", build);
    produce(&mut driver, "amounts", &json(&first[..100]));
    close(&mut driver);
    produce(&mut driver, "amounts", &json(&first[100..]));
    close(&mut driver);
    assert_eq!(per_key(&driver), running_totals(first), "the first half");

    driver.restart().expect("a restart");
    produce(&mut driver, "amounts", &json(second));
    close(&mut driver);
    assert_eq!(
        per_key(&driver),
        running_totals(&events),
        "every running total, continued after the restart"
    );
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Purchase {
    user: String,
    item: String,
}

#[test]
fn joins_follow_kafka_streams_semantics() {
    let build = |df: &Dataflow<'_>| {
        let clicks = df.stream(&Topic::<String, String>::new("clicks"));
        let users = df.table(&Topic::<String, String>::new("users"), "users");
        let balances = df.table(&Topic::<String, i64>::new("balances"), "balances");
        let purchases = df.table(&Topic::<String, Purchase>::new("purchases"), "purchases");
        clicks.clone().join(&users).to_topic(&Topic::new("inner"));
        clicks
            .clone()
            .left_join(&users)
            .to_topic(&Topic::new("left"));
        users.join(&balances).to_topic(&Topic::new("both"));
        users.outer_join(&balances).to_topic(&Topic::new("outer"));
        purchases
            .fk_join(&users, |p: &Purchase| Some(p.user.clone()))
            .to_topic(&Topic::new("fk"));
        users.join_stream(&clicks).to_topic(&Topic::new("mirror"));
    };
    let mut driver = start("joins", build);
    let d = &mut driver;
    let s = |x: &str| x.to_string();

    // The tables first: a stream⋈table join looks the table up as of the event's epoch.
    produce(
        d,
        "users",
        &json(&[(s("ann"), s("Ann")), (s("bob"), s("Bob"))]),
    );
    produce(d, "balances", &json(&[(s("ann"), 10i64), (s("cat"), 3)]));
    produce(
        d,
        "purchases",
        &json(&[(
            s("p1"),
            Purchase {
                user: s("ann"),
                item: s("tea"),
            },
        )]),
    );
    close(d);
    let both_expected: BTreeMap<String, (String, i64)> =
        [(s("ann"), (s("Ann"), 10))].into_iter().collect();
    assert_eq!(table(d, "both"), both_expected, "users ⋈ balances");

    produce(
        d,
        "clicks",
        &json(&[(s("ann"), s("/home")), (s("zed"), s("/faq"))]),
    );
    close(d);
    let inner_expected = vec![(s("ann"), Some((s("/home"), s("Ann"))))];
    assert_eq!(
        decoded::<String, (String, String)>(d, "inner"),
        inner_expected,
        "the inner stream⋈table join"
    );
    let mut left_seen = decoded::<String, (String, Option<String>)>(d, "left");
    left_seen.sort();
    let left_expected = vec![
        (s("ann"), Some((s("/home"), Some(s("Ann"))))),
        (s("zed"), Some((s("/faq"), None))),
    ];
    assert_eq!(left_seen, left_expected, "the left stream⋈table join");
    let mirror_expected = vec![(s("ann"), Some((s("Ann"), s("/home"))))];
    assert_eq!(
        decoded::<String, (String, String)>(d, "mirror"),
        mirror_expected,
        "the table⋈stream join"
    );

    // A table update emits nothing from the stream joins, and later events see it.
    produce(d, "users", &json(&[(s("ann"), s("Anna"))]));
    close(d);
    let both_expected: BTreeMap<String, (String, i64)> =
        [(s("ann"), (s("Anna"), 10))].into_iter().collect();
    assert_eq!(
        table(d, "both"),
        both_expected,
        "the join follows an update"
    );
    assert_eq!(decoded::<String, (String, String)>(d, "inner").len(), 1);
    produce(d, "clicks", &json(&[(s("ann"), s("/cart"))]));
    close(d);
    let inner_expected = vec![
        (s("ann"), Some((s("/home"), s("Ann")))),
        (s("ann"), Some((s("/cart"), s("Anna")))),
    ];
    assert_eq!(
        decoded::<String, (String, String)>(d, "inner"),
        inner_expected,
        "the join after the update"
    );

    // The outer join holds every key of either side; the foreign-key join follows the user.
    let outer_expected: BTreeMap<String, (Option<String>, Option<i64>)> = [
        (s("ann"), (Some(s("Anna")), Some(10))),
        (s("bob"), (Some(s("Bob")), None)),
        (s("cat"), (None, Some(3))),
    ]
    .into_iter()
    .collect();
    assert_eq!(table(d, "outer"), outer_expected, "the outer table join");
    let fk_expected: BTreeMap<String, (Purchase, String)> = [(
        s("p1"),
        (
            Purchase {
                user: s("ann"),
                item: s("tea"),
            },
            s("Anna"),
        ),
    )]
    .into_iter()
    .collect();
    assert_eq!(table(d, "fk"), fk_expected, "the foreign-key join");

    // Deleting a user removes the joined rows: a tombstone downstream.
    produce(
        d,
        "users",
        &[(Some(serde_json::to_vec("ann").unwrap()), None)],
    );
    close(d);
    assert_eq!(
        (
            table::<String, (String, i64)>(d, "both"),
            table::<String, (Purchase, String)>(d, "fk"),
        ),
        (BTreeMap::new(), BTreeMap::new()),
        "the deletion reaches the joins"
    );
    let tombstones = decoded::<String, (String, i64)>(d, "both")
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .count();
    assert_eq!(tombstones, 1, "one tombstone for the removed join row");
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Click {
    at: u64,
}

/// The clicks of topic `input`, in tumbling windows of a second by their time, 500 ms grace.
fn clicks_per_second<'s>(df: &Dataflow<'s>, input: &str) -> WindowedStream<'s, String, Click> {
    df.stream(&Topic::<String, Click>::new(input.to_string()))
        .event_time(|_, c| c.at)
        .grace(Duration::from_millis(500))
        .tumbling(Duration::from_secs(1))
}

/// The second starting at `start`.
fn second(start: u64) -> Window {
    Window {
        start,
        end: start + 1000,
    }
}

/// JSON records of `user`'s clicks at `times`.
fn clicks(user: &str, times: &[u64]) -> Vec<KeyValue> {
    json(
        &times
            .iter()
            .map(|t| (user.to_string(), Click { at: *t }))
            .collect::<Vec<_>>(),
    )
}

#[test]
fn tumbling_counts_survive_a_restart_and_late_events_go_to_the_dead_letter_topic() {
    let build = |df: &Dataflow<'_>| {
        clicks_per_second(df, "clicks")
            .expires(Duration::from_secs(3600))
            .count("clicks_per_second")
            .public()
            .to_topic(&Topic::new("per-second"));
    };
    let s = |x: &str| x.to_string();
    let counts = |d: &TestDriver| -> BTreeMap<(String, Window), i64> { table(d, "per-second") };

    let mut driver = start("windows", build);
    let d = &mut driver;
    produce(d, "clicks", &clicks("a", &[100, 200, 1_500]));
    produce(d, "clicks", &clicks("b", &[1_999]));
    close(d);
    let mut expected: BTreeMap<(String, Window), i64> = [
        ((s("a"), second(0)), 2),
        ((s("a"), second(1000)), 1),
        ((s("b"), second(1000)), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(counts(d), expected, "the first counts");
    assert_eq!(
        d.table::<(String, Window), i64>("clicks_per_second")
            .unwrap(),
        expected,
        "the table holds what its updates say"
    );

    // Stream time moves to 5000: window [0, 1000) closes (1000 + 500 <= 5000), so a click at 50
    // is late: not counted, and in the dead-letter topic with the reason.
    produce(d, "clicks", &clicks("a", &[5_000]));
    close(d);
    expected.insert((s("a"), second(5000)), 1);
    assert_eq!(counts(d), expected, "the click at 5000");
    produce(d, "clicks", &clicks("a", &[50]));
    close(d);
    let letters = d.dead_letters();
    assert_eq!(letters.len(), 1, "the late click");
    let header = |name: &str| {
        String::from_utf8_lossy(letters[0].record.header(name).expect(name)).into_owned()
    };
    assert!(header("faustus.error.reason").contains("late"));
    assert_eq!(header("faustus.error.topic"), "clicks");
    assert_eq!(header("faustus.error.event_time"), "50");
    assert_eq!(header("faustus.error.operator"), "clicks_per_second");

    // After a restart the open window [5000, 6000) continues from 1 and [0, 1000) is still
    // closed: a click at 999 is late again.
    d.restart().expect("a restart");
    produce(d, "clicks", &clicks("a", &[5_100, 999]));
    close(d);
    expected.insert((s("a"), second(5000)), 2);
    assert_eq!(counts(d), expected, "the count continued after the restart");
    assert_eq!(d.dead_letters().len(), 2, "the second late click");
    let rows: Vec<((String, Window), Option<i64>)> = decoded(d, "per-second");
    assert!(rows.iter().all(|(_, v)| v.is_some()), "nothing expired yet");
}

#[test]
fn set_and_list_tables_keep_operation_logs_that_restore_them() {
    let build = |df: &Dataflow<'_>| {
        df.stream(&Topic::<String, SetOp<String>>::new("tag-ops"))
            .set_table("tags")
            .public()
            .to_topic(&Topic::new("tag-table"));
        df.stream(&Topic::<String, ListOp<u32>>::new("history-ops"))
            .list_table("history")
            .to_topic(&Topic::new("history-table"));
    };
    let s = |x: &str| x.to_string();
    let mut driver = start("nested", build);
    let d = &mut driver;
    produce(
        d,
        "tag-ops",
        &json(&[
            (s("a"), SetOp::Add(s("red"))),
            (s("a"), SetOp::Add(s("blue"))),
            (s("b"), SetOp::Add(s("red"))),
            (s("a"), SetOp::Remove(s("red"))),
        ]),
    );
    produce(
        d,
        "history-ops",
        &json(&[
            (s("a"), ListOp::Append(3u32)),
            (s("a"), ListOp::Append(1)),
            (s("a"), ListOp::Append(3)),
            (s("a"), ListOp::Remove(3)),
        ]),
    );
    close(d);
    let set = |x: &[&str]| x.iter().map(|m| m.to_string()).collect::<BTreeSet<_>>();
    let tags_expected: BTreeMap<String, BTreeSet<String>> =
        [(s("a"), set(&["blue"])), (s("b"), set(&["red"]))]
            .into_iter()
            .collect();
    assert_eq!(table(d, "tag-table"), tags_expected, "the set table");
    let history_expected: BTreeMap<String, Vec<u32>> = [(s("a"), vec![1, 3])].into_iter().collect();
    assert_eq!(
        table(d, "history-table"),
        history_expected,
        "the list table"
    );

    // The changelogs are operation logs: `[key, member]` → add (a removal is a tombstone) for
    // the set, key → replace for the list.
    let set_log: BTreeMap<(String, String), serde_json::Value> = table(d, "nested-tags-changelog");
    let add = |m: &str| serde_json::json!({"action": "add", "value": m});
    let log_expected: BTreeMap<(String, String), serde_json::Value> = [
        ((s("a"), s("blue")), add("blue")),
        ((s("b"), s("red")), add("red")),
    ]
    .into_iter()
    .collect();
    assert_eq!(set_log, log_expected);
    let list_log: BTreeMap<String, serde_json::Value> = table(d, "nested-history-changelog");
    assert_eq!(
        list_log.into_values().collect::<Vec<_>>(),
        vec![serde_json::json!({"action": "replace", "value": [1, 3]})]
    );

    // Restored from those logs, the tables continue.
    d.restart().expect("a restart");
    produce(
        d,
        "tag-ops",
        &json(&[(s("a"), SetOp::Add(s("green"))), (s("b"), SetOp::Clear)]),
    );
    produce(d, "history-ops", &json(&[(s("a"), ListOp::Append(7u32))]));
    close(d);
    let tags_expected: BTreeMap<String, BTreeSet<String>> =
        [(s("a"), set(&["blue", "green"]))].into_iter().collect();
    assert_eq!(
        table(d, "tag-table"),
        tags_expected,
        "the set table after the restart"
    );
    let history_expected: BTreeMap<String, Vec<u32>> =
        [(s("a"), vec![1, 3, 7])].into_iter().collect();
    assert_eq!(
        table(d, "history-table"),
        history_expected,
        "the list table after the restart"
    );
}

#[test]
fn final_windows_emit_once_when_they_close_even_across_a_restart() {
    let build = |df: &Dataflow<'_>| {
        clicks_per_second(df, "clicks")
            .emit_final()
            .count("final_counts")
            .to_topic(&Topic::new("final-counts"));
    };
    let finals = |d: &TestDriver| decoded::<(String, Window), i64>(d, "final-counts");

    let mut driver = start("final", build);
    let d = &mut driver;
    produce(d, "clicks", &clicks("a", &[100]));
    close(d);
    produce(d, "clicks", &clicks("a", &[200]));
    close(d);
    // The open window is in the windowed table's changelog, and nothing is final yet.
    let open: BTreeMap<(String, Window), i64> =
        [(("a".to_string(), second(0)), 2)].into_iter().collect();
    assert_eq!(
        table(d, "final-final_counts-changelog"),
        open,
        "the open window"
    );
    assert!(finals(d).is_empty(), "no window has closed yet");

    // After a restart, stream time 1600 closes [0, 1000) (1000 + 500 <= 1600): emitted once,
    // with the events from before the restart.
    d.restart().expect("a restart");
    produce(d, "clicks", &clicks("a", &[1_600]));
    close(d);
    let once = vec![(("a".to_string(), second(0)), Some(2))];
    assert_eq!(finals(d), once, "the final count of [0, 1000)");
    produce(d, "clicks", &clicks("a", &[3_000]));
    close(d);
    let twice = vec![
        (("a".to_string(), second(0)), Some(2)),
        (("a".to_string(), second(1000)), Some(1)),
    ];
    assert_eq!(finals(d), twice, "the final count of [1000, 2000)");
}

#[test]
fn quiet_windows_close_by_the_wall_clock_once_and_stay_closed_across_a_restart() {
    let s = |x: &str| x.to_string();
    let build = |df: &Dataflow<'_>| {
        clicks_per_second(df, "clicks")
            .punctuate_when_idle(Duration::from_secs(1))
            .emit_final()
            .count("punctuated")
            .to_topic(&Topic::new("punctuated-counts"));
        // The same windows without punctuation: the control.
        clicks_per_second(df, "clicks")
            .emit_final()
            .count("unpunctuated")
            .to_topic(&Topic::new("unpunctuated-counts"));
    };
    let finals = |d: &TestDriver| decoded::<(String, Window), i64>(d, "punctuated-counts");
    let control = |d: &TestDriver| decoded::<(String, Window), i64>(d, "unpunctuated-counts");
    let quiet = |d: &mut TestDriver, ms: u64| {
        d.advance_clock(Duration::from_millis(ms));
        close(d);
    };

    let mut driver = start("quiet", build);
    let d = &mut driver;
    // Stream time 200 at wall time 0; [0, 1000) closes at stream time 1500 (grace 500).
    produce(d, "clicks", &clicks("a", &[100, 200]));
    close(d);
    quiet(d, 999);
    assert!(finals(d).is_empty(), "less than the idle time has passed");
    quiet(d, 1);
    assert!(
        finals(d).is_empty(),
        "stream time 1200 does not close [0, 1000)"
    );
    quiet(d, 1_000);
    let once = vec![((s("a"), second(0)), Some(2))];
    assert_eq!(finals(d), once, "stream time 2200 closes [0, 1000)");
    quiet(d, 5_000);
    assert_eq!(finals(d), once, "a window closes once");
    assert!(control(d).is_empty(), "without punctuation nothing closes");

    // The price: a click for [0, 1000) after the quiet spell is late for the punctuated
    // windows, and counted by the others.
    produce(d, "clicks", &clicks("a", &[900]));
    close(d);
    let letters = d.dead_letters();
    assert_eq!(letters.len(), 1, "the click the punctuation made late");
    let operator = letters[0].record.header("faustus.error.operator");
    assert_eq!(operator, Some(&b"punctuated"[..]));

    // After a restart the punctuated stream time is restored: [0, 1000) stays closed, and the
    // idle time counts again from the restart.
    d.restart().expect("a restart");
    produce(d, "clicks", &clicks("a", &[7_100]));
    close(d);
    assert_eq!(d.dead_letters().len(), 1, "7100 is not late");
    quiet(d, 999);
    assert_eq!(finals(d), once, "nothing new closed within the idle time");
    quiet(d, 2_000);
    let twice = vec![
        ((s("a"), second(0)), Some(2)),
        ((s("a"), second(7000)), Some(1)),
    ];
    assert_eq!(
        finals(d),
        twice,
        "[7000, 8000) closed by punctuation after the restart"
    );
    assert_eq!(
        control(d),
        vec![((s("a"), second(0)), Some(3))],
        "the control closes [0, 1000) only when the click at 7100 moves its stream time"
    );
}

#[test]
fn a_quiet_stream_join_emits_its_unmatched_events_by_the_wall_clock() {
    let s = |x: &str| x.to_string();
    let build = |df: &Dataflow<'_>| {
        let timed = |topic: &str| seen_within_a_second(df, topic);
        timed("impressions")
            .punctuate_when_idle(Duration::from_secs(1))
            .left_join("quiet-join", timed("clicks"))
            .to_topic(&Topic::new("left"));
    };
    let seen = |what: &str, at: u64| Seen {
        what: what.to_string(),
        at,
    };
    let mut driver = start("quiet-join", build);
    let d = &mut driver;
    produce(d, "impressions", &json(&[(s("a"), seen("banner", 1_000))]));
    close(d);
    // The impression can match until stream time passes 1000 + 1000: two idle steps.
    d.advance_clock(Duration::from_secs(1));
    close(d);
    assert!(
        d.records("left").is_empty(),
        "stream time 2000 keeps it open"
    );
    d.advance_clock(Duration::from_secs(1));
    close(d);
    let expected = vec![(s("a"), Some((seen("banner", 1_000), None::<Seen>)))];
    assert_eq!(
        decoded::<String, (Seen, Option<Seen>)>(d, "left"),
        expected,
        "stream time 3000 closes its window: unmatched, once"
    );
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Seen {
    what: String,
    at: u64,
}

/// The `Seen` events of `topic`, timed by `at`, to join within a second.
fn seen_within_a_second<'s>(df: &Dataflow<'s>, topic: &str) -> Timed<'s, String, Seen> {
    df.stream(&Topic::<String, Seen>::new(topic.to_string()))
        .event_time(|_, s| s.at)
        .within(Duration::from_secs(1))
}

#[test]
fn stream_joins_keep_their_window_across_a_restart() {
    let build = |df: &Dataflow<'_>| {
        let timed = |topic: &str| seen_within_a_second(df, topic);
        timed("impressions")
            .join("impression-clicks", timed("clicks"))
            .to_topic(&Topic::new("inner"));
        timed("impressions")
            .left_join("impression-maybe-clicks", timed("clicks"))
            .to_topic(&Topic::new("left"));
    };
    let seen = |what: &str, at: u64| Seen {
        what: what.to_string(),
        at,
    };
    let s = |x: &str| x.to_string();

    let mut driver = start("stream-join", build);
    let d = &mut driver;
    produce(
        d,
        "impressions",
        &json(&[
            (s("a"), seen("banner", 1_000)),
            (s("b"), seen("video", 1_000)),
        ]),
    );
    close(d);
    // Both impressions are stored, unmatched, in each join's state changelog.
    for name in ["impression-clicks", "impression-maybe-clicks"] {
        let stored: BTreeSet<String> = decoded::<serde_json::Value, serde_json::Value>(
            d,
            &format!("stream-join-{name}-changelog"),
        )
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| k.to_string())
        .collect();
        assert_eq!(stored.len(), 2, "the stored impressions of `{name}`");
    }
    assert!(d.records("inner").is_empty() && d.records("left").is_empty());

    // After the restart, a click within the window joins the stored impression, and when stream
    // time closes b's window the left join emits b unmatched, once.
    d.restart().expect("a restart");
    produce(d, "clicks", &json(&[(s("a"), seen("click", 1_500))]));
    close(d);
    let pair = (seen("banner", 1_000), seen("click", 1_500));
    let inner_expected = vec![(s("a"), Some(pair.clone()))];
    assert_eq!(
        decoded::<String, (Seen, Seen)>(d, "inner"),
        inner_expected,
        "the join of a stored impression"
    );
    produce(d, "clicks", &json(&[(s("c"), seen("click", 5_000))]));
    close(d);
    let left_expected = vec![
        (s("a"), Some((pair.0.clone(), Some(pair.1.clone())))),
        (s("b"), Some((seen("video", 1_000), None))),
    ];
    let mut rows = decoded::<String, (Seen, Option<Seen>)>(d, "left");
    rows.sort();
    assert_eq!(rows, left_expected, "the left join, b unmatched once");
}

#[test]
fn grouped_tables_follow_updates_moves_and_deletions() {
    let build = |df: &Dataflow<'_>| {
        let accounts = df.table(&Topic::<String, (String, i64)>::new("accounts"), "accounts");
        let by_region = accounts.group_by(|_, (region, balance)| (region.clone(), *balance));
        by_region.clone().count("per-region");
        by_region.clone().sum("balance-per-region");
        by_region.clone().min("smallest-per-region");
        by_region.aggregate("accounts-per-region", |_, balances| {
            Some(balances.iter().map(|(_, n)| *n as i64).sum::<i64>())
        });
        let balances = accounts.map_values(|_, (_, balance)| balance);
        balances.filter(|_, balance| *balance >= 5).named("big");
    };
    let mut driver = start("grouped", build);
    let d = &mut driver;
    let row = |account: &str, region: Option<(&str, i64)>| {
        (
            Some(serde_json::to_vec(account).unwrap()),
            region.map(|(r, b)| serde_json::to_vec(&(r, b)).unwrap()),
        )
    };
    produce(
        d,
        "accounts",
        &[
            row("a1", Some(("eu", 10))),
            row("a2", Some(("eu", 5))),
            row("a3", Some(("us", 7))),
            row("a4", Some(("asia", 1))),
        ],
    );
    close(d);
    // Then: a2 moves to us, a1 shrinks, a3 and a4 are deleted (asia empties).
    produce(
        d,
        "accounts",
        &[
            row("a2", Some(("us", 5))),
            row("a1", Some(("eu", 3))),
            row("a3", None),
            row("a4", None),
        ],
    );
    close(d);
    let expect = |d: &TestDriver, name: &str, expected: &[(&str, i64)]| {
        let expected: BTreeMap<String, i64> =
            expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(d.table::<String, i64>(name).unwrap(), expected, "{name}");
    };
    expect(d, "per-region", &[("eu", 1), ("us", 1)]);
    expect(d, "balance-per-region", &[("eu", 3), ("us", 5)]);
    expect(d, "smallest-per-region", &[("eu", 3), ("us", 5)]);
    expect(d, "accounts-per-region", &[("eu", 1), ("us", 1)]);
    expect(d, "accounts-map", &[("a1", 3), ("a2", 5)]);
    expect(d, "big", &[("a2", 5)]);
}

#[test]
fn a_record_that_does_not_encode_is_a_dead_letter_and_the_rest_go_on() {
    let build = |df: &Dataflow<'_>| {
        // A map keyed by pairs has no JSON form: the value of "bad" cannot be written.
        df.stream(&Topic::<String, i64>::new("input"))
            .map(|k, v| {
                let mut m = BTreeMap::new();
                if k == "bad" {
                    m.insert((v, v), v);
                }
                (k, m)
            })
            .to_topic(&Topic::<String, BTreeMap<(i64, i64), i64>>::new("output"));
    };
    let mut driver = start("encode", build);
    let d = &mut driver;
    produce(
        d,
        "input",
        &json(&[("good", 1i64), ("bad", 2), ("also-good", 3)]),
    );
    close(d);
    let keys: BTreeSet<String> = decoded::<String, serde_json::Value>(d, "output")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(keys, ["also-good".to_string(), "good".to_string()].into());
    let letters = d.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let header = |name: &str| {
        String::from_utf8_lossy(letters[0].record.header(name).expect(name)).into_owned()
    };
    let reason = header(faustus::dead_letter::REASON);
    assert!(
        reason.contains("does not encode") && reason.contains("value: not JSON"),
        "{reason}"
    );
    assert_eq!(header(faustus::dead_letter::OPERATOR), "to_topic(output)");
}

/// Punctuation under arbitrary input, quiet spells and restarts: every window is emitted once
/// at most, and every event is either counted in its window's one final value or is a late dead
/// letter.
mod punctuation {
    use super::*;
    use proptest::prelude::*;

    /// One epoch: clicks `(user, time)`, how far the wall clock moves before it closes, and
    /// whether the program restarts after it.
    type Step = (Vec<(u8, u64)>, u64, bool);

    fn build(df: &Dataflow<'_>) {
        clicks_per_second(df, "clicks")
            .punctuate_when_idle(Duration::from_secs(1))
            .emit_final()
            .count("final")
            .to_topic(&Topic::new("finals"));
    }

    fn run(steps: &[Step]) -> Result<(), TestCaseError> {
        let mut driver = start("punctuation", build);
        let d = &mut driver;
        let mut sent: Vec<(String, u64)> = Vec::new();
        for (clicks_in_epoch, quiet, restart) in steps {
            for (user, at) in clicks_in_epoch {
                let user = format!("u{user}");
                produce(d, "clicks", &clicks(&user, &[*at]));
                sent.push((user, *at));
            }
            d.advance_clock(Duration::from_millis(*quiet));
            close(d);
            if *restart {
                d.restart().expect("a restart");
            }
        }
        // A long quiet spell closes every window.
        close(d);
        d.advance_clock(Duration::from_secs(100));
        close(d);

        let finals = decoded::<(String, Window), i64>(d, "finals");
        let mut emitted: BTreeMap<(String, Window), i64> = BTreeMap::new();
        for (window, count) in &finals {
            let count = count.expect("a final count");
            prop_assert!(
                emitted.insert(window.clone(), count).is_none(),
                "{window:?} emitted twice: {finals:?}"
            );
        }
        let mut late: Vec<(String, u64)> = d
            .dead_letters()
            .iter()
            .map(|w| {
                let key = serde_json::from_slice(w.record.key.as_deref().expect("a key"));
                let click: Click =
                    serde_json::from_slice(w.record.value.as_deref().expect("a value")).unwrap();
                (key.expect("a JSON key"), click.at)
            })
            .collect();
        let mut counted: BTreeMap<(String, Window), i64> = BTreeMap::new();
        for (user, at) in sent {
            if let Some(i) = late.iter().position(|l| *l == (user.clone(), at)) {
                late.swap_remove(i);
                continue;
            }
            *counted.entry((user, second(at - at % 1000))).or_default() += 1;
        }
        prop_assert!(late.is_empty(), "dead letters of no click: {late:?}");
        prop_assert_eq!(emitted, counted);
        Ok(())
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        let clicks_in_epoch = prop::collection::vec((0u8..3, 0u64..12_000), 0..4);
        prop::collection::vec(
            (clicks_in_epoch, 0u64..2_500, prop::bool::weighted(0.2)),
            1..12,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        #[test]
        fn every_click_is_counted_once_or_is_late(steps in steps()) {
            run(&steps)?;
        }
    }
}
