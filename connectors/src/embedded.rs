//! The embedded broker: librdkafka's in-process mock cluster, for demos.
//!
//! It speaks the Kafka protocol well enough for a quickstart, but it does not hide aborted
//! transactions from `read_committed` readers, so programs on it run at-least-once.

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::error::{KafkaContext, Result};

/// An in-process Kafka cluster with one broker; it lives as long as this value.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedBroker {
    /// Starts the embedded broker.
    pub fn start() -> Result<Self> {
        let cluster = MockCluster::new(1).context(|| "starting the embedded broker".into())?;
        Ok(EmbeddedBroker { cluster })
    }

    /// Its bootstrap address.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Creates a topic.
    pub fn create_topic(&self, name: &str, partitions: i32) -> Result<()> {
        self.cluster
            .create_topic(name, partitions, 1)
            .context(|| format!("creating `{name}` on the embedded broker"))
    }
}
