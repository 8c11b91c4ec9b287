//! Record metadata on the real broker: Kafka timestamps and headers flow from input to output,
//! event time defaults to the record timestamp, streams merge and read several topics. (Tables
//! that map, filter and regroup under updates and deletions, and records that do not encode, are
//! tested on the test driver: `tests/operators.rs`.)

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use faustus::connectors::{partition_count, read_to_end};
use faustus::prelude::*;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};

const EPOCH: Duration = Duration::from_millis(100);
const DEADLINE: Duration = Duration::from_secs(60);

/// A record read back with its timestamp and headers.
#[derive(Debug)]
struct Stamped {
    key: String,
    value: serde_json::Value,
    timestamp: Option<i64>,
    headers: BTreeMap<String, String>,
}

/// Produces one JSON record with an explicit timestamp and headers.
fn produce_stamped(topic: &str, key: &str, value: i64, timestamp: i64, headers: &[(&str, &str)]) {
    let producer: ThreadedProducer<_> = kafka().producer().create().expect("producer");
    let (key, value) = (
        serde_json::to_vec(key).unwrap(),
        serde_json::to_vec(&value).unwrap(),
    );
    let mut owned = OwnedHeaders::new();
    for (name, v) in headers {
        owned = owned.insert(Header {
            key: name,
            value: Some(v.as_bytes()),
        });
    }
    let record = BaseRecord::to(topic)
        .key(key.as_slice())
        .payload(value.as_slice())
        .timestamp(timestamp)
        .headers(owned);
    producer.send(record).map_err(|(e, _)| e).expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Every committed record of `topic` (none if it does not exist yet), partition by partition.
fn read_stamped(topic: &str) -> Vec<Stamped> {
    let partitions = partition_count(&kafka(), topic).expect("partition count");
    let partitions: Vec<i32> = (0..partitions.unwrap_or(0)).collect();
    let mut out = Vec::new();
    read_to_end(&kafka(), topic, &partitions, Duration::from_secs(30), |r| {
        out.push(Stamped {
            key: serde_json::from_slice(r.key.unwrap_or_default()).unwrap_or_default(),
            value: r
                .value
                // A dead letter's value may be the debug form of what has no JSON.
                .map(|v| {
                    serde_json::from_slice(v).unwrap_or_else(|_| {
                        serde_json::Value::String(String::from_utf8_lossy(v).into_owned())
                    })
                })
                .unwrap_or(serde_json::Value::Null),
            timestamp: r.timestamp,
            headers: r
                .headers
                .iter()
                .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
                .collect(),
        })
    })
    .expect("reading to the end");
    out
}

fn start(
    app_id: &str,
    build: impl for<'s> Fn(&Dataflow<'s>) + Send + Sync + 'static,
) -> faustus::Running {
    App::new(app_id)
        .brokers(brokers())
        .http(None)
        .commit_interval(EPOCH)
        .workers(2)
        .start(build)
        .expect("the app starts")
}

#[test]
fn timestamps_and_headers_flow_from_input_to_output() {
    let app_id = unique("records");
    let [a, b, merged, joined, changes] = ["a", "b", "merged", "joined", "changes"].map(unique);
    for t in [&a, &b] {
        create_topic(t, 1);
    }
    let peeked = Arc::new(AtomicUsize::new(0));
    let build = {
        let (a, b, merged, joined, changes) = (
            a.clone(),
            b.clone(),
            merged.clone(),
            joined.clone(),
            changes.clone(),
        );
        let peeked = Arc::clone(&peeked);
        move |df: &Dataflow<'_>| {
            let ta = Topic::<String, i64>::new(a.clone());
            let tb = Topic::<String, i64>::new(b.clone());
            let peeked = Arc::clone(&peeked);
            // Both topics as one stream; each event keeps its own timestamp and headers, and
            // gains one.
            df.streams(&[ta.clone(), tb.clone()])
                .peek(move |_, _, _| {
                    peeked.fetch_add(1, Ordering::SeqCst);
                })
                .map_record(|k, v, meta| {
                    meta.headers.push(("doubled".into(), b"yes".to_vec()));
                    (k, v * 2)
                })
                .to_topic(&Topic::new(merged.clone()));
            // Event time defaults to the record timestamp: a pair is stamped with the later one.
            df.stream(&ta)
                .within(Duration::from_secs(10))
                .join("a-with-b", df.stream(&tb).timed())
                .to_topic(&Topic::new(joined.clone()));
            // A table's changes are stamped with the epoch's time.
            df.stream(&ta)
                .sum("a-sums")
                .to_topic(&Topic::new(changes.clone()));
            // Windows by record time: the window holds the record's timestamp.
            df.stream(&ta)
                .tumbling(Duration::from_secs(1))
                .count("a-per-second")
                .public();
        }
    };
    let app = start(&app_id, build);
    app.wait_ready(DEADLINE).expect("ready");
    let before = faustus_now_ms();
    produce_stamped(&a, "k", 1, 1_000_000, &[("trace", "from-a")]);
    produce_stamped(&b, "k", 2, 1_005_000, &[("trace", "from-b")]);

    let merged_records = wait_for("both merged records", DEADLINE, || {
        let records = read_stamped(&merged);
        (records.len() == 2).then_some(records)
    });
    let by_value: BTreeMap<i64, &Stamped> = merged_records
        .iter()
        .map(|r| (r.value.as_i64().unwrap(), r))
        .collect();
    assert_eq!(by_value.keys().copied().collect::<Vec<_>>(), vec![2, 4]);
    assert_eq!(by_value[&2].timestamp, Some(1_000_000));
    assert_eq!(by_value[&4].timestamp, Some(1_005_000));
    assert_eq!(by_value[&2].headers["trace"], "from-a");
    assert_eq!(by_value[&4].headers["trace"], "from-b");
    assert!(merged_records.iter().all(|r| r.headers["doubled"] == "yes"));
    assert_eq!(peeked.load(Ordering::SeqCst), 2, "peek saw each event once");

    let pairs = wait_for("the joined pair", DEADLINE, || {
        let records = read_stamped(&joined);
        (!records.is_empty()).then_some(records)
    });
    assert_eq!(pairs.len(), 1, "{pairs:?}");
    assert_eq!(pairs[0].key, "k");
    assert_eq!(pairs[0].value, serde_json::json!([1, 2]));
    assert_eq!(
        pairs[0].timestamp,
        Some(1_005_000),
        "max of both event times"
    );

    let sums = wait_for("the sum's change", DEADLINE, || {
        let records = read_stamped(&changes);
        (!records.is_empty()).then_some(records)
    });
    let stamped = sums[0].timestamp.expect("a timestamp");
    assert!(
        stamped >= before - 1_000 && stamped <= faustus_now_ms(),
        "a table change carries its epoch's time: {stamped} not in [{before}, now]"
    );

    let windows = app
        .table::<(String, Window), i64>("a-per-second")
        .expect("a public table");
    let window = Window {
        start: 1_000_000,
        end: 1_001_000,
    };
    wait_for("the record-time window", DEADLINE, || {
        (windows.get(&("k".into(), window)) == Ok(Some(1))).then_some(())
    });
    app.shutdown().expect("a clean stop");
}

fn faustus_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
