//! Poison code: a program's function that panics on one record. By default the record becomes a
//! dead letter (with the panic's message and the record's origin) and the application goes on;
//! with the `stop` policy the application stops without committing the record's epoch, and a
//! restart that switches to dead-lettering gets past it. On the test driver, and on the broker
//! under exactly-once.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use faustus::driver::TestDriver;
use faustus::prelude::*;

/// Sums amounts per account, with functions that panic on chosen records: `filter` on account
/// `bad-filter`, `map` on amount 13, the fold on amount 7.
fn poisoned_sums(df: &Dataflow<'_>, input: &Topic<String, i64>, output: &Topic<String, i64>) {
    df.stream(input)
        .filter(|account, _| {
            assert!(account != "bad-filter", "no such account");
            true
        })
        .map(|account, amount| {
            assert!(amount != 13, "unlucky amount {amount}");
            (account, amount)
        })
        .fold("totals", |_, total: Option<&i64>, amount| {
            assert!(amount != 7, "sevens are not summed");
            total.copied().unwrap_or(0) + amount
        })
        .to_topic(output);
}

/// The header `name` of a dead letter.
fn header<'a>(letter: &'a faustus::driver::Record, name: &str) -> &'a str {
    std::str::from_utf8(letter.header(name).unwrap_or_default()).expect("UTF-8 header")
}

#[test]
fn a_panicking_function_dead_letters_its_record_and_the_rest_flows_on() {
    let input = Topic::<String, i64>::new("amounts")
        .key_codec(Str)
        .partitions(1);
    let output = Topic::<String, i64>::new("totals").key_codec(Str);
    let (i, o) = (input.clone(), output.clone());
    let mut driver = TestDriver::builder("poison")
        .workers(2)
        .start(move |df| poisoned_sums(df, &i, &o))
        .expect("the dataflow starts");
    let events: Vec<(&str, i64)> = vec![
        ("a", 1),
        ("a", 13),
        ("b", 2),
        ("bad-filter", 5),
        ("b", 7),
        ("a", 3),
        ("b", 4),
    ];
    for (account, amount) in &events {
        driver.pipe(&input, &account.to_string(), amount, 0);
    }
    driver.close_epoch().expect("the epoch commits");

    let mut totals = BTreeMap::new();
    for w in driver.records("totals") {
        let key = String::from_utf8(w.record.key.clone().unwrap()).unwrap();
        let value: i64 = serde_json::from_slice(w.record.value.as_deref().unwrap()).unwrap();
        totals.insert(key, value);
    }
    let expected = BTreeMap::from([("a".to_string(), 4), ("b".to_string(), 6)]);
    assert_eq!(
        totals, expected,
        "every record but the poisoned ones is summed"
    );

    let letters = driver.dead_letters();
    let mut by_operator: BTreeMap<String, &faustus::driver::Record> = BTreeMap::new();
    for letter in &letters {
        assert_eq!(header(&letter.record, "faustus.error.kind"), "panic");
        assert_eq!(header(&letter.record, "faustus.error.topic"), "amounts");
        by_operator.insert(
            header(&letter.record, "faustus.error.operator").to_string(),
            &letter.record,
        );
    }
    assert_eq!(
        letters.len(),
        3,
        "one letter per poisoned record: {letters:?}"
    );
    let filter = by_operator["filter"];
    assert!(header(filter, "faustus.error.reason").contains("no such account"));
    assert_eq!(filter.key.as_deref(), Some(&b"\"bad-filter\""[..]));
    assert_eq!(filter.value.as_deref(), Some(&b"5"[..]));
    let map = by_operator["map"];
    let reason = header(map, "faustus.error.reason");
    assert!(reason.contains("unlucky amount 13"), "{reason}");
    assert!(
        reason.contains("tests/poison.rs:"),
        "the reason says where: {reason}"
    );
    let fold = by_operator["fold(totals)"];
    assert!(header(fold, "faustus.error.reason").contains("sevens are not summed"));
    assert_eq!(fold.key.as_deref(), Some(&b"\"b\""[..]));
    assert_eq!(fold.value.as_deref(), Some(&b"7"[..]));
    // The origin points at the input record.
    assert_eq!(header(fold, "faustus.error.partition"), "0");
    assert_eq!(
        header(fold, "faustus.error.offset"),
        "4",
        "b:7 is the fifth record"
    );
    assert_eq!(
        header(map, "faustus.error.offset"),
        "1",
        "a:13 is the second"
    );
}

