//! Property tests of a dataflow, with the public API only: a stream⋈table join and a windowed
//! count, run on the test driver (`faustus::driver`) against plain models, on random
//! Kafka-shaped input (few keys, timestamps out of order, tombstones, duplicates, bad bytes),
//! split into random epochs, on 1 to 3 workers, with a restart in the middle.
//!
//! The pattern: describe the dataflow once (`shop`), generate the input (`strategy`), run it
//! on the driver epoch by epoch, replay the same epochs through a model that says what the
//! documented semantics imply, and compare what the model says with what the driver wrote and
//! holds. See `docs/guide/testing.md`.
//!
//! Run with: `cargo test --example testing` (more cases: `PROPTEST_CASES=1000 cargo test
//! --example testing`). `cargo run --example testing` runs the dataflow once on a small input
//! and prints what it wrote.

use std::collections::BTreeMap;
use std::time::Duration;

use faustus::driver::{Event, Payload, TestDriver};
use faustus::prelude::*;

/// The size of a window.
const MINUTE: u64 = 60_000;
/// How late an order may be for its window.
const GRACE: u64 = 30_000;

fn prices() -> Topic<String, i64> {
    Topic::new("prices").key_codec(Str).partitions(2)
}

fn orders() -> Topic<String, i64> {
    Topic::new("orders").key_codec(Str).partitions(3)
}

fn charges() -> Topic<String, i64> {
    Topic::new("charges").key_codec(Str)
}

/// The dataflow under test: each order (a quantity) is charged at its item's price as of the
/// order (stream⋈table), and orders are counted per item and minute of their timestamps.
fn shop(df: &Dataflow<'_>) {
    let prices = df.table(&prices(), "prices");
    let orders = df.stream(&orders());
    orders
        .clone()
        .join(&prices)
        .map_values(|(quantity, price)| quantity * price)
        .to_topic(&charges());
    orders
        .grace(Duration::from_millis(GRACE))
        .tumbling(Duration::from_millis(MINUTE))
        // Keep every window's row, so that the model need not expire them.
        .expires(Duration::from_secs(365 * 86_400))
        .count("orders-per-minute");
}

/// One epoch of input: price updates and orders.
type Epoch = (Vec<Event<String, i64>>, Vec<Event<String, i64>>);

/// What the documented semantics say the dataflow writes and holds.
#[derive(Debug, Default, PartialEq)]
struct Model {
    /// Charges per item, in order.
    charges: BTreeMap<String, Vec<i64>>,
    /// Orders per (item, window start).
    counts: BTreeMap<(String, u64), i64>,
    /// Dead letters: bad bytes in either topic, tombstones among orders, late orders.
    dead_letters: usize,
}

impl Model {
    /// Replays `epochs` as the semantics say: within an epoch, the table takes all its updates
    /// before the orders look it up; stream time is the largest order timestamp of the epochs
    /// before, and an order whose window ended `GRACE` or more before it is late.
    fn of(epochs: &[Epoch]) -> Model {
        let mut model = Model::default();
        let mut table: BTreeMap<String, i64> = BTreeMap::new();
        let mut stream_time: Option<u64> = None;
        for (updates, orders) in epochs {
            for update in updates {
                match &update.payload {
                    Payload::Value(price) => {
                        table.insert(update.key.clone(), *price);
                    }
                    Payload::Tombstone => {
                        table.remove(&update.key);
                    }
                    Payload::Bad(_) => model.dead_letters += 1,
                }
            }
            let mut latest = stream_time;
            for order in orders {
                let Payload::Value(quantity) = order.payload else {
                    model.dead_letters += 1;
                    continue;
                };
                if let Some(price) = table.get(&order.key) {
                    model
                        .charges
                        .entry(order.key.clone())
                        .or_default()
                        .push(quantity * price);
                }
                let time = order.timestamp as u64;
                let start = time - time % MINUTE;
                if stream_time.is_some_and(|now| start + MINUTE + GRACE <= now) {
                    model.dead_letters += 1;
                } else {
                    *model.counts.entry((order.key.clone(), start)).or_default() += 1;
                }
                latest = latest.max(Some(time));
            }
            stream_time = latest;
        }
        model
    }

    /// What the driver wrote and holds, in the model's terms.
    fn seen(driver: &TestDriver) -> Model {
        let mut per_item: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for charge in driver.output(&charges()).expect("charges decode") {
            per_item
                .entry(charge.key)
                .or_default()
                .push(charge.value.expect("a charge has a value"));
        }
        let counts = driver
            .table::<(String, Window), i64>("orders-per-minute")
            .expect("the windowed table")
            .into_iter()
            .map(|((item, window), n)| ((item, window.start), n))
            .collect();
        Model {
            charges: per_item,
            counts,
            dead_letters: driver.dead_letters().len(),
        }
    }
}

/// Runs `epochs` on a driver with `workers` workers, restarting it after epoch `restart` (if
/// any), and returns it.
fn run(epochs: &[Epoch], workers: usize, restart: Option<usize>) -> TestDriver {
    let mut driver = TestDriver::builder("shop")
        .workers(workers)
        .start(shop)
        .expect("the dataflow starts");
    for (i, (updates, placed)) in epochs.iter().enumerate() {
        for update in updates {
            driver.pipe_event(&prices(), update);
        }
        for order in placed {
            driver.pipe_event(&orders(), order);
        }
        driver.close_epoch().expect("the epoch closes");
        if restart == Some(i) {
            driver.restart().expect("the dataflow restarts");
        }
    }
    driver
}

fn main() {
    let event = |key: &str, quantity: i64, timestamp: i64| Event {
        key: key.to_string(),
        payload: Payload::Value(quantity),
        timestamp,
    };
    let epochs = vec![
        (vec![event("tea", 3, 0)], vec![event("tea", 2, 1_000)]),
        (
            vec![event("tea", 4, 0)],
            vec![event("tea", 1, 70_000), event("jam", 5, 2_000)],
        ),
    ];
    let driver = run(&epochs, 2, Some(0));
    println!("{:#?}", Model::seen(&driver));
    assert_eq!(Model::seen(&driver), Model::of(&epochs));
}

#[cfg(test)]
mod tests {
    use super::*;
    use faustus::driver::strategy::{epochs, events, keys, Shape};
    use proptest::prelude::*;

    /// Epochs of price updates and orders: 3 items, prices and quantities 1 to 9, timestamps
    /// stepping up to 60 s forward and 100 s back (so that many orders are late).
    fn input() -> impl Strategy<Value = Vec<Epoch>> {
        let shape = Shape {
            len: 0..20,
            step: 60_000,
            disorder: 100_000,
            ..Shape::default()
        };
        (
            epochs(events(keys(3), 1..10i64, shape.clone()), 4),
            epochs(events(keys(3), 1..10i64, shape), 4),
        )
            .prop_map(|(updates, orders)| updates.into_iter().zip(orders).collect())
    }

    proptest! {
        // Modest by default, so that CI stays quick; PROPTEST_CASES raises it.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn joins_and_windowed_counts_match_the_model(
            epochs in input(),
            workers in 1usize..=3,
            restart in proptest::option::of(0usize..4),
        ) {
            let driver = run(&epochs, workers, restart);
            prop_assert_eq!(Model::seen(&driver), Model::of(&epochs));
        }
    }
}
