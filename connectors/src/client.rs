//! Client configuration shared by every consumer, producer and admin client faustus creates.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;

/// How to reach the brokers, plus settings passed through to librdkafka.
#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Extra librdkafka settings applied to every client (e.g. security settings).
    pub extra: BTreeMap<String, String>,
    /// Extra librdkafka settings applied to producers only, after faustus' own producer
    /// settings (so they override them), e.g. `batch.size` or `compression.type`.
    pub producer_extra: BTreeMap<String, String>,
    /// How long one metadata or admin request may take (topic lookups and creation, the ends
    /// of partitions), and how long a topic faustus created may take to appear with a leader
    /// for every partition.
    pub request_timeout: Duration,
}

impl KafkaConfig {
    /// The default [`KafkaConfig::request_timeout`]: 30 s.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    /// A configuration for the given bootstrap servers.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            extra: BTreeMap::new(),
            producer_extra: BTreeMap::new(),
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// The base client configuration.
    pub fn client(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config.set("client.id", "faustus");
        for (k, v) in &self.extra {
            config.set(k, v);
        }
        config
    }

    /// A consumer that reads only committed data and is assigned partitions explicitly (no
    /// group rebalancing, no offsets committed to Kafka: positions live in the progress topic).
    pub fn consumer(&self) -> ClientConfig {
        let mut config = self.client();
        config
            .set("group.id", "faustus-unused")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true")
            .set("fetch.wait.max.ms", "10")
            .set("queued.min.messages", "100000")
            .set("fetch.queue.backoff.ms", "1");
        config
    }

    /// A producer that partitions keys as the Java client does (murmur2), with
    /// [`KafkaConfig::producer_extra`] applied last.
    pub fn producer(&self) -> ClientConfig {
        let mut config = self.client();
        config
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("enable.idempotence", "true")
            .set("queue.buffering.max.messages", "1000000");
        for (k, v) in &self.producer_extra {
            config.set(k, v);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_settings_override_the_defaults_and_stay_out_of_consumers() {
        let mut config = KafkaConfig::new("127.0.0.1:9092");
        config
            .producer_extra
            .insert("linger.ms".into(), "20".into());
        config
            .producer_extra
            .insert("batch.size".into(), "262144".into());
        let producer = config.producer();
        assert_eq!(producer.get("linger.ms"), Some("20"));
        assert_eq!(producer.get("batch.size"), Some("262144"));
        assert_eq!(config.consumer().get("batch.size"), None);
    }
}
