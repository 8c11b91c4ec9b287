//! The engine's operators against the real broker: running aggregates, joins, windows and
//! nested tables, each through a restart where they keep state, checked against what the
//! documented semantics say the outputs must be.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use faustus::prelude::*;
use serde::de::DeserializeOwned;

const EPOCH: Duration = Duration::from_millis(100);

/// Starts an application in-process with short epochs and no HTTP server.
fn start(
    app_id: &str,
    build: impl for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static,
) -> faustus::Running {
    start_with_http(app_id, None, build)
}

/// As [`start`], serving HTTP on `http` if given.
fn start_with_http(
    app_id: &str,
    http: Option<std::net::SocketAddr>,
    build: impl for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static,
) -> faustus::Running {
    App::new(app_id)
        .brokers(brokers())
        .http(http)
        .commit_interval(EPOCH)
        .workers(2)
        .start(build)
        .expect("the app starts")
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

/// Every record of `topic`, decoded, per partition in offset order (`None`: a tombstone).
fn decoded<K: DeserializeOwned, V: DeserializeOwned>(topic: &str) -> Vec<(K, Option<V>)> {
    read_all(topic)
        .into_iter()
        .map(|r| {
            let key = serde_json::from_slice(&r.key.expect("keyed")).expect("a JSON key");
            let value = r
                .value
                .map(|v| serde_json::from_slice(&v).expect("a JSON value"));
            (key, value)
        })
        .collect()
}

/// The table a topic of changes converges to.
fn table<K: DeserializeOwned + Ord, V: DeserializeOwned>(topic: &str) -> BTreeMap<K, V> {
    let mut table = BTreeMap::new();
    for (k, v) in decoded::<K, V>(topic) {
        match v {
            Some(v) => table.insert(k, v),
            None => table.remove(&k),
        };
    }
    table
}

fn wait_until<T: PartialEq + std::fmt::Debug>(what: &str, expected: &T, actual: impl Fn() -> T) {
    let mut last = None;
    let reached = (0..600).any(|_| {
        let now = actual();
        if &now == expected {
            return true;
        }
        last = Some(now);
        std::thread::sleep(Duration::from_millis(100));
        false
    });
    assert!(
        reached,
        "timed out waiting for {what}: expected {expected:?}, last saw {last:?}"
    );
}

#[test]
fn scan_emits_the_running_total_after_every_event_across_a_restart() {
    let app_id = unique("scan");
    let input = unique("amounts");
    let output = unique("running");
    create_topic(&input, 3);
    let build = {
        let (input, output) = (input.clone(), output.clone());
        move |df: &Dataflow<'_>| {
            let amounts = Topic::<String, i64>::new(input.clone());
            let (_table, running) = df
                .stream(&amounts)
                .scan("running", |_, total: Option<&i64>, v| {
                    total.copied().unwrap_or(0) + v
                });
            running.to_topic(&Topic::new(output.clone()));
        }
    };
    let events: Vec<(String, i64)> = (0..300)
        .map(|i| (format!("k{}", i % 7), (i * 13 % 10 + 1) as i64))
        .collect();
    // The expected running totals per key, in input order (a key's events share a partition).
    let mut expected: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for (k, v) in &events {
        let t = totals.entry(k.clone()).or_insert(0);
        *t += v;
        expected.entry(k.clone()).or_default().push(*t);
    }
    let per_key = || {
        let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (k, v) in decoded::<String, i64>(&output) {
            seen.entry(k).or_default().push(v.expect("running totals"));
        }
        seen
    };
    let (first, second) = events.split_at(150);
    let mut half: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for (k, v) in first {
        let t = totals.entry(k.clone()).or_insert(0);
        *t += v;
        half.entry(k.clone()).or_default().push(*t);
    }

    produce(&input, &json(first));
    let app = start(&app_id, build.clone());
    wait_until("the first half's running totals", &half, per_key);
    app.shutdown().expect("a clean stop");

    produce(&input, &json(second));
    let app = start(&app_id, build);
    wait_until(
        "every running total, continued after the restart",
        &expected,
        per_key,
    );
    app.shutdown().expect("a clean stop");
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Purchase {
    user: String,
    item: String,
}

#[test]
fn joins_follow_kafka_streams_semantics() {
    let app_id = unique("joins");
    let clicks = unique("clicks");
    let users = unique("users");
    let balances = unique("balances");
    let purchases = unique("purchases");
    let [inner, left, both, outer, fk, mirror] =
        ["inner", "left", "both", "outer", "fk", "mirror"].map(unique);
    for t in [&clicks, &users, &balances, &purchases] {
        create_topic(t, 2);
    }
    let build = {
        let t = (
            clicks.clone(),
            users.clone(),
            balances.clone(),
            purchases.clone(),
        );
        let o = [&inner, &left, &both, &outer, &fk, &mirror].map(|s| s.to_string());
        move |df: &Dataflow<'_>| {
            let clicks = df.stream(&Topic::<String, String>::new(t.0.clone()));
            let users = df.table(&Topic::<String, String>::new(t.1.clone()), "users");
            let balances = df.table(&Topic::<String, i64>::new(t.2.clone()), "balances");
            let purchases = df.table(&Topic::<String, Purchase>::new(t.3.clone()), "purchases");
            clicks
                .clone()
                .join(&users)
                .to_topic(&Topic::new(o[0].clone()));
            clicks
                .clone()
                .left_join(&users)
                .to_topic(&Topic::new(o[1].clone()));
            users.join(&balances).to_topic(&Topic::new(o[2].clone()));
            users
                .outer_join(&balances)
                .to_topic(&Topic::new(o[3].clone()));
            purchases
                .fk_join(&users, |p: &Purchase| Some(p.user.clone()))
                .to_topic(&Topic::new(o[4].clone()));
            users
                .join_stream(&clicks)
                .to_topic(&Topic::new(o[5].clone()));
        }
    };
    let app = start(&app_id, build);
    let s = |x: &str| x.to_string();

    // The tables first: a stream⋈table join looks the table up as of the event's epoch.
    produce(&users, &json(&[(s("ann"), s("Ann")), (s("bob"), s("Bob"))]));
    produce(&balances, &json(&[(s("ann"), 10i64), (s("cat"), 3)]));
    produce(
        &purchases,
        &json(&[(
            s("p1"),
            Purchase {
                user: s("ann"),
                item: s("tea"),
            },
        )]),
    );
    let both_expected: BTreeMap<String, (String, i64)> =
        [(s("ann"), (s("Ann"), 10))].into_iter().collect();
    wait_until("users ⋈ balances", &both_expected, || table(&both));

    produce(
        &clicks,
        &json(&[(s("ann"), s("/home")), (s("zed"), s("/faq"))]),
    );
    let inner_expected = vec![(s("ann"), Some((s("/home"), s("Ann"))))];
    wait_until("the inner stream⋈table join", &inner_expected, || {
        decoded::<String, (String, String)>(&inner)
    });
    let left_seen = |topic: &str| {
        let mut rows = decoded::<String, (String, Option<String>)>(topic);
        rows.sort();
        rows
    };
    let left_expected = vec![
        (s("ann"), Some((s("/home"), Some(s("Ann"))))),
        (s("zed"), Some((s("/faq"), None))),
    ];
    wait_until("the left stream⋈table join", &left_expected, || {
        left_seen(&left)
    });
    let mirror_expected = vec![(s("ann"), Some((s("Ann"), s("/home"))))];
    wait_until("the table⋈stream join", &mirror_expected, || {
        decoded::<String, (String, String)>(&mirror)
    });

    // A table update emits nothing from the stream joins, and later events see it.
    produce(&users, &json(&[(s("ann"), s("Anna"))]));
    let both_expected: BTreeMap<String, (String, i64)> =
        [(s("ann"), (s("Anna"), 10))].into_iter().collect();
    wait_until(
        "the table⋈table join to follow an update",
        &both_expected,
        || table(&both),
    );
    produce(&clicks, &json(&[(s("ann"), s("/cart"))]));
    let inner_expected = vec![
        (s("ann"), Some((s("/home"), s("Ann")))),
        (s("ann"), Some((s("/cart"), s("Anna")))),
    ];
    wait_until("the join after the update", &inner_expected, || {
        decoded::<String, (String, String)>(&inner)
    });

    // The outer join holds every key of either side; the foreign-key join follows the user.
    let outer_expected: BTreeMap<String, (Option<String>, Option<i64>)> = [
        (s("ann"), (Some(s("Anna")), Some(10))),
        (s("bob"), (Some(s("Bob")), None)),
        (s("cat"), (None, Some(3))),
    ]
    .into_iter()
    .collect();
    wait_until("the outer table join", &outer_expected, || table(&outer));
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
    wait_until("the foreign-key join", &fk_expected, || table(&fk));

    // Deleting a user removes the joined rows: a tombstone downstream.
    produce(&users, &[(Some(serde_json::to_vec("ann").unwrap()), None)]);
    wait_until(
        "the deletion to reach the joins",
        &(BTreeMap::new(), BTreeMap::new()),
        || {
            (
                table::<String, (String, i64)>(&both),
                table::<String, (Purchase, String)>(&fk),
            )
        },
    );
    let tombstones = decoded::<String, (String, i64)>(&both)
        .into_iter()
        .filter(|(_, v)| v.is_none())
        .count();
    assert_eq!(tombstones, 1, "one tombstone for the removed join row");
    app.shutdown().expect("a clean stop");
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Click {
    at: u64,
}

#[test]
fn tumbling_counts_survive_a_restart_and_late_events_go_to_the_dead_letter_topic() {
    let app_id = unique("windows");
    let input = unique("clicks");
    let output = unique("per-second");
    create_topic(&input, 2);
    let build = {
        let (input, output) = (input.clone(), output.clone());
        move |df: &Dataflow<'_>| {
            df.stream(&Topic::<String, Click>::new(input.clone()))
                .event_time(|_, c| c.at)
                .grace(Duration::from_millis(500))
                .tumbling(Duration::from_secs(1))
                .expires(Duration::from_secs(3600))
                .count("clicks_per_second")
                .public()
                .to_topic(&Topic::new(output.clone()));
        }
    };
    let clicks = |user: &str, times: &[u64]| {
        json(
            &times
                .iter()
                .map(|t| (user.to_string(), Click { at: *t }))
                .collect::<Vec<_>>(),
        )
    };
    let w = |start: u64| Window {
        start,
        end: start + 1000,
    };
    let s = |x: &str| x.to_string();
    let counts = || -> BTreeMap<(String, Window), i64> { table(&output) };

    let app = start(&app_id, build.clone());
    produce(&input, &clicks("a", &[100, 200, 1_500]));
    produce(&input, &clicks("b", &[1_999]));
    let expected: BTreeMap<(String, Window), i64> = [
        ((s("a"), w(0)), 2),
        ((s("a"), w(1000)), 1),
        ((s("b"), w(1000)), 1),
    ]
    .into_iter()
    .collect();
    wait_until("the first counts", &expected, counts);

    // Stream time moves to 5000: window [0, 1000) closes (1000 + 500 <= 5000), so a click at 50
    // is late: not counted, and in the dead-letter topic with the reason.
    produce(&input, &clicks("a", &[5_000]));
    let mut expected = expected;
    expected.insert((s("a"), w(5000)), 1);
    wait_until("the click at 5000", &expected, counts);
    produce(&input, &clicks("a", &[50]));
    let dead_letters = format!("{app_id}-__errors");
    let late = wait_for("the late click", Duration::from_secs(60), || {
        read_all(&dead_letters).into_iter().next()
    });
    assert!(
        late.headers["faustus.error.reason"].contains("late"),
        "{:?}",
        late.headers
    );
    assert_eq!(late.headers["faustus.error.topic"], input);
    assert_eq!(late.headers["faustus.error.event_time"], "50");
    assert_eq!(late.headers["faustus.error.operator"], "clicks_per_second");
    app.shutdown().expect("a clean stop");

    // After a restart the open window [5000, 6000) continues from 1 and [0, 1000) is still
    // closed: a click at 999 is late again.
    let app = start_with_http(&app_id, Some("127.0.0.1:0".parse().unwrap()), build);
    app.wait_ready(Duration::from_secs(120))
        .expect("the restarted app restores its tables");
    produce(&input, &clicks("a", &[5_100, 999]));
    expected.insert((s("a"), w(5000)), 2);
    wait_until("the count continued after the restart", &expected, counts);
    wait_for("the second late click", Duration::from_secs(60), || {
        (read_all(&dead_letters).len() == 2).then_some(())
    });
    assert_eq!(counts(), expected, "the late click was not counted");
    let rows: Vec<((String, Window), Option<i64>)> = decoded(&output);
    assert!(rows.iter().all(|(_, v)| v.is_some()), "nothing expired yet");

    // Over HTTP, a plain key answers with all its windows and the latest one.
    let base = format!(
        "http://{}/api/table/clicks_per_second",
        app.http_addr().expect("HTTP is on")
    );
    let window = |start: u64, n: i64| serde_json::json!({"window": {"start": start, "end": start + 1000}, "value": n});
    let (status, body) = http_get(&format!("{base}/a/"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"a": {
            "windows": [window(0, 2), window(1000, 1), window(5000, 2)],
            "current": window(5000, 2),
        }})
    );
    // A whole `[key, window]` answers with that window's count.
    let whole = r#"["b",{"start":1000,"end":2000}]"#;
    let encoded: String = whole.bytes().map(|b| format!("%{b:02X}")).collect();
    let (status, body) = http_get(&format!("{base}/{encoded}/"));
    assert_eq!((status, body), (200, serde_json::json!({whole: 1})));
    let (status, _) = http_get(&format!("{base}/nobody/"));
    assert_eq!(status, 404);
    app.shutdown().expect("a clean stop");
}

