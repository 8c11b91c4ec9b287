//! The connectors' error type.

use rdkafka::error::KafkaError;

/// Everything that can go wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectorError {
    /// The Kafka client reported an error.
    #[error("kafka {context}: {source}")]
    Kafka {
        /// What faustus was doing.
        context: String,
        /// The client's error.
        #[source]
        source: KafkaError,
    },
    /// A topic the program reads does not exist and was not configured to be created.
    #[error("topic `{0}` does not exist: create it, or declare it with a partition count so faustus creates it")]
    MissingTopic(String),
    /// A topic exists with fewer partitions than the program needs.
    #[error("topic `{topic}` has {actual} partitions but {expected} were expected")]
    PartitionMismatch {
        /// The topic.
        topic: String,
        /// Partitions the program expected.
        expected: i32,
        /// Partitions the broker reports.
        actual: i32,
    },
    /// A record faustus wrote itself (progress, changelog) could not be read back.
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// Which record.
        what: String,
        /// Why it could not be decoded.
        reason: String,
    },
    /// An operation did not finish in time.
    #[error("timed out {0}")]
    Timeout(String),
    /// A newer instance of the application took over the transactional id.
    #[error("fenced: another instance of this application (transactional id `{0}`) has started; this one stops")]
    Fenced(String),
    /// A Kafka client property cannot be used.
    #[error("Kafka client property `{key}` ({origin}): {reason}")]
    Property {
        /// The key, with its role prefix if it has one.
        key: String,
        /// Where it was set.
        origin: String,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// A Kafka client properties file cannot be read.
    #[error("Kafka client properties file `{path}`: {reason}")]
    PropertiesFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The brokers refuse this client: authentication or TLS failed, or they could not be
    /// reached in time.
    #[error("cannot use the Kafka brokers at {brokers}: {reason}")]
    Connect {
        /// The bootstrap servers.
        brokers: String,
        /// What the client reported (naming the broker), and what to check.
        reason: String,
    },
    /// An existing topic faustus needs is set up in a way that breaks the application.
    #[error("topic `{topic}` {problem}; {fix}")]
    TopicConfig {
        /// The topic.
        topic: String,
        /// What is wrong with it.
        problem: String,
        /// How to fix it.
        fix: String,
    },
    /// The topics faustus would create cannot be placed on the cluster.
    #[error("{0}")]
    Replication(String),
}

/// `Result` with [`ConnectorError`].
pub type Result<T, E = ConnectorError> = std::result::Result<T, E>;

/// Attaches a context to a Kafka client error.
pub(crate) trait KafkaContext<T> {
    /// Wraps the error with what was being done.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> KafkaContext<T> for std::result::Result<T, KafkaError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| ConnectorError::Kafka {
            context: what(),
            source: crate::properties::redact_error(source),
        })
    }
}
