//! The operator examples (`examples/joins.rs`, `windows.rs`, `tables.rs`) run end to end
//! against the real broker, each with its own app id and topics, and must print what their input
//! implies.
//!
//! Each example prints the input it produces (`> <topic> <key> <value>`) and then its results
//! (`## <kind> <name>` sections of `<key> => <value>` rows). The expected results are computed
//! here from the printed input with plain models of the documented semantics, independently of
//! the engine.

mod common;

/// The quickstart, whose dataflow is a function (`quickstart::dataflow`) that both the broker
/// and the driver run.
#[path = "../examples/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    brokers, changelog_table, create_topic, example_binary, last_values, order_records, produce_to,
    read_all, unique, wait_for,
};
use faustus::connectors::kafka_partition;
use faustus::driver::{Record, TestDriver};
use faustus::prelude::*;
use serde_json::{json, Value};

/// What an example printed.
struct Printed {
    /// `(topic, key, value)` of every input record, in production order.
    inputs: Vec<(String, Value, Value)>,
    /// The rows of each `## <kind> <name>` section, as printed.
    sections: BTreeMap<String, Vec<String>>,
    /// What it logged (its standard error).
    log: String,
}

impl Printed {
    /// The input records of `topic`, in order.
    fn input(&self, topic: &str) -> Vec<(Value, Value)> {
        self.inputs
            .iter()
            .filter(|(t, _, _)| t == topic)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The rows of section `name`, sorted (the order across keys is not part of the result).
    fn rows(&self, name: &str) -> Vec<String> {
        let mut rows = self
            .sections
            .get(name)
            .unwrap_or_else(|| panic!("no section `{name}` in the output"))
            .clone();
        rows.sort();
        rows
    }

    /// The rows of stream section `name` per key, in the order printed (per key, the order
    /// the stream emitted them).
    fn stream_per_key(&self, name: &str) -> BTreeMap<String, Vec<String>> {
        let mut per_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in &self.sections[name] {
            let (key, value) = row.split_once(" => ").expect("rows are `key => value`");
            per_key
                .entry(key.to_string())
                .or_default()
                .push(value.to_string());
        }
        per_key
    }
}

/// Runs example `name` against the test broker, waits (with a deadline) for it to exit, asserts
/// it succeeded, and parses what it printed. It runs again on the test driver (`--driver`), with
/// the same input, and must print the same: every table, and every stream per key.
fn run_example(name: &str) -> Printed {
    let broker = run_example_on(name, Some(&brokers()));
    let driver = run_example_with(name, &["--driver"]);
    assert_same(name, &broker, &driver);
    broker
}

/// Asserts that two runs of example `name` printed the same input and the same results: a
/// section's rows are compared per key, in the order printed (a table prints one row per key;
/// a stream's records keep their order per key, not across keys, which partitions interleave).
fn assert_same(name: &str, broker: &Printed, driver: &Printed) {
    assert_eq!(broker.inputs, driver.inputs, "`{name}`: not the same input");
    assert_eq!(
        broker.sections.keys().collect::<Vec<_>>(),
        driver.sections.keys().collect::<Vec<_>>(),
        "`{name}`: not the same sections"
    );
    for section in broker.sections.keys() {
        assert!(
            !broker.sections[section].is_empty(),
            "`{name}`: section `{section}` is empty"
        );
        assert_eq!(
            broker.stream_per_key(section),
            driver.stream_per_key(section),
            "`{name}`: section `{section}` differs between the broker (left) and the driver"
        );
    }
}

/// Runs example `name` against `brokers`, or its embedded broker for `None`.
fn run_example_on(name: &str, brokers: Option<&str>) -> Printed {
    match brokers {
        Some(brokers) => run_example_with(name, &["--brokers", brokers]),
        None => run_example_with(name, &[]),
    }
}

/// Runs example `name` with the flags `flags` besides its own.
fn run_example_with(name: &str, flags: &[&str]) -> Printed {
    let id = unique(name);
    let dir = std::env::temp_dir();
    let stdout_path = dir.join(format!("faustus-example-{id}.out"));
    let stderr_path = dir.join(format!("faustus-example-{id}.log"));
    let mut child = Command::new(fresh_example_binary(name))
        .args(flags)
        .args(["--app-id", &id])
        .args(["--topic-prefix", &format!("{id}-")])
        .args(["--http", "127.0.0.1:0", "--workers", "2"])
        .args(["--timeout-secs", "180"])
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("starting example `{name}`: {e}"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the example") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(240) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "example `{name}` did not exit within 240 s; its log: {}",
                stderr_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&stdout_path).expect("the example's output");
    assert!(
        status.success(),
        "example `{name}` failed ({status}); output:\n{stdout}\nlog: {}",
        stderr_path.display()
    );
    let mut printed = parse(&stdout);
    printed.log = std::fs::read_to_string(&stderr_path).expect("the example's log");
    printed
}

/// The binary of example `name`, checked to be newer than its sources: `cargo test --test
/// examples` builds only this test, not the examples (plain `cargo test` builds both).
fn fresh_example_binary(name: &str) -> std::path::PathBuf {
    let binary = example_binary(name);
    let modified = |path: &std::path::Path| {
        std::fs::metadata(path)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for source in [root.join(format!("{name}.rs")), root.join("support/mod.rs")] {
        assert!(
            modified(&binary) >= modified(&source),
            "{} is older than {}: run `cargo build --examples` first (or plain `cargo test`)",
            binary.display(),
            source.display()
        );
    }
    binary
}

fn parse(stdout: &str) -> Printed {
    let mut printed = Printed {
        log: String::new(),
        inputs: Vec::new(),
        sections: BTreeMap::new(),
    };
    let mut section: Option<String> = None;
    for line in stdout.lines() {
        if let Some(input) = line.strip_prefix("> ") {
            let mut parts = input.splitn(3, ' ');
            let mut next = || parts.next().expect("`> topic key value`");
            let topic = next().to_string();
            let key = serde_json::from_str(next()).expect("a JSON key");
            let value = serde_json::from_str(next()).expect("a JSON value");
            printed.inputs.push((topic, key, value));
        } else if let Some(header) = line.strip_prefix("## ") {
            let name = header.rsplit(' ').next().unwrap_or(header).to_string();
            printed.sections.insert(name.clone(), Vec::new());
            section = Some(name);
        } else if let Some(name) = &section {
            printed
                .sections
                .get_mut(name)
                .unwrap()
                .push(line.to_string());
        }
    }
    printed
}

/// A row as the examples print it.
fn row(key: &Value, value: &Value) -> String {
    format!("{key} => {value}")
}

/// The table an upsert topic's records give: the last value per key, `null` deletes.
fn upsert(records: &[(Value, Value)]) -> BTreeMap<String, Value> {
    let mut table = BTreeMap::new();
    for (key, value) in records {
        let key = key.as_str().expect("string keys").to_string();
        if value.is_null() {
            table.remove(&key);
        } else {
            table.insert(key, value.clone());
        }
    }
    table
}

fn sorted(mut rows: Vec<String>) -> Vec<String> {
    rows.sort();
    rows
}

/// The rows a table with string keys prints, sorted.
fn table_rows<V: serde::Serialize>(table: &BTreeMap<String, V>) -> Vec<String> {
    sorted(
        table
            .iter()
            .map(|(k, v)| row(&json!(k), &json!(v)))
            .collect(),
    )
}

#[test]
fn the_joins_example_prints_every_join() {
    let printed = run_example("joins");
    let users = upsert(&printed.input("users"));
    let accounts = upsert(&printed.input("accounts"));
    let customers = upsert(&printed.input("customers"));
    let orders = upsert(&printed.input("orders"));

    // stream⋈table (left): the views come after the tables are loaded, so each sees the final
    // table, and views of unknown users keep null.
    let mut views: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (user, view) in printed.input("page-views") {
        let profile = users.get(user.as_str().unwrap()).cloned();
        views
            .entry(user.to_string())
            .or_default()
            .push(json!([view, profile]).to_string());
    }
    assert_eq!(printed.stream_per_key("enriched-page-views"), views);

    // table⋈table, inner and outer.
    let key = |k: &String| Value::String(k.clone());
    let inner: Vec<String> = users
        .iter()
        .filter_map(|(k, u)| accounts.get(k).map(|a| row(&key(k), &json!([u, a]))))
        .collect();
    assert_eq!(printed.rows("users-join-accounts"), sorted(inner));
    let keys: BTreeSet<&String> = users.keys().chain(accounts.keys()).collect();
    let outer: Vec<String> = keys
        .into_iter()
        .map(|k| row(&key(k), &json!([users.get(k), accounts.get(k)])))
        .collect();
    assert_eq!(printed.rows("users-outer-join-accounts"), sorted(outer));

    // Foreign key: an order whose customer does not exist has no row.
    let fk: Vec<String> = orders
        .iter()
        .filter_map(|(k, o)| {
            let customer = customers.get(o["customer"].as_str().unwrap())?;
            Some(row(&key(k), &json!([o, customer])))
        })
        .collect();
    assert_eq!(printed.rows("orders-fk-join-customers"), sorted(fk));

    // Windowed left join, |t1 - t2| <= 10 s, 60 s grace: every pair; and an impression without
    // a click once stream time (the largest event time) is past its time + window + grace.
    let (window, grace) = (10_000u64, 60_000u64);
    let impressions = printed.input("impressions");
    let clicks = printed.input("clicks");
    let time = |v: &Value| v["at"].as_u64().expect("event times");
    let stream_time = impressions
        .iter()
        .chain(&clicks)
        .map(|(_, v)| time(v))
        .max()
        .unwrap();
    let mut expected = Vec::new();
    for (id, imp) in &impressions {
        let matches: Vec<&Value> = clicks
            .iter()
            .filter(|(c_id, c)| c_id == id && time(c).abs_diff(time(imp)) <= window)
            .map(|(_, c)| c)
            .collect();
        for click in &matches {
            expected.push(row(id, &json!([imp, click])));
        }
        if matches.is_empty() && time(imp) + window + grace < stream_time {
            expected.push(row(id, &json!([imp, null])));
        }
    }
    assert_eq!(printed.rows("impression-clicks"), sorted(expected));
}

/// `hh:mm:ss[.mmm]` back to milliseconds.
fn millis(clock: &str) -> u64 {
    let (hms, ms) = clock.split_once('.').unwrap_or((clock, "0"));
    let parts: Vec<u64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    ((parts[0] * 60 + parts[1]) * 60 + parts[2]) * 1000 + ms.parse::<u64>().unwrap()
}

/// Windowed rows `user [start, end) => count`, parsed.
fn windowed(rows: &[String]) -> BTreeMap<(String, u64, u64), i64> {
    rows.iter()
        .map(|r| {
            let (user, rest) = r.split_once(" [").expect("`user [start, end) => n`");
            let (start, rest) = rest.split_once(", ").unwrap();
            let (end, count) = rest.split_once(") => ").unwrap();
            (
                (user.to_string(), millis(start), millis(end)),
                count.parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn the_windows_example_prints_every_window_kind() {
    let printed = run_example("windows");
    let (minute, grace, gap) = (60_000u64, 10_000u64, 30_000u64);
    let clicks: Vec<(String, String, u64)> = printed
        .input("clicks")
        .into_iter()
        .map(|(user, click)| {
            (
                user.as_str().unwrap().to_string(),
                click["page"].as_str().unwrap().to_string(),
                click["at"].as_u64().unwrap(),
            )
        })
        .collect();

    // Lateness against the largest event time before each click: the example waits until each
    // of its steps is processed, so a click after a step is judged against everything before
    // it; within a step, stream time can only be smaller, so a click on time here is on time.
    // (A click late for its tumbling window is late for every other window kind too, here.)
    let mut stream_time = 0;
    let (mut on_time, mut late) = (Vec::new(), Vec::new());
    for (user, page, t) in &clicks {
        let tumbling_end = t - t % minute + minute;
        if tumbling_end + grace <= stream_time {
            late.push((user.clone(), page.clone(), *t));
        } else {
            on_time.push((user.clone(), *t));
        }
        stream_time = stream_time.max(*t);
    }
    assert_eq!(late.len(), 1, "the example sends one late click");

    let count = |windows: &mut BTreeMap<(String, u64, u64), i64>, user: &str, s: u64, e: u64| {
        *windows.entry((user.to_string(), s, e)).or_insert(0) += 1;
    };
    let mut tumbling = BTreeMap::new();
    let mut hopping = BTreeMap::new();
    let mut sliding = BTreeMap::new();
    for (user, t) in &on_time {
        let start = t - t % minute;
        count(&mut tumbling, user, start, start + minute);
        let mut start = start;
        loop {
            // Hopping windows of 5 min every minute: every start n·1 min with t in [start, +5 min).
            count(&mut hopping, user, start, start + 5 * minute);
            if start + 5 * minute <= t + minute || start == 0 {
                break;
            }
            start -= minute;
        }
        // Sliding: one window ending at each click, holding every click of the user in it.
        let (s, e) = (t + 1 - minute, t + 1);
        let n = on_time
            .iter()
            .filter(|(u, t2)| u == user && (s..e).contains(t2))
            .count() as i64;
        sliding.insert((user.clone(), s, e), n);
    }
    assert_eq!(windowed(&printed.rows("clicks-per-minute")), tumbling);
    assert_eq!(windowed(&printed.rows("clicks-per-5-minutes")), hopping);
    assert_eq!(windowed(&printed.rows("clicks-in-sliding-minute")), sliding);

    // Sessions: a user's clicks less than 30 s apart, as [first, last + 30 s).
    let mut sessions = BTreeMap::new();
    let users: BTreeSet<&String> = on_time.iter().map(|(u, _)| u).collect();
    for user in users {
        let mut times: Vec<u64> = on_time
            .iter()
            .filter(|(u, _)| u == user)
            .map(|(_, t)| *t)
            .collect();
        times.sort();
        let mut current: Option<(u64, u64, i64)> = None;
        for t in times {
            current = match current {
                Some((first, last, n)) if t <= last + gap => Some((first, t, n + 1)),
                Some((first, last, n)) => {
                    sessions.insert((user.clone(), first, last + gap), n);
                    Some((t, t, 1))
                }
                None => Some((t, t, 1)),
            };
        }
        if let Some((first, last, n)) = current {
            sessions.insert((user.clone(), first, last + gap), n);
        }
    }
    assert_eq!(windowed(&printed.rows("click-sessions")), sessions);

    // Final emission: exactly the tumbling windows that closed (end + grace <= stream time).
    let closed: BTreeMap<(String, u64, u64), i64> = tumbling
        .iter()
        .filter(|((_, _, end), _)| end + grace <= stream_time)
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    assert!(closed.len() < tumbling.len(), "the last window stays open");
    assert_eq!(
        windowed(&printed.rows("final-clicks-per-minute")),
        closed,
        "one final row per closed window"
    );

    // The late click is in the dead-letter topic, with a reason that says so.
    let dead: Vec<String> = printed.rows("dead-letters");
    for (user, page, t) in &late {
        let at = format!("{user} {page} at ");
        let line = dead
            .iter()
            .find(|l| l.starts_with(&at))
            .unwrap_or_else(|| panic!("no dead letter for {user}'s click at {t}: {dead:?}"));
        assert!(line.contains("late"), "{line}");
        let printed_time = line[at.len()..].split(' ').next().unwrap();
        assert_eq!(millis(printed_time), *t);
    }
    assert_eq!(dead.len(), late.len(), "only the late click: {dead:?}");
}

#[test]
fn the_tables_example_prints_sets_lists_and_running_totals() {
    check_tables(&run_example("tables"));
}

#[test]
fn the_differential_example_computes_the_same_closure_on_the_driver_and_the_broker() {
    let printed = run_example("differential");
    assert!(printed.inputs.len() > 1, "the example wrote its follows");
}

#[test]
fn the_examples_run_on_the_embedded_broker_by_default_and_log_json_when_asked() {
    let printed = run_example_with("tables", &["--log-format", "json"]);
    check_tables(&printed);
    let lines: Vec<Value> = printed
        .log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        lines.iter().any(|l| l["fields"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("embedded in-process broker"))),
        "the embedded broker's warning, as JSON: {}",
        printed.log
    );
}

/// What the tables example must print, given the input it printed.
fn check_tables(printed: &Printed) {
    // Set operations applied in order per user; an empty set is absent.
    let mut tags: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (user, op) in printed.input("tag-ops") {
        let set = tags.entry(user.as_str().unwrap().to_string()).or_default();
        let member = op["value"].as_str().map(str::to_string);
        match op["action"].as_str().unwrap() {
            "add" => {
                set.insert(member.unwrap());
            }
            "remove" => {
                set.remove(&member.unwrap());
            }
            "clear" => set.clear(),
            other => panic!("unexpected set operation {other}"),
        }
    }
    tags.retain(|_, set| !set.is_empty());
    assert_eq!(printed.rows("tags"), table_rows(&tags));

    // Actions in arrival order since the last logout.
    let mut actions: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (user, action) in printed.input("actions") {
        let list = actions
            .entry(user.as_str().unwrap().to_string())
            .or_default();
        match action["kind"].as_str().unwrap() {
            "logout" => list.clear(),
            kind => list.push(kind.to_string()),
        }
    }
    actions.retain(|_, list| !list.is_empty());
    assert_eq!(printed.rows("actions-since-logout"), table_rows(&actions));

    // The running balance after every payment, and the final balance.
    let mut running: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut balance: BTreeMap<String, i64> = BTreeMap::new();
    for (user, amount) in printed.input("payments") {
        let total = balance
            .entry(user.as_str().unwrap().to_string())
            .or_insert(0);
        *total += amount.as_i64().unwrap();
        running
            .entry(user.to_string())
            .or_default()
            .push(total.to_string());
    }
    assert_eq!(printed.stream_per_key("balance-updates"), running);
    assert_eq!(printed.rows("balance"), table_rows(&balance));
}

#[test]
fn the_agents_example_prices_orders_and_dead_letters_what_it_cannot_price() {
    // Agents run beside the dataflow, on Kafka only: there is no driver run to compare with.
    let printed = run_example_on("agents", Some(&brokers()));
    let rate = |currency: &str| match currency {
        "EUR" => Some(100),
        "USD" => Some(92),
        "GBP" => Some(117),
        _ => None,
    };
    let mut revenue: BTreeMap<String, i64> = BTreeMap::new();
    let mut priced: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut letters = Vec::new();
    for (key, order) in printed.input("orders") {
        let account = key.as_str().expect("string keys").to_string();
        match rate(order["currency"].as_str().expect("a currency")) {
            Some(rate) => {
                let cents = order["amount"].as_i64().expect("an amount") * rate;
                *revenue.entry(account.clone()).or_default() += cents;
                priced
                    .entry(json!(account).to_string())
                    .or_default()
                    .push(json!({"id": order["id"], "euro_cents": cents}).to_string());
            }
            None => letters.push(json!(account).to_string()),
        }
    }
    assert!(
        !letters.is_empty() && revenue.len() > 1,
        "the example's input"
    );
    assert_eq!(printed.rows("revenue"), table_rows(&revenue));
    // Per key, in the order the orders were produced: the agent keeps per-key order.
    assert_eq!(printed.stream_per_key("priced-orders"), priced);
    let dead: Vec<String> = printed
        .rows("letters")
        .iter()
        .map(|row| {
            let (key, reason) = row.split_once(" => ").expect("`key => reason`");
            assert!(
                reason.contains("failed 3 times") && reason.contains("no rate"),
                "{row}"
            );
            key.to_string()
        })
        .collect();
    assert_eq!(dead, sorted(letters));
}

#[test]
fn the_workflows_example_summarizes_its_chord_and_runs_its_chain() {
    // Workflows run on agents, on Kafka only: there is no driver run to compare with.
    let printed = run_example_on("workflows", Some(&brokers()));
    let images = printed.input("images");
    assert_eq!(images.len(), 20);
    let thumbnail_bytes: u64 = images
        .iter()
        .map(|(_, image)| image["bytes"].as_u64().expect("bytes") / 10)
        .sum();
    let summaries = printed.rows("thumbnail-summaries");
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    let (_, summary) = summaries[0].split_once(" => ").expect("`batch => summary`");
    let summary: Value = serde_json::from_str(summary).expect("a JSON summary");
    assert_eq!(summary["images"], 20);
    assert_eq!(summary["thumbnail_bytes"], thumbnail_bytes);
    assert_eq!(
        (summary["failed"].clone(), summary["missing"].clone()),
        (json!(0), json!(0))
    );
    let (_, cover) = printed.input("resize").pop().expect("the chain's input");
    let chain = printed.rows("publish");
    assert_eq!(chain.len(), 1, "{chain:?}");
    let (_, thumb) = chain[0].split_once(" => ").expect("`name => thumbnail`");
    let thumb: Value = serde_json::from_str(thumb).expect("a JSON thumbnail");
    assert_eq!(thumb["bytes"], cover["bytes"].as_u64().expect("bytes") / 10);
    assert_eq!(thumb["watermarked"], true);
}

#[test]
fn the_quickstart_gives_the_same_totals_and_dead_letters_on_the_driver_and_the_broker() {
    let id = unique("quickstart-same");
    let (input, output) = (format!("{id}-orders"), format!("{id}-totals"));
    let orders = Topic::<String, quickstart::Order>::new(input.clone())
        .key_codec(Str)
        .partitions(4);
    let totals = Topic::<String, i64>::new(output.clone()).key_codec(Str);
    let (generated, expected) = common::orders(300, 9, 7);
    let mut records = order_records(&generated);
    // Bad input: a value that is not JSON, and a tombstone in a stream topic.
    records.insert(
        17,
        (Some(b"account-1".to_vec()), Some(b"{not json".to_vec())),
    );
    records.insert(101, (Some(b"account-2".to_vec()), None));
    let partition = |key: &Option<Vec<u8>>| kafka_partition(key.as_deref().unwrap(), 4) as i32;

    // On the broker: each record where Kafka's Java client (and the driver) puts it.
    create_topic(&input, 4);
    for p in 0..4 {
        let mine: Vec<_> = records
            .iter()
            .filter(|r| partition(&r.0) == p)
            .cloned()
            .collect();
        produce_to(&input, Some(p), &mine);
    }
    let running = App::new(id.clone())
        .brokers(brokers())
        .workers(2)
        .http(None)
        .start(quickstart::dataflow(orders.clone(), totals.clone()))
        .expect("the quickstart starts");
    let dead_letter_topic = faustus::dead_letter::topic(&id);
    wait_for(
        "every order and dead letter",
        Duration::from_secs(120),
        || {
            (changelog_table(&id, "user_to_amount") == expected
                && read_all(&dead_letter_topic).len() == 2)
                .then_some(())
        },
    );
    running.shutdown().expect("the quickstart stops cleanly");
    let broker_totals = last_values(&read_all(&output));
    let broker_dead: Vec<_> = read_all(&dead_letter_topic)
        .into_iter()
        .map(|r| (r.key, r.value, r.headers))
        .collect();

    // On the driver: the same records, over three epochs.
    let mut driver = TestDriver::builder(id.clone())
        .workers(2)
        .start(quickstart::dataflow(orders, totals))
        .expect("the quickstart starts on the driver");
    for chunk in records.chunks(120) {
        for (key, value) in chunk {
            let record = Record {
                key: key.clone(),
                value: value.clone(),
                ..Record::default()
            };
            driver.pipe_record(&input, record);
        }
        driver.close_epoch().expect("an epoch closes");
    }
    let table = driver.table::<String, i64>("user_to_amount").unwrap();
    assert_eq!(table, expected, "the driver's table");
    let driver_totals = last_values(
        &driver
            .records(&output)
            .into_iter()
            .map(|w| common::Record {
                partition: 0,
                offset: 0,
                key: w.record.key,
                value: w.record.value,
                headers: Default::default(),
            })
            .collect::<Vec<_>>(),
    );
    assert_eq!(driver_totals, broker_totals, "the updates topic, compacted");
    let driver_dead: Vec<_> = driver
        .dead_letters()
        .into_iter()
        .map(|w| {
            let headers = w
                .record
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
                .collect();
            (w.record.key, w.record.value, headers)
        })
        .collect();
    assert_eq!(driver_dead.len(), 2);
    let sorted = |mut v: Vec<_>| {
        v.sort();
        v
    };
    assert_eq!(
        sorted(driver_dead),
        sorted(broker_dead),
        "dead letters: the driver (left) and the broker"
    );
}
