//! End to end on the real broker: known orders in, exact sums out — in the table served over
//! HTTP, in the updates topic and in the changelog.

mod common;

use std::time::Duration;

use common::*;
use faustus::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
struct Order {
    account: String,
    amount: i64,
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let response = reqwest::blocking_get(format!("http://{addr}{path}"));
    response
}

mod reqwest {
    /// A minimal blocking GET over a fresh Tokio runtime (keeps the tests free of extra clients).
    pub fn blocking_get(url: String) -> (u16, serde_json::Value) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let response = ::reqwest::get(&url).await.expect("HTTP request");
            let status = response.status().as_u16();
            let body = response.json().await.unwrap_or(serde_json::Value::Null);
            (status, body)
        })
    }
}

#[test]
fn orders_are_summed_exactly_in_table_topic_and_changelog() {
    let app_id = unique("e2e");
    let input = unique("orders");
    let output = unique("totals");
    create_topic(&input, 4);
    let (orders, expected) = common::orders(2_000, 25, 7);
    produce(&input, &order_records(&orders));

    let orders_topic = Topic::<String, Order>::new(input.clone()).key_codec(Str);
    let totals_topic = Topic::<String, i64>::new(output.clone()).key_codec(Str);
    let running = App::new(app_id.clone())
        .brokers(brokers())
        .workers(2)
        .http(Some("127.0.0.1:0".parse().unwrap()))
        .commit_interval(Duration::from_millis(100))
        .start(move |df| {
            let table = df
                .stream(&orders_topic)
                .map(|_, o| (o.account, o.amount))
                .sum("user_to_amount")
                .public();
            table.to_topic(&totals_topic);
        })
        .expect("the app starts");
    let addr = running.http_addr().unwrap();

    // The updates topic converges to the exact totals.
    let got = wait_for(
        "the totals topic to reach the expected sums",
        Duration::from_secs(60),
        || {
            let got = decode_totals(&last_values(&read_all(&output)));
            (got == expected).then_some(got)
        },
    );
    assert_eq!(got, expected);

    // Every key over HTTP.
    for (account, total) in &expected {
        let (status, body) = http_get(addr, &format!("/api/table/user_to_amount/{account}/"));
        assert_eq!(status, 200, "{account}: {body}");
        assert_eq!(body, serde_json::json!({ account.as_str(): total }));
    }
    let (status, body) = http_get(addr, "/api/table/user_to_amount/no-such-account/");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("no-such-account"));
    let (status, body) = http_get(addr, "/api/table/");
    assert_eq!(
        (status, body),
        (
            200,
            serde_json::json!({
                "results": ["user_to_amount"],
                "tables": {"user_to_amount": {"state": "ready"}},
                "entries": {"user_to_amount": expected.len()},
            })
        )
    );

    running.shutdown().expect("a clean stop");

    // The changelog holds the same table (JSON keys and values).
    let changelog = changelog_table(&app_id, "user_to_amount");
    assert_eq!(changelog, expected);

    // Exactly-once: the updates topic holds, per key, strictly increasing running totals whose
    // last is the total — no epoch's update was written twice.
    assert_updates_increase(&output);
}

#[test]
fn a_missing_input_topic_stops_start_up_with_its_name() {
    let missing = unique("no-such-topic");
    let topic = Topic::<String, Order>::new(missing.clone()).key_codec(Str);
    let result = App::new(unique("missing"))
        .brokers(brokers())
        .http(None)
        .start(move |df| {
            df.stream(&topic).count("n");
        });
    let error = result.err().expect("start-up fails").to_string();
    assert!(
        error.contains(&missing) && error.contains("does not exist"),
        "{error}"
    );
}

#[test]
fn an_http_address_in_use_stops_start_up_with_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let topic = Topic::<String, Order>::new(unique("orders"))
        .key_codec(Str)
        .partitions(1);
    let result = App::new(unique("http-in-use"))
        .brokers(brokers())
        .http(Some(addr))
        .start(move |df| {
            df.stream(&topic).count("n").public();
        });
    let error = result.err().expect("start-up fails").to_string();
    assert!(
        error.contains(&addr.to_string()) && error.contains("cannot listen"),
        "{error}"
    );
}

/// `flush_promptly` and `commit_promptly` (what the committer, agents and timers flush and commit
/// with) return only once every record is delivered: none is left in flight, and every one is
/// readable at once, committed records under `read_committed` too. A long linger keeps the
/// records in the producer's queue when the call begins.
#[test]
fn prompt_flushes_and_commits_return_once_every_record_is_delivered() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

    let topic = unique("prompt");
    create_topic(&topic, 3);
    let producer = |transactional: Option<&str>| {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers())
            .set("linger.ms", "200");
        if let Some(id) = transactional {
            config.set("transactional.id", id);
        }
        let producer: ThreadedProducer<DefaultProducerContext> =
            config.create().expect("a producer");
        producer
    };
    let send = |producer: &ThreadedProducer<DefaultProducerContext>, from: usize| {
        for i in from..from + 1_000 {
            let key = format!("k{i}");
            let value = i.to_string();
            producer
                .send(BaseRecord::to(&topic).key(&key).payload(&value))
                .expect("queued");
        }
    };
    let timeout = Duration::from_secs(60);

    let plain = producer(None);
    send(&plain, 0);
    assert!(plain.in_flight_count() > 0, "the linger holds the records");
    faustus_connectors::flush_promptly(&plain, timeout).expect("a flush");
    assert_eq!(
        plain.in_flight_count(),
        0,
        "nothing in flight after the flush"
    );
    assert_eq!(
        read_all(&topic).len(),
        1_000,
        "every flushed record is readable"
    );

    let transactional = producer(Some(&unique("prompt-txn")));
    transactional
        .init_transactions(timeout)
        .expect("transactions");
    transactional.begin_transaction().expect("a transaction");
    send(&transactional, 1_000);
    faustus_connectors::commit_promptly(&transactional, timeout).expect("a commit");
    assert_eq!(transactional.in_flight_count(), 0);
    let values: std::collections::BTreeSet<usize> = read_all(&topic)
        .iter()
        .map(|r| {
            String::from_utf8_lossy(r.value.as_deref().unwrap())
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(
        values,
        (0..2_000).collect(),
        "every committed record is readable"
    );
}
