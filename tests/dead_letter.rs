//! Malformed records go to the dead-letter topic with the reason and their origin; every good
//! record is still counted. On the test driver (`tests/examples.rs` checks that the broker
//! writes the same dead letters).

mod common;

use std::collections::BTreeMap;

use common::*;
use faustus::driver::{Record, TestDriver};
use faustus::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Order {
    account: String,
    amount: i64,
}

#[test]
fn malformed_records_are_dead_lettered_and_good_ones_counted() {
    let (input, output) = ("orders", "totals");
    let (good, expected) = common::orders(300, 5, 11);
    let mut records = order_records(&good);
    // (record, what the reason must mention)
    let bad: Vec<(KeyValue, &str)> = vec![
        (
            (Some(b"x".to_vec()), Some(b"{not json".to_vec())),
            "invalid JSON",
        ),
        (
            (Some(b"y".to_vec()), Some(br#"{"account": "y"}"#.to_vec())),
            "missing field",
        ),
        ((Some(b"z".to_vec()), None), "tombstone"),
        (
            (
                Some(vec![0xff, 0xfe]),
                Some(br#"{"account":"q","amount":1}"#.to_vec()),
            ),
            "invalid UTF-8",
        ),
    ];
    // Interleave the bad records with the good ones.
    for (i, (record, _)) in bad.iter().enumerate() {
        records.insert(i * 50 + 10, record.clone());
    }
    let orders_topic = Topic::<String, Order>::new(input)
        .key_codec(Str)
        .partitions(1);
    let totals_topic = Topic::<String, i64>::new(output).key_codec(Str);
    let mut driver = TestDriver::builder("dlq")
        .workers(2)
        .start(move |df| {
            df.stream(&orders_topic)
                .map(|_, o| (o.account, o.amount))
                .sum("totals")
                .to_topic(&totals_topic);
        })
        .expect("the dataflow starts");
    for (key, value) in &records {
        let record = Record {
            key: key.clone(),
            value: value.clone(),
            ..Record::default()
        };
        driver.pipe_record(input, record);
    }
    driver.close_epoch().expect("the epoch closes");
    let mut got: BTreeMap<String, i64> = BTreeMap::new();
    for w in driver.records(output) {
        let key = String::from_utf8(w.record.key.unwrap()).unwrap();
        got.insert(
            key,
            serde_json::from_slice(&w.record.value.unwrap()).unwrap(),
        );
    }
    assert_eq!(got, expected, "the totals");

    let dead = driver.dead_letters();
    assert_eq!(dead.len(), bad.len(), "{dead:?}");
    for (((key, value), reason), letter) in bad.iter().zip(&dead) {
        let record = &letter.record;
        let header =
            |name: &str| String::from_utf8_lossy(record.header(name).unwrap()).into_owned();
        assert_eq!(&record.key, key, "the key is kept as it was");
        assert_eq!(&record.value, value, "the value is kept as it was");
        assert!(
            header("faustus.error.reason").contains(reason),
            "reason {:?} should mention {reason}",
            header("faustus.error.reason")
        );
        assert_eq!(header("faustus.error.topic"), input);
        assert_eq!(header("faustus.error.partition"), "0");
        let offset: i64 = header("faustus.error.offset").parse().unwrap();
        assert_eq!(
            &records[offset as usize].1, value,
            "the offset points at the record"
        );
    }
}