#[test]
fn set_and_list_tables_keep_operation_logs_that_restore_them() {
    let app_id = unique("nested");
    let tags = unique("tag-ops");
    let history = unique("history-ops");
    let tag_table = unique("tag-table");
    let history_table = unique("history-table");
    create_topic(&tags, 2);
    create_topic(&history, 2);
    let build = {
        let t = [&tags, &history, &tag_table, &history_table].map(|s| s.to_string());
        move |df: &Dataflow<'_>| {
            df.stream(&Topic::<String, SetOp<String>>::new(t[0].clone()))
                .set_table("tags")
                .public()
                .to_topic(&Topic::new(t[2].clone()));
            df.stream(&Topic::<String, ListOp<u32>>::new(t[1].clone()))
                .list_table("history")
                .to_topic(&Topic::new(t[3].clone()));
        }
    };
    let s = |x: &str| x.to_string();
    let app = start(&app_id, build.clone());
    produce(
        &tags,
        &json(&[
            (s("a"), SetOp::Add(s("red"))),
            (s("a"), SetOp::Add(s("blue"))),
            (s("b"), SetOp::Add(s("red"))),
            (s("a"), SetOp::Remove(s("red"))),
        ]),
    );
    produce(
        &history,
        &json(&[
            (s("a"), ListOp::Append(3u32)),
            (s("a"), ListOp::Append(1)),
            (s("a"), ListOp::Append(3)),
            (s("a"), ListOp::Remove(3)),
        ]),
    );
    let set = |x: &[&str]| x.iter().map(|m| m.to_string()).collect::<BTreeSet<_>>();
    let tags_expected: BTreeMap<String, BTreeSet<String>> =
        [(s("a"), set(&["blue"])), (s("b"), set(&["red"]))]
            .into_iter()
            .collect();
    wait_until("the set table", &tags_expected, || table(&tag_table));
    let history_expected: BTreeMap<String, Vec<u32>> = [(s("a"), vec![1, 3])].into_iter().collect();
    wait_until("the list table", &history_expected, || {
        table(&history_table)
    });
    app.shutdown().expect("a clean stop");

    // The changelogs are operation logs: `[key, member]` → add (a removal is a tombstone) for
    // the set, key → replace for the list.
    let set_log = last_values(&read_all(&format!("{app_id}-tags-changelog")));
    let set_log: BTreeMap<(String, String), serde_json::Value> = set_log
        .iter()
        .map(|(k, v)| {
            (
                serde_json::from_slice(k).unwrap(),
                serde_json::from_slice(v).unwrap(),
            )
        })
        .collect();
    let add = |m: &str| serde_json::json!({"action": "add", "value": m});
    let log_expected: BTreeMap<(String, String), serde_json::Value> = [
        ((s("a"), s("blue")), add("blue")),
        ((s("b"), s("red")), add("red")),
    ]
    .into_iter()
    .collect();
    assert_eq!(set_log, log_expected);
    let list_log = last_values(&read_all(&format!("{app_id}-history-changelog")));
    let list_log: Vec<serde_json::Value> = list_log
        .values()
        .map(|v| serde_json::from_slice(v).unwrap())
        .collect();
    assert_eq!(
        list_log,
        vec![serde_json::json!({"action": "replace", "value": [1, 3]})]
    );

    // Restored from those logs, the tables continue.
    let app = start(&app_id, build);
    produce(
        &tags,
        &json(&[(s("a"), SetOp::Add(s("green"))), (s("b"), SetOp::Clear)]),
    );
    produce(&history, &json(&[(s("a"), ListOp::Append(7u32))]));
    let tags_expected: BTreeMap<String, BTreeSet<String>> =
        [(s("a"), set(&["blue", "green"]))].into_iter().collect();
    wait_until("the set table after the restart", &tags_expected, || {
        table(&tag_table)
    });
    let history_expected: BTreeMap<String, Vec<u32>> =
        [(s("a"), vec![1, 3, 7])].into_iter().collect();
    wait_until(
        "the list table after the restart",
        &history_expected,
        || table(&history_table),
    );
    app.shutdown().expect("a clean stop");
}

