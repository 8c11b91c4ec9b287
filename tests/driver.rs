//! The test driver (`faustus::driver`): no broker, no clock. Bad input becomes dead letters,
//! outputs keep their timestamps and headers, the same input gives the same output with any
//! worker count, a restart restores every table from the captured changelogs, and a failing
//! program is an error rather than a hang.

use std::time::Duration;

use faustus::dead_letter;
use faustus::driver::{Output, Record, TestDriver};
use faustus::prelude::*;
use faustus::Error;

/// An order, keyed by account.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Order {
    amount: i64,
}

fn orders() -> Topic<String, Order> {
    Topic::new("orders").key_codec(Str).partitions(4)
}

fn rates() -> Topic<String, i64> {
    Topic::new("rates").key_codec(Str).partitions(2)
}

fn priced() -> Topic<String, (Order, i64)> {
    Topic::new("priced").key_codec(Str)
}

fn totals() -> Topic<String, i64> {
    Topic::new("totals").key_codec(Str)
}

/// Orders priced by the rate of their account (stream⋈table), summed per account, counted per
/// account and minute of their timestamps.
fn shop(df: &Dataflow<'_>) {
    let rates = df.table(&rates(), "rates");
    let orders = df.stream(&orders());
    orders.clone().join(&rates).to_topic(&priced());
    let sums = orders.clone().map_values(|o| o.amount).sum("sums").public();
    sums.to_topic(&totals());
    orders
        .timed()
        .grace(Duration::from_secs(60))
        .tumbling(Duration::from_secs(60))
        .count("per-minute");
}

fn s(x: &str) -> String {
    x.to_string()
}

#[test]
fn bad_input_lands_in_the_dead_letters_with_its_reason_and_origin() {
    let mut driver = TestDriver::start("bad-input", shop).unwrap();
    driver
        .pipe_record("orders", Record::raw("ann", "not json").at(5))
        .pipe_record(
            "orders",
            Record {
                key: Some(b"bob".to_vec()),
                ..Record::default()
            },
        )
        .pipe(&orders(), &s("ann"), &Order { amount: 3 }, 7)
        .pipe_record("rates", Record::raw("ann", "2").with_header("h", "v"));
    driver.close_epoch().unwrap();

    let letters = driver.dead_letters();
    assert_eq!(letters.len(), 2, "{letters:?}");
    let bad = letters
        .iter()
        .find(|l| l.record.key.as_deref() == Some(b"ann"))
        .expect("the record that does not decode");
    assert_eq!(bad.record.value.as_deref(), Some(&b"not json"[..]));
    let reason = String::from_utf8_lossy(bad.record.header(dead_letter::REASON).unwrap());
    assert!(reason.starts_with("value: "), "{reason}");
    assert_eq!(bad.record.header(dead_letter::TOPIC), Some(&b"orders"[..]));
    assert_eq!(bad.record.header(dead_letter::OFFSET), Some(&b"0"[..]));
    let tombstone = letters
        .iter()
        .find(|l| l.record.key.as_deref() == Some(b"bob"))
        .expect("the tombstone");
    assert_eq!(
        tombstone.record.header(dead_letter::REASON),
        Some(&b"value: a tombstone (null value) in a stream topic"[..])
    );
    // The good order went through, the bad ones did not count.
    assert_eq!(
        driver.table::<String, i64>("sums").unwrap(),
        [(s("ann"), 3)].into()
    );
}

#[test]
fn outputs_keep_timestamps_and_headers_and_tables_are_read_whole() {
    let out = Topic::<String, i64>::new("tagged").key_codec(Str);
    let o = out.clone();
    let mut driver = TestDriver::start("meta", move |df| {
        df.stream(&orders())
            .map_record(|k, order, meta| {
                meta.headers.push((s("seen"), b"yes".to_vec()));
                (k, order.amount)
            })
            .to_topic(&o);
        shop(df);
    })
    .unwrap();
    let record = Record::encode(&orders(), &s("ann"), Some(&Order { amount: 4 }))
        .unwrap()
        .at(1_234)
        .with_header("trace", "t1");
    driver.pipe_record("orders", record);
    driver.pipe(&rates(), &s("ann"), &10, 1);
    let epoch = driver.close_epoch().unwrap();

    let tagged = driver.output(&out).unwrap();
    assert_eq!(
        tagged,
        vec![Output {
            epoch,
            key: s("ann"),
            value: Some(4),
            timestamp: Some(1_234),
            headers: vec![(s("trace"), b"t1".to_vec()), (s("seen"), b"yes".to_vec())],
        }]
    );
    // A table's changes are stamped with the epoch.
    let totals = driver.output(&totals()).unwrap();
    assert_eq!(totals.len(), 1);
    assert_eq!(
        (totals[0].timestamp, totals[0].value),
        (Some(epoch as i64), Some(4))
    );
    // The stream⋈table join saw the rate of the same epoch.
    assert_eq!(
        driver
            .output(&priced())
            .unwrap()
            .into_iter()
            .map(|o| o.value)
            .collect::<Vec<_>>(),
        vec![Some((Order { amount: 4 }, 10))]
    );
    // A private windowed table is read too, keyed by (key, window).
    let per_minute = driver.table::<(String, Window), i64>("per-minute").unwrap();
    assert_eq!(per_minute.into_values().collect::<Vec<_>>(), vec![1]);
    assert!(matches!(
        driver.table::<String, String>("sums"),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        driver.table::<String, i64>("missing"),
        Err(Error::Config(_))
    ));
}

