//! Kafka plumbing of the harness: the contract's client settings, and topic administration
//! (create, count, delete).

use std::time::{Duration, Instant};

use faustus_connectors::{ensure_topics, partition_count, KafkaConfig, TopicSpec};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::{Guarantee, PARTITIONS};

/// An error of the harness's Kafka plumbing, with what it was doing.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

const TIMEOUT: Duration = Duration::from_secs(30);

/// The base client configuration for `brokers`.
pub fn client(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    c
}

/// The contract's producer settings: `acks=all`, `linger.ms=5`, `batch.size=262144`, no
/// compression.
pub fn producer(brokers: &str) -> ClientConfig {
    let mut c = client(brokers);
    c.set("acks", "all")
        .set("linger.ms", "5")
        .set("batch.size", "262144")
        .set("compression.type", "none")
        .set("queue.buffering.max.messages", "1000000");
    c
}

/// The contract's consumer settings: from the earliest offset, no automatic commits, and
/// `read_committed` under `exactly_once`.
pub fn consumer(brokers: &str, group: &str, guarantee: Guarantee) -> ClientConfig {
    let mut c = client(brokers);
    c.set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set(
            "isolation.level",
            match guarantee {
                Guarantee::AtLeastOnce => "read_uncommitted",
                Guarantee::ExactlyOnce => "read_committed",
            },
        )
        .set("fetch.wait.max.ms", "10")
        .set("queued.min.messages", "100000")
        .set("fetch.queue.backoff.ms", "1");
    c
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, Error> {
    Ok(client(brokers).create()?)
}

fn metadata_client(brokers: &str) -> Result<BaseConsumer, Error> {
    Ok(client(brokers)
        .set("allow.auto.create.topics", "false")
        .create()?)
}

/// Creates `topics` with [`PARTITIONS`] partitions each and waits until they can be used.
///
/// They keep every record whatever its timestamp (`retention.ms=-1`): a system may stamp its
/// output with the events' own times, which lie years back, and the broker's time-based
/// retention would otherwise delete that output within minutes.
pub fn create_topics(brokers: &str, topics: &[String]) -> Result<(), Error> {
    let specs: Vec<TopicSpec> = topics
        .iter()
        .map(|t| TopicSpec::new(t.clone(), PARTITIONS).with_config("retention.ms", "-1"))
        .collect();
    ensure_topics(&KafkaConfig::new(brokers), &specs)
        .map_err(|e| format!("creating topics {topics:?}: {e}"))?;
    Ok(())
}

/// Partitions of `topic`, or `None` if it does not exist.
pub fn partitions(brokers: &str, topic: &str) -> Result<Option<i32>, Error> {
    Ok(partition_count(&KafkaConfig::new(brokers), topic)
        .map_err(|e| format!("reading the metadata of `{topic}`: {e}"))?)
}

/// Records in `topic` (the sum over its partitions of high minus low watermark), or `None` if it
/// does not exist. Exact for topics written without transactions.
pub fn record_count(brokers: &str, topic: &str) -> Result<Option<u64>, Error> {
    let Some(n) = partitions(brokers, topic)? else {
        return Ok(None);
    };
    let c = metadata_client(brokers)?;
    let mut total = 0;
    for p in 0..n {
        let (low, high) = c
            .fetch_watermarks(topic, p, TIMEOUT)
            .map_err(|e| format!("reading the offsets of `{topic}` partition {p}: {e}"))?;
        total += (high - low).max(0) as u64;
    }
    Ok(Some(total))
}

/// High watermarks of every partition of `topic`.
pub fn high_watermarks(brokers: &str, topic: &str) -> Result<Vec<(i32, i64)>, Error> {
    let n = partitions(brokers, topic)?.ok_or_else(|| format!("no topic `{topic}`"))?;
    let c = metadata_client(brokers)?;
    (0..n)
        .map(|p| {
            c.fetch_watermarks(topic, p, TIMEOUT)
                .map(|(_, high)| (p, high))
                .map_err(|e| format!("reading the offsets of `{topic}` partition {p}: {e}").into())
        })
        .collect()
}

/// Every topic on the broker.
pub fn list_topics(brokers: &str) -> Result<Vec<String>, Error> {
    let md = metadata_client(brokers)?
        .fetch_metadata(None, TIMEOUT)
        .map_err(|e| format!("listing topics: {e}"))?;
    Ok(md.topics().iter().map(|t| t.name().to_string()).collect())
}

/// Deletes `topics` (missing ones are fine) and waits until the broker no longer lists them.
pub fn delete_topics(brokers: &str, topics: &[String]) -> Result<(), Error> {
    if topics.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let results = futures::executor::block_on(admin(brokers)?.delete_topics(&names, &options))
        .map_err(|e| format!("deleting topics {topics:?}: {e}"))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => return Err(format!("deleting topic `{name}`: {code}").into()),
        }
    }
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let listed = list_topics(brokers)?;
        if !topics.iter().any(|t| listed.contains(t)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(
                format!("topics {topics:?} still listed {TIMEOUT:?} after deletion").into(),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Deletes every topic whose name starts with `prefix` (a system's internal topics, named after
/// its application id); returns their names.
pub fn delete_topics_with_prefix(brokers: &str, prefix: &str) -> Result<Vec<String>, Error> {
    let doomed: Vec<String> = list_topics(brokers)?
        .into_iter()
        .filter(|t| t.starts_with(prefix))
        .collect();
    delete_topics(brokers, &doomed)?;
    Ok(doomed)
}