#[test]
fn final_windows_emit_once_when_they_close_even_across_a_restart() {
    let app_id = unique("final");
    let input = unique("clicks");
    let output = unique("final-counts");
    create_topic(&input, 2);
    let build = {
        let (input, output) = (input.clone(), output.clone());
        move |df: &Dataflow<'_>| {
            df.stream(&Topic::<String, Click>::new(input.clone()))
                .event_time(|_, c| c.at)
                .grace(Duration::from_millis(500))
                .tumbling(Duration::from_secs(1))
                .emit_final()
                .count("final_counts")
                .to_topic(&Topic::new(output.clone()));
        }
    };
    let click = |t: u64| json(&[("a".to_string(), Click { at: t })]);
    let w = |start: u64| Window {
        start,
        end: start + 1000,
    };
    let finals = || decoded::<(String, Window), i64>(&output);

    let app = start(&app_id, build.clone());
    produce(&input, &click(100));
    produce(&input, &click(200));
    // The open window is in the windowed table's changelog, and nothing is final yet.
    let changelog = format!("{app_id}-final_counts-changelog");
    let open: BTreeMap<(String, Window), i64> =
        [(("a".to_string(), w(0)), 2)].into_iter().collect();
    wait_until("the open window in the changelog", &open, || {
        table(&changelog)
    });
    assert!(finals().is_empty(), "no window has closed yet");
    app.shutdown().expect("a clean stop");

    // After a restart, stream time 1600 closes [0, 1000) (1000 + 500 <= 1600): emitted once,
    // with the events from before the restart.
    let app = start(&app_id, build);
    produce(&input, &click(1_600));
    let once = vec![(("a".to_string(), w(0)), Some(2))];
    wait_until("the final count of [0, 1000)", &once, finals);
    produce(&input, &click(3_000));
    let twice = vec![
        (("a".to_string(), w(0)), Some(2)),
        (("a".to_string(), w(1000)), Some(1)),
    ];
    wait_until("the final count of [1000, 2000)", &twice, finals);
    app.shutdown().expect("a clean stop");
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Seen {
    what: String,
    at: u64,
}