/// Some input over three epochs, with a restart between the second and the third (and a record
/// piped before the restart but read after it).
fn scenario(driver: &mut TestDriver) -> faustus::Result<()> {
    for (i, account) in ["ann", "bob", "cat", "dan", "eve"].iter().enumerate() {
        driver.pipe(&rates(), &s(account), &(i as i64 + 1), 0);
    }
    for i in 0..40i64 {
        let account = ["ann", "bob", "cat", "dan", "eve", "fay"][(i % 6) as usize];
        driver.pipe(
            &orders(),
            &s(account),
            &Order { amount: i },
            1_000 * (i % 7),
        );
    }
    driver.close_epoch()?;
    driver.pipe_tombstone(&rates(), &s("bob"), 0);
    driver.pipe_record("orders", Record::raw("ann", "{"));
    for i in 0..20i64 {
        let account = ["ann", "bob", "cat"][(i % 3) as usize];
        driver.pipe(&orders(), &s(account), &Order { amount: -i }, 61_000 + i);
    }
    driver.close_epoch()?;
    driver.pipe(&orders(), &s("bob"), &Order { amount: 100 }, 62_000);
    driver.restart()?;
    driver.pipe(&orders(), &s("cat"), &Order { amount: 1 }, 30_000);
    driver.close_epoch()?;
    Ok(())
}

#[test]
fn the_same_input_gives_the_same_output_with_any_worker_count() {
    let snapshot =
        TestDriver::builder("workers").assert_same_across_workers(&[1, 2, 3], shop, scenario);
    // Not vacuous: every kind of record was written, and every table has rows.
    for topic in [
        "priced",
        "totals",
        "workers-sums-changelog",
        "workers-__errors",
    ] {
        assert!(
            snapshot.written.iter().any(|w| w.topic == topic),
            "nothing written to `{topic}`"
        );
    }
    for table in ["rates", "sums", "per-minute"] {
        assert!(!snapshot.tables[table].is_empty(), "`{table}` is empty");
    }
}

#[test]
#[should_panic(expected = "differ")]
fn the_worker_check_finds_a_program_that_depends_on_its_worker() {
    TestDriver::builder("by-worker").assert_same_across_workers(
        &[1, 2],
        |df| {
            let worker = df.worker_index() as i64;
            df.stream(&orders())
                .map_values(move |_| worker)
                .to_topic(&totals());
        },
        |driver| {
            for account in ["ann", "bob", "cat", "dan"] {
                driver.pipe(&orders(), &s(account), &Order { amount: 1 }, 0);
            }
            driver.close_epoch().map(|_| ())
        },
    );
}

