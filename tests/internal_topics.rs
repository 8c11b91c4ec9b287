//! The topics faustus keeps its state in, on the real broker: created compacted and replicated
//! as configured (on one broker: one replica, `min.insync.replicas=1`); and an existing one set
//! up wrongly (a changelog or progress topic that is not compacted, a progress topic of more
//! than one partition), or a replication factor the cluster cannot hold, stops the start with a
//! message that says what is wrong and how to fix it.

mod common;

use std::time::Duration;

use common::*;
use faustus::prelude::*;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

/// An application on the test broker that sums `input` into the table `totals`.
fn start(app: App, input: &str) -> faustus::Result<faustus::Running> {
    let topic = Topic::<String, i64>::new(input.to_string()).key_codec(Str);
    app.brokers(brokers()).http(None).start(move |df| {
        df.stream(&topic).sum("totals");
    })
}

/// The error `App::start` gives for `app` over `input`.
fn start_error(app: App, input: &str) -> String {
    match start(app, input) {
        Err(e) => e.to_string(),
        Ok(running) => {
            let _ = running.shutdown();
            panic!("the application started")
        }
    }
}

/// `cleanup.policy` and `min.insync.replicas` of `topic`, and the replicas of its partition 0.
fn topic_setup(topic: &str) -> (String, String, usize) {
    let admin: AdminClient<DefaultClientContext> = kafka().client().create().expect("an admin");
    let described = futures::executor::block_on(admin.describe_configs(
        &[ResourceSpecifier::Topic(topic)],
        &AdminOptions::new().request_timeout(Some(Duration::from_secs(30))),
    ))
    .expect("describing a topic")
    .remove(0)
    .expect("the topic's configuration");
    let value = |key: &str| {
        described
            .get(key)
            .and_then(|e| e.value.clone())
            .unwrap_or_default()
    };
    let consumer: BaseConsumer = kafka().client().create().expect("a client");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(30))
        .expect("metadata");
    let replicas = metadata.topics()[0].partitions()[0].replicas().len();
    (
        value("cleanup.policy"),
        value("min.insync.replicas"),
        replicas,
    )
}

#[test]
fn created_state_topics_are_compacted_and_replicated_as_the_cluster_allows() {
    let id = unique("replicated");
    let input = unique("amounts");
    create_topic(&input, 2);
    let running = start(App::new(&id), &input).expect("the application starts");
    running
        .wait_ready(Duration::from_secs(60))
        .expect("the application is ready");
    running.shutdown().expect("a clean stop");
    // One broker: the default replication factor, min(3, brokers), is 1, and
    // min.insync.replicas, min(2, replicas), is 1.
    for topic in [format!("{id}-totals-changelog"), format!("{id}-__progress")] {
        assert_eq!(
            topic_setup(&topic),
            ("compact".into(), "1".into(), 1),
            "{topic}"
        );
    }
    let (policy, min_insync, replicas) = topic_setup(&format!("{id}-__errors"));
    assert_eq!(
        (policy.as_str(), min_insync.as_str(), replicas),
        ("delete", "1", 1)
    );
}

#[test]
fn a_changelog_that_is_not_compacted_stops_the_start() {
    let id = unique("not-compacted");
    let input = unique("amounts");
    create_topic(&input, 2);
    let changelog = format!("{id}-totals-changelog");
    create_topic(&changelog, 2);
    let message = start_error(App::new(&id), &input);
    for wanted in [
        format!("topic `{changelog}` has cleanup.policy=delete"),
        "needs it compacted".to_string(),
        format!("--entity-name {changelog} --add-config cleanup.policy=compact"),
    ] {
        assert!(message.contains(&wanted), "no `{wanted}` in: {message}");
    }
}

#[test]
fn a_progress_topic_that_is_not_compacted_or_not_of_one_partition_stops_the_start() {
    let input = unique("amounts");
    create_topic(&input, 2);

    let id = unique("progress-partitions");
    create_topic(&format!("{id}-__progress"), 2);
    let message = start_error(App::new(&id), &input);
    let wanted = format!("topic `{id}-__progress` has 2 partitions, but faustus needs exactly 1");
    assert!(message.contains(&wanted), "no `{wanted}` in: {message}");

    let id = unique("progress-deleted");
    create_topic(&format!("{id}-__progress"), 1);
    let message = start_error(App::new(&id), &input);
    let wanted = format!("topic `{id}-__progress` has cleanup.policy=delete");
    assert!(message.contains(&wanted), "no `{wanted}` in: {message}");
}

#[test]
fn more_replicas_than_brokers_stops_the_start() {
    let input = unique("amounts");
    create_topic(&input, 2);
    let message = start_error(
        App::new(unique("three-replicas")).replication_factor(3),
        &input,
    );
    for wanted in [
        "with 3 replicas per partition",
        "--replication-factor",
        "the cluster's metadata lists 1 broker(s)",
    ] {
        assert!(message.contains(wanted), "no `{wanted}` in: {message}");
    }
    let message = start_error(
        App::new(unique("min-insync"))
            .replication_factor(1)
            .min_insync_replicas(2),
        &input,
    );
    assert!(
        message.contains("--min-insync-replicas 2 is more than --replication-factor 1"),
        "{message}"
    );
    // Without a replication factor, the default on one broker is 1: 2 in sync is too many.
    let message = start_error(
        App::new(unique("min-insync")).min_insync_replicas(2),
        &input,
    );
    assert!(
        message.contains("--min-insync-replicas 2 is more than the replication factor 1"),
        "{message}"
    );
}