#[test]
fn stream_joins_keep_their_window_across_a_restart() {
    let app_id = unique("stream-join");
    let impressions = unique("impressions");
    let clicks = unique("clicks");
    let inner = unique("inner");
    let left = unique("left");
    create_topic(&impressions, 2);
    create_topic(&clicks, 2);
    let build = {
        let t = [&impressions, &clicks, &inner, &left].map(|s| s.to_string());
        move |df: &Dataflow<'_>| {
            let timed = |topic: &str| {
                df.stream(&Topic::<String, Seen>::new(topic.to_string()))
                    .event_time(|_, s| s.at)
                    .within(Duration::from_secs(1))
            };
            timed(&t[0])
                .join("impression-clicks", timed(&t[1]))
                .to_topic(&Topic::new(t[2].clone()));
            timed(&t[0])
                .left_join("impression-maybe-clicks", timed(&t[1]))
                .to_topic(&Topic::new(t[3].clone()));
        }
    };
    let seen = |what: &str, at: u64| Seen {
        what: what.to_string(),
        at,
    };
    let s = |x: &str| x.to_string();

    let app = start(&app_id, build.clone());
    produce(
        &impressions,
        &json(&[
            (s("a"), seen("banner", 1_000)),
            (s("b"), seen("video", 1_000)),
        ]),
    );
    // Both impressions are stored, unmatched, in each join's state changelog.
    for name in ["impression-clicks", "impression-maybe-clicks"] {
        let changelog = format!("{app_id}-{name}-changelog");
        wait_for("the stored impressions", Duration::from_secs(60), || {
            (last_values(&read_all(&changelog)).len() == 2).then_some(())
        });
    }
    assert!(read_all(&inner).is_empty() && read_all(&left).is_empty());
    app.shutdown().expect("a clean stop");

    // After the restart, a click within the window joins the stored impression, and when stream
    // time closes b's window the left join emits b unmatched, once.
    let app = start(&app_id, build);
    produce(&clicks, &json(&[(s("a"), seen("click", 1_500))]));
    let pair = (seen("banner", 1_000), seen("click", 1_500));
    let inner_expected = vec![(s("a"), Some(pair.clone()))];
    wait_until("the join of a stored impression", &inner_expected, || {
        decoded::<String, (Seen, Seen)>(&inner)
    });
    produce(&clicks, &json(&[(s("c"), seen("click", 5_000))]));
    let left_expected = vec![
        (s("a"), Some((pair.0.clone(), Some(pair.1.clone())))),
        (s("b"), Some((seen("video", 1_000), None))),
    ];
    wait_until("the left join, b unmatched once", &left_expected, || {
        let mut rows = decoded::<String, (Seen, Option<Seen>)>(&left);
        rows.sort();
        rows
    });
    app.shutdown().expect("a clean stop");
}