#[test]
fn a_restart_restores_every_table_and_reads_what_was_not_closed() {
    let mut driver = TestDriver::builder("restart")
        .workers(2)
        .start(shop)
        .unwrap();
    driver.pipe(&rates(), &s("ann"), &3, 0);
    driver.pipe(&orders(), &s("ann"), &Order { amount: 5 }, 1_000);
    driver.pipe(&orders(), &s("bob"), &Order { amount: 2 }, 2_000);
    let first = driver.close_epoch().unwrap();
    // Piped, not closed: a crash loses nothing, the input is read again after the restart.
    driver.pipe(&orders(), &s("ann"), &Order { amount: 1 }, 3_000);
    let written = driver.written().len();
    driver.restart().unwrap();
    // The restore writes nothing again, and the state is back.
    assert_eq!(driver.written().len(), written);
    assert_eq!(driver.epoch(), first + 1, "the restore epoch");
    assert_eq!(
        driver.table::<String, i64>("sums").unwrap(),
        [(s("ann"), 5), (s("bob"), 2)].into()
    );
    driver.pipe(&orders(), &s("ann"), &Order { amount: 10 }, 4_000);
    let next = driver.close_epoch().unwrap();
    assert_eq!(next, first + 2);
    assert_eq!(
        driver.table::<String, i64>("sums").unwrap(),
        [(s("ann"), 16), (s("bob"), 2)].into()
    );
    // The restored rate still prices orders.
    let priced = driver.output(&priced()).unwrap();
    assert_eq!(
        priced.last().map(|o| (o.epoch, o.value.clone())),
        Some((next, Some((Order { amount: 10 }, 3))))
    );
    // The changelog holds each epoch's net change per key.
    let changelog: Vec<(u64, String, Option<String>)> = driver
        .changelog("sums")
        .into_iter()
        .map(|w| {
            let text = |b: Option<Vec<u8>>| b.map(|b| String::from_utf8(b).unwrap());
            (w.epoch, text(w.record.key).unwrap(), text(w.record.value))
        })
        .collect();
    assert_eq!(
        changelog,
        vec![
            (first, s("\"ann\""), Some(s("5"))),
            (first, s("\"bob\""), Some(s("2"))),
            (next, s("\"ann\""), Some(s("16"))),
        ]
    );
}

#[test]
fn a_program_that_panics_under_the_stop_policy_is_an_error_not_a_hang() {
    let mut driver = TestDriver::builder("panics")
        .workers(2)
        .on_panic(OnPanic::Stop)
        .start(|df| {
            df.stream(&orders())
                .map_values(|o| {
                    assert!(o.amount >= 0, "negative amount");
                    o.amount
                })
                .to_topic(&totals());
        })
        .unwrap();
    driver.pipe(&orders(), &s("ann"), &Order { amount: -1 }, 0);
    match driver.close_epoch() {
        Err(Error::Runtime(message)) => assert!(message.contains("panicked"), "{message}"),
        other => panic!("not a runtime error: {other:?}"),
    }
    // The failed run keeps answering with its error.
    assert!(matches!(driver.restart(), Err(Error::Runtime(_))));
    assert!(matches!(driver.close_epoch(), Err(Error::Runtime(_))));
}

#[test]
fn a_mistake_in_the_program_is_a_configuration_error_as_in_app_start() {
    let error = TestDriver::start("mistake", |df| {
        df.stream(&orders()).count("same");
        df.stream(&orders()).count("same");
    })
    .unwrap_err();
    assert!(
        matches!(&error, Error::Config(m) if m.contains("two tables are named `same`")),
        "{error}"
    );
}

#[test]
fn a_zero_idle_time_for_punctuation_is_a_configuration_error() {
    let error = TestDriver::start("zero-idle", |df| {
        df.stream(&orders())
            .punctuate_when_idle(Duration::ZERO)
            .tumbling(Duration::from_secs(60))
            .count("per-minute");
    })
    .unwrap_err();
    assert!(
        matches!(&error, Error::Config(m) if m.contains("`punctuate_when_idle` was given an idle time of zero")),
        "{error}"
    );
}

/// Inputs without Kafka (`faustus::input`): iterators and channels on the driver.
mod inputs {
    use std::collections::BTreeMap;

    use super::*;
    use faustus::input::Input;

    fn numbered() -> Topic<String, i64> {
        Topic::new("numbered").key_codec(Str)
    }

    /// 100 numbers over 4 keys, and the sum per key they make.
    fn numbers() -> (Input<String, i64>, BTreeMap<String, i64>) {
        let input = Input::iter("numbers", || {
            (0..100i64).map(|i| (format!("k{}", i % 4), i))
        });
        let mut sums = BTreeMap::new();
        for i in 0..100i64 {
            *sums.entry(format!("k{}", i % 4)).or_default() += i;
        }
        (input, sums)
    }

    #[test]
    fn an_iterator_is_read_once_across_restarts_with_any_worker_count() {
        for workers in [1, 3] {
            let (input, sums) = numbers();
            let mut driver = TestDriver::builder("iter-once")
                .workers(workers)
                .start(move |df| {
                    df.input(&input).sum("sums");
                })
                .unwrap();
            driver.close_epoch().unwrap();
            assert_eq!(driver.table::<String, i64>("sums").unwrap(), sums);
            // The restarted program makes the iterator again; the 100 committed items are
            // skipped, not added a second time.
            driver.restart().unwrap();
            driver.close_epoch().unwrap();
            driver.close_epoch().unwrap();
            assert_eq!(
                driver.table::<String, i64>("sums").unwrap(),
                sums,
                "{workers} worker(s)"
            );
        }
    }

