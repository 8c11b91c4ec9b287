//! Malformed records go to the dead-letter topic with the reason and their origin; every good
//! record is still counted.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use faustus::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Order {
    account: String,
    amount: i64,
}

#[test]
fn malformed_records_are_dead_lettered_and_good_ones_counted() {
    let app_id = unique("dlq");
    let input = unique("orders");
    let output = unique("totals");
    create_topic(&input, 1);
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
    produce(&input, &records);

    let orders_topic = Topic::<String, Order>::new(input.clone()).key_codec(Str);
    let totals_topic = Topic::<String, i64>::new(output.clone()).key_codec(Str);
    let running = App::new(app_id.clone())
        .brokers(brokers())
        .http(None)
        .start(move |df| {
            df.stream(&orders_topic)
                .map(|_, o| (o.account, o.amount))
                .sum("totals")
                .to_topic(&totals_topic);
        })
        .expect("the app starts");
    wait_for("the totals to converge", Duration::from_secs(60), || {
        let got: BTreeMap<String, i64> = decode_totals(&last_values(&read_all(&output)));
        (got == expected).then_some(())
    });
    running.shutdown().expect("a clean stop");

    let dead = read_all(&format!("{app_id}-__errors"));
    assert_eq!(dead.len(), bad.len(), "{dead:?}");
    for (((key, value), reason), record) in bad.iter().zip(&dead) {
        assert_eq!(&record.key, key, "the key is kept as it was");
        assert_eq!(&record.value, value, "the value is kept as it was");
        assert!(
            record.headers["faustus.error.reason"].contains(reason),
            "reason {:?} should mention {reason}",
            record.headers["faustus.error.reason"]
        );
        assert_eq!(record.headers["faustus.error.topic"], input);
        assert_eq!(record.headers["faustus.error.partition"], "0");
        let offset: i64 = record.headers["faustus.error.offset"].parse().unwrap();
        assert_eq!(
            &records[offset as usize].1, value,
            "the offset points at the record"
        );
    }
}
