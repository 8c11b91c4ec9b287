//! Partitions added to an input topic while the application runs: it stops with an error that
//! says so (its epochs in flight commit), and a restart reads the new partitions from their
//! beginning. Under exactly-once, on the real broker.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use faustus::prelude::*;
use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
use rdkafka::client::DefaultClientContext;

/// The totals app on `input`, checking its partitions every 200 ms.
fn start(app_id: &str, input: &str) -> faustus::Running {
    let topic = Topic::<String, i64>::new(input.to_string()).key_codec(Str);
    App::new(app_id)
        .brokers(brokers())
        .workers(2)
        .partitions(2)
        .http(Some("127.0.0.1:0".parse().unwrap()))
        .partition_check_interval(Duration::from_millis(200))
        .start(move |df| {
            df.stream(&topic).sum("totals").public();
        })
        .expect("the app starts")
}

/// Sums of `records` per key, as the table serves them.
fn sums(records: &[(String, i64)]) -> BTreeMap<String, serde_json::Value> {
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for (k, a) in records {
        *sums.entry(k.clone()).or_insert(0) += a;
    }
    sums.into_iter()
        .map(|(k, v)| (k, serde_json::json!(v)))
        .collect()
}

/// Waits until the table `totals` of `running` serves `expected`.
fn wait_for_totals(running: &faustus::Running, expected: &BTreeMap<String, serde_json::Value>) {
    let base = format!("http://{}", running.http_addr().expect("HTTP is on"));
    wait_for("the totals", Duration::from_secs(120), || {
        (http_table(&base, "totals")? == *expected).then_some(())
    });
}

#[test]
fn partitions_added_to_an_input_stop_the_app_with_a_clear_error_and_a_restart_reads_them() {
    let input = unique("grow-in");
    let app_id = unique("grow-app");
    create_topic(&input, 2);
    let amounts = |prefix: &str, n: i64| -> Vec<(String, i64)> {
        (0..n)
            .map(|i| (format!("{prefix}{}", i % 5), i + 1))
            .collect()
    };
    let first = amounts("k", 40);
    for p in 0..2 {
        produce_to(
            &input,
            Some(p),
            &amount_records(&first[p as usize * 20..][..20]),
        );
    }
    let running = start(&app_id, &input);
    wait_for_totals(&running, &sums(&first));

    // Two partitions more, with records only they hold.
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("an admin client");
    let grown = futures_executor(admin.create_partitions(
        &[NewPartitions::new(&input, 4)],
        &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
    ));
    assert!(
        grown.iter().all(|r| r.is_ok()),
        "adding partitions: {grown:?}"
    );
    let second = amounts("n", 20);
    produce_to(&input, Some(2), &amount_records(&second[..10]));
    produce_to(&input, Some(3), &amount_records(&second[10..]));

    wait_until(
        "the application to stop by itself",
        Duration::from_secs(120),
        &true,
        || running.is_finished(),
    );
    let error = running
        .join()
        .expect_err("the application stops with an error")
        .to_string();
    assert!(
        error.contains(&format!("input topic `{input}` now has 4 partitions"))
            && error.contains("started with 2")
            && error.contains("restart"),
        "the error says what happened and what to do: {error}"
    );

    // The restart reads all four partitions; every record counts once.
    let running = start(&app_id, &input);
    let all: Vec<(String, i64)> = first.iter().chain(&second).cloned().collect();
    wait_for_totals(&running, &sums(&all));
    running.stop();
    running.join().expect("a clean stop");
}

/// Runs an admin future to completion on a small runtime of its own.
fn futures_executor<T>(
    future: impl std::future::Future<Output = rdkafka::error::KafkaResult<T>>,
) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
        .expect("the admin request")
}