    #[test]
    fn timed_items_keep_their_timestamps_and_others_take_their_epochs_time() {
        let timed = Input::iter_timed("timed", || [("a".to_string(), 1i64, 1_000i64)]);
        let plain = Input::iter("plain", || [("b".to_string(), 2i64)]);
        let mut driver = TestDriver::start("iter-timed", move |df| {
            df.input(&timed)
                .merge(df.input(&plain))
                .to_topic(&numbered());
        })
        .unwrap();
        let epoch = driver.close_epoch().unwrap();
        let mut out = driver.output(&numbered()).unwrap();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        let stamps: Vec<(String, Option<i64>)> =
            out.into_iter().map(|o| (o.key, o.timestamp)).collect();
        assert_eq!(
            stamps,
            vec![
                ("a".to_string(), Some(1_000)),
                ("b".to_string(), Some(epoch as i64))
            ]
        );
    }

    #[test]
    fn a_channel_feeds_each_epoch_what_was_sent_before_it_closed() {
        let (sender, input) = Input::channel("orders", 16);
        let mut driver = TestDriver::builder("channel")
            .workers(2)
            .start(move |df| {
                let orders = df.input(&input);
                orders.clone().to_topic(&numbered());
                orders.sum("totals");
            })
            .unwrap();
        sender.blocking_send(s("ann"), 5).unwrap();
        sender.blocking_send(s("bob"), 7).unwrap();
        let first = driver.close_epoch().unwrap();
        sender.blocking_send(s("ann"), 1).unwrap();
        let second = driver.close_epoch().unwrap();
        let epochs: Vec<(String, i64, u64)> = driver
            .output(&numbered())
            .unwrap()
            .into_iter()
            .map(|o| (o.key, o.value.unwrap(), o.epoch))
            .collect();
        assert_eq!(
            epochs,
            vec![
                (s("ann"), 5, first),
                (s("bob"), 7, first),
                (s("ann"), 1, second)
            ]
        );
        let totals: BTreeMap<String, i64> = [(s("ann"), 6), (s("bob"), 7)].into();
        assert_eq!(driver.table::<String, i64>("totals").unwrap(), totals);
        // After a restart the table is restored and the channel goes on.
        driver.restart().unwrap();
        sender.blocking_send(s("bob"), 3).unwrap();
        driver.close_epoch().unwrap();
        let totals: BTreeMap<String, i64> = [(s("ann"), 6), (s("bob"), 10)].into();
        assert_eq!(driver.table::<String, i64>("totals").unwrap(), totals);
        // Once the driver, and the program that held the input, is gone, a send is an error.
        drop(driver);
        let error = sender.blocking_send(s("ann"), 1).unwrap_err();
        assert_eq!(
            error.to_string(),
            "input `orders` is closed: the application or driver that read it is gone"
        );
    }

    #[test]
    fn reading_an_input_twice_or_without_a_name_is_a_configuration_error() {
        let (input, _) = numbers();
        let error = TestDriver::start("twice", move |df| {
            df.input(&input).sum("a");
            df.input(&input).sum("b");
        })
        .unwrap_err();
        assert!(
            matches!(&error, Error::Config(m) if m.contains("input `numbers` is read twice")),
            "{error}"
        );
        let nameless = Input::iter("", || [(s("a"), 1i64)]);
        let error = TestDriver::start("nameless", move |df| {
            df.input(&nameless).sum("a");
        })
        .unwrap_err();
        assert!(
            matches!(&error, Error::Config(m) if m.contains("an `Input` has an empty name")),
            "{error}"
        );
    }
}

mod properties {
    use super::*;
    use faustus::driver::strategy::{epochs, events, keys, Shape};
    use faustus::driver::{Event, Snapshot};
    use proptest::prelude::*;

    /// One epoch of input: rate updates, and order amounts.
    type Epoch = (Vec<Event<String, i64>>, Vec<Event<String, i64>>);

    /// Epochs of rate updates and orders over four accounts.
    fn input() -> impl Strategy<Value = Vec<Epoch>> {
        let shape = Shape {
            len: 0..15,
            step: 40_000,
            disorder: 90_000,
            ..Shape::default()
        };
        (
            epochs(events(keys(4), 1..5i64, shape.clone()), 4),
            epochs(events(keys(4), 1..50i64, shape), 4),
        )
            .prop_map(|(rates, orders)| rates.into_iter().zip(orders).collect())
    }