#[test]
fn under_the_stop_policy_the_epoch_fails_and_names_the_record() {
    let input = Topic::<String, i64>::new("amounts")
        .key_codec(Str)
        .partitions(1);
    let output = Topic::<String, i64>::new("totals").key_codec(Str);
    let (i, o) = (input.clone(), output.clone());
    let mut driver = TestDriver::builder("poison-stop")
        .on_panic(OnPanic::Stop)
        .start(move |df| poisoned_sums(df, &i, &o))
        .expect("the dataflow starts");
    driver.pipe(&input, &"a".to_string(), &1, 0);
    let clean = driver.close_epoch().expect("a clean epoch commits");
    driver.pipe(&input, &"a".to_string(), &2, 0);
    driver.pipe(&input, &"a".to_string(), &13, 0);
    let error = driver.close_epoch().expect_err("the poisoned epoch fails");
    let message = error.to_string();
    assert!(
        message.contains("amounts/0@2") && message.contains("unlucky amount 13"),
        "the error names the record and the panic: {message}"
    );
    let written: Vec<u64> = driver.records("totals").iter().map(|w| w.epoch).collect();
    assert_eq!(
        written,
        vec![clean],
        "nothing of the failed epoch is written"
    );
    assert!(driver.dead_letters().is_empty());
}

/// Starts the poisoned sums on the broker under exactly-once with `policy`.
fn start(app_id: &str, input: &str, output: &str, policy: OnPanic) -> faustus::Running {
    let input = Topic::<String, i64>::new(input.to_string()).key_codec(Str);
    let output = Topic::<String, i64>::new(output.to_string()).key_codec(Str);
    App::new(app_id)
        .brokers(brokers())
        .guarantee(Guarantee::ExactlyOnce)
        .workers(2)
        .partitions(2)
        .http(None)
        .on_panic(policy)
        .start(move |df| poisoned_sums(df, &input, &output))
        .expect("the app starts")
}

/// Waits for `running` to stop by itself (a fatal error) and returns its error.
fn stopped_with_error(running: faustus::Running) -> String {
    wait_until(
        "the application to stop by itself",
        Duration::from_secs(120),
        &true,
        || running.is_finished(),
    );
    running
        .join()
        .expect_err("the application stops with an error")
        .to_string()
}

