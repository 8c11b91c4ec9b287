//! Client configuration shared by every consumer, producer and admin client faustus creates.
//!
//! Each client is configured in layers, later ones winning: the bootstrap servers and
//! `client.id=faustus`; faustus' defaults for its kind of client; the user's properties for
//! every client; the user's properties for its role (consumer or producer: see
//! [`crate::properties`]); and last what the engine owns ([`crate::properties::ENGINE_OWNED`]),
//! which the user cannot give.

use std::fmt;
use std::time::Duration;

use rdkafka::config::ClientConfig;

use crate::properties::{KafkaProperties, Role};

/// How to reach the brokers, plus properties passed through to librdkafka.
#[derive(Clone)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The user's librdkafka properties (security settings, tuning), for every client or per
    /// role. Check them with [`KafkaProperties::validate`] before use.
    pub properties: KafkaProperties,
    /// How long one metadata or admin request may take (topic lookups and creation, the ends
    /// of partitions), and how long a topic faustus created may take to appear with a leader
    /// for every partition; also how long [`crate::connect`] tries to reach the brokers.
    pub request_timeout: Duration,
}

impl fmt::Debug for KafkaConfig {
    /// Secrets show as `[redacted]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("properties", &self.properties)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// faustus' defaults for every client: look up the metadata of the topics in use every 10 s
/// instead of librdkafka's 5 minutes. After a broker dies, librdkafka can take a partition's new
/// leader from a response hint naming a broker it does not know yet ("new leader ... not found in
/// cache") and then neither fetch nor produce for that partition until its next full metadata
/// refresh; the shorter interval bounds that stall to seconds. It costs one small request per
/// client every 10 s.
const CLIENT_DEFAULTS: &[(&str, &str)] = &[("topic.metadata.refresh.interval.ms", "10000")];

/// faustus' defaults for the consumers that read partitions it assigns (sources, restore,
/// progress): keep fetching while the local queue drains.
const READER_DEFAULTS: &[(&str, &str)] = &[
    ("fetch.wait.max.ms", "10"),
    ("queued.min.messages", "100000"),
    ("fetch.queue.backoff.ms", "1"),
];

/// faustus' defaults for producers: batch for a few milliseconds, idempotent, and keys
/// partitioned as the Java client does (murmur2).
const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("partitioner", "murmur2_random"),
    ("linger.ms", "5"),
    ("enable.idempotence", "true"),
    ("queue.buffering.max.messages", "1000000"),
];

impl KafkaConfig {
    /// The default [`KafkaConfig::request_timeout`]: 30 s.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    /// A configuration for the given bootstrap servers.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            properties: KafkaProperties::new(),
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
        }
    }

    /// The same configuration with the user's `properties`.
    pub fn with_properties(mut self, properties: KafkaProperties) -> Self {
        self.properties = properties;
        self
    }

    /// A client of `role` with faustus' `defaults` under the user's properties.
    fn layered(&self, defaults: &[(&str, &str)], role: Role) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("client.id", "faustus");
        for (k, v) in CLIENT_DEFAULTS.iter().chain(defaults) {
            config.set(*k, *v);
        }
        self.properties.apply(&mut config, role);
        config.set("bootstrap.servers", &self.brokers);
        config
    }

    /// The base client configuration (admin and metadata clients): the user's properties for
    /// every client.
    pub fn client(&self) -> ClientConfig {
        self.layered(&[], Role::All)
    }

    /// A consumer with faustus' `defaults` under the user's consumer properties; the caller sets
    /// what it owns (group, offsets, isolation) on the result.
    pub fn consumer_with(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        self.layered(defaults, Role::Consumer)
    }

    /// A consumer that reads only committed data and is assigned partitions explicitly (no
    /// group rebalancing, no offsets committed to Kafka: positions live in the progress topic).
    pub fn consumer(&self) -> ClientConfig {
        let mut config = self.consumer_with(READER_DEFAULTS);
        config
            .set("group.id", "faustus-unused")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "true");
        config
    }

    /// A producer that partitions keys as the Java client does (murmur2), with the user's
    /// producer properties over faustus' defaults.
    pub fn producer(&self) -> ClientConfig {
        self.layered(PRODUCER_DEFAULTS, Role::Producer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_client_refreshes_its_metadata_often_unless_told_otherwise() {
        let config = KafkaConfig::new("127.0.0.1:9092");
        let refresh = "topic.metadata.refresh.interval.ms";
        for client in [config.client(), config.consumer(), config.producer()] {
            assert_eq!(client.get(refresh), Some("10000"));
        }
        let mut config = KafkaConfig::new("127.0.0.1:9092");
        config.properties.set(refresh, "60000");
        assert_eq!(config.producer().get(refresh), Some("60000"));
    }

    #[test]
    fn producer_settings_override_the_defaults_and_stay_out_of_consumers() {
        let mut config = KafkaConfig::new("127.0.0.1:9092");
        config
            .properties
            .set("producer.linger.ms", "20")
            .set("producer.batch.size", "262144")
            .set("consumer.fetch.wait.max.ms", "50")
            .set("security.protocol", "SASL_SSL")
            .set("queued.min.messages", "1000");
        let producer = config.producer();
        assert_eq!(producer.get("linger.ms"), Some("20"));
        assert_eq!(producer.get("batch.size"), Some("262144"));
        assert_eq!(producer.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(producer.get("fetch.wait.max.ms"), None);
        let consumer = config.consumer();
        assert_eq!(consumer.get("batch.size"), None);
        assert_eq!(consumer.get("fetch.wait.max.ms"), Some("50"));
        assert_eq!(consumer.get("queued.min.messages"), Some("1000"));
        assert_eq!(consumer.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(consumer.get("isolation.level"), Some("read_committed"));
        assert_eq!(config.client().get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(
            config.client().get("bootstrap.servers"),
            Some("127.0.0.1:9092")
        );
    }

    #[test]
    fn debug_output_hides_secrets() {
        let mut config = KafkaConfig::new("b:9093");
        config.properties.set("sasl.password", "hunter2");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("sasl.password"), "{shown}");
    }
}