    /// Runs `epochs` of the shop, restarting after every epoch if `restarts`.
    fn run(epochs: &[Epoch], workers: usize, restarts: bool) -> Snapshot {
        let mut driver = TestDriver::builder("restarts")
            .workers(workers)
            .start(shop)
            .unwrap();
        for (rate_updates, amounts) in epochs {
            for event in rate_updates {
                driver.pipe_event(&rates(), event);
            }
            for event in amounts {
                let order = event.clone().map_value(|amount| Order { amount });
                driver.pipe_event(&orders(), &order);
            }
            driver.close_epoch().unwrap();
            if restarts {
                driver.restart().unwrap();
            }
        }
        driver.snapshot()
    }

    /// What must not change with restarts: every record written (but its epoch number, and the
    /// timestamps of a table's changes, which are the epoch's), and every table.
    fn behaviour(snapshot: Snapshot) -> (Vec<(String, Record)>, Snapshot) {
        let records = snapshot
            .written
            .iter()
            .map(|w| {
                let mut record = w.record.clone();
                if w.topic == "totals" {
                    record.timestamp = None;
                }
                (w.topic.clone(), record)
            })
            .collect();
        let tables = Snapshot {
            written: Vec::new(),
            tables: snapshot.tables,
        };
        (records, tables)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// A restart after every epoch changes nothing a program can see: every piece of state
        /// (the rate table, the sums, the windows and their stream time) is restored from its
        /// changelog.
        #[test]
        fn restarts_change_nothing(epochs in input(), workers in 1usize..=2) {
            let straight = run(&epochs, workers, false);
            let restarted = run(&epochs, workers, true);
            prop_assert_eq!(behaviour(straight), behaviour(restarted));
        }
    }
}

/// Balances per account, and per account how many times its balance changed (a count of the
/// balance table's changes, with a changelog of its own).
fn changes_counted(df: &Dataflow<'_>) {
    let balances = df.stream(&totals()).sum("balances");
    balances
        .changes()
        .map(|account, _| (account, ()))
        .count("balance-changes");
}

/// A table larger than what a worker's restore emits per activation comes back whole: every key
/// with its value, once, and later events fold onto the restored entries.
#[test]
fn a_table_restored_in_many_slices_comes_back_whole() {
    const KEYS: i64 = 200_000;
    let mut driver = TestDriver::builder("many-slices")
        .workers(2)
        .start(changes_counted)
        .unwrap();
    for i in 0..KEYS {
        driver.pipe(&totals(), &format!("a{i}"), &i, 0);
    }
    driver.close_epoch().unwrap();
    driver.restart().unwrap();
    let restored = driver.table::<String, i64>("balances").unwrap();
    assert_eq!(restored.len(), KEYS as usize);
    assert!(
        (0..KEYS).all(|i| restored.get(&format!("a{i}")) == Some(&i)),
        "a restored entry differs from what was folded"
    );
    driver.pipe(&totals(), &s("a7"), &100, 0);
    driver.close_epoch().unwrap();
    assert_eq!(
        driver.table::<String, i64>("balances").unwrap().get("a7"),
        Some(&107)
    );
    assert_eq!(
        driver
            .table::<String, i64>("balance-changes")
            .unwrap()
            .get("a7"),
        Some(&2),
        "the restore counted as a change of `a7`"
    );
}

/// A restored table's entries are its state, not changes: after a restart, an aggregate of its
/// changes (restored from its own changelog) counts only the changes made since.
#[test]
fn a_restored_table_emits_no_changes_and_aggregates_of_its_changes_count_once() {
    let mut driver = TestDriver::builder("changes-restart")
        .workers(2)
        .start(changes_counted)
        .unwrap();
    driver.pipe(&totals(), &s("ann"), &5, 0);
    driver.pipe(&totals(), &s("bob"), &1, 0);
    driver.close_epoch().unwrap();
    driver.pipe(&totals(), &s("ann"), &2, 0);
    driver.close_epoch().unwrap();
    let counted = [(s("ann"), 2), (s("bob"), 1)].into();
    assert_eq!(
        driver.table::<String, i64>("balance-changes").unwrap(),
        counted
    );

    driver.restart().unwrap();
    assert_eq!(
        driver.table::<String, i64>("balances").unwrap(),
        [(s("ann"), 7), (s("bob"), 1)].into()
    );
    assert_eq!(
        driver.table::<String, i64>("balance-changes").unwrap(),
        counted,
        "the restore is not a change of the balances"
    );
    driver.pipe(&totals(), &s("bob"), &1, 0);
    driver.close_epoch().unwrap();
    assert_eq!(
        driver.table::<String, i64>("balance-changes").unwrap(),
        [(s("ann"), 2), (s("bob"), 2)].into()
    );
}