#[test]
fn the_stop_policy_stops_until_the_user_switches_to_dead_letters_then_each_record_counts_once() {
    let (input, output) = (unique("poison-in"), unique("poison-out"));
    let app_id = unique("poison-app");
    create_topic(&input, 1);
    let records: Vec<(String, i64)> = [("a", 1), ("b", 2), ("a", 13), ("b", 4), ("a", 5)]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    produce(&input, &amount_records(&records));

    // Stop: the application ends with an error naming the record, twice (the failed epoch was
    // not committed, so a restart reads the record again).
    for run in 0..2 {
        let error = stopped_with_error(start(&app_id, &input, &output, OnPanic::Stop));
        assert!(
            error.contains(&format!("{input}/0@2")) && error.contains("unlucky amount 13"),
            "run {run}: the error names the record: {error}"
        );
        assert!(
            error.contains("--on-panic dead_letter"),
            "it says what to do: {error}"
        );
    }
    let dead_letter_topic = format!("{app_id}-__errors");
    assert!(
        read_all(&dead_letter_topic).is_empty(),
        "no dead letter under the stop policy"
    );

    // Dead letters: the application gets past the record; every other record counts once.
    let running = start(&app_id, &input, &output, OnPanic::DeadLetter);
    let expected = BTreeMap::from([("a".to_string(), 6), ("b".to_string(), 6)]);
    wait_for("the totals", Duration::from_secs(120), || {
        let got: BTreeMap<String, i64> = last_values(&read_all(&output))
            .into_iter()
            .map(|(k, v)| {
                let k = String::from_utf8(k).unwrap();
                (k, serde_json::from_slice(&v).unwrap())
            })
            .collect();
        (got == expected).then_some(())
    });
    let letters = wait_for("the dead letter", Duration::from_secs(60), || {
        let letters = read_all(&dead_letter_topic);
        (!letters.is_empty()).then_some(letters)
    });
    running.stop();
    running.join().expect("a clean stop");
    assert_eq!(letters.len(), 1, "exactly one dead letter: {letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.headers["faustus.error.kind"], "panic");
    assert_eq!(letter.headers["faustus.error.operator"], "map");
    assert_eq!(letter.headers["faustus.error.topic"], input);
    assert_eq!(letter.headers["faustus.error.offset"], "2");
    // Every update of the totals, in order: no epoch was applied twice.
    let updates: Vec<(String, i64)> = read_all(&output)
        .into_iter()
        .map(|r| {
            (
                String::from_utf8(r.key.unwrap()).unwrap(),
                serde_json::from_slice(&r.value.unwrap()).unwrap(),
            )
        })
        .collect();
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for (k, v) in &updates {
        let before = last.insert(k.clone(), *v).unwrap_or(0);
        assert!(
            *v > before,
            "totals only grow, once per record: {updates:?}"
        );
    }
}

#[test]
fn panics_in_a_grouped_aggregate_and_a_foreign_key_leave_the_row_out_as_a_dead_letter() {
    // orders: order id → (customer, amount); customers: customer → name.
    let orders = Topic::<String, (String, i64)>::new("orders")
        .key_codec(Str)
        .partitions(1);
    let customers = Topic::<String, String>::new("customers")
        .key_codec(Str)
        .partitions(1);
    let (o, c) = (orders.clone(), customers.clone());
    let mut driver = TestDriver::builder("poison-tables")
        .workers(2)
        .start(move |df| {
            let orders = df.table(&o, "orders");
            let customers = df.table(&c, "customers");
            orders
                .fk_join(&customers, |(customer, _): &(String, i64)| {
                    assert!(customer != "ghost", "no ghosts");
                    Some(customer.clone())
                })
                .public();
            orders
                .group_by(|_, (customer, amount)| (customer.clone(), *amount))
                .aggregate("largest", |customer, amounts| {
                    assert!(customer != "cursed", "cursed customer");
                    amounts.iter().map(|(a, _)| **a).max()
                })
                .public();
        })
        .expect("the dataflow starts");
    driver.pipe(&customers, &"ann".to_string(), &"Ann".to_string(), 0);
    driver.pipe(&customers, &"cursed".to_string(), &"C".to_string(), 0);
    for (id, customer, amount) in [
        ("o1", "ann", 5),
        ("o2", "ann", 9),
        ("o3", "ghost", 1),
        ("o4", "cursed", 3),
    ] {
        driver.pipe(&orders, &id.to_string(), &(customer.to_string(), amount), 0);
    }
    driver.close_epoch().expect("the epoch commits");

    let largest: BTreeMap<String, i64> = driver.table("largest").expect("the table");
    assert_eq!(
        largest,
        BTreeMap::from([("ann".to_string(), 9), ("ghost".to_string(), 1)]),
        "the cursed group is left out"
    );
    let joined: BTreeMap<String, ((String, i64), String)> = driver
        .table("orders-fk-join-customers")
        .expect("the join's table");
    let ids: Vec<&String> = joined.keys().collect();
    assert_eq!(ids, ["o1", "o2", "o4"], "the ghost order is left out");

    let letters = driver.dead_letters();
    let operators: Vec<&str> = letters
        .iter()
        .map(|l| header(&l.record, "faustus.error.operator"))
        .collect();
    assert_eq!(letters.len(), 2, "{operators:?}");
    let aggregate = letters
        .iter()
        .find(|l| header(&l.record, "faustus.error.operator") == "aggregate(largest)")
        .expect("the aggregate's letter");
    assert!(header(&aggregate.record, "faustus.error.reason").contains("cursed customer"));
    assert_eq!(aggregate.record.key.as_deref(), Some(&b"\"cursed\""[..]));
    let fk = letters
        .iter()
        .find(|l| header(&l.record, "faustus.error.operator") == "orders-fk-join-customers")
        .expect("the foreign key's letter");
    assert!(header(&fk.record, "faustus.error.reason").contains("no ghosts"));
    assert_eq!(fk.record.key.as_deref(), Some(&b"\"o3\""[..]));
}

#[test]
fn a_windowed_fold_that_panics_on_an_event_leaves_it_out_as_a_dead_letter() {
    let input = Topic::<String, i64>::new("amounts")
        .key_codec(Str)
        .partitions(1);
    let i = input.clone();
    let mut driver = TestDriver::builder("poison-windows")
        .workers(2)
        .start(move |df| {
            df.stream(&i)
                .tumbling(Duration::from_secs(60))
                .aggregate(
                    "per_minute",
                    0i64,
                    |total, amount| {
                        assert!(*amount != 13, "unlucky amount");
                        *total += amount
                    },
                    |total, other| *total += other,
                )
                .public();
        })
        .expect("the dataflow starts");
    for (key, amount, at) in [
        ("a", 1, 1_000),
        ("a", 13, 2_000),
        ("a", 5, 3_000),
        ("b", 7, 4_000),
    ] {
        driver.pipe(&input, &key.to_string(), &amount, at);
    }
    driver.close_epoch().expect("the epoch commits");
    let windows: BTreeMap<(String, Window), i64> = driver.table("per_minute").expect("the table");
    let totals: Vec<i64> = windows.values().copied().collect();
    assert_eq!(totals, [6, 7], "the 13 is left out of its window");
    let letters = driver.dead_letters();
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0].record;
    assert_eq!(
        header(letter, "faustus.error.operator"),
        "aggregate(per_minute)"
    );
    assert!(header(letter, "faustus.error.reason").contains("unlucky amount"));
    assert_eq!(header(letter, "faustus.error.offset"), "1");
    assert_eq!(letter.value.as_deref(), Some(&b"13"[..]));
}
